/*-------------------------------------------------------------------------
 *
 * functions.c
 *		SQL-callable functions of the audit area.
 *
 * audit.flush() drains the database's queue in the caller's transaction;
 * audit.queue_state() and audit._health_audit() report on the queues and
 * on the entries held while a dump is being restored;
 * audit._rules_changed() is called by audit.add_rule() and
 * audit.drop_rule() to record the change and make every backend read the
 * rules again, audit._config_changed() by opsdata.set_setting() and
 * opsdata.reset_setting() for the settings that govern the trail; the two
 * event trigger functions hand the identities of the objects a DDL
 * statement touched to the running audited statement.
 * Without preloading they all work and report that capture is off.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/functions.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "commands/event_trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "access/xlog.h"
#include "tcop/tcopprot.h"
#include "utils/inval.h"
#include "utils/tuplestore.h"

#include "audit/audit.h"
#include "core/opsdata.h"
#include "worker/worker.h"

PG_FUNCTION_INFO_V1(audit_flush);
PG_FUNCTION_INFO_V1(audit_queue_state);
PG_FUNCTION_INFO_V1(audit_health);
PG_FUNCTION_INFO_V1(audit_rules_changed);
PG_FUNCTION_INFO_V1(audit_config_changed);
PG_FUNCTION_INFO_V1(audit_ddl_command_end);
PG_FUNCTION_INFO_V1(audit_sql_drop);

/*
 * audit.flush() returns bigint: write every entry queued for the current
 * database now, in the caller's transaction; returns how many.
 */
Datum
audit_flush(PG_FUNCTION_ARGS)
{
	int64 n;

	if (!opsdata_preloaded)
		PG_RETURN_INT64(0);
	PreventCommandIfReadOnly("audit.flush()");
	audit_flush_deferred(true);
	n = audit_drain_flush();
	CommandCounterIncrement();
	PG_RETURN_INT64(n);
}

/*
 * audit.queue_state(): one row per database with a queue.
 */
Datum
audit_queue_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	AuditQueueStats *stats;
	int n;
	int i;

	InitMaterializedSRF(fcinfo, 0);
	n = audit_queue_stats(&stats);
	for (i = 0; i < n; i++)
	{
		Datum values[9];
		bool nulls[9] = {false};

		values[0] = CStringGetTextDatum(stats[i].database);
		values[1] = Int64GetDatum((int64) stats[i].capacity);
		values[2] = Int64GetDatum((int64) stats[i].used);
		values[3] = Int64GetDatum((int64) stats[i].enqueued);
		values[4] = Int64GetDatum((int64) stats[i].drained);
		values[5] = Int64GetDatum((int64) stats[i].dropped);
		values[6] = Int64GetDatum((int64) stats[i].waits);
		values[7] = Int64GetDatum((int64) stats[i].writer_errors);
		values[8] = TimestampTzGetDatum(stats[i].last_drained);
		nulls[8] = stats[i].last_drained == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values,
							 nulls);
	}
	return (Datum) 0;
}

/* Entries waiting longer than this without a drain make health warn. */
#define AUDIT_HEALTH_STALE_MS Max(5 * 1000, 10 * audit_flush_interval_ms)

/* "0.2 s ago" or "never". */
static char *
audit_ago(TimestampTz then, TimestampTz now)
{
	if (then == 0)
		return pstrdup("never");
	return psprintf("%.1f s ago", (double) Max(now - then, 0) / USECS_PER_SEC);
}

/* The "audit queue" row of this database's queue. */
static void
audit_health_queue(ReturnSetInfo *rsinfo, const AuditQueueStats *st,
				   uint64 unassigned)
{
	TimestampTz now = GetCurrentTimestamp();
	int pct = (int) (st->used * 100 / Max(st->capacity, 1));
	uint64 dropped = st->dropped + unassigned;
	bool stale =
		st->used > 0 && (st->last_drained == 0 ||
						 TimestampDifferenceExceeds(st->last_drained, now,
													AUDIT_HEALTH_STALE_MS));
	const char *status = "ok";
	StringInfoData detail;

	initStringInfo(&detail);
	appendStringInfo(
		&detail,
		"%d%% of %zu kB used, last drained %s; " UINT64_FORMAT
		" entries dropped, " UINT64_FORMAT " failed writes of the queue.",
		pct, st->capacity / 1024, audit_ago(st->last_drained, now), dropped,
		st->writer_errors);
	if (st->writer_errors > 0 && st->last_error >= st->last_drained)
	{
		status = "error";
		appendStringInfo(
			&detail,
			" The last write of the queue failed (%s: %s) and none succeeded since: see the server log.",
			audit_ago(st->last_error, now), st->last_error_message);
	}
	else if (stale)
	{
		status = "warning";
		appendStringInfoString(
			&detail,
			" Entries are waiting and nothing drained the queue lately: is the pg_opsdata scheduler of this database running (see its row)?");
	}
	else if (dropped > 0 || pct >= 90)
		status = "warning";
	if (dropped > 0)
		appendStringInfoString(
			&detail,
			" Entries are dropped when the queue is full and pg_opsdata.audit_overflow is drop; consider increasing pg_opsdata.audit_queue_size.");
	opsdata_health_row(rsinfo, "audit queue", status, detail.data);
}

/*
 * The "audit hold" row, while a restore is under way or entries it held
 * wait to be moved into audit.entries (hold.c); none otherwise.
 */
static void
audit_health_held(ReturnSetInfo *rsinfo)
{
	int64 held = audit_held_count();

	if (worker_restore_under_way(MyDatabaseId))
		opsdata_health_row(
			rsinfo, "audit hold", "ok",
			psprintf(
				"A dump is being restored into this database: the " INT64_FORMAT
				" audit entries made meanwhile are held in audit.held_entries until it has ended.",
				Max(held, 0)));
	else if (held > 0)
		opsdata_health_row(
			rsinfo, "audit hold", "ok",
			psprintf(
				INT64_FORMAT
				" audit entries held during a restore that has ended are being moved into audit.entries by the scheduler of this database.",
				held));
}

/*
 * audit._health_audit(): rows of opsdata.health() for audit capture and
 * this database's queue (fill, when it was last drained, drops, failed
 * writes).
 */
Datum
audit_health(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	AuditQueueStats *stats;
	char *dbname = get_database_name(MyDatabaseId);
	int n;
	int i;
	uint64 unassigned;

	InitMaterializedSRF(fcinfo, 0);
	if (!opsdata_preloaded)
	{
		opsdata_health_row(
			rsinfo, "audit capture", "off",
			"Audit capture needs pg_opsdata in shared_preload_libraries.");
		opsdata_health_row(
			rsinfo, "audit queue", "off",
			"The audit queue needs pg_opsdata in shared_preload_libraries.");
		PG_RETURN_VOID();
	}
	if (RecoveryInProgress())
	{
		/*
		 * Writes, DDL and role changes cannot succeed here; any other class
		 * audited is a gap.
		 */
		bool gap = (audit_classes & ~AUDIT_TRANSACTIONAL_CLASSES) != 0 ||
				   audit_rules_may_include();

		opsdata_health_row(
			rsinfo, "audit capture", gap ? "warning" : "off",
			psprintf(
				"This server is a hot standby: statements run here are not audited, since nothing can be written during recovery, and pg_opsdata.audit asks for %s%s. The trail here is the primary's, as replayed.",
				audit_classes_string(audit_classes),
				gap ? "" : ", which cannot succeed on a standby"));
	}
	else
		opsdata_health_row(
			rsinfo, "audit capture", "ok",
			psprintf("Auditing %s (pg_opsdata.audit), plus the rules in "
					 "audit.rules.",
					 audit_classes_string(audit_classes)));

	audit_health_held(rsinfo);
	n = audit_queue_stats(&stats);
	unassigned = audit_queue_unassigned_drops();
	for (i = 0; i < n; i++)
	{
		if (strcmp(stats[i].database, dbname) == 0)
		{
			audit_health_queue(rsinfo, &stats[i], unassigned);
			PG_RETURN_VOID();
		}
	}
	if (unassigned > 0)
		opsdata_health_row(
			rsinfo, "audit queue", "warning",
			psprintf(
				UINT64_FORMAT
				" entries dropped because every queue was taken; consider increasing pg_opsdata.audit_max_databases.",
				unassigned));
	else
		opsdata_health_row(
			rsinfo, "audit queue", "ok",
			"Empty: nothing was queued for this database since the server started.");
	PG_RETURN_VOID();
}

/*
 * Record a change that bears on the trail (of the audit rules, of settings
 * that govern it, an import into it) made by the current statement: an
 * entry of class ddl, command on object, always audited, written with the
 * change at commit (or kept as rolled back).  The functions that make such
 * changes are SECURITY DEFINER, so the entry's current user is the role the
 * session acts as (its SET ROLE, else its session user), not the extension
 * owner the function runs as.  Returns the entry, which the caller may
 * complete until commit, or NULL when nothing is recorded (no preload, or
 * recovery).
 */
AuditEvent *
audit_record_change(const char *command, const char *object)
{
	AuditEvent *ev;

	if (!opsdata_preloaded || RecoveryInProgress())
		return NULL;
	audit_ensure_contexts();
	ev = audit_new_event(audit_xact_cxt, AUDIT_CLASS_DDL,
						 MemoryContextStrdup(audit_xact_cxt, command));
	ev->current_user_name = audit_role_name(GetOuterUserId());
	ev->flags |= AUDIT_EVENT_ALWAYS;
	if (debug_query_string != NULL)
		ev->statement = audit_trimmed_copy(audit_xact_cxt, debug_query_string);
	ev->nobjects = 1;
	ev->objects = MemoryContextAlloc(audit_xact_cxt, sizeof(char *));
	ev->privileges = MemoryContextAlloc(audit_xact_cxt, sizeof(char *));
	ev->objects[0] = MemoryContextStrdup(audit_xact_cxt, object);
	ev->privileges[0] = NULL;
	audit_add_event(ev);
	return ev;
}

/*
 * audit._rules_changed(command text, object text): record a change of the
 * audit rules (always audited) and make every backend read them again.
 */
Datum
audit_rules_changed(PG_FUNCTION_ARGS)
{
	char *command = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char *object = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid rules = audit_rules_relid();

	if (OidIsValid(rules))
		CacheInvalidateRelcacheByRelid(rules);
	audit_rules_invalidate();
	(void) audit_record_change(command, object);
	PG_RETURN_VOID();
}

/*
 * audit._config_changed(command text, object text): record a change of the
 * audit configuration other than its rules (always audited), such as a
 * setting that governs how long the trail is kept.
 */
Datum
audit_config_changed(PG_FUNCTION_ARGS)
{
	(void) audit_record_change(text_to_cstring(PG_GETARG_TEXT_PP(0)),
							   text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_VOID();
}

typedef struct AuditIdentitiesQuery
{
	const char *query;
	MemoryContext caller;
	List *result;
} AuditIdentitiesQuery;

/* Run the query of an AuditIdentitiesQuery, as the extension's own work. */
static void
audit_identities_run(void *arg)
{
	AuditIdentitiesQuery *q = (AuditIdentitiesQuery *) arg;
	uint64 i;
	int rc;

	opsdata_spi_connect(0);
	if ((rc = SPI_execute(q->query, true, 0)) != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "read the identities of audited roles");
	for (i = 0; i < SPI_processed; i++)
	{
		char *value =
			SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (value != NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(q->caller);

			q->result = lappend(q->result, pstrdup(value));
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
}

/* Object identities returned by query (first column), NULLs skipped. */
static List *
audit_identities(const char *query)
{
	AuditIdentitiesQuery q;

	q.query = query;
	q.caller = CurrentMemoryContext;
	q.result = NIL;
	audit_run_internal(audit_identities_run, &q);
	return q.result;
}

/* An event trigger function called otherwise. */
static void
audit_not_event_trigger(FunctionCallInfo fcinfo)
{
	ereport(ERROR,
			(errcode(ERRCODE_E_R_I_E_EVENT_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("function \"%s\" was not called by event trigger manager",
					get_func_name(fcinfo->flinfo->fn_oid))));
}

/*
 * Event trigger on ddl_command_end: objects created or altered.
 */
Datum
audit_ddl_command_end(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		audit_not_event_trigger(fcinfo);
	if (opsdata_preloaded && audit_utility_running())
		audit_ddl_objects(audit_identities(
			"SELECT DISTINCT object_identity FROM pg_catalog.pg_event_trigger_ddl_commands() "
			"WHERE object_identity IS NOT NULL ORDER BY 1"));
	PG_RETURN_NULL();
}

/*
 * Event trigger on sql_drop: objects dropped by name.
 */
Datum
audit_sql_drop(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		audit_not_event_trigger(fcinfo);
	if (opsdata_preloaded && audit_utility_running())
		audit_ddl_objects(audit_identities(
			"SELECT DISTINCT object_identity FROM pg_catalog.pg_event_trigger_dropped_objects() "
			"WHERE original AND object_identity IS NOT NULL ORDER BY 1"));
	PG_RETURN_NULL();
}
