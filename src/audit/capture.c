/*-------------------------------------------------------------------------
 *
 * capture.c
 *		Audit events of running statements.
 *
 * A statement being audited has an AuditItem: executor statements from
 * ExecutorStart to ExecutorEnd (a cursor's item lives as long as its
 * portal), utility statements for the duration of ProcessUtility.  Items
 * are allocated in the memory context that was current when the statement
 * started and register a reset callback there, so that an item whose
 * statement never ends (error, portal dropped, transaction aborted) is
 * unlinked when its memory goes, as pgaudit does with its event stack.
 * Items are kept in a list, newest first; ExecutorEnd finds its own by
 * QueryDesc, so portals that end out of order (cursors, the extended
 * protocol) cannot upset it.
 *
 * An item that finishes becomes an AuditEvent in the transaction's event
 * list (events.c).  emit_log_hook turns the items that are running at the
 * time of an ERROR into events with outcome "error" (or "denied") and its
 * SQLSTATE; an error outside any audited statement (a syntax error, a
 * failed COMMIT) is recorded from the statement text alone.  Whether
 * capture is on at all is decided in active.c.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/capture.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "audit/port.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "common/ip.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "parser/parsetree.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/timestamp.h"

#include "audit/audit.h"
#include "core/opsdata.h"

typedef struct AuditItem
{
	dlist_node node;
	bool linked;
	bool failed;
	int running;		  /* nesting of ExecutorStart/Run/Finish calls */
	int64 rows;			  /* rows processed by the runs so far */
	QueryDesc *queryDesc; /* NULL for a utility statement */
	SubTransactionId subid;
	int class;
	uint8 flags;
	bool is_call;
	bool wanted_by_class;
	const char *command;
	TimestampTz start;
	const char *source; /* the string the statement is part of */
	int location;
	int len;
	char *text;	  /* redacted statement, when it needed redaction */
	char *params; /* bind parameters, when recorded */
	int nconsts;  /* constants of the statement's text (shapes.c) */
	int param_base;
	AuditSpan *consts;
	int nobjects;
	int maxobjects;
	const char **objects;
	const char **privileges;
	List *functions; /* names of user functions called */
	MemoryContext cxt;
	MemoryContextCallback callback;
} AuditItem;

static dlist_head audit_items = DLIST_STATIC_INIT(audit_items);

/*
 * The statement text of an item, copied into cxt (shared with the previous
 * event when equal).
 */
static const char *
audit_item_text(AuditItem *item, MemoryContext cxt)
{
	static const char *last_text = NULL;
	const char *src;
	int len;

	if (item->text != NULL)
	{
		src = item->text;
		len = strlen(src);
		audit_trim_statement(&src, &len);
	}
	else if (item->source == NULL)
		return NULL;
	else
		audit_statement_bounds(item->source, item->location, item->len, &src,
							   &len);
	if (last_text != NULL && audit_last_event_statement() == last_text &&
		strncmp(last_text, src, len) == 0 && last_text[len] == '\0')
		return last_text;
	{
		char *copy = MemoryContextAlloc(cxt, len + 1);

		memcpy(copy, src, len);
		copy[len] = '\0';
		last_text = copy;
	}
	return last_text;
}

/*
 * An event for an item, with the given outcome, into the transaction's
 * context.
 */
static AuditEvent *
audit_item_event(AuditItem *item, int class, const char *command, int outcome,
				 int sqlstate)
{
	MemoryContext cxt;
	AuditEvent *ev;
	int i;

	cxt = audit_event_context();
	ev = audit_new_event(cxt, class, command);
	ev->ts = item->start;
	ev->outcome = outcome;
	ev->sqlstate = sqlstate;
	ev->flags |= item->flags;
	ev->duration_us = GetCurrentTimestamp() - item->start;
	ev->flags |= AUDIT_EVENT_HAS_DURATION;
	ev->statement = audit_item_text(item, cxt);
	if (item->nconsts > 0 && item->text == NULL && ev->statement != NULL)
	{
		AuditSpan *consts =
			MemoryContextAlloc(cxt, sizeof(AuditSpan) * item->nconsts);

		memcpy(consts, item->consts, sizeof(AuditSpan) * item->nconsts);
		ev->consts = consts;
		ev->nconsts = item->nconsts;
		ev->param_base = item->param_base;
	}
	ev->params = item->params ? MemoryContextStrdup(cxt, item->params) : NULL;
	ev->nobjects = item->nobjects;
	if (item->nobjects > 0)
	{
		ev->objects = MemoryContextAlloc(cxt, sizeof(char *) * item->nobjects);
		ev->privileges =
			MemoryContextAlloc(cxt, sizeof(char *) * item->nobjects);
		for (i = 0; i < item->nobjects; i++)
		{
			ev->objects[i] = MemoryContextStrdup(cxt, item->objects[i]);
			ev->privileges[i] =
				item->privileges[i]
					? MemoryContextStrdup(cxt, item->privileges[i])
					: NULL;
		}
	}
	return ev;
}

/* Events of the user functions an item called. */
static void
audit_item_function_events(AuditItem *item, int outcome, int sqlstate)
{
	ListCell *lc;

	if (item->functions == NIL)
		return;
	foreach (lc, item->functions)
	{
		const char *fn = (const char *) lfirst(lc);
		AuditEvent *ev = audit_item_event(item, AUDIT_CLASS_FUNCTION,
										  "EXECUTE", outcome, sqlstate);
		MemoryContext cxt = GetMemoryChunkContext(ev);

		ev->nobjects = 1;
		ev->objects = MemoryContextAlloc(cxt, sizeof(char *));
		ev->privileges = MemoryContextAlloc(cxt, sizeof(char *));
		ev->objects[0] = MemoryContextStrdup(cxt, fn);
		ev->privileges[0] = "EXECUTE";
		if (audit_rules_wanted(ev, GetUserId()))
			audit_add_event(ev);
	}
}

/*
 * Is the statement CREATE, ALTER or DROP EXTENSION pg_opsdata (or a DROP
 * EXTENSION naming it among others)?
 */
static bool
audit_is_extension_command(Node *parsetree)
{
	ListCell *lc;

	switch (nodeTag(parsetree))
	{
		case T_CreateExtensionStmt:
			return strcmp(((CreateExtensionStmt *) parsetree)->extname,
						  OPSDATA_NAME) == 0;
		case T_AlterExtensionStmt:
			return strcmp(((AlterExtensionStmt *) parsetree)->extname,
						  OPSDATA_NAME) == 0;
		case T_DropStmt:
			if (((DropStmt *) parsetree)->removeType != OBJECT_EXTENSION)
				return false;
			foreach (lc, ((DropStmt *) parsetree)->objects)
			{
				if (strcmp(strVal(lfirst(lc)), OPSDATA_NAME) == 0)
					return true;
			}
			return false;
		default:
			return false;
	}
}

/* --- items -------------------------------------------------------------- */

static void
audit_item_unlink(AuditItem *item)
{
	if (item->linked)
	{
		dlist_delete(&item->node);
		item->linked = false;
	}
}

static void
audit_item_reset_callback(void *arg)
{
	audit_item_unlink((AuditItem *) arg);
}

static AuditItem *
audit_item_new(int class, const char *command, bool by_class)
{
	AuditItem *item = palloc0(sizeof(AuditItem));

	item->cxt = CurrentMemoryContext;
	item->class = class;
	item->command = command;
	item->wanted_by_class = by_class;
	item->start = GetCurrentTimestamp();
	item->subid = GetCurrentSubTransactionId();
	item->callback.func = audit_item_reset_callback;
	item->callback.arg = item;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &item->callback);
	dlist_push_head(&audit_items, &item->node);
	item->linked = true;
	return item;
}

static void
audit_item_add_object(AuditItem *item, const char *name, const char *privilege)
{
	int max = item->maxobjects;

	/* Both arrays have maxobjects elements. */
	item->objects = audit_array_room(item->objects, item->nobjects, &max,
									 sizeof(char *), 4, item->cxt);
	item->privileges =
		audit_array_room(item->privileges, item->nobjects, &item->maxobjects,
						 sizeof(char *), 4, item->cxt);
	item->objects[item->nobjects] = MemoryContextStrdup(item->cxt, name);
	item->privileges[item->nobjects] = privilege;
	item->nobjects++;
}

/* Finish an item that completed: its event(s) join the transaction. */
static void
audit_item_finish(AuditItem *item, int64 rows, bool has_rows)
{
	audit_item_unlink(item);
	if (item->failed)
		return;
	if (item->wanted_by_class || (item->flags & AUDIT_EVENT_ALWAYS) ||
		audit_rules_may_include())
	{
		AuditEvent *ev = audit_item_event(item, item->class, item->command,
										  AUDIT_OUTCOME_OK, 0);

		if (has_rows)
		{
			ev->rows = rows;
			ev->flags |= AUDIT_EVENT_HAS_ROWS;
		}
		if (audit_rules_wanted(ev, GetUserId()))
			audit_add_event(ev);
		else
			pfree(ev);
	}
	audit_item_function_events(item, AUDIT_OUTCOME_OK, 0);
}

static AuditItem *
audit_find_item(QueryDesc *queryDesc)
{
	dlist_iter iter;

	dlist_foreach(iter, &audit_items)
	{
		AuditItem *item = dlist_container(AuditItem, node, iter.cur);

		if (item->queryDesc == queryDesc)
			return item;
	}
	return NULL;
}

/* --- executor ----------------------------------------------------------- */

/*
 * Called by the ExecutorStart hook before the standard ExecutorStart.
 */
void
audit_executor_start(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *stmt = queryDesc->plannedstmt;
	int class;
	bool by_class;
	AuditItem *item;
	ListCell *lc;
	bool only_catalog = true;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	if (!audit_capture_active())
		return;
	if (!opsdata_schema_refused())
		audit_flush_deferred(true);

	class = (stmt->commandType == CMD_SELECT && !stmt->hasModifyingCTE)
				? AUDIT_CLASS_READ
				: AUDIT_CLASS_WRITE;
	if (!audit_class_may_be_wanted(class, &by_class) &&
		!(audit_classes & AUDIT_BIT(AUDIT_CLASS_FUNCTION)))
		return;
	/* Objects too old for the library: refuse rather than lose the entry. */
	opsdata_check_schema();

	item = audit_item_new(
		class, GetCommandTagName(CreateCommandTag((Node *) stmt)), by_class);
	item->queryDesc = queryDesc;
	item->source = queryDesc->sourceText;
	item->location = stmt->stmt_location;
	item->len = stmt->stmt_len;
	item->running = 1;
	if (item->source != NULL)
	{
		const char *text;
		int len;

		/*
		 * A secret set_config() value is redacted (a redacted text keeps no
		 * constants); the constants parse analysis found in this text, if
		 * known.
		 */
		item->text =
			audit_redact_set_config(item->source, item->location, item->len);
		audit_statement_bounds(item->source, item->location, item->len, &text,
							   &len);
		item->nconsts =
			audit_shapes_lookup(text, len, item->source, &item->consts,
								&item->param_base, item->cxt);
	}

	foreach (lc, stmt->rtable)
	{
		RangeTblEntry *rte = (RangeTblEntry *) lfirst(lc);

		if (rte->rtekind != RTE_RELATION || rte->requiredPerms == 0)
			continue;
		if (!audit_relation_is_catalog(rte->relid))
			only_catalog = false;
		audit_item_add_object(item, audit_relation_name(rte->relid),
							  audit_privilege_text(rte->requiredPerms));
	}
	if (item->nobjects > 0 && only_catalog && !audit_catalog)
	{
		item->wanted_by_class = false;
		item->failed = true; /* never reported */
	}
	if (audit_log_parameters && queryDesc->params != NULL &&
		queryDesc->params->numParams > 0)
		item->params = BuildParamLogString(queryDesc->params, NULL,
										   audit_parameter_max_length);
}

/* After the standard ExecutorStart returned. */
void
audit_executor_started(QueryDesc *queryDesc)
{
	AuditItem *item;

	if (dlist_is_empty(&audit_items))
		return;
	item = audit_find_item(queryDesc);
	if (item != NULL)
		item->running--;
}

void
audit_executor_run_begin(QueryDesc *queryDesc)
{
	AuditItem *item;

	if (dlist_is_empty(&audit_items))
		return;
	item = audit_find_item(queryDesc);
	if (item != NULL)
		item->running++;
}

void
audit_executor_run_end(QueryDesc *queryDesc, bool run)
{
	AuditItem *item;

	if (dlist_is_empty(&audit_items))
		return;
	item = audit_find_item(queryDesc);
	if (item == NULL)
		return;
	item->running--;
	/* Each run of a portal (a FETCH) counts its own rows. */
	if (run && queryDesc->estate != NULL)
		item->rows += queryDesc->estate->es_processed;
}

/*
 * Called by the ExecutorEnd hook before the standard ExecutorEnd: the
 * statement (or cursor) completed.
 */
void
audit_executor_end(QueryDesc *queryDesc)
{
	AuditItem *item;

	if (dlist_is_empty(&audit_items))
		return;
	item = audit_find_item(queryDesc);
	if (item == NULL)
		return;
	audit_item_finish(item, item->rows, true);
}

/* --- utility ------------------------------------------------------------ */

/*
 * Called by the ProcessUtility hook before the statement runs.  Returns the
 * item to pass to audit_utility_end(), or NULL when it is not audited.
 */
void *
audit_utility_begin(PlannedStmt *pstmt, const char *queryString,
					ProcessUtilityContext context, ParamListInfo params)
{
	Node *parsetree = pstmt->utilityStmt;
	int class;
	bool by_class;
	bool always;
	bool resolves_prepared;
	AuditItem *item;

	/* Parts of a statement (CREATE TABLE's index...) are the statement's. */
	if (context == PROCESS_UTILITY_SUBCOMMAND || !audit_capture_active())
		return NULL;
	if (!opsdata_schema_refused())
		audit_flush_deferred(true);

	class = audit_utility_class(parsetree);
	always = audit_is_settings_change(parsetree);
	/*
	 * COMMIT PREPARED and ROLLBACK PREPARED may end a transaction that holds
	 * audit.rules (it dropped the extension): reading the rules first would
	 * wait for it forever.  Their item is made, and the rules applied once
	 * they ran (audit_item_finish).
	 */
	resolves_prepared =
		IsA(parsetree, TransactionStmt) &&
		(((TransactionStmt *) parsetree)->kind == TRANS_STMT_COMMIT_PREPARED ||
		 ((TransactionStmt *) parsetree)->kind ==
			 TRANS_STMT_ROLLBACK_PREPARED);
	if (!always && !resolves_prepared &&
		!audit_class_may_be_wanted(class, &by_class) &&
		!(nodeTag(parsetree) == T_CallStmt &&
		  (audit_classes & AUDIT_BIT(AUDIT_CLASS_FUNCTION))))
		return NULL;
	by_class = (audit_classes & AUDIT_BIT(class)) != 0;
	/*
	 * Objects too old for the library: refuse rather than lose the entry,
	 * except the statements that update or remove the extension.
	 */
	if (!audit_is_extension_command(parsetree))
		opsdata_check_schema();

	item = audit_item_new(
		class, GetCommandTagName(CreateCommandTag(parsetree)), by_class);
	item->source = queryString;
	item->location = pstmt->stmt_location;
	item->len = pstmt->stmt_len;
	item->running = 1;
	item->is_call = nodeTag(parsetree) == T_CallStmt;
	if (always)
		item->flags |= AUDIT_EVENT_ALWAYS;
	if (nodeTag(parsetree) == T_TransactionStmt)
		item->flags |= AUDIT_EVENT_TXN_CONTROL;
	if (queryString != NULL && audit_needs_redaction(parsetree))
		item->text = audit_redact_at(parsetree, queryString,
									 pstmt->stmt_location, pstmt->stmt_len);
	else if (queryString != NULL)
		item->text = audit_redact_set_config(queryString, pstmt->stmt_location,
											 pstmt->stmt_len);

	{
		List *objects = audit_utility_objects(parsetree);
		ListCell *lc;

		foreach (lc, objects)
		{
			AuditObject *obj = (AuditObject *) lfirst(lc);

			audit_item_add_object(item, obj->name, obj->privilege);
		}
	}
	return item;
}

/*
 * Called by the ProcessUtility hook after the statement completed.
 */
void
audit_utility_end(void *arg, QueryCompletion *qc)
{
	AuditItem *item = (AuditItem *) arg;

	if (item == NULL || !item->linked)
		return;
	item->running--;
	audit_item_finish(
		item, qc ? (int64) qc->nprocessed : 0,
		qc != NULL &&
			(qc->commandTag == CMDTAG_COPY ||
			 qc->commandTag == CMDTAG_SELECT ||
			 qc->commandTag == CMDTAG_CREATE_TABLE_AS ||
			 qc->commandTag == CMDTAG_SELECT_INTO ||
			 qc->commandTag == CMDTAG_REFRESH_MATERIALIZED_VIEW ||
			 qc->commandTag == CMDTAG_FETCH || qc->commandTag == CMDTAG_MOVE));
}

/*
 * Identities of the objects a DDL statement created, altered or dropped,
 * from the event triggers: they join the innermost running utility item.
 */
void
audit_ddl_objects(List *identities)
{
	dlist_iter iter;
	ListCell *lc;

	dlist_foreach(iter, &audit_items)
	{
		AuditItem *item = dlist_container(AuditItem, node, iter.cur);

		if (item->queryDesc != NULL || item->running <= 0)
			continue;
		foreach (lc, identities)
			audit_item_add_object(item, (const char *) lfirst(lc), NULL);
		return;
	}
}

/*
 * Is a utility statement being audited right now (for the event triggers)?
 */
bool
audit_utility_running(void)
{
	dlist_iter iter;

	dlist_foreach(iter, &audit_items)
	{
		AuditItem *item = dlist_container(AuditItem, node, iter.cur);

		if (item->queryDesc == NULL && item->running > 0)
			return true;
	}
	return false;
}

/* --- functions ---------------------------------------------------------- */

/*
 * A function is about to be executed (object access hook).  User functions
 * join the innermost running item; a CALL records its procedure as its
 * object instead.
 */
void
audit_function_called(Oid funcid)
{
	AuditItem *item;
	MemoryContext old;
	char *name;
	ListCell *lc;

	if (funcid < FirstNormalObjectId || dlist_is_empty(&audit_items) ||
		audit_internal())
		return;
	item = dlist_container(AuditItem, node, dlist_head_node(&audit_items));
	if (item->failed)
		return;
	if (item->is_call)
	{
		if (item->nobjects == 0)
			audit_item_add_object(item, format_procedure_qualified(funcid),
								  "EXECUTE");
		return;
	}
	if (!(audit_classes & AUDIT_BIT(AUDIT_CLASS_FUNCTION)) &&
		!audit_rules_may_include())
		return;
	if (audit_is_our_namespace(get_func_namespace(funcid)))
		return;
	name = format_procedure_qualified(funcid);
	foreach (lc, item->functions)
	{
		if (strcmp((const char *) lfirst(lc), name) == 0)
			return;
	}
	old = MemoryContextSwitchTo(item->cxt);
	item->functions = lappend(item->functions, pstrdup(name));
	MemoryContextSwitchTo(old);
}

/* --- errors ------------------------------------------------------------- */

static int
audit_error_outcome(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE ? AUDIT_OUTCOME_DENIED
														: AUDIT_OUTCOME_ERROR;
}

/* An error outside any audited statement: recorded from its text alone. */
static void
audit_unparsed_error(ErrorData *edata)
{
	const char *command;
	int class = audit_keyword_class(debug_query_string, &command);
	MemoryContext cxt;
	AuditEvent *ev;

	if (!(audit_classes & AUDIT_BIT(class)) && !audit_rules_may_include())
		return;
	cxt = audit_event_context();
	ev = audit_new_event(cxt, class, command);
	ev->outcome = audit_error_outcome(edata->sqlerrcode);
	ev->sqlstate = edata->sqlerrcode;
	if (audit_unparsed_may_hold_secret(debug_query_string))
		ev->statement = MemoryContextStrdup(
			cxt,
			psprintf(
				"%s ... (not recorded: the statement was not parsed and may hold a secret)",
				command));
	else
	{
		/* As a parsed statement's text is: without blanks and semicolon. */
		ev->statement = audit_trimmed_copy(cxt, debug_query_string);
	}
	if (audit_rules_wanted(ev, GetUserId()))
		audit_add_event(ev);
}

/*
 * The running statements failed with edata: each becomes an event with
 * outcome "error" (or "denied") and the SQLSTATE.  Runs with the
 * reporting-error state set (active.c).
 */
static void
audit_error_reported(void *arg)
{
	ErrorData *edata = (ErrorData *) arg;
	dlist_iter iter;
	bool any = false;

	if (IsInitProcessingMode() && edata->elevel >= FATAL)
	{
		audit_login_failed(edata);
		return;
	}
	if (!IsNormalProcessingMode() || audit_internal() ||
		RecoveryInProgress() || audit_extension_known_absent() ||
		opsdata_schema_refused())
		return;

	audit_ensure_contexts();
	dlist_foreach(iter, &audit_items)
	{
		AuditItem *item = dlist_container(AuditItem, node, iter.cur);
		int outcome = audit_error_outcome(edata->sqlerrcode);

		if (item->running <= 0 || item->failed)
			continue;
		item->failed = true;
		any = true;
		if (item->wanted_by_class || (item->flags & AUDIT_EVENT_ALWAYS) ||
			audit_rules_may_include())
		{
			AuditEvent *ev = audit_item_event(item, item->class, item->command,
											  outcome, edata->sqlerrcode);

			if (audit_rules_wanted(ev, GetUserId()))
				audit_add_event(ev);
		}
		audit_item_function_events(item, outcome, edata->sqlerrcode);
	}
	if (!any && debug_query_string != NULL)
		audit_unparsed_error(edata);
}

/*
 * emit_log_hook: an ERROR (or worse) is being reported.  The running
 * statements failed; a failure during connection set-up is a failed login.
 */
void
audit_error(ErrorData *edata)
{
	if (edata->elevel < ERROR || !opsdata_preloaded || !audit_user_process())
		return;
	audit_run_reporting_error(audit_error_reported, edata);
}

/*
 * A subtransaction is being aborted: the items it started are gone; those
 * still running failed with an error that was caught (its SQLSTATE is
 * gone) and are recorded as errors.
 */
void
audit_items_subxact_abort(SubTransactionId mySubid)
{
	dlist_mutable_iter iter;

	dlist_foreach_modify(iter, &audit_items)
	{
		AuditItem *item = dlist_container(AuditItem, node, iter.cur);

		if (item->subid < mySubid)
			continue;
		/* Failed with an error that was caught (its SQLSTATE is gone). */
		if (item->running > 0 && !item->failed &&
			(item->wanted_by_class || (item->flags & AUDIT_EVENT_ALWAYS)))
		{
			AuditEvent *ev = audit_item_event(item, item->class, item->command,
											  AUDIT_OUTCOME_ERROR, 0);

			ev->subid = item->subid;
			if (audit_rules_wanted(ev, GetUserId()))
				audit_add_event(ev);
		}
		audit_item_unlink(item);
	}
}
