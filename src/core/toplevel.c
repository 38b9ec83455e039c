/*-------------------------------------------------------------------------
 *
 * toplevel.c
 *		Top-level statements in a background worker: the one portal runner.
 *
 * Some statements pg_opsdata runs may not run inside a transaction block
 * or a function: CREATE INDEX CONCURRENTLY, DETACH PARTITION ...
 * CONCURRENTLY, a procedure that COMMITs.  They run in a background worker
 * of this library (a job worker), whose session is its own, and there
 * opsdata_toplevel_exec() runs them as a client's simple query is run:
 * each statement through an unnamed portal at top level, in a transaction
 * of its own (one implicit transaction block when the text holds several
 * statements), committed at the end.  The portal stays active across the
 * commits a statement makes itself, and event triggers that run SQL find
 * its snapshot.
 *
 * Rights: the statements run as the role the worker connected as, with
 * the search_path that opsdata_worker_connect() pinned for the process
 * (core/privileged.h).  A region with another role's rights cannot span a
 * commit, so none is entered here: the worker connects as the role whose
 * rights the statements need (the job's role, or the extension owner for
 * pg_opsdata's own work), and this function refuses to run in any other
 * process.
 *
 * Memory: parse, analysis and plan trees live in a context made under the
 * caller's, which must outlive transactions; it is deleted on success and
 * left to the caller's reset on error.  Errors propagate: the caller
 * aborts the transaction (AbortOutOfAnyTransaction) where it catches them.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/toplevel.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/analyze.h"
#include "pgstat.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"

#include "core/opsdata.h"
#include "core/privileged.h"

/*
 * One statement of the text: analyze, plan, run through an unnamed portal
 * to completion, results discarded.  more says whether statements follow
 * in the same transaction.
 */
static void
toplevel_run_statement(RawStmt *raw, const char *sql,
					   OpsdataToplevelCheck check, void *arg, bool more)
{
	MemoryContext stmtcxt = CurrentMemoryContext;
	bool snapshot_set = false;
	List *querytrees;
	List *plantrees;
	Portal portal;
	DestReceiver *receiver;
	QueryCompletion qc;

	if (check != NULL)
		check(raw, arg);
	if (analyze_requires_snapshot(raw))
	{
		PushActiveSnapshot(GetTransactionSnapshot());
		snapshot_set = true;
	}
	querytrees = pg_analyze_and_rewrite_fixedparams(raw, sql, NULL, 0, NULL);
	plantrees = pg_plan_queries(querytrees, sql, CURSOR_OPT_PARALLEL_OK, NULL);
	if (snapshot_set)
		PopActiveSnapshot();

	portal = CreatePortal("", true, true);
	portal->visible = false;
	PortalDefineQuery(portal, NULL, sql, CreateCommandTag(raw->stmt),
					  plantrees, NULL);
	PortalStart(portal, NULL, 0, InvalidSnapshot);
	receiver = CreateDestReceiver(DestNone);
	InitializeQueryCompletion(&qc);
	(void) PortalRun(portal, FETCH_ALL, true, true, receiver, receiver, &qc);
	receiver->rDestroy(receiver);
	PortalDrop(portal, false);
	MemoryContextSwitchTo(stmtcxt);
	if (more)
		CommandCounterIncrement();
}

/*
 * Run sql (one or more statements) as top-level statements of this
 * worker's session, in a transaction of its own, and commit.  check, when
 * not NULL, is called with each parsed statement before it runs and may
 * raise an error to refuse it.  Called outside any transaction, in a
 * background worker connected with opsdata_worker_connect().
 */
void
opsdata_toplevel_exec(const char *sql, OpsdataToplevelCheck check, void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	MemoryContext stmtcxt;
	List *parsetrees;
	ListCell *lc;
	bool implicit;

	if (!opsdata_worker_is_connected() || IsTransactionState())
		elog(ERROR, "top-level statements run only in a pg_opsdata worker, "
					"outside any transaction");

	stmtcxt = AllocSetContextCreate(cxt, "pg_opsdata top-level statement",
									ALLOCSET_DEFAULT_SIZES);
	debug_query_string = sql;
	pgstat_report_activity(STATE_RUNNING, sql);
	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		MemoryContextSwitchTo(stmtcxt);

		parsetrees = pg_parse_query(sql);
		implicit = list_length(parsetrees) > 1;
		if (implicit)
			BeginImplicitTransactionBlock();
		foreach (lc, parsetrees)
			toplevel_run_statement(lfirst_node(RawStmt, lc), sql, check, arg,
								   lnext(parsetrees, lc) != NULL);
		if (implicit)
			EndImplicitTransactionBlock();
		CommitTransactionCommand();
	}
	PG_FINALLY();
	{
		debug_query_string = NULL;
	}
	PG_END_TRY();

	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(cxt);
	MemoryContextDelete(stmtcxt);
}
