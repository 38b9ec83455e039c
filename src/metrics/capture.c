/*-------------------------------------------------------------------------
 *
 * capture.c
 *		Queueing the rollup contribution of rows inserted into
 *		metrics.points.
 *
 * metrics._points_inserted() is an AFTER INSERT statement trigger on
 * metrics.points with a transition table: it reads the rows the statement
 * inserted (through the parent, whatever partition they went to), builds
 * one sketch per series and minute, and queues them (queue.c) in the
 * inserting transaction.  It is how an INSERT (or COPY) into
 * metrics.points by the application reaches the rollups.
 *
 * Rows written into a partition directly, as COPY of a restored dump or
 * the bulk writer (writer.c) do, do not fire it: the writer queues its
 * points itself, and a restored dump brings its queue and rollups along.
 *
 * Like every hot table of pg_opsdata, metrics.points has no foreign key:
 * a series id an application inserts is not checked against
 * metrics.series (metrics.query() only reads series that exist).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/capture.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "metrics/metrics.h"

PG_FUNCTION_INFO_V1(metrics_points_inserted);

/* The number of the column of metrics.points called name. */
static int
capture_attnum(TupleDesc desc, const char *name)
{
	int attnum = SPI_fnumber(desc, name);

	if (attnum <= 0)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
						errmsg("metrics.points has no column \"%s\"", name)));
	return attnum;
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
	MetricsDeltas *deltas;
	int att_series;
	int att_ts;
	int att_value;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) ||
		trigdata->tg_newtable == NULL)
		ereport(
			ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg(
				 "metrics._points_inserted() must be an AFTER INSERT statement trigger with a transition table")));

	rows = trigdata->tg_newtable;
	desc = RelationGetDescr(trigdata->tg_relation);
	att_series = capture_attnum(desc, "series_id");
	att_ts = capture_attnum(desc, "ts");
	att_value = capture_attnum(desc, "value");

	cxt =
		AllocSetContextCreate(CurrentMemoryContext, "pg_opsdata point capture",
							  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	deltas = metrics_deltas_create(cxt);

	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	tuplestore_rescan(rows);
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		bool isnull;
		int64 series_id =
			DatumGetInt64(slot_getattr(slot, att_series, &isnull));
		TimestampTz ts =
			DatumGetTimestampTz(slot_getattr(slot, att_ts, &isnull));
		double value = DatumGetFloat8(slot_getattr(slot, att_value, &isnull));

		CHECK_FOR_INTERRUPTS();
		metrics_check_ts(ts, 0);
		metrics_deltas_add(deltas, series_id, metrics_minute_of(ts), value);
	}
	ExecDropSingleTupleTableSlot(slot);

	metrics_deltas_flush(deltas);

	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return PointerGetDatum(NULL);
}
