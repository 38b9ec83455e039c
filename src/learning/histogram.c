/*-------------------------------------------------------------------------
 *
 * histogram.c
 *		Per-key score histograms: the feedback trigger and the bin function.
 *
 * The tuning job must not re-read all the feedback ever recorded.  Every
 * statement that changes learning.feedback (INSERT, COPY, UPDATE, DELETE)
 * fires one statement-level trigger with its transition tables; the trigger
 * sums the rows per key and score bin and appends those sums to
 * learning.feedback_changes in one insert.  learning.tune() later deletes
 * the changes it folds into learning.histograms, in the same transaction as
 * the threshold it writes, so a change is counted once whether a run
 * commits, fails or is killed.  TRUNCATE empties the histograms.
 *
 * Appending, rather than updating per-bin counters in place, keeps writers
 * of the same key from waiting on each other's row locks.
 *
 * Bins are [k / 10000, (k + 1) / 10000); bin 10000 holds the score 1.
 * learning_score_bin_of() picks k so that "score >= k / 10000.0" holds in
 * double arithmetic exactly when the score is in bin k or above, which makes
 * a bin boundary an exact threshold for the rows counted above it.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/learning/histogram.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "learning/learning.h"

PG_FUNCTION_INFO_V1(learning_score_bin);
PG_FUNCTION_INFO_V1(learning_feedback_changed);
PG_FUNCTION_INFO_V1(learning_fold_changes);

/* One key and bin of a statement's changes. */
typedef struct HistogramDelta
{
	char *key;
	int bin;
	int64 positives;
	int64 negatives;
	double min_score;
	bool has_min;
} HistogramDelta;

typedef struct HistogramDeltas
{
	HistogramDelta *items;
	int n;
	int capacity;
	HTAB *index; /* (key, bin) -> position, once there are several */
} HistogramDeltas;

typedef struct HistogramIndexKey
{
	uint32 keyhash;
	int bin;
	const char *key;
} HistogramIndexKey;

typedef struct HistogramIndexEntry
{
	HistogramIndexKey hkey;
	int position;
} HistogramIndexEntry;

static SPIPlanPtr histogram_insert_plan = NULL;
static SPIPlanPtr histogram_truncate_plan = NULL;

int
learning_score_bin_of(double score)
{
	int k;

	if (!(score >= 0.0))
		return 0;
	if (score >= 1.0)
		return LEARNING_BINS;
	k = (int) floor(score * LEARNING_BINS);
	while (k > 0 && (double) k / LEARNING_BINS > score)
		k--;
	while (k < LEARNING_BINS && (double) (k + 1) / LEARNING_BINS <= score)
		k++;
	return k;
}

/*
 * learning._score_bin(score) returns the bin of a score.
 */
Datum
learning_score_bin(PG_FUNCTION_ARGS)
{
	double score = PG_GETARG_FLOAT8(0);

	learning_check_score("score", score);
	PG_RETURN_INT32(learning_score_bin_of(score));
}

static uint32
histogram_index_hash(const void *key, Size keysize)
{
	const HistogramIndexKey *k = (const HistogramIndexKey *) key;

	return k->keyhash ^ (uint32) k->bin * 0x9E3779B1;
}

static int
histogram_index_match(const void *a, const void *b, Size keysize)
{
	const HistogramIndexKey *x = (const HistogramIndexKey *) a;
	const HistogramIndexKey *y = (const HistogramIndexKey *) b;

	if (x->keyhash != y->keyhash || x->bin != y->bin)
		return 1;
	return strcmp(x->key, y->key);
}

/*
 * The delta of a key and bin, or NULL.  Small statements are searched
 * linearly; past a few entries a hash index is built and kept.
 */
static HistogramDelta *
histogram_find(HistogramDeltas *deltas, const char *key, int bin)
{
	HistogramIndexKey k;
	HistogramIndexEntry *e;
	bool found;
	int i;

	if (deltas->index == NULL)
	{
		HASHCTL ctl;

		for (i = 0; i < deltas->n; i++)
		{
			if (deltas->items[i].bin == bin &&
				strcmp(deltas->items[i].key, key) == 0)
				return &deltas->items[i];
		}
		if (deltas->n < 8)
			return NULL;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(HistogramIndexKey);
		ctl.entrysize = sizeof(HistogramIndexEntry);
		ctl.hash = histogram_index_hash;
		ctl.match = histogram_index_match;
		ctl.hcxt = CurrentMemoryContext;
		deltas->index = hash_create(
			"pg_opsdata feedback histogram deltas", 256, &ctl,
			HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
		for (i = 0; i < deltas->n; i++)
		{
			k.key = deltas->items[i].key;
			k.bin = deltas->items[i].bin;
			k.keyhash =
				hash_bytes((const unsigned char *) k.key, strlen(k.key));
			e = hash_search(deltas->index, &k, HASH_ENTER, &found);
			e->position = i;
		}
		return NULL;
	}
	k.key = key;
	k.bin = bin;
	k.keyhash = hash_bytes((const unsigned char *) key, strlen(key));
	e = hash_search(deltas->index, &k, HASH_FIND, &found);
	return found ? &deltas->items[e->position] : NULL;
}

/*
 * Add one row's contribution (sign +1 or -1) to the statement's deltas.
 */
static void
histogram_add(HistogramDeltas *deltas, const char *key, int bin, bool label,
			  double score, int sign)
{
	HistogramDelta *d = histogram_find(deltas, key, bin);

	if (d == NULL)
	{
		if (deltas->n >= deltas->capacity)
		{
			deltas->capacity =
				deltas->capacity == 0 ? 16 : deltas->capacity * 2;
			deltas->items =
				deltas->items == NULL
					? palloc(deltas->capacity * sizeof(HistogramDelta))
					: repalloc(deltas->items,
							   deltas->capacity * sizeof(HistogramDelta));
		}
		d = &deltas->items[deltas->n];
		d->key = pstrdup(key);
		d->bin = bin;
		d->positives = 0;
		d->negatives = 0;
		d->has_min = false;
		d->min_score = 0;
		if (deltas->index != NULL)
		{
			HistogramIndexKey k;
			HistogramIndexEntry *e;
			bool found;

			k.key = d->key;
			k.bin = bin;
			k.keyhash =
				hash_bytes((const unsigned char *) d->key, strlen(d->key));
			e = hash_search(deltas->index, &k, HASH_ENTER, &found);
			e->position = deltas->n;
		}
		deltas->n++;
	}
	if (label)
		d->positives += sign;
	else
		d->negatives += sign;
	if (sign > 0 && (!d->has_min || score < d->min_score))
	{
		d->min_score = score;
		d->has_min = true;
	}
}

/*
 * Read a transition table and add each row with a score and a label.
 */
static void
histogram_read(HistogramDeltas *deltas, Tuplestorestate *rows, TupleDesc desc,
			   int sign)
{
	TupleTableSlot *slot;
	int keyatt = -1;
	int scoreatt = -1;
	int labelatt = -1;
	int i;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (strcmp(NameStr(att->attname), "key") == 0)
			keyatt = i + 1;
		else if (strcmp(NameStr(att->attname), "score") == 0)
			scoreatt = i + 1;
		else if (strcmp(NameStr(att->attname), "label") == 0)
			labelatt = i + 1;
	}
	if (keyatt < 0 || scoreatt < 0 || labelatt < 0)
		ereport(
			ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg(
				 "learning.feedback lacks its key, score or label column")));

	slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	tuplestore_rescan(rows);
	while (tuplestore_gettupleslot(rows, true, false, slot))
	{
		bool isnull;
		Datum key;
		Datum score;
		Datum label;
		char *keystr;

		CHECK_FOR_INTERRUPTS();
		score = slot_getattr(slot, scoreatt, &isnull);
		if (isnull)
			continue;
		label = slot_getattr(slot, labelatt, &isnull);
		if (isnull)
			continue;
		key = slot_getattr(slot, keyatt, &isnull);
		if (isnull)
			continue;
		keystr = TextDatumGetCString(key);
		histogram_add(deltas, keystr,
					  learning_score_bin_of(DatumGetFloat8(score)),
					  DatumGetBool(label), DatumGetFloat8(score), sign);
		pfree(keystr);
	}
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * Append the deltas to learning.feedback_changes in one statement.
 */
static void
histogram_write(HistogramDeltas *deltas)
{
	Datum *keys;
	Datum *bins;
	Datum *pos;
	Datum *neg;
	Datum *mins;
	bool *minnulls;
	Datum args[5];
	int dims[1];
	int lbs[1] = {1};
	int n = 0;
	int i;
	int rc;

	keys = palloc(deltas->n * sizeof(Datum));
	bins = palloc(deltas->n * sizeof(Datum));
	pos = palloc(deltas->n * sizeof(Datum));
	neg = palloc(deltas->n * sizeof(Datum));
	mins = palloc(deltas->n * sizeof(Datum));
	minnulls = palloc(deltas->n * sizeof(bool));
	for (i = 0; i < deltas->n; i++)
	{
		HistogramDelta *d = &deltas->items[i];

		if (d->positives == 0 && d->negatives == 0 && !d->has_min)
			continue;
		keys[n] = CStringGetTextDatum(d->key);
		bins[n] = Int32GetDatum(d->bin);
		pos[n] = Int64GetDatum(d->positives);
		neg[n] = Int64GetDatum(d->negatives);
		mins[n] = Float8GetDatum(d->min_score);
		minnulls[n] = !d->has_min;
		n++;
	}
	if (n == 0)
		return;

	if (histogram_insert_plan == NULL)
	{
		Oid types[5] = {TEXTARRAYOID, INT4ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
						FLOAT8ARRAYOID};

		histogram_insert_plan = learning_prepare(
			"INSERT INTO learning.feedback_changes (key, bin, positives, negatives, min_score) "
			"SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
			"pg_catalog.unnest($4), pg_catalog.unnest($5))",
			5, types);
	}
	dims[0] = n;
	args[0] = PointerGetDatum(
		construct_array(keys, n, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(
		construct_array(bins, n, INT4OID, 4, true, TYPALIGN_INT));
	args[2] = PointerGetDatum(
		construct_array(pos, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(
		construct_array(neg, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_md_array(mins, minnulls, 1, dims, lbs,
												 FLOAT8OID, 8, FLOAT8PASSBYVAL,
												 TYPALIGN_DOUBLE));
	rc = SPI_execute_plan(histogram_insert_plan, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		opsdata_spi_failed(rc, "write to learning.feedback_changes");
}

/*
 * Statement trigger on learning.feedback.  Runs as the extension owner
 * (SECURITY DEFINER), since writers may not touch the histogram tables.
 */
Datum
learning_feedback_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	HistogramDeltas deltas;
	TupleDesc desc;
	int rc;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		ereport(
			ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg(
				 "learning._feedback_changed() must be fired AFTER ... FOR EACH STATEMENT")));

	opsdata_spi_connect(0);
	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
	{
		if (histogram_truncate_plan == NULL)
			histogram_truncate_plan = learning_prepare(
				"WITH gone AS (DELETE FROM learning.histograms), "
				"     dropped AS (DELETE FROM learning.feedback_changes) "
				"INSERT INTO learning.feedback_changes (key, bin, positives, negatives) "
				"SELECT t.key, 0, 0, 0 FROM learning.thresholds t",
				0, NULL);
		rc = SPI_execute_plan(histogram_truncate_plan, NULL, NULL, false, 0);
		if (rc != SPI_OK_INSERT)
			opsdata_spi_failed(rc, "reset the score histograms");
		SPI_finish();
		return PointerGetDatum(NULL);
	}

	memset(&deltas, 0, sizeof(deltas));
	desc = RelationGetDescr(trigdata->tg_relation);
	if (trigdata->tg_oldtable != NULL)
		histogram_read(&deltas, trigdata->tg_oldtable, desc, -1);
	if (trigdata->tg_newtable != NULL)
		histogram_read(&deltas, trigdata->tg_newtable, desc, +1);
	if (deltas.n > 0)
		histogram_write(&deltas);
	SPI_finish();
	return PointerGetDatum(NULL);
}

/* The error for a row of learning.histograms that was written by hand. */
static void
histogram_corrupt(Datum key, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("the score histogram of key \"%s\" %s",
					TextDatumGetCString(key), what),
			 errhint("Rebuild it with learning.rebuild_histograms().")));
}

/*
 * Read a key's histogram into dense arrays of LEARNING_BINS + 1 elements;
 * all zero (min_scores Infinity) when the key has none.  The caller is
 * connected to SPI; lock says whether to lock the row for update.  Returns
 * whether the key had a row.
 */
bool
learning_histogram_read(Datum key, bool lock, int64 *positives,
						int64 *negatives, double *min_scores)
{
	static SPIPlanPtr read_plan = NULL;
	static SPIPlanPtr lock_plan = NULL;
	Datum *cols[4];
	int ncols[4];
	Oid types[4] = {INT4OID, INT8OID, INT8OID, FLOAT8OID};
	int rc;
	int i;

	for (i = 0; i <= LEARNING_BINS; i++)
	{
		positives[i] = 0;
		negatives[i] = 0;
		min_scores[i] = get_float8_infinity();
	}
	if (read_plan == NULL)
	{
		Oid argtypes[1] = {TEXTOID};

		read_plan = learning_prepare(
			"SELECT h.bins, h.positives, h.negatives, h.min_scores "
			"  FROM learning.histograms h WHERE h.key = $1",
			1, argtypes);
		lock_plan = learning_prepare(
			"SELECT h.bins, h.positives, h.negatives, h.min_scores "
			"  FROM learning.histograms h WHERE h.key = $1 FOR UPDATE",
			1, argtypes);
	}
	rc = SPI_execute_plan(lock ? lock_plan : read_plan, &key, NULL, !lock, 0);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "read learning.histograms");
	if (SPI_processed == 0)
		return false;

	for (i = 0; i < 4; i++)
	{
		bool isnull;
		bool *nulls;
		Datum d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								i + 1, &isnull);

		if (isnull)
			histogram_corrupt(key, "has a null array");
		deconstruct_array(DatumGetArrayTypeP(d), types[i], i == 0 ? 4 : 8,
						  i == 0 ? true : FLOAT8PASSBYVAL,
						  i == 0 ? TYPALIGN_INT : TYPALIGN_DOUBLE, &cols[i],
						  &nulls, &ncols[i]);
		if (ncols[i] != ncols[0])
			histogram_corrupt(key, "has arrays of different lengths");
	}
	for (i = 0; i < ncols[0]; i++)
	{
		int bin = DatumGetInt32(cols[0][i]);

		if (bin < 0 || bin > LEARNING_BINS)
			histogram_corrupt(key, psprintf("has bin %d, out of range", bin));
		positives[bin] = DatumGetInt64(cols[1][i]);
		negatives[bin] = DatumGetInt64(cols[2][i]);
		min_scores[bin] = DatumGetFloat8(cols[3][i]);
	}
	SPI_freetuptable(SPI_tuptable);
	return true;
}

/*
 * learning._fold_changes(key) moves the key's pending changes into its
 * histogram: one DELETE ... RETURNING and one write of the histogram row,
 * in the caller's transaction.  Returns the number of changes folded.
 */
Datum
learning_fold_changes(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr take_plan = NULL;
	static SPIPlanPtr write_plan = NULL;
	Datum key = PG_GETARG_DATUM(0);
	int64 *positives;
	int64 *negatives;
	double *min_scores;
	int64 support = 0;
	uint64 folded;
	uint64 i;
	Datum args[6];
	int rc;

	opsdata_spi_connect(0);
	positives = palloc((LEARNING_BINS + 1) * sizeof(int64));
	negatives = palloc((LEARNING_BINS + 1) * sizeof(int64));
	min_scores = palloc((LEARNING_BINS + 1) * sizeof(double));
	learning_histogram_read(key, true, positives, negatives, min_scores);

	if (take_plan == NULL)
	{
		Oid types[6] = {TEXTOID,	  INT4ARRAYOID,	  INT8ARRAYOID,
						INT8ARRAYOID, FLOAT8ARRAYOID, INT8OID};

		take_plan = learning_prepare(
			"DELETE FROM learning.feedback_changes c WHERE c.key = $1 "
			"RETURNING c.bin, c.positives, c.negatives, c.min_score",
			1, types);
		write_plan = learning_prepare(
			"INSERT INTO learning.histograms AS h (key, bins, positives, negatives, min_scores, support) "
			"VALUES ($1, $2, $3, $4, $5, $6) "
			"ON CONFLICT (key) DO UPDATE SET bins = excluded.bins, positives = excluded.positives, "
			"    negatives = excluded.negatives, "
			"    min_scores = excluded.min_scores, support = excluded.support, folded_at = pg_catalog.now()",
			6, types);
	}
	rc = SPI_execute_plan(take_plan, &key, NULL, false, 0);
	if (rc != SPI_OK_DELETE_RETURNING)
		opsdata_spi_failed(rc, "take the pending feedback changes");
	folded = SPI_processed;
	for (i = 0; i < folded; i++)
	{
		HeapTuple row = SPI_tuptable->vals[i];
		TupleDesc desc = SPI_tuptable->tupdesc;
		bool isnull;
		int bin = DatumGetInt32(SPI_getbinval(row, desc, 1, &isnull));
		double min_score;

		CHECK_FOR_INTERRUPTS();
		if (bin < 0 || bin > LEARNING_BINS)
			continue;
		positives[bin] += DatumGetInt64(SPI_getbinval(row, desc, 2, &isnull));
		negatives[bin] += DatumGetInt64(SPI_getbinval(row, desc, 3, &isnull));
		min_score = DatumGetFloat8(SPI_getbinval(row, desc, 4, &isnull));
		if (!isnull && min_score < min_scores[bin])
			min_scores[bin] = min_score;
	}
	if (folded > 0)
		SPI_freetuptable(SPI_tuptable);

	{
		Datum *bins = palloc((LEARNING_BINS + 1) * sizeof(Datum));
		Datum *pos = palloc((LEARNING_BINS + 1) * sizeof(Datum));
		Datum *neg = palloc((LEARNING_BINS + 1) * sizeof(Datum));
		Datum *mins = palloc((LEARNING_BINS + 1) * sizeof(Datum));
		int n = 0;

		for (i = 0; i <= LEARNING_BINS; i++)
		{
			if (positives[i] <= 0 && negatives[i] <= 0)
				continue;
			bins[n] = Int32GetDatum((int32) i);
			pos[n] = Int64GetDatum(Max(positives[i], 0));
			neg[n] = Int64GetDatum(Max(negatives[i], 0));
			mins[n] = Float8GetDatum(min_scores[i]);
			support += Max(positives[i], 0) + Max(negatives[i], 0);
			n++;
		}
		args[0] = key;
		args[1] = PointerGetDatum(
			construct_array(bins, n, INT4OID, 4, true, TYPALIGN_INT));
		args[2] = PointerGetDatum(construct_array(
			pos, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[3] = PointerGetDatum(construct_array(
			neg, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		args[4] = PointerGetDatum(construct_array(
			mins, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	}
	args[5] = Int64GetDatum(support);
	rc = SPI_execute_plan(write_plan, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		opsdata_spi_failed(rc, "write to learning.histograms");
	SPI_finish();
	PG_RETURN_INT64((int64) folded);
}
