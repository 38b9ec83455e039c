/*-------------------------------------------------------------------------
 *
 * session.c
 *		Logins, failed logins and disconnects.
 *
 * ClientAuthentication_hook sees a client authenticate; the login entry is
 * kept until the session is set up (the first transaction callback in
 * normal processing, or exit), because connecting can still fail after
 * authentication: no such database, no CONNECT privilege, a role that may
 * not log in.  Those failures, and failed authentication, are FATAL errors
 * reported while the process is still in InitProcessing mode; emit_log_hook
 * hands them here as failed logins.  A session whose login was recorded
 * records its disconnect at exit, with the session's length.
 *
 * On a hot standby none of them is recorded, as no statement is: the
 * standby's queue would never be drained (doc/audit.md, "Hot standbys").
 *
 * The logins of Citus's internal connections (in a server where Citus is
 * loaded, superusers' sessions that pg_opsdata.audit_skip_applications
 * names) are not recorded, as their statements are not (active.c).
 *
 * None of these may wait for room in the queue: they are put with the drop
 * policy, and counted when dropped.  Logins are classified by the
 * server-wide pg_opsdata.audit, since per-database and per-role settings
 * are not known yet when a client authenticates.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/session.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "audit/port.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/memutils.h"
#include "utils/acl.h"
#include "utils/timestamp.h"

#include "audit/audit.h"

static TimestampTz audit_session_start = 0;
static bool audit_exit_registered = false;
static bool audit_login_recorded = false;
static bool audit_login_pending = false;
static bool audit_exiting = false;
static AuditEvent audit_login_event;

static void audit_session_exit(int code, Datum arg);

/* A failed login: FATAL while the session was being set up. */
void
audit_login_failed(ErrorData *edata)
{
	Port *port = MyProcPort;
	AuditEvent ev;
	AuditEvent *evp = &ev;

	audit_login_pending = false;
	if (!(audit_classes & AUDIT_BIT(AUDIT_CLASS_LOGIN)) || port == NULL ||
		RecoveryInProgress() || port->database_name == NULL ||
		port->user_name == NULL)
		return;
	memset(&ev, 0, sizeof(ev));
	ev.ts = GetCurrentTimestamp();
	ev.class = AUDIT_CLASS_LOGIN;
	ev.command = "LOGIN";
	ev.outcome = AUDIT_OUTCOME_FAILED;
	ev.sqlstate = edata->sqlerrcode;
	ev.backend_pid = MyProcPid;
	ev.database = port->database_name;
	ev.username = port->user_name;
	ev.current_user_name = port->user_name;
	ev.application = port->application_name;
	ev.client_addr = audit_client_address(port);
	audit_queue_put(port->database_name, false, &evp, 1, AUDIT_PUT_DROP, NULL);
}

/*
 * ClientAuthentication_hook: a client authenticated (failures arrive
 * through audit_error() as FATAL errors).  The login is recorded once the
 * session is set up (audit_login_settled()), since connecting can still
 * fail after authentication (no such database, no CONNECT privilege).
 */
void
audit_login(Port *port, int status)
{
	AuditEvent *ev = &audit_login_event;

	audit_session_start = GetCurrentTimestamp();
	if (!audit_exit_registered)
	{
		before_shmem_exit(audit_session_exit, (Datum) 0);
		audit_exit_registered = true;
	}
	if (status != STATUS_OK || RecoveryInProgress() ||
		!(audit_classes & AUDIT_BIT(AUDIT_CLASS_LOGIN)) ||
		port->database_name == NULL || port->user_name == NULL)
		return;
	/*
	 * An internal connection of Citus (pg_opsdata.audit_skip_applications):
	 * authentication runs in a transaction, so the role can be read.
	 */
	if (audit_internal_application_name(port->application_name) &&
		audit_citus_loaded() && IsTransactionState())
	{
		Oid role = get_role_oid(port->user_name, true);

		if (OidIsValid(role) && superuser_arg(role))
			return;
	}
	memset(ev, 0, sizeof(AuditEvent));
	ev->ts = audit_session_start;
	ev->class = AUDIT_CLASS_LOGIN;
	ev->command = "LOGIN";
	ev->outcome = AUDIT_OUTCOME_OK;
	ev->backend_pid = MyProcPid;
	ev->database = MemoryContextStrdup(TopMemoryContext, port->database_name);
	ev->username = MemoryContextStrdup(TopMemoryContext, port->user_name);
	ev->current_user_name = ev->username;
	ev->application =
		port->application_name
			? MemoryContextStrdup(TopMemoryContext, port->application_name)
			: NULL;
	ev->client_addr = audit_client_address(port);
	audit_login_pending = true;
}

/*
 * Record the login once the session is set up: called from the transaction
 * callbacks and at exit.
 */
void
audit_login_settled(void)
{
	AuditEvent *evp = &audit_login_event;

	if (!audit_login_pending || IsInitProcessingMode())
		return;
	/*
	 * An internal connection of Citus (pg_opsdata.audit_skip_applications)
	 * is not audited, its login included; whether the session user is a
	 * superuser is known in a transaction only.  At exit, the login is
	 * recorded.
	 */
	if (audit_internal_application() && !audit_exiting)
	{
		if (!IsTransactionState())
			return;
		if (audit_skipped_session())
		{
			audit_login_pending = false;
			return;
		}
	}
	audit_login_pending = false;
	audit_queue_put(audit_login_event.database, false, &evp, 1, AUDIT_PUT_DROP,
					NULL);
	audit_login_recorded = true;
}

/*
 * Record the disconnect of a session whose login was recorded.  Called at
 * exit.
 */
static void
audit_record_disconnect(void)
{
	Port *port = MyProcPort;

	if (audit_login_recorded && !IsInitProcessingMode() && port != NULL &&
		(audit_classes & AUDIT_BIT(AUDIT_CLASS_LOGIN)) &&
		port->database_name != NULL)
	{
		AuditEvent ev;
		AuditEvent *evp = &ev;

		memset(&ev, 0, sizeof(ev));
		ev.ts = GetCurrentTimestamp();
		ev.class = AUDIT_CLASS_LOGIN;
		ev.command = "DISCONNECT";
		ev.outcome = AUDIT_OUTCOME_OK;
		ev.backend_pid = MyProcPid;
		ev.database = port->database_name;
		ev.username = port->user_name;
		ev.current_user_name = port->user_name;
		ev.application = audit_application();
		ev.client_addr = audit_client_address(port);
		ev.duration_us = ev.ts - audit_session_start;
		ev.flags = AUDIT_EVENT_HAS_DURATION;
		audit_queue_put(port->database_name, false, &evp, 1, AUDIT_PUT_DROP,
						NULL);
	}
}

/*
 * At exit (before_shmem_exit): record a login still pending, queue what
 * the session's events left (events.c), then record the disconnect.
 */
static void
audit_session_exit(int code, Datum arg)
{
	audit_exiting = true;
	audit_login_settled();
	audit_events_at_exit();
	audit_record_disconnect();
}
