/*-------------------------------------------------------------------------
 *
 * scheduler.c
 *		The per-database scheduler: runs the registered services and starts
 *		a job worker for every job of opsdata.jobs that is due.
 *
 * The launcher starts one scheduler per database.  It connects as the
 * bootstrap superuser with search_path pinned to pg_catalog, pg_temp
 * (opsdata_worker_connect), whatever the database's settings say, and its
 * SQL names every operator with its schema.  At start it checks that
 * the extension is installed (else it tells the launcher and exits), then
 * loops: call the services, notice job workers that ended, re-read
 * opsdata.jobs when it changed or a job is due, start the due jobs, and
 * sleep on its latch until the next job or service is due, at most
 * pg_opsdata.check_interval.  Committed changes of opsdata.jobs and job
 * workers ending set its latch and its slot's jobs_changed flag; services'
 * wake-ups only set the latch, so they never cost a catalog read.
 *
 * Jobs run in job workers, never in the scheduler, so that a long job does
 * not delay the services or the other jobs.  A job worker connects as the
 * job's role, which the scheduler looks up when it reads the jobs
 * (worker_job_role); a role that may not connect is passed as none, and
 * that worker only records the failed run.  A job worker slot is granted
 * by worker_reserve_job_slot() (pg_opsdata.max_workers, in turn between
 * databases); a refused scheduler waits on its latch for a worker to end.
 * When the job worker cannot be registered because max_worker_processes
 * is used up, the scheduler keeps its place in line (no database behind it
 * is served before it) and retries after 100 ms, doubling up to a second,
 * and at once when the postmaster reports a pg_opsdata worker gone: the
 * scheduler that started a job worker watches its handle until then and
 * passes the news on (worker_wake_starved).  A shortage that lasts a
 * second is logged (once in ten minutes) and shown by opsdata.health().
 *
 * A job never runs twice at once: its run holds a session-level advisory
 * lock (worker_job_lock_tag).  The scheduler skips a due job whose lock is
 * taken (opsdata.run_job() runs it in some session) and is woken when that
 * run records its end in opsdata.jobs.  It also finishes off runs left
 * "running" by a process that died (the crash marker with a free lock): they
 * are recorded as crashed, or timed out when the scheduler terminated the
 * worker for exceeding max_runtime, and retried like any failure.
 *
 * Errors are caught at the top of the loop: logged, the transaction
 * aborted, and the failing part (a service, or the catalog read) backed off
 * exponentially up to a minute.  The scheduler itself only stops when
 * terminated, when the extension goes away, or when the database is held
 * for DROP DATABASE and the like.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/worker/scheduler.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "core/opsdata.h"
#include "core/privileged.h"
#include "worker/worker_int.h"

/* A job worker past max_runtime by this much more is terminated. */
#define SCHEDULER_RUNTIME_GRACE_MS (10 * 1000)
#define SCHEDULER_MAX_BACKOFF_MS   (60 * 1000)
#define SCHEDULER_CAP_LOG_MS	   (10 * 60 * 1000)
#define SCHEDULER_MAX_JOBS		   1024
/*
 * While a restore runs, look for its end this often, and wait this long after.
 */
#define SCHEDULER_RESTORE_POLL_MS  1000
#define SCHEDULER_RESTORE_GRACE_MS 2000

/* A job of opsdata.jobs, as last read. */
typedef struct SchedJob
{
	int64 job_id;
	TimestampTz due;
	int64 max_runtime_ms; /* 0: no limit */
	bool busy;			  /* its lock was taken by another run */
	Oid role;			  /* connect its worker as; InvalidOid: cannot */
} SchedJob;

/* A job worker this scheduler started (or found running at its start). */
typedef struct InFlight
{
	int64 job_id;
	int slot;
	uint64 generation;
	BackgroundWorkerHandle *handle; /* NULL for one found at start */
	TimestampTz dispatched_at;
	TimestampTz due; /* the job's due time when started */
	int64 max_runtime_ms;
	bool terminated; /* for exceeding max_runtime */
} InFlight;

/* A job whose worker ended without advancing it: started again later. */
typedef struct JobBackoff
{
	int64 job_id;
	TimestampTz until;
	int ms;
} JobBackoff;

static int sched_slotno;
static char *sched_dbname;
static WorkerSlot *sched_slot;
static MemoryContext sched_context;
static MemoryContext sched_loop_context;

static SchedJob *sched_jobs;
static int sched_njobs;
static bool sched_jobs_dirty = true;
static TimestampTz sched_jobs_read_at = 0;
static TimestampTz sched_catalog_retry_at = 0;
static int sched_catalog_backoff_ms = 0;

static InFlight *sched_inflight;
static int sched_ninflight;
static int sched_maxinflight;

static JobBackoff sched_backoffs[64];
static int sched_nbackoffs;

/* Jobs whose run must be checked for a crash, and how to record it. */
static int64 sched_reaped[64];
static TimestampTz sched_reaped_due[64];
static bool sched_reaped_timeout[64];
static int sched_nreaped;

static TimestampTz sched_restore_seen_at = 0;
static bool sched_check_extension = false;
static TimestampTz sched_dispatch_retry_at = 0;
static int sched_dispatch_backoff_ms = 0;
static TimestampTz sched_dispatch_failing_since = 0;
static uint64 sched_dispatch_freed_seen = 0;
static TimestampTz sched_cap_logged_at = 0;

/*
 * Handles of job workers that left their slot but that the postmaster has
 * not reported stopped yet: when it does, their background worker is free.
 */
static BackgroundWorkerHandle *sched_exiting[16];
static int sched_nexiting;

static TimestampTz sched_service_next[WORKER_MAX_SERVICES];
static TimestampTz sched_service_backoff_until[WORKER_MAX_SERVICES];
static int sched_service_backoff_ms[WORKER_MAX_SERVICES];
static int sched_current_service = -1;

static bool scheduler_restoring(TimestampTz now);
static bool scheduler_extension_present(void);
static void scheduler_adopt_job_workers(void);
static void scheduler_run_services(TimestampTz now);
static void scheduler_reap(TimestampTz now);
static void scheduler_watch_exits(void);
static void scheduler_read_jobs(void);
static void scheduler_sweep(void);
static bool scheduler_dispatch(SchedJob *job, TimestampTz now);
static JobBackoff *scheduler_backoff(int64 job_id, bool create);
static bool scheduler_in_flight(int64 job_id);
static void scheduler_error_recovery(void);

/*
 * Main function of a scheduler.  main_arg is the slot the launcher
 * reserved; bgw_extra holds its generation and the database.
 */
void
worker_scheduler_main(Datum main_arg)
{
	WorkerStartArgs args;
	sigjmp_buf local_sigjmp_buf;
	uint64 seen;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	sched_slotno = DatumGetInt32(main_arg);

	opsdata_worker_init();
	sched_slot = worker_claim_slot(sched_slotno, args.generation,
								   WORKER_SLOT_SCHEDULER);
	if (sched_slot == NULL)
		proc_exit(0); /* the database is held, or the launcher gave up on us */

	opsdata_worker_connect(args.dboid, InvalidOid);
	/* Never queue for long behind DDL on our tables: back off and retry. */
	SetConfigOption("lock_timeout", "1s", PGC_USERSET, PGC_S_SESSION);

	seen = worker_event_seq();
	if (!scheduler_extension_present())
	{
		worker_push_event(WORKER_EVENT_ABSENT, MyDatabaseId, seen);
		proc_exit(0);
	}
	worker_push_event(WORKER_EVENT_PRESENT, MyDatabaseId, seen);

	sched_context = AllocSetContextCreate(
		TopMemoryContext, "pg_opsdata scheduler", ALLOCSET_DEFAULT_SIZES);
	sched_loop_context = AllocSetContextCreate(
		sched_context, "pg_opsdata scheduler loop", ALLOCSET_DEFAULT_SIZES);
	sched_maxinflight = 16;
	sched_inflight = MemoryContextAlloc(sched_context,
										sizeof(InFlight) * sched_maxinflight);
	sched_jobs = MemoryContextAlloc(sched_context,
									sizeof(SchedJob) * SCHEDULER_MAX_JOBS);
	scheduler_adopt_job_workers();

	ereport(DEBUG1, (errmsg("pg_opsdata scheduler started in database \"%s\"",
							sched_dbname)));

	if (sigsetjmp(local_sigjmp_buf, 1) != 0)
		scheduler_error_recovery();
	PG_exception_stack = &local_sigjmp_buf;

	for (;;)
	{
		TimestampTz now;
		TimestampTz wake;
		bool restoring;
		bool waiting = false;
		long timeout;
		int i;

		MemoryContextSwitchTo(sched_loop_context);
		MemoryContextReset(sched_loop_context);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			sched_jobs_dirty = true;
		}
		sched_slot->check_interval = worker_check_interval;

		now = GetCurrentTimestamp();
		scheduler_run_services(now);

		now = GetCurrentTimestamp();
		scheduler_reap(now);
		scheduler_watch_exits();
		if (pg_atomic_exchange_u32(&sched_slot->jobs_changed, 0) != 0)
			sched_jobs_dirty = true;

		if (sched_check_extension && now >= sched_catalog_retry_at)
		{
			uint64 seen = worker_event_seq();

			if (!scheduler_extension_present())
			{
				worker_push_event(WORKER_EVENT_ABSENT, MyDatabaseId, seen);
				proc_exit(0);
			}
			sched_check_extension = false;
		}
		if (now >= sched_catalog_retry_at)
		{
			bool due = false;

			for (i = 0; i < sched_njobs && !due; i++)
				due = !sched_jobs[i].busy && sched_jobs[i].due <= now &&
					  !scheduler_in_flight(sched_jobs[i].job_id);
			if (sched_jobs_dirty || due || sched_nreaped > 0 ||
				TimestampDifferenceExceeds(sched_jobs_read_at, now,
										   worker_check_interval))
				scheduler_read_jobs();
		}
		/* Only when a job is about to start: is a dump being loaded? */
		restoring = false;
		for (i = 0; i < sched_njobs && !restoring; i++)
		{
			if (!sched_jobs[i].busy &&
				!scheduler_in_flight(sched_jobs[i].job_id) &&
				sched_jobs[i].due <=
					TimestampTzPlusMilliseconds(now, WORKER_DISPATCH_LEAD_MS))
				restoring = scheduler_restoring(now);
		}

		/* Start what is due, in order of due time. */
		now = GetCurrentTimestamp();
		wake = TimestampTzPlusMilliseconds(now, worker_check_interval);
		for (i = 0; i < sched_njobs; i++)
		{
			SchedJob *job = &sched_jobs[i];
			JobBackoff *backoff;
			TimestampTz at = job->due;

			if (job->busy || restoring || scheduler_in_flight(job->job_id))
				continue;
			backoff = scheduler_backoff(job->job_id, false);
			if (backoff != NULL && backoff->until > at)
				at = backoff->until;
			else
				at = TimestampTzPlusMilliseconds(at, -WORKER_DISPATCH_LEAD_MS);
			if (at > now || waiting || worker_max_workers == 0)
			{
				if (!waiting && worker_max_workers > 0 && at < wake)
					wake = at;
				continue;
			}
			/*
			 * Still in line after a failed registration: retry when the
			 * delay has passed or a pg_opsdata worker was reported gone.
			 */
			if (now < sched_dispatch_retry_at &&
				worker_workers_freed() == sched_dispatch_freed_seen)
			{
				waiting = true;
				continue;
			}
			if (!scheduler_dispatch(job, now))
				waiting = true; /* woken when a job worker ends */
		}
		if (!waiting)
		{
			worker_stop_waiting(sched_slotno);
			sched_dispatch_backoff_ms = 0;
			sched_dispatch_retry_at = 0;
			sched_dispatch_failing_since = 0;
		}

		/* Wake for the next service, the next backstop, a retry. */
		for (i = 0; i < worker_nservices; i++)
		{
			TimestampTz at =
				Max(sched_service_next[i], sched_service_backoff_until[i]);

			if (at != 0 && at < wake)
				wake = at;
		}
		for (i = 0; i < sched_ninflight; i++)
		{
			InFlight *f = &sched_inflight[i];

			if (f->max_runtime_ms > 0 && !f->terminated)
			{
				TimestampTz at = TimestampTzPlusMilliseconds(
					f->dispatched_at,
					f->max_runtime_ms + SCHEDULER_RUNTIME_GRACE_MS);

				if (at < wake)
					wake = at;
			}
		}
		if (sched_catalog_retry_at > now && sched_catalog_retry_at < wake)
			wake = sched_catalog_retry_at;
		if (restoring)
			wake = Min(wake, TimestampTzPlusMilliseconds(
								 now, SCHEDULER_RESTORE_POLL_MS));
		if (sched_dispatch_retry_at > now && sched_dispatch_retry_at < wake)
			wake = sched_dispatch_retry_at;

		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), wake);
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/*
 * Clean up after an error caught at the top of the loop, and back off the
 * part that failed.
 */
static void
scheduler_error_recovery(void)
{
	TimestampTz now;

	/* The error context callbacks of the frames the error left are gone. */
	error_context_stack = NULL;
	HOLD_INTERRUPTS();
	EmitErrorReport();
	AbortCurrentTransaction();
	LWLockReleaseAll();
	ConditionVariableCancelSleep();
	pgstat_report_wait_end();
	MemoryContextSwitchTo(TopMemoryContext);
	FlushErrorState();
	MemoryContextReset(sched_loop_context);
	RESUME_INTERRUPTS();

	now = GetCurrentTimestamp();
	if (sched_current_service >= 0)
	{
		int i = sched_current_service;

		sched_service_backoff_ms[i] =
			sched_service_backoff_ms[i] == 0
				? 1000
				: Min(sched_service_backoff_ms[i] * 2,
					  SCHEDULER_MAX_BACKOFF_MS);
		sched_service_backoff_until[i] =
			TimestampTzPlusMilliseconds(now, sched_service_backoff_ms[i]);
		sched_current_service = -1;
	}
	else
	{
		sched_catalog_backoff_ms =
			sched_catalog_backoff_ms == 0
				? 1000
				: Min(sched_catalog_backoff_ms * 2, SCHEDULER_MAX_BACKOFF_MS);
		sched_catalog_retry_at =
			TimestampTzPlusMilliseconds(now, sched_catalog_backoff_ms);
		sched_jobs_dirty = true;
		/*
		 * The extension may be gone; find out in the loop, after the back-off.
		 */
		sched_check_extension = true;
	}
}

/*
 * True while a dump is being restored into this database: a session that
 * ran CREATE EXTENSION as pg_dump output does is still connected, or a
 * pg_restore session is, or one was less than SCHEDULER_RESTORE_GRACE_MS
 * ago (pg_restore --jobs reconnects between its phases).  Jobs then wait:
 * the rows they would write could clash with those the restore loads.
 * Called only when a job is due.
 */
static bool
scheduler_restoring(TimestampTz now)
{
	bool found = worker_restore_in_progress(MyDatabaseId);
	int n;
	int i;

	if (!found)
	{
		pgstat_clear_backend_activity_snapshot();
		n = pgstat_fetch_stat_numbackends();
		for (i = 1; i <= n && !found; i++)
		{
			LocalPgBackendStatus *local = pgstat_fetch_stat_local_beentry(i);
			PgBackendStatus *be = local != NULL ? &local->backendStatus : NULL;

			found = be != NULL && be->st_databaseid == MyDatabaseId &&
					be->st_backendType == B_BACKEND &&
					be->st_appname != NULL &&
					strcmp(be->st_appname, "pg_restore") == 0;
		}
		pgstat_clear_backend_activity_snapshot();
	}
	if (found)
		sched_restore_seen_at = now;
	return found || (sched_restore_seen_at != 0 &&
					 !TimestampDifferenceExceeds(sched_restore_seen_at, now,
												 SCHEDULER_RESTORE_GRACE_MS));
}

/* Whether pg_opsdata is installed in this database. */
static bool
scheduler_extension_present(void)
{
	bool present;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	present = OidIsValid(get_extension_oid(OPSDATA_NAME, true));
	if (sched_dbname == NULL)
		sched_dbname = MemoryContextStrdup(TopMemoryContext,
										   get_database_name(MyDatabaseId));
	CommitTransactionCommand();
	return present;
}

/* Job workers of this database still running from an earlier scheduler. */
static void
scheduler_adopt_job_workers(void)
{
	int i;

	LWLockAcquire(worker_shared->lock, LW_SHARED);
	for (i = 0;
		 i < worker_shared->nslots && sched_ninflight < sched_maxinflight; i++)
	{
		WorkerSlot *slot = &worker_shared->slots[i];
		InFlight *f;

		if (slot->kind != WORKER_SLOT_JOB || slot->dboid != MyDatabaseId)
			continue;
		f = &sched_inflight[sched_ninflight++];
		memset(f, 0, sizeof(InFlight));
		f->job_id = slot->job_id;
		f->slot = i;
		f->generation = slot->generation;
		f->dispatched_at =
			slot->started_at != 0 ? slot->started_at : slot->reserved_at;
	}
	LWLockRelease(worker_shared->lock);
}

/*
 * Call every service not backed off after an error, outside any
 * transaction, and note when each wants to run again.
 */
static void
scheduler_run_services(TimestampTz now)
{
	int i;

	for (i = 0; i < worker_nservices; i++)
	{
		long next;

		if (sched_service_backoff_until[i] > now)
			continue;
		sched_current_service = i;
		next = worker_services[i]->run();
		sched_current_service = -1;
		sched_service_backoff_ms[i] = 0;
		sched_service_backoff_until[i] = 0;
		sched_service_next[i] =
			next < 0
				? 0
				: TimestampTzPlusMilliseconds(GetCurrentTimestamp(), next);
		MemoryContextSwitchTo(sched_loop_context);
	}
}

/* True if one of our job workers runs (or starts) the job. */
static bool
scheduler_in_flight(int64 job_id)
{
	int i;

	for (i = 0; i < sched_ninflight; i++)
	{
		if (sched_inflight[i].job_id == job_id)
			return true;
	}
	return false;
}

/* The dispatch back-off of a job, made if asked and missing. */
static JobBackoff *
scheduler_backoff(int64 job_id, bool create)
{
	int i;

	for (i = 0; i < sched_nbackoffs; i++)
	{
		if (sched_backoffs[i].job_id == job_id)
			return &sched_backoffs[i];
	}
	if (!create)
		return NULL;
	for (i = 0; i < sched_nbackoffs; i++)
	{
		if (sched_backoffs[i].ms == 0)
		{
			sched_backoffs[i].job_id = job_id;
			sched_backoffs[i].until = 0;
			return &sched_backoffs[i];
		}
	}
	if (sched_nbackoffs >= (int) lengthof(sched_backoffs))
		return NULL;
	memset(&sched_backoffs[sched_nbackoffs], 0, sizeof(JobBackoff));
	sched_backoffs[sched_nbackoffs].job_id = job_id;
	return &sched_backoffs[sched_nbackoffs++];
}

/*
 * Notice job workers that ended (or never started), and terminate those
 * running past their job's max_runtime by more than the grace period.
 */
static void
scheduler_reap(TimestampTz now)
{
	int i = 0;

	while (i < sched_ninflight)
	{
		InFlight *f = &sched_inflight[i];
		WorkerSlot *slot = &worker_shared->slots[f->slot];
		bool gone;
		bool running;
		pid_t pid;

		LWLockAcquire(worker_shared->lock, LW_SHARED);
		gone =
			slot->kind != WORKER_SLOT_JOB || slot->generation != f->generation;
		running = !gone && slot->running;
		pid = running ? slot->pid : 0;
		LWLockRelease(worker_shared->lock);

		if (!gone && !running && f->handle != NULL &&
			GetBackgroundWorkerPid(f->handle, &pid) == BGWH_STOPPED)
		{
			worker_release_reservation(f->slot, f->generation);
			gone = true;
		}

		if (!gone)
		{
			if (running && f->max_runtime_ms > 0 && !f->terminated &&
				TimestampDifferenceExceeds(f->dispatched_at, now,
										   f->max_runtime_ms +
											   SCHEDULER_RUNTIME_GRACE_MS))
			{
				ereport(
					LOG,
					(errmsg(
						"pg_opsdata terminates the worker of job %lld: it runs past its max_runtime and did not stop when cancelled",
						(long long) f->job_id)));
				if (f->handle != NULL)
					TerminateBackgroundWorker(f->handle);
				else if (pid != 0)
					kill(pid, SIGTERM);
				f->terminated = true;
			}
			i++;
			continue;
		}

		if (sched_nreaped < (int) lengthof(sched_reaped))
		{
			sched_reaped_timeout[sched_nreaped] = f->terminated;
			sched_reaped_due[sched_nreaped] = f->due;
			sched_reaped[sched_nreaped++] = f->job_id;
		}
		sched_jobs_dirty = true;
		if (f->handle != NULL &&
			sched_nexiting < (int) lengthof(sched_exiting))
			sched_exiting[sched_nexiting++] = f->handle;
		else if (f->handle != NULL)
			pfree(f->handle);
		sched_inflight[i] = sched_inflight[--sched_ninflight];
	}
}

/*
 * Pass on that the background workers of job workers this scheduler
 * started are free again, once the postmaster reports them stopped (it
 * signals us, which sets our latch).
 */
static void
scheduler_watch_exits(void)
{
	bool freed = false;
	int i = 0;

	while (i < sched_nexiting)
	{
		pid_t pid;

		if (GetBackgroundWorkerPid(sched_exiting[i], &pid) != BGWH_STOPPED)
		{
			i++;
			continue;
		}
		pfree(sched_exiting[i]);
		sched_exiting[i] = sched_exiting[--sched_nexiting];
		freed = true;
	}
	if (freed)
		worker_wake_starved();
}

/*
 * Finish off runs left "running" by a process that is gone: the job's lock
 * is free.  A run whose worker we terminated for max_runtime is recorded
 * as timed out, any other as crashed.  Inside the catalog transaction.
 */
static void
scheduler_sweep(void)
{
	int64 run_ids[64];
	int64 job_ids[64];
	int n;
	int i;
	int ret;

	ret = SPI_execute(
		"SELECT r.run_id, r.job_id FROM opsdata.job_runs r"
		" WHERE r.status OPERATOR(pg_catalog.=) 'running' ORDER BY r.run_id LIMIT 64",
		true, 0);
	if (ret != SPI_OK_SELECT)
		opsdata_spi_failed(ret, "read the running jobs");
	n = (int) SPI_processed;
	for (i = 0; i < n; i++)
	{
		bool isnull;

		run_ids[i] = DatumGetInt64(SPI_getbinval(
			SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		job_ids[i] = DatumGetInt64(SPI_getbinval(
			SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
	}

	for (i = 0; i < n; i++)
	{
		LOCKTAG tag;
		bool timed_out = false;
		int k;
		Datum values[4];
		Oid types[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
		char nulls[4] = {' ', ' ', 'n', ' '};

		worker_job_lock_tag(&tag, job_ids[i]);
		if (LockAcquire(&tag, ExclusiveLock, false, true) ==
			LOCKACQUIRE_NOT_AVAIL)
			continue; /* running for real */
		for (k = 0; k < sched_nreaped; k++)
		{
			if (sched_reaped[k] == job_ids[i] && sched_reaped_timeout[k])
				timed_out = true;
		}
		values[0] = Int64GetDatum(run_ids[i]);
		values[1] = CStringGetTextDatum(timed_out ? "timed out" : "crashed");
		values[2] = (Datum) 0;
		values[3] = CStringGetTextDatum(
			timed_out
				? "The run exceeded its max_runtime, did not stop when cancelled, and was terminated."
				: "The run was interrupted: the process running it ended before the run finished.");
		ret =
			SPI_execute_with_args("SELECT opsdata._job_finish($1, $2, $3, $4)",
								  4, types, values, nulls, false, 0);
		if (ret != SPI_OK_SELECT)
			opsdata_spi_failed(ret, "record an interrupted run");
		LockRelease(&tag, ExclusiveLock, false);
	}
}

/*
 * Re-read opsdata.jobs (the jobs not paused, with their due time), after
 * finishing off interrupted runs and noting which due jobs run elsewhere.
 */
static void
scheduler_read_jobs(void)
{
	TimestampTz now;
	Oid owner;
	int ret;
	int i;
	int n;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING,
						   "pg_opsdata scheduler: reading opsdata.jobs");
	/* No job runs on objects too old for the library (version.c). */
	opsdata_check_schema();
	opsdata_spi_connect(0);
	PushActiveSnapshot(GetTransactionSnapshot());

	scheduler_sweep();

	ret = SPI_execute(
		"SELECT j.job_id, LEAST(j.next_run, j.retry_at),"
		" COALESCE((extract(epoch FROM j.max_runtime) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8, 0),"
		" j.run_as, j.builtin"
		" FROM opsdata.jobs j WHERE NOT j.paused ORDER BY 2, 1",
		true, SCHEDULER_MAX_JOBS);
	if (ret != SPI_OK_SELECT)
		opsdata_spi_failed(ret, "read opsdata.jobs");

	now = GetCurrentTimestamp();
	owner = opsdata_extension_owner();
	n = (int) SPI_processed;
	for (i = 0; i < n; i++)
	{
		HeapTuple tup = SPI_tuptable->vals[i];
		TupleDesc desc = SPI_tuptable->tupdesc;
		SchedJob *job = &sched_jobs[i];
		bool isnull;
		int sqlstate;
		char *why;

		job->job_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		job->due = DatumGetTimestampTz(SPI_getbinval(tup, desc, 2, &isnull));
		job->max_runtime_ms =
			DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
		/* A role that cannot connect: the run is recorded as failed. */
		job->role =
			worker_job_role(SPI_getvalue(tup, desc, 4),
							DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull)),
							owner, &sqlstate, &why);
		job->busy = false;
		if (job->due <= now && !scheduler_in_flight(job->job_id))
		{
			LOCKTAG tag;

			worker_job_lock_tag(&tag, job->job_id);
			if (LockAcquire(&tag, ExclusiveLock, false, true) ==
				LOCKACQUIRE_NOT_AVAIL)
				job->busy = true; /* woken when that run ends */
			else
				LockRelease(&tag, ExclusiveLock, false);
		}
	}
	sched_njobs = n;

	/*
	 * A job worker that ended and left its job due at the same time did not
	 * run it (it failed before recording a run, or found it running
	 * elsewhere): start it again only after a growing delay, so that a job
	 * that cannot start never makes the scheduler start workers in a loop.
	 */
	for (i = 0; i < sched_nreaped; i++)
	{
		JobBackoff *backoff = scheduler_backoff(sched_reaped[i], true);
		bool stuck = false;
		int k;

		for (k = 0; k < sched_njobs; k++)
		{
			if (sched_jobs[k].job_id == sched_reaped[i] &&
				sched_jobs[k].due == sched_reaped_due[i])
				stuck = true;
		}
		if (backoff == NULL)
			continue;
		if (!stuck)
		{
			backoff->until = 0;
			backoff->ms = 0;
			continue;
		}
		backoff->ms = backoff->ms == 0
						  ? 1000
						  : Min(backoff->ms * 2, SCHEDULER_MAX_BACKOFF_MS);
		backoff->until = TimestampTzPlusMilliseconds(now, backoff->ms);
		ereport(
			backoff->ms >= SCHEDULER_MAX_BACKOFF_MS ? LOG : DEBUG1,
			(errmsg(
				"pg_opsdata job %lld ended without running; starting it again in %d ms",
				(long long) sched_reaped[i], backoff->ms)));
	}
	sched_nreaped = 0;

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);

	sched_jobs_dirty = false;
	sched_jobs_read_at = GetCurrentTimestamp();
	sched_catalog_backoff_ms = 0;
	sched_catalog_retry_at = 0;
}

/*
 * Start a job worker for a due job.  Returns false when no worker can be
 * had now: pg_opsdata.max_workers, another database's turn, or
 * max_worker_processes.
 */
static bool
scheduler_dispatch(SchedJob *job, TimestampTz now)
{
	BackgroundWorkerHandle *handle = NULL;
	WorkerStartArgs args;
	char name[BGW_MAXLEN];
	uint64 generation = 0;
	uint64 freed = worker_workers_freed();
	WorkerWait why;
	int slotno;
	InFlight *f;
	WorkerTurn turn;

	slotno = worker_reserve_job_slot(sched_slotno, job->job_id, &generation,
									 &why, &turn);
	if (slotno < 0 && why != WORKER_WAIT_SERVER)
	{
		if (why == WORKER_WAIT_MAX_WORKERS && worker_max_workers > 0 &&
			TimestampDifferenceExceeds(sched_cap_logged_at, now,
									   SCHEDULER_CAP_LOG_MS))
		{
			ereport(
				LOG,
				(errmsg(
					 "pg_opsdata jobs of database \"%s\" wait for a job worker",
					 sched_dbname),
				 errdetail(
					 "pg_opsdata.max_workers (%d) job workers run at once across all databases.",
					 worker_max_workers),
				 errhint(
					 "Raise pg_opsdata.max_workers if jobs are often late.")));
			sched_cap_logged_at = now;
		}
		return false;
	}

	if (slotno >= 0)
	{
		memset(&args, 0, sizeof(args));
		args.generation = generation;
		args.dboid = MyDatabaseId;
		args.job_id = job->job_id;
		args.due = job->due;
		args.role = job->role;
		snprintf(name, sizeof(name), "%s %lld", WORKER_JOB_TYPE,
				 (long long) job->job_id);
		handle = worker_start_dynamic("worker_job_main", WORKER_JOB_TYPE, name,
									  slotno, &args, sched_context);
	}

	if (handle == NULL)
	{
		/*
		 * Every background worker of the server is in use.  Keep our place
		 * in line, so that no database behind us takes the next one a
		 * pg_opsdata worker frees, and retry soon: the postmaster frees a
		 * worker's background worker a moment after the worker has left
		 * our slot, and one may be taken by a process that is not ours.
		 * Only a shortage that lasts is logged and shown in health.
		 */
		worker_keep_place(sched_slotno, &turn, slotno, generation);
		sched_dispatch_freed_seen = freed;
		if (sched_dispatch_failing_since == 0)
			sched_dispatch_failing_since = now;
		sched_dispatch_backoff_ms =
			sched_dispatch_backoff_ms == 0
				? WORKER_RETRY_FIRST_MS
				: Min(sched_dispatch_backoff_ms * 2, WORKER_RETRY_MAX_MS);
		sched_dispatch_retry_at =
			TimestampTzPlusMilliseconds(now, sched_dispatch_backoff_ms);
		if (TimestampDifferenceExceeds(sched_dispatch_failing_since, now,
									   WORKER_RETRY_MAX_MS) &&
			worker_note_exhausted(false))
			ereport(
				LOG,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg(
					 "pg_opsdata could not start a job worker in database \"%s\": no background worker slot is free",
					 sched_dbname),
				 errdetail(
					 "All %d background workers allowed by max_worker_processes are in use; jobs wait and take turns between databases.",
					 max_worker_processes),
				 errhint(
					 "Raise max_worker_processes to at least %d: pg_opsdata needs one worker for its launcher, one per database with the extension and up to pg_opsdata.max_workers for jobs, besides those of parallel queries and logical replication.",
					 worker_needed_processes())));
		return false;
	}

	sched_dispatch_backoff_ms = 0;
	sched_dispatch_retry_at = 0;
	sched_dispatch_failing_since = 0;
	/* Schedulers that gave way to us may be next. */
	worker_wake_waiting_schedulers();

	if (sched_ninflight >= sched_maxinflight)
	{
		sched_maxinflight *= 2;
		sched_inflight =
			repalloc(sched_inflight, sizeof(InFlight) * sched_maxinflight);
	}
	f = &sched_inflight[sched_ninflight++];
	memset(f, 0, sizeof(InFlight));
	f->job_id = job->job_id;
	f->slot = slotno;
	f->generation = generation;
	f->handle = handle;
	f->dispatched_at = now;
	f->due = job->due;
	f->max_runtime_ms = job->max_runtime_ms;
	return true;
}
