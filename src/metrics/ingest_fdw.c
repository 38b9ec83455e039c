/*-------------------------------------------------------------------------
 *
 * ingest_fdw.c
 *		The metrics.ingest foreign table: COPY and INSERT by metric name.
 *
 * metrics.ingest (name text, tags text, ts timestamptz, value float8) is a
 * foreign table of a data wrapper of ours whose only job is to take rows:
 *
 *	 COPY metrics.ingest (name, tags, ts, value) FROM STDIN;
 *	 INSERT INTO metrics.ingest (name, value) VALUES ('jobs.done', 1);
 *
 * A foreign table, because it lets COPY hand each parsed row to C code
 * without storing it: ExecForeignInsert resolves the series through the
 * cache (tags are a JSON object given as text, parsed only on a cache
 * miss) and passes the point to a MetricsPointWriter, which bulk-inserts
 * into the partitions of metrics.points and queues the rollup
 * contributions, all within the statement.  The points are therefore in
 * metrics.points when the statement ends and commit or roll back with it.
 * Reading metrics.ingest returns no rows.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/ingest_fdw.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/executor.h"
#include "executor/spi.h"
#include "foreign/fdwapi.h"
#include "nodes/makefuncs.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "metrics/metrics.h"

PG_FUNCTION_INFO_V1(metrics_ingest_fdw_handler);

typedef struct IngestState
{
	MetricsPointWriter *writer;
	int att_name;
	int att_tags;
	int att_ts;
	int att_value;
} IngestState;

/* --- reading: no rows ---------------------------------------------------- */

static void
ingest_GetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel,
						 Oid foreigntableid)
{
	baserel->rows = 0;
}

static void
ingest_GetForeignPaths(PlannerInfo *root, RelOptInfo *baserel,
					   Oid foreigntableid)
{
	add_path(baserel, (Path *) create_foreignscan_path(
						  root, baserel, NULL, baserel->rows, 0, 0, NIL,
						  baserel->lateral_relids, NULL, NIL));
}

static ForeignScan *
ingest_GetForeignPlan(PlannerInfo *root, RelOptInfo *baserel,
					  Oid foreigntableid, ForeignPath *best_path, List *tlist,
					  List *scan_clauses, Plan *outer_plan)
{
	scan_clauses = extract_actual_clauses(scan_clauses, false);
	return make_foreignscan(tlist, scan_clauses, baserel->relid, NIL, NIL, NIL,
							NIL, outer_plan);
}

static void
ingest_BeginForeignScan(ForeignScanState *node, int eflags)
{
}

static TupleTableSlot *
ingest_IterateForeignScan(ForeignScanState *node)
{
	return ExecClearTuple(node->ss.ss_ScanTupleSlot);
}

static void
ingest_ReScanForeignScan(ForeignScanState *node)
{
}

static void
ingest_EndForeignScan(ForeignScanState *node)
{
}

/* --- writing ------------------------------------------------------------- */

static int
ingest_updatable(Relation rel)
{
	return (1 << CMD_INSERT);
}

/* The index (from 0) of the column of metrics.ingest called name. */
static int
ingest_attnum(Relation rel, const char *name)
{
	int attnum = SPI_fnumber(RelationGetDescr(rel), name);

	if (attnum <= 0)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_COLUMN),
						errmsg("metrics.ingest has no column \"%s\"", name)));
	return attnum - 1;
}

static void
ingest_begin(ResultRelInfo *rinfo)
{
	IngestState *state = palloc0(sizeof(IngestState));
	Relation rel = rinfo->ri_RelationDesc;

	state->att_name = ingest_attnum(rel, "name");
	state->att_tags = ingest_attnum(rel, "tags");
	state->att_ts = ingest_attnum(rel, "ts");
	state->att_value = ingest_attnum(rel, "value");
	state->writer = metrics_writer_begin();
	rinfo->ri_FdwState = state;
}

static void
ingest_end(ResultRelInfo *rinfo)
{
	IngestState *state = (IngestState *) rinfo->ri_FdwState;

	if (state != NULL && state->writer != NULL)
	{
		metrics_writer_finish(state->writer);
		state->writer = NULL;
	}
}

static void
ingest_null(const char *what)
{
	ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					errmsg("metric %s must not be null", what)));
}

/*
 * Check one row of metrics.ingest and hand its point to the writer: the
 * checks and errors every way into metrics.ingest shares, in the same
 * order.  A NULL name or tags pointer, or a null flag, is an SQL NULL.
 */
void
metrics_ingest_point(MetricsPointWriter *writer, const char *name, int namelen,
					 const char *tags, int tagslen, bool ts_null,
					 TimestampTz ts, bool value_null, double value)
{
	if (name == NULL)
		ingest_null("name");
	if (tags == NULL)
		ingest_null("tags");
	if (ts_null)
		ingest_null("timestamp");
	if (value_null)
		ingest_null("value");
	metrics_sketch_check_value(value);
	metrics_check_ts(ts, 0);
	metrics_writer_add(
		writer, metrics_series_resolve_text(name, namelen, tags, tagslen), ts,
		value);
}

static TupleTableSlot *
ingest_ExecForeignInsert(EState *estate, ResultRelInfo *rinfo,
						 TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	IngestState *state = (IngestState *) rinfo->ri_FdwState;
	Datum *values;
	bool *nulls;
	text *name = NULL;
	text *tags = NULL;

	slot_getallattrs(slot);
	values = slot->tts_values;
	nulls = slot->tts_isnull;
	if (!nulls[state->att_name])
		name = DatumGetTextPP(values[state->att_name]);
	if (!nulls[state->att_tags])
		tags = DatumGetTextPP(values[state->att_tags]);
	metrics_ingest_point(
		state->writer, name ? VARDATA_ANY(name) : NULL,
		name ? VARSIZE_ANY_EXHDR(name) : 0, tags ? VARDATA_ANY(tags) : NULL,
		tags ? VARSIZE_ANY_EXHDR(tags) : 0, nulls[state->att_ts],
		nulls[state->att_ts] ? 0 : DatumGetTimestampTz(values[state->att_ts]),
		nulls[state->att_value],
		nulls[state->att_value] ? 0.0
								: DatumGetFloat8(values[state->att_value]));
	return slot;
}

static void
ingest_BeginForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
						  List *fdw_private, int subplan_index, int eflags)
{
	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	ingest_begin(rinfo);
}

static void
ingest_EndForeignModify(EState *estate, ResultRelInfo *rinfo)
{
	ingest_end(rinfo);
}

static void
ingest_BeginForeignInsert(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	ingest_begin(rinfo);
}

static void
ingest_EndForeignInsert(EState *estate, ResultRelInfo *rinfo)
{
	ingest_end(rinfo);
}

/*
 * metrics._ingest_fdw_handler(): the data wrapper's routines.
 */
Datum
metrics_ingest_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = ingest_GetForeignRelSize;
	routine->GetForeignPaths = ingest_GetForeignPaths;
	routine->GetForeignPlan = ingest_GetForeignPlan;
	routine->BeginForeignScan = ingest_BeginForeignScan;
	routine->IterateForeignScan = ingest_IterateForeignScan;
	routine->ReScanForeignScan = ingest_ReScanForeignScan;
	routine->EndForeignScan = ingest_EndForeignScan;
	routine->IsForeignRelUpdatable = ingest_updatable;
	routine->BeginForeignModify = ingest_BeginForeignModify;
	routine->ExecForeignInsert = ingest_ExecForeignInsert;
	routine->EndForeignModify = ingest_EndForeignModify;
	routine->BeginForeignInsert = ingest_BeginForeignInsert;
	routine->EndForeignInsert = ingest_EndForeignInsert;
	PG_RETURN_POINTER(routine);
}
