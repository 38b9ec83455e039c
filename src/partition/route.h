/*-------------------------------------------------------------------------
 *
 * route.h
 *		What code inserting rows into a partitioned table needs from
 *		partition maintenance.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/partition/route.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_PARTITION_ROUTE_H
#define OPSDATA_PARTITION_ROUTE_H

#include "utils/relcache.h"

extern void partition_lock_default(Relation parent);

#endif /* OPSDATA_PARTITION_ROUTE_H */
