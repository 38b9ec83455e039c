/*-------------------------------------------------------------------------
 *
 * pg_opsdata.c
 *		Library entry point: _PG_init() calls each area's *_init().
 *
 * Nothing else happens here.  Every area defines its own GUCs, registers its
 * shared memory with the core dispatch (src/core/shmem.c) and installs its
 * hooks in its *_init(); after all of them the "pg_opsdata" GUC prefix is
 * reserved so that a misspelt setting is reported instead of ignored.
 *
 * The library works in two modes.  Preloaded (shared_preload_libraries),
 * every feature is on.  Loaded on demand by a backend, only the SQL API
 * works: areas must not install hooks, register shared memory or start
 * workers then, and opsdata.health() says so.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/pg_opsdata.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "core/opsdata.h"

PG_MODULE_MAGIC;

bool opsdata_preloaded = false;

void _PG_init(void);

void
_PG_init(void)
{
	opsdata_preloaded = process_shared_preload_libraries_in_progress;

	opsdata_shmem_init();
	opsdata_routing_init();
	metrics_init();
	worker_init();
	partition_init();
	audit_init();
	learning_init();

	MarkGUCPrefixReserved(OPSDATA_NAME);
}
