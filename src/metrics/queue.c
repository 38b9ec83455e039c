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
 * Contributions are gathered in memory in a hash table of sketches keyed
 * by (series, minute), then inserted with table_multi_insert() while
 * metrics.rollup_queue is the plain table this extension made, else with
 * an INSERT statement run as the table's owner.  Either way the caller
 * needs no privilege on the queue: writers may add points, not queue rows
 * of their own making.
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
#include "utils/rel.h"
#include "utils/syscache.h"

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
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"metrics.%s\" does not exist", relname),
				 errhint("Make sure the pg_opsdata extension is installed in this database.")));
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

HTAB *
metrics_deltas_create(MemoryContext cxt)
{
	HASHCTL ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(MetricsDeltaKey);
	ctl.entrysize = sizeof(MetricsDelta);
	ctl.hcxt = cxt;
	return hash_create("pg_opsdata metric deltas", 64, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * The sketch of the contribution of a series and minute, made empty in
 * cxt if there is none yet.
 */
MetricsSketch *
metrics_deltas_sketch(HTAB *deltas, MemoryContext cxt, int64 series_id,
					  TimestampTz minute)
{
	MetricsDeltaKey key;
	MetricsDelta *delta;
	bool found;

	memset(&key, 0, sizeof(key));
	key.series_id = series_id;
	key.minute = minute;
	delta = (MetricsDelta *) hash_search(deltas, &key, HASH_ENTER, &found);
	if (!found)
		delta->sketch = metrics_sketch_create(cxt);
	return delta->sketch;
}

/*
 * Add a value to the contribution of its series and minute.  Sketches
 * are allocated in cxt.
 */
void
metrics_deltas_add(HTAB *deltas, MemoryContext cxt, int64 series_id,
				   TimestampTz ts, double value)
{
	metrics_sketch_add(metrics_deltas_sketch(deltas, cxt, series_id,
											 metrics_minute_of(ts)),
					   value);
}

/*
 * Whether metrics.rollup_queue is as this extension made it: four columns
 * of the expected types, and no index, trigger or check constraint that
 * table_multi_insert() would bypass.
 */
static bool
queue_is_plain(Relation rel, Oid sketch_type)
{
	TupleDesc desc = RelationGetDescr(rel);
	Oid types[4] = {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, sketch_type};
	int i;

	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relhasindex ||
		rel->trigdesc != NULL || desc->natts != 4 ||
		(desc->constr != NULL && (desc->constr->num_check > 0 ||
								  desc->constr->has_generated_stored)))
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
	Datum queued_at = TimestampTzGetDatum(GetCurrentTransactionStartTimestamp());
	/* Not reference-counted: slots over it cost nothing to the resource owner. */
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
				slots[nslots++] = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
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

/*
 * Insert with a statement run as the owner of metrics.rollup_queue.
 */
static void
queue_insert_as_owner(Oid relid, Oid sketch_type, Datum *ids, Datum *minutes,
					  Datum *sketches, long n)
{
	Oid argtypes[3];
	Datum args[3];
	Oid owner;
	Oid save_userid;
	int save_sec;
	HeapTuple tuple;

	argtypes[0] = INT8ARRAYOID;
	argtypes[1] = get_array_type(TIMESTAMPTZOID);
	argtypes[2] = get_array_type(sketch_type);
	args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(minutes, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(sketches, n, sketch_type, -1, false, TYPALIGN_INT));

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
									  SECURITY_RESTRICTED_OPERATION);
	PG_TRY();
	{
		int ret;

		SPI_connect();
		ret = SPI_execute_with_args("INSERT INTO metrics.rollup_queue (series_id, bucket_start, sketch) "
									"SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3))",
									3, argtypes, args, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "SPI_execute_with_args failed: %s", SPI_result_code_string(ret));
		SPI_finish();
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec);
	}
	PG_END_TRY();
}

/*
 * Insert the contributions into metrics.rollup_queue and empty the hash
 * table (the sketches' memory stays with the caller's context).
 */
void
metrics_deltas_flush(HTAB *deltas)
{
	long n = hash_get_num_entries(deltas);
	Datum *ids;
	Datum *minutes;
	Datum *sketches;
	HASH_SEQ_STATUS seq;
	MetricsDelta *delta;
	Oid sketch_type;
	Relation queue;
	long i = 0;

	if (n == 0)
		return;

	ids = palloc(sizeof(Datum) * n);
	minutes = palloc(sizeof(Datum) * n);
	sketches = palloc(sizeof(Datum) * n);
	hash_seq_init(&seq, deltas);
	while ((delta = (MetricsDelta *) hash_seq_search(&seq)) != NULL)
	{
		ids[i] = Int64GetDatum(delta->key.series_id);
		minutes[i] = TimestampTzGetDatum(delta->key.minute);
		sketches[i] = PointerGetDatum(metrics_sketch_serialize(delta->sketch));
		i++;
		hash_search(deltas, &delta->key, HASH_REMOVE, NULL);
	}

	sketch_type = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
								  CStringGetDatum("sketch"),
								  ObjectIdGetDatum(get_namespace_oid("metrics", false)));
	if (!OidIsValid(sketch_type))
		elog(ERROR, "type metrics.sketch does not exist");

	queue = table_open(metrics_relid("rollup_queue"), RowExclusiveLock);
	if (queue_is_plain(queue, sketch_type))
		queue_insert_direct(queue, ids, minutes, sketches, n);
	else
		queue_insert_as_owner(RelationGetRelid(queue), sketch_type, ids, minutes,
							  sketches, n);
	table_close(queue, NoLock);

	for (i = 0; i < n; i++)
		pfree(DatumGetPointer(sketches[i]));
	pfree(ids);
	pfree(minutes);
	pfree(sketches);
}
