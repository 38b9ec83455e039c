/*-------------------------------------------------------------------------
 *
 * rollup.c
 *		The rollup job: merging contributions into the rollups of every
 *		width.
 *
 * metrics.rollup() takes the contributions of metrics.rollup_queue it can
 * see with DELETE ... RETURNING, so each is rolled up exactly once: rows of
 * transactions still in progress stay for a later run, rows of aborted
 * ones never appear, and a run that fails or is killed leaves queue and
 * rollups as they were (one transaction).  A contribution that arrived
 * later than the setting metrics.rollup_lateness after the end of its
 * finest bucket is only counted, in metrics.rollup_state.late_points; one
 * whose minute lies outside the range of metric timestamps (stored before
 * the writers refused them, or written around them) is skipped, counted in
 * metrics.rollup_state.bad_points and reported, so that it can never stop
 * the job.
 * metrics.rebuild_rollups() feeds, besides the queue, the per-minute
 * sketches of the raw points of a range (metrics._rollup_points()).
 *
 * The contributions are merged in memory per series and bucket of the
 * finest width, then each width is made from the one below by merging
 * sketches (hours from minutes, days from hours; raw points are never
 * reread), and every bucket of every width is written by one
 * INSERT ... ON CONFLICT statement whose conflict branch merges the new
 * sketch into the stored one.  Groups of a single sketch keep its stored
 * bytes (MetricsSketchAcc), which is what most groups of an incremental
 * run are.
 *
 * A run is usually small and runs in a process of its own (the scheduler
 * starts one per run), so its fixed cost matters as much as its cost per
 * contribution: it is a handful of short statements, planned once per
 * run, and no PL/pgSQL.
 *
 * On a Citus worker, metrics.rollup() does nothing when the queue is a
 * table Citus distributes: the coordinator's runs read every shard.
 *
 * Concurrency: runs (and rebuild_rollups) are serialized by the row lock
 * on the one row of metrics.rollup_state that a run takes first; a second
 * run waits for the first and then finds what it left.  Writers of points
 * never wait for a run.
 *
 * Memory: the groups live in a context of the run, flushed (merged upward
 * and written) when ROLLUP_FLUSH_GROUPS of them are in memory, so a long
 * backlog does not need its size in memory; a bucket written twice by one
 * run gets both parts merged.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/rollup.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "core/opsdata.h"
#include "metrics/metrics.h"

PG_FUNCTION_INFO_V1(metrics_rollup);
PG_FUNCTION_INFO_V1(metrics_rollup_points);

/* Groups of the finest width held in memory before they are written. */
#define ROLLUP_FLUSH_GROUPS 32768

/* Rows fetched at a time from the queue or the points. */
#define ROLLUP_FETCH 1000

typedef struct RollupKey
{
	int64 series_id;
	TimestampTz bucket;
} RollupKey;

typedef struct RollupGroup
{
	RollupKey key;
	MetricsSketchAcc acc;
} RollupGroup;

typedef struct RollupRun
{
	MemoryContext cxt; /* groups and their sketches, reset at each flush */
	int nwidths;
	Interval *widths;
	Interval lateness;
	TimestampTz origin;
	HTAB *groups; /* groups of the finest width */
	int64 rolled; /* points merged */
	int64 late;	  /* points that came too late */
	int64 bad;	  /* points whose timestamp rollups cannot bucket */
	int64 first_bad_series;
	TimestampTz first_bad_bucket;
	bool lateness_bounded; /* can a bucket's end plus lateness overflow? */
	Oid sketch_type;
	Oid sketch_array_type;
	int16 sketch_typlen;
	bool sketch_typbyval;
	char sketch_typalign;
} RollupRun;

/*
 * Buckets of every width are aligned on 2000-01-03 00:00 UTC, a Monday: two
 * days after PostgreSQL's epoch.
 */
#define ROLLUP_ORIGIN ((TimestampTz) 2 * USECS_PER_DAY)

/* An empty table of groups, in cxt. */
static HTAB *
rollup_make_groups(MemoryContext cxt)
{
	HASHCTL ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(RollupKey);
	ctl.entrysize = sizeof(RollupGroup);
	ctl.hcxt = cxt;
	return hash_create("pg_opsdata rollup groups", 1024, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/* date_bin(width, ts, origin) */
static TimestampTz
rollup_bin(const Interval *width, TimestampTz ts, TimestampTz origin)
{
	return DatumGetTimestampTz(DirectFunctionCall3(
		timestamptz_bin, IntervalPGetDatum(width), TimestampTzGetDatum(ts),
		TimestampTzGetDatum(origin)));
}

/* ts + span, as SQL adds an interval to a timestamptz */
static TimestampTz
rollup_plus(TimestampTz ts, const Interval *span)
{
	return DatumGetTimestampTz(DirectFunctionCall2(timestamptz_pl_interval,
												   TimestampTzGetDatum(ts),
												   IntervalPGetDatum(span)));
}

/*
 * Can the deadline of every bucket in range (its end plus the lateness) be
 * computed without leaving timestamptz's range?  An upper bound of the
 * interval's length (months of 31 days, days of 25 hours) is compared with
 * the room left after the latest bucket; a lateness too long for that means
 * that no point is ever late.
 */
static bool
rollup_lateness_fits(RollupRun *run)
{
	const Interval *l = &run->lateness;
	const Interval *w = &run->widths[0];
	double span =
		((double) l->month * 31 + (double) l->day + (double) w->day) *
			(USECS_PER_DAY + USECS_PER_HOUR) +
		(double) l->time + (double) w->time +
		(double) w->month * 31 * (USECS_PER_DAY + USECS_PER_HOUR);

	return span < (double) END_TIMESTAMP - (double) METRICS_TS_END;
}

/*
 * Wait for and lock the one row of metrics.rollup_state, making it if it is
 * missing.  Within SPI.
 */
static void
rollup_lock_state(void)
{
	const char *lock = "SELECT FROM metrics.rollup_state FOR UPDATE";
	int rc;

	if ((rc = SPI_execute(lock, false, 0)) != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "lock metrics.rollup_state");
	if (SPI_processed > 0)
		return;
	rc = SPI_execute(
		"INSERT INTO metrics.rollup_state DEFAULT VALUES ON CONFLICT DO NOTHING",
		false, 0);
	if (rc != SPI_OK_INSERT)
		opsdata_spi_failed(rc, "write to metrics.rollup_state");
	if ((rc = SPI_execute(lock, false, 0)) != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "lock metrics.rollup_state");
}

/* The error for a rollup setting whose value cannot be used. */
static void
rollup_bad_setting(const char *name, const char *what)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("setting \"%s\" %s", name, what),
			 errhint("Set it with opsdata.set_setting(), or reset it with "
					 "opsdata.reset_setting().")));
}

/*
 * Start a run: read the settings and the type of sketches.  Within SPI;
 * the run's memory is a child of parent.
 */
static RollupRun *
rollup_begin(MemoryContext parent)
{
	RollupRun *run = MemoryContextAllocZero(parent, sizeof(RollupRun));
	bool isnull;
	ArrayType *widths;
	Datum *elems;
	bool *nulls;
	int n;
	int i;
	MemoryContext old;
	Datum d;
	int rc;

	run->cxt = AllocSetContextCreate(parent, "pg_opsdata rollup run",
									 ALLOCSET_DEFAULT_SIZES);
	run->origin = ROLLUP_ORIGIN;

	rc = SPI_execute(
		"SELECT opsdata.setting('metrics.rollup_widths')::pg_catalog.interval[],"
		" opsdata.setting('metrics.rollup_lateness')::pg_catalog.interval",
		false, 1);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "read the rollup settings");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
					  &isnull);
	if (isnull)
		rollup_bad_setting("metrics.rollup_widths", "is null");
	widths = DatumGetArrayTypeP(d);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2,
					  &isnull);
	if (isnull)
		rollup_bad_setting("metrics.rollup_lateness", "is null");
	run->lateness = *DatumGetIntervalP(d);
	deconstruct_array(widths, INTERVALOID, sizeof(Interval), false,
					  TYPALIGN_DOUBLE, &elems, &nulls, &n);
	if (n == 0)
		rollup_bad_setting("metrics.rollup_widths", "is empty");
	old = MemoryContextSwitchTo(parent);
	run->nwidths = n;
	run->widths = palloc(sizeof(Interval) * n);
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			rollup_bad_setting("metrics.rollup_widths", "has a null element");
		run->widths[i] = *DatumGetIntervalP(elems[i]);
	}
	MemoryContextSwitchTo(old);

	run->lateness_bounded = rollup_lateness_fits(run);

	run->sketch_type = GetSysCacheOid2(
		TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum("sketch"),
		ObjectIdGetDatum(get_namespace_oid("metrics", false)));
	run->sketch_array_type = get_array_type(run->sketch_type);
	if (!OidIsValid(run->sketch_type) || !OidIsValid(run->sketch_array_type))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
						errmsg("type metrics.sketch does not exist")));
	get_typlenbyvalalign(run->sketch_type, &run->sketch_typlen,
						 &run->sketch_typbyval, &run->sketch_typalign);
	run->groups = rollup_make_groups(run->cxt);
	return run;
}

/*
 * Write every group: the finest width as it is, each coarser one merged
 * from the width below, all with one statement; then forget the groups.
 */
static void
rollup_flush(RollupRun *run)
{
	long total = 0;
	long n = 0;
	Datum *ids;
	Datum *widths;
	Datum *starts;
	Datum *counts;
	Datum *sums;
	Datum *mins;
	Datum *maxs;
	Datum *sketches;
	HTAB *level = run->groups;
	int w;
	Oid argtypes[8];
	Datum args[8];
	MemoryContext old;
	int rc;

	if (hash_get_num_entries(run->groups) == 0)
		return;
	old = MemoryContextSwitchTo(run->cxt);

	/* Coarser widths never have more groups than the finest. */
	total = hash_get_num_entries(run->groups) * run->nwidths;
	ids = palloc(sizeof(Datum) * total);
	widths = palloc(sizeof(Datum) * total);
	starts = palloc(sizeof(Datum) * total);
	counts = palloc(sizeof(Datum) * total);
	sums = palloc(sizeof(Datum) * total);
	mins = palloc(sizeof(Datum) * total);
	maxs = palloc(sizeof(Datum) * total);
	sketches = palloc(sizeof(Datum) * total);

	for (w = 0; w < run->nwidths; w++)
	{
		HTAB *next =
			w + 1 < run->nwidths ? rollup_make_groups(run->cxt) : NULL;
		HASH_SEQ_STATUS seq;
		RollupGroup *group;

		hash_seq_init(&seq, level);
		while ((group = (RollupGroup *) hash_seq_search(&seq)) != NULL)
		{
			MetricsSketch header;

			metrics_acc_header(&group->acc, &header);
			ids[n] = Int64GetDatum(group->key.series_id);
			widths[n] = IntervalPGetDatum(&run->widths[w]);
			starts[n] = TimestampTzGetDatum(group->key.bucket);
			counts[n] = Int64GetDatum(header.count);
			sums[n] = Float8GetDatum(metrics_xsum_value(&header.sum));
			mins[n] = Float8GetDatum(header.min);
			maxs[n] = Float8GetDatum(header.max);
			sketches[n] = PointerGetDatum(metrics_acc_stored(&group->acc));
			n++;
			if (next != NULL)
			{
				RollupKey key;
				RollupGroup *up;
				bool found;

				memset(&key, 0, sizeof(key));
				key.series_id = group->key.series_id;
				key.bucket = rollup_bin(&run->widths[w + 1], group->key.bucket,
										run->origin);
				up = (RollupGroup *) hash_search(next, &key, HASH_ENTER,
												 &found);
				if (!found)
					metrics_acc_init(&up->acc);
				metrics_acc_merge(&up->acc, &group->acc, run->cxt);
			}
		}
		level = next;
	}

	argtypes[0] = INT8ARRAYOID;
	argtypes[1] = get_array_type(INTERVALOID);
	argtypes[2] = get_array_type(TIMESTAMPTZOID);
	argtypes[3] = INT8ARRAYOID;
	argtypes[4] = FLOAT8ARRAYOID;
	argtypes[5] = FLOAT8ARRAYOID;
	argtypes[6] = FLOAT8ARRAYOID;
	argtypes[7] = run->sketch_array_type;
	args[0] = PointerGetDatum(
		construct_array(ids, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[1] = PointerGetDatum(construct_array(
		widths, n, INTERVALOID, sizeof(Interval), false, TYPALIGN_DOUBLE));
	args[2] = PointerGetDatum(construct_array(
		starts, n, TIMESTAMPTZOID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_array(
		counts, n, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[4] = PointerGetDatum(construct_array(
		sums, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[5] = PointerGetDatum(construct_array(
		mins, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[6] = PointerGetDatum(construct_array(
		maxs, n, FLOAT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[7] = PointerGetDatum(
		construct_array(sketches, n, run->sketch_type, run->sketch_typlen,
						run->sketch_typbyval, run->sketch_typalign));

	/*
	 * A new bucket is inserted as it is.  A delta for an existing bucket is
	 * merged into it, through the conflict on the primary key; a bucket
	 * without a sketch (not written by a run) keeps its own count, sum, min
	 * and max and adds the delta's.
	 */
	rc = SPI_execute_with_args(
		"INSERT INTO metrics.rollups AS r (series_id, bucket_width, bucket_start, count, sum, min, max, sketch)"
		" SELECT * FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3),"
		" pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7),"
		" pg_catalog.unnest($8))"
		" ON CONFLICT (series_id, bucket_width, bucket_start) DO UPDATE"
		" SET (sketch, count, sum, min, max, updated_at) = ("
		"  SELECT m.s,"
		"   metrics.sketch_count(m.s) + CASE WHEN r.sketch IS NULL THEN r.count ELSE 0 END,"
		"   metrics.sketch_sum(m.s) + CASE WHEN r.sketch IS NULL THEN r.sum ELSE 0 END,"
		"   CASE WHEN r.sketch IS NULL THEN LEAST(r.min, metrics.sketch_min(m.s)) ELSE metrics.sketch_min(m.s) END,"
		"   CASE WHEN r.sketch IS NULL THEN GREATEST(r.max, metrics.sketch_max(m.s)) ELSE metrics.sketch_max(m.s) END,"
		"   excluded.updated_at"
		"  FROM (SELECT metrics.sketch_merge(r.sketch, excluded.sketch) AS s) m)",
		8, argtypes, args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		opsdata_spi_failed(rc, "write to metrics.rollups");

	MemoryContextSwitchTo(old);
	MemoryContextReset(run->cxt);
	run->groups = rollup_make_groups(run->cxt);
}

/*
 * Add one contribution, the stored sketch of the points of a series whose
 * finest bucket contains bucket; queued_at is when they arrived, when
 * judged is true (else they are never late).
 */
static void
rollup_take(RollupRun *run, int64 series_id, TimestampTz bucket, bool judged,
			TimestampTz queued_at, const bytea *sketch)
{
	RollupKey key;
	RollupGroup *group;
	MetricsSketch header;
	bool found;

	metrics_sketch_read_header(PointerGetDatum(sketch), &header);
	/*
	 * A point no writer accepts today (stored before, or by a way around
	 * them) is skipped and counted, never retried.
	 */
	if (!METRICS_TS_IN_RANGE(bucket))
	{
		if (run->bad == 0)
		{
			run->first_bad_series = series_id;
			run->first_bad_bucket = bucket;
		}
		run->bad += header.count;
		return;
	}
	memset(&key, 0, sizeof(key));
	key.series_id = series_id;
	key.bucket = rollup_bin(&run->widths[0], bucket, run->origin);
	if (judged && run->lateness_bounded &&
		queued_at > rollup_plus(rollup_plus(key.bucket, &run->widths[0]),
								&run->lateness))
	{
		run->late += header.count;
		return;
	}
	group = (RollupGroup *) hash_search(run->groups, &key, HASH_ENTER, &found);
	if (!found)
		metrics_acc_init(&group->acc);
	metrics_acc_add_stored(&group->acc, sketch, run->cxt);
	run->rolled += header.count;
	if (hash_get_num_entries(run->groups) >= ROLLUP_FLUSH_GROUPS)
		rollup_flush(run);
}

/*
 * Roll up the rows of a query returning (series_id, bucket, queued_at or
 * NULL, sketch), fetched through a cursor.
 */
static void
rollup_take_query(RollupRun *run, const char *sql, int nargs, Oid *argtypes,
				  Datum *args)
{
	SPIPlanPtr plan = SPI_prepare(sql, nargs, argtypes);
	Portal portal;

	if (plan == NULL)
		opsdata_spi_failed(SPI_result, "prepare a rollup query");
	portal = SPI_cursor_open(NULL, plan, args, NULL, false);
	for (;;)
	{
		SPITupleTable *rows;
		uint64 nrows;
		uint64 i;

		/* A flush runs a statement: keep the rows fetched at hand. */
		SPI_cursor_fetch(portal, true, ROLLUP_FETCH);
		rows = SPI_tuptable;
		nrows = SPI_processed;
		if (nrows == 0)
			break;
		for (i = 0; i < nrows; i++)
		{
			HeapTuple tuple = rows->vals[i];
			TupleDesc desc = rows->tupdesc;
			bool isnull[4];
			Datum series = SPI_getbinval(tuple, desc, 1, &isnull[0]);
			Datum bucket = SPI_getbinval(tuple, desc, 2, &isnull[1]);
			Datum queued = SPI_getbinval(tuple, desc, 3, &isnull[2]);
			Datum sketch = SPI_getbinval(tuple, desc, 4, &isnull[3]);
			bytea *data;

			if (isnull[0] || isnull[1] || isnull[3])
				continue;
			data = (bytea *) PG_DETOAST_DATUM_PACKED(sketch);
			rollup_take(run, DatumGetInt64(series),
						DatumGetTimestampTz(bucket), !isnull[2],
						isnull[2] ? 0 : DatumGetTimestampTz(queued), data);
			if ((Pointer) data != DatumGetPointer(sketch))
				pfree(data);
		}
		SPI_freetuptable(rows);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	SPI_freeplan(plan);
}

/*
 * Finish a run: write what is left and record the run.
 */
static void
rollup_end(RollupRun *run)
{
	Oid argtypes[4] = {INT8OID, INT8OID, INT8OID, TIMESTAMPTZOID};
	Datum args[4];
	int rc;

	rollup_flush(run);
	args[0] = Int64GetDatum(run->rolled);
	args[1] = Int64GetDatum(run->late);
	args[2] = Int64GetDatum(run->bad);
	/* A parameter, not clock_timestamp(): Citus updates no volatile call. */
	args[3] = TimestampTzGetDatum(GetCurrentTimestamp());
	/* The objects of 0.1 count no skipped points (the warning says them). */
	rc = SPI_execute_with_args(
		opsdata_schema_at_least("0.2")
			? "UPDATE metrics.rollup_state"
			  " SET runs = runs + 1, last_run_at = $4,"
			  " last_run_points = $1, points = points + $1, late_points = late_points + $2,"
			  " last_late_at = CASE WHEN $2 > 0 THEN $4 ELSE last_late_at END,"
			  " bad_points = bad_points + $3,"
			  " last_bad_at = CASE WHEN $3 > 0 THEN $4 ELSE last_bad_at END"
			: "UPDATE metrics.rollup_state"
			  " SET runs = runs + 1, last_run_at = $4,"
			  " last_run_points = $1, points = points + $1, late_points = late_points + $2,"
			  " last_late_at = CASE WHEN $2 > 0 THEN $4 ELSE last_late_at END",
		4, argtypes, args, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		opsdata_spi_failed(rc, "update metrics.rollup_state");
	if (run->bad > 0)
		ereport(
			WARNING,
			(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
			 errmsg("rollup skipped " INT64_FORMAT
					" points whose timestamps are out of range",
					run->bad),
			 errdetail(
				 "The first: series " INT64_FORMAT
				 ", minute starting at %s. Metric timestamps lie from 0001-01-01 to 9999-12-31 (UTC); such points are counted in metrics.rollup_state.bad_points and never rolled up.",
				 run->first_bad_series,
				 timestamptz_to_str(run->first_bad_bucket))));
	MemoryContextDelete(run->cxt);
}

/*
 * Roll up the queue, and the points of [from, to) when asked; returns the
 * number of points rolled up.
 */
static int64
rollup_run(bool points, TimestampTz from, TimestampTz to)
{
	MemoryContext caller = CurrentMemoryContext;
	RollupRun *run;
	int64 rolled;

	opsdata_spi_connect(0);
	rollup_lock_state();
	run = rollup_begin(caller);
	if (points)
	{
		Oid argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
		Datum args[2];

		args[0] = TimestampTzGetDatum(from);
		args[1] = TimestampTzGetDatum(to);
		rollup_take_query(
			run,
			"SELECT series_id, pg_catalog.date_bin('1 minute', ts, '2000-01-03 00:00:00+00'),"
			" NULL::pg_catalog.timestamptz, metrics.sketch_agg(value)"
			" FROM metrics.points WHERE ts >= $1 AND ts < $2 GROUP BY 1, 2",
			2, argtypes, args);
	}
	rollup_take_query(
		run,
		"DELETE FROM metrics.rollup_queue RETURNING series_id, bucket_start, queued_at, sketch",
		0, NULL, NULL);
	rollup_end(run);
	rolled = run->rolled;
	SPI_finish();
	return rolled;
}

/*
 * metrics.rollup() returns the number of points rolled up.
 */
Datum
metrics_rollup(PG_FUNCTION_ARGS)
{
	/* On a Citus worker, the coordinator rolls up the distributed queue. */
	if (opsdata_citus_worker() &&
		opsdata_citus_table(metrics_relid("rollup_queue")))
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(rollup_run(false, 0, 0));
}

/*
 * metrics._rollup_points(from, to): roll up the points of [from, to), as
 * if they were all queued, and the queue; for metrics.rebuild_rollups(),
 * which removed the rollups and queued contributions of the range first.
 */
Datum
metrics_rollup_points(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("time range must not be null")));
	PG_RETURN_INT64(
		rollup_run(true, PG_GETARG_TIMESTAMPTZ(0), PG_GETARG_TIMESTAMPTZ(1)));
}
