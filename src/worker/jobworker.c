/*-------------------------------------------------------------------------
 *
 * jobworker.c
 *		A job worker: runs one due job, or one entry a session asked for,
 *		then exits.
 *
 * The scheduler reserves a slot and starts the worker with the job's id,
 * the role to connect as, and when the job is due, a little before it is
 * (WORKER_DISPATCH_LEAD_MS).  The worker claims the slot (it exits at once
 * if the database is held for DROP DATABASE or the like), connects as the
 * job's role (built-in jobs: the extension owner), so that session_user is
 * the job's role and what the job does is audited as that role's, waits
 * for the due time, and hands over to the runner (runner.c): lock, crash
 * marker, the command as top-level statements, recording.  When the job's
 * role may not connect (it is gone, or may not log in), the scheduler
 * passes no role: the worker connects as the bootstrap superuser and the
 * runner only records the failed run.
 *
 * search_path is pg_catalog, pg_temp whatever the database's or the role's
 * settings say (opsdata_worker_connect); the command may SET its own.
 * application_name is "pg_opsdata job <name>" while the job runs.
 *
 * A session that runs an entry now (worker_run_entry, entry.c) starts a
 * job worker with worker_entry_main(): it takes no slot, connects as the
 * role the session named, maps the segment of a waiting caller, runs the
 * entry with statement_timeout off, and exits.  Its type, and its
 * application_name, are "pg_opsdata <entry name>".  An error is logged and
 * ends the worker; a waiting caller then sees it end without "done".
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
#include "storage/ipc.h"
#include "utils/guc.h"
#include "utils/memutils.h"

#include "core/opsdata.h"
#include "core/privileged.h"
#include "worker/worker_int.h"

/*
 * Main function of a job worker.  main_arg is the slot its scheduler
 * reserved; bgw_extra holds the slot's generation, the database, the job
 * and its role.
 */
void
worker_job_main(Datum main_arg)
{
	WorkerStartArgs args;
	MemoryContext cxt;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	opsdata_worker_init();
	if (worker_claim_slot(DatumGetInt32(main_arg), args.generation,
						  WORKER_SLOT_JOB) == NULL)
		proc_exit(0);
	opsdata_worker_connect(args.dboid, args.role);

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
		worker_run_in_job_worker(args.job_id, args.role);
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
 * Main function of a job worker started by worker_run_entry(): main_arg is
 * the handle of the waiting caller's segment (DSM_HANDLE_INVALID when
 * nobody waits), bgw_extra the entry, its argument, the database and the
 * role.
 */
void
worker_entry_main(Datum main_arg)
{
	WorkerEntryArgs args;
	const WorkerEntry *entry;
	dsm_handle handle = DatumGetUInt32(main_arg);

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	opsdata_worker_init();
	entry = worker_find_entry(args.name);
	if (entry == NULL)
		elog(ERROR, "pg_opsdata job entry \"%s\" is not registered",
			 args.name);
	if (handle != DSM_HANDLE_INVALID)
		worker_entry_attach(handle);
	opsdata_worker_connect(args.dboid, args.role);
	SetConfigOption("statement_timeout", "0", PGC_USERSET, PGC_S_SESSION);

	entry->run(args.arg);

	worker_entry_done(0);
	pgstat_report_activity(STATE_IDLE, NULL);
	proc_exit(0);
}
