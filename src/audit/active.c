/*-------------------------------------------------------------------------
 *
 * active.c
 *		Whether capture is on, and the facts of the session.
 *
 * Capture happens only in a client session in normal processing, on a
 * primary, outside the extension's own code, and in a database that has
 * the extension.  That last fact costs a syscache lookup, so it is checked
 * again only when pg_namespace changes.
 *
 * This file is the one owner of the backend's nesting state, as
 * pg_stat_statements owns its nesting level:
 *
 *	internal depth	how many pieces of pg_opsdata's own code are running.
 *					Code that runs statements of its own (the writer, the
 *					rules loader, the event triggers' queries) goes through
 *					audit_run_internal(), which counts it under PG_TRY /
 *					PG_FINALLY; calls of the extension's SQL functions are
 *					counted from the fmgr hook's start, end and abort events
 *					(audit_fmgr_event()).  Nothing is captured while the
 *					depth is above zero.
 *	reporting error	set while emit_log_hook records a failed statement
 *					(audit_run_reporting_error()): no catalog access, and no
 *					waiting for room in the queue, meanwhile.  The facts every entry carries about its
 * session (database, client address, role names, application) are cached
 * here too: role names by OID, the rest for the session.
 *
 * Nothing is captured in parallel workers (their leader audits the
 * statement), Citus's internal connections (in a server where Citus is
 * loaded, superusers' sessions whose application_name is in
 * pg_opsdata.audit_skip_applications), background workers, during recovery, or in the extension's
 * own install script.  A job's command is the exception: its statements
 * are a user's, whether a job worker or opsdata.run_job() runs them, and
 * between audit_user_statements_begin() and _end() they are captured as a
 * client session's (the extension's functions they call still are not).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/active.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "audit/port.h"

#include "access/parallel.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "common/ip.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/params.h"
#include "parser/parsetree.h"
#include "storage/ipc.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/inval.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "audit/audit.h"
#include "core/opsdata.h"

/*
 * Whether the database has the extension, checked again after pg_namespace
 * changes.
 */
static bool audit_ext_checked = false;
static bool audit_ext_known = false;
static bool audit_ext_present = false;
static Oid audit_ext_nsp = InvalidOid;
static Oid audit_ext_nsp_verified = InvalidOid;
static Oid audit_our_nsps[4];

/* Inside audit_user_statements_begin(): a job's command is running. */
static int audit_user_statements = 0;

/* Nesting state (see the file's header). */
static int audit_internal_depth = 0;
static bool audit_in_error = false;

/* One bit per nesting level of fmgr hook calls: was it our function? */
static uint64 audit_fmgr_ours = 0;
static int audit_fmgr_level = 0;

/* Session facts. */
static char *audit_dbname = NULL;
static char *audit_client = NULL;
static bool audit_client_done = false;
/* --- nesting ------------------------------------------------------------ */

/* Is pg_opsdata's own code running (nothing is captured then)? */
bool
audit_internal(void)
{
	return audit_internal_depth > 0;
}

/*
 * Run fn(arg) as pg_opsdata's own code: nothing it runs is captured.  The
 * depth is restored however fn ends.
 */
void
audit_run_internal(void (*fn)(void *arg), void *arg)
{
	audit_internal_depth++;
	PG_TRY();
	{
		fn(arg);
	}
	PG_FINALLY();
	{
		audit_internal_depth--;
	}
	PG_END_TRY();
}

/* Is a failed statement being recorded right now? */
bool
audit_reporting_error(void)
{
	return audit_in_error;
}

/*
 * Run fn(arg) while an ERROR is being reported (from emit_log_hook): no
 * catalog access and no waiting meanwhile.  Not reentrant: returns
 * without calling fn when already inside.
 */
void
audit_run_reporting_error(void (*fn)(void *arg), void *arg)
{
	if (audit_in_error)
		return;
	audit_in_error = true;
	PG_TRY();
	{
		fn(arg);
	}
	PG_FINALLY();
	{
		audit_in_error = false;
	}
	PG_END_TRY();
}

/* Is fn_oid a function of the extension's schemas? */
static bool
audit_is_our_function(Oid fn_oid)
{
	return fn_oid >= FirstNormalObjectId &&
		   audit_is_our_namespace(get_func_namespace(fn_oid));
}

/*
 * needs_fmgr_hook: the extension's own functions are followed by the fmgr
 * hook, so that what they run is not captured.
 */
bool
audit_fmgr_needed(Oid fn_oid)
{
	return audit_is_our_function(fn_oid);
}

/*
 * fmgr_hook: a followed function starts, ends or aborts.  *private is the
 * call site's word for the fmgr hooks; when no other library's hook shares
 * it (private_ours), it remembers whether the function is ours, so the
 * namespace is looked up once per call site.
 */
void
audit_fmgr_event(FmgrHookEventType event, FmgrInfo *flinfo, Datum *private,
				 bool private_ours)
{
	switch (event)
	{
		case FHET_START:
		{
			Datum ours = *private;

			if (!private_ours || ours == (Datum) 0)
				ours = audit_is_our_function(flinfo->fn_oid) ? (Datum) 1
															 : (Datum) 2;
			if (private_ours)
				*private = ours;
			if (audit_fmgr_level < 64 && ours == (Datum) 1)
			{
				audit_fmgr_ours |= UINT64CONST(1) << audit_fmgr_level;
				audit_internal_depth++;
			}
			audit_fmgr_level++;
			break;
		}
		case FHET_END:
		case FHET_ABORT:
			if (audit_fmgr_level > 0)
				audit_fmgr_level--;
			if (audit_fmgr_level < 64 &&
				(audit_fmgr_ours & (UINT64CONST(1) << audit_fmgr_level)))
			{
				audit_fmgr_ours &= ~(UINT64CONST(1) << audit_fmgr_level);
				audit_internal_depth--;
			}
			break;
	}
}

/* --- session facts ------------------------------------------------------ */

const char *
audit_database_name(void)
{
	if (audit_dbname == NULL && MyProcPort != NULL &&
		MyProcPort->database_name != NULL)
		audit_dbname =
			MemoryContextStrdup(TopMemoryContext, MyProcPort->database_name);
	if (audit_dbname == NULL && OidIsValid(MyDatabaseId) &&
		IsTransactionState())
	{
		char *name = get_database_name(MyDatabaseId);

		if (name != NULL)
			audit_dbname = MemoryContextStrdup(TopMemoryContext, name);
	}
	return audit_dbname ? audit_dbname : "";
}

const char *
audit_client_address(Port *port)
{
	char host[NI_MAXHOST];

	if (audit_client_done)
		return audit_client;
	audit_client_done = true;
	if (port == NULL || port->raddr.addr.ss_family == AF_UNIX)
		return NULL;
	host[0] = '\0';
	if (pg_getnameinfo_all(&port->raddr.addr, port->raddr.salen, host,
						   sizeof(host), NULL, 0, NI_NUMERICHOST) != 0)
		return NULL;
	audit_client = MemoryContextStrdup(TopMemoryContext, host);
	return audit_client;
}

/* Name of a role, cached; the strings are never freed. */
const char *
audit_role_name(Oid roleid)
{
	static Oid last[2] = {InvalidOid, InvalidOid};
	static char *names[2] = {NULL, NULL};
	static int next = 0;
	char *name;
	int i;

	for (i = 0; i < 2; i++)
	{
		if (last[i] == roleid && names[i] != NULL)
			return names[i];
	}
	/* No catalog access while an error is being reported. */
	if (audit_in_error || !IsTransactionState())
		return MyProcPort && MyProcPort->user_name ? MyProcPort->user_name
												   : "";
	name = GetUserNameFromId(roleid, true);
	if (name == NULL)
		name = psprintf("%u", roleid);
	i = next;
	next = (next + 1) % 2;
	last[i] = roleid;
	names[i] = MemoryContextStrdup(TopMemoryContext, name);
	return names[i];
}

const char *
audit_application(void)
{
	static char *cached = NULL;

	if (application_name == NULL || application_name[0] == '\0')
		return NULL;
	if (cached == NULL || strcmp(cached, application_name) != 0)
		cached = MemoryContextStrdup(TopMemoryContext, application_name);
	return cached;
}

/* --- is capture on? ----------------------------------------------------- */

/*
 * Is the schema nspoid a member of extension pg_opsdata?  Catalog access;
 * called once per schema OID seen.
 */
static bool
audit_verify_extension(Oid nspoid)
{
	Oid ext = get_extension_oid(OPSDATA_NAME, true);
	const char *names[4] = {"opsdata", "audit", "learning", "metrics"};
	int i;

	if (!OidIsValid(ext) ||
		getExtensionOfObject(NamespaceRelationId, nspoid) != ext)
		return false;
	for (i = 0; i < 4; i++)
		audit_our_nsps[i] = get_namespace_oid(names[i], true);
	return true;
}

/*
 * Does the current database have pg_opsdata?  Looked up through the
 * syscache after each change of pg_namespace; caller is in a transaction.
 */
bool
audit_extension_present(void)
{
	/* The extension's own install or update script is not audited. */
	if (creating_extension && IsTransactionState() &&
		CurrentExtensionObject == get_extension_oid(OPSDATA_NAME, true))
		return false;
	if (audit_ext_checked)
		return audit_ext_present;
	if (!IsTransactionState())
		return audit_ext_present;
	audit_ext_nsp = get_namespace_oid("audit", true);
	if (!OidIsValid(audit_ext_nsp))
		audit_ext_present = false;
	else if (audit_ext_nsp == audit_ext_nsp_verified)
		audit_ext_present = true;
	else
	{
		audit_ext_present = audit_verify_extension(audit_ext_nsp);
		if (audit_ext_present)
			audit_ext_nsp_verified = audit_ext_nsp;
	}
	audit_ext_checked = true;
	audit_ext_known = true;
	return audit_ext_present;
}

/* Is the queue of this database known to be drained (extension present)? */
bool
audit_confirmed(void)
{
	return audit_ext_known && audit_ext_present;
}

/*
 * Is nspoid one of the extension's schemas?
 */
bool
audit_is_our_namespace(Oid nspoid)
{
	int i;

	if (!OidIsValid(audit_ext_nsp_verified))
		return false;
	for (i = 0; i < 4; i++)
	{
		if (audit_our_nsps[i] == nspoid)
			return true;
	}
	return false;
}

/*
 * Is this process a client session, or running a job's command?
 */
bool
audit_user_process(void)
{
	return (MyBackendType == B_BACKEND || audit_user_statements > 0) &&
		   !IsParallelWorker();
}

/*
 * Does application_name begin with one of the prefixes of
 * pg_opsdata.audit_skip_applications (Citus's internal connections, by
 * default)?
 */
bool
audit_internal_application_name(const char *name)
{
	const char *prefix;

	if (audit_skip_prefixes == NULL || name == NULL || name[0] == '\0')
		return false;
	for (prefix = audit_skip_prefixes; *prefix != '\0';
		 prefix += strlen(prefix) + 1)
	{
		if (strncmp(name, prefix, strlen(prefix)) == 0)
			return true;
	}
	return false;
}

bool
audit_internal_application(void)
{
	return audit_internal_application_name(application_name);
}

/*
 * Is Citus loaded in this server?  Its setting citus.max_worker_nodes_tracked
 * then exists, defined by the library rather than a placeholder that any
 * SET of the name makes.  Citus is only ever preloaded, so the answer is
 * found once per process, in a process the postmaster started (it loads
 * the libraries before).
 */
bool
audit_citus_loaded(void)
{
	static int known = -1;

	if (known < 0)
	{
		const char *name = "citus.max_worker_nodes_tracked";
		bool loaded =
			GetConfigOption(name, true, false) != NULL &&
			(GetConfigOptionFlags(name, true) & GUC_CUSTOM_PLACEHOLDER) == 0;

		if (!IsUnderPostmaster)
			return loaded;
		known = loaded ? 1 : 0;
	}
	return known == 1;
}

/*
 * Is the session user a superuser right now?  Asked again each time, in a
 * transaction: superuser_arg() keeps its answer until pg_authid changes,
 * so ALTER ROLE ... NOSUPERUSER counts from the next statement of the
 * session on.  Outside a transaction, and while an error is being
 * reported, the last answer stands.
 */
static bool
audit_session_superuser(void)
{
	static Oid user = InvalidOid;
	static bool super = false;

	if (IsTransactionState() && !audit_in_error)
	{
		user = GetSessionUserId();
		super = superuser_arg(user);
	}
	return OidIsValid(user) && user == GetSessionUserId() && super;
}

/*
 * Is this one of Citus's internal connections, which are not audited: a
 * session whose application_name begins with a prefix of
 * pg_opsdata.audit_skip_applications, in a server where Citus is loaded,
 * whose session user is a superuser (Citus's maintenance, deadlock
 * detection and transaction recovery connect as one)?  Anyone can choose
 * an application_name, so the name alone hides nothing; and without Citus
 * no session is internal to it, so neither can a superuser's session hide
 * from the trail by its name.
 */
bool
audit_skipped_session(void)
{
	return audit_internal_application() && audit_citus_loaded() &&
		   audit_session_superuser();
}

/*
 * The overflow policy of this session: pg_opsdata.audit_overflow, but drop
 * for Citus's internal connections (audit_skipped_session()), which must
 * never make their node wait on the queue.  Every other session, whatever
 * its name, has the policy the setting gives it.
 */
int
audit_overflow_policy(void)
{
	if (audit_overflow == AUDIT_OVERFLOW_WAIT && audit_skipped_session())
		return AUDIT_OVERFLOW_DROP;
	return audit_overflow;
}

/*
 * Cheap tests first: is this a client session (or a job's command) in
 * normal processing, outside the extension's own code, on a primary, in a
 * database with pg_opsdata, and not an internal connection of a superuser?
 */
bool
audit_capture_active(void)
{
	if (!opsdata_preloaded || audit_internal_depth > 0 ||
		!audit_user_process() || !IsNormalProcessingMode() ||
		RecoveryInProgress() || audit_skipped_session())
		return false;
	return audit_extension_present();
}

/*
 * A job's command starts: audit its statements as a client's, though
 * pg_opsdata's C code runs them (in a job worker, or inside
 * opsdata.run_job()).  Returns what audit_user_statements_end() restores.
 */
int
audit_user_statements_begin(void)
{
	int saved = audit_internal_depth;

	audit_internal_depth = 0;
	audit_user_statements++;
	return saved;
}

/* The job's command ended (or failed): back to what begin() found. */
void
audit_user_statements_end(int saved)
{
	Assert(audit_user_statements > 0);
	audit_internal_depth = saved;
	if (audit_user_statements > 0)
		audit_user_statements--;
}

/*
 * May a statement of this class be audited (by class, or by an include rule)?
 */
bool
audit_class_may_be_wanted(int class, bool *by_class)
{
	*by_class = (audit_classes & AUDIT_BIT(class)) != 0;
	return *by_class || audit_rules_may_include();
}

/* Is the database known, from an earlier check, not to have the extension? */
bool
audit_extension_known_absent(void)
{
	return audit_ext_known && !audit_ext_present;
}

static void
audit_namespace_changed(Datum arg, int cacheid, uint32 hashvalue)
{
	audit_ext_checked = false;
}

/*
 * Check again whether the database has the extension whenever pg_namespace
 * changes (CREATE or DROP EXTENSION make or drop its schemas), instead of
 * once per transaction.  A change of a row of pg_namespace invalidates
 * every catalog cache on it, so watching one of them is enough.  Preloaded
 * only.
 */
void
audit_active_init(void)
{
	opsdata_register_syscache(NAMESPACEOID, audit_namespace_changed);
}
