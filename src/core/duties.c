/*-------------------------------------------------------------------------
 *
 * duties.c
 *		Separation of duties: what only superusers may do to the trail.
 *
 * Anything that narrows what the audit trail records or shortens how long
 * it, or the partition log, is kept belongs to superusers, as the audit
 * classes (pg_opsdata.audit, a PGC_SUSET setting) always did: adding an
 * exclude rule, dropping an include rule, and changing a setting marked
 * superuser_only in opsdata.settings (audit.retention,
 * partition.log_retention).  opsdata_admin keeps every operational duty.
 * A dedicated role that a superuser grants would not do: on PostgreSQL 15
 * a role with CREATEROLE may grant membership in any role that is not a
 * superuser.
 *
 * Importing history into the trail (audit/import.c) is checked here too:
 * an import writes any time and any actor.
 *
 * The functions that make these changes are SECURITY DEFINER, so the check
 * is made on the role the session acts as (its SET ROLE, else its session
 * user), which a SECURITY DEFINER function does not change: a superuser's
 * SECURITY DEFINER wrapper does not lend its rights to whoever calls it.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/duties.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "core/opsdata.h"

PG_FUNCTION_INFO_V1(opsdata_trail_check);

/*
 * Raise insufficient_privilege unless the role the session acts as is a
 * superuser.  action completes "permission denied to ...", what completes
 * "Only superusers may ..." in the detail.
 */
void
opsdata_trail_require_superuser(const char *action, const char *what)
{
	Oid acting = GetOuterUserId();

	if (!superuser_arg(acting))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s", action),
				 errdetail("Only superusers may %s; role \"%s\" is not a "
						   "superuser.",
						   what, GetUserNameFromId(acting, false))));
}

/*
 * opsdata._trail_check(action text): raise insufficient_privilege unless
 * the role the session acts as is a superuser.  action completes "permission
 * denied to ...".
 */
Datum
opsdata_trail_check(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		elog(ERROR, "opsdata._trail_check() needs an action");
	opsdata_trail_require_superuser(
		text_to_cstring(PG_GETARG_TEXT_PP(0)),
		"narrow what the audit trail records or shorten how long it is kept");
	PG_RETURN_VOID();
}
