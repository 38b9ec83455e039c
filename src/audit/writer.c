/*-------------------------------------------------------------------------
 *
 * writer.c
 *		Insert a batch of audit events into audit.entries.
 *
 * Used at pre-commit (the write events of the committing transaction, in
 * that transaction) and by the queue's drainer.  Rows are built in C and
 * inserted as COPY does: through the table AM's multi-insert, one WAL
 * record and one buffer lock for many rows, then the index entries of each
 * row; no SPI, no per-row planning.  audit.entries rows are routed to the
 * partition of their ts (the default partition until partition maintenance
 * has made the day's), with the default partition locked first
 * (partition/route.c).  Statement texts go to audit.statements
 * (statements.c).
 *
 * audit.entries and audit.statements stay local to each node of a Citus
 * cluster: the writer refuses to write them when Citus distributes them
 * (core/routing.c) rather than lose the rows in their local shells.
 *
 * Entry ids come from ids.c, never from nextval(): the session's sequence
 * state (lastval(), currval()) is the user's.
 *
 * What the writer looks up by name (the audit schema, its relations, the
 * columns of audit.entries) is cached per backend and forgotten on any
 * relcache invalidation of those relations, so a batch costs no catalog
 * lookup.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/writer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tupconvert.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/jsonapi.h"
#include "executor/execPartition.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "utils/partcache.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "audit/audit.h"
#include "core/opsdata.h"
#include "partition/route.h"

/* Rows of one partition inserted together. */
#define AUDIT_WRITER_BATCH 100

/* What the writer found by name, for the database the backend is in. */
typedef struct AuditWriterCatalog
{
	bool valid;
	Oid entries;
	Oid statements;
	Oid seq;
	Oid statements_relfilenode;
	char entries_kind;
	char statements_kind;
	bool shapes; /* entries take constants, statements placeholders */
	AuditEntryRow columns; /* of audit.entries */
} AuditWriterCatalog;

/*
 * The partition of audit.entries the last row went to, with the bounds of
 * the values of ts it takes, so that the next rows need no routing.  Reset
 * by any relcache invalidation of audit.entries (partitions attached,
 * detached or dropped) or of the partition.
 */
typedef struct AuditWriterRoute
{
	bool valid;
	Oid part;
	TimestampTz lo;	  /* inclusive */
	TimestampTz hi;	  /* exclusive */
	bool same_layout; /* the partition's columns are the parent's */
} AuditWriterRoute;

static AuditWriterRoute audit_writer_route;

static AuditWriterCatalog audit_writer_catalog;

/* A partition the batch writes to. */
typedef struct AuditWriterPart
{
	Oid relid;
	ResultRelInfo *rri;
} AuditWriterPart;

#define AUDIT_WRITER_MAX_PARTS 8

typedef struct AuditWriter
{
	EState *estate;
	ModifyTableState *mtstate;	   /* for the general routing only */
	PartitionTupleRouting *proute; /* made when that is needed */
	ResultRelInfo *entries;
	bool partitioned;
	AuditWriterPart
		parts[AUDIT_WRITER_MAX_PARTS]; /* opened here, not by proute */
	int nparts;
	TupleTableSlot *root_slot;
	AuditStmtWriter *stmts;
	CommandId cid;
	MemoryContext rowcxt; /* values of the row in root_slot */
	AuditEntryRow row;	  /* the columns, and values shared by the batch */

	/* Rows waiting for the multi-insert, all for the partition part. */
	ResultRelInfo *part;
	TupleTableSlot **slots;
	int nslots;	  /* slots filled */
	int maxslots; /* slots made for part */
} AuditWriter;

static void
audit_writer_invalidate(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == audit_writer_catalog.entries ||
		relid == audit_writer_catalog.statements ||
		relid == audit_writer_catalog.seq)
		audit_writer_catalog.valid = false;
	if (relid == InvalidOid || relid == audit_writer_catalog.entries ||
		relid == audit_writer_route.part)
		audit_writer_route.valid = false;
	audit_index_cache_invalidate(relid);
}

/*
 * Register the relcache callback that keeps the writer's catalog cache
 * current.  Preloaded only.
 */
void
audit_writer_init(void)
{
	opsdata_register_relcache(OPSDATA_RELCACHE_AUDIT_WRITER,
							  audit_writer_invalidate);
}

static Oid
audit_relid(Oid nsp, const char *relname)
{
	Oid relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;

	if (!OidIsValid(relid))
		ereport(
			ERROR,
			(errcode(ERRCODE_UNDEFINED_TABLE),
			 errmsg("relation \"audit.%s\" does not exist", relname),
			 errhint(
				 "Is the pg_opsdata extension installed in this database?")));
	return relid;
}

/* Look up what the writer needs by name, unless cached. */
static void
audit_writer_lookup(void)
{
	AuditWriterCatalog *c = &audit_writer_catalog;
	Oid nsp;
	Relation rel;

	if (c->valid)
		return;
	/*
	 * A table found by name may be gone once its lock is granted (a DROP
	 * EXTENSION committed meanwhile): look again, which says clearly that
	 * the table does not exist when it does not.
	 */
	for (;;)
	{
		nsp = get_namespace_oid("audit", true);
		c->entries = audit_relid(nsp, "entries");
		c->statements = audit_relid(nsp, "statements");
		c->seq = audit_relid(nsp, "entries_entry_id_seq");
		rel = try_table_open(c->entries, AccessShareLock);
		if (rel != NULL)
			break;
	}
	c->entries_kind = get_rel_relkind(c->entries);
	c->statements_kind = get_rel_relkind(c->statements);
	audit_entry_columns(&c->columns, RelationGetDescr(rel));
	table_close(rel, AccessShareLock);
	rel = table_open(c->statements, AccessShareLock);
	c->statements_relfilenode = rel->rd_node.relNode;
	/* A schema of 0.1 not updated yet stores texts as they are. */
	c->shapes = c->columns.attnum[AUDIT_COL_CONSTANTS] > 0 &&
				SPI_fnumber(RelationGetDescr(rel), "placeholders") > 0;
	table_close(rel, AccessShareLock);
	c->valid = true;
}

static RangeTblEntry *
audit_rte(Oid relid, char relkind)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);

	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = relkind;
	rte->rellockmode = RowExclusiveLock;
	return rte;
}

static void
audit_writer_open(AuditWriter *w)
{
	AuditWriterCatalog *c = &audit_writer_catalog;

	audit_writer_lookup();
	memset(w, 0, sizeof(AuditWriter));
	w->estate = CreateExecutorState();
	ExecInitRangeTable(
		w->estate, list_make2(audit_rte(c->entries, c->entries_kind),
							  audit_rte(c->statements, c->statements_kind)));
	/*
	 * The executor expects its range table locked by the caller, as the
	 * planner does: the parent first, then (partition_lock_default) its
	 * default partition, the order DDL on the partitions takes them in.
	 */
	LockRelationOid(c->entries, RowExclusiveLock);
	/*
	 * The trail stays local to each node: rows written into the local shell
	 * of a table Citus distributes would never reach its shards, and the
	 * writer runs at pre-commit, too late to start distributed writes.
	 */
	if (opsdata_citus_table(c->entries) || opsdata_citus_table(c->statements))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("audit.entries and audit.statements must stay local "
						"tables"),
				 errdetail("Citus distributes one of them: the entries "
						   "written here would not reach its shards."),
				 errhint("Undistribute them: every node keeps its own audit "
						 "trail.")));
	w->entries = makeNode(ResultRelInfo);
	ExecInitResultRelation(w->estate, w->entries, 1);
	/*
	 * Taking the lock read the invalidations: was audit.statements truncated?
	 */
	audit_writer_lookup();
	audit_statements_check_storage(c->statements, c->statements_relfilenode);

	w->partitioned = w->entries->ri_RelationDesc->rd_rel->relkind ==
					 RELKIND_PARTITIONED_TABLE;
	if (w->partitioned)
		partition_lock_default(w->entries->ri_RelationDesc);
	else
		ExecOpenIndices(w->entries, false);
	w->root_slot = table_slot_create(w->entries->ri_RelationDesc,
									 &w->estate->es_tupleTable);
	w->cid = GetCurrentCommandId(true);
	w->rowcxt = AllocSetContextCreate(
		CurrentMemoryContext, "pg_opsdata audit rows", ALLOCSET_DEFAULT_SIZES);
	w->row = c->columns;
	w->row.cxt = CurrentMemoryContext;
}

/* Open audit.statements for the texts the cache does not know. */
static AuditStmtWriter *
audit_writer_open_statements(void *arg)
{
	AuditWriter *w = (AuditWriter *) arg;
	ResultRelInfo *statements = makeNode(ResultRelInfo);

	LockRelationOid(audit_writer_catalog.statements, RowExclusiveLock);
	ExecInitResultRelation(w->estate, statements, 2);
	ExecOpenIndices(statements, false);
	w->stmts = audit_statements_open(w->estate, statements);
	return w->stmts;
}

/* Insert the rows waiting for the multi-insert, and their index entries. */
static void
audit_writer_flush(AuditWriter *w)
{
	ResultRelInfo *part = w->part;
	int i;

	if (w->nslots == 0)
		return;
	table_multi_insert(part->ri_RelationDesc, w->slots, w->nslots, w->cid, 0,
					   NULL);
	for (i = 0; i < w->nslots; i++)
	{
		if (part->ri_NumIndices > 0)
		{
			List *recheck = ExecInsertIndexTuples(part, w->slots[i], w->estate,
												  false, false, NULL, NIL);

			list_free(recheck);
		}
		ExecClearTuple(w->slots[i]);
	}
	w->nslots = 0;
	ResetPerTupleExprContext(w->estate);
}

static void
audit_writer_close(AuditWriter *w)
{
	int i;

	audit_writer_flush(w);
	if (w->stmts != NULL)
		audit_statements_close(w->stmts);
	if (w->proute)
		ExecCleanupTupleRouting(w->mtstate, w->proute);
	for (i = 0; i < w->nparts; i++)
	{
		ExecCloseIndices(w->parts[i].rri);
		table_close(w->parts[i].rri->ri_RelationDesc, NoLock);
	}
	ExecCloseResultRelations(w->estate);
	ExecCloseRangeTableRelations(w->estate);
	ExecResetTupleTable(w->estate->es_tupleTable, false);
	FreeExecutorState(w->estate);
}

/*
 * Fill the root slot with one event as entry entry_id, stored under shape
 * statement_id (when it has a statement), with its constants when the
 * shape has placeholders.
 */
static void
audit_fill_entry(AuditWriter *w, AuditEvent *ev, int64 entry_id,
				 int64 statement_id, bool has_statement, bool with_constants)
{
	TupleTableSlot *slot = w->root_slot;

	ExecClearTuple(slot);
	memset(slot->tts_isnull, true,
		   sizeof(bool) * slot->tts_tupleDescriptor->natts);
	audit_entry_values(&w->row, ev, entry_id, has_statement, statement_id,
					   with_constants, slot->tts_values, slot->tts_isnull);
	ExecStoreVirtualTuple(slot);
}

/*
 * The leaf partition of audit.entries (parent) that takes rows with this
 * ts, and the range of ts it takes in [*lo, *hi); InvalidOid when the table
 * is not partitioned the way pg_opsdata makes it (by range of ts alone, one
 * level) or no plain table takes ts: the executor's routing then decides.
 * The writer's catalog must be looked up.
 */
static Oid
audit_writer_find_partition(Relation parent, TimestampTz ts, TimestampTz *lo,
							TimestampTz *hi)
{
	PartitionKey key = RelationGetPartitionKey(parent);
	/*
	 * Partitions being detached are left out as the executor leaves them out.
	 */
	PartitionDesc pd =
		RelationGetPartitionDesc(parent, !IsolationUsesXactSnapshot());
	PartitionBoundInfo bi = pd->boundinfo;
	int first = 0;
	int last;
	int below; /* greatest bound <= ts, or -1 */
	int index;
	Oid part;

	if (key->strategy != PARTITION_STRATEGY_RANGE || key->partnatts != 1 ||
		key->partattrs[0] !=
			audit_writer_catalog.columns.attnum[AUDIT_COL_TS] ||
		key->parttypid[0] != TIMESTAMPTZOID || bi == NULL)
		return InvalidOid;

	/* Binary search for the greatest bound not above ts. */
	last = bi->ndatums - 1;
	below = -1;
	while (first <= last)
	{
		int mid = (first + last) / 2;
		PartitionRangeDatumKind kind = bi->kind[mid][0];
		bool le = kind == PARTITION_RANGE_DATUM_MINVALUE ||
				  (kind == PARTITION_RANGE_DATUM_VALUE &&
				   DatumGetTimestampTz(bi->datums[mid][0]) <= ts);

		if (le)
		{
			below = mid;
			first = mid + 1;
		}
		else
			last = mid - 1;
	}
	index = bi->indexes[below + 1];
	if (index < 0)
		index = bi->default_index;
	if (index < 0)
		return InvalidOid;
	part = pd->oids[index];
	if (get_rel_relkind(part) != RELKIND_RELATION)
		return InvalidOid;
	*lo = below >= 0 && bi->kind[below][0] == PARTITION_RANGE_DATUM_VALUE
			  ? DatumGetTimestampTz(bi->datums[below][0])
			  : DT_NOBEGIN;
	*hi = below + 1 < bi->ndatums &&
				  bi->kind[below + 1][0] == PARTITION_RANGE_DATUM_VALUE
			  ? DatumGetTimestampTz(bi->datums[below + 1][0])
			  : DT_NOEND;
	return part;
}

/*
 * Learn from the partition bounds of audit.entries which partition takes
 * rows with this ts, and the range of ts it takes.  Returns false when the
 * executor's routing must decide.
 */
static bool
audit_writer_learn_route(AuditWriter *w, TimestampTz ts)
{
	Relation parent = w->entries->ri_RelationDesc;
	AuditWriterRoute *r = &audit_writer_route;
	TimestampTz lo;
	TimestampTz hi;
	Oid part = audit_writer_find_partition(parent, ts, &lo, &hi);

	if (!OidIsValid(part))
		return false;
	r->valid = false;
	r->part = part;
	r->lo = lo;
	r->hi = hi;
	{
		Relation rel = table_open(part, RowExclusiveLock);
		TupleConversionMap *map = convert_tuples_by_name(
			RelationGetDescr(parent), RelationGetDescr(rel));

		r->same_layout = map == NULL;
		table_close(rel, NoLock);
	}
	r->valid = true;
	return true;
}

/*
 * The partition for a row with this ts, opened with its indexes, when the
 * writer's own routing knows it; NULL when the executor's routing must
 * decide.
 */
static ResultRelInfo *
audit_writer_partition(AuditWriter *w, TimestampTz ts)
{
	AuditWriterRoute *r = &audit_writer_route;
	ResultRelInfo *rri;
	Relation rel;
	int i;

	if (!r->valid || ts < r->lo || ts >= r->hi)
	{
		if (!audit_writer_learn_route(w, ts))
			return NULL;
	}
	if (!r->same_layout)
		return NULL;
	for (i = 0; i < w->nparts; i++)
	{
		if (w->parts[i].relid == r->part)
			return w->parts[i].rri;
	}
	if (w->nparts == AUDIT_WRITER_MAX_PARTS)
		return NULL;
	rel = table_open(r->part, RowExclusiveLock);
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 0, w->entries, 0);
	audit_open_indices(rri);
	w->parts[w->nparts].relid = r->part;
	w->parts[w->nparts].rri = rri;
	w->nparts++;
	return rri;
}

/*
 * Route the row in the root slot to its partition and add it to the rows
 * waiting for the multi-insert, flushing them first when they are for
 * another partition or enough of them wait.
 */
static void
audit_writer_add(AuditWriter *w, TimestampTz ts)
{
	ResultRelInfo *part = w->entries;
	TupleTableSlot *slot;
	TupleConversionMap *map = NULL;

	if (w->partitioned)
		part = audit_writer_partition(w, ts);
	if (part == NULL)
	{
		/* The executor's routing, set up at the first row that needs it. */
		if (w->proute == NULL)
		{
			w->mtstate = makeNode(ModifyTableState);
			w->mtstate->ps.plan = NULL;
			w->mtstate->ps.state = w->estate;
			w->mtstate->operation = CMD_INSERT;
			w->mtstate->mt_nrels = 1;
			w->mtstate->resultRelInfo = w->entries;
			w->mtstate->rootResultRelInfo = w->entries;
			w->proute = ExecSetupPartitionTupleRouting(
				w->estate, w->entries->ri_RelationDesc);
		}
		part = ExecFindPartition(w->mtstate, w->entries, w->proute,
								 w->root_slot, w->estate);
		map = part->ri_RootToPartitionMap;
	}
	if (part != w->part || w->nslots == AUDIT_WRITER_BATCH)
		audit_writer_flush(w);
	if (part != w->part)
	{
		/*
		 * Slots of the new partition's row type; the old ones stay in the
		 * tuple table.
		 */
		w->part = part;
		w->maxslots = 0;
		w->slots = palloc(sizeof(TupleTableSlot *) * AUDIT_WRITER_BATCH);
	}
	if (w->nslots == w->maxslots)
		w->slots[w->maxslots++] = table_slot_create(part->ri_RelationDesc,
													&w->estate->es_tupleTable);
	slot = w->slots[w->nslots++];
	/* The slot gets its own copy: root_slot's values go with the next row. */
	if (map != NULL)
	{
		execute_attr_map_slot(map->attrMap, w->root_slot, slot);
		ExecMaterializeSlot(slot);
	}
	else
		ExecCopySlot(slot, w->root_slot);
}

/* Do the spans of the constants follow each other within len bytes? */
static bool
audit_spans_fit(const AuditSpan *consts, int n, int len)
{
	int end = 0;
	int i;

	for (i = 0; i < n; i++)
	{
		if (consts[i].offset < end || consts[i].len <= 0 ||
			consts[i].offset + consts[i].len > len)
			return false;
		end = consts[i].offset + consts[i].len;
	}
	return true;
}

/*
 * The shape an event's statement is stored under: with its constants
 * replaced by placeholders when it has any and the schema takes shapes,
 * else its text as it is.  Allocates in the current memory context.
 */
static void
audit_writer_shape(const AuditEvent *ev, AuditShape *shape)
{
	int32 *placeholders;

	memset(shape, 0, sizeof(AuditShape));
	if (ev->statement == NULL)
		return;
	shape->len = strlen(ev->statement);
	if (ev->nconsts == 0 || !audit_writer_catalog.shapes ||
		!audit_spans_fit(ev->consts, ev->nconsts, shape->len))
	{
		shape->text = ev->statement;
		return;
	}
	placeholders = palloc(sizeof(int32) * ev->nconsts);
	shape->text = audit_shape_text(ev->statement, ev->consts, ev->nconsts,
								   ev->param_base, &shape->len, placeholders);
	shape->nplaceholders = ev->nconsts;
	shape->placeholders = placeholders;
}

typedef struct AuditWriteBatch
{
	AuditEvent **events;
	int nevents;
	MemoryContext cxt;
} AuditWriteBatch;

/* Write a batch, as the extension's own work, in b->cxt. */
static void
audit_write_batch(void *arg)
{
	AuditWriteBatch *b = (AuditWriteBatch *) arg;
	AuditEvent **events = b->events;
	int nevents = b->nevents;
	AuditShape *shapes = palloc(sizeof(AuditShape) * nevents);
	int64 *ids = palloc(sizeof(int64) * nevents);
	int64 *entry_ids = palloc(sizeof(int64) * nevents);
	AuditWriter w;
	int64 first_id;
	int i;

	audit_writer_open(&w);
	first_id = audit_ids_allocate(audit_writer_catalog.entries,
								  audit_writer_catalog.seq, nevents);
	for (i = 0; i < nevents; i++)
		audit_writer_shape(events[i], &shapes[i]);
	audit_statement_ids(shapes, nevents, ids, audit_writer_open_statements,
						&w);
	for (i = 0; i < nevents; i++)
	{
		MemoryContextReset(w.rowcxt);
		MemoryContextSwitchTo(w.rowcxt);
		entry_ids[i] = first_id + i;
		audit_fill_entry(&w, events[i], entry_ids[i], ids[i],
						 shapes[i].text != NULL, shapes[i].nplaceholders > 0);
		MemoryContextSwitchTo(b->cxt);
		audit_writer_add(&w, events[i]->ts);
	}
	audit_writer_close(&w);
	/* Subscriptions enqueue the entries they match, in this transaction. */
	audit_pq_entries_written(events, entry_ids, nevents);
}

/*
 * Lock what the writer would write the events into (audit.entries, its
 * default partition, the partitions of the events' times, and
 * audit.statements) if that needs no wait, and say whether it could; the
 * locks taken are kept to the end of the transaction either way.  Caller
 * is in a transaction.
 */
bool
audit_writer_try_lock(AuditEvent **events, int nevents)
{
	Oid nsp = get_namespace_oid("audit", true);
	Oid entries =
		OidIsValid(nsp) ? get_relname_relid("entries", nsp) : InvalidOid;
	Oid statements =
		OidIsValid(nsp) ? get_relname_relid("statements", nsp) : InvalidOid;
	Oid def;
	Relation parent;
	Oid part = InvalidOid;
	TimestampTz lo = 0;
	TimestampTz hi = 0;
	bool ok = true;
	int i;

	if (!OidIsValid(entries) || !OidIsValid(statements) ||
		!ConditionalLockRelationOid(entries, RowExclusiveLock) ||
		!ConditionalLockRelationOid(statements, RowExclusiveLock))
		return false;
	def = get_default_partition_oid(entries);
	if (OidIsValid(def) && !ConditionalLockRelationOid(def, RowExclusiveLock))
		return false;
	audit_writer_lookup();
	if (audit_writer_catalog.entries_kind != RELKIND_PARTITIONED_TABLE)
		return true;
	parent = table_open(entries, NoLock);
	for (i = 0; i < nevents && ok; i++)
	{
		TimestampTz ts = events[i]->ts;

		if (OidIsValid(part) && ts >= lo && ts < hi)
			continue;
		part = audit_writer_find_partition(parent, ts, &lo, &hi);
		ok = OidIsValid(part) &&
			 ConditionalLockRelationOid(part, RowExclusiveLock);
	}
	table_close(parent, NoLock);
	return ok;
}

/*
 * Insert events into audit.entries (and their texts into
 * audit.statements) in the current transaction.  Caller is in a
 * transaction; any error aborts it.
 */
void
audit_write_events(AuditEvent **events, int nevents)
{
	AuditWriteBatch b;
	MemoryContext old;

	if (nevents == 0)
		return;
	b.events = events;
	b.nevents = nevents;
	b.cxt =
		AllocSetContextCreate(CurrentMemoryContext, "pg_opsdata audit writer",
							  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(b.cxt);
	audit_run_internal(audit_write_batch, &b);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(b.cxt);
}
