# A rollup run killed half-way (kill -9 of the process running it, so the
# server restarts from crash recovery) leaves the queue and the rollups as
# they were; the next run rolls everything up once, and every rollup of
# every width equals the raw points it covers (DESIGN.md, contract 6).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

# The postmaster restarts by itself after the crash, as production servers do.
my $node = opsdata_node('rollup_kill', conf => "restart_after_crash = on\n");
$node->start;

# Two batches of points over two days, twenty series.
my $batch = q{
	SELECT metrics.record_many(ARRAY['api.latency'], array_agg(random() * 100 ORDER BY i),
		array_agg(jsonb_build_object('route', (i % 20)::text) ORDER BY i),
		array_agg(timestamptz 'START' + i * interval '3 seconds' ORDER BY i))
	  FROM generate_series(1, 30000) i};
# The test runs the rollups itself: the built-in jobs are paused before the
# scheduler sees them, and partition maintenance would keep these old raw
# points anyway, so that the rollups can be compared with them.
$node->safe_psql('postgres', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin;
	SELECT opsdata.set_setting('metrics.rollup_lateness', '100 years');
	SELECT opsdata.set_setting('metrics.points_retention', '100 years');
	COMMIT;
});
(my $first = $batch) =~ s/START/2024-07-01 00:00:00+00/;
$node->safe_psql('postgres', $first);
is($node->safe_psql('postgres', 'SELECT metrics.rollup()'), '30000', 'a first run rolls up the first batch');
(my $second = $batch) =~ s/START/2024-07-01 12:00:00+00/;
$node->safe_psql('postgres', $second);

my $rollups_sql = q{
	SELECT md5(string_agg(format('%s %s %s %s', series_id, bucket_width, bucket_start,
								 metrics.sketch_send(sketch)), ',' ORDER BY series_id, bucket_width, bucket_start))
	  FROM metrics.rollups};
my $queue_sql = 'SELECT sum(metrics.sketch_count(sketch)) FROM metrics.rollup_queue';
my $rollups_before = $node->safe_psql('postgres', $rollups_sql);
is($node->safe_psql('postgres', $queue_sql), '30000', 'the second batch is queued');

# Make the next run stop half-way: it has taken the queue and written the
# minute and hour rollups when it reaches the day rollups.
$node->safe_psql('postgres', q{
	CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.bucket_width = interval '1 day' THEN
			PERFORM pg_sleep(600);
		END IF;
		RETURN NEW;
	END
	$$;
	CREATE TRIGGER stall BEFORE INSERT OR UPDATE ON metrics.rollups
		FOR EACH ROW EXECUTE FUNCTION stall();
});
my $run = $node->background_psql('postgres', on_error_stop => 0);
$run->query_until(qr/started/, q{
	\echo started
	SELECT metrics.rollup();
});
$node->poll_query_until('postgres',
	q{SELECT count(*) = 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep'})
  or die 'the rollup run did not reach the day rollups';
my $pid = $node->safe_psql('postgres',
	q{SELECT pid FROM pg_stat_activity WHERE wait_event = 'PgSleep'});
my $offset = -s $node->logfile;
ok(kill('KILL', $pid), 'the process running the rollup is killed');
# Its psql lost its connection: end it without writing to it.
$run->{run}->kill_kill;

# The postmaster reinitializes after the crash; then restart it too.
ok(opsdata_wait_up($node, $offset), 'the server is back after the crash');
$node->restart;

is($node->safe_psql('postgres', $queue_sql), '30000',
	'after the kill, the second batch is still queued');
is($node->safe_psql('postgres', $rollups_sql), $rollups_before,
	'after the kill, the rollups are those of the first run');

$node->safe_psql('postgres', 'DROP TRIGGER stall ON metrics.rollups');
is($node->safe_psql('postgres', 'SELECT metrics.rollup()'), '30000',
	'the next run rolls up the second batch');
is($node->safe_psql('postgres', 'SELECT metrics.rollup()'), '0', 'and a further run finds nothing');

# Every rollup against the raw points: count and the same sketch bytes.
my $check = $node->safe_psql('postgres', q{
	WITH w(width) AS (SELECT unnest(opsdata.setting('metrics.rollup_widths')::interval[])),
	raw AS (
		SELECT p.series_id, w.width AS bucket_width, date_bin(w.width, p.ts, '2000-01-03') AS bucket_start,
			   count(*) AS n, metrics.sketch_agg(p.value) AS s
		  FROM metrics.points p, w GROUP BY 1, 2, 3
	)
	SELECT string_agg(format('%s:%s/%s', bucket_width, exact, total), ' ' ORDER BY bucket_width)
	  FROM (SELECT bucket_width, count(*) AS total,
				   count(*) FILTER (WHERE r.count = raw.n
									AND metrics.sketch_send(r.sketch) = metrics.sketch_send(raw.s)) AS exact
			  FROM raw FULL JOIN metrics.rollups r USING (series_id, bucket_width, bucket_start)
			 GROUP BY bucket_width) t});
like($check, qr/^00:01:00:(\d+)\/\1 01:00:00:(\d+)\/\2 1 day:(\d+)\/\3$/,
	"every rollup of every width equals its raw points ($check)");
is($node->safe_psql('postgres',
		q{SELECT string_agg(sum::text, ',' ORDER BY bucket_width) FROM
			(SELECT bucket_width, sum(count) FROM metrics.rollups GROUP BY 1) t}),
	'60000,60000,60000', 'each width counts every point once');

$node->stop;
done_testing();
