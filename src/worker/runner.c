/*-------------------------------------------------------------------------
 *
 * runner.c
 *		Runs one job and records the run: opsdata.run_job() in a session,
 *		and worker_run_in_job_worker() in a job worker.
 *
 * Both go through the same steps, so that what a user sees with
 * CALL opsdata.run_job() is what the scheduler does:
 *
 *  1. Take the job's session-level advisory lock without waiting.  Held for
 *     the whole run, across the commits a procedure makes, it is what keeps
 *     a job from running twice at once anywhere in the database.  If it is
 *     taken, run_job() raises an error and a job worker exits quietly.
 *  2. As the extension owner, in a privileged region (core/privileged.h),
 *     opsdata._job_start(): records any run left "running" by a dead
 *     process as crashed, decides whether a scheduled job is still due,
 *     advances its schedule, inserts the run (status running: the crash
 *     marker) and commits when it can.  A run killed from here on is found
 *     later with a free lock and recorded as crashed.
 *  3. Run the command as the job's role (built-in jobs: the extension
 *     owner), with search_path = pg_catalog, pg_temp, application_name
 *     "pg_opsdata job <name>", an error context naming the job, a timer
 *     that cancels it after max_runtime, and auditing on: the command's
 *     statements are audited like a client's, though run by pg_opsdata.
 *  4. As the extension owner, opsdata._job_finish(): status, error, and the
 *     retry with backoff.  Then the error, if any, is raised again.
 *
 * Who the command runs as, and how:
 *
 *  - A job worker is connected as the job's role (the scheduler passes it;
 *    worker_job_role() says which role and whether it may connect).  The
 *    command is the session's own: it runs as top-level statements through
 *    portals, as a client's query does (opsdata_toplevel_exec, in core),
 *    so a procedure may COMMIT, SET ROLE to a role the job's role may
 *    become, create temporary tables.  A built-in job whose command is
 *    that of a job entry (worker.h, entry.c) runs the entry instead, in
 *    this process: pg_opsdata's own work, which commits its own
 *    transactions and is not audited as statements.  When the role is
 *    missing or may not log in, the worker is connected as the bootstrap
 *    superuser and only records the failed run.
 *  - opsdata.run_job() refuses a job whose role the caller is not a member
 *    of (superusers aside; built-in jobs, whose commands nobody can change,
 *    may be run by whoever may call run_job).  When the caller's session
 *    user is the job's role itself, and run_job is called outside a
 *    transaction block, the command runs as if the session had sent it
 *    (its procedures may commit).  Otherwise it runs in a privileged region
 *    as the job's role, in a subtransaction of the caller's transaction: a
 *    security-restricted operation, which cannot SET ROLE back to the
 *    caller, leave settings or temporary tables behind, or commit.
 *
 * Errors of the command are caught so that they can be recorded.  In a
 * region, the subtransaction is rolled back.  In the caller's own session,
 * called non-atomically, no subtransaction can be used (it would forbid
 * COMMIT in the procedure), so the failed transaction is aborted and a new
 * one started, as SPI does when a procedure's COMMIT fails; the snapshot
 * the active portal kept went with the aborted transaction.  In a job
 * worker, the failed transaction is aborted.
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

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_authid.h"
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
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "core/opsdata.h"
#include "core/privileged.h"
#include "worker/worker_int.h"

PG_FUNCTION_INFO_V1(worker_run_job);
PG_FUNCTION_INFO_V1(worker_run_job_by_name);
PG_FUNCTION_INFO_V1(worker_run_scheduled_job);

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

/* How the command of a run is run (runner_execute). */
typedef enum RunnerMode
{
	RUNNER_REGION,	 /* run_job(): as the job's role, in a region */
	RUNNER_OWN_ROLE, /* run_job() by the job's role, may commit */
	RUNNER_TOPLEVEL	 /* a job worker: top-level statements or an entry */
} RunnerMode;

/* The jobs this session is running, to refuse a job running itself. */
static int64 runner_active[16];
static int runner_nactive = 0;

static bool runner_timeout_registered = false;
static TimeoutId runner_timeout_id;
static volatile sig_atomic_t runner_timeout_fired = false;

static void runner_run(int64 job_id, const char *name,
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

static void
runner_register_timeout(void)
{
	if (!runner_timeout_registered)
	{
		runner_timeout_id =
			RegisterTimeout(USER_TIMEOUT, runner_timeout_handler);
		runner_timeout_registered = true;
	}
}

/* Error context: which job (and run) an error comes from. */
static void
runner_error_context(void *arg)
{
	RunnerRun *run = (RunnerRun *) arg;

	errcontext("pg_opsdata job \"%s\" (run %lld)", run->name,
			   (long long) run->run_id);
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

/* application_name of a running job. */
static char *
runner_application_name(const RunnerRun *run)
{
	char appname[NAMEDATALEN];

	snprintf(appname, sizeof(appname), "%s %s", WORKER_JOB_TYPE, run->name);
	return pstrdup(appname);
}

/*
 * The role a job worker connects as to run a job: its run_as role, or the
 * extension owner for a built-in job.  InvalidOid when that role cannot
 * start a session in this database (it does not exist, may not log in, or
 * lacks CONNECT); *sqlstate and *why then say why.  Caller is in a
 * transaction.
 */
Oid
worker_job_role(const char *run_as, bool builtin, Oid owner, int *sqlstate,
				char **why)
{
	Oid role = builtin ? owner : get_role_oid(run_as, true);
	HeapTuple tuple;
	bool canlogin;

	*sqlstate = 0;
	*why = NULL;
	if (!OidIsValid(role))
	{
		*sqlstate = ERRCODE_UNDEFINED_OBJECT;
		*why = psprintf("role \"%s\" does not exist", run_as);
		return InvalidOid;
	}
	tuple = SearchSysCache1(AUTHOID, ObjectIdGetDatum(role));
	if (!HeapTupleIsValid(tuple))
	{
		*sqlstate = ERRCODE_UNDEFINED_OBJECT;
		*why = psprintf("role with OID %u does not exist", role);
		return InvalidOid;
	}
	canlogin = ((Form_pg_authid) GETSTRUCT(tuple))->rolcanlogin;
	ReleaseSysCache(tuple);
	if (!canlogin)
	{
		*sqlstate = ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
		*why = psprintf(
			"a job worker cannot connect as role \"%s\": the role is not permitted to log in",
			GetUserNameFromId(role, false));
		return InvalidOid;
	}
	if (!superuser_arg(role) &&
		pg_database_aclcheck(MyDatabaseId, role, ACL_CONNECT) != ACLCHECK_OK)
	{
		*sqlstate = ERRCODE_INSUFFICIENT_PRIVILEGE;
		*why = psprintf(
			"a job worker cannot connect as role \"%s\": the role may not connect to this database",
			GetUserNameFromId(role, false));
		return InvalidOid;
	}
	return role;
}

/* What runner_lookup() read of a job. */
typedef struct RunnerLookup
{
	int64 job_id;	  /* in: the job, or 0 to look it up by name */
	const char *name; /* in: its name when job_id is 0 */
	bool found;
	char *job_name;
	char *run_as;
	bool builtin;
	MemoryContext cxt;
} RunnerLookup;

static void
runner_lookup_as_owner(void *arg)
{
	RunnerLookup *look = (RunnerLookup *) arg;
	Oid types[1];
	Datum values[1];
	int ret;

	if (look->job_id != 0)
	{
		types[0] = INT8OID;
		values[0] = Int64GetDatum(look->job_id);
	}
	else
	{
		types[0] = TEXTOID;
		values[0] = CStringGetTextDatum(look->name);
	}
	opsdata_spi_connect(0);
	ret = SPI_execute_with_args(
		look->job_id != 0
			? "SELECT j.job_id, j.run_as, j.builtin, j.name FROM opsdata.jobs j WHERE j.job_id OPERATOR(pg_catalog.=) $1"
			: "SELECT j.job_id, j.run_as, j.builtin, j.name FROM opsdata.jobs j WHERE j.name OPERATOR(pg_catalog.=) $1",
		1, types, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		opsdata_spi_failed(ret, "look up a job");
	look->found = SPI_processed > 0;
	if (look->found)
	{
		bool isnull;

		look->job_id = DatumGetInt64(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		look->run_as = runner_text(2, look->cxt);
		look->builtin = DatumGetBool(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
		look->job_name = runner_text(4, look->cxt);
	}
	SPI_finish();
}

/*
 * Read a job's role as the extension owner: by id, or by name when job_id
 * is 0.  Returns whether the job exists.
 */
static bool
runner_lookup(int64 job_id, const char *name, Oid owner, RunnerLookup *look)
{
	memset(look, 0, sizeof(*look));
	look->job_id = job_id;
	look->name = name;
	look->cxt = CurrentMemoryContext;
	opsdata_run_as(owner, runner_lookup_as_owner, look);
	return look->found;
}

/*
 * Raise an error unless the current user may run, with run_job(), a job
 * running as run_as: superusers may run any job, anyone may run a built-in
 * job, others only a job whose role they are a member of.  A job whose
 * role is gone runs nothing; its run records that.
 */
static void
runner_check_permission(const char *name, const char *run_as, bool builtin)
{
	Oid role;

	if (builtin || superuser())
		return;
	role = get_role_oid(run_as, true);
	if (!OidIsValid(role) || is_member_of_role(GetUserId(), role))
		return;
	ereport(
		ERROR,
		(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
		 errmsg("permission denied to run job \"%s\"", name),
		 errdetail(
			 "The job runs as role \"%s\", and role \"%s\" is not a member of it.",
			 run_as, GetUserNameFromId(GetUserId(), false)),
		 errhint(
			 "Only members of a job's role, and superusers, may run it with opsdata.run_job().")));
}

/* Arguments of _job_start(), and its row. */
typedef struct RunnerStart
{
	int64 job_id;
	bool manual;
	MemoryContext cxt;
	RunnerRun *run;
	bool found;
} RunnerStart;

static void
runner_start_as_owner(void *arg)
{
	RunnerStart *start = (RunnerStart *) arg;
	RunnerRun *run = start->run;
	Oid types[3] = {INT8OID, BOOLOID, INT4OID};
	Datum values[3];
	int ret;

	values[0] = Int64GetDatum(start->job_id);
	values[1] = BoolGetDatum(start->manual);
	values[2] = Int32GetDatum(MyProcPid);
	ret = SPI_execute_with_args(
		"SELECT s.run_id, s.name, s.command, s.run_as, s.builtin,"
		" COALESCE((extract(epoch FROM s.max_runtime) OPERATOR(pg_catalog.*) 1000)::pg_catalog.int8, 0)"
		" FROM opsdata._job_start($1, $2, $3) s",
		3, types, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		opsdata_spi_failed(
			ret, psprintf("start job %lld", (long long) start->job_id));
	start->found = SPI_processed > 0;
	if (start->found)
	{
		bool isnull;
		MemoryContext cxt = start->cxt;

		run->job_id = start->job_id;
		run->run_id = DatumGetInt64(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		run->name = runner_text(2, cxt);
		run->command = runner_text(3, cxt);
		run->run_as = runner_text(4, cxt);
		run->builtin = DatumGetBool(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 5, &isnull));
		run->max_runtime_ms = DatumGetInt64(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 6, &isnull));
		run->max_runtime_text = MemoryContextStrdup(
			cxt,
			run->max_runtime_ms % 1000 == 0
				? psprintf("%lld s", (long long) (run->max_runtime_ms / 1000))
				: psprintf("%lld ms", (long long) run->max_runtime_ms));
	}
}

/*
 * Step 2: claim the run as the extension owner.  Returns false when a
 * scheduled job is no longer due.  Commits when not atomic.
 */
static bool
runner_start(int64 job_id, bool manual, bool atomic, Oid owner,
			 MemoryContext cxt, RunnerRun *run)
{
	RunnerStart start;

	memset(&start, 0, sizeof(start));
	start.job_id = job_id;
	start.manual = manual;
	start.cxt = cxt;
	start.run = run;

	opsdata_spi_connect(atomic ? 0 : SPI_OPT_NONATOMIC);
	/* The region ends before the commit: it cannot span one. */
	opsdata_run_as(owner, runner_start_as_owner, &start);
	if (!atomic)
		SPI_commit();
	SPI_finish();
	MemoryContextSwitchTo(cxt);
	return start.found;
}

/* Arguments of _job_finish(). */
typedef struct RunnerFinish
{
	const RunnerRun *run;
	const char *status;
	int sqlstate; /* 0 for none */
	const char *message;
} RunnerFinish;

static void
runner_finish_as_owner(void *arg)
{
	RunnerFinish *finish = (RunnerFinish *) arg;
	Oid types[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
	Datum values[4];
	char nulls[4] = {' ', ' ', ' ', ' '};
	int ret;

	values[0] = Int64GetDatum(finish->run->run_id);
	values[1] = CStringGetTextDatum(finish->status);
	if (finish->sqlstate != 0)
		values[2] = CStringGetTextDatum(unpack_sql_state(finish->sqlstate));
	else
		nulls[2] = 'n';
	if (finish->message != NULL)
		values[3] = CStringGetTextDatum(finish->message);
	else
		nulls[3] = 'n';
	ret = SPI_execute_with_args("SELECT opsdata._job_finish($1, $2, $3, $4)",
								4, types, values, nulls, false, 0);
	if (ret != SPI_OK_SELECT)
		opsdata_spi_failed(
			ret, psprintf("record the run of job \"%s\"", finish->run->name));
}

/*
 * Step 4: record the outcome as the extension owner; commits when not atomic.
 */
static void
runner_finish(RunnerRun *run, bool atomic, Oid owner, const char *status,
			  int sqlstate, const char *message)
{
	MemoryContext cxt = CurrentMemoryContext;
	RunnerFinish finish;

	finish.run = run;
	finish.status = status;
	finish.sqlstate = sqlstate;
	finish.message = message;
	opsdata_spi_connect(atomic ? 0 : SPI_OPT_NONATOMIC);
	opsdata_run_as(owner, runner_finish_as_owner, &finish);
	if (!atomic)
		SPI_commit();
	SPI_finish();
	MemoryContextSwitchTo(cxt);
}

/* The status and message of a run that ended with edata (NULL: success). */
static const char *
runner_outcome(const RunnerRun *run, ErrorData *edata, bool timed_out,
			   const char **message)
{
	*message = NULL;
	if (edata == NULL)
		return "succeeded";
	if (timed_out)
	{
		*message = psprintf(
			"The run exceeded its max_runtime (%s) and was cancelled.",
			run->max_runtime_text);
		return "timed out";
	}
	*message = edata->message;
	return "failed";
}

/* The error a timed-out run raises for its caller. */
static void
runner_raise_timeout(const RunnerRun *run)
{
	ereport(
		ERROR,
		(errcode(ERRCODE_QUERY_CANCELED),
		 errmsg(
			 "job \"%s\" was cancelled after running longer than its max_runtime (%s)",
			 run->name, run->max_runtime_text),
		 errcontext("pg_opsdata job \"%s\" (run %lld)", run->name,
					(long long) run->run_id)));
}

/* SPI's answer to a job command, turned into the error a user reads. */
static void
runner_check_spi_result(const RunnerRun *run, int ret)
{
	if (ret == SPI_ERROR_TRANSACTION)
		ereport(
			ERROR,
			(errcode(ERRCODE_INVALID_TRANSACTION_TERMINATION),
			 errmsg(
				 "a job command cannot contain transaction control statements"),
			 errhint(
				 "Put the work in a procedure that commits, and make the command CALL it.")));
	if (ret == SPI_ERROR_COPY)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("a job command cannot copy to or from the client"),
				 errhint("Copy to or from a file or a program instead.")));
	if (ret < 0)
		opsdata_spi_failed(ret, psprintf("run job \"%s\"", run->name));
}

/* A job command may not COMMIT or ROLLBACK by itself: a procedure may. */
static void
runner_check_statement(RawStmt *raw, void *arg)
{
	if (IsA(raw->stmt, TransactionStmt))
		runner_check_spi_result((const RunnerRun *) arg,
								SPI_ERROR_TRANSACTION);
}

/* The command through SPI, for run_job(). */
static void
runner_spi_execute(const RunnerRun *run, bool nonatomic)
{
	SPIExecuteOptions options;
	int ret;

	opsdata_spi_connect(nonatomic ? SPI_OPT_NONATOMIC : 0);
	memset(&options, 0, sizeof(options));
	options.allow_nonatomic = nonatomic;
	ret = SPI_execute_extended(run->command, &options);
	runner_check_spi_result(run, ret);
	SPI_finish();
}

/*
 * Step 3: run the command, catching its error.  Returns the error (in
 * cxt), or NULL on success; *timed_out tells a cancellation by max_runtime.
 * Every mode runs it with an error context naming the job, the max_runtime
 * timer, and auditing on; they differ in where it runs and how an error is
 * undone:
 *
 *  - RUNNER_REGION (run_job()): as role, in a privileged region, in a
 *    subtransaction of the caller's transaction, rolled back on error;
 *  - RUNNER_OWN_ROLE (run_job() by the job's role outside a transaction
 *    block): as the session's own statements, non-atomic, so a procedure
 *    may commit, with search_path and application_name set for the run
 *    (opsdata_own_role_enter) and set back afterwards; on error the
 *    transaction is aborted and a new one started, as SPI does when a
 *    procedure's COMMIT fails (the active portal's snapshot belonged to the
 *    aborted transaction); the audit state ends with the run's record
 *    (runner_finish);
 *  - RUNNER_TOPLEVEL (a job worker, outside any transaction): entry, when
 *    the job is a built-in one with an entry (worker.h), else the command
 *    as top-level statements of the session, as a client's simple query is
 *    run (opsdata_toplevel_exec); either may commit; on error every
 *    transaction is aborted.
 */
static ErrorData *
runner_execute(RunnerRun *run, RunnerMode mode, Oid role,
			   const WorkerEntry *entry, MemoryContext cxt, bool *timed_out)
{
	ResourceOwner resowner = CurrentResourceOwner;
	ErrorContextCallback errcallback;
	ErrorData *volatile edata = NULL;
	OpsdataPrivileged priv;
	OpsdataOwnRole own;
	volatile int audit_saved = -1;

	*timed_out = false;
	runner_timeout_fired = false;
	memset(&priv, 0, sizeof(priv));

	if (mode == RUNNER_REGION)
	{
		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
	}
	else if (mode == RUNNER_OWN_ROLE)
	{
		MemoryContextSwitchTo(cxt);
		opsdata_own_role_enter(&own, runner_application_name(run), cxt);
		audit_saved = audit_user_statements_begin();
	}

	PG_TRY();
	{
		errcallback.callback = runner_error_context;
		errcallback.arg = run;
		errcallback.previous = error_context_stack;
		error_context_stack = &errcallback;

		if (mode == RUNNER_REGION)
		{
			if (!OidIsValid(role))
				ereport(
					ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("role \"%s\" does not exist", run->run_as),
					 errdetail("Job \"%s\" runs as that role.", run->name)));
			opsdata_privileged_enter(&priv, role);
			opsdata_privileged_set(&priv, "application_name",
								   runner_application_name(run), PGC_USERSET);
			audit_saved = audit_user_statements_begin();
		}
		if (run->max_runtime_ms > 0)
			enable_timeout_after(runner_timeout_id,
								 (int) Min(run->max_runtime_ms, INT_MAX));

		if (entry != NULL)
		{
			/* pg_opsdata's own work: bounded by its own settings. */
			SetConfigOption("statement_timeout", "0", PGC_USERSET,
							PGC_S_SESSION);
			entry->run((Datum) 0);
		}
		else if (mode == RUNNER_TOPLEVEL)
		{
			audit_saved = audit_user_statements_begin();
			opsdata_toplevel_exec(run->command, runner_check_statement, run);
			audit_user_statements_end(audit_saved);
			audit_saved = -1;
		}
		else
			runner_spi_execute(run, mode == RUNNER_OWN_ROLE);

		if (run->max_runtime_ms > 0)
			disable_timeout(runner_timeout_id, false);
		/*
		 * A cancellation our timer asked for too late must not hit the
		 * bookkeeping.
		 */
		if (runner_timeout_fired)
			QueryCancelPending = false;
		if (mode == RUNNER_REGION)
		{
			audit_user_statements_end(audit_saved);
			audit_saved = -1;
			opsdata_privileged_exit(&priv);
		}
		error_context_stack = errcallback.previous;

		if (mode == RUNNER_REGION)
		{
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = resowner;
		}
	}
	PG_CATCH();
	{
		if (run->max_runtime_ms > 0)
			disable_timeout(runner_timeout_id, false);
		if (mode == RUNNER_REGION)
		{
			if (audit_saved >= 0)
				audit_user_statements_end(audit_saved);
			audit_saved = -1;
			opsdata_privileged_unwind(&priv);
		}
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		*timed_out = runner_timeout_fired &&
					 edata->sqlerrcode == ERRCODE_QUERY_CANCELED;

		switch (mode)
		{
			case RUNNER_REGION:
				RollbackAndReleaseCurrentSubTransaction();
				CurrentResourceOwner = resowner;
				break;
			case RUNNER_OWN_ROLE:
				AbortCurrentTransaction();
				if (ActivePortal != NULL)
					ActivePortal->portalSnapshot = NULL;
				StartTransactionCommand();
				break;
			case RUNNER_TOPLEVEL:
				AbortOutOfAnyTransaction();
				if (audit_saved >= 0)
					audit_user_statements_end(audit_saved);
				audit_saved = -1;
				break;
		}
		MemoryContextSwitchTo(cxt);
	}
	PG_END_TRY();

	if (mode == RUNNER_OWN_ROLE)
	{
		/* Committed with the run's record (runner_finish). */
		audit_user_statements_end(audit_saved);
		opsdata_own_role_exit(&own);
	}
	else if (mode == RUNNER_TOPLEVEL)
		pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(cxt);
	return edata;
}

/*
 * Run a job now, in this session, and record the run: what
 * opsdata.run_job() does.  name is the job's name when the caller gave it.
 */
static void
runner_run(int64 job_id, const char *name, FunctionCallInfo fcinfo)
{
	bool atomic = runner_is_atomic(fcinfo);
	MemoryContext cxt;
	LOCKTAG tag;
	RunnerRun run;
	RunnerLookup look;
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

	/* Who may run it, before anything is locked or recorded. */
	owner = opsdata_extension_owner();
	if (runner_lookup(job_id, NULL, owner, &look))
		runner_check_permission(look.job_name, look.run_as, look.builtin);

	runner_register_timeout();
	worker_job_lock_tag(&tag, job_id);
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
	{
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
		MemoryContextSwitchTo(cxt);
		if (runner_start(job_id, true, atomic, owner, cxt, &run))
		{
			ErrorData *edata;
			bool timed_out;
			Oid role;
			Oid userid;
			int sec_context;
			RunnerMode mode;
			const char *status;
			const char *message;

			/* The job may have changed since it was looked up. */
			runner_check_permission(run.name, run.run_as, run.builtin);
			role = run.builtin ? owner : get_role_oid(run.run_as, true);
			GetUserIdAndSecContext(&userid, &sec_context);
			mode = !atomic && OidIsValid(role) && role == userid &&
						   role == GetSessionUserId() && sec_context == 0
					   ? RUNNER_OWN_ROLE
					   : RUNNER_REGION;

			edata = runner_execute(&run, mode, role, NULL, cxt, &timed_out);
			status = runner_outcome(&run, edata, timed_out, &message);
			runner_finish(&run, atomic, owner, status,
						  edata != NULL ? edata->sqlerrcode : 0, message);

			if (edata != NULL)
			{
				worker_run_recorded = true;
				if (timed_out)
					runner_raise_timeout(&run);
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
 * In a job worker connected as role (InvalidOid: as the bootstrap
 * superuser, because the job's role may not connect), run a job if it is
 * due and the role is still the job's, and record the run.  Called outside
 * any transaction.  A failure of the job is recorded, then raised.
 */
void
worker_run_in_job_worker(int64 job_id, Oid role)
{
	MemoryContext cxt;
	LOCKTAG tag;
	RunnerRun run;
	Oid owner;

	runner_register_timeout();
	cxt = AllocSetContextCreate(TopMemoryContext, "pg_opsdata job run",
								ALLOCSET_SMALL_SIZES);
	memset(&run, 0, sizeof(run));
	worker_job_lock_tag(&tag, job_id);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
	{
		CommitTransactionCommand();
		ereport(DEBUG1, (errmsg("pg_opsdata job %lld is already running",
								(long long) job_id)));
		return;
	}

	PG_TRY();
	{
		RunnerLookup look;
		bool started = false;
		int refused_sqlstate = 0;
		char *refused = NULL;

		PushActiveSnapshot(GetTransactionSnapshot());
		MemoryContextSwitchTo(cxt);
		owner = opsdata_extension_owner();
		if (runner_lookup(job_id, NULL, owner, &look))
		{
			Oid wanted = worker_job_role(look.run_as, look.builtin, owner,
										 &refused_sqlstate, &refused);

			/*
			 * Run only as the role the job has now: the scheduler starts the
			 * job again, connected as that role, when it changed.
			 */
			if (OidIsValid(wanted)
					? wanted == role && wanted == GetSessionUserId()
					: !OidIsValid(role))
				started = runner_start(job_id, false, true, owner, cxt, &run);
		}
		PopActiveSnapshot();
		CommitTransactionCommand();

		if (started)
		{
			ErrorData *edata = NULL;
			bool timed_out = false;
			const char *status;
			const char *message;
			int sqlstate;

			if (OidIsValid(role))
			{
				SetConfigOption("application_name",
								runner_application_name(&run), PGC_USERSET,
								PGC_S_SESSION);
				edata = runner_execute(
					&run, RUNNER_TOPLEVEL, role,
					run.builtin ? worker_entry_for_command(run.command) : NULL,
					cxt, &timed_out);
				status = runner_outcome(&run, edata, timed_out, &message);
				sqlstate = edata != NULL ? edata->sqlerrcode : 0;
			}
			else
			{
				status = "failed";
				message = refused != NULL
							  ? refused
							  : "the job's role cannot run the job";
				sqlstate = refused_sqlstate != 0
							   ? refused_sqlstate
							   : ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION;
			}

			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			MemoryContextSwitchTo(cxt);
			runner_finish(&run, true, owner, status, sqlstate, message);
			PopActiveSnapshot();
			CommitTransactionCommand();
			MemoryContextSwitchTo(cxt);

			if (edata != NULL || !OidIsValid(role))
			{
				worker_run_recorded = true;
				if (timed_out)
					runner_raise_timeout(&run);
				if (edata != NULL)
					ReThrowError(edata);
				ereport(ERROR, (errcode(sqlstate), errmsg("%s", message),
								errcontext("pg_opsdata job \"%s\" (run %lld)",
										   run.name, (long long) run.run_id)));
			}
		}
	}
	PG_FINALLY();
	{
		LockRelease(&tag, ExclusiveLock, true);
		/* The scheduler skips a job whose lock is taken: now it is free. */
		worker_jobs_changed_now(MyDatabaseId);
	}
	PG_END_TRY();
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
	runner_run(PG_GETARG_INT64(0), NULL, fcinfo);
	PG_RETURN_VOID();
}

/*
 * CALL opsdata.run_job(name text): the same, for the job of that name.
 */
Datum
worker_run_job_by_name(PG_FUNCTION_ARGS)
{
	RunnerLookup look;
	char *name;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("job name must not be null")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!runner_lookup(0, name, opsdata_extension_owner(), &look))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
						errmsg("job \"%s\" does not exist", name),
						errhint("The jobs are listed in opsdata.jobs.")));

	runner_run(look.job_id, name, fcinfo);
	PG_RETURN_VOID();
}

/*
 * CALL opsdata._run_scheduled_job(job bigint): kept for the SQL of
 * pg_opsdata 0.1, which names it.  Job workers run jobs without it
 * (worker_run_in_job_worker).
 */
Datum
worker_run_scheduled_job(PG_FUNCTION_ARGS)
{
	ereport(
		ERROR,
		(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
		 errmsg("scheduled runs are started by the pg_opsdata scheduler only"),
		 errhint("Use CALL opsdata.run_job() to run a job now.")));
	PG_RETURN_VOID();
}
