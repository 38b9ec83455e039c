/*-------------------------------------------------------------------------
 *
 * queue.c
 *		Queueing the rollup contributions of new points.
 *
 * Whoever writes points into metrics.points also writes, in the same
 * transaction, one row per series and minute into metrics.rollup_queue:
 * the sketch of the values that minute received.  The rollup job takes
 * the rows it can see with DELETE ... RETURNING and merges them into the
 * rollups in one transaction, so each contribution is rolled up exactly
 * once: a contribution of a transaction still in progress is invisible
 * until it commits, an aborted one never appears, and a killed run puts
 * everything back.
 *
 * Contributions are gathered in memory per (series, minute), in a hash
 * table with a small direct-mapped array in front for the series seen
 * last.  A value is first only appended to its contribution's chunk of
 * values; when many values wait, each contribution's values are folded
 * into its stored sketch, one contribution at a time in a single scratch
 * sketch.  Building sketches that way touches little memory however many
 * series a statement writes; a sketch per contribution, each with its
 * dense stores, would scatter the values over kilobytes per series.  The
 * stored sketches
 * are inserted with table_multi_insert() while metrics.rollup_queue is
 * the plain local table this extension made, else (a table Citus
 * distributes, or pg_opsdata.metrics_executor_writes = always: core/routing.c)
 * with an INSERT statement run as the table's owner in a privileged
 * region (core/privileged.h).  Either way the caller needs no privilege on the
 * queue: writers may add points, not queue rows of their own making.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "core/opsdata.h"
#include "core/privileged.h"
#include "metrics/metrics.h"

/*
 * The OID of relation metrics.<relname>; an error if the extension's
 * objects are missing.
 */
Oid
metrics_relid(const char *relname)
{
	Oid nsp = get_namespace_oid("metrics", false);
	Oid relid = get_relname_relid(relname, nsp);

	if (!OidIsValid(relid))
		ereport(
			ERROR,
			(errcode(ERRCODE_UNDEFINED_TABLE),
			 errmsg("relation \"metrics.%s\" does not exist", relname),
			 errhint(
				 "Make sure the pg_opsdata extension is installed in this database.")));
	return relid;
}

/*
 * Refuse to write in a read-only transaction or during recovery.
 */
void
metrics_check_writable(const char *what)
{
	PreventCommandIfReadOnly(what);
	PreventCommandDuringRecovery(what);
}

/*
 * Refuse a point's timestamp that rollups could not bucket: infinite, or
 * outside [METRICS_TS_MIN, METRICS_TS_END).  position, when above 0, is
 * the element of an array the timestamp came from.
 */
void
metrics_check_ts(TimestampTz ts, int position)
{
	if (TIMESTAMP_NOT_FINITE(ts))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("metric timestamp must be finite"),
				 position > 0 ? errdetail("Element %d is infinite.", position)
							  : 0));
	if (!METRICS_TS_IN_RANGE(ts))
		ereport(
			ERROR,
			(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
			 errmsg("metric timestamp out of range: \"%s\"",
					timestamptz_to_str(ts)),
			 position > 0
				 ? errdetail(
					   "Element %d is out of range. Metric timestamps lie from 0001-01-01 to 9999-12-31 (UTC), the range rollups can bucket.",
					   position)
				 : errdetail(
					   "Metric timestamps lie from 0001-01-01 to 9999-12-31 (UTC), the range rollups can bucket.")));
}

/*
 * The start of the UTC minute that contains ts.
 */
TimestampTz
metrics_minute_of(TimestampTz ts)
{
	TimestampTz r = ts % METRICS_QUEUE_GRANULARITY;

	if (r < 0)
		r += METRICS_QUEUE_GRANULARITY;
	return ts - r;
}

/*
 * Values of a contribution not yet folded into its sketch, in chunks.
 */
#define DELTA_CHUNK_VALUES 30

typedef struct DeltaChunk
{
	struct DeltaChunk *next;
	int n;
	double values[DELTA_CHUNK_VALUES];
} DeltaChunk;

typedef struct MetricsDelta
{
	MetricsDeltaKey key;
	bytea *folded;	  /* stored form of the values folded so far */
	DeltaChunk *head; /* values not folded yet, or NULL */
	DeltaChunk *tail;
	struct MetricsDelta *next_pending; /* in the list of deltas with values */
} MetricsDelta;

/* The delta of a few recent (series, minute), in front of the hash table. */
#define DELTA_SLOTS 256

typedef struct DeltaSlot
{
	MetricsDeltaKey key;
	MetricsDelta *delta; /* NULL when empty */
} DeltaSlot;

struct MetricsDeltas
{
	MemoryContext
		cxt; /* this struct, the scratch sketch and its stored form */
	MemoryContext hash_cxt;	 /* the hash table and folded sketches */
	MemoryContext chunk_cxt; /* chunks of values not folded yet */
	HTAB *hash;
	MetricsDelta *pending; /* deltas that have values not folded yet */
	int64 npending;		   /* values not folded yet */
	MetricsSketch *scratch;
	DeltaSlot slots[DELTA_SLOTS];
};

static void
deltas_make_hash(MetricsDeltas *d)
{
	HASHCTL ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(MetricsDeltaKey);
	ctl.entrysize = sizeof(MetricsDelta);
	ctl.hcxt = d->hash_cxt;
	d->hash = hash_create("pg_opsdata metric deltas", 256, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * A new, empty set of contributions, in a memory context of its own under
 * parent.
 */
MetricsDeltas *
metrics_deltas_create(MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(
		parent, "pg_opsdata metric deltas", ALLOCSET_DEFAULT_SIZES);
	MetricsDeltas *d = MemoryContextAllocZero(cxt, sizeof(MetricsDeltas));

	d->cxt = cxt;
	d->hash_cxt = AllocSetContextCreate(
		cxt, "pg_opsdata metric delta sketches", ALLOCSET_DEFAULT_SIZES);
	d->chunk_cxt = AllocSetContextCreate(cxt, "pg_opsdata metric delta values",
										 0, 64 * 1024, 64 * 1024);
	d->scratch = metrics_sketch_create(cxt);
	deltas_make_hash(d);
	return d;
}

/*
 * Fold the values of every pending delta into its stored sketch, one delta
 * at a time in the scratch sketch, so that building the sketches touches
 * little memory whatever the number of series.
 */
static void
deltas_fold(MetricsDeltas *d)
{
	MetricsDelta *delta;
	MemoryContext old = MemoryContextSwitchTo(d->hash_cxt);

	for (delta = d->pending; delta != NULL; delta = delta->next_pending)
	{
		DeltaChunk *chunk;
		bytea *stored;
		int i;

		metrics_sketch_reset(d->scratch);
		if (delta->folded != NULL)
		{
			metrics_sketch_merge_datum(d->scratch,
									   PointerGetDatum(delta->folded));
			pfree(delta->folded);
		}
		for (chunk = delta->head; chunk != NULL; chunk = chunk->next)
			for (i = 0; i < chunk->n; i++)
				metrics_sketch_add(d->scratch, chunk->values[i]);
		/* Serialized with room to spare, then kept at its size. */
		MemoryContextSwitchTo(d->cxt);
		stored = metrics_sketch_serialize(d->scratch);
		MemoryContextSwitchTo(d->hash_cxt);
		delta->folded = palloc(VARSIZE(stored));
		memcpy(delta->folded, stored, VARSIZE(stored));
		pfree(stored);
		delta->head = delta->tail = NULL;
	}
	MemoryContextSwitchTo(old);
	d->pending = NULL;
	d->npending = 0;
	MemoryContextReset(d->chunk_cxt);
}

/*
 * Add a value to the contribution of its series and minute.  The value must
 * be finite (checked when it is folded).  Folds when many values wait, and
 * writes the contributions to the queue when there are many of them.
 */
void
metrics_deltas_add(MetricsDeltas *d, int64 series_id, TimestampTz minute,
				   double value)
{
	DeltaSlot *slot = &d->slots[(uint64) series_id % DELTA_SLOTS];
	MetricsDelta *delta = slot->delta;
	DeltaChunk *chunk;

	if (delta == NULL || slot->key.series_id != series_id ||
		slot->key.minute != minute)
	{
		MetricsDeltaKey key;
		bool found;

		memset(&key, 0, sizeof(key));
		key.series_id = series_id;
		key.minute = minute;
		delta =
			(MetricsDelta *) hash_search(d->hash, &key, HASH_ENTER, &found);
		if (!found)
		{
			delta->folded = NULL;
			delta->head = delta->tail = NULL;
			delta->next_pending = NULL;
		}
		slot->key = key;
		slot->delta = delta;
	}

	chunk = delta->tail;
	if (chunk == NULL || chunk->n == DELTA_CHUNK_VALUES)
	{
		DeltaChunk *fresh =
			MemoryContextAlloc(d->chunk_cxt, sizeof(DeltaChunk));

		fresh->next = NULL;
		fresh->n = 0;
		if (chunk == NULL)
		{
			delta->head = fresh;
			delta->next_pending = d->pending;
			d->pending = delta;
		}
		else
			chunk->next = fresh;
		delta->tail = chunk = fresh;
	}
	chunk->values[chunk->n++] = value;

	if (++d->npending >= METRICS_DELTAS_FOLD_VALUES)
		deltas_fold(d);
	if (hash_get_num_entries(d->hash) >= METRICS_DELTAS_FLUSH_ENTRIES)
		metrics_deltas_flush(d);
}

/*
 * Whether metrics.rollup_queue is as this extension made it: four columns
 * of the expected types, and no index, trigger or check constraint that
 * table_multi_insert() would bypass.  The guard of pg_opsdata's tables is
 * no such trigger: this is pg_opsdata's own writer.
 */
static bool
queue_is_plain(Relation rel, Oid sketch_type)
{
	TupleDesc desc = RelationGetDescr(rel);
	Oid types[4] = {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, sketch_type};
	int i;

	if (opsdata_write_via_executor(rel, RELKIND_RELATION) ||
		rel->rd_rel->relhasindex || !opsdata_guard_only_insert(rel) ||
		desc->natts != 4 ||
		(desc->constr != NULL &&
		 (desc->constr->num_check > 0 || desc->constr->has_generated_stored)))
		return false;
	for (i = 0; i < 4; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != types[i])
			return false;
	}
	return true;
}

static void
queue_insert_direct(Relation rel, Datum *ids, Datum *minutes, Datum *sketches,
					long n)
{
#define QUEUE_BATCH 1000
	TupleTableSlot *slots[QUEUE_BATCH];
	BulkInsertState bistate = GetBulkInsertState();
	CommandId cid = GetCurrentCommandId(true);
	Datum queued_at =
		TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	/*
	 * Not reference-counted: slots over it cost nothing to the resource owner.
	 */
	TupleDesc desc = CreateTupleDescCopy(RelationGetDescr(rel));
	long done = 0;
	int nslots = 0;
	int i;

	while (done < n)
	{
		int k = (int) Min(QUEUE_BATCH, n - done);

		for (i = 0; i < k; i++)
		{
			TupleTableSlot *slot;

			if (i >= nslots)
				slots[nslots++] =
					MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
			slot = slots[i];
			ExecClearTuple(slot);
			slot->tts_values[0] = ids[done + i];
			slot->tts_values[1] = minutes[done + i];
			slot->tts_values[2] = queued_at;
			slot->tts_values[3] = sketches[done + i];
			memset(slot->tts_isnull, 0, 4 * sizeof(bool));
			ExecStoreVirtualTuple(slot);
		}
		table_multi_insert(rel, slots, k, cid, 0, bistate);
		done += k;
	}
	for (i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	FreeBulkInsertState(bistate);
	table_finish_bulk_insert(rel, 0);
}

/* The arrays queue_insert_as_owner() inserts. */
typedef struct QueueInsert
{
	Oid argtypes[3];
	Datum args[3];
} QueueInsert;

static void
queue_insert_statement(void *arg)
{
	QueueInsert *insert = (QueueInsert *) arg;
	int ret;

	opsdata_spi_connect(0);
	ret = SPI_execute_with_args(
		"INSERT INTO metrics.rollup_queue (series_id, bucket_start, sketch) "
		"SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))",
		3, insert->argtypes, insert->args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		opsdata_spi_failed(ret, "write to metrics.rollup_queue");
	SPI_finish();
}

/*
 * Insert with a statement run as the owner of metrics.rollup_queue, in a
 * privileged region (core/privileged.h).
 */
static void
queue_insert_as_owner(Oid relid, Oid sketch_type, Datum *ids, Datum *minutes,
					  Datum *sketches, long n)
{
	QueueInsert insert;

	insert.argtypes[0] = INT8ARRAYOID;
	insert.argtypes[1] = TIMESTAMPTZARRAYOID;
	insert.argtypes[2] = get_array_type(sketch_type);
	insert.args[0] = PointerGetDatum(
		construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	insert.args[1] = PointerGetDatum(construct_array(
		minutes, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	insert.args[2] = PointerGetDatum(
		construct_array(sketches, n, sketch_type, -1, false, TYPALIGN_INT));

	opsdata_run_as_table_owner(relid, queue_insert_statement, &insert);
}

/*
 * Insert the contributions into metrics.rollup_queue and forget them.
 */
void
metrics_deltas_flush(MetricsDeltas *d)
{
	long n;
	Datum *ids;
	Datum *minutes;
	Datum *sketches;
	HASH_SEQ_STATUS seq;
	MetricsDelta *delta;
	Oid sketch_type;
	Relation queue;
	MemoryContext old;
	long i = 0;

	deltas_fold(d);
	n = hash_get_num_entries(d->hash);
	if (n == 0)
		return;

	old = MemoryContextSwitchTo(d->hash_cxt);
	ids = palloc(sizeof(Datum) * n);
	minutes = palloc(sizeof(Datum) * n);
	sketches = palloc(sizeof(Datum) * n);
	hash_seq_init(&seq, d->hash);
	while ((delta = (MetricsDelta *) hash_seq_search(&seq)) != NULL)
	{
		ids[i] = Int64GetDatum(delta->key.series_id);
		minutes[i] = TimestampTzGetDatum(delta->key.minute);
		sketches[i] = PointerGetDatum(delta->folded);
		i++;
	}

	sketch_type = GetSysCacheOid2(
		TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum("sketch"),
		ObjectIdGetDatum(get_namespace_oid("metrics", false)));
	if (!OidIsValid(sketch_type))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
						errmsg("type metrics.sketch does not exist")));

	queue = table_open(metrics_relid("rollup_queue"), RowExclusiveLock);
	if (queue_is_plain(queue, sketch_type))
		queue_insert_direct(queue, ids, minutes, sketches, n);
	else
		queue_insert_as_owner(RelationGetRelid(queue), sketch_type, ids,
							  minutes, sketches, n);
	table_close(queue, NoLock);
	MemoryContextSwitchTo(old);

	/* Start afresh: the hash table and the sketches go with their context. */
	MemoryContextReset(d->hash_cxt);
	memset(d->slots, 0, sizeof(d->slots));
	deltas_make_hash(d);
}
