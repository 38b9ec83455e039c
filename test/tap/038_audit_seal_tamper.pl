# Tamper evidence (DESIGN.md, contract 4): a superuser who changes the
# trail directly is caught by audit.verify(), which names the exact entry
# altered, deleted or inserted and the seal that detects it; a seal changed
# and re-hashed is named; a chain rebuilt from a forged history verifies,
# and audit.verify_digest() against a digest kept outside the database
# catches it.  Retention's drops are not tampering; a partition dropped or
# truncated any other way is.  A dump restored elsewhere still verifies.
# verify() runs as an auditor, who can change nothing.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

# The sealing service is off: the test seals with audit.seal(), so that it
# knows which seal holds which entry.
my $node = opsdata_node('audit_seal_tamper',
	conf => "pg_opsdata.audit = 'write, ddl'\npg_opsdata.audit_seal_interval = 0\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_opsdata;
	SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
	CREATE ROLE auditor LOGIN IN ROLE opsdata_auditor;
	CREATE TABLE accounts (id int PRIMARY KEY, owner text, balance numeric);
});

# Three rounds of work, each sealed; entries also from five days ago (a
# superuser may write the trail; retention is tried on them below) and from
# two days ago (maintenance moves both into their day's partition).
for my $round (1 .. 3)
{
	$node->safe_psql('postgres',
		join("\n", map { "INSERT INTO accounts VALUES ($round$_, 'owner $round$_', $_);" } 0 .. 4)
		  . "\nUPDATE accounts SET balance = balance + 1 WHERE id = ${round}0;");
	$node->safe_psql('postgres', 'SELECT audit.seal()');
}
$node->safe_psql('postgres', q{
	INSERT INTO audit.entries (ts, database, username, current_user_name, backend_pid, class, command, objects, outcome)
	SELECT now() - interval '5 days' + i * interval '1 minute', current_database(), 'old', 'old', 1, 'write',
		   'UPDATE', '{public.accounts}', 'ok' FROM generate_series(1, 4) i;
	INSERT INTO audit.entries (ts, database, username, current_user_name, backend_pid, class, command, objects, outcome)
	SELECT now() - interval '2 days' + i * interval '1 minute', current_database(), 'older', 'older', 1, 'write',
		   'DELETE', '{public.accounts}', 'ok' FROM generate_series(1, 4) i;
	SELECT audit.seal();
	INSERT INTO accounts VALUES (99, 'last', 0);
	SELECT audit.seal();
});

my $verify = 'SELECT status, entry_id, seal_id FROM audit.verify()';
is($node->safe_psql('postgres', $verify), 'intact||', 'the trail verifies as sealed');
my $moved = $node->safe_psql('postgres',
	q{SELECT string_agg(DISTINCT status, ',') FROM opsdata.run_maintenance('audit.entries')});
is($moved, 'ok', 'maintenance moves the old entries from the default partition into their days');
is($node->safe_psql('postgres', $verify), 'intact||', 'entries moved between partitions still verify');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM audit.entries WHERE tableoid = 'audit.entries_default'::regclass"),
	'0', 'no entry is left in the default partition');

# A digest kept outside the database, as a client would keep it.
my $digest = $node->safe_psql('postgres', 'SELECT audit.digest()');
like($digest, qr/^\{"hash": "[0-9a-f]{64}", "entries": \d+, "seal_id": \d+, /, 'a digest is the chain head as JSON');

# The seal of an entry, as the test knows it.
sub seal_of
{
	my ($id) = @_;
	return $node->safe_psql('postgres',
		"SELECT seal_id FROM audit.seals WHERE kind = 'entries' AND entry_ids \@> ${id}::bigint");
}

# Tamper in a transaction, ask verify() as the auditor, roll back.
sub verdict
{
	my ($tamper) = @_;
	return $node->safe_psql('postgres', qq{
		BEGIN;
		SET LOCAL session_replication_role = replica;
		$tamper;
		SET LOCAL ROLE auditor;
		$verify;
		ROLLBACK;});
}

# The entries the test changes: an UPDATE of round 2, an INSERT of round 3
# whose statement text is its own, the first entry from two days ago.
my $update = $node->safe_psql('postgres',
	q{SELECT min(entry_id) FROM audit.trail WHERE command = 'UPDATE' AND statement_text LIKE '%WHERE id = 20%'});
my $insert = $node->safe_psql('postgres',
	q{SELECT entry_id FROM audit.trail WHERE statement_text LIKE '%VALUES (31, %'});
my $old = $node->safe_psql('postgres', q{SELECT min(entry_id) FROM audit.entries WHERE username = 'older'});
ok($update ne '' && $insert ne '' && $old ne '', "the entries to tamper with: $update, $insert, $old");
my $partition = $node->safe_psql('postgres', "SELECT tableoid::regclass FROM audit.entries WHERE entry_id = $old");

# --- each kind of tampering, named -----------------------------------------
is(verdict("UPDATE audit.entries SET rows = rows + 1 WHERE entry_id = $update"),
	"altered|$update|" . seal_of($update), 'an UPDATE with triggers disabled is named, with its seal');
is(verdict("DELETE FROM audit.entries WHERE entry_id = $update"),
	"deleted|$update|" . seal_of($update), 'a DELETE is named, with its seal');
is(verdict(qq{INSERT INTO audit.entries (entry_id, ts, database, username, current_user_name, backend_pid,
			class, command, outcome)
		SELECT $insert, ts + interval '1 second', database, 'mallory', 'mallory', 1, 'write', 'DELETE', 'ok'
		  FROM audit.entries WHERE entry_id = $insert}),
	"inserted|$insert|" . seal_of($insert), 'a row forged inside a sealed range is named');
# A forged row carrying another server's id, as if received from it: the
# database subscribes to no other server and has no seal of that one.
is(verdict(qq{INSERT INTO audit.entries (entry_id, ts, database, username, current_user_name, backend_pid,
			class, command, outcome, server_id)
		SELECT $insert, ts, database, 'mallory', 'mallory', 1, 'write', 'DELETE', 'ok', 42
		  FROM audit.entries WHERE entry_id = $insert}),
	"inserted|$insert|" . seal_of($insert), 'a row forged inside a sealed range with another server_id is named');
is(verdict(qq{CREATE SUBSCRIPTION received CONNECTION 'dbname=elsewhere' PUBLICATION opsdata_pub
			WITH (connect = false, slot_name = NONE);
		INSERT INTO audit.entries (entry_id, ts, database, username, current_user_name, backend_pid,
			class, command, outcome, server_id)
		SELECT $insert, ts, database, 'remote', 'remote', 1, 'write', 'DELETE', 'ok', 42
		  FROM audit.entries WHERE entry_id = $insert}),
	'intact||', "in a database that subscribes, other servers' entries are their own chains' business");
# The statement an entry stands for is its shape (audit.statements) with
# its constants (audit.entries.constants): both are sealed.
is($node->safe_psql('postgres', qq{SELECT s.statement_text || ' ' || e.constants::text
		FROM audit.entries e JOIN audit.statements s USING (statement_id) WHERE e.entry_id = $insert}),
	q{INSERT INTO accounts VALUES ($1, $2, $3) {31,"'owner 31'",1}}, 'the INSERT is stored as a shape and its constants');
is(verdict("UPDATE audit.entries SET constants[1] = '32' WHERE entry_id = $insert"),
	"altered|$insert|" . seal_of($insert), 'a changed constant names its entry');
my $first_of_shape = $node->safe_psql('postgres', qq{SELECT min(entry_id) FROM audit.entries
	WHERE statement_id = (SELECT statement_id FROM audit.entries WHERE entry_id = $insert)});
ok($first_of_shape < $insert, "the shape is shared with earlier entries ($first_of_shape)");
is(verdict(qq{UPDATE audit.statements SET statement_text = replace(statement_text, 'VALUES', 'VALUES ')
		 WHERE statement_id = (SELECT statement_id FROM audit.entries WHERE entry_id = $insert)}),
	"altered|$first_of_shape|" . seal_of($first_of_shape),
	'a changed shape names the first sealed entry that refers to it');
is(verdict("UPDATE audit.entries SET objects = '{public.other}' WHERE entry_id = $insert"),
	"altered|$insert|" . seal_of($insert), 'a changed object of an entry is named');
is(verdict("UPDATE audit.entries SET ts = ts + interval '1 microsecond' WHERE entry_id = $insert"),
	"altered|$insert|" . seal_of($insert), 'a changed time of an entry is named');
is(verdict("DROP TABLE $partition"),
	"deleted|$old|" . seal_of($old), 'a partition dropped outside retention is reported at its first entry');
is(verdict("TRUNCATE $partition"),
	"deleted|$old|" . seal_of($old), 'a partition truncated is reported at its first entry');

# A seal changed and re-hashed: the entry altered, the seal's entries_hash
# and hash recomputed as doc/audit.md says.  The next seal still holds the
# old hash.
my $seal = seal_of($update);
my $rehash = qq{
	UPDATE audit.entries SET rows = rows + 1 WHERE entry_id = $update;
	SET client_encoding = 'UTF8';
	UPDATE audit.seals s SET entries_hash = (
		SELECT sha256(string_agg(record_send(e) || sha256(coalesce(record_send(st), '')), ''::bytea
							ORDER BY e.entry_id, e.ts))
		  FROM audit.entries e LEFT JOIN audit.statements st ON st.statement_id = e.statement_id
		 WHERE e.server_id = s.server_id AND e.entry_id BETWEEN s.first_entry_id AND s.last_entry_id
		   AND e.ts >= s.ts_from AND e.ts < s.ts_to)
	 WHERE seal_id = $seal;
	UPDATE audit.seals s SET hash = sha256(record_send(ROW(s.seal_id, s.kind, s.first_entry_id, s.last_entry_id,
			s.ts_from, s.ts_to, s.entry_count, s.entry_ids, sha256(s.locators), s.entries_hash, s.entry_columns,
			s.statement_columns, s.total_entries, s.detail, s.prev_hash, s.sealed_at, s.server_id)))
	 WHERE seal_id = $seal};
is(verdict($rehash), "seal altered||$seal", 'a seal re-hashed over an altered entry is named');
is(verdict("UPDATE audit.seals SET entry_count = entry_count + 1 WHERE seal_id = $seal"),
	"seal altered||$seal", 'a seal changed without its hash is named');
is(verdict("DELETE FROM audit.seals WHERE seal_id = $seal"),
	"chain broken||$seal", 'a seal removed from the chain is named');
is($node->safe_psql('postgres', $verify), 'intact||', 'the rolled-back tampering left the trail intact');

# --- retention ---------------------------------------------------------------
# Entries older than the retention leave with their partition, recorded by a
# retention seal in the chain: not tampering.
$node->safe_psql('postgres', q{SELECT opsdata.set_setting('audit.retention', '4 days')});
is($node->safe_psql('postgres',
		q{SELECT string_agg(DISTINCT status, ',') || ' ' || sum(dropped) FROM opsdata.run_maintenance('audit.entries')}),
	'ok 1', "maintenance drops the day of five days ago");
is($node->safe_psql('postgres', q{SELECT count(*) FROM audit.entries WHERE username = 'old'}), '0',
	'its entries are gone');
like($node->safe_psql('postgres',
		q{SELECT kind || ' ' || entry_count || ' ' || detail FROM audit.seals ORDER BY seal_id DESC LIMIT 1}),
	qr/^retention 4 audit\.entries_p\d{8}$/, 'a retention seal records the partition and the entries that left');
is($node->safe_psql('postgres', $verify), 'intact||', 'verify passes across the gap retention left');
like($node->safe_psql('postgres', 'SELECT detail FROM audit.verify()'), qr/; 4 more left by retention\.$/,
	'and says how many entries left by retention');
is($node->safe_psql('postgres', "SELECT status FROM audit.verify_digest('$digest')"), 'extends',
	'the chain with its retention seal extends the digest taken before');

# --- a dump restored elsewhere still verifies --------------------------------
# (The restoring session audits nothing: entries written while a dump loads
# are another matter.)
my $dump = $node->basedir . '/sealed.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'pg_dump succeeds');
$node->safe_psql('postgres', 'CREATE DATABASE restored');
my ($stdout, $stderr) = ('', '');
ok(IPC::Run::run([ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored') . " options='-c pg_opsdata.audit=none'", $dump ],
		'>', \$stdout, '2>', \$stderr), 'pg_restore succeeds') or diag($stderr);
is($node->safe_psql('restored', $verify), 'intact||', 'the restored trail verifies against its restored seals');
is($node->safe_psql('restored', "SELECT status FROM audit.verify_digest('$digest')"), 'extends',
	'the restored chain extends the digest');

# --- a database in another encoding -----------------------------------------
# Text is hashed in UTF-8 whatever the database's encoding and the session's
# client_encoding: the SQL of doc/audit.md, with client_encoding UTF8, finds
# the same hash, and verify() agrees in a LATIN1 session.
$node->safe_psql('postgres',
	"CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
$node->safe_psql('latin', q{
	CREATE EXTENSION pg_opsdata;
	SET client_encoding = 'UTF8';
	INSERT INTO audit.entries (database, username, current_user_name, backend_pid, class, command, objects, outcome)
	VALUES (current_database(), 'zoë', 'zoë', 1, 'write', 'UPDATE', '{public.café}', 'ok');
	SELECT audit.seal();});
is($node->safe_psql('latin', q{
	SET client_encoding = 'UTF8';
	SELECT sha256(string_agg(record_send(e) || sha256(coalesce(record_send(st), '')), ''::bytea
				  ORDER BY e.entry_id, e.ts)) = (SELECT entries_hash FROM audit.seals WHERE seal_id = 1)
	  FROM audit.entries e LEFT JOIN audit.statements st USING (statement_id)}),
	't', 'in a LATIN1 database, entries are hashed with their text in UTF-8');
my $latin = $node->safe_psql('latin',
	"SET client_encoding = 'LATIN1'; SELECT status || ': ' || detail FROM audit.verify()");
like($latin, qr/^intact: /, 'a LATIN1 session verifies the same chain') or diag($latin);

# --- history rewritten -------------------------------------------------------
# A superuser who alters an entry, throws the seals away and seals again has
# a chain that verifies; the digest kept outside shows it was rebuilt.
$node->safe_psql('postgres', qq{
	BEGIN;
	SET LOCAL session_replication_role = replica;
	UPDATE audit.entries SET rows = 1000 WHERE entry_id = $update;
	DELETE FROM audit.seals;
	COMMIT;
	SELECT audit.seal();});
is($node->safe_psql('postgres', $verify), 'intact||', 'a chain rebuilt over a forged history verifies');
my $seal_id = ($digest =~ /"seal_id": (\d+)/)[0];
is($node->safe_psql('postgres', "SELECT status || '|' || seal_id FROM audit.verify_digest('$digest')"),
	"rewritten|$seal_id", 'the digest kept outside shows the chain was rebuilt');

# The auditor could change nothing on the way.
my ($ret, $out, $err) = $node->psql('postgres', 'SET ROLE auditor; DELETE FROM audit.seals');
like($err, qr/permission denied for table seals/, 'an auditor cannot change the seals');
($ret, $out, $err) = $node->psql('postgres', 'SET ROLE auditor; SELECT audit.seal()');
like($err, qr/permission denied for function seal/, 'an auditor cannot seal');

$node->stop;
done_testing();
