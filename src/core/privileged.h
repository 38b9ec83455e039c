/*-------------------------------------------------------------------------
 *
 * privileged.h
 *		The one way pg_opsdata runs SQL as another role.
 *
 * Every statement pg_opsdata's C code runs with the rights of a role other
 * than the caller's (the extension owner for its bookkeeping, a table's
 * owner for partition maintenance, a job's role for opsdata.run_job()) runs
 * inside a privileged region:
 *
 *	  OpsdataPrivileged priv;
 *
 *	  opsdata_privileged_enter(&priv, role);
 *	  ... SPI calls; every operator and function schema-qualified ...
 *	  opsdata_privileged_exit(&priv);
 *
 * or, for a body that is a function of its own, opsdata_run_as(role, func,
 * arg).  See privileged.c for what a region guarantees and what it forbids.
 * SQL that runs as the session's own role but must commit (a job's command
 * run by opsdata.run_job() for its own role) pins search_path with
 * opsdata_own_role_enter() instead.
 * Background workers connect through opsdata_worker_connect(), which pins
 * the same search_path for the whole process.  No other file of
 * pg_opsdata switches the user id, sets search_path or connects a worker
 * (test/run's style suite checks it).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/privileged.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_PRIVILEGED_H
#define OPSDATA_PRIVILEGED_H

#include "utils/guc.h"

/* The search_path of every statement pg_opsdata runs for itself. */
#define OPSDATA_PINNED_SEARCH_PATH "pg_catalog, pg_temp"

/* What opsdata_privileged_enter() saved, for opsdata_privileged_exit(). */
typedef struct OpsdataPrivileged
{
	Oid saved_userid;
	int saved_sec_context;
	int nestlevel;
	bool active;
} OpsdataPrivileged;

/* What opsdata_own_role_enter() saved, for opsdata_own_role_exit(). */
typedef struct OpsdataOwnRole
{
	char *search_path;
	char *application_name;
} OpsdataOwnRole;

typedef void (*OpsdataPrivilegedFunc)(void *arg);

extern void opsdata_privileged_enter(OpsdataPrivileged *priv, Oid role);
extern void opsdata_privileged_set(OpsdataPrivileged *priv, const char *name,
								   const char *value, GucContext context);
extern void opsdata_privileged_exit(OpsdataPrivileged *priv);
extern void opsdata_privileged_unwind(OpsdataPrivileged *priv);
extern void opsdata_run_as(Oid role, OpsdataPrivilegedFunc func, void *arg);
extern Oid opsdata_table_owner(Oid relid);
extern void opsdata_run_as_table_owner(Oid relid, OpsdataPrivilegedFunc func,
									   void *arg);
extern void opsdata_own_role_enter(OpsdataOwnRole *own,
								   const char *application_name,
								   MemoryContext cxt);
extern void opsdata_own_role_exit(OpsdataOwnRole *own);

extern Oid opsdata_extension_owner(void);
extern void opsdata_worker_connect(Oid dboid, Oid role);
extern bool opsdata_worker_is_connected(void);

#endif /* OPSDATA_PRIVILEGED_H */
