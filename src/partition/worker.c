/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The background worker that runs a partition maintenance pass.
 *
 * opsdata.run_maintenance() (api.c) starts this worker and waits for it.
 * The worker connects to the caller's database as the extension owner and
 * runs the pass in transactions of its own, whatever the caller's
 * transaction holds:
 *
 *	- a session-level advisory lock (pg_try_advisory_lock(1869639524, 1)),
 *	  taken without waiting, keeps two passes from overlapping; a pass that
 *	  does not get it ends at once and says so;
 *	- each set is planned in one short transaction, then each step of its
 *	  plan runs in a transaction of its own (exec.c), so no lock outlives
 *	  the step that took it; a set that fails is recorded and the pass goes
 *	  on with the next one;
 *	- DETACH PARTITION ... CONCURRENTLY runs as a top-level statement, which
 *	  it must be (it commits in the middle).  When its second transaction
 *	  does not get its lock in time the partition stays "detach pending";
 *	  later tries, and the next pass, complete it with FINALIZE.
 *
 * The worker's session lock_timeout is partition.lock_timeout, so nothing
 * it does (planning included) waits longer for a lock.  Results go back to
 * the starting backend through a shm_mq, one message per set; they are also
 * written to opsdata.partitions and opsdata.partition_log, so a pass whose
 * starter went away (a cancelled job) still leaves its record.  SIGTERM
 * ends the worker at the next interruption point; what it committed stays,
 * and the next pass carries on from the catalog.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/partition/worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "libpq/pqformat.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "storage/shm_toc.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "core/opsdata.h"
#include "partition/partition.h"

/* What a pass did to one set. */
typedef struct PartitionSetResult
{
	Oid parent;
	char *name;
	int created;
	int64 moved;
	int detached;
	int dropped;
	bool skipped;
	bool failed;
	StringInfoData done;  /* what was done, for people */
	StringInfoData notes; /* what was left, and why */
} PartitionSetResult;

static shm_mq_handle *partition_mq = NULL;
static MemoryContext partition_stmt_cxt = NULL;

/*
 * Sends a message to the starting backend, if it still listens.
 */
static void
partition_send(StringInfo msg)
{
	if (partition_mq == NULL)
		return;
	if (shm_mq_send(partition_mq, msg->len, msg->data, false, true) != SHM_MQ_SUCCESS)
		partition_mq = NULL;
}

static void
partition_send_text(StringInfo msg, const char *text)
{
	int len = text ? (int) strlen(text) : -1;

	pq_sendint32(msg, len);
	if (len > 0)
		pq_sendbytes(msg, text, len);
}

static const char *
partition_status(const PartitionSetResult *res)
{
	return res->failed ? "failed" : res->skipped ? "skipped"
												 : "ok";
}

static char *
partition_message(const PartitionSetResult *res)
{
	StringInfoData msg;

	initStringInfo(&msg);
	if (res->done.len > 0)
		appendStringInfoString(&msg, res->done.data);
	else if (res->notes.len == 0)
		appendStringInfoString(&msg, "nothing to do");
	if (res->notes.len > 0)
		appendStringInfo(&msg, "%s%s", msg.len > 0 ? "; " : "", res->notes.data);
	return msg.data;
}

static void
partition_send_result(const PartitionSetResult *res)
{
	StringInfoData msg;

	initStringInfo(&msg);
	pq_sendbyte(&msg, PARTITION_MSG_SET);
	pq_sendint32(&msg, res->parent);
	partition_send_text(&msg, partition_status(res));
	pq_sendint32(&msg, res->created);
	pq_sendint64(&msg, res->moved);
	pq_sendint32(&msg, res->detached);
	pq_sendint32(&msg, res->dropped);
	partition_send_text(&msg, partition_message(res));
	partition_send(&msg);
	pfree(msg.data);
}

static void
partition_append(StringInfo buf, const char *fmt, int n, const char *one, const char *many)
{
	if (buf->len > 0)
		appendStringInfoString(buf, ", ");
	appendStringInfo(buf, fmt, n, n == 1 ? one : many);
}

/*
 * Runs sql as a top-level statement in transactions of its own: parse,
 * analysis and plan trees live in partition_stmt_cxt, which survives the
 * commits the statement may do itself.  Errors propagate.
 */
static void
partition_exec_toplevel(const char *sql)
{
	MemoryContext old;
	List *parsetrees;
	List *querytrees;
	List *plantrees;
	PlannedStmt *pstmt;

	StartTransactionCommand();
	old = MemoryContextSwitchTo(partition_stmt_cxt);
	parsetrees = pg_parse_query(sql);
	if (list_length(parsetrees) != 1)
		elog(ERROR, "a top-level step must be one statement");
	querytrees = pg_analyze_and_rewrite_fixedparams(linitial_node(RawStmt, parsetrees), sql,
													NULL, 0, NULL);
	plantrees = pg_plan_queries(querytrees, sql, 0, NULL);
	pstmt = linitial_node(PlannedStmt, plantrees);
	PushActiveSnapshot(GetTransactionSnapshot());
	ProcessUtility(pstmt, sql, false, PROCESS_UTILITY_TOPLEVEL, NULL, NULL, None_Receiver, NULL);
	MemoryContextSwitchTo(partition_stmt_cxt);
	if (ActiveSnapshotSet())
		PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(old);
	MemoryContextReset(partition_stmt_cxt);
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

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	values[0] = CStringGetTextDatum(partition);
	if (SPI_execute_with_args("SELECT i.inhdetachpending FROM pg_catalog.pg_inherits i"
							  " WHERE i.inhrelid = pg_catalog.to_regclass($1)",
							  1, argtypes, values, NULL, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		bool isnull;

		pending = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
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
partition_log_now(const char *parent_name, const char *action, const char *partition,
				  const char *detail)
{
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	partition_log(parent_name, action, partition, detail);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * One try of a top-level statement.  Returns NULL, or the error (in cxt)
 * after aborting whatever transaction the statement had open.
 */
static ErrorData *
partition_try_toplevel(const char *sql, MemoryContext cxt)
{
	ErrorData *volatile edata = NULL;

	PG_TRY();
	{
		partition_exec_toplevel(sql);
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
 * Runs a top-level step: DETACH CONCURRENTLY first, then FINALIZE once the
 * partition is pending.  Returns its status and, unless done, the last
 * error in *error (allocated in cxt).
 */
static PartitionStepStatus
partition_toplevel_step(const PartitionStep *step, const char *parent_name,
						const PartitionTiming *timing, MemoryContext cxt, ErrorData **error)
{
	bool pending = false;
	int attempt;

	for (attempt = 0;; attempt++)
	{
		const char *sql = pending ? (const char *) lsecond(step->statements)
								  : (const char *) linitial(step->statements);
		ErrorData *edata = partition_try_toplevel(sql, cxt);

		if (edata == NULL)
		{
			partition_log_now(parent_name, "detach", step->partition,
							  pending ? "detached concurrently, completed after an interruption"
									  : "detached concurrently");
			return PARTITION_STEP_DONE;
		}
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		if (!partition_lock_error(edata))
		{
			*error = edata;
			return PARTITION_STEP_FAILED;
		}
		pending = partition_detach_pending(step->partition);
		if (attempt >= timing->lock_retries)
		{
			*error = edata;
			return PARTITION_STEP_SKIPPED;
		}
		FreeErrorData(edata);
		partition_sleep(timing->retry_delay_ms);
	}
}

/*
 * Plans one set: returns its steps (in cxt) and fills in its name and
 * owner, or records why it could not be planned and returns NIL.
 */
static List *
partition_plan_set(PartitionSetResult *res, Oid *owner, MemoryContext cxt)
{
	List *volatile steps = NIL;
	ErrorData *volatile edata = NULL;

	StartTransactionCommand();
	PG_TRY();
	{
		HeapTuple tuple;

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(res->parent));
		if (!HeapTupleIsValid(tuple))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation with OID %u does not exist", res->parent)));
		*owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
		ReleaseSysCache(tuple);
		res->name = MemoryContextStrdup(cxt, quote_qualified_identifier(get_namespace_name(get_rel_namespace(res->parent)),
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
			res->name = psprintf("%u", res->parent);
		if (partition_lock_error(edata))
		{
			res->skipped = true;
			appendStringInfo(&res->notes, "not planned: %s", edata->message);
			partition_log_now(res->name, "skip", NULL, res->notes.data);
		}
		else
		{
			res->failed = true;
			appendStringInfo(&res->notes, "not planned: %s", edata->message);
			partition_log_now(res->name, "fail", NULL, res->notes.data);
		}
		return NIL;
	}
	return steps;
}

/*
 * Maintains one set: plan, then every step in a transaction of its own.
 */
static void
partition_maintain_set(PartitionSetResult *res, const PartitionTiming *timing, MemoryContext cxt)
{
	Oid owner = InvalidOid;
	List *steps;
	List *stopped = NIL;
	ListCell *lc;
	int made = 0;

	steps = partition_plan_set(res, &owner, cxt);
	foreach (lc, steps)
	{
		PartitionStep *step = (PartitionStep *) lfirst(lc);
		PartitionStepStatus status;
		ErrorData *edata = NULL;
		int64 rows = 0;

		CHECK_FOR_INTERRUPTS();
		if (strcmp(step->action, "note") == 0)
		{
			if (res->notes.len > 0)
				appendStringInfoString(&res->notes, "; ");
			appendStringInfoString(&res->notes, step->detail);
			continue;
		}
		if (list_member(stopped, step->phase))
			continue;

		if (step->toplevel)
			status = partition_toplevel_step(step, res->name, timing, cxt, &edata);
		else
		{
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			MemoryContextSwitchTo(cxt);
			status = partition_exec_step(step, owner, res->name, timing, &rows, &edata);
			if (status != PARTITION_STEP_DONE)
				partition_log(res->name, status == PARTITION_STEP_SKIPPED ? "skip" : "fail",
							  step->partition, psprintf("%s: %s", step->action, edata->message));
			PopActiveSnapshot();
			CommitTransactionCommand();
			MemoryContextSwitchTo(cxt);
		}

		if (status == PARTITION_STEP_DONE)
		{
			if (strcmp(step->action, "create") == 0 || strcmp(step->action, "move") == 0)
				made++;
			if (strcmp(step->action, "move") == 0)
				res->moved += rows;
			if (strcmp(step->action, "archive") == 0)
				res->detached++;
			if (strcmp(step->action, "drop") == 0)
				res->dropped++;
			continue;
		}

		/* The rest of this phase needs the lock that was not granted. */
		stopped = lappend(stopped, step->phase);
		if (res->notes.len > 0)
			appendStringInfoString(&res->notes, "; ");
		if (status == PARTITION_STEP_SKIPPED)
		{
			res->skipped = true;
			appendStringInfo(&res->notes, "%s of %s skipped after %d tries: %s; the rest of the %s phase waits for the next run",
							 step->action, step->partition, timing->lock_retries + 1, edata->message, step->phase);
			if (step->toplevel)
				partition_log_now(res->name, "skip", step->partition,
								  psprintf("%s: %s", step->action, edata->message));
		}
		else
		{
			res->failed = true;
			appendStringInfo(&res->notes, "%s of %s failed: %s", step->action, step->partition, edata->message);
			if (step->toplevel)
				partition_log_now(res->name, "fail", step->partition,
								  psprintf("%s: %s", step->action, edata->message));
		}
	}
	res->created = made;
	if (made > 0)
		partition_append(&res->done, "made %d partition%s", made, "", "s");
	if (res->moved > 0)
	{
		if (res->done.len > 0)
			appendStringInfoString(&res->done, ", ");
		appendStringInfo(&res->done, "moved " INT64_FORMAT " row%s out of the default partition",
						 res->moved, res->moved == 1 ? "" : "s");
	}
	if (res->detached > 0)
		partition_append(&res->done, "detached %d partition%s into the archive schema", res->detached, "", "s");
	if (res->dropped > 0)
		partition_append(&res->done, "dropped %d partition%s", res->dropped, "", "s");
}

/*
 * Records a set's outcome in opsdata.partitions.
 */
static void
partition_record(const PartitionSetResult *res)
{
	Oid argtypes[3] = {OIDOID, TEXTOID, TEXTOID};
	Datum values[3];

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	values[0] = ObjectIdGetDatum(res->parent);
	values[1] = CStringGetTextDatum(partition_status(res));
	values[2] = CStringGetTextDatum(partition_message(res));
	if (SPI_execute_with_args("UPDATE opsdata.partitions p SET last_run_at = pg_catalog.now(),"
							  " last_status = $2, last_message = $3,"
							  " default_partition = coalesce((SELECT t.partdefid <> 0 FROM pg_catalog.pg_partitioned_table t"
							  "  WHERE t.partrelid = p.parent), false)"
							  " WHERE p.parent = $1::pg_catalog.regclass",
							  3, argtypes, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "could not record the outcome of partition maintenance");
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();
}

/*
 * The pass: lock, read the settings and the sets, maintain each set.
 */
static void
partition_run(Oid only)
{
	MemoryContext runcxt;
	MemoryContext setcxt;
	PartitionTiming timing;
	List *sets = NIL;
	ListCell *lc;
	bool locked;
	char value[32];
	StringInfoData msg;

	runcxt = AllocSetContextCreate(TopMemoryContext, "partition maintenance pass", ALLOCSET_DEFAULT_SIZES);
	setcxt = AllocSetContextCreate(runcxt, "partition maintenance set", ALLOCSET_DEFAULT_SIZES);
	partition_stmt_cxt = AllocSetContextCreate(runcxt, "partition maintenance statement", ALLOCSET_DEFAULT_SIZES);

	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_execute("SELECT pg_catalog.pg_try_advisory_lock(1869639524, 1)", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not take the partition maintenance lock");
	{
		bool isnull;

		locked = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	if (locked)
	{
		Oid argtypes[1] = {OIDOID};
		Datum values[1];
		uint64 i;

		partition_read_timing(&timing);
		if (SPI_execute("DELETE FROM opsdata.partition_log WHERE logged_at < pg_catalog.now()"
						" - opsdata.setting('partition.log_retention')::pg_catalog.interval",
						false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not trim opsdata.partition_log");
		values[0] = ObjectIdGetDatum(only);
		if (SPI_execute_with_args("SELECT p.parent::pg_catalog.oid FROM opsdata.partitions p"
								  " WHERE $1 = 0 OR p.parent::pg_catalog.oid = $1"
								  " ORDER BY p.builtin DESC, p.parent::pg_catalog.text",
								  1, argtypes, values, NULL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read opsdata.partitions");
		for (i = 0; i < SPI_processed; i++)
		{
			bool isnull;
			MemoryContext old = MemoryContextSwitchTo(runcxt);

			sets = lappend_oid(sets, DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
																	SPI_tuptable->tupdesc, 1, &isnull)));
			MemoryContextSwitchTo(old);
		}
	}
	PopActiveSnapshot();
	SPI_finish();
	CommitTransactionCommand();

	if (!locked)
	{
		initStringInfo(&msg);
		pq_sendbyte(&msg, PARTITION_MSG_BUSY);
		partition_send(&msg);
		return;
	}

	/* Nothing this worker does waits longer than that for a lock. */
	snprintf(value, sizeof(value), "%d", timing.lock_timeout_ms);
	SetConfigOption("lock_timeout", value, PGC_USERSET, PGC_S_SESSION);

	foreach (lc, sets)
	{
		PartitionSetResult res;
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		MemoryContextReset(setcxt);
		old = MemoryContextSwitchTo(setcxt);
		memset(&res, 0, sizeof(res));
		res.parent = lfirst_oid(lc);
		initStringInfo(&res.done);
		initStringInfo(&res.notes);
		pgstat_report_activity(STATE_RUNNING, "partition maintenance");

		partition_maintain_set(&res, &timing, setcxt);
		MemoryContextSwitchTo(setcxt);
		partition_record(&res);
		MemoryContextSwitchTo(setcxt);
		partition_send_result(&res);
		MemoryContextSwitchTo(old);
	}
	pgstat_report_activity(STATE_IDLE, NULL);

	initStringInfo(&msg);
	pq_sendbyte(&msg, PARTITION_MSG_DONE);
	partition_send(&msg);
	MemoryContextDelete(runcxt);
}

/*
 * Entry point of the worker; main_arg is the handle of the segment holding
 * the task and the result queue.
 */
void
partition_worker_main(Datum main_arg)
{
	dsm_segment *seg;
	shm_toc *toc;
	PartitionTask *task;
	shm_mq *mq;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	CurrentResourceOwner = ResourceOwnerCreate(NULL, "pg_opsdata partition maintenance");
	seg = dsm_attach(DatumGetUInt32(main_arg));
	if (seg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("could not map the shared memory of a partition maintenance pass")));
	dsm_pin_mapping(seg);
	toc = shm_toc_attach(PARTITION_SHM_MAGIC, dsm_segment_address(seg));
	if (toc == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("invalid shared memory of a partition maintenance pass")));
	task = shm_toc_lookup(toc, PARTITION_KEY_TASK, false);
	mq = shm_toc_lookup(toc, PARTITION_KEY_QUEUE, false);
	shm_mq_set_sender(mq, MyProc);
	partition_mq = shm_mq_attach(mq, seg, NULL);

	BackgroundWorkerInitializeConnectionByOid(task->database, task->user, 0);
	pgstat_report_appname("pg_opsdata partition maintenance");

	partition_run(task->parent);

	proc_exit(0);
}
