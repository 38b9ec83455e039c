# Readers and writers of a table see every row exactly once while a
# maintenance pass moves rows out of its default partition into new
# partitions: a query that comes while a move is under way waits for it,
# then reads the new partitions with a snapshot taken after the move (it
# never plans with the partitions of before the move and reads with a
# snapshot of after it, which missed the rows moved); an INSERT of a row of
# the range being moved waits too, and lands in the new partition instead
# of failing the default partition's constraint.
#
# The pass is paused at a known point with locks the test holds, not with
# timing: a lock on the default partition holds it before it plans, then a
# lock on opsdata.partition_log holds it at the end of its first move,
# whose statements have run and whose transaction has not committed.
# Twice: in a database without a publication (the partition is filled,
# then attached) and in one with a publication (the rows are inserted
# after the partition is attached, so that logical replication publishes
# them).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('readers', conf => "wal_level = logical\n");
$node->start;
$node->safe_psql('postgres', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
	COMMIT;
	-- The pass waits for the test's locks, which it holds for less.
	SELECT opsdata.set_setting('partition.lock_timeout', '1 minute');
	SELECT opsdata.set_setting('partition.lock_retries', '0');
	CREATE SCHEMA app;
});

# The relations that sessions of the test wait for.
sub waits
{
	my ($where) = @_;
	return $node->safe_psql('postgres', qq{
		SELECT string_agg(DISTINCT l.relation::regclass::text, ',')
		  FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		 WHERE NOT l.granted AND l.locktype = 'relation' AND $where});
}

for my $published (0, 1)
{
	my $how = $published ? 'with a publication' : 'without a publication';
	$node->safe_psql('postgres', q{
		CREATE TABLE app.readings (at timestamptz NOT NULL, v int) PARTITION BY RANGE (at);
		CREATE TABLE app.readings_default PARTITION OF app.readings DEFAULT;
		ALTER TABLE app.readings REPLICA IDENTITY FULL;
		ALTER TABLE app.readings_default REPLICA IDENTITY FULL;
		SELECT opsdata.manage_partitions('app.readings', 'at', '1 day', premake => 3);
		-- Tomorrow's and the next day's partitions are missing, and their
		-- rows sit in the default partition: the pass moves them.
		DO $$
		DECLARE p regclass;
		BEGIN
			FOR p IN SELECT partition FROM opsdata.show_partitions('app.readings')
					  WHERE NOT is_default AND lower_bound::timestamptz > now()
						AND lower_bound::timestamptz < now() + interval '48 hours' LOOP
				EXECUTE 'DROP TABLE ' || p;
			END LOOP;
		END
		$$;
		INSERT INTO app.readings SELECT now() + (1 + i % 2) * interval '24 hours', i FROM generate_series(1, 2000) i;
	});
	$node->safe_psql('postgres',
		'CREATE PUBLICATION readings_pub FOR TABLE app.readings WITH (publish_via_partition_root = true)')
	  if $published;
	is($node->safe_psql('postgres', q{SELECT count(*) FROM ONLY app.readings_default}), '2000',
		"$how: the rows of two days ahead are in the default partition");

	# The pass plans behind a lock on the default partition...
	my $planning = $node->background_psql('postgres');
	$planning->query_safe('BEGIN; LOCK TABLE app.readings_default IN ACCESS EXCLUSIVE MODE;');
	my $pass = $node->background_psql('postgres');
	$pass->{stdin} .= q{SELECT status || ' ' || created || ' ' || moved FROM opsdata.run_maintenance('app.readings');} . "\n";
	$pass->{run}->pump_nb();
	$node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		   WHERE NOT l.granted AND l.relation = 'app.readings_default'::regclass
			 AND a.backend_type = 'pg_opsdata partition maintenance'})
	  or die 'the pass never waited to plan';

	# ... and ends its first move behind a lock on the log.
	my $logging = $node->background_psql('postgres');
	$logging->query_safe('BEGIN; LOCK TABLE opsdata.partition_log IN SHARE MODE;');
	$planning->query_safe('COMMIT;');
	$planning->quit;
	$node->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		   WHERE NOT l.granted AND l.relation = 'opsdata.partition_log'::regclass
			 AND a.backend_type = 'pg_opsdata partition maintenance'})
	  or die 'the pass never reached the end of its first move';

	# A reader and a writer come now.
	my $reader = $node->background_psql('postgres');
	my $reader_pid = $reader->query_safe('SELECT pg_backend_pid()');
	# (The writer's row, v = 0, may commit before the reader reads.)
	$reader->{stdin} .= "SELECT count(*) || ' ' || count(DISTINCT v) || ' ' || sum(v) FROM app.readings WHERE v > 0;\n";
	$reader->{run}->pump_nb();
	my $writer = $node->background_psql('postgres', on_error_stop => 0);
	my $writer_pid = $writer->query_safe('SELECT pg_backend_pid()');
	$writer->{stdin} .= "INSERT INTO app.readings VALUES (now() + interval '24 hours', 0);\n";
	$writer->{run}->pump_nb();
	$node->poll_query_until('postgres',
		qq{SELECT count(DISTINCT pid) = 2 FROM pg_locks WHERE NOT granted AND pid IN ($reader_pid, $writer_pid)})
	  or die 'the reader and the writer never waited';
	is(waits("a.pid IN ($reader_pid, $writer_pid)"), 'app.readings',
		"$how: the reader and the writer wait for the table itself, before they read its partitions");

	$logging->query_safe('COMMIT;');
	$logging->quit;
	$reader->{stdin} .= "\\echo done\n";
	$reader->{run}->pump until $reader->{stdout} =~ /done/ || !$reader->{run}->pumpable;
	like($reader->{stdout}, qr/^2000 2000 2001000$/m,
		"$how: the reader sees every row once, none missing, none twice");
	$reader->quit;
	$writer->{stdin} .= "\\echo done\n";
	$writer->{run}->pump until $writer->{stdout} =~ /done/ || !$writer->{run}->pumpable;
	is($writer->{stderr}, '', "$how: the writer's INSERT succeeds");
	$writer->quit;
	$pass->{stdin} .= "\\echo done\n";
	$pass->{run}->pump until $pass->{stdout} =~ /done/ || !$pass->{run}->pumpable;
	like($pass->{stdout}, qr/^ok 2 2000$/m, "$how: the pass made the two partitions and moved every row");
	$pass->quit;

	is($node->safe_psql('postgres', q{
		SELECT count(*) || ' ' || count(*) FILTER (WHERE tableoid = 'app.readings_default'::regclass)
		  || ' ' || count(DISTINCT tableoid) FROM app.readings}),
		'2001 0 2', "$how: every row, the writer's too, is in the partition of its day");
	$node->safe_psql('postgres', 'DROP PUBLICATION readings_pub') if $published;
	$node->safe_psql('postgres', 'DROP TABLE app.readings');
}

$node->stop;
done_testing();
