/*-------------------------------------------------------------------------
 *
 * partition.c
 *		Load-time set-up of partition maintenance.
 *
 * Partition maintenance keeps its settings in the database
 * (opsdata.settings) and runs its passes in job workers, so it defines no
 * GUC and needs no shared memory.  It registers its job entry in every
 * process (pass.c).  Preloaded, it chains one ProcessUtility hook, which
 * lets pg_restore restore the run-time partitions of pg_opsdata's own
 * tables (restore.c).
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
 * Called by _PG_init(); registers the pass as a job entry, and installs the
 * restore hook when preloaded.
 */
void
partition_init(void)
{
	worker_register_entry(&partition_pass_entry);
	if (opsdata_preloaded)
		partition_restore_init();
}
