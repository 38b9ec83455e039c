/*-------------------------------------------------------------------------
 *
 * appevents.c
 *		Application events: audit.log_event() and audit.log_events().
 *
 * An application records what happened in it (who approved an order, who
 * viewed a record) as entries of class app in the same trail as the
 * statements.  An event joins the calling transaction's list of events
 * (events.c) like a write statement's: it is inserted into audit.entries
 * at pre-commit, so it commits with the application's change or vanishes
 * with it; a savepoint rolled back takes the events logged since.  In a
 * read-only transaction it goes through the database's queue instead, as
 * reads do.  pg_opsdata.audit does not govern these events (the
 * application asked for each); exclude rules of class app drop them.
 *
 * COPY audit.new_events FROM STDIN logs one event per row through an
 * INSTEAD OF INSERT trigger; the trigger lets only roles that may execute
 * audit.log_event() through, so a grant-bypassing role such as a member of
 * pg_write_all_data gains nothing by the view.
 *
 * Every event carries the context the application declared
 * (pg_opsdata.audit_actor, audit_request_id and audit_attributes, see
 * guc.c), like every other entry written while it is in force.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/appevents.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/rel.h"

#include "audit/audit.h"
#include "core/opsdata.h"

PG_FUNCTION_INFO_V1(audit_log_event);
PG_FUNCTION_INFO_V1(audit_log_events);
PG_FUNCTION_INFO_V1(audit_new_event_row);

/* Longest action or object name, and details as JSON text. */
#define AUDIT_APP_NAME_MAX	  1024
#define AUDIT_APP_DETAILS_MAX 8192

/* The outcomes an application may give. */
static int
audit_app_outcome(const char *outcome)
{
	static const int allowed[] = {AUDIT_OUTCOME_OK, AUDIT_OUTCOME_ERROR,
								  AUDIT_OUTCOME_DENIED, AUDIT_OUTCOME_FAILED};
	int i;

	for (i = 0; i < (int) lengthof(allowed); i++)
	{
		if (strcmp(outcome, audit_outcome_name(allowed[i])) == 0)
			return allowed[i];
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid outcome \"%s\" of an application event", outcome),
			 errhint("Valid outcomes are ok, error, denied and failed.")));
	return AUDIT_OUTCOME_OK;
}

static void
audit_app_check_name(const char *what, const char *value)
{
	if (strlen(value) > AUDIT_APP_NAME_MAX)
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("%s of an application event is too long", what),
						errdetail("It may have at most %d bytes.",
								  AUDIT_APP_NAME_MAX)));
}

/* Can this session log application events at all? */
void
audit_app_check_session(void)
{
	if (!opsdata_preloaded)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("application events need pg_opsdata in "
							   "shared_preload_libraries")));
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot log an application event during recovery"),
				 errhint("Log application events on the primary.")));
}

/*
 * A new event of class (app, or imported) in cxt: action (the command of
 * the entry), object (NULL for none), outcome, and details (a jsonb, or
 * NULL), each checked as audit.log_event() checks them.  The session's
 * facts and declared context are the caller's; the caller may change them.
 */
AuditEvent *
audit_app_event(MemoryContext cxt, int class, const char *action,
				const char *object, const char *outcome, Jsonb *details)
{
	AuditEvent *ev;
	char *details_text = NULL;
	int outcome_code;

	if (action[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the action of an application event must not be "
						"empty")));
	audit_app_check_name("the action", action);
	if (object != NULL)
		audit_app_check_name("the object", object);
	outcome_code = audit_app_outcome(outcome);
	if (details != NULL)
	{
		details_text = JsonbToCString(NULL, &details->root, VARSIZE(details));
		if (strlen(details_text) > AUDIT_APP_DETAILS_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the details of an application event are too "
							"long"),
					 errdetail("They may have at most %d bytes as text.",
							   AUDIT_APP_DETAILS_MAX)));
	}

	ev = audit_new_event(cxt, class, MemoryContextStrdup(cxt, action));
	ev->outcome = outcome_code;
	if (details_text != NULL)
		ev->details = MemoryContextStrdup(cxt, details_text);
	if (object != NULL)
	{
		ev->nobjects = 1;
		ev->objects = MemoryContextAlloc(cxt, sizeof(char *));
		ev->objects[0] = MemoryContextStrdup(cxt, object);
		ev->privileges = MemoryContextAllocZero(cxt, sizeof(char *));
	}
	return ev;
}

/*
 * Log one event: action (the command of the entry), object (NULL for
 * none), outcome, and details (a jsonb, or NULL).
 */
static void
audit_app_log(const char *action, const char *object, const char *outcome,
			  Jsonb *details)
{
	AuditEvent *ev = audit_app_event(audit_event_context(), AUDIT_CLASS_APP,
									 action, object, outcome, details);

	if (audit_rules_excluded(ev, GetUserId()))
		return;
	audit_add_event(ev);
}

/*
 * audit.log_event(action text, object text, outcome text, details jsonb)
 * returns void.
 */
Datum
audit_log_event(PG_FUNCTION_ARGS)
{
	char *action;

	audit_app_check_session();
	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the action of an application event must not be "
						"null")));
	action = text_to_cstring(PG_GETARG_TEXT_PP(0));
	audit_app_log(
		action, PG_ARGISNULL(1) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(1)),
		PG_ARGISNULL(2) ? "ok" : text_to_cstring(PG_GETARG_TEXT_PP(2)),
		PG_ARGISNULL(3) ? NULL : PG_GETARG_JSONB_P(3));
	PG_RETURN_VOID();
}

/* The string value of key in an object, NULL when absent or null. */
static char *
audit_app_field(JsonbContainer *obj, const char *key, int n)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);

	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvString)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" of application event %d is not a string", key,
						n)));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * audit.log_events(events jsonb) returns integer: log each element of a
 * JSON array of objects with the keys action, object, outcome and details;
 * returns how many.  One bad element fails the call, and logs nothing.
 */
Datum
audit_log_events(PG_FUNCTION_ARGS)
{
	Jsonb *events = PG_GETARG_JSONB_P(0);
	JsonbIterator *it;
	JsonbValue v;
	JsonbIteratorToken tok;
	int n = 0;

	audit_app_check_session();
	if (!JB_ROOT_IS_ARRAY(events) || JB_ROOT_IS_SCALAR(events))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("application events must be a JSON array")));
	it = JsonbIteratorInit(&events->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		JsonbValue *details;
		char *action;
		char *outcome;

		if (tok != WJB_ELEM)
			continue;
		CHECK_FOR_INTERRUPTS();
		n++;
		if (v.type != jbvBinary || !JsonContainerIsObject(v.val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("application event %d is not a JSON object", n)));
		action = audit_app_field(v.val.binary.data, "action", n);
		if (action == NULL)
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("application event %d has no action", n)));
		outcome = audit_app_field(v.val.binary.data, "outcome", n);
		details = getKeyJsonValueFromContainer(v.val.binary.data, "details",
											   strlen("details"), NULL);
		audit_app_log(action, audit_app_field(v.val.binary.data, "object", n),
					  outcome ? outcome : "ok",
					  details == NULL || details->type == jbvNull
						  ? NULL
						  : JsonbValueToJsonb(details));
	}
	PG_RETURN_INT32(n);
}

/*
 * May the current user log application events?  The same privilege as
 * audit.log_event() itself: EXECUTE on it.
 */
static void
audit_app_check_caller(FmgrInfo *flinfo)
{
	Oid *fn = (Oid *) flinfo->fn_extra;

	if (fn == NULL)
	{
		Oid argtypes[4] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID};
		List *name = list_make2(makeString("audit"), makeString("log_event"));

		fn = MemoryContextAlloc(flinfo->fn_mcxt, sizeof(Oid));
		*fn = LookupFuncName(name, 4, argtypes, false);
		flinfo->fn_extra = fn;
	}
	if (pg_proc_aclcheck(*fn, GetUserId(), ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR, (errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						errmsg("permission denied to log application events"),
						errhint("Roles that may execute audit.log_event() may "
								"write to audit.new_events.")));
}

/*
 * INSTEAD OF INSERT row trigger of audit.new_events (action text, object
 * text, outcome text, details jsonb): logs the row as audit.log_event()
 * would.
 */
Datum
audit_new_event_row(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata =
		audit_view_trigger(fcinfo, "audit._new_event_row()", 4, false);
	char *action;
	char *outcome;
	bool isnull;
	Datum details;

	audit_app_check_session();
	audit_app_check_caller(fcinfo->flinfo);
	if (TupleDescAttr(RelationGetDescr(trigdata->tg_relation), 3)->atttypid !=
		JSONBOID)
		ereport(ERROR, (errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
						errmsg("audit._new_event_row() fired on a relation of "
							   "another shape")));
	action = audit_view_text(trigdata, 1);
	if (action == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("the action of an application event must not be "
						"null")));
	outcome = audit_view_text(trigdata, 3);
	details = audit_view_column(trigdata, 4, &isnull);
	audit_app_log(action, audit_view_text(trigdata, 2),
				  outcome ? outcome : "ok",
				  isnull ? NULL : DatumGetJsonbP(details));
	return PointerGetDatum(trigdata->tg_trigtuple);
}
