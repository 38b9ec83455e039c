/*-------------------------------------------------------------------------
 *
 * hooks.c
 *		The audit area's entry point and its hooks, chained and thin.
 *
 * audit_init() defines the pg_opsdata.audit* settings and registers the
 * closed-day indexer's job entry (indexer.c) in every process; only when
 * the library is preloaded does it register the queue's shared
 * memory and install the hooks.  Each hook hands over to capture.c (or
 * to the previous hook) and does nothing else:
 *
 *	post_parse_analyze_hook			the constants of analyzed statements
 *									(shapes.c)
 *	ExecutorStart/Run/Finish/End	statements that go through the executor
 *	ProcessUtility					utility statements (a handler of the
 *									core's hook: src/core/hooks.c)
 *	object_access_hook				calls of user functions (the same)
 *	needs_fmgr_hook, fmgr_hook		the extension's own functions run
 *									(active.c), so their statements are
 *									not audited
 *	emit_log_hook					failed statements and failed logins
 *	ClientAuthentication_hook		logins (and the disconnect that follows)
 *	transaction callbacks			pre-commit writes, rollbacks, the queue
 *									(the same)
 *
 * The transaction callbacks are the one place that says in which order the
 * files of the area learn of a transaction's end: the pending login, then
 * the events (pre-commit writes), the drained part of the queue, the
 * caches of stored texts, and last the events again (rolled back ones are
 * queued).
 *
 * A DROP EXTENSION pg_opsdata takes the database's audit queue with it
 * when it commits; a prepared one, when COMMIT PREPARED commits it (the
 * ProcessUtility handler sees it go), never at PREPARE, since ROLLBACK
 * PREPARED keeps the trail and what is queued for it.
 *
 * It also registers the drain of the audit queue and the sealing of new
 * entries as services of every scheduler (src/worker/worker.h), and hooks
 * the retention seals into partition maintenance (seal.c).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/hooks.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "audit/port.h"

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_proc.h"
#include "commands/extension.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "libpq/auth.h"
#include "miscadmin.h"
#include "parser/analyze.h"
#include "tcop/utility.h"

#include "audit/audit.h"
#include "audit/seal.h"
#include "core/opsdata.h"
#include "worker/worker.h"

static post_parse_analyze_hook_type prev_post_parse_analyze_hook = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;
static needs_fmgr_hook_type prev_needs_fmgr_hook = NULL;
static fmgr_hook_type prev_fmgr_hook = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;
static ClientAuthentication_hook_type prev_ClientAuthentication = NULL;

static void
opsdata_post_parse_analyze(ParseState *pstate, Query *query,
						   JumbleState *jstate)
{
	if (prev_post_parse_analyze_hook)
		prev_post_parse_analyze_hook(pstate, query, jstate);
	audit_shapes_parsed(pstate, query, jstate);
}

static void
opsdata_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	audit_executor_start(queryDesc, eflags);
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
	audit_executor_started(queryDesc);
}

static void
opsdata_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction,
					uint64 count, bool execute_once)
{
	audit_executor_run_begin(queryDesc);
	if (prev_ExecutorRun)
		prev_ExecutorRun(queryDesc, direction, count, execute_once);
	else
		standard_ExecutorRun(queryDesc, direction, count, execute_once);
	audit_executor_run_end(queryDesc, true);
}

static void
opsdata_ExecutorFinish(QueryDesc *queryDesc)
{
	audit_executor_run_begin(queryDesc);
	if (prev_ExecutorFinish)
		prev_ExecutorFinish(queryDesc);
	else
		standard_ExecutorFinish(queryDesc);
	audit_executor_run_end(queryDesc, false);
}

static void
opsdata_ExecutorEnd(QueryDesc *queryDesc)
{
	audit_executor_end(queryDesc);
	if (prev_ExecutorEnd)
		prev_ExecutorEnd(queryDesc);
	else
		standard_ExecutorEnd(queryDesc);
}

static void
audit_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	void *item = audit_utility_begin(pstmt, queryString, context, params);
	bool commit_prepared = IsA(pstmt->utilityStmt, TransactionStmt) &&
						   ((TransactionStmt *) pstmt->utilityStmt)->kind ==
							   TRANS_STMT_COMMIT_PREPARED &&
						   OidIsValid(get_extension_oid(OPSDATA_NAME, true));

	opsdata_utility_next(pstmt, queryString, readOnlyTree, context, params,
						 queryEnv, dest, qc);
	if (commit_prepared)
		audit_note_prepared_drop();
	audit_utility_end(item, qc);
}

static void
audit_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					int subId, void *arg)
{
	if (access == OAT_FUNCTION_EXECUTE && classId == ProcedureRelationId)
		audit_function_called(objectId);
	else if (access == OAT_DROP && classId == ExtensionRelationId &&
			 objectId == get_extension_oid(OPSDATA_NAME, true))
		audit_note_extension_dropped();
}

static bool
opsdata_needs_fmgr_hook(Oid fn_oid)
{
	if (prev_needs_fmgr_hook && prev_needs_fmgr_hook(fn_oid))
		return true;
	return audit_fmgr_needed(fn_oid);
}

static void
opsdata_fmgr_hook(FmgrHookEventType event, FmgrInfo *flinfo, Datum *arg)
{
	if (prev_fmgr_hook)
		prev_fmgr_hook(event, flinfo, arg);
	audit_fmgr_event(event, flinfo, arg, prev_fmgr_hook == NULL);
}

static void
opsdata_emit_log(ErrorData *edata)
{
	audit_error(edata);
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

static void
opsdata_ClientAuthentication(Port *port, int status)
{
	if (prev_ClientAuthentication)
		prev_ClientAuthentication(port, status);
	audit_login(port, status);
}

/*
 * Transaction callback: the end of a transaction, told to each file in
 * turn.
 */
void
audit_xact_callback(XactEvent event, void *arg)
{
	audit_login_settled();
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			audit_events_pre_commit();
			break;
		case XACT_EVENT_PRE_PREPARE:
			audit_drain_check_prepare();
			audit_events_pre_commit();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			audit_queue_release(true);
			audit_drain_end_xact(true);
			audit_statements_end_xact(event == XACT_EVENT_COMMIT);
			audit_events_end_xact(true, event == XACT_EVENT_PREPARE);
			break;
		case XACT_EVENT_ABORT:
			audit_queue_release(false);
			audit_drain_end_xact(false);
			audit_statements_end_xact(false);
			audit_events_end_xact(false, false);
			break;
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			break;
	}
	audit_pq_xact_end(event);
}

/*
 * Subtransaction callback: at a savepoint's rollback, the events of its
 * finished statements become "rolled back", those still running "error",
 * and the texts it stored are forgotten.
 */
void
audit_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	audit_events_subxact_abort(mySubid);
	audit_items_subxact_abort(mySubid);
	audit_statements_end_subxact();
	audit_drain_end_subxact(mySubid);
	audit_pq_subxact_abort();
}

/*
 * Install the hooks and transaction callbacks.  Preloaded only.
 */
void
audit_install_hooks(void)
{
	prev_post_parse_analyze_hook = post_parse_analyze_hook;
	post_parse_analyze_hook = opsdata_post_parse_analyze;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = opsdata_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = opsdata_ExecutorRun;
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = opsdata_ExecutorFinish;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = opsdata_ExecutorEnd;
	opsdata_register_utility(OPSDATA_UTILITY_AUDIT, audit_ProcessUtility);
	opsdata_register_object_access(OPSDATA_OBJECT_ACCESS_AUDIT,
								   audit_object_access);
	prev_needs_fmgr_hook = needs_fmgr_hook;
	needs_fmgr_hook = opsdata_needs_fmgr_hook;
	prev_fmgr_hook = fmgr_hook;
	fmgr_hook = opsdata_fmgr_hook;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = opsdata_emit_log;
	prev_ClientAuthentication = ClientAuthentication_hook;
	ClientAuthentication_hook = opsdata_ClientAuthentication;

	opsdata_register_xact(OPSDATA_XACT_AUDIT, audit_xact_callback,
						  audit_subxact_callback);
}

/* Every scheduler drains its database's queue (drain.c). */
static const WorkerService audit_drain_service_def = {"audit queue drain",
													  audit_drain_service};
/* ... and seals its database's new entries (seal.c). */
static const WorkerService audit_seal_service_def = {"audit sealing",
													 audit_seal_service};

/*
 * The audit area's entry point, called from _PG_init().
 */
void
audit_init(void)
{
	audit_define_gucs();
	audit_pq_init();
	audit_indexer_init();
	audit_seal_define_gucs();
	audit_seal_init();
	if (!opsdata_preloaded)
		return;
	audit_queue_init();
	audit_ids_init();
	audit_statements_init();
	audit_text_cache_init();
	audit_classify_init();
	audit_active_init();
	audit_rules_init();
	audit_writer_init();
	audit_shapes_init();
	audit_install_hooks();
	worker_register_service(&audit_drain_service_def);
	worker_register_service(&audit_seal_service_def);
}
