# Import of the stores of an older system kept in SQLite files: Debian's
# sqlite3 exports each store as CSV, psql pipes it into COPY (doc/import.md
# gives the commands).  Timestamps stored as text with and without a time
# zone, as epoch seconds (integer, real or text) and as epoch milliseconds
# all arrive as the same instants; booleans stored as 0/1 and JSON stored as
# text convert; a bad row fails the whole COPY with an error naming its
# line, and nothing of that store is imported.  Stores: feedback, thresholds,
# candidates with their labels, metric points and hourly aggregations, an
# audit log (into the trail, as entries of class imported that keep their
# old times and actors, sealed like the others, superusers only, the import
# itself audited) and an audit queue (items readable in their old order).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use OpsdataTest;

my $node = opsdata_node('import');
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', q{
	CREATE EXTENSION pg_opsdata;
	SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin;
});
my $db = $node->basedir . '/old.db';

# Run SQL in the SQLite file.
sub sqlite
{
	my ($sql) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'sqlite3', '-bail', $db ], '<', \$sql, '>', \$out, '2>', \$err)
	  or die "sqlite3 failed: $err";
	return $out;
}

# sqlite3 -csv -header DB QUERY | psql -c COPY: returns (ok, stderr).
sub import
{
	my ($query, $copy) = @_;
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run(
		[ 'sqlite3', '-csv', '-header', $db, $query ], '|',
		[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('app'), '-c', $copy ],
		'>', \$out, '2>', \$err);
	return ($ok, $err);
}

# The SQLite expression of doc/import.md that turns a stored timestamp of
# any of the usual forms into ISO 8601 text PostgreSQL reads.
sub ts
{
	my ($c) = @_;
	return "CASE WHEN $c IS NULL THEN NULL"
	  . " WHEN typeof($c) IN ('integer', 'real') OR (trim($c) GLOB '[0-9]*' AND trim($c) NOT GLOB '*[^0-9.]*')"
	  . " THEN strftime('%Y-%m-%d %H:%M:%f+00', CASE WHEN abs($c) >= 100000000000 THEN $c / 1000.0 ELSE $c * 1.0 END, 'unixepoch')"
	  . " ELSE $c END";
}

# 2024-05-01 08:00:00 UTC is 1714550400.
sqlite(q{
	CREATE TABLE feedback (id INTEGER PRIMARY KEY, intent TEXT, item TEXT, confidence REAL, correct INTEGER,
						   user TEXT, ts, meta TEXT);
	INSERT INTO feedback VALUES
		(1, 'refund', 'a', 0.91, 1, 'ann', '2024-05-01T10:00:00+02:00', '{"channel": "web"}'),
		(2, 'refund', 'b', 0.40, 0, 'bob', '2024-05-01 08:00:00', NULL),
		(3, 'refund', 'c', 0.75, 1, 'ann', 1714550400, '{"n": [1, 2]}'),
		(4, 'refund', 'd', 0.20, 0, 'cat', 1714550400000, '{}'),
		(5, 'refund', 'e', 0.66, 1, 'cat', '1714550400', NULL),
		(6, 'refund', 'f', 0.55, 0, 'dan', 1714550400.25, NULL),
		(7, 'refund', 'g', 0.35, 1, 'dan', 1714550400123, NULL);
});
my $feedback_query = 'SELECT intent AS key, item AS item_id, confidence AS score, correct AS label, user AS given_by,'
  . " 'sqlite' AS source, " . ts('ts') . " AS created_at, coalesce(meta, '{}') AS metadata FROM feedback ORDER BY id";
my $feedback_copy = 'COPY learning.feedback (key, item_id, score, label, given_by, source, created_at, metadata)'
  . ' FROM STDIN (FORMAT csv, HEADER true)';

# A bad row first: nothing of the store arrives, and the error names it.
sqlite(q{INSERT INTO feedback VALUES (8, 'refund', 'h', 1.5, 1, 'eve', 1714550400, NULL)});
my ($ok, $err) = import($feedback_query, $feedback_copy);
ok(!$ok, 'a feedback row whose score is out of range fails the import');
like($err, qr/violates check constraint.*COPY feedback, line 9/s, 'the error names the line of the bad row');
is($node->safe_psql('app', 'SELECT count(*) FROM learning.feedback'), '0', 'no feedback row was imported');
sqlite(q|UPDATE feedback SET confidence = 0.5, meta = '{"broken": ' WHERE id = 8|);
($ok, $err) = import($feedback_query, $feedback_copy);
like($err, qr/invalid input syntax for type json.*COPY feedback, line 9, column metadata/s,
	'JSON that does not parse is named with its line and column');
sqlite(q{DELETE FROM feedback WHERE id = 8});

($ok, $err) = import($feedback_query, $feedback_copy);
ok($ok, 'the feedback store imports') or diag($err);
is($node->safe_psql('app', q{
	SELECT string_agg(format('%s %s %s %s', item_id, label, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'),
							 metadata), ', ' ORDER BY item_id)
	  FROM learning.feedback}),
	'a t 2024-05-01 08:00:00.000 {"channel": "web"}, b f 2024-05-01 08:00:00.000 {}, '
	  . 'c t 2024-05-01 08:00:00.000 {"n": [1, 2]}, d f 2024-05-01 08:00:00.000 {}, '
	  . 'e t 2024-05-01 08:00:00.000 {}, f f 2024-05-01 08:00:00.250 {}, g t 2024-05-01 08:00:00.123 {}',
	'timestamps in every form, 0/1 booleans and JSON text arrive as the same values');
is($node->safe_psql('app', q{SELECT learning.tune(); SELECT support FROM learning.thresholds WHERE key = 'refund'}),
	'1' . "\n" . '7', 'imported feedback is tuned like recorded feedback');

# Thresholds.
sqlite(q{
	CREATE TABLE thresholds (intent TEXT PRIMARY KEY, value REAL, precision REAL, recall REAL, n INTEGER, updated INTEGER);
	INSERT INTO thresholds VALUES ('cancel', 0.62, 0.9, 0.7, 5000, 1714550400), ('upgrade', 2, NULL, NULL, 10, 1714550400);
});
my $thresholds_query = 'SELECT intent AS key, value AS threshold, precision, recall, n AS support, '
  . ts('updated') . ' AS tuned_at FROM thresholds ORDER BY intent';
my $thresholds_copy = 'COPY learning.import_thresholds (key, threshold, precision, recall, support, tuned_at)'
  . ' FROM STDIN (FORMAT csv, HEADER true)';
($ok, $err) = import($thresholds_query, $thresholds_copy);
like($err, qr/threshold must be between 0 and 1.*COPY import_thresholds, line 3/s,
	'a threshold out of range is named with its line');
is($node->safe_psql('app', q{SELECT count(*) FROM learning.thresholds WHERE key <> 'refund'}), '0',
	'no threshold was imported');
sqlite(q{UPDATE thresholds SET value = 0.7 WHERE intent = 'upgrade'});
($ok, $err) = import($thresholds_query, $thresholds_copy);
ok($ok, 'the thresholds store imports') or diag($err);
$node->safe_psql('app', 'SELECT learning.tune()');
is($node->safe_psql('app', q{
	SELECT learning.threshold('cancel') || ' ' || learning.threshold('upgrade') || ' '
		   || (SELECT tuned_at AT TIME ZONE 'UTC' FROM learning.thresholds WHERE key = 'cancel')}),
	'0.62 0.5 2024-05-01 08:00:00',
	'an imported threshold holds once its support reaches min_support, and survives the tuning job');

# Candidates and their labels.
sqlite(q{
	CREATE TABLE candidates (id INTEGER PRIMARY KEY, intent TEXT, item TEXT, probs TEXT, payload TEXT, created REAL);
	CREATE TABLE labels (candidate_id INTEGER, reviewer TEXT, label INTEGER, created TEXT);
	INSERT INTO candidates VALUES
		(1, 'refund', 'q1', '[0.55, 0.45]', '{"text": "where is my money"}', 1714550400.5),
		(2, 'refund', 'q2', '[0.9, 0.1]', NULL, 1714550400),
		(3, 'refund', 'q3', '0.51', NULL, 1714550400);
	INSERT INTO labels VALUES (1, 'ann', 1, '2024-05-02 09:00:00+00'), (2, 'bob', 0, '2024-05-02 09:30:00+00'),
							  (9, 'bob', 1, '2024-05-02 10:00:00+00');
});
my $candidates_query = "SELECT intent AS key, item AS item_id, CASE WHEN probs LIKE '[%' THEN NULL ELSE probs END AS probability,"
  . " CASE WHEN probs LIKE '[%' THEN probs END AS scores, payload, " . ts('created') . ' AS created_at FROM candidates ORDER BY id';
my $labels_query = 'SELECT c.intent AS key, coalesce(c.item, l.candidate_id) AS item_id, l.reviewer, l.label, '
  . ts('l.created') . ' AS created_at FROM labels l LEFT JOIN candidates c ON c.id = l.candidate_id ORDER BY l.rowid';
($ok, $err) = import($candidates_query,
	'COPY learning.import_candidates (key, item_id, probability, scores, payload, created_at) FROM STDIN (FORMAT csv, HEADER true)');
ok($ok, 'the candidates store imports') or diag($err);
($ok, $err) = import($labels_query,
	'COPY learning.import_labels (key, item_id, reviewer, label, created_at) FROM STDIN (FORMAT csv, HEADER true)');
like($err, qr/no candidate of key "<NULL>" and item "9".*COPY import_labels, line 4/s,
	'a label of an unknown candidate is named with its line');
is($node->safe_psql('app', q{SELECT count(*) FROM learning.feedback WHERE source = 'review'}), '0',
	'no label was imported');
sqlite(q{DELETE FROM labels WHERE candidate_id = 9});
($ok, $err) = import($labels_query,
	'COPY learning.import_labels (key, item_id, reviewer, label, created_at) FROM STDIN (FORMAT csv, HEADER true)');
ok($ok, 'the labels import') or diag($err);
is($node->safe_psql('app', q{
	SELECT string_agg(format('%s %s %s %s %s %s', item_id, status, label, reviewers, scores,
							 to_char(created_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS')), ', ' ORDER BY item_id)
	  FROM learning.candidates}),
	'q1 closed t {ann} {0.55,0.45} 08:00:00.500, q2 closed f {bob} {0.9,0.1} 08:00:00.000, q3 open  {} {0.51} 08:00:00.000',
	'candidates keep their scores and times; labelled ones are closed with their label');
is($node->safe_psql('app', q{
	SELECT string_agg(format('%s %s %s', item_id, given_by, created_at AT TIME ZONE 'UTC'), ', ' ORDER BY item_id)
	  FROM learning.feedback WHERE source = 'review'}),
	'q1 ann 2024-05-02 09:00:00, q2 bob 2024-05-02 09:30:00', 'each label is feedback given at its own time');

# Metric points and hourly aggregations.
sqlite(q{
	CREATE TABLE series (id INTEGER PRIMARY KEY, name TEXT, tags TEXT);
	CREATE TABLE points (series_id INTEGER, ts INTEGER, value REAL);
	CREATE TABLE hourly (series_id INTEGER, hour INTEGER, n INTEGER, total REAL, lo REAL, hi REAL);
	INSERT INTO series VALUES (1, 'http.latency_ms', '{"route": "/a"}'), (2, 'queue.depth', NULL);
	INSERT INTO points VALUES (1, 1714550400000, 12.5), (1, 1714550401500, 20), (2, 1714550460000, 3);
	INSERT INTO hourly VALUES (1, 1714543200, 100, 1500, 2, 80), (1, 1714546800, 10, 120, 5, 30);
});
my $points_query = "SELECT s.name, coalesce(s.tags, '{}') AS tags, " . ts('p.ts') . ' AS ts, p.value'
  . ' FROM points p JOIN series s ON s.id = p.series_id';
my $points_copy = 'COPY metrics.ingest (name, tags, ts, value) FROM STDIN (FORMAT csv, HEADER true)';
sqlite(q{INSERT INTO series VALUES (3, 'bad', '{route: 1}'); INSERT INTO points VALUES (3, 1714550400000, 1)});
($ok, $err) = import($points_query, $points_copy);
like($err, qr/line 5/, 'a point with tags that are not JSON is named with its line');
is($node->safe_psql('app', 'SELECT count(*) FROM metrics.points'), '0', 'no point was imported');
sqlite(q{DELETE FROM points WHERE series_id = 3; DELETE FROM series WHERE id = 3});
($ok, $err) = import($points_query, $points_copy);
ok($ok, 'the points store imports') or diag($err);
is($node->safe_psql('app', q{
	SELECT string_agg(format('%s %s %s %s', s.name, s.tags, p.ts AT TIME ZONE 'UTC', p.value), ', ' ORDER BY p.ts)
	  FROM metrics.points p JOIN metrics.series s USING (series_id)}),
	'http.latency_ms {"route": "/a"} 2024-05-01 08:00:00 12.5, http.latency_ms {"route": "/a"} 2024-05-01 08:00:01.5 20, '
	  . 'queue.depth {} 2024-05-01 08:01:00 3',
	'points arrive with their series and epoch-millisecond times');

my $hourly_query = "SELECT s.name, coalesce(s.tags, '{}') AS tags, " . ts('h.hour')
  . " AS bucket_start, '1 hour' AS bucket_width, h.n AS count, h.total AS sum, h.lo AS min, h.hi AS max"
  . ' FROM hourly h JOIN series s ON s.id = h.series_id ORDER BY h.hour';
my $hourly_copy = 'COPY metrics.import_rollups (name, tags, bucket_start, bucket_width, count, sum, min, max)'
  . ' FROM STDIN (FORMAT csv, HEADER true)';
sqlite(q{INSERT INTO hourly VALUES (1, 1714546801, 1, 1, 1, 1)});
($ok, $err) = import($hourly_query, $hourly_copy);
like($err, qr/is not aligned on its width.*COPY import_rollups, line 4/s, 'an unaligned bucket is named with its line');
is($node->safe_psql('app', 'SELECT count(*) FROM metrics.rollups'), '0', 'no aggregate was imported');
sqlite(q{DELETE FROM hourly WHERE hour = 1714546801});
($ok, $err) = import($hourly_query, $hourly_copy);
ok($ok, 'the aggregations import') or diag($err);
is($node->safe_psql('app', q{
	SELECT string_agg(format('%s %s %s %s %s %s', bucket_width, bucket_start AT TIME ZONE 'UTC', count, sum, min, max), ', '
					  ORDER BY bucket_width, bucket_start)
	  FROM metrics.rollups}),
	'01:00:00 2024-05-01 06:00:00 100 1500 2 80, 01:00:00 2024-05-01 07:00:00 10 120 5 30, '
	  . '1 day 2024-05-01 00:00:00 110 1620 2 80',
	'hourly aggregates land in the hour buckets and are added up into the day');
($ok, $err) = import($hourly_query, $hourly_copy);
like($err, qr/already has a rollup of width "01:00:00".*line 2/s, 'importing the same buckets twice is refused');

# The audit log: events with their time in every form, their actor, action,
# object, a 0/1 success and details as JSON text.
sqlite(q{
	CREATE TABLE audit_log (id INTEGER PRIMARY KEY, at, user TEXT, action TEXT, target TEXT, success INTEGER,
							details TEXT);
	INSERT INTO audit_log VALUES
		(1, '2024-05-01T10:00:00+02:00', 'alice@example.com', 'order.approve', 'order:1', 1, '{"amount": 120}'),
		(2, 1714550460, 'bob@example.com', 'order.view', 'order:1', 1, NULL),
		(3, 1714550520250, 'bob@example.com', 'export.csv', NULL, 0, '{"rows": 3}'),
		(4, '2024-05-01 08:03:00', 'carol@example.com', 'login', NULL, 1, '{}');
});
my $events_query = 'SELECT ' . ts('at') . " AS ts, user AS actor, action, target AS object,"
  . " CASE success WHEN 1 THEN 'ok' ELSE 'failed' END AS outcome, details FROM audit_log ORDER BY id";
my $events_copy = 'COPY audit.import_events (ts, actor, action, object, outcome, details) FROM STDIN (FORMAT csv, HEADER true)';
$node->safe_psql('app', q{
	CREATE ROLE ops LOGIN IN ROLE opsdata_admin, opsdata_auditor;
	SELECT audit.log_event('order.create', 'order:1', details => '{"live": true}');
});

($ok, $err) = import($events_query, $events_copy);
like($err, qr/audit event of 2024-05-01 [0-9:.+-]+ is older than the audit retention.*COPY import_events, line 2/s,
	'events older than audit.retention are refused, with the line of the first');
$node->safe_psql('app', q{SELECT opsdata.set_setting('audit.retention', '10 years')});
sqlite(q|INSERT INTO audit_log VALUES (5, 1714550600, 'dan', 'order.cancel', 'order:2', 1, '{"reason": ')|);
($ok, $err) = import($events_query, $events_copy);
like($err, qr/invalid input syntax for type json.*COPY import_events, line 6, column details/s,
	'an event whose details are not JSON is named with its line and column');
sqlite(q{UPDATE audit_log SET details = NULL, at = '2099-01-01 00:00:00+00' WHERE id = 5});
($ok, $err) = import($events_query, $events_copy);
like($err, qr/the time of an audit event 2099-01-01 [0-9:.+-]+ is not in the past.*line 6/s,
	'an event in the future is refused');
is($node->safe_psql('app', q{SELECT audit.flush() >= 0; SELECT count(*) FROM audit.entries WHERE class = 'imported'}),
	"t\n0", 'no event of a failed import reaches the trail');
is($node->safe_psql('app', q{
	SELECT count(*) || ' ' || min(outcome) || ' ' || min(username) FROM audit.entries WHERE command = 'IMPORT AUDIT EVENTS'}),
	'3 rolled back ' . $node->safe_psql('app', 'SELECT current_user'),
	'every failed import is itself in the trail, rolled back, with who tried');
sqlite(q{DELETE FROM audit_log WHERE id = 5});

my ($out, $perr) = ('', '');
$node->psql('app', q{INSERT INTO audit.import_events (ts, action) VALUES (now() - interval '1 day', 'x')},
	stderr => \$perr, extra_params => [ '-U', 'ops' ]);
like($perr, qr/permission denied for view import_events/, 'an administrator may not import events');
$node->safe_psql('app', 'GRANT INSERT ON audit.import_events TO ops');
$node->psql('app', q{INSERT INTO audit.import_events (ts, action) VALUES (now() - interval '1 day', 'x')},
	stderr => \$perr, extra_params => [ '-U', 'ops' ]);
like($perr, qr/permission denied to import audit events.*Only superusers may write history/s,
	'nor may a role granted the view: only superusers write history');
$node->safe_psql('app', 'REVOKE INSERT ON audit.import_events FROM ops');

($ok, $err) = import($events_query, $events_copy);
ok($ok, 'the audit log imports') or diag($err);
is($node->safe_psql('app', q{
	SELECT string_agg(format('%s|%s|%s|%s|%s|%s', to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), actor, command,
							 objects, outcome, details), E'\n' ORDER BY ts)
	  FROM audit.trail WHERE class = 'imported'}),
	join("\n",
		'2024-05-01 08:00:00.000|alice@example.com|order.approve|{order:1}|ok|{"amount": 120}',
		'2024-05-01 08:01:00.000|bob@example.com|order.view|{order:1}|ok|',
		'2024-05-01 08:02:00.250|bob@example.com|export.csv||failed|{"rows": 3}',
		'2024-05-01 08:03:00.000|carol@example.com|login||ok|{}'),
	'the trail shows each old event at its own time, with its actor, action, object, outcome and details');
is($node->safe_psql('app', q{
	SELECT string_agg(DISTINCT format('%s %s', e.class, e.username = current_user), ', ')
	  || ' / ' || (SELECT format('%s %s %s', r.class, r.rows, r.outcome) FROM audit.entries r
					WHERE r.command = 'IMPORT AUDIT EVENTS' AND r.outcome = 'ok')
	  || ' / ' || (SELECT count(DISTINCT x.xid) FROM audit.entries x
					WHERE x.class = 'imported' OR (x.command = 'IMPORT AUDIT EVENTS' AND x.outcome = 'ok'))
	  || ' / ' || (SELECT class FROM audit.entries WHERE command = 'order.create')
	  FROM audit.entries e WHERE e.class = 'imported'}),
	'imported t / ddl 4 ok / 1 / app',
	'imported entries are of class imported, written by the importer, with the record of their import (same xid); live events are app');
is($node->safe_psql('app', q{
	SELECT audit.seal() >= 0;
	SELECT (SELECT sum(s.entry_count) FROM audit.seals s WHERE s.ts_from = '2024-05-01 00:00+00')
		   || ' ' || (SELECT status FROM audit.verify())}),
	"t\n4 intact", 'imported entries are sealed in the seals of their own day, and the chain verifies');

# The audit queue: items still to do, with their attempts, and done ones.
sqlite(q|
	CREATE TABLE jobs (id INTEGER PRIMARY KEY, queue TEXT, body TEXT, created, attempts INTEGER, done INTEGER, done_at);
	INSERT INTO jobs VALUES
		(1, 'mail', '{"to": "a@example.com"}', 1714550400, 1, 1, 1714550401),
		(2, 'mail', '{"to": "b@example.com"}', '2024-05-01 08:00:05+00', 2, 0, NULL),
		(3, 'mail', '{"to": "c@example.com"}', 1714550410000, 0, 0, NULL),
		(4, 'mail', '{"to": "d@example.com"}', 1714550420, 0, 0, NULL),
		(5, 'mail', '{"to": ', 1714550430, 0, 0, NULL);
|);
$node->safe_psql('app', q{SELECT audit.create_queue('mail')});
my $queue_query = 'SELECT queue, body AS payload, ' . ts('created') . ' AS enqueued_at, attempts AS deliveries,'
  . ' CASE WHEN done = 1 THEN ' . ts('done_at') . ' END AS acked_at FROM jobs ORDER BY id';
my $queue_copy = 'COPY audit.import_queue_items (queue, payload, enqueued_at, deliveries, acked_at) FROM STDIN (FORMAT csv, HEADER true)';
($ok, $err) = import($queue_query, $queue_copy);
like($err, qr/invalid input syntax for type json.*COPY import_queue_items, line 6, column payload/s,
	'a queue item whose payload is not JSON is named with its line');
is($node->safe_psql('app', 'SELECT count(*) FROM audit.queue_items'), '0', 'no queue item was imported');
sqlite(q{UPDATE jobs SET body = '{"to": "e@example.com"}', queue = 'nosuch' WHERE id = 5});
($ok, $err) = import($queue_query, $queue_copy);
like($err, qr/queue "nosuch" does not exist.*line 6/s, 'an item of an unknown queue is named with its line');
sqlite(q{UPDATE jobs SET queue = 'mail' WHERE id = 5});
($ok, $err) = import($queue_query, $queue_copy);
ok($ok, 'the audit queue imports') or diag($err);
is($node->safe_psql('app', q{
	SELECT string_agg(format('%s %s %s', payload->>'to', deliveries, to_char(enqueued_at AT TIME ZONE 'UTC', 'HH24:MI:SS')),
					  ', ' ORDER BY item_id)
	  FROM audit.read('mail', 10)}),
	'b@example.com 3 08:00:05, c@example.com 1 08:00:10, d@example.com 1 08:00:20, e@example.com 1 08:00:30',
	'audit.read hands the pending items out in their old order, with their enqueue times and delivery counts');
is($node->safe_psql('app', q{
	SELECT string_agg(format('%s %s', payload->>'to', acked_at AT TIME ZONE 'UTC'), ', ')
	  FROM audit.queue_items WHERE acked_at IS NOT NULL}),
	'a@example.com 2024-05-01 08:00:01', 'acknowledged items keep their acknowledgement and are not handed out');

done_testing();
