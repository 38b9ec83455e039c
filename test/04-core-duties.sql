-- Separation of duties: what narrows or shortens the audit trail is for
-- superusers; opsdata_admin keeps the operational duties.  Retentions have
-- bounds that partition maintenance can compute.  opsdata.health() shows a
-- role only the partition sets it may see.
BEGIN;
SELECT plan(35);

CREATE ROLE duty_admin LOGIN IN ROLE opsdata_admin;
CREATE ROLE duty_reader LOGIN IN ROLE opsdata_reader;
CREATE ROLE duty_super SUPERUSER LOGIN;
CREATE ROLE duty_owner LOGIN;

-- opsdata_admin: no exclude rule, no dropping an include rule, no trail
-- setting; include rules, dropping exclude rules and other settings stay.
SET ROLE duty_admin;
SELECT throws_ok($$SELECT audit.add_rule('exclude')$$, '42501',
	'permission denied to add an exclude audit rule', 'opsdata_admin cannot add an exclude rule');
SELECT throws_ok($$SELECT audit.add_rule('exclude', role_name => 'duty_admin', class => 'read')$$, '42501',
	NULL, 'opsdata_admin cannot add a narrow exclude rule either');
SELECT lives_ok($$SELECT audit.add_rule('include', schema_name => 'public', class => 'read')$$,
	'opsdata_admin adds an include rule');
SELECT throws_ok($$SELECT audit.drop_rule(max(rule_id)) FROM audit.rules WHERE action = 'include'$$, '42501',
	'permission denied to drop an include audit rule', 'opsdata_admin cannot drop an include rule');
SELECT throws_ok($$SELECT opsdata.set_setting('audit.retention', '1 day')$$, '42501',
	'permission denied to change the pg_opsdata setting "audit.retention"',
	'opsdata_admin cannot shorten audit.retention');
SELECT throws_ok($$SELECT opsdata.set_setting('audit.retention', '10 years')$$, '42501', NULL,
	'opsdata_admin cannot change audit.retention at all');
SELECT throws_ok($$SELECT opsdata.reset_setting('audit.retention')$$, '42501', NULL,
	'opsdata_admin cannot reset audit.retention');
SELECT throws_ok($$SELECT opsdata.set_setting('partition.log_retention', '1 day')$$, '42501', NULL,
	'opsdata_admin cannot shorten the partition log');
SELECT throws_ok($$SELECT opsdata.reset_setting('partition.log_retention')$$, '42501', NULL,
	'opsdata_admin cannot reset partition.log_retention');
SELECT throws_ok('DELETE FROM opsdata.partition_log', '42501', NULL,
	'opsdata_admin cannot erase the partition log');
SELECT lives_ok($$SELECT opsdata.set_setting('partition.move_limit', '30')$$,
	'opsdata_admin changes an operational setting');
SELECT lives_ok($$SELECT opsdata.set_setting('metrics.points_retention', '60 days')$$,
	'opsdata_admin changes the retention of metric points');
RESET ROLE;

-- A superuser's SECURITY DEFINER function does not lend its rights: the
-- check is on the role the session acts as.
CREATE FUNCTION public.duty_silence() RETURNS bigint LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS $$ SELECT audit.add_rule('exclude', role_name => 'duty_owner') $$;
GRANT EXECUTE ON FUNCTION public.duty_silence() TO duty_admin;
SET ROLE duty_admin;
SELECT throws_ok('SELECT public.duty_silence()', '42501', NULL,
	'a superuser''s SECURITY DEFINER function does not let opsdata_admin add an exclude rule');
RESET ROLE;

-- Superusers (also through SET ROLE) may.
SET ROLE duty_super;
SELECT lives_ok($$SELECT audit.add_rule('exclude', role_name => 'duty_owner')$$,
	'a superuser adds an exclude rule');
SELECT lives_ok($$SELECT audit.drop_rule(max(rule_id)) FROM audit.rules WHERE action = 'include'$$,
	'a superuser drops an include rule');
RESET ROLE;
SET ROLE duty_admin;
SELECT lives_ok($$SELECT audit.drop_rule(max(rule_id)) FROM audit.rules WHERE action = 'exclude'$$,
	'opsdata_admin drops an exclude rule: the trail only widens');
RESET ROLE;

-- Retention bounds: at least a day, at most what maintenance can subtract
-- from now.
SELECT throws_ok($$SELECT opsdata.set_setting('audit.retention', '178000000 years')$$, '22023', NULL,
	'audit.retention of 178000000 years is refused');
SELECT throws_ok($$SELECT opsdata.set_setting('audit.retention', '1001 years')$$, '22023', NULL,
	'audit.retention beyond 1000 years is refused');
SELECT throws_ok($$SELECT opsdata.set_setting('audit.retention', '23 hours')$$, '22023', NULL,
	'audit.retention under a day is refused');
SELECT throws_ok($$SELECT opsdata.set_setting('audit.retention', '1 microsecond')$$, '22023', NULL,
	'audit.retention of a microsecond is refused');
SELECT is(opsdata.set_setting('audit.retention', '1 day'), '1 day', 'audit.retention of a day is accepted');
SELECT is(opsdata.set_setting('audit.retention', '1000 years'), '1000 years',
	'audit.retention of 1000 years is accepted');
SELECT throws_ok($$SELECT opsdata.set_setting('partition.log_retention', '0')$$, '22023', NULL,
	'partition.log_retention of 0 is refused');
SELECT throws_ok($$SELECT opsdata.set_setting('metrics.points_retention', '178000000 years')$$, '22023', NULL,
	'metrics.points_retention of 178000000 years is refused');
SELECT set_eq($$SELECT key FROM opsdata.current_settings WHERE superuser_only$$,
	ARRAY['audit.retention', 'partition.log_retention'],
	'the settings that govern the trail are marked superuser_only');

CREATE SCHEMA duty AUTHORIZATION duty_owner;
SET ROLE duty_owner;
CREATE TABLE duty.events (at timestamptz NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE duty.events_default PARTITION OF duty.events DEFAULT;
INSERT INTO duty.events VALUES ('2001-01-01'), ('2001-01-02');
RESET ROLE;
SELECT throws_ok($$SELECT opsdata.manage_partitions('duty.events', 'at', '1 day', retention => '178000000 years')$$,
	'22023', 'retention must be at most 1000 years', 'a set''s retention beyond 1000 years is refused');
SELECT lives_ok($$SELECT opsdata.manage_partitions('duty.events', 'at', '1 day', retention => '1000 years')$$,
	'a set''s retention of 1000 years is accepted');

-- Health: the set of another owner is counted, not shown, and the rows of
-- its default partition are not counted for a role that cannot read them.
SET ROLE duty_reader;
SELECT is_empty($$SELECT FROM opsdata.health() WHERE component = 'partition duty.events'$$,
	'a reader does not see the partition set of a table it cannot read');
SELECT is((SELECT detail ~ '1 of them is a table this role may not read' FROM opsdata.health()
			WHERE component = 'partition maintenance'), true,
	'the summary counts the sets a reader may not see without naming them');
SELECT is_empty($$SELECT FROM opsdata.health() WHERE detail ~ 'duty'$$,
	'no health row names the table of another owner');
RESET ROLE;
GRANT opsdata_reader TO duty_owner;
SET ROLE duty_owner;
SELECT is((SELECT detail FROM opsdata.health() WHERE component = 'partition duty.events'),
	'The default partition duty.events_default holds 2 rows. The first maintenance run moves them into partitions.',
	'the owner sees its set and the rows of its default partition');
RESET ROLE;
SELECT isnt_empty($$SELECT FROM opsdata.health() WHERE component = 'partition duty.events'$$,
	'a superuser sees every set');
GRANT SELECT ON duty.events TO duty_reader;
SET ROLE duty_reader;
SELECT isnt_empty($$SELECT FROM opsdata.health() WHERE component = 'partition duty.events'$$,
	'a reader granted SELECT on the table sees its set');
RESET ROLE;
REVOKE SELECT ON duty.events FROM duty_reader;
INSERT INTO audit.entries (ts, database, username, current_user_name, backend_pid, class, command, outcome)
	 VALUES ('1990-01-01', current_database(), 'u', 'u', 1, 'misc', 'TEST', 'ok');
SELECT matches((SELECT detail FROM opsdata.health() WHERE component = 'partition audit.entries'),
	'The default partition audit.entries_default holds',
	'a superuser sees the rows of the default partition of audit entries');
SET ROLE duty_reader;
SELECT is_empty($$SELECT FROM opsdata.health() WHERE detail ~ 'audit.entries_default'$$,
	'a reader does not learn how many rows the default partition of audit entries holds');
RESET ROLE;

SELECT * FROM finish();
ROLLBACK;
