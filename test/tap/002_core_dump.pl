# pg_dump of a database using pg_opsdata, restored into a fresh database of
# a server that audits writes and DDL, succeeds with pg_restore (serial,
# --jobs 4 and --single-transaction) and with a plain dump through psql:
# the restore's own audited statements are held until the restore has
# ended (in one transaction, written at its commit), so none lands in the
# default partition of audit.entries before the day's partition is
# attached, none takes the entry_id of a restored entry, and none is lost:
# they join the trail once the restore is over.  Every table has its rows
# back and the restored extension works (DESIGN.md, contract 9).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('dump', conf => "pg_opsdata.audit = 'write, ddl'\n");
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
	INSERT INTO learning.feedback (key, score, label) SELECT 'intent.refund', i / 100.0, i % 2 = 0 FROM generate_series(1, 50) i;
	INSERT INTO learning.candidates (key, item_id, priority) VALUES ('intent.refund', 'item-1', 0.9);
	INSERT INTO opsdata.jobs (name, command, schedule) VALUES ('user job', 'SELECT 1', '1 hour');
	CREATE TABLE orders (id int);
	INSERT INTO orders VALUES (1), (2);
});
# Maintenance makes today's partition of audit.entries and moves the
# entries so far into it: the restore attaches that partition.
is($node->safe_psql('src', q{SELECT string_agg(DISTINCT status, ',') FROM opsdata.run_maintenance()}),
	'ok', 'maintenance made the daily partitions');
is($node->safe_psql('src', q{
	SELECT count(*) > 0 AND bool_and(tableoid <> 'audit.entries_default'::regclass) FROM audit.entries}),
	't', "the source's entries sit in the day's partition");

my $counts_sql = q{
	SELECT string_agg(format('%s=%s', t, n), ' ' ORDER BY t) FROM (
		SELECT 'points' AS t, count(*) AS n FROM metrics.points
		UNION ALL SELECT 'series', count(*) FROM metrics.series
		UNION ALL SELECT 'rollups', count(*) FROM metrics.rollups
		UNION ALL SELECT 'feedback', count(*) FROM learning.feedback
		UNION ALL SELECT 'candidates', count(*) FROM learning.candidates
		UNION ALL SELECT 'jobs', count(*) FROM opsdata.jobs
		UNION ALL SELECT 'config', count(*) FROM opsdata.config
		UNION ALL SELECT 'orders', count(*) FROM public.orders) c};
# The source's own entries, as restored: ids and texts.
my $entries_sql = q{
	SELECT string_agg(entry_id || ':' || command || ':' || coalesce(statement_text, ''), E'\n' ORDER BY entry_id)
	  FROM audit.trail WHERE database = 'src'};
my $before = $node->safe_psql('src', $counts_sql);
my $entries_before = $node->safe_psql('src', $entries_sql);
my $max_before = $node->safe_psql('src', 'SELECT max(entry_id) FROM audit.entries');

my $dump = $node->basedir . '/src.dump';
my $sql = $node->basedir . '/src.sql';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('src') ],
	'pg_dump -Fc of a database using pg_opsdata succeeds');
$node->command_ok([ 'pg_dump', '-Fp', '-f', $sql, '-d', $node->connstr('src') ],
	'pg_dump -Fp succeeds');

for my $case ([ 'serial', [] ], [ 'parallel', [ '--jobs', '4' ] ], [ 'single', [ '--single-transaction' ] ],
	[ 'plain', undef ])
{
	my ($name, $options) = @$case;
	$node->safe_psql('postgres', "CREATE DATABASE $name");
	my ($stdout, $stderr) = ('', '');
	my $ok;
	if (defined $options)
	{
		$ok = IPC::Run::run([ 'pg_restore', '--exit-on-error', @$options, '-d', $node->connstr($name), $dump ],
			'>', \$stdout, '2>', \$stderr);
	}
	else
	{
		$ok = IPC::Run::run([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', $sql, '-d', $node->connstr($name) ],
			'>', \$stdout, '2>', \$stderr);
	}
	ok($ok, "$name: the restore succeeds while the server audits writes and DDL") or diag($stderr);

	is($node->safe_psql($name, $counts_sql), $before, "$name: every table has its rows back");
	is($node->safe_psql($name, $entries_sql), $entries_before,
		"$name: every audit entry of the source is back, with its entry_id and text");

	# The restore's own statements were held, and join the trail once it
	# has ended: after the restored entries, each id once.
	ok($node->poll_query_until($name, q{
		SELECT (SELECT count(*) FROM audit.held_entries) = 0
		   AND (SELECT count(*) FROM audit.entries WHERE database <> 'src') > 0}),
		"$name: once the restore has ended, its own entries move into audit.entries");
	is($node->safe_psql($name, qq{
		SELECT count(*) = count(DISTINCT entry_id) AND min(entry_id) > $max_before
		  FROM audit.entries WHERE database <> 'src'}),
		't', "$name: the restore's entries have ids of their own, after every restored id");
	is($node->safe_psql($name, q{
		SELECT count(*) FROM audit.trail
		 WHERE database <> 'src' AND command = 'COPY' AND statement_text LIKE 'COPY metrics.series %'}),
		'1', "$name: the restore's COPY into metrics.series is in the trail");
	is($node->safe_psql($name, q{
		SELECT count(*) FROM audit.entries
		 WHERE tableoid = 'audit.entries_default'::regclass
		   AND ts >= date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'}),
		'0', "$name: none landed in the default partition while the day's partition exists");
}

# The user's setting, the identity sequences and the extension itself work.
is($node->safe_psql('parallel', "SELECT opsdata.setting('audit.retention')"), '400 days',
	'the changed setting is restored');
$node->safe_psql('parallel', "INSERT INTO metrics.series (name) VALUES ('after.restore')");
is($node->safe_psql('parallel', "SELECT series_id FROM metrics.series WHERE name = 'after.restore'"),
	'3', 'identity sequences continue after the restored rows');
my $max_restored = $node->safe_psql('parallel', 'SELECT max(entry_id) FROM audit.entries');
$node->safe_psql('parallel', 'INSERT INTO public.orders VALUES (3)');
is($node->safe_psql('parallel', q{
	SELECT entry_id FROM audit.trail WHERE statement_text = 'INSERT INTO public.orders VALUES (3)'}),
	$max_restored + 1, 'a write after the restore is audited at once, with the next entry_id');
$node->safe_psql('parallel', 'SELECT count(opsdata.resume_job(job_id)) FROM opsdata.jobs WHERE builtin');
is($node->safe_psql('parallel',
		"SELECT string_agg(component || ': ' || detail, '; ') FROM opsdata.health() WHERE status NOT IN ('ok', 'off')"),
	'', 'health is clean in the restored database');

$node->stop;
done_testing();
