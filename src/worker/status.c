/*-------------------------------------------------------------------------
 *
 * status.c
 *		The worker rows of opsdata.health(), and the small C helpers of the
 *		worker area's SQL API.
 *
 * opsdata._worker_status() reads shared memory: whether the launcher runs,
 * whether max_worker_processes was found used up, and one row per
 * database whose scheduler runs or was seen stopping, plus always one for
 * the current database.  The rows for failing and late jobs are computed in
 * SQL (opsdata._health_worker() in worker.sql).  opsdata._restore_under_way()
 * tells opsdata.check_restore() whether a restore is still under way.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/worker/status.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/pg_database.h"
#include "commands/dbcommands.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "core/opsdata.h"
#include "worker/worker_int.h"

PG_FUNCTION_INFO_V1(worker_status);
PG_FUNCTION_INFO_V1(worker_check_command);
PG_FUNCTION_INFO_V1(worker_acting_role);
PG_FUNCTION_INFO_V1(worker_restore_status);

/*
 * A job waiting this long for a job worker makes the scheduler row a warning.
 */
#define STATUS_WAIT_WARNING_MS (10 * 1000)

/* A timestamp as text; timestamptz_to_str() reuses one buffer. */
static char *
status_time(TimestampTz t)
{
	return pstrdup(timestamptz_to_str(t));
}

/* "scheduler" component name of a database. */
static char *
status_scheduler_name(Oid dboid)
{
	char *name = get_database_name(dboid);

	return psprintf("scheduler \"%s\"", name != NULL ? name : "?");
}

/* Why a scheduler waits for a job worker, as a clause. */
static const char *
status_wait_reason(WorkerWait why)
{
	switch (why)
	{
		case WORKER_WAIT_MAX_WORKERS:
			return psprintf("the %d allowed by pg_opsdata.max_workers are "
							"busy",
							worker_max_workers);
		case WORKER_WAIT_IN_LINE:
			return "another database goes first, as databases take turns";
		case WORKER_WAIT_SERVER:
			return "every background worker allowed by max_worker_processes "
				   "is in use; this database is next in line";
		case WORKER_WAIT_LAUNCHER:
			return "every background worker allowed by max_worker_processes "
				   "is in use, and the scheduler of another database goes "
				   "first";
		case WORKER_WAIT_NONE:
			break;
	}
	return "it is about to start one";
}

/* Why the current database gets no scheduler, or NULL if it should get one. */
static const char *
status_database_skipped(void)
{
	HeapTuple tup =
		SearchSysCache1(DATABASEOID, ObjectIdGetDatum(MyDatabaseId));
	const char *why = NULL;

	if (HeapTupleIsValid(tup))
	{
		Form_pg_database form = (Form_pg_database) GETSTRUCT(tup);

		if (form->datistemplate)
			why =
				"This database is a template: no job runs in it, so that the databases made from it start clean.";
		else if (!form->datallowconn)
			why =
				"This database does not allow connections: no job runs in it.";
		ReleaseSysCache(tup);
	}
	return why;
}

/*
 * opsdata._worker_status(): rows (component, status, detail) for the
 * launcher, worker capacity and schedulers.
 */
Datum
worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	WorkerShared copy;
	WorkerSlot *slots;
	WorkerSlot *mine = NULL;
	WorkerExit *my_exit = NULL;
	TimestampTz now = GetCurrentTimestamp();
	const char *skipped;
	TimestampTz exhausted_since;
	int nschedulers = 0;
	int njobs = 0;
	int i;

	InitMaterializedSRF(fcinfo, 0);

	if (!opsdata_preloaded || worker_shared == NULL)
	{
		opsdata_health_row(
			rsinfo, "launcher", "off",
			"Background workers need pg_opsdata in shared_preload_libraries: no job runs on schedule.");
		return (Datum) 0;
	}
	if (RecoveryInProgress())
	{
		opsdata_health_row(
			rsinfo, "launcher", "off",
			"This server is a hot standby: no job runs and nothing is written until it is promoted.");
		return (Datum) 0;
	}

	/* A consistent copy, so that nothing is done under the lock. */
	slots = palloc(sizeof(WorkerSlot) * worker_shared->nslots);
	LWLockAcquire(worker_shared->lock, LW_SHARED);
	memcpy(&copy, worker_shared, offsetof(WorkerShared, slots));
	memcpy(slots, worker_shared->slots,
		   sizeof(WorkerSlot) * worker_shared->nslots);
	LWLockRelease(worker_shared->lock);

	if (copy.launcher_pid == 0)
		opsdata_health_row(
			rsinfo, "launcher", "error",
			"The pg_opsdata launcher is not running; the server restarts it within 10 seconds. The server log tells why it stopped.");
	else
	{
		for (i = 0; i < copy.nslots; i++)
		{
			if (slots[i].kind == WORKER_SLOT_SCHEDULER)
				nschedulers++;
			else if (slots[i].kind == WORKER_SLOT_JOB)
				njobs++;
		}
		opsdata_health_row(
			rsinfo, "launcher", "ok",
			psprintf(
				"Running since %s (pid %d), with %d scheduler(s) and %d job worker(s); it restarts a stopped scheduler after %d ms and looks for changes at least every %d ms.",
				status_time(copy.launcher_started), (int) copy.launcher_pid,
				nschedulers, njobs, copy.launcher_restart_delay,
				copy.launcher_check_interval));
	}

	exhausted_since = worker_exhausted_since();
	if (exhausted_since != 0)
		opsdata_health_row(
			rsinfo, "worker capacity", "warning",
			psprintf(
				"Since %s, schedulers or jobs could not start: all %d background workers allowed by max_worker_processes are in use. Raise max_worker_processes to at least %d: one for the launcher, one per database with the extension and pg_opsdata.max_workers (%d) for jobs, besides those of parallel queries and logical replication.",
				status_time(exhausted_since), max_worker_processes,
				worker_needed_processes(), worker_max_workers));

	/* Every running scheduler, and those known to have stopped. */
	for (i = 0; i < copy.nslots; i++)
	{
		WorkerSlot *slot = &slots[i];

		if (slot->kind != WORKER_SLOT_SCHEDULER)
			continue;
		if (slot->dboid == MyDatabaseId)
		{
			mine = slot;
			continue;
		}
		opsdata_health_row(rsinfo, status_scheduler_name(slot->dboid), "ok",
						   slot->running
							   ? psprintf("Running since %s (pid %d).",
										  status_time(slot->started_at),
										  (int) slot->pid)
							   : "Starting.");
	}
	for (i = 0; i < WORKER_MAX_EXITS; i++)
	{
		WorkerExit *e = &copy.exits[i];
		bool running = false;
		int k;

		if (e->dboid == InvalidOid)
			continue;
		for (k = 0; k < copy.nslots; k++)
		{
			if (slots[k].kind == WORKER_SLOT_SCHEDULER &&
				slots[k].dboid == e->dboid)
				running = true;
		}
		if (running)
			continue;
		if (e->dboid == MyDatabaseId)
		{
			my_exit = e;
			continue;
		}
		opsdata_health_row(
			rsinfo, status_scheduler_name(e->dboid), "warning",
			psprintf(
				"Not running: stopped at %s after %d short run(s) in a row; restarts at %s.",
				status_time(e->exited_at), e->failures,
				status_time(e->restart_at)));
	}

	/* This database's scheduler. */
	skipped = status_database_skipped();
	if (skipped != NULL)
		opsdata_health_row(rsinfo, status_scheduler_name(MyDatabaseId), "off",
						   skipped);
	else if (mine != NULL && mine->waiting_since != 0)
		opsdata_health_row(
			rsinfo, status_scheduler_name(MyDatabaseId),
			TimestampDifferenceExceeds(mine->waiting_since, now,
									   STATUS_WAIT_WARNING_MS)
				? "warning"
				: "ok",
			psprintf("Running (pid %d), but since %s jobs wait for a job "
					 "worker: %s.",
					 (int) mine->pid, status_time(mine->waiting_since),
					 status_wait_reason(mine->wait_reason)));
	else if (mine != NULL)
		opsdata_health_row(
			rsinfo, status_scheduler_name(MyDatabaseId), "ok",
			mine->running
				? psprintf(
					  "Running since %s (pid %d); it reads its jobs again at least every %d ms%s.",
					  status_time(mine->started_at), (int) mine->pid,
					  mine->check_interval,
					  worker_restore_in_progress(MyDatabaseId)
						  ? "; jobs wait until the session restoring this database ends"
						  : "")
				: "Starting.");
	else if (my_exit != NULL)
		opsdata_health_row(
			rsinfo, status_scheduler_name(MyDatabaseId), "warning",
			psprintf(
				"Not running: stopped at %s after %d short run(s) in a row; restarts at %s.",
				status_time(my_exit->exited_at), my_exit->failures,
				status_time(my_exit->restart_at)));
	else if (exhausted_since != 0)
		opsdata_health_row(
			rsinfo, status_scheduler_name(MyDatabaseId), "warning",
			psprintf(
				"Not running: no background worker is free (max_worker_processes is %d).",
				max_worker_processes));
	else if (copy.launcher_pid == 0)
		opsdata_health_row(rsinfo, status_scheduler_name(MyDatabaseId),
						   "error",
						   "Not running: the launcher is not running.");
	else
		opsdata_health_row(
			rsinfo, status_scheduler_name(MyDatabaseId), "ok",
			"Starting: the launcher starts it once the extension's installation has committed.");

	return (Datum) 0;
}

/*
 * opsdata._worker_check_command(command text): raise a syntax error naming
 * the job command when it does not parse, or when it holds no statement.
 */
Datum
worker_check_command(PG_FUNCTION_ARGS)
{
	char *command = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MemoryContext cxt = CurrentMemoryContext;
	List *stmts = NIL;

	PG_TRY();
	{
		stmts = raw_parser(command, RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		ErrorData *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(
			ERROR,
			(errcode(edata->sqlerrcode),
			 errmsg("invalid job command: %s", edata->message),
			 errhint(
				 "A command is an SQL statement or a procedure call, such as CALL app.cleanup().")));
	}
	PG_END_TRY();

	if (stmts == NIL)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("job command must contain a statement")));
	PG_RETURN_VOID();
}

/*
 * opsdata._worker_acting_role(): the role the session acts as (its SET ROLE,
 * else its session user), unchanged by SECURITY DEFINER functions.
 */
Datum
worker_acting_role(PG_FUNCTION_ARGS)
{
	Name result = (Name) palloc0(NAMEDATALEN);

	namestrcpy(result, GetUserNameFromId(GetOuterUserId(), false));
	PG_RETURN_NAME(result);
}

/*
 * opsdata._restore_under_way() returns boolean: whether a dump is being
 * restored into the current database (worker_restore_under_way()).
 */
Datum
worker_restore_status(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(worker_restore_under_way(MyDatabaseId));
}
