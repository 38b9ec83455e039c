# The launcher keeps one scheduler in every database that has pg_opsdata
# and none in the others, with no setting listing them: CREATE EXTENSION
# gets a scheduler at once (told when it commits, not found by the periodic
# check), DROP EXTENSION stops it, a restart finds the databases again,
# templates get none, and the workers show in pg_stat_activity under their
# own backend types.  The periodic check is set to a day, far beyond the
# time any wait of this test allows: every change below is noticed because
# the launcher is told of it, or the test times out.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('launcher', conf => "pg_opsdata.check_interval = '1d'\n");
$node->start;

# Databases with a running scheduler, as pg_stat_activity shows them.
my $schedulers_sql = q{
	SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '')
	  FROM pg_stat_activity WHERE backend_type = 'pg_opsdata scheduler'};

ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'pg_opsdata launcher' AND application_name = 'pg_opsdata launcher'
	   AND datname IS NULL}),
	'one launcher runs, connected to no database, with its own backend type');

$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('postgres', 'CREATE DATABASE plain');

# CREATE EXTENSION: a scheduler as soon as the extension commits (the
# periodic check would come a day later).
$node->safe_psql('app', 'CREATE EXTENSION pg_opsdata');
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'app'"),
	'the scheduler of a new extension starts when the extension commits');
is($node->safe_psql('postgres', q{
	SELECT application_name FROM pg_stat_activity WHERE backend_type = 'pg_opsdata scheduler'}),
	'pg_opsdata scheduler', 'the scheduler names itself in application_name');
is($node->safe_psql('app', q{
	SELECT string_agg(component || '=' || status, ',' ORDER BY component)
	  FROM opsdata.health() WHERE component IN ('launcher', 'scheduler "app"')}),
	'launcher=ok,scheduler "app"=ok', 'health reports the launcher and the scheduler');

# Databases without the extension end with no scheduler (a start-up check
# may pass through them).
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'app'"),
	'no scheduler in the databases without the extension');

# DROP EXTENSION stops the scheduler; CREATE EXTENSION brings it back.
$node->safe_psql('app', 'DROP EXTENSION pg_opsdata');
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = ''"),
	'DROP EXTENSION stops the scheduler');
$node->safe_psql('app', 'CREATE EXTENSION pg_opsdata');
$node->safe_psql('plain', 'CREATE EXTENSION pg_opsdata');
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'app,plain'"),
	'CREATE EXTENSION again starts a scheduler in each database');
$node->safe_psql('plain', 'DROP EXTENSION pg_opsdata');

# A rolled-back CREATE EXTENSION starts nothing that stays.
$node->safe_psql('postgres', 'CREATE DATABASE undone');
$node->safe_psql('undone', 'BEGIN; CREATE EXTENSION pg_opsdata; ROLLBACK;');
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'app'"),
	'a rolled-back CREATE EXTENSION leaves no scheduler');

# A template database gets no scheduler: jobs must not write into what is
# copied, and CREATE DATABASE must find its template free.
$node->safe_psql('postgres', 'CREATE DATABASE tmpl');
$node->safe_psql('tmpl', 'CREATE EXTENSION pg_opsdata');
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'app,tmpl'"),
	'a database gets a scheduler');
$node->safe_psql('postgres', 'ALTER DATABASE tmpl IS_TEMPLATE true');
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'app'"),
	'marking it a template stops its scheduler');
is($node->safe_psql('tmpl', q{SELECT status FROM opsdata.health() WHERE component = 'scheduler "tmpl"'}),
	'off', 'and health says why');
$node->safe_psql('postgres', 'CREATE DATABASE copied TEMPLATE tmpl');
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'app,copied'"),
	'a database made from the template has the extension and gets a scheduler');
$node->safe_psql('postgres', 'ALTER DATABASE tmpl IS_TEMPLATE false');
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'app,copied,tmpl'"),
	'a template made an ordinary database again gets its scheduler back');

# After a restart the launcher finds the databases with the extension by
# itself.
$node->restart;
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'app,copied,tmpl'"),
	'after a restart, exactly the databases with the extension have a scheduler');
is($node->safe_psql('app', q{SELECT count(*) FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'worker.prune_runs' AND r.status = 'running'}), '0',
	'the built-in job is not left running');

$node->stop;
done_testing();
