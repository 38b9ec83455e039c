# The built-in rollup job runs on schedule in the database's scheduler, and
# a job process killed (kill -9) in the middle of a rollup changes nothing:
# once the server is back, the job rolls everything up exactly once
# (DESIGN.md, contract 6).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('metrics_worker',
	conf => "restart_after_crash = on\npg_opsdata.check_interval = 1000\n");
$node->start;

my $batch = q{
	SELECT metrics.record_many(ARRAY['api.latency'], array_agg(random() * 100 ORDER BY i),
		array_agg(jsonb_build_object('route', (i % 20)::text) ORDER BY i),
		array_agg(timestamptz 'START' + i * interval '3 seconds' ORDER BY i))
	  FROM generate_series(1, 20000) i};
(my $first = $batch) =~ s/START/2024-07-01 00:00:00+00/;
(my $second = $batch) =~ s/START/2024-07-01 12:00:00+00/;

$node->safe_psql('postgres', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT opsdata.set_setting('metrics.rollup_lateness', '100 years');
	-- Partition maintenance keeps these old raw points, so that the
	-- rollups can be compared with them: set before the scheduler sees
	-- the extension.
	SELECT opsdata.set_setting('metrics.points_retention', '100 years');
	-- Only this test's points: the vital signs would add their own.
	SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'metrics.vitals';
	COMMIT;
});
$node->safe_psql('postgres', $first);

# The built-in job, made to run every second.
$node->safe_psql('postgres',
	q{UPDATE opsdata.jobs SET schedule = '1 second', next_run = now() WHERE name = 'metrics.rollup'});
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM metrics.rollup_queue'),
	'the scheduler runs the rollup job and empties the queue');
is($node->safe_psql('postgres',
		q{SELECT sum(count) FROM metrics.rollups WHERE bucket_width = '1 hour'}),
	'20000', 'the job rolled up every point');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
		   WHERE j.name = 'metrics.rollup' AND r.status = 'succeeded'}),
	'its runs are recorded as succeeded');

# Make the job stall half-way through its next run, while a flag row
# exists: it has taken the queue and written minutes and hours.  (The
# rollup runs with search_path = pg_catalog, hence the schema.)
$node->safe_psql('postgres', q{
	CREATE TABLE stall_flag ();
	INSERT INTO stall_flag DEFAULT VALUES;
	CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		IF NEW.bucket_width = interval '1 day' THEN
			WHILE EXISTS (SELECT FROM public.stall_flag) LOOP
				PERFORM pg_sleep(0.1);
			END LOOP;
		END IF;
		RETURN NEW;
	END
	$$;
	CREATE TRIGGER stall BEFORE INSERT OR UPDATE ON metrics.rollups
		FOR EACH ROW EXECUTE FUNCTION stall();
});
my $rollups_sql = q{
	SELECT md5(string_agg(format('%s %s %s %s', series_id, bucket_width, bucket_start,
								 metrics.sketch_send(sketch)), ',' ORDER BY series_id, bucket_width, bucket_start))
	  FROM metrics.rollups};
my $rollups_before = $node->safe_psql('postgres', $rollups_sql);
$node->safe_psql('postgres', $second);

my $pid = opsdata_stalled_job($node);
ok(defined $pid, 'the job is in the middle of a rollup');
my $offset = -s $node->logfile;
ok(kill('KILL', $pid), 'the job process is killed');

# The postmaster reinitializes after the crash and the scheduler comes back.
ok(opsdata_wait_up($node, $offset), 'the server is back after the crash');
is($node->safe_psql('postgres', 'SELECT sum(metrics.sketch_count(sketch)) FROM metrics.rollup_queue'),
	'20000', 'the killed run took nothing from the queue');
is($node->safe_psql('postgres', $rollups_sql), $rollups_before,
	'the killed run changed no rollup');

# Let the job finish: the next run rolls up the second batch, once.
$node->safe_psql('postgres', 'DELETE FROM stall_flag');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM metrics.rollup_queue'),
	'the job runs again after the crash and empties the queue');
is($node->safe_psql('postgres',
		q{SELECT string_agg(sum::text, ',' ORDER BY bucket_width) FROM
			(SELECT bucket_width, sum(count) FROM metrics.rollups GROUP BY 1) t}),
	'40000,40000,40000', 'each width counts every point once');
is($node->safe_psql('postgres', q{
	WITH w(width) AS (SELECT unnest(opsdata.setting('metrics.rollup_widths')::interval[])),
	raw AS (SELECT p.series_id, w.width AS bucket_width, date_bin(w.width, p.ts, '2000-01-03') AS bucket_start,
				   metrics.sketch_agg(p.value) AS s
			  FROM metrics.points p, w GROUP BY 1, 2, 3)
	SELECT count(*) FROM raw FULL JOIN metrics.rollups r USING (series_id, bucket_width, bucket_start)
	 WHERE r.sketch IS NULL OR raw.s IS NULL OR metrics.sketch_send(r.sketch) <> metrics.sketch_send(raw.s)}),
	'0', 'every rollup equals its raw points, bit for bit');
ok($node->safe_psql('postgres',
		q{SELECT count(*) FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
		   WHERE j.name = 'metrics.rollup' AND r.status = 'crashed'}) > 0,
	'the killed run is recorded as crashed');

# The retention job is built in and runs on schedule too.
my $since = $node->safe_psql('postgres', 'SELECT now()');
$node->safe_psql('postgres',
	q{UPDATE opsdata.jobs SET schedule = '1 second', next_run = now() WHERE name = 'metrics.expire_rollups'});
ok($node->poll_query_until('postgres',
		qq{SELECT count(*) > 0 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
		   WHERE j.name = 'metrics.expire_rollups' AND r.status = 'succeeded' AND r.started_at > '$since'}),
	'the scheduler runs the retention job');
is($node->safe_psql('postgres', q{SELECT count(*) FROM metrics.rollups WHERE bucket_width = '1 minute'}),
	'0', 'it removed the minute rollups older than their retention');

$node->stop;
done_testing();
