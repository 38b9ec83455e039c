# opsdata.health() tells whether pg_opsdata is preloaded, on a real server
# started with and without shared_preload_libraries, and restarting with it
# turns the warning into ok without touching the data.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('nopreload', preload => 0);
$node->start;

my ($rc, $out, $err) = $node->psql('postgres', 'CREATE EXTENSION pg_opsdata');
is($rc, 0, 'CREATE EXTENSION works without shared_preload_libraries');
like($err, qr/WARNING:  pg_opsdata is not loaded through shared_preload_libraries/,
	'CREATE EXTENSION warns that the library is not preloaded');
like($err, qr/HINT:  Add pg_opsdata to shared_preload_libraries/, 'and says how to fix it');

is($node->safe_psql('postgres',
		"SELECT status FROM opsdata.health() WHERE component = 'preload'"),
	'warning', 'health reports the missing preload as a warning');
is($node->safe_psql('postgres',
		"SELECT status FROM opsdata.health() WHERE component = 'shared memory'"),
	'off', 'health reports shared memory as off');
is($node->safe_psql('postgres',
		"SELECT status FROM opsdata.health() WHERE component = 'extension'"),
	'ok', 'the library and the extension versions match');

$node->safe_psql('postgres',
	"INSERT INTO metrics.series (name) VALUES ('kept.across.restart')");

# Restart with the library preloaded.
$node->append_conf('postgresql.conf', "shared_preload_libraries = 'pg_opsdata'\n");
$node->restart;

is($node->safe_psql('postgres', 'SHOW shared_preload_libraries'), 'pg_opsdata',
	'the server now preloads pg_opsdata');
is($node->safe_psql('postgres',
		"SELECT string_agg(component || '=' || status, ',' ORDER BY component) FROM opsdata.health() WHERE component IN ('preload', 'shared memory')"),
	'preload=ok,shared memory=ok', 'health reports the preload and shared memory as ok');
is($node->safe_psql('postgres', 'SELECT count(*) FROM metrics.series'), '1',
	'data made before the restart is still there');

# A second database gets the extension with no warning once preloaded.
$node->safe_psql('postgres', 'CREATE DATABASE second');
($rc, $out, $err) = $node->psql('second', 'CREATE EXTENSION pg_opsdata');
is($rc, 0, 'CREATE EXTENSION in another database works');
unlike($err, qr/WARNING/, 'and raises no warning when preloaded');

# A misspelt pg_opsdata setting is refused, since the prefix is reserved.
($rc, $out, $err) = $node->psql('postgres', 'SET pg_opsdata.no_such_setting = 1');
isnt($rc, 0, 'an unknown pg_opsdata.* setting is refused');
like($err, qr/invalid configuration parameter name "pg_opsdata.no_such_setting"/,
	'with PostgreSQL\'s message for a reserved prefix');

$node->stop;
done_testing();
