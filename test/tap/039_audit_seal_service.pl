# The sealing service of the scheduler.  Entries commit out of the order of
# their ids: a transaction that took ids and commits late (a prepared one,
# one writing entries directly) holds the seals back below its ids, so that
# every entry ends up in exactly one seal; a long transaction that wrote no
# entry holds nothing back.  A scheduler killed with SIGKILL in the middle
# of a sealing round leaves a chain that verifies, and sealing resumes where
# it stopped, without a gap and without sealing anything twice.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('audit_seal_service',
	conf => "pg_opsdata.audit_seal_interval = '100ms'\nmax_prepared_transactions = 4\n"
	  . "restart_after_crash = on\n"
	  # Jobs are read again only when they change: what the scheduler shows
	  # after a sealing round is not replaced by that.
	  . "pg_opsdata.check_interval = '1h'\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_opsdata;
	SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
	CREATE TABLE t (id int);
	CREATE ROLE app LOGIN;
	GRANT INSERT, SELECT ON t TO app;
	ALTER ROLE app SET pg_opsdata.audit = 'write';
});
my $scheduler = q{SELECT pid FROM pg_stat_activity
				   WHERE backend_type = 'pg_opsdata scheduler' AND datname = 'postgres'};
ok($node->poll_query_until('postgres', "SELECT EXISTS ($scheduler)"), 'the database has its scheduler');

# Every committed entry is in exactly one seal, and the trail verifies.
my $sealed_once = q{
	SELECT count(*) FILTER (WHERE n <> 1) || '/' || count(*) FROM (
		SELECT (SELECT count(*) FROM audit.seals s WHERE s.kind = 'entries' AND s.entry_ids @> e.entry_id) AS n
		  FROM audit.entries e) c};
my $all_sealed = q{
	SELECT count(*) = 0 FROM audit.entries
	 WHERE entry_id > coalesce((SELECT max(last_entry_id) FROM audit.seals WHERE kind = 'entries'),
							   -9223372036854775808)};

# --- transactions that commit late ------------------------------------------
$node->safe_psql('postgres', 'INSERT INTO t VALUES (0)', extra_params => [ '-U', 'app' ]);

# A long transaction that wrote no entry, open from the start.
my $reader = $node->background_psql('postgres');
$reader->query_safe('SELECT 1');
$reader->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$reader->query_safe('SELECT count(*) FROM t');

# A prepared transaction: its entry was written at PREPARE, its id taken.
my $before = $node->safe_psql('postgres', 'SELECT max(entry_id) FROM audit.entries');
my $prepared = $node->background_psql('postgres', extra_params => [ '-U', 'app' ]);
$prepared->query_safe('BEGIN');
$prepared->query_safe('INSERT INTO t VALUES (-1)');
$prepared->query_safe("PREPARE TRANSACTION 'late'");
my $prepared_xid = $node->safe_psql('postgres', "SELECT transaction FROM pg_prepared_xacts WHERE gid = 'late'");

# A transaction that writes an entry itself and stays open.
my $writer = $node->background_psql('postgres');
$writer->query_safe('BEGIN');
my $late = $writer->query_safe(q{
	INSERT INTO audit.entries (database, username, current_user_name, backend_pid, class, command, outcome)
	VALUES (current_database(), 'late', 'late', pg_backend_pid(), 'write', 'INSERT', 'ok') RETURNING entry_id});
cmp_ok($late, '>', $before, "the open transactions hold entries above $before");

# Audited load meanwhile: entries with higher ids commit.
my $script = $node->basedir . '/load.sql';
append_to_file($script, "INSERT INTO t VALUES (:client_id);\n");
$node->command_ok([ 'pgbench', '-n', '-c', '4', '-t', '100', '-f', $script,
		$node->connstr('postgres') . ' user=app' ], 'audited load commits entries after them');
cmp_ok($node->safe_psql('postgres', "SELECT count(*) FROM audit.entries WHERE entry_id > $late"), '>=', 400,
	'entries above the open ones are committed');

ok($node->poll_query_until('postgres',
		"SELECT coalesce(max(last_entry_id), 0) >= $before FROM audit.seals WHERE kind = 'entries'"),
	'the service seals what committed before the prepared entry, the long reader open or not');
# audit.seal() waits for the transactions that hold entries: with a timeout
# it gives up, and the service has not sealed past them either.
my ($ret, $out, $err) = $node->psql('postgres', "SET statement_timeout = '2s'; SELECT audit.seal()");
like($err, qr/statement timeout/, 'audit.seal() waits for the transactions holding entry ids');
my $window = $node->safe_psql('postgres', "SELECT max(last_entry_id) FROM audit.seals WHERE kind = 'entries'");
cmp_ok($window, '<', $late, 'no seal covers the id of the open writer');
isnt($node->safe_psql('postgres', $all_sealed), 't', 'the entries above the open transactions wait');
my $seals_open = $node->safe_psql('postgres', 'SELECT max(seal_id) FROM audit.seals');

$writer->query_safe('COMMIT');
$writer->quit;
$node->safe_psql('postgres', "COMMIT PREPARED 'late'");
ok($node->poll_query_until('postgres', $all_sealed), 'once they commit, everything is sealed');
my $late_prepared = $node->safe_psql('postgres',
	"SELECT entry_id FROM audit.entries WHERE xid::text::bigint % 4294967296 = $prepared_xid");
ok($late_prepared > $before && $late_prepared < $late, "the prepared transaction's entry is $late_prepared");
cmp_ok($window, '<', $late_prepared, 'no seal covered the prepared entry while it was prepared');
is($node->safe_psql('postgres',
		"SELECT bool_and(seal_id > $seals_open) FROM audit.seals WHERE entry_ids \@> ANY (ARRAY[$late_prepared, $late]::bigint[])"),
	't', 'the entries that committed late are in seals made after they committed');
is($node->safe_psql('postgres', $sealed_once), '0/' . $node->safe_psql('postgres', 'SELECT count(*) FROM audit.entries'),
	'every entry is in exactly one seal, the late ones included');
is($node->safe_psql('postgres', 'SELECT status FROM audit.verify()'), 'intact', 'the trail verifies');
$reader->query_safe('COMMIT');
$reader->quit;

# --- kill -9 in the middle of a sealing round --------------------------------
# A first batch of entries is sealed; a second one, each entry with a
# statement text of its own, is being sealed when the scheduler is killed:
# the round waits for audit.statements, locked by another session, after
# reading its entries and holding the chain's lock.
$node->safe_psql('postgres', q{
	INSERT INTO audit.statements (statement_id, statement_text)
	SELECT -i, 'SELECT ' || i || ' AS batch' FROM generate_series(1, 40000) i;
	INSERT INTO audit.entries (database, username, current_user_name, backend_pid, class, command, outcome, statement_id)
	SELECT current_database(), 'batch1', 'batch1', 1, 'read', 'SELECT', 'ok', -i FROM generate_series(1, 20000) i;});
ok($node->poll_query_until('postgres', $all_sealed), 'the first batch is sealed');
my $seals_before = $node->safe_psql('postgres', 'SELECT max(seal_id) FROM audit.seals');

my $locker = $node->background_psql('postgres', on_error_stop => 0);
$locker->query_safe('BEGIN');
$locker->query_safe('LOCK TABLE audit.statements IN ACCESS EXCLUSIVE MODE');
$node->safe_psql('postgres', q{
	INSERT INTO audit.entries (database, username, current_user_name, backend_pid, class, command, outcome, statement_id)
	SELECT current_database(), 'batch2', 'batch2', 1, 'read', 'SELECT', 'ok', -i FROM generate_series(20001, 40000) i;});
my $pid = $node->safe_psql('postgres', $scheduler);
ok($node->poll_query_until('postgres', qq{
		SELECT EXISTS (SELECT FROM pg_locks WHERE pid = $pid AND relation = 'audit.statements'::regclass AND NOT granted)
		   AND EXISTS (SELECT FROM pg_locks WHERE pid = $pid AND relation = 'audit.seals'::regclass
					     AND mode = 'ShareRowExclusiveLock' AND granted)
		   AND EXISTS (SELECT FROM pg_stat_activity WHERE pid = $pid AND query LIKE '%sealing%')}),
	'the scheduler is in a sealing round, holding the chain');
my $offset = -s $node->logfile;
my $killed_at = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
kill 'KILL', $pid;
ok($node->wait_for_log(qr/all server processes terminated; reinitializing/, $offset),
	'SIGKILL of the scheduler restarts every process');
$locker->{run}->kill_kill;
ok(opsdata_wait_up($node, $offset), 'the server accepts connections again');
# The restarted scheduler may seal at once: only seals made before the kill
# would be the killed round's.
is($node->safe_psql('postgres',
		"SELECT count(*) FROM audit.seals WHERE seal_id > $seals_before AND sealed_at < '$killed_at'"), '0',
	'the killed round left no seal');
is($node->safe_psql('postgres', 'SELECT status FROM audit.verify()'), 'intact',
	'the chain the kill left verifies');
ok($node->poll_query_until('postgres', $all_sealed), 'a new scheduler seals the rest');
is($node->safe_psql('postgres', $sealed_once), '0/' . $node->safe_psql('postgres', 'SELECT count(*) FROM audit.entries'),
	'every entry is in exactly one seal: no gap, nothing sealed twice');
is($node->safe_psql('postgres', 'SELECT status FROM audit.verify()'), 'intact', 'the whole trail verifies');
is($node->safe_psql('postgres',
		'SELECT bool_and(s.seal_id = p.seal_id + 1 AND s.prev_hash = p.hash) FROM audit.seals s JOIN audit.seals p ON p.seal_id = s.seal_id - 1'),
	't', 'the chain goes on from the seal before the kill');
is($node->safe_psql('postgres', "SELECT status FROM opsdata.health() WHERE component = 'audit seals'"), 'ok',
	'health is ok');

# Once a sealing round is over, pg_stat_activity no longer says that the
# scheduler seals: what it showed before the round is shown again.
$node->safe_psql('postgres', q{
	INSERT INTO audit.entries (database, username, current_user_name, backend_pid, class, command, outcome)
	VALUES (current_database(), 'last', 'last', 1, 'write', 'INSERT', 'ok')});
ok($node->poll_query_until('postgres', $all_sealed), 'a last entry is sealed');
my $idle = qq{SELECT state FROM pg_stat_activity WHERE pid = ($scheduler)};
ok($node->poll_query_until('postgres', "SELECT ($idle) = 'idle'"), 'the scheduler waits');
is($node->safe_psql('postgres', qq{SELECT state || ': ' || query FROM pg_stat_activity WHERE pid = ($scheduler)})
	  =~ /sealing/ ? 'sealing' : 'not sealing', 'not sealing',
	'an idle scheduler does not say that it seals');

$node->stop;
done_testing();
