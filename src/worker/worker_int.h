/*-------------------------------------------------------------------------
 *
 * worker_int.h
 *		Declarations shared by the files of the worker area.
 *
 * Processes
 * ---------
 * launcher   one per cluster, a static background worker started once
 *            recovery has finished (so never on a hot standby, and never in
 *            binary upgrade mode).  Connected to no database: it reads
 *            pg_database only, and keeps one scheduler running in every
 *            database that has the extension (launcher.c).
 * scheduler  one per such database, a dynamic worker started by the
 *            launcher.  It runs the registered services and starts a job
 *            worker for each due job (scheduler.c).  Started in a database
 *            whose extension state is unknown, it checks and exits if the
 *            extension is not there: that is how the launcher learns about
 *            databases after a restart without a setting listing them.
 * job worker one per job run, a dynamic worker started by a scheduler,
 *            connected as the job's role; it runs the job's command as
 *            top-level statements (or, for a built-in job, its entry),
 *            records the run and exits (jobworker.c, runner.c).  A session
 *            starts one too, without a slot, to run an entry now
 *            (entry.c).
 *
 * Shared memory (state.c)
 * -----------------------
 * One slot per running or starting scheduler and job worker; the array has
 * max_worker_processes entries, which no number of background workers can
 * exceed.  A parent reserves a slot before registering the worker, the
 * worker claims it once started and frees it when it exits
 * (on_shmem_exit), which also wakes whoever waits for it.  Job workers are
 * handed out in turn (worker_reserve_job_slot): only the database first in
 * line gets one, and it keeps its place while the server's own background
 * workers (max_worker_processes) are all in use; a scheduler the launcher
 * cannot start goes before any job.  Besides slots:
 * a small ring of events for the launcher (extension created or dropped in
 * a database, a scheduler found the extension missing), "holds" that keep
 * every worker out of a database while DROP DATABASE and similar commands
 * need it empty, and restore holds that keep jobs from running while a
 * dump is being restored.
 *
 * Locking: WorkerShared->lock (an LWLock) protects everything but the
 * fields read without it by worker_wake_scheduler() and
 * worker_jobs_changed_now(): a slot's kind, dboid and latch are written
 * under the lock and read with a barrier, so a stale read at worst sets a
 * latch that nobody waits on; the jobs_changed flag is atomic, and
 * check_interval is only written by the slot's own scheduler.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/worker/worker_int.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_WORKER_INT_H
#define OPSDATA_WORKER_INT_H

#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "storage/condition_variable.h"
#include "storage/dsm.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "worker/worker.h"

#define WORKER_LAUNCHER_TYPE  "pg_opsdata launcher"
#define WORKER_SCHEDULER_TYPE "pg_opsdata scheduler"
#define WORKER_JOB_TYPE		  "pg_opsdata job"

#define WORKER_MAX_SERVICES		8
#define WORKER_MAX_EVENTS		64
#define WORKER_MAX_HOLDS		32
#define WORKER_MAX_RESTORES		16
#define WORKER_RESTORE_GRACE_MS 5000
#define WORKER_MAX_EXITS		64

/*
 * A shortage of background workers is over once none was missing for this
 * long; it is logged when it begins, at most once per
 * WORKER_EXHAUSTED_LOG_MS.  Starts refused for want of a background worker
 * are retried after WORKER_RETRY_FIRST_MS, doubling up to
 * WORKER_RETRY_MAX_MS, and at once when a pg_opsdata worker ends.
 */
#define WORKER_EXHAUSTED_QUIET_MS (10 * 1000)
#define WORKER_EXHAUSTED_LOG_MS	  (10 * 60 * 1000)
#define WORKER_RETRY_FIRST_MS	  100
#define WORKER_RETRY_MAX_MS		  1000

/* A reservation whose worker never claimed it is reclaimed after this. */
#define WORKER_RESERVATION_TIMEOUT_MS (60 * 1000)

/* Field 4 of the advisory lock tag that keeps a job from running twice. */
#define WORKER_JOB_LOCK_FIELD4 0x4f50

typedef enum WorkerSlotKind
{
	WORKER_SLOT_FREE = 0,
	WORKER_SLOT_SCHEDULER,
	WORKER_SLOT_JOB
} WorkerSlotKind;

/* Why a scheduler waits for a job worker. */
typedef enum WorkerWait
{
	WORKER_WAIT_NONE = 0,
	WORKER_WAIT_MAX_WORKERS, /* pg_opsdata.max_workers job workers run */
	WORKER_WAIT_IN_LINE,	 /* another database goes first */
	WORKER_WAIT_SERVER,		 /* max_worker_processes used up */
	WORKER_WAIT_LAUNCHER	 /* a scheduler start goes first */
} WorkerWait;

typedef struct WorkerSlot
{
	WorkerSlotKind kind;
	bool running; /* claimed by its process; else only reserved */
	Oid dboid;
	pid_t pid;		   /* 0 until claimed */
	Latch *latch;	   /* the process's latch, NULL until claimed */
	uint64 generation; /* tells a reservation from a later reuse */
	TimestampTz reserved_at;
	TimestampTz started_at;

	/* schedulers */
	pg_atomic_uint32 jobs_changed; /* opsdata.jobs changed: re-read it */
	TimestampTz waiting_since;	   /* wants a job worker; 0 if not */
	WorkerWait wait_reason;		   /* why, while waiting */
	TimestampTz last_granted;	   /* last time it got a job worker */
	int check_interval;			   /* the setting it applies */

	/* job workers */
	int64 job_id;
	pid_t parent_pid; /* the scheduler that reserved the slot */
} WorkerSlot;

typedef enum WorkerEventKind
{
	WORKER_EVENT_INSTALLED, /* CREATE EXTENSION committed */
	WORKER_EVENT_DROPPED,	/* DROP EXTENSION committed */
	WORKER_EVENT_ABSENT,	/* a scheduler found no extension */
	WORKER_EVENT_PRESENT,	/* a scheduler found the extension */
	WORKER_EVENT_DB_CHANGED /* pg_database may have changed */
} WorkerEventKind;

typedef struct WorkerEvent
{
	WorkerEventKind kind;
	Oid dboid;
	uint64 seq; /* events are numbered in the order they are queued */
	uint64
		seen_seq; /* ABSENT, PRESENT: last event queued when the check began */
} WorkerEvent;

/* No worker may run in a database while a backend holds it. */
typedef struct WorkerHold
{
	Oid dboid;
	pid_t holder;
} WorkerHold;

/*
 * Jobs wait while a session restoring a dump is connected, and for
 * WORKER_RESTORE_GRACE_MS after the last one left (pg_restore --jobs
 * reconnects between its phases).
 */
typedef struct WorkerRestore
{
	Oid dboid;
	pid_t pid;			  /* 0 once the session ended */
	TimestampTz ended_at; /* when it ended */
} WorkerRestore;

/* Why a database's scheduler is not running, for opsdata.health(). */
typedef struct WorkerExit
{
	Oid dboid;
	TimestampTz exited_at;
	TimestampTz restart_at;
	int failures;
} WorkerExit;

/* A scheduler's place in line for job workers, before a grant. */
typedef struct WorkerTurn
{
	TimestampTz waiting_since;
	TimestampTz last_granted;
} WorkerTurn;

/* What a parent passes in bgw_extra to the worker it starts. */
typedef struct WorkerStartArgs
{
	uint64 generation; /* of the reserved slot, whose number is bgw_main_arg */
	Oid dboid;
	int64 job_id;	 /* job workers: the job */
	TimestampTz due; /* job workers: when it is due */
	Oid role; /* job workers: the job's role, InvalidOid if it cannot connect */
} WorkerStartArgs;

/* What a job worker started for an entry finds in bgw_extra (entry.c). */
typedef struct WorkerEntryArgs
{
	Oid dboid;
	Oid role;
	Datum arg;
	char name[NAMEDATALEN];
} WorkerEntryArgs;

/* What a caller waiting for an entry shares with its worker (entry.c). */
typedef struct WorkerEntryCall
{
	struct PGPROC *caller; /* whose latch to set */
	pg_atomic_uint32 done; /* 1 once the entry said done */
	int64 result;		   /* what it said, valid once done */
} WorkerEntryCall;

/*
 * A job worker is started this long before its job is due, and waits for
 * the due time once connected: the run then starts on time, not a process
 * start and a connection later.
 */
#define WORKER_DISPATCH_LEAD_MS 250

typedef struct WorkerShared
{
	LWLock *lock;
	ConditionVariable slot_freed; /* broadcast whenever a slot is freed */

	pid_t launcher_pid;
	Latch *launcher_latch;
	TimestampTz launcher_started;
	int launcher_restart_delay; /* the settings the launcher applies */
	int launcher_check_interval;

	uint64 event_seq; /* number of the last event queued */
	int nevents;
	bool events_lost; /* the ring overflowed: launcher re-probes */
	WorkerEvent events[WORKER_MAX_EVENTS];

	WorkerHold holds[WORKER_MAX_HOLDS];
	WorkerRestore restores[WORKER_MAX_RESTORES];
	pg_atomic_uint32 restores_used; /* entries with a valid dboid */
	WorkerExit exits[WORKER_MAX_EXITS];

	/* Counts the pg_opsdata workers the postmaster reported stopped. */
	pg_atomic_uint64 workers_freed;

	/* The launcher could not start launcher_pending schedulers. */
	bool launcher_waiting;
	int launcher_pending;

	/*
	 * RegisterDynamicBackgroundWorker failed for a second or more:
	 * max_worker_processes is used up.  A shortage lasts until
	 * WORKER_EXHAUSTED_QUIET_MS pass without such a failure.
	 */
	TimestampTz exhausted_since; /* start of the episode; 0 if none */
	TimestampTz exhausted_last;	 /* last failure */
	TimestampTz exhausted_logged_launcher; /* when schedulers' was logged */
	TimestampTz exhausted_logged_jobs;	   /* when job workers' was logged */

	uint64 next_generation;
	int nslots;
	WorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} WorkerShared;

/* worker.c */
extern int worker_max_workers;
extern int worker_check_interval;
extern int worker_restart_delay;

/* state.c */
extern WorkerShared *worker_shared;
extern void worker_shmem_register(void);
extern void worker_push_event(WorkerEventKind kind, Oid dboid,
							  uint64 seen_seq);
extern uint64 worker_event_seq(void);
extern int worker_reserve_slot(WorkerSlotKind kind, Oid dboid, int64 job_id,
							   uint64 *generation);
extern int worker_reserve_job_slot(int my_slot, int64 job_id,
								   uint64 *generation, WorkerWait *why,
								   WorkerTurn *turn);
extern void worker_keep_place(int my_slot, const WorkerTurn *turn, int slotno,
							  uint64 generation);
extern void worker_launcher_waiting(int pending);
extern void worker_wake_starved(void);
extern uint64 worker_workers_freed(void);
extern void worker_release_reservation(int slot, uint64 generation);
extern WorkerSlot *worker_claim_slot(int slot, uint64 generation,
									 WorkerSlotKind kind);
extern bool worker_database_held(Oid dboid);
extern bool worker_note_exhausted(bool by_launcher);
extern TimestampTz worker_exhausted_since(void);
extern int worker_needed_processes(void);
extern void worker_reclaim_stale_reservations(void);
extern void worker_wake_launcher(void);
extern void worker_wake_waiting_schedulers(void);
extern void worker_jobs_changed_now(Oid dboid);
extern void worker_note_scheduler_exit(Oid dboid, TimestampTz restart_at,
									   int failures);
extern BackgroundWorkerHandle *
worker_start_dynamic(const char *function, const char *type, const char *name,
					 int slotno, const WorkerStartArgs *args,
					 MemoryContext cxt);
extern bool worker_restore_in_progress(Oid dboid);
extern void worker_add_restore(Oid dboid, pid_t pid);
extern void worker_hold_database(Oid dboid, const char *command);
extern void worker_release_holds(void);
extern int worker_signal_database(Oid dboid, int signo);
extern void worker_stop_waiting(int my_slot);
extern void worker_job_lock_tag(LOCKTAG *tag, int64 job_id);

/* launcher.c */
extern void worker_register_launcher(void);
PGDLLEXPORT void worker_launcher_main(Datum main_arg);

/* scheduler.c */
PGDLLEXPORT void worker_scheduler_main(Datum main_arg);

/* jobworker.c */
PGDLLEXPORT void worker_job_main(Datum main_arg);
PGDLLEXPORT void worker_entry_main(Datum main_arg);

/* entry.c */
extern const WorkerEntry *worker_find_entry(const char *name);
extern const WorkerEntry *worker_entry_for_command(const char *command);
extern void worker_entry_attach(dsm_handle handle);

/* runner.c */
extern bool worker_run_recorded;
extern Oid worker_job_role(const char *run_as, bool builtin, Oid owner,
						   int *sqlstate, char **why);
extern void worker_run_in_job_worker(int64 job_id, Oid role);

/* hooks.c */
extern void worker_install_hooks(void);

/* services (worker.c) */
extern int worker_nservices;
extern const WorkerService *worker_services[WORKER_MAX_SERVICES];

#endif /* OPSDATA_WORKER_INT_H */
