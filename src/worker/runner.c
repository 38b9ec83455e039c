/*-------------------------------------------------------------------------
 *
 * runner.c
 *		Runs one job and records the run: opsdata.run_job() in a session,
 *		and opsdata._run_scheduled_job() in a job worker.
 *
 * Both procedures go through runner_run(), so what a user sees with
 * CALL opsdata.run_job() is what the scheduler does:
 *
 *  1. Take the job's session-level advisory lock without waiting.  Held for
 *     the whole run, across the commits a procedure makes, it is what keeps
 *     a job from running twice at once anywhere in the database.  If it is
 *     taken, run_job() raises an error and a job worker exits quietly.
 *  2. As the extension owner, opsdata._job_start(): records any run left
 *     "running" by a dead process as crashed, decides whether a scheduled
 *     job is still due, advances its schedule, inserts the run (status
 *     running: the crash marker) and, when called non-atomically, commits.
 *     A run killed from here on is found later with a free lock and
 *     recorded as crashed.
 *  3. Run the command through SPI as the job's role (built-in jobs as the
 *     extension owner), with SECURITY_LOCAL_USERID_CHANGE so it cannot SET
 *     ROLE back, an error context naming the job, and a timer that cancels
 *     it after max_runtime.  Called non-atomically, a procedure in the
 *     command may COMMIT.
 *  4. As the extension owner, opsdata._job_finish(): status, error, and the
 *     retry with backoff; commits when non-atomic.  Then the error, if
 *     any, is raised again for the caller.
 *
 * Errors of the command are caught so that they can be recorded.  Called
 * atomically (in a transaction block, or inside a subtransaction) the
 * command runs in a subtransaction that is rolled back.  Called
 * non-atomically, no subtransaction can be used (it would forbid COMMIT in
 * the procedure), so the failed transaction is aborted and a new one
 * started, as SPI does when a procedure's COMMIT fails; the snapshot the
 * active portal kept went with the aborted transaction and is forgotten.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/worker/runner.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/lmgr.h"
#include "tcop/pquery.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/resowner.h"
#include "utils/timeout.h"

#include "core/opsdata.h"
#include "worker/worker_int.h"

PG_FUNCTION_INFO_V1(worker_run_job);
PG_FUNCTION_INFO_V1(worker_run_job_by_name);
PG_FUNCTION_INFO_V1(worker_run_scheduled_job);

/* Set by the job worker: this process exists to run scheduled jobs. */
bool worker_is_job_worker = false;

/* Set when a failed run was recorded before its error was raised again. */
bool worker_run_recorded = false;

/* What opsdata._job_start() returned. */
typedef struct RunnerRun
{
	int64 job_id;
	int64 run_id;
	char *name;
	char *command;
	char *run_as;
	bool builtin;
	int64 max_runtime_ms; /* 0: no limit */
	char *max_runtime_text;
} RunnerRun;

/* The jobs this session is running, to refuse a job running itself. */
static int64 runner_active[16];
static int runner_nactive = 0;

static bool runner_timeout_registered = false;
static TimeoutId runner_timeout_id;
static volatile sig_atomic_t runner_timeout_fired = false;

static void runner_run(int64 job_id, const char *name, bool manual,
					   FunctionCallInfo fcinfo);

/*
 * Timer handler: max_runtime has passed.  Cancel the running command like
 * statement_timeout does.
 */
static void
runner_timeout_handler(void)
{
	runner_timeout_fired = true;
	InterruptPending = true;
	QueryCancelPending = true;
	SetLatch(MyLatch);
}

/* Error context: which job (and run) an error comes from. */
static void
runner_error_context(void *arg)
{
	RunnerRun *run = (RunnerRun *) arg;

	errcontext("pg_opsdata job \"%s\" (run %lld)", run->name,
			   (long long) run->run_id);
}

/* The owner of the extension, who runs the bookkeeping and built-in jobs. */
static Oid
runner_extension_owner(void)
{
	Relation rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple tup;
	Oid owner = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(OPSDATA_NAME));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	if (!OidIsValid(owner))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension \"%s\" is not installed in this database",
						OPSDATA_NAME)));
	return owner;
}

/*
 * True if the procedure was called where it may not commit: in a
 * transaction block, from a function, or inside a subtransaction.
 */
static bool
runner_is_atomic(FunctionCallInfo fcinfo)
{
	if (fcinfo->context == NULL || !IsA(fcinfo->context, CallContext))
		return true;
	return ((CallContext *) fcinfo->context)->atomic || IsSubTransaction();
}

/* Text of column n of the first row SPI returned, copied in cxt, or NULL. */
static char *
runner_text(int n, MemoryContext cxt)
{
	char *value =
		SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, n);

	return value == NULL ? NULL : MemoryContextStrdup(cxt, value);
}

/*
 * Step 2: claim the run as the extension owner.  Returns false when a
 * scheduled job is no longer due.  Commits when not atomic.
 */
static bool
runner_start(int64 job_id, bool manual, bool atomic, Oid owner,
			 MemoryContext cxt, RunnerRun *run)
{
	Oid types[3] = {INT8OID, BOOLOID, INT4OID};
	Datum values[3];
	Oid save_userid;
	int save_sec;
	int ret;
	bool found;

	values[0] = Int64GetDatum(job_id);
	values[1] = BoolGetDatum(manual);
	values[2] = Int32GetDatum(MyProcPid);

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect_ext(atomic ? 0 : SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	ret = SPI_execute_with_args(
		"SELECT run_id, name, command, run_as, builtin,"
		" coalesce((extract(epoch FROM max_runtime) * 1000)::bigint, 0)"
		" FROM opsdata._job_start($1, $2, $3)",
		3, types, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not start job %lld: SPI error %d",
			 (long long) job_id, ret);
	found = SPI_processed > 0;
	if (found)
	{
		bool isnull;

		run->job_id = job_id;
		run->run_id = DatumGetInt64(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		run->name = runner_text(2, cxt);
		run->command = runner_text(3, cxt);
		run->run_as = runner_text(4, cxt);
		run->builtin = DatumGetBool(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
		run->max_runtime_ms = DatumGetInt64(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull));
		run->max_runtime_text =
			run->max_runtime_ms % 1000 == 0
				? psprintf("%lld s", (long long) (run->max_runtime_ms / 1000))
				: psprintf("%lld ms", (long long) run->max_runtime_ms);
		run->max_runtime_text =
			MemoryContextStrdup(cxt, run->max_runtime_text);
	}
	/*
	 * Back to the caller before the commit: a new transaction remembers the
	 * user.
	 */
	SetUserIdAndSecContext(save_userid, save_sec);
	if (!atomic)
		SPI_commit();
	SPI_finish();
	MemoryContextSwitchTo(cxt);
	return found;
}

/*
 * Step 4: record the outcome as the extension owner; commits when not atomic.
 */
static void
runner_finish(RunnerRun *run, bool atomic, Oid owner, const char *status,
			  ErrorData *edata, const char *message)
{
	Oid types[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum values[4];
	char nulls[4] = {' ', ' ', ' ', ' '};
	MemoryContext cxt = CurrentMemoryContext;
	Oid save_userid;
	int save_sec;
	int ret;

	values[0] = Int64GetDatum(run->run_id);
	values[1] = CStringGetTextDatum(status);
	if (edata != NULL)
		values[2] = CStringGetTextDatum(unpack_sql_state(edata->sqlerrcode));
	else
		nulls[2] = 'n';
	if (message != NULL)
		values[3] = CStringGetTextDatum(message);
	else
		nulls[3] = 'n';

	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect_ext(atomic ? 0 : SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	ret = SPI_execute_with_args("SELECT opsdata._job_finish($1, $2, $3, $4)",
								4, types, values, nulls, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not record the run of job \"%s\": SPI error %d",
			 run->name, ret);
	SetUserIdAndSecContext(save_userid, save_sec);
	if (!atomic)
		SPI_commit();
	SPI_finish();
	MemoryContextSwitchTo(cxt);
}

/*
 * Step 3: run the command as role, catching its error.  Returns the error
 * (in cxt), or NULL on success; *timed_out tells a cancellation by
 * max_runtime.
 */
static ErrorData *
runner_execute(RunnerRun *run, bool atomic, Oid role, MemoryContext cxt,
			   bool *timed_out)
{
	ResourceOwner owner = CurrentResourceOwner;
	ErrorContextCallback errcallback;
	ErrorData *volatile edata = NULL;
	Oid save_userid;
	int save_sec;

	GetUserIdAndSecContext(&save_userid, &save_sec);
	*timed_out = false;
	runner_timeout_fired = false;

	if (atomic)
		BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);

	PG_TRY();
	{
		SPIExecuteOptions options;
		int ret;

		errcallback.callback = runner_error_context;
		errcallback.arg = run;
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;

		if (!OidIsValid(role))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("role \"%s\" does not exist", run->run_as),
					 errdetail("Job \"%s\" runs as that role.", run->name)));

		SetUserIdAndSecContext(role, save_sec | SECURITY_LOCAL_USERID_CHANGE);
		if (run->max_runtime_ms > 0)
			enable_timeout_after(runner_timeout_id,
								 (int) Min(run->max_runtime_ms, INT_MAX));

		if (SPI_connect_ext(atomic ? 0 : SPI_OPT_NONATOMIC) != SPI_OK_CONNECT)
			elog(ERROR, "could not connect to SPI");
		memset(&options, 0, sizeof(options));
		options.allow_nonatomic = !atomic;
		ret = SPI_execute_extended(run->command, &options);
		if (ret == SPI_ERROR_TRANSACTION)
			ereport(
				ERROR,
				(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
				 errmsg(
					 "a job command cannot contain transaction control statements"),
				 errhint(
					 "Put the work in a procedure that commits, and make the command CALL it.")));
		if (ret < 0)
			elog(ERROR, "SPI error %d while running job \"%s\"", ret,
				 run->name);
		SPI_finish();

		if (run->max_runtime_ms > 0)
			disable_timeout(runner_timeout_id, false);
		/*
		 * A cancellation our timer asked for too late must not hit the
		 * bookkeeping.
		 */
		if (runner_timeout_fired)
			QueryCancelPending = false;
		SetUserIdAndSecContext(save_userid, save_sec);
		error_context_stack = errcallback.previous;

		if (atomic)
		{
			ReleaseCurrentSubTransaction();
			CurrentResourceOwner = owner;
		}
	}
	PG_CATCH();
	{
		if (run->max_runtime_ms > 0)
			disable_timeout(runner_timeout_id, false);
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		*timed_out = runner_timeout_fired &&
					 edata->sqlerrcode == ERRCODE_QUERY_CANCELED;

		if (atomic)
		{
			RollbackAndReleaseCurrentSubTransaction();
			CurrentResourceOwner = owner;
		}
		else
		{
			/*
			 * As SPI does when a procedure's COMMIT fails: abort and start
			 * afresh.  The active portal's snapshot belonged to the aborted
			 * transaction.
			 */
			AbortCurrentTransaction();
			if (ActivePortal != NULL)
				ActivePortal->portalSnapshot = NULL;
			SetUserIdAndSecContext(save_userid, save_sec);
			StartTransactionCommand();
		}
		SetUserIdAndSecContext(save_userid, save_sec);
		MemoryContextSwitchTo(cxt);
	}
	PG_END_TRY();

	return edata;
}

/*
 * Run a job now, in this process, and record the run.  manual: called by
 * opsdata.run_job() (the run is recorded as manual, the job's schedule is
 * left alone, and its error is raised); else by a job worker for a due job.
 */
static void
runner_run(int64 job_id, const char *name, bool manual,
		   FunctionCallInfo fcinfo)
{
	bool atomic = runner_is_atomic(fcinfo);
	MemoryContext cxt;
	LOCKTAG tag;
	RunnerRun run;
	Oid owner;
	int i;

	if (RecoveryInProgress())
		ereport(
			ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("cannot run job %lld during recovery", (long long) job_id),
			 errdetail(
				 "Jobs write to the database; they run on the primary.")));

	for (i = 0; i < runner_nactive; i++)
	{
		if (runner_active[i] == job_id)
			ereport(ERROR, (errcode(ERRCODE_OBJECT_IN_USE),
							errmsg("job %lld cannot run itself",
								   (long long) job_id)));
	}
	if (runner_nactive >= (int) lengthof(runner_active))
		ereport(ERROR, (errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
						errmsg("jobs are nested too deeply")));

	if (!runner_timeout_registered)
	{
		runner_timeout_id =
			RegisterTimeout(USER_TIMEOUT, runner_timeout_handler);
		runner_timeout_registered = true;
	}

	worker_job_lock_tag(&tag, job_id);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		if (!manual)
		{
			ereport(DEBUG1, (errmsg("pg_opsdata job %lld is already running",
									(long long) job_id)));
			return;
		}
		if (name != NULL)
			ereport(
				ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("job \"%s\" is already running", name),
				 errhint(
					 "A job runs once at a time; run it again when the run in progress has ended.")));
		ereport(
			ERROR,
			(errcode(ERRCODE_OBJECT_IN_USE),
			 errmsg("job %lld is already running", (long long) job_id),
			 errhint(
				 "A job runs once at a time; run it again when the run in progress has ended.")));
	}

	/* Outlives the transactions a non-atomic run commits. */
	cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_opsdata job run",
								ALLOCSET_SMALL_SIZES);
	runner_active[runner_nactive++] = job_id;
	memset(&run, 0, sizeof(run));

	PG_TRY();
	{
		owner = runner_extension_owner();
		MemoryContextSwitchTo(cxt);
		if (runner_start(job_id, manual, atomic, owner, cxt, &run))
		{
			ErrorData *edata;
			bool timed_out;
			Oid role;
			const char *status;
			const char *message = NULL;

			role = run.builtin ? owner : get_role_oid(run.run_as, true);
			if (worker_is_job_worker)
			{
				char appname[NAMEDATALEN];

				snprintf(appname, sizeof(appname), "%s %s", WORKER_JOB_TYPE,
						 run.name);
				SetConfigOption("application_name", appname, PGC_USERSET,
								PGC_S_SESSION);
				pgstat_report_activity(STATE_RUNNING, run.command);
			}

			edata = runner_execute(&run, atomic, role, cxt, &timed_out);
			if (edata == NULL)
				status = "succeeded";
			else if (timed_out)
			{
				status = "timed out";
				message = psprintf(
					"The run exceeded its max_runtime (%s) and was cancelled.",
					run.max_runtime_text);
			}
			else
			{
				status = "failed";
				message = edata->message;
			}
			runner_finish(&run, atomic, owner, status, edata, message);

			if (edata != NULL)
			{
				worker_run_recorded = true;
				if (timed_out)
					ereport(
						ERROR,
						(errcode(ERRCODE_QUERY_CANCELED),
						 errmsg(
							 "job \"%s\" was cancelled after running longer than its max_runtime (%s)",
							 run.name, run.max_runtime_text),
						 errcontext("pg_opsdata job \"%s\" (run %lld)",
									run.name, (long long) run.run_id)));
				ReThrowError(edata);
			}
		}
	}
	PG_FINALLY();
	{
		runner_nactive--;
		LockRelease(&tag, ExclusiveLock, true);
		/* The scheduler skips a job whose lock is taken: now it is free. */
		worker_jobs_changed_now(MyDatabaseId);
	}
	PG_END_TRY();

	MemoryContextDelete(cxt);
}

/*
 * CALL opsdata.run_job(job bigint): run a job now in this session.
 */
Datum
worker_run_job(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("job must not be null")));
	runner_run(PG_GETARG_INT64(0), NULL, true, fcinfo);
	PG_RETURN_VOID();
}

/*
 * CALL opsdata.run_job(name text): the same, for the job of that name.
 */
Datum
worker_run_job_by_name(PG_FUNCTION_ARGS)
{
	Oid types[1] = {TEXTOID};
	Datum values[1];
	Oid save_userid;
	int save_sec;
	int64 job_id = 0;
	bool found;
	int ret;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("job name must not be null")));

	values[0] = PG_GETARG_DATUM(0);
	GetUserIdAndSecContext(&save_userid, &save_sec);
	SetUserIdAndSecContext(runner_extension_owner(),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "could not connect to SPI");
	ret = SPI_execute_with_args(
		"SELECT job_id FROM opsdata.jobs WHERE name = $1", 1, types, values,
		NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not look up job: SPI error %d", ret);
	found = SPI_processed > 0;
	if (found)
	{
		bool isnull;

		job_id = DatumGetInt64(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	SetUserIdAndSecContext(save_userid, save_sec);

	if (!found)
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
						errmsg("job \"%s\" does not exist",
							   text_to_cstring(PG_GETARG_TEXT_PP(0))),
						errhint("The jobs are listed in opsdata.jobs.")));

	runner_run(job_id, text_to_cstring(PG_GETARG_TEXT_PP(0)), true, fcinfo);
	PG_RETURN_VOID();
}

/*
 * CALL opsdata._run_scheduled_job(job bigint): what a job worker runs.
 */
Datum
worker_run_scheduled_job(PG_FUNCTION_ARGS)
{
	if (!worker_is_job_worker)
		ereport(
			ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg(
				 "scheduled runs are started by the pg_opsdata scheduler only"),
			 errhint("Use CALL opsdata.run_job() to run a job now.")));
	runner_run(PG_GETARG_INT64(0), NULL, false, fcinfo);
	PG_RETURN_VOID();
}
