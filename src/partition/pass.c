/*-------------------------------------------------------------------------
 *
 * pass.c
 *		A partition maintenance pass: the job entry "partition maintenance".
 *
 * A pass is a job entry (worker/worker.h): it runs in a job worker,
 * connected as the extension owner with search_path pinned to pg_catalog,
 * pg_temp (opsdata_worker_connect), outside any caller's transaction.  The
 * built-in job "partition.maintain" runs it in its own job worker;
 * opsdata.run_maintenance() (api.c) starts a job worker for it and waits
 * for its results.  The pass runs in transactions of its own:
 *
 *	- a session-level advisory lock (pg_try_advisory_lock(1869639524, 1))
 *	  keeps two passes from overlapping; a pass waits for the one running
 *	  up to partition.detach_timeout, then ends and says so;
 *	- each set is planned in one short transaction, then each step of its
 *	  plan runs in a transaction of its own (exec.c), so no lock outlives
 *	  the step that took it; a set that fails is recorded and the pass goes
 *	  on with the next one;
 *	- DETACH PARTITION ... CONCURRENTLY runs as a top-level statement
 *	  (opsdata_toplevel_exec), which it must be (it commits in the middle),
 *	  and so as the role the worker connected as, the extension owner: a
 *	  region with the table owner's rights cannot span its commit.  The one
 *	  thing it runs that a table's owner controls is the check of the
 *	  foreign keys that reference the table (their casts and operators), so
 *	  a table that a foreign key references is detached with the plain
 *	  form instead, in one transaction as the owner, like every other step;
 *	  the concurrent form checks again, in its first transaction with the
 *	  parent locked, that none does (partition_detach_check).  It may wait
 *	  up to partition.detach_timeout, since neither of its
 *	  transactions blocks the parent's readers and writers.  When its second
 *	  transaction does not get its lock in time the partition stays "detach
 *	  pending": a partition to drop is then dropped at once (DROP TABLE
 *	  needs no FINALIZE), others are completed with FINALIZE;
 *	- FINALIZE waits for every snapshot older than its own, among them that
 *	  of a session waiting in run_maintenance(), so FINALIZE steps run after
 *	  the results have been committed and the waiting session told
 *	  (worker_entry_done: "deferred"); what they could not complete the
 *	  next pass finds pending and tries again.
 *
 * On a Citus worker, a pass leaves the tables Citus distributes (their
 * local shells), and metrics.points, which opsdata.distribute() makes
 * one, to the coordinator's passes, which reach their shards
 * (core/routing.c).
 *
 * Results: every row the pass writes to opsdata.partition_log carries the
 * time the pass began (pass_started), which identifies it; when a set is
 * done, one row with action 'run' holds what the pass did to it (status,
 * counts, message), in the transaction that records the outcome in
 * opsdata.partitions.  run_maintenance() returns those rows.  A pass that
 * found another one running says done with 0 and writes nothing.
 *
 * The worker's session lock_timeout is partition.lock_timeout, so nothing
 * it does (planning included) waits longer for a lock, but for the two
 * statements above.  SIGTERM ends the worker at the next interruption
 * point; what it committed stays, each step being one transaction with its
 * log row, and the next pass carries on from the catalog.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/partition/pass.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "core/opsdata.h"
#include "core/privileged.h"
#include "partition/partition.h"

/* What a pass did to one set. */
typedef struct PartitionSetResult
{
	Oid parent;
	char *name;
	Oid owner;
	int created;
	int64 moved;
	int detached;
	int dropped;
	int finalized;
	int skipped; /* steps skipped for want of a lock */
	int pending; /* detaches left pending, to FINALIZE */
	bool failed;
	StringInfoData notes; /* what was left, and why */
} PartitionSetResult;

/*
 * A pending detach, completed by FINALIZE after the pass has committed its
 * results and released a waiting caller: FINALIZE waits for every snapshot
 * older than its own, among them the one of a backend waiting for those
 * results.
 */
typedef struct PartitionDeferred
{
	PartitionSetResult *res;
	PartitionStep *finalize;
	PartitionStep *followup; /* drop or archive once detached, or NULL */
	bool from_plan;			 /* pending before this pass began */
} PartitionDeferred;

/* When the running pass began: its rows of opsdata.partition_log carry it. */
TimestampTz partition_current_pass = 0;

static MemoryContext partition_stmt_cxt = NULL;

static void partition_pass(Datum arg);

/*
 * The job entry: the built-in job "partition.maintain" runs it in its
 * job worker, run_maintenance() in a job worker started for it.
 */
const WorkerEntry partition_pass_entry = {
	.name = "partition maintenance",
	.command = "SELECT * FROM opsdata.run_maintenance()",
	.run = partition_pass,
};

static const char *
partition_status(const PartitionSetResult *res)
{
	if (res->failed)
		return "failed";
	if (res->skipped > 0 || res->pending > 0)
		return "skipped";
	return "ok";
}

static void
partition_count(StringInfo buf, int n, const char *what)
{
	if (n == 0)
		return;
	if (buf->len > 0)
		appendStringInfoString(buf, ", ");
	appendStringInfo(buf, what, n, n == 1 ? "" : "s");
}

static char *
partition_message(const PartitionSetResult *res)
{
	StringInfoData msg;

	initStringInfo(&msg);
	partition_count(&msg, res->created, "made %d partition%s");
	if (res->moved > 0)
		appendStringInfo(
			&msg,
			"%smoved " INT64_FORMAT " row%s out of the default partition",
			msg.len > 0 ? ", " : "", res->moved, res->moved == 1 ? "" : "s");
	partition_count(&msg, res->finalized, "completed %d pending detach%s");
	partition_count(&msg, res->detached,
					"detached %d partition%s into the archive schema");
	partition_count(&msg, res->dropped, "dropped %d partition%s");
	if (msg.len == 0 && res->notes.len == 0)
		appendStringInfoString(&msg, "nothing to do");
	if (res->notes.len > 0)
		appendStringInfo(&msg, "%s%s", msg.len > 0 ? "; " : "",
						 res->notes.data);
	return msg.data;
}

static void
partition_note(PartitionSetResult *res, const char *fmt, const char *a,
			   const char *b, const char *c)
{
	if (res->notes.len > 0)
		appendStringInfoString(&res->notes, "; ");
	appendStringInfo(&res->notes, fmt, a, b, c);
}

/*
 * Sets the session's lock_timeout: statements at top level commit, so the
 * setting cannot be local to a transaction.
 */
static void
partition_set_lock_timeout(int ms)
{
	char value[32];

	snprintf(value, sizeof(value), "%d", ms);
	SetConfigOption("lock_timeout", value, PGC_USERSET, PGC_S_SESSION);
}

/*
 * True when the partition named by qualified name is detach-pending.
 */
static bool
partition_detach_pending(const char *partition)
{
	bool pending = false;
	Oid argtypes[1] = {TEXTOID};
	Datum values[1];
	int rc;

	StartTransactionCommand();
	opsdata_spi_connect(0);
	PushActiveSnapshot(GetTransactionSnapshot());
	values[0] = CStringGetTextDatum(partition);
	rc = SPI_execute_with_args(
		"SELECT i.inhdetachpending FROM pg_catalog.pg_inherits i"
		" WHERE i.inhrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass($1)",
		1, argtypes, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "read pg_inherits");
	if (SPI_processed == 1)
	{
		bool isnull;

		pending = DatumGetBool(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	return pending;
}

/*
 * Logs a step's outcome in a transaction of its own.
 */
static void
partition_log_now(const char *parent_name, const char *action,
				  const char *partition, const char *detail)
{
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	partition_log(parent_name, action, partition, detail);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* Set when partition_detach_check() refused a concurrent detach. */
static bool partition_detach_refused = false;

/*
 * Does a foreign key reference relid?  Caller holds a lock on relid that
 * keeps new ones out.
 */
static bool
partition_is_referenced(Oid relid)
{
	Relation rel;
	SysScanDesc scan;
	ScanKeyData key;
	HeapTuple tuple;
	bool found = false;

	ScanKeyInit(&key, Anum_pg_constraint_confrelid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(relid));
	rel = table_open(ConstraintRelationId, AccessShareLock);
	scan = systable_beginscan(rel, InvalidOid, false, NULL, 1, &key);
	while (!found && HeapTupleIsValid(tuple = systable_getnext(scan)))
		found = ((Form_pg_constraint) GETSTRUCT(tuple))->contype ==
				CONSTRAINT_FOREIGN;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * The check of a DETACH PARTITION ... CONCURRENTLY, in its first
 * transaction, before it runs (as the extension owner): locks the parent
 * and the partition as the statement will, then refuses the statement when
 * a foreign key references either, since checking it would run casts and
 * operators that the table's owner may have written.  The caller then
 * detaches with the plain form, as the owner.
 */
static void
partition_detach_check(RawStmt *raw, void *arg)
{
	AlterTableStmt *stmt = castNode(AlterTableStmt, raw->stmt);
	AlterTableCmd *cmd = linitial_node(AlterTableCmd, stmt->cmds);
	PartitionCmd *pcmd = castNode(PartitionCmd, cmd->def);
	Oid parent;
	Oid part;

	parent = RangeVarGetRelid(stmt->relation, ShareUpdateExclusiveLock, false);
	part = RangeVarGetRelid(pcmd->name, ShareUpdateExclusiveLock, false);
	if (partition_is_referenced(parent) || partition_is_referenced(part))
	{
		partition_detach_refused = true;
		ereport(ERROR, (errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						errmsg("partition \"%s\" is not detached concurrently",
							   get_rel_name(part)),
						errdetail("A foreign key references table \"%s\".",
								  get_rel_name(parent))));
	}
}

/*
 * One try of a top-level statement.  Returns NULL, or the error (in cxt)
 * after aborting whatever transaction the statement had open.
 */
static ErrorData *
partition_try_toplevel(const char *sql, int lock_timeout_ms, MemoryContext cxt)
{
	ErrorData *volatile edata = NULL;

	/* Session level: the statement commits and starts transactions. */
	partition_set_lock_timeout(lock_timeout_ms);
	PG_TRY();
	{
		MemoryContext old = MemoryContextSwitchTo(partition_stmt_cxt);

		opsdata_toplevel_exec(sql, partition_detach_check, NULL);
		MemoryContextSwitchTo(old);
		MemoryContextReset(partition_stmt_cxt);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(cxt);
		MemoryContextReset(partition_stmt_cxt);
	}
	PG_END_TRY();
	return edata;
}

/*
 * Runs a DETACH PARTITION ... CONCURRENTLY step.  Neither of its two
 * transactions blocks the parent's readers and writers, so it may wait up
 * to partition.detach_timeout for the transactions using the parent.  A
 * lock not granted in its first transaction is tried again like any step;
 * one not granted in its second leaves the partition detach-pending:
 * PARTITION_STEP_PENDING.  Otherwise returns DONE, or FAILED with the error
 * in *error (allocated in cxt).
 */
static PartitionStepStatus
partition_toplevel_step(const PartitionStep *step, const char *parent_name,
						const PartitionTiming *timing, MemoryContext cxt,
						ErrorData **error)
{
	int attempt;
	PartitionStepStatus status = PARTITION_STEP_FAILED;

	partition_detach_refused = false;
	for (attempt = 0;; attempt++)
	{
		ErrorData *edata =
			partition_try_toplevel((const char *) linitial(step->statements),
								   timing->detach_timeout_ms, cxt);

		if (edata == NULL)
		{
			partition_log_now(parent_name, "detach", step->partition,
							  "detached concurrently");
			status = PARTITION_STEP_DONE;
			break;
		}
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		*error = edata;
		if (partition_detach_refused || !partition_lock_error(edata))
			break;
		if (partition_detach_pending(step->partition))
		{
			status = PARTITION_STEP_PENDING;
			break;
		}
		if (attempt >= timing->lock_retries)
		{
			status = PARTITION_STEP_SKIPPED;
			break;
		}
		FreeErrorData(edata);
		partition_sleep(timing->retry_delay_ms);
	}
	partition_set_lock_timeout(timing->lock_timeout_ms);
	return status;
}

/*
 * Plans one set: returns its steps (in cxt) and fills in its name and
 * owner, or records why it could not be planned and returns NIL.
 */
static List *
partition_plan_set(PartitionSetResult *res, MemoryContext namecxt,
				   MemoryContext cxt)
{
	List *volatile steps = NIL;
	ErrorData *volatile edata = NULL;

	StartTransactionCommand();
	PG_TRY();
	{
		opsdata_spi_connect(0);
		PushActiveSnapshot(GetTransactionSnapshot());
		res->owner = opsdata_table_owner(res->parent);
		res->name = MemoryContextStrdup(
			namecxt, quote_qualified_identifier(
						 get_namespace_name(get_rel_namespace(res->parent)),
						 get_rel_name(res->parent)));
		steps = partition_plan(res->parent, NULL, true, cxt);
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		MemoryContextSwitchTo(cxt);
	}
	PG_END_TRY();

	if (edata != NULL)
	{
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		if (res->name == NULL)
			res->name =
				MemoryContextStrdup(namecxt, psprintf("%u", res->parent));
		if (partition_lock_error(edata))
			res->skipped++;
		else
			res->failed = true;
		partition_note(res, "not planned: %s", edata->message, NULL, NULL);
		partition_log_now(res->name,
						  partition_lock_error(edata) ? "skip" : "fail", NULL,
						  res->notes.data);
		return NIL;
	}
	return steps;
}

static bool
partition_phase_stopped(List *stopped, const char *phase)
{
	ListCell *lc;

	foreach (lc, stopped)
	{
		if (strcmp((const char *) lfirst(lc), phase) == 0)
			return true;
	}
	return false;
}

static PartitionStep *
partition_copy_step(const PartitionStep *step, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	PartitionStep *copy = palloc(sizeof(PartitionStep));
	ListCell *lc;

	*copy = *step;
	copy->phase = pstrdup(step->phase);
	copy->action = pstrdup(step->action);
	copy->partition = step->partition ? pstrdup(step->partition) : NULL;
	copy->detail = step->detail ? pstrdup(step->detail) : NULL;
	copy->statements = NIL;
	foreach (lc, step->statements)
		copy->statements =
			lappend(copy->statements, pstrdup((const char *) lfirst(lc)));
	MemoryContextSwitchTo(old);
	return copy;
}

/*
 * Counts a step that succeeded.
 */
static void
partition_count_step(PartitionSetResult *res, const PartitionStep *step,
					 int64 rows)
{
	if (strcmp(step->action, "create") == 0 ||
		strcmp(step->action, "move") == 0)
		res->created++;
	if (strcmp(step->action, "move") == 0)
		res->moved += rows;
	if (strcmp(step->action, "finalize") == 0)
		res->finalized++;
	if (strcmp(step->action, "archive") == 0)
		res->detached++;
	if (strcmp(step->action, "drop") == 0)
		res->dropped++;
}

/*
 * The plain form of a DETACH PARTITION ... CONCURRENTLY step (in cxt): one
 * statement, in a transaction, as the table's owner.
 */
static PartitionStep *
partition_plain_detach(const PartitionStep *step, MemoryContext cxt)
{
	PartitionStep *plain = partition_copy_step(step, cxt);
	char *sql = MemoryContextStrdup(cxt, linitial(step->statements));
	const char *suffix = " CONCURRENTLY";
	size_t len = strlen(sql);

	if (len > strlen(suffix) &&
		strcmp(sql + len - strlen(suffix), suffix) == 0)
		sql[len - strlen(suffix)] = '\0';
	plain->statements = list_make1(sql);
	plain->toplevel = false;
	return plain;
}

/*
 * Runs one step that is not top-level in a transaction of its own; logs
 * what it did, or why it did not.
 */
static PartitionStepStatus
partition_run_step(PartitionSetResult *res, const PartitionStep *step,
				   const PartitionTiming *timing, MemoryContext cxt,
				   ErrorData **edata)
{
	PartitionStepStatus status;
	int64 rows = 0;

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	MemoryContextSwitchTo(cxt);
	status =
		partition_exec_step(step, res->owner, res->name, timing, &rows, edata);
	if (status != PARTITION_STEP_DONE)
		partition_log(res->name,
					  status == PARTITION_STEP_SKIPPED ? "skip" : "fail",
					  step->partition,
					  psprintf("%s: %s", step->action, (*edata)->message));
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	if (status == PARTITION_STEP_DONE)
		partition_count_step(res, step, rows);
	return status;
}

/*
 * Maintains one set: plan, then every step in a transaction of its own.
 * FINALIZE steps are appended to *deferred (in runcxt) instead.
 */
static void
partition_maintain_set(PartitionSetResult *res, const PartitionTiming *timing,
					   MemoryContext runcxt, MemoryContext cxt,
					   List **deferred)
{
	List *steps;
	List *stopped = NIL; /* phases ended by a step that did not succeed */
	PartitionDeferred *last = NULL;
	int i;

	steps = partition_plan_set(res, runcxt, cxt);
	for (i = 0; i < list_length(steps); i++)
	{
		PartitionStep *step = (PartitionStep *) list_nth(steps, i);
		PartitionStepStatus status;
		ErrorData *edata = NULL;

		CHECK_FOR_INTERRUPTS();
		if (strcmp(step->action, "note") == 0)
		{
			partition_note(res, "%s", step->detail, NULL, NULL);
			continue;
		}

		/*
		 * The step after a detach, for the same partition, waits for the
		 * detach when that was deferred.
		 */
		if (last != NULL && last->followup == NULL &&
			step->partition != NULL &&
			strcmp(step->partition, last->finalize->partition) == 0 &&
			(strcmp(step->action, "drop") == 0 ||
			 strcmp(step->action, "archive") == 0))
		{
			last->followup = partition_copy_step(step, runcxt);
			continue;
		}
		last = NULL;

		if (strcmp(step->phase, "finalize") == 0)
		{
			MemoryContext old = MemoryContextSwitchTo(runcxt);

			last = palloc0(sizeof(PartitionDeferred));
			last->res = res;
			last->finalize = partition_copy_step(step, runcxt);
			last->from_plan = true;
			*deferred = lappend(*deferred, last);
			MemoryContextSwitchTo(old);
			continue;
		}
		if (partition_phase_stopped(stopped, step->phase))
			continue;

		if (step->toplevel)
		{
			status =
				partition_toplevel_step(step, res->name, timing, cxt, &edata);
			if (partition_detach_refused)
				status =
					partition_run_step(res, partition_plain_detach(step, cxt),
									   timing, cxt, &edata);
		}
		else
			status = partition_run_step(res, step, timing, cxt, &edata);
		if (status == PARTITION_STEP_DONE)
			continue;

		if (status == PARTITION_STEP_PENDING)
		{
			PartitionStep *followup =
				i + 1 < list_length(steps)
					? (PartitionStep *) list_nth(steps, i + 1)
					: NULL;
			MemoryContext old;
			PartitionStep *finalize;

			partition_log_now(
				res->name, "skip", step->partition,
				psprintf("detach left pending: %s", edata->message));

			/*
			 * A partition to drop needs no FINALIZE: DROP TABLE removes it,
			 * pending or not, under the step's lock_timeout.
			 */
			if (followup != NULL && strcmp(followup->action, "drop") == 0 &&
				strcmp(followup->partition, step->partition) == 0)
			{
				i++;
				status =
					partition_run_step(res, followup, timing, cxt, &edata);
				if (status == PARTITION_STEP_DONE)
					continue;
				step = followup;
			}
			else
			{
				/* A table has at most one detach pending at a time. */
				old = MemoryContextSwitchTo(runcxt);
				finalize = partition_copy_step(step, runcxt);
				finalize->action = "finalize";
				finalize->phase = "finalize";
				finalize->toplevel = false;
				finalize->detail = "detach completed after its interruption";
				finalize->statements =
					list_make1(lsecond(finalize->statements));
				last = palloc0(sizeof(PartitionDeferred));
				last->res = res;
				last->finalize = finalize;
				*deferred = lappend(*deferred, last);
				MemoryContextSwitchTo(old);
				res->pending++;
				partition_note(
					res,
					"detach of %s still waits for transactions using the table (%s); it is completed when they end",
					step->partition, edata->message, NULL);
				stopped = lappend(stopped, step->phase);
				continue;
			}
		}

		/* The rest of this phase needs what was not granted. */
		stopped = lappend(stopped, step->phase);
		if (status == PARTITION_STEP_SKIPPED)
		{
			res->skipped++;
			partition_note(
				res,
				"%s of %s skipped: %s; the rest of its phase waits for the next run",
				step->action, step->partition, edata->message);
			if (step->toplevel)
				partition_log_now(
					res->name, "skip", step->partition,
					psprintf("%s: %s", step->action, edata->message));
		}
		else
		{
			res->failed = true;
			partition_note(res, "%s of %s failed: %s", step->action,
						   step->partition, edata->message);
			if (step->toplevel)
				partition_log_now(
					res->name, "fail", step->partition,
					psprintf("%s: %s", step->action, edata->message));
		}
	}
}

/*
 * Writes the row of opsdata.partition_log that says what the pass did to a
 * set: what run_maintenance() returns for it.
 */
static void
partition_log_run(const PartitionSetResult *res)
{
	Oid argtypes[8] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, TEXTOID,
					   INT4OID, INT8OID, INT4OID,		 INT4OID};
	Datum values[8];
	int rc;

	/* Objects of 0.1 have no 'run' rows: run_maintenance() needs 0.2. */
	if (!opsdata_schema_at_least("0.2"))
		return;
	values[0] = CStringGetTextDatum(res->name);
	values[1] = CStringGetTextDatum(partition_message(res));
	values[2] = TimestampTzGetDatum(partition_current_pass);
	values[3] = CStringGetTextDatum(partition_status(res));
	values[4] = Int32GetDatum(res->created);
	values[5] = Int64GetDatum(res->moved);
	values[6] = Int32GetDatum(res->detached);
	values[7] = Int32GetDatum(res->dropped);
	rc = SPI_execute_with_args(
		"INSERT INTO opsdata.partition_log (parent, action, detail, pass_started,"
		" status, created, moved, detached, dropped)"
		" VALUES ($1, 'run', $2, $3, $4, $5, $6, $7, $8)",
		8, argtypes, values, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		opsdata_spi_failed(rc, "write to opsdata.partition_log");
}

/*
 * Records a set's outcome in opsdata.partitions and, the first time, its
 * 'run' row in opsdata.partition_log (a set whose deferred detaches changed
 * its outcome is recorded again, without a second row).
 */
static void
partition_record(const PartitionSetResult *res, bool first)
{
	Oid argtypes[3] = {OIDOID, TEXTOID, TEXTOID};
	Datum values[3];
	int rc;

	StartTransactionCommand();
	opsdata_spi_connect(0);
	PushActiveSnapshot(GetTransactionSnapshot());
	values[0] = ObjectIdGetDatum(res->parent);
	values[1] = CStringGetTextDatum(partition_status(res));
	values[2] = CStringGetTextDatum(partition_message(res));
	rc = SPI_execute_with_args(
		"UPDATE opsdata.partitions p SET last_run_at = pg_catalog.now(),"
		" last_status = $2, last_message = $3,"
		" default_partition = COALESCE((SELECT t.partdefid OPERATOR(pg_catalog.<>) 0 FROM pg_catalog.pg_partitioned_table t"
		"  WHERE t.partrelid OPERATOR(pg_catalog.=) p.parent), false)"
		" WHERE p.parent OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
		3, argtypes, values, NULL, false, 0);
	if (rc != SPI_OK_UPDATE)
		opsdata_spi_failed(rc, "update opsdata.partitions");
	if (first)
		partition_log_run(res);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/*
 * Completes the deferred detaches, each FINALIZE waiting up to
 * partition.detach_timeout for older snapshots, then its drop or archive
 * step.  The first FINALIZE that times out ends the work: the others would
 * wait for the same transactions.  Sets whose outcome changed are
 * recorded again.
 */
static void
partition_run_deferred(List *deferred, const PartitionTiming *timing,
					   MemoryContext cxt)
{
	PartitionTiming finalize_timing = *timing;
	List *changed = NIL;
	bool blocked = false;
	ListCell *lc;

	finalize_timing.lock_timeout_ms = timing->detach_timeout_ms;
	finalize_timing.lock_retries = 0;
	foreach (lc, deferred)
	{
		PartitionDeferred *d = (PartitionDeferred *) lfirst(lc);
		PartitionSetResult *res = d->res;
		PartitionStepStatus status;
		ErrorData *edata = NULL;

		CHECK_FOR_INTERRUPTS();
		if (blocked)
			continue;
		status = partition_run_step(res, d->finalize, &finalize_timing, cxt,
									&edata);
		if (status != PARTITION_STEP_DONE)
		{
			if (status == PARTITION_STEP_SKIPPED)
				blocked = true;
			else
				res->failed = true;
			if (d->from_plan)
			{
				res->pending++;
				partition_note(res, "pending detach of %s not completed: %s",
							   d->finalize->partition, edata->message, NULL);
				changed = list_append_unique_ptr(changed, res);
			}
			continue;
		}
		if (!d->from_plan)
			res->pending--;
		if (d->followup != NULL)
		{
			status = partition_run_step(res, d->followup, timing, cxt, &edata);
			if (status == PARTITION_STEP_SKIPPED)
				res->skipped++;
			else if (status != PARTITION_STEP_DONE)
				res->failed = true;
			if (status != PARTITION_STEP_DONE)
				partition_note(res, "%s of %s did not happen: %s",
							   d->followup->action, d->followup->partition,
							   edata->message);
		}
		changed = list_append_unique_ptr(changed, res);
	}
	foreach (lc, changed)
		partition_record((PartitionSetResult *) lfirst(lc), false);
}

/*
 * Takes the lock that keeps two passes apart, waiting at most
 * partition.detach_timeout for a pass that is completing its deferred
 * detaches.
 */
static bool
partition_run_lock(const PartitionTiming *timing)
{
	TimestampTz end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  timing->detach_timeout_ms);

	for (;;)
	{
		bool locked;
		bool isnull;
		int rc;

		StartTransactionCommand();
		opsdata_spi_connect(0);
		PushActiveSnapshot(GetTransactionSnapshot());
		rc = SPI_execute(
			"SELECT pg_catalog.pg_try_advisory_lock(1869639524, 1)", false, 1);
		if (rc != SPI_OK_SELECT)
			opsdata_spi_failed(rc, "take the partition maintenance lock");
		locked = DatumGetBool(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		PopActiveSnapshot();
		SPI_finish();
		CommitTransactionCommand();
		if (locked)
			return true;
		if (GetCurrentTimestamp() >= end)
			return false;
		partition_sleep(100);
	}
}

/*
 * Reads the sets to maintain (one, or all when only is invalid), in order,
 * after trimming opsdata.partition_log to partition.log_retention.
 */
static List *
partition_read_sets(Oid only, MemoryContext runcxt)
{
	Oid argtypes[1] = {OIDOID};
	Datum values[1];
	List *sets = NIL;
	bool citus_worker;
	Oid points;
	uint64 i;
	int rc;

	StartTransactionCommand();
	opsdata_spi_connect(0);
	PushActiveSnapshot(GetTransactionSnapshot());
	rc = SPI_execute(
		"DELETE FROM opsdata.partition_log l WHERE l.logged_at OPERATOR(pg_catalog.<) (pg_catalog.now()"
		" OPERATOR(pg_catalog.-) opsdata.setting('partition.log_retention')::pg_catalog.interval)",
		false, 0);
	if (rc != SPI_OK_DELETE)
		opsdata_spi_failed(rc, "trim opsdata.partition_log");
	values[0] = ObjectIdGetDatum(only);
	rc = SPI_execute_with_args(
		"SELECT p.parent::pg_catalog.oid FROM opsdata.partitions p"
		" WHERE $1 OPERATOR(pg_catalog.=) 0 OR p.parent::pg_catalog.oid OPERATOR(pg_catalog.=) $1"
		" ORDER BY p.builtin DESC, p.parent::pg_catalog.text",
		1, argtypes, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "read opsdata.partitions");
	citus_worker = opsdata_citus_worker();
	points =
		citus_worker
			? get_relname_relid("points", get_namespace_oid("metrics", true))
			: InvalidOid;
	for (i = 0; i < SPI_processed; i++)
	{
		bool isnull;
		Oid parent = DatumGetObjectId(SPI_getbinval(
			SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		MemoryContext old;

		/*
		 * The coordinator maintains the tables Citus distributes, and
		 * metrics.points, whose shell this is or is to be
		 * (opsdata.distribute()).
		 */
		if (citus_worker && (parent == points || opsdata_citus_table(parent)))
			continue;
		old = MemoryContextSwitchTo(runcxt);
		sets = lappend_oid(sets, parent);
		MemoryContextSwitchTo(old);
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	return sets;
}

/*
 * The entry: lock, read the settings and the sets, maintain each set, tell
 * a waiting caller the results are in, then complete the deferred
 * detaches.  arg is the OID of the one set to maintain, or 0 for all.
 */
static void
partition_pass(Datum arg)
{
	Oid only = DatumGetObjectId(arg);
	MemoryContext runcxt;
	MemoryContext setcxt;
	PartitionTiming timing;
	List *sets;
	List *deferred = NIL;
	ListCell *lc;

	runcxt =
		AllocSetContextCreate(TopMemoryContext, "partition maintenance pass",
							  ALLOCSET_DEFAULT_SIZES);
	setcxt = AllocSetContextCreate(runcxt, "partition maintenance set",
								   ALLOCSET_DEFAULT_SIZES);
	partition_stmt_cxt = AllocSetContextCreate(
		runcxt, "partition maintenance statement", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(runcxt);

	StartTransactionCommand();
	opsdata_spi_connect(0);
	PushActiveSnapshot(GetTransactionSnapshot());
	partition_read_timing(&timing);
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
	MemoryContextSwitchTo(runcxt);

	if (!partition_run_lock(&timing))
	{
		worker_entry_done(PARTITION_PASS_BUSY);
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextDelete(runcxt);
		return;
	}

	/* Nothing this pass does waits longer than that for a lock. */
	partition_set_lock_timeout(timing.lock_timeout_ms);
	partition_current_pass = GetCurrentTimestamp();
	sets = partition_read_sets(only, runcxt);

	foreach (lc, sets)
	{
		PartitionSetResult *res;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(setcxt);
		old = MemoryContextSwitchTo(runcxt);
		res = palloc0(sizeof(PartitionSetResult));
		res->parent = lfirst_oid(lc);
		initStringInfo(&res->notes);
		MemoryContextSwitchTo(setcxt);
		pgstat_report_activity(STATE_RUNNING, "partition maintenance");

		partition_maintain_set(res, &timing, runcxt, setcxt, &deferred);
		MemoryContextSwitchTo(setcxt);
		partition_record(res, true);
		MemoryContextSwitchTo(old);
	}

	/* The results are committed: a waiting run_maintenance() returns. */
	worker_entry_done((int64) partition_current_pass);

	if (deferred != NIL)
	{
		pgstat_report_activity(
			STATE_RUNNING,
			"partition maintenance: completing pending detaches");
		MemoryContextReset(setcxt);
		partition_run_deferred(deferred, &timing, setcxt);
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	partition_current_pass = 0;
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextDelete(runcxt);
}
