# Backups keep everything (DESIGN.md, contract 9): a database that uses
# every area of pg_opsdata, on a server auditing writes and DDL, is
# restored in the two ways operators do it, and after each every row is
# back and the restored database works.
#
#   - pg_dumpall --globals-only and pg_dump -Fc, restored with pg_restore
#     --jobs 4 into a new database of a second server with pg_opsdata
#     preloaded (and auditing on);
#   - pg_basebackup of the first server, started as a copy.
#
# Filled: audit entries (queued ones flushed), statements and rules; jobs
# and their runs; a partition set of the user's own table with rows in the
# default partition and in premade ones; metrics series, points, rollups and
# rollup work still pending; learning feedback, thresholds with their
# history, and candidates with leases still active; changed settings.
#
# Works: the scheduler runs the jobs again (the user's and the built-in
# ones), partition maintenance goes on (the row in the default partition
# gets its partition), rollups go on without counting anything twice,
# tuning goes on from the restored feedback, expired leases are reclaimed
# and active ones are not handed out, audit capture and the rules go on
# with new entry_ids, and opsdata.check_restore() and opsdata.health()
# are clean.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $conf = "pg_opsdata.audit = 'write, ddl'\n";
my $origin = opsdata_node('origin', conf => $conf, init => { allows_streaming => 1 });
$origin->start;
$origin->safe_psql('postgres', 'CREATE DATABASE app');

# The built-in jobs are paused from the start, so nothing changes between
# the fingerprint and the backups; each restored database resumes them.
$origin->safe_psql('app', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
	COMMIT;
	CREATE ROLE app_writer LOGIN IN ROLE opsdata_writer, opsdata_reader;
	SELECT opsdata.set_setting('audit.retention', '400 days');
	SELECT opsdata.set_setting('metrics.points_retention', '60 days');
	SELECT opsdata.set_setting('learning.default_lease', '5 minutes');

	-- Audit: statements, a rule, and queued entries (a failed statement, a
	-- rolled-back transaction).
	CREATE TABLE public.orders (id int PRIMARY KEY);
	CREATE TABLE public.noise (n int);
	SELECT audit.add_rule('exclude', relation_name => 'public.noise', comment => 'too chatty');
	INSERT INTO public.orders VALUES (1), (2);
	INSERT INTO public.noise VALUES (1);
});
$origin->psql('app', 'INSERT INTO public.orders VALUES (1)');
$origin->safe_psql('app', q{
	BEGIN; INSERT INTO public.orders VALUES (3); ROLLBACK;
	SELECT audit.flush();

	-- The user's partition set: rows in premade partitions and in the
	-- default partition.
	CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL,
								kind text NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
	CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;
	SELECT opsdata.manage_partitions('public.events', 'at', '1 day', premake => 3, retention => '30 days',
									 start_from => (now() - interval '2 days')::text);
	INSERT INTO public.events (at, kind) SELECT now() - i * interval '1 hour', 'past' FROM generate_series(0, 40) i;
	INSERT INTO public.events (at, kind) SELECT now() + i * interval '1 hour', 'ahead' FROM generate_series(1, 30) i;
	INSERT INTO public.events (at, kind) VALUES (now() + interval '20 days', 'far ahead');

	-- Metrics: points rolled up, and points whose rollup is still pending.
	SELECT count(metrics.record('requests', i, '{"route": "/a"}', now() - i * interval '1 minute'))
	  FROM generate_series(1, 180) i;
	SELECT count(metrics.record('requests', i, '{"route": "/b"}', now() - i * interval '1 minute'))
	  FROM generate_series(1, 30) i;
	SELECT metrics.rollup();
	SELECT count(metrics.record('requests', i, '{"route": "/a"}', now() - i * interval '1 second'))
	  FROM generate_series(1, 40) i;

	-- Learning: feedback, a tuned threshold with its history, candidates.
	INSERT INTO learning.feedback (key, score, label)
	SELECT 'intent.refund', (i % 997) / 997.0, (i % 997) / 997.0 + (i % 13) / 26.0 > 0.75
	  FROM generate_series(1, 2000) i;
	SELECT learning.set_objective('intent.refund', 'precision', 0.9, 100);
	SELECT learning.tune();
	INSERT INTO learning.feedback (key, score, label)
	SELECT 'intent.refund', (i % 991) / 991.0, i % 3 = 0 FROM generate_series(1, 500) i;
	SELECT learning.tune();
	SELECT count(learning.offer('intent.refund', 'q' || i, i / 20.0)) FROM generate_series(1, 10) i;
	SELECT learning.submit(candidate_id, 'rita', true) FROM learning.claim(1, 'rita', '1 hour');
	SELECT count(*) FROM learning.claim(2, 'rita', '3 seconds');
	SELECT count(*) FROM learning.claim(2, 'sam', '1 day');

	-- A user job with some runs.
	CREATE TABLE public.ticks (at timestamptz DEFAULT clock_timestamp());
	SELECT opsdata.add_job('tick', 'INSERT INTO public.ticks DEFAULT VALUES', '1 second');
});
$origin->poll_query_until('app', 'SELECT count(*) >= 3 FROM public.ticks') or die 'no ticks';
$origin->safe_psql('app', q{SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'tick'});
$origin->poll_query_until('app', q{SELECT count(*) = 0 FROM opsdata.job_runs WHERE status = 'running'})
  or die 'runs still in progress';
$origin->safe_psql('app', 'SELECT audit.flush()');

# What the origin holds, ready to be compared.
is($origin->safe_psql('app', q{
	SELECT concat_ws(' ',
		(SELECT count(*) FROM audit.entries WHERE outcome IN ('error', 'rolled back')),
		(SELECT count(*) FROM ONLY public.events_default),
		(SELECT count(*) > 0 FROM metrics.rollup_queue),
		(SELECT count(*) > 0 FROM metrics.rollups),
		(SELECT count(*) > 0 FROM learning.threshold_history),
		(SELECT count(*) FROM learning.candidates WHERE status = 'claimed'),
		(SELECT count(*) >= 3 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'tick'))}),
	'2 1 t t t 4 t',
	'the origin holds queued audit entries, a row in a default partition, pending rollup work, rollups, threshold history, leased candidates and job runs');

my $max_entry = $origin->safe_psql('app', 'SELECT max(entry_id) FROM audit.entries');

# A fingerprint of every row of every table the test filled, partitions
# with their bounds, and sequence positions.  audit.entries and
# audit.statements are compared as far as the origin had them (the restore
# adds entries of its own).  Derived data (learning.histograms and
# learning.feedback_changes) is rebuilt on restore and checked by tuning;
# the built-in partition sets are made again by CREATE EXTENSION, with
# their state of maintenance, which is not in a dump.
my @tables = (
	[ 'audit.entries', "entry_id <= $max_entry" ],
	[ 'audit.statements', "statement_id IN (SELECT statement_id FROM audit.entries WHERE entry_id <= $max_entry)" ],
	[ 'audit.rules' ], [ 'audit.seals' ], [ 'audit.queue' ],
	[ 'opsdata.config' ], [ 'opsdata.jobs' ], [ 'opsdata.job_runs' ], [ 'opsdata.partitions', 'NOT builtin' ],
	[ 'opsdata.partition_log' ],
	[ 'metrics.series' ], [ 'metrics.points' ], [ 'metrics.rollup_queue' ], [ 'metrics.rollups' ],
	[ 'metrics.rollup_state' ],
	[ 'learning.feedback' ], [ 'learning.thresholds' ], [ 'learning.threshold_history' ],
	[ 'learning.strategies' ], [ 'learning.candidates' ],
	[ 'public.orders' ], [ 'public.noise' ], [ 'public.events' ], [ 'public.ticks' ]);
my $fingerprint_sql = join("\nUNION ALL ",
	map {
		my ($t, $where) = @$_;
		$where = defined $where ? "WHERE $where" : '';
		"SELECT '$t' AS t, count(*) AS n, md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) AS h FROM $t x $where"
	} @tables);
$fingerprint_sql = qq{
	SELECT string_agg(format('%s %s %s', t, n, h), E'\\n' ORDER BY t) FROM ($fingerprint_sql) f
	UNION ALL
	SELECT string_agg(format('%s %s', i.inhrelid::regclass, pg_get_expr(c.relpartbound, c.oid)), E'\\n' ORDER BY 1)
	  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	 WHERE i.inhparent IN ('audit.entries'::regclass, 'metrics.points'::regclass, 'public.events'::regclass)
	UNION ALL
	SELECT string_agg(format('%s %s %s', schemaname, sequencename, last_value), E'\\n' ORDER BY 1)
	  FROM pg_sequences WHERE schemaname IN ('learning', 'metrics', 'opsdata', 'public')};
my $fingerprint = $origin->safe_psql('app', $fingerprint_sql);
like($fingerprint, qr/^public\.events 72 /m, 'the fingerprint covers the rows of every table');

# The two backups.
my $dump = $origin->basedir . '/app.dump';
my $globals = $origin->basedir . '/globals.sql';
$origin->command_ok([ 'pg_dumpall', '--globals-only', '-f', $globals, '-d', $origin->connstr('postgres') ],
	'pg_dumpall --globals-only keeps the roles');
$origin->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $origin->connstr('app') ], 'pg_dump -Fc');
$origin->backup('base');

# After a restore: every row back, and the database works.
sub check_restored
{
	my ($node, $how) = @_;

	# Entries the restore made of its own statements move into the trail
	# once it has ended.
	ok($node->poll_query_until('app', 'SELECT count(*) = 0 FROM audit.held_entries'),
		"$how: no audit entry is held once the restore has ended");
	is($node->safe_psql('app', $fingerprint_sql), $fingerprint, "$how: every row is back");
	is($node->safe_psql('app', qq{
		SELECT count(*) = count(DISTINCT entry_id) FROM audit.entries WHERE entry_id > $max_entry}),
		't', "$how: entries made since have ids of their own");

	# Audit capture and the rules go on.
	$node->safe_psql('app', q{
		INSERT INTO public.orders VALUES (10);
		INSERT INTO public.noise VALUES (10)});
	is($node->safe_psql('app', qq{
		SELECT string_agg(statement_text, ', ' ORDER BY entry_id) FROM audit.trail
		 WHERE entry_id > $max_entry AND statement_text LIKE 'INSERT INTO public.%VALUES (10)'}),
		'INSERT INTO public.orders VALUES (10)', "$how: writes are audited, and the restored rule excludes its table");

	# Pending work that was in the backup, and what the restored database
	# gets meanwhile.
	$node->safe_psql('app', q{
		INSERT INTO learning.feedback (key, score, label)
		SELECT 'intent.refund', (i % 89) / 89.0, i % 2 = 0 FROM generate_series(1, 100) i;
		SELECT count(metrics.record('requests', 1, '{"route": "/b"}')) FROM generate_series(1, 5)});
	# The scheduler runs every job again, from where the backup left them.
	my $ticks = $node->safe_psql('app', 'SELECT count(*) FROM public.ticks');
	my $last_run = $node->safe_psql('app', 'SELECT max(run_id) FROM opsdata.job_runs');
	$node->safe_psql('app', q{
		SELECT count(opsdata.alter_job(job_id, paused => false, next_run => now()))
		  FROM opsdata.jobs WHERE builtin OR name = 'tick'});
	ok($node->poll_query_until('app', "SELECT count(*) >= $ticks + 2 FROM public.ticks"),
		"$how: the scheduler runs the user's job");
	ok($node->poll_query_until('app', qq{
		SELECT count(*) = 0 FROM opsdata.jobs j
		 WHERE j.builtin AND NOT EXISTS (SELECT FROM opsdata.job_runs r
										  WHERE r.job_id = j.job_id AND r.run_id > $last_run
											AND r.status = 'succeeded')}),
		"$how: every built-in job runs and succeeds");
	is($node->safe_psql('app', qq{
		SELECT string_agg(DISTINCT status, ',') FROM opsdata.job_runs
		 WHERE run_id > $last_run AND status NOT IN ('succeeded', 'running')}),
		'', "$how: no run fails");

	# Leases: the expired ones are reclaimed by the built-in job, the active
	# ones stay with their reviewer and are not handed out.
	ok($node->poll_query_until('app', q{
		SELECT count(*) = 0 FROM learning.candidates WHERE status = 'claimed' AND claimed_by = 'rita'}),
		"$how: expired leases are reclaimed");
	is($node->safe_psql('app', q{
		SELECT count(*) || ' handed out, ' || count(*) FILTER (WHERE candidate_id IN
			(SELECT candidate_id FROM learning.candidates WHERE claimed_by = 'sam')) || ' of them leased'
		  FROM learning.claim(10, 'other', '1 hour')}),
		'7 handed out, 0 of them leased', "$how: the open and reclaimed candidates are handed out, the leased ones not");

	# Partition maintenance goes on: the row in the default partition has
	# its partition now.
	ok($node->poll_query_until('app', q{SELECT count(*) = 0 FROM ONLY public.events_default}),
		"$how: maintenance moves the row out of the default partition");
	is($node->safe_psql('app', q{SELECT count(*) FROM public.events WHERE kind = 'far ahead'}), '1',
		"$how: into a partition of its own");

	# Rollups go on, and no point is counted twice or missed.
	ok($node->poll_query_until('app', q{SELECT count(*) = 0 FROM metrics.rollup_queue}),
		"$how: the pending rollup work is done");
	is($node->safe_psql('app', q{
		SELECT string_agg(format('%s %s', w.width, r.count = p.count AND r.sum = p.sum), ', ' ORDER BY w.width)
		  FROM unnest(opsdata.setting('metrics.rollup_widths')::interval[]) w(width),
			   LATERAL (SELECT sum(count) AS count, sum(sum) AS sum FROM metrics.rollups
						 WHERE bucket_width = w.width) r,
			   (SELECT count(*) AS count, sum(value) AS sum FROM metrics.points) p}),
		'00:01:00 t, 01:00:00 t, 1 day t', "$how: every width counts every point once");
	is($node->safe_psql('app', q{
		SELECT sum(count) FROM metrics.query('requests', '{"route": "/a"}', now() - interval '1 day', now() + interval '1 minute', '1 hour')}),
		'220', "$how: metrics.query() answers over the restored and the new data");

	# Tuning goes on from every feedback row, the restored ones included.
	ok($node->poll_query_until('app', q{SELECT count(*) = 0 FROM learning.feedback_changes}),
		"$how: tuning took in the restored feedback");
	is($node->safe_psql('app', q{
		SELECT support = (SELECT count(*) FROM learning.feedback WHERE key = 'intent.refund')
		   AND threshold IS NOT DISTINCT FROM (SELECT learning.optimal_threshold(score, label, 'precision', 0.9)
												 FROM learning.feedback WHERE key = 'intent.refund')
		  FROM learning.thresholds WHERE key = 'intent.refund'}),
		't', "$how: the threshold is tuned on all the feedback, none counted twice");

	is($node->safe_psql('app', q{
		SELECT string_agg(check_name || ': ' || detail, '; ') FROM opsdata.check_restore() WHERE status <> 'ok'}),
		'', "$how: opsdata.check_restore() finds nothing wrong");
	is($node->safe_psql('app', q{
		SELECT string_agg(component || ': ' || detail, '; ') FROM opsdata.health() WHERE status NOT IN ('ok', 'off')}),
		'', "$how: health is clean");
}

# 1. pg_dump -Fc restored with pg_restore --jobs 4 on a second server.
my $restored = opsdata_node('restored', conf => $conf);
$restored->start;
my ($out, $err) = ('', '');
IPC::Run::run([ 'psql', '-X', '-q', '-f', $globals, '-d', $restored->connstr('postgres') ], '>', \$out, '2>', \$err);
is($restored->safe_psql('postgres', q{SELECT string_agg(rolname, ' ' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE '%opsdata%' OR rolname = 'app_writer'}),
	'app_writer opsdata_admin opsdata_auditor opsdata_reader opsdata_writer', 'the roles are restored first');
$restored->safe_psql('postgres', 'CREATE DATABASE app');
my $ok = IPC::Run::run([ 'pg_restore', '--exit-on-error', '--jobs', '4', '-d', $restored->connstr('app'), $dump ],
	'>', \$out, '2>', \$err);
ok($ok, 'pg_restore --jobs 4 into a new database on a second server succeeds') or diag($err);
check_restored($restored, 'pg_restore');
$restored->stop;

# 2. pg_basebackup of the first server, started as a copy.
my $copy = PostgreSQL::Test::Cluster->new('copy');
$copy->init_from_backup($origin, 'base');
$copy->start;
check_restored($copy, 'base backup');
$copy->stop;

$origin->stop;
done_testing();
