/*-------------------------------------------------------------------------
 *
 * writer.c
 *		Bulk insertion of points into the leaf partitions of metrics.points.
 *
 * metrics.record_many() and the metrics.ingest foreign table hand their
 * points to a MetricsPointWriter.  It routes each point to the leaf
 * partition of metrics.points its timestamp belongs to and buffers it
 * there.  A buffer is written with table_multi_insert() when its leaf is a
 * plain table of exactly the three columns with no index, trigger or check
 * constraint and is not the default partition (the usual daily partition
 * of partition maintenance).  Any other leaf gets the buffer in COPY's
 * binary format through PostgreSQL's own COPY FROM machinery
 * (BeginCopyFrom/CopyFrom), which maintains indexes, checks constraints,
 * the partition constraint included, and fires triggers as a COPY would.
 * The default partition always takes this path: its constraint changes
 * when partitions are attached.  Meanwhile the writer builds the
 * per-minute sketches of the points and queues them (queue.c) with the
 * points, in the same transaction.
 *
 * Inserting into the leaves rather than through metrics.points bypasses
 * the parent's statement trigger (capture.c), which would otherwise queue
 * the same points a second time, and the cost of its transition table.
 *
 * When metrics.points is not a local partitioned table (a table Citus
 * distributes, core/routing.c) or pg_opsdata.metrics_executor_writes is "always",
 * the writer buffers all points in one buffer and writes them with an
 * INSERT statement into metrics.points, run as the caller through SPI: the
 * executor, and whatever hooks it (Citus), routes the rows, and the
 * table's statement trigger queues their rollup contributions, so the
 * writer builds no sketches of its own then.
 *
 * Routing uses a PartitionDirectory, so the partition descriptor stays the
 * same for the life of the writer, as for one executor query.  The parent
 * is locked RowExclusiveLock until the end of the transaction, like any
 * INSERT, and so is its default partition, before the descriptor is read:
 * a partition attached meanwhile never makes a point routed to the default
 * partition fail its constraint (partition/route.c).  All memory is in a
 * context of the writer's own, a child of the context current at
 * metrics_writer_begin(), so an error frees it with the caller's context.
 * The COPY data source is a static pointer set only while CopyFrom runs.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/writer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "catalog/partition.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "port/pg_bswap.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/partcache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "core/opsdata.h"
#include "metrics/metrics.h"
#include "partition/route.h"

/* Write the points when this many are buffered. */
#define WRITER_FLUSH_POINTS 65536

typedef struct BufferedPoint
{
	int64 series_id;
	TimestampTz ts;
	double value;
} BufferedPoint;

typedef struct LeafBuffer
{
	Oid relid;
	bool is_default; /* the default partition */
	BufferedPoint *points;
	int64 rows;
	int64 size;
	struct LeafBuffer *next;
} LeafBuffer;

struct MetricsPointWriter
{
	MemoryContext cxt; /* the writer and its buffers */
	Relation parent;
	bool via_executor; /* one buffer, written by an INSERT statement */
	PartitionKey key;
	PartitionDirectory pdir;
	PartitionDesc partdesc;
	LeafBuffer *leaves;
	/* The leaf of the last point and its bounds, when it has simple ones. */
	LeafBuffer *last;
	bool last_ranged;
	TimestampTz last_lo; /* inclusive; PG_INT64_MIN if unbounded */
	TimestampTz last_hi; /* exclusive; PG_INT64_MAX if unbounded */
	MetricsDeltas *deltas;
	int64 buffered;
	uint64 total;
	/* Slots for table_multi_insert(), made on first use. */
	TupleDesc slot_desc;
	TupleTableSlot **slots;
	int nslots;
};

/* The buffer CopyFrom reads, while it runs. */
static StringInfo writer_source = NULL;
static int writer_source_offset = 0;

static const char writer_copy_header[] = "PGCOPY\n\377\r\n\0";

static int
writer_copy_read(void *outbuf, int minread, int maxread)
{
	int n;

	Assert(writer_source != NULL);
	n = Min(maxread, writer_source->len - writer_source_offset);
	memcpy(outbuf, writer_source->data + writer_source_offset, n);
	writer_source_offset += n;
	return n;
}

/*
 * Start writing points.  The caller must be allowed to insert into
 * metrics.points (checked here, since COPY's own check is bypassed).
 */
MetricsPointWriter *
metrics_writer_begin(void)
{
	MemoryContext cxt =
		AllocSetContextCreate(CurrentMemoryContext, "pg_opsdata point writer",
							  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	MetricsPointWriter *w = palloc0(sizeof(MetricsPointWriter));
	Oid relid;
	AclResult aclresult;

	metrics_check_writable("metrics ingest");
	w->cxt = cxt;
	relid = metrics_relid("points");
	aclresult = pg_class_aclcheck(relid, GetUserId(), ACL_INSERT);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_TABLE, "points");
	w->parent = table_open(relid, RowExclusiveLock);
	if (opsdata_write_via_executor(w->parent, RELKIND_PARTITIONED_TABLE))
	{
		w->via_executor = true;
		MemoryContextSwitchTo(old);
		return w;
	}
	w->key = RelationGetPartitionKey(w->parent);
	partition_lock_default(w->parent);
	w->pdir = CreatePartitionDirectory(cxt, true);
	w->partdesc = PartitionDirectoryLookup(w->pdir, w->parent);
	w->deltas = metrics_deltas_create(cxt);
	MemoryContextSwitchTo(old);
	return w;
}

static LeafBuffer *
writer_leaf(MetricsPointWriter *w, Oid relid, bool is_default)
{
	LeafBuffer *leaf;
	MemoryContext old;

	for (leaf = w->leaves; leaf != NULL; leaf = leaf->next)
		if (leaf->relid == relid)
			return leaf;
	old = MemoryContextSwitchTo(w->cxt);
	leaf = palloc0(sizeof(LeafBuffer));
	leaf->relid = relid;
	leaf->is_default = is_default;
	leaf->size = 1024;
	leaf->points = palloc(sizeof(BufferedPoint) * leaf->size);
	leaf->next = w->leaves;
	w->leaves = leaf;
	MemoryContextSwitchTo(old);
	return leaf;
}

/*
 * The leaf buffer of the partition ts belongs to, remembering the
 * partition's bounds for the next point.
 */
static LeafBuffer *
writer_route(MetricsPointWriter *w, TimestampTz ts)
{
	PartitionBoundInfo bi;
	Datum value = TimestampTzGetDatum(ts);
	int bound = -1;
	int part = -1;
	bool equal;
	LeafBuffer *leaf;

	if (w->last != NULL && w->last_ranged && ts >= w->last_lo &&
		ts < w->last_hi)
		return w->last;
	if (w->via_executor)
	{
		w->last = writer_leaf(w, RelationGetRelid(w->parent), false);
		w->last_ranged = true;
		w->last_lo = PG_INT64_MIN;
		w->last_hi = PG_INT64_MAX;
		return w->last;
	}

	bi = w->partdesc->boundinfo;
	if (bi != NULL && bi->ndatums > 0)
	{
		bound = partition_range_datum_bsearch(
			w->key->partsupfunc, w->key->partcollation, bi, 1, &value, &equal);
		part = bi->indexes[bound + 1];
	}
	w->last_ranged = part >= 0;
	if (part < 0 && bi != NULL)
		part = bi->default_index;
	if (part < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("no partition of relation \"%s\" found for row",
						RelationGetRelationName(w->parent)),
				 errdetail(
					 "Partition key of the failing row contains (ts) = (%s).",
					 timestamptz_to_str(ts))));
	if (!w->partdesc->is_leaf[part])
		ereport(
			ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg(
				 "partition \"%s\" of relation \"%s\" is itself partitioned",
				 get_rel_name(w->partdesc->oids[part]),
				 RelationGetRelationName(w->parent)),
			 errhint("Partitions of metrics.points must be plain tables.")));

	leaf = writer_leaf(w, w->partdesc->oids[part], !w->last_ranged);
	w->last = leaf;
	if (w->last_ranged)
	{
		if (bound >= 0 && bi->kind[bound][0] == PARTITION_RANGE_DATUM_VALUE)
			w->last_lo = DatumGetTimestampTz(bi->datums[bound][0]);
		else
			w->last_lo = PG_INT64_MIN;
		if (bound + 1 < bi->ndatums &&
			bi->kind[bound + 1][0] == PARTITION_RANGE_DATUM_VALUE)
			w->last_hi = DatumGetTimestampTz(bi->datums[bound + 1][0]);
		else
			w->last_hi = PG_INT64_MAX;
	}
	return leaf;
}

static inline void
writer_put_field(StringInfo buf, uint64 v)
{
	uint32 len = pg_hton32(8);
	uint64 be = pg_hton64(v);

	appendBinaryStringInfoNT(buf, (const char *) &len, 4);
	appendBinaryStringInfoNT(buf, (const char *) &be, 8);
}

/*
 * Whether a leaf can take table_multi_insert(): a plain table whose
 * columns are exactly (series_id bigint, ts timestamptz, value float8),
 * with nothing that COPY would have to maintain or check.  Triggers that
 * do not fire on INSERT, and the guard of pg_opsdata's tables, which the
 * extension's own writers pass, do not count.
 */
static bool
writer_leaf_is_plain(Relation rel)
{
	TupleDesc desc = RelationGetDescr(rel);
	static const Oid types[3] = {INT8OID, TIMESTAMPTZOID, FLOAT8OID};
	int i;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relhasindex ||
		!opsdata_guard_only_insert(rel) || desc->natts != 3 ||
		(desc->constr != NULL &&
		 (desc->constr->num_check > 0 || desc->constr->has_generated_stored)))
		return false;
	for (i = 0; i < 3; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != types[i])
			return false;
	}
	return true;
}

/*
 * The heap tuple of a point for a plain leaf, whose three columns are
 * 8-byte, pass-by-value and never null: the header (no null bitmap) and
 * the three values in column order, as heap_form_tuple() would lay them
 * out, without its general-purpose loops.  Allocated in cxt, the context
 * of the slot that is to own it.
 */
static HeapTuple
writer_form_point(MemoryContext cxt, TupleDesc desc, const BufferedPoint *p)
{
	Size hoff = MAXALIGN(SizeofHeapTupleHeader);
	Size len = hoff + 3 * sizeof(int64);
	HeapTuple tuple = (HeapTuple) MemoryContextAlloc(cxt, HEAPTUPLESIZE + len);
	HeapTupleHeader td = (HeapTupleHeader) ((char *) tuple + HEAPTUPLESIZE);
	int64 *data = (int64 *) ((char *) td + hoff);

	memset(td, 0, hoff);
	tuple->t_len = len;
	ItemPointerSetInvalid(&(tuple->t_self));
	tuple->t_tableOid = InvalidOid;
	tuple->t_data = td;
	HeapTupleHeaderSetDatumLength(td, len);
	HeapTupleHeaderSetTypeId(td, desc->tdtypeid);
	HeapTupleHeaderSetTypMod(td, desc->tdtypmod);
	HeapTupleHeaderSetNatts(td, 3);
	td->t_hoff = hoff;
	data[0] = p->series_id;
	data[1] = p->ts;
	memcpy(&data[2], &p->value, sizeof(double));
	return tuple;
}

/*
 * Insert a leaf's points with table_multi_insert(), in batches.  The slots
 * are the writer's, over a copy of the leaf's descriptor that is not
 * reference-counted (plain leaves all have the same three columns), so
 * that they cost nothing to the resource owner.  Each slot owns the tuple
 * it is given, so that table_multi_insert() does not copy it.
 */
#define WRITER_BATCH 1000
static void
writer_insert_leaf(MetricsPointWriter *w, LeafBuffer *leaf, Relation rel)
{
	BulkInsertState bistate = GetBulkInsertState();
	CommandId cid = GetCurrentCommandId(true);
	int64 done = 0;
	int i;

	if (w->slots == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(w->cxt);

		w->slot_desc = CreateTupleDescCopy(RelationGetDescr(rel));
		w->slots = palloc(sizeof(TupleTableSlot *) * WRITER_BATCH);
		MemoryContextSwitchTo(old);
	}
	while (done < leaf->rows)
	{
		int n = (int) Min(WRITER_BATCH, leaf->rows - done);

		for (i = 0; i < n; i++)
		{
			BufferedPoint *p = &leaf->points[done + i];
			TupleTableSlot *slot;

			if (i >= w->nslots)
			{
				MemoryContext old = MemoryContextSwitchTo(w->cxt);

				w->slots[w->nslots++] =
					MakeSingleTupleTableSlot(w->slot_desc, &TTSOpsHeapTuple);
				MemoryContextSwitchTo(old);
			}
			slot = w->slots[i];
			ExecStoreHeapTuple(
				writer_form_point(slot->tts_mcxt, w->slot_desc, p), slot,
				true);
		}
		CHECK_FOR_INTERRUPTS();
		table_multi_insert(rel, w->slots, n, cid, 0, bistate);
		done += n;
	}
	FreeBulkInsertState(bistate);
	table_finish_bulk_insert(rel, 0);
}

/*
 * Insert a leaf's points with COPY FROM, from a buffer in binary format.
 */
static void
writer_copy_leaf(LeafBuffer *leaf, Relation rel)
{
	ParseState *pstate;
	List *attnames;
	List *options;
	CopyFromState cstate;
	StringInfoData data;
	uint32 zero = 0;
	uint16 nfields = pg_hton16(3);
	int16 trailer = (int16) pg_hton16((uint16) -1);
	int64 i;

	initStringInfo(&data);
	appendBinaryStringInfo(&data, writer_copy_header,
						   sizeof(writer_copy_header) - 1);
	appendBinaryStringInfo(&data, (const char *) &zero, 4); /* flags */
	appendBinaryStringInfo(&data, (const char *) &zero, 4); /* extension */
	for (i = 0; i < leaf->rows; i++)
	{
		BufferedPoint *p = &leaf->points[i];
		uint64 bits;

		memcpy(&bits, &p->value, sizeof(bits));
		enlargeStringInfo(&data, 2 + 3 * 12);
		appendBinaryStringInfoNT(&data, (const char *) &nfields, 2);
		writer_put_field(&data, (uint64) p->series_id);
		writer_put_field(&data, (uint64) p->ts);
		writer_put_field(&data, bits);
	}
	appendBinaryStringInfo(&data, (const char *) &trailer, 2);

	pstate = make_parsestate(NULL);
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL,
										 false, false);
	attnames = list_make3(makeString("series_id"), makeString("ts"),
						  makeString("value"));
	options =
		list_make1(makeDefElem("format", (Node *) makeString("binary"), -1));

	writer_source = &data;
	writer_source_offset = 0;
	PG_TRY();
	{
		cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false,
							   writer_copy_read, attnames, options);
		(void) CopyFrom(cstate);
		EndCopyFrom(cstate);
	}
	PG_FINALLY();
	{
		writer_source = NULL;
	}
	PG_END_TRY();

	free_parsestate(pstate);
	pfree(data.data);
}

/*
 * Insert the points of the single buffer with an INSERT statement into
 * metrics.points, run as the caller (who may insert into it).
 */
static void
writer_exec_leaf(LeafBuffer *leaf)
{
	Datum *ids = palloc(sizeof(Datum) * leaf->rows);
	Datum *tss = palloc(sizeof(Datum) * leaf->rows);
	Datum *values = palloc(sizeof(Datum) * leaf->rows);
	Oid argtypes[3] = {INT8ARRAYOID, TIMESTAMPTZARRAYOID, FLOAT8ARRAYOID};
	Datum args[3];
	int64 i;
	int rc;

	for (i = 0; i < leaf->rows; i++)
	{
		ids[i] = Int64GetDatum(leaf->points[i].series_id);
		tss[i] = TimestampTzGetDatum(leaf->points[i].ts);
		values[i] = Float8GetDatum(leaf->points[i].value);
	}
	args[0] = PointerGetDatum(construct_array(
		ids, leaf->rows, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(
		tss, leaf->rows, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(
		values, leaf->rows, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));

	opsdata_spi_connect(0);
	rc = SPI_execute_with_args(
		"INSERT INTO metrics.points (series_id, ts, value) "
		"SELECT * FROM ROWS FROM (pg_catalog.unnest($1), "
		"pg_catalog.unnest($2), pg_catalog.unnest($3))",
		3, argtypes, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		opsdata_spi_failed(rc, "insert into metrics.points");
	SPI_finish();
	for (i = 0; i < 3; i++)
		pfree(DatumGetPointer(args[i]));
	pfree(ids);
	pfree(tss);
	pfree(values);
}

static void
writer_write_leaf(MetricsPointWriter *w, LeafBuffer *leaf)
{
	Relation rel;

	if (leaf->rows == 0)
		return;
	if (w->via_executor)
	{
		writer_exec_leaf(leaf);
		leaf->rows = 0;
		return;
	}
	rel = table_open(leaf->relid, RowExclusiveLock);
	if (!leaf->is_default && writer_leaf_is_plain(rel))
		writer_insert_leaf(w, leaf, rel);
	else
		writer_copy_leaf(leaf, rel);
	table_close(rel, NoLock);
	leaf->rows = 0;
}

static void
writer_flush_points(MetricsPointWriter *w)
{
	LeafBuffer *leaf;

	for (leaf = w->leaves; leaf != NULL; leaf = leaf->next)
		writer_write_leaf(w, leaf);
	w->buffered = 0;
}

/*
 * Add one point; the value must be finite (checked by the sketch).
 */
void
metrics_writer_add(MetricsPointWriter *w, int64 series_id, TimestampTz ts,
				   double value)
{
	LeafBuffer *leaf;
	BufferedPoint *p;

	if (!w->via_executor)
		metrics_deltas_add(w->deltas, series_id, metrics_minute_of(ts), value);
	leaf = writer_route(w, ts);
	if (leaf->rows >= leaf->size)
	{
		leaf->size *= 2;
		leaf->points =
			repalloc_huge(leaf->points, sizeof(BufferedPoint) * leaf->size);
	}
	p = &leaf->points[leaf->rows++];
	p->series_id = series_id;
	p->ts = ts;
	p->value = value;
	w->total++;
	if (++w->buffered >= WRITER_FLUSH_POINTS)
		writer_flush_points(w);
}

/*
 * Write what is buffered and release the writer.  Returns the number of
 * points written.  The parent stays locked until the end of the
 * transaction.
 */
uint64
metrics_writer_finish(MetricsPointWriter *w)
{
	uint64 total;
	int i;

	writer_flush_points(w);
	if (!w->via_executor)
	{
		metrics_deltas_flush(w->deltas);
		DestroyPartitionDirectory(w->pdir);
	}
	total = w->total;
	for (i = 0; i < w->nslots; i++)
		ExecDropSingleTupleTableSlot(w->slots[i]);
	table_close(w->parent, NoLock);
	MemoryContextDelete(w->cxt);
	return total;
}
