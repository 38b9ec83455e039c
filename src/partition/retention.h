/*-------------------------------------------------------------------------
 *
 * retention.h
 *		What other areas learn of the partitions retention removes.
 *
 * Before partition maintenance removes a partition for retention (drops
 * it, or detaches it into the archive schema), it calls
 * partition_retention_hook, when set, with the partition's qualified name:
 * in the transaction of the step, as the owner of the partitioned table,
 * under the step's lock_timeout, after which the step removes the
 * partition.  An error raised by the hook fails the step (or makes it try
 * again, for a lock not granted in time) as the step's own statements do.
 * The audit area uses it to record in its seal chain that the entries of
 * the partition left by retention.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/partition/retention.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_PARTITION_RETENTION_H
#define OPSDATA_PARTITION_RETENTION_H

typedef void (*partition_retention_hook_type)(const char *partition);

extern partition_retention_hook_type partition_retention_hook;

#endif /* OPSDATA_PARTITION_RETENTION_H */
