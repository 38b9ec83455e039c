/*-------------------------------------------------------------------------
 *
 * record.c
 *		metrics.record() and metrics.record_many(): recording points.
 *
 * Both resolve series through the cache (series.c) and hand their points
 * to a MetricsPointWriter (writer.c), which inserts them into the leaf
 * partitions of metrics.points and queues their rollup contributions in
 * the same transaction; record_many() checks every element before it
 * writes anything.
 *
 * Both run as the caller: recording needs SELECT and INSERT on
 * metrics.series and INSERT on metrics.points, which opsdata_writer has.
 * Bad input is refused before anything is written.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/record.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "metrics/metrics.h"

PG_FUNCTION_INFO_V1(metrics_record);
PG_FUNCTION_INFO_V1(metrics_record_many);

static void
record_null_error(const char *what, int position)
{
	if (position > 0)
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("metric %s must not be null", what),
						errdetail("Element %d is null.", position)));
	ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					errmsg("metric %s must not be null", what)));
}

/*
 * metrics.record(name, value, tags, at) returns the series id.
 */
Datum
metrics_record(PG_FUNCTION_ARGS)
{
	text *name;
	double value;
	Jsonb *tags;
	TimestampTz ts;
	int64 series_id;
	MetricsPointWriter *writer;

	if (PG_ARGISNULL(0))
		record_null_error("name", 0);
	if (PG_ARGISNULL(1))
		record_null_error("value", 0);
	if (PG_ARGISNULL(2))
		record_null_error("tags", 0);
	if (PG_ARGISNULL(3))
		record_null_error("timestamp", 0);
	name = PG_GETARG_TEXT_PP(0);
	value = PG_GETARG_FLOAT8(1);
	tags = PG_GETARG_JSONB_P(2);
	ts = PG_GETARG_TIMESTAMPTZ(3);
	metrics_sketch_check_value(value);
	metrics_check_ts(ts, 0);
	metrics_check_writable("metrics.record()");

	series_id = metrics_series_resolve(name, tags);

	writer = metrics_writer_begin();
	metrics_writer_add(writer, series_id, ts, value);
	metrics_writer_finish(writer);

	PG_RETURN_INT64(series_id);
}

/*
 * The elements of a one-dimensional array argument (NULL argument: none).
 */
static int
record_array(FunctionCallInfo fcinfo, int argno, Oid elemtype,
			 const char *what, Datum **elems, bool **nulls)
{
	ArrayType *arr;
	int16 typlen;
	bool typbyval;
	char typalign;
	int n;

	if (PG_ARGISNULL(argno))
	{
		*elems = NULL;
		*nulls = NULL;
		return -1;
	}
	arr = PG_GETARG_ARRAYTYPE_P(argno);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("metric %s must be a one-dimensional array", what)));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, elemtype, typlen, typbyval, typalign, elems, nulls,
					  &n);
	return n;
}

static void
record_length_check(int n, int len, const char *what)
{
	if (len >= 0 && len != n && len != 1)
		ereport(
			ERROR,
			(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
			 errmsg("metric %s array has %d elements but there are %d values",
					what, len, n),
			 errhint(
				 "Give one element per value, or a single element for all of them.")));
}

/*
 * metrics.record_many(names, vals, tags, ats) returns the number of
 * points recorded.  names and tags may have one element for all values;
 * tags NULL means {} and ats NULL means now() for every value.
 */
Datum
metrics_record_many(PG_FUNCTION_ARGS)
{
	Datum *names;
	bool *name_nulls;
	Datum *vals;
	bool *val_nulls;
	Datum *tags;
	bool *tag_nulls;
	Datum *ats;
	bool *at_nulls;
	int nnames;
	int nvals;
	int ntags;
	int nats;
	int64 *series;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	Jsonb *empty = NULL;
	MetricsPointWriter *writer;
	int i;

	if (PG_ARGISNULL(0))
		record_null_error("names", 0);
	if (PG_ARGISNULL(1))
		record_null_error("values", 0);
	nnames = record_array(fcinfo, 0, TEXTOID, "names", &names, &name_nulls);
	nvals = record_array(fcinfo, 1, FLOAT8OID, "values", &vals, &val_nulls);
	ntags = record_array(fcinfo, 2, JSONBOID, "tags", &tags, &tag_nulls);
	nats =
		record_array(fcinfo, 3, TIMESTAMPTZOID, "timestamps", &ats, &at_nulls);
	record_length_check(nvals, nnames, "names");
	record_length_check(nvals, ntags, "tags");
	if (nats >= 0 && nats != nvals)
		ereport(
			ERROR,
			(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
			 errmsg(
				 "metric timestamps array has %d elements but there are %d values",
				 nats, nvals)));
	if (nvals == 0)
		PG_RETURN_INT64(0);
	if (nnames == 0 || ntags == 0)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("metric %s array is empty but there are %d values",
						nnames == 0 ? "names" : "tags", nvals)));
	metrics_check_writable("metrics.record_many()");

	/* Check everything before writing anything. */
	series = palloc(sizeof(int64) * nvals);
	for (i = 0; i < nvals; i++)
	{
		int ni = nnames == 1 ? 0 : i;
		int ti = ntags == 1 ? 0 : i;
		Jsonb *t;

		CHECK_FOR_INTERRUPTS();
		if (name_nulls[ni])
			record_null_error("name", ni + 1);
		if (val_nulls[i])
			record_null_error("value", i + 1);
		metrics_sketch_check_value(DatumGetFloat8(vals[i]));
		if (nats >= 0)
		{
			if (at_nulls[i])
				record_null_error("timestamp", i + 1);
			metrics_check_ts(DatumGetTimestampTz(ats[i]), i + 1);
		}
		if (ntags < 0)
		{
			if (empty == NULL)
				empty = DatumGetJsonbP(
					DirectFunctionCall1(jsonb_in, CStringGetDatum("{}")));
			t = empty;
		}
		else
		{
			if (tag_nulls[ti])
				record_null_error("tags", ti + 1);
			t = DatumGetJsonbP(tags[ti]);
		}
		if (i > 0 && ni == 0 && ti == 0 && nnames == 1 && (ntags <= 1))
			series[i] = series[0];
		else
			series[i] = metrics_series_resolve(DatumGetTextPP(names[ni]), t);
	}

	writer = metrics_writer_begin();
	for (i = 0; i < nvals; i++)
		metrics_writer_add(writer, series[i],
						   nats >= 0 ? DatumGetTimestampTz(ats[i]) : now,
						   DatumGetFloat8(vals[i]));
	PG_RETURN_INT64((int64) metrics_writer_finish(writer));
}
