/*-------------------------------------------------------------------------
 *
 * worker.c
 *		Entry point of the worker area: its GUCs, and what it sets up when
 *		the library is preloaded.
 *
 * worker_init() defines the pg_opsdata.* settings of the workers in every
 * process that loads the library, so that SHOW and ALTER SYSTEM know them.
 * Only when preloaded does it register the shared memory, install the hooks
 * that keep the launcher informed and databases droppable, and register
 * the launcher.  In binary upgrade mode (pg_upgrade) nothing is started:
 * the cluster's catalogs are being rebuilt and no job may write to it.
 *
 * Timing settings are reloadable (SIGHUP): the launcher and the schedulers
 * re-read them when signalled and recompute their sleeps at once.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/worker/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "core/opsdata.h"
#include "worker/worker_int.h"

int worker_max_workers = 4;
int worker_check_interval = 60 * 1000;
int worker_restart_delay = 1000;

int worker_nservices = 0;
const WorkerService *worker_services[WORKER_MAX_SERVICES];

/*
 * Define the worker area's GUCs and, when preloaded, its shared memory,
 * hooks and launcher.  Called once from _PG_init().
 */
void
worker_init(void)
{
	DefineCustomIntVariable(
		"pg_opsdata.max_workers",
		"Most pg_opsdata job workers running at once, across all databases.",
		"Each running job takes one background worker; 0 stops starting jobs. "
		"The launcher and one scheduler per database come on top.",
		&worker_max_workers, 4, 0, 1024, PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"pg_opsdata.check_interval",
		"Longest time the pg_opsdata launcher and schedulers sleep without being woken.",
		"They are woken when jobs or databases change; this bounds how late "
		"they notice a change made behind their back.",
		&worker_check_interval, 60 * 1000, 1000, 24 * 60 * 60 * 1000,
		PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"pg_opsdata.restart_delay",
		"Delay before a stopped pg_opsdata scheduler is restarted.",
		"The delay doubles with each restart that follows a short run, "
		"up to 64 times this value.",
		&worker_restart_delay, 1000, 10, 24 * 60 * 60 * 1000, PGC_SIGHUP,
		GUC_UNIT_MS, NULL, NULL, NULL);

	if (!opsdata_preloaded)
		return;

	worker_shmem_register();
	worker_install_hooks();

	if (IsBinaryUpgrade)
		ereport(
			LOG,
			(errmsg(
				"pg_opsdata background workers are not started in binary upgrade mode")));
	else
		worker_register_launcher();
}

/*
 * Register a scheduler service (see worker.h).  Only while
 * shared_preload_libraries is processed, so that every scheduler has the
 * same list.
 */
void
worker_register_service(const WorkerService *service)
{
	if (!process_shared_preload_libraries_in_progress)
		elog(
			ERROR,
			"pg_opsdata scheduler service \"%s\" registered outside shared_preload_libraries",
			service->name);
	if (worker_nservices >= WORKER_MAX_SERVICES)
		elog(ERROR, "too many pg_opsdata scheduler services");
	worker_services[worker_nservices++] = service;
}
