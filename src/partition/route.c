/*-------------------------------------------------------------------------
 *
 * route.c
 *		Routing rows into a partitioned table while maintenance attaches
 *		partitions.
 *
 * ATTACH PARTITION takes only SHARE UPDATE EXCLUSIVE on the parent, so it
 * runs beside inserts; it also takes ACCESS EXCLUSIVE on the default
 * partition, whose constraint it changes.  An insert that read the
 * partition descriptor before such an ATTACH committed routes a row of the
 * new partition's range to the default partition, and fails there with
 * "new row for relation ... violates partition constraint".  pg_opsdata's
 * own writers (the audit trail, metric points) must not fail a user's
 * transaction that way: they lock the default partition before they read
 * the descriptor, so an ATTACH under way is waited for (and its change
 * seen), and one that comes later waits for their transaction to end.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/partition/route.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/partition.h"
#include "storage/lmgr.h"
#include "utils/rel.h"

#include "partition/route.h"

/*
 * Lock the default partition of parent, if it has one, in ROW EXCLUSIVE
 * mode until the end of the transaction.  Call it after locking the parent
 * and before reading its partition descriptor.
 */
void
partition_lock_default(Relation parent)
{
	Oid def = get_default_partition_oid(RelationGetRelid(parent));

	if (OidIsValid(def))
		LockRelationOid(def, RowExclusiveLock);
}
