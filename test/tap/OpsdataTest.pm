# Helpers shared by pg_opsdata's Perl TAP tests.
package OpsdataTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';

our @EXPORT = qw(opsdata_node opsdata_wait_up opsdata_wait_old_server_gone opsdata_stalled_job);

# A new, initialized (not started) node.  preload => 0 leaves pg_opsdata out
# of shared_preload_libraries; extra settings may be given as conf => '...'.
sub opsdata_node
{
	my ($name, %opts) = @_;
	my $preload = exists $opts{preload} ? $opts{preload} : 1;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} || {} });
	$node->append_conf('postgresql.conf',
		$preload
		? "shared_preload_libraries = 'pg_opsdata'\n"
		: "shared_preload_libraries = ''\n");
	$node->append_conf('postgresql.conf', "max_worker_processes = 16\n");
	$node->append_conf('postgresql.conf', $opts{conf}) if $opts{conf};
	return $node;
}

# Wait until the node, made to crash (a process killed with SIGKILL) after
# its log had grown to $offset bytes (take -s $node->logfile before the
# kill), has restarted: the postmaster has logged that it reinitializes and
# then that it accepts connections again, and a query is answered.  A query
# sent before the postmaster noticed the crash would still be answered by
# the old processes, and the next one would reach the server while it
# restarts.  Returns true once the node is up; dies when that takes longer
# than the tests' timeout.
sub opsdata_wait_up
{
	my ($node, $offset) = @_;
	die 'opsdata_wait_up: the log offset from before the crash is needed'
	  unless defined $offset;
	$node->wait_for_log(
		qr/all server processes terminated; reinitializing.*database system is ready to accept connections/s,
		$offset);
	return $node->poll_query_until('postgres', 'SELECT true');
}

# After the postmaster itself was killed ($node->kill9): wait until every
# process of the old server is gone, that is until nothing is attached to
# its shared memory any more and the postmaster's own PID has been reaped
# (a new postmaster refuses to start before), and remove its lock file.
# Dies when that takes longer than the tests' timeout.
sub opsdata_wait_old_server_gone
{
	my ($node) = @_;
	my $pidfile = $node->data_dir . '/postmaster.pid';
	my @lines = split /\n/, slurp_file($pidfile);
	my $pid = $lines[0];
	my (undef, $shmid) = split ' ', $lines[6];
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		my $attached = grep {
			my @f = split ' ';
			$f[1] eq $shmid && $f[6] > 0
		} split /\n/, slurp_file('/proc/sysvipc/shm');
		if (!$attached && !kill(0, $pid))
		{
			unlink $pidfile;
			return;
		}
		select(undef, undef, undef, 0.1);
	}
	die "the processes of the killed server are still there";
}

# The pid of the one job process sleeping in pg_sleep(), once there is one
# (a test stalls a job in the middle of its run, to kill it there); undef
# if none shows up within the poll's time.
sub opsdata_stalled_job
{
	my ($node) = @_;
	my $stalled = q{SELECT pid FROM pg_stat_activity
					 WHERE backend_type = 'pg_opsdata job' AND wait_event = 'PgSleep'};
	return undef
	  unless $node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($stalled) s");
	return $node->safe_psql('postgres', $stalled);
}

1;
