# DROP EXTENSION pg_opsdata takes the trail with it, and neither it nor a
# session that starts meanwhile fails because of auditing:
#
#   - with DDL audited, DROP EXTENSION succeeds in autocommit, in a
#     transaction block and prepared (its own entry, and those of the
#     statements before it in its transaction, go with the trail);
#   - a session whose first statement reads the audit rules while a
#     prepared DROP EXTENSION holds them waits for it, as for any lock, and
#     once COMMIT PREPARED has dropped the tables it goes on without them:
#     its statement answers (it used to fail with "could not open relation
#     with OID ...", the OID of the dropped audit.rules);
#   - a prepared DROP EXTENSION leaves the audit queue alone: what was
#     queued for the trail reaches it after ROLLBACK PREPARED, and goes
#     with the trail after COMMIT PREPARED (a new CREATE EXTENSION does not
#     receive it).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('drop', conf => "max_prepared_transactions = 4\npg_opsdata.audit = 'ddl'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');
$node->safe_psql('app', 'CREATE EXTENSION pg_opsdata');

# DROP EXTENSION with DDL audited.
my ($rc, $out, $err) = $node->psql('app', 'DROP EXTENSION pg_opsdata');
is($rc . $err, '0', 'DROP EXTENSION succeeds in autocommit with DDL audited');
$node->safe_psql('app', 'CREATE EXTENSION pg_opsdata');
($rc, $out, $err) = $node->psql('app', q{
	BEGIN;
	CREATE TABLE public.before_the_drop (id int);
	DROP EXTENSION pg_opsdata;
	COMMIT;});
is($rc . $err, '0', 'and in a transaction block after other DDL');
is($node->safe_psql('app', q{
	SELECT count(*) FROM pg_extension WHERE extname = 'pg_opsdata'}), '0', 'which committed');
$node->safe_psql('app', 'CREATE EXTENSION pg_opsdata');
is($node->safe_psql('app', q{
	SELECT audit.flush() >= 0, count(*) FROM audit.trail WHERE statement_text LIKE '%before_the_drop%'}),
	't|0', 'a new CREATE EXTENSION starts with an empty trail');

# A session starts while a prepared DROP EXTENSION holds the audit rules.
($rc, $out, $err) = $node->psql('app', q{
	BEGIN;
	DROP EXTENSION pg_opsdata;
	PREPARE TRANSACTION 'drop';});
is($rc . $err, '0', 'DROP EXTENSION can be prepared with DDL audited');

my ($stdout, $stderr) = ('', '');
my $session = IPC::Run::start(
	[ 'psql', '-X', '-A', '-t', '-d', $node->connstr('app'), '-c', 'SELECT 42 AS first_statement' ],
	'>', \$stdout, '2>', \$stderr);
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM pg_stat_activity
	 WHERE datname = 'app' AND query = 'SELECT 42 AS first_statement' AND wait_event_type = 'Lock'}),
	'the new session waits for the prepared DROP EXTENSION');
$node->safe_psql('app', q{COMMIT PREPARED 'drop'});
$session->finish;
is($stdout, "42\n", 'once it has committed, the session answers');
is($stderr, '', 'without an error');
is($node->safe_psql('app', 'SELECT 43'), '43', 'and new sessions go on as before');

# Entries queued while a prepared DROP EXTENSION is pending.  The reader's
# first statement reads the audit rules before the drop holds them; its
# reads are queued while the drop holds the trail, so the scheduler cannot
# drain them meanwhile.
$node->safe_psql('app', 'CREATE EXTENSION pg_opsdata; CREATE TABLE public.kept (id int)');
my $reader = $node->background_psql('app');
$reader->query_safe("SET pg_opsdata.audit = 'read'; SELECT count(*) FROM public.kept");
my $dropper = $node->background_psql('app');
$dropper->query_safe('BEGIN; DROP EXTENSION pg_opsdata');
$reader->query_safe('SELECT 1 AS queued_read FROM public.kept') for 1 .. 3;
$dropper->query_safe(q{PREPARE TRANSACTION 'drop_rolled_back'});
$node->safe_psql('app', q{ROLLBACK PREPARED 'drop_rolled_back'});
ok($node->poll_query_until('app', q{
	SELECT count(*) FROM audit.trail WHERE statement_text = 'SELECT 1 AS queued_read FROM public.kept'}, '3'),
	'after ROLLBACK PREPARED of DROP EXTENSION, the entries queued meanwhile reach the trail');

$dropper->query_safe('BEGIN; DROP EXTENSION pg_opsdata');
$reader->query_safe('SELECT 2 AS queued_read FROM public.kept') for 1 .. 3;
$dropper->query_safe(q{PREPARE TRANSACTION 'drop_committed'});
$node->safe_psql('app', q{COMMIT PREPARED 'drop_committed'});
$node->safe_psql('app', 'CREATE EXTENSION pg_opsdata');
$node->safe_psql('app', 'SELECT audit.flush()');
is($node->safe_psql('app', q{
	SELECT count(*) FROM audit.trail WHERE statement_text LIKE 'SELECT 2 AS queued_read%'}),
	'0', 'after COMMIT PREPARED, they went with the trail');
$reader->quit;
$dropper->quit;

$node->stop;
done_testing();
