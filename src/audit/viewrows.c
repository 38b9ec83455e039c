/*-------------------------------------------------------------------------
 *
 * viewrows.c
 *		The rows written into the audit area's write-only views.
 *
 * audit.new_events (appevents.c), audit.import_events and
 * audit.import_queue_items (import.c) take their rows through INSTEAD OF
 * INSERT triggers in C, so that COPY checks each row and names the line
 * of a bad one.  Their triggers check here that they are fired as they are
 * declared, on a view of the columns they read, and read the new row's
 * columns with these helpers.  Nothing is cached: a trigger's state, if it
 * has any, is its own.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/viewrows.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/rel.h"

#include "audit/audit.h"

/*
 * The trigger's data, checked: an INSTEAD OF INSERT row trigger of a view
 * of natts columns, or (when statement_ok) an INSERT statement trigger of
 * it.  fn names the trigger function in the error.
 */
TriggerData *
audit_view_trigger(FunctionCallInfo fcinfo, const char *fn, int natts,
				   bool statement_ok)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		!(TRIGGER_FIRED_FOR_ROW(trigdata->tg_event)
			  ? TRIGGER_FIRED_INSTEAD(trigdata->tg_event)
			  : statement_ok))
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
						errmsg("%s must be fired instead of INSERT for each "
							   "row",
							   fn)));
	if (RelationGetDescr(trigdata->tg_relation)->natts != natts)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("%s fired on a relation of another shape", fn)));
	return trigdata;
}

/* Column attnum of the trigger's new row; *isnull says whether null. */
Datum
audit_view_column(TriggerData *trigdata, int attnum, bool *isnull)
{
	return heap_getattr(trigdata->tg_trigtuple, attnum,
						RelationGetDescr(trigdata->tg_relation), isnull);
}

/* Text column attnum of the trigger's new row, NULL when null. */
char *
audit_view_text(TriggerData *trigdata, int attnum)
{
	bool isnull;
	Datum d = audit_view_column(trigdata, attnum, &isnull);

	return isnull ? NULL : TextDatumGetCString(d);
}
