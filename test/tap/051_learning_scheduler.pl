# The built-in learning jobs run on schedule in the database's scheduler:
# learning.tune re-tunes the thresholds once feedback arrives, to the exact
# threshold a brute-force SQL computation finds; a job process killed
# (kill -9) in the middle of a tune loses nothing and counts nothing twice,
# and the next run tunes correctly; learning.reclaim_expired gives expired
# leases back to the queue without anyone calling it (DESIGN.md, contract 6).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('learning_scheduler',
	conf => "restart_after_crash = on\npg_opsdata.check_interval = 1000\n");
$node->start;

# The learning jobs wait, paused, until the test has recorded feedback.
$node->safe_psql('postgres', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name LIKE 'learning.%';
	COMMIT;
});

# Brute force, over the raw feedback of a key: every distinct score t
# ("accept when score >= t") with its true and false positives.
$node->safe_psql('postgres', q{
	CREATE FUNCTION sweep(k text) RETURNS TABLE (t float8, tp float8, fp float8, p float8, n float8)
	LANGUAGE sql STABLE AS $$
		WITH s AS (SELECT score, count(*) FILTER (WHERE label) AS pos, count(*) FILTER (WHERE NOT label) AS neg
					 FROM learning.feedback WHERE key = k AND score IS NOT NULL AND label IS NOT NULL
					GROUP BY score)
		SELECT score, (sum(pos) OVER w)::float8, (sum(neg) OVER w)::float8,
			   (sum(pos) OVER ())::float8, (sum(neg) OVER ())::float8
		  FROM s WINDOW w AS (ORDER BY score DESC)
	$$;
	-- Wilson lower bound at 95% one-sided confidence (the default of
	-- learning.precision_confidence).
	CREATE FUNCTION wilson(s float8, n float8) RETURNS float8 LANGUAGE sql IMMUTABLE AS $$
		SELECT (s / n + z * z / (2 * n) - z * sqrt((s / n) * (1 - s / n) / n + z * z / (4 * n * n))) / (1 + z * z / n)
		  FROM (SELECT 1.6448536269514722::float8 AS z) c
	$$;
	-- precision at a target: the lowest threshold whose lower bound reaches it.
	CREATE FUNCTION exact_precision(k text, target float8) RETURNS float8 LANGUAGE sql STABLE AS $$
		SELECT min(t) FROM sweep(k) WHERE wilson(tp, tp + fp) >= target
	$$;
	-- F1: the highest F1, ties to the highest threshold.
	CREATE FUNCTION exact_f1(k text) RETURNS float8 LANGUAGE sql STABLE AS $$
		SELECT t FROM sweep(k) ORDER BY 2 * tp / (2 * tp + (p - tp) + fp) DESC, t DESC LIMIT 1
	$$;
});

# The figures a correct tune leaves for the keys: each threshold equals the
# brute-force one, and its support, positives and negatives, like the
# histogram, count every feedback row once.
my $tuned_sql = q{
	SELECT bool_and(th.threshold IS NOT NULL
					AND th.threshold = CASE th.key WHEN 'grid' THEN exact_precision('grid', 0.9) ELSE exact_f1(th.key) END
					AND th.support = f.rows AND th.positives = f.pos AND th.negatives = f.rows - f.pos
					AND h.total = f.rows)
	  FROM learning.thresholds th
	  JOIN (SELECT key, count(*) AS rows, count(*) FILTER (WHERE label) AS pos FROM learning.feedback GROUP BY key) f
		USING (key)
	  JOIN (SELECT key, sum(positives + negatives) AS total FROM learning.score_bins GROUP BY key) h USING (key)
	 WHERE th.key IN ('grid', 'fresh')};
my $thresholds_sql = q{
	SELECT string_agg(concat_ws(' ', key, objective, threshold, support), ', ' ORDER BY key) FROM learning.thresholds};

# 'grid' gets its objective before any feedback: its threshold stays unset
# until the job tunes it.  'fresh' has none: the job gives it the default.
$node->safe_psql('postgres', q{SELECT learning.set_objective('grid', 'precision', 0.9, 100)});
$node->safe_psql('postgres', q{
	SELECT learning.record_feedback(jsonb_agg(jsonb_build_object('key', 'grid', 'score', s, 'label', l, 'given_by', 'app')))
	  FROM (SELECT ((i * 7919) % 1000) / 1000.0 AS s,
				   ((i * 7919) % 1000) / 1000.0 + ((i * 104729) % 500) / 1000.0 - 0.25 > 0.5 AS l
			  FROM generate_series(1, 2000) i) d;
	SELECT count(learning.record_feedback('fresh', ((i * 613) % 1000) / 1000.0, (i * 613) % 1000 + (i * 37) % 400 > 700))
	  FROM generate_series(1, 500) i;
});
is($node->safe_psql('postgres', $thresholds_sql), 'grid precision 0',
	'before the job runs, the feedback is not tuned');
is($node->safe_psql('postgres', 'SELECT sum(positives + negatives) FROM learning.feedback_changes'), '2500',
	'and its 2500 rows wait in learning.feedback_changes');

# The tuning job, made to run every second.
$node->safe_psql('postgres', q{
	SELECT opsdata.alter_job(job_id, schedule => '1 second', next_run => now(), paused => false)
	  FROM opsdata.jobs WHERE name = 'learning.tune'});
ok($node->poll_query_until('postgres', $tuned_sql), 'the scheduler runs learning.tune and tunes both keys');
is($node->safe_psql('postgres', 'SELECT count(*) FROM learning.feedback_changes'), '0',
	'no change is left pending');
is($node->safe_psql('postgres', $thresholds_sql),
	'fresh f_beta ' . $node->safe_psql('postgres', q{SELECT exact_f1('fresh')}) . ' 500, grid precision '
	  . $node->safe_psql('postgres', q{SELECT exact_precision('grid', 0.9)}) . ' 2000',
	'each threshold is the exact one, over all the feedback of its key');
is($node->safe_psql('postgres', q{SELECT learning.threshold('grid') = exact_precision('grid', 0.9)}), 't',
	'learning.threshold() answers with the tuned threshold');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
		   WHERE j.name = 'learning.tune' AND r.status = 'succeeded' AND r.kind = 'scheduled'}),
	'its runs are recorded as succeeded');
my $first_threshold = $node->safe_psql('postgres', q{SELECT threshold FROM learning.thresholds WHERE key = 'grid'});
my $history_before = $node->safe_psql('postgres', q{SELECT count(*) FROM learning.threshold_history WHERE key = 'grid'});

# Make the job stall in its next tune while a flag row exists: it has
# folded the new feedback into the histogram and is about to write the
# threshold.  (learning.tune() runs with search_path = pg_catalog, hence
# the schemas.)
$node->safe_psql('postgres', q{
	CREATE TABLE stall_flag ();
	INSERT INTO stall_flag DEFAULT VALUES;
	CREATE FUNCTION stall() RETURNS trigger LANGUAGE plpgsql AS $$
	BEGIN
		WHILE EXISTS (SELECT FROM public.stall_flag) LOOP
			PERFORM pg_catalog.pg_sleep(0.1);
		END LOOP;
		RETURN NEW;
	END
	$$;
	CREATE TRIGGER stall BEFORE UPDATE ON learning.thresholds
		FOR EACH ROW EXECUTE FUNCTION public.stall();
});

# New feedback that moves the threshold, by INSERT this time.
$node->safe_psql('postgres', q{
	INSERT INTO learning.feedback (key, score, label, source)
	SELECT 'grid', ((i * 7919) % 1000) / 1000.0, ((i * 7919) % 1000) / 1000.0 + ((i * 7907) % 400) / 1000.0 - 0.1 > 0.6,
		   'review'
	  FROM generate_series(1, 1500) i});
my $changes_sql = q{SELECT sum(positives + negatives) FROM learning.feedback_changes};
my $bins_sql = q{SELECT sum(positives + negatives) FROM learning.score_bins WHERE key = 'grid'};
is($node->safe_psql('postgres', $changes_sql), '1500', 'the new feedback is pending');

my $pid = opsdata_stalled_job($node);
ok(defined $pid, 'the job is in the middle of a tune');
my $offset = -s $node->logfile;
ok(kill('KILL', $pid), 'the job process is killed');

# The postmaster reinitializes after the crash and the scheduler comes back.
ok(opsdata_wait_up($node, $offset), 'the server is back after the crash');
is($node->safe_psql('postgres', $changes_sql), '1500', 'the killed run took nothing from the pending changes');
is($node->safe_psql('postgres', $bins_sql), '2000', 'and added nothing to the histogram');
is($node->safe_psql('postgres', q{SELECT threshold || ' ' || support FROM learning.thresholds WHERE key = 'grid'}),
	"$first_threshold 2000", 'and changed no threshold');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 1 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
		   WHERE j.name = 'learning.tune' AND r.status = 'crashed'}),
	'the killed run is recorded as crashed once the job starts again');

# Let the job go on: the next run tunes on all the feedback, once.
my $since = $node->safe_psql('postgres', 'SELECT now()');
$node->safe_psql('postgres', 'DELETE FROM stall_flag');
ok($node->poll_query_until('postgres', qq{
	SELECT ($tuned_sql) AND (SELECT support = 3500 FROM learning.thresholds WHERE key = 'grid')}),
	'the job runs again after the crash and tunes the key on all its feedback');
is($node->safe_psql('postgres', "SELECT ($changes_sql) IS NULL"), 't', 'nothing is left pending');
is($node->safe_psql('postgres', $bins_sql), '3500',
	'the histogram counts every feedback row once');
isnt($node->safe_psql('postgres', q{SELECT threshold FROM learning.thresholds WHERE key = 'grid'}),
	$first_threshold, 'the new feedback moved the threshold');
is($node->safe_psql('postgres', qq{
	SELECT (SELECT count(*) FROM learning.threshold_history WHERE key = 'grid') - $history_before || ' '
		   || (SELECT threshold = exact_precision('grid', 0.9) AND previous = $first_threshold
				 FROM learning.threshold_history WHERE key = 'grid' ORDER BY change_id DESC LIMIT 1)}),
	'1 true', 'the history has one row for the change, from the old threshold to the exact new one');
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) > 0 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'learning.tune' AND r.status = 'succeeded' AND r.started_at > '$since'}),
	'the run after the crash is recorded as succeeded');

# learning.reclaim_expired: leases that expire while the job is paused stay
# marked as claimed; once it runs on schedule, they are open again.
$node->safe_psql('postgres', q{
	SELECT learning.offer('grid', 'q' || i, i / 10.0) FROM generate_series(1, 3) i;
	SELECT count(*) FROM learning.claim(3, 'rita', '1 second');
});
my $claims_sql = q{SELECT string_agg(item_id || ' ' || status || ' ' || coalesce(claimed_by, '-'), ', ' ORDER BY item_id)
					 FROM learning.candidates WHERE key = 'grid'};
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 3 FROM learning.candidates WHERE lease_until < now()}),
	'the three leases expire');
is($node->safe_psql('postgres', $claims_sql), 'q1 claimed rita, q2 claimed rita, q3 claimed rita',
	'with the job paused they are still marked as claimed');
is($node->safe_psql('postgres', q{SELECT detail FROM opsdata.health() WHERE component = 'learning candidates'}),
	'Candidates to label: 3; leased: 0; leases expired: 3.', 'health counts them as expired');
$since = $node->safe_psql('postgres', 'SELECT now()');
$node->safe_psql('postgres', q{
	SELECT opsdata.alter_job(job_id, schedule => '1 second', next_run => now(), paused => false)
	  FROM opsdata.jobs WHERE name = 'learning.reclaim_expired'});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 3 FROM learning.candidates WHERE status = 'open' AND claimed_by IS NULL AND lease_until IS NULL}),
	'the scheduler runs learning.reclaim_expired and the candidates are open again');
ok($node->poll_query_until('postgres', qq{
	SELECT count(*) > 0 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'learning.reclaim_expired' AND r.status = 'succeeded' AND r.started_at > '$since'}),
	'its run is recorded as succeeded');
is($node->safe_psql('postgres', q{SELECT string_agg(item_id, ' ' ORDER BY item_id) FROM learning.claim(3, 'sam', '1 hour')}),
	'q1 q2 q3', 'another reviewer claims them');
is($node->safe_psql('postgres', $claims_sql), 'q1 claimed sam, q2 claimed sam, q3 claimed sam',
	'each now leased to that reviewer');

$node->stop;
done_testing();
