# No committed change without its audit entry: inserts committed by many
# sessions keep their entries (and only once) when a backend is killed
# with SIGKILL under load, and when the postmaster itself is.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('audit_crash',
	conf => "pg_opsdata.audit = 'write'\nrestart_after_crash = on\nsynchronous_commit = on\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_opsdata');
$node->safe_psql('postgres', 'CREATE TABLE t (id bigserial PRIMARY KEY, v int)');
my $script = $node->basedir . '/insert.sql';
PostgreSQL::Test::Utils::append_to_file($script, "INSERT INTO t (v) VALUES (1);\n");

# Every row committed in t must have exactly one "ok" INSERT entry: one
# statement per transaction, so one entry per xid.
sub check_trail
{
	my ($what) = @_;
	my $rows = $node->safe_psql('postgres', 'SELECT count(*) FROM t');
	cmp_ok($rows, '>', 0, "$what: rows were committed");
	is($node->safe_psql('postgres',
			"SELECT count(*) FROM audit.entries WHERE command = 'INSERT' AND objects = '{public.t}' AND outcome = 'ok'"),
		$rows, "$what: every committed insert has its entry");
	is($node->safe_psql('postgres',
			"SELECT count(*) - count(DISTINCT xid) FROM audit.entries WHERE command = 'INSERT' AND objects = '{public.t}' AND outcome = 'ok'"),
		'0', "$what: no entry is duplicated");
}

sub load
{
	my ($out, $err) = ('', '');
	return IPC::Run::start(
		[ 'pgbench', '-n', '-c', '4', '-T', '30', '-f', $script, $node->connstr('postgres') ],
		'>', \$out, '2>', \$err);
}

# A backend killed under load: the postmaster restarts every session.
my $h = load();
$node->poll_query_until('postgres', 'SELECT count(*) > 200 FROM t') or die 'no load';
my $pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE query LIKE 'INSERT INTO t %' AND pid <> pg_backend_pid() LIMIT 1");
my $offset = -s $node->logfile;
kill 'KILL', $pid;
$h->finish;
opsdata_wait_up($node, $offset) or die 'server did not come back';
check_trail('backend killed');

# The postmaster killed under load.
$h = load();
$node->poll_query_until('postgres', 'SELECT count(*) > 500 FROM t') or die 'no load';
$node->kill9;
$h->finish;
# Its sessions exit when they notice: wait until they have, and remove the
# lock file the killed postmaster left behind, as after a crash.
opsdata_wait_old_server_gone($node);
$node->start;
check_trail('postmaster killed');

$node->stop;
done_testing();
