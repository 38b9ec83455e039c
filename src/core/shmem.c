/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		Shared-memory request and startup dispatch for every area.
 *
 * Areas register an OpsdataShmemPart from their *_init() while the library
 * is being preloaded.  The core chains one shmem_request_hook, which asks
 * for the sum of the parts and one named LWLock tranche per part that wants
 * locks, and one shmem_startup_hook, which runs every part's startup()
 * under AddinShmemInitLock.  Parts are kept in registration order; the
 * array is static because registration only happens in _PG_init().
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "core/opsdata.h"

#define OPSDATA_MAX_SHMEM_PARTS 16

static const OpsdataShmemPart *opsdata_parts[OPSDATA_MAX_SHMEM_PARTS];
static int opsdata_nparts = 0;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static void opsdata_shmem_request(void);
static void opsdata_shmem_startup(void);

/*
 * Install the request and startup hooks.  Called once from _PG_init(); does
 * nothing unless the library is being preloaded.
 */
void
opsdata_shmem_init(void)
{
	if (!opsdata_preloaded)
		return;

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = opsdata_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = opsdata_shmem_startup;
}

/*
 * Register an area's part.  The part must be static data: the core keeps the
 * pointer.  Only valid while shared_preload_libraries is being processed.
 */
void
opsdata_shmem_register(const OpsdataShmemPart *part)
{
	if (!process_shared_preload_libraries_in_progress)
		elog(
			ERROR,
			"pg_opsdata shared memory part \"%s\" registered outside shared_preload_libraries",
			part->name);
	if (opsdata_nparts >= OPSDATA_MAX_SHMEM_PARTS)
		elog(ERROR, "too many pg_opsdata shared memory parts");
	opsdata_parts[opsdata_nparts++] = part;
}

/*
 * Bytes of shared memory the registered parts use (for health reports).
 */
Size
opsdata_shmem_total(void)
{
	Size total = 0;
	int i;

	for (i = 0; i < opsdata_nparts; i++)
		total = add_size(total, opsdata_parts[i]->size());
	return total;
}

/*
 * Number of registered shared memory parts.
 */
int
opsdata_shmem_parts(void)
{
	return opsdata_nparts;
}

static void
opsdata_shmem_request(void)
{
	int i;

	if (prev_shmem_request_hook)
		prev_shmem_request_hook();

	RequestAddinShmemSpace(opsdata_shmem_total());
	for (i = 0; i < opsdata_nparts; i++)
	{
		if (opsdata_parts[i]->lwlocks > 0)
			RequestNamedLWLockTranche(opsdata_parts[i]->name,
									  opsdata_parts[i]->lwlocks);
	}
}

static void
opsdata_shmem_startup(void)
{
	int i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	for (i = 0; i < opsdata_nparts; i++)
		opsdata_parts[i]->startup();
	LWLockRelease(AddinShmemInitLock);
}
