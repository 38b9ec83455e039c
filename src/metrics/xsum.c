/*-------------------------------------------------------------------------
 *
 * xsum.c
 *		The exact sum of a sketch: a fixed-point accumulator of doubles.
 *
 * Floating-point addition is not associative, so a sum kept as a double
 * would depend on the order in which values and sketches are merged.  A
 * sketch instead keeps the exact sum of its values as an integer number of
 * units of 2^-1074 (the smallest positive double), which every finite
 * double is a whole multiple of.  The integer has METRICS_XSUM_LIMBS limbs
 * of 32 bits stored in int64 so that a value is added to three limbs
 * without propagating carries; carries are propagated every 2^28
 * additions and before the sum is read.  Reading rounds the exact sum once,
 * to the nearest double (ties to even), so the result depends only on the
 * multiset of values.
 *
 * The text form is the exact value in hexadecimal, e.g. "0x1.8" for 1.5 or
 * "-0x0.0000000000001" for -2^-52.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/xsum.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "metrics/sketch.h"

#define XSUM_LIMB_BITS 32
#define XSUM_LIMB_MASK ((uint64) 0xFFFFFFFF)
#define XSUM_LIMB_BASE ((int64) 1 << XSUM_LIMB_BITS)
/* Each addition changes a limb by less than 2^33: stay far from 2^63. */
#define XSUM_MAX_DEFERRED (1 << 28)
/* Bit k of the integer weighs 2^(k - XSUM_UNIT_EXP). */
#define XSUM_UNIT_EXP 1074

void
metrics_xsum_init(MetricsXsum *xs)
{
	memset(xs->limb, 0, sizeof(xs->limb));
	xs->lo = METRICS_XSUM_LIMBS;
	xs->hi = -1;
	xs->deferred = 0;
}

static inline void
xsum_touch(MetricsXsum *xs, int lo, int hi)
{
	if (lo < xs->lo)
		xs->lo = lo;
	if (hi > xs->hi)
		xs->hi = hi;
}

/*
 * Propagate carries so that every limb but the last is in [0, 2^32).
 */
void
metrics_xsum_normalize(MetricsXsum *xs)
{
	int i;

	xs->deferred = 0;
	if (xs->hi < 0)
		return;
	for (i = xs->lo; i < METRICS_XSUM_LIMBS - 1; i++)
	{
		int64 v = xs->limb[i];
		uint64 low = (uint64) v & XSUM_LIMB_MASK;
		int64 carry = (v - (int64) low) / XSUM_LIMB_BASE;

		xs->limb[i] = (int64) low;
		if (carry != 0)
		{
			xs->limb[i + 1] += carry;
			if (i + 1 > xs->hi)
				xs->hi = i + 1;
		}
		else if (i >= xs->hi)
			break;
	}
	/* Shrink [lo, hi] to the limbs that are non-zero. */
	while (xs->hi >= 0 && xs->limb[xs->hi] == 0)
		xs->hi--;
	if (xs->hi < 0)
		xs->lo = METRICS_XSUM_LIMBS;
	else
		while (xs->limb[xs->lo] == 0)
			xs->lo++;
}

/*
 * Add a finite double exactly.
 */
void
metrics_xsum_add(MetricsXsum *xs, double value)
{
	uint64 bits;
	uint64 mant;
	int exp;
	int pos;
	int limb;
	int shift;
	uint64 a;
	uint64 b;
	int64 v0;
	int64 v1;
	int64 v2;

	memcpy(&bits, &value, sizeof(bits));
	exp = (int) ((bits >> 52) & 0x7FF);
	mant = bits & (((uint64) 1 << 52) - 1);
	if (exp == 0)
		pos = 0; /* zero or subnormal: mant units of 2^-1074 */
	else
	{
		mant |= (uint64) 1 << 52;
		pos = exp - 1;
	}
	if (mant == 0)
		return;

	/* mant << pos spans at most three limbs from limb. */
	limb = pos / XSUM_LIMB_BITS;
	shift = pos % XSUM_LIMB_BITS;
	a = (mant & XSUM_LIMB_MASK) << shift;  /* < 2^63 */
	b = (mant >> XSUM_LIMB_BITS) << shift; /* < 2^53 */
	v0 = (int64) (a & XSUM_LIMB_MASK);
	v1 = (int64) ((a >> XSUM_LIMB_BITS) + (b & XSUM_LIMB_MASK));
	v2 = (int64) (b >> XSUM_LIMB_BITS);
	if (bits >> 63)
	{
		xs->limb[limb] -= v0;
		xs->limb[limb + 1] -= v1;
		xs->limb[limb + 2] -= v2;
	}
	else
	{
		xs->limb[limb] += v0;
		xs->limb[limb + 1] += v1;
		xs->limb[limb + 2] += v2;
	}
	xsum_touch(xs, limb, limb + 2);
	if (++xs->deferred >= XSUM_MAX_DEFERRED)
		metrics_xsum_normalize(xs);
}

/*
 * dst += src.  Both must have fewer than XSUM_MAX_DEFERRED pending
 * additions, which normalization after every merge guarantees.
 */
void
metrics_xsum_merge(MetricsXsum *dst, const MetricsXsum *src)
{
	int i;

	if (src->hi < 0)
		return;
	if (dst->deferred + src->deferred >= XSUM_MAX_DEFERRED / 2)
		metrics_xsum_normalize(dst);
	for (i = src->lo; i <= src->hi; i++)
		dst->limb[i] += src->limb[i];
	xsum_touch(dst, src->lo, src->hi);
	metrics_xsum_normalize(dst);
}

/*
 * Whether a normalized sum is negative.
 */
static bool
xsum_normalized_is_negative(const MetricsXsum *xs)
{
	return xs->limb[METRICS_XSUM_LIMBS - 1] < 0;
}

/*
 * The magnitude of a sum as unsigned limbs: limbs[lo..hi] are set, the
 * others are zero; hi < lo when the sum is zero.  limbs must have room for
 * METRICS_XSUM_LIMBS entries.  Returns whether the sum is negative.
 */
bool
metrics_xsum_magnitude(const MetricsXsum *xs, uint32 *limbs, int *lo, int *hi)
{
	MetricsXsum tmp = *xs;
	bool negative;
	int i;

	metrics_xsum_normalize(&tmp);
	negative = xsum_normalized_is_negative(&tmp);
	if (negative)
	{
		for (i = tmp.lo; i < METRICS_XSUM_LIMBS; i++)
			tmp.limb[i] = -tmp.limb[i];
		tmp.hi = METRICS_XSUM_LIMBS - 1;
		metrics_xsum_normalize(&tmp);
	}
	memset(limbs, 0, sizeof(uint32) * METRICS_XSUM_LIMBS);
	for (i = tmp.lo; i <= tmp.hi; i++)
		limbs[i] = (uint32) tmp.limb[i];
	*lo = tmp.lo;
	*hi = tmp.hi;
	return negative;
}

/*
 * Set a sum from a sign and magnitude limbs[lo..hi].  Returns false if the
 * magnitude does not fit (which no sketch this code wrote can have).
 */
bool
metrics_xsum_set_magnitude(MetricsXsum *xs, bool negative, const uint32 *limbs,
						   int lo, int hi)
{
	int i;

	metrics_xsum_init(xs);
	if (hi < lo)
		return !negative;
	if (lo < 0 || hi >= METRICS_XSUM_LIMBS - 1)
		return false;
	if (limbs[lo] == 0 || limbs[hi] == 0)
		return false; /* not the canonical form */
	for (i = lo; i <= hi; i++)
		xs->limb[i] = negative ? -(int64) limbs[i] : (int64) limbs[i];
	xs->lo = lo;
	xs->hi = hi;
	metrics_xsum_normalize(xs);
	return true;
}

/*
 * The exact sum rounded to the nearest double, ties to even; +-Infinity
 * when it is beyond the range of doubles.
 */
double
metrics_xsum_value(const MetricsXsum *xs)
{
	uint32 mag[METRICS_XSUM_LIMBS];
	int lo;
	int hi;
	int top;
	int k;
	uint64 m = 0;
	bool sticky = false;
	int shift;
	double result;
	bool negative;

	negative = metrics_xsum_magnitude(xs, mag, &lo, &hi);
	if (hi < lo)
		return 0.0;

	/* Highest set bit of the magnitude: bit top of the integer. */
	top = hi * XSUM_LIMB_BITS + 31;
	while (!(mag[hi] & ((uint32) 1 << (top % XSUM_LIMB_BITS))))
		top--;

	/*
	 * Take the 64 bits from top down as m, and note whether any lower bit is
	 * set: with 64 bits and a sticky bit, the conversion of m to double
	 * (53 bits) rounds exactly as rounding the whole integer would.
	 */
	shift = top - 63; /* weight of m's lowest bit, as a bit index */
	for (k = 0; k < 64; k++)
	{
		int bit = shift + k;

		if (bit >= 0 &&
			(mag[bit / XSUM_LIMB_BITS] >> (bit % XSUM_LIMB_BITS)) & 1)
			m |= (uint64) 1 << k;
	}
	if (shift > 0)
	{
		int limb = shift / XSUM_LIMB_BITS;

		for (k = lo; k < limb && !sticky; k++)
			sticky = mag[k] != 0;
		if (!sticky &&
			(mag[limb] & (((uint32) 1 << (shift % XSUM_LIMB_BITS)) - 1)))
			sticky = true;
	}
	if (sticky)
		m |= 1;
	result = ldexp((double) m, shift - XSUM_UNIT_EXP);
	return negative ? -result : result;
}

static inline int
xsum_bit(const uint32 *mag, int bit)
{
	if (bit < 0 || bit >= METRICS_XSUM_LIMBS * XSUM_LIMB_BITS)
		return 0;
	return (mag[bit / XSUM_LIMB_BITS] >> (bit % XSUM_LIMB_BITS)) & 1;
}

/*
 * Hex digit d (d < 0 after the point) holds bits 1074 + 4d to 1074 + 4d + 3.
 */
static inline int
xsum_digit_of_bit(int bit)
{
	int rel = bit - XSUM_UNIT_EXP;

	return rel >= 0 ? rel / 4 : -((-rel + 3) / 4);
}

static inline int
xsum_digit(const uint32 *mag, int d)
{
	int base = XSUM_UNIT_EXP + 4 * d;

	return xsum_bit(mag, base) | xsum_bit(mag, base + 1) << 1 |
		   xsum_bit(mag, base + 2) << 2 | xsum_bit(mag, base + 3) << 3;
}

/*
 * Append the exact value in hexadecimal: [-]0x<hex>[.<hex>], without
 * leading or trailing zero digits.
 */
void
metrics_xsum_to_hex(const MetricsXsum *xs, StringInfo out)
{
	static const char digits[] = "0123456789abcdef";
	uint32 mag[METRICS_XSUM_LIMBS];
	int lo;
	int hi;
	int top_bit;
	int low_bit;
	int d;
	int d_hi;
	int d_lo;
	bool negative;

	negative = metrics_xsum_magnitude(xs, mag, &lo, &hi);
	if (hi < lo)
	{
		appendStringInfoString(out, "0x0");
		return;
	}
	top_bit = hi * XSUM_LIMB_BITS + 31;
	while (!xsum_bit(mag, top_bit))
		top_bit--;
	low_bit = lo * XSUM_LIMB_BITS;
	while (!xsum_bit(mag, low_bit))
		low_bit++;
	d_hi = xsum_digit_of_bit(top_bit);
	d_lo = xsum_digit_of_bit(low_bit);

	if (negative)
		appendStringInfoChar(out, '-');
	appendStringInfoString(out, "0x");
	for (d = Max(d_hi, 0); d >= 0; d--)
		appendStringInfoChar(out, digits[xsum_digit(mag, d)]);
	if (d_lo < 0)
	{
		appendStringInfoChar(out, '.');
		for (d = -1; d >= d_lo; d--)
			appendStringInfoChar(out, digits[xsum_digit(mag, d)]);
	}
}

/*
 * Parse the form metrics_xsum_to_hex() writes (leading zeros allowed).
 * Returns false if the text is not of that form or the value is not a
 * multiple of 2^-1074 within the accumulator's range.
 */
bool
metrics_xsum_from_hex(MetricsXsum *xs, const char *text, int len)
{
	uint32 mag[METRICS_XSUM_LIMBS];
	bool negative = false;
	const char *p = text;
	const char *end = text + len;
	const char *point;
	int nint;
	int d;
	int lo = METRICS_XSUM_LIMBS;
	int hi = -1;
	int i;

	memset(mag, 0, sizeof(mag));
	if (p < end && *p == '-')
	{
		negative = true;
		p++;
	}
	if (end - p < 3 || p[0] != '0' || (p[1] != 'x' && p[1] != 'X'))
		return false;
	p += 2;
	point = memchr(p, '.', end - p);
	nint = (point ? point : end) - p;
	if (nint == 0 || (point && point + 1 == end))
		return false;

	for (d = nint - 1; p < end; p++)
	{
		int v;
		int j;

		if (*p == '.')
		{
			if (p != point)
				return false;
			continue;
		}
		if (*p >= '0' && *p <= '9')
			v = *p - '0';
		else if (*p >= 'a' && *p <= 'f')
			v = *p - 'a' + 10;
		else if (*p >= 'A' && *p <= 'F')
			v = *p - 'A' + 10;
		else
			return false;
		for (j = 0; j < 4; j++)
		{
			int bit = XSUM_UNIT_EXP + 4 * d + j;

			if (!((v >> j) & 1))
				continue;
			if (bit < 0 || bit >= (METRICS_XSUM_LIMBS - 1) * XSUM_LIMB_BITS)
				return false;
			mag[bit / XSUM_LIMB_BITS] |= (uint32) 1 << (bit % XSUM_LIMB_BITS);
		}
		d--;
	}
	for (i = 0; i < METRICS_XSUM_LIMBS; i++)
	{
		if (mag[i] != 0)
		{
			if (i < lo)
				lo = i;
			hi = i;
		}
	}
	if (hi < 0)
		negative = false;
	return metrics_xsum_set_magnitude(xs, negative, mag, lo, hi);
}
