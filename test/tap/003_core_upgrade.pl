# ALTER EXTENSION pg_opsdata UPDATE from every released version gives the
# objects of a fresh install of the current version, and keeps the data of
# every area working.
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
# transaction ids and sequence positions left out, sorted.
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
		$entry =~ s/^Name: .*\n//;
		for my $statement (split /;\n(?=\S|\n)/, $entry)
		{
			$statement =~ s/^(--|\\(un)?restrict ).*$//mg;
			$statement =~ s/^\s+|\s+$//g;
			next if $statement eq '';
			next if $statement =~ /binary_upgrade_set_next_|binary_upgrade_create_empty_extension|relfrozenxid|^SELECT pg_catalog\.setval/;
			next if $statement =~ /^SET |^SELECT pg_catalog\.set_config/;
			push @statements, $statement;
		}
		push @entries, join(";\n", @statements) if @statements;
	}
	return join(";\n\n", sort @entries) . "\n";
}

# What every area holds after some use, as "name=count" pairs.
my $counts_sql = q{
	SELECT string_agg(format('%s=%s', t, n), ' ' ORDER BY t) FROM (
		SELECT 'points' AS t, count(*) AS n FROM metrics.points
		UNION ALL SELECT 'series', count(*) FROM metrics.series
		UNION ALL SELECT 'feedback', count(*) FROM learning.feedback
		UNION ALL SELECT 'candidates', count(*) FROM learning.candidates
		UNION ALL SELECT 'jobs', count(*) FROM opsdata.jobs
		UNION ALL SELECT 'config', count(*) FROM opsdata.config
		UNION ALL SELECT 'entries', count(*) FROM audit.entries WHERE command = 'INSERT'
	) c};

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION pg_opsdata; CREATE TABLE app_orders (id int)');
my $fresh = schema_of('fresh');
is($node->safe_psql('fresh', q{SELECT extversion FROM pg_extension WHERE extname = 'pg_opsdata'}),
	$current, "a fresh install is version $current");

for my $version (@released)
{
	my $db = "from_" . ($version =~ s/\./_/gr);
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	$node->safe_psql($db, qq{
		CREATE EXTENSION pg_opsdata VERSION '$version';
		SELECT count(opsdata.pause_job(job_id)) FROM opsdata.jobs WHERE builtin;
		SELECT opsdata.set_setting('metrics.points_retention', '90 days');
		SELECT metrics.record('requests', i, '{"route": "/a"}', now() - i * interval '1 minute')
		  FROM generate_series(1, 100) i;
		SELECT learning.record_feedback('intent.refund', i / 100.0, i % 2 = 0) FROM generate_series(1, 50) i;
		SELECT learning.offer('intent.refund', 'item-' || i, i / 10.0) FROM generate_series(1, 5) i;
		SELECT opsdata.add_job('user job', 'SELECT 1', '1 hour');
		CREATE TABLE app_orders (id int);
		INSERT INTO app_orders VALUES (1);
		INSERT INTO app_orders VALUES (2);
	});
	my $before = $node->safe_psql($db, $counts_sql);
	# The text of every entry as the trail of the old version gives it.
	my $last_entry = $node->safe_psql($db, 'SELECT max(entry_id) FROM audit.entries');
	my $texts_sql = qq{
		SELECT count(*) || E'\\n' || string_agg(entry_id || ': ' || coalesce(statement_text, '<none>'), E'\\n' ORDER BY entry_id)
		  FROM audit.trail WHERE entry_id <= $last_entry};
	my $texts_before = $node->safe_psql($db, $texts_sql);
	like($texts_before, qr/INSERT INTO app_orders VALUES \(2\)/, "$version audited its statements with their texts");

	$node->safe_psql($db, 'ALTER EXTENSION pg_opsdata UPDATE');
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

	is($node->safe_psql($db, $counts_sql), $before, "every row of $version is there after the update");
	is($node->safe_psql($db, $texts_sql), $texts_before,
		"every entry written by $version reads back with its text after the update");
	$node->safe_psql($db, q{SELECT metrics.record('requests', 1, '{"route": "/a"}')});
	is($node->safe_psql($db, 'SELECT count(*) FROM metrics.points'), '101', "metrics are recorded after the update from $version");
	is($node->safe_psql($db, q{SELECT count(*) FROM learning.claim(2, 'rev')}),
		'2', "candidates are claimed after the update from $version");
	is($node->safe_psql($db, q{
		INSERT INTO app_orders VALUES (3);
		SELECT count(*) FROM audit.trail WHERE command = 'INSERT' AND statement_text LIKE '%app_orders%'}),
		'3', "statements are audited after the update from $version");
	is($node->safe_psql($db, q{
		INSERT INTO app_orders VALUES (4);
		SELECT string_agg(t.statement_text || ' ' || s.statement_text || ' ' || t.constants::text, '; ' ORDER BY t.entry_id)
		  FROM audit.trail t JOIN audit.statements s USING (statement_id)
		 WHERE t.command = 'INSERT' AND t.constants IS NOT NULL}),
		'INSERT INTO app_orders VALUES (3) INSERT INTO app_orders VALUES ($1) {3}; '
		. 'INSERT INTO app_orders VALUES (4) INSERT INTO app_orders VALUES ($1) {4}',
		"statements are stored as shapes after the update from $version");
	is($node->safe_psql($db, q{
		SELECT string_agg(component || ': ' || detail, '; ') FROM opsdata.health() WHERE status = 'error'}),
		'', "health reports no error after the update from $version");
}

$node->stop;
done_testing();
