# Scheduler services (src/worker/worker.h), as another area of pg_opsdata
# uses them: a service registered while preloading is called by the
# scheduler once connected, again when any backend wakes the scheduler
# (cheaply, at any rate), and after the delay it returns; an error is
# logged and the service retried after a growing delay while jobs go on.
#
# The service is a small library built here against worker.h, preloaded
# after pg_opsdata from a private overlay of the installation (the
# installation the tests use is read-only).
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Path qw(make_path);
use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);

my $top = $ENV{OPSDATA_TOP} or die 'OPSDATA_TOP is not set';
my ($bindir, $sharedir, $pkglibdir, $includedir) =
  map { my $v = `pg_config --$_`; chomp $v; $v } qw(bindir sharedir pkglibdir includedir-server);
# The private installation holds no headers: use the installed ones.
$includedir = ($includedir =~ m{(/usr/include/.*)$})[0] // $includedir unless -d $includedir;

# The overlay keeps the installation's layout (PostgreSQL finds its share
# and lib directories relative to the program's real path, when that path
# ends as the installed one does): postgres and pg_ctl are copies, lib a
# directory of links plus the service library, the rest links.
my @bin = File::Spec->splitdir($bindir);
my @lib = File::Spec->splitdir($pkglibdir);
my @share = File::Spec->splitdir($sharedir);
my $common = 0;
$common++ while $bin[$common] eq $share[$common] && $bin[$common] eq $lib[$common];
my $prefix = File::Spec->catdir(@bin[ 0 .. $common - 1 ]);
my $overlay = PostgreSQL::Test::Utils::tempdir('overlay');
my ($obindir, $olib, $oshare) = map { $overlay . substr($_, length($prefix)) } ($bindir, $pkglibdir, $sharedir);
make_path($obindir, $olib, dirname($oshare));
for my $program (glob "$bindir/*")
{
	my $target = "$obindir/" . (File::Spec->splitpath($program))[2];
	if ($program =~ m{/(postgres|pg_ctl)$})
	{
		system_or_bail('cp', $program, $target);
	}
	else
	{
		symlink($program, $target) or die "symlink $program: $!";
	}
}
for my $file (glob "$pkglibdir/*")
{
	symlink($file, "$olib/" . (File::Spec->splitpath($file))[2]) or die "symlink $file: $!";
}
symlink($sharedir, $oshare) or die "symlink share: $!";

my $source = "$overlay/worker_service_test.c";
open my $c, '>', $source or die $!;
print $c <<'EOC';
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"

#include "worker/worker.h"

PG_MODULE_MAGIC;

void _PG_init(void);
PG_FUNCTION_INFO_V1(wake_scheduler);

static int test_delay = -1;
static bool test_fail = false;

/* Record the call in public.service_calls, if the table exists. */
static long
test_run(void)
{
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_execute("INSERT INTO public.service_calls (pid) SELECT pg_backend_pid()"
				" WHERE to_regclass('public.service_calls') IS NOT NULL", false, 0);
	if (test_fail)
		elog(ERROR, "test service failed on purpose");
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return test_delay;
}

static const WorkerService test_service = {"test service", test_run};

void
_PG_init(void)
{
	DefineCustomIntVariable("worker_test.delay", "delay", NULL, &test_delay, -1, -1, 100000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomBoolVariable("worker_test.fail", "fail", NULL, &test_fail, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	if (process_shared_preload_libraries_in_progress)
		worker_register_service(&test_service);
}

Datum
wake_scheduler(PG_FUNCTION_ARGS)
{
	worker_wake_scheduler(MyDatabaseId);
	PG_RETURN_VOID();
}
EOC
close $c;
system_or_bail('gcc', '-shared', '-fPIC', '-O2', '-I', $includedir, '-I', "$top/src",
	'-o', "$olib/worker_service_test.so", $source);

my $node = PostgreSQL::Test::Cluster->new('services', install_path => dirname($obindir));
$node->init;
$node->append_conf('postgresql.conf',
	"shared_preload_libraries = 'pg_opsdata,worker_service_test'\nmax_worker_processes = 16\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', q{
	CREATE TABLE service_calls (pid integer, at timestamptz DEFAULT clock_timestamp());
	CREATE FUNCTION wake_scheduler() RETURNS void LANGUAGE c AS 'worker_service_test', 'wake_scheduler';
	CREATE EXTENSION pg_opsdata;
});

my $calls_sql = 'SELECT count(*) FROM service_calls';
ok($node->poll_query_until('app', "SELECT ($calls_sql) >= 1"),
	'a scheduler calls the service once connected to its database');
is($node->safe_psql('app', q{
	SELECT count(DISTINCT c.pid) FROM service_calls c JOIN pg_stat_activity a ON a.pid = c.pid
	 WHERE a.backend_type = 'pg_opsdata scheduler' AND a.datname = 'app'}),
	'1', 'inside the scheduler process of the database');

# Returning -1: called again when woken.  A backend wakes the scheduler
# 100000 times in a row (the time it takes is noted, not tested: it is the
# machine's) and the wake-ups coalesce.
my $before = $node->safe_psql('app', $calls_sql);
my $started = time;
$node->safe_psql('app', 'SELECT count(wake_scheduler()) FROM generate_series(1, 100000)');
note(sprintf('100000 wake-ups from a backend took %.3f s', time - $started));
ok($node->poll_query_until('app', "SELECT ($calls_sql) > $before"), 'a wake-up makes the scheduler call the service');
cmp_ok($node->safe_psql('app', $calls_sql) - $before, '<', 1000, 'wake-ups that come together are served together');

# Returning a delay: called that often, without wake-ups.
$node->safe_psql('app', q{ALTER SYSTEM SET worker_test.delay = 100; SELECT pg_reload_conf();});
$before = $node->safe_psql('app', $calls_sql);
ok($node->poll_query_until('app', "SELECT ($calls_sql) >= $before + 10"),
	'a service returning a delay is called again after it');

# An error: logged, and the service retried after 1 s, 2 s, 4 s... while
# jobs keep running.
$node->safe_psql('app', q{
	SELECT opsdata.add_job('tick', 'SELECT 1', '1 second');
	ALTER SYSTEM SET worker_test.fail = on;
	SELECT pg_reload_conf();
});
my $log_offset = -s $node->logfile;
$node->wait_for_log(qr/(?:test service failed on purpose.*){3}/s, $log_offset);
my @seconds;
for my $line (split /\n/, substr(slurp_file($node->logfile), $log_offset))
{
	push @seconds, $1 * 3600 + $2 * 60 + $3
	  if $line =~ /^\S+ (\d\d):(\d\d):([\d.]+) .*ERROR:  test service failed on purpose/;
}
ok(@seconds >= 3 && $seconds[2] - $seconds[1] > $seconds[1] - $seconds[0] && $seconds[1] - $seconds[0] >= 0.9,
	sprintf('a failing service is retried after growing delays (%s)',
		join(', ', map { sprintf('%.1f s', $seconds[$_] - $seconds[ $_ - 1 ]) } 1 .. $#seconds)));
ok($node->poll_query_until('app', q{
	SELECT count(*) >= 3 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'tick' AND status = 'succeeded'}),
	'jobs run while the service fails');
$node->safe_psql('app', q{ALTER SYSTEM SET worker_test.fail = off; SELECT pg_reload_conf();});
$before = $node->safe_psql('app', $calls_sql);
ok($node->poll_query_until('app', "SELECT ($calls_sql) >= $before + 5"),
	'once it stops failing, the service is called as before');

$node->stop;
done_testing();
