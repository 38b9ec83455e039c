# Commands that need a database without sessions succeed at once although
# a scheduler and a running job are connected to it: DROP DATABASE, CREATE
# DATABASE ... TEMPLATE, ALTER DATABASE ... RENAME.  PostgreSQL itself would
# wait five seconds and fail with "database is being accessed by other
# users".  Only a role allowed to run the command can make the workers
# leave.  A terminated scheduler is restarted after pg_opsdata.restart_delay,
# which a reload changes.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use OpsdataTest;

my $node = opsdata_node('databases');
$node->start;

my $schedulers_sql = q{
	SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '')
	  FROM pg_stat_activity WHERE backend_type = 'pg_opsdata scheduler'};

# A database whose scheduler runs a job that takes a minute.
sub busy_database
{
	my ($name) = @_;
	$node->safe_psql('postgres', "CREATE DATABASE $name");
	$node->safe_psql($name, q{
		CREATE EXTENSION pg_opsdata;
		SELECT opsdata.add_job('a minute', 'SELECT pg_sleep(60)', '1 hour');
	});
	# Built-in jobs may run beside it.
	$node->poll_query_until($name, q{
		SELECT count(*) = 1 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
		 WHERE j.name = 'a minute' AND r.status = 'running'})
	  or die "no scheduler and job in $name";
}

# Run a statement; return how long it took, or die if it failed.
sub timed
{
	my ($db, $sql) = @_;
	my $start = time;
	$node->safe_psql($db, $sql);
	return time - $start;
}

# DROP DATABASE.
busy_database('dropped');
my $took = timed('postgres', 'DROP DATABASE dropped');
# The job sleeps a minute: waiting for it would take that long.  Without
# pg_opsdata stopping its workers, DROP DATABASE fails after 5 s.
cmp_ok($took, '<', 60, sprintf('DROP DATABASE of a database with a scheduler and a running job succeeds without waiting for the job (%.2f s)', $took));
is($node->safe_psql('postgres', q{SELECT count(*) FROM pg_database WHERE datname = 'dropped'}), '0',
	'the database is gone');
ok($node->log_contains(qr/pg_opsdata stopped \d+ workers in database "dropped" for DROP DATABASE/),
	'the log says which workers were stopped, and why');

# CREATE DATABASE from a database in use by the workers, then RENAME.
busy_database('source');
$took = timed('postgres', 'CREATE DATABASE copy TEMPLATE source');
cmp_ok($took, '<', 60, sprintf('CREATE DATABASE ... TEMPLATE of a database with workers succeeds without waiting for the job (%.2f s)', $took));
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'copy,source'"),
	'the source gets its scheduler back, and the copy (which has the extension) one of its own');
$took = timed('postgres', 'ALTER DATABASE source RENAME TO renamed');
cmp_ok($took, '<', 60, sprintf('ALTER DATABASE ... RENAME of a database with workers succeeds without waiting for the job (%.2f s)', $took));
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'copy,renamed'"),
	'the renamed database gets its scheduler back');
# The new scheduler records it when it first reads its jobs.
ok($node->poll_query_until('renamed', q{
	SELECT string_agg(status, ',' ORDER BY run_id) ~ '^crashed' FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'a minute'}),
	'the job the command interrupted is recorded as crashed');

# A role that may not drop the database cannot make the workers leave.
$node->safe_psql('postgres', 'CREATE ROLE intruder LOGIN');
my $pid = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_opsdata scheduler' AND datname = 'renamed'});
my ($rc, $out, $err) = $node->psql('postgres', 'DROP DATABASE renamed', extra_params => [ '-U', 'intruder' ]);
like($err, qr/must be owner of database renamed/, 'a role that does not own the database cannot drop it');
is($node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_opsdata scheduler' AND datname = 'renamed'}),
	$pid, 'and its attempt leaves the scheduler running');

# A terminated scheduler is restarted after pg_opsdata.restart_delay.
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'pg_opsdata scheduler' AND datname = 'renamed' AND pid <> $pid}),
	'a terminated scheduler is restarted');
ok($node->log_contains(qr/pg_opsdata scheduler of database "renamed" stopped; restarting it in \d+ ms/),
	'the log says when it restarts');

# The delay is a reloadable setting: an hour keeps the scheduler down (and
# health says until when), then a reload to 100 ms brings it back at once.
$node->safe_psql('postgres', q{ALTER SYSTEM SET pg_opsdata.restart_delay = '1h'; SELECT pg_reload_conf();});
ok($node->poll_query_until('renamed', q{
	SELECT detail ~ 'after 3600000 ms' FROM opsdata.health() WHERE component = 'launcher'}),
	'the launcher applies a reloaded restart_delay');
$pid = $node->safe_psql('postgres', q{
	SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_opsdata scheduler' AND datname = 'renamed'});
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('renamed', q{
	SELECT status = 'warning' AND detail ~ 'restarts at'
	   AND substring(detail FROM 'restarts at ([^;]*)\.$')::timestamptz > now() + interval '30 minutes'
	  FROM opsdata.health() WHERE component = 'scheduler "renamed"'}),
	'with restart_delay = 1h the scheduler stays down, and health says until when');
$node->safe_psql('postgres', q{ALTER SYSTEM SET pg_opsdata.restart_delay = '100ms'; SELECT pg_reload_conf();});
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'pg_opsdata scheduler' AND datname = 'renamed' AND pid <> $pid}),
	'after a reload with restart_delay = 100ms it is restarted at once');

$node->stop;
done_testing();
