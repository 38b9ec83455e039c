# Partition maintenance runs in a background worker of its own.  A set that
# fails is reported in health and the others go on; a maintenance worker
# terminated, or killed with SIGKILL (and the crash restart that follows),
# in the middle of a pass leaves every set consistent, and the next pass
# completes the work without duplicating anything (DESIGN.md, contract 6);
# a concurrent detach left pending by a long transaction is completed once
# that transaction ends.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

# The test kills a worker with SIGKILL: the server must restart all by itself.
my $node = opsdata_node('partition', conf => "restart_after_crash = on\n");
$node->start;
# The test runs every pass itself: the built-in jobs are paused before the
# scheduler sees them, so that no pass of theirs overlaps the test's.
$node->safe_psql('postgres', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
	COMMIT;
	SELECT opsdata.set_setting('partition.lock_timeout', '100 milliseconds');
	SELECT opsdata.set_setting('partition.detach_timeout', '300 milliseconds');
	SELECT opsdata.set_setting('partition.lock_retries', '1');
	SELECT opsdata.set_setting('partition.retry_delay', '10 milliseconds');
	CREATE ROLE tenant_b;
	CREATE SCHEMA app;
	GRANT USAGE, CREATE ON SCHEMA app TO tenant_b;
});

# Drops the partitions of a set that start at or after a time from now, so
# that maintenance has them to make again.
sub drop_ahead
{
	my ($set, $from) = @_;
	$node->safe_psql('postgres', qq{
		DO \$\$
		DECLARE p regclass;
		BEGIN
			FOR p IN SELECT partition FROM opsdata.show_partitions('$set')
					  WHERE NOT is_default AND lower_bound::timestamptz >= now() + interval '$from' LOOP
				EXECUTE 'DROP TABLE ' || p;
			END LOOP;
		END
		\$\$});
}

#
# A failing set is reported and the others go on.
#
$node->safe_psql('postgres', q{
	CREATE TABLE app.a (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
	CREATE TABLE app.b (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
	CREATE TABLE app.c (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
	ALTER TABLE app.b OWNER TO tenant_b;
	SELECT opsdata.manage_partitions(t, 'ts', '1 day', premake => 3) FROM unnest('{app.a,app.b,app.c}'::regclass[]) t;
	REVOKE CREATE ON SCHEMA app FROM tenant_b;
});
drop_ahead($_, '1 day') for qw(app.a app.b app.c);
is($node->safe_psql('postgres',
		q{SELECT string_agg(parent_table || '=' || status || '/' || created, ' ' ORDER BY parent_table::text)
			FROM opsdata.run_maintenance() WHERE parent_table::text LIKE 'app.%'}),
	'app.a=ok/2 app.b=failed/0 app.c=ok/2',
	'the set whose owner lost CREATE on its schema fails; the sets after it are maintained');
like($node->safe_psql('postgres',
		q{SELECT status || ': ' || detail FROM opsdata.health() WHERE component = 'partition app.b'}),
	qr/^error: The last maintenance run failed: create of app\.b_p\d{8} failed: permission denied for schema app/,
	'health names the failing set and why');
is($node->safe_psql('postgres',
		q{SELECT status FROM opsdata.health() WHERE component = 'partition maintenance'}),
	'error', 'the area reports an error');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM opsdata.partition_log WHERE parent = 'app.b' AND action = 'fail'}),
	'1', 'the failure is in the log');
$node->safe_psql('postgres', 'GRANT CREATE ON SCHEMA app TO tenant_b');
is($node->safe_psql('postgres',
		q{SELECT status || '/' || created FROM opsdata.run_maintenance('app.b')}),
	'ok/2', 'once its owner may create tables again, the set is maintained');
is($node->safe_psql('postgres',
		q{SELECT string_agg(component || '=' || status, ' ') FROM opsdata.health() WHERE component LIKE 'partition%'}),
	'partition maintenance=ok', 'and health is clean');

#
# A worker stopped in the middle of a pass.
#
$node->safe_psql('postgres', q{
	DO $$
	BEGIN
		FOR i IN 1 .. 8 LOOP
			EXECUTE format('CREATE TABLE app.k%s (id bigint NOT NULL, ts timestamptz NOT NULL, PRIMARY KEY (id, ts)) PARTITION BY RANGE (ts)', i);
			EXECUTE format('CREATE INDEX ON app.k%s (ts, id)', i);
			PERFORM opsdata.manage_partitions(format('app.k%s', i)::regclass, 'ts', '1 day', premake => 40);
		END LOOP;
	END
	$$});
my $consistent = q{
	SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			 WHERE n.nspname = 'app' AND c.relname ~ '^k[0-9]+_p' AND c.relkind = 'r' AND NOT c.relispartition)
		|| ' ' ||
		   (SELECT count(*) FROM opsdata.partition_log l
			 WHERE l.parent LIKE 'app.k%' AND l.action = 'create' AND l.logged_at >= 'STARTED'
			   AND to_regclass(l.partition) IS NULL)};

# The pass is stopped while it waits for a lock on the last set, held by
# another transaction, whatever the speed of the machine: the sets before
# it are done, that one is not.
$node->safe_psql('postgres', q{SELECT opsdata.set_setting('partition.lock_timeout', '1 minute')});
foreach my $signal ('TERM', 'KILL')
{
	drop_ahead("app.k$_", '1 day') for 1 .. 8;
	my $missing = 8 * 41 - $node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_inherits WHERE inhparent::regclass::text ~ '^app\.k[0-9]+$'});
	my $log_before = $node->safe_psql('postgres',
		q{SELECT count(*) FROM opsdata.partition_log WHERE parent LIKE 'app.k%' AND action = 'create'});
	my $started = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
	my $holder = $node->background_psql('postgres', on_error_stop => 0);
	$holder->query_safe('BEGIN; LOCK TABLE app.k8 IN SHARE MODE;');
	my $bg = $node->background_psql('postgres', on_error_stop => 0);
	$bg->{stdin} .= "SELECT count(*) FROM opsdata.run_maintenance();\n";
	$bg->{run}->pump_nb();
	$node->poll_query_until('postgres', q{
		SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		 WHERE a.backend_type = 'pg_opsdata partition maintenance' AND NOT l.granted
		   AND l.relation = 'app.k8'::regclass})
	  or die 'maintenance never reached the last set';
	my $pid = $node->safe_psql('postgres',
		q{SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_opsdata partition maintenance'});
	ok($pid =~ /^\d+$/, "the maintenance worker runs ($signal test)");
	if ($signal eq 'TERM')
	{
		is($node->safe_psql('postgres',
				q{SELECT coalesce(parent_table::text, '-') || ' ' || status || ': ' || message FROM opsdata.run_maintenance()}),
			'- skipped: another partition maintenance pass is running',
			'a second pass does not overlap the running one');
	}
	my $offset = -s $node->logfile;
	kill $signal, $pid;
	if ($signal eq 'KILL')
	{
		# The postmaster restarts every process after the crash.
		ok(opsdata_wait_up($node, $offset), 'the server is back after the crash');
	}
	else
	{
		$node->poll_query_until('postgres',
			q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_opsdata partition maintenance'})
		  or die 'the maintenance worker did not stop';
		$bg->quit;
		like($bg->{stderr}, qr/partition maintenance worker exited before finishing/,
			'the caller is told the pass did not finish');
	}
	# After the crash the callers' connections are gone with their psql input.
	if ($signal eq 'KILL')
	{
		$bg->{run}->kill_kill;
		$holder->{run}->kill_kill;
	}
	else
	{
		$holder->query_safe('COMMIT;');
		$holder->quit;
	}
	my $made = $node->safe_psql('postgres',
		q{SELECT count(*) FROM opsdata.partition_log WHERE parent LIKE 'app.k%' AND action = 'create'}) - $log_before;
	cmp_ok($made, '<', $missing, "the pass stopped by SIG$signal had not finished");
	is($node->safe_psql('postgres', $consistent =~ s/STARTED/$started/r), '0 0',
		"after SIG$signal: no half-made partition, and every logged partition exists");
	is($node->safe_psql('postgres',
			q{SELECT string_agg(DISTINCT status, ',') || ' ' || sum(created) FROM opsdata.run_maintenance() WHERE parent_table::text LIKE 'app.k%'}),
		'ok ' . ($missing - $made), "after SIG$signal the next pass makes exactly the partitions still missing");
	is($node->safe_psql('postgres',
			q{SELECT count(DISTINCT (i.inhparent, p.lower_bound)) || ' ' || count(*)
				FROM pg_inherits i, opsdata.show_partitions(i.inhparent) p
			   WHERE i.inhparent::regclass::text ~ '^app\.k[0-9]+$' AND i.inhrelid = p.partition}),
		(8 * 41) . ' ' . (8 * 41), "after SIG$signal every set has each of its 41 days once");
	is($node->safe_psql('postgres',
			q{SELECT string_agg(DISTINCT message, ',') FROM opsdata.run_maintenance() WHERE parent_table::text LIKE 'app.k%'}),
		'nothing to do', "after SIG$signal a further pass has nothing to do");
}

$node->safe_psql('postgres', q{SELECT opsdata.reset_setting('partition.lock_timeout')});

#
# A concurrent detach left pending by a long transaction is completed once
# the transaction ends (here, into an archive schema, which needs FINALIZE).
#
$node->safe_psql('postgres', q{
	CREATE SCHEMA app_archive;
	CREATE TABLE app.arch (ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
	SELECT opsdata.manage_partitions('app.arch', 'ts', '1 day', premake => 1, retention => '2 days',
									 retention_mode => 'detach', archive_schema => 'app_archive',
									 start_from => (now() - interval '5 days')::text);
});
my $reader = $node->background_psql('postgres');
$reader->query_safe('BEGIN; SELECT count(*) FROM app.arch;');
like($node->safe_psql('postgres',
		q{SELECT status || ': ' || message FROM opsdata.run_maintenance('app.arch')}),
	qr/^skipped: detach of app\.arch_p\d{8} still waits for transactions using the table/,
	'with a transaction reading the table, the detach is left pending and the set reported as skipped');
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM pg_inherits WHERE inhparent = 'app.arch'::regclass AND inhdetachpending}),
	'1', 'one partition is detach-pending');
$reader->query_safe('COMMIT;');
$reader->quit;

# The pending detach is completed by FINALIZE, which waits for every older
# snapshot: right after the pass that left it, once that pass has returned
# and the reader has committed, or by a later pass.  Passes are run until
# the set is done.
$node->poll_query_until('postgres', q{
	SELECT count(*) = 3 FROM opsdata.run_maintenance('app.arch'), pg_tables
	 WHERE schemaname = 'app_archive'
	   AND NOT EXISTS (SELECT FROM pg_inherits WHERE inhparent = 'app.arch'::regclass AND inhdetachpending)})
  or die 'the pending detach was never completed';
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM opsdata.partition_log WHERE parent = 'app.arch' AND action = 'finalize'}),
	'1', 'the pending detach was completed with FINALIZE');
is($node->safe_psql('postgres',
		q{SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
		   WHERE c.relnamespace = 'app'::regnamespace AND c.relname LIKE 'arch_p%' AND NOT c.relispartition}),
	'', "no detached partition is left behind in the table's schema");
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM opsdata.show_partitions('app.arch') WHERE upper_bound::timestamptz <= now() - interval '2 days'}),
	'0', 'no partition older than the retention remains');

$node->stop;
done_testing();
