/*-------------------------------------------------------------------------
 *
 * hooks.c
 *		The audit area's entry point and its hooks, chained and thin.
 *
 * audit_init() defines the pg_opsdata.audit* settings in every process;
 * only when the library is preloaded does it register the queue's shared
 * memory and install the hooks.  Each hook hands over to capture.c (or
 * to the previous hook) and does nothing else:
 *
 *	ExecutorStart/Run/Finish/End	statements that go through the executor
 *	ProcessUtility					utility statements
 *	object_access_hook				calls of user functions
 *	needs_fmgr_hook, fmgr_hook		track when the extension's own
 *									functions run, so their statements
 *									are not audited
 *	emit_log_hook					failed statements and failed logins
 *	ClientAuthentication_hook		logins (and the disconnect that follows)
 *	transaction callbacks			pre-commit writes, rollbacks, the queue
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
#include "tcop/utility.h"
#include "utils/lsyscache.h"

#include "audit/audit.h"
#include "audit/seal.h"
#include "core/opsdata.h"
#include "worker/worker.h"

static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ExecutorEnd_hook_type prev_ExecutorEnd = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static object_access_hook_type prev_object_access_hook = NULL;
static needs_fmgr_hook_type prev_needs_fmgr_hook = NULL;
static fmgr_hook_type prev_fmgr_hook = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;
static ClientAuthentication_hook_type prev_ClientAuthentication = NULL;

/* One bit per nesting level of fmgr_hook calls: was it our function? */
static uint64 audit_fmgr_ours = 0;
static int audit_fmgr_level = 0;

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
opsdata_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	void *item = audit_utility_begin(pstmt, queryString, context, params);

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
	audit_utility_end(item, qc);
}

static void
opsdata_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					  int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
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
	return fn_oid >= FirstNormalObjectId &&
		   audit_is_our_namespace(get_func_namespace(fn_oid));
}

static void
opsdata_fmgr_hook(FmgrHookEventType event, FmgrInfo *flinfo, Datum *arg)
{
	if (prev_fmgr_hook)
		prev_fmgr_hook(event, flinfo, arg);
	switch (event)
	{
		case FHET_START:
		{
			/*
				 * *arg is the call site's private word for the fmgr hooks;
				 * it remembers whether the function is ours when no other
				 * hook shares it.
				 */
			Datum ours = *arg;

			if (prev_fmgr_hook != NULL || ours == (Datum) 0)
				ours = (flinfo->fn_oid >= FirstNormalObjectId &&
						audit_is_our_namespace(
							get_func_namespace(flinfo->fn_oid)))
						   ? (Datum) 1
						   : (Datum) 2;
			if (prev_fmgr_hook == NULL)
				*arg = ours;
			if (audit_fmgr_level < 64 && ours == (Datum) 1)
			{
				audit_fmgr_ours |= UINT64CONST(1) << audit_fmgr_level;
				audit_internal_depth++;
			}
			audit_fmgr_level++;
			break;
		}
		case FHET_END:
		case FHET_ABORT:
			if (audit_fmgr_level > 0)
				audit_fmgr_level--;
			if (audit_fmgr_level < 64 &&
				(audit_fmgr_ours & (UINT64CONST(1) << audit_fmgr_level)))
			{
				audit_fmgr_ours &= ~(UINT64CONST(1) << audit_fmgr_level);
				audit_internal_depth--;
			}
			break;
	}
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
 * Install the hooks and transaction callbacks.  Preloaded only.
 */
void
audit_install_hooks(void)
{
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = opsdata_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = opsdata_ExecutorRun;
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = opsdata_ExecutorFinish;
	prev_ExecutorEnd = ExecutorEnd_hook;
	ExecutorEnd_hook = opsdata_ExecutorEnd;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = opsdata_ProcessUtility;
	prev_object_access_hook = object_access_hook;
	object_access_hook = opsdata_object_access;
	prev_needs_fmgr_hook = needs_fmgr_hook;
	needs_fmgr_hook = opsdata_needs_fmgr_hook;
	prev_fmgr_hook = fmgr_hook;
	fmgr_hook = opsdata_fmgr_hook;
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = opsdata_emit_log;
	prev_ClientAuthentication = ClientAuthentication_hook;
	ClientAuthentication_hook = opsdata_ClientAuthentication;

	RegisterXactCallback(audit_xact_callback, NULL);
	RegisterSubXactCallback(audit_subxact_callback, NULL);
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
	audit_seal_define_gucs();
	audit_seal_init();
	if (!opsdata_preloaded)
		return;
	audit_queue_init();
	audit_statements_init();
	audit_text_cache_init();
	audit_classify_init();
	audit_active_init();
	audit_rules_init();
	audit_writer_init();
	audit_install_hooks();
	worker_register_service(&audit_drain_service_def);
	worker_register_service(&audit_seal_service_def);
}
