# Only pg_opsdata writes its own tables, also the partitions that partition
# maintenance makes after the extension was installed: a member of
# pg_write_all_data is refused INSERT, UPDATE, DELETE, TRUNCATE and COPY
# FROM on each of them, unless the parent's grants allow the write (points
# are recorded by INSERT).  Nothing an administrator can do makes a
# maintenance pass shorten the trail or the partition log; a retention
# written around its checks does not break maintenance; a change of the
# audit configuration made by a job is audited.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('guard');
$node->start;
$node->safe_psql('postgres', q{
	CREATE EXTENSION pg_opsdata;
	SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'partition.maintain';
	CREATE ROLE bypass LOGIN IN ROLE pg_write_all_data, pg_read_all_data;
	CREATE ROLE adm LOGIN IN ROLE opsdata_admin;
	CREATE ROLE job_super SUPERUSER LOGIN;
});

# Rows older than the retention, from before the install: maintenance moves
# them out of the default partitions into partitions of their own.
$node->safe_psql('postgres', q{
	INSERT INTO audit.entries (ts, database, username, current_user_name, backend_pid, class, command, outcome)
	SELECT now() - d * interval '1 day', 'postgres', 'old', 'old', 1, 'misc', 'OLD', 'ok'
	  FROM generate_series(0, 10) d;
	INSERT INTO metrics.points SELECT 1, now() - d * interval '1 day', d FROM generate_series(0, 10) d;
	INSERT INTO opsdata.partition_log (logged_at, parent, action, detail)
	VALUES (now() - interval '10 days', 'audit.entries', 'skip', 'an entry ten days old');
});

# The administrator tries to shorten the trail and the partition log.
my ($ret, $out, $err);
for my $sql (
	q{SELECT opsdata.set_setting('audit.retention', '1 microsecond')},
	q{SELECT opsdata.set_setting('audit.retention', '1 day')},
	q{SELECT opsdata.set_setting('partition.log_retention', '0')},
	q{SELECT opsdata.set_setting('partition.log_retention', '1 day')},
	q{SELECT audit.add_rule('exclude')},
	q{DELETE FROM opsdata.partition_log})
{
	($ret, $out, $err) = $node->psql('postgres', $sql, extra_params => [ '-U', 'adm' ]);
	like($err, qr/permission denied/, "opsdata_admin is refused: $sql");
}

# A retention written around the checks, far beyond what can be set.
$node->safe_psql('postgres',
	q{INSERT INTO opsdata.config (key, value) VALUES ('metrics.points_retention', '178000000 years')});

is($node->safe_psql('postgres', q{
	SELECT string_agg(parent_table || '=' || status, ' ' ORDER BY parent_table::text)
	  FROM opsdata.run_maintenance()}),
	'audit.entries=ok metrics.points=ok',
	'a maintenance pass succeeds, even with a retention too long to subtract from now');
is($node->safe_psql('postgres', q{SELECT count(*) FROM audit.entries WHERE command = 'OLD'}), '11',
	'the maintenance pass kept every audit entry');
is($node->safe_psql('postgres', q{SELECT count(*) FROM ONLY audit.entries_default WHERE command = 'OLD'}), '0',
	'and moved them into partitions it made');
is($node->safe_psql('postgres', q{SELECT count(*) FROM opsdata.partition_log WHERE detail = 'an entry ten days old'}),
	'1', 'the partition log kept its entry ten days old');
is($node->safe_psql('postgres', q{SELECT count(*) FROM metrics.points WHERE series_id = 1 AND value > 0}), '10',
	'no metric point was dropped');

# Every partition of a table of the extension, those just made included.
my @leaves = split /\n/, $node->safe_psql('postgres', q{
	SELECT c.oid::regclass || ' ' || pg_partition_root(c.oid)::regclass
	  FROM pg_class c
	 WHERE c.relispartition AND c.relkind = 'r'
	   AND pg_partition_root(c.oid) IN ('audit.entries'::regclass, 'metrics.points'::regclass)
	 ORDER BY 1});
cmp_ok(scalar(@leaves), '>=', 20, 'maintenance made partitions after the install');
my $made_later = $node->safe_psql('postgres', q{
	SELECT count(*) FROM pg_class c
	 WHERE c.relispartition AND pg_partition_root(c.oid) = 'audit.entries'::regclass
	   AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
												 AND d.deptype = 'e')});
cmp_ok($made_later, '>=', 10, 'partitions of audit.entries that do not belong to the extension exist');

# A row in every partition, so that row-level guards have a row to refuse.
$node->safe_psql('postgres', q{
	INSERT INTO audit.entries (ts, database, username, current_user_name, backend_pid, class, command, outcome)
	SELECT coalesce(l.lower_time, '1990-01-01'), 'postgres', 'u', 'u', 1, 'misc', 'FIXTURE', 'ok'
	  FROM opsdata._partition_layout('audit.entries') l;
	INSERT INTO metrics.points SELECT 1, coalesce(l.lower_time, '1990-01-01'), 0
	  FROM opsdata._partition_layout('metrics.points') l;
});

for my $leaf_root (@leaves)
{
	my ($leaf, $root) = split / /, $leaf_root;
	my $insert_granted = $root eq 'metrics.points';
	my $row = $node->safe_psql('postgres', "COPY (SELECT * FROM $leaf LIMIT 1) TO STDOUT");
	my %writes = (
		INSERT => "INSERT INTO $leaf SELECT * FROM $leaf LIMIT 1",
		UPDATE => "UPDATE $leaf SET ts = ts",
		DELETE => "DELETE FROM $leaf",
		TRUNCATE => "TRUNCATE $leaf",
		COPY => "COPY $leaf FROM STDIN;\n$row\n\\.\n");
	for my $op (sort keys %writes)
	{
		my $granted = $insert_granted && ($op eq 'INSERT' || $op eq 'COPY');
		($ret, $out, $err) = $node->psql('postgres', "BEGIN;\n$writes{$op};\nROLLBACK;",
			extra_params => [ '-U', 'bypass', '-v', 'ON_ERROR_STOP=1' ]);
		if ($granted)
		{
			unlike($err, qr/permission denied/, "pg_write_all_data: $op on $leaf is allowed, as granted");
		}
		else
		{
			like($err, qr/permission denied/, "pg_write_all_data: $op on $leaf is refused");
		}
	}
}
is($node->safe_psql('postgres', q{SELECT count(*) FROM audit.entries WHERE command = 'OLD'}), '11',
	'the audit entries are all there');

# A job that changes the audit configuration: the change is audited, and
# the entry names the job.
$node->safe_psql('postgres', q{
	SELECT opsdata.add_job('lengthen the trail', $$SELECT opsdata.set_setting('audit.retention', '400 days')$$,
		'1 hour', run_as => 'job_super');
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM audit.entries
	 WHERE command = 'SET OPSDATA SETTING' AND objects = '{audit.retention}'
	   AND application = 'pg_opsdata job lengthen the trail'
	   AND username = 'job_super' AND current_user_name = 'job_super'}),
	'a change of audit.retention made by a job is audited, naming the job and its role as the actor');
is($node->safe_psql('postgres', q{SELECT opsdata.setting('audit.retention')}), '400 days',
	'the job changed the setting');

# A job of an administrator runs as the administrator: it cannot do what
# the administrator cannot, and its attempt is on record.
$node->safe_psql('postgres', q{
	SELECT opsdata.add_job('shorten the trail', $$SELECT opsdata.set_setting('audit.retention', '2 days')$$,
		'1 hour', run_as => 'adm');
});
ok($node->poll_query_until('postgres', q{
	SELECT count(*) = 1 FROM opsdata.job_runs WHERE job_name = 'shorten the trail' AND status = 'failed'}),
	'the administrator\'s job that shortens the trail fails');
is($node->safe_psql('postgres', q{
	SELECT sqlstate FROM opsdata.job_runs WHERE job_name = 'shorten the trail'}),
	'42501', 'with insufficient_privilege');
is($node->safe_psql('postgres', q{SELECT opsdata.setting('audit.retention')}), '400 days',
	'and the retention is unchanged');

$node->stop;
done_testing();
