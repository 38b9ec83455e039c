# Helpers shared by pg_opsdata's Perl TAP tests.
package OpsdataTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Exporter 'import';

our @EXPORT = qw(opsdata_node opsdata_wait_up opsdata_wait_old_server_gone
  opsdata_stalled_job opsdata_fill_areas opsdata_fingerprint_sql
  opsdata_table_columns opsdata_check_areas_work
  opsdata_wait_audit_partitioned);

# A new, initialized (not started) node.  preload => 0 leaves pg_opsdata out
# of shared_preload_libraries; extra settings may be given as conf => '...'.
sub opsdata_node
{
	my ($name, %opts) = @_;
	my $preload = exists $opts{preload} ? $opts{preload} : 1;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opts{init} || {} });
	$node->append_conf('postgresql.conf',
		$preload
		? "shared_preload_libraries = 'pg_opsdata'\n"
		: "shared_preload_libraries = ''\n");
	$node->append_conf('postgresql.conf', "max_worker_processes = 16\n");
	$node->append_conf('postgresql.conf', $opts{conf}) if $opts{conf};
	return $node;
}

# Wait until the node, made to crash (a process killed with SIGKILL) after
# its log had grown to $offset bytes (take -s $node->logfile before the
# kill), has restarted: the postmaster has logged that it reinitializes and
# then that it accepts connections again, and a query is answered.  A query
# sent before the postmaster noticed the crash would still be answered by
# the old processes, and the next one would reach the server while it
# restarts.  Returns true once the node is up; dies when that takes longer
# than the tests' timeout.
sub opsdata_wait_up
{
	my ($node, $offset) = @_;
	die 'opsdata_wait_up: the log offset from before the crash is needed'
	  unless defined $offset;
	$node->wait_for_log(
		qr/all server processes terminated; reinitializing.*database system is ready to accept connections/s,
		$offset);
	return $node->poll_query_until('postgres', 'SELECT true');
}

# Wait until partition maintenance has made the partitions of audit.entries
# that the next ten minutes' entries go to (today's, and tomorrow's when
# midnight is near): a query planned before maintenance moves rows out of
# the default partition would miss them.  Dies when it never happens.
sub opsdata_wait_audit_partitioned
{
	my ($node, $db) = @_;
	$node->poll_query_until($db || 'postgres', q{
		SELECT pg_catalog.bool_and(EXISTS (
				 SELECT FROM opsdata.show_partitions('audit.entries')
				  WHERE t >= lower_bound::timestamptz AND t < upper_bound::timestamptz))
		  FROM (VALUES (pg_catalog.now()),
					   (pg_catalog.clock_timestamp() + interval '10 minutes')) v(t)})
	  or die 'audit.entries was not partitioned';
	return;
}

# After the postmaster itself was killed ($node->kill9): wait until every
# process of the old server is gone, that is until nothing is attached to
# its shared memory any more and the postmaster's own PID has been reaped
# (a new postmaster refuses to start before), and remove its lock file.
# Dies when that takes longer than the tests' timeout.
sub opsdata_wait_old_server_gone
{
	my ($node) = @_;
	my $pidfile = $node->data_dir . '/postmaster.pid';
	my @lines = split /\n/, slurp_file($pidfile);
	my $pid = $lines[0];
	my (undef, $shmid) = split ' ', $lines[6];
	for (1 .. 10 * $PostgreSQL::Test::Utils::timeout_default)
	{
		my $attached = grep {
			my @f = split ' ';
			$f[1] eq $shmid && $f[6] > 0
		} split /\n/, slurp_file('/proc/sysvipc/shm');
		if (!$attached && !kill(0, $pid))
		{
			unlink $pidfile;
			return;
		}
		select(undef, undef, undef, 0.1);
	}
	die "the processes of the killed server are still there";
}

# The pid of the one job process sleeping in pg_sleep(), once there is one
# (a test stalls a job in the middle of its run, to kill it there); undef
# if none shows up within the poll's time.
sub opsdata_stalled_job
{
	my ($node) = @_;
	my $stalled = q{SELECT pid FROM pg_stat_activity
					 WHERE backend_type = 'pg_opsdata job' AND wait_event = 'PgSleep'};
	return undef
	  unless $node->poll_query_until('postgres', "SELECT count(*) = 1 FROM ($stalled) s");
	return $node->safe_psql('postgres', $stalled);
}

# Fill database $db of $node through every area of pg_opsdata, whose
# extension is installed there with its built-in jobs paused, so that
# nothing changes until the caller resumes them:
#   audit: statements, an exclude rule (on public.noise), entries of the
#     queue (a failed statement, a rolled-back transaction) flushed;
#   settings changed;
#   a partition set of the user's own (public.events) with rows in premade
#     partitions and in its default partition;
#   metrics: series, points rolled up and points whose rollup is pending;
#   learning: feedback, a threshold tuned twice (its history), candidates,
#     one closed, two with a lease of 3 seconds ('rita') and two with a
#     lease of a day ('sam');
#   a user job ('tick', paused after a few runs) and its runs.
# opsdata_check_areas_work() checks that all of it works.
sub opsdata_fill_areas
{
	my ($node, $db) = @_;
	$node->safe_psql($db, q{
		SELECT opsdata.set_setting('audit.retention', '400 days');
		SELECT opsdata.set_setting('metrics.points_retention', '60 days');
		SELECT opsdata.set_setting('learning.default_lease', '5 minutes');

		-- Audit: statements, a rule, and queued entries (a failed statement, a
		-- rolled-back transaction).
		CREATE TABLE public.orders (id int PRIMARY KEY);
		CREATE TABLE public.noise (n int);
		SELECT audit.add_rule('exclude', relation_name => 'public.noise', comment => 'too chatty');
		INSERT INTO public.orders VALUES (1), (2);
		INSERT INTO public.noise VALUES (1);
	});
	$node->psql($db, 'INSERT INTO public.orders VALUES (1)');
	$node->safe_psql($db, q{
		BEGIN; INSERT INTO public.orders VALUES (3); ROLLBACK;
		SELECT audit.flush();

		-- The user's partition set: rows in premade partitions and in the
		-- default partition.
		CREATE TABLE public.events (id bigint GENERATED ALWAYS AS IDENTITY, at timestamptz NOT NULL,
									kind text NOT NULL, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
		CREATE TABLE public.events_default PARTITION OF public.events DEFAULT;
		SELECT opsdata.manage_partitions('public.events', 'at', '1 day', premake => 3, retention => '30 days',
										 start_from => (now() - interval '2 days')::text);
		INSERT INTO public.events (at, kind) SELECT now() - i * interval '1 hour', 'past' FROM generate_series(0, 40) i;
		INSERT INTO public.events (at, kind) SELECT now() + i * interval '1 hour', 'ahead' FROM generate_series(1, 30) i;
		INSERT INTO public.events (at, kind) VALUES (now() + interval '20 days', 'far ahead');

		-- Metrics: points rolled up, and points whose rollup is still pending.
		SELECT count(metrics.record('requests', i, '{"route": "/a"}', now() - i * interval '1 minute'))
		  FROM generate_series(1, 180) i;
		SELECT count(metrics.record('requests', i, '{"route": "/b"}', now() - i * interval '1 minute'))
		  FROM generate_series(1, 30) i;
		SELECT metrics.rollup();
		SELECT count(metrics.record('requests', i, '{"route": "/a"}', now() - i * interval '1 second'))
		  FROM generate_series(1, 40) i;

		-- Learning: feedback, a tuned threshold with its history, candidates.
		INSERT INTO learning.feedback (key, score, label)
		SELECT 'intent.refund', (i % 997) / 997.0, (i % 997) / 997.0 + (i % 13) / 26.0 > 0.75
		  FROM generate_series(1, 2000) i;
		SELECT learning.set_objective('intent.refund', 'precision', 0.9, 100);
		SELECT learning.tune();
		INSERT INTO learning.feedback (key, score, label)
		SELECT 'intent.refund', (i % 991) / 991.0, i % 3 = 0 FROM generate_series(1, 500) i;
		SELECT learning.tune();
		SELECT count(learning.offer('intent.refund', 'q' || i, i / 20.0)) FROM generate_series(1, 10) i;
		SELECT learning.submit(candidate_id, 'rita', true) FROM learning.claim(1, 'rita', '1 hour');
		SELECT count(*) FROM learning.claim(2, 'rita', '3 seconds');
		SELECT count(*) FROM learning.claim(2, 'sam', '1 day');

		-- A user job with some runs.
		CREATE TABLE public.ticks (at timestamptz DEFAULT clock_timestamp());
		SELECT opsdata.add_job('tick', 'INSERT INTO public.ticks DEFAULT VALUES', '1 second');
	});
	$node->poll_query_until($db, 'SELECT count(*) >= 3 FROM public.ticks') or die 'no ticks';
	$node->safe_psql($db, q{SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'tick'});
	$node->poll_query_until($db, q{SELECT count(*) = 0 FROM opsdata.job_runs WHERE status = 'running'})
	  or die 'runs still in progress';
	$node->safe_psql($db, 'SELECT audit.flush()');
}

# The SQL that fingerprints every row of the tables opsdata_fill_areas()
# fills, the partitions with their bounds, and the positions of the
# sequences: one text to compare between a database and its copy.
# audit.entries and audit.statements are compared up to entry $max_entry
# (a restore or an update adds entries of its own).  Derived data
# (learning.histograms and learning.feedback_changes) is rebuilt on
# restore and checked by tuning; the built-in partition sets are made by
# CREATE EXTENSION, with their state of maintenance, which is not dumped.
# $columns, from opsdata_table_columns(), limits each table to the columns
# it had then (an update may add some).  With $max_job, only the jobs up
# to that id and their runs are compared, and not the sequences of jobs and
# runs: an update may add built-in jobs, which may run at once.
sub opsdata_fingerprint_sql
{
	my ($max_entry, $columns, $max_job, $max_seal) = @_;
	my $jobs = defined $max_job ? "job_id <= $max_job" : undef;
	my $seals = defined $max_seal ? "seal_id <= $max_seal" : undef;
	my $sequences = defined $max_job ? "AND sequencename NOT IN ('jobs_job_id_seq', 'job_runs_run_id_seq')" : '';
	my @tables = (
		[ 'audit.entries', "entry_id <= $max_entry" ],
		[ 'audit.statements', "statement_id IN (SELECT statement_id FROM audit.entries WHERE entry_id <= $max_entry)" ],
		[ 'audit.rules' ], [ 'audit.seals', $seals ],
		[ 'opsdata.config' ], [ 'opsdata.jobs', $jobs ], [ 'opsdata.job_runs', $jobs ], [ 'opsdata.partitions', 'NOT builtin' ],
		[ 'opsdata.partition_log' ],
		[ 'metrics.series' ], [ 'metrics.points' ], [ 'metrics.rollup_queue' ], [ 'metrics.rollups' ],
		[ 'metrics.rollup_state' ],
		[ 'learning.feedback' ], [ 'learning.thresholds' ], [ 'learning.threshold_history' ],
		[ 'learning.strategies' ], [ 'learning.candidates' ],
		[ 'public.orders' ], [ 'public.noise' ], [ 'public.events' ], [ 'public.ticks' ]);
	my $rows = join("\nUNION ALL ",
		map {
			my ($t, $where) = @$_;
			my $row = $columns && $columns->{$t} ? "row($columns->{$t})" : 'x';
			$where = defined $where ? "WHERE $where" : '';
			"SELECT '$t' AS t, count(*) AS n, md5(coalesce(string_agg(${row}::text, '|' ORDER BY ${row}::text), '')) AS h FROM $t x $where"
		} @tables);
	return qq{
		SELECT string_agg(format('%s %s %s', t, n, h), E'\\n' ORDER BY t) FROM ($rows) f
		UNION ALL
		SELECT string_agg(format('%s %s', i.inhrelid::regclass, pg_get_expr(c.relpartbound, c.oid)), E'\\n' ORDER BY 1)
		  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		 WHERE i.inhparent IN ('audit.entries'::regclass, 'metrics.points'::regclass, 'public.events'::regclass)
		UNION ALL
		SELECT string_agg(format('%s %s %s', schemaname, sequencename, last_value), E'\\n' ORDER BY 1)
		  FROM pg_sequences WHERE schemaname IN ('learning', 'metrics', 'opsdata', 'public') $sequences};
}

# The columns of every table of database $db of $node, for
# opsdata_fingerprint_sql(): a hash of "schema.table" to "x.a, x.b, ...".
sub opsdata_table_columns
{
	my ($node, $db) = @_;
	my %columns;
	for my $line (split /\n/, $node->safe_psql($db, q{
		SELECT n.nspname || '.' || c.relname || '|' || string_agg('x.' || quote_ident(a.attname), ', ' ORDER BY a.attnum)
		  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
		 WHERE c.relkind IN ('r', 'p') AND n.nspname IN ('audit', 'learning', 'metrics', 'opsdata', 'public')
		 GROUP BY n.nspname, c.relname}))
	{
		my ($table, $list) = split /\|/, $line, 2;
		$columns{$table} = $list;
	}
	return \%columns;
}

# Check that database $db of $node, filled by opsdata_fill_areas() and
# then restored, copied or updated, works: audit capture and the rule go on
# with new entry_ids (after $max_entry), the scheduler runs the user's job
# and every built-in one once resumed, expired leases are reclaimed and
# active ones not handed out, partition maintenance moves the row out of
# the default partition, rollups count every point once, tuning counts
# every feedback row once, and opsdata.check_restore() and opsdata.health()
# find nothing wrong.  $how prefixes the names of the tests.
sub opsdata_check_areas_work
{
	my ($node, $db, $how, $max_entry) = @_;

	# Audit capture and the rules go on.
	$node->safe_psql($db, q{
		INSERT INTO public.orders VALUES (10);
		INSERT INTO public.noise VALUES (10)});
	is($node->safe_psql($db, qq{
		SELECT string_agg(statement_text, ', ' ORDER BY entry_id) FROM audit.trail
		 WHERE entry_id > $max_entry AND statement_text LIKE 'INSERT INTO public.%VALUES (10)'}),
		'INSERT INTO public.orders VALUES (10)', "$how: writes are audited, and the rule excludes its table");

	# New feedback and points, besides the pending work already there.
	$node->safe_psql($db, q{
		INSERT INTO learning.feedback (key, score, label)
		SELECT 'intent.refund', (i % 89) / 89.0, i % 2 = 0 FROM generate_series(1, 100) i;
		SELECT count(metrics.record('requests', 1, '{"route": "/b"}')) FROM generate_series(1, 5)});

	# The scheduler runs every job again, from where they were left.
	my $ticks = $node->safe_psql($db, 'SELECT count(*) FROM public.ticks');
	my $last_run = $node->safe_psql($db, 'SELECT max(run_id) FROM opsdata.job_runs');
	$node->safe_psql($db, q{
		SELECT count(opsdata.alter_job(job_id, paused => false, next_run => now()))
		  FROM opsdata.jobs WHERE builtin OR name = 'tick'});
	ok($node->poll_query_until($db, "SELECT count(*) >= $ticks + 2 FROM public.ticks"),
		"$how: the scheduler runs the user's job");
	ok($node->poll_query_until($db, qq{
		SELECT count(*) = 0 FROM opsdata.jobs j
		 WHERE j.builtin AND NOT EXISTS (SELECT FROM opsdata.job_runs r
										  WHERE r.job_id = j.job_id AND r.run_id > $last_run
											AND r.status = 'succeeded')}),
		"$how: every built-in job runs and succeeds");
	is($node->safe_psql($db, qq{
		SELECT string_agg(DISTINCT status, ',') FROM opsdata.job_runs
		 WHERE run_id > $last_run AND status NOT IN ('succeeded', 'running')}),
		'', "$how: no run fails");

	# Leases: the expired ones are reclaimed by the built-in job, the active
	# ones stay with their reviewer and are not handed out.
	ok($node->poll_query_until($db, q{
		SELECT count(*) = 0 FROM learning.candidates WHERE status = 'claimed' AND claimed_by = 'rita'}),
		"$how: expired leases are reclaimed");
	is($node->safe_psql($db, q{
		SELECT count(*) || ' handed out, ' || count(*) FILTER (WHERE candidate_id IN
			(SELECT candidate_id FROM learning.candidates WHERE claimed_by = 'sam')) || ' of them leased'
		  FROM learning.claim(10, 'other', '1 hour')}),
		'7 handed out, 0 of them leased', "$how: the open and reclaimed candidates are handed out, the leased ones not");

	# Partition maintenance goes on: the row in the default partition has
	# its partition now.
	ok($node->poll_query_until($db, q{SELECT count(*) = 0 FROM ONLY public.events_default}),
		"$how: maintenance moves the row out of the default partition");
	is($node->safe_psql($db, q{SELECT count(*) FROM public.events WHERE kind = 'far ahead'}), '1',
		"$how: into a partition of its own");

	# Rollups go on, and no point is counted twice or missed.  The vital
	# signs job records pg.* series all along: they stay out of the sums.
	ok($node->poll_query_until($db, q{
		SELECT count(*) = 0 FROM metrics.rollup_queue q JOIN metrics.series s USING (series_id)
		 WHERE s.name NOT LIKE 'pg.%'}),
		"$how: the pending rollup work is done");
	is($node->safe_psql($db, q{
		WITH app AS (SELECT series_id FROM metrics.series WHERE name NOT LIKE 'pg.%')
		SELECT string_agg(format('%s %s', w.width, r.count = p.count AND r.sum = p.sum), ', ' ORDER BY w.width)
		  FROM unnest(opsdata.setting('metrics.rollup_widths')::interval[]) w(width),
			   LATERAL (SELECT sum(count) AS count, sum(sum) AS sum FROM metrics.rollups
						 WHERE bucket_width = w.width AND series_id IN (SELECT series_id FROM app)) r,
			   (SELECT count(*) AS count, sum(value) AS sum FROM metrics.points
				 WHERE series_id IN (SELECT series_id FROM app)) p}),
		'00:01:00 t, 01:00:00 t, 1 day t', "$how: every width counts every point once");
	is($node->safe_psql($db, q{
		SELECT sum(count) FROM metrics.query('requests', '{"route": "/a"}', now() - interval '1 day', now() + interval '1 minute', '1 hour')}),
		'220', "$how: metrics.query() answers over the old and the new data");

	# Tuning goes on from every feedback row, the old ones included.
	ok($node->poll_query_until($db, q{SELECT count(*) = 0 FROM learning.feedback_changes}),
		"$how: tuning took in every pending feedback change");
	is($node->safe_psql($db, q{
		SELECT support = (SELECT count(*) FROM learning.feedback WHERE key = 'intent.refund')
		   AND threshold IS NOT DISTINCT FROM (SELECT learning.optimal_threshold(score, label, 'precision', 0.9)
												 FROM learning.feedback WHERE key = 'intent.refund')
		  FROM learning.thresholds WHERE key = 'intent.refund'}),
		't', "$how: the threshold is tuned on all the feedback, none counted twice");

	is($node->safe_psql($db, q{
		SELECT string_agg(check_name || ': ' || detail, '; ') FROM opsdata.check_restore() WHERE status <> 'ok'}),
		'', "$how: opsdata.check_restore() finds nothing wrong");
	is($node->safe_psql($db, q{
		SELECT string_agg(component || ': ' || detail, '; ') FROM opsdata.health() WHERE status NOT IN ('ok', 'off')}),
		'', "$how: health is clean");

	# The sealing service seals this server's new entries, and the chain,
	# the seals that came with the data included, verifies.
	ok($node->poll_query_until($db, qq{
		SELECT count(*) = 0 FROM audit.entries e
		 WHERE e.entry_id > $max_entry AND e.server_id = audit.server_id()
		   AND NOT EXISTS (SELECT FROM audit.seals s WHERE s.kind = 'entries' AND s.server_id = e.server_id
							 AND s.entry_ids @> e.entry_id AND e.ts >= s.ts_from AND e.ts < s.ts_to)}),
		"$how: new entries are sealed");
	my $verdict = $node->safe_psql($db, q{SELECT status || ': ' || coalesce(detail, '') FROM audit.verify()});
	like($verdict, qr/^intact: /, "$how: the seal chain verifies") or diag($verdict);
}

1;
