# Streaming replication (DESIGN.md, contract 7), with a primary and a hot
# standby.
#
# On the standby (test/tap/014_worker_standby.pl checks the jobs there and
# at promotion): no pg_opsdata worker runs and nothing is written; health
# says the server is a standby, and that statements run there are not
# audited (a documented gap: nothing can be written during recovery);
# reads through metrics.query(), learning.threshold() and audit.trail
# answer as on the primary.
#
# After the primary fails and the standby is promoted: the launcher and
# the scheduler start at once (not at the periodic check, set to a day
# here, beyond any wait of this test), the due jobs run and the work left
# pending by the old primary (points to roll up, feedback to tune on, a row
# in a default partition) is done once: rollups count every point once,
# thresholds count every feedback row once.  The old primary, rebuilt with
# pg_rewind as a standby of the new one, behaves as a standby.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

# pg_rewind reads the old primary's WAL back to the last checkpoint before
# the histories diverged: it must keep it.
my $conf = "pg_opsdata.audit = 'read, write, ddl'\nwal_keep_size = '256MB'\n"
  . "pg_opsdata.check_interval = '1d'\n";
my $primary = opsdata_node('primary', conf => $conf, init => { allows_streaming => 1 });
$primary->start;
$primary->safe_psql('postgres', 'CREATE DATABASE app');
$primary->safe_psql('app', q{
	CREATE EXTENSION pg_opsdata;
	-- Short schedules, so that the failover finds the built-in jobs due soon.
	SELECT count(opsdata.alter_job(job_id, schedule => '3 seconds'))
	  FROM opsdata.jobs WHERE name IN ('metrics.rollup', 'learning.tune', 'partition.maintain');
	CREATE TABLE public.ticks (at timestamptz DEFAULT clock_timestamp());
	SELECT opsdata.add_job('tick', 'INSERT INTO public.ticks DEFAULT VALUES', '1 second');
	CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL,
								PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
	CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;
	SELECT opsdata.manage_partitions('public.events', 'at', '1 day', premake => 2);
	SELECT count(metrics.record('latency', i, '{"route": "/a"}', now() - i * interval '1 minute'))
	  FROM generate_series(1, 120) i;
	INSERT INTO learning.feedback (key, score, label)
	SELECT 'intent.refund', (i % 997) / 997.0, (i % 997) / 997.0 + (i % 13) / 26.0 > 0.75
	  FROM generate_series(1, 2000) i;
	SELECT learning.set_objective('intent.refund', 'precision', 0.9, 100);
	CREATE TABLE public.orders (id int);
	INSERT INTO public.orders VALUES (1);
});
$primary->poll_query_until('app', q{
	SELECT (SELECT count(*) FROM metrics.rollup_queue) = 0
	   AND (SELECT count(*) FROM learning.feedback_changes) = 0
	   AND (SELECT count(*) >= 2 FROM public.ticks)}) or die 'the primary does not run its jobs';

$primary->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'backup', has_streaming => 1);
$standby->start;
$primary->wait_for_catchup($standby);

# --- On the standby ---------------------------------------------------------
is($standby->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_opsdata%'}),
	'0', 'no pg_opsdata worker runs on the standby');
like($standby->safe_psql('app', q{SELECT status || ': ' || detail FROM opsdata.health() WHERE component = 'server'}),
	qr/^ok: This server is a hot standby: pg_opsdata's workers wait and nothing is written here/,
	'health says the server is a hot standby');
like($standby->safe_psql('app', q{SELECT status || ': ' || detail FROM opsdata.health() WHERE component = 'audit capture'}),
	qr/^warning: This server is a hot standby: statements run here are not audited, .* asks for read,write,ddl\./,
	'health says that statements run on the standby are not audited, a gap when reads are audited');
is($standby->safe_psql('app', q{
	SELECT string_agg(component || ': ' || detail, '; ') FROM opsdata.health()
	 WHERE status = 'error' OR status = 'warning' AND component <> 'audit capture'}),
	'', 'nothing else in health is wrong on the standby');

# Reads answer as on the primary.
for my $read (
	[ 'metrics.query()', q{SELECT count(*) || ' ' || sum(count) || ' ' || sum(sum) FROM metrics.query('latency', '{"route": "/a"}', now() - interval '1 day', now(), '1 hour')} ],
	[ 'learning.threshold()', q{SELECT round(learning.threshold('intent.refund')::numeric, 6)} ],
	[ 'audit.trail', q{SELECT count(*) FROM audit.trail WHERE statement_text = 'INSERT INTO public.orders VALUES (1)'} ])
{
	my ($what, $sql) = @$read;
	my $on_primary = $primary->safe_psql('app', $sql);
	is($standby->safe_psql('app', $sql), $on_primary, "$what answers on the standby as on the primary ($on_primary)");
}

# Statements run on the standby reach no trail.
$standby->safe_psql('app', q{SELECT count(*) AS read_on_the_standby FROM public.orders});
my ($rc, $out, $err) = $standby->psql('app', 'INSERT INTO public.orders VALUES (2)');
like($err, qr/read-only transaction/, 'a write fails on the standby, as always');
$primary->safe_psql('app', 'SELECT audit.flush()');
$primary->wait_for_catchup($standby);
is($standby->safe_psql('app', q{
	SELECT count(*) FROM audit.trail WHERE statement_text LIKE '%read_on_the_standby%' OR statement_text LIKE '%VALUES (2)'}),
	'0', 'statements run on the standby are not in the trail (the documented gap)');
is($standby->safe_psql('app', q{SELECT count(*) FROM audit.queue_state() WHERE enqueued > 0}),
	'0', 'nor queued on the standby');

# --- Failover ---------------------------------------------------------------
# Work the jobs have yet to do when the primary fails: points to roll up,
# feedback to tune on, and a row in the default partition of the user's set.
$primary->safe_psql('app', q{
	SELECT count(metrics.record('latency', i, '{"route": "/a"}', now() - i * interval '1 second'))
	  FROM generate_series(1, 30) i;
	INSERT INTO learning.feedback (key, score, label)
	SELECT 'intent.refund', (i % 89) / 89.0, i % 2 = 0 FROM generate_series(1, 200) i;
	INSERT INTO public.events (at) VALUES (now() + interval '10 days');
});
$primary->wait_for_catchup($standby);
$primary->stop('immediate');
my $ticks = $standby->safe_psql('app', 'SELECT count(*) FROM public.ticks');
my $last_run = $standby->safe_psql('app', 'SELECT max(run_id) FROM opsdata.job_runs');

$standby->promote;
ok($standby->poll_query_until('postgres', q{
	SELECT count(*) = 2 FROM pg_stat_activity
	 WHERE backend_type IN ('pg_opsdata launcher', 'pg_opsdata scheduler')}),
	'after promotion the launcher and the scheduler start');
like($standby->safe_psql('app', q{SELECT detail FROM opsdata.health() WHERE component = 'server'}),
	qr/^This server is a primary/, 'health says the server is a primary now');
ok($standby->poll_query_until('app', "SELECT count(*) > $ticks FROM public.ticks"), 'the jobs run again');

# The pending work is done, once.
ok($standby->poll_query_until('app', q{
	SELECT (SELECT count(*) FROM metrics.rollup_queue) = 0
	   AND (SELECT count(*) FROM learning.feedback_changes) = 0
	   AND (SELECT count(*) FROM ONLY public.events_default) = 0}),
	'the new primary rolls up, tunes and maintains what the old one left pending');
is($standby->safe_psql('app', q{
	SELECT string_agg(format('%s %s', w.width, r.count = p.count AND r.sum = p.sum), ', ' ORDER BY w.width)
	  FROM unnest(opsdata.setting('metrics.rollup_widths')::interval[]) w(width),
		   LATERAL (SELECT sum(count) AS count, sum(sum) AS sum FROM metrics.rollups WHERE bucket_width = w.width) r,
		   (SELECT count(*) AS count, sum(value) AS sum FROM metrics.points) p}),
	'00:01:00 t, 01:00:00 t, 1 day t', 'rollups count every point once');
is($standby->safe_psql('app', q{
	SELECT support = (SELECT count(*) FROM learning.feedback WHERE key = 'intent.refund')
	  FROM learning.thresholds WHERE key = 'intent.refund'}),
	't', 'the threshold is tuned on every feedback row once');
is($standby->safe_psql('app', q{
	SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.events'::regclass}),
	$standby->safe_psql('app', q{
	SELECT count(DISTINCT pg_get_expr(c.relpartbound, c.oid)) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	 WHERE i.inhparent = 'public.events'::regclass}),
	'no partition is made twice');
is($standby->safe_psql('app', qq{
	SELECT count(*) FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.builtin AND r.run_id > $last_run AND r.status = 'succeeded'
	   AND j.name IN ('metrics.rollup', 'learning.tune', 'partition.maintain')
	HAVING count(DISTINCT j.name) = 3}) ne '' ? 'ran' : 'not run',
	'ran', 'the built-in jobs ran on the new primary');
$standby->safe_psql('app', 'INSERT INTO public.orders VALUES (3)');
is($standby->safe_psql('app', q{
	SELECT count(*) FROM audit.trail WHERE statement_text = 'INSERT INTO public.orders VALUES (3)'}),
	'1', 'statements are audited on the new primary');

# --- The old primary, rebuilt with pg_rewind, is a standby ----------------
# pg_rewind copies the source's configuration files: the old primary keeps
# its own (its port), as PostgreSQL's own pg_rewind tests do.
my $conf_file = $primary->data_dir . '/postgresql.conf';
my $kept = slurp_file($conf_file);
$standby->safe_psql('postgres', 'CHECKPOINT');
command_ok([ 'pg_rewind', '--target-pgdata', $primary->data_dir,
			 '--source-server', $standby->connstr('postgres') ],
	'pg_rewind rebuilds the old primary from the new one');
open my $fh, '>', $conf_file or die $!;
print $fh $kept;
close $fh;
$primary->enable_streaming($standby);
$primary->start;
$standby->wait_for_catchup($primary);
is($primary->safe_psql('postgres', q{
	SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_opsdata%'}),
	'0', 'no pg_opsdata worker runs on the rebuilt old primary');
like($primary->safe_psql('app', q{SELECT detail FROM opsdata.health() WHERE component = 'server'}),
	qr/^This server is a hot standby/, 'its health says it is a standby');
my $now_ticks = $standby->safe_psql('app', 'SELECT count(*) FROM public.ticks');
ok($primary->poll_query_until('app', "SELECT count(*) >= $now_ticks FROM public.ticks"),
	'it replays what the new primary writes');
is($primary->safe_psql('app', q{
	SELECT count(*) FROM audit.trail WHERE statement_text = 'INSERT INTO public.orders VALUES (3)'}),
	'1', "it has the new primary's trail");

$primary->stop;
$standby->stop;
done_testing();
