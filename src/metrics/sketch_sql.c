/*-------------------------------------------------------------------------
 *
 * sketch_sql.c
 *		SQL functions and aggregates over metrics.sketch.
 *
 * metrics.sketch_agg(float8) and metrics.sketch_union(metrics.sketch) share
 * one transition state, a MetricsSketchAcc (sketch_acc.c) in the
 * aggregate's memory context, and one set of combine, serialize,
 * deserialize and final functions, so both run in parallel.  A group that
 * receives a single stored sketch (sketch_union) costs a copy of its
 * bytes, never decoded into dense stores.  The serialized state is the
 * stored form of a sketch (sketch_io.c), which carries the exact sum, so
 * partial aggregates combine without any rounding.  A deserialized state
 * is transient: the combine function copies it into the aggregate context
 * when it becomes the state.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/sketch_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "metrics/sketch.h"

PG_FUNCTION_INFO_V1(metrics_sketch_agg_trans);
PG_FUNCTION_INFO_V1(metrics_sketch_union_trans);
PG_FUNCTION_INFO_V1(metrics_sketch_combine);
PG_FUNCTION_INFO_V1(metrics_sketch_serial);
PG_FUNCTION_INFO_V1(metrics_sketch_deserial);
PG_FUNCTION_INFO_V1(metrics_sketch_final);
PG_FUNCTION_INFO_V1(metrics_sketch_merge2);
PG_FUNCTION_INFO_V1(metrics_sketch_count);
PG_FUNCTION_INFO_V1(metrics_sketch_sum);
PG_FUNCTION_INFO_V1(metrics_sketch_min);
PG_FUNCTION_INFO_V1(metrics_sketch_max);
PG_FUNCTION_INFO_V1(metrics_quantile);
PG_FUNCTION_INFO_V1(metrics_quantiles);

/*
 * The aggregate memory context, or an error if not called as an aggregate
 * support function.
 */
static MemoryContext
metrics_agg_context(FunctionCallInfo fcinfo, const char *name)
{
	MemoryContext aggcontext;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("%s called in non-aggregate context", name)));
	return aggcontext;
}

static MetricsSketchAcc *
metrics_agg_new_state(MemoryContext cxt)
{
	MetricsSketchAcc *state =
		(MetricsSketchAcc *) MemoryContextAlloc(cxt, sizeof(MetricsSketchAcc));

	metrics_acc_init(state);
	return state;
}

static MetricsSketchAcc *
metrics_agg_state(FunctionCallInfo fcinfo, const char *name,
				  MemoryContext *aggcontext)
{
	*aggcontext = metrics_agg_context(fcinfo, name);

	if (PG_ARGISNULL(0))
		return metrics_agg_new_state(*aggcontext);
	return (MetricsSketchAcc *) PG_GETARG_POINTER(0);
}

/*
 * sketch_agg(float8) transition: add the value; NULLs are skipped.
 */
Datum
metrics_sketch_agg_trans(PG_FUNCTION_ARGS)
{
	MetricsSketchAcc *state;
	MemoryContext aggcontext;

	if (PG_ARGISNULL(1))
	{
		if (PG_ARGISNULL(0))
			PG_RETURN_NULL();
		PG_RETURN_POINTER(PG_GETARG_POINTER(0));
	}
	state = metrics_agg_state(fcinfo, "metrics.sketch_agg", &aggcontext);
	metrics_sketch_add(metrics_acc_sketch(state, aggcontext),
					   PG_GETARG_FLOAT8(1));
	PG_RETURN_POINTER(state);
}

/*
 * sketch_union(sketch) transition: merge the sketch; NULLs are skipped.
 * The first sketch of a group is kept as it is, validated.
 */
Datum
metrics_sketch_union_trans(PG_FUNCTION_ARGS)
{
	MetricsSketchAcc *state;
	MemoryContext aggcontext;

	if (PG_ARGISNULL(1))
	{
		if (PG_ARGISNULL(0))
			PG_RETURN_NULL();
		PG_RETURN_POINTER(PG_GETARG_POINTER(0));
	}
	state = metrics_agg_state(fcinfo, "metrics.sketch_union", &aggcontext);
	metrics_acc_add_stored(state, PG_GETARG_BYTEA_PP(1), aggcontext);
	PG_RETURN_POINTER(state);
}

Datum
metrics_sketch_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext =
		metrics_agg_context(fcinfo, "metrics._sketch_combine");
	MetricsSketchAcc *state;
	MetricsSketchAcc *other;

	if (PG_ARGISNULL(1))
	{
		if (PG_ARGISNULL(0))
			PG_RETURN_NULL();
		PG_RETURN_POINTER(PG_GETARG_POINTER(0));
	}
	if (PG_ARGISNULL(0))
		state = metrics_agg_new_state(aggcontext);
	else
		state = (MetricsSketchAcc *) PG_GETARG_POINTER(0);
	other = (MetricsSketchAcc *) PG_GETARG_POINTER(1);
	metrics_acc_merge(state, other, aggcontext);
	PG_RETURN_POINTER(state);
}

Datum
metrics_sketch_serial(PG_FUNCTION_ARGS)
{
	MetricsSketchAcc *state = (MetricsSketchAcc *) PG_GETARG_POINTER(0);

	(void) metrics_agg_context(fcinfo, "metrics._sketch_serialize");
	PG_RETURN_BYTEA_P(metrics_acc_stored(state));
}

Datum
metrics_sketch_deserial(PG_FUNCTION_ARGS)
{
	MetricsSketchAcc *state;

	(void) metrics_agg_context(fcinfo, "metrics._sketch_deserialize");
	state = metrics_agg_new_state(CurrentMemoryContext);
	state->sketch = metrics_sketch_deserialize(PG_GETARG_BYTEA_PP(0),
											   CurrentMemoryContext);
	PG_RETURN_POINTER(state);
}

Datum
metrics_sketch_final(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(
		metrics_acc_stored((MetricsSketchAcc *) PG_GETARG_POINTER(0)));
}

/*
 * metrics.sketch_merge(a, b): a sketch of the values of both; NULL when
 * both are NULL, the other one when one is.
 */
Datum
metrics_sketch_merge2(PG_FUNCTION_ARGS)
{
	bytea *a;
	bytea *b;
	bytea *merged;
	MetricsSketch *sketch;

	if (PG_ARGISNULL(0) && PG_ARGISNULL(1))
		PG_RETURN_NULL();
	if (PG_ARGISNULL(0))
		PG_RETURN_DATUM(PG_GETARG_DATUM(1));
	if (PG_ARGISNULL(1))
		PG_RETURN_DATUM(PG_GETARG_DATUM(0));
	a = PG_GETARG_BYTEA_PP(0);
	b = PG_GETARG_BYTEA_PP(1);
	merged = metrics_sketch_merge_stored(a, b);
	if (merged != NULL)
		PG_RETURN_BYTEA_P(merged);
	/* The merge collapses buckets: do it on dense stores. */
	sketch = metrics_sketch_deserialize(a, CurrentMemoryContext);
	metrics_sketch_merge_datum(sketch, PG_GETARG_DATUM(1));
	PG_RETURN_BYTEA_P(metrics_sketch_serialize(sketch));
}

/* The accessors read the header of the stored form only. */
Datum
metrics_sketch_count(PG_FUNCTION_ARGS)
{
	MetricsSketch s;

	metrics_sketch_read_header(PG_GETARG_DATUM(0), &s);
	PG_RETURN_INT64(s.count);
}

Datum
metrics_sketch_sum(PG_FUNCTION_ARGS)
{
	MetricsSketch s;

	metrics_sketch_read_header(PG_GETARG_DATUM(0), &s);
	PG_RETURN_FLOAT8(metrics_xsum_value(&s.sum));
}

Datum
metrics_sketch_min(PG_FUNCTION_ARGS)
{
	MetricsSketch s;

	metrics_sketch_read_header(PG_GETARG_DATUM(0), &s);
	if (s.count == 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(s.min);
}

Datum
metrics_sketch_max(PG_FUNCTION_ARGS)
{
	MetricsSketch s;

	metrics_sketch_read_header(PG_GETARG_DATUM(0), &s);
	if (s.count == 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(s.max);
}

/*
 * metrics.quantile(sketch, q): NULL for an empty sketch.
 */
Datum
metrics_quantile(PG_FUNCTION_ARGS)
{
	double q = PG_GETARG_FLOAT8(1);
	MetricsSketch *s;

	metrics_sketch_check_fraction(q);
	s = metrics_sketch_from_datum(PG_GETARG_DATUM(0), CurrentMemoryContext);
	if (s->count == 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(metrics_sketch_quantile(s, q));
}

/*
 * metrics.quantiles(sketch, qs[]): one quantile per element of qs, in the
 * same shape; NULL elements give NULL, an empty sketch gives NULL.
 */
Datum
metrics_quantiles(PG_FUNCTION_ARGS)
{
	ArrayType *qs = PG_GETARG_ARRAYTYPE_P(1);
	MetricsSketch *s;
	Datum *elems;
	bool *nulls;
	int n;
	int i;
	int16 typlen;
	bool typbyval;
	char typalign;
	ArrayType *result;

	get_typlenbyvalalign(FLOAT8OID, &typlen, &typbyval, &typalign);
	deconstruct_array(qs, FLOAT8OID, typlen, typbyval, typalign, &elems,
					  &nulls, &n);
	for (i = 0; i < n; i++)
		if (!nulls[i])
			metrics_sketch_check_fraction(DatumGetFloat8(elems[i]));

	s = metrics_sketch_from_datum(PG_GETARG_DATUM(0), CurrentMemoryContext);
	if (s->count == 0)
		PG_RETURN_NULL();
	for (i = 0; i < n; i++)
		if (!nulls[i])
			elems[i] = Float8GetDatum(
				metrics_sketch_quantile(s, DatumGetFloat8(elems[i])));

	if (ARR_NDIM(qs) == 0)
		result = construct_empty_array(FLOAT8OID);
	else
		result = construct_md_array(elems, nulls, ARR_NDIM(qs), ARR_DIMS(qs),
									ARR_LBOUND(qs), FLOAT8OID, typlen,
									typbyval, typalign);
	PG_RETURN_ARRAYTYPE_P(result);
}
