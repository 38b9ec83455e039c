/*-------------------------------------------------------------------------
 *
 * citus_stub.c
 *		Test module: a preloaded library that defines the setting by which
 *		pg_opsdata knows that Citus is loaded, citus.max_worker_nodes_tracked,
 *		and does nothing else.
 *
 * pg_opsdata leaves Citus's internal connections out of the audit only in
 * a server where Citus is loaded; the tests preload this module to check
 * that treatment without Citus itself.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		test/modules/citus_stub/citus_stub.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/guc.h"

PG_MODULE_MAGIC;

static int citus_stub_nodes = 2048;

void _PG_init(void);

void
_PG_init(void)
{
	DefineCustomIntVariable("citus.max_worker_nodes_tracked",
							"Stands for Citus's setting of the same name.",
							NULL, &citus_stub_nodes, 2048, 8, 16 * 1024,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
}
