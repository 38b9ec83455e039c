/*-------------------------------------------------------------------------
 *
 * sketch.c
 *		Building, merging and reading metrics.sketch values in memory.
 *
 * See sketch.h for the model.  A store is a window of int64 counters over
 * consecutive bucket indexes, grown on demand and never wider than
 * METRICS_SKETCH_MAX_BUCKETS plus some slack, so that adding a value costs
 * one logarithm and one array increment.
 *
 * The size cap is applied the same way whatever the order of operations:
 * a store whose highest index is hi holds no index below
 * hi - METRICS_SKETCH_MAX_BUCKETS + 1 (its floor); a count for a lower
 * index is added to the floor instead.  Applying "i -> max(i, floor)" with
 * successive floors that only rise gives the same result as applying it
 * once with the last floor, which is what makes merges order-independent.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/sketch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/int.h"
#include "utils/memutils.h"

#include "metrics/sketch.h"

/* gamma = (1 + alpha) / (1 - alpha), and derived constants. */
static double metrics_log_gamma = 0.0;
static double metrics_index_multiplier = 0.0;
static double metrics_log_value_factor = 0.0;

/*
 * Counters allocated beyond what is needed when a store grows, and the
 * smallest window allocated: most sketches then never grow.
 */
#define METRICS_STORE_SLACK	   8
#define METRICS_STORE_MIN_SIZE 64

static void
metrics_sketch_constants(void)
{
	if (metrics_log_gamma == 0.0)
	{
		double gamma =
			(1.0 + METRICS_SKETCH_ALPHA) / (1.0 - METRICS_SKETCH_ALPHA);

		metrics_log_gamma = log(gamma);
		metrics_index_multiplier = 1.0 / metrics_log_gamma;
		metrics_log_value_factor = log(2.0 / (1.0 + gamma));
	}
}

/*
 * Bucket index of a positive finite magnitude.
 */
int32
metrics_sketch_index(double magnitude)
{
	metrics_sketch_constants();
	return (int32) ceil(log(magnitude) * metrics_index_multiplier);
}

/*
 * The value a bucket answers with: 2 gamma^index / (gamma + 1), computed
 * in logarithms so that the highest buckets do not overflow.
 */
double
metrics_sketch_bucket_value(int32 index)
{
	metrics_sketch_constants();
	return exp((double) index * metrics_log_gamma + metrics_log_value_factor);
}

/*
 * Raise the error for a value a sketch cannot hold: NaN or an infinity.
 */
void
metrics_sketch_check_value(double value)
{
	if (isnan(value))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("metric value must not be NaN")));
	if (isinf(value))
		ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						errmsg("metric value must be finite"),
						errdetail("The value is %s.",
								  value > 0 ? "Infinity" : "-Infinity")));
}

/*
 * Raise the error for a quantile fraction outside [0, 1], worded as
 * PostgreSQL's percentile functions word it.
 */
void
metrics_sketch_check_fraction(double q)
{
	if (isnan(q) || q < 0.0 || q > 1.0)
		ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						errmsg("quantile %g is not between 0 and 1", q)));
}

static void
metrics_store_init(MetricsSketchStore *store)
{
	store->total = 0;
	store->nonzero = 0;
	store->lo = 0;
	store->hi = -1;
	store->base = 0;
	store->size = 0;
	store->counts = NULL;
}

/*
 * Make the store's array cover [lo, hi] (a span of at most the cap), keeping
 * its counters.  The new window is centred on the span, with slack on both
 * sides, but never wider than the cap plus twice the slack.
 */
static void
metrics_store_cover(MetricsSketch *sketch, MetricsSketchStore *store, int32 lo,
					int32 hi)
{
	int32 span = hi - lo + 1;
	int32 size;
	int32 base;
	int64 *counts;

	Assert(span > 0 && span <= METRICS_SKETCH_MAX_BUCKETS);
	if (store->counts != NULL && lo >= store->base &&
		hi < store->base + store->size)
		return;

	size = Max(Max(span + 2 * METRICS_STORE_SLACK, store->size * 2),
			   METRICS_STORE_MIN_SIZE);
	size = Min(size, METRICS_SKETCH_MAX_BUCKETS + 2 * METRICS_STORE_SLACK);
	base = lo - (size - span) / 2;

	counts = MemoryContextAllocZero(sketch->cxt, sizeof(int64) * size);
	if (store->counts != NULL)
	{
		/* Counters outside [lo, hi] are zero: copy what the windows share. */
		int32 from = Max(base, store->base);
		int32 to = Min(base + size, store->base + store->size);

		if (to > from)
			memcpy(counts + (from - base),
				   store->counts + (from - store->base),
				   sizeof(int64) * (to - from));
		pfree(store->counts);
	}
	store->counts = counts;
	store->base = base;
	store->size = size;
}

static void
metrics_count_add(int64 *target, int64 count)
{
	if (pg_add_s64_overflow(*target, count, target))
		ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						errmsg("sketch count is out of range")));
}

/*
 * Add count to bucket index of a store, applying the size cap.
 */
static void
metrics_store_add(MetricsSketch *sketch, MetricsSketchStore *store,
				  int32 index, int64 count)
{
	if (store->total == 0)
	{
		metrics_store_cover(sketch, store, index, index);
		store->lo = store->hi = index;
	}
	else if (index > store->hi)
	{
		int32 floor = index - METRICS_SKETCH_MAX_BUCKETS + 1;

		if (store->lo < floor)
		{
			/* Merge every bucket below the new floor into the floor. */
			int64 moved = 0;
			int32 i;

			for (i = store->lo; i < floor && i <= store->hi; i++)
			{
				if (store->counts[i - store->base] != 0)
					store->nonzero--;
				moved += store->counts[i - store->base];
				store->counts[i - store->base] = 0;
			}
			sketch->collapsed = true;
			store->lo = floor;
			metrics_store_cover(sketch, store, floor, index);
			if (store->counts[floor - store->base] == 0 && moved != 0)
				store->nonzero++;
			store->counts[floor - store->base] += moved;
		}
		else
			metrics_store_cover(sketch, store, store->lo, index);
		store->hi = index;
	}
	else if (index < store->lo)
	{
		int32 floor = store->hi - METRICS_SKETCH_MAX_BUCKETS + 1;

		if (index < floor)
		{
			index = floor;
			sketch->collapsed = true;
		}
		metrics_store_cover(sketch, store, index, store->hi);
		store->lo = index;
	}
	if (store->counts[index - store->base] == 0)
		store->nonzero++;
	metrics_count_add(&store->counts[index - store->base], count);
	metrics_count_add(&store->total, count);
}

/*
 * A new, empty sketch whose arrays live in cxt.
 */
MetricsSketch *
metrics_sketch_create(MemoryContext cxt)
{
	MetricsSketch *sketch = MemoryContextAlloc(cxt, sizeof(MetricsSketch));

	sketch->cxt = cxt;
	sketch->count = 0;
	sketch->zero = 0;
	sketch->min = 0.0;
	sketch->max = 0.0;
	sketch->collapsed = false;
	metrics_store_init(&sketch->pos);
	metrics_store_init(&sketch->neg);
	metrics_xsum_init(&sketch->sum);
	return sketch;
}

/*
 * Empty a sketch, keeping its arrays for reuse.  Only counters in [lo, hi]
 * can be non-zero, so only they are cleared.
 */
void
metrics_sketch_reset(MetricsSketch *sketch)
{
	MetricsSketchStore *stores[2] = {&sketch->pos, &sketch->neg};
	int s;

	for (s = 0; s < 2; s++)
	{
		MetricsSketchStore *store = stores[s];

		if (store->total > 0)
			memset(store->counts + (store->lo - store->base), 0,
				   sizeof(int64) * (store->hi - store->lo + 1));
		store->total = 0;
		store->nonzero = 0;
		store->hi = -1;
		store->lo = 0;
	}
	sketch->count = 0;
	sketch->zero = 0;
	sketch->min = sketch->max = 0.0;
	sketch->collapsed = false;
	metrics_xsum_init(&sketch->sum);
}

/*
 * Add one value.  NaN and infinities raise an error; -0 counts as 0.
 */
void
metrics_sketch_add(MetricsSketch *sketch, double value)
{
	metrics_sketch_check_value(value);
	if (value == 0.0)
	{
		value = 0.0; /* -0 and 0 must give the same min and max bits */
		metrics_count_add(&sketch->zero, 1);
	}
	else if (value > 0.0)
		metrics_store_add(sketch, &sketch->pos, metrics_sketch_index(value),
						  1);
	else
		metrics_store_add(sketch, &sketch->neg, metrics_sketch_index(-value),
						  1);

	if (sketch->count == 0)
		sketch->min = sketch->max = value;
	else
	{
		if (value < sketch->min)
			sketch->min = value;
		if (value > sketch->max)
			sketch->max = value;
	}
	metrics_count_add(&sketch->count, 1);
	metrics_xsum_add(&sketch->sum, value);
}

/*
 * Add count values to one bucket, for decoding a serialized sketch; the
 * caller sets count, min, max and sum itself.
 */
void
metrics_sketch_add_bucket(MetricsSketch *sketch, bool negative, int32 index,
						  int64 count)
{
	metrics_store_add(sketch, negative ? &sketch->neg : &sketch->pos, index,
					  count);
}

static void
metrics_store_merge(MetricsSketch *dst, MetricsSketchStore *to,
					const MetricsSketchStore *from)
{
	int32 i;

	if (from->total == 0)
		return;
	/* Highest first: the floor is then set once, before the low buckets. */
	for (i = from->hi; i >= from->lo; i--)
	{
		int64 c = from->counts[i - from->base];

		if (c != 0)
			metrics_store_add(dst, to, i, c);
	}
}

/*
 * Add every value of src to dst.
 */
void
metrics_sketch_merge(MetricsSketch *dst, const MetricsSketch *src)
{
	if (src->count == 0)
		return;
	metrics_store_merge(dst, &dst->pos, &src->pos);
	metrics_store_merge(dst, &dst->neg, &src->neg);
	metrics_count_add(&dst->zero, src->zero);
	if (dst->count == 0)
	{
		dst->min = src->min;
		dst->max = src->max;
	}
	else
	{
		if (src->min < dst->min)
			dst->min = src->min;
		if (src->max > dst->max)
			dst->max = src->max;
	}
	metrics_count_add(&dst->count, src->count);
	dst->collapsed = dst->collapsed || src->collapsed;
	metrics_xsum_merge(&dst->sum, &src->sum);
}

/*
 * The q-quantile (0 <= q <= 1) of a non-empty sketch: the estimate of the
 * value of rank max(1, ceil(q * count)) in ascending order, the rank
 * percentile_disc() uses, clamped to [min, max], and exactly min or max
 * for the first and last ranks.  Unless the sketch collapsed, it is within
 * METRICS_SKETCH_ALPHA of that value, relatively.
 */
double
metrics_sketch_quantile(const MetricsSketch *sketch, double q)
{
	int64 rank;
	int64 seen = 0;
	double result = 0.0;
	int32 i;

	Assert(sketch->count > 0);
	rank = (int64) ceil(q * (double) sketch->count);
	if (rank < 1)
		rank = 1;
	if (rank > sketch->count)
		rank = sketch->count;
	/* The extremes are known exactly. */
	if (rank == 1)
		return sketch->min;
	if (rank == sketch->count)
		return sketch->max;

	if (rank <= sketch->neg.total)
	{
		/* Most negative values first: highest magnitudes first. */
		for (i = sketch->neg.hi; i >= sketch->neg.lo; i--)
		{
			seen += sketch->neg.counts[i - sketch->neg.base];
			if (seen >= rank)
			{
				result = -metrics_sketch_bucket_value(i);
				break;
			}
		}
	}
	else if (rank <= sketch->neg.total + sketch->zero)
		result = 0.0;
	else
	{
		seen = sketch->neg.total + sketch->zero;
		for (i = sketch->pos.lo; i <= sketch->pos.hi; i++)
		{
			seen += sketch->pos.counts[i - sketch->pos.base];
			if (seen >= rank)
			{
				result = metrics_sketch_bucket_value(i);
				break;
			}
		}
	}

	if (result < sketch->min)
		result = sketch->min;
	if (result > sketch->max)
		result = sketch->max;
	return result;
}
