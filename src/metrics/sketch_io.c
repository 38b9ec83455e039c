/*-------------------------------------------------------------------------
 *
 * sketch_io.c
 *		The stored form of metrics.sketch and its text and binary I/O.
 *
 * Stored form (a varlena; the binary I/O sends the same bytes):
 *
 *	 uint8	  format version (1)
 *	 uint8	  flags: 1 = collapsed, 2 = the sum is negative
 *	 varint	  count
 *	 float8	  min, float8 max (little-endian IEEE bits), only if count > 0
 *	 varint	  count of zeros
 *	 varint	  number of limbs of the exact sum's magnitude, then if > 0:
 *			  varint lowest limb, and that many uint32 little-endian limbs
 *	 store	  positive values, then store negative values (by magnitude):
 *			  varint number of buckets, then if > 0: zigzag varint first
 *			  index, varint count, and for each further bucket varint
 *			  index delta (>= 1), varint count
 *
 * Varints are unsigned LEB128.  The form is canonical: equal sketches have
 * equal bytes, so comparing stored values compares sketches.  Whatever is
 * read (text, binary or stored) is fully validated before use.
 *
 * Text form, keys in this order:
 *
 *	 count=5 min=1 max=9 sum=0x19 zero=0 positive=0:1,55:1,111:3 negative=
 *
 * with " collapsed" appended when the size cap merged buckets.  min and max
 * are empty when count is 0; sum is exact (see xsum.c); buckets are
 * index:count pairs.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/sketch_io.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/int.h"
#include "common/shortest_dec.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"

#include "metrics/sketch.h"

#define METRICS_SKETCH_FORMAT	  1
#define METRICS_FLAG_COLLAPSED	  1
#define METRICS_FLAG_SUM_NEGATIVE 2

PG_FUNCTION_INFO_V1(metrics_sketch_in);
PG_FUNCTION_INFO_V1(metrics_sketch_out);
PG_FUNCTION_INFO_V1(metrics_sketch_recv);
PG_FUNCTION_INFO_V1(metrics_sketch_send);

/* --- encoding ----------------------------------------------------------- */

static inline uint8 *
put_varint(uint8 *p, uint64 v)
{
	while (v >= 0x80)
	{
		*p++ = (uint8) (v | 0x80);
		v >>= 7;
	}
	*p++ = (uint8) v;
	return p;
}

static inline uint8 *
put_uint32_le(uint8 *p, uint32 v)
{
	p[0] = (uint8) v;
	p[1] = (uint8) (v >> 8);
	p[2] = (uint8) (v >> 16);
	p[3] = (uint8) (v >> 24);
	return p + 4;
}

static inline uint8 *
put_double(uint8 *p, double d)
{
	uint64 bits;

	memcpy(&bits, &d, sizeof(bits));
	p = put_uint32_le(p, (uint32) bits);
	return put_uint32_le(p, (uint32) (bits >> 32));
}

static int64
store_buckets(const MetricsSketchStore *store)
{
	return store->total == 0 ? 0 : store->nonzero;
}

static uint8 *
put_store(uint8 *p, const MetricsSketchStore *store, int64 nbuckets)
{
	int32 i;
	int32 prev = 0;
	bool first = true;

	p = put_varint(p, (uint64) nbuckets);
	if (nbuckets == 0)
		return p;
	for (i = store->lo; i <= store->hi && nbuckets > 0; i++)
	{
		int64 c = store->counts[i - store->base];

		if (c == 0)
			continue;
		if (first)
			p = put_varint(p, i >= 0 ? (uint64) i << 1
									 : ((uint64) (-(int64) i) << 1) - 1);
		else
			p = put_varint(p, (uint64) (i - prev));
		p = put_varint(p, (uint64) c);
		prev = i;
		first = false;
		nbuckets--;
	}
	return p;
}

/* Room for the fields before the buckets, and for one bucket. */
#define METRICS_HEADER_MAX (2 + 10 + 16 + 10 + 20 + 4 * METRICS_XSUM_LIMBS)
#define METRICS_BUCKET_MAX 20

/*
 * Write the fields before the buckets: format, flags, count, min, max,
 * zeros and the exact sum.
 */
static uint8 *
put_header(uint8 *p, const MetricsSketch *sketch)
{
	uint32 mag[METRICS_XSUM_LIMBS];
	int lo;
	int hi;
	int i;
	uint8 flags = 0;

	if (metrics_xsum_magnitude(&sketch->sum, mag, &lo, &hi))
		flags |= METRICS_FLAG_SUM_NEGATIVE;
	if (sketch->collapsed)
		flags |= METRICS_FLAG_COLLAPSED;
	*p++ = METRICS_SKETCH_FORMAT;
	*p++ = flags;
	p = put_varint(p, (uint64) sketch->count);
	if (sketch->count > 0)
	{
		p = put_double(p, sketch->min);
		p = put_double(p, sketch->max);
	}
	p = put_varint(p, (uint64) sketch->zero);
	if (hi < lo)
		p = put_varint(p, 0);
	else
	{
		p = put_varint(p, (uint64) (hi - lo + 1));
		p = put_varint(p, (uint64) lo);
		for (i = lo; i <= hi; i++)
			p = put_uint32_le(p, mag[i]);
	}
	return p;
}

/*
 * The stored form of a sketch, palloc'd in the current memory context.
 */
bytea *
metrics_sketch_serialize(const MetricsSketch *sketch)
{
	int64 npos = store_buckets(&sketch->pos);
	int64 nneg = store_buckets(&sketch->neg);
	Size maxlen = VARHDRSZ + METRICS_HEADER_MAX + 2 * 10 +
				  METRICS_BUCKET_MAX * (npos + nneg);
	bytea *result = palloc(maxlen);
	uint8 *start = (uint8 *) VARDATA(result);
	uint8 *p = start;

	p = put_header(p, sketch);
	p = put_store(p, &sketch->pos, npos);
	p = put_store(p, &sketch->neg, nneg);
	Assert((Size) (p - start) + VARHDRSZ <= maxlen);
	SET_VARSIZE(result, VARHDRSZ + (p - start));
	return result;
}

/* --- decoding ------------------------------------------------------------ */

typedef struct SketchReader
{
	const uint8 *p;
	const uint8 *end;
} SketchReader;

static void
sketch_corrupt(const char *what)
{
	ereport(ERROR, (errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
					errmsg("invalid sketch"), errdetail("%s", what)));
}

static uint64
get_varint_long(SketchReader *r)
{
	uint64 v = 0;
	int shift = 0;

	for (;;)
	{
		uint8 byte;

		if (r->p >= r->end)
			sketch_corrupt("The data ends in the middle of a number.");
		if (shift > 63)
			sketch_corrupt("A number is too long.");
		byte = *r->p++;
		v |= (uint64) (byte & 0x7F) << shift;
		if (!(byte & 0x80))
			break;
		shift += 7;
	}
	return v;
}

/* Most numbers of a sketch (counts, index steps) fit in one byte. */
static inline uint64
get_varint(SketchReader *r)
{
	if (likely(r->p < r->end && *r->p < 0x80))
		return *r->p++;
	return get_varint_long(r);
}

static int64
get_count(SketchReader *r)
{
	uint64 v = get_varint(r);

	if (v > (uint64) PG_INT64_MAX)
		sketch_corrupt("A count is out of range.");
	return (int64) v;
}

static double
get_double(SketchReader *r)
{
	uint64 bits = 0;
	double d;
	int i;

	if (r->end - r->p < 8)
		sketch_corrupt("The data ends in the middle of a number.");
	for (i = 0; i < 8; i++)
		bits |= (uint64) r->p[i] << (8 * i);
	r->p += 8;
	memcpy(&d, &bits, sizeof(d));
	if (!isfinite(d))
		sketch_corrupt("The minimum or maximum is not finite.");
	return d == 0.0 ? 0.0 : d; /* -0 is stored as 0 */
}

/* The buckets of one store, as read: indexes ascending. */
typedef struct SparseStore
{
	int n;
	int64 total;
	int32 index[METRICS_SKETCH_MAX_BUCKETS];
	int64 count[METRICS_SKETCH_MAX_BUCKETS];
} SparseStore;

/*
 * Read and validate one store.
 */
static void
get_sparse_store(SketchReader *r, SparseStore *store)
{
	uint64 n = get_varint(r);
	uint64 k;
	int64 index = 0;
	int64 first = 0;

	store->n = 0;
	store->total = 0;
	if (n > METRICS_SKETCH_MAX_BUCKETS)
		sketch_corrupt("A store has more buckets than the size cap.");
	for (k = 0; k < n; k++)
	{
		uint64 v = get_varint(r);
		int64 c;

		if (k == 0)
		{
			index = (v & 1) ? -(int64) ((v + 1) >> 1) : (int64) (v >> 1);
			first = index;
		}
		else
		{
			if (v == 0 || v > (uint64) METRICS_SKETCH_MAX_BUCKETS)
				sketch_corrupt(
					"Bucket indexes are not increasing within the size cap.");
			index += (int64) v;
		}
		if (index < METRICS_SKETCH_MIN_INDEX ||
			index > METRICS_SKETCH_MAX_INDEX)
			sketch_corrupt("A bucket index is out of range.");
		if (index - first >= METRICS_SKETCH_MAX_BUCKETS)
			sketch_corrupt("A store is wider than the size cap.");
		c = get_count(r);
		if (c == 0)
			sketch_corrupt("A bucket is empty.");
		if (pg_add_s64_overflow(store->total, c, &store->total))
			sketch_corrupt("A count is out of range.");
		store->index[k] = (int32) index;
		store->count[k] = c;
	}
	store->n = (int) n;
}

/*
 * Read one store and add its buckets to sketch.  Not reentrant: the
 * buckets pass through a static buffer.
 */
static void
get_store(SketchReader *r, MetricsSketch *sketch, bool negative, int64 *total)
{
	static SparseStore scratch;
	int k;

	get_sparse_store(r, &scratch);
	for (k = 0; k < scratch.n; k++)
		metrics_sketch_add_bucket(sketch, negative, scratch.index[k],
								  scratch.count[k]);
	*total = scratch.total;
}

static uint8 *
put_sparse_store(uint8 *p, const SparseStore *store)
{
	int k;

	p = put_varint(p, (uint64) store->n);
	for (k = 0; k < store->n; k++)
	{
		int32 i = store->index[k];

		if (k == 0)
			p = put_varint(p, i >= 0 ? (uint64) i << 1
									 : ((uint64) (-(int64) i) << 1) - 1);
		else
			p = put_varint(p, (uint64) (i - store->index[k - 1]));
		p = put_varint(p, (uint64) store->count[k]);
	}
	return p;
}

/*
 * Merge two stores into out; false if the result would be wider than the
 * cap (the caller then merges with collapsing).
 */
static bool
merge_sparse_stores(const SparseStore *a, const SparseStore *b,
					SparseStore *out)
{
	int i = 0;
	int j = 0;
	int n = 0;

	if (a->n > 0 && b->n > 0 &&
		(int64) Max(a->index[a->n - 1], b->index[b->n - 1]) -
				Min(a->index[0], b->index[0]) >=
			METRICS_SKETCH_MAX_BUCKETS)
		return false;
	while (i < a->n || j < b->n)
	{
		if (j >= b->n || (i < a->n && a->index[i] < b->index[j]))
		{
			out->index[n] = a->index[i];
			out->count[n++] = a->count[i++];
		}
		else if (i >= a->n || b->index[j] < a->index[i])
		{
			out->index[n] = b->index[j];
			out->count[n++] = b->count[j++];
		}
		else
		{
			out->index[n] = a->index[i];
			if (pg_add_s64_overflow(a->count[i], b->count[j], &out->count[n]))
				ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
								errmsg("sketch count is out of range")));
			n++;
			i++;
			j++;
		}
	}
	out->n = n;
	return true;
}

/*
 * Read the fields before the buckets (format, flags, count, min, max,
 * zeros and the exact sum) into sketch, leaving the reader at the buckets.
 */
static void
get_header(SketchReader *r, MetricsSketch *sketch, uint8 *flags_out)
{
	uint8 flags;
	uint64 nlimbs;

	if (r->end - r->p < 2)
		sketch_corrupt("The data is too short.");
	if (r->p[0] != METRICS_SKETCH_FORMAT)
		ereport(
			ERROR,
			(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
			 errmsg("unsupported sketch format version %d", r->p[0]),
			 errhint(
				 "The sketch was written by a newer version of pg_opsdata.")));
	flags = r->p[1];
	r->p += 2;
	if (flags & ~(METRICS_FLAG_COLLAPSED | METRICS_FLAG_SUM_NEGATIVE))
		sketch_corrupt("Unknown flags are set.");
	sketch->count = get_count(r);
	if (sketch->count > 0)
	{
		sketch->min = get_double(r);
		sketch->max = get_double(r);
		if (sketch->min > sketch->max)
			sketch_corrupt("The minimum is greater than the maximum.");
	}
	sketch->zero = get_count(r);

	nlimbs = get_varint(r);
	if (nlimbs == 0)
	{
		if (flags & METRICS_FLAG_SUM_NEGATIVE)
			sketch_corrupt("A zero sum is marked negative.");
	}
	else
	{
		uint32 mag[METRICS_XSUM_LIMBS];
		uint64 lo = get_varint(r);
		uint64 i;

		if (nlimbs >= METRICS_XSUM_LIMBS || lo + nlimbs >= METRICS_XSUM_LIMBS)
			sketch_corrupt("The sum is out of range.");
		if ((uint64) (r->end - r->p) < 4 * nlimbs)
			sketch_corrupt("The data ends in the middle of the sum.");
		memset(mag, 0, sizeof(mag));
		for (i = 0; i < nlimbs; i++)
		{
			mag[lo + i] = (uint32) r->p[0] | (uint32) r->p[1] << 8 |
						  (uint32) r->p[2] << 16 | (uint32) r->p[3] << 24;
			r->p += 4;
		}
		if (!metrics_xsum_set_magnitude(
				&sketch->sum, (flags & METRICS_FLAG_SUM_NEGATIVE) != 0, mag,
				(int) lo, (int) (lo + nlimbs - 1)))
			sketch_corrupt("The sum is not in canonical form.");
	}
	*flags_out = flags;
}

/*
 * Count, min, max, zeros and sum of a sketch datum, without decoding its
 * buckets: what the accessors need.  The result's stores are empty.
 */
void
metrics_sketch_read_header(Datum datum, MetricsSketch *sketch)
{
	bytea *data = (bytea *) PG_DETOAST_DATUM_PACKED(datum);
	SketchReader r;
	uint8 flags;

	sketch->cxt = CurrentMemoryContext;
	sketch->count = sketch->zero = 0;
	sketch->min = sketch->max = 0.0;
	metrics_xsum_init(&sketch->sum);
	r.p = (const uint8 *) VARDATA_ANY(data);
	r.end = r.p + VARSIZE_ANY_EXHDR(data);
	get_header(&r, sketch, &flags);
	sketch->collapsed = (flags & METRICS_FLAG_COLLAPSED) != 0;
}

/*
 * Check what the header of a stored sketch says against its stores.
 */
static void
check_stored(const MetricsSketch *header, int64 pos_total, int64 neg_total)
{
	int64 sum;

	if (pg_add_s64_overflow(pos_total, neg_total, &sum) ||
		pg_add_s64_overflow(sum, header->zero, &sum) || sum != header->count)
		sketch_corrupt("The bucket counts do not add up to the count.");
	if (header->count == 0 && header->sum.hi >= 0)
		sketch_corrupt("An empty sketch has a non-zero sum.");
	if (header->count > 0 && ((neg_total == 0 && header->min < 0) ||
							  (pos_total == 0 && header->max > 0) ||
							  (neg_total > 0 && header->min >= 0) ||
							  (pos_total > 0 && header->max <= 0)))
		sketch_corrupt("The minimum or maximum contradicts the buckets.");
}

static void
init_header(MetricsSketch *header)
{
	header->cxt = CurrentMemoryContext;
	header->count = header->zero = 0;
	header->min = header->max = 0.0;
	header->collapsed = false;
	metrics_xsum_init(&header->sum);
}

/*
 * Add the fields of header (count, zeros, min, max, sum, collapsed) to
 * target's.
 */
static void
merge_header(MetricsSketch *target, const MetricsSketch *header)
{
	if (header->count == 0)
		return;
	if (pg_add_s64_overflow(target->zero, header->zero, &target->zero))
		ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						errmsg("sketch count is out of range")));
	if (target->count == 0)
	{
		target->min = header->min;
		target->max = header->max;
	}
	else
	{
		if (header->min < target->min)
			target->min = header->min;
		if (header->max > target->max)
			target->max = header->max;
	}
	if (pg_add_s64_overflow(target->count, header->count, &target->count))
		ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						errmsg("sketch count is out of range")));
	target->collapsed = target->collapsed || header->collapsed;
	metrics_xsum_merge(&target->sum, &header->sum);
}

/*
 * Add the values of a stored sketch (not toasted) to target, validating it
 * as it is read: its buckets go straight into target's stores, with no
 * intermediate sketch.
 */
static void
sketch_merge_stored(MetricsSketch *target, const bytea *data)
{
	SketchReader r;
	MetricsSketch header;
	uint8 flags;
	int64 pos_total;
	int64 neg_total;

	init_header(&header);
	r.p = (const uint8 *) VARDATA_ANY(data);
	r.end = r.p + VARSIZE_ANY_EXHDR(data);
	get_header(&r, &header, &flags);
	header.collapsed = (flags & METRICS_FLAG_COLLAPSED) != 0;
	get_store(&r, target, false, &pos_total);
	get_store(&r, target, true, &neg_total);
	if (r.p != r.end)
		sketch_corrupt("There are bytes after the end of the sketch.");
	check_stored(&header, pos_total, neg_total);
	merge_header(target, &header);
}

/* Buffers of metrics_sketch_merge_stored(): not reentrant, never nested. */
static SparseStore merge_a[2];
static SparseStore merge_b[2];
static SparseStore merge_out[2];

static void
read_sparse(const bytea *data, MetricsSketch *header, SparseStore *stores)
{
	SketchReader r;
	uint8 flags;

	init_header(header);
	r.p = (const uint8 *) VARDATA_ANY(data);
	r.end = r.p + VARSIZE_ANY_EXHDR(data);
	get_header(&r, header, &flags);
	header->collapsed = (flags & METRICS_FLAG_COLLAPSED) != 0;
	get_sparse_store(&r, &stores[0]);
	get_sparse_store(&r, &stores[1]);
	if (r.p != r.end)
		sketch_corrupt("There are bytes after the end of the sketch.");
	check_stored(header, stores[0].total, stores[1].total);
}

/*
 * The stored form of the merge of two stored sketches (not toasted),
 * computed on their bucket lists without building dense stores; NULL when
 * the merge needs the size cap to collapse buckets, which the caller then
 * does with metrics_sketch_merge().  The bytes are those
 * metrics_sketch_serialize() would give.
 */
bytea *
metrics_sketch_merge_stored(const bytea *a, const bytea *b)
{
	MetricsSketch merged;
	MetricsSketch hb;
	int s;
	Size maxlen;
	bytea *result;
	uint8 *start;
	uint8 *p;

	read_sparse(a, &merged, merge_a);
	read_sparse(b, &hb, merge_b);
	for (s = 0; s < 2; s++)
		if (!merge_sparse_stores(&merge_a[s], &merge_b[s], &merge_out[s]))
			return NULL;
	merge_header(&merged, &hb);

	maxlen = VARHDRSZ + METRICS_HEADER_MAX + 2 * 10 +
			 METRICS_BUCKET_MAX * (merge_out[0].n + merge_out[1].n);
	result = palloc(maxlen);
	start = p = (uint8 *) VARDATA(result);
	p = put_header(p, &merged);
	p = put_sparse_store(p, &merge_out[0]);
	p = put_sparse_store(p, &merge_out[1]);
	Assert((Size) (p - start) + VARHDRSZ <= maxlen);
	SET_VARSIZE(result, VARHDRSZ + (p - start));
	return result;
}

/*
 * Validate a stored sketch (not toasted) without decoding it into stores;
 * an error if it is not a valid stored form.
 */
void
metrics_sketch_validate_stored(const bytea *data)
{
	MetricsSketch header;

	read_sparse(data, &header, merge_a);
}

/*
 * Decode a stored sketch (not toasted) into a new sketch in cxt.
 */
MetricsSketch *
metrics_sketch_deserialize(const bytea *data, MemoryContext cxt)
{
	MetricsSketch *sketch = metrics_sketch_create(cxt);

	/* Stores are checked to fit the cap, so this collapses nothing new. */
	sketch_merge_stored(sketch, data);
	return sketch;
}

/*
 * Decode a sketch datum, detoasting it if needed.
 */
MetricsSketch *
metrics_sketch_from_datum(Datum datum, MemoryContext cxt)
{
	bytea *data = (bytea *) PG_DETOAST_DATUM_PACKED(datum);
	MetricsSketch *sketch = metrics_sketch_deserialize(data, cxt);

	if ((Pointer) data != DatumGetPointer(datum))
		pfree(data);
	return sketch;
}

/*
 * Add the values of a sketch datum to target.
 */
void
metrics_sketch_merge_datum(MetricsSketch *target, Datum datum)
{
	bytea *data = (bytea *) PG_DETOAST_DATUM_PACKED(datum);

	sketch_merge_stored(target, data);
	if ((Pointer) data != DatumGetPointer(datum))
		pfree(data);
}

/* --- text I/O ------------------------------------------------------------ */

static void
append_double(StringInfo buf, double d)
{
	char tmp[DOUBLE_SHORTEST_DECIMAL_LEN];

	double_to_shortest_decimal_buf(d, tmp);
	appendStringInfoString(buf, tmp);
}

static void
append_store(StringInfo buf, const MetricsSketchStore *store)
{
	int32 i;
	bool first = true;

	if (store->total == 0)
		return;
	for (i = store->lo; i <= store->hi; i++)
	{
		int64 c = store->counts[i - store->base];

		if (c == 0)
			continue;
		appendStringInfo(buf, "%s%d:" INT64_FORMAT, first ? "" : ",", i, c);
		first = false;
	}
}

Datum
metrics_sketch_out(PG_FUNCTION_ARGS)
{
	MetricsSketch *sketch =
		metrics_sketch_from_datum(PG_GETARG_DATUM(0), CurrentMemoryContext);
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "count=" INT64_FORMAT " min=", sketch->count);
	if (sketch->count > 0)
		append_double(&buf, sketch->min);
	appendStringInfoString(&buf, " max=");
	if (sketch->count > 0)
		append_double(&buf, sketch->max);
	appendStringInfoString(&buf, " sum=");
	metrics_xsum_to_hex(&sketch->sum, &buf);
	appendStringInfo(&buf, " zero=" INT64_FORMAT " positive=", sketch->zero);
	append_store(&buf, &sketch->pos);
	appendStringInfoString(&buf, " negative=");
	append_store(&buf, &sketch->neg);
	if (sketch->collapsed)
		appendStringInfoString(&buf, " collapsed");
	PG_RETURN_CSTRING(buf.data);
}

typedef struct SketchTextParser
{
	const char *input; /* the whole text, for messages */
	const char *p;	   /* next character */
} SketchTextParser;

pg_attribute_noreturn() static void sketch_text_error(SketchTextParser *tp,
													  const char *detail)
{
	ereport(
		ERROR,
		(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
		 errmsg("invalid input syntax for type %s: \"%s\"", "metrics.sketch",
				tp->input),
		 errdetail("%s", detail),
		 errhint(
			 "A sketch reads like \"count=2 min=1 max=3 sum=0x4 zero=0 positive=0:1,55:1 negative=\".")));
}

/*
 * Consume "key=" (preceded by one space unless first) and return the value
 * up to the next space or the end, as [*start, *end).
 */
static void
sketch_text_field(SketchTextParser *tp, const char *key, bool first,
				  const char **start, const char **end)
{
	size_t klen = strlen(key);

	if (!first)
	{
		if (*tp->p != ' ')
			sketch_text_error(tp, psprintf("Expected \"%s=\".", key));
		tp->p++;
	}
	if (strncmp(tp->p, key, klen) != 0 || tp->p[klen] != '=')
		sketch_text_error(tp, psprintf("Expected \"%s=\".", key));
	tp->p += klen + 1;
	*start = tp->p;
	while (*tp->p != '\0' && *tp->p != ' ')
		tp->p++;
	*end = tp->p;
}

static int64
sketch_text_count(SketchTextParser *tp, const char *start, const char *end,
				  const char *what)
{
	int64 v = 0;
	const char *p;

	if (start == end)
		sketch_text_error(tp, psprintf("The %s is missing.", what));
	for (p = start; p < end; p++)
	{
		if (*p < '0' || *p > '9')
			sketch_text_error(tp,
							  psprintf("The %s is not a whole number.", what));
		if (pg_mul_s64_overflow(v, 10, &v) ||
			pg_add_s64_overflow(v, *p - '0', &v))
			sketch_text_error(tp, psprintf("The %s is out of range.", what));
	}
	return v;
}

static double
sketch_text_double(SketchTextParser *tp, const char *start, const char *end,
				   const char *what)
{
	char *copy = pnstrdup(start, end - start);
	char *stop;
	double d;

	errno = 0;
	d = strtod(copy, &stop);
	if (start == end || *stop != '\0' || errno == ERANGE || !isfinite(d))
		sketch_text_error(tp,
						  psprintf("The %s is not a finite number.", what));
	pfree(copy);
	return d == 0.0 ? 0.0 : d; /* -0 is stored as 0 */
}

static int64
sketch_text_store(SketchTextParser *tp, MetricsSketch *sketch, bool negative,
				  const char *start, const char *end)
{
	const char *p = start;
	int64 total = 0;
	int64 prev = 0;
	int64 first = 0;
	int n = 0;

	while (p < end)
	{
		const char *colon;
		const char *comma;
		char *stop;
		long index;
		int64 count;
		char *num;

		comma = memchr(p, ',', end - p);
		if (comma == NULL)
			comma = end;
		colon = memchr(p, ':', comma - p);
		if (colon == NULL)
			sketch_text_error(tp, "A bucket is not written as index:count.");
		num = pnstrdup(p, colon - p);
		errno = 0;
		index = strtol(num, &stop, 10);
		if (colon == p || *stop != '\0' || errno == ERANGE ||
			index < METRICS_SKETCH_MIN_INDEX ||
			index > METRICS_SKETCH_MAX_INDEX)
			sketch_text_error(tp, "A bucket index is not a valid index.");
		pfree(num);
		if (n > 0 && index <= prev)
			sketch_text_error(tp, "Bucket indexes are not increasing.");
		if (n == 0)
			first = index;
		if (index - first >= METRICS_SKETCH_MAX_BUCKETS)
			sketch_text_error(tp, "A store is wider than the size cap.");
		count = sketch_text_count(tp, colon + 1, comma, "bucket count");
		if (count == 0)
			sketch_text_error(tp, "A bucket count is zero.");
		if (pg_add_s64_overflow(total, count, &total))
			sketch_text_error(tp, "The bucket counts are out of range.");
		metrics_sketch_add_bucket(sketch, negative, (int32) index, count);
		prev = index;
		n++;
		p = comma < end ? comma + 1 : end;
		if (comma < end && p == end)
			sketch_text_error(tp, "A bucket list ends with a comma.");
	}
	return total;
}

Datum
metrics_sketch_in(PG_FUNCTION_ARGS)
{
	char *input = PG_GETARG_CSTRING(0);
	SketchTextParser tp;
	MetricsSketch *sketch = metrics_sketch_create(CurrentMemoryContext);
	const char *s;
	const char *e;
	int64 pos_total;
	int64 neg_total;
	int64 total;
	bool collapsed = false;

	tp.input = input;
	tp.p = input;

	sketch_text_field(&tp, "count", true, &s, &e);
	sketch->count = sketch_text_count(&tp, s, e, "count");
	sketch_text_field(&tp, "min", false, &s, &e);
	if (sketch->count > 0)
		sketch->min = sketch_text_double(&tp, s, e, "minimum");
	else if (s != e)
		sketch_text_error(&tp, "An empty sketch has no minimum.");
	sketch_text_field(&tp, "max", false, &s, &e);
	if (sketch->count > 0)
		sketch->max = sketch_text_double(&tp, s, e, "maximum");
	else if (s != e)
		sketch_text_error(&tp, "An empty sketch has no maximum.");
	if (sketch->min > sketch->max)
		sketch_text_error(&tp, "The minimum is greater than the maximum.");
	sketch_text_field(&tp, "sum", false, &s, &e);
	if (!metrics_xsum_from_hex(&sketch->sum, s, e - s))
		sketch_text_error(
			&tp, "The sum is not an exact hexadecimal number such as 0x1.8.");
	sketch_text_field(&tp, "zero", false, &s, &e);
	sketch->zero = sketch_text_count(&tp, s, e, "count of zeros");
	sketch_text_field(&tp, "positive", false, &s, &e);
	pos_total = sketch_text_store(&tp, sketch, false, s, e);
	sketch_text_field(&tp, "negative", false, &s, &e);
	neg_total = sketch_text_store(&tp, sketch, true, s, e);
	if (strcmp(tp.p, " collapsed") == 0)
		collapsed = true;
	else if (*tp.p != '\0')
		sketch_text_error(&tp, "Unexpected text after the negative buckets.");

	if (pg_add_s64_overflow(pos_total, neg_total, &total) ||
		pg_add_s64_overflow(total, sketch->zero, &total) ||
		total != sketch->count)
		sketch_text_error(
			&tp, "The bucket counts and zeros do not add up to the count.");
	if (sketch->count == 0 && sketch->sum.hi >= 0)
		sketch_text_error(&tp, "An empty sketch has a non-zero sum.");
	if (sketch->count > 0 && ((neg_total == 0 && sketch->min < 0) ||
							  (pos_total == 0 && sketch->max > 0) ||
							  (neg_total > 0 && sketch->min >= 0) ||
							  (pos_total > 0 && sketch->max <= 0)))
		sketch_text_error(&tp,
						  "The minimum or maximum contradicts the buckets.");
	sketch->collapsed = collapsed;

	PG_RETURN_BYTEA_P(metrics_sketch_serialize(sketch));
}

/* --- binary I/O ---------------------------------------------------------- */

/*
 * Binary input: the stored form, decoded (which validates it) and encoded
 * again, so what is stored is always canonical.
 */
Datum
metrics_sketch_recv(PG_FUNCTION_ARGS)
{
	StringInfo buf = (StringInfo) PG_GETARG_POINTER(0);
	int len = buf->len - buf->cursor;
	bytea *data = (bytea *) palloc(VARHDRSZ + len);
	MetricsSketch *sketch;

	SET_VARSIZE(data, VARHDRSZ + len);
	pq_copymsgbytes(buf, VARDATA(data), len);
	sketch = metrics_sketch_deserialize(data, CurrentMemoryContext);
	PG_RETURN_BYTEA_P(metrics_sketch_serialize(sketch));
}

Datum
metrics_sketch_send(PG_FUNCTION_ARGS)
{
	bytea *data = PG_GETARG_BYTEA_PP(0);
	StringInfoData buf;

	pq_begintypsend(&buf);
	pq_sendbytes(&buf, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}
