# The extension created or dropped in a prepared transaction (two-phase
# commit, as Citus creates it on the nodes it adds): nothing starts or
# stops at PREPARE TRANSACTION; COMMIT PREPARED, from any session and even
# after a restart, starts the database's scheduler or stops its workers;
# ROLLBACK PREPARED leaves things as they were.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('prepared', conf => "max_prepared_transactions = 4\n");
$node->start;

my $schedulers_sql = q{
	SELECT coalesce(string_agg(datname, ',' ORDER BY datname), '')
	  FROM pg_stat_activity WHERE backend_type = 'pg_opsdata scheduler'};
$node->safe_psql('postgres', 'CREATE DATABASE twopc');
$node->safe_psql('postgres', 'CREATE DATABASE later');

# CREATE EXTENSION prepared, then committed by another session.
$node->safe_psql('twopc', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	PREPARE TRANSACTION 'create';
});
is($node->safe_psql('postgres', $schedulers_sql), '',
	'a prepared CREATE EXTENSION starts no scheduler');
$node->safe_psql('twopc', q{COMMIT PREPARED 'create'});
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'twopc'"),
	'COMMIT PREPARED of a CREATE EXTENSION starts the scheduler');
is($node->safe_psql('twopc', q{
	SELECT status FROM opsdata.health() WHERE component = 'scheduler "twopc"'}),
	'ok', 'and health sees it running');
$node->safe_psql('twopc', q{SELECT opsdata.add_job('tick', 'SELECT 1', '1 second')});
ok($node->poll_query_until('twopc', q{
	SELECT count(*) >= 1 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.name = 'tick' AND r.status = 'succeeded'}),
	'and it runs the jobs');

# DROP EXTENSION prepared then rolled back: the scheduler carries on.
$node->safe_psql('twopc', q{
	BEGIN;
	DROP EXTENSION pg_opsdata;
	PREPARE TRANSACTION 'drop';
});
$node->safe_psql('twopc', q{ROLLBACK PREPARED 'drop'});
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'twopc'"),
	'after ROLLBACK PREPARED of a DROP EXTENSION the database has its scheduler');
my $runs = $node->safe_psql('twopc', q{SELECT count(*) FROM opsdata.job_runs});
ok($node->poll_query_until('twopc', "SELECT count(*) > $runs FROM opsdata.job_runs"),
	'and its jobs run again');

# DROP EXTENSION prepared, then committed: the workers stop.
$node->safe_psql('twopc', q{
	BEGIN;
	DROP EXTENSION pg_opsdata;
	PREPARE TRANSACTION 'drop';
});
$node->safe_psql('twopc', q{COMMIT PREPARED 'drop'});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type LIKE 'pg_opsdata%' AND datname = 'twopc'}),
	'COMMIT PREPARED of a DROP EXTENSION stops the workers of the database');

# Prepared before a restart, committed after it.
$node->safe_psql('later', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	PREPARE TRANSACTION 'across a restart';
});
$node->restart;
# The launcher checks every database after a start: "later" has no
# extension yet, and the check ends.
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = ''"),
	'after the restart no database has a scheduler: the CREATE EXTENSION is still prepared');
$node->safe_psql('later', q{COMMIT PREPARED 'across a restart'});
ok($node->poll_query_until('postgres', "SELECT ($schedulers_sql) = 'later'"),
	'COMMIT PREPARED after a restart starts the scheduler');

$node->stop;
done_testing();
