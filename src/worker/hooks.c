/*-------------------------------------------------------------------------
 *
 * hooks.c
 *		What ordinary backends tell the launcher and the schedulers, and
 *		the hook that keeps databases droppable.
 *
 * Backends learn of the events the workers must react to, and pass them
 * on when their transaction commits (a transaction-end callback), never
 * before: a rolled-back CREATE EXTENSION must not start a scheduler, and a
 * scheduler woken before a change of opsdata.jobs commits would not see it.
 *
 *   CREATE EXTENSION  the install script calls opsdata._worker_register();
 *                     at commit the launcher gets an "installed" event.
 *                     When the session runs with row_security off, as
 *                     every pg_dump output sets it, a dump is being
 *                     restored: the database's jobs wait until this
 *                     session ends, so that they do not write rows the
 *                     restore is about to load.  Sessions that start
 *                     with SET row_security = off while a restore is under
 *                     way (pg_restore --jobs loads the data in new ones)
 *                     extend the wait until they end too, and it lasts a
 *                     few seconds past the last one (the scheduler also
 *                     waits while any pg_restore session is connected).
 *   DROP EXTENSION    the object access hook sees the extension dropped,
 *                     by any path; at commit, a "dropped" event.
 *   opsdata.jobs      a statement trigger; at commit the database's
 *                     scheduler is told to re-read its jobs.
 *   CREATE/DROP/ALTER DATABASE
 *                     at commit the launcher re-reads pg_database.
 *
 * A transaction that is prepared (PREPARE TRANSACTION) tells nobody: it
 * may be committed by another session, or after a restart, or rolled
 * back.  The session that runs COMMIT PREPARED looks whether the database
 * has the extension before and after, and tells the launcher at once if
 * that changed: the prepared transaction created the extension (a
 * scheduler starts) or dropped it (the workers are stopped).  The launcher
 * also checks again, every few check intervals, the databases it believes
 * have no extension, in case a notice was lost.  Changes of opsdata.jobs
 * made by a prepared transaction are seen by the scheduler within
 * pg_opsdata.check_interval.
 *
 * DROP DATABASE, CREATE DATABASE from a template, ALTER DATABASE RENAME and
 * SET TABLESPACE fail while another session is connected to the database.
 * Before they run, the utility hook takes a hold on the database (no
 * pg_opsdata worker may start there until the transaction ends), stops the
 * workers connected to it and waits for them to be gone, so these commands
 * succeed at once.  DROP EXTENSION pg_opsdata does the same, so that it
 * never waits behind a running job.  The hold is taken only when the
 * current user may run the command; otherwise anyone could stop the
 * workers of any database.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/worker/hooks.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/objectaccess.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/rls.h"
#include "utils/snapmgr.h"

#include "core/opsdata.h"
#include "worker/worker_int.h"

PG_FUNCTION_INFO_V1(worker_register_database);
PG_FUNCTION_INFO_V1(worker_jobs_changed);

/* What this transaction will tell the workers when it commits. */
static bool worker_pending_installed = false;
static bool worker_pending_restore = false;
static bool worker_pending_dropped = false;
static bool worker_pending_jobs_changed = false;
static bool worker_pending_db_changed = false;
static bool worker_holding = false;

static void worker_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
								  bool readOnlyTree,
								  ProcessUtilityContext context,
								  ParamListInfo params,
								  QueryEnvironment *queryEnv,
								  DestReceiver *dest, QueryCompletion *qc);
static void worker_object_access(ObjectAccessType access, Oid classId,
								 Oid objectId, int subId, void *arg);
static void worker_xact_callback(XactEvent event, void *arg);
static void worker_note_commit_prepared(bool present_before);

/*
 * Register the utility and object access handlers and the transaction
 * handler with the core (src/core/hooks.c); from worker_init() while
 * preloading.
 */
void
worker_install_hooks(void)
{
	opsdata_register_utility(OPSDATA_UTILITY_WORKER, worker_ProcessUtility);
	opsdata_register_object_access(OPSDATA_OBJECT_ACCESS_WORKER,
								   worker_object_access);
	opsdata_register_xact(OPSDATA_XACT_WORKER, worker_xact_callback, NULL);
}

/* Hold the database for this transaction and stop our workers there. */
static void
worker_hold(Oid dboid, const char *command)
{
	if (!OidIsValid(dboid))
		return;
	worker_holding = true;
	worker_hold_database(dboid, command);
}

/* The template a CREATE DATABASE copies, by name. */
static const char *
worker_createdb_template(CreatedbStmt *stmt)
{
	ListCell *lc;

	foreach (lc, stmt->options)
	{
		DefElem *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, "template") == 0 && def->arg != NULL)
			return defGetString(def);
	}
	return "template1";
}

/* True if the statement's options move the database to a tablespace. */
static bool
worker_alterdb_moves(AlterDatabaseStmt *stmt)
{
	ListCell *lc;

	foreach (lc, stmt->options)
	{
		if (strcmp(lfirst_node(DefElem, lc)->defname, "tablespace") == 0)
			return true;
	}
	return false;
}

/*
 * Before the commands that need a database free of sessions, hold it and
 * stop our workers there; note the commands the launcher must know about.
 */
static void
worker_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					  bool readOnlyTree, ProcessUtilityContext context,
					  ParamListInfo params, QueryEnvironment *queryEnv,
					  DestReceiver *dest, QueryCompletion *qc)
{
	Node *stmt = pstmt->utilityStmt;
	bool commit_prepared = false;
	bool present_before = false;

	if (worker_shared != NULL)
	{
		switch (nodeTag(stmt))
		{
			case T_TransactionStmt:
				if (((TransactionStmt *) stmt)->kind ==
						TRANS_STMT_COMMIT_PREPARED &&
					OidIsValid(MyDatabaseId))
				{
					commit_prepared = true;
					present_before =
						OidIsValid(get_extension_oid(OPSDATA_NAME, true));
				}
				break;
			case T_DropdbStmt:
			{
				Oid dboid =
					get_database_oid(((DropdbStmt *) stmt)->dbname, true);

				if (OidIsValid(dboid) &&
					opsdata_database_ownercheck(dboid, GetUserId()))
					worker_hold(dboid, "DROP DATABASE");
				worker_pending_db_changed = true;
				break;
			}
			case T_CreatedbStmt:
			{
				Oid dboid = get_database_oid(
					worker_createdb_template((CreatedbStmt *) stmt), true);

				if (OidIsValid(dboid) && have_createdb_privilege() &&
					opsdata_database_ownercheck(dboid, GetUserId()))
					worker_hold(dboid, "CREATE DATABASE");
				worker_pending_db_changed = true;
				break;
			}
			case T_RenameStmt:
			{
				RenameStmt *rename = (RenameStmt *) stmt;

				if (rename->renameType == OBJECT_DATABASE)
				{
					Oid dboid = get_database_oid(rename->subname, true);

					if (OidIsValid(dboid) &&
						opsdata_database_ownercheck(dboid, GetUserId()))
						worker_hold(dboid, "ALTER DATABASE RENAME");
					worker_pending_db_changed = true;
				}
				break;
			}
			case T_AlterDatabaseStmt:
			{
				AlterDatabaseStmt *alter = (AlterDatabaseStmt *) stmt;

				if (worker_alterdb_moves(alter))
				{
					Oid dboid = get_database_oid(alter->dbname, true);

					if (OidIsValid(dboid) &&
						opsdata_database_ownercheck(dboid, GetUserId()))
						worker_hold(dboid, "ALTER DATABASE SET TABLESPACE");
				}
				worker_pending_db_changed = true;
				break;
			}
			case T_DropStmt:
			{
				DropStmt *drop = (DropStmt *) stmt;
				ListCell *lc;

				if (drop->removeType != OBJECT_EXTENSION)
					break;
				foreach (lc, drop->objects)
				{
					Oid extoid;

					if (strcmp(strVal(lfirst(lc)), OPSDATA_NAME) != 0)
						continue;
					extoid = get_extension_oid(OPSDATA_NAME, true);
					if (OidIsValid(extoid) &&
						opsdata_extension_ownercheck(extoid, GetUserId()))
						worker_hold(MyDatabaseId, "DROP EXTENSION");
				}
				break;
			}
			default:
				break;
		}
	}

	opsdata_utility_next(pstmt, queryString, readOnlyTree, context, params,
						 queryEnv, dest, qc);

	if (commit_prepared)
		worker_note_commit_prepared(present_before);

	/*
	 * Every session of a restore starts with SET row_security = off.  While
	 * a restore is under way here, such a session is part of it: the jobs
	 * keep waiting until it ends too.  pg_restore --jobs loads the data in
	 * new sessions once the one that ran CREATE EXTENSION has left.
	 */
	if (worker_shared != NULL && IsA(stmt, VariableSetStmt) && !row_security &&
		OidIsValid(MyDatabaseId) && ((VariableSetStmt *) stmt)->name != NULL &&
		strcmp(((VariableSetStmt *) stmt)->name, "row_security") == 0 &&
		worker_restore_in_progress(MyDatabaseId))
		worker_add_restore(MyDatabaseId, MyProcPid);
}

/*
 * After COMMIT PREPARED: tell the launcher at once if the committed
 * transaction created or dropped the extension here (present_before says
 * whether it was there before).  The prepared transaction is committed
 * whatever happens to this statement's own transaction, so the notice
 * does not wait for it.
 */
static void
worker_note_commit_prepared(bool present_before)
{
	bool present;

	/* The committed changes are not in the catalog snapshot taken before. */
	InvalidateCatalogSnapshot();
	present = OidIsValid(get_extension_oid(OPSDATA_NAME, true));
	if (present && !present_before)
		worker_push_event(WORKER_EVENT_INSTALLED, MyDatabaseId, 0);
	else if (!present && present_before)
		worker_push_event(WORKER_EVENT_DROPPED, MyDatabaseId, 0);
}

/* Notice the extension being dropped, whatever statement drops it. */
static void
worker_object_access(ObjectAccessType access, Oid classId, Oid objectId,
					 int subId, void *arg)
{
	if (access == OAT_DROP && classId == ExtensionRelationId &&
		objectId == get_extension_oid(OPSDATA_NAME, true))
		worker_pending_dropped = true;
}

/*
 * At commit, pass on what this transaction did; at its end in any way,
 * release the holds it took.  Must not fail: it runs after the commit
 * record is written.
 */
static void
worker_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (worker_pending_dropped)
				worker_push_event(WORKER_EVENT_DROPPED, MyDatabaseId, 0);
			if (worker_pending_installed)
			{
				if (worker_pending_restore)
					worker_add_restore(MyDatabaseId, MyProcPid);
				worker_push_event(WORKER_EVENT_INSTALLED, MyDatabaseId, 0);
			}
			if (worker_pending_jobs_changed)
				worker_jobs_changed_now(MyDatabaseId);
			if (worker_pending_db_changed)
				worker_push_event(WORKER_EVENT_DB_CHANGED, InvalidOid, 0);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			/* COMMIT PREPARED tells the launcher, if it commits. */
			break;
		default:
			return;
	}

	worker_pending_installed = false;
	worker_pending_restore = false;
	worker_pending_dropped = false;
	worker_pending_jobs_changed = false;
	worker_pending_db_changed = false;
	if (worker_holding)
	{
		worker_release_holds();
		worker_holding = false;
	}
}

/*
 * opsdata._worker_register(): called by the install script, so that the
 * launcher starts a scheduler here once CREATE EXTENSION commits.
 */
Datum
worker_register_database(PG_FUNCTION_ARGS)
{
	worker_pending_installed = true;
	worker_pending_restore = !row_security;
	PG_RETURN_VOID();
}

/*
 * Statement trigger on opsdata.jobs: wake this database's scheduler when
 * the transaction commits.
 */
Datum
worker_jobs_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function %s was not called by the trigger manager",
						"opsdata._worker_jobs_changed")));
	worker_pending_jobs_changed = true;
	return PointerGetDatum(NULL);
}
