/*-------------------------------------------------------------------------
 *
 * routing.c
 *		Whether pg_opsdata's writers may write a table through the table
 *		access method, or must insert through the executor.
 *
 * The metrics writers (metrics/writer.c, metrics/queue.c) insert into
 * the local partitions of their tables through the table access method,
 * which is fast but invisible to anything that works at the executor
 * level.  Citus is such a thing: a table it distributes keeps an empty
 * local shell on every node, and rows written into that shell never reach
 * the shards.  So before writing a table, a writer asks
 * opsdata_write_via_executor(): true when the table belongs to Citus (it
 * has a row in pg_dist_partition, Citus's catalog of its tables), when it
 * is not of the kind the writer expects, or when the setting
 * pg_opsdata.metrics_executor_writes is "always".  The writer then runs an INSERT
 * statement into the table instead, which any planner or executor hook
 * sees, and which fires the table's triggers as any INSERT does.
 *
 * Nothing here depends on Citus being installed: without it, the catalog
 * pg_catalog.pg_dist_partition does not exist and every table is local.
 * opsdata_citus_worker() tells the background jobs whether this server is
 * a Citus worker, where partition maintenance and rollups leave the
 * tables Citus distributes to the coordinator.
 *
 * The answer for a relation is cached per backend, in a hash table of
 * CacheMemoryContext, until a relcache invalidation of that relation (or
 * of all relations) arrives through the library's one relcache callback
 * (inval.c): Citus invalidates a table's relcache entry whenever it
 * distributes or undistributes it, and the setting is read on every call.
 * A relation not in the cache is looked up through the unique index of
 * pg_dist_partition on logicalrelid, as Citus itself reads its catalog.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/routing.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/skey.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/pg_index.h"
#include "catalog/pg_namespace.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "core/opsdata.h"

/* pg_opsdata.metrics_executor_writes */
typedef enum OpsdataExecutorWrites
{
	OPSDATA_EXECUTOR_WRITES_AUTO,
	OPSDATA_EXECUTOR_WRITES_ALWAYS
} OpsdataExecutorWrites;

static const struct config_enum_entry routing_options[] = {
	{"auto", OPSDATA_EXECUTOR_WRITES_AUTO, false},
	{"always", OPSDATA_EXECUTOR_WRITES_ALWAYS, false},
	{NULL, 0, false}};

static int routing_executor_writes = OPSDATA_EXECUTOR_WRITES_AUTO;

/* Relations whose answer is known, forgotten on their invalidation. */
typedef struct RoutingEntry
{
	Oid relid; /* hash key */
	bool distributed;
} RoutingEntry;

static HTAB *routing_cache = NULL;

/* Citus's unique index of pg_dist_partition on logicalrelid. */
#define ROUTING_CITUS_INDEX "pg_dist_partition_logical_relid_index"

static void
routing_invalidate(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	RoutingEntry *entry;

	if (routing_cache == NULL)
		return;
	if (OidIsValid(relid))
	{
		(void) hash_search(routing_cache, &relid, HASH_REMOVE, NULL);
		return;
	}
	hash_seq_init(&seq, routing_cache);
	while ((entry = hash_seq_search(&seq)) != NULL)
		(void) hash_search(routing_cache, &entry->relid, HASH_REMOVE, NULL);
}

/*
 * The OID of Citus's index of pg_dist_partition on logicalrelid, or
 * InvalidOid when there is no index of that name whose first column is
 * logicalrelid (then the catalog is scanned whole).
 */
static Oid
routing_citus_index(void)
{
	Oid index = get_relname_relid(ROUTING_CITUS_INDEX, PG_CATALOG_NAMESPACE);
	HeapTuple tuple;
	bool usable = false;

	if (!OidIsValid(index))
		return InvalidOid;
	tuple = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(index));
	if (HeapTupleIsValid(tuple))
	{
		Form_pg_index form = (Form_pg_index) GETSTRUCT(tuple);

		usable = form->indnkeyatts >= 1 && form->indkey.values[0] == 1;
		ReleaseSysCache(tuple);
	}
	return usable ? index : InvalidOid;
}

/*
 * Define pg_opsdata.metrics_executor_writes and watch relcache invalidations.
 * Called by _PG_init(), preloaded or not.
 */
void
opsdata_routing_init(void)
{
	DefineCustomEnumVariable(
		"pg_opsdata.metrics_executor_writes",
		"When pg_opsdata's writers insert through the executor rather than "
		"into local partitions directly.",
		"auto: when the table is not a local table of the expected kind, "
		"such as a table distributed by Citus; always: for every write.",
		&routing_executor_writes, OPSDATA_EXECUTOR_WRITES_AUTO,
		routing_options, PGC_SUSET, 0, NULL, NULL, NULL);
	opsdata_register_relcache(OPSDATA_RELCACHE_CORE_ROUTING,
							  routing_invalidate);
}

/*
 * Is the relation a table of Citus (distributed, reference or managed by
 * Citus on the coordinator)?  Reads pg_dist_partition when Citus is
 * installed in the database; the caller is in a transaction.
 */
bool
opsdata_citus_table(Oid relid)
{
	Oid catalog;
	Relation rel;
	SysScanDesc scan;
	ScanKeyData key;
	RoutingEntry *entry;
	bool found;

	if (routing_cache != NULL)
	{
		entry = hash_search(routing_cache, &relid, HASH_FIND, NULL);
		if (entry != NULL)
			return entry->distributed;
	}
	catalog = get_relname_relid("pg_dist_partition", PG_CATALOG_NAMESPACE);
	if (!OidIsValid(catalog))
		found = false;
	else
	{
		Oid index = routing_citus_index();

		/* The first column of pg_dist_partition, logicalrelid (regclass). */
		rel = table_open(catalog, AccessShareLock);
		ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ,
					ObjectIdGetDatum(relid));
		scan =
			systable_beginscan(rel, index, OidIsValid(index), NULL, 1, &key);
		found = HeapTupleIsValid(systable_getnext(scan));
		systable_endscan(scan);
		table_close(rel, AccessShareLock);
	}

	if (routing_cache == NULL)
	{
		HASHCTL ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(RoutingEntry);
		ctl.hcxt = CacheMemoryContext;
		routing_cache = hash_create("pg_opsdata routing", 64, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(routing_cache, &relid, HASH_ENTER, NULL);
	entry->distributed = found;
	return found;
}

/*
 * Is this server a Citus worker: Citus is installed and its local group
 * (pg_dist_local_group.groupid) is not the coordinator's, 0?  Background
 * work on the tables Citus distributes is the coordinator's alone.
 */
bool
opsdata_citus_worker(void)
{
	Oid catalog;
	Relation rel;
	SysScanDesc scan;
	HeapTuple tuple;
	bool worker = false;

	catalog = get_relname_relid("pg_dist_local_group", PG_CATALOG_NAMESPACE);
	if (!OidIsValid(catalog))
		return false;
	rel = table_open(catalog, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool isnull;
		Datum groupid = heap_getattr(tuple, 1, RelationGetDescr(rel), &isnull);

		worker = !isnull && DatumGetInt32(groupid) != 0;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return worker;
}

/*
 * Must a writer insert into rel through the executor?  expected_kind is
 * the relkind the writer knows how to write directly.
 */
bool
opsdata_write_via_executor(Relation rel, char expected_kind)
{
	if (routing_executor_writes == OPSDATA_EXECUTOR_WRITES_ALWAYS)
		return true;
	if (rel->rd_rel->relkind != expected_kind)
		return true;
	return opsdata_citus_table(RelationGetRelid(rel));
}
