# The acting end user through a pooler: Debian's PgBouncer in transaction
# pooling mode, many clients sharing two server connections.  Each client
# declares its actor per transaction (audit.set_context(), or SET LOCAL
# pg_opsdata.audit_actor), writes and logs an application event, then runs a
# transaction that declares nothing.  Every entry carries the actor of its
# own transaction, never a neighbour's; the undeclared ones carry none.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use OpsdataTest;

my $pgbouncer = '/usr/sbin/pgbouncer';
ok(-x $pgbouncer, 'pgbouncer is installed (test/deps installs it)')
  or BAIL_OUT('pgbouncer is missing: run test/deps');

my $node = opsdata_node('pgbouncer', conf => "pg_opsdata.audit = 'write'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', q{
	CREATE EXTENSION pg_opsdata;
	CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, who text NOT NULL);
});
my $user = $node->safe_psql('postgres', 'SELECT current_user');

# The pooler, on a free loopback port, two server connections for the
# database.
my $dir = PostgreSQL::Test::Utils::tempdir();
my $port = PostgreSQL::Test::Cluster::get_free_port();
PostgreSQL::Test::Utils::append_to_file("$dir/users.txt", qq{"$user" ""\n});
PostgreSQL::Test::Utils::append_to_file("$dir/pgbouncer.ini", sprintf(<<'EOF', $node->host, $node->port, $port, $dir, $dir, $dir));
[databases]
app = host=%s port=%d dbname=app
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s/users.txt
pool_mode = transaction
default_pool_size = 2
max_client_conn = 50
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
EOF
my ($bout, $berr) = ('', '');
my $bouncer = IPC::Run::start([ $pgbouncer, "$dir/pgbouncer.ini" ], '>', \$bout, '2>', \$berr);

my @psql = ('psql', '-X', '-q', '-A', '-t', '-h', '127.0.0.1', '-p', $port, '-U', $user, '-d', 'app',
	'-v', 'ON_ERROR_STOP=1');
my $up = 0;
foreach (1 .. $PostgreSQL::Test::Utils::timeout_default * 10)
{
	my ($o, $e) = ('', '');
	if (IPC::Run::run([ @psql, '-c', 'SELECT 1' ], '>', \$o, '2>', \$e) && $o =~ /^1$/m)
	{
		$up = 1;
		last;
	}
	select(undef, undef, undef, 0.1);
}
ok($up, 'PgBouncer accepts connections') or diag($berr);

# Eight clients at once, each 25 rounds of a declared and an undeclared
# transaction.
my ($clients, $rounds) = (8, 25);
my @runs;
foreach my $c (1 .. $clients)
{
	my $script = '';
	foreach my $k (1 .. $rounds)
	{
		my $actor = "user-$c-$k";
		$script .= $k % 2
		  ? "BEGIN; SELECT audit.set_context('$actor', 'req-$c-$k');\n"
		  : "BEGIN; SET LOCAL pg_opsdata.audit_actor = '$actor'; SET LOCAL pg_opsdata.audit_request_id = 'req-$c-$k';\n";
		$script .= "INSERT INTO orders (who) VALUES ('$actor');\n";
		$script .= "SELECT audit.log_event('order.create', '$actor');\n";
		$script .= "COMMIT;\n";
		$script .= "BEGIN; INSERT INTO orders (who) VALUES ('anon-$c-$k'); COMMIT;\n";
	}
	my ($o, $e) = ('', '');
	push @runs, [ IPC::Run::start([ @psql, '-f', '-' ], '<', \$script, '>', \$o, '2>', \$e), \$e ];
}
my $failed = 0;
foreach my $r (@runs)
{
	my ($h, $e) = @$r;
	$h->finish or do { $failed++; diag($$e) };
}
is($failed, 0, "$clients clients ran their transactions through the pooler");

my $declared = $clients * $rounds;
is($node->safe_psql('app', q{SELECT count(*) FROM orders}), 2 * $declared, 'every insert committed');
is($node->safe_psql('app', q{
	SELECT count(*) FROM audit.trail WHERE command = 'INSERT' AND 'public.orders' = ANY (objects)}),
	2 * $declared, 'every insert is in the trail');
is($node->safe_psql('app', q{
	SELECT count(*) FROM audit.trail WHERE command = 'INSERT' AND 'public.orders' = ANY (objects)
	   AND statement_text LIKE '%''user-%'
	   AND actor IS NOT DISTINCT FROM substring(statement_text FROM '''(user-[0-9]+-[0-9]+)''')
	   AND request_id = replace(actor, 'user-', 'req-')}),
	$declared, 'each declared insert carries the actor and request of its own transaction');
is($node->safe_psql('app', q{
	SELECT count(*) FROM audit.trail WHERE command = 'INSERT' AND 'public.orders' = ANY (objects)
	   AND statement_text LIKE '%''anon-%' AND actor IS NULL AND request_id IS NULL}),
	$declared, 'each undeclared insert carries none, whatever ran before on its connection');
is($node->safe_psql('app', q{
	SELECT count(*) FROM audit.trail WHERE class = 'app' AND command = 'order.create'
	   AND objects = ARRAY[actor] AND request_id = replace(actor, 'user-', 'req-')}),
	$declared, 'each application event carries the actor of its own transaction');
is($node->safe_psql('app', q{SELECT count(DISTINCT actor) FROM audit.trail WHERE class = 'app'}),
	$declared, 'every actor is distinct');
cmp_ok($node->safe_psql('app', q{
	SELECT count(DISTINCT backend_pid) FROM audit.trail WHERE command = 'INSERT' AND 'public.orders' = ANY (objects)}),
	'<=', 2, "the $clients clients shared at most two server connections");
is($node->safe_psql('app', q{SELECT count(*) FROM audit.trail WHERE actor IS NOT NULL AND username <> current_user}),
	'0', 'the session role is kept beside the declared actor');

$bouncer->kill_kill;
$node->stop;
done_testing();
