-- A date set: monthly and weekly partitions on a date column, bounds at
-- midnight UTC of the first of the month (Mondays for weeks); premake ahead
-- of today (UTC), whatever the session's TimeZone; retention keeps the
-- month that holds the cut-off; start_from fills the months since.
--
-- Maintenance runs in a worker of its own, in transactions of its own, and
-- sees committed data only: this scenario runs in autocommit mode and
-- removes what it made at the end.
SET client_min_messages = warning;
CREATE SCHEMA t22;
CREATE TABLE t22.ledger (day date NOT NULL, amount numeric NOT NULL) PARTITION BY RANGE (day);
CREATE TABLE t22.shifts (day date NOT NULL) PARTITION BY RANGE (day);
SET TimeZone = 'Pacific/Kiritimati';

SELECT plan(12);

SELECT is((SELECT manage_partitions FROM opsdata.manage_partitions('t22.ledger', 'day', '1 month', premake => 2,
		retention => '6 months', start_from => ((now() AT TIME ZONE 'UTC')::date - 365)::text)),
	15, 'a year back from the first of its month, this month and two ahead: 15 monthly partitions');
SELECT is_empty($$SELECT 1 FROM opsdata.show_partitions('t22.ledger')
				   WHERE extract(day FROM lower_bound::date) <> 1 OR upper_bound::date <> (lower_bound::date + interval '1 month')::date$$,
	'every partition runs from the first of a month to the first of the next');
SELECT is((SELECT max(upper_bound::date) FROM opsdata.show_partitions('t22.ledger')),
	(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months')::date,
	'the last partition ends three months after the start of the current UTC month, not the local one');
SELECT is((SELECT string_agg(partition::text, ',' ORDER BY lower_bound) FROM
			(SELECT * FROM opsdata.show_partitions('t22.ledger') ORDER BY lower_bound DESC LIMIT 1) x),
	't22.ledger_p' || to_char(date_trunc('month', now() AT TIME ZONE 'UTC') + interval '2 months', 'YYYYMM'),
	'monthly partitions are named YYYYMM');

INSERT INTO t22.ledger VALUES ((now() AT TIME ZONE 'UTC')::date, 10), ((now() AT TIME ZONE 'UTC')::date - 300, 20);
CREATE TEMP TABLE run AS SELECT * FROM opsdata.run_maintenance('t22.ledger');
SELECT results_eq('SELECT status, created, dropped FROM run',
	$$VALUES ('ok', 0, 6)$$, 'maintenance drops the six months wholly older than six months');
SELECT is((SELECT min(lower_bound::date) FROM opsdata.show_partitions('t22.ledger')),
	date_trunc('month', (now() AT TIME ZONE 'UTC') - interval '6 months')::date,
	'the month holding the cut-off stays');
SELECT is((SELECT sum(amount)::int FROM t22.ledger), 10, 'the rows of the dropped months are gone, today''s stay');
SELECT results_eq($$SELECT status, message FROM opsdata.run_maintenance('t22.ledger')$$,
	$$VALUES ('ok', 'nothing to do')$$, 'a second run has nothing to do');

-- Weeks start on Monday, midnight UTC.
SELECT is((SELECT manage_partitions FROM opsdata.manage_partitions('t22.shifts', 'day', '7 days', premake => 3)),
	4, 'this week and three ahead');
SELECT is_empty($$SELECT 1 FROM opsdata.show_partitions('t22.shifts')
				   WHERE extract(isodow FROM lower_bound::date) <> 1 OR upper_bound::date - lower_bound::date <> 7$$,
	'weekly partitions run from Monday to Monday');
SELECT ok((SELECT min(lower_bound::date) FROM opsdata.show_partitions('t22.shifts')) <= (now() AT TIME ZONE 'UTC')::date
		  AND (SELECT min(upper_bound::date) FROM opsdata.show_partitions('t22.shifts')) > (now() AT TIME ZONE 'UTC')::date,
	'the first weekly partition holds today (UTC)');
SELECT is((SELECT count(*)::int FROM opsdata.show_partitions('t22.shifts') WHERE partition::text LIKE 't22.shifts_p________'),
	4, 'weekly partitions are named YYYYMMDD');

SELECT * FROM finish();

RESET TimeZone;
DROP SCHEMA t22 CASCADE;
