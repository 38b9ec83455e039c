/*-------------------------------------------------------------------------
 *
 * candidates.c
 *		Active-learning candidates: offer, claim, submit and release.
 *
 * The claim path is built so that an old snapshot (a long repeatable-read
 * transaction, a forgotten session) does not slow claimers down, which is
 * where the usual "FOR UPDATE SKIP LOCKED" queue collapses: while vacuum is
 * held back, every claim and every close leaves a dead entry at the head of
 * the index being scanned, and each claimer walks all of them.  Here:
 *
 *	- A claim only changes status, claimed_by and lease_until, which no index
 *	  covers, and learning.candidates keeps half of each page free
 *	  (fillfactor 50): the update is heap-only (HOT), adds no index entry and
 *	  leaves none dead.  Only closing a candidate takes it out of the queue
 *	  index (a partial index on closed_at IS NULL).
 *
 *	- Every backend remembers, per reviewer, where that reviewer's previous
 *	  claim stopped, as (priority, candidate_id), and the next claim scans
 *	  the queue index backwards from there: what lies above was handed out,
 *	  closed, leased, or labelled by that reviewer when the scan passed it.
 *	  Entries left dead by candidates that were closed since are therefore
 *	  walked once per backend and reviewer, not once per claim.  The scan
 *	  starts from the top again when the cursor is older than
 *	  pg_opsdata.learning_claim_rescan_interval, when the scan reaches the
 *	  bottom, or when another backend announced (shared.c) that a
 *	  candidate became available at or above the cursor: a new or
 *	  re-offered one, a released one, one labelled but still needing
 *	  labels, or one whose claim rolled back.  Expired leases above the
 *	  cursor are handed out at the next rescan.
 *
 *	- Each scan step is a generic plan with LIMIT 1 (a claim of n
 *	  candidates runs it n times), so nothing is planned per call.
 *
 * Exclusivity comes from the row lock: a claim locks the candidate with
 * FOR NO KEY UPDATE SKIP LOCKED and re-checks the lease on the latest row
 * version, so two claimers never lease the same candidate; submit locks it
 * too and refuses a label from a reviewer whose lease was taken over.
 *
 * The functions are SECURITY DEFINER with a fixed search_path: writers use
 * the queue without UPDATE rights on the table.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/learning/candidates.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "learning/learning.h"

PG_FUNCTION_INFO_V1(learning_priority);
PG_FUNCTION_INFO_V1(learning_offer);
PG_FUNCTION_INFO_V1(learning_offer_probability);
PG_FUNCTION_INFO_V1(learning_claim);
PG_FUNCTION_INFO_V1(learning_submit);
PG_FUNCTION_INFO_V1(learning_release);

/* Most candidates one claim() hands out. */
#define CLAIM_MAX 1000
/* Cursors a backend keeps before it forgets them all. */
#define CLAIM_CURSORS_MAX 1000
#define CLAIM_KEYLEN	  256

typedef enum LearningStrategy
{
	STRATEGY_LEAST_CONFIDENCE,
	STRATEGY_MARGIN,
	STRATEGY_ENTROPY,
	STRATEGY_THRESHOLD
} LearningStrategy;

/* Where a reviewer's previous claim (of any key, or of one) stopped. */
typedef struct ClaimCursor
{
	/* reviewer, then \x01 and the key, or \x02 for any key */
	char key[CLAIM_KEYLEN];
	bool valid;
	Oid relid;
	double priority;
	int64 candidate_id;
	TimestampTz scanned_at; /* when the scan last started from the top */
	uint64 generation;		/* candidate events already taken into account */
} ClaimCursor;

static HTAB *claim_cursors = NULL;
static MemoryContext claim_cursor_cxt = NULL;

static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr claim_key_plan = NULL;
static SPIPlanPtr submit_read_plan = NULL;
static SPIPlanPtr submit_write_plan = NULL;
static SPIPlanPtr release_plan = NULL;
static SPIPlanPtr exists_plan = NULL;
static SPIPlanPtr strategy_plan = NULL;
static SPIPlanPtr offer_plan = NULL;
static SPIPlanPtr offer_existing_plan = NULL;

/*
 * Forget every cursor: the next claim of this backend scans from the top.
 */
void
learning_claim_cursor_reset(void)
{
	if (claim_cursor_cxt != NULL)
		MemoryContextReset(claim_cursor_cxt);
	claim_cursors = NULL;
}

/*
 * The cursor of a reviewer's claims (of one key, or of any).  Cursors are
 * per reviewer because a claim also passes the candidates that reviewer
 * labelled already, which another reviewer served by the same backend (a
 * connection pool) may still take.  NULL when the names are too long to
 * keep: such claims always scan from the top.
 */
static ClaimCursor *
claim_cursor_for(text *reviewer, text *key)
{
	char buf[CLAIM_KEYLEN];
	Size rlen = VARSIZE_ANY_EXHDR(reviewer);
	Size klen = key ? VARSIZE_ANY_EXHDR(key) : 0;
	ClaimCursor *cursor;
	bool found;

	if (rlen + klen + 2 >= CLAIM_KEYLEN)
		return NULL;
	memcpy(buf, VARDATA_ANY(reviewer), rlen);
	buf[rlen] = key ? '\x01' : '\x02';
	if (key)
		memcpy(buf + rlen + 1, VARDATA_ANY(key), klen);
	buf[rlen + 1 + klen] = '\0';

	if (claim_cursors != NULL &&
		hash_get_num_entries(claim_cursors) >= CLAIM_CURSORS_MAX)
		learning_claim_cursor_reset();
	if (claim_cursors == NULL)
	{
		HASHCTL ctl;

		if (claim_cursor_cxt == NULL)
			claim_cursor_cxt = AllocSetContextCreate(
				TopMemoryContext, "pg_opsdata claim cursors",
				ALLOCSET_SMALL_SIZES);
		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = CLAIM_KEYLEN;
		ctl.entrysize = sizeof(ClaimCursor);
		ctl.hcxt = claim_cursor_cxt;
		claim_cursors = hash_create("pg_opsdata claim cursors", 16, &ctl,
									HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	cursor = hash_search(claim_cursors, buf, HASH_ENTER, &found);
	if (!found)
		cursor->valid = false;
	return cursor;
}

static Oid
candidates_relid(void)
{
	Oid nsp = get_namespace_oid("learning", false);

	return get_relname_relid("candidates", nsp);
}

/* ---- priorities --------------------------------------------------------- */

static LearningStrategy
parse_strategy(const char *name)
{
	if (strcmp(name, "least_confidence") == 0)
		return STRATEGY_LEAST_CONFIDENCE;
	if (strcmp(name, "margin") == 0)
		return STRATEGY_MARGIN;
	if (strcmp(name, "entropy") == 0)
		return STRATEGY_ENTROPY;
	if (strcmp(name, "threshold") == 0)
		return STRATEGY_THRESHOLD;
	ereport(
		ERROR,
		(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
		 errmsg("unrecognized candidate strategy \"%s\"", name),
		 errhint(
			 "The strategies are least_confidence, margin, entropy and threshold.")));
	return STRATEGY_LEAST_CONFIDENCE;
}

/*
 * Check a scores array (one probability, or one score per class, each in
 * [0, 1]) and return its elements.
 */
static double *
scores_of(ArrayType *array, int *n)
{
	Datum *elems;
	bool *nulls;
	double *scores;
	int i;

	if (ARR_NDIM(array) > 1)
		ereport(ERROR, (errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
						errmsg("scores must be a one-dimensional array")));
	deconstruct_array(array, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, n);
	if (*n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("scores must not be empty"),
				 errhint("Give one probability, or one score per class.")));
	scores = palloc(*n * sizeof(double));
	for (i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("scores must not contain nulls")));
		scores[i] = DatumGetFloat8(elems[i]);
		learning_check_score("each score", scores[i]);
	}
	return scores;
}

/* The model's score for its decision: the probability, or the top score. */
static double
decision_score(const double *scores, int n)
{
	double best = scores[0];
	int i;

	for (i = 1; i < n; i++)
		best = Max(best, scores[i]);
	return best;
}

/*
 * Priority in [0, 1] of scores under a strategy.  One score p stands for
 * the two classes (p, 1 - p).  threshold is used by STRATEGY_THRESHOLD.
 */
static double
compute_priority(LearningStrategy strategy, const double *scores, int n,
				 double threshold)
{
	double first = 0;
	double second = 0;
	double sum = 0;
	double h = 0;
	double pair[2];
	double decided = decision_score(scores, n);
	int k = n;
	int i;
	double result = 0;

	if (n == 1)
	{
		pair[0] = scores[0];
		pair[1] = 1.0 - scores[0];
		scores = pair;
		k = 2;
	}
	for (i = 0; i < k; i++)
	{
		sum += scores[i];
		if (scores[i] > first)
		{
			second = first;
			first = scores[i];
		}
		else if (scores[i] > second)
			second = scores[i];
	}

	switch (strategy)
	{
		case STRATEGY_LEAST_CONFIDENCE:
			/* 1 - top score, scaled so a uniform distribution gives 1 */
			result = (1.0 - first) / (1.0 - 1.0 / k);
			break;
		case STRATEGY_MARGIN:
			result = 1.0 - (first - second);
			break;
		case STRATEGY_ENTROPY:
			if (sum <= 0)
				result = 1.0;
			else
			{
				for (i = 0; i < k; i++)
				{
					double q = scores[i] / sum;

					if (q > 0)
						h -= q * log(q);
				}
				result = h / log((double) k);
			}
			break;
		case STRATEGY_THRESHOLD:
			result = 1.0 - fabs(decided - threshold);
			break;
	}
	if (!(result >= 0.0))
		result = 0.0;
	if (result > 1.0)
		result = 1.0;
	return result;
}

/*
 * learning.priority(strategy, scores, threshold) computes a priority.
 */
Datum
learning_priority(PG_FUNCTION_ARGS)
{
	LearningStrategy strategy;
	double *scores;
	double threshold = 0.5;
	int n;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("candidate strategy must not be null")));
	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();
	strategy = parse_strategy(text_to_cstring(PG_GETARG_TEXT_PP(0)));
	scores = scores_of(PG_GETARG_ARRAYTYPE_P(1), &n);
	if (strategy == STRATEGY_THRESHOLD)
	{
		if (PG_ARGISNULL(2))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("strategy \"threshold\" needs a threshold")));
		threshold = PG_GETARG_FLOAT8(2);
		learning_check_score("threshold", threshold);
	}
	PG_RETURN_FLOAT8(compute_priority(strategy, scores, n, threshold));
}

/* ---- offer -------------------------------------------------------------- */

static Datum
offer(FunctionCallInfo fcinfo, ArrayType *array)
{
	text *key = PG_GETARG_TEXT_PP(0);
	Oid strategy_types[1] = {TEXTOID};
	Oid offer_types[6] = {TEXTOID,	 TEXTOID,		 FLOAT8OID,
						  FLOAT8OID, FLOAT8ARRAYOID, JSONBOID};
	Datum args[6];
	char nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	LearningStrategy strategy;
	double *scores;
	double priority;
	double threshold = 0;
	double score;
	int n;
	int rc;
	bool isnull;
	Datum id;

	scores = scores_of(array, &n);
	score = (n == 1) ? scores[0] : decision_score(scores, n);

	opsdata_spi_connect(0);
	if (strategy_plan == NULL)
		strategy_plan = learning_prepare(
			"SELECT s.strategy FROM learning.strategies s WHERE s.key = $1", 1,
			strategy_types);
	args[0] = PointerGetDatum(key);
	rc = SPI_execute_plan(strategy_plan, args, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "read learning.strategies");
	if (SPI_processed == 1)
		strategy = parse_strategy(TextDatumGetCString(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
	else
		strategy =
			parse_strategy(learning_setting("learning.default_strategy"));
	if (strategy == STRATEGY_THRESHOLD)
		threshold = learning_threshold_value(key);
	priority = compute_priority(strategy, scores, n, threshold);

	if (offer_plan == NULL)
		offer_plan = learning_prepare(
			"INSERT INTO learning.candidates AS c (key, item_id, priority, score, scores, payload) "
			"VALUES ($1, $2, $3, $4, $5, COALESCE($6, '{}'::pg_catalog.jsonb)) "
			"ON CONFLICT (key, item_id) DO UPDATE "
			"   SET priority = excluded.priority, score = excluded.score, scores = excluded.scores, "
			"       payload = excluded.payload "
			" WHERE c.closed_at IS NULL "
			"RETURNING c.candidate_id",
			6, offer_types);
	args[0] = PointerGetDatum(key);
	args[1] = PG_GETARG_DATUM(1);
	args[2] = Float8GetDatum(priority);
	args[3] = Float8GetDatum(score);
	{
		Datum *elems = palloc(n * sizeof(Datum));
		int i;

		for (i = 0; i < n; i++)
			elems[i] = Float8GetDatum(scores[i]);
		args[4] = PointerGetDatum(construct_array(
			elems, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}
	args[5] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	nulls[5] = PG_ARGISNULL(3) ? 'n' : ' ';
	rc = SPI_execute_plan(offer_plan, args, nulls, false, 0);
	if (rc != SPI_OK_INSERT_RETURNING)
		opsdata_spi_failed(rc, "write to learning.candidates");
	if (SPI_processed == 1)
	{
		id = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						   &isnull);
		learning_candidate_available(priority);
	}
	else
	{
		/* Already labelled and closed: nothing to do. */
		if (offer_existing_plan == NULL)
			offer_existing_plan = learning_prepare(
				"SELECT c.candidate_id FROM learning.candidates c WHERE c.key = $1 AND c.item_id = $2",
				2, offer_types);
		rc = SPI_execute_plan(offer_existing_plan, args, NULL, false, 1);
		if (rc != SPI_OK_SELECT)
			opsdata_spi_failed(rc, "read learning.candidates");
		if (SPI_processed != 1)
			ereport(
				ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg(
					 "could not offer item \"%s\" of key \"%s\": its candidate was removed concurrently",
					 TextDatumGetCString(args[1]),
					 TextDatumGetCString(args[0])),
				 errhint("Offer it again.")));
		id = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						   &isnull);
	}
	SPI_finish();
	PG_RETURN_DATUM(id);
}

static void
check_offer_args(FunctionCallInfo fcinfo, const char *scorename)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("candidate key must not be null")));
	if (PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("candidate item_id must not be null")));
	if (PG_ARGISNULL(2))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("candidate %s must not be null", scorename)));
}

/*
 * learning.offer(key, item_id, scores float8[], payload) returns the
 * candidate_id.
 */
Datum
learning_offer(PG_FUNCTION_ARGS)
{
	check_offer_args(fcinfo, "scores");
	return offer(fcinfo, PG_GETARG_ARRAYTYPE_P(2));
}

/*
 * learning.offer(key, item_id, probability float8, payload) returns the
 * candidate_id.
 */
Datum
learning_offer_probability(PG_FUNCTION_ARGS)
{
	Datum p;

	check_offer_args(fcinfo, "probability");
	p = PG_GETARG_DATUM(2);
	learning_check_score("probability", DatumGetFloat8(p));
	return offer(fcinfo, construct_array(&p, 1, FLOAT8OID, 8, FLOAT8PASSBYVAL,
										 TYPALIGN_DOUBLE));
}

/* ---- claim -------------------------------------------------------------- */

static void
prepare_claim_plans(void)
{
	Oid types[6] = {FLOAT8OID,		INT8OID,		TEXTOID,
					TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID};
	const char *head =
		"UPDATE learning.candidates c "
		"   SET status = 'claimed', claimed_by = $3, lease_until = $4 "
		"  FROM (SELECT q.candidate_id FROM learning.candidates q "
		"         WHERE q.closed_at IS NULL "
		"           AND (q.priority, q.candidate_id) < ($1, $2) "
		"           AND (q.lease_until IS NULL OR q.lease_until <= $5) "
		"           AND NOT (q.reviewers @> ARRAY[$3]) ";
	const char *tail =
		"         ORDER BY q.priority DESC, q.candidate_id DESC "
		"         LIMIT 1 "
		"         FOR NO KEY UPDATE SKIP LOCKED) s "
		" WHERE c.candidate_id = s.candidate_id "
		"RETURNING c.candidate_id, c.key, c.item_id, c.priority, c.score, c.scores, c.payload, "
		"          c.labels, c.lease_until";

	if (claim_plan == NULL)
		claim_plan = learning_prepare(psprintf("%s%s", head, tail), 5, types);
	if (claim_key_plan == NULL)
		claim_key_plan = learning_prepare(
			psprintf("%s AND q.key = $6 %s", head, tail), 6, types);
}

/*
 * learning.claim(n, reviewer, lease, key) leases up to n candidates to the
 * reviewer and returns them, highest priority first.
 */
Datum
learning_claim(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	text *key = PG_ARGISNULL(3) ? NULL : PG_GETARG_TEXT_PP(3);
	ClaimCursor *cursor;
	ClaimCursor local;
	Interval *lease;
	TimestampTz now;
	TimestampTz lease_until;
	uint64 generation;
	int rescan;
	Oid relid;
	Datum args[6];
	double from_priority;
	int64 from_id;
	bool from_top;
	bool reached_bottom = false;
	int32 n;
	int claimed = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("number of candidates to claim must not be null")));
	n = PG_GETARG_INT32(0);
	if (n < 0 || n > CLAIM_MAX)
		ereport(
			ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg(
				 "number of candidates to claim must be between 0 and %d, not %d",
				 CLAIM_MAX, n)));
	if (PG_ARGISNULL(1) || VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(1)) == 0)
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("reviewer must not be null or empty")));
	if (PG_ARGISNULL(2))
		lease = DatumGetIntervalP(DirectFunctionCall3(
			interval_in,
			CStringGetDatum(learning_setting("learning.default_lease")),
			ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
	else
		lease = PG_GETARG_INTERVAL_P(2);
	now = GetCurrentTimestamp();
	lease_until = DatumGetTimestampTz(
		DirectFunctionCall2(timestamptz_pl_interval, TimestampTzGetDatum(now),
							IntervalPGetDatum(lease)));
	if (lease_until <= now)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("lease must be a positive interval")));

	InitMaterializedSRF(fcinfo, 0);
	if (n == 0)
		return (Datum) 0;

	relid = candidates_relid();
	cursor = claim_cursor_for(PG_GETARG_TEXT_PP(1), key);
	if (cursor == NULL)
	{
		memset(&local, 0, sizeof(local));
		cursor = &local;
	}

	/* Start where the previous claim stopped, unless there is news. */
	generation = learning_candidates_generation();
	rescan = learning_rescan_interval();
	from_top =
		!cursor->valid || cursor->relid != relid || rescan == 0 ||
		TimestampDifferenceExceeds(cursor->scanned_at, now, rescan) ||
		learning_candidates_raised_since(cursor->generation, cursor->priority);
	if (from_top)
	{
		from_priority = get_float8_infinity();
		from_id = PG_INT64_MAX;
		cursor->scanned_at = now;
	}
	else
	{
		from_priority = cursor->priority;
		from_id = cursor->candidate_id;
	}

	/* The last scan found nothing to hand out, and nothing changed since. */
	if (!from_top && cursor->priority < 0)
		return (Datum) 0;

	opsdata_spi_connect(0);
	prepare_claim_plans();
	args[2] = PG_GETARG_DATUM(1);
	args[3] = TimestampTzGetDatum(lease_until);
	args[4] = TimestampTzGetDatum(now);
	args[5] = key ? PointerGetDatum(key) : (Datum) 0;
	while (claimed < n)
	{
		int rc;
		bool isnull;
		HeapTuple row;
		Datum values[9];
		bool nulls[9];
		int i;

		CHECK_FOR_INTERRUPTS();
		args[0] = Float8GetDatum(from_priority);
		args[1] = Int64GetDatum(from_id);
		rc = SPI_execute_plan(key ? claim_key_plan : claim_plan, args, NULL,
							  false, 0);
		if (rc != SPI_OK_UPDATE_RETURNING)
			opsdata_spi_failed(rc, "claim candidates");
		if (SPI_processed == 0)
		{
			if (from_top)
			{
				reached_bottom = true;
				break;
			}
			/* Reached the bottom from the cursor: look above it once. */
			from_top = true;
			from_priority = get_float8_infinity();
			from_id = PG_INT64_MAX;
			cursor->scanned_at = now;
			generation = learning_candidates_generation();
			continue;
		}
		row = SPI_tuptable->vals[0];
		for (i = 0; i < 9; i++)
			values[i] =
				SPI_getbinval(row, SPI_tuptable->tupdesc, i + 1, &nulls[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values,
							 nulls);
		from_priority = DatumGetFloat8(
			SPI_getbinval(row, SPI_tuptable->tupdesc, 4, &isnull));
		from_id = DatumGetInt64(values[0]);
		learning_candidate_locked(from_priority);
		claimed++;
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_finish();

	/*
	 * Remember where to go on from.  A scan that found the queue empty
	 * leaves the cursor at the bottom: the next claim finds nothing quickly
	 * until there is news or the interval passes.
	 */
	cursor->valid = true;
	cursor->relid = relid;
	cursor->priority = reached_bottom ? -1.0 : from_priority;
	cursor->candidate_id = reached_bottom ? 0 : from_id;
	cursor->generation = generation;
	return (Datum) 0;
}

/* ---- submit and release ------------------------------------------------- */

/*
 * learning.submit(candidate, reviewer, label, rating, metadata) records the
 * label as feedback and returns its feedback_id; the candidate is closed
 * once it has its key's required labels, else it goes back to the queue
 * for another reviewer.
 */
Datum
learning_submit(PG_FUNCTION_ARGS)
{
	Oid read_types[2] = {INT8OID, TEXTOID};
	Oid write_types[11] = {INT8OID, TEXTOID, TEXTOID, FLOAT8OID,
						   BOOLOID, INT2OID, TEXTOID, JSONBOID,
						   INT4OID, BOOLOID, BOOLOID};
	Datum args[11];
	char nulls[11] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};
	int64 candidate;
	bool label;
	HeapTuple row;
	TupleDesc desc;
	bool isnull;
	bool closed;
	bool labelled;
	Datum claimed_by;
	bool claimed_null;
	TimestampTz lease_until;
	bool lease_null;
	int32 labels;
	int32 positives;
	int32 required;
	double priority;
	bool closing;
	Datum id;
	int rc;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("candidate must not be null")));
	if (PG_ARGISNULL(1) || VARSIZE_ANY_EXHDR(PG_GETARG_TEXT_PP(1)) == 0)
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("reviewer must not be null or empty")));
	if (PG_ARGISNULL(2))
		ereport(
			ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("label must not be null"),
			 errhint(
				 "Release the candidate with learning.release() to skip it.")));
	candidate = PG_GETARG_INT64(0);
	label = PG_GETARG_BOOL(2);

	opsdata_spi_connect(0);
	if (submit_read_plan == NULL)
		submit_read_plan = learning_prepare(
			"SELECT c.key, c.item_id, c.score, c.priority, c.closed_at IS NOT NULL, c.claimed_by, "
			"       c.lease_until, c.labels, c.positives, $2 = ANY (c.reviewers), "
			"       (SELECT s.required_labels FROM learning.strategies s WHERE s.key = c.key) "
			"  FROM learning.candidates c WHERE c.candidate_id = $1 "
			"   FOR NO KEY UPDATE OF c",
			2, read_types);
	args[0] = Int64GetDatum(candidate);
	args[1] = PG_GETARG_DATUM(1);
	rc = SPI_execute_plan(submit_read_plan, args, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "read learning.candidates");
	if (SPI_processed == 0)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
						errmsg("candidate " INT64_FORMAT " does not exist",
							   candidate)));
	row = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	closed = DatumGetBool(SPI_getbinval(row, desc, 5, &isnull));
	claimed_by = SPI_getbinval(row, desc, 6, &claimed_null);
	lease_until =
		DatumGetTimestampTz(SPI_getbinval(row, desc, 7, &lease_null));
	labels = DatumGetInt32(SPI_getbinval(row, desc, 8, &isnull));
	positives = DatumGetInt32(SPI_getbinval(row, desc, 9, &isnull));
	labelled = DatumGetBool(SPI_getbinval(row, desc, 10, &isnull));
	required = DatumGetInt32(SPI_getbinval(row, desc, 11, &isnull));
	if (isnull)
		required = pg_strtoint32(
			learning_setting("learning.default_required_labels"));
	priority = DatumGetFloat8(SPI_getbinval(row, desc, 4, &isnull));

	if (closed)
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("candidate " INT64_FORMAT " is already closed",
							   candidate)));
	if (labelled)
		ereport(
			ERROR,
			(errcode(ERRCODE_UNIQUE_VIOLATION),
			 errmsg("reviewer \"%s\" already labelled candidate " INT64_FORMAT,
					text_to_cstring(PG_GETARG_TEXT_PP(1)), candidate),
			 errdetail(
				 "Each label of a candidate comes from a different reviewer.")));
	if (!claimed_null && !lease_null && lease_until > GetCurrentTimestamp() &&
		!DatumGetBool(DirectFunctionCall2Coll(texteq, C_COLLATION_OID,
											  claimed_by, PG_GETARG_DATUM(1))))
		ereport(
			ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("candidate " INT64_FORMAT " is leased to another reviewer",
					candidate),
			 errdetail("It is leased to \"%s\".",
					   TextDatumGetCString(claimed_by)),
			 errhint(
				 "Claim candidates with learning.claim(); a lease that expired may be handed to someone else.")));

	closing = labels + 1 >= required;
	positives += label ? 1 : 0;
	labels += 1;

	if (submit_write_plan == NULL)
		submit_write_plan = learning_prepare(
			"WITH f AS ("
			"  INSERT INTO learning.feedback (key, item_id, score, label, rating, given_by, source, metadata) "
			"  VALUES ($2, $3, $4, $5, $6, $7, 'review', "
			"          COALESCE($8, '{}'::pg_catalog.jsonb) || pg_catalog.jsonb_build_object('candidate_id', $1)) "
			"  RETURNING feedback_id) "
			"UPDATE learning.candidates c "
			"   SET labels = $9, positives = c.positives + CASE WHEN $5 THEN 1 ELSE 0 END, "
			"       reviewers = pg_catalog.array_append(c.reviewers, $7), "
			"       status = CASE WHEN $10 THEN 'closed' ELSE 'open' END, "
			"       closed_at = CASE WHEN $10 THEN pg_catalog.now() END, "
			"       label = $11, claimed_by = NULL, lease_until = NULL "
			" WHERE c.candidate_id = $1 "
			"RETURNING (SELECT f.feedback_id FROM f)",
			11, write_types);
	args[0] = Int64GetDatum(candidate);
	args[1] = SPI_getbinval(row, desc, 1, &isnull);
	args[2] = SPI_getbinval(row, desc, 2, &isnull);
	args[3] = SPI_getbinval(row, desc, 3, &isnull);
	args[4] = BoolGetDatum(label);
	args[5] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	nulls[5] = PG_ARGISNULL(3) ? 'n' : ' ';
	args[6] = PG_GETARG_DATUM(1);
	args[7] = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	nulls[7] = PG_ARGISNULL(4) ? 'n' : ' ';
	args[8] = Int32GetDatum(labels);
	args[9] = BoolGetDatum(closing);
	args[10] = BoolGetDatum(2 * positives > labels);
	nulls[10] = (!closing || 2 * positives == labels) ? 'n' : ' ';
	rc = SPI_execute_plan(submit_write_plan, args, nulls, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING || SPI_processed != 1)
		opsdata_spi_failed(
			rc, psprintf("record the label of candidate " INT64_FORMAT,
						 candidate));
	id = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
					   &isnull);
	SPI_finish();

	if (!closing)
		learning_candidate_available(priority);
	PG_RETURN_DATUM(id);
}

/*
 * learning.release(candidate, reviewer) gives a lease back; returns whether
 * there was one to give back.
 */
Datum
learning_release(PG_FUNCTION_ARGS)
{
	Oid types[2] = {INT8OID, TEXTOID};
	Datum args[2];
	char nulls[2] = {' ', ' '};
	bool released;
	bool isnull;
	int rc;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("candidate must not be null")));
	args[0] = PG_GETARG_DATUM(0);
	args[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';

	opsdata_spi_connect(0);
	if (release_plan == NULL)
		release_plan = learning_prepare(
			"UPDATE learning.candidates c SET status = 'open', claimed_by = NULL, lease_until = NULL "
			" WHERE c.candidate_id = $1 AND c.closed_at IS NULL AND c.claimed_by IS NOT NULL "
			"   AND ($2::pg_catalog.text IS NULL OR c.claimed_by = $2) "
			"RETURNING c.priority",
			2, types);
	rc = SPI_execute_plan(release_plan, args, nulls, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING)
		opsdata_spi_failed(rc, "release a candidate");
	released = SPI_processed == 1;
	if (released)
		learning_candidate_available(DatumGetFloat8(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)));
	else
	{
		if (exists_plan == NULL)
			exists_plan = learning_prepare(
				"SELECT FROM learning.candidates c WHERE c.candidate_id = $1",
				1, types);
		rc = SPI_execute_plan(exists_plan, args, NULL, true, 1);
		if (rc != SPI_OK_SELECT)
			opsdata_spi_failed(rc, "read learning.candidates");
		if (SPI_processed == 0)
			ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
							errmsg("candidate " INT64_FORMAT " does not exist",
								   DatumGetInt64(args[0]))));
	}
	SPI_finish();
	PG_RETURN_BOOL(released);
}
