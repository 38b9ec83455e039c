# ALTER EXTENSION pg_opsdata UPDATE from every released version gives the
# objects of a fresh install of the current version, and keeps the data of
# every area (OpsdataTest::opsdata_fill_areas) and working; a library
# refuses clearly the objects of a version older than it can work with.
#
# The objects are compared through pg_dump --binary-upgrade --schema-only,
# the one form of pg_dump that lists an extension's member objects: object
# identifiers and the order of statements are left out of the comparison.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('upgrade', conf => "pg_opsdata.audit = 'write, ddl'\n");
$node->start;

my $current = $node->safe_psql('postgres',
	q{SELECT default_version FROM pg_available_extensions WHERE name = 'pg_opsdata'});
my @released = map { /pg_opsdata--([0-9.]+)\.sql$/ ? $1 : () }
  glob($node->config_data('--sharedir') . '/extension/pg_opsdata--*.sql');
@released = grep { $_ ne $current } @released;
ok(@released >= 1, "released versions are installable beside $current: @released");

# The entries of a schema-only dump in a canonical form: object identifiers,
# transaction ids and sequence positions left out, sorted; the objects of
# schema public and the daily partitions left out.
sub schema_of
{
	my ($dbname) = @_;
	my $dump = '';
	PostgreSQL::Test::Utils::run_log(
		[ 'pg_dump', '--binary-upgrade', '--schema-only', '--no-owner', '-d', $node->connstr($dbname) ],
		'>', \$dump)
	  or die "pg_dump of $dbname failed";
	my @entries;
	for my $entry (split /^--\n-- (?=Name: )/m, $dump)
	{
		my @statements;
		# The user's objects, and the daily partitions maintenance makes at
		# run time, are not the extension's.
		my ($name, $schema) = $entry =~ /^Name: ([^;]*); Type: [^;]*; Schema: ([^;]*);/;
		next if defined $schema && ($schema eq 'public' || $name =~ /_p\d{8}/);
		$entry =~ s/^Name: .*\n//;
		for my $statement (split /;\n(?=\S|\n)/, $entry)
		{
			$statement =~ s/^(--|\\(un)?restrict ).*$//mg;
			$statement =~ s/^\s+|\s+$//g;
			next if $statement eq '';
			# A column added with a default by the update holds, for the
			# rows that were there, that value stored once (no rewrite);
			# a fresh install has no such rows: storage, not objects.
			next if $statement =~ /binary_upgrade_set_next_|binary_upgrade_create_empty_extension|binary_upgrade_set_missing_value|relfrozenxid|^SELECT pg_catalog\.setval/;
			next if $statement =~ /^SET |^SELECT pg_catalog\.set_config/;
			push @statements, $statement;
		}
		push @entries, join(";\n", @statements) if @statements;
	}
	return join(";\n\n", sort @entries) . "\n";
}

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION pg_opsdata');
my $fresh = schema_of('fresh');
is($node->safe_psql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'pg_opsdata'}),
	$current, "a fresh install is version $current");

for my $version (@released)
{
	my $db = "from_" . ($version =~ s/\./_/gr);
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	# Built-in jobs paused until the data is compared after the update.
	$node->safe_psql($db, qq{
		BEGIN;
		CREATE EXTENSION pg_opsdata VERSION '$version';
		SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
		COMMIT;
	});
	opsdata_fill_areas($node, $db);
	my $max_entry = $node->safe_psql($db, 'SELECT max(entry_id) FROM audit.entries');
	my $max_job = $node->safe_psql($db, 'SELECT max(job_id) FROM opsdata.jobs');
	my $columns = opsdata_table_columns($node, $db);
	# The update renames the built-in jobs of 0.1 (doc/development.md,
	# Names): their rows are compared under the new names.
	$columns->{'opsdata.jobs'} =~ s{\bx\.name\b}{CASE x.name WHEN 'prune job runs' THEN 'worker.prune_runs' WHEN 'partition maintenance' THEN 'partition.maintain' WHEN 'audit index closed partitions' THEN 'audit.index_closed_partitions' ELSE x.name END};
	my $fingerprint_sql = opsdata_fingerprint_sql($max_entry, $columns, $max_job);
	my $before = $node->safe_psql($db, $fingerprint_sql);
	# The text of every entry as the trail of the old version gives it.
	my $texts_sql = qq{
		SELECT count(*) || E'\\n' || string_agg(entry_id || ': ' || coalesce(statement_text, '<none>'), E'\\n' ORDER BY entry_id)
		  FROM audit.trail WHERE entry_id <= $max_entry};
	my $texts_before = $node->safe_psql($db, $texts_sql);
	like($texts_before, qr/INSERT INTO public\.orders VALUES \(1\), \(2\)/, "$version audited its statements with their texts");

	$node->safe_psql($db, 'ALTER EXTENSION pg_opsdata UPDATE');
	# Like the other built-in jobs above, the one the update adds stays out
	# of the counts below.
	$node->safe_psql($db, q{SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'metrics.vitals'});
	is($node->safe_psql($db, q{SELECT extversion FROM pg_extension WHERE extname = 'pg_opsdata'}),
		$current, "$version is updated to $current");

	my $updated = schema_of($db);
	my $same = $updated eq $fresh;
	ok($same, "the objects updated from $version are those of a fresh install of $current");
	if (!$same)
	{
		my $dir = PostgreSQL::Test::Utils::tempdir();
		open my $a, '>', "$dir/fresh.sql" or die $!;
		print $a $fresh;
		close $a;
		open my $b, '>', "$dir/updated.sql" or die $!;
		print $b $updated;
		close $b;
		diag(`diff -u $dir/fresh.sql $dir/updated.sql | head -80`);
	}

	# Every row of every area is there, and every area works.
	my $after = $node->safe_psql($db, $fingerprint_sql);
	# (audit.seals of 0.1 was never written: the update replaces it, and the
	# sealing service seals in it at once; checked below.)
	my @before = grep { !/^audit\.seals / } split /\n/, $before;
	my @after = grep { !/^audit\.seals / } split /\n/, $after;
	my %was = map { $_ => 1 } @before;
	my %is = map { $_ => 1 } @after;
	is(join("\n", (map { "- $_" } grep { !$is{$_} } @before),
			(map { "+ $_" } grep { !$was{$_} } @after)),
		'', "every row of $version is there after the update");
	is($node->safe_psql($db, q{SELECT count(*) FROM audit.trail WHERE command = 'ALTER EXTENSION'}), '1',
		'the update is in the trail');
	opsdata_check_areas_work($node, $db, "updated from $version", $max_entry);
	is($node->safe_psql($db, $texts_sql), $texts_before,
		"every entry written by $version reads back with its text after the update");
	is($node->safe_psql($db, q{
		INSERT INTO public.orders VALUES (1003);
		INSERT INTO public.orders VALUES (1004);
		SELECT string_agg(t.statement_text || ' ' || s.statement_text || ' ' || t.constants::text, '; ' ORDER BY t.entry_id)
		  FROM audit.trail t JOIN audit.statements s USING (statement_id)
		 WHERE t.command = 'INSERT' AND t.statement_text LIKE 'INSERT INTO public.orders VALUES (100%'}),
		'INSERT INTO public.orders VALUES (1003) INSERT INTO public.orders VALUES ($1) {1003}; '
		. 'INSERT INTO public.orders VALUES (1004) INSERT INTO public.orders VALUES ($1) {1004}',
		"statements are stored as shapes after the update from $version");
	# The entries of the old version, and the update's own (its objects
	# stored out of line), are sealed and verify.
	is($node->safe_psql($db, q{
			SELECT audit.seal() >= 0;
			SELECT count(*) FROM audit.entries e
			 WHERE NOT EXISTS (SELECT FROM audit.seals s WHERE s.entry_ids @> e.entry_id);
			SELECT status FROM audit.verify()}), "t\n0\nintact",
		"entries written by $version and by the update are sealed and verify");
}

# A library refuses clearly the objects of a version older than it can
# work with (OPSDATA_OLDEST_SCHEMA), instead of failing halfway: no released
# version is that old yet, so the test records an older version in the
# catalog and restarts the server, as after an upgrade of the library.
$node->safe_psql('postgres', 'CREATE DATABASE too_old');
$node->safe_psql('too_old', q{
	CREATE EXTENSION pg_opsdata;
	CREATE TABLE public.orders (id int);
	CREATE TABLE public.ticks (at timestamptz DEFAULT clock_timestamp());
	SELECT opsdata.add_job('tick', 'INSERT INTO public.ticks DEFAULT VALUES', '1 second');
	SET pg_opsdata.audit = 'none';
	UPDATE pg_extension SET extversion = '0.0' WHERE extname = 'pg_opsdata';
});
my $log_offset = -s $node->logfile;
$node->restart;
like($node->safe_psql('too_old', q{SELECT status || ': ' || detail FROM opsdata.health() WHERE component = 'extension'}),
	qr/^error: The loaded library is version $current and works with the objects of pg_opsdata 0\.1 or later, but this database has version 0\.0: audited statements and the jobs of this database are refused\. Run ALTER EXTENSION pg_opsdata UPDATE\./,
	'health says the objects are too old for the library, and what to do');
my ($rc, $out, $err) = $node->psql('too_old', 'INSERT INTO public.orders VALUES (1)',
	extra_params => [ '-v', 'VERBOSITY=verbose' ]);
like($err, qr/ERROR:  55000: pg_opsdata in database "too_old" is version 0\.0, older than this library \($current\) can work with/,
	'an audited statement is refused with a clear error');
like($err, qr/HINT:  Run ALTER EXTENSION pg_opsdata UPDATE in this database\./, 'whose hint says what to do');
is($node->safe_psql('too_old', 'SELECT count(*) FROM public.orders'), '0', 'and changes nothing');
is($node->safe_psql('too_old', 'SELECT count(*) FROM public.ticks'), '0', 'a statement that is not audited runs');
ok($node->wait_for_log(qr/\[\d+\] ERROR:  pg_opsdata in database "too_old" is version 0\.0, older than this library/,
		$log_offset),
	'the scheduler refuses to run the jobs, and says why in the server log');

# ALTER EXTENSION pg_opsdata UPDATE is not refused: PostgreSQL answers it
# (there is no update script from the fake version).
($rc, $out, $err) = $node->psql('too_old', 'ALTER EXTENSION pg_opsdata UPDATE');
like($err, qr/extension "pg_opsdata" has no update path from version "0\.0"/,
	'ALTER EXTENSION pg_opsdata UPDATE is not refused by pg_opsdata');

# Once the objects are recent enough, as an update makes them, everything
# goes on.  (The catalog is set back by a session that audits nothing.)
{
	local $ENV{PGOPTIONS} = '-c pg_opsdata.audit=none';
	$node->safe_psql('too_old', "UPDATE pg_extension SET extversion = '$current' WHERE extname = 'pg_opsdata'");
}
is($node->safe_psql('too_old', q{SELECT status FROM opsdata.health() WHERE component = 'extension'}), 'ok',
	'health is clean again');
$node->safe_psql('too_old', 'INSERT INTO public.orders VALUES (1)');
is($node->safe_psql('too_old', q{SELECT count(*) FROM audit.trail WHERE statement_text = 'INSERT INTO public.orders VALUES (1)'}),
	'1', 'statements are audited again');
ok($node->poll_query_until('too_old', 'SELECT count(*) > 0 FROM public.ticks'), 'and the jobs run');

$node->stop;
done_testing();
