/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The pg_opsdata launcher: one scheduler in every database that has
 *		the extension, and none in the others.
 *
 * The launcher is a static background worker, started once recovery has
 * finished; it is not started on a hot standby (it starts at promotion) nor
 * in binary upgrade mode.  It connects to no database and reads only
 * pg_database, so it never keeps a database busy.
 *
 * It learns which databases have the extension without any list to
 * maintain:
 *  - after a start, every connectable database that is not a template is
 *    "unknown"; the launcher starts a scheduler there (a few at a time, so
 *    as not to take every background worker), which checks the catalog and
 *    exits at once (reporting "absent") if the extension is not installed,
 *    or stays (reporting "present");
 *  - CREATE EXTENSION and DROP EXTENSION send an event when they commit
 *    (hooks.c), so the launcher reacts within milliseconds;
 *  - COMMIT PREPARED of a transaction that created or dropped the extension
 *    sends the same events (hooks.c);
 *  - CREATE, DROP and ALTER DATABASE make it re-read pg_database, and so
 *    does pg_opsdata.check_interval passing, in case an event was missed;
 *    a database found without the extension is checked again (a scheduler
 *    started there, as after a start) once LAUNCHER_RECHECK_INTERVALS
 *    check intervals have passed, so that a database whose event was lost
 *    is found all the same.
 * Template databases and databases that do not allow connections get no
 * scheduler: jobs must not write into a database that is copied, and
 * CREATE DATABASE must find its template free.
 *
 * A scheduler that stops while its database still has the extension is
 * restarted after pg_opsdata.restart_delay, doubled after each run shorter
 * than a minute (up to 64 times); a crash loop is thus impossible.  When
 * max_worker_processes is used up, registration fails: the launcher tells
 * the schedulers that it waits (no job worker is granted meanwhile, so
 * that a database's scheduler goes before any job), retries after 100 ms,
 * doubling up to a second, and at once when a pg_opsdata worker is
 * reported gone; a shortage that lasts a second is logged (once in ten
 * minutes) and reported in opsdata.health().  It sleeps on its latch
 * otherwise: events, a scheduler's exit, SIGHUP and the end of a hold all
 * set it.  When the postmaster reports a scheduler gone (it signals the
 * launcher, which started it), its background worker is free: the
 * launcher passes that on to whoever waits for one.
 *
 * A launcher restarted by the postmaster adopts the schedulers still
 * running, found in their shared-memory slots.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/worker/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "core/opsdata.h"
#include "core/privileged.h"
#include "worker/worker_int.h"

/*
 * A scheduler that ran this long before stopping restarts without delay
 * growth.
 */
#define LAUNCHER_STABLE_RUN_MS	   (60 * 1000)
#define LAUNCHER_MAX_BACKOFF_SHIFT 6
/* Databases whose extension state is checked at once (after a start). */
#define LAUNCHER_MAX_PROBES 4
/* A database without the extension is checked again after this many. */
#define LAUNCHER_RECHECK_INTERVALS 10

typedef enum LauncherDbState
{
	LAUNCHER_DB_UNKNOWN,   /* extension not known to be there or not */
	LAUNCHER_DB_INSTALLED, /* has the extension: keep a scheduler */
	LAUNCHER_DB_ABSENT,	   /* no extension */
	LAUNCHER_DB_SKIPPED	   /* template, no connections, or invalid */
} LauncherDbState;

typedef struct LauncherDb
{
	Oid dboid; /* hash key */
	LauncherDbState state;
	NameData name;
	bool seen; /* in the last pg_database scan */

	/* the scheduler, if one was started or adopted */
	int slot; /* -1 when none */
	uint64 generation;
	BackgroundWorkerHandle *handle; /* NULL for an adopted scheduler */
	TimestampTz started_at;

	/* restarts */
	TimestampTz stopped_at;
	int failures;

	/* the last CREATE EXTENSION seen */
	uint64 installed_seq;
	TimestampTz installed_at;

	TimestampTz absent_at; /* when it was found without the extension */
} LauncherDb;

static HTAB *launcher_dbs = NULL;
static MemoryContext launcher_context = NULL;
static bool launcher_scan_needed = true;
static TimestampTz launcher_last_scan = 0;

/* After max_worker_processes was found used up. */
static TimestampTz launcher_retry_at = 0;
static int launcher_exhausted_ms = 0;
static TimestampTz launcher_failing_since = 0;
static uint64 launcher_freed_seen = 0;
static int launcher_pending = 0; /* as last told to the schedulers */

/* Schedulers that left their slot, until the postmaster reports them gone. */
static BackgroundWorkerHandle *launcher_exiting[16];
static int launcher_nexiting = 0;

static void launcher_exit(int code, Datum arg);
static LauncherDb *launcher_entry(Oid dboid);
static void launcher_adopt(void);
static void launcher_drain_events(void);
static void launcher_scan_databases(void);
static void launcher_reap(LauncherDb *db, TimestampTz now);
static bool launcher_start(LauncherDb *db, TimestampTz now);
static TimestampTz launcher_restart_time(LauncherDb *db);
static void launcher_watch_exits(void);

/*
 * Register the launcher with the postmaster; from worker_init() while
 * preloading, outside binary upgrade mode.
 */
void
worker_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags =
		BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 10;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "%s", OPSDATA_NAME);
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "worker_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, WORKER_LAUNCHER_TYPE);
	snprintf(bgw.bgw_type, BGW_MAXLEN, WORKER_LAUNCHER_TYPE);
	RegisterBackgroundWorker(&bgw);
}

/*
 * Main function of the launcher.
 */
void
worker_launcher_main(Datum main_arg)
{
	HASHCTL ctl;

	opsdata_worker_init();
	/* Shared catalogs only: the launcher keeps no database busy. */
	opsdata_worker_connect(InvalidOid, InvalidOid);

	launcher_context = AllocSetContextCreate(
		TopMemoryContext, "pg_opsdata launcher", ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(LauncherDb);
	ctl.hcxt = launcher_context;
	launcher_dbs = hash_create("pg_opsdata launcher databases", 64, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	worker_shared->launcher_restart_delay = worker_restart_delay;
	worker_shared->launcher_check_interval = worker_check_interval;
	worker_shared->launcher_pid = MyProcPid;
	worker_shared->launcher_started = GetCurrentTimestamp();
	pg_write_barrier();
	worker_shared->launcher_latch = MyLatch;
	LWLockRelease(worker_shared->lock);
	on_shmem_exit(launcher_exit, (Datum) 0);

	launcher_adopt();
	ereport(DEBUG1, (errmsg("pg_opsdata launcher started")));

	for (;;)
	{
		HASH_SEQ_STATUS seq;
		LauncherDb *db;
		TimestampTz now;
		TimestampTz wake;
		long timeout;
		int probes;
		int pending;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
			worker_shared->launcher_restart_delay = worker_restart_delay;
			worker_shared->launcher_check_interval = worker_check_interval;
			LWLockRelease(worker_shared->lock);
		}

		launcher_drain_events();
		now = GetCurrentTimestamp();
		if (launcher_scan_needed ||
			TimestampDifferenceExceeds(launcher_last_scan, now,
									   worker_check_interval))
			launcher_scan_databases();
		worker_reclaim_stale_reservations();

		now = GetCurrentTimestamp();
		wake = TimestampTzPlusMilliseconds(now, worker_check_interval);
		probes = 0;
		pending = 0;
		hash_seq_init(&seq, launcher_dbs);
		while ((db = hash_seq_search(&seq)) != NULL)
		{
			launcher_reap(db, now);
			if (db->slot >= 0 && db->state == LAUNCHER_DB_UNKNOWN)
				probes++;
		}
		launcher_watch_exits();
		hash_seq_init(&seq, launcher_dbs);
		while ((db = hash_seq_search(&seq)) != NULL)
		{
			TimestampTz at;

			if (db->slot >= 0 || (db->state != LAUNCHER_DB_UNKNOWN &&
								  db->state != LAUNCHER_DB_INSTALLED))
				continue;
			/* Few databases are checked at once: woken when a check ends. */
			if (db->state == LAUNCHER_DB_UNKNOWN &&
				probes >= LAUNCHER_MAX_PROBES)
				continue;
			if (worker_database_held(db->dboid))
				continue; /* woken when the hold is released */
			at = launcher_restart_time(db);
			if (at > now)
			{
				if (at < wake)
					wake = at;
				continue;
			}
			/*
			 * No background worker was free: retry after the delay, or at
			 * once when a pg_opsdata worker was reported gone.
			 */
			if ((launcher_retry_at > now &&
				 worker_workers_freed() == launcher_freed_seen) ||
				!launcher_start(db, now))
			{
				pending++;
				if (launcher_retry_at < wake)
					wake = launcher_retry_at;
			}
			else if (db->state == LAUNCHER_DB_UNKNOWN)
				probes++;
		}

		/* Schedulers go before job workers while some cannot start. */
		if (pending != launcher_pending)
		{
			worker_launcher_waiting(pending);
			launcher_pending = pending;
		}
		if (pending == 0)
		{
			launcher_exhausted_ms = 0;
			launcher_retry_at = 0;
			launcher_failing_since = 0;
		}

		timeout = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), wake);
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Max(timeout, 1), PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

static void
launcher_exit(int code, Datum arg)
{
	LWLockReleaseAll();
	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	if (worker_shared->launcher_pid == MyProcPid)
	{
		worker_shared->launcher_latch = NULL;
		worker_shared->launcher_pid = 0;
		worker_shared->launcher_started = 0;
		worker_shared->launcher_waiting = false;
		worker_shared->launcher_pending = 0;
	}
	LWLockRelease(worker_shared->lock);
}

/* The launcher's entry for a database, made "unknown" if new. */
static LauncherDb *
launcher_entry(Oid dboid)
{
	bool found;
	LauncherDb *db = hash_search(launcher_dbs, &dboid, HASH_ENTER, &found);

	if (!found)
	{
		db->state = LAUNCHER_DB_UNKNOWN;
		snprintf(NameStr(db->name), NAMEDATALEN, "%u", dboid);
		db->seen = false;
		db->slot = -1;
		db->generation = 0;
		db->handle = NULL;
		db->started_at = 0;
		db->stopped_at = 0;
		db->failures = 0;
		db->installed_seq = 0;
		db->installed_at = 0;
		db->absent_at = 0;
	}
	return db;
}

/* Take over the schedulers a previous launcher started. */
static void
launcher_adopt(void)
{
	int i;

	LWLockAcquire(worker_shared->lock, LW_SHARED);
	for (i = 0; i < worker_shared->nslots; i++)
	{
		WorkerSlot *slot = &worker_shared->slots[i];
		LauncherDb *db;

		if (slot->kind != WORKER_SLOT_SCHEDULER)
			continue;
		db = launcher_entry(slot->dboid);
		db->state = LAUNCHER_DB_INSTALLED;
		db->slot = i;
		db->generation = slot->generation;
		db->started_at =
			slot->started_at != 0 ? slot->started_at : slot->reserved_at;
	}
	LWLockRelease(worker_shared->lock);
}

/* Apply the events backends and schedulers sent since the last round. */
static void
launcher_drain_events(void)
{
	WorkerEvent events[WORKER_MAX_EVENTS];
	int n;
	bool lost;
	int i;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	n = worker_shared->nevents;
	memcpy(events, worker_shared->events, n * sizeof(WorkerEvent));
	worker_shared->nevents = 0;
	lost = worker_shared->events_lost;
	worker_shared->events_lost = false;
	LWLockRelease(worker_shared->lock);

	if (lost)
	{
		HASH_SEQ_STATUS seq;
		LauncherDb *db;

		/* Some events were dropped: find out again where the extension is. */
		hash_seq_init(&seq, launcher_dbs);
		while ((db = hash_seq_search(&seq)) != NULL)
		{
			if (db->state == LAUNCHER_DB_ABSENT)
				db->state = LAUNCHER_DB_UNKNOWN;
		}
		launcher_scan_needed = true;
	}

	for (i = 0; i < n; i++)
	{
		LauncherDb *db;

		if (events[i].kind == WORKER_EVENT_DB_CHANGED)
		{
			launcher_scan_needed = true;
			continue;
		}
		db = launcher_entry(events[i].dboid);
		switch (events[i].kind)
		{
			case WORKER_EVENT_INSTALLED:
				if (db->state != LAUNCHER_DB_SKIPPED)
					db->state = LAUNCHER_DB_INSTALLED;
				db->failures = 0;
				db->stopped_at = 0;
				db->installed_seq = events[i].seq;
				db->installed_at = GetCurrentTimestamp();
				worker_note_scheduler_exit(db->dboid, 0, 0);
				break;
			case WORKER_EVENT_PRESENT:
				if (db->state == LAUNCHER_DB_UNKNOWN)
					db->state = LAUNCHER_DB_INSTALLED;
				break;
			case WORKER_EVENT_ABSENT:
				/*
				 * A scheduler that looked before CREATE EXTENSION committed.
				 */
				if (events[i].seen_seq < db->installed_seq)
					break;
				/* FALLTHROUGH */
			case WORKER_EVENT_DROPPED:
				if (db->state != LAUNCHER_DB_SKIPPED)
				{
					db->state = LAUNCHER_DB_ABSENT;
					db->absent_at = GetCurrentTimestamp();
				}
				db->failures = 0;
				worker_note_scheduler_exit(db->dboid, 0, 0);
				if (events[i].kind == WORKER_EVENT_DROPPED)
					(void) worker_signal_database(db->dboid, SIGTERM);
				break;
			case WORKER_EVENT_DB_CHANGED:
				break;
		}
	}
}

/*
 * Read pg_database: new databases become "unknown", vanished ones are
 * forgotten, and those that must not have a scheduler are skipped (their
 * scheduler, if any, is stopped).
 */
static void
launcher_scan_databases(void)
{
	HASH_SEQ_STATUS seq;
	LauncherDb *db;
	Relation rel;
	TableScanDesc scan;
	HeapTuple tup;

	hash_seq_init(&seq, launcher_dbs);
	while ((db = hash_seq_search(&seq)) != NULL)
		db->seen = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database form = (Form_pg_database) GETSTRUCT(tup);
		bool wanted = form->datallowconn && !form->datistemplate &&
					  !database_is_invalid_form(form);

		db = hash_search(launcher_dbs, &form->oid, HASH_FIND, NULL);
		if (db == NULL && !wanted)
			continue;
		if (db == NULL)
			db = launcher_entry(form->oid);
		db->seen = true;
		namestrcpy(&db->name, NameStr(form->datname));
		if (!wanted && db->state != LAUNCHER_DB_SKIPPED)
		{
			db->state = LAUNCHER_DB_SKIPPED;
			worker_note_scheduler_exit(db->dboid, 0, 0);
			if (db->slot >= 0)
				(void) worker_signal_database(db->dboid, SIGTERM);
		}
		else if (wanted && db->state == LAUNCHER_DB_SKIPPED)
			db->state = LAUNCHER_DB_UNKNOWN;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(true);

	hash_seq_init(&seq, launcher_dbs);
	while ((db = hash_seq_search(&seq)) != NULL)
	{
		/* Check again, in case the news of its extension was lost. */
		if (db->state == LAUNCHER_DB_ABSENT &&
			TimestampDifferenceExceeds(db->absent_at, GetCurrentTimestamp(),
									   LAUNCHER_RECHECK_INTERVALS *
										   worker_check_interval))
			db->state = LAUNCHER_DB_UNKNOWN;
		if (!db->seen && db->slot < 0)
		{
			worker_note_scheduler_exit(db->dboid, 0, 0);
			if (db->handle)
				pfree(db->handle);
			hash_search(launcher_dbs, &db->dboid, HASH_REMOVE, NULL);
		}
	}

	launcher_scan_needed = false;
	launcher_last_scan = GetCurrentTimestamp();
}

/* When a stopped scheduler may be restarted (the past if at once). */
static TimestampTz
launcher_restart_time(LauncherDb *db)
{
	int shift;

	if (db->failures == 0 || db->stopped_at == 0)
		return 0;
	shift = Min(db->failures - 1, LAUNCHER_MAX_BACKOFF_SHIFT);
	return TimestampTzPlusMilliseconds(db->stopped_at,
									   (int64) worker_restart_delay << shift);
}

/*
 * Notice that the scheduler of a database stopped, or never started, and
 * plan its restart if the database still wants one.
 */
static void
launcher_reap(LauncherDb *db, TimestampTz now)
{
	WorkerSlot *slot;
	bool gone;
	bool running;

	if (db->slot < 0)
	{
		/* Keep health's view of a pending restart current (SIGHUP). */
		if (db->failures > 0 && db->state == LAUNCHER_DB_INSTALLED)
			worker_note_scheduler_exit(db->dboid, launcher_restart_time(db),
									   db->failures);
		return;
	}

	slot = &worker_shared->slots[db->slot];
	LWLockAcquire(worker_shared->lock, LW_SHARED);
	gone = slot->kind != WORKER_SLOT_SCHEDULER ||
		   slot->generation != db->generation;
	running = !gone && slot->running;
	LWLockRelease(worker_shared->lock);

	if (!gone && !running && db->handle != NULL)
	{
		pid_t pid;

		/* Reserved but not claimed: did the postmaster give up on it? */
		if (GetBackgroundWorkerPid(db->handle, &pid) == BGWH_STOPPED)
		{
			worker_release_reservation(db->slot, db->generation);
			gone = true;
		}
	}
	if (!gone)
		return;

	if (db->handle != NULL &&
		launcher_nexiting < (int) lengthof(launcher_exiting))
		launcher_exiting[launcher_nexiting++] = db->handle;
	else if (db->handle != NULL)
		pfree(db->handle);
	db->handle = NULL;
	db->slot = -1;

	if (db->state != LAUNCHER_DB_INSTALLED && db->state != LAUNCHER_DB_UNKNOWN)
		return;
	if (worker_database_held(db->dboid))
		return; /* stopped on purpose; restarted when the hold ends */
	if (db->installed_at >= db->started_at)
		return; /* it looked before the extension was installed: start anew */

	if (TimestampDifferenceExceeds(db->started_at, now,
								   LAUNCHER_STABLE_RUN_MS))
		db->failures = 0;
	db->failures++;
	db->stopped_at = now;
	worker_note_scheduler_exit(db->dboid, launcher_restart_time(db),
							   db->failures);
	ereport(
		LOG,
		(errmsg(
			"pg_opsdata scheduler of database \"%s\" stopped; restarting it in %d ms",
			NameStr(db->name),
			(int) TimestampDifferenceMilliseconds(
				now, launcher_restart_time(db)))));
}

/*
 * Pass on that the background workers of schedulers that ended are free
 * again, once the postmaster reports them stopped.
 */
static void
launcher_watch_exits(void)
{
	bool freed = false;
	int i = 0;

	while (i < launcher_nexiting)
	{
		pid_t pid;

		if (GetBackgroundWorkerPid(launcher_exiting[i], &pid) != BGWH_STOPPED)
		{
			i++;
			continue;
		}
		pfree(launcher_exiting[i]);
		launcher_exiting[i] = launcher_exiting[--launcher_nexiting];
		freed = true;
	}
	if (freed)
		worker_wake_starved();
}

/*
 * Start the scheduler of a database.  Returns false when no background
 * worker could be had; launcher_retry_at then says when to try again.
 */
static bool
launcher_start(LauncherDb *db, TimestampTz now)
{
	WorkerStartArgs args;
	BackgroundWorkerHandle *handle = NULL;
	char name[BGW_MAXLEN];
	uint64 generation;
	uint64 freed = worker_workers_freed();
	int slotno;

	slotno =
		worker_reserve_slot(WORKER_SLOT_SCHEDULER, db->dboid, 0, &generation);
	if (slotno >= 0)
	{
		memset(&args, 0, sizeof(args));
		args.generation = generation;
		args.dboid = db->dboid;
		snprintf(name, sizeof(name), "%s for database \"%s\"",
				 WORKER_SCHEDULER_TYPE, NameStr(db->name));
		handle = worker_start_dynamic("worker_scheduler_main",
									  WORKER_SCHEDULER_TYPE, name, slotno,
									  &args, launcher_context);
		if (handle == NULL)
			worker_release_reservation(slotno, generation);
	}

	if (handle == NULL)
	{
		/*
		 * A worker's background worker is freed a moment after it left our
		 * slot: only a shortage that lasts is logged and shown in health.
		 */
		launcher_freed_seen = freed;
		if (launcher_failing_since == 0)
			launcher_failing_since = now;
		launcher_exhausted_ms =
			launcher_exhausted_ms == 0
				? WORKER_RETRY_FIRST_MS
				: Min(launcher_exhausted_ms * 2, WORKER_RETRY_MAX_MS);
		launcher_retry_at =
			TimestampTzPlusMilliseconds(now, launcher_exhausted_ms);
		if (TimestampDifferenceExceeds(launcher_failing_since, now,
									   WORKER_RETRY_MAX_MS) &&
			worker_note_exhausted(true))
			ereport(
				LOG,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg(
					 "pg_opsdata could not start the scheduler of database \"%s\": no background worker slot is free",
					 NameStr(db->name)),
				 errdetail(
					 "All %d background workers allowed by max_worker_processes are in use; no job worker starts until the scheduler has one.",
					 max_worker_processes),
				 errhint(
					 "Raise max_worker_processes to at least %d: pg_opsdata needs one worker for its launcher, one per database with the extension and up to pg_opsdata.max_workers for jobs, besides those of parallel queries and logical replication.",
					 worker_needed_processes())));
		return false;
	}

	launcher_exhausted_ms = 0;
	launcher_retry_at = 0;
	launcher_failing_since = 0;
	db->slot = slotno;
	db->generation = generation;
	db->handle = handle;
	db->started_at = now;
	return true;
}
