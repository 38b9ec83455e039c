# Nothing holds the audit queue for long, and nobody waits for it forever.
#
# - A transaction left open after audit.flush() does not keep the drain:
#   the scheduler drains beside it; what the flush took goes back into the
#   queue when its transaction or savepoint is rolled back; such a
#   transaction cannot be prepared.
# - A session holding a lock that blocks the drain: the scheduler does not
#   wait for it (it counts the failure and tries again), sessions waiting
#   for room in the full queue honour cancel, statement_timeout,
#   pg_opsdata.audit_overflow_timeout and termination, each with a clear
#   error; once the lock is gone the queue drains, and every statement that
#   completed has its entry.
# - A transaction holding that lock itself does not wait for its own
#   entries: it writes them.  A session that finds the queue full while a
#   partition it would write is locked waits for the queue, not the lock.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('queue_hold',
	conf => "pg_opsdata.audit = 'read'\npg_opsdata.audit_queue_size = 64kB\n"
	  . "max_prepared_transactions = 2\n"
	  # Small batches wait for the scheduler long enough for a flush to
	  # take them (a filling queue wakes it at once).
	  . "pg_opsdata.audit_flush_interval = 10s\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_opsdata');
# The test's own sessions are not audited: only the ones it starts to fill
# the queue are, so that watching never waits for the queue.
$ENV{PGOPTIONS} = '-c pg_opsdata.audit=none';
opsdata_wait_audit_partitioned($node);

# A psql running a script of numbered reads tagged with a name, in the
# background; each read that completes prints its number.  $setup runs
# before auditing is on, $first is audited before the reads.
my %runs;
sub start_reads
{
	my ($name, $n, $setup, $first) = @_;
	my $file = $node->basedir . "/$name.sql";
	PostgreSQL::Test::Utils::append_to_file($file,
		($setup // '') . "SET pg_opsdata.audit = 'read';\n" . ($first // '') . join('', map { "SELECT $_ AS ${name}_padding_padding_padding_padding_padding;\n" } 1 .. $n));
	my $run = { out => '', err => '' };
	$run->{h} = IPC::Run::start(
		[ 'psql', '-X', '-At', '-q', '-v', 'ON_ERROR_STOP=1',
		  '-d', $node->connstr('postgres') . " application_name=$name", '-f', $file ],
		'>', \$run->{out}, '2>', \$run->{err},
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	$runs{$name} = $run;
	return $run;
}

# Wait for a run to end; true when its psql succeeded.
sub finish_run
{
	my ($run) = @_;
	my $ok = eval { $run->{h}->finish };
	if ($@)
	{
		$run->{h}->kill_kill;
		$run->{err} .= "timed out: $@";
		return 0;
	}
	return $ok;
}

# Entries of the reads of a run that are "ok" in the trail.
sub entries_of
{
	my ($name) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT count(*) FROM audit.trail
		 WHERE statement_text ~ '^SELECT [0-9]+ AS ${name}_padding' AND outcome = 'ok'});
}

sub waiting
{
	my ($name) = @_;
	return $node->poll_query_until('postgres', qq{
		SELECT EXISTS (SELECT FROM pg_stat_activity
						WHERE application_name = '$name' AND wait_event_type = 'Extension')});
}

# --- a transaction left open after audit.flush() --------------------------
# It writes entries the queue held, and the texts of their statements, in
# its transaction.  (Should the scheduler drain the first reads before the
# flush, their text is stored already: it is tried again with new ones.)
# The session that fills the queue then runs a statement of the same text
# first: neither the scheduler nor that session waits for the row of the
# text that the open transaction has not committed.
my $holder = $node->background_psql('postgres');
my ($run, $taken, $shared);
my $text_held = 0;
for my $try (1 .. 5)
{
	$run = start_reads("before$try", 5);
	finish_run($run);
	$holder->query_safe('BEGIN');
	$taken = $holder->query_safe('SELECT audit.flush()');
	$shared = "SELECT 1 AS before${try}_padding_padding_padding_padding_padding;\n";
	$text_held = $taken > 0 && $node->safe_psql('postgres',
		"SELECT count(*) FROM audit.statements WHERE statement_text ~ 'AS before${try}_padding'") == 0;
	last if $text_held;
	$holder->query_safe('ROLLBACK');
}
ok($text_held, 'an open transaction flushed queued entries and stored their new text');
$run = start_reads('beside', 1500, undef, $shared);
ok(finish_run($run), 'a session filling the queue completes while a transaction that flushed stays open')
  or diag($run->{err});
ok($node->poll_query_until('postgres',
		"SELECT count(*) FROM audit.trail WHERE statement_text ~ '^SELECT [0-9]+ AS beside_padding'", '1500'),
	'the scheduler drains beside the open transaction')
  or diag($node->safe_psql('postgres',
		"SELECT backend_type, wait_event_type, wait_event, query FROM pg_stat_activity WHERE wait_event_type = 'Lock'"));
$holder->query_safe('COMMIT');

# What a flush took goes back into the queue when its transaction is rolled
# back.  The flushing session holds a lock the scheduler needs, so that the
# reads wait in the queue for its flush.
$holder->query_safe('BEGIN; LOCK audit.entries_default IN ACCESS EXCLUSIVE MODE');
$run = start_reads('taken', 20);
finish_run($run);
cmp_ok($holder->query_safe('SELECT audit.flush()'), '>=', 20, 'the flush takes the queued reads');
$holder->query_safe('ROLLBACK');
ok($node->poll_query_until('postgres', "SELECT count(*) = 20 FROM audit.trail WHERE statement_text ~ '^SELECT [0-9]+ AS taken_padding'"),
	'after the rollback of the flush, its entries are drained once each');

$holder->query_safe('BEGIN; LOCK audit.entries_default IN ACCESS EXCLUSIVE MODE');
$run = start_reads('savepoint', 20);
finish_run($run);
$holder->query_safe('SAVEPOINT s');
my $first = $holder->query_safe('SELECT audit.flush()');
$holder->query_safe('ROLLBACK TO s');
is($holder->query_safe('SELECT audit.flush()'), $first,
	'a flush rolled back to a savepoint puts its entries back, and the next flush takes them again');
$holder->query_safe('COMMIT');
is(entries_of('savepoint'), '20', 'they are written once');

$holder->quit;
my ($ret, $stdout, $stderr) = $node->psql('postgres',
	"BEGIN; SELECT audit.flush(); PREPARE TRANSACTION 'flushed'");
like($stderr, qr/cannot PREPARE a transaction that has run audit.flush\(\)/,
	'a transaction that flushed cannot be prepared');

# --- a lock that blocks the drain ------------------------------------------
my $locker = $node->background_psql('postgres');
$locker->query_safe('BEGIN; LOCK audit.entries_default IN ACCESS EXCLUSIVE MODE');
my $errors0 = $node->safe_psql('postgres',
	'SELECT failed_writes FROM audit.queue_state() WHERE database = current_database()');
start_reads('filler', 1500);
ok(waiting('filler'), 'a session filling the queue waits for room');
ok($node->poll_query_until('postgres', qq{
	SELECT failed_writes >= $errors0 + 2 FROM audit.queue_state() WHERE database = current_database()}),
	'the scheduler does not wait for the lock: it fails, and tries again');
like($node->safe_psql('postgres', q{SELECT status || ': ' || detail FROM opsdata.health() WHERE component = 'audit queue'}),
	qr/^error: .*The last write of the queue failed \(.*lock timeout\)/,
	'health says why the queue is not drained');

start_reads('stmt_timeout', 10, "SET statement_timeout = '2s';\n");
start_reads('overflow_timeout', 10, "SET pg_opsdata.audit_overflow_timeout = '2s';\n");
start_reads('terminated', 10);
ok(waiting('terminated'), 'every session audited now waits');
$node->safe_psql('postgres', "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'filler'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'terminated'");
finish_run($runs{$_}) for qw(filler stmt_timeout overflow_timeout terminated);
like($runs{filler}{err}, qr/ERROR:  canceling statement due to user request/, 'a waiting session can be cancelled');
like($runs{stmt_timeout}{err}, qr/ERROR:  canceling statement due to statement timeout/,
	'a waiting session honours statement_timeout');
like($runs{overflow_timeout}{err},
	qr/ERROR:  audit queue of database "postgres" is full\nDETAIL:  The statement's audit entries waited 2000 ms for room in the queue \(pg_opsdata.audit_overflow_timeout\)/,
	'a wait ends with a clear error after pg_opsdata.audit_overflow_timeout');
like($runs{terminated}{err}, qr/terminating connection due to administrator command/,
	'a waiting session can be terminated');

# The lock holder's own reads do not wait for the queue it blocks.
$locker->query_safe("SET pg_opsdata.audit = 'read'");
$locker->query_safe('SELECT 1 AS locker_padding_padding_padding_padding_padding');
$locker->query_safe('COMMIT');
$locker->quit;
is(entries_of('locker'), '1', 'the transaction holding the lock wrote its own entries');

# Once the lock is gone, every read that completed has its entry.
for my $name (qw(filler stmt_timeout overflow_timeout terminated))
{
	my $completed = () = $runs{$name}{out} =~ /^\d+$/mg;
	ok($node->poll_query_until('postgres', qq{
		SELECT count(*) = $completed FROM audit.trail
		 WHERE statement_text ~ '^SELECT [0-9]+ AS ${name}_padding' AND outcome = 'ok'}),
		"$name: the $completed reads that completed are in the trail");
}

# A lock on the partition of the day, not on the default partition: a
# session that finds the queue full waits for room (and gives up with the
# queue's error), never for that lock.
my $day = $node->safe_psql('postgres', q{
	SELECT partition FROM opsdata.show_partitions('audit.entries')
	 WHERE now() >= lower_bound::timestamptz AND now() < upper_bound::timestamptz});
$locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; LOCK $day IN ACCESS EXCLUSIVE MODE");
$run = start_reads('day_locked', 1500, "SET pg_opsdata.audit_overflow_timeout = '2s';\n");
finish_run($run);
like($run->{err}, qr/ERROR:  audit queue of database "postgres" is full/,
	'with the partition of the day locked, a full queue still ends in the queue\'s error');
$locker->query_safe('COMMIT');
$locker->quit;
my $completed = () = $run->{out} =~ /^\d+$/mg;
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) = $completed FROM audit.trail
	 WHERE statement_text ~ '^SELECT [0-9]+ AS day_locked_padding' AND outcome = 'ok'}),
	"day_locked: the $completed reads that completed are in the trail");

# A transaction that writes its own entries while the queue is full (it
# holds the lock the drain needs) and then rolls back to a savepoint:
# the rows it wrote inside the savepoint vanished with it, and those
# entries are written again at commit.  (Reads it had queued before are in
# the queue already, as they completed.)
{
	my $file = $node->basedir . '/savepoint_fill.sql';
	PostgreSQL::Test::Utils::append_to_file($file,
		"BEGIN;\nLOCK audit.entries_default IN ACCESS EXCLUSIVE MODE;\nSAVEPOINT s;\n"
		  . "SET pg_opsdata.audit = 'read';\n"
		  . join('', map { "SELECT $_ AS savepoint_fill_padding_padding_padding_padding_padding;\n" } 1 .. 1500)
		  . "ROLLBACK TO SAVEPOINT s;\nCOMMIT;\n");
	my ($ret, $out, $err) = $node->psql('postgres', undef, extra_params => [ '-f', $file ]);
	is($ret, 0, 'a transaction filling the queue while it holds the lock of the drain commits') or diag($err);
	ok($node->poll_query_until('postgres', q{
		SELECT count(*) = 1500 AND count(DISTINCT statement_text) = 1500
		   AND count(*) FILTER (WHERE outcome = 'rolled back') > 0
		  FROM audit.trail WHERE statement_text ~ '^SELECT [0-9]+ AS savepoint_fill_padding'}),
		'every read of its rolled-back savepoint is in the trail once, those it wrote itself included');
}

$node->stop;
done_testing();
