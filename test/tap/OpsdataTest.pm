# Helpers shared by pg_opsdata's Perl TAP tests.
package OpsdataTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';

our @EXPORT = qw(opsdata_node opsdata_wait_up opsdata_stalled_job);

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

# Wait (up to a minute) until the node answers queries again, as after a
# crash and the postmaster's reinitialization.  Returns true once it does.
sub opsdata_wait_up
{
	my ($node) = @_;
	for (1 .. 600)
	{
		my $answer = eval { $node->safe_psql('postgres', 'SELECT 1') };
		return 1 if defined $answer && $answer eq '1';
		select(undef, undef, undef, 0.1);
	}
	return 0;
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
