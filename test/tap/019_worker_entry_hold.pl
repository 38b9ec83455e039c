# A job worker that a session started to run an entry now (here the
# partition maintenance pass of opsdata.run_maintenance()) is a pg_opsdata
# worker like the others: DROP EXTENSION, DROP DATABASE and the commands
# that need a database without sessions stop it, and it does not start in
# a database they hold.  The pass is held still by a lock the test keeps
# (its wait would end after partition.lock_timeout, a minute); DROP
# EXTENSION must stop it, say so in the log, and the caller waiting for the
# pass is told that it ended.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('entry_hold');
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
	COMMIT;
	-- The pass would wait a minute for the test's lock.
	SELECT opsdata.set_setting('partition.lock_timeout', '1 minute');
	SELECT opsdata.set_setting('partition.lock_retries', '0');
	CREATE TABLE public.readings (at timestamptz NOT NULL) PARTITION BY RANGE (at);
	CREATE TABLE public.readings_default PARTITION OF public.readings DEFAULT;
	SELECT opsdata.manage_partitions('public.readings', 'at', '1 day', premake => 3);
});

my $entry_sql = q{SELECT count(*) FROM pg_stat_activity
	 WHERE backend_type = 'pg_opsdata partition maintenance' AND datname = 'app'};

my $locker = $node->background_psql('app');
$locker->query_safe('BEGIN; LOCK TABLE public.readings_default IN ACCESS EXCLUSIVE MODE;');
my $caller = $node->background_psql('app', on_error_stop => 0);
$caller->{stdin} .= "SELECT count(*) FROM opsdata.run_maintenance();\n";
$caller->{run}->pump_nb();
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
	 WHERE NOT l.granted AND a.backend_type = 'pg_opsdata partition maintenance'}),
	'the pass started for run_maintenance() waits for the lock the test holds');

# DROP EXTENSION stops it, though its lock wait would last a minute.
my $dropper = $node->background_psql('app', on_error_stop => 0);
$dropper->{stdin} .= "DROP EXTENSION pg_opsdata CASCADE;\n";
$dropper->{run}->pump_nb();
ok($node->poll_query_until('postgres', "SELECT ($entry_sql) = 0"),
	'DROP EXTENSION stops the job worker of run_maintenance()');
ok($node->log_contains(qr/terminating background worker "pg_opsdata partition maintenance" due to administrator command/),
	'the worker was terminated, not left to give up waiting');
ok($node->poll_query_until('app', q{SELECT count(*) = 0 FROM pg_extension WHERE extname = 'pg_opsdata'}),
	'the extension is dropped');
$locker->query_safe('COMMIT;');
$locker->quit;
$caller->{stdin} .= "\\echo done\n";
$caller->{run}->pump until $caller->{stdout} =~ /done/ || !$caller->{run}->pumpable;
like($caller->{stderr}, qr/partition maintenance worker exited before finishing/,
	'the waiting caller is told that its pass ended');
$caller->quit;
$dropper->quit;

$node->stop;
done_testing();
