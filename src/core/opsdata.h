/*-------------------------------------------------------------------------
 *
 * opsdata.h
 *		Declarations shared by every area of pg_opsdata.
 *
 * Each area (worker, partition, audit, metrics, learning) exposes one
 * *_init() function that _PG_init() calls; everything else an area needs
 * from the core is declared here.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/opsdata.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_H
#define OPSDATA_H

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "core/compat.h"
#include "tcop/utility.h"
#include "utils/inval.h"

/* Name of the extension, its library and its GUC prefix. */
#define OPSDATA_NAME "pg_opsdata"

/*
 * True in processes that loaded the library from shared_preload_libraries
 * (the postmaster and every process it forks).  False when a backend loaded
 * it on demand, e.g. at CREATE EXTENSION without preloading: hooks, shared
 * memory and workers are then off.
 */
extern bool opsdata_preloaded;

/*
 * Shared memory is requested and initialized through one dispatch: an area
 * registers a part from its *_init() (only when preloaded), and the core's
 * shmem_request and shmem_startup hooks size and initialize every part.
 * startup() runs with AddinShmemInitLock held, in the postmaster and (under
 * EXEC_BACKEND) in each child; it calls ShmemInitStruct itself.
 */
typedef struct OpsdataShmemPart
{
	const char *name;	/* also the name of its LWLock tranche */
	Size (*size)(void); /* bytes of shared memory it needs */
	int lwlocks;		/* LWLocks in its named tranche, or 0 */
	void (*startup)(void);
} OpsdataShmemPart;

extern void opsdata_shmem_init(void);
extern void opsdata_shmem_register(const OpsdataShmemPart *part);
extern Size opsdata_shmem_total(void);
extern int opsdata_shmem_parts(void);

/*
 * Invalidation callbacks (inval.c): the library takes one relcache callback
 * slot, and one syscache callback slot per catalog cache watched, however
 * many caches its areas keep; the areas register handlers, which the core
 * calls.  Relcache handlers run in this order.
 */
typedef enum OpsdataRelcacheOrder
{
	OPSDATA_RELCACHE_METRICS_SERIES,	  /* metrics/series.c: series ids */
	OPSDATA_RELCACHE_AUDIT_CLASSIFY,	  /* audit/classify.c: names */
	OPSDATA_RELCACHE_AUDIT_RULES,		  /* audit/rules.c: audit.rules */
	OPSDATA_RELCACHE_AUDIT_WRITER,		  /* audit/writer.c: its catalog */
	OPSDATA_RELCACHE_LEARNING_THRESHOLDS, /* learning/threshold.c */
	OPSDATA_RELCACHE_NHANDLERS
} OpsdataRelcacheOrder;

extern void opsdata_register_relcache(OpsdataRelcacheOrder order,
									  RelcacheCallbackFunction handler);
extern void opsdata_register_syscache(int cacheid,
									  SyscacheCallbackFunction handler);

/*
 * The library's single ProcessUtility hook, object access hook and
 * transaction callbacks (hooks.c) call the areas' handlers in these
 * orders, whatever the order of the *_init() calls.
 *
 * ProcessUtility handlers nest, outermost first; each continues the
 * statement with opsdata_utility_next().
 */
typedef enum OpsdataUtilityOrder
{
	/*
	 * audit/hooks.c: records every utility statement with its outcome, the
	 * others' doings included, so it wraps them all.
	 */
	OPSDATA_UTILITY_AUDIT,
	/*
	 * partition/restore.c: skips, with a NOTICE, a statement of a restore
	 * that would make again what ATTACH PARTITION made on a partition of an
	 * extension's table; the handlers after it and the other libraries'
	 * hooks do not see that statement.
	 */
	OPSDATA_UTILITY_PARTITION,
	/*
	 * worker/hooks.c: keeps pg_opsdata's workers out of a database that
	 * DROP DATABASE and the like need empty, notes what the launcher must
	 * hear of (CREATE and DROP DATABASE, COMMIT PREPARED) and the sessions
	 * of a restore.
	 */
	OPSDATA_UTILITY_WORKER,
	/*
	 * metrics/ingest_copy.c: reads a COPY into metrics.ingest itself, then
	 * does not continue the statement; last, so that every other handler
	 * sees that COPY as any other.  The other libraries' hooks do not.
	 */
	OPSDATA_UTILITY_METRICS,
	OPSDATA_UTILITY_NHANDLERS
} OpsdataUtilityOrder;

/* Object access handlers, after the other libraries' hooks. */
typedef enum OpsdataObjectAccessOrder
{
	OPSDATA_OBJECT_ACCESS_WORKER, /* worker/hooks.c: extension dropped */
	OPSDATA_OBJECT_ACCESS_AUDIT,  /* audit/hooks.c: calls of functions */
	OPSDATA_OBJECT_ACCESS_NHANDLERS
} OpsdataObjectAccessOrder;

/* Transaction and subtransaction handlers. */
typedef enum OpsdataXactOrder
{
	/* learning/shared.c: threshold cache, candidates freed or offered */
	OPSDATA_XACT_LEARNING,
	/* audit: the transaction's entries written before it commits */
	OPSDATA_XACT_AUDIT,
	/* worker/hooks.c: at commit, news for the launcher and schedulers */
	OPSDATA_XACT_WORKER,
	OPSDATA_XACT_METRICS, /* metrics/series.c: the series cache settles */
	OPSDATA_XACT_NHANDLERS
} OpsdataXactOrder;

extern void opsdata_register_utility(OpsdataUtilityOrder order,
									 ProcessUtility_hook_type handler);
extern void opsdata_utility_next(PlannedStmt *pstmt, const char *queryString,
								 bool readOnlyTree,
								 ProcessUtilityContext context,
								 ParamListInfo params,
								 QueryEnvironment *queryEnv,
								 DestReceiver *dest, QueryCompletion *qc);
extern void opsdata_register_object_access(OpsdataObjectAccessOrder order,
										   object_access_hook_type handler);
extern void opsdata_register_xact(OpsdataXactOrder order, XactCallback handler,
								  SubXactCallback subhandler);

/*
 * A row of opsdata.health(): for the _health_*() functions of every area,
 * after InitMaterializedSRF().  Status is ok, warning, error or off.
 */
struct ReturnSetInfo;
extern void opsdata_health_row(struct ReturnSetInfo *rsinfo,
							   const char *component, const char *status,
							   const char *detail);

/* A dynamic background worker of this library (bgworker.c). */
struct BackgroundWorkerHandle;
extern struct BackgroundWorkerHandle *
opsdata_start_worker(const char *function, const char *type, const char *name,
					 Datum main_arg, const void *extra, Size extra_size,
					 bool notify);

/*
 * Area entry points, called by _PG_init() (metrics, worker, partition,
 * audit, learning).  The order of the calls sets the order of the areas'
 * shared memory parts and scheduler services; hooks, callbacks and
 * invalidation handlers run in the orders above.
 */
extern void worker_init(void);
extern void partition_init(void);
extern void audit_init(void);
extern void metrics_init(void);
extern void learning_init(void);

#endif /* OPSDATA_H */
