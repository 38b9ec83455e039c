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
 * by (series, minute) and inserted with one statement.  The insert runs as
 * the owner of metrics.rollup_queue: writers may add points, not queue
 * rows of their own making.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
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
 * Add a value to the contribution of its series and minute.  Sketches
 * are allocated in cxt.
 */
void
metrics_deltas_add(HTAB *deltas, MemoryContext cxt, int64 series_id,
				   TimestampTz ts, double value)
{
	MetricsDeltaKey key;
	MetricsDelta *delta;
	bool found;

	memset(&key, 0, sizeof(key));
	key.series_id = series_id;
	key.minute = metrics_minute_of(ts);
	delta = (MetricsDelta *) hash_search(deltas, &key, HASH_ENTER, &found);
	if (!found)
		delta->sketch = metrics_sketch_create(cxt);
	metrics_sketch_add(delta->sketch, value);
}

/*
 * Insert the contributions into metrics.rollup_queue, as the table's
 * owner, and empty the hash table (the sketches' memory stays with the
 * caller's context).
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
	Oid argtypes[3];
	Datum args[3];
	Oid owner;
	Oid save_userid;
	int save_sec;
	HeapTuple tuple;
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
	argtypes[0] = INT8ARRAYOID;
	argtypes[1] = get_array_type(TIMESTAMPTZOID);
	argtypes[2] = get_array_type(sketch_type);
	args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(minutes, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(sketches, n, sketch_type, -1, false, TYPALIGN_INT));

	tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(metrics_relid("rollup_queue")));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for relation metrics.rollup_queue");
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

	for (i = 0; i < n; i++)
		pfree(DatumGetPointer(sketches[i]));
	pfree(ids);
	pfree(minutes);
	pfree(sketches);
}
