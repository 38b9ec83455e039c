-- Statement shapes: audit.statements holds each statement with its
-- constants replaced by placeholders, each entry keeps its constants as
-- written, and audit.trail gives every statement back byte for byte, for
-- every literal form PostgreSQL accepts and for thousands of random
-- statements; statements that differ only in their constants share one
-- shape; a cached plan keeps its constants; no secret reaches a shape or a
-- constant.
CREATE EXTENSION pg_opsdata;
SELECT count(opsdata.pause_job(job_id)) > 0 AS paused FROM opsdata.jobs WHERE builtin;
CREATE TABLE t (id int, a numeric, f float8, s text, b bit varying, x bytea, d date,
				at timestamptz, iv interval, arr int[], flag boolean, j jsonb);
CREATE TABLE u (id int PRIMARY KEY, v text);
INSERT INTO u VALUES (1, 'one');

-- What the trail holds for this session since :t0, as sent (settings
-- changes of the harness left out).
CREATE FUNCTION sent_since(t0 timestamptz)
RETURNS TABLE (statement_text text, constants text[], shape text, placeholders integer[])
LANGUAGE sql AS $$
	SELECT tr.statement_text, tr.constants, s.statement_text, s.placeholders
	  FROM audit.trail tr LEFT JOIN audit.statements s USING (statement_id)
	 WHERE tr.ts >= t0 AND tr.backend_pid = pg_backend_pid()
	   AND NOT (tr.command IN ('SET', 'RESET') AND tr.objects[1] LIKE 'pg\_opsdata.audit%')
$$;

-- The text of a statement as the trail keeps it: without the blanks around
-- it and the semicolons that end it.
CREATE FUNCTION trimmed(s text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
	SELECT regexp_replace(regexp_replace(s, '^[ \t\n\r\f]+', ''), '[ \t\n\r\f;]+$', '')
$$;

-- Each statement is sent as it is by psql (\gexec), by the simple protocol;
-- expected lists the texts the trail must hold for it (by default the
-- statement itself).
CREATE TABLE corpus (n serial, sent text NOT NULL, expected text[]);
INSERT INTO corpus (sent) VALUES
	-- integers, numerics with exponents, negative numbers
	($q$SELECT 1, 42, 00012, 2147483648, 9223372036854775808$q$),
	($q$SELECT -1, - 2, -3.5, -.5e-3, 1 - -1, 2-3$q$),
	($q$SELECT 1.5e10, 1.5E-3, .5, 5., 2e+4, 1E5, 0.0$q$),
	($q$SELECT -   4, -/* minus */5, 3-/*c*/-2$q$),
	-- '' and E'' escapes
	($q$SELECT 'plain', 'it''s', '', '''', 'two '' quotes ''!'$q$),
	($q$SELECT E'tab\there', E'quote\'s', e'back\\slash', E'\x41\101\u0041', E'it''s'$q$),
	($q$SELECT 'a\b', E'\\', 'héllo wörld'$q$),
	-- dollar quoting with and without tags
	($q$SELECT $$dollar 'quoted'$$, $tag$with $$ inside$tag$, $a$$a$, $$$$$q$),
	($r$SELECT $_$x$_$, $Q1$multi
line$Q1$$r$),
	-- U&'' strings
	($q$SELECT U&'d\0061t\+000061', U&'d!0061t' UESCAPE '!', u&'\0041'$q$),
	($q$SELECT U&'\00e9t\00e9' || 'x'$q$),
	-- B'' and X''
	($q$SELECT B'0101', b'1', X'1F', x'ab', B''$q$),
	-- typed literals
	($q$SELECT date '2020-01-02', '2020-01-02'::date, timestamptz '2020-01-02 03:04:05+00'$q$),
	($q$SELECT interval '1' day, interval '1 day 2 hours', INTERVAL '1:30' HOUR TO MINUTE$q$),
	($q$SELECT '5'::int, CAST('6' AS int), int4 '7', '1.5'::numeric(10, 2), 'x' COLLATE "C"$q$),
	-- arrays, NULL, true/false
	($q$SELECT '{1,2}'::int[], ARRAY[1, 2, 3], ARRAY['a', 'it''s', E'\n'], ARRAY[[1,2],[3,4]]$q$),
	($q$SELECT NULL, true, false, TRUE, False, NULL::int, nULL$q$),
	($q$SELECT '{"k": [1, "v"]}'::jsonb -> 'k', '{"a":1}'::json$q$),
	-- comments and odd spacing between tokens
	($q$SELECT/* c1 */1/* c2 */,	'tab'	,
	2 -- trailing comment
	, 3$q$),
	($q$select    1   ,'a'::TEXT   from   t   where   id=1$q$),
	($q$SELECT 'con'
'tinued', 'a' -- comment between
 'b'$q$),
	($q$  SELECT 'leading and trailing blanks'  ;  $q$),
	($q$/* first */ SELECT 1 /* last */$q$),
	($q$SELECT 1 -- the end$q$),
	-- writes with every type
	($q$INSERT INTO t VALUES (3, 1e-2, 2.5, 'str', B'101', '\xdeadbeef', '2021-02-03', now(), interval '2' hour, '{4,5}', false, '{"a": [1, "b"]}')$q$),
	($q$INSERT INTO t (id, s) VALUES (4, $$dollar$$), (5, E'esc\'aped'), (6, NULL)$q$),
	($q$UPDATE t SET a = a * 1.1, s = s || '!' WHERE id IN (1, 2, 3) AND d < date '2030-01-01'$q$),
	($q$UPDATE t SET flag = true, iv = iv + '1 minute' WHERE s LIKE 'st%'$q$),
	($q$DELETE FROM t WHERE id = -99 OR s = 'none'$q$),
	($q$INSERT INTO u VALUES (1, 'dup') ON CONFLICT (id) DO UPDATE SET v = 'conflict ' || excluded.v$q$),
	-- CTEs, subqueries, VALUES, LIMIT
	($q$WITH c AS (SELECT 1 AS v, 'w' AS w) SELECT v + 2, w FROM c WHERE w <> 'z'$q$),
	($q$WITH ins AS (INSERT INTO t (id, s) VALUES (7, 'cte') RETURNING id) SELECT id + 100 FROM ins$q$),
	($q$SELECT (SELECT 7), EXISTS (SELECT 1 FROM t WHERE s = 'q'), 5 IN (1, 2, 3, 4, 5)$q$),
	($q$VALUES (1, 'a'), (2, 'b')$q$),
	($q$SELECT id FROM t ORDER BY 1 LIMIT 5 OFFSET 0$q$),
	($q$SELECT id FROM t LIMIT ALL$q$),
	-- function calls
	($q$SELECT lower('ABC'), pg_catalog.substr('abcdef', 2, 3), format('%s-%s', 1, 'x')$q$),
	($q$SELECT count(*) FROM generate_series(1, 10) g WHERE g % 2 = 0$q$),
	-- statements without constants, and utility statements
	($q$SELECT id FROM t WHERE s IS NULL$q$),
	($q$COMMENT ON TABLE u IS 'a comment, stored as it is'$q$),
	($q$COPY u (id, v) TO STDOUT WITH (FORMAT csv, DELIMITER ';')$q$);
-- COPY of a query: the query's own entry has the COPY's text
INSERT INTO corpus (sent, expected) VALUES
	($q$COPY (SELECT 1, 'x', E'y\n') TO STDOUT$q$,
	 ARRAY[$q$COPY (SELECT 1, 'x', E'y\n') TO STDOUT$q$, $q$COPY (SELECT 1, 'x', E'y\n') TO STDOUT$q$]);
-- multi-statement strings
INSERT INTO corpus (sent, expected) VALUES
	($q$SELECT 1; SELECT 'two' ;  SELECT 3;$q$,
	 ARRAY['SELECT 1', $q$SELECT 'two'$q$, 'SELECT 3']),
	($q$INSERT INTO t (id) VALUES (8);/* next */ UPDATE t SET s = 'x' WHERE id = 8$q$,
	 ARRAY['INSERT INTO t (id) VALUES (8)', $q$/* next */ UPDATE t SET s = 'x' WHERE id = 8$q$]),
	($q$SELECT 1 /* ; */ ; SELECT ';'$q$,
	 ARRAY['SELECT 1 /* ; */', $q$SELECT ';'$q$]);
-- PREPARE and EXECUTE: the statement EXECUTE runs is recorded with the
-- text that prepared it.
INSERT INTO corpus (sent, expected) VALUES
	($q$PREPARE pq(int) AS SELECT $1 + 10, 'p', $1 * -2$q$, NULL),
	($q$EXECUTE pq(5)$q$, ARRAY['EXECUTE pq(5)', $q$PREPARE pq(int) AS SELECT $1 + 10, 'p', $1 * -2$q$]),
	($q$EXECUTE pq(6)$q$, ARRAY['EXECUTE pq(6)', $q$PREPARE pq(int) AS SELECT $1 + 10, 'p', $1 * -2$q$]),
	($q$DEALLOCATE pq$q$, NULL);
UPDATE corpus SET expected = ARRAY[trimmed(sent)] WHERE expected IS NULL;
-- Auditing is on from the first statement sent to the last only.
INSERT INTO corpus (n, sent, expected) VALUES
	(0, $q$SET pg_opsdata.audit = 'read, write, ddl, misc'$q$, '{}'),
	(1000000, 'RESET pg_opsdata.audit', '{}');

SELECT clock_timestamp() AS t0 \gset
\o /dev/null
\set ECHO none
SELECT sent FROM corpus ORDER BY n \gexec
\set ECHO all
\o
SELECT audit.flush() > 0 AS flushed;

-- Every statement reads back exactly as it was sent: nothing missing,
-- nothing else.
SELECT 'missing' AS problem, e FROM (
	SELECT unnest(expected) FROM corpus EXCEPT ALL SELECT statement_text FROM sent_since(:'t0')) m(e)
UNION ALL
SELECT 'not sent', e FROM (
	SELECT statement_text FROM sent_since(:'t0') EXCEPT ALL SELECT unnest(expected) FROM corpus) x(e);
SELECT count(*) AS entries, count(constants) AS with_constants FROM sent_since(:'t0');

-- The shape and the constants of each statement.
SELECT DISTINCT c.n, s.shape, s.constants
  FROM corpus c, unnest(c.expected) e, sent_since(:'t0') s
 WHERE s.statement_text = e
 ORDER BY c.n, s.shape;

-- Thousands of random statements, with every literal form, random
-- blanks and comments between tokens, random case, some of them in
-- multi-statement strings: each reads back as it was sent.
CREATE FUNCTION pick(a text[]) RETURNS text LANGUAGE sql AS $fn$
	SELECT a[1 + floor(random() * array_length(a, 1))::int]
$fn$;
CREATE FUNCTION digits(lo int, hi int) RETURNS text LANGUAGE sql AS $fn$
	SELECT string_agg((floor(random() * 10))::int::text, '')
	  FROM generate_series(1, lo + floor(random() * (hi - lo + 1))::int)
$fn$;
CREATE FUNCTION chars(alphabet text, lo int, hi int) RETURNS text LANGUAGE sql AS $fn$
	SELECT coalesce(string_agg(substr(alphabet, 1 + floor(random() * length(alphabet))::int, 1), ''), '')
	  FROM generate_series(1, lo + floor(random() * (hi - lo + 1))::int)
$fn$;
-- Blanks and comments between two tokens.
CREATE FUNCTION gap() RETURNS text LANGUAGE sql AS $fn$
	SELECT pick(ARRAY[' ', ' ', ' ', '  ', E'\t', E'\n', ' /* c */ ', E' -- note\n', E'\n\t  ', '/**/',
					  E' /* multi\nline */ ', E'\r\n'])
$fn$;
CREATE FUNCTION kw(word text) RETURNS text LANGUAGE sql AS $fn$
	SELECT pick(ARRAY[upper(word), lower(word), initcap(word)])
$fn$;
-- A string literal in one of its forms (its value is text).
CREATE FUNCTION str_lit() RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
	k int := floor(random() * 7);
BEGIN
	CASE k
	WHEN 0 THEN RETURN '''' || chars('abc xyz,;.-*/()$\é0', 0, 12) || '''';
	WHEN 1 THEN RETURN '''' || chars('ab', 0, 3) || '''''' || chars('cd ;', 0, 4) || '''';
	WHEN 2 THEN RETURN pick(ARRAY['E', 'e']) || '''' || chars('ab', 0, 2)
					   || pick(ARRAY['\n', '\t', '\\', '\''', '''''', '\x41', '\101', '\u00e9', '\b'])
					   || chars('cd', 0, 3) || '''';
	WHEN 3 THEN RETURN '$$' || chars('ab ''";,-*/', 0, 10) || '$$';
	WHEN 4 THEN RETURN '$tg1$' || chars('ab ''";,$-*/', 0, 10) || '$tg1$';
	WHEN 5 THEN RETURN pick(ARRAY['U&', 'u&']) || '''' || chars('ab', 0, 2)
					   || pick(ARRAY['\0041', '\00e9', '\+000062']) || chars('cd', 0, 2) || '''';
	ELSE RETURN 'U&''' || chars('ab', 0, 2) || '!0063' || ''' UESCAPE ''!''';
	END CASE;
END
$fn$;
CREATE FUNCTION num_lit() RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
	k int := floor(random() * 6);
BEGIN
	CASE k
	WHEN 0 THEN RETURN digits(1, 6);
	WHEN 1 THEN RETURN '-' || pick(ARRAY['', '', ' ', '/**/', E' -- m\n']) || digits(1, 4);
	WHEN 2 THEN RETURN digits(1, 3) || '.' || digits(1, 3);
	WHEN 3 THEN RETURN pick(ARRAY['.', '0.']) || digits(1, 3) || pick(ARRAY['e', 'E'])
					   || pick(ARRAY['', '+', '-']) || digits(1, 2);
	WHEN 4 THEN RETURN digits(1, 2) || '.';
	ELSE RETURN digits(15, 25);
	END CASE;
END
$fn$;
-- A value of any kind, for a SELECT list.
CREATE FUNCTION any_lit() RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
	k int := floor(random() * 14);
BEGIN
	CASE k
	WHEN 0 THEN RETURN num_lit();
	WHEN 1 THEN RETURN str_lit();
	WHEN 2 THEN RETURN pick(ARRAY['B', 'b']) || '''' || chars('01', 0, 8) || '''';
	WHEN 3 THEN RETURN pick(ARRAY['X', 'x']) || '''' || chars('0123456789abcdefABCDEF', 0, 6) || '''';
	WHEN 4 THEN RETURN kw('date') || gap() || '''20' || digits(2, 2) || '-0'
					   || (1 + floor(random() * 9))::int || '-1' || floor(random() * 9)::int || '''';
	WHEN 5 THEN RETURN kw('interval') || gap() || '''' || digits(1, 2) || '''' || gap()
					   || kw(pick(ARRAY['day', 'hour', 'minute']));
	WHEN 6 THEN RETURN str_lit() || gap() || '::' || gap() || kw(pick(ARRAY['text', 'varchar', 'name']));
	WHEN 7 THEN RETURN kw('cast') || gap() || '(' || gap() || digits(1, 4) || gap() || kw('as') || gap()
					   || kw('int8') || gap() || ')';
	WHEN 8 THEN RETURN kw('array') || '[' || gap() || num_lit() || gap() || ',' || gap() || num_lit()
					   || gap() || ']';
	WHEN 9 THEN RETURN '''{' || digits(1, 2) || ',' || digits(1, 2) || '}''::int[]';
	WHEN 10 THEN RETURN kw(pick(ARRAY['null', 'true', 'false']));
	WHEN 11 THEN RETURN kw('lower') || gap() || '(' || gap() || str_lit() || gap() || ')';
	WHEN 12 THEN RETURN '(' || gap() || num_lit() || gap() || '+' || gap() || num_lit() || gap() || ')';
	ELSE RETURN kw('timestamptz') || gap() || '''2024-0' || (1 + floor(random() * 9))::int || '-11 1'
				|| floor(random() * 9)::int || ':30:00+00''';
	END CASE;
END
$fn$;
-- One statement, reading or writing.
CREATE FUNCTION random_statement() RETURNS text LANGUAGE plpgsql AS $fn$
DECLARE
	k int := floor(random() * 7);
	s text;
BEGIN
	CASE k
	WHEN 0, 1, 2 THEN
		s := kw('select') || gap() || any_lit();
		FOR i IN 1 .. floor(random() * 4) LOOP
			s := s || gap() || ',' || gap() || any_lit();
		END LOOP;
		IF random() < 0.3 THEN
			s := s || gap() || kw('from') || gap() || 't' || gap() || kw('where') || gap() || 'id'
				 || gap() || '=' || gap() || digits(1, 3);
		END IF;
	WHEN 3 THEN
		s := kw('insert') || gap() || kw('into') || gap() || 't' || gap() || '(id, a, s)' || gap()
			 || kw('values') || gap() || '(' || gap() || digits(1, 3) || gap() || ',' || gap() || num_lit()
			 || gap() || ',' || gap() || str_lit() || gap() || ')';
	WHEN 4 THEN
		s := kw('update') || gap() || 't' || gap() || kw('set') || gap() || 's' || gap() || '=' || gap()
			 || str_lit() || gap() || ',' || gap() || 'a' || gap() || '=' || gap() || 'a' || gap() || '+'
			 || gap() || num_lit() || gap() || kw('where') || gap() || 'id' || gap() || '=' || gap()
			 || digits(1, 3);
	WHEN 5 THEN
		s := kw('delete') || gap() || kw('from') || gap() || 't' || gap() || kw('where') || gap() || 'id'
			 || gap() || '=' || gap() || digits(4, 6) || gap() || kw('and') || gap() || 's' || gap() || '<>'
			 || gap() || str_lit();
	ELSE
		s := kw('with') || gap() || 'w' || gap() || kw('as') || gap() || '(' || gap() || kw('select') || gap()
			 || any_lit() || gap() || kw('as') || gap() || 'c' || gap() || ')' || gap() || kw('select')
			 || gap() || 'c' || gap() || kw('from') || gap() || 'w';
	END CASE;
	RETURN s;
END
$fn$;

CREATE TABLE random_corpus (n int, sent text, expected text[]);
SELECT setseed(0.16);
DO $$
DECLARE
	parts text[];
	sent text;
	expected text[];
BEGIN
	FOR n IN 1 .. 3000 LOOP
		IF random() < 0.15 THEN
			-- Two or three statements in one string; each statement's text
			-- starts right after the semicolon before it.
			parts := ARRAY[random_statement(), gap() || random_statement()];
			IF random() < 0.5 THEN
				parts := parts || (gap() || random_statement());
			END IF;
			sent := array_to_string(parts, ';') || pick(ARRAY['', ';', ' ;  ']);
			SELECT array_agg(trimmed(p)) INTO expected FROM unnest(parts) p;
		ELSE
			sent := random_statement() || pick(ARRAY['', '', ';', E' ;\n']);
			expected := ARRAY[trimmed(sent)];
		END IF;
		INSERT INTO random_corpus VALUES (n, sent, expected);
	END LOOP;
END
$$;
INSERT INTO random_corpus VALUES
	(0, $q$SET pg_opsdata.audit = 'read, write'$q$, '{}'),
	(1000000, 'RESET pg_opsdata.audit', '{}');

SELECT clock_timestamp() AS t4 \gset
\o /dev/null
\set ECHO none
SELECT sent FROM random_corpus ORDER BY n \gexec
\set ECHO all
\o
SELECT audit.flush() > 0 AS flushed;
SELECT 'missing' AS problem, e FROM (
	SELECT unnest(expected) FROM random_corpus EXCEPT ALL SELECT statement_text FROM sent_since(:'t4')) m(e)
UNION ALL
SELECT 'not sent', e FROM (
	SELECT statement_text FROM sent_since(:'t4') EXCEPT ALL SELECT unnest(expected) FROM random_corpus) x(e);
SELECT count(*) >= 3000 AS thousands, count(constants) > 0.9 * count(*) AS nearly_all_with_constants,
	   count(DISTINCT shape) < count(DISTINCT statement_text) AS shapes_shared
  FROM sent_since(:'t4');

-- Two statements that differ only in their constants share one shape row;
-- a different spacing is a different shape.
SELECT clock_timestamp() AS t1 \gset
SET pg_opsdata.audit = 'write';
UPDATE t SET a = a + 1 WHERE id = 2;
UPDATE t SET a = a + 250 WHERE id = -7;
UPDATE t SET a = a + 'NaN' WHERE id = 0;
UPDATE t  SET a = a + 1 WHERE id = 2;
RESET pg_opsdata.audit;
SELECT shape, count(*) AS entries, array_agg(statement_text ORDER BY statement_text) AS texts
  FROM sent_since(:'t1') GROUP BY shape ORDER BY shape;
SELECT count(*) AS shape_rows FROM audit.statements
 WHERE statement_text = 'UPDATE t SET a = a + $1 WHERE id = $2';

-- A cached plan (PL/pgSQL) keeps the constants of its statement at every
-- run, parsed once.
CREATE FUNCTION bump() RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	UPDATE t SET a = a + 3 WHERE id = 5 AND s <> 'never';
END
$$;
SELECT clock_timestamp() AS t2 \gset
SET pg_opsdata.audit = 'write';
SELECT bump();
SELECT bump();
SELECT bump();
RESET pg_opsdata.audit;
SELECT shape, constants, count(*) AS runs FROM sent_since(:'t2') GROUP BY 1, 2;

-- Secrets: a password is redacted, and no shape or constant holds it.
SELECT clock_timestamp() AS t3 \gset
SET pg_opsdata.audit = 'role, write';
CREATE ROLE shape_role PASSWORD 'hunter2-secret';
ALTER ROLE shape_role PASSWORD E'hunter3\'s-secret';
RESET pg_opsdata.audit;
SELECT statement_text, constants, shape, placeholders FROM sent_since(:'t3') ORDER BY 1;
SELECT count(*) AS secrets FROM audit.statements WHERE statement_text LIKE '%hunter%'
UNION ALL
SELECT count(*) FROM audit.entries WHERE constants::text LIKE '%hunter%';
DROP ROLE shape_role;

-- audit.rebuild_statement() checks what it is given.
SELECT audit.rebuild_statement('SELECT $1, $2', '{7,11}', '{1,''x''}') AS rebuilt,
	   audit.rebuild_statement('SELECT 1', NULL, NULL) AS as_is;
SELECT audit.rebuild_statement('SELECT $1', '{7}', '{1,2}');
SELECT audit.rebuild_statement('SELECT $1', '{3}', '{1}');

-- audit.shapes(): which shapes touched a table in a time range, run by
-- whom, how often, and with what outcomes.
CREATE ROLE shape_clerk;
GRANT SELECT, INSERT, UPDATE ON u TO shape_clerk;
INSERT INTO u VALUES (2, 'two'), (3, 'three');
SELECT clock_timestamp() AS t5 \gset
SET pg_opsdata.audit = 'read, write';
UPDATE u SET v = 'a' WHERE id = 1;
UPDATE u SET v = 'b' WHERE id = 2;
SET SESSION AUTHORIZATION shape_clerk;
UPDATE u SET v = 'c' WHERE id = 1;
INSERT INTO u VALUES (1, 'dup');
DELETE FROM u WHERE id = 3;
BEGIN;
UPDATE u SET v = 'd' WHERE id = 3;
ROLLBACK;
RESET SESSION AUTHORIZATION;
SELECT v FROM u WHERE id = 1;
RESET pg_opsdata.audit;
SELECT audit.flush() > 0 AS flushed;
SELECT shape, command, username = current_user AS by_me, executions, ok, errors, denied, rolled_back, rows
  FROM audit.shapes(:'t5', clock_timestamp(), 'public.u')
 ORDER BY shape, by_me;
-- Without an object: every shape of the range.
SELECT count(*) AS shapes, sum(executions) AS executions
  FROM audit.shapes(:'t5', clock_timestamp());
-- A range that holds nothing.
SELECT count(*) AS shapes FROM audit.shapes(:'t5', :'t5');

SELECT audit.flush() >= 0 AS flushed;
DROP TABLE t, u, corpus, random_corpus;
DROP ROLE shape_clerk;
DROP FUNCTION sent_since(timestamptz), trimmed(text), pick(text[]), digits(int, int),
	chars(text, int, int), gap(), kw(text), str_lit(), num_lit(), any_lit(), random_statement(), bump();
DROP EXTENSION pg_opsdata;
