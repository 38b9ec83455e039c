# Logical replication (doc/scale-out.md): a publisher publishes audit.entries,
# audit.statements and metrics.series, metrics.points and metrics.rollups
# with publish_via_partition_root to a subscriber that has pg_opsdata too,
# audits its own statements and maintains its own partitions.
#
# While rows stream (audit entries and points, some of them landing in the
# default partitions on both sides), partition maintenance runs on both:
# on the publisher it moves rows out of the default partitions, which is
# published as a delete and an insert; on the subscriber it moves the rows
# the apply worker put into its default partitions.  At the end the
# subscriber has exactly the publisher's rows: its own entries beside the
# publisher's (entry_ids collide, server_id tells them apart), every
# replicated statement shape, the series, the points and the rollups, the
# rollups not counted twice (the subscriber does not roll up replicated
# points: they arrive with their rollups).  The apply worker never failed:
# not on the guard triggers of the subscriber's tables (ENABLE ALWAYS, they
# fire on apply and let the superuser who owns the subscription through),
# not on its maintenance, not on a shape it had stored already, and its
# writes are not audited.  Once its owner is no longer a superuser, the guard refuses
# it, and nothing is lost: made superuser again, it catches up.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $conf = "pg_opsdata.audit = 'write, ddl'\nwal_retrieve_retry_interval = '100ms'\n";
my $pub = opsdata_node('publisher', conf => $conf, init => { allows_streaming => 'logical' });
my $sub = opsdata_node('subscriber', conf => $conf);
$_->start for $pub, $sub;

# The same schema on both; built-in jobs paused, so that the test runs
# maintenance and rollups itself: until the first pass, the partitioned
# tables have only their default partitions.  A subscriber of the metrics records no
# metrics of its own: its vital signs are paused with the rest.
for my $node ($pub, $sub)
{
	$node->safe_psql('postgres', 'CREATE DATABASE app');
	$node->safe_psql('app', q{
		BEGIN;
		CREATE EXTENSION pg_opsdata;
		SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
		COMMIT;
		SELECT opsdata.set_setting('partition.lock_timeout', '2 seconds');
		SELECT opsdata.set_setting('partition.retry_delay', '50 milliseconds');
		CREATE TABLE public.orders (id int, note text);
	});
}
my $pub_id = $pub->safe_psql('app', 'SELECT audit.server_id()');
my $sub_id = $sub->safe_psql('app', 'SELECT audit.server_id()');
isnt($pub_id, $sub_id, 'each server has its own identifier');
is($pub->safe_psql('app', q{SELECT count(*) FROM audit.entries WHERE server_id <> audit.server_id()}), '0',
	'the entries a server writes carry its identifier');

# Rows before the subscription: copied by its initial synchronization.
$pub->safe_psql('app', q{
	INSERT INTO public.orders VALUES (1, 'before');
	SELECT count(metrics.record('requests', i, '{"route": "/a"}', now() - i * interval '1 minute'))
	  FROM generate_series(1, 50) i;
	SELECT metrics.rollup();
});
$pub->safe_psql('app', q{
	CREATE PUBLICATION opsdata_pub
		FOR TABLE audit.entries, audit.statements, metrics.series, metrics.points, metrics.rollups
		WITH (publish_via_partition_root = true);
});
# The subscriber has stored a statement shape the publisher stores, and
# sends, later.
$sub->safe_psql('app', q{UPDATE public.orders SET note = 'both' WHERE id = 7});
my $pub_connstr = $pub->connstr . ' dbname=app';
$sub->safe_psql('app', qq{CREATE SUBSCRIPTION opsdata_sub CONNECTION '$pub_connstr' PUBLICATION opsdata_pub});
$sub->wait_for_subscription_sync($pub, 'opsdata_sub', 'app');
$pub->safe_psql('app', q{UPDATE public.orders SET note = 'both' WHERE id = 1});

# Rows stream from a session of the publisher: audited writes (into the
# default partition until today's partition is made), points recorded
# now, and points of the days past premake, which land in the default
# partition.  Maintenance runs on both sides, several times, each run
# once the session has begun a batch of rows of its own: the session runs
# the batch at its own pace while the maintenance runs.  The test then
# waits for the session to have run every batch.  Each wait is bounded by
# the harness's timeout, restarted for each.
my $batch = 0;
sub stream
{
	my ($bg, $from, $to) = @_;
	$batch++;
	my $sql = "\\echo batch $batch\n";
	for my $i ($from .. $to)
	{
		my $day = 10 + $i % 25;
		$sql .= qq{INSERT INTO public.orders VALUES ($i, 'stream');
SELECT metrics.record('requests', $i, '{"route": "/b"}') IS NOT NULL AS recorded \\g /dev/null
INSERT INTO metrics.points SELECT series_id, now() + interval '$day days', $i FROM metrics.series
 WHERE name = 'requests' AND tags = '{"route": "/b"}';
};
	}
	$bg->query_until(qr/batch $batch\n/, $sql);
}

my %moved;
sub maintain
{
	my ($node) = @_;
	my $name = $node->name;
	for my $line (split /\n/, $node->safe_psql('app', q{
		SELECT parent_table || ' ' || status || ' ' || moved || ' ' || message FROM opsdata.run_maintenance()
		 WHERE parent_table IN ('audit.entries'::regclass, 'metrics.points'::regclass)}))
	{
		my ($table, $status, $n, $message) = split / /, $line, 4;
		is($status, 'ok', "$name: maintenance of $table succeeds while rows stream")
		  or diag($message);
		$moved{"$name $table"} += $n;
	}
}

my $bg = $pub->background_psql('app');
$bg->set_query_timer_restart();
my $next = 1;
for my $round (1 .. 2)
{
	for my $node ($pub, $sub)
	{
		stream($bg, $next, $next + 99);
		$next += 100;
		maintain($node);
	}
}
like($bg->query_until(qr/streamed/, "\\echo streamed\n"), qr/streamed/, 'rows 1 to ' . ($next - 1) . ' streamed');
$bg->quit;
# Points of days no partition covers yet, in the default partitions on
# both sides once replicated; the last maintenance moves them.
$pub->safe_psql('app', q{
	INSERT INTO metrics.points SELECT series_id, now() + interval '50 days', 1 FROM metrics.series;
	SELECT audit.flush();
});
$pub->wait_for_catchup('opsdata_sub');
is($sub->safe_psql('app', q{SELECT count(*) > 0 FROM ONLY metrics.points_default}), 't',
	'replicated points arrived in the default partition of the subscriber');
maintain($_) for $pub, $sub;
$pub->safe_psql('app', 'SELECT metrics.rollup()');
$pub->wait_for_catchup('opsdata_sub');

for my $key ('publisher audit.entries', 'publisher metrics.points', 'subscriber audit.entries',
	'subscriber metrics.points')
{
	cmp_ok($moved{$key} // 0, '>', 0, "$key: maintenance moved rows out of the default partition");
}
for my $node ($pub, $sub)
{
	is($node->safe_psql('app', q{
		SELECT (SELECT count(*) FROM ONLY audit.entries_default) + (SELECT count(*) FROM ONLY metrics.points_default)}),
		'0', $node->name . ': the default partitions are empty after maintenance');
}

# The subscriber has exactly the publisher's rows.
sub rows_of
{
	my ($node, $table, $where) = @_;
	$where //= 'true';
	return $node->safe_psql('app', qq{
		SELECT count(*) || ' ' || md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), ''))
		  FROM $table x WHERE $where});
}
my $entries = rows_of($pub, 'audit.entries');
is(rows_of($sub, 'audit.entries', "server_id = $pub_id"), $entries,
	"audit.entries: the publisher's entries, each once ($entries)");
for my $table ('metrics.series', 'metrics.points', 'metrics.rollups')
{
	my $rows = rows_of($pub, $table);
	is(rows_of($sub, $table), $rows, "$table: exactly the publisher's rows ($rows)");
}
is($sub->safe_psql('app', q{
	SELECT count(*) FROM audit.entries e
	 WHERE e.statement_id IS NOT NULL
	   AND NOT EXISTS (SELECT FROM audit.statements s WHERE s.statement_id = e.statement_id)}),
	'0', 'every entry on the subscriber, replicated or not, has its statement text');
is($sub->safe_psql('app', qq{
	SELECT count(*) FROM audit.trail
	 WHERE server_id = $pub_id AND statement_text = \$\$UPDATE public.orders SET note = 'both' WHERE id = 1\$\$}),
	'1', 'a shape the subscriber had stored already serves the replicated entry');
is($sub->safe_psql('app', q{
	SELECT count(*) FROM audit.statements WHERE statement_text = 'UPDATE public.orders SET note = $1 WHERE id = $2'}),
	'1', 'and is stored once');
cmp_ok($sub->safe_psql('app', qq{
	SELECT count(*) FROM (SELECT entry_id FROM audit.entries GROUP BY entry_id HAVING count(DISTINCT server_id) = 2) c}),
	'>', 0, "entry_ids of the subscriber's own entries and of replicated ones collide, and both are kept");
is($sub->safe_psql('app', 'SELECT count(*) FROM metrics.rollup_queue'), '0',
	'the subscriber does not queue replicated points for a rollup of its own: they come with their rollups');
is($sub->safe_psql('app', q{
	SELECT count(*) FROM audit.entries
	 WHERE server_id = audit.server_id()
	   AND objects && ARRAY['audit.entries', 'audit.statements', 'metrics.series', 'metrics.points', 'metrics.rollups']}),
	'0', "the apply worker's writes are not in the subscriber's trail");
my $query = q{SELECT count(*) || ' ' || sum(count) || ' ' || sum(sum)
				FROM metrics.query('requests', '{}', now() - interval '1 day', now() + interval '60 days', '1 day')};
my $answer = $pub->safe_psql('app', $query);
is($sub->safe_psql('app', $query), $answer, "metrics.query() answers on the subscriber as on the publisher ($answer)");
is($sub->safe_psql('app', q{
	SELECT apply_error_count || ' ' || sync_error_count FROM pg_stat_subscription_stats WHERE subname = 'opsdata_sub'}),
	'0 0', 'the apply worker never failed');

# The guard triggers fire on apply: once the subscription's owner is no
# longer a superuser, though a member of pg_write_all_data, the apply
# worker is refused (by the row-level guard that fires in replica mode on
# audit.statements, or by the guard of audit.entries); made superuser
# again, it catches up.
$sub->safe_psql('app', q{
	CREATE ROLE repl_owner SUPERUSER LOGIN;
	ALTER SUBSCRIPTION opsdata_sub DISABLE;
	ALTER SUBSCRIPTION opsdata_sub OWNER TO repl_owner;
	ALTER ROLE repl_owner NOSUPERUSER;
	GRANT pg_write_all_data TO repl_owner;
	GRANT USAGE ON SCHEMA audit, metrics TO repl_owner;
	ALTER SUBSCRIPTION opsdata_sub ENABLE;
});
my $log_offset = -s $sub->logfile;
$pub->safe_psql('app', q{INSERT INTO public.orders VALUES (500, 'while refused')});
ok($sub->wait_for_log(qr/permission denied to insert into table "audit\.(statements|entries)/, $log_offset),
	"the guard refuses the apply worker of an owner who is not a superuser");
is($sub->safe_psql('app', qq{SELECT count(*) FROM audit.trail
							 WHERE server_id = $pub_id AND statement_text LIKE '%while refused%'}),
	'0', 'its transaction is not applied');
$sub->safe_psql('app', 'ALTER ROLE repl_owner SUPERUSER');
$pub->wait_for_catchup('opsdata_sub');
$entries = rows_of($pub, 'audit.entries');
is(rows_of($sub, 'audit.entries', "server_id = $pub_id"), $entries,
	'made superuser again, the apply worker catches up without losing or repeating an entry');
is($sub->safe_psql('app', qq{SELECT count(*) FROM audit.trail
							 WHERE server_id = $pub_id AND statement_text LIKE '%while refused%'}),
	'1', 'the refused transaction among them');

$sub->safe_psql('app', 'DROP SUBSCRIPTION opsdata_sub');
$_->stop for $pub, $sub;
done_testing();
