/*-------------------------------------------------------------------------
 *
 * jobworker.c
 *		A job worker: runs one due job as a top-level CALL, then exits.
 *
 * The scheduler reserves a slot and starts the worker with the job's id,
 * a little before the job is due (WORKER_DISPATCH_LEAD_MS).  The worker
 * claims the slot (it exits at once if the database is held for DROP
 * DATABASE or the like), connects as the bootstrap superuser, waits for the
 * due time, and runs
 *
 *     CALL opsdata._run_scheduled_job(<job>)
 *
 * through a portal, exactly as if a client had sent it: the statement is
 * top-level and outside a transaction block, so the CALL is non-atomic and
 * a procedure in the job's command may COMMIT (a call made through SPI from
 * C would have no active portal, which a procedure needs once it has
 * committed).  runner.c does the rest: lock, crash marker, command as the
 * job's role, recording, application_name naming the job.
 *
 * A failure of the job has been recorded by the runner before its error
 * reaches the top here; it is logged once and the worker exits normally.
 * Any other error is logged and the worker exits with code 1; the
 * scheduler then finds the run (if one was started) with a free lock and
 * records it as crashed.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/worker/jobworker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"

#include "core/opsdata.h"
#include "worker/worker_int.h"

static void jobworker_execute(const char *sql);

/*
 * Main function of a job worker.  main_arg is the slot its scheduler
 * reserved; bgw_extra holds the slot's generation, the database and the
 * job.
 */
void
worker_job_main(Datum main_arg)
{
	WorkerStartArgs args;
	MemoryContext cxt;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	if (worker_claim_slot(DatumGetInt32(main_arg), args.generation,
						  WORKER_SLOT_JOB) == NULL)
		proc_exit(0);

	BackgroundWorkerInitializeConnectionByOid(args.dboid, InvalidOid, 0);
	SetConfigOption("application_name", WORKER_JOB_TYPE, PGC_USERSET,
					PGC_S_SESSION);
	worker_is_job_worker = true;

	/* Started ahead of time: wait until the job is due. */
	for (;;)
	{
		long delay =
			TimestampDifferenceMilliseconds(GetCurrentTimestamp(), args.due);

		CHECK_FOR_INTERRUPTS();
		if (delay <= 0 && GetCurrentTimestamp() >= args.due)
			break;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(delay, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}

	cxt = AllocSetContextCreate(TopMemoryContext, "pg_opsdata job worker",
								ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);

	PG_TRY();
	{
		jobworker_execute(psprintf("CALL opsdata._run_scheduled_job(%lld)",
								   (long long) args.job_id));
	}
	PG_CATCH();
	{
		HOLD_INTERRUPTS();
		EmitErrorReport();
		AbortOutOfAnyTransaction();
		FlushErrorState();
		RESUME_INTERRUPTS();
		proc_exit(worker_run_recorded ? 0 : 1);
	}
	PG_END_TRY();

	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}

/*
 * Run one SQL statement the way the simple query protocol does: parsed,
 * planned and run through an unnamed portal as a top-level statement, in a
 * transaction committed at the end.
 */
static void
jobworker_execute(const char *sql)
{
	MemoryContext cxt = CurrentMemoryContext;
	RawStmt *parsetree;
	List *querytrees;
	List *plantrees;
	Portal portal;
	DestReceiver *receiver;
	QueryCompletion qc;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_RUNNING, sql);

	parsetree = linitial_node(RawStmt, pg_parse_query(sql));
	PushActiveSnapshot(GetTransactionSnapshot());
	querytrees =
		pg_analyze_and_rewrite_fixedparams(parsetree, sql, NULL, 0, NULL);
	plantrees = pg_plan_queries(querytrees, sql, CURSOR_OPT_PARALLEL_OK, NULL);
	PopActiveSnapshot();

	portal = CreatePortal("", true, true);
	portal->visible = false;
	PortalDefineQuery(portal, NULL, sql, CreateCommandTag(parsetree->stmt),
					  plantrees, NULL);
	PortalStart(portal, NULL, 0, InvalidSnapshot);

	receiver = CreateDestReceiver(DestNone);
	InitializeQueryCompletion(&qc);
	(void) PortalRun(portal, FETCH_ALL, true, true, receiver, receiver, &qc);
	receiver->rDestroy(receiver);
	PortalDrop(portal, false);

	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
}
