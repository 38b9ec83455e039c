/*-------------------------------------------------------------------------
 *
 * capture.c
 *		Queueing the rollup contribution of rows inserted into metrics.points.
 *
 * metrics._points_inserted() is an AFTER INSERT statement trigger on
 * metrics.points with a transition table: it reads the rows the statement
 * inserted (through the parent, whatever partition they went to), builds
 * one sketch per series and minute, and queues them (queue.c) in the
 * inserting transaction.  It is how an INSERT by the application, and
 * metrics.record(), reach the rollups.
 *
 * Rows written into a partition directly, as COPY of a restored dump or
 * the bulk writer (writer.c) do, do not fire it: the writer queues its
 * points itself, and a restored dump brings its queue and rollups along.
 *
 * Each series id of an application's INSERT must exist in metrics.series;
 * metrics.record() sets metrics_capture_trusted for the duration of its
 * own insert, since it has just resolved the id.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/capture.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/array.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "metrics/metrics.h"

PG_FUNCTION_INFO_V1(metrics_points_inserted);

bool metrics_capture_trusted = false;

static int
capture_attnum(TupleDesc desc, const char *name)
{
	int i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return i + 1;
	}
	elog(ERROR, "metrics.points has no column \"%s\"", name);
	return 0;
}

/*
 * Raise an error naming the first series id of ids[0..n) that is not in
 * metrics.series.
 */
static void
capture_check_series(Datum *ids, int n)
{
	Oid argtypes[1] = {INT8ARRAYOID};
	Datum args[1];
	bool isnull;
	Datum missing;
	int ret;

	args[0] = PointerGetDatum(construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL,
											  TYPALIGN_DOUBLE));
	SPI_connect();
	ret = SPI_execute_with_args("SELECT pg_catalog.min(i) FROM pg_catalog.unnest($1) i "
								"WHERE NOT EXISTS (SELECT FROM metrics.series s "
								"WHERE s.series_id OPERATOR(pg_catalog.=) i)",
								1, argtypes, args, NULL, true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not check the series of new points");
	missing = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		ereport(ERROR,
				(errcode(ERRCODE_FOREIGN_KEY_VIOLATION),
				 errmsg("metric series " INT64_FORMAT " does not exist",
						DatumGetInt64(missing)),
				 errhint("Use metrics.record() or metrics.record_many(), which create series, or take series_id from metrics.series.")));
	SPI_finish();
}

Datum
metrics_points_inserted(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Tuplestorestate *rows;
	TupleDesc desc;
	TupleTableSlot *slot;
	MemoryContext cxt;
	MemoryContext old;
	HTAB *deltas;
	HTAB *seen = NULL;
	int att_series;
	int att_ts;
	int att_value;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) || trigdata->tg_newtable == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("metrics._points_inserted() must be an AFTER INSERT statement trigger with a transition table")));

	rows = trigdata->tg_newtable;
	desc = RelationGetDescr(trigdata->tg_relation);
	att_series = capture_attnum(desc, "series_id");
	att_ts = capture_attnum(desc, "ts");
	att_value = capture_attnum(desc, "value");

	cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_opsdata point capture",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	deltas = metrics_deltas_create(cxt);
	if (!metrics_capture_trusted)
	{
		HASHCTL ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(int64);
		ctl.hcxt = cxt;
		seen = hash_create("pg_opsdata captured series", 64, &ctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}

	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	tuplestore_rescan(rows);
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		bool isnull;
		int64 series_id = DatumGetInt64(slot_getattr(slot, att_series, &isnull));
		TimestampTz ts = DatumGetTimestampTz(slot_getattr(slot, att_ts, &isnull));
		double value = DatumGetFloat8(slot_getattr(slot, att_value, &isnull));

		if (TIMESTAMP_NOT_FINITE(ts))
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("metric timestamp must be finite")));
		metrics_deltas_add(deltas, cxt, series_id, ts, value);
		if (seen != NULL)
			hash_search(seen, &series_id, HASH_ENTER, NULL);
	}
	ExecDropSingleTupleTableSlot(slot);

	if (seen != NULL && hash_get_num_entries(seen) > 0)
	{
		Datum *ids = palloc(sizeof(Datum) * hash_get_num_entries(seen));
		HASH_SEQ_STATUS status;
		int64 *id;
		int n = 0;

		hash_seq_init(&status, seen);
		while ((id = (int64 *) hash_seq_search(&status)) != NULL)
			ids[n++] = Int64GetDatum(*id);
		capture_check_series(ids, n);
	}
	metrics_deltas_flush(deltas);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return PointerGetDatum(NULL);
}
