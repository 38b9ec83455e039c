-- Partition maintenance: an application table put under management, rows
-- that arrived before its partitions existed, and what a maintenance pass
-- did with them.
\echo '-- a table of page views, partitioned by day, with a default partition and two weeks of rows in it'
CREATE TABLE public.page_views (
	viewed_at	timestamptz NOT NULL,
	path		text NOT NULL,
	user_id		bigint
) PARTITION BY RANGE (viewed_at);
CREATE INDEX ON public.page_views (path, viewed_at);
CREATE TABLE public.page_views_default PARTITION OF public.page_views DEFAULT;
INSERT INTO public.page_views
	 SELECT now() - (i % 14) * interval '1 day' - (i % 1440) * interval '1 minute', '/p/' || i % 50, i % 1000
	   FROM generate_series(1, 20000) i;
SELECT count(*) AS rows_in_default FROM ONLY public.page_views_default;

\echo '-- managed: daily partitions, 3 ahead, 10 days of retention; today''s rows move at once'
SELECT opsdata.manage_partitions('public.page_views', 'viewed_at', '1 day', premake => 3, retention => '10 days')
	AS partitions_made;
SELECT component, status, detail FROM opsdata.health() WHERE component = 'partition public.page_views';

\echo '-- a maintenance pass (the built-in job runs one every ten minutes)'
SELECT parent_table, status, created, moved, dropped, message
  FROM opsdata.run_maintenance('public.page_views');

\echo '-- the partitions now: bounds in UTC, nothing older than ten days, rows out of the default partition'
SELECT partition, lower_bound, upper_bound FROM opsdata.show_partitions('public.page_views');
SELECT tableoid::regclass AS partition, count(*) AS rows
  FROM public.page_views GROUP BY 1 ORDER BY 1::text;

\echo '-- what maintenance did, step by step'
SELECT action, partition, detail FROM opsdata.partition_log
 WHERE parent = 'public.page_views' AND action <> 'create' ORDER BY logged_at;

\echo '-- a second pass has nothing to do; health is clean'
SELECT status, message FROM opsdata.run_maintenance('public.page_views');
SELECT component, status, detail FROM opsdata.health() WHERE component LIKE 'partition%';
