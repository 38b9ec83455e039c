/*-------------------------------------------------------------------------
 *
 * legacy.c
 *		C entry points that only released install scripts name.
 *
 * upgrade/pg_opsdata--0.1.sql creates audit._refuse_change(), the row
 * trigger that kept ordinary roles from changing audit rows before every
 * table of pg_opsdata had the core's guard (src/core/guard.c).  The update
 * to 0.2 drops it; the symbol stays so that CREATE EXTENSION pg_opsdata
 * VERSION '0.1' still works with this library, and it behaves as it did:
 * it refuses UPDATE and DELETE to all but the table's owner and
 * superusers, and makes the caches of stored texts forget what they hold
 * when audit.statements changes.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/legacy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "audit/audit.h"
#include "core/opsdata.h"

PG_FUNCTION_INFO_V1(audit_refuse_change);

/*
 * Row-level BEFORE UPDATE OR DELETE trigger of version 0.1: returns the
 * row unchanged for the table's owner and superusers, raises
 * insufficient_privilege otherwise.
 */
Datum
audit_refuse_change(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation rel;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(
			ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg(
				 "function \"%s\" must be fired as a row-level BEFORE trigger",
				 "audit._refuse_change")));

	rel = trigdata->tg_relation;
	if (!opsdata_guard_allows(rel))
		ereport(
			ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("audit rows cannot be changed"),
			 errdetail(
				 "Rows of \"%s.%s\" are written once by pg_opsdata and only removed by retention.",
				 get_namespace_name(RelationGetNamespace(rel)),
				 RelationGetRelationName(rel))));

	if (strcmp(RelationGetRelationName(rel), "statements") == 0)
	{
		char *nsp = get_namespace_name(RelationGetNamespace(rel));

		if (nsp != NULL && strcmp(nsp, "audit") == 0)
			audit_text_cache_invalidate();
	}

	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		return PointerGetDatum(trigdata->tg_newtuple);
	return PointerGetDatum(trigdata->tg_trigtuple);
}
