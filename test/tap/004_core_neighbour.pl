# pg_opsdata lives beside the libraries preloaded before it (the test
# module neighbour plays one):
#  - it takes one relcache invalidation callback slot, whatever its areas
#    cache (PostgreSQL 15 has ten per process).  neighbour takes all of them
#    but three: the two PostgreSQL's own caches take in a session, and one.
#    Sessions then exercise every area (joins and row types, audit,
#    metrics, learning thresholds, partition maintenance, scheduled jobs)
#    and none dies with "out of relcache_callback_list slots".  With one
#    slot fewer left, a session does: the budget is exact;
#  - every utility statement reaches the neighbour's ProcessUtility hook
#    through pg_opsdata's, but a COPY into metrics.ingest that pg_opsdata
#    reads itself.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('neighbour',
	conf => "shared_preload_libraries = 'neighbour, pg_opsdata'\n"
	  . "neighbour.relcache_free = 3\n");
$node->start;

$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_opsdata;
	CREATE TABLE a (id int PRIMARY KEY, v text);
	CREATE TABLE b (id int PRIMARY KEY, w text);
	INSERT INTO a SELECT i, 'a' || i FROM generate_series(1, 100) i;
	INSERT INTO b SELECT i, 'b' || i FROM generate_series(1, 100) i;
	CREATE TABLE events (ts timestamptz NOT NULL, kind text) PARTITION BY RANGE (ts);
});

# Each area, in sessions of their own.
my %sessions = (
	'joins and row types' => q{
		SELECT count(*) FROM a JOIN b USING (id) WHERE a.v <> b.w;
		SELECT count(x) FROM (SELECT a FROM a) x;
		SELECT (a).id FROM (SELECT a FROM a WHERE id = 1) s;
	},
	'audit' => q{
		SET pg_opsdata.audit = 'all';
		INSERT INTO audit.rules (action, role_name) VALUES ('exclude', 'nobody_here');
		CREATE TABLE audited (id int);
		INSERT INTO audited SELECT generate_series(1, 10);
		UPDATE audited SET id = id + 1;
		SELECT count(*) FROM audited JOIN a USING (id);
		BEGIN; DELETE FROM audited; ROLLBACK;
		DROP TABLE audited;
		SELECT audit.flush();
		SELECT count(*) > 0 FROM audit.entries;
	},
	'metrics' => q{
		SELECT metrics.record('api.latency', i, '{"route": "/a"}', now() - i * interval '1 second')
		  FROM generate_series(1, 100) i;
		COPY metrics.ingest (name, tags, ts, value) FROM STDIN;
api.latency	{"route": "/b"}	2024-07-01 10:00:00+00	1.5
\.
		SELECT metrics.rollup();
		SELECT count(*) FROM metrics.query('api.latency', '{"route": "/a"}', now() - interval '1 hour', now(), '1 minute');
	},
	'learning thresholds' => q{
		SELECT count(learning.record_feedback('intent.refund', (i % 97) / 97.0, i % 3 = 0))
		  FROM generate_series(1, 300) i;
		SELECT learning.set_objective('intent.refund', 'precision', 0.5, 10);
		SELECT learning.tune();
		SELECT learning.threshold('intent.refund') IS NOT NULL;
		SELECT learning.threshold('intent.refund') IS NOT NULL;
	},
	'partition maintenance' => q{
		SELECT opsdata.manage_partitions('public.events', 'ts', '1 day', premake => 2);
		SELECT count(*) FROM opsdata.run_maintenance('public.events');
		INSERT INTO events VALUES (now(), 'x');
	},
);
for my $area (sort keys %sessions)
{
	my ($rc, $out, $err) = $node->psql('postgres', $sessions{$area});
	is($rc, 0, "a session using $area works") or diag($err);
}

# A job run by the scheduler in a job worker (a worker of its own again).
$node->safe_psql('postgres', q{SELECT opsdata.add_job('tick', 'SELECT count(*) FROM public.a JOIN public.b USING (id)', '1 second')});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) >= 2 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'tick' AND r.status = 'succeeded'}),
	'the scheduler and its job workers run jobs');
ok(!$node->log_contains(qr/out of relcache_callback_list slots/),
	'no process ran out of relcache callback slots');

# The neighbour's ProcessUtility hook sees every utility statement, each
# SHOW included, with pg_opsdata's handlers (audit, partition, worker,
# metrics) between them and the statement; the COPY metrics reads itself
# is the one it does not see.
my $seen = $node->safe_psql('postgres', q{
	SET pg_opsdata.audit = 'all';
	SHOW neighbour.utility_calls;
	CREATE TABLE seen (v int);
	COPY seen FROM STDIN;
1
\.
	ALTER TABLE seen ADD COLUMN w int;
	DROP TABLE seen;
	SHOW neighbour.utility_calls;
	COPY metrics.ingest (name, tags, ts, value) FROM STDIN;
api.latency	{"route": "/c"}	2024-07-01 10:00:00+00	2.5
\.
	SHOW neighbour.utility_calls;
	BEGIN;
	SAVEPOINT s;
	RELEASE s;
	COMMIT;
	SHOW neighbour.utility_calls;
});
my ($before, $after_ddl, $after_ingest, $after_txn) = split /\n/, $seen;
is($after_ddl - $before, 5, 'CREATE, COPY into a table, ALTER, DROP and SHOW reach the neighbour\'s hook');
is($after_ingest - $after_ddl, 1, 'a COPY into metrics.ingest that pg_opsdata reads itself does not (SHOW does)');
is($after_txn - $after_ingest, 5, 'transaction control statements do');

# One slot fewer: PostgreSQL's own caches and pg_opsdata no longer fit.
$node->append_conf('postgresql.conf', "neighbour.relcache_free = 2\n");
$node->restart;
my ($rc, $out, $err) = $node->psql('postgres', $sessions{'joins and row types'});
like($err, qr/out of relcache_callback_list slots/,
	'with one slot fewer left, a session runs out: the test module takes what it says');

$node->stop;
done_testing();
