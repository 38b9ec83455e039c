# Indexes chosen for the queries auditors run without costing the write
# path: every partition of audit.entries has only its BRIN index on ts
# (and the primary key) while its day lasts; the by-user B-tree and the
# by-object GIN index are built, concurrently, on each day once it is over,
# by the built-in job "audit.index_closed_partitions", and the planner uses
# them.  A leftover invalid index is rebuilt.  The job's scheduled run
# builds them in its own job worker.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('audit_indexes');
$node->start;
# The test runs the jobs' commands itself (the indexing job's, and a
# maintenance pass): the built-in jobs are paused before the scheduler sees
# them, so that no run of theirs overlaps the test's.
$node->safe_psql('postgres', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
	COMMIT;
});

# Entries of three days ago (as a restore would load them): partition
# maintenance moves them into a partition of their own, a closed day.
$node->safe_psql('postgres', q{
	INSERT INTO audit.entries (ts, database, username, current_user_name, backend_pid, class, command,
							   objects, outcome)
	SELECT pg_catalog.date_trunc('day', now() - interval '3 days') + i * interval '1 second',
		   'postgres', CASE WHEN i % 100 = 0 THEN 'mallory' ELSE 'app' END, 'app', 1, 'read', 'SELECT',
		   ARRAY['public.t' || (i % 50)], 'ok'
	  FROM generate_series(1, 20000) i;
	SELECT * FROM opsdata.run_maintenance('audit.entries');
	ANALYZE audit.entries;
});
my $closed = $node->safe_psql('postgres', q{
	SELECT p.partition FROM opsdata.show_partitions('audit.entries') p
	 WHERE p.upper_bound::timestamptz <= now() - interval '1 day' AND NOT p.is_default});
like($closed, qr/^audit\.entries_p\d{8}$/, 'the entries of a past day are in a partition of their own');

my $indexes = q{SELECT string_agg(c.relname || ':' || am.amname || ':' || i.indisvalid, ',' ORDER BY c.relname)
	  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
	 WHERE i.indrelid = '%s'::regclass};
my $today = $node->safe_psql('postgres', q{
	SELECT p.partition FROM opsdata.show_partitions('audit.entries') p
	 WHERE now() >= p.lower_bound::timestamptz AND now() < p.upper_bound::timestamptz});
like($node->safe_psql('postgres', sprintf($indexes, $today)), qr/^[^,]*_pkey:btree:true,[^,]*_ts_idx:brin:true$/,
	'the current day has only its primary key and its BRIN index');

is($node->safe_psql('postgres', 'SELECT audit._index_closed_partitions()'), '2',
	'two indexes are missing on the closed day; a worker builds them');
ok($node->poll_query_until('postgres', sprintf($indexes, $closed) . " AND c.relname ~ '_(username_ts|objects)_idx\$'",
		"${\ substr($closed, 6)}_objects_idx:gin:true,${\ substr($closed, 6)}_username_ts_idx:btree:true"),
	'the closed day gets its by-user B-tree and its by-object GIN index');
is($node->safe_psql('postgres', 'SELECT audit._index_closed_partitions()'), '0',
	'once built, nothing is missing and no worker starts');
like($node->safe_psql('postgres', sprintf($indexes, $today)), qr/^[^,]*_pkey:btree:true,[^,]*_ts_idx:brin:true$/,
	'the current day is left alone');

# The planner uses them for the questions auditors ask.
$node->safe_psql('postgres', 'ANALYZE audit.entries');
like($node->safe_psql('postgres',
		"EXPLAIN (COSTS OFF) SELECT * FROM audit.entries WHERE username = 'mallory' AND ts < now() - interval '2 days'"),
	qr/username_ts_idx/, 'a query by user uses the B-tree of the closed day');
like($node->safe_psql('postgres',
		"EXPLAIN (COSTS OFF) SELECT * FROM audit.entries WHERE objects @> '{public.t7}' AND ts < now() - interval '2 days'"),
	qr/objects_idx/, 'a query by object uses the GIN index of the closed day');
is($node->safe_psql('postgres', "SELECT count(*) FROM audit.entries WHERE username = 'mallory'"), '200',
	'the answer is complete');

# A build that failed leaves an invalid index; the next run rebuilds it.
my $name = substr($closed, 6) . '_objects_idx';
$node->safe_psql('postgres', "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'audit.$name'::regclass");
is($node->safe_psql('postgres', 'SELECT audit._index_closed_partitions()'), '1', 'an invalid index counts as missing');
ok($node->poll_query_until('postgres',
		"SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('audit.$name')"),
	'the invalid index is dropped and built again');

# The scheduled job builds in its own job worker: once its run is
# recorded, the index is there, and no other worker was started for it.
$node->safe_psql('postgres', "UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'audit.$name'::regclass");
$node->safe_psql('postgres', q{
	SELECT opsdata.alter_job(job_id, paused => false, next_run => now())
	  FROM opsdata.jobs WHERE name = 'audit.index_closed_partitions'});
ok($node->poll_query_until('postgres', q{
		SELECT r.status FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
		 WHERE j.name = 'audit.index_closed_partitions' ORDER BY r.run_id DESC LIMIT 1}, 'succeeded'),
	'the scheduled run of the job succeeds');
is($node->safe_psql('postgres', "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('audit.$name')"),
	't', 'when its run is recorded, the job worker has rebuilt the index itself');
unlike(slurp_file($node->logfile), qr/ERROR:.*(index|indexer)/, 'no error in the server log');

$node->stop;
done_testing();
