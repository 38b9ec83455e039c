/*-------------------------------------------------------------------------
 *
 * guard.c
 *		The trigger that keeps every table of pg_opsdata written by
 *		pg_opsdata alone.
 *
 * GRANTs give no role more than pg_opsdata means it to have, but roles
 * that bypass GRANTs (members of pg_write_all_data) could write any table
 * directly: forge audit entries, add jobs, change settings without their
 * checks.  opsdata._guard_tables() (finish.sql) puts opsdata._guard() on
 * every table of the extension, BEFORE each of INSERT, UPDATE, DELETE and
 * TRUNCATE that the table grants to no role: a statement-level trigger on
 * plain tables (one call per statement, whatever the rows), a row-level
 * one on partitioned tables for INSERT, UPDATE and DELETE (PostgreSQL
 * clones it onto every partition, those partition maintenance makes later
 * included; statement triggers are not cloned) plus a statement-level one
 * for TRUNCATE.  Every guard trigger is ENABLE ALWAYS, so that
 * session_replication_role does not turn it off.  Logical replication's
 * apply worker fires no statement-level trigger but TRUNCATE's, so a plain
 * table also gets a row-level guard for INSERT, UPDATE and DELETE that
 * fires with session_replication_role = replica alone (ENABLE REPLICA):
 * the apply worker runs as the subscription's owner, which gets through
 * when it is a superuser, and only then; no other write pays for it.
 *
 * The trigger lets through the table's owner, members of the owner's role
 * and superusers, and refuses everyone else with insufficient_privilege.
 * pg_opsdata's own code writes as the owner: its SECURITY DEFINER
 * functions and the C code that switches to the extension owner.  The C
 * writers that insert through the table access method (the audit writer,
 * the metrics writers) fire no trigger at all; opsdata_guard_only_insert()
 * tells them that the only INSERT triggers of a table are guards, which
 * they may pass by.
 *
 * The check reads the owner from the relcache entry and the role
 * membership from the cache acl.c keeps, so it costs no catalog lookup.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/guard.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_language.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/reltrigger.h"
#include "utils/syscache.h"

#include "core/opsdata.h"

PG_FUNCTION_INFO_V1(opsdata_guard);

/* Symbol of the guard's trigger function, as pg_proc.prosrc names it. */
#define OPSDATA_GUARD_SYMBOL "opsdata_guard"

/*
 * Whether the current user may write rel: its owner, a member of the
 * owner's role, or a superuser.
 */
bool
opsdata_guard_allows(Relation rel)
{
	Oid user = GetUserId();
	Oid owner = rel->rd_rel->relowner;

	return user == owner || superuser_arg(user) ||
		   has_privs_of_role(user, owner);
}

/* The verb of a refused write, for the message. */
static const char *
guard_verb(TriggerEvent event)
{
	if (TRIGGER_FIRED_BY_INSERT(event))
		return "insert into";
	if (TRIGGER_FIRED_BY_UPDATE(event))
		return "update";
	if (TRIGGER_FIRED_BY_DELETE(event))
		return "delete from";
	return "truncate";
}

/*
 * opsdata._guard(): BEFORE trigger, row- or statement-level, on INSERT,
 * UPDATE, DELETE or TRUNCATE.  Lets the write proceed unchanged for the
 * table's owner and superusers; raises insufficient_privilege otherwise.
 */
Datum
opsdata_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation rel;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
						errmsg("function %s must be fired as a BEFORE trigger",
							   "opsdata._guard")));

	rel = trigdata->tg_relation;
	if (!opsdata_guard_allows(rel))
		ereport(
			ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s table \"%s.%s\"",
					guard_verb(trigdata->tg_event),
					get_namespace_name(RelationGetNamespace(rel)),
					RelationGetRelationName(rel)),
			 errdetail(
				 "Tables of pg_opsdata are written only by its functions and background workers, whatever privileges a role holds."),
			 errhint(
				 "Use the functions of pg_opsdata that change this table.")));

	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		return PointerGetDatum(NULL);
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}

/* Whether a trigger's function is opsdata._guard(). */
static bool
guard_is_guard_function(Oid funcid)
{
	HeapTuple tuple;
	bool result = false;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	if (!HeapTupleIsValid(tuple))
		return false;
	if (((Form_pg_proc) GETSTRUCT(tuple))->prolang == ClanguageId)
	{
		bool isnull;
		Datum src =
			SysCacheGetAttr(PROCOID, tuple, Anum_pg_proc_prosrc, &isnull);

		result = !isnull &&
				 strcmp(TextDatumGetCString(src), OPSDATA_GUARD_SYMBOL) == 0;
	}
	ReleaseSysCache(tuple);
	return result;
}

/*
 * Whether every trigger of rel that fires on INSERT is a guard, so that
 * pg_opsdata's own code, writing as the extension owner, may insert
 * through the table access method without firing triggers.  Other
 * triggers (on UPDATE, DELETE or TRUNCATE) do not matter to an insert.
 */
bool
opsdata_guard_only_insert(Relation rel)
{
	TriggerDesc *desc = rel->trigdesc;
	int i;

	if (desc == NULL)
		return true;
	for (i = 0; i < desc->numtriggers; i++)
	{
		Trigger *trigger = &desc->triggers[i];

		if (TRIGGER_FOR_INSERT(trigger->tgtype) &&
			!guard_is_guard_function(trigger->tgfoid))
			return false;
	}
	return true;
}
