# Helpers shared by pg_opsdata's Perl TAP tests.
package OpsdataTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Exporter 'import';

our @EXPORT = qw(opsdata_node opsdata_wait_up);

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

1;
