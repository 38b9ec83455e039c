# pg_dump of a database using pg_opsdata, restored into a fresh database,
# brings back the rows of every extension table and the user's settings,
# and the restored extension works (DESIGN.md, contract 9).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('dump');
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE src');
# The built-in jobs are paused from the start (and so in the dump): a
# rollup run in either database between the counts would add rollups.
$node->safe_psql('src', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
	COMMIT;
	SELECT opsdata.set_setting('audit.retention', '400 days');
	INSERT INTO metrics.series (name, tags) VALUES ('latency', '{"route": "/a"}'), ('latency', '{"route": "/b"}');
	INSERT INTO metrics.points SELECT 1, now() - i * interval '1 minute', i FROM generate_series(1, 100) i;
	INSERT INTO metrics.rollups (series_id, bucket_width, bucket_start, count, sum, min, max)
		 VALUES (1, '1 hour', date_trunc('hour', now()), 100, 5050, 1, 100);
	INSERT INTO audit.entries (database, username, current_user_name, backend_pid, class, command, outcome)
		 SELECT current_database(), 'alice', 'alice', 1, 'write', 'INSERT', 'ok' FROM generate_series(1, 10);
	INSERT INTO audit.statements (statement_id, statement_text) VALUES (1, 'SELECT 1');
	INSERT INTO learning.feedback (key, score, label) SELECT 'intent.refund', i / 100.0, i % 2 = 0 FROM generate_series(1, 50) i;
	INSERT INTO learning.candidates (key, item_id, priority) VALUES ('intent.refund', 'item-1', 0.9);
	INSERT INTO opsdata.jobs (name, command, schedule) VALUES ('user job', 'SELECT 1', '1 hour');
});

my $counts_sql = q{
	SELECT string_agg(format('%s=%s', t, n), ' ' ORDER BY t) FROM (
		SELECT 'points' AS t, count(*) AS n FROM metrics.points
		UNION ALL SELECT 'series', count(*) FROM metrics.series
		UNION ALL SELECT 'rollups', count(*) FROM metrics.rollups
		UNION ALL SELECT 'entries', count(*) FROM audit.entries
		UNION ALL SELECT 'statements', count(*) FROM audit.statements
		UNION ALL SELECT 'feedback', count(*) FROM learning.feedback
		UNION ALL SELECT 'candidates', count(*) FROM learning.candidates
		UNION ALL SELECT 'jobs', count(*) FROM opsdata.jobs
		UNION ALL SELECT 'config', count(*) FROM opsdata.config) c};
my $before = $node->safe_psql('src', $counts_sql);

my $dump = $node->basedir . '/src.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ],
	'pg_dump of a database using pg_opsdata succeeds');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
$node->command_ok(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored'), $dump ],
	'pg_restore into a fresh database succeeds');

is($node->safe_psql('restored', $counts_sql), $before, 'every table has its rows back');
# The user's setting, the identity sequences and the extension itself work.
is($node->safe_psql('restored', "SELECT opsdata.setting('audit.retention')"), '400 days',
	'the changed setting is restored');
$node->safe_psql('restored',
	"INSERT INTO metrics.series (name) VALUES ('after.restore')");
is($node->safe_psql('restored', "SELECT series_id FROM metrics.series WHERE name = 'after.restore'"),
	'3', 'identity sequences continue after the restored rows');
$node->safe_psql('restored', 'SELECT count(opsdata.resume_job(job_id)) FROM opsdata.jobs WHERE builtin');
is($node->safe_psql('restored',
		"SELECT string_agg(component || ': ' || detail, '; ') FROM opsdata.health() WHERE status NOT IN ('ok', 'off')"),
	'', 'health is clean in the restored database');
# The ten entries, and the one that audited the change of audit.retention.
is($node->safe_psql('restored',
		"SELECT max(entry_id) FROM audit.entries"),
	'11', 'audit entry ids are kept');

$node->stop;
done_testing();
