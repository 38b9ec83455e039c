# The vital signs: the scheduler runs the built-in job metrics.vitals on the
# schedule of the setting vitals.interval; a sample records connections,
# locks with their holders, sizes, checkpoints and WAL, and with
# pg_stat_statements the change of each query's calls, time and rows since
# the previous sample; metrics.slow_queries() and metrics.locks_at() answer
# from the series, showing query texts only to roles that may read them;
# new series beyond vitals.series_limit are dropped, counted and reported
# by health, and the job keeps succeeding.  opsdata.health_json() gives the
# health as one document with the time the check took.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('vitals',
	conf => "shared_preload_libraries = 'pg_opsdata,pg_stat_statements'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', q{
	CREATE EXTENSION pg_stat_statements;
	CREATE EXTENSION pg_opsdata;
	CREATE TABLE accounts (id int PRIMARY KEY, balance numeric);
	INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 10000) g;
	CREATE ROLE watcher LOGIN IN ROLE opsdata_reader;
});

# --- the scheduled job ----------------------------------------------------
$node->safe_psql('app', q{SELECT opsdata.set_setting('vitals.interval', '2 seconds')});
is($node->safe_psql('app', q{SELECT schedule FROM opsdata.jobs WHERE name = 'metrics.vitals'}), '00:00:02',
	'the job follows the setting vitals.interval');
$node->safe_psql('app', q{SELECT opsdata.alter_job(job_id, next_run => now()) FROM opsdata.jobs WHERE name = 'metrics.vitals'});
ok($node->poll_query_until('app', 'SELECT runs >= 2 FROM metrics.vitals_state'),
	'the scheduler runs metrics.vitals');
is($node->safe_psql('app', q{
	SELECT count(*) FILTER (WHERE r.status <> 'succeeded') FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'metrics.vitals' AND r.status <> 'running'}), '0', 'every run succeeded');
$node->safe_psql('app', q{SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'metrics.vitals'});
$node->poll_query_until('app', q{
	SELECT NOT EXISTS (SELECT FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
						WHERE j.name = 'metrics.vitals' AND r.status = 'running')});
is($node->safe_psql('app', q{
	SELECT string_agg(DISTINCT name, ' ' ORDER BY name) FROM metrics.series
	 WHERE name IN ('pg.connections', 'pg.database.size_bytes', 'pg.table.size_bytes', 'pg.index.size_bytes',
					'pg.checkpoints', 'pg.wal.bytes', 'pg.xact.oldest_seconds', 'pg.xmin.oldest_age',
					'pg.locks.waiting')}),
	'pg.checkpoints pg.connections pg.database.size_bytes pg.index.size_bytes pg.locks.waiting pg.table.size_bytes pg.wal.bytes pg.xact.oldest_seconds pg.xmin.oldest_age',
	'the samples are recorded as series of metrics');
ok($node->safe_psql('app', q{SELECT value > 0 FROM metrics.vital_signs WHERE name = 'pg.table.size_bytes' AND tags = '{"table": "public.accounts"}'}) eq 't',
	'the largest table is measured');

# --- pg_stat_statements: the change over the interval -------------------------
$node->safe_psql('app', 'SELECT metrics.collect_vitals()');
$node->safe_psql('app', 'SELECT count(*) FROM accounts WHERE balance > 41') for 1 .. 7;
$node->safe_psql('app', 'SELECT metrics.collect_vitals()');
my $qid = $node->safe_psql('app',
	q{SELECT queryid FROM pg_stat_statements WHERE query LIKE 'SELECT count(*) FROM accounts WHERE balance > $1'});
like($qid, qr/^-?\d+$/, 'pg_stat_statements knows the query');
is($node->safe_psql('app', qq{
	SELECT max(value) FILTER (WHERE name = 'pg.statements.calls') || ' ' || max(value) FILTER (WHERE name = 'pg.statements.rows')
	  FROM metrics.vital_signs WHERE tags = jsonb_build_object('queryid', '$qid')}),
	'7 7', 'the sample records the calls and rows of the interval');
$node->safe_psql('app', 'SELECT metrics.collect_vitals()');
is($node->safe_psql('app', qq{SELECT count(*) FROM metrics.vital_signs WHERE tags = jsonb_build_object('queryid', '$qid')}),
	'0', 'a query not run during the next interval is not in its sample');
is($node->safe_psql('app', qq{SELECT calls || ' ' || rows || ' ' || (total_ms > 0) || ' ' || query FROM metrics.slow_queries(n => 1000) WHERE queryid = $qid}),
	'7 7 true SELECT count(*) FROM accounts WHERE balance > $1',
	'metrics.slow_queries() sums the intervals of the last hour, with the text');
is($node->safe_psql('app', qq{SET ROLE watcher; SELECT calls || ' ' || coalesce(query, 'no text') FROM metrics.slow_queries(n => 1000) WHERE queryid = $qid}),
	'7 no text', 'a reader without pg_read_all_stats sees the figures but not the text');

# --- locks and their holders ----------------------------------------------
my $holder = $node->background_psql('app', on_error_stop => 0);
$holder->query_safe(q{SET application_name = 'nightly batch'; BEGIN; LOCK TABLE accounts IN EXCLUSIVE MODE;});
my $waiter = $node->background_psql('app', on_error_stop => 0);
$waiter->{stdin} .= "UPDATE accounts SET balance = 1 WHERE id = 1;\n";
$waiter->{run}->pump_nb();
ok($node->poll_query_until('app', q{SELECT count(*) = 1 FROM pg_locks WHERE NOT granted AND relation = 'accounts'::regclass}),
	'a session waits for a lock');
my $at = $node->safe_psql('app', 'SELECT now()');
$node->safe_psql('app', 'SELECT metrics.collect_vitals()');
$holder->query_safe('COMMIT');
$holder->quit;
$waiter->quit;
$node->safe_psql('app', 'SELECT metrics.rollup()');
is($node->safe_psql('app', qq{
	SELECT relation || ' | ' || mode || ' | ' || holder_application || ' | ' || holder_state || ' | ' || waiters
	  FROM metrics.locks_at('$at')}),
	'public.accounts | RowExclusiveLock | nightly batch | idle in transaction | 1',
	'metrics.locks_at() tells who held the lock waited for, from the rollups');
is($node->safe_psql('app', q{SELECT count(*) FROM metrics.locks_at(now() + interval '1 day')}), '0',
	'and nothing at a moment without waits');

# --- the series limit -------------------------------------------------------
my $tables = $node->safe_psql('app', q{SELECT count(*) FROM metrics.series WHERE name = 'pg.table.size_bytes'});
$node->safe_psql('app', qq{
	SELECT opsdata.set_setting('vitals.series_limit', '$tables');
	CREATE TABLE big AS SELECT g AS id, repeat('x', 200) AS v FROM generate_series(1, 20000) g;
	ANALYZE big;
	SELECT metrics.collect_vitals();
});
is($node->safe_psql('app', q{SELECT count(*) FROM metrics.series WHERE name = 'pg.table.size_bytes'}), $tables,
	'no series is made beyond vitals.series_limit');
ok($node->safe_psql('app', 'SELECT dropped > 0 FROM metrics.vitals_state') eq 't', 'the values dropped are counted');
like($node->safe_psql('app', q{SELECT status || ': ' || detail FROM opsdata.health() WHERE component = 'metrics vitals'}),
	qr/^warning: .*vitals\.series_limit/, 'health reports it');

# --- health as one JSON document --------------------------------------------
# A check that takes longer than core.health_latency_warning adds a
# component of its own: on a loaded machine one may take over 100 ms, so
# the document's shape is checked with a bound it cannot reach.
is($node->safe_psql('app', q{SELECT opsdata.setting('core.health_latency_warning')::interval = '100 ms'}), 't',
	'seen from a /health endpoint, a check longer than 100 ms is a warning by default');
$node->safe_psql('app', q{SELECT opsdata.set_setting('core.health_latency_warning', '1 hour')});
my $json = $node->safe_psql('app', q{
	SELECT (h->>'status') || ' ' || (h->>'duration_ms' ~ '^[0-9.]+$') || ' '
		   || (jsonb_array_length(h->'components') = (SELECT count(*) FROM opsdata.health())) || ' '
		   || (SELECT count(*) FROM jsonb_array_elements(h->'components') c WHERE c->>'component' = 'health latency')
	  FROM opsdata.health_json() h});
is($json, 'warning true true 0', 'health_json: the worst status, the time taken, every component');
$node->safe_psql('app', q{SELECT opsdata.set_setting('core.health_latency_warning', '1 microsecond')});
is($node->safe_psql('app', q{
	SELECT c->>'status' FROM opsdata.health_json() h, jsonb_array_elements(h->'components') c
	 WHERE c->>'component' = 'health latency'}), 'warning',
	'a check slower than core.health_latency_warning is a warning');

done_testing();
