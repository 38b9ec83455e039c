/*-------------------------------------------------------------------------
 *
 * metrics.c
 *		Entry point of the metrics area: its GUC and per-process set-up.
 *
 * metrics_init() runs in _PG_init() whether or not the library is
 * preloaded: the metrics area needs no shared memory, only the per-backend
 * series cache (series.c), whose size is the one GUC of the area, and,
 * when preloaded, the utility handler that reads COPY into metrics.ingest
 * (ingest_copy.c) and the one that lets DROP EXTENSION remove the tables
 * Citus distributes (citus.c).  _PG_init() calls it before the other
 * areas install their hooks, so that theirs see such a COPY as any other.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/metrics.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "core/opsdata.h"
#include "metrics/metrics.h"

void
metrics_init(void)
{
	DefineCustomIntVariable(
		"pg_opsdata.metrics_series_cache_size",
		"Series ids each backend keeps in memory to resolve metric names and tags.",
		"The cache is emptied when it reaches this many entries; 0 disables it.",
		&metrics_series_cache_size, 10000, 0, 10000000, PGC_USERSET, 0, NULL,
		NULL, NULL);
	metrics_series_init();
	if (opsdata_preloaded)
	{
		metrics_ingest_copy_init();
		metrics_citus_init();
	}
}
