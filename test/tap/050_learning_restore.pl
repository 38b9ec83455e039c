# Learning data survives what SQL tests cannot do: a crash of the server
# between feedback and tuning loses no pending change, and pg_dump restored
# into a fresh database brings back feedback, thresholds, their history,
# strategies and candidates, with histograms rebuilt from the restored
# feedback so that tuning finds the same thresholds (DESIGN.md, contracts 6
# and 9).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('learning');
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE src');
# The test tunes itself: the built-in jobs are paused before the scheduler
# sees them (and stay paused in the restored copy), so that no run of
# learning.tune moves pending changes between the test's steps.
$node->safe_psql('src', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
	COMMIT;
	INSERT INTO learning.feedback (key, score, label)
	SELECT 'intent.refund', (i % 997) / 997.0, (i % 997) / 997.0 + (i % 13) / 26.0 > 0.75
	  FROM generate_series(1, 5000) i;
	SELECT learning.set_objective('intent.refund', 'precision', 0.9, 100);
	SELECT learning.set_strategy('intent.refund', 'margin', 2);
	SELECT learning.offer('intent.refund', 'q' || i, i / 20.0) FROM generate_series(1, 10) i;
	SELECT learning.submit(candidate_id, 'rita', true) FROM learning.claim(2, 'rita', '1 hour');
});
my $tuned = $node->safe_psql('src',
	"SELECT threshold || ' ' || support FROM learning.thresholds WHERE key = 'intent.refund'");
like($tuned, qr/^0\.\d+ 5000$/, 'the key is tuned on its 5000 feedback rows');

# Feedback committed, then the server crashes before any tuning.
$node->safe_psql('src', q{
	INSERT INTO learning.feedback (key, score, label)
	SELECT 'intent.refund', (i % 991) / 991.0, i % 3 = 0 FROM generate_series(1, 1000) i});
$node->stop('immediate');
$node->start;
is($node->safe_psql('src', 'SELECT sum(positives + negatives) FROM learning.feedback_changes'), '1002',
	'the changes pending at the crash (1000 rows, two review labels) are still pending after recovery');
is($node->safe_psql('src', 'SELECT learning.tune()'), '1', 'tuning after the crash re-tunes the key');
is($node->safe_psql('src', "SELECT support FROM learning.thresholds WHERE key = 'intent.refund'"), '6002',
	'on all its feedback (two labels from a reviewer included), none lost and none counted twice');
is($node->safe_psql('src', q{
	SELECT threshold IS NOT DISTINCT FROM (SELECT learning.optimal_threshold(score, label, 'precision', 0.9)
											 FROM learning.feedback WHERE key = 'intent.refund')
	  FROM learning.thresholds WHERE key = 'intent.refund'}), 't',
	'and finds the threshold the aggregate finds over the raw rows');

my $state_sql = q{
	SELECT concat_ws(' | ',
		(SELECT count(*) FROM learning.feedback),
		(SELECT string_agg(concat_ws(',', key, objective, target, min_support, threshold, support), ';') FROM learning.thresholds),
		(SELECT count(*) FROM learning.threshold_history),
		(SELECT string_agg(concat_ws(',', key, strategy, required_labels), ';') FROM learning.strategies),
		(SELECT string_agg(concat_ws(',', item_id, status, labels, claimed_by), ';' ORDER BY candidate_id) FROM learning.candidates))};
my $before = $node->safe_psql('src', $state_sql);

my $dump = $node->basedir . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ],
	'pg_dump of a database with learning data succeeds');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'pg_restore into a fresh database succeeds');

is($node->safe_psql('restored', $state_sql), $before,
	'feedback, thresholds, history, strategies and candidates are restored');
is($node->safe_psql('restored', 'SELECT count(*) FROM learning.histograms'), '0',
	'the histograms, derived data, are not in the dump');
is($node->safe_psql('restored', 'SELECT sum(positives + negatives) FROM learning.feedback_changes'), '6002',
	'restoring the feedback queued every row for the histograms');
$node->safe_psql('restored', 'SELECT learning.tune()');
is($node->safe_psql('restored', $state_sql), $before,
	'tuning the restored database finds the same thresholds');
is($node->safe_psql('restored', "SELECT round(learning.threshold('intent.refund')::numeric, 6)"),
	$node->safe_psql('src', "SELECT round(learning.threshold('intent.refund')::numeric, 6)"),
	'and learning.threshold() answers as before');
is($node->safe_psql('restored', q{
	SELECT count(*) FROM learning.claim(10, 'sam', '1 hour')}), '10',
	'the restored queue hands out the open candidates, those needing a second label included');

$node->stop;
done_testing();
