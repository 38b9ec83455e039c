# Audit processing queues where only a real server shows it: kill -9 while
# producers and consumers work loses no committed item and delivers again
# only items that were not acknowledged; a waiting read is woken by the
# producer's commit; a subscription receives failed logins; the upkeep
# moves the head and removes acknowledged items past their retention.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use OpsdataTest;

my $node = opsdata_node('audit_queues',
	conf => "pg_opsdata.audit = 'login'\nrestart_after_crash = on\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_opsdata;
	SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin AND name LIKE 'audit queue%';
	SELECT audit.create_queue('work');
	-- What producers committed, and every delivery and acknowledgement
	-- consumers made, each in the transaction that made it.
	CREATE TABLE produced (item_id bigint PRIMARY KEY);
	CREATE TABLE log (seq bigserial PRIMARY KEY, item_id bigint NOT NULL, what text NOT NULL);
	CREATE PROCEDURE produce(n int) LANGUAGE plpgsql AS $$
	BEGIN
		FOR i IN 1..n LOOP
			INSERT INTO produced VALUES (audit.enqueue('work', jsonb_build_object('i', i)));
			COMMIT;
		END LOOP;
	END $$;
	CREATE PROCEDURE consume(max_batches int, vt interval, wait interval) LANGUAGE plpgsql AS $$
	DECLARE
		ids bigint[];
	BEGIN
		FOR b IN 1..max_batches LOOP
			SELECT array_agg(item_id) INTO ids FROM audit.read('work', 10, vt, wait);
			EXIT WHEN ids IS NULL;
			INSERT INTO log (item_id, what) SELECT unnest(ids), 'read';
			COMMIT;
			PERFORM pg_sleep(0.005); -- the work
			PERFORM audit.ack(ids);
			INSERT INTO log (item_id, what) SELECT unnest(ids), 'acked';
			COMMIT;
		END LOOP;
	END $$;
});

# --- kill -9 under load ----------------------------------------------------
my @load;
for my $call ('CALL produce(100000)', 'CALL produce(100000)',
	"CALL consume(1000000, '10 seconds', '1 second')", "CALL consume(1000000, '10 seconds', '1 second')")
{
	my ($out, $err) = ('', '');
	push @load, IPC::Run::start([ 'psql', '-X', '-q', '-d', $node->connstr('postgres'), '-c', $call ],
		'>', \$out, '2>', \$err);
}
$node->poll_query_until('postgres', q{SELECT count(*) > 300 FROM log WHERE what = 'acked'})
  or die 'the consumers do not consume';
$node->kill9;
for my $h (@load) { eval { $h->finish; }; }
# The killed postmaster's sessions exit when they notice: the new server
# starts once they have.
opsdata_wait_old_server_gone($node);
$node->start;
ok($node->poll_query_until('postgres', 'SELECT true'), 'the server is back after kill -9');

my $before = $node->safe_psql('postgres', q{
	SELECT (SELECT count(*) FROM produced) || ' produced, '
		   || (SELECT count(DISTINCT item_id) FROM log WHERE what = 'acked') || ' acknowledged'});
note "before draining: $before";
# Items leased by the killed consumers come back once their lease ends.
$node->safe_psql('postgres', q{CALL consume(1000000, '1 minute', '15 seconds')});

is($node->safe_psql('postgres', q{
	SELECT count(*) FROM produced p
	 WHERE NOT EXISTS (SELECT FROM log l WHERE l.item_id = p.item_id AND l.what = 'acked')}),
	'0', 'every item committed before the crash is consumed and acknowledged: nothing is lost');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM audit.queue_items i WHERE i.acked_at IS NULL}),
	'0', 'the queue holds nothing unacknowledged');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM audit.queue_items i
	 WHERE i.acked_at IS NOT NULL AND NOT EXISTS (SELECT FROM produced p WHERE p.item_id = i.item_id)}),
	'0', 'no acknowledged item that a producer did not commit');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM log r JOIN log a ON a.item_id = r.item_id AND a.what = 'acked' AND a.seq < r.seq
	 WHERE r.what = 'read'}),
	'0', 'an item is never delivered again after its acknowledgement committed');
my $again = $node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT item_id FROM log WHERE what = 'read' GROUP BY item_id HAVING count(*) > 1) d});
note "$again items were delivered more than once (read but not acknowledged when the server was killed)";
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM (SELECT item_id FROM log WHERE what = 'acked' GROUP BY item_id HAVING count(*) > 1) d}),
	'0', 'no item is acknowledged twice');

# --- long polling ------------------------------------------------------------
$node->safe_psql('postgres', q{SELECT audit.create_queue('wake')});
my ($wout, $werr) = ('', '');
my $t0 = time();
my $waiter = IPC::Run::start(
	[ 'psql', '-X', '-At', '-d', $node->connstr('postgres'), '-c',
	  q{SELECT payload->>'hello' FROM audit.read('wake', 1, '1 minute', wait => '60 seconds')} ],
	'>', \$wout, '2>', \$werr);
$node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity WHERE query LIKE '%audit.read(''wake''%' AND wait_event_type = 'Extension'})
  or die 'the read does not wait';
my $t1 = time();
$node->safe_psql('postgres', q{SELECT audit.enqueue('wake', '{"hello": "world"}')});
$waiter->finish;
my $woken = time() - $t1;
is($wout, "world\n", 'a waiting read returns the item enqueued while it waited');
cmp_ok($woken, '<', 10, sprintf('it is woken by the commit (%.2f s), not by the end of its 60 s wait', $woken));

# --- a subscription on failed logins -------------------------------------------
$node->safe_psql('postgres', q{
	SET password_encryption = 'scram-sha-256';
	CREATE ROLE alice LOGIN PASSWORD 'right';
	CREATE ROLE shipper LOGIN IN ROLE opsdata_auditor;
	SELECT audit.subscribe('failed_logins', classes => '{login}', outcomes => '{failed}');
});
my $hba = $node->data_dir . '/pg_hba.conf';
my $old = slurp_file($hba);
open(my $fh, '>', $hba) or die $!;
print $fh "local all alice scram-sha-256\n$old";
close $fh;
$node->reload;
$node->connect_fails('dbname=postgres user=alice password=wrong', 'a wrong password is refused',
	expected_stderr => qr/password authentication failed/);
$node->connect_ok('dbname=postgres user=alice password=right', 'the right password is accepted');
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM audit.queue_items i JOIN audit.queues q USING (queue_id) WHERE q.name = 'failed_logins'}),
	'the failed login reaches the subscription once the scheduler writes it');
is($node->safe_psql('postgres', q{
	SELECT concat_ws(' ', payload->>'username', payload->>'outcome', payload->>'sqlstate')
	  FROM audit.read('failed_logins', 10)}, extra_params => [ '-U', 'shipper' ]),
	'alice failed 28P01', 'an auditor reads it, and only the failed login');

# --- upkeep: head and retention ------------------------------------------------
$node->safe_psql('postgres', q{
	SELECT audit.create_queue('short', retention => '1 second');
	SELECT audit.enqueue_many('short', array_agg(jsonb_build_object('i', i))) FROM generate_series(1, 20) i;
	SELECT audit.ack(array_agg(item_id)) FROM audit.read('short', 15);
});
# A run takes the head the previous one found once every transaction then
# running has ended; acknowledged items below it are removed after their
# retention.
ok($node->poll_query_until('postgres', q{
	SELECT audit._queue_upkeep() >= 0
	   AND (SELECT count(*) FROM audit.queue_items i JOIN audit.queues q USING (queue_id) WHERE q.name = 'short') = 5}),
	'acknowledged items past their retention are removed');
is($node->safe_psql('postgres', q{
	SELECT q.head = min(i.item_id) FROM audit.queues q JOIN audit.queue_items i USING (queue_id)
	 WHERE q.name = 'short' GROUP BY q.head}),
	't', 'the head is the first item not acknowledged');
is($node->safe_psql('postgres', q{SELECT count(*) FROM audit.read('short', 10)}), '5',
	'the items after the head are still delivered');
$node->safe_psql('postgres', 'SELECT audit._queue_job()');
is($node->safe_psql('postgres', q{
	SELECT count(*) FROM metrics.series WHERE name LIKE 'audit.queue.%' AND tags->>'queue' = 'short'}),
	'4', 'the job records the depth, leases, oldest age and dead letters of each queue as metrics');

# --- a clean restart keeps the read positions safe --------------------------
$node->safe_psql('postgres', q{SELECT audit.enqueue('short', '{"after": "restart"}')});
$node->restart;
is($node->safe_psql('postgres', q{SELECT payload->>'after' FROM audit.read('short', 10)}), 'restart',
	'after a restart a read finds the items past the head');

$node->stop;
done_testing();
