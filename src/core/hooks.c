/*-------------------------------------------------------------------------
 *
 * hooks.c
 *		One ProcessUtility hook, one object access hook and one pair of
 *		transaction callbacks for the whole library, dispatching to the
 *		areas' handlers in a stated order.
 *
 * An area registers its handler from its *_init() in the place that
 * OpsdataUtilityOrder, OpsdataObjectAccessOrder or OpsdataXactOrder
 * (core/opsdata.h) gives it; that order, not the order of the calls in
 * _PG_init(), is the order of execution, and the header says why each
 * area sits where it does.  The core installs each PostgreSQL hook once,
 * when the first handler for it is registered, chaining to the hook it
 * found there (the libraries loaded before pg_opsdata).
 *
 * ProcessUtility handlers nest, outermost first: each has the signature of
 * ProcessUtility_hook and continues the statement by calling
 * opsdata_utility_next() with its arguments, which runs the next handler,
 * and after the last one the hooks of the libraries loaded before
 * pg_opsdata (or standard_ProcessUtility).  A handler may act before and
 * after that call, or not make it: then neither the handlers after it nor
 * the other libraries' hooks see the statement.  Two handlers do that, on
 * purpose: metrics, for a COPY into metrics.ingest that it reads itself
 * (ingest_copy.c), and partition, for a statement of a restore that would
 * make again what ATTACH PARTITION already made (restore.c).  Every other
 * statement reaches the other libraries' hooks.  Which handler runs is
 * kept in opsdata_utility_current, saved and restored around each call
 * (errors included), so that statements run from inside a statement
 * dispatch from the start again.
 *
 * Object access handlers run after the hooks of the libraries loaded
 * before pg_opsdata, in order.  Transaction and subtransaction handlers
 * run in order from the library's single callback of each kind.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/hooks.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "miscadmin.h"
#include "tcop/utility.h"

#include "core/opsdata.h"

static ProcessUtility_hook_type prev_ProcessUtility = NULL;
static object_access_hook_type prev_object_access_hook = NULL;

static ProcessUtility_hook_type
	opsdata_utility_handlers[OPSDATA_UTILITY_NHANDLERS];
static object_access_hook_type
	opsdata_object_access_handlers[OPSDATA_OBJECT_ACCESS_NHANDLERS];
static XactCallback opsdata_xact_handlers[OPSDATA_XACT_NHANDLERS];
static SubXactCallback opsdata_subxact_handlers[OPSDATA_XACT_NHANDLERS];

static bool opsdata_utility_installed = false;
static bool opsdata_object_access_installed = false;
static bool opsdata_xact_registered = false;
static bool opsdata_subxact_registered = false;

/* The ProcessUtility handler running (its order), or -1. */
static int opsdata_utility_current = -1;

static void opsdata_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
								   bool readOnlyTree,
								   ProcessUtilityContext context,
								   ParamListInfo params,
								   QueryEnvironment *queryEnv,
								   DestReceiver *dest, QueryCompletion *qc);
static void opsdata_object_access(ObjectAccessType access, Oid classId,
								  Oid objectId, int subId, void *arg);
static void opsdata_xact_callback(XactEvent event, void *arg);
static void opsdata_subxact_callback(SubXactEvent event,
									 SubTransactionId mySubid,
									 SubTransactionId parentSubid, void *arg);

/*
 * Register an area's ProcessUtility handler in its place.  Only while the
 * library is preloaded: the first registration installs the hook.
 */
void
opsdata_register_utility(OpsdataUtilityOrder order,
						 ProcessUtility_hook_type handler)
{
	Assert(order >= 0 && order < OPSDATA_UTILITY_NHANDLERS);
	if (!process_shared_preload_libraries_in_progress)
		elog(ERROR, "pg_opsdata utility handler registered outside "
					"shared_preload_libraries");
	opsdata_utility_handlers[order] = handler;
	if (!opsdata_utility_installed)
	{
		prev_ProcessUtility = ProcessUtility_hook;
		ProcessUtility_hook = opsdata_ProcessUtility;
		opsdata_utility_installed = true;
	}
}

/*
 * Register an area's object access handler in its place.  Only while the
 * library is preloaded: the first registration installs the hook.
 */
void
opsdata_register_object_access(OpsdataObjectAccessOrder order,
							   object_access_hook_type handler)
{
	Assert(order >= 0 && order < OPSDATA_OBJECT_ACCESS_NHANDLERS);
	if (!process_shared_preload_libraries_in_progress)
		elog(ERROR, "pg_opsdata object access handler registered outside "
					"shared_preload_libraries");
	opsdata_object_access_handlers[order] = handler;
	if (!opsdata_object_access_installed)
	{
		prev_object_access_hook = object_access_hook;
		object_access_hook = opsdata_object_access;
		opsdata_object_access_installed = true;
	}
}

/*
 * Register an area's transaction handler, and its subtransaction handler
 * (or NULL), in their place.  Also when the library is loaded on demand:
 * the first registration in a process registers the library's callback.
 */
void
opsdata_register_xact(OpsdataXactOrder order, XactCallback handler,
					  SubXactCallback subhandler)
{
	Assert(order >= 0 && order < OPSDATA_XACT_NHANDLERS);
	opsdata_xact_handlers[order] = handler;
	opsdata_subxact_handlers[order] = subhandler;
	if (handler != NULL && !opsdata_xact_registered)
	{
		RegisterXactCallback(opsdata_xact_callback, NULL);
		opsdata_xact_registered = true;
	}
	if (subhandler != NULL && !opsdata_subxact_registered)
	{
		RegisterSubXactCallback(opsdata_subxact_callback, NULL);
		opsdata_subxact_registered = true;
	}
}

/*
 * Run the ProcessUtility handler in place i, noting that it runs for
 * opsdata_utility_next() until it returns or fails.
 */
static void
opsdata_utility_call(int i, PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	int saved = opsdata_utility_current;

	opsdata_utility_current = i;
	PG_TRY();
	{
		opsdata_utility_handlers[i](pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		opsdata_utility_current = saved;
	}
	PG_END_TRY();
}

/*
 * Run the ProcessUtility handlers from the one in place "from" on; after
 * the last, the hooks of the libraries loaded before pg_opsdata.
 */
static void
opsdata_utility_run(int from, PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	int i;

	for (i = from; i < OPSDATA_UTILITY_NHANDLERS; i++)
	{
		if (opsdata_utility_handlers[i] != NULL)
		{
			opsdata_utility_call(i, pstmt, queryString, readOnlyTree, context,
								 params, queryEnv, dest, qc);
			return;
		}
	}
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

static void
opsdata_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	opsdata_utility_run(0, pstmt, queryString, readOnlyTree, context, params,
						queryEnv, dest, qc);
}

/*
 * Called by a ProcessUtility handler, with the arguments it got, to go on
 * with the statement: the next handlers, then the other libraries' hooks
 * and the statement itself.
 */
void
opsdata_utility_next(PlannedStmt *pstmt, const char *queryString,
					 bool readOnlyTree, ProcessUtilityContext context,
					 ParamListInfo params, QueryEnvironment *queryEnv,
					 DestReceiver *dest, QueryCompletion *qc)
{
	Assert(opsdata_utility_current >= 0);
	opsdata_utility_run(opsdata_utility_current + 1, pstmt, queryString,
						readOnlyTree, context, params, queryEnv, dest, qc);
}

static void
opsdata_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					  int subId, void *arg)
{
	int i;

	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);
	for (i = 0; i < OPSDATA_OBJECT_ACCESS_NHANDLERS; i++)
	{
		if (opsdata_object_access_handlers[i] != NULL)
			opsdata_object_access_handlers[i](access, classId, objectId, subId,
											  arg);
	}
}

static void
opsdata_xact_callback(XactEvent event, void *arg)
{
	int i;

	for (i = 0; i < OPSDATA_XACT_NHANDLERS; i++)
	{
		if (opsdata_xact_handlers[i] != NULL)
			opsdata_xact_handlers[i](event, NULL);
	}
}

static void
opsdata_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						 SubTransactionId parentSubid, void *arg)
{
	int i;

	for (i = 0; i < OPSDATA_XACT_NHANDLERS; i++)
	{
		if (opsdata_subxact_handlers[i] != NULL)
			opsdata_subxact_handlers[i](event, mySubid, parentSubid, NULL);
	}
}
