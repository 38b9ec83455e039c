/*-------------------------------------------------------------------------
 *
 * entry.c
 *		Job entries: C functions that job workers run, and how a session
 *		runs one now and waits for it.
 *
 * Work that must run outside the caller's transaction (statements at top
 * level such as CREATE INDEX CONCURRENTLY, or one transaction per step) is
 * an entry, registered by its area (worker.h).  It runs in a job worker,
 * the process that runs jobs, in one of two ways:
 *
 *	- scheduled: the built-in job whose command is the entry's command is
 *	  started by the scheduler like any job; its job worker (jobworker.c,
 *	  runner.c) calls the entry in place of running the SQL.  The run holds
 *	  one worker slot, and is recorded in opsdata.job_runs;
 *	- now, for a session: worker_run_entry() starts a job worker for the
 *	  entry (worker_entry_main() in jobworker.c) in the caller's database,
 *	  connected as the role it names, and may wait for it.  A waiting caller
 *	  and its worker share a small dynamic shared memory segment: the
 *	  worker sets "done" and a result when the entry calls
 *	  worker_entry_done(), and sets the caller's latch; the postmaster sets
 *	  it too when the worker ends (bgw_notify_pid).  The results themselves
 *	  are in the tables the entry wrote, committed before it says done.
 *	  Such a worker takes no slot of pg_opsdata.max_workers and needs no
 *	  preloading: it loads the library itself, and the areas register their
 *	  entries in every process.
 *
 * An entry says done before it ends when it has work left that would wait
 * for the caller's own transaction (FINALIZE of a concurrent detach waits
 * for older snapshots): the caller returns and the entry goes on.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/worker/entry.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "storage/proc.h"

#include "core/opsdata.h"
#include "worker/worker_int.h"

#define WORKER_MAX_ENTRIES 8

static const WorkerEntry *worker_entries[WORKER_MAX_ENTRIES];
static int worker_nentries = 0;

/* In a job worker started for a waiting caller: what they share. */
static WorkerEntryCall *entry_call = NULL;

/*
 * Register an entry (see worker.h).
 */
void
worker_register_entry(const WorkerEntry *entry)
{
	if (worker_nentries >= WORKER_MAX_ENTRIES)
		elog(ERROR, "too many pg_opsdata job entries");
	worker_entries[worker_nentries++] = entry;
}

/* The entry of that name, or NULL. */
const WorkerEntry *
worker_find_entry(const char *name)
{
	int i;

	for (i = 0; i < worker_nentries; i++)
	{
		if (strcmp(worker_entries[i]->name, name) == 0)
			return worker_entries[i];
	}
	return NULL;
}

/* The entry a built-in job with that command runs, or NULL. */
const WorkerEntry *
worker_entry_for_command(const char *command)
{
	int i;

	for (i = 0; i < worker_nentries; i++)
	{
		if (worker_entries[i]->command != NULL &&
			strcmp(worker_entries[i]->command, command) == 0)
			return worker_entries[i];
	}
	return NULL;
}

/*
 * Wait until the worker says done or ends.  The latch is set by the worker
 * (worker_entry_done) and by the postmaster when the worker ends.  An
 * error (a cancellation) terminates the worker.
 */
static WorkerEntryOutcome
entry_wait(WorkerEntryCall *call, BackgroundWorkerHandle *handle,
		   int64 *result)
{
	volatile WorkerEntryOutcome outcome = WORKER_ENTRY_EXITED;

	PG_TRY();
	{
		for (;;)
		{
			pid_t pid;

			if (pg_atomic_read_u32(&call->done) != 0)
			{
				pg_read_barrier();
				*result = call->result;
				outcome = WORKER_ENTRY_DONE;
				break;
			}
			if (GetBackgroundWorkerPid(handle, &pid) == BGWH_STOPPED)
			{
				if (pg_atomic_read_u32(&call->done) != 0)
					continue;
				break;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH, -1L,
							 PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		TerminateBackgroundWorker(handle);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return outcome;
}

/*
 * Start a job worker for entry now and, with wait, wait for it (see
 * worker.h).  Caller is in a transaction.
 */
WorkerEntryOutcome
worker_run_entry(const WorkerEntry *entry, Datum arg, Oid role, bool wait,
				 int64 *result)
{
	WorkerEntryArgs args;
	dsm_segment *seg = NULL;
	WorkerEntryCall *call = NULL;
	BackgroundWorkerHandle *handle;
	WorkerEntryOutcome outcome;
	char type[BGW_MAXLEN];

	memset(&args, 0, sizeof(args));
	args.dboid = MyDatabaseId;
	args.role = role;
	args.arg = arg;
	strlcpy(args.name, entry->name, sizeof(args.name));
	if (wait)
	{
		seg = dsm_create(sizeof(WorkerEntryCall), 0);
		call = dsm_segment_address(seg);
		call->caller = MyProc;
		call->result = 0;
		pg_atomic_init_u32(&call->done, 0);
	}
	snprintf(type, sizeof(type), "pg_opsdata %s", entry->name);
	handle = opsdata_start_worker("worker_entry_main", type, type,
								  UInt32GetDatum(seg != NULL
													 ? dsm_segment_handle(seg)
													 : DSM_HANDLE_INVALID),
								  &args, sizeof(args), wait);
	if (handle == NULL)
	{
		if (seg != NULL)
			dsm_detach(seg);
		return WORKER_ENTRY_NO_SLOT;
	}
	if (!wait)
		return WORKER_ENTRY_STARTED;

	outcome = entry_wait(call, handle, result);
	dsm_detach(seg);
	return outcome;
}

/*
 * In a job worker started for a waiting caller: map the segment the caller
 * made, for worker_entry_done().  Called before the worker connects; the
 * mapping lasts as long as the process.
 */
void
worker_entry_attach(dsm_handle handle)
{
	dsm_segment *seg = dsm_attach(handle);

	/* The caller gave up before we started: nobody waits. */
	if (seg == NULL)
		return;
	entry_call = dsm_segment_address(seg);
}

/*
 * Tell the waiting caller, if any, that the results are committed (see
 * worker.h).
 */
void
worker_entry_done(int64 result)
{
	if (entry_call == NULL)
		return;
	entry_call->result = result;
	pg_write_barrier();
	pg_atomic_write_u32(&entry_call->done, 1);
	SetLatch(&entry_call->caller->procLatch);
	entry_call = NULL;
}
