/*-------------------------------------------------------------------------
 *
 * guard.c
 *		Trigger that keeps audit rows from being changed by ordinary roles.
 *
 * GRANTs already give no role UPDATE or DELETE on audit tables, but the
 * predefined role pg_write_all_data bypasses GRANTs.  A row-level BEFORE
 * UPDATE OR DELETE trigger on every audit table closes that door: it lets
 * through the table's owner and superusers (the extension's own upkeep runs
 * as them) and refuses everyone else.  The trigger is cloned onto every
 * partition of audit.entries, present and future.  It costs nothing on
 * INSERT, the only write the audit trail sees in normal operation.  When
 * the owner does change a row of audit.statements, the caches of stored
 * texts (textcache.c) stop trusting what they hold.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/guard.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "audit/audit.h"
#include "core/opsdata.h"

PG_FUNCTION_INFO_V1(audit_refuse_change);

/*
 * Row-level BEFORE UPDATE OR DELETE trigger: returns the row unchanged for
 * the table's owner and superusers, raises insufficient_privilege
 * otherwise.
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
	if (!opsdata_class_ownercheck(RelationGetRelid(rel), GetUserId()))
		ereport(
			ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("audit rows cannot be changed"),
			 errdetail(
				 "Rows of \"%s.%s\" are written once by pg_opsdata and only removed by retention.",
				 get_namespace_name(RelationGetNamespace(rel)),
				 RelationGetRelationName(rel))));

	/* The caches of stored statement texts must not outlive a changed row. */
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
