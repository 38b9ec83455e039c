# Delivery through the database's scheduler (DESIGN.md contract 3): reads,
# failed statements, rolled-back transactions and logins reach
# audit.entries with nobody calling audit.flush().  A terminated scheduler
# leaves the queue in shared memory, and the next scheduler drains it:
# nothing lost, nothing twice; health warns while nothing drains.  A
# scheduler killed with SIGKILL makes the server restart every process:
# what was written stays, once, and delivery resumes by itself.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('audit_scheduler',
	conf => "pg_opsdata.audit = 'login'\nrestart_after_crash = on\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_opsdata;
	CREATE ROLE app LOGIN;
	ALTER ROLE app SET pg_opsdata.audit = 'read, write, login';
	CREATE ROLE mallory NOLOGIN;
	CREATE TABLE t (id int);
	GRANT SELECT, INSERT ON t TO app;
});

my $scheduler = "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_opsdata scheduler' AND datname = 'postgres'";
ok($node->poll_query_until('postgres', "SELECT EXISTS ($scheduler)"), 'the database has its scheduler');

# Run statements as app; each call is one session (a login and a disconnect).
sub as_app
{
	my ($sql) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $sql, extra_params => [ '-U', 'app' ]);
	return $ret;
}

# --- every kind of queued entry, drained by the scheduler alone ---------
as_app('SELECT count(*) FROM t');
isnt(as_app('SELECT * FROM no_such_table'), 0, 'a statement fails');
as_app('BEGIN; INSERT INTO t VALUES (1); ROLLBACK;');
$node->connect_fails('dbname=postgres user=mallory', 'a login is refused',
	expected_stderr => qr/not permitted to log in/);

ok($node->poll_query_until('postgres',
		"SELECT string_agg(class || ':' || command || ':' || outcome || ':' || coalesce(sqlstate, ''), ',' ORDER BY ts, entry_id)
		   FROM audit.entries WHERE username = 'app' AND class <> 'login'",
		'read:SELECT:ok:,read:SELECT:error:42P01,write:INSERT:rolled back:'),
	'a read, a failed statement and a rolled-back insert reach audit.entries without audit.flush()');
ok($node->poll_query_until('postgres',
		"SELECT count(*) FILTER (WHERE command = 'LOGIN' AND outcome = 'ok') || '/' ||
		        count(*) FILTER (WHERE command = 'DISCONNECT') || '/' ||
		        count(*) FILTER (WHERE username = 'mallory' AND outcome = 'failed' AND sqlstate = '28000')
		   FROM audit.entries WHERE username IN ('app', 'mallory')",
		'3/3/1'),
	'logins, disconnects and the failed login reach audit.entries without audit.flush()');
like($node->safe_psql('postgres', "SELECT status || ': ' || detail FROM opsdata.health() WHERE component = 'audit queue'"),
	qr/^ok: \d+% of 1024 kB used, last drained \d+\.\d s ago; 0 entries dropped, 0 failed writes of the queue\.$/,
	'health: the queue is drained, nothing dropped, no failed write');

# --- a terminated scheduler: the next one drains what waited -------------
# The restarted scheduler comes back after pg_opsdata.restart_delay; long
# enough here to see entries wait, and health warn about it.
$node->safe_psql('postgres', "ALTER SYSTEM SET pg_opsdata.restart_delay = '30s'; SELECT pg_reload_conf()");
my $pid = $node->safe_psql('postgres', $scheduler);
$node->safe_psql('postgres', "SELECT pg_terminate_backend($pid)");
ok($node->poll_query_until('postgres', "SELECT NOT EXISTS ($scheduler)"), 'the scheduler is terminated');
my $markers = 40;
as_app(join('', map { "SELECT 'waiting $_' AS marker;\n" } 1 .. $markers));
cmp_ok($node->safe_psql('postgres', 'SELECT used FROM audit.queue_state() WHERE database = current_database()'),
	'>', 0, 'without a scheduler the entries wait in the queue');
ok($node->poll_query_until('postgres',
		"SELECT status FROM opsdata.health() WHERE component = 'audit queue'", 'warning'),
	'health warns when entries wait and nothing drains the queue');
like($node->safe_psql('postgres', "SELECT detail FROM opsdata.health() WHERE component = 'audit queue'"),
	qr/nothing drained the queue lately: is the pg_opsdata scheduler of this database running/,
	'health says why');
$node->safe_psql('postgres', "ALTER SYSTEM RESET pg_opsdata.restart_delay; SELECT pg_reload_conf()");
my $marked = "SELECT count(*) || '/' || count(DISTINCT statement_text) FROM audit.trail
		WHERE statement_text LIKE 'SELECT ''%s %%'' AS marker'";
ok($node->poll_query_until('postgres', sprintf($marked, 'waiting'), "$markers/$markers"),
	'the restarted scheduler drains every entry that waited, each once');
ok($node->poll_query_until('postgres',
		"SELECT status FROM opsdata.health() WHERE component = 'audit queue'", 'ok'),
	'health is ok again once the queue is drained');

# --- a scheduler killed with SIGKILL: the server restarts ----------------
$node->safe_psql('postgres', "ALTER ROLE app SET pg_opsdata.audit = 'read, write'");
my $script = $node->basedir . '/load.sql';
append_to_file($script, "SELECT count(*) FROM t WHERE id = :client_id;\nINSERT INTO t VALUES (:client_id);\n");
my ($out, $err) = ('', '');
my $load = IPC::Run::start(
	[ 'pgbench', '-n', '-c', '2', '-T', '20', '-f', $script, $node->connstr('postgres') . ' user=app' ],
	'>', \$out, '2>', \$err);
ok($node->poll_query_until('postgres',
		"SELECT count(*) > 200 FROM audit.entries WHERE username = 'app' AND command = 'SELECT' AND rows IS NOT NULL"),
	'under load, the scheduler drains the reads');
$pid = $node->safe_psql('postgres', $scheduler);
my $offset = -s $node->logfile;
kill 'KILL', $pid;
$load->finish;
ok(opsdata_wait_up($node, $offset), 'the server restarts every process after the kill and accepts connections again');
ok($node->poll_query_until('postgres', "SELECT EXISTS ($scheduler)"), 'a new scheduler runs');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM (SELECT backend_pid, ts, statement_id FROM audit.entries
		   GROUP BY 1, 2, 3 HAVING count(*) > 1) d"),
	'0', 'no entry written before the kill is there twice');
is($node->safe_psql('postgres', 'SELECT count(*) FROM t') + 0,
	$node->safe_psql('postgres',
		"SELECT count(*) FROM audit.entries WHERE username = 'app' AND command = 'INSERT' AND outcome = 'ok'") + 0,
	'every committed insert of the load has its entry');
as_app(join('', map { "SELECT 'after $_' AS marker;\n" } 1 .. $markers));
ok($node->poll_query_until('postgres', sprintf($marked, 'after'), "$markers/$markers"),
	'after the restart the new scheduler drains new entries by itself');
is($node->safe_psql('postgres', "SELECT status FROM opsdata.health() WHERE component = 'audit queue'"),
	'ok', 'health is ok after the restart');
unlike(slurp_file($node->logfile), qr/ERROR:.*(audit|queue)/, 'no audit error in the server log');

$node->stop;
done_testing();
