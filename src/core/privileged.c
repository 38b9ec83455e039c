/*-------------------------------------------------------------------------
 *
 * privileged.c
 *		Privileged regions: SQL run as another role, in a pinned
 *		environment, as PostgreSQL's own maintenance commands run it.
 *
 * A region is what VACUUM, REINDEX and REFRESH MATERIALIZED VIEW do around
 * the code of a table's owner, applied to every statement pg_opsdata runs
 * with rights that are not the caller's:
 *
 *	- a new GUC nest level, at which search_path is pg_catalog, pg_temp:
 *	  an operator, function or type named without a schema can only be a
 *	  built-in one (pg_temp is never searched for operators and functions,
 *	  and comes after pg_catalog for relations and types).  Whatever the
 *	  code inside SETs is rolled back at the end of the region;
 *	- the user id switched with SECURITY_LOCAL_USERID_CHANGE and
 *	  SECURITY_RESTRICTED_OPERATION: the code inside can neither SET ROLE
 *	  nor SET SESSION AUTHORIZATION back to the caller, nor create
 *	  temporary tables (which would shadow the caller's tables in pg_temp),
 *	  nor leave cursors WITH HOLD or prepared statements behind.
 *
 * The statements themselves still name every operator and function with
 * its schema (OPERATOR(pg_catalog.=), pg_catalog.count): the pinned
 * search_path is the second line of defence, not the only one.
 *
 * A region begins and ends in one transaction.  It cannot span a COMMIT:
 * StartTransaction() insists that no security context is set, an abort
 * resets the user id to what it was when the transaction started, and the
 * nest level is popped at commit.  PostgreSQL forbids transaction control
 * in SECURITY DEFINER procedures for the same reason.  So code that must
 * commit, SET ROLE or create temporary tables, a job's command, never runs
 * in a region with another role's rights: a job worker connects as the
 * job's role (opsdata_worker_connect), and then nothing needs switching.
 *
 * On error, whoever catches it rolls back a (sub)transaction, whose abort
 * restores the user id and pops the nest level (AbortSubTransaction and
 * AtEOSubXact_GUC).  opsdata_run_as() and opsdata_privileged_unwind()
 * restore the user id at once, in the PG_CATCH, so that nothing that runs
 * before that abort (an error context callback, a PG_CATCH further up) runs
 * with the region's rights.  Regions nest: each restores what it found.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/privileged.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "core/opsdata.h"
#include "core/privileged.h"

/* Set once the worker connected through opsdata_worker_connect(). */
static bool privileged_worker_connected = false;

/*
 * Enter a region as role: a new GUC nest level with the pinned search_path,
 * and the user id switched as a security-restricted operation.  The caller
 * is in a transaction and leaves the region in the same one, with
 * opsdata_privileged_exit(), or by an error that aborts a (sub)transaction
 * begun before the region.
 */
void
opsdata_privileged_enter(OpsdataPrivileged *priv, Oid role)
{
	Assert(IsTransactionState());
	if (!OidIsValid(role))
		elog(ERROR, "pg_opsdata cannot run SQL as an invalid role");

	GetUserIdAndSecContext(&priv->saved_userid, &priv->saved_sec_context);
	priv->nestlevel = NewGUCNestLevel();
	priv->active = true;
	(void) set_config_option("search_path", OPSDATA_PINNED_SEARCH_PATH,
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE, true,
							 0, false);
	SetUserIdAndSecContext(role, priv->saved_sec_context |
									 SECURITY_LOCAL_USERID_CHANGE |
									 SECURITY_RESTRICTED_OPERATION);
}

/*
 * Set a GUC for the rest of the region (rolled back when it ends).
 * context is the level of rights the caller vouches for (PGC_SUSET for
 * settings only superusers may change).
 */
void
opsdata_privileged_set(OpsdataPrivileged *priv, const char *name,
					   const char *value, GucContext context)
{
	Assert(priv->active);
	(void) set_config_option(name, value, context, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/*
 * Leave a region normally: roll back every setting made inside it (the
 * pinned search_path included) and switch back to the saved user.
 */
void
opsdata_privileged_exit(OpsdataPrivileged *priv)
{
	Assert(priv->active);
	AtEOXact_GUC(false, priv->nestlevel);
	SetUserIdAndSecContext(priv->saved_userid, priv->saved_sec_context);
	priv->active = false;
}

/*
 * In a PG_CATCH around a region: switch back to the saved user at once.
 * The settings are rolled back by the abort of the (sub)transaction that
 * must follow.
 */
void
opsdata_privileged_unwind(OpsdataPrivileged *priv)
{
	if (!priv->active)
		return;
	SetUserIdAndSecContext(priv->saved_userid, priv->saved_sec_context);
	priv->active = false;
}

/*
 * Run func(arg) in a region as role.  An error propagates after the user
 * id has been restored; the caller's (sub)transaction abort does the rest.
 */
void
opsdata_run_as(Oid role, OpsdataPrivilegedFunc func, void *arg)
{
	OpsdataPrivileged priv;

	opsdata_privileged_enter(&priv, role);
	PG_TRY();
	{
		func(arg);
	}
	PG_CATCH();
	{
		opsdata_privileged_unwind(&priv);
		PG_RE_THROW();
	}
	PG_END_TRY();
	opsdata_privileged_exit(&priv);
}

/*
 * The owner of relation relid; an error when there is no such relation.
 * Caller is in a transaction.
 */
Oid
opsdata_table_owner(Oid relid)
{
	HeapTuple tuple = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid owner;

	if (!HeapTupleIsValid(tuple))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_TABLE),
						errmsg("relation with OID %u does not exist", relid)));
	owner = ((Form_pg_class) GETSTRUCT(tuple))->relowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * Run func(arg) in a region as the owner of relation relid, as VACUUM runs
 * a table's index expressions: for a statement on a table of pg_opsdata
 * that the caller may write but that runs code only its owner should.
 */
void
opsdata_run_as_table_owner(Oid relid, OpsdataPrivilegedFunc func, void *arg)
{
	opsdata_run_as(opsdata_table_owner(relid), func, arg);
}

/* Set a GUC as a SET statement of the session would. */
static void
own_role_set(const char *name, const char *value)
{
	(void) set_config_option(name, value, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SET, true, 0, false);
}

/*
 * Run SQL as the session's own role with the search_path of a region: for
 * a job's command that opsdata.run_job() runs as if the session had sent
 * it (the caller's role is the job's, outside a transaction block), so
 * that a procedure in it may commit.  Nothing switches the user id.  A
 * region's nest level cannot span the commits the command makes, so
 * search_path (pinned) and application_name are set as the session's own
 * SET would set them; opsdata_own_role_exit() sets back the values saved
 * (in cxt) here.  The command may SET search_path itself, as any session
 * may.
 */
void
opsdata_own_role_enter(OpsdataOwnRole *own, const char *application_name,
					   MemoryContext cxt)
{
	own->search_path =
		MemoryContextStrdup(cxt, GetConfigOption("search_path", false, false));
	own->application_name = MemoryContextStrdup(
		cxt, GetConfigOption("application_name", false, false));
	own_role_set("search_path", OPSDATA_PINNED_SEARCH_PATH);
	own_role_set("application_name", application_name);
}

/* Set back what opsdata_own_role_enter() changed. */
void
opsdata_own_role_exit(OpsdataOwnRole *own)
{
	own_role_set("search_path", own->search_path);
	own_role_set("application_name", own->application_name);
}

/*
 * The owner of pg_opsdata in the current database, whose rights its own
 * bookkeeping and built-in jobs use.  Caller is in a transaction; raises an
 * error when the extension is not installed.
 */
Oid
opsdata_extension_owner(void)
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
 * Connect a background worker of this library to a database (none when
 * dboid is invalid) as role (the bootstrap superuser when invalid), and pin
 * its search_path: settings of the database or the role (ALTER DATABASE or
 * ALTER ROLE ... SET search_path, which a database owner may run) do not
 * reach the statements the worker runs.  A job's command may still SET its
 * own.  application_name is the worker's type, so that pg_stat_activity
 * shows what it is.  Call once, after opsdata_worker_init() and before any
 * transaction.
 */
void
opsdata_worker_connect(Oid dboid, Oid role)
{
	BackgroundWorkerInitializeConnectionByOid(dboid, role, 0);
	SetConfigOption("search_path", OPSDATA_PINNED_SEARCH_PATH, PGC_SUSET,
					PGC_S_OVERRIDE);
	SetConfigOption("application_name", MyBgworkerEntry->bgw_type, PGC_USERSET,
					PGC_S_SESSION);
	pgstat_report_appname(MyBgworkerEntry->bgw_type);
	privileged_worker_connected = true;
}

/*
 * Whether this process is a background worker that connected through
 * opsdata_worker_connect(): the only processes in which pg_opsdata runs
 * statements at top level (core/toplevel.c).
 */
bool
opsdata_worker_is_connected(void)
{
	return privileged_worker_connected;
}
