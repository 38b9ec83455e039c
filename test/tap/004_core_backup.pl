# Backups keep everything (DESIGN.md, contract 9): a database that uses
# every area of pg_opsdata, on a server auditing writes and DDL, is
# restored in the two ways operators do it, and after each every row is
# back and the restored database works.
#
#   - pg_dumpall --globals-only and pg_dump -Fc, restored with pg_restore
#     --jobs 4 into a new database of a second server with pg_opsdata
#     preloaded (and auditing on);
#   - pg_basebackup of the first server, started as a copy.
#
# Filled: audit entries (queued ones flushed), statements and rules; jobs
# and their runs; a partition set of the user's own table with rows in the
# default partition and in premade ones; metrics series, points, rollups and
# rollup work still pending; learning feedback, thresholds with their
# history, and candidates with leases still active; changed settings.
#
# Works: the scheduler runs the jobs again (the user's and the built-in
# ones), partition maintenance goes on (the row in the default partition
# gets its partition), rollups go on without counting anything twice,
# tuning goes on from the restored feedback, expired leases are reclaimed
# and active ones are not handed out, audit capture and the rules go on
# with new entry_ids, and opsdata.check_restore() and opsdata.health()
# are clean.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $conf = "pg_opsdata.audit = 'write, ddl'\n";
my $origin = opsdata_node('origin', conf => $conf, init => { allows_streaming => 1 });
$origin->start;
$origin->safe_psql('postgres', 'CREATE DATABASE app');

# The built-in jobs are paused from the start, so nothing changes between
# the fingerprint and the backups; each restored database resumes them.
$origin->safe_psql('app', q{
	BEGIN;
	CREATE EXTENSION pg_opsdata;
	SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
	COMMIT;
	CREATE ROLE app_writer LOGIN IN ROLE opsdata_writer, opsdata_reader;
});
opsdata_fill_areas($origin, 'app');

# What the origin holds, ready to be compared.
is($origin->safe_psql('app', q{
	SELECT concat_ws(' ',
		(SELECT count(*) FROM audit.entries WHERE outcome IN ('error', 'rolled back')),
		(SELECT count(*) FROM ONLY public.events_default),
		(SELECT count(*) > 0 FROM metrics.rollup_queue),
		(SELECT count(*) > 0 FROM metrics.rollups),
		(SELECT count(*) > 0 FROM learning.threshold_history),
		(SELECT count(*) FROM learning.candidates WHERE status = 'claimed'),
		(SELECT count(*) >= 3 FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'tick'))}),
	'2 1 t t t 4 t',
	'the origin holds queued audit entries, a row in a default partition, pending rollup work, rollups, threshold history, leased candidates and job runs');

# Every entry is sealed before the fingerprint; the seals made afterwards
# (the origin's sealing service, the restored database's own) stay out of
# it.
$origin->safe_psql('app', 'SELECT audit.seal()');
my $max_entry = $origin->safe_psql('app', 'SELECT max(entry_id) FROM audit.entries');
my $max_seal = $origin->safe_psql('app', 'SELECT max(seal_id) FROM audit.seals');

my $fingerprint_sql = opsdata_fingerprint_sql($max_entry, undef, undef, $max_seal);
my $fingerprint = $origin->safe_psql('app', $fingerprint_sql);
like($fingerprint, qr/^public\.events 72 /m, 'the fingerprint covers the rows of every table');

# The two backups.
my $dump = $origin->basedir . '/app.dump';
my $globals = $origin->basedir . '/globals.sql';
$origin->command_ok([ 'pg_dumpall', '--globals-only', '-f', $globals, '-d', $origin->connstr('postgres') ],
	'pg_dumpall --globals-only keeps the roles');
$origin->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $origin->connstr('app') ], 'pg_dump -Fc');
$origin->backup('base');

# After a restore: every row back, and the database works.
sub check_restored
{
	my ($node, $how) = @_;

	# Entries the restore made of its own statements move into the trail
	# once it has ended.
	ok($node->poll_query_until('app', 'SELECT count(*) = 0 FROM audit.held_entries'),
		"$how: no audit entry is held once the restore has ended");
	is($node->safe_psql('app', $fingerprint_sql), $fingerprint, "$how: every row is back");
	is($node->safe_psql('app', qq{
		SELECT count(*) = count(DISTINCT entry_id) FROM audit.entries WHERE entry_id > $max_entry}),
		't', "$how: entries made since have ids of their own");

	opsdata_check_areas_work($node, 'app', $how, $max_entry);
}

# 1. pg_dump -Fc restored with pg_restore --jobs 4 on a second server.
my $restored = opsdata_node('restored', conf => $conf);
$restored->start;
my ($out, $err) = ('', '');
IPC::Run::run([ 'psql', '-X', '-q', '-f', $globals, '-d', $restored->connstr('postgres') ], '>', \$out, '2>', \$err);
is($restored->safe_psql('postgres', q{SELECT string_agg(rolname, ' ' ORDER BY rolname) FROM pg_roles WHERE rolname LIKE '%opsdata%' OR rolname = 'app_writer'}),
	'app_writer opsdata_admin opsdata_auditor opsdata_reader opsdata_writer', 'the roles are restored first');
$restored->safe_psql('postgres', 'CREATE DATABASE app');
my $ok = IPC::Run::run([ 'pg_restore', '--exit-on-error', '--jobs', '4', '-d', $restored->connstr('app'), $dump ],
	'>', \$out, '2>', \$err);
ok($ok, 'pg_restore --jobs 4 into a new database on a second server succeeds') or diag($err);
check_restored($restored, 'pg_restore');
$restored->stop;

# 2. pg_basebackup of the first server, started as a copy.
my $copy = PostgreSQL::Test::Cluster->new('copy');
$copy->init_from_backup($origin, 'base');
$copy->start;
check_restored($copy, 'base backup');
$copy->stop;

$origin->stop;
done_testing();
