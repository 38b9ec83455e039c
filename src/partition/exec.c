/*-------------------------------------------------------------------------
 *
 * exec.c
 *		Running the steps of a partition maintenance plan.
 *
 * A step is a list of SQL statements that make, fill, detach or drop one
 * partition.  partition_exec_step() runs them in a subtransaction of the
 * caller's transaction:
 *
 *	- with the privileges of the table's owner, in a privileged region
 *	  (core/privileged.h: a security-restricted operation, search_path
 *	  pg_catalog, pg_temp), so that code the owner controls (index
 *	  expressions, triggers, defaults) never runs with the rights of the
 *	  extension owner, and partitions it creates belong to the owner;
 *	- under lock_timeout = partition.lock_timeout, so that no application
 *	  query queues behind it for longer than that;
 *	- when a lock is not granted (lock_not_available or deadlock_detected),
 *	  the subtransaction is rolled back, which releases every lock it took,
 *	  and the step is tried again after a pause drawn at random between half
 *	  and one and a half times partition.retry_delay, at most
 *	  partition.lock_retries more times; then it is reported as skipped.
 *
 * A step that moves rows out of the default partition runs with
 * session_replication_role = replica: the rows are not changed, only moved,
 * so the table's triggers (and the actions of foreign keys pointing at it)
 * must not fire (the guards of pg_opsdata's tables, ENABLE ALWAYS, let the
 * owner through).  In a set with a default partition, a step locks the
 * parent in ACCESS EXCLUSIVE mode before its ATTACH, under the same
 * lock_timeout, so that no query plans with the partitions of before the
 * step and reads with a snapshot of after it (partition_plan.sql says
 * why); the lock is held until the step's transaction ends.
 *
 * Before the statements of a retention step that removes a partition
 * (drop, archive), partition_retention_hook is told, in the same
 * subtransaction and as the owner (retention.h): the audit area records
 * there that the entries of the partition left by retention.
 *
 * Each step that succeeds writes its row of opsdata.partition_log in the
 * same transaction, as the user that called us: the log says exactly what
 * was committed.  The caller commits (a pass, after every step) or
 * keeps going in its transaction (manage_partitions()).  A pass (pass.c)
 * stamps its rows with the time it began (pass_started).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/partition/exec.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "core/opsdata.h"
#include "core/privileged.h"
#include "partition/partition.h"
#include "partition/retention.h"

/* Told before a partition is removed for retention (retention.h). */
partition_retention_hook_type partition_retention_hook = NULL;

/*
 * Reads partition.lock_timeout, partition.detach_timeout,
 * partition.lock_retries and partition.retry_delay.  The caller is
 * connected to SPI.
 */
void
partition_read_timing(PartitionTiming *timing)
{
	bool isnull;
	int rc;

	rc = SPI_execute(
		"SELECT (EXTRACT(epoch FROM opsdata.setting('partition.lock_timeout')::pg_catalog.interval) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4,"
		" (EXTRACT(epoch FROM opsdata.setting('partition.detach_timeout')::pg_catalog.interval) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4,"
		" opsdata.setting('partition.lock_retries')::pg_catalog.int4,"
		" (EXTRACT(epoch FROM opsdata.setting('partition.retry_delay')::pg_catalog.interval) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int4",
		true, 1);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "read the partition maintenance settings");
	timing->lock_timeout_ms =
		Max(DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull)),
			1);
	timing->detach_timeout_ms =
		Max(DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 2, &isnull)),
			1);
	timing->lock_retries = DatumGetInt32(SPI_getbinval(
		SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	timing->retry_delay_ms = DatumGetInt32(SPI_getbinval(
		SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
}

static char *
partition_text_column(HeapTuple tuple, TupleDesc desc, int column,
					  MemoryContext cxt)
{
	char *value = SPI_getvalue(tuple, desc, column);

	return value ? MemoryContextStrdup(cxt, value) : NULL;
}

/*
 * Returns the steps of opsdata._partition_plan() for a set, as a List of
 * PartitionStep allocated in cxt.  The caller is connected to SPI and runs
 * as the extension owner; the plan is computed in its transaction.
 */
List *
partition_plan(Oid parent, const char *start_from, bool maintain,
			   MemoryContext cxt)
{
	Oid argtypes[3] = {REGCLASSOID, TEXTOID, BOOLOID};
	Datum values[3];
	char nulls[3] = {' ', ' ', ' '};
	List *steps = NIL;
	uint64 i;
	int rc;

	values[0] = ObjectIdGetDatum(parent);
	if (start_from)
		values[1] = CStringGetTextDatum(start_from);
	else
		nulls[1] = 'n';
	values[2] = BoolGetDatum(maintain);
	rc = SPI_execute_with_args(
		"SELECT step, phase, action, partition, statements, toplevel, replica, detail"
		" FROM opsdata._partition_plan($1, $2, $3) ORDER BY step",
		3, argtypes, values, nulls, false, 0);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "plan partition maintenance");

	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple tuple = SPI_tuptable->vals[i];
		TupleDesc desc = SPI_tuptable->tupdesc;
		PartitionStep *step =
			MemoryContextAllocZero(cxt, sizeof(PartitionStep));
		Datum d;
		bool isnull;

		step->step = DatumGetInt32(SPI_getbinval(tuple, desc, 1, &isnull));
		step->phase = partition_text_column(tuple, desc, 2, cxt);
		step->action = partition_text_column(tuple, desc, 3, cxt);
		step->partition = partition_text_column(tuple, desc, 4, cxt);
		d = SPI_getbinval(tuple, desc, 5, &isnull);
		if (!isnull)
		{
			ArrayType *array = DatumGetArrayTypeP(d);
			Datum *elems;
			bool *elemnulls;
			int nelems;
			int j;

			deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems,
							  &elemnulls, &nelems);
			for (j = 0; j < nelems; j++)
			{
				MemoryContext old;

				if (elemnulls[j])
					continue;
				old = MemoryContextSwitchTo(cxt);
				step->statements =
					lappend(step->statements, TextDatumGetCString(elems[j]));
				MemoryContextSwitchTo(old);
			}
		}
		step->toplevel = DatumGetBool(SPI_getbinval(tuple, desc, 6, &isnull));
		step->replica = DatumGetBool(SPI_getbinval(tuple, desc, 7, &isnull));
		step->detail = partition_text_column(tuple, desc, 8, cxt);
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			steps = lappend(steps, step);
			MemoryContextSwitchTo(old);
		}
	}
	return steps;
}

/*
 * The pass_started of the rows this process writes to opsdata.partition_log
 * now: the running pass's (pass.c), or NULL outside a pass.
 */
static void
partition_log_pass(Datum *value, char *null)
{
	*value = TimestampTzGetDatum(partition_current_pass);
	*null = partition_current_pass != 0 ? ' ' : 'n';
}

/*
 * Appends a row to opsdata.partition_log in the current transaction, as the
 * current user.
 */
void
partition_log(const char *parent_name, const char *action,
			  const char *partition, const char *detail)
{
	Oid argtypes[5] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum values[5];
	char nulls[5] = {' ', ' ', ' ', ' ', ' '};
	int rc;

	values[0] = CStringGetTextDatum(parent_name);
	values[1] = CStringGetTextDatum(action);
	if (partition)
		values[2] = CStringGetTextDatum(partition);
	else
		nulls[2] = 'n';
	if (detail)
		values[3] = CStringGetTextDatum(detail);
	else
		nulls[3] = 'n';
	partition_log_pass(&values[4], &nulls[4]);
	opsdata_spi_connect(0);
	/* Objects of 0.1 have no pass_started: its rows go without. */
	rc = SPI_execute_with_args(
		opsdata_schema_at_least("0.2")
			? "INSERT INTO opsdata.partition_log (parent, action, partition, detail, pass_started)"
			  " VALUES ($1, $2, $3, $4, $5)"
			: "INSERT INTO opsdata.partition_log (parent, action, partition, detail)"
			  " VALUES ($1, $2, $3, $4)",
		opsdata_schema_at_least("0.2") ? 5 : 4, argtypes, values, nulls, false,
		0);
	if (rc != SPI_OK_INSERT)
		opsdata_spi_failed(rc, "write to opsdata.partition_log");
	SPI_finish();
}

/*
 * True for the errors that mean a lock was not granted in time.
 */
bool
partition_lock_error(const ErrorData *edata)
{
	return edata->sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		   edata->sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED;
}

/*
 * Waits between half and one and a half times mean_ms, on the latch so that
 * a termination request is served at once.
 */
void
partition_sleep(int mean_ms)
{
	TimestampTz end;

	if (mean_ms <= 0)
		return;
	end = TimestampTzPlusMilliseconds(
		GetCurrentTimestamp(),
		(long) (mean_ms * (0.5 + pg_prng_double(&pg_global_prng_state))));
	for (;;)
	{
		long left =
			TimestampDifferenceMilliseconds(GetCurrentTimestamp(), end);

		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, left,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Runs the statements of a step as owner, under lock_timeout, in the
 * current subtransaction, in a privileged region.  Returns the rows inserted
 * (those moved out of the default partition).  Settings and the user are
 * restored on success; on error the user at once, and the settings by the
 * caller's subtransaction abort (partition_try_batch).
 */
static int64
partition_exec_statements(const PartitionStep *step, Oid owner,
						  const PartitionTiming *timing)
{
	OpsdataPrivileged priv;
	char value[32];
	volatile int64 rows = 0;
	ListCell *lc;

	opsdata_privileged_enter(&priv, owner);
	snprintf(value, sizeof(value), "%d", timing->lock_timeout_ms);
	opsdata_privileged_set(&priv, "lock_timeout", value, PGC_USERSET);
	if (step->replica)
		opsdata_privileged_set(&priv, "session_replication_role", "replica",
							   PGC_SUSET);

	PG_TRY();
	{
		opsdata_spi_connect(0);
		if (partition_retention_hook != NULL && step->partition != NULL &&
			strcmp(step->phase, "retention") == 0 &&
			(strcmp(step->action, "drop") == 0 ||
			 strcmp(step->action, "archive") == 0))
			partition_retention_hook(step->partition);
		foreach (lc, step->statements)
		{
			const char *sql = (const char *) lfirst(lc);

			CHECK_FOR_INTERRUPTS();
			if (SPI_execute(sql, false, 0) == SPI_OK_INSERT)
				rows += SPI_processed;
		}
		SPI_finish();
	}
	PG_CATCH();
	{
		opsdata_privileged_unwind(&priv);
		PG_RE_THROW();
	}
	PG_END_TRY();

	opsdata_privileged_exit(&priv);
	return rows;
}

/*
 * Logs the steps of a batch that succeeded, in one statement.
 */
static void
partition_log_batch(const char *parent_name, List *steps, const int64 *rows)
{
	Oid argtypes[5] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
					   TIMESTAMPTZOID};
	Datum values[5];
	char valnulls[5] = {' ', ' ', ' ', ' ', ' '};
	int n = list_length(steps);
	Datum *actions = palloc(n * sizeof(Datum));
	Datum *partitions = palloc(n * sizeof(Datum));
	Datum *details = palloc(n * sizeof(Datum));
	bool *nulls = palloc0(n * sizeof(bool));
	int dims[1] = {n};
	int lbs[1] = {1};
	int i = 0;
	int rc;
	ListCell *lc;

	foreach (lc, steps)
	{
		const PartitionStep *step = (const PartitionStep *) lfirst(lc);

		actions[i] = CStringGetTextDatum(step->action);
		partitions[i] =
			CStringGetTextDatum(step->partition ? step->partition : "");
		if (strcmp(step->action, "move") == 0)
			details[i] = CStringGetTextDatum(psprintf(
				"%s, " INT64_FORMAT " row%s moved from the default partition",
				step->detail, rows[i], rows[i] == 1 ? "" : "s"));
		else
			details[i] = CStringGetTextDatum(step->detail ? step->detail : "");
		i++;
	}
	values[0] = CStringGetTextDatum(parent_name);
	values[1] = PointerGetDatum(construct_md_array(
		actions, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_md_array(
		partitions, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_md_array(
		details, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	partition_log_pass(&values[4], &valnulls[4]);
	opsdata_spi_connect(0);
	/* Objects of 0.1 have no pass_started: its rows go without. */
	rc = SPI_execute_with_args(
		opsdata_schema_at_least("0.2")
			? "INSERT INTO opsdata.partition_log (parent, action, partition, detail, pass_started)"
			  " SELECT $1, u.a,"
			  "        CASE WHEN u.p OPERATOR(pg_catalog.<>) '' THEN u.p END,"
			  "        CASE WHEN u.d OPERATOR(pg_catalog.<>) '' THEN u.d END, $5"
			  "   FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) u(a, p, d)"
			: "INSERT INTO opsdata.partition_log (parent, action, partition, detail)"
			  " SELECT $1, u.a,"
			  "        CASE WHEN u.p OPERATOR(pg_catalog.<>) '' THEN u.p END,"
			  "        CASE WHEN u.d OPERATOR(pg_catalog.<>) '' THEN u.d END"
			  "   FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) u(a, p, d)",
		opsdata_schema_at_least("0.2") ? 5 : 4, argtypes, values, valnulls,
		false, 0);
	if (rc != SPI_OK_INSERT)
		opsdata_spi_failed(rc, "write to opsdata.partition_log");
	SPI_finish();
}

/*
 * One try of a batch of steps in one subtransaction.  Returns NULL and the
 * rows each step moved in rows[], or the error (in the caller's memory
 * context) after rolling the subtransaction back.
 */
static ErrorData *
partition_try_batch(List *steps, Oid owner, const PartitionTiming *timing,
					int64 *rows)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner resowner = CurrentResourceOwner;
	ErrorData *volatile edata = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		ListCell *lc;
		int i = 0;

		foreach (lc, steps)
			rows[i++] = partition_exec_statements(
				(const PartitionStep *) lfirst(lc), owner, timing);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = resowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = resowner;
	}
	PG_END_TRY();
	return edata;
}

/*
 * Runs steps (none top-level, no note) all at once in the current
 * transaction, as manage_partitions() does: one subtransaction for them all,
 * tried again as a whole when a lock is not granted; on success logs them
 * and returns PARTITION_STEP_DONE.  Otherwise returns SKIPPED or FAILED and
 * the last error in *error; nothing of the steps remains.
 */
PartitionStepStatus
partition_exec_batch(List *steps, Oid owner, const char *parent_name,
					 const PartitionTiming *timing, ErrorData **error)
{
	int64 *rows = palloc0(Max(list_length(steps), 1) * sizeof(int64));
	int attempt;

	*error = NULL;
	if (steps == NIL)
		return PARTITION_STEP_DONE;
	for (attempt = 0;; attempt++)
	{
		ErrorData *edata = partition_try_batch(steps, owner, timing, rows);

		if (edata == NULL)
		{
			partition_log_batch(parent_name, steps, rows);
			return PARTITION_STEP_DONE;
		}
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);
		if (!partition_lock_error(edata) &&
			edata->sqlerrcode != ERRCODE_CHECK_VIOLATION)
		{
			*error = edata;
			return PARTITION_STEP_FAILED;
		}
		if (attempt >= timing->lock_retries)
		{
			*error = edata;
			return partition_lock_error(edata) ? PARTITION_STEP_SKIPPED
											   : PARTITION_STEP_FAILED;
		}
		FreeErrorData(edata);
		partition_sleep(timing->retry_delay_ms);
	}
}

/*
 * Runs one step (not a top-level one) in the current transaction, with
 * retries; on success logs it and returns PARTITION_STEP_DONE with the rows
 * moved in *rows.  Otherwise returns SKIPPED (no lock in any try) or FAILED
 * and the last error in *error, allocated in the caller's memory context;
 * nothing of the step remains.  A query cancel is not caught.
 */
PartitionStepStatus
partition_exec_step(const PartitionStep *step, Oid owner,
					const char *parent_name, const PartitionTiming *timing,
					int64 *rows, ErrorData **error)
{
	int attempt;

	*rows = 0;
	*error = NULL;
	for (attempt = 0;; attempt++)
	{
		int64 moved = 0;
		ErrorData *edata = partition_try_batch(
			list_make1((PartitionStep *) step), owner, timing, &moved);

		if (edata == NULL)
		{
			char *detail = step->detail;

			if (strcmp(step->action, "move") == 0)
				detail = psprintf("%s, " INT64_FORMAT
								  " row%s moved from the default partition",
								  step->detail, moved, moved == 1 ? "" : "s");
			partition_log(parent_name, step->action, step->partition, detail);
			*rows = moved;
			return PARTITION_STEP_DONE;
		}
		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
			ReThrowError(edata);

		/*
		 * Rows that reached the default partition between the move and the
		 * ATTACH make the ATTACH fail; a new try moves them too.
		 */
		if (!partition_lock_error(edata) &&
			!(strcmp(step->action, "move") == 0 &&
			  edata->sqlerrcode == ERRCODE_CHECK_VIOLATION))
		{
			*error = edata;
			return PARTITION_STEP_FAILED;
		}
		if (attempt >= timing->lock_retries)
		{
			*error = edata;
			return PARTITION_STEP_SKIPPED;
		}
		FreeErrorData(edata);
		partition_sleep(timing->retry_delay_ms);
	}
}
