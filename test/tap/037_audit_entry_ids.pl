# Audit entry ids never repeat: not when the entry sequence is set back
# (setval() by someone who may update it), not after a crash with a
# prepared transaction holding entries, not after a standby's promotion;
# a restore's setval() lifts them above the ids it brought back, and the
# sequence always stays above every id handed out.  DROP and CREATE
# EXTENSION start a new trail from 1.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('entry_ids',
	init => { allows_streaming => 1 },
	conf => "pg_opsdata.audit = 'write'\nmax_prepared_transactions = 4\nrestart_after_crash = on\n");
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION pg_opsdata; CREATE TABLE t (id serial, v int)');
opsdata_wait_audit_partitioned($node);



sub write_rows
{
	my ($node, $n) = @_;
	$node->safe_psql('postgres', join('', map { "INSERT INTO t (v) VALUES ($_);\n" } 1 .. $n));
}

sub max_id
{
	my ($node) = @_;
	return $node->safe_psql('postgres', 'SELECT coalesce(max(entry_id), 0) FROM audit.entries');
}

sub unique_ids
{
	my ($node, $what) = @_;
	is($node->safe_psql('postgres', 'SELECT count(*) - count(DISTINCT entry_id) FROM audit.entries'),
		'0', "$what: no entry id repeats");
}

sub sequence_above
{
	my ($node, $what) = @_;
	is($node->safe_psql('postgres',
			'SELECT last_value >= (SELECT max(entry_id) FROM audit.entries) FROM audit.entries_entry_id_seq'),
		't', "$what: the sequence is above every entry id");
}

write_rows($node, 20);
my $max = max_id($node);
cmp_ok($max, '>=', 20, 'writes have entries');
sequence_above($node, 'after writes');

# --- setval() back to 1 while the server runs ---------------------------
my $count = $node->safe_psql('postgres', 'SELECT count(*) FROM audit.entries');
$node->psql('postgres', "SELECT setval('audit.entries_entry_id_seq', 1)");
write_rows($node, 5);
is($node->safe_psql('postgres', "SELECT count(*) FROM audit.entries WHERE entry_id <= $max"),
	$count, 'no id handed out after the setval is at or below the earlier ones');
unique_ids($node, 'setval while running');
sequence_above($node, 'setval while running');

# --- a prepared transaction holding entries, the sequence set back, then a
# crash: the ids of the prepared entries are not handed out again ----------
my $bg = $node->background_psql('postgres');
$bg->query_safe("BEGIN; INSERT INTO t (v) VALUES (-1); INSERT INTO t (v) VALUES (-2); PREPARE TRANSACTION 'p'");
$bg->quit;
$node->psql('postgres', "SELECT setval('audit.entries_entry_id_seq', 1)");
$node->stop('immediate');
$node->start;
$node->safe_psql('postgres', "INSERT INTO t (v) VALUES (-10); INSERT INTO t (v) VALUES (-20)");
$node->safe_psql('postgres', "COMMIT PREPARED 'p'");
unique_ids($node, 'crash with a prepared transaction');
is($node->safe_psql('postgres', q{
	SELECT max(entry_id) FILTER (WHERE statement_text IN ('INSERT INTO t (v) VALUES (-1)', 'INSERT INTO t (v) VALUES (-2)'))
		 < min(entry_id) FILTER (WHERE statement_text IN ('INSERT INTO t (v) VALUES (-10)', 'INSERT INTO t (v) VALUES (-20)'))
	  FROM audit.trail}),
	't', 'entries written after the crash are numbered above those of the prepared transaction');
sequence_above($node, 'crash with a prepared transaction');

# --- a restore's setval() above the ids it brings back ------------------
$node->safe_psql('postgres', "SELECT setval('audit.entries_entry_id_seq', 100000)");
write_rows($node, 1);
cmp_ok(max_id($node), '>', 100000, 'after a setval() upwards, ids continue above it');

# --- promotion of a standby whose copy of the sequence was set back -----
$node->psql('postgres', "SELECT setval('audit.entries_entry_id_seq', 1)");
$node->backup('backup');
my $standby = PostgreSQL::Test::Cluster->new('entry_ids_standby');
$standby->init_from_backup($node, 'backup', has_streaming => 1);
$standby->start;
write_rows($node, 3);
$node->wait_for_catchup($standby);
my $primary_max = max_id($node);
$node->stop;
$standby->promote;
write_rows($standby, 3);
unique_ids($standby, 'after promotion');
is($standby->safe_psql('postgres', "SELECT count(*) FROM audit.entries WHERE entry_id > $primary_max"),
	'3', 'the promoted server\'s entries are the only ones above them');

# --- DROP and CREATE EXTENSION: a new trail ------------------------------
$standby->safe_psql('postgres', 'DROP EXTENSION pg_opsdata; CREATE EXTENSION pg_opsdata');
opsdata_wait_audit_partitioned($standby);
write_rows($standby, 2);
is($standby->safe_psql('postgres',
		"SELECT string_agg(entry_id::text, ',' ORDER BY entry_id) FROM audit.entries WHERE command = 'INSERT'"),
	'1,2', 'a new trail numbers its entries from the start');

$standby->stop;
done_testing();
