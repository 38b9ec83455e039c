# Audit of what only a real server shows: failed password logins, logins
# and disconnects, none for an internal connection of Citus (the test
# module citus_stub plays Citus being loaded); the queue's overflow
# policies (wait, then drop) with their counts in health, while a session
# holds a lock that keeps the scheduler from draining it; the extended and
# prepared protocols through pgbench without leaks or errors.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use OpsdataTest;

my $node = opsdata_node('audit_sessions',
	conf => "shared_preload_libraries = 'citus_stub, pg_opsdata'\n"
	  . "pg_opsdata.audit = 'login'\npg_opsdata.audit_queue_size = 64kB\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_opsdata');
$node->safe_psql('postgres',
	"SET password_encryption = 'scram-sha-256'; CREATE ROLE alice LOGIN PASSWORD 'right'");

# Password authentication for alice on the Unix socket.
my $hba = $node->data_dir . '/pg_hba.conf';
my $old = slurp_file($hba);
open(my $fh, '>', $hba) or die $!;
print $fh "local all alice scram-sha-256\n$old";
close $fh;
$node->reload;

# --- failed and successful logins --------------------------------------
$node->connect_fails('dbname=postgres user=alice password=wrong', 'a wrong password is refused',
	expected_stderr => qr/password authentication failed for user "alice"/);
$node->connect_ok('dbname=postgres user=alice password=right', 'the right password is accepted');

$node->safe_psql('postgres', 'SELECT audit.flush()');
is($node->safe_psql('postgres',
		"SELECT string_agg(command || ':' || outcome || ':' || coalesce(sqlstate, ''), ',' ORDER BY ts, entry_id)
		   FROM audit.entries WHERE username = 'alice'"),
	'LOGIN:failed:28P01,LOGIN:ok:,DISCONNECT:ok:',
	'the failed login is recorded with its SQLSTATE, then the login and disconnect');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM audit.entries WHERE username = 'alice' AND database = 'postgres' AND class = 'login'"),
	'3', 'login entries name the database and the user');

# A role that may not log in, with trust authentication: also a failed login.
$node->safe_psql('postgres', 'CREATE ROLE mallory NOLOGIN');
$node->connect_fails('dbname=postgres user=mallory', 'a NOLOGIN role is refused',
	expected_stderr => qr/not permitted to log in/);
$node->safe_psql('postgres', 'SELECT audit.flush()');
is($node->safe_psql('postgres',
		"SELECT outcome || ':' || sqlstate FROM audit.entries WHERE username = 'mallory'"),
	'failed:28000', 'a refused role is a failed login');

# --- internal connections (pg_opsdata.audit_skip_applications) ----------
# With Citus loaded, a superuser's session named as Citus names its
# internal connections is not audited, its login and disconnect included;
# another role's session with the same name is, since anyone may choose a
# name.
$node->safe_psql('postgres', 'CREATE ROLE bob LOGIN');
my $internal = "application_name='citus_internal gpid=10000000001'";
$node->connect_ok("dbname=postgres $internal", 'a superuser connects under an internal name');
$node->connect_ok("dbname=postgres user=bob $internal", 'another role connects under the same name');
ok($node->poll_query_until('postgres',
		"SELECT count(*) FROM audit.entries WHERE username = 'bob' AND command = 'DISCONNECT'", '1'),
	'the other role\'s session is recorded');
is($node->safe_psql('postgres',
		"SELECT string_agg(username || ':' || command, ',' ORDER BY ts, entry_id)
		   FROM audit.entries WHERE application LIKE 'citus_internal%'"),
	'bob:LOGIN,bob:DISCONNECT', 'the superuser\'s internal session is not');

# A superuser's internal session that stops being one of a superuser is
# audited from its next statement on: the session's superuser status is
# asked again, not remembered from its start.
$node->safe_psql('postgres', q{
	CREATE ROLE carol LOGIN SUPERUSER;
	ALTER ROLE carol SET pg_opsdata.audit = 'read'});
my $carol;
{
	local $ENV{PGUSER} = 'carol';
	local $ENV{PGAPPNAME} = 'citus_internal gpid=10000000002';
	$carol = $node->background_psql('postgres');
}
$carol->query_safe('SELECT 1 AS while_a_superuser');
$node->safe_psql('postgres', 'ALTER ROLE carol NOSUPERUSER');
$carol->query_safe('SELECT 2 AS no_longer_a_superuser');
$carol->quit;
$node->safe_psql('postgres', 'SELECT audit.flush()');
is($node->safe_psql('postgres', q{
		SELECT string_agg(statement_text, ',' ORDER BY ts, entry_id) FROM audit.trail
		 WHERE username = 'carol' AND command = 'SELECT'}),
	'SELECT 2 AS no_longer_a_superuser',
	'once it is no superuser\'s, the internal session is audited');

# --- overflow: wait -----------------------------------------------------
# A session holding a lock on the default partition of audit.entries keeps
# the scheduler (and anyone else) from writing the trail until it ends its
# transaction.  A session that fills the queue meanwhile waits, and goes on
# once the lock is released and the scheduler drains the queue.  The
# filling session audits its reads; the others audit nothing, so they do
# not wait themselves.  It is bob's, named as Citus names its internal
# connections: only a superuser's internal connection never waits, and
# bob chose its name.
$node->safe_psql('postgres', "ALTER ROLE bob SET pg_opsdata.audit = 'read'");
my $owner = $node->background_psql('postgres');
$owner->query_safe('BEGIN; LOCK audit.entries_default IN ACCESS EXCLUSIVE MODE');
my $statements = 1500;
my $selects = join('', map { "SELECT $_ AS padding_padding_padding_padding_padding_padding;\n" } 1 .. $statements);
my $script = "SET pg_opsdata.audit = 'read';\n$selects";
my $selects_file = $node->basedir . '/filler_selects.sql';
PostgreSQL::Test::Utils::append_to_file($selects_file, $selects);
my ($stdout, $stderr) = ('', '');
my $h = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d',
	  $node->connstr('postgres') . " user=bob application_name='citus_internal filler'", '-f', $selects_file ],
	'>', \$stdout, '2>', \$stderr);
ok($node->poll_query_until('postgres',
		"SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'citus_internal filler' AND wait_event_type = 'Extension')"),
	'a session that fills the queue waits (pg_opsdata.audit_overflow = wait), whatever its name');
$owner->query_safe('COMMIT');
$h->finish;
is($?, 0, 'the waiting session completes once the scheduler can drain the queue');
my $padding = "SELECT count(*) FROM audit.trail WHERE statement_text LIKE 'SELECT % AS padding%'";
ok($node->poll_query_until('postgres', $padding, $statements),
	'with wait, no entry of the waiting session is lost');

# --- overflow: drop -----------------------------------------------------
$owner->query_safe('BEGIN; LOCK audit.entries_default IN ACCESS EXCLUSIVE MODE');
$node->command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'),
		'-c', "SET pg_opsdata.audit_overflow = 'drop';\n$script" ],
	'with drop, a session filling the queue never waits');
$owner->query_safe('COMMIT');
$owner->quit;
my $dropped = $node->safe_psql('postgres',
	'SELECT dropped FROM audit.queue_state() WHERE database = current_database()');
cmp_ok($dropped, '>', 0, 'entries that did not fit were dropped and counted');
like($node->safe_psql('postgres', "SELECT status || ': ' || detail FROM opsdata.health() WHERE component = 'audit queue'"),
	qr/^warning: .* $dropped entries dropped/, 'health shows the drops as a warning');

# --- the extended and prepared protocols --------------------------------
$node->safe_psql('postgres', "ALTER SYSTEM SET pg_opsdata.audit = 'all'");
$node->safe_psql('postgres', "ALTER SYSTEM SET pg_opsdata.audit_queue_size = '1MB'");
$node->restart;
$node->command_ok([ 'pgbench', '-i', '-s', '1', '-q', $node->connstr('postgres') ], 'pgbench tables');
$node->safe_psql('postgres', 'SELECT audit.flush()');
my $before = $node->safe_psql('postgres', "SELECT count(*) FROM audit.entries WHERE command = 'UPDATE'");
for my $mode ('extended', 'prepared')
{
	# The scheduler keeps the queue drained while pgbench runs.
	$node->command_ok([ 'pgbench', '-n', '-M', $mode, '-c', '2', '-t', '100', $node->connstr('postgres') ],
		"pgbench -M $mode runs with every statement audited");
}
$node->safe_psql('postgres', 'SELECT audit.flush()');
is($node->safe_psql('postgres', "SELECT count(*) - $before FROM audit.entries WHERE command = 'UPDATE' AND outcome = 'ok'"),
	2 * 2 * 100 * 3, 'every UPDATE of both protocols has its entry');
is($node->safe_psql('postgres', "SELECT count(*) FROM audit.entries WHERE command = 'SELECT' AND rows = 1 AND objects = '{public.pgbench_accounts}'"),
	2 * 2 * 100, 'every SELECT has its entry, with its row');
my $log = slurp_file($node->logfile);
unlike($log, qr/(WARNING|ERROR):.*(stack|leak)/i, 'no stack errors or leaks in the server log');
unlike($log, qr/pgbench.*ERROR:/, 'no pgbench session had an error');

$node->stop;
done_testing();
