# While a dump is being restored into a database, the audit entries of its
# sessions are held in audit.held_entries, in the transaction that would
# have written them into audit.entries (queued ones by the drainer): the
# restore's own and those of any other session.  Nothing is written into
# audit.entries, audit.statements or the entry_id sequence meanwhile;
# health and opsdata.check_restore() say so.  Held entries survive a crash
# of the server, and once the restore is over they move into audit.entries
# with ids after those the restore set.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('hold', conf => "pg_opsdata.audit = 'write, ddl'\n");
$node->start;
$node->safe_psql('postgres', 'CREATE DATABASE app');

# A session that runs CREATE EXTENSION as pg_dump output does (row_security
# off) is a restore under way for as long as it stays connected.
my $restore = $node->background_psql('app', on_error_stop => 0);
$restore->query_safe('SET row_security = off');
$restore->query_safe('CREATE EXTENSION pg_opsdata');
# Partition maintenance, moving entries out of the default partition, would
# race with the reads below.
$restore->query_safe('SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin');
is($node->safe_psql('app', 'SELECT opsdata._restore_under_way()'), 't', 'a restore is under way');

$restore->query_safe('CREATE TABLE public.orders (id int PRIMARY KEY)');
$restore->query_safe('INSERT INTO public.orders VALUES (1)');
$node->psql('app', q{INSERT INTO public.orders VALUES ('x')});
$node->safe_psql('app', 'INSERT INTO public.orders VALUES (2)');
ok($node->poll_query_until('app', 'SELECT count(*) = 4 FROM audit.held_entries'),
	"the restore's statements, and the failed statement (queued, then drained) and the write of other sessions are held");
is($node->safe_psql('app', q{
	SELECT string_agg(command || ' ' || outcome || ' ' || statement_text, E'\n' ORDER BY ts) FROM audit.held_entries}),
	qq{CREATE TABLE ok CREATE TABLE public.orders (id int PRIMARY KEY)
INSERT ok INSERT INTO public.orders VALUES (1)
INSERT error INSERT INTO public.orders VALUES ('x')
INSERT ok INSERT INTO public.orders VALUES (2)},
	'each with its statement text');
is($node->safe_psql('app', q{
	SELECT concat_ws(' ', (SELECT count(*) FROM audit.entries), (SELECT count(*) FROM audit.statements),
					 (SELECT is_called FROM audit.entries_entry_id_seq))}),
	'0 0 f', 'nothing is written into audit.entries, audit.statements or the sequence of entry_ids');
is($node->safe_psql('app', 'SELECT audit.flush()'), '0', 'audit.flush() leaves held entries alone');
like($node->safe_psql('app', q{SELECT status || ': ' || detail FROM opsdata.health() WHERE component = 'audit hold'}),
	qr/^ok: A dump is being restored into this database: the 4 audit entries made meanwhile are held/,
	'health says entries are held');
is($node->safe_psql('app', q{
	SELECT string_agg(check_name || ' ' || status, ', ' ORDER BY check_name)
	  FROM opsdata.check_restore() WHERE check_name IN ('restore', 'held audit entries')}),
	'held audit entries ok, restore warning', 'opsdata.check_restore() says the restore is not over');

# The restore loads the trail and sets the sequence, as a dump does.
$restore->query_safe(q{
	INSERT INTO audit.entries (entry_id, ts, database, username, current_user_name, backend_pid, class, command, outcome)
	VALUES (41, now() - interval '1 hour', 'app', 'alice', 'alice', 1, 'write', 'INSERT', 'ok')});
$restore->query_safe(q{SELECT pg_catalog.setval('audit.entries_entry_id_seq', 41, true)});
ok($node->poll_query_until('app', 'SELECT count(*) = 5 FROM audit.held_entries'), 'that statement is held too');

# The server crashes before the restore ends: the held entries are safe,
# and with the restore over they join the trail, after the restored ids.
$node->stop('immediate');
$restore->{run}->kill_kill;
$node->start;
ok($node->poll_query_until('app', 'SELECT count(*) = 0 FROM audit.held_entries'),
	'after the crash the scheduler moves the held entries');
is($node->safe_psql('app', q{
	SELECT string_agg(entry_id::text, ' ' ORDER BY entry_id) || ': ' || string_agg(command || ' ' || outcome, ', ' ORDER BY ts)
	  FROM audit.trail}),
	'41 42 43 44 45 46: INSERT ok, CREATE TABLE ok, INSERT ok, INSERT error, INSERT ok, INSERT ok',
	'into audit.entries, with ids after the restored one');
is($node->safe_psql('app', q{
	SELECT count(*) FROM audit.trail WHERE statement_text = 'INSERT INTO public.orders VALUES (2)'}),
	'1', 'with their texts');
$node->safe_psql('app', 'INSERT INTO public.orders VALUES (3)');
is($node->safe_psql('app', q{SELECT entry_id FROM audit.trail WHERE statement_text = 'INSERT INTO public.orders VALUES (3)'}),
	'47', 'a write after the restore is audited at once');
is($node->safe_psql('app', q{SELECT count(*) FROM opsdata.health() WHERE component = 'audit hold'}), '0',
	'health has nothing held to report');

$node->stop;
done_testing();
