/*-------------------------------------------------------------------------
 *
 * tune.c
 *		Threshold tuning: the objectives, the sweep, and its aggregates.
 *
 * A threshold t accepts a decision when score >= t.  Given the distinct
 * scores with the number of true and false labels at each, one sweep from
 * the highest score down accumulates true and false positives, so every
 * candidate threshold (every distinct score) is evaluated in O(1) after an
 * O(n log n) sort:
 *
 *	precision	the lowest threshold whose precision, taken at the Wilson
 *				lower confidence bound rather than the raw ratio, reaches
 *				the target: the most recall the target allows;
 *	f_beta		the threshold of highest F-beta;
 *	youden		the threshold of highest Youden's J (TPR - FPR).
 *
 * Ties go to the highest threshold.  learning.optimal_threshold() runs the
 * sweep over raw (score, label) rows.  The tuning job runs it over a key's
 * histogram instead (learning._tune_histogram()): the exact figures at the
 * lowest score of every bin, then, in the few bins whose bound could beat
 * the best of those, the raw rows.  Both apply the same objective values and
 * tie rules, so they find the same threshold.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/learning/tune.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "funcapi.h"
#include "libpq/pqformat.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/memutils.h"

#include "learning/learning.h"

PG_FUNCTION_INFO_V1(learning_optimal_threshold_transfn);
PG_FUNCTION_INFO_V1(learning_optimal_threshold_finalfn);
PG_FUNCTION_INFO_V1(learning_optimal_threshold_combinefn);
PG_FUNCTION_INFO_V1(learning_optimal_threshold_serialfn);
PG_FUNCTION_INFO_V1(learning_optimal_threshold_deserialfn);
PG_FUNCTION_INFO_V1(learning_check_objective);
PG_FUNCTION_INFO_V1(learning_tune_histogram);

/* Confidence of the four-argument learning.optimal_threshold(). */
#define LEARNING_DEFAULT_CONFIDENCE 0.95

/*
 * Aggregate state: the rows as (score, label) pairs.  The objective is
 * fixed by the first row and must not change.
 */
typedef struct LearningRow
{
	double score;
	bool label;
} LearningRow;

typedef struct LearningTuneState
{
	bool configured;
	LearningObjective objective;
	double param;
	double confidence;
	int64 nrows;
	int64 capacity;
	LearningRow *rows;
} LearningTuneState;

/*
 * Objective named by a string; an unknown name is an error.
 */
LearningObjective
learning_parse_objective(const char *name)
{
	if (strcmp(name, "precision") == 0)
		return LEARNING_PRECISION;
	if (strcmp(name, "f_beta") == 0)
		return LEARNING_F_BETA;
	if (strcmp(name, "youden") == 0)
		return LEARNING_YOUDEN;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unrecognized threshold objective \"%s\"", name),
			 errhint("The objectives are precision, f_beta and youden.")));
	return LEARNING_PRECISION; /* keep the compiler quiet */
}

/*
 * Check the parameter of an objective and return the value to use: the
 * target precision, strictly between 0 and 1; beta, positive, 1 when NULL;
 * nothing for youden (returned as NaN, stored as NULL).
 */
double
learning_check_target(LearningObjective objective, bool isnull, double target)
{
	switch (objective)
	{
		case LEARNING_PRECISION:
			if (isnull)
				ereport(
					ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("objective \"precision\" needs a target"),
					 errhint(
						 "Give the precision to reach, between 0 and 1, such as 0.9.")));
			if (!(target > 0.0 && target < 1.0))
				ereport(
					ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg(
						 "target precision must be between 0 and 1 exclusive, not %g",
						 target)));
			return target;
		case LEARNING_F_BETA:
			if (isnull)
				return 1.0;
			if (!(target > 0.0) || isinf(target))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("beta must be a positive number, not %g",
								target)));
			return target;
		case LEARNING_YOUDEN:
			return get_float8_nan();
	}
	return target;
}

/*
 * Quantile of the standard normal distribution: Acklam's rational
 * approximation refined by one Halley step on erfc, which brings it to
 * double precision.  p must be in (0, 1).
 */
double
learning_normal_quantile(double p)
{
	static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
							   -2.759285104469687e+02, 1.383577518672690e+02,
							   -3.066479806614716e+01, 2.506628277459239e+00};
	static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
							   -1.556989798598866e+02, 6.680131188771972e+01,
							   -1.328068155288572e+01};
	static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
							   -2.400758277161838e+00, -2.549732539343734e+00,
							   4.374664141464968e+00,  2.938163982698783e+00};
	static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
							   2.445134137142996e+00, 3.754408661907416e+00};
	const double low = 0.02425;
	double x;
	double q;
	double r;
	double e;
	double u;

	if (p < low)
	{
		q = sqrt(-2.0 * log(p));
		x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q +
			 c[5]) /
			((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
	}
	else if (p <= 1.0 - low)
	{
		q = p - 0.5;
		r = q * q;
		x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r +
			 a[5]) *
			q /
			(((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r +
			 1.0);
	}
	else
	{
		q = sqrt(-2.0 * log(1.0 - p));
		x = -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q +
			  c[5]) /
			((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1.0);
	}
	e = 0.5 * erfc(-x / M_SQRT2) - p;
	u = e * sqrt(2.0 * M_PI) * exp(x * x / 2.0);
	return x - u / (1.0 + x * u / 2.0);
}

/*
 * Wilson score interval lower bound of a proportion successes / n at the
 * normal quantile z; 0 when n is 0.
 */
double
learning_wilson_lower(double successes, double n, double z)
{
	double p;
	double z2;

	if (n <= 0)
		return 0.0;
	p = successes / n;
	z2 = z * z;
	return (p + z2 / (2.0 * n) -
			z * sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n))) /
		   (1.0 + z2 / n);
}

static int
learning_point_cmp_desc(const void *a, const void *b)
{
	double x = ((const LearningPoint *) a)->score;
	double y = ((const LearningPoint *) b)->score;

	return (x < y) ? 1 : ((x > y) ? -1 : 0);
}

static int
learning_row_cmp_desc(const void *a, const void *b)
{
	double x = ((const LearningRow *) a)->score;
	double y = ((const LearningRow *) b)->score;

	return (x < y) ? 1 : ((x > y) ? -1 : 0);
}

/*
 * Sweep the points (sorted here, highest score first; equal scores merged)
 * and fill result.  The points array is reordered in place.
 */
void
learning_tune_points(LearningPoint *points, int64 npoints,
					 LearningObjective objective, double param,
					 double confidence, LearningTuning *result)
{
	int64 i;
	int64 total_pos = 0;
	int64 total_neg = 0;
	int64 tp = 0;
	int64 fp = 0;
	double best = -INFINITY;
	double z = 0;
	double b2 = param * param;

	memset(result, 0, sizeof(*result));
	if (npoints == 0)
		return;

	qsort(points, npoints, sizeof(LearningPoint), learning_point_cmp_desc);
	for (i = 0; i < npoints; i++)
	{
		total_pos += points[i].positives;
		total_neg += points[i].negatives;
	}
	result->support = total_pos + total_neg;
	result->positives = total_pos;
	result->negatives = total_neg;
	if (objective == LEARNING_PRECISION)
		z = learning_normal_quantile(confidence);
	if (total_pos == 0 || (objective == LEARNING_YOUDEN && total_neg == 0))
		return;

	for (i = 0; i < npoints; i++)
	{
		double value;
		bool take = false;

		CHECK_FOR_INTERRUPTS();
		tp += points[i].positives;
		fp += points[i].negatives;
		/* equal scores are one threshold */
		if (i + 1 < npoints && points[i + 1].score == points[i].score)
			continue;
		if (tp + fp == 0)
			continue;

		switch (objective)
		{
			case LEARNING_PRECISION:
				value =
					learning_wilson_lower((double) tp, (double) (tp + fp), z);
				take = (value >= param); /* keep going down: lowest wins */
				break;
			case LEARNING_F_BETA:
				value = ((1.0 + b2) * tp) /
						((1.0 + b2) * tp + b2 * (total_pos - tp) + fp);
				take = (value > best);
				break;
			case LEARNING_YOUDEN:
				value = (double) tp / total_pos - (double) fp / total_neg;
				take = (value > best);
				break;
			default:
				value = 0;
		}
		if (take)
		{
			best = value;
			result->found = true;
			result->threshold = points[i].score;
			result->precision = (double) tp / (tp + fp);
			result->recall = (double) tp / total_pos;
			result->value = value;
		}
	}
}

/* ---- aggregate state ---------------------------------------------------- */

static LearningTuneState *
learning_state_new(MemoryContext aggcontext)
{
	LearningTuneState *state;

	state = MemoryContextAllocZero(aggcontext, sizeof(LearningTuneState));
	return state;
}

/*
 * Fix the objective from the first row, and check that later rows keep it.
 */
static void
learning_state_configure(LearningTuneState *state, FunctionCallInfo fcinfo,
						 int objarg, int paramarg, int confarg)
{
	LearningObjective objective;
	double param;
	double confidence = LEARNING_DEFAULT_CONFIDENCE;
	char *name;

	if (PG_ARGISNULL(objarg))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("threshold objective must not be null"),
				 errhint("The objectives are precision, f_beta and youden.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(objarg));
	objective = learning_parse_objective(name);
	pfree(name);
	param = learning_check_target(
		objective, PG_ARGISNULL(paramarg),
		PG_ARGISNULL(paramarg) ? 0 : PG_GETARG_FLOAT8(paramarg));
	if (confarg >= 0 && confarg < PG_NARGS())
	{
		if (PG_ARGISNULL(confarg))
			confidence = LEARNING_DEFAULT_CONFIDENCE;
		else
		{
			confidence = PG_GETARG_FLOAT8(confarg);
			if (!(confidence > 0.0 && confidence < 1.0))
				ereport(
					ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg(
						 "confidence must be between 0 and 1 exclusive, not %g",
						 confidence)));
		}
	}

	if (!state->configured)
	{
		state->configured = true;
		state->objective = objective;
		state->param = param;
		state->confidence = confidence;
	}
	else if (state->objective != objective ||
			 (objective != LEARNING_YOUDEN && state->param != param) ||
			 state->confidence != confidence)
		ereport(
			ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg(
				 "threshold objective, target and confidence must be the same for every row")));
}

static void
learning_state_grow(LearningTuneState *state, MemoryContext aggcontext,
					Size elemsize, void **array)
{
	int64 newcap;

	if (state->nrows < state->capacity)
		return;
	newcap = state->capacity == 0 ? 1024 : state->capacity * 2;
	if (*array == NULL)
		*array = MemoryContextAllocHuge(aggcontext, newcap * elemsize);
	else
		*array = repalloc_huge(*array, newcap * elemsize);
	state->capacity = newcap;
}

/*
 * learning.optimal_threshold(score, label, objective, param [, confidence])
 * transition: keep the row unless its score or label is NULL.
 */
Datum
learning_optimal_threshold_transfn(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext;
	LearningTuneState *state;
	double score;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		elog(
			ERROR,
			"learning_optimal_threshold_transfn called in non-aggregate context");

	state = PG_ARGISNULL(0) ? learning_state_new(aggcontext)
							: (LearningTuneState *) PG_GETARG_POINTER(0);
	learning_state_configure(state, fcinfo, 3, 4, 5);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_POINTER(state);

	score = PG_GETARG_FLOAT8(1);
	if (isnan(score))
		ereport(ERROR, (errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
						errmsg("score must not be NaN")));

	learning_state_grow(state, aggcontext, sizeof(LearningRow),
						(void **) &state->rows);
	state->rows[state->nrows].score = score;
	state->rows[state->nrows].label = PG_GETARG_BOOL(2);
	state->nrows++;
	PG_RETURN_POINTER(state);
}

Datum
learning_optimal_threshold_finalfn(PG_FUNCTION_ARGS)
{
	LearningTuneState *state;
	LearningPoint *points;
	LearningTuning result;
	int64 npoints = 0;
	int64 i;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	state = (LearningTuneState *) PG_GETARG_POINTER(0);
	if (!state->configured || state->nrows == 0)
		PG_RETURN_NULL();

	/* Merge equal scores into points, then sweep. */
	qsort(state->rows, state->nrows, sizeof(LearningRow),
		  learning_row_cmp_desc);
	points =
		palloc_extended(state->nrows * sizeof(LearningPoint), MCXT_ALLOC_HUGE);
	for (i = 0; i < state->nrows; i++)
	{
		if (npoints == 0 || points[npoints - 1].score != state->rows[i].score)
		{
			points[npoints].score = state->rows[i].score;
			points[npoints].positives = 0;
			points[npoints].negatives = 0;
			npoints++;
		}
		if (state->rows[i].label)
			points[npoints - 1].positives++;
		else
			points[npoints - 1].negatives++;
	}
	learning_tune_points(points, npoints, state->objective, state->param,
						 state->confidence, &result);
	pfree(points);
	if (!result.found)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(result.threshold);
}

Datum
learning_optimal_threshold_combinefn(PG_FUNCTION_ARGS)
{
	MemoryContext aggcontext;
	LearningTuneState *a;
	LearningTuneState *b;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		elog(
			ERROR,
			"learning_optimal_threshold_combinefn called in non-aggregate context");
	if (PG_ARGISNULL(1))
		PG_RETURN_POINTER(PG_ARGISNULL(0) ? NULL : PG_GETARG_POINTER(0));
	b = (LearningTuneState *) PG_GETARG_POINTER(1);
	if (PG_ARGISNULL(0))
	{
		a = learning_state_new(aggcontext);
		a->configured = b->configured;
		a->objective = b->objective;
		a->param = b->param;
		a->confidence = b->confidence;
	}
	else
		a = (LearningTuneState *) PG_GETARG_POINTER(0);

	if (b->configured && a->configured &&
		(a->objective != b->objective || a->confidence != b->confidence ||
		 (a->objective != LEARNING_YOUDEN && a->param != b->param)))
		ereport(
			ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg(
				 "threshold objective, target and confidence must be the same for every row")));
	if (b->configured && !a->configured)
	{
		a->configured = true;
		a->objective = b->objective;
		a->param = b->param;
		a->confidence = b->confidence;
	}
	if (b->nrows > 0)
	{
		int64 need = a->nrows + b->nrows;

		if (need > a->capacity)
		{
			if (a->rows == NULL)
				a->rows = MemoryContextAllocHuge(aggcontext,
												 need * sizeof(LearningRow));
			else
				a->rows = repalloc_huge(a->rows, need * sizeof(LearningRow));
			a->capacity = need;
		}
		memcpy(a->rows + a->nrows, b->rows, b->nrows * sizeof(LearningRow));
		a->nrows = need;
	}
	PG_RETURN_POINTER(a);
}

Datum
learning_optimal_threshold_serialfn(PG_FUNCTION_ARGS)
{
	LearningTuneState *state = (LearningTuneState *) PG_GETARG_POINTER(0);
	StringInfoData buf;
	int64 i;

	pq_begintypsend(&buf);
	pq_sendbyte(&buf, state->configured ? 1 : 0);
	pq_sendint32(&buf, (int32) state->objective);
	pq_sendfloat8(&buf, state->param);
	pq_sendfloat8(&buf, state->confidence);
	pq_sendint64(&buf, state->nrows);
	for (i = 0; i < state->nrows; i++)
	{
		pq_sendfloat8(&buf, state->rows[i].score);
		pq_sendbyte(&buf, state->rows[i].label ? 1 : 0);
	}
	PG_RETURN_BYTEA_P(pq_endtypsend(&buf));
}

Datum
learning_optimal_threshold_deserialfn(PG_FUNCTION_ARGS)
{
	bytea *data = PG_GETARG_BYTEA_PP(0);
	MemoryContext aggcontext;
	LearningTuneState *state;
	StringInfoData buf;
	int64 i;

	if (!AggCheckCallContext(fcinfo, &aggcontext))
		elog(
			ERROR,
			"learning_optimal_threshold_deserialfn called in non-aggregate context");
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, VARDATA_ANY(data), VARSIZE_ANY_EXHDR(data));
	state = learning_state_new(aggcontext);
	state->configured = pq_getmsgbyte(&buf) != 0;
	state->objective = (LearningObjective) pq_getmsgint(&buf, 4);
	state->param = pq_getmsgfloat8(&buf);
	state->confidence = pq_getmsgfloat8(&buf);
	state->nrows = pq_getmsgint64(&buf);
	state->capacity = state->nrows;
	if (state->nrows > 0)
		state->rows = MemoryContextAllocHuge(
			aggcontext, state->nrows * sizeof(LearningRow));
	for (i = 0; i < state->nrows; i++)
	{
		state->rows[i].score = pq_getmsgfloat8(&buf);
		state->rows[i].label = pq_getmsgbyte(&buf) != 0;
	}
	pq_getmsgend(&buf);
	pfree(buf.data);
	PG_RETURN_POINTER(state);
}

/*
 * learning._check_objective(objective, target) raises the error a bad
 * objective or target deserves, and returns the target to store.
 */
Datum
learning_check_objective(PG_FUNCTION_ARGS)
{
	LearningObjective objective;
	double target;
	char *name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("threshold objective must not be null"),
				 errhint("The objectives are precision, f_beta and youden.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	objective = learning_parse_objective(name);
	target = learning_check_target(objective, PG_ARGISNULL(1),
								   PG_ARGISNULL(1) ? 0 : PG_GETARG_FLOAT8(1));
	if (isnan(target))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(target);
}

/* ---- tuning from a histogram -------------------------------------------- */

/*
 * Value of the objective with tp true and fp false positives, out of
 * total_pos and total_neg; z is the normal quantile for precision.
 */
static double
objective_value(LearningObjective objective, double param, double z, double tp,
				double fp, double total_pos, double total_neg)
{
	double b2 = param * param;

	switch (objective)
	{
		case LEARNING_PRECISION:
			return learning_wilson_lower(tp, tp + fp, z);
		case LEARNING_F_BETA:
			return ((1.0 + b2) * tp) /
				   ((1.0 + b2) * tp + b2 * (total_pos - tp) + fp);
		case LEARNING_YOUDEN:
			return tp / total_pos - fp / total_neg;
	}
	return 0;
}

/*
 * The best threshold found so far, with the rules of learning_tune_points().
 */
typedef struct TuneBest
{
	bool found;
	double threshold;
	double value;
	int64 tp;
	int64 fp;
} TuneBest;

static void
tune_consider(TuneBest *best, LearningObjective objective, double param,
			  double z, double threshold, int64 tp, int64 fp, int64 total_pos,
			  int64 total_neg)
{
	double value;
	bool take;

	if (tp + fp == 0)
		return;
	value = objective_value(objective, param, z, (double) tp, (double) fp,
							(double) total_pos, (double) total_neg);
	if (objective == LEARNING_PRECISION)
		take = value >= param && (!best->found || threshold < best->threshold);
	else
		take = !best->found || value > best->value ||
			   (value == best->value && threshold > best->threshold);
	if (take)
	{
		best->found = true;
		best->threshold = threshold;
		best->value = value;
		best->tp = tp;
		best->fp = fp;
	}
}

/*
 * Sweep the raw feedback with scores in [low, high), highest first, starting
 * from the true and false positives above high, and consider every distinct
 * score as a threshold.
 */
static void
tune_sweep_range(SPIPlanPtr plan, Datum key, double low, double high, int64 tp,
				 int64 fp, TuneBest *best, LearningObjective objective,
				 double param, double z, int64 total_pos, int64 total_neg)
{
	Datum args[3];
	uint64 i;
	int rc;

	args[0] = key;
	args[1] = Float8GetDatum(low);
	args[2] = Float8GetDatum(high);
	rc = SPI_execute_plan(plan, args, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "read the feedback of score bins");
	for (i = 0; i < SPI_processed; i++)
	{
		bool isnull;
		HeapTuple row = SPI_tuptable->vals[i];
		double score = DatumGetFloat8(
			SPI_getbinval(row, SPI_tuptable->tupdesc, 1, &isnull));

		if (DatumGetBool(
				SPI_getbinval(row, SPI_tuptable->tupdesc, 2, &isnull)))
			tp++;
		else
			fp++;
		if (i + 1 < SPI_processed &&
			DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[i + 1],
										 SPI_tuptable->tupdesc, 1, &isnull)) ==
				score)
			continue;
		tune_consider(best, objective, param, z, score, tp, fp, total_pos,
					  total_neg);
	}
	SPI_freetuptable(SPI_tuptable);
}

/* Candidate bins closer than this are read in one range. */
#define TUNE_RANGE_GAP 20

/*
 * learning._tune_histogram(key, objective, target, confidence) tunes a key
 * from its histogram and returns a learning.tuning row.
 *
 * The histogram gives the exact figures at the lowest score of every bin.
 * A bin can hold a better threshold only if the objective's bound over it
 * (all its correct rows counted, none of its wrong ones) beats the best
 * found so far; the raw rows of those bins alone are read from
 * learning.feedback (neighbouring ones in one range scan) and swept.  The
 * result is the one learning.optimal_threshold() gives over the raw rows,
 * at the cost of reading one histogram row and a few bins of feedback.
 */
Datum
learning_tune_histogram(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr rows_plan = NULL;
	Datum key = PG_GETARG_DATUM(0);
	LearningObjective objective;
	double param;
	double confidence;
	double z = 0;
	TupleDesc tupdesc;
	Datum values[7];
	bool nulls[7] = {false, false, false, false, false, false, false};
	int64 *positives;
	int64 *negatives;
	double *min_scores;
	int64 *tp_above;
	int64 *fp_above;
	bool *candidate;
	int64 total_pos = 0;
	int64 total_neg = 0;
	TuneBest best;
	TuneBest inside;
	int k;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	tupdesc = BlessTupleDesc(tupdesc);
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("key and objective must not be null")));
	objective =
		learning_parse_objective(text_to_cstring(PG_GETARG_TEXT_PP(1)));
	param = learning_check_target(objective, PG_ARGISNULL(2),
								  PG_ARGISNULL(2) ? 0 : PG_GETARG_FLOAT8(2));
	confidence =
		PG_ARGISNULL(3) ? LEARNING_DEFAULT_CONFIDENCE : PG_GETARG_FLOAT8(3);
	if (objective == LEARNING_PRECISION)
		z = learning_normal_quantile(confidence);

	positives = palloc((LEARNING_BINS + 1) * sizeof(int64));
	negatives = palloc((LEARNING_BINS + 1) * sizeof(int64));
	min_scores = palloc((LEARNING_BINS + 1) * sizeof(double));
	tp_above = palloc((LEARNING_BINS + 1) * sizeof(int64));
	fp_above = palloc((LEARNING_BINS + 1) * sizeof(int64));
	candidate = palloc0((LEARNING_BINS + 1) * sizeof(bool));

	opsdata_spi_connect(0);
	if (rows_plan == NULL)
	{
		Oid types[3] = {TEXTOID, FLOAT8OID, FLOAT8OID};

		rows_plan = learning_prepare(
			"SELECT f.score, f.label FROM learning.feedback f "
			" WHERE f.key = $1 AND f.score >= $2 AND f.score < $3 AND f.label IS NOT NULL "
			" ORDER BY f.score DESC",
			3, types);
	}
	learning_histogram_read(key, false, positives, negatives, min_scores);
	for (k = LEARNING_BINS; k >= 0; k--)
	{
		tp_above[k] = total_pos;
		fp_above[k] = total_neg;
		total_pos += positives[k];
		total_neg += negatives[k];
	}

	memset(&best, 0, sizeof(best));
	if (total_pos > 0 && !(objective == LEARNING_YOUDEN && total_neg == 0))
	{
		int ncandidates = 0;
		int top;

		/* Exact figures at the lowest score of each bin. */
		for (k = LEARNING_BINS; k >= 0; k--)
		{
			if (positives[k] + negatives[k] > 0)
				tune_consider(&best, objective, param, z, min_scores[k],
							  tp_above[k] + positives[k],
							  fp_above[k] + negatives[k], total_pos,
							  total_neg);
		}

		/* Bins that may hold a better threshold inside. */
		for (k = LEARNING_BINS; k >= 0; k--)
		{
			double bound;

			if (positives[k] + negatives[k] <= 1)
				continue;
			if (objective == LEARNING_PRECISION && best.found &&
				min_scores[k] >= best.threshold)
				continue;
			bound = objective_value(
				objective, param, z, (double) (tp_above[k] + positives[k]),
				(double) fp_above[k], (double) total_pos, (double) total_neg);
			if (objective == LEARNING_PRECISION
					? bound >= param
					: (!best.found || bound >= best.value))
			{
				candidate[k] = true;
				ncandidates++;
			}
		}

		/* Read them, neighbours together, and sweep their raw rows. */
		memset(&inside, 0, sizeof(inside));
		for (top = LEARNING_BINS; top >= 0 && ncandidates > 0; top--)
		{
			int bottom;
			int gap = 0;

			CHECK_FOR_INTERRUPTS();
			if (!candidate[top])
				continue;
			for (bottom = top, k = top - 1; k >= 0 && gap < TUNE_RANGE_GAP;
				 k--)
			{
				if (candidate[k])
				{
					bottom = k;
					gap = 0;
				}
				else
					gap++;
			}
			tune_sweep_range(rows_plan, key, (double) bottom / LEARNING_BINS,
							 (double) (top + 1) / LEARNING_BINS, tp_above[top],
							 fp_above[top], &inside, objective, param, z,
							 total_pos, total_neg);
			for (k = top; k >= bottom; k--)
			{
				if (candidate[k])
					ncandidates--;
			}
			top = bottom;
		}
		if (inside.found)
			tune_consider(&best, objective, param, z, inside.threshold,
						  inside.tp, inside.fp, total_pos, total_neg);
	}
	SPI_finish();

	values[0] = Float8GetDatum(best.threshold);
	values[1] = Float8GetDatum(
		best.found ? (double) best.tp / (best.tp + best.fp) : 0);
	values[2] = Float8GetDatum(best.found ? (double) best.tp / total_pos : 0);
	values[3] = Float8GetDatum(best.value);
	nulls[0] = nulls[1] = nulls[2] = nulls[3] = !best.found;
	values[4] = Int64GetDatum(total_pos + total_neg);
	values[5] = Int64GetDatum(total_pos);
	values[6] = Int64GetDatum(total_neg);
	PG_RETURN_DATUM(
		HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
