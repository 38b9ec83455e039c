/*-------------------------------------------------------------------------
 *
 * sketch_acc.c
 *		Accumulating stored sketches, decoded only when there are two.
 *
 * Merging stored sketches (the sketch_union aggregate, the rollup job)
 * usually decodes each into the dense stores of a MetricsSketch.  Most
 * groups that rollups merge receive a single sketch, though: one new
 * contribution for a series and minute, one minute for the hour.  A
 * MetricsSketchAcc keeps that first sketch's bytes as they are, validated,
 * and decodes only when a second one arrives, so a group of one costs a
 * copy and gives back the very same bytes (stored forms are canonical).
 *
 * Memory: the accumulator's copy and sketch are in the context the caller
 * passes; the caller owns the MetricsSketchAcc itself.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/sketch_acc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "metrics/sketch.h"

/*
 * Empty an accumulator (it holds nothing allocated yet).
 */
void
metrics_acc_init(MetricsSketchAcc *acc)
{
	acc->sketch = NULL;
	acc->single = NULL;
}

/*
 * Whether the accumulator received nothing.
 */
bool
metrics_acc_is_empty(const MetricsSketchAcc *acc)
{
	return acc->sketch == NULL && acc->single == NULL;
}

/*
 * The dense sketch of what the accumulator holds, made in cxt the first
 * time.  Once it exists, the accumulator keeps adding to it.
 */
MetricsSketch *
metrics_acc_sketch(MetricsSketchAcc *acc, MemoryContext cxt)
{
	if (acc->sketch == NULL)
	{
		acc->sketch = metrics_sketch_create(cxt);
		if (acc->single != NULL)
		{
			metrics_sketch_merge_datum(acc->sketch,
									   PointerGetDatum(acc->single));
			pfree(acc->single);
			acc->single = NULL;
		}
	}
	return acc->sketch;
}

/*
 * Add a stored sketch (detoasted, short header allowed); copied into cxt if
 * it is the first.
 */
void
metrics_acc_add_stored(MetricsSketchAcc *acc, const bytea *data,
					   MemoryContext cxt)
{
	if (metrics_acc_is_empty(acc))
	{
		Size len = VARSIZE_ANY_EXHDR(data);

		metrics_sketch_validate_stored(data);
		acc->single = (bytea *) MemoryContextAlloc(cxt, VARHDRSZ + len);
		SET_VARSIZE(acc->single, VARHDRSZ + len);
		memcpy(VARDATA(acc->single), VARDATA_ANY(data), len);
	}
	else
		metrics_sketch_merge_datum(metrics_acc_sketch(acc, cxt),
								   PointerGetDatum(data));
}

/*
 * Add what another accumulator holds.
 */
void
metrics_acc_merge(MetricsSketchAcc *acc, const MetricsSketchAcc *other,
				  MemoryContext cxt)
{
	if (other->sketch != NULL)
		metrics_sketch_merge(metrics_acc_sketch(acc, cxt), other->sketch);
	else if (other->single != NULL)
		metrics_acc_add_stored(acc, other->single, cxt);
}

/*
 * The stored form of what the accumulator holds, palloc'd in the current
 * memory context; an empty sketch if it holds nothing.
 */
bytea *
metrics_acc_stored(const MetricsSketchAcc *acc)
{
	bytea *copy;

	if (acc->sketch != NULL)
		return metrics_sketch_serialize(acc->sketch);
	if (acc->single == NULL)
		return metrics_sketch_serialize(
			metrics_sketch_create(CurrentMemoryContext));
	copy = palloc(VARSIZE(acc->single));
	memcpy(copy, acc->single, VARSIZE(acc->single));
	return copy;
}

/*
 * Count, exact sum, min and max of what the accumulator holds, read
 * without decoding the buckets; min and max are meaningless when the count
 * is zero.
 */
void
metrics_acc_header(const MetricsSketchAcc *acc, MetricsSketch *header)
{
	if (acc->sketch != NULL)
	{
		header->count = acc->sketch->count;
		header->min = acc->sketch->min;
		header->max = acc->sketch->max;
		header->sum = acc->sketch->sum;
	}
	else if (acc->single != NULL)
		metrics_sketch_read_header(PointerGetDatum(acc->single), header);
	else
	{
		header->count = 0;
		header->min = header->max = 0.0;
		metrics_xsum_init(&header->sum);
	}
}
