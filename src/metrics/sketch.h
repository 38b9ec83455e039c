/*-------------------------------------------------------------------------
 *
 * sketch.h
 *		The metrics.sketch quantile sketch: in-memory form and operations.
 *
 * A sketch summarizes a multiset of finite float8 values so that any
 * quantile can be answered with a relative error of at most
 * METRICS_SKETCH_ALPHA (1%), whatever the distribution.  It belongs to the
 * DDSketch family: a value x != 0 falls into bucket
 * ceil(log(|x|) / log(gamma)), gamma = (1 + alpha) / (1 - alpha), of the
 * store of its sign, zero has a counter of its own, and a bucket answers
 * with 2 gamma^i / (gamma + 1), which is within alpha of every value in it.
 *
 * Each store keeps at most METRICS_SKETCH_MAX_BUCKETS consecutive bucket
 * indexes (a ratio of about 5.8e17 between the largest and smallest
 * magnitude of one sign).  When a value would widen a store past that, the
 * buckets of smallest magnitude are merged into the lowest bucket kept, and
 * the sketch is marked collapsed: quantiles among those values lose their
 * accuracy bound, the others keep it.
 *
 * Merging is exact and commutative: counts are integers, min and max are
 * exact, the sum is kept in an exact fixed-point accumulator (MetricsXsum,
 * below) and rounded once when read, and the collapse rule depends only on
 * the highest index ever seen (every index i becomes max(i, hi - cap + 1)),
 * so any order of adds and merges gives the same sketch, bit for bit.
 *
 * Memory: a MetricsSketch and its arrays live in the memory context given
 * to metrics_sketch_create(); nothing is global.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/sketch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef METRICS_SKETCH_H
#define METRICS_SKETCH_H

#include "fmgr.h"
#include "lib/stringinfo.h"

/* Relative accuracy of every quantile, and the per-sign bucket cap. */
#define METRICS_SKETCH_ALPHA	   0.01
#define METRICS_SKETCH_MAX_BUCKETS 2048

/*
 * Bucket indexes of the smallest and largest positive finite doubles: no
 * valid sketch holds an index outside this range.
 */
#define METRICS_SKETCH_MIN_INDEX (-37500)
#define METRICS_SKETCH_MAX_INDEX 37500

/*
 * Exact sum: an integer number of units of 2^-1074 (the smallest subnormal
 * double), in 32-bit limbs held in int64 so that carries can be deferred.
 * 70 limbs cover more than 2^64 additions of DBL_MAX.  Limbs outside
 * [lo, hi] are zero.  After metrics_xsum_normalize() every limb but the last
 * is in [0, 2^32) and the last one carries the sign.
 */
#define METRICS_XSUM_LIMBS 70

typedef struct MetricsXsum
{
	int64 limb[METRICS_XSUM_LIMBS];
	int lo;			/* lowest limb that may be non-zero */
	int hi;			/* highest limb that may be non-zero, -1 if none */
	int32 deferred; /* additions since the last normalization */
} MetricsXsum;

/* Counts of one sign: a window of consecutive bucket indexes. */
typedef struct MetricsSketchStore
{
	int64 total;   /* sum of counts */
	int32 nonzero; /* buckets with a count */
	int32 lo;	   /* lowest non-empty index, when total > 0 */
	int32 hi;	   /* highest non-empty index, when total > 0 */
	int32 base;	   /* index of counts[0] */
	int32 size;	   /* allocated length of counts */
	int64 *counts; /* counts[i - base] for base <= i < base + size */
} MetricsSketchStore;

typedef struct MetricsSketch
{
	MemoryContext cxt; /* where counts arrays are allocated */
	int64 count;	   /* values added */
	int64 zero;		   /* values equal to zero */
	double min;		   /* smallest value, when count > 0 */
	double max;		   /* largest value, when count > 0 */
	bool collapsed;	   /* some buckets were merged by the size cap */
	MetricsSketchStore pos;
	MetricsSketchStore neg; /* indexed by magnitude */
	MetricsXsum sum;
} MetricsSketch;

/* sketch_acc.c: accumulating stored sketches (see there) */
typedef struct MetricsSketchAcc
{
	MetricsSketch *sketch; /* NULL while single holds everything */
	bytea *single;		   /* the only sketch received so far, or NULL */
} MetricsSketchAcc;

/* sketch.c: building, merging and reading sketches */
extern MetricsSketch *metrics_sketch_create(MemoryContext cxt);
extern void metrics_sketch_reset(MetricsSketch *sketch);
extern void metrics_sketch_add(MetricsSketch *sketch, double value);
extern void metrics_sketch_merge(MetricsSketch *dst, const MetricsSketch *src);
extern void metrics_sketch_add_bucket(MetricsSketch *sketch, bool negative,
									  int32 index, int64 count);
extern double metrics_sketch_quantile(const MetricsSketch *sketch, double q);
extern double metrics_sketch_bucket_value(int32 index);
extern int32 metrics_sketch_index(double magnitude);
extern void metrics_sketch_check_value(double value);
extern void metrics_sketch_check_fraction(double q);

/* xsum.c: the exact sum */
extern void metrics_xsum_init(MetricsXsum *xs);
extern void metrics_xsum_add(MetricsXsum *xs, double value);
extern void metrics_xsum_merge(MetricsXsum *dst, const MetricsXsum *src);
extern void metrics_xsum_normalize(MetricsXsum *xs);
extern double metrics_xsum_value(const MetricsXsum *xs);
extern void metrics_xsum_to_hex(const MetricsXsum *xs, StringInfo out);
extern bool metrics_xsum_from_hex(MetricsXsum *xs, const char *text, int len);
extern bool metrics_xsum_magnitude(const MetricsXsum *xs, uint32 *limbs,
								   int *lo, int *hi);
extern bool metrics_xsum_set_magnitude(MetricsXsum *xs, bool negative,
									   const uint32 *limbs, int lo, int hi);

/* sketch_io.c: the varlena form, text and binary I/O */
extern bytea *metrics_sketch_serialize(const MetricsSketch *sketch);
extern MetricsSketch *metrics_sketch_deserialize(const bytea *data,
												 MemoryContext cxt);
extern MetricsSketch *metrics_sketch_from_datum(Datum datum,
												MemoryContext cxt);
extern void metrics_sketch_read_header(Datum datum, MetricsSketch *sketch);
extern void metrics_sketch_merge_datum(MetricsSketch *target, Datum datum);
extern bytea *metrics_sketch_merge_stored(const bytea *a, const bytea *b);
extern void metrics_sketch_validate_stored(const bytea *data);

/* sketch_acc.c */
extern void metrics_acc_init(MetricsSketchAcc *acc);
extern bool metrics_acc_is_empty(const MetricsSketchAcc *acc);
extern MetricsSketch *metrics_acc_sketch(MetricsSketchAcc *acc,
										 MemoryContext cxt);
extern void metrics_acc_add_stored(MetricsSketchAcc *acc, const bytea *data,
								   MemoryContext cxt);
extern void metrics_acc_merge(MetricsSketchAcc *acc,
							  const MetricsSketchAcc *other,
							  MemoryContext cxt);
extern bytea *metrics_acc_stored(const MetricsSketchAcc *acc);
extern void metrics_acc_header(const MetricsSketchAcc *acc,
							   MetricsSketch *header);

#endif /* METRICS_SKETCH_H */
