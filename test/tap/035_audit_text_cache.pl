# The shared cache of stored statement shapes: a shape found again by one
# session's probe of audit.statements' primary key is known to every later
# session without a probe; a row the owner deletes is stored again; with the cache off every
# session probes; a prepared transaction's shapes are trusted only once it
# commits.  Probes are counted as index scans of audit.statements_pkey.  The
# statements have no constants, so each is its own shape.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('audit_text_cache',
	conf => "pg_opsdata.audit = 'write'\nmax_prepared_transactions = 2\n");
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_opsdata;
	DO $$BEGIN PERFORM opsdata.pause_job(job_id) FROM opsdata.jobs WHERE builtin; END$$;
	CREATE TABLE t (id int);
});

my $scans = q{SELECT idx_scan FROM pg_stat_all_indexes
			   WHERE schemaname = 'audit' AND indexrelname = 'statements_pkey'};

# The scheduler loads the statement filter with one pass over the key.
ok($node->poll_query_until('postgres', "SELECT ($scans) >= 1"),
	'the scheduler loaded the statement filter');

# Run SQL in a session of its own (an empty backend cache) and return the
# probes it made.  The session's statistics are flushed when it goes idle
# after pg_stat_force_next_flush(), before it answers the last query.
sub probes_of
{
	my ($sql) = @_;
	my $before = $node->safe_psql('postgres', $scans);
	$node->safe_psql('postgres', "$sql;\nSELECT pg_stat_force_next_flush();\nSELECT 1;");
	return $node->safe_psql('postgres', $scans) - $before;
}

my $orphans = q{SELECT count(*) FROM audit.entries e
				 WHERE e.statement_id IS NOT NULL
				   AND NOT EXISTS (SELECT FROM audit.statements s WHERE s.statement_id = e.statement_id)};

is(probes_of('INSERT INTO t DEFAULT VALUES'), 0, 'a new text is stored without a probe');
is(probes_of('INSERT INTO t DEFAULT VALUES'), 1, 'the next session finds the text with a probe');
is(probes_of('INSERT INTO t DEFAULT VALUES'), 0,
	'a text found by a probe is known to every later session without one');
is($node->safe_psql('postgres',
		q{SELECT count(*) || ' entries, ' || count(DISTINCT statement_id) || ' text'
		    FROM audit.entries WHERE command = 'INSERT'}),
	'3 entries, 1 text', 'the entries refer to the one stored text');

$node->safe_psql('postgres',
	q{DELETE FROM audit.statements WHERE statement_text = 'INSERT INTO t DEFAULT VALUES'});
is(probes_of('INSERT INTO t DEFAULT VALUES'), 1,
	'after the owner deleted the row the next session probes the key');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM audit.statements WHERE statement_text = 'INSERT INTO t DEFAULT VALUES'}),
	'1', 'and the text is stored again');
is($node->safe_psql('postgres', $orphans), '0',
	'the text is back under its id: every entry has its text');

# A prepared transaction may still be rolled back: its texts are not
# trusted by the session that prepared it.
$node->safe_psql('postgres', q{
	BEGIN;
	INSERT INTO t SELECT max(id) FROM t;
	PREPARE TRANSACTION 'p';
	ROLLBACK PREPARED 'p';
	INSERT INTO t SELECT max(id) FROM t;
});
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM audit.statements WHERE statement_text = 'INSERT INTO t SELECT max(id) FROM t'}),
	'1', 'a text whose prepared transaction was rolled back is stored again by the same session');

# Without the cache, every session probes for a text it has not seen itself.
my $scanned = $node->safe_psql('postgres', $scans);
$node->append_conf('postgresql.conf', "pg_opsdata.audit_statement_cache_size = 0\n");
$node->restart;
ok($node->poll_query_until('postgres', "SELECT ($scans) > $scanned"),
	'the scheduler loaded the statement filter again');
is(probes_of('INSERT INTO t SELECT min(id) FROM t'), 0, 'a new text is stored without a probe');
is(probes_of('INSERT INTO t SELECT min(id) FROM t'), 1, 'the next session finds it with a probe');
is(probes_of('INSERT INTO t SELECT min(id) FROM t'), 1,
	'with the cache off, a later session probes again for a text a probe already found');
is($node->safe_psql('postgres', 'SHOW pg_opsdata.audit_statement_cache_size'), '0', 'the cache is off');
is($node->safe_psql('postgres', $orphans), '0', 'every entry has its text');

$node->stop;
done_testing();
