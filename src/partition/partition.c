/*-------------------------------------------------------------------------
 *
 * partition.c
 *		Load-time set-up of partition maintenance.
 *
 * Partition maintenance keeps its settings in the database
 * (opsdata.settings) and starts its background worker on demand, so it
 * defines no GUC and needs no shared memory.  Preloaded, it chains one
 * ProcessUtility hook, which lets pg_restore restore the run-time
 * partitions of pg_opsdata's own tables (restore.c).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/partition/partition.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "core/opsdata.h"
#include "partition/partition.h"

/*
 * Called by _PG_init(); installs the restore hook when preloaded.
 */
void
partition_init(void)
{
	if (opsdata_preloaded)
		partition_restore_init();
}
