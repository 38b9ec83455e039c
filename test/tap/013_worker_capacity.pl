# Running out of background workers is reported, never a crash loop: when
# max_worker_processes is used up, the launcher logs it once and health
# warns, and the database gets its scheduler as soon as a worker is free.
# pg_opsdata.max_workers caps the job workers of all databases together,
# and databases take turns: a database with many due jobs does not starve
# another.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

# Four background workers: the pg_opsdata launcher and three more (no
# logical replication launcher).
my $node = opsdata_node('capacity',
	conf => "max_worker_processes = 4\nmax_logical_replication_workers = 0\npg_opsdata.max_workers = 1\n");
$node->start;

my $schedulers_sql = q{
	SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '')
	  FROM pg_stat_activity WHERE backend_type = 'pg_opsdata scheduler'};

for my $db ('one', 'two', 'three', 'four')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
}
for my $db ('one', 'two', 'three')
{
	$node->safe_psql($db, 'CREATE EXTENSION pg_opsdata');
}
$node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'one,three,two'")
  or die 'no schedulers in one, two and three';

# The fourth database finds no worker left.
$node->safe_psql('four', 'CREATE EXTENSION pg_opsdata');
ok($node->poll_query_until('four', q{
	SELECT string_agg(component || '=' || status, ',' ORDER BY component)
		   = 'scheduler "four"=warning,worker capacity=warning'
	  FROM opsdata.health() WHERE component IN ('worker capacity', 'scheduler "four"')}),
	'health warns that max_worker_processes is used up and that this database has no scheduler');
ok($node->log_contains(qr/pg_opsdata could not start the scheduler of database "four": no background worker slot is free/),
	'the log says which scheduler could not start and why');
ok($node->log_contains(qr/HINT:  Raise max_worker_processes/), 'and how to fix it');

# Let four seconds pass on the server's clock, in which the launcher
# retries (after 1 s, then 2 s): the log still holds a single line, and the
# server has not restarted anything.
$node->poll_query_until('four', q{
	SELECT substring(detail FROM '^Since (.*), schedulers')::timestamptz < now() - interval '4 seconds'
	  FROM opsdata.health() WHERE component = 'worker capacity'})
  or die 'capacity warning gone';
my $log = slurp_file($node->logfile);
my $lines = () = $log =~ /could not start the scheduler of database "four"/g;
is($lines, 1, 'the failure is logged once, not on every retry');
unlike($log, qr/terminating any other active server processes|was terminated by signal/,
	'nothing crashed or was restarted');

# A worker frees up: the fourth database gets its scheduler.
$node->safe_psql('two', 'DROP EXTENSION pg_opsdata');
$node->safe_psql('three', 'DROP EXTENSION pg_opsdata');
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'four,one'"),
	'once a worker is free, the waiting database gets its scheduler');
ok($node->poll_query_until('four', q{
	SELECT count(*) = 0 FROM opsdata.health() WHERE component = 'worker capacity'}),
	'and the capacity warning clears');

# pg_opsdata.max_workers = 1: one job worker at a time, and databases
# take turns.  Database one has three jobs of a second each, due every
# second: alone they would keep the worker busy.  Database four has one
# short job due every second; it is always waiting when a run of one ends,
# and must get the worker next each time.  The built-in jobs of both
# databases are paused: a short built-in run of one may end before four's
# job is due again, and one would then rightly run twice in a row.
for my $db ('one', 'four')
{
	$node->safe_psql($db, q{SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin});
}
my $since = $node->safe_psql('postgres', 'SELECT now()');
$node->safe_psql('one', q{
	SELECT opsdata.add_job('busy ' || i, 'SELECT pg_sleep(1)', '1 second') FROM generate_series(1, 3) i});
$node->safe_psql('four', q{SELECT opsdata.add_job('quick', 'SELECT pg_sleep(0.2)', '1 second')});
my $runs_sql = qq{
	SELECT string_agg(extract(epoch FROM started_at) || ' ' || extract(epoch FROM finished_at), ',')
	  FROM opsdata.job_runs
	 WHERE started_at >= '$since' AND finished_at IS NOT NULL};
$node->poll_query_until('four', q{
	SELECT count(*) >= 5 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'quick' AND status = 'succeeded'})
  or die 'database four ran no jobs';
my @runs;
for my $db ('one', 'four')
{
	for my $run (split /,/, $node->safe_psql($db, $runs_sql))
	{
		my ($start, $end) = split / /, $run;
		push @runs, [ $start, $end, $db ];
	}
}
@runs = sort { $a->[0] <=> $b->[0] } @runs;
my $overlaps = 0;
for my $i (1 .. $#runs)
{
	$overlaps++ if $runs[$i][0] < $runs[ $i - 1 ][1];
}
is($overlaps, 0, 'with max_workers = 1 no two jobs run at once, across databases');
# From the first run of four on, four waits whenever a run of one ends.
my $first = 0;
$first++ while $runs[$first][2] ne 'four';
my $sequence = join ' ', map { $_->[2] } @runs[ $first .. $#runs ];
unlike($sequence, qr/\bone one\b/, "database one never runs twice while four waits ($sequence)");
ok($node->log_contains(qr/pg_opsdata jobs of database "\w+" wait for a job worker/),
	'the log says jobs wait for pg_opsdata.max_workers');

$node->stop;
done_testing();
