/*-------------------------------------------------------------------------
 *
 * worker.h
 *		Services of the per-database scheduler, for the other areas.
 *
 * Each database with pg_opsdata has one scheduler process.  Besides
 * starting the jobs of opsdata.jobs, it runs "services": work that must
 * happen inside the scheduler process itself, continuously and cheaply,
 * rather than as a job (the audit area drains its shared-memory queue this
 * way).  An area registers its service from its *_init() when the library
 * is preloaded, and wakes the scheduler of a database when there is work
 * for it.
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

#endif /* OPSDATA_WORKER_H */
