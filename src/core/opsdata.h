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
	OPSDATA_RELCACHE_AUDIT_QUEUES,		  /* audit/pqueue_store.c */
	OPSDATA_RELCACHE_LEARNING_THRESHOLDS, /* learning/threshold.c */
	OPSDATA_RELCACHE_CORE_ROUTING,		  /* core/routing.c */
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
	 * metrics/citus.c: before DROP EXTENSION pg_opsdata, makes Citus forget
	 * the tables of metrics it distributes, whose shards would keep the
	 * schema from being dropped.
	 */
	OPSDATA_UTILITY_METRICS_CITUS,
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

/*
 * The oldest version of the extension's objects this library works with
 * (version.c).  Moves up only when a version brings a change the C code
 * cannot cope with in older objects.
 */
#define OPSDATA_OLDEST_SCHEMA "0.1"

extern int opsdata_version_cmp(const char *a, const char *b);
extern void opsdata_check_schema(void);
extern bool opsdata_schema_at_least(const char *version);
extern bool opsdata_schema_refused(void);

/* A dynamic background worker of this library (bgworker.c). */
struct BackgroundWorkerHandle;
extern struct BackgroundWorkerHandle *
opsdata_start_worker(const char *function, const char *type, const char *name,
					 Datum main_arg, const void *extra, Size extra_size,
					 bool notify);
extern void opsdata_worker_init(void);

/*
 * Statements run at top level in a worker of this library, as a client's
 * query is (toplevel.c); check may refuse a statement by raising an error.
 */
struct RawStmt;
typedef void (*OpsdataToplevelCheck)(struct RawStmt *stmt, void *arg);
extern void opsdata_toplevel_exec(const char *sql, OpsdataToplevelCheck check,
								  void *arg);

/*
 * The error for an SPI call that did not return what was expected
 * (spi.c): what says what pg_opsdata was doing, "read opsdata.jobs".
 * opsdata_spi_check(rc, expected, what) raises it unless rc is expected;
 * opsdata_spi_connect(options) is SPI_connect_ext() with that check.
 */
extern pg_attribute_noreturn() void opsdata_spi_failed(int rc,
													   const char *what);
extern int opsdata_spi_check(int rc, int expected, const char *what);
extern void opsdata_spi_connect(int options);

/*
 * The statements of a job's command are a user's, though pg_opsdata runs
 * them: they are audited like a client session's.  Between
 * audit_user_statements_begin() and audit_user_statements_end(saved),
 * statements run by the extension's own C code, and those of a background
 * worker (a job worker), are captured as a client's are; pg_opsdata's own
 * functions called inside are still not (src/audit/active.c).
 */
extern int audit_user_statements_begin(void);
extern void audit_user_statements_end(int saved);

/*
 * The guard of every table of pg_opsdata (guard.c): whether the current
 * user may write a table (its owner or a superuser), and whether the only
 * triggers of a table that fire on INSERT are guards, which pg_opsdata's
 * own writers may pass by when they insert through the table access
 * method.
 */
struct RelationData;
extern bool opsdata_guard_allows(struct RelationData *rel);
extern bool opsdata_guard_only_insert(struct RelationData *rel);

/*
 * What only superusers may do to the trail (duties.c): an error unless the
 * role the session acts as is a superuser.  action completes "permission
 * denied to ...", what completes "Only superusers may ...".
 */
extern void opsdata_trail_require_superuser(const char *action,
											const char *what);

/*
 * Where pg_opsdata's writers write (routing.c): through the table access
 * method into local partitions, or, for a table of Citus, a table not of
 * the kind expected or with pg_opsdata.metrics_executor_writes = always, through
 * an INSERT statement the executor runs.  On a Citus worker, background
 * work leaves the tables Citus distributes to the coordinator.
 */
extern void opsdata_routing_init(void);
extern bool opsdata_citus_table(Oid relid);
extern bool opsdata_citus_worker(void);
extern bool opsdata_write_via_executor(struct RelationData *rel,
									   char expected_kind);

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
