# Trust: no role below superuser can make pg_opsdata run its SQL under a
# search_path of its choosing, and jobs run as their role, audited.
#
# A search_path trap: a schema, put first in search_path, that overloads
# the common operators and functions for the types pg_opsdata uses.  Each
# overload records (a sequence only superusers may use, and a WARNING in
# the server log) when it is called with superuser rights.  Every function
# an opsdata role may call, and every built-in job, then runs under that
# search_path: set by an opsdata_admin in its session, and by a database
# owner (not a superuser) with ALTER DATABASE ... SET search_path, which
# reaches every new session and every background worker of the database.
# Nothing fires.  A control shows that the trap fires when a superuser does
# use it.
#
# Then: run_job of a superuser's job by an opsdata_admin is refused; a
# job's statements are audited with the job's role and application, both
# when the scheduler runs it (its worker connects as the job's role) and
# through run_job; a setting a job changes is recorded as changed by the
# job's role; a job whose role may not log in fails with a clear error.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use OpsdataTest;

my $node = opsdata_node('trust', conf => "pg_opsdata.audit = 'all'\n");
$node->start;

# The extension belongs to a superuser of its own, so that built-in jobs
# connect as a role that the test's own sessions are not.
$node->safe_psql('postgres', q{
	CREATE ROLE extowner LOGIN SUPERUSER;
	CREATE ROLE dbo LOGIN;
	CREATE DATABASE app OWNER dbo;
});
$node->safe_psql('app', q{SET ROLE extowner; CREATE EXTENSION pg_opsdata});
$node->safe_psql('app', q{
	CREATE ROLE adm LOGIN IN ROLE opsdata_admin, opsdata_writer, opsdata_reader, opsdata_auditor;
	CREATE ROLE jobber LOGIN IN ROLE opsdata_admin;
	CREATE ROLE nologin_role NOLOGIN;
	GRANT jobber, nologin_role TO adm;
	CREATE SCHEMA app AUTHORIZATION adm;
	CREATE TABLE app.log (who text, application text, search_path text, at timestamptz DEFAULT clock_timestamp());
	ALTER TABLE app.log OWNER TO adm;
	GRANT USAGE ON SCHEMA app TO jobber;
	GRANT INSERT, SELECT ON app.log TO jobber;
	CREATE TABLE app.events (id bigint, ts timestamptz NOT NULL) PARTITION BY RANGE (ts);
	CREATE TABLE app.events_default PARTITION OF app.events DEFAULT;
	ALTER TABLE app.events OWNER TO adm;
	ALTER TABLE app.events_default OWNER TO adm;
	INSERT INTO app.events VALUES (1, now());
	-- What the trap records: only a superuser may advance this sequence.
	CREATE SCHEMA trapmark;
	CREATE SEQUENCE trapmark.fired;
	-- A superuser's job, which an opsdata_admin must not run.
	SELECT opsdata.add_job('superuser job', 'SELECT 1', '1 hour', paused => true);
});

# The test's own sessions never use the trap.
my $safe = "SET search_path = pg_catalog, public;\n";
sub sql { return $node->safe_psql('app', $safe . $_[0]); }
sub poll
{
	my ($query) = @_;
	for (1 .. 1800)
	{
		return 1 if sql($query) eq 't';
		select(undef, undef, undef, 0.1);
	}
	return 0;
}

# As another role: (exit code, stdout, stderr).
sub as
{
	my ($role, $query) = @_;
	my ($rc, $out, $err) = $node->psql('app', $query,
		connstr => $node->connstr('app') . " user=$role",
		on_error_stop => 1);
	return ($rc, $out, $err);
}

# The trap, made by the database owner in its own schema.
my ($rc, $out, $err) = as('dbo', <<'EOSQL');
CREATE SCHEMA trap;
GRANT USAGE ON SCHEMA trap TO PUBLIC;
CREATE FUNCTION trap.fire(what text) RETURNS void LANGUAGE plpgsql
SET search_path = pg_catalog AS $$
BEGIN
	IF EXISTS (SELECT FROM pg_catalog.pg_roles r
				WHERE r.rolname OPERATOR(pg_catalog.=) CURRENT_USER AND r.rolsuper) THEN
		PERFORM pg_catalog.nextval('trapmark.fired');
		RAISE WARNING 'search_path trap fired: % as %', what, CURRENT_USER;
	END IF;
END
$$;

-- Every operator of these names between these types, and the comparison
-- operators of the reg* types (which pg_catalog only has for oid: an exact
-- match would win).
DO $gen$
DECLARE
	types regtype[] := ARRAY['smallint', 'integer', 'bigint', 'numeric', 'real', 'double precision',
		'text', 'name', 'character varying', 'boolean', 'timestamp with time zone', 'timestamp without time zone',
		'date', 'interval', 'oid', 'jsonb', 'json', 'bytea', 'inet', 'xid8', 'tid',
		'text[]', 'bigint[]', 'integer[]', 'name[]', 'oid[]', 'jsonb[]', 'double precision[]',
		'anyarray', 'anyelement', 'anynonarray', 'anycompatible', 'anycompatiblearray',
		'anycompatiblenonarray', 'anyrange', 'anymultirange']::regtype[];
	o record;
	n integer := 0;
BEGIN
	FOR o IN
		SELECT op.oprname AS name, op.oprleft::regtype AS l, op.oprright::regtype AS r,
			   op.oprresult::regtype AS res
		  FROM pg_catalog.pg_operator op
		 WHERE op.oprnamespace OPERATOR(pg_catalog.=) 'pg_catalog'::regnamespace
		   AND op.oprkind OPERATOR(pg_catalog.=) 'b'
		   AND op.oprname OPERATOR(pg_catalog.=) ANY (ARRAY['=', '<>', '<', '<=', '>', '>=', '+', '-', '*', '/', '%',
				'||', '~~', '!~~', '~~*', '~', '@>', '<@', '&&', '->', '->>', '#>', '#>>', '?'])
		   AND op.oprleft OPERATOR(pg_catalog.=) ANY (types) AND op.oprright OPERATOR(pg_catalog.=) ANY (types)
		UNION ALL
		SELECT c.name, t.t, t.t, 'boolean'::regtype
		  FROM unnest(ARRAY['=', '<>', '<', '<=', '>', '>=']) c(name),
			   unnest(ARRAY['regclass', 'regtype', 'regproc', 'regprocedure', 'regrole', 'regnamespace']::regtype[]) t(t)
	LOOP
		n := n OPERATOR(pg_catalog.+) 1;
		EXECUTE pg_catalog.format($f$
			CREATE FUNCTION trap.op_%s(a %s, b %s) RETURNS %s LANGUAGE plpgsql
			SET search_path = pg_catalog AS $b$
			BEGIN
				PERFORM trap.fire(%L);
				RETURN %s;
			END $b$$f$, n, o.l, o.r, o.res, pg_catalog.format('operator %s(%s, %s)', o.name, o.l, o.r),
			CASE WHEN o.l::text OPERATOR(pg_catalog.~~) 'reg%'
				 THEN pg_catalog.format('a::oid OPERATOR(pg_catalog.%s) b::oid', o.name)
				 ELSE pg_catalog.format('a OPERATOR(pg_catalog.%s) b', o.name) END);
		EXECUTE pg_catalog.format('CREATE OPERATOR trap.%s (LEFTARG = %s, RIGHTARG = %s, FUNCTION = trap.op_%s)',
			o.name, o.l, o.r, n);
	END LOOP;
END
$gen$;

-- Every function of these names whose arguments a PL/pgSQL function can
-- take, returning what the built-in one returns.
DO $gen$
DECLARE
	f record;
	n integer := 0;
	args text;
BEGIN
	FOR f IN
		SELECT p.oid, p.proname, p.proretset, p.pronargs, p.provariadic,
			   pg_catalog.pg_get_function_arguments(p.oid) AS decl,
			   pg_catalog.pg_get_function_result(p.oid) AS result
		  FROM pg_catalog.pg_proc p
		 WHERE p.pronamespace OPERATOR(pg_catalog.=) 'pg_catalog'::regnamespace
		   AND p.prokind OPERATOR(pg_catalog.=) 'f'
		   AND p.proallargtypes IS NULL
		   AND p.proname OPERATOR(pg_catalog.=) ANY (ARRAY[
				'now', 'clock_timestamp', 'statement_timestamp', 'transaction_timestamp', 'timeofday',
				'format', 'left', 'right', 'lower', 'upper', 'btrim', 'ltrim', 'rtrim', 'length', 'char_length',
				'substr', 'substring', 'replace', 'split_part', 'concat', 'concat_ws', 'md5', 'sha256', 'encode',
				'decode', 'quote_ident', 'quote_literal', 'quote_nullable', 'to_char', 'to_timestamp', 'to_date',
				'to_number', 'date_trunc', 'date_part', 'date_bin', 'age', 'make_interval', 'justify_interval',
				'isfinite', 'random', 'floor', 'ceil', 'ceiling', 'round', 'trunc', 'abs', 'power', 'sqrt',
				'ln', 'exp', 'mod', 'div', 'log', 'width_bucket', 'unnest', 'array_length', 'array_position',
				'array_positions', 'array_append', 'array_prepend', 'array_cat', 'array_remove', 'array_to_string',
				'string_to_array', 'cardinality', 'array_lower', 'array_upper', 'generate_series',
				'regexp_replace', 'regexp_match', 'regexp_matches', 'regexp_split_to_array', 'starts_with',
				'strpos', 'position', 'lpad', 'rpad', 'repeat', 'reverse', 'translate', 'initcap', 'octet_length',
				'jsonb_typeof', 'jsonb_array_length', 'jsonb_each_text', 'jsonb_object_keys', 'jsonb_extract_path',
				'jsonb_extract_path_text', 'jsonb_array_elements', 'jsonb_array_elements_text', 'jsonb_strip_nulls',
				'jsonb_set', 'jsonb_insert', 'jsonb_pretty', 'to_jsonb', 'to_json', 'jsonb_build_array', 'row_to_json',
				'nextval', 'setval', 'currval', 'lastval', 'current_setting', 'set_config',
				'pg_advisory_lock', 'pg_try_advisory_lock', 'pg_advisory_unlock', 'pg_advisory_xact_lock',
				'pg_try_advisory_xact_lock', 'to_regclass', 'to_regrole', 'to_regnamespace', 'to_regtype',
				'to_regproc', 'to_regprocedure', 'pg_has_role', 'has_table_privilege', 'has_schema_privilege',
				'has_function_privilege', 'has_database_privilege', 'pg_get_userbyid', 'pg_table_is_visible',
				'obj_description', 'col_description', 'format_type', 'pg_get_expr', 'pg_relation_size',
				'pg_total_relation_size', 'pg_partition_root', 'pg_partition_ancestors', 'pg_is_in_recovery',
				'current_database', 'pg_backend_pid', 'txid_current', 'pg_current_xact_id', 'hashtext',
				'gen_random_uuid', 'pg_notify', 'pg_sleep', 'pg_postmaster_start_time', 'inet_client_addr',
				'pg_get_indexdef', 'pg_get_constraintdef', 'pg_get_partkeydef', 'pg_get_function_identity_arguments',
				'pg_describe_object', 'pg_identify_object', 'pg_size_pretty', 'num_nulls', 'num_nonnulls',
				'make_timestamptz', 'extract', 'timezone', 'pg_column_size', 'bit_length', 'chr', 'ascii'])
	LOOP
		-- Only arguments a PL/pgSQL function can declare.
		CONTINUE WHEN EXISTS (
			SELECT FROM pg_catalog.pg_proc q, pg_catalog.unnest(q.proargtypes::oid[]) a(t)
			 WHERE q.oid OPERATOR(pg_catalog.=) f.oid
			   AND a.t::regtype OPERATOR(pg_catalog.=) ANY (ARRAY['"any"', 'internal', 'cstring', '"char"', 'anyenum',
					'record', 'trigger', 'event_trigger', 'language_handler', 'fdw_handler']::regtype[]));
		CONTINUE WHEN f.result OPERATOR(pg_catalog.~~) '%record%' OR f.result OPERATOR(pg_catalog.~~) 'TABLE(%';
		CONTINUE WHEN f.provariadic OPERATOR(pg_catalog.<>) 0
			AND f.provariadic::regtype OPERATOR(pg_catalog.=) '"any"'::regtype;
		n := n OPERATOR(pg_catalog.+) 1;
		SELECT pg_catalog.string_agg(
				CASE WHEN f.provariadic OPERATOR(pg_catalog.<>) 0 AND i OPERATOR(pg_catalog.=) f.pronargs
					 THEN 'VARIADIC $' ELSE '$' END OPERATOR(pg_catalog.||) i, ', ' ORDER BY i)
		  INTO args FROM pg_catalog.generate_series(1, f.pronargs) i;
		EXECUTE pg_catalog.format($f$
			CREATE FUNCTION trap.%I(%s) RETURNS %s LANGUAGE plpgsql
			SET search_path = pg_catalog AS $b$
			BEGIN
				PERFORM trap.fire(%L);
				%s
			END $b$$f$, f.proname, f.decl, f.result, f.oid::regprocedure::text,
			CASE WHEN f.proretset
				 THEN pg_catalog.format('RETURN QUERY SELECT * FROM pg_catalog.%I(%s);', f.proname, coalesce(args, ''))
				 WHEN f.result OPERATOR(pg_catalog.=) 'void'
				 THEN pg_catalog.format('PERFORM pg_catalog.%I(%s);', f.proname, coalesce(args, ''))
				 ELSE pg_catalog.format('RETURN pg_catalog.%I(%s);', f.proname, coalesce(args, '')) END);
	END LOOP;
END
$gen$;

-- Aggregates: count, sum, min, max, bool_and, bool_or, string_agg and
-- array_agg for the usual types.
CREATE FUNCTION trap.count_star(s bigint) RETURNS bigint LANGUAGE plpgsql
SET search_path = pg_catalog AS $$ BEGIN PERFORM trap.fire('count(*)'); RETURN s OPERATOR(pg_catalog.+) 1; END $$;
CREATE AGGREGATE trap.count(*) (SFUNC = trap.count_star, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION trap.bool_and_s(s boolean, v boolean) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog AS $$ BEGIN PERFORM trap.fire('bool_and(boolean)'); RETURN CASE WHEN v IS NULL THEN s WHEN s IS NULL THEN v ELSE s AND v END; END $$;
CREATE AGGREGATE trap.bool_and(boolean) (SFUNC = trap.bool_and_s, STYPE = boolean);
CREATE FUNCTION trap.bool_or_s(s boolean, v boolean) RETURNS boolean LANGUAGE plpgsql
SET search_path = pg_catalog AS $$ BEGIN PERFORM trap.fire('bool_or(boolean)'); RETURN CASE WHEN v IS NULL THEN s WHEN s IS NULL THEN v ELSE s OR v END; END $$;
CREATE AGGREGATE trap.bool_or(boolean) (SFUNC = trap.bool_or_s, STYPE = boolean);
CREATE FUNCTION trap.string_agg_s(s text, v text, d text) RETURNS text LANGUAGE plpgsql
SET search_path = pg_catalog AS $$ BEGIN PERFORM trap.fire('string_agg(text, text)');
	RETURN CASE WHEN v IS NULL THEN s WHEN s IS NULL THEN v ELSE s OPERATOR(pg_catalog.||) d OPERATOR(pg_catalog.||) v END; END $$;
CREATE AGGREGATE trap.string_agg(text, text) (SFUNC = trap.string_agg_s, STYPE = text);
DO $gen$
DECLARE
	t regtype;
BEGIN
	FOREACH t IN ARRAY ARRAY['smallint', 'integer', 'bigint', 'numeric', 'double precision', 'real', 'text', 'name',
		'boolean', 'timestamp with time zone', 'date', 'interval', 'oid', 'jsonb', 'inet']::regtype[] LOOP
		EXECUTE pg_catalog.format($f$
			CREATE FUNCTION trap.count_s(s bigint, v %1$s) RETURNS bigint LANGUAGE plpgsql
			SET search_path = pg_catalog AS $b$ BEGIN PERFORM trap.fire('count(%1$s)');
				RETURN CASE WHEN v IS NULL THEN s ELSE s OPERATOR(pg_catalog.+) 1 END; END $b$;
			CREATE AGGREGATE trap.count(%1$s) (SFUNC = trap.count_s, STYPE = bigint, INITCOND = '0');
			CREATE FUNCTION trap.array_agg_s(s %1$s[], v %1$s) RETURNS %1$s[] LANGUAGE plpgsql
			SET search_path = pg_catalog AS $b$ BEGIN PERFORM trap.fire('array_agg(%1$s)');
				RETURN pg_catalog.array_append(s, v); END $b$;
			CREATE AGGREGATE trap.array_agg(%1$s) (SFUNC = trap.array_agg_s, STYPE = %1$s[]);$f$, t);
		IF t OPERATOR(pg_catalog.<>) ALL (ARRAY['boolean', 'jsonb']::regtype[]) THEN
			EXECUTE pg_catalog.format($f$
				CREATE FUNCTION trap.max_s(s %1$s, v %1$s) RETURNS %1$s LANGUAGE plpgsql
				SET search_path = pg_catalog AS $b$ BEGIN PERFORM trap.fire('max(%1$s)');
					RETURN CASE WHEN s IS NULL OR v OPERATOR(pg_catalog.>) s THEN v ELSE s END; END $b$;
				CREATE AGGREGATE trap.max(%1$s) (SFUNC = trap.max_s, STYPE = %1$s);
				CREATE FUNCTION trap.min_s(s %1$s, v %1$s) RETURNS %1$s LANGUAGE plpgsql
				SET search_path = pg_catalog AS $b$ BEGIN PERFORM trap.fire('min(%1$s)');
					RETURN CASE WHEN s IS NULL OR v OPERATOR(pg_catalog.<) s THEN v ELSE s END; END $b$;
				CREATE AGGREGATE trap.min(%1$s) (SFUNC = trap.min_s, STYPE = %1$s);$f$, t);
		END IF;
		IF t OPERATOR(pg_catalog.=) ANY (ARRAY['smallint', 'integer', 'bigint', 'numeric', 'double precision', 'real', 'interval']::regtype[]) THEN
			EXECUTE pg_catalog.format($f$
				CREATE FUNCTION trap.sum_s(s %1$s, v %1$s) RETURNS %1$s LANGUAGE plpgsql
				SET search_path = pg_catalog AS $b$ BEGIN PERFORM trap.fire('sum(%1$s)');
					RETURN CASE WHEN v IS NULL THEN s WHEN s IS NULL THEN v ELSE s OPERATOR(pg_catalog.+) v END; END $b$;
				CREATE AGGREGATE trap.sum(%1$s) (SFUNC = trap.sum_s, STYPE = %1$s);$f$, t);
		END IF;
	END LOOP;
END
$gen$;
EOSQL
is($rc, 0, 'the database owner sets up a search_path trap in its own schema') or diag($err);
my $traps = sql(q{
	SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = 'trap'});
cmp_ok($traps, '>', 400, "the trap overloads many operators, functions and aggregates ($traps routines)");

sub fired { return sql(q{SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM trapmark.fired}); }
my $trap_path = 'SET search_path = trap, pg_catalog, public;';

# Control: the trap does fire when a superuser uses it.
$node->safe_psql('app', qq{$trap_path
	SELECT 1::bigint = 1::bigint, now() > '2000-01-01', count(*) FROM (VALUES (1)) v(x);
	SELECT format('%s', 'x'), left('abc', 1);});
cmp_ok(fired(), '>=', 4, 'control: a superuser calling the overloads under that search_path is caught');
my $baseline = fired();
my $log_offset = -s $node->logfile;

# Everything an opsdata role may call, with arguments that work.  Each
# entry: the function (as regprocedure, without argument names), and SQL
# calling it.
my @calls = (
	['opsdata.setting(text)', q{SELECT opsdata.setting('worker.job_history_failed')}],
	['opsdata.set_setting(text,text)', q{SELECT opsdata.set_setting('worker.job_history_failed', '31 days')}],
	['opsdata.reset_setting(text)', q{SELECT opsdata.reset_setting('worker.job_history_failed')}],
	['opsdata.add_job(text,text,interval,timestamp with time zone,boolean,interval,integer,interval,name,text)',
	 q{SELECT opsdata.add_job('trap job', 'INSERT INTO app.log (who) VALUES (''trap job'')', '1 hour',
		start_at => '2100-01-01 00:00+00', paused => true)}],
	['opsdata.alter_job(bigint,text,text,interval,timestamp with time zone,boolean,interval,integer,interval,name,text)',
	 q{SELECT (opsdata.alter_job(job_id, schedule => '2 hours', max_runtime => '1 minute')).name FROM opsdata.jobs WHERE name = 'trap job'}],
	['opsdata.pause_job(bigint)', q{SELECT opsdata.pause_job(job_id) FROM opsdata.jobs WHERE name = 'trap job'}],
	['opsdata.resume_job(bigint)', q{SELECT opsdata.resume_job(job_id) FROM opsdata.jobs WHERE name = 'trap job'}],
	['opsdata.run_job(text)', q{CALL opsdata.run_job('trap job')}],
	['opsdata.run_job(bigint)', q{SELECT job_id AS id FROM opsdata.jobs WHERE name = 'trap job' \gset
		CALL opsdata.run_job(:id);
		BEGIN;
		CALL opsdata.run_job(:id);
		COMMIT;}],
	['opsdata.remove_job(bigint)', q{SELECT opsdata.remove_job(job_id) FROM opsdata.jobs WHERE name = 'trap job'}],
	['opsdata.manage_partitions(regclass,name,text,integer,text,text,name,text)',
	 q{SELECT opsdata.manage_partitions('app.events', 'ts', '1 day', 2, retention => '30 days')}],
	['opsdata.show_partitions(regclass)', q{SELECT count(*) FROM opsdata.show_partitions('app.events')}],
	['opsdata.run_maintenance(regclass)', q{SELECT status FROM opsdata.run_maintenance('app.events');
		SELECT count(*) FROM opsdata.run_maintenance()}],
	['opsdata.unmanage_partitions(regclass)', q{SELECT opsdata.unmanage_partitions('app.events')}],
	['opsdata.health()', q{SELECT count(*) FROM opsdata.health()}],
	['opsdata.check_restore()', q{SELECT count(*) FROM opsdata.check_restore()}],
	['opsdata.health_json()', q{SELECT opsdata.health_json() IS NOT NULL}],
	['metrics.collect_vitals()', q{SELECT metrics.collect_vitals()}],
	['metrics.slow_queries(timestamp with time zone,timestamp with time zone,integer)',
	 q{SELECT count(*) FROM metrics.slow_queries(now() - interval '1 hour', now(), 5)}],
	['metrics.locks_at(timestamp with time zone,interval)',
	 q{SELECT count(*) FROM metrics.locks_at(now(), interval '5 minutes')}],
	['audit.flush()', q{SELECT audit.flush()}],
	['audit.queue_state()', q{SELECT count(*) FROM audit.queue_state()}],
	['audit.set_context(text,text,jsonb,text)',
	 q{SELECT audit.set_context('trap-actor', 'trap-request', '{"trap": true}')}],
	['audit.log_event(text,text,text,jsonb)', q{SELECT audit.log_event('trap.event', 'trap:1', details => '{"n": 1}')}],
	['audit.log_events(jsonb)', q{SELECT audit.log_events('[{"action": "trap.batch"}]')}],
	['audit.shapes(timestamp with time zone,timestamp with time zone,text)',
	 q{SELECT count(*) FROM audit.shapes(now() - interval '1 hour', object => 'app.log')}],
	['audit.rebuild_statement(text,integer[],text[])',
	 q{SELECT audit.rebuild_statement('SELECT $1', ARRAY[7], ARRAY['42'])}],
	['audit.server_id()', q{SELECT audit.server_id() IS NOT NULL}],
	['audit.seal()', q{SELECT audit.seal() >= 0}],
	['audit.verify(timestamp with time zone,timestamp with time zone)',
	 q{SELECT status FROM audit.verify(now() - interval '1 day', NULL)}],
	['audit.digest()', q{SELECT audit.digest() ? 'hash'}],
	['audit.verify_digest(jsonb)', q{SELECT status FROM audit.verify_digest(audit.digest())}],
	['audit.add_rule(text,name,name,name,text,text,text)',
	 q{SELECT audit.add_rule('include', schema_name => 'app', class => 'read', comment => 'trap')}],
	['audit.drop_rule(bigint)', q{SELECT audit.drop_rule(rule_id) FROM audit.rules WHERE comment = 'trap exclude'}],
	['audit.create_queue(text,integer,interval,text)', q{SELECT audit.create_queue('trapq')}],
	['audit.enqueue(text,jsonb,interval)', q{SELECT audit.enqueue('trapq', '{"a": 1}')}],
	['audit.enqueue_many(text,jsonb[],interval)',
	 q{SELECT audit.enqueue_many('trapq', ARRAY['{"a": 2}', '{"a": 3}']::jsonb[])}],
	['audit.read(text,integer,interval,interval)', q{SELECT count(*) FROM audit.read('trapq', 3)}],
	['audit.extend(bigint[],interval)', q{SELECT audit.extend(array_agg(i.item_id), '1 minute')
		FROM audit.queue_items i JOIN audit.queues q USING (queue_id) WHERE q.name = 'trapq'}],
	['audit.nack(bigint[],interval)', q{SELECT audit.nack(array_agg(i.item_id))
		FROM audit.queue_items i JOIN audit.queues q USING (queue_id) WHERE q.name = 'trapq'}],
	['audit.ack(bigint[])', q{SELECT audit.ack(array_agg(item_id)) FROM audit.read('trapq', 2)}],
	['audit.redrive(text,bigint[])', q{SELECT audit.redrive('trapq')}],
	['audit.queue_summary()', q{SELECT count(*) FROM audit.queue_summary()}],
	['audit.subscribe(text,text[],text[],text[],text[],name[],text[],text,integer,interval,text)',
	 q{SELECT audit.subscribe('trapsub', classes => ARRAY['ddl'], predicate => $$command <> 'VACUUM' AND rows > 0$$)}],
	['audit.unsubscribe(text)', q{SELECT audit.unsubscribe('trapsub')}],
	['audit.drop_queue(text)', q{SELECT audit.drop_queue('trapq')}],
	['metrics.record(text,double precision,jsonb,timestamp with time zone)',
	 q{SELECT metrics.record('trap.latency', 12.5, '{"route": "/a"}')}],
	['metrics.record_many(text[],double precision[],jsonb[],timestamp with time zone[])',
	 q{SELECT metrics.record_many(ARRAY['trap.latency', 'trap.latency'], ARRAY[1, 2], ARRAY['{"route": "/a"}', '{"route": "/b"}']::jsonb[])}],
	['metrics.rollup()', q{SELECT metrics.rollup()}],
	['metrics.rebuild_rollups(timestamp with time zone,timestamp with time zone)',
	 q{SELECT metrics.rebuild_rollups(now() - interval '1 hour', now() + interval '1 hour')}],
	['metrics.expire_rollups()', q{SELECT metrics.expire_rollups()}],
	['metrics.query(text,jsonb,timestamp with time zone,timestamp with time zone,interval)',
	 q{SELECT count(*) FROM metrics.query('trap.latency', '{"route": "/a"}', now() - interval '1 hour', now() + interval '1 hour')}],
	['metrics.sketch_agg(double precision)', q{SELECT metrics.sketch_agg(x) FROM generate_series(1, 10) x}],
	['metrics.sketch_union(metrics.sketch)',
	 q{SELECT metrics.sketch_union(s) FROM (SELECT metrics.sketch_agg(x) s FROM generate_series(1, 10) x) t}],
	['metrics.sketch_in(cstring)', q{SELECT metrics.sketch_in(metrics.sketch_out(metrics.sketch_agg(x))) FROM generate_series(1, 3) x}],
	['metrics.sketch_out(metrics.sketch)', q{SELECT metrics.sketch_out(metrics.sketch_agg(x)) IS NOT NULL FROM generate_series(1, 3) x}],
	['metrics.sketch_send(metrics.sketch)', q{SELECT metrics.sketch_send(metrics.sketch_agg(x)) IS NOT NULL FROM generate_series(1, 3) x}],
	['metrics.sketch_count(metrics.sketch)', q{SELECT metrics.sketch_count(metrics.sketch_agg(x)) FROM generate_series(1, 3) x}],
	['metrics.sketch_sum(metrics.sketch)', q{SELECT metrics.sketch_sum(metrics.sketch_agg(x)) FROM generate_series(1, 3) x}],
	['metrics.sketch_min(metrics.sketch)', q{SELECT metrics.sketch_min(metrics.sketch_agg(x)) FROM generate_series(1, 3) x}],
	['metrics.sketch_max(metrics.sketch)', q{SELECT metrics.sketch_max(metrics.sketch_agg(x)) FROM generate_series(1, 3) x}],
	['metrics.quantile(metrics.sketch,double precision)',
	 q{SELECT metrics.quantile(metrics.sketch_agg(x), 0.5) FROM generate_series(1, 3) x}],
	['metrics.quantiles(metrics.sketch,double precision[])',
	 q{SELECT metrics.quantiles(metrics.sketch_agg(x), ARRAY[0.5, 0.9]) FROM generate_series(1, 3) x}],
	['metrics.sketch_merge(metrics.sketch,metrics.sketch)',
	 q{SELECT metrics.sketch_merge(s, s) IS NOT NULL FROM (SELECT metrics.sketch_agg(x) s FROM generate_series(1, 3) x) t}],
	['learning.record_feedback(text,double precision,boolean,text,smallint,text,text,jsonb)',
	 q{SELECT learning.record_feedback('trap.key', 0.8, true); SELECT learning.record_feedback('trap.key', 0.3, false)}],
	['learning.record_feedback(jsonb)',
	 q{SELECT learning.record_feedback('[{"key": "trap.key", "score": 0.6, "label": true}]')}],
	['learning.set_objective(text,text,double precision,integer)',
	 q{SELECT key FROM learning.set_objective('trap.key', 'precision', 0.9, 1)}],
	['learning.tune(text)', q{SELECT learning.tune('trap.key'); SELECT learning.tune()}],
	['learning.rebuild_histograms(text)', q{SELECT learning.rebuild_histograms('trap.key')}],
	['learning.threshold(text)', q{SELECT learning.threshold('trap.key')}],
	['learning.optimal_threshold(double precision,boolean,text,double precision)',
	 q{SELECT learning.optimal_threshold(s, s > 0.5, 'f_beta', 1) FROM (VALUES (0.2), (0.7), (0.9)) v(s)}],
	['learning.optimal_threshold(double precision,boolean,text,double precision,double precision)',
	 q{SELECT learning.optimal_threshold(s, s > 0.5, 'precision', 0.8, 0.9) FROM (VALUES (0.2), (0.7), (0.9)) v(s)}],
	['learning.set_strategy(text,text,integer)', q{SELECT key FROM learning.set_strategy('trap.key', 'entropy', 1)}],
	['learning.priority(text,double precision[],double precision)',
	 q{SELECT learning.priority('margin', ARRAY[0.6, 0.3, 0.1])}],
	['learning.offer(text,text,double precision,jsonb)', q{SELECT learning.offer('trap.key', 'item-1', 0.52)}],
	['learning.offer(text,text,double precision[],jsonb)',
	 q{SELECT learning.offer('trap.key', 'item-2', ARRAY[0.4, 0.35, 0.25])}],
	['learning.claim(integer,text,interval,text)', q{SELECT count(*) FROM learning.claim(1, 'rita', '15 minutes')}],
	['learning.submit(bigint,text,boolean,smallint,jsonb)',
	 q{SELECT count(learning.submit(c.candidate_id, 'rita', true)) FROM learning.claim(1, 'rita', '15 minutes') c}],
	['learning.release(bigint,text)',
	 q{SELECT count(learning.release(c.candidate_id, 'rita')) FROM learning.claim(1, 'rita', '15 minutes') c}],
	['learning.reclaim_expired()', q{SELECT learning.reclaim_expired()}],
);

# The list covers every routine an opsdata role may execute (those taking
# internal arguments cannot be called from SQL).
my %listed = map { $_->[0] => 1 } @calls;
my @granted = split /\n/, sql(q{
	SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname IN ('opsdata', 'audit', 'learning', 'metrics')
	   AND NOT 'internal'::regtype = ANY (p.proargtypes::oid[]::regtype[])
	   AND EXISTS (SELECT FROM pg_roles r WHERE r.rolname LIKE 'opsdata\_%'
					AND has_function_privilege(r.oid, p.oid, 'EXECUTE'))
	 ORDER BY 1});
my @missing = grep { !$listed{$_} } @granted;
is(join(', ', @missing), '', 'every function an opsdata role may call is called below');
is(sql(q{
	SELECT coalesce(string_agg(p.oid::regprocedure::text, ', '), '') FROM pg_proc p
	  JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname IN ('opsdata', 'audit', 'learning', 'metrics') AND p.prosecdef
	   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)}),
	'', 'every SECURITY DEFINER function pins search_path = pg_catalog, pg_temp');

# Runs every call as adm, and every built-in job through run_job.  $prefix
# is what the session runs first.
my @builtin = split /\n/, sql(q{SELECT name FROM opsdata.jobs WHERE builtin ORDER BY name});
cmp_ok(scalar(@builtin), '>=', 6, 'the built-in jobs: ' . join(', ', @builtin));
sub call_everything
{
	my ($prefix, $how) = @_;
	# Dropping an exclude rule is an administrator's; adding one is not.
	sql(q{SELECT audit.add_rule('exclude', schema_name => 'nowhere', comment => 'trap exclude')});
	for my $call (@calls)
	{
		my ($rc, $out, $err) = as('adm', "$prefix\n$call->[1]");
		is($rc, 0, "$how: $call->[0]") or diag($err);
	}
	for my $job (@builtin)
	{
		my ($rc, $out, $err) = as('adm', "$prefix\nCALL opsdata.run_job('$job')");
		is($rc, 0, "$how: CALL opsdata.run_job('$job')") or diag($err);
	}
}

sub nothing_fired
{
	my ($how) = @_;
	is(fired(), $baseline, "$how: no overload ran with superuser rights");
	my $log = slurp_file($node->logfile, $log_offset);
	my @lines = $log =~ /(search_path trap fired: [^\n]*)/g;
	is(join("\n", @lines), '', "$how: the server log shows no trap");
}

# 1. An opsdata_admin puts the trap first in its own search_path.
call_everything($trap_path, 'opsdata_admin with the trap in its search_path');
nothing_fired('opsdata_admin with the trap in its search_path');

# 2. The database owner sets it for the whole database: new sessions,
# the scheduler (after a restart), job workers, the partition maintenance
# worker all start with it.
($rc, $out, $err) = as('dbo', 'ALTER DATABASE app SET search_path = trap, pg_catalog, public');
is($rc, 0, 'the database owner sets the trap as the database\'s search_path') or diag($err);
$node->restart;
my ($rc2, $path) = as('adm', 'SHOW search_path');
is($path, 'trap, pg_catalog, public', 'new sessions get the trap');
call_everything('', 'database search_path set by its owner');

# Every built-in job, scheduled: each runs in a job worker of its own.
my $t0 = sql('SELECT now()');
($rc, $out, $err) = as('adm', q{
	SELECT count(*) FROM opsdata.jobs j, opsdata.alter_job(j.job_id, next_run => now(), paused => false)
	 WHERE j.builtin});
is($rc, 0, 'every built-in job made due') or diag($err);
ok(poll(qq{
	SELECT bool_and(EXISTS (SELECT FROM opsdata.job_runs r WHERE r.job_id = j.job_id AND r.kind = 'scheduled'
							  AND r.started_at >= '$t0' AND r.status <> 'running'))
	  FROM opsdata.jobs j WHERE j.builtin}), 'every built-in job ran on schedule');
is(sql(qq{
	SELECT coalesce(string_agg(j.name || ': ' || r.status || ' ' || coalesce(r.message, ''), '; '), '')
	  FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
	 WHERE j.builtin AND r.started_at >= '$t0' AND r.status <> 'succeeded'}),
	'', 'and each scheduled run succeeded');
# The partition maintenance worker's own pass (the job above waits for it).
ok(poll(qq{SELECT EXISTS (SELECT FROM opsdata.partitions WHERE last_run_at >= '$t0')}),
	'the partition maintenance worker ran');
nothing_fired('database search_path set by its owner');

# 3. run_job of a superuser's job by an opsdata_admin is refused, and
# nothing is recorded.
($rc, $out, $err) = as('adm', q{CALL opsdata.run_job('superuser job')});
isnt($rc, 0, 'an opsdata_admin cannot run a superuser\'s job');
like($err, qr/permission denied to run job "superuser job"/, 'with a clear error');
is(sql(q{SELECT count(*) FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id) WHERE j.name = 'superuser job'}),
	'0', 'and no run is recorded');

# 4. A job's statements are audited as its role's, named by the job, when
# the scheduler runs it (its worker connects as the role) and through
# run_job (the statements run as the role in the caller's session); a
# setting it changes is recorded as changed by its role.
($rc, $out, $err) = as('adm', q{
	SELECT opsdata.add_job('audited job',
		'INSERT INTO app.log (who, application, search_path) SELECT session_user, current_setting(''application_name''), current_setting(''search_path'');'
		|| ' SELECT opsdata.set_setting(''worker.job_history_succeeded'', ''8 days'')',
		'1 hour', run_as => 'jobber')});
is($rc, 0, 'an opsdata_admin adds a job running as a role it is a member of') or diag($err);
ok(poll(q{SELECT EXISTS (SELECT FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
						  WHERE j.name = 'audited job' AND r.status <> 'running')}), 'the scheduler ran it');
is(sql(q{SELECT string_agg(r.status, ',') FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
		  WHERE j.name = 'audited job'}), 'succeeded', 'successfully');
is(sql(q{SELECT who || ' / ' || application || ' / ' || search_path FROM app.log WHERE who = 'jobber'}),
	'jobber / pg_opsdata job audited job / pg_catalog, pg_temp',
	'its worker is a session of the job\'s role, named after the job, with search_path pinned');
is(sql(q{SELECT updated_by FROM opsdata.config WHERE key = 'worker.job_history_succeeded'}),
	'jobber', 'the setting it changed is recorded as changed by the job\'s role');
is(sql(q{
	SELECT string_agg(DISTINCT username || ' ' || current_user_name || ' ' || application || ' ' || outcome, '; ')
	  FROM audit.trail WHERE command = 'INSERT' AND 'app.log' = ANY (objects)
	   AND statement_text LIKE '%current_setting(''search_path'')%'}),
	'jobber jobber pg_opsdata job audited job ok',
	'its INSERT is in audit.entries with the job\'s role and the job\'s name as application');

($rc, $out, $err) = as('adm', q{CALL opsdata.run_job('audited job')});
is($rc, 0, 'a member of the job\'s role runs it with run_job') or diag($err);
is(sql(q{
	SELECT string_agg(DISTINCT username || ' ' || current_user_name || ' ' || application, '; ')
	  FROM audit.entries WHERE command = 'INSERT' AND 'app.log' = ANY (objects) AND username = 'adm'
	   AND application = 'pg_opsdata job audited job'}),
	'adm jobber pg_opsdata job audited job',
	'through run_job too: the caller logged in, the job\'s role ran it, the job is named');

# 5. A job whose role may not log in: its scheduled runs fail, recorded
# with the reason.
($rc, $out, $err) = as('adm', q{
	SELECT opsdata.add_job('nologin job', 'SELECT 1', '1 hour', run_as => 'nologin_role')});
is($rc, 0, 'a job may run as a role that cannot log in') or diag($err);
ok(poll(q{SELECT EXISTS (SELECT FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
						  WHERE j.name = 'nologin job' AND r.status <> 'running')}), 'the scheduler tried it');
is(sql(q{SELECT r.status || ' ' || r.sqlstate || ' ' || r.message FROM opsdata.job_runs r JOIN opsdata.jobs j USING (job_id)
		  WHERE j.name = 'nologin job' ORDER BY r.run_id LIMIT 1}),
	'failed 28000 a job worker cannot connect as role "nologin_role": the role is not permitted to log in',
	'and recorded the failure with its reason');

nothing_fired('at the end');
$node->stop;
done_testing();
