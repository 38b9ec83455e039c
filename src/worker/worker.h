/*-------------------------------------------------------------------------
 *
 * worker.h
 *		Services of the per-database scheduler and job entries, for the
 *		other areas.
 *
 * Each database with pg_opsdata has one scheduler process.  Besides
 * starting the jobs of opsdata.jobs, it runs "services": work that must
 * happen inside the scheduler process itself, continuously and cheaply,
 * rather than as a job (the audit area drains its shared-memory queue this
 * way).  An area registers its service from its *_init() when the library
 * is preloaded, and wakes the scheduler of a database when there is work
 * for it.
 *
 * Work that must run outside any caller's transaction, with statements at
 * top level (CREATE INDEX CONCURRENTLY, DETACH PARTITION ... CONCURRENTLY)
 * and transactions of its own, is a job entry: a C function that a job
 * worker runs.  A built-in job whose command is the entry's command runs
 * the entry in its job worker, in place of the SQL; a session runs the
 * same work now with worker_run_entry(), which starts a job worker for the
 * entry and may wait for its results (entry.c).
 *
 * The rest of the worker area's declarations are in worker_int.h; only
 * this file is meant for the other areas.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/worker/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_WORKER_H
#define OPSDATA_WORKER_H

typedef struct WorkerService
{
	const char *name;

	/*
	 * Called by every scheduler process, outside any transaction, once
	 * connected to its database and each time the scheduler wakes up (its
	 * latch was set, or the delay this function last returned has passed).
	 * Starts and commits its own transactions.  Returns the milliseconds
	 * until it wants to run again, or -1 to run only when woken.  An error
	 * is caught by the scheduler, logged, and the service is called again
	 * after a back-off.  Not called on a hot standby.
	 */
	long (*run)(void);
} WorkerService;

/*
 * Register a service; from an area's *_init() while shared_preload_libraries
 * is processed only.  The struct must be static: the scheduler keeps the
 * pointer.
 */
extern void worker_register_service(const WorkerService *service);

/*
 * Set the latch of the scheduler of that database, if one runs.  Cheap,
 * callable from any backend at any frequency; takes no lock.
 */
extern void worker_wake_scheduler(Oid dboid);

/*
 * True while a dump is being restored into database dboid: a session that
 * ran CREATE EXTENSION pg_opsdata from pg_dump output (with row_security
 * off) is connected, or a session of the same restore is, or the last of
 * them left less than a few seconds ago (pg_restore --jobs reconnects
 * between its phases).  Once false for a database it stays false until
 * the extension is created there again.  Cheap when no restore runs
 * anywhere in the cluster: one atomic read.
 */
extern bool worker_restore_under_way(Oid dboid);

typedef struct WorkerEntry
{
	/*
	 * What the work is, "partition maintenance": a job worker started for
	 * it by worker_run_entry() is of type "pg_opsdata <name>".
	 */
	const char *name;

	/*
	 * The command of the built-in job that runs this entry: a scheduled run
	 * of that job calls run() in its job worker instead of running the SQL.
	 * The SQL is what the same work is in a session: it calls
	 * worker_run_entry() for this entry.
	 */
	const char *command;

	/*
	 * Called in a job worker connected as the role the work runs as (the
	 * extension owner for built-in jobs), outside any transaction; starts
	 * and commits its own transactions and may run statements at top level
	 * with opsdata_toplevel_exec().  arg is what worker_run_entry() was
	 * given, 0 for a scheduled run.  statement_timeout is off: the entry
	 * bounds its own waits.  An error ends the work (a scheduled run is
	 * recorded as failed).  worker_entry_done() releases a waiting caller.
	 */
	void (*run)(Datum arg);
} WorkerEntry;

/*
 * Register an entry; from an area's *_init(), preloaded or not (a job
 * worker started on demand loads the library on its own).  The struct must
 * be static.
 */
extern void worker_register_entry(const WorkerEntry *entry);

/* What worker_run_entry() did. */
typedef enum WorkerEntryOutcome
{
	WORKER_ENTRY_STARTED, /* started; not waited for */
	WORKER_ENTRY_DONE,	  /* the entry called worker_entry_done() */
	WORKER_ENTRY_NO_SLOT, /* no background worker slot was free */
	WORKER_ENTRY_EXITED	  /* its worker ended before worker_entry_done() */
} WorkerEntryOutcome;

/*
 * Start a job worker that runs entry with arg in this database, connected
 * as role, now.  With wait, wait until the entry calls worker_entry_done()
 * (its result is then in *result) or its worker ends; a cancellation of
 * the caller terminates the worker.  The caller raises the error that fits
 * its area for NO_SLOT and EXITED.
 */
extern WorkerEntryOutcome worker_run_entry(const WorkerEntry *entry, Datum arg,
										   Oid role, bool wait, int64 *result);

/*
 * In an entry: its results are committed; the caller waiting in
 * worker_run_entry() gets result and returns while the entry may go on.
 * Does nothing when nobody waits, or after the first call.
 */
extern void worker_entry_done(int64 result);

#endif /* OPSDATA_WORKER_H */
