# pg_dump of a database whose tables maintenance has partitioned at run
# time, pg_opsdata's own (audit.entries, metrics.points) and the user's,
# restores with pg_restore --exit-on-error into a fresh database: every row
# is back in its partition, each partition has its indexes once, the user's
# set is still managed and maintenance carries on (DESIGN.md, contract 9).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('partition_dump');
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE src');
# The test runs the maintenance passes itself: the built-in maintenance job
# is paused before the scheduler sees it (and stays paused in the restored
# copy), so that no pass of its overlaps the test's.
$node->safe_psql('src', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'partition.maintain';
	COMMIT;
	CREATE SCHEMA app;
	CREATE TABLE app.events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL, kind text,
							 PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
	CREATE INDEX ON app.events (kind);
	SELECT opsdata.manage_partitions('app.events', 'at', '1 day', premake => 2, retention => '30 days',
									 start_from => (now() - interval '3 days')::text);
	INSERT INTO app.events (at, kind) SELECT now() - i * interval '1 hour', 'k' || i % 3 FROM generate_series(0, 60) i;
	SELECT count(*) FROM opsdata.run_maintenance();
	INSERT INTO audit.entries (database, username, current_user_name, backend_pid, class, command, outcome)
		 SELECT current_database(), 'alice', 'alice', 1, 'write', 'INSERT', 'ok' FROM generate_series(1, 20);
	INSERT INTO metrics.series (name) VALUES ('latency');
	INSERT INTO metrics.points SELECT 1, now() - i * interval '1 minute', i FROM generate_series(1, 100) i;
});

my $counts = q{
	SELECT string_agg(format('%s=%s', t, n), ' ' ORDER BY t) FROM (
		SELECT 'entries' AS t, count(*) AS n FROM audit.entries
		UNION ALL SELECT 'entries outside the default', count(*) FROM audit.entries WHERE tableoid <> 'audit.entries_default'::regclass
		UNION ALL SELECT 'points', count(*) FROM metrics.points
		UNION ALL SELECT 'events', count(*) FROM app.events
		UNION ALL SELECT 'partitions', count(*) FROM pg_inherits
				   WHERE inhparent IN ('audit.entries'::regclass, 'metrics.points'::regclass, 'app.events'::regclass)
		UNION ALL SELECT 'indexes', count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
				   WHERE c.relnamespace IN ('audit'::regnamespace, 'metrics'::regnamespace, 'app'::regnamespace)
				     AND c.relispartition) c};
my $before = $node->safe_psql('src', $counts);
like($before, qr/entries outside the default=20 /, 'the audit entries sit in a daily partition made by maintenance');

my $dump = $node->basedir . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ], 'pg_dump succeeds');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
my ($stdout, $stderr);
my $ok = IPC::Run::run([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'>', \$stdout, '2>', \$stderr);
ok($ok, 'pg_restore --exit-on-error succeeds') or diag($stderr);
is($node->safe_psql('restored', $counts), $before,
	'every row, partition and partition index is back, each index once');
is($node->safe_psql('restored',
		q{SELECT parent || ' ' || part_interval || ' ' || retention FROM opsdata.partitions WHERE NOT builtin}),
	'app.events 1 day 30 days', "the user's set is still managed");
is($node->safe_psql('restored',
		q{SELECT string_agg(DISTINCT status, ',') FROM opsdata.run_maintenance()}),
	'ok', 'maintenance runs on the restored database');
is($node->safe_psql('restored',
		q{SELECT count(*) FROM opsdata.health() WHERE status NOT IN ('ok', 'off')}),
	'0', 'health is clean in the restored database');

# Only a statement repeating what ATTACH cloned is skipped.
my $audit_part = $node->safe_psql('restored',
	q{SELECT c.oid::regclass FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	   WHERE i.inhparent = 'audit.entries'::regclass AND c.relname <> 'entries_default' LIMIT 1});
my $pkey = $node->safe_psql('restored',
	qq{SELECT conname FROM pg_constraint WHERE conrelid = '$audit_part'::regclass AND contype = 'p'});
my ($rc, $out, $err) = $node->psql('restored',
	"ALTER TABLE ONLY $audit_part ADD CONSTRAINT $pkey PRIMARY KEY (entry_id, ts, server_id)");
is($rc, 0, 'adding the cloned primary key of a partition of audit.entries again is skipped');
like($err, qr/NOTICE:  constraint "$pkey" already exists, skipping/, 'with a notice');
($rc, $out, $err) = $node->psql('restored', "CREATE INDEX extra_idx ON $audit_part (command)");
is($rc, 0, 'a new index on such a partition is made');
is($node->safe_psql('restored', q{SELECT count(*) FROM pg_class WHERE relname = 'extra_idx'}), '1',
	'it exists');
my $user_part = $node->safe_psql('restored',
	q{SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'app.events'::regclass LIMIT 1});
my $user_pkey = $node->safe_psql('restored',
	qq{SELECT conname FROM pg_constraint WHERE conrelid = '$user_part'::regclass AND contype = 'p'});
($rc, $out, $err) = $node->psql('restored',
	"ALTER TABLE ONLY $user_part ADD CONSTRAINT $user_pkey PRIMARY KEY (id, at)");
isnt($rc, 0, "on a partition of a user's table the same statement fails as it always does");
like($err, qr/multiple primary keys/, "with PostgreSQL's own error");

$node->stop;
done_testing();
