/*-------------------------------------------------------------------------
 *
 * learning.h
 *		Declarations shared by the files of the learning area.
 *
 * The area keeps feedback, decision thresholds tuned from it, and the
 * active-learning candidates reviewers label.  tune.c holds the threshold
 * sweep, histogram.c the per-key score histograms, threshold.c the cached
 * per-request lookup, feedback.c and candidates.c the SQL API, shared.c the
 * shared state and the commit-time signals between backends.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/learning/learning.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef LEARNING_H
#define LEARNING_H

#include "executor/spi.h"

#include "core/opsdata.h"

/* Histogram bins per unit of score: bin k holds scores in [k/N, (k+1)/N). */
#define LEARNING_BINS 10000

/* Objectives a threshold is tuned towards. */
typedef enum LearningObjective
{
	/* lowest threshold whose precision lower bound meets a target */
	LEARNING_PRECISION,
	/* highest F-beta */
	LEARNING_F_BETA,
	/* highest true positive rate minus false positive rate */
	LEARNING_YOUDEN
} LearningObjective;

/* A distinct score with the counts of true and false labels at it. */
typedef struct LearningPoint
{
	double score;
	int64 positives;
	int64 negatives;
} LearningPoint;

/* What tuning found; found is false when no threshold meets the objective. */
typedef struct LearningTuning
{
	bool found;
	double threshold;
	double precision;
	double recall;
	double value;
	int64 support;
	int64 positives;
	int64 negatives;
} LearningTuning;

/* tune.c */
extern LearningObjective learning_parse_objective(const char *name);
extern double learning_check_target(LearningObjective objective, bool isnull,
									double target);
extern double learning_normal_quantile(double p);
extern double learning_wilson_lower(double successes, double n, double z);
extern void learning_tune_points(LearningPoint *points, int64 npoints,
								 LearningObjective objective, double param,
								 double confidence, LearningTuning *result);

/* histogram.c */
extern int learning_score_bin_of(double score);
extern bool learning_histogram_read(Datum key, bool lock, int64 *positives,
									int64 *negatives, double *min_scores);

/* shared.c: signals from committing transactions to other backends */
extern void learning_shmem_init(void);
extern uint64 learning_threshold_generation(void);
extern void learning_thresholds_touched(void);
extern bool learning_thresholds_touched_in_xact(void);
extern uint64 learning_candidates_generation(void);
extern bool learning_candidates_raised_since(uint64 generation,
											 double priority);
extern void learning_candidate_available(double priority);
extern void learning_candidate_locked(double priority);

/* threshold.c */
extern void learning_threshold_cache_reset(void);
extern double learning_threshold_value(text *key);
extern char *learning_setting(const char *name);

/* candidates.c */
extern int learning_claim_rescan_interval;
extern int learning_rescan_interval(void);
extern void learning_claim_cursor_reset(void);

/* spi helpers (feedback.c) */
extern SPIPlanPtr learning_prepare(const char *query, int nargs,
								   Oid *argtypes);
extern void learning_check_score(const char *what, double score);

#endif /* LEARNING_H */
