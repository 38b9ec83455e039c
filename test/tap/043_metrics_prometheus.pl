# The queries file prometheus/pg_opsdata.yaml with the real exporter
# (Debian's prometheus-postgres-exporter): started against a test server,
# listening on loopback only, scraped over HTTP.  Every query of the file
# runs without error as a monitoring role (member of opsdata_reader and
# opsdata_auditor), and /metrics shows health per component, the audit
# queue, jobs (a failing one counted), partition sets, the rollup backlog,
# the learning queue and the vital signs, a lock holder and a query shape
# included.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use IPC::Run;
use OpsdataTest;

my $exporter = '/usr/bin/prometheus-postgres-exporter';
ok(-x $exporter, 'prometheus-postgres-exporter is installed (test/deps installs it)')
  or BAIL_OUT('prometheus-postgres-exporter is missing: run test/deps');
my $queries = ($ENV{OPSDATA_TOP} // '.') . '/prometheus/pg_opsdata.yaml';

my $node = opsdata_node('prometheus',
	conf => "shared_preload_libraries = 'pg_opsdata,pg_stat_statements'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', q{
	CREATE EXTENSION pg_stat_statements;
	CREATE EXTENSION pg_opsdata;
	SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'metrics.vitals';
	CREATE ROLE prometheus LOGIN IN ROLE pg_monitor, opsdata_reader, opsdata_auditor;
	CREATE TABLE accounts (id int PRIMARY KEY, balance numeric);
	INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 1000) g;
	SELECT metrics.record('app.requests', 1);
	SELECT learning.offer('intent', 'item-1', 0.55);
	SELECT audit.create_queue('mail');
	SELECT audit.enqueue_many('mail', ARRAY['{"n": 1}', '{"n": 2}']::jsonb[]);
	SELECT opsdata.add_job('fails', 'SELECT 1 / 0', '1 day', start_at => now() + interval '1 day');
});
# A job that failed once; the first sample of the vital signs reads the
# counters that the second one compares with.
$node->psql('app', q{CALL opsdata.run_job('fails')});
$node->safe_psql('app', 'SELECT metrics.collect_vitals()');
$node->safe_psql('app', 'SELECT sum(balance) FROM accounts WHERE id < 500') for 1 .. 5;

# A session holds a lock another one waits for while the sample is taken.
my $holder = $node->background_psql('app', on_error_stop => 0);
$holder->query_safe(q{SET application_name = 'batch'; BEGIN; LOCK TABLE accounts IN EXCLUSIVE MODE;});
my $waiter = $node->background_psql('app', on_error_stop => 0);
$waiter->{stdin} .= "UPDATE accounts SET balance = 1 WHERE id = 1;\n";
$waiter->{run}->pump_nb();
ok($node->poll_query_until('app', q{SELECT count(*) = 1 FROM pg_locks WHERE NOT granted AND relation = 'accounts'::regclass}),
	'a session waits for the lock');
$node->safe_psql('app', 'SELECT metrics.collect_vitals()');
$holder->query_safe('COMMIT');
$holder->quit;
$waiter->quit;

# The exporter, on a free loopback port.
my $port = PostgreSQL::Test::Cluster::get_free_port();
my ($out, $err) = ('', '');
my $dsn = sprintf('host=%s port=%d user=prometheus dbname=app sslmode=disable', $node->host, $node->port);
my $h = IPC::Run::start(
	[ $exporter, "--extend.query-path=$queries", '--disable-default-metrics', '--disable-settings-metrics',
	  "--web.listen-address=127.0.0.1:$port" ],
	'>', \$out, '2>', \$err,
	init => sub { $ENV{DATA_SOURCE_NAME} = $dsn; });

my $http = HTTP::Tiny->new(timeout => 10);
my $body = '';
foreach (1 .. $PostgreSQL::Test::Utils::timeout_default * 10)
{
	my $r = $http->get("http://127.0.0.1:$port/metrics");
	if ($r->{success} && $r->{content} =~ /^opsdata_health_level/m)
	{
		$body = $r->{content};
		last;
	}
	select(undef, undef, undef, 0.1);
}
ok($body ne '', 'the exporter answers on the loopback port with pg_opsdata metrics');
$h->signal('TERM');
$h->finish;
note($err) if $err =~ /level=error/;

# Every query of the file ran without error.
unlike($err, qr/Error running query/, 'every query of the file runs as the monitoring role');

my %metric = map { /^(.+) (\S+)$/ ? ($1 => $2) : () } grep { !/^#/ } split /\n/, $body;
sub value
{
	my ($name, @labels) = @_;
	foreach my $k (keys %metric)
	{
		next unless $k =~ /^\Q$name\E\{/;
		next if grep { index($k, $_) < 0 } @labels;
		return $metric{$k};
	}
	return undef;
}

is(value('opsdata_health_level', 'component="extension"', 'status="ok"', 'database="app"'), '0',
	'health per component: the extension is ok');
ok(defined value('opsdata_health_check_duration_seconds'), 'the time the health check took');
is(value('opsdata_audit_queue_used', 'database="app"') . ' ' . value('opsdata_audit_queue_dropped', 'database="app"'),
	'0 0', 'the audit queue: its depth and drops');
is(value('opsdata_job_failures', 'job="fails"'), '1', 'a failed job is counted');
is(value('opsdata_job_last_succeeded', 'job="fails"'), '0', 'its last run did not succeed');
ok(defined value('opsdata_job_lateness_seconds', 'job="metrics.rollup"'), 'job lateness');
like(value('opsdata_partition_set_status', 'parent="metrics.points"'), qr/^(-1|0)$/,
	'a partition set: maintained without error, or not yet');
ok(value('opsdata_rollup_queued_points') >= 1, 'the rollup backlog counts the recorded point');
is(value('opsdata_learning_candidates_open'), '1', 'the learning queue holds the offered candidate');
is(value('opsdata_audit_items_ready', 'queue="mail"', 'kind="application"'), '2',
	'the depth of an audit processing queue');
ok(value('opsdata_vital_client_connections', 'state="active"') >= 1, 'vital signs: connections by state');
is(value('opsdata_vital_locks_waiting'), '1', 'vital signs: one lock request was waiting');
is(value('opsdata_vital_lock_holder_waiters', 'relation="public.accounts"', 'holder_application="batch"',
		'holder_state="idle in transaction"'), '1',
	'vital signs: the holder of the lock, its application and state');
ok(value('opsdata_vital_database_size_bytes') > 0, 'vital signs: database size');
ok(defined value('opsdata_vital_table_size_bytes', 'relation="public.accounts"'),
	'vital signs: the largest tables');
ok(defined value('opsdata_vital_statements_calls_per_interval'), 'vital signs: query shapes of pg_stat_statements');

done_testing();
