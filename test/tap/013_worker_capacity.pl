# Running out of background workers is reported, never a crash loop, and
# never starves a database:
#  - when max_worker_processes leaves no room for a scheduler, the launcher
#    logs it once with the fix and health warns; the database gets its
#    scheduler as soon as a worker is free;
#  - when max_worker_processes is what limits the job workers, databases
#    take turns: a database waiting for a job worker gets the next one a
#    pg_opsdata worker frees, however busy another database is, and the
#    log says once that max_worker_processes is too small;
#  - pg_opsdata.max_workers caps the job workers of all databases
#    together, and databases take turns under it too.
# The jobs of the busy database block on an advisory lock the test holds,
# so each run of it ends only once the other database is seen waiting: the
# order of runs does not depend on the machine's speed.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

# Four background workers: the pg_opsdata launcher and three more (no
# logical replication launcher, no parallel query workers).
my $node = opsdata_node('capacity',
	conf => "max_worker_processes = 4\nmax_logical_replication_workers = 0\n"
	  . "max_parallel_workers = 0\npg_opsdata.max_workers = 8\n");
$node->start;

my $schedulers_sql = q{
	SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '')
	  FROM pg_stat_activity WHERE backend_type = 'pg_opsdata scheduler'};

for my $db ('one', 'two', 'three', 'four')
{
	$node->safe_psql('postgres', "CREATE DATABASE $db");
}
# Only the test's jobs run: the built-in ones are paused from the start.
my $pause_builtin = q{SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin};
for my $db ('one', 'two', 'three')
{
	$node->safe_psql($db, 'CREATE EXTENSION pg_opsdata');
	$node->safe_psql($db, $pause_builtin);
}
$node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'one,three,two'")
  or die 'no schedulers in one, two and three';

# The fourth database finds no worker left.
$node->safe_psql('four', 'CREATE EXTENSION pg_opsdata');
$node->safe_psql('four', $pause_builtin);
ok($node->poll_query_until('four', q{
	SELECT string_agg(component || '=' || status, ',' ORDER BY component)
		   = 'scheduler "four"=warning,worker capacity=warning'
	  FROM opsdata.health() WHERE component IN ('worker capacity', 'scheduler "four"')}),
	'health warns that max_worker_processes is used up and that this database has no scheduler');
like($node->safe_psql('four', q{
	SELECT detail FROM opsdata.health() WHERE component = 'worker capacity'}),
	qr/Raise max_worker_processes to at least \d+/, 'health says how to fix it');
$node->wait_for_log(qr/pg_opsdata could not start the scheduler of database "four": no background worker slot is free/);
ok(1, 'the log says which scheduler could not start and why');
ok($node->log_contains(qr/HINT:  Raise max_worker_processes to at least \d+/), 'and how to fix it');

# Let four seconds pass on the server's clock, in which the launcher
# retries every second at most: the log still holds a single line, and the
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

# The jobs of the two databases.  Database one has three jobs due every
# second that block on advisory lock 4242 (held by the test): alone they
# would keep every job worker busy.  Database four has one short job due
# every second.
$node->safe_psql('one', q{
	SELECT opsdata.pause_job(opsdata.add_job('busy ' || i,
			'SELECT pg_catalog.pg_advisory_xact_lock_shared(4242)', '1 second'))
	  FROM generate_series(1, 3) i});
$node->safe_psql('four', q{SELECT opsdata.pause_job(opsdata.add_job('quick', 'SELECT 1', '1 second'))});

my $blocked_sql = q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE backend_type = 'pg_opsdata job' AND datname = 'one'
	   AND wait_event_type = 'Lock' AND wait_event = 'advisory'};

# Resume the jobs while the test holds lock 4242 and play $rounds rounds:
# a run of one holds a job worker, blocked; four's job is due and four
# waits for a worker (health says why, matching $why, and in the first
# round, if $capacity, that background workers are short); the test lets the
# run of one end and takes the lock again at once, so that the next run of
# one blocks in turn.  Returns the runs of both databases, in order of
# start, up to the last blocked run of one, as "db" names.
sub play_rounds
{
	my ($rounds, $why, $capacity) = @_;
	my $since = $node->safe_psql('postgres', 'SELECT now()');
	my $lock = $node->background_psql('one');
	$lock->query_safe('SELECT pg_catalog.pg_advisory_lock(4242)');
	$node->safe_psql('one', q{SELECT opsdata.resume_job(job_id) FROM opsdata.jobs WHERE name LIKE 'busy %'});
	$node->safe_psql('four', q{SELECT opsdata.resume_job(job_id) FROM opsdata.jobs WHERE name = 'quick'});
	my $cutoff;
	for my $round (1 .. $rounds)
	{
		$node->poll_query_until('one', $blocked_sql)
		  or die "round $round: no job of one blocked";
		$node->poll_query_until('four', qq{
			SELECT detail ~ 'jobs wait for a job worker: .*$why'
			  FROM opsdata.health() WHERE component = 'scheduler "four"'})
		  or die "round $round: four does not wait for a job worker";
		$node->poll_query_until('four', q{
			SELECT count(*) = 1 FROM opsdata.health() WHERE component = 'worker capacity'})
		  or die 'no capacity warning'
		  if $capacity && $round == 1;
		if ($round == $rounds)
		{
			$cutoff = $node->safe_psql('postgres', 'SELECT now()');
			last;
		}
		# Returns once the blocked run of one has ended.
		$lock->query_safe(
			'SELECT pg_catalog.pg_advisory_unlock(4242), pg_catalog.pg_advisory_lock(4242)');
	}
	$lock->quit;
	for my $db ('one', 'four')
	{
		$node->safe_psql($db, q{SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE NOT builtin});
	}
	$node->poll_query_until('postgres', q{
		SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_opsdata job'})
	  or die 'job workers still running';
	my @runs;
	for my $db ('one', 'four')
	{
		for my $start (split /\n/, $node->safe_psql($db, qq{
			SELECT extract(epoch FROM r.started_at)
			  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
			 WHERE NOT j.builtin AND r.started_at >= '$since' AND r.started_at < '$cutoff'}))
		{
			push @runs, [ $start, $db ];
		}
	}
	return map { $_->[1] } sort { $a->[0] <=> $b->[0] } @runs;
}

# max_worker_processes binds: the launcher and two schedulers leave one
# background worker for jobs, while pg_opsdata.max_workers allows eight.
my @runs = play_rounds(5, 'max_worker_processes is in use', 1);
my $sequence = join ' ', @runs;
my $fours = grep { $_ eq 'four' } @runs;
cmp_ok($fours, '>=', 4, "four ran whenever a run of one ended ($sequence)");
$sequence =~ s/^(one )+//;
unlike($sequence, qr/\bone one\b/,
	'max_worker_processes binding: database one never runs twice while four waits');
$node->wait_for_log(qr/pg_opsdata could not start a job worker in database "\w+"/);
$log = slurp_file($node->logfile);
$lines = () = $log =~ /pg_opsdata could not start a job worker in database "\w+": no background worker slot is free/g;
is($lines, 1, 'the log says once that no background worker is free for jobs');
like($log, qr/could not start a job worker.*\n.*DETAIL: .*\n.*HINT:  Raise max_worker_processes to at least \d+/,
	'with the fix');

# pg_opsdata.max_workers binds: one job worker at a time, plenty of
# background workers.
$node->append_conf('postgresql.conf', "max_worker_processes = 8\npg_opsdata.max_workers = 1\n");
$node->restart;
$node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'four,one'")
  or die 'no schedulers after the restart';
@runs = play_rounds(5, 'pg_opsdata.max_workers are busy', 0);
$sequence = join ' ', @runs;
$fours = grep { $_ eq 'four' } @runs;
cmp_ok($fours, '>=', 4, "four ran whenever a run of one ended ($sequence)");
$sequence =~ s/^(one )+//;
unlike($sequence, qr/\bone one\b/,
	'pg_opsdata.max_workers binding: database one never runs twice while four waits');
ok($node->log_contains(qr/pg_opsdata jobs of database "\w+" wait for a job worker/),
	'the log says jobs wait for pg_opsdata.max_workers');
is($node->safe_psql('four', q{
	SELECT count(*) FROM opsdata.health() WHERE component = 'worker capacity'}),
	'0', 'and health does not blame max_worker_processes');

$node->stop;
done_testing();
