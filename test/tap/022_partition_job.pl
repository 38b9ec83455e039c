# A scheduled maintenance pass runs inside the job worker of the built-in
# job "partition.maintain": while it waits, it holds one worker and no
# second process; it records its run and writes what it did to each set to
# opsdata.partition_log, the rows opsdata.run_maintenance() returns.  A
# session that asks for a pass meanwhile is told another one is running,
# and run_maintenance() sees its results from a REPEATABLE READ
# transaction begun before the pass.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('partition_job');
$node->start;
# The built-in jobs are paused before the scheduler sees them: the test
# starts the one it needs.
$node->safe_psql('postgres', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
	COMMIT;
	SELECT opsdata.set_setting('partition.lock_timeout', '1 minute');
	SELECT opsdata.set_setting('partition.detach_timeout', '300 milliseconds');
	SELECT opsdata.set_setting('partition.lock_retries', '0');
	CREATE SCHEMA app;
	CREATE TABLE app.s (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
	SELECT opsdata.manage_partitions('app.s', 'ts', '1 day', premake => 2);
});

# The partition two days ahead is missing: the pass has it to make.
sub drop_ahead
{
	$node->safe_psql('postgres', q{
		DO $$
		DECLARE p regclass;
		BEGIN
			SELECT partition INTO p FROM opsdata.show_partitions('app.s')
			 WHERE NOT is_default ORDER BY lower_bound::timestamptz DESC LIMIT 1;
			EXECUTE 'DROP TABLE ' || p;
		END
		$$});
}
drop_ahead();

# A transaction holds a lock the pass needs to attach the new partition.
my $holder = $node->background_psql('postgres');
$holder->query_safe('BEGIN; LOCK TABLE app.s IN SHARE MODE;');
$node->safe_psql('postgres', q{
	SELECT opsdata.alter_job(job_id, paused => false, next_run => now())
	  FROM opsdata.jobs WHERE name = 'partition.maintain'});
$node->poll_query_until('postgres', q{
	SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	 WHERE NOT l.granted AND l.relation = 'app.s'::regclass AND a.backend_type LIKE 'pg_opsdata%'})
  or die 'the scheduled pass never waited for the lock';

is($node->safe_psql('postgres', q{
	SELECT string_agg(backend_type || ': ' || application_name, ', ' ORDER BY backend_type)
	  FROM pg_stat_activity
	 WHERE backend_type LIKE 'pg_opsdata%'
	   AND backend_type NOT IN ('pg_opsdata launcher', 'pg_opsdata scheduler')}),
	'pg_opsdata job: pg_opsdata job partition.maintain',
	'a scheduled pass stalled on a lock holds one worker, its job worker, and no second process');

is($node->safe_psql('postgres', q{
	SELECT coalesce(parent_table::text, '-') || ' ' || status || ': ' || message FROM opsdata.run_maintenance()}),
	'- skipped: another partition maintenance pass is running',
	'a pass asked for meanwhile does not overlap the scheduled one');

$holder->query_safe('COMMIT;');
$holder->quit;
$node->poll_query_until('postgres', q{
	SELECT r.status FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'partition.maintain' ORDER BY r.run_id DESC LIMIT 1}, 'succeeded')
  or die 'the scheduled run never succeeded';

is($node->safe_psql('postgres', q{
	SELECT status || ' ' || created || ' ' || dropped || ': ' || detail
	  FROM opsdata.partition_log WHERE parent = 'app.s' AND action = 'run'}),
	'ok 1 0: made 1 partition', 'the pass wrote what it did to the set as a run row');
is($node->safe_psql('postgres', q{
	SELECT count(DISTINCT l.pass_started) || ' ' || bool_and(l.pass_started <= l.logged_at)
	  FROM opsdata.partition_log l WHERE l.parent = 'app.s' AND l.pass_started IS NOT NULL}),
	'1 true', 'the rows of the pass, its create and its run row, share the time it began');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM opsdata.partition_log WHERE parent = 'app.s' AND pass_started IS NULL}),
	'3', 'the rows of manage_partitions() belong to no pass');

# run_maintenance() returns the run rows of its own pass, whatever the
# snapshot of the caller's transaction.
drop_ahead();
is($node->safe_psql('postgres', q{
	SET default_transaction_isolation = 'repeatable read';
	BEGIN;
	SELECT count(*) > 0 FROM opsdata.partitions;
	SELECT status || ' ' || created || ': ' || message FROM opsdata.run_maintenance('app.s');
	COMMIT;}),
	"t\nok 1: made 1 partition",
	'a caller in a REPEATABLE READ transaction gets the results of the pass it asked for');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM opsdata.partition_log WHERE parent = 'app.s' AND action = 'run'}),
	'2', 'each pass wrote one run row for the set');

$node->stop;
done_testing();
