# Transparency: a session audited for everything sees what it sees without
# pg_opsdata.  The same script runs on a server with pg_opsdata preloaded,
# installed and auditing every class, and on a server without it; their
# outputs (results, errors, settings, sequence state) must be identical.
# The script covers lastval() and currval() (in autocommit, in
# transactions and savepoints, in a session that never called nextval()),
# read-only transactions writing temporary tables, SET LOCAL and settings,
# errors, and prepared transactions.  Then the trail is checked: the
# audited server did record what the script did, the writes of read-only
# transactions through the queue.  A second script runs once the audited
# server has a subscription to every entry, so that the entries written in
# the user's transaction are enqueued there too.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $common = "max_prepared_transactions = 4\n";
my $with = opsdata_node('state_with',
	conf => $common . "pg_opsdata.audit = 'all'\n");
my $without = opsdata_node('state_without', preload => 0, conf => $common);
$_->start for ($with, $without);
$with->safe_psql('postgres', 'CREATE EXTENSION pg_opsdata');
opsdata_wait_audit_partitioned($with);

my $script = <<'EOS';
\set VERBOSITY default
SELECT lastval();
CREATE TABLE t (id serial PRIMARY KEY, v int);
CREATE SEQUENCE s;
SELECT lastval();
SELECT currval('s');
INSERT INTO t (v) VALUES (1);
SELECT lastval(), currval('t_id_seq');
SELECT currval('s');
SELECT nextval('s');
INSERT INTO t (v) VALUES (2);
SELECT lastval(), currval('s');
BEGIN;
INSERT INTO t (v) VALUES (3);
SELECT nextval('s');
COMMIT;
SELECT lastval(), currval('t_id_seq'), currval('s');
BEGIN;
INSERT INTO t (v) VALUES (4) RETURNING id;
SAVEPOINT a;
INSERT INTO t (v) VALUES (5);
ROLLBACK TO a;
SELECT lastval();
COMMIT;
SELECT lastval();
UPDATE t SET v = v + 10 WHERE id = 1 RETURNING *;
DELETE FROM t WHERE id = 2;
SELECT lastval();
DISCARD SEQUENCES;
SELECT lastval();
\c
SELECT lastval();
SELECT currval('t_id_seq');
UPDATE t SET v = v + 1 WHERE id = 1;
INSERT INTO t (id, v) VALUES (100, 100);
SELECT lastval();
SELECT currval('t_id_seq');
-- Read-only transactions may write temporary tables.
CREATE TEMP TABLE tmp (id serial, v int);
BEGIN READ ONLY;
INSERT INTO tmp (v) VALUES (1);
UPDATE tmp SET v = 2;
SELECT lastval();
COMMIT;
SET default_transaction_read_only = on;
INSERT INTO tmp (v) VALUES (3);
SELECT lastval();
INSERT INTO t (v) VALUES (9);
BEGIN;
INSERT INTO tmp (v) VALUES (4);
DELETE FROM tmp WHERE v = 3;
COMMIT;
SHOW transaction_read_only;
RESET default_transaction_read_only;
START TRANSACTION READ WRITE;
SET TRANSACTION READ ONLY;
INSERT INTO tmp (v) VALUES (5);
COMMIT;
SELECT id, v FROM tmp ORDER BY id;
-- SET LOCAL and settings.
SET statement_timeout = '1h';
BEGIN;
SET LOCAL work_mem = '1MB';
SET LOCAL search_path = pg_catalog;
SET LOCAL statement_timeout = '1min';
INSERT INTO public.t (v) VALUES (10);
SHOW work_mem;
SHOW search_path;
SHOW statement_timeout;
COMMIT;
SHOW work_mem;
SHOW search_path;
SHOW statement_timeout;
BEGIN;
SET LOCAL lock_timeout = '1s';
INSERT INTO t (v) VALUES (11);
ROLLBACK;
SHOW lock_timeout;
SELECT name, setting FROM pg_settings WHERE source = 'session' ORDER BY name;
SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only');
-- Errors.
INSERT INTO t (id, v) VALUES (1, 1);
SELECT 1 / 0;
SELEC 1;
BEGIN;
INSERT INTO t (v) VALUES (12);
SELECT 1 / 0;
COMMIT;
SELECT lastval();
-- Prepared transactions.
BEGIN;
INSERT INTO t (v) VALUES (13);
PREPARE TRANSACTION 'p1';
SELECT lastval();
COMMIT PREPARED 'p1';
BEGIN;
INSERT INTO t (v) VALUES (14);
SELECT nextval('s');
PREPARE TRANSACTION 'p2';
SELECT lastval(), currval('t_id_seq');
ROLLBACK PREPARED 'p2';
SELECT gid FROM pg_prepared_xacts;
-- Cursors, COPY, prepared statements, functions and their SET clauses.
BEGIN;
DECLARE c CURSOR WITH HOLD FOR SELECT id FROM t ORDER BY id;
FETCH 2 FROM c;
INSERT INTO t (v) VALUES (15);
COMMIT;
FETCH ALL FROM c;
CLOSE c;
COPY (SELECT id, v FROM t WHERE id < 3 ORDER BY id) TO STDOUT;
COPY t (v) FROM STDIN;
16
17
\.
SELECT lastval();
PREPARE ins (int) AS INSERT INTO t (v) VALUES ($1) RETURNING id;
EXECUTE ins (18);
SELECT lastval();
DEALLOCATE ins;
CREATE FUNCTION add_row(n int) RETURNS int LANGUAGE plpgsql SET work_mem = '2MB' AS $$
BEGIN
	INSERT INTO t (v) VALUES (n);
	RAISE NOTICE 'work_mem in the function: %', current_setting('work_mem');
	BEGIN
		INSERT INTO t (id, v) VALUES (1, n);
	EXCEPTION WHEN unique_violation THEN
		RAISE NOTICE 'caught: %', SQLERRM;
	END;
	RETURN currval('t_id_seq');
END
$$;
SELECT add_row(19);
SHOW work_mem;
DO $$BEGIN PERFORM add_row(20); END$$;
SELECT lastval();
-- Transaction modes, chains, and the transaction id.
BEGIN ISOLATION LEVEL SERIALIZABLE;
INSERT INTO t (v) VALUES (21);
SELECT pg_current_xact_id_if_assigned() IS NOT NULL AS assigned;
COMMIT AND CHAIN;
SHOW transaction_isolation;
SELECT pg_current_xact_id_if_assigned() IS NULL AS not_assigned;
COMMIT;
BEGIN READ ONLY;
SELECT count(*) FROM t;
SELECT pg_current_xact_id_if_assigned() IS NULL AS not_assigned;
COMMIT AND CHAIN;
SHOW transaction_read_only;
INSERT INTO tmp (v) VALUES (6);
COMMIT;
EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) INSERT INTO t (v) VALUES (22);
SELECT lastval();
WITH w AS (INSERT INTO t (v) VALUES (23) RETURNING id) SELECT id FROM w;
SELECT lastval();
BEGIN;
INSERT INTO t (v) VALUES (24);
SET TRANSACTION READ ONLY;
INSERT INTO tmp (v) VALUES (7);
COMMIT;
TRUNCATE tmp;
SELECT id, v FROM t ORDER BY id;
EOS

# The outputs of the script, with errors in place.


sub run_script
{
	my ($node) = @_;
	my $file = $node->basedir . '/state.sql';
	PostgreSQL::Test::Utils::append_to_file($file, $script) unless -e $file;
	my $out = '';
	IPC::Run::run(
		[ 'psql', '-X', '-a', '-d', $node->connstr('postgres'), '-f', $file ],
		'>&', \$out);
	$out =~ s/^psql:[^:]*:(\d+): /psql:LINE $1: /mg;
	return $out;
}

my $out_with = run_script($with);
my $out_without = run_script($without);
like($out_without, qr/lastval is not yet defined in this session/,
	'the script runs (without pg_opsdata)');
is($out_with, $out_without,
	'an audited session sees exactly what a session without pg_opsdata sees');

# The audited server recorded what the script did: the transaction's
# writes with it, those of read-only transactions through the queue.
$with->safe_psql('postgres', 'SELECT audit.flush()');
is($with->safe_psql('postgres',
		"SELECT count(*) FROM audit.entries WHERE class = 'write' AND objects = '{public.t}' AND outcome = 'ok'"),
	'19', 'the committed writes of t are in the trail');
is($with->safe_psql('postgres',
		"SELECT count(*) FROM audit.entries WHERE class = 'write' AND objects[1] LIKE 'pg_temp%.tmp'"),
	'9', 'the writes of temporary tables in read-only transactions reached the trail');
is($with->safe_psql('postgres',
		"SELECT count(*) FROM audit.entries WHERE outcome = 'rolled back' AND command = 'INSERT'"),
	'3', 'rolled-back inserts are recorded as such');

# The trail's sequence is not the session's: a session that wrote entries
# never called nextval() on it.
my ($ret, $stdout, $stderr) = $with->psql('postgres',
	"INSERT INTO t (v) VALUES (20); SELECT currval('audit.entries_entry_id_seq')");
like($stderr, qr/currval of sequence "entries_entry_id_seq" is not yet defined in this session/,
	'currval() of the entry sequence is not defined in an audited session');

# With a subscription: the items it enqueues at commit leave the session's
# sequence state alone, also in a transaction made read-only after it
# wrote.
$with->safe_psql('postgres', "SELECT audit.subscribe('everything')");
$script = <<'EOS';
\set VERBOSITY default
SELECT lastval();
CREATE TABLE u (id serial PRIMARY KEY, v int);
INSERT INTO u (v) VALUES (1);
SELECT lastval(), currval('u_id_seq');
BEGIN;
INSERT INTO u (v) VALUES (2);
SET TRANSACTION READ ONLY;
COMMIT;
SELECT lastval();
CREATE TEMP TABLE tmp2 (id serial, v int);
BEGIN READ ONLY;
INSERT INTO tmp2 (v) VALUES (1);
COMMIT;
SELECT lastval();
SELECT id, v FROM u ORDER BY id;
EOS
$_->safe_psql('postgres', 'DROP TABLE t') for ($with, $without);
unlink($_->basedir . '/state.sql') for ($with, $without);
$out_with = run_script($with);
$out_without = run_script($without);
is($out_with, $out_without,
	'with a subscription, an audited session still sees what a session without pg_opsdata sees');
($ret, $stdout, $stderr) = $with->psql('postgres',
	"INSERT INTO u (v) VALUES (3); SELECT currval('audit.queue_items_seq')");
like($stderr, qr/currval of sequence "queue_items_seq" is not yet defined in this session/,
	'nor is currval() of the sequence of the items a subscription enqueued at commit');
cmp_ok($with->safe_psql('postgres',
		"SELECT count(*) FROM audit.queue_items i JOIN audit.entries e USING (entry_id) WHERE e.objects = '{public.u}' AND e.class = 'write'"),
	'>=', 3, 'the subscription enqueued the entries written at commit');

$_->stop for ($with, $without);
done_testing();
