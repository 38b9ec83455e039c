/*-------------------------------------------------------------------------
 *
 * state.c
 *		Shared memory of the worker area: worker slots, launcher events,
 *		database holds and restore holds.
 *
 * Every pg_opsdata scheduler and job worker owns a slot while it runs.  A
 * parent reserves the slot (worker_reserve_slot) before it registers the
 * dynamic background worker, passing the slot number and its generation;
 * the worker claims it (worker_claim_slot) and frees it from an
 * on_shmem_exit callback.  Freeing broadcasts slot_freed and wakes the
 * launcher (for schedulers) or the database's scheduler (for job workers),
 * so that nobody polls for a worker's end.  A reservation whose worker
 * never started is freed by its parent when the postmaster reports the
 * worker stopped, or by anyone after WORKER_RESERVATION_TIMEOUT_MS.
 *
 * Job workers are handed out in turn (worker_reserve_job_slot): only the
 * database first in line may reserve one.  When max_worker_processes is
 * what runs out, a scheduler whose registration failed keeps its place
 * (worker_keep_place) and retries, and is woken as soon as the postmaster
 * reports one of our workers gone (worker_wake_starved); every scheduler
 * behind it is refused meanwhile, so the background worker a pg_opsdata
 * worker frees goes to the database first in line.  A scheduler the
 * launcher cannot start goes before any job worker.
 *
 * A hold keeps every pg_opsdata worker out of a database for the rest of
 * the holding backend's transaction: claiming a slot in a held database
 * fails, so a worker that starts meanwhile exits before connecting.  DROP
 * DATABASE and the commands that need a database without sessions take a
 * hold, terminate the workers there and wait for their slots to be freed
 * (worker_hold_database).
 *
 * Locking: worker_shared->lock protects everything here.  Slots' kind,
 * dboid and latch are also read without it by worker_wake_scheduler(),
 * which at worst sets the latch of a process that no longer needs it.
 * Nothing else is done while holding the lock.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/worker/state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "commands/dbcommands.h"
#include "utils/lsyscache.h"

#include "core/opsdata.h"
#include "worker/worker_int.h"

/* How long a command needing an empty database waits for our workers. */
#define WORKER_HOLD_WAIT_MS 5000

WorkerShared *worker_shared = NULL;

static Size worker_shmem_size(void);
static void worker_shmem_startup(void);
static void worker_slot_exit(int code, Datum arg);
static void worker_restore_exit(int code, Datum arg);

static const OpsdataShmemPart worker_shmem_part = {
	.name = "pg_opsdata worker",
	.size = worker_shmem_size,
	.lwlocks = 1,
	.startup = worker_shmem_startup,
};

/*
 * Register the worker area's shared memory with the core dispatch; from
 * worker_init() while preloading.
 */
void
worker_shmem_register(void)
{
	opsdata_shmem_register(&worker_shmem_part);
}

/* One slot per background worker the server can run at all. */
static Size
worker_shmem_size(void)
{
	return add_size(offsetof(WorkerShared, slots),
					mul_size(sizeof(WorkerSlot), max_worker_processes));
}

static void
worker_shmem_startup(void)
{
	bool found;
	int i;

	worker_shared =
		ShmemInitStruct("pg_opsdata worker", worker_shmem_size(), &found);
	if (found)
		return;

	memset(worker_shared, 0, worker_shmem_size());
	worker_shared->lock = &(GetNamedLWLockTranche("pg_opsdata worker"))->lock;
	ConditionVariableInit(&worker_shared->slot_freed);
	worker_shared->next_generation = 1;
	pg_atomic_init_u64(&worker_shared->workers_freed, 0);
	worker_shared->nslots = max_worker_processes;
	for (i = 0; i < worker_shared->nslots; i++)
		pg_atomic_init_u32(&worker_shared->slots[i].jobs_changed, 0);
	pg_atomic_init_u32(&worker_shared->restores_used, 0);
}

/*
 * Queue an event for the launcher and wake it.  When the ring is full the
 * launcher is told that events were lost and re-examines every database.
 * seen_seq is, for a scheduler's verdict on the extension, the number of
 * the last event queued before it looked (worker_event_seq()), so that the
 * launcher can tell a verdict older than a CREATE EXTENSION that
 * committed meanwhile.
 */
void
worker_push_event(WorkerEventKind kind, Oid dboid, uint64 seen_seq)
{
	if (worker_shared == NULL)
		return;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	worker_shared->event_seq++;
	if (worker_shared->nevents < WORKER_MAX_EVENTS)
	{
		WorkerEvent *event = &worker_shared->events[worker_shared->nevents++];

		event->kind = kind;
		event->dboid = dboid;
		event->seq = worker_shared->event_seq;
		event->seen_seq = seen_seq;
	}
	else
		worker_shared->events_lost = true;
	LWLockRelease(worker_shared->lock);

	worker_wake_launcher();
}

/* The number of the last event queued. */
uint64
worker_event_seq(void)
{
	uint64 seq;

	LWLockAcquire(worker_shared->lock, LW_SHARED);
	seq = worker_shared->event_seq;
	LWLockRelease(worker_shared->lock);
	return seq;
}

/*
 * Register a dynamic background worker of pg_opsdata that runs function
 * (type and name as pg_stat_activity shows them) in slot slotno with args,
 * notifying this process of its start and exit; the handle is allocated in
 * cxt.  Returns NULL when no worker could be registered.
 */
BackgroundWorkerHandle *
worker_start_dynamic(const char *function, const char *type, const char *name,
					 int slotno, const WorkerStartArgs *args,
					 MemoryContext cxt)
{
	BackgroundWorkerHandle *handle;
	MemoryContext old;

	old = MemoryContextSwitchTo(cxt);
	handle = opsdata_start_worker(function, type, name, Int32GetDatum(slotno),
								  args, sizeof(*args), true);
	MemoryContextSwitchTo(old);
	return handle;
}

/* Set the launcher's latch, if it runs. */
void
worker_wake_launcher(void)
{
	Latch *latch;

	if (worker_shared == NULL)
		return;
	latch = worker_shared->launcher_latch;
	pg_read_barrier();
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * Set the latch of the scheduler of a database, first telling it to re-read
 * its jobs if jobs_changed.  Takes no lock: it reads each slot's kind,
 * database and latch, which only change under the lock, and a stale read
 * sets a latch harmlessly.
 */
static void
worker_signal_scheduler(Oid dboid, bool jobs_changed)
{
	int i;

	if (worker_shared == NULL)
		return;

	for (i = 0; i < worker_shared->nslots; i++)
	{
		WorkerSlot *slot = &worker_shared->slots[i];
		Latch *latch;

		if (slot->kind != WORKER_SLOT_SCHEDULER || slot->dboid != dboid)
			continue;
		if (jobs_changed)
			pg_atomic_write_u32(&slot->jobs_changed, 1);
		pg_read_barrier();
		latch = slot->latch;
		if (latch != NULL)
			SetLatch(latch);
	}
}

/* Wake the scheduler of a database. */
void
worker_wake_scheduler(Oid dboid)
{
	worker_signal_scheduler(dboid, false);
}

/* Tell the scheduler of a database to re-read its jobs, and wake it. */
void
worker_jobs_changed_now(Oid dboid)
{
	worker_signal_scheduler(dboid, true);
}

/* Wake every scheduler waiting for a job worker. */
void
worker_wake_waiting_schedulers(void)
{
	int i;

	if (worker_shared == NULL)
		return;

	LWLockAcquire(worker_shared->lock, LW_SHARED);
	for (i = 0; i < worker_shared->nslots; i++)
	{
		WorkerSlot *slot = &worker_shared->slots[i];

		if (slot->kind == WORKER_SLOT_SCHEDULER && slot->waiting_since != 0 &&
			slot->latch != NULL)
			SetLatch(slot->latch);
	}
	LWLockRelease(worker_shared->lock);
}

/*
 * Reserve a free slot for a worker about to be registered.  Returns the
 * slot number and sets *generation, or -1 when every slot is taken.  The
 * caller must hold the lock exclusively.
 */
static int
worker_reserve_locked(WorkerSlotKind kind, Oid dboid, int64 job_id,
					  uint64 *generation)
{
	int i;

	for (i = 0; i < worker_shared->nslots; i++)
	{
		WorkerSlot *slot = &worker_shared->slots[i];

		if (slot->kind != WORKER_SLOT_FREE)
			continue;
		slot->kind = kind;
		slot->running = false;
		slot->dboid = dboid;
		slot->pid = 0;
		slot->latch = NULL;
		slot->generation = worker_shared->next_generation++;
		slot->reserved_at = GetCurrentTimestamp();
		slot->started_at = 0;
		pg_atomic_write_u32(&slot->jobs_changed, 0);
		slot->waiting_since = 0;
		slot->wait_reason = WORKER_WAIT_NONE;
		slot->last_granted = 0;
		slot->job_id = job_id;
		slot->parent_pid = MyProcPid;
		*generation = slot->generation;
		return i;
	}
	return -1;
}

/*
 * Reserve a slot for a scheduler (kind WORKER_SLOT_SCHEDULER) or a job
 * launcher's probe.  Job workers go through worker_reserve_job_slot().
 * Returns the slot number and sets *generation, or -1 when the slot array
 * is full.
 */
int
worker_reserve_slot(WorkerSlotKind kind, Oid dboid, int64 job_id,
					uint64 *generation)
{
	int result;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	result = worker_reserve_locked(kind, dboid, job_id, generation);
	LWLockRelease(worker_shared->lock);
	return result;
}

/* Job workers running (or starting) in a database; caller holds the lock. */
static int
worker_jobs_of_locked(Oid dboid)
{
	int n = 0;
	int i;

	for (i = 0; i < worker_shared->nslots; i++)
	{
		if (worker_shared->slots[i].kind == WORKER_SLOT_JOB &&
			worker_shared->slots[i].dboid == dboid)
			n++;
	}
	return n;
}

/*
 * True if another database waits for a job worker and goes before the
 * scheduler in my_slot, which has mine job workers and has waited since
 * my_since: fewer job workers running first, then the one served least
 * recently, then the one waiting longest, then the lower slot (so that
 * the order is total).  Caller holds the lock.
 */
static bool
worker_behind_locked(int my_slot, int mine, TimestampTz my_since)
{
	WorkerSlot *me = &worker_shared->slots[my_slot];
	int i;

	for (i = 0; i < worker_shared->nslots; i++)
	{
		WorkerSlot *other = &worker_shared->slots[i];
		int theirs;

		if (i == my_slot || other->kind != WORKER_SLOT_SCHEDULER ||
			other->waiting_since == 0 || other->dboid == me->dboid)
			continue;
		theirs = worker_jobs_of_locked(other->dboid);
		if (theirs != mine)
		{
			if (theirs < mine)
				return true;
			continue;
		}
		if (other->last_granted != me->last_granted)
		{
			if (other->last_granted < me->last_granted)
				return true;
			continue;
		}
		if (other->waiting_since != my_since)
		{
			if (other->waiting_since < my_since)
				return true;
			continue;
		}
		if (i < my_slot)
			return true;
	}
	return false;
}

/*
 * Reserve a job worker slot for the scheduler in my_slot.  Job workers are
 * capped at pg_opsdata.max_workers across the cluster and handed out in
 * turn: while the launcher cannot start a scheduler, none is granted (a
 * database's scheduler goes first); else the databases waiting go in the
 * order of worker_behind_locked().  A scheduler keeps its place in line
 * while it retries a registration that failed (worker_keep_place), so the
 * next background worker a pg_opsdata worker frees goes to the database
 * first in line.  A refused scheduler is marked waiting, with the reason,
 * and is woken when a worker ends or another scheduler is served.  Returns
 * the slot number, or -1 with *why saying why; WORKER_WAIT_SERVER means
 * the slot array itself is full, which the caller treats as a failed
 * registration.
 */
int
worker_reserve_job_slot(int my_slot, int64 job_id, uint64 *generation,
						WorkerWait *why, WorkerTurn *turn)
{
	WorkerSlot *me = &worker_shared->slots[my_slot];
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz my_since;
	int used = 0;
	int i;
	int result = -1;

	*why = WORKER_WAIT_NONE;
	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);

	for (i = 0; i < worker_shared->nslots; i++)
	{
		if (worker_shared->slots[i].kind == WORKER_SLOT_JOB)
			used++;
	}
	my_since = me->waiting_since != 0 ? me->waiting_since : now;

	if (used >= worker_max_workers)
		*why = WORKER_WAIT_MAX_WORKERS;
	else if (worker_shared->launcher_waiting)
		*why = WORKER_WAIT_LAUNCHER;
	else if (worker_behind_locked(my_slot, worker_jobs_of_locked(me->dboid),
								  my_since))
		*why = WORKER_WAIT_IN_LINE;
	else
	{
		result = worker_reserve_locked(WORKER_SLOT_JOB, me->dboid, job_id,
									   generation);
		if (result < 0)
			*why = WORKER_WAIT_SERVER;
	}

	if (result >= 0)
	{
		turn->waiting_since = my_since;
		turn->last_granted = me->last_granted;
		me->waiting_since = 0;
		me->wait_reason = WORKER_WAIT_NONE;
		me->last_granted = now;
	}
	else
	{
		me->waiting_since = my_since;
		me->wait_reason = *why;
	}

	LWLockRelease(worker_shared->lock);
	return result;
}

/*
 * The job worker the scheduler in my_slot was granted (slot slotno of
 * generation, or -1 if none could be reserved) could not be registered:
 * every background worker of the server is in use.  Free the reservation
 * and give the scheduler back its place in line, so that it is served
 * first when a background worker frees up, while it retries.
 */
void
worker_keep_place(int my_slot, const WorkerTurn *turn, int slotno,
				  uint64 generation)
{
	WorkerSlot *me = &worker_shared->slots[my_slot];

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	me->waiting_since = turn->waiting_since;
	me->last_granted = turn->last_granted;
	me->wait_reason = WORKER_WAIT_SERVER;
	if (slotno >= 0)
	{
		WorkerSlot *slot = &worker_shared->slots[slotno];

		if (slot->kind != WORKER_SLOT_FREE && slot->generation == generation &&
			!slot->running)
			slot->kind = WORKER_SLOT_FREE;
	}
	LWLockRelease(worker_shared->lock);
}

/*
 * How many pg_opsdata workers the postmaster reported stopped so far; a
 * start that failed for want of a background worker is retried at once
 * when this has changed since.
 */
uint64
worker_workers_freed(void)
{
	return pg_atomic_read_u64(&worker_shared->workers_freed);
}

/*
 * The launcher says how many schedulers it could not start for want of a
 * background worker (0: none).  While it waits, no job worker is granted:
 * a database's scheduler goes before any job.
 */
void
worker_launcher_waiting(int pending)
{
	bool released;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	released = worker_shared->launcher_waiting && pending == 0;
	worker_shared->launcher_waiting = pending > 0;
	worker_shared->launcher_pending = pending;
	LWLockRelease(worker_shared->lock);

	if (released)
		worker_wake_waiting_schedulers();
}

/*
 * A background worker of the server was freed (the postmaster reported a
 * pg_opsdata worker stopped): count it, so that whoever waits for one
 * retries at once (worker_workers_freed()), and wake them, the launcher
 * first.
 */
void
worker_wake_starved(void)
{
	if (worker_shared == NULL)
		return;
	pg_atomic_fetch_add_u64(&worker_shared->workers_freed, 1);
	if (worker_shared->launcher_waiting)
		worker_wake_launcher();
	worker_wake_waiting_schedulers();
}

/*
 * Free a reservation whose worker did not start (registration failed, or
 * the postmaster reports it stopped before it claimed the slot).
 */
void
worker_release_reservation(int slotno, uint64 generation)
{
	WorkerSlot *slot = &worker_shared->slots[slotno];
	bool freed = false;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	if (slot->kind != WORKER_SLOT_FREE && slot->generation == generation &&
		!slot->running)
	{
		slot->kind = WORKER_SLOT_FREE;
		freed = true;
	}
	LWLockRelease(worker_shared->lock);

	if (freed)
	{
		ConditionVariableBroadcast(&worker_shared->slot_freed);
		worker_wake_waiting_schedulers();
	}
}

/* Free reservations older than WORKER_RESERVATION_TIMEOUT_MS. */
void
worker_reclaim_stale_reservations(void)
{
	TimestampTz now = GetCurrentTimestamp();
	bool freed = false;
	int i;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < worker_shared->nslots; i++)
	{
		WorkerSlot *slot = &worker_shared->slots[i];

		if (slot->kind != WORKER_SLOT_FREE && !slot->running &&
			TimestampDifferenceExceeds(slot->reserved_at, now,
									   WORKER_RESERVATION_TIMEOUT_MS))
		{
			slot->kind = WORKER_SLOT_FREE;
			freed = true;
		}
	}
	LWLockRelease(worker_shared->lock);

	if (freed)
	{
		ConditionVariableBroadcast(&worker_shared->slot_freed);
		worker_wake_waiting_schedulers();
	}
}

/* True if some backend holds the database; caller holds the lock. */
static bool
worker_held_locked(Oid dboid)
{
	int i;

	for (i = 0; i < WORKER_MAX_HOLDS; i++)
	{
		if (worker_shared->holds[i].dboid == dboid &&
			worker_shared->holds[i].holder != 0)
			return true;
	}
	return false;
}

/* True if some backend holds the database (DROP DATABASE and the like). */
bool
worker_database_held(Oid dboid)
{
	bool held;

	LWLockAcquire(worker_shared->lock, LW_SHARED);
	held = worker_held_locked(dboid);
	LWLockRelease(worker_shared->lock);
	return held;
}

/*
 * Claim the slot a parent reserved for this process.  Returns NULL when the
 * reservation is gone (reclaimed, or for another worker) or the database is
 * held; the caller then exits without connecting.  On success the slot is
 * freed when the process exits.
 */
WorkerSlot *
worker_claim_slot(int slotno, uint64 generation, WorkerSlotKind kind)
{
	WorkerSlot *slot;
	bool ok;

	if (worker_shared == NULL || slotno < 0 || slotno >= worker_shared->nslots)
		return NULL;
	slot = &worker_shared->slots[slotno];

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	ok =
		slot->kind == kind && slot->generation == generation && !slot->running;
	if (ok && worker_held_locked(slot->dboid))
	{
		/* Give the slot back at once: the database must stay empty. */
		slot->kind = WORKER_SLOT_FREE;
		ok = false;
	}
	if (ok)
	{
		slot->running = true;
		slot->pid = MyProcPid;
		slot->started_at = GetCurrentTimestamp();
		pg_write_barrier();
		slot->latch = MyLatch;
	}
	LWLockRelease(worker_shared->lock);

	if (!ok)
	{
		ConditionVariableBroadcast(&worker_shared->slot_freed);
		return NULL;
	}
	on_shmem_exit(worker_slot_exit, Int32GetDatum(slotno));
	return slot;
}

/*
 * on_shmem_exit callback of a worker that claimed a slot: free it and wake
 * whoever depends on it.
 */
static void
worker_slot_exit(int code, Datum arg)
{
	WorkerSlot *slot = &worker_shared->slots[DatumGetInt32(arg)];
	WorkerSlotKind kind = WORKER_SLOT_FREE;
	Oid dboid = InvalidOid;

	LWLockReleaseAll();
	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	if (slot->pid == MyProcPid && slot->running)
	{
		kind = slot->kind;
		dboid = slot->dboid;
		slot->latch = NULL;
		pg_write_barrier();
		slot->kind = WORKER_SLOT_FREE;
		slot->running = false;
		slot->pid = 0;
		slot->waiting_since = 0;
		slot->wait_reason = WORKER_WAIT_NONE;
	}
	LWLockRelease(worker_shared->lock);

	ConditionVariableBroadcast(&worker_shared->slot_freed);
	if (kind == WORKER_SLOT_SCHEDULER)
	{
		worker_wake_launcher();
		/* Others may have been refused in its favour. */
		worker_wake_waiting_schedulers();
	}
	else if (kind == WORKER_SLOT_JOB)
	{
		/*
		 * Our scheduler re-reads its jobs; waiting schedulers may start one.
		 */
		worker_jobs_changed_now(dboid);
		worker_wake_waiting_schedulers();
	}
}

/*
 * Whether a shortage of background workers is going on: one was missing
 * less than WORKER_EXHAUSTED_QUIET_MS ago.  Whoever waits for one retries
 * at least every WORKER_RETRY_MAX_MS and records each failure, so a
 * shortage that lasts keeps this true.  Caller holds the lock.
 */
static bool
worker_exhausted_locked(TimestampTz now)
{
	return worker_shared->exhausted_since != 0 &&
		   !TimestampDifferenceExceeds(worker_shared->exhausted_last, now,
									   WORKER_EXHAUSTED_QUIET_MS);
}

/*
 * When the shortage of background workers that is going on began, or 0.
 */
TimestampTz
worker_exhausted_since(void)
{
	TimestampTz since = 0;

	if (worker_shared == NULL)
		return 0;
	LWLockAcquire(worker_shared->lock, LW_SHARED);
	if (worker_exhausted_locked(GetCurrentTimestamp()))
		since = worker_shared->exhausted_since;
	LWLockRelease(worker_shared->lock);
	return since;
}

/*
 * Record that a worker could not be registered because max_worker_processes
 * is used up; by_launcher tells a scheduler that could not start from a job
 * worker.  Returns true when the caller should log it: the shortage just
 * began, and that kind of failure was not logged in the last
 * WORKER_EXHAUSTED_LOG_MS, so that the log says it once however often the
 * start is retried.
 */
bool
worker_note_exhausted(bool by_launcher)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz *logged;
	bool log;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	if (!worker_exhausted_locked(now))
		worker_shared->exhausted_since = now;
	worker_shared->exhausted_last = now;
	logged = by_launcher ? &worker_shared->exhausted_logged_launcher
						 : &worker_shared->exhausted_logged_jobs;
	log = *logged < worker_shared->exhausted_since &&
		  (*logged == 0 ||
		   TimestampDifferenceExceeds(*logged, now, WORKER_EXHAUSTED_LOG_MS));
	if (log)
		*logged = now;
	LWLockRelease(worker_shared->lock);
	return log;
}

/*
 * The background workers pg_opsdata needs at most: its launcher, a
 * scheduler per database with the extension (running, or that the
 * launcher could not start) and pg_opsdata.max_workers job workers.
 */
int
worker_needed_processes(void)
{
	int n = 1 + worker_max_workers;
	int i;

	LWLockAcquire(worker_shared->lock, LW_SHARED);
	for (i = 0; i < worker_shared->nslots; i++)
	{
		if (worker_shared->slots[i].kind == WORKER_SLOT_SCHEDULER)
			n++;
	}
	n += worker_shared->launcher_pending;
	LWLockRelease(worker_shared->lock);
	return n;
}

/*
 * Remember when a database's scheduler stopped and when it restarts, for
 * opsdata.health(); restart_at 0 forgets the database.
 */
void
worker_note_scheduler_exit(Oid dboid, TimestampTz restart_at, int failures)
{
	WorkerExit *target = NULL;
	int i;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < WORKER_MAX_EXITS; i++)
	{
		WorkerExit *e = &worker_shared->exits[i];

		if (e->dboid == dboid)
		{
			target = e;
			break;
		}
		if (target == NULL ||
			(target->dboid != InvalidOid &&
			 (e->dboid == InvalidOid || e->exited_at < target->exited_at)))
			target = e;
	}
	if (restart_at == 0)
	{
		if (target->dboid == dboid)
			memset(target, 0, sizeof(WorkerExit));
	}
	else
	{
		target->dboid = dboid;
		target->exited_at = GetCurrentTimestamp();
		target->restart_at = restart_at;
		target->failures = failures;
	}
	LWLockRelease(worker_shared->lock);
}

/*
 * Take a hold on a database for the rest of this transaction, terminate
 * every pg_opsdata worker connected to it and wait (a few seconds at most)
 * until they are gone.  command names the statement, for the log.
 * Released by worker_release_holds() at the end of the transaction.
 */
void
worker_hold_database(Oid dboid, const char *command)
{
	TimestampTz deadline;
	int i;
	int stopped;
	bool added = false;

	if (worker_shared == NULL || !OidIsValid(dboid))
		return;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < WORKER_MAX_HOLDS && !added; i++)
	{
		WorkerHold *h = &worker_shared->holds[i];

		if (h->holder == MyProcPid && h->dboid == dboid)
			added = true;
	}
	for (i = 0; i < WORKER_MAX_HOLDS && !added; i++)
	{
		WorkerHold *h = &worker_shared->holds[i];

		if (h->holder == 0)
		{
			h->dboid = dboid;
			h->holder = MyProcPid;
			added = true;
		}
	}
	LWLockRelease(worker_shared->lock);

	if (!added)
		ereport(
			WARNING,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg(
				 "pg_opsdata could not keep its workers out of the database during %s",
				 command),
			 errdetail("Too many such commands run at once.")));

	stopped = worker_signal_database(dboid, SIGTERM);
	if (stopped == 0)
		return;

	ereport(LOG, (errmsg_plural(
					 "pg_opsdata stopped %d worker in database \"%s\" for %s",
					 "pg_opsdata stopped %d workers in database \"%s\" for %s",
					 stopped, stopped, get_database_name(dboid), command)));

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										   WORKER_HOLD_WAIT_MS);
	ConditionVariablePrepareToSleep(&worker_shared->slot_freed);
	for (;;)
	{
		long remaining;
		bool any = false;

		LWLockAcquire(worker_shared->lock, LW_SHARED);
		for (i = 0; i < worker_shared->nslots; i++)
		{
			if (worker_shared->slots[i].kind != WORKER_SLOT_FREE &&
				worker_shared->slots[i].running &&
				worker_shared->slots[i].dboid == dboid)
				any = true;
		}
		LWLockRelease(worker_shared->lock);
		if (!any)
			break;
		remaining =
			TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
		if (remaining <= 0)
			break;
		ConditionVariableTimedSleep(&worker_shared->slot_freed, remaining,
									PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
}

/* Release the holds of this backend and let the launcher restart workers. */
void
worker_release_holds(void)
{
	bool released = false;
	int i;

	if (worker_shared == NULL)
		return;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < WORKER_MAX_HOLDS; i++)
	{
		if (worker_shared->holds[i].holder == MyProcPid)
		{
			worker_shared->holds[i].holder = 0;
			worker_shared->holds[i].dboid = InvalidOid;
			released = true;
		}
	}
	LWLockRelease(worker_shared->lock);

	if (released)
		worker_wake_launcher();
}

/*
 * Send a signal to every running pg_opsdata worker connected to a database;
 * returns how many were signalled.
 */
int
worker_signal_database(Oid dboid, int signo)
{
	pid_t pids[64];
	int n = 0;
	int total = 0;
	int i;

	LWLockAcquire(worker_shared->lock, LW_SHARED);
	for (i = 0; i < worker_shared->nslots; i++)
	{
		WorkerSlot *slot = &worker_shared->slots[i];

		if (slot->kind == WORKER_SLOT_FREE || !slot->running ||
			slot->dboid != dboid || slot->pid == 0)
			continue;
		if (n < (int) lengthof(pids))
			pids[n++] = slot->pid;
		total++;
	}
	LWLockRelease(worker_shared->lock);

	for (i = 0; i < n; i++)
		kill(pids[i], signo);
	return total;
}

/* Whether a restore entry still keeps its database's jobs waiting. */
static bool
worker_restore_active(const WorkerRestore *r, TimestampTz now)
{
	if (r->pid != 0)
		return true;
	return OidIsValid(r->dboid) &&
		   !TimestampDifferenceExceeds(r->ended_at, now,
									   WORKER_RESTORE_GRACE_MS);
}

/*
 * Mark the entries of pid ended; returns how many, their databases in woken.
 */
static int
worker_restore_end(pid_t pid, Oid *woken)
{
	TimestampTz now = GetCurrentTimestamp();
	int n = 0;
	int i;

	for (i = 0; i < WORKER_MAX_RESTORES; i++)
	{
		WorkerRestore *r = &worker_shared->restores[i];

		if (r->pid == pid)
		{
			woken[n++] = r->dboid;
			r->pid = 0;
			r->ended_at = now;
		}
	}
	return n;
}

/*
 * Keep the jobs of a database waiting while this backend, which is
 * restoring a dump, stays connected, and for WORKER_RESTORE_GRACE_MS
 * after.  The entry ends when the backend exits, which wakes the
 * database's scheduler.
 */
void
worker_add_restore(Oid dboid, pid_t pid)
{
	static bool callback_registered = false;
	TimestampTz now = GetCurrentTimestamp();
	bool added = false;
	int i;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < WORKER_MAX_RESTORES && !added; i++)
	{
		if (worker_shared->restores[i].pid == pid &&
			worker_shared->restores[i].dboid == dboid)
			added = true;
	}
	for (i = 0; i < WORKER_MAX_RESTORES && !added; i++)
	{
		WorkerRestore *r = &worker_shared->restores[i];

		/*
		 * An ended entry of the same database can go: the new one outlasts it.
		 */
		if (r->pid == 0 &&
			(r->dboid == dboid || !worker_restore_active(r, now)))
		{
			if (!OidIsValid(r->dboid))
				pg_atomic_fetch_add_u32(&worker_shared->restores_used, 1);
			r->dboid = dboid;
			r->pid = pid;
			r->ended_at = 0;
			added = true;
		}
	}
	LWLockRelease(worker_shared->lock);

	if (added && !callback_registered)
	{
		before_shmem_exit(worker_restore_exit, (Datum) 0);
		callback_registered = true;
	}
}

static void
worker_restore_exit(int code, Datum arg)
{
	Oid woken[WORKER_MAX_RESTORES];
	int n;
	int i;

	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	n = worker_restore_end(MyProcPid, woken);
	LWLockRelease(worker_shared->lock);

	for (i = 0; i < n; i++)
		worker_wake_scheduler(woken[i]);
}

/*
 * True while a backend restoring a dump into the database is connected,
 * or one left less than WORKER_RESTORE_GRACE_MS ago.  Entries of backends
 * that vanished without cleaning up are ended here, and entries whose
 * grace has passed are freed, so that worker_restore_under_way() answers
 * without a lock once no restore is left anywhere.
 */
bool
worker_restore_in_progress(Oid dboid)
{
	TimestampTz now = GetCurrentTimestamp();
	pid_t pids[WORKER_MAX_RESTORES];
	int n = 0;
	bool found = false;
	bool stale = false;
	int i;

	LWLockAcquire(worker_shared->lock, LW_SHARED);
	for (i = 0; i < WORKER_MAX_RESTORES; i++)
	{
		WorkerRestore *r = &worker_shared->restores[i];

		if (OidIsValid(r->dboid) && !worker_restore_active(r, now))
			stale = true;
		if (r->dboid != dboid)
			continue;
		if (r->pid != 0)
			pids[n++] = r->pid;
		else if (worker_restore_active(r, now))
			found = true;
	}
	LWLockRelease(worker_shared->lock);

	for (i = 0; i < n; i++)
	{
		Oid woken[WORKER_MAX_RESTORES];

		if (BackendPidGetProc(pids[i]) != NULL)
		{
			found = true;
			continue;
		}
		LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
		(void) worker_restore_end(pids[i], woken);
		LWLockRelease(worker_shared->lock);
		found = true;
	}

	if (stale)
	{
		LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
		for (i = 0; i < WORKER_MAX_RESTORES; i++)
		{
			WorkerRestore *r = &worker_shared->restores[i];

			if (OidIsValid(r->dboid) && !worker_restore_active(r, now))
			{
				r->dboid = InvalidOid;
				pg_atomic_fetch_sub_u32(&worker_shared->restores_used, 1);
			}
		}
		LWLockRelease(worker_shared->lock);
	}
	return found;
}

/*
 * The test of worker_restore_in_progress() for the other areas: true while
 * a dump is being restored into database dboid.  Without a lock, and
 * false at once, when no restore entry is in use in the cluster; false
 * when the library is not preloaded.
 */
bool
worker_restore_under_way(Oid dboid)
{
	if (worker_shared == NULL || !OidIsValid(dboid))
		return false;
	pg_memory_barrier();
	if (pg_atomic_read_u32(&worker_shared->restores_used) == 0)
		return false;
	return worker_restore_in_progress(dboid);
}

/*
 * Forget that the scheduler in my_slot waits for a job worker (it has no
 * job due).
 */
void
worker_stop_waiting(int my_slot)
{
	WorkerSlot *me = &worker_shared->slots[my_slot];

	if (me->waiting_since == 0)
		return;
	LWLockAcquire(worker_shared->lock, LW_EXCLUSIVE);
	me->waiting_since = 0;
	me->wait_reason = WORKER_WAIT_NONE;
	LWLockRelease(worker_shared->lock);
	/* Others may have been refused in our favour. */
	worker_wake_waiting_schedulers();
}

/*
 * The advisory lock a run of a job holds for its whole length, in this
 * database.  Field 4 keeps it apart from pg_advisory_lock()'s keys.
 */
void
worker_job_lock_tag(LOCKTAG *tag, int64 job_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) ((uint64) job_id >> 32),
						 (uint32) job_id, WORKER_JOB_LOCK_FIELD4);
}
