/*-------------------------------------------------------------------------
 *
 * capture.c
 *		Audit events of running statements and of the current transaction.
 *
 * A statement being audited has an AuditItem: executor statements from
 * ExecutorStart to ExecutorEnd (a cursor's item lives as long as its
 * portal), utility statements for the duration of ProcessUtility.  Items
 * are allocated in the memory context that was current when the statement
 * started and register a reset callback there, so that an item whose
 * statement never ends (error, portal dropped, transaction aborted) is
 * unlinked when its memory goes, as pgaudit does with its event stack.
 * Items are kept in a list, newest first; ExecutorEnd finds its own by
 * QueryDesc, so portals that end out of order (cursors, the extended
 * protocol) cannot upset it.
 *
 * An item that finishes becomes an AuditEvent in the transaction's event
 * list.  emit_log_hook turns the items that are running at the time of an
 * ERROR into events with outcome "error" (or "denied") and its SQLSTATE;
 * an error outside any audited statement (a syntax error, a failed COMMIT)
 * is recorded from the statement text alone.
 *
 * At pre-commit the events of write, ddl and role statements are inserted
 * into audit.entries in the same transaction (writer.c); the others are
 * put into the database's queue.  At abort every event that was "ok"
 * becomes "rolled back" (transaction control statements excepted) and all
 * are queued; at a savepoint rollback the same happens to the events of the
 * aborted subtransactions.  Events that cannot be queued while aborting
 * (the ring is full and nothing may wait there) are kept in a deferred
 * list and queued at the start of the next statement, or at exit.
 *
 * Nothing is captured in parallel workers (their leader audits the
 * statement), background workers, during recovery, inside the extension's
 * own functions (audit_internal_depth, maintained by the fmgr hook), or in
 * a database without the extension.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/capture.c
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
#include "utils/timestamp.h"

#include "audit/audit.h"
#include "core/opsdata.h"

/* Above this many queued-class events a transaction queues them at once. */
#define AUDIT_XACT_QUEUE_BATCH 1000

typedef struct AuditItem
{
	dlist_node node;
	bool linked;
	bool failed;
	int running;		  /* nesting of ExecutorStart/Run/Finish calls */
	int64 rows;			  /* rows processed by the runs so far */
	QueryDesc *queryDesc; /* NULL for a utility statement */
	SubTransactionId subid;
	int class;
	uint8 flags;
	bool is_call;
	bool wanted_by_class;
	const char *command;
	TimestampTz start;
	const char *source; /* the string the statement is part of */
	int location;
	int len;
	char *text;	  /* redacted statement, when it needed redaction */
	char *params; /* bind parameters, when recorded */
	int nobjects;
	int maxobjects;
	const char **objects;
	const char **privileges;
	List *functions; /* names of user functions called */
	MemoryContext cxt;
	MemoryContextCallback callback;
} AuditItem;

int audit_internal_depth = 0;

static dlist_head audit_items = DLIST_STATIC_INIT(audit_items);

/* Events of the current transaction. */
MemoryContext audit_xact_cxt = NULL;
static AuditEvent **audit_xact_events = NULL;
static int audit_xact_nevents = 0;
static int audit_xact_maxevents = 0;
static int audit_xact_nqueued = 0; /* of them, events that go to the queue */

/* Events waiting for room in the queue. */
static MemoryContext audit_deferred_cxt = NULL;
static AuditEvent **audit_deferred = NULL;
static int audit_deferred_n = 0;
static int audit_deferred_max = 0;

/* Whether the database has the extension, checked once per transaction. */
static bool audit_ext_checked = false;
static bool audit_ext_known = false;
static bool audit_ext_present = false;
static Oid audit_ext_nsp = InvalidOid;
static Oid audit_ext_nsp_verified = InvalidOid;
static Oid audit_our_nsps[4];

/* Session facts. */
static char *audit_dbname = NULL;
static char *audit_client = NULL;
static bool audit_client_done = false;
bool audit_in_error = false;

/* --- session facts ------------------------------------------------------ */

static const char *
audit_database_name(void)
{
	if (audit_dbname == NULL && MyProcPort != NULL && MyProcPort->database_name != NULL)
		audit_dbname = MemoryContextStrdup(TopMemoryContext, MyProcPort->database_name);
	if (audit_dbname == NULL && OidIsValid(MyDatabaseId) && IsTransactionState())
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
	if (pg_getnameinfo_all(&port->raddr.addr, port->raddr.salen, host, sizeof(host), NULL, 0,
						   NI_NUMERICHOST) != 0)
		return NULL;
	audit_client = MemoryContextStrdup(TopMemoryContext, host);
	return audit_client;
}

/* Name of a role, cached; the strings are never freed. */
static const char *
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
		return MyProcPort && MyProcPort->user_name ? MyProcPort->user_name : "";
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

	if (!OidIsValid(ext) || getExtensionOfObject(NamespaceRelationId, nspoid) != ext)
		return false;
	for (i = 0; i < 4; i++)
		audit_our_nsps[i] = get_namespace_oid(names[i], true);
	return true;
}

/*
 * Does the current database have pg_opsdata?  Checked once per
 * transaction through the syscache; caller is in a transaction.
 */
bool
audit_extension_present(void)
{
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
	/* The extension's own install or update script is not audited. */
	if (audit_ext_present && creating_extension &&
		CurrentExtensionObject == get_extension_oid(OPSDATA_NAME, true))
		return false;
	audit_ext_checked = true;
	audit_ext_known = true;
	return audit_ext_present;
}

/* Is the queue of this database known to be drained (extension present)? */
static bool
audit_confirmed(void)
{
	return audit_ext_known && audit_ext_present;
}

/*
 * Is nspoid one of the extension's schemas?  Used by the fmgr hook.
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
 * Cheap tests first: is this a client session in normal processing, outside
 * the extension's own code, on a primary, in a database with pg_opsdata?
 */
bool
audit_capture_active(void)
{
	if (!opsdata_preloaded || audit_internal_depth > 0 || MyBackendType != B_BACKEND ||
		IsParallelWorker() || !IsNormalProcessingMode() || RecoveryInProgress())
		return false;
	return audit_extension_present();
}

/* May a statement of this class be audited (by class, or by an include rule)? */
static bool
audit_class_may_be_wanted(int class, bool *by_class)
{
	*by_class = (audit_classes & AUDIT_BIT(class)) != 0;
	return *by_class || audit_rules_may_include();
}

/* --- events ------------------------------------------------------------- */

/*
 * Is a transaction open whose end the callbacks will see?  (A savepoint
 * being defined or a failed transaction block are not "in progress", but
 * belong to one.)
 */
static bool
audit_in_live_xact(void)
{
	return IsTransactionOrTransactionBlock() && !IsAbortedTransactionBlockState();
}

void
audit_ensure_contexts(void)
{
	if (audit_xact_cxt == NULL)
	{
		audit_xact_cxt = AllocSetContextCreate(TopMemoryContext, "pg_opsdata audit events",
											   ALLOCSET_DEFAULT_SIZES);
		audit_deferred_cxt = AllocSetContextCreate(TopMemoryContext, "pg_opsdata audit deferred",
												   ALLOCSET_SMALL_SIZES);
	}
}

/* A new event with the session's facts, in cxt. */
AuditEvent *
audit_new_event(MemoryContext cxt, int class, const char *command)
{
	AuditEvent *ev = MemoryContextAllocZero(cxt, sizeof(AuditEvent));
	FullTransactionId fxid = GetTopFullTransactionIdIfAny();

	ev->ts = GetCurrentTimestamp();
	ev->class = class;
	ev->command = command;
	ev->outcome = AUDIT_OUTCOME_OK;
	ev->backend_pid = MyProcPid;
	ev->database = audit_database_name();
	ev->username = audit_role_name(GetSessionUserId());
	ev->current_user_name = audit_role_name(GetUserId());
	ev->application = audit_application();
	ev->client_addr = audit_client_address(MyProcPort);
	ev->subid = GetCurrentSubTransactionId();
	if (FullTransactionIdIsValid(fxid))
	{
		ev->xid = U64FromFullTransactionId(fxid);
		ev->flags |= AUDIT_EVENT_HAS_XID;
	}
	return ev;
}

static void
audit_defer(AuditEvent **events, int n)
{
	int i;

	audit_ensure_contexts();
	for (i = 0; i < n; i++)
	{
		AuditEvent *src = events[i];
		AuditEvent *ev;

		if (audit_deferred_n == audit_deferred_max)
		{
			audit_deferred_max = Max(16, audit_deferred_max * 2);
			if (audit_deferred == NULL)
				audit_deferred = MemoryContextAlloc(audit_deferred_cxt,
													sizeof(AuditEvent *) * audit_deferred_max);
			else
				audit_deferred = repalloc(audit_deferred, sizeof(AuditEvent *) * audit_deferred_max);
		}
		/* Deep copy: the source may be in memory about to be reset. */
		ev = audit_event_copy(src, audit_deferred_cxt);
		audit_deferred[audit_deferred_n++] = ev;
	}
}

/*
 * Queue events now if they fit, else keep them for later.  Never waits and
 * never raises an error for a full queue: usable while aborting.
 */
static void
audit_queue_or_defer(AuditEvent **events, int n, bool confirm)
{
	int done;

	if (n == 0)
		return;
	if (audit_overflow == AUDIT_OVERFLOW_DROP)
	{
		audit_queue_put(audit_database_name(), confirm, events, n, AUDIT_PUT_DROP, NULL);
		return;
	}
	done = audit_deferred_n > 0 ? 0 : audit_queue_put(audit_database_name(), confirm, events, n, AUDIT_PUT_TRY, NULL);
	if (done < n)
		audit_defer(events + done, n - done);
}

/*
 * Queue the deferred events.  With wait (at the start of a statement) a
 * full queue makes the session wait according to pg_opsdata.audit_overflow;
 * without it (at exit) they are dropped and counted when they do not fit.
 */
void
audit_flush_deferred(bool wait)
{
	int mode;

	if (audit_deferred_n == 0)
		return;
	mode = !wait || audit_overflow == AUDIT_OVERFLOW_DROP ? AUDIT_PUT_DROP : AUDIT_PUT_WAIT;
	audit_queue_put(audit_database_name(), audit_confirmed(), audit_deferred, audit_deferred_n, mode,
					NULL);
	audit_deferred_n = 0;
	MemoryContextReset(audit_deferred_cxt);
	audit_deferred = NULL;
	audit_deferred_max = 0;
}

/* Queue the transaction's queued-class events that completed so far. */
static void
audit_xact_queue_now(void)
{
	AuditEvent **queued = palloc(sizeof(AuditEvent *) * audit_xact_nevents);
	int nq = 0;
	int nk = 0;
	int i;

	for (i = 0; i < audit_xact_nevents; i++)
	{
		AuditEvent *ev = audit_xact_events[i];

		if (AUDIT_BIT(ev->class) & AUDIT_TRANSACTIONAL_CLASSES)
			audit_xact_events[nk++] = ev;
		else
			queued[nq++] = ev;
	}
	audit_xact_nevents = nk;
	audit_queue_put(audit_database_name(), true, queued, nq,
					audit_overflow == AUDIT_OVERFLOW_DROP ? AUDIT_PUT_DROP : AUDIT_PUT_WAIT, NULL);
	audit_xact_nqueued = 0;
	pfree(queued);
}

/*
 * Hand a finished event over: into the transaction's list when a
 * transaction is open, else straight to the queue.
 */
void
audit_add_event(AuditEvent *ev)
{
	if (!audit_in_live_xact())
	{
		audit_queue_or_defer(&ev, 1, audit_confirmed());
		return;
	}
	if (audit_xact_nevents == audit_xact_maxevents)
	{
		audit_xact_maxevents = Max(32, audit_xact_maxevents * 2);
		if (audit_xact_events == NULL)
			audit_xact_events = MemoryContextAlloc(audit_xact_cxt,
												   sizeof(AuditEvent *) * audit_xact_maxevents);
		else
			audit_xact_events = repalloc(audit_xact_events,
										 sizeof(AuditEvent *) * audit_xact_maxevents);
	}
	audit_xact_events[audit_xact_nevents++] = ev;
	if (!(AUDIT_BIT(ev->class) & AUDIT_TRANSACTIONAL_CLASSES) &&
		++audit_xact_nqueued >= AUDIT_XACT_QUEUE_BATCH && !audit_in_error)
		audit_xact_queue_now();
}

/* The statement text of an item, copied into cxt (shared with the previous event when equal). */
static const char *
audit_item_text(AuditItem *item, MemoryContext cxt)
{
	static const char *last_text = NULL;
	const char *src;
	int len;

	if (item->text != NULL)
		src = item->text, len = strlen(item->text);
	else if (item->source == NULL)
		return NULL;
	else
	{
		int loc = Max(item->location, 0);

		src = item->source + loc;
		len = item->len > 0 ? item->len : (int) strlen(src);
		/* A statement after the first of a string starts after blanks. */
		while (len > 0 && (*src == ' ' || *src == '\n' || *src == '\t' || *src == '\r'))
			src++, len--;
	}
	/* Trim trailing blanks and semicolons of a statement in a longer string. */
	while (len > 0 && (src[len - 1] == ' ' || src[len - 1] == '\n' || src[len - 1] == '\t' ||
					   src[len - 1] == '\r' || src[len - 1] == ';'))
		len--;
	if (last_text != NULL && audit_xact_nevents > 0 &&
		audit_xact_events[audit_xact_nevents - 1]->statement == last_text &&
		strncmp(last_text, src, len) == 0 && last_text[len] == '\0')
		return last_text;
	{
		char *copy = MemoryContextAlloc(cxt, len + 1);

		memcpy(copy, src, len);
		copy[len] = '\0';
		last_text = copy;
	}
	return last_text;
}

/* An event for an item, with the given outcome, into the transaction's context. */
static AuditEvent *
audit_item_event(AuditItem *item, int class, const char *command, int outcome, int sqlstate)
{
	MemoryContext cxt;
	AuditEvent *ev;
	int i;

	audit_ensure_contexts();
	cxt = audit_in_live_xact() ? audit_xact_cxt : audit_deferred_cxt;
	ev = audit_new_event(cxt, class, command);
	ev->ts = item->start;
	ev->outcome = outcome;
	ev->sqlstate = sqlstate;
	ev->flags |= item->flags;
	ev->duration_us = GetCurrentTimestamp() - item->start;
	ev->flags |= AUDIT_EVENT_HAS_DURATION;
	ev->statement = audit_item_text(item, cxt);
	ev->params = item->params ? MemoryContextStrdup(cxt, item->params) : NULL;
	ev->nobjects = item->nobjects;
	if (item->nobjects > 0)
	{
		ev->objects = MemoryContextAlloc(cxt, sizeof(char *) * item->nobjects);
		ev->privileges = MemoryContextAlloc(cxt, sizeof(char *) * item->nobjects);
		for (i = 0; i < item->nobjects; i++)
		{
			ev->objects[i] = MemoryContextStrdup(cxt, item->objects[i]);
			ev->privileges[i] = item->privileges[i] ? MemoryContextStrdup(cxt, item->privileges[i]) : NULL;
		}
	}
	return ev;
}

/* Events of the user functions an item called. */
static void
audit_item_function_events(AuditItem *item, int outcome, int sqlstate)
{
	ListCell *lc;

	if (item->functions == NIL)
		return;
	foreach (lc, item->functions)
	{
		const char *fn = (const char *) lfirst(lc);
		AuditEvent *ev = audit_item_event(item, AUDIT_CLASS_FUNCTION, "EXECUTE", outcome, sqlstate);
		MemoryContext cxt = GetMemoryChunkContext(ev);

		ev->nobjects = 1;
		ev->objects = MemoryContextAlloc(cxt, sizeof(char *));
		ev->privileges = MemoryContextAlloc(cxt, sizeof(char *));
		ev->objects[0] = MemoryContextStrdup(cxt, fn);
		ev->privileges[0] = "EXECUTE";
		if (audit_rules_wanted(ev, GetUserId()))
			audit_add_event(ev);
	}
}

/* --- items -------------------------------------------------------------- */

static void
audit_item_unlink(AuditItem *item)
{
	if (item->linked)
	{
		dlist_delete(&item->node);
		item->linked = false;
	}
}

static void
audit_item_reset_callback(void *arg)
{
	audit_item_unlink((AuditItem *) arg);
}

static AuditItem *
audit_item_new(int class, const char *command, bool by_class)
{
	AuditItem *item = palloc0(sizeof(AuditItem));

	item->cxt = CurrentMemoryContext;
	item->class = class;
	item->command = command;
	item->wanted_by_class = by_class;
	item->start = GetCurrentTimestamp();
	item->subid = GetCurrentSubTransactionId();
	item->callback.func = audit_item_reset_callback;
	item->callback.arg = item;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &item->callback);
	dlist_push_head(&audit_items, &item->node);
	item->linked = true;
	return item;
}

static void
audit_item_add_object(AuditItem *item, const char *name, const char *privilege)
{
	if (item->nobjects == item->maxobjects)
	{
		item->maxobjects = Max(4, item->maxobjects * 2);
		if (item->objects == NULL)
		{
			item->objects = MemoryContextAlloc(item->cxt, sizeof(char *) * item->maxobjects);
			item->privileges = MemoryContextAlloc(item->cxt, sizeof(char *) * item->maxobjects);
		}
		else
		{
			item->objects = repalloc(item->objects, sizeof(char *) * item->maxobjects);
			item->privileges = repalloc(item->privileges, sizeof(char *) * item->maxobjects);
		}
	}
	item->objects[item->nobjects] = MemoryContextStrdup(item->cxt, name);
	item->privileges[item->nobjects] = privilege;
	item->nobjects++;
}

/* Finish an item that completed: its event(s) join the transaction. */
static void
audit_item_finish(AuditItem *item, int64 rows, bool has_rows)
{
	audit_item_unlink(item);
	if (item->failed)
		return;
	if (item->wanted_by_class || (item->flags & AUDIT_EVENT_ALWAYS) || audit_rules_may_include())
	{
		AuditEvent *ev = audit_item_event(item, item->class, item->command, AUDIT_OUTCOME_OK, 0);

		if (has_rows)
		{
			ev->rows = rows;
			ev->flags |= AUDIT_EVENT_HAS_ROWS;
		}
		if (audit_rules_wanted(ev, GetUserId()))
			audit_add_event(ev);
		else
			pfree(ev);
	}
	audit_item_function_events(item, AUDIT_OUTCOME_OK, 0);
}

static AuditItem *
audit_find_item(QueryDesc *queryDesc)
{
	dlist_iter iter;

	dlist_foreach(iter, &audit_items)
	{
		AuditItem *item = dlist_container(AuditItem, node, iter.cur);

		if (item->queryDesc == queryDesc)
			return item;
	}
	return NULL;
}

/* --- executor ----------------------------------------------------------- */

/*
 * Called by the ExecutorStart hook before the standard ExecutorStart.
 */
void
audit_executor_start(QueryDesc *queryDesc, int eflags)
{
	PlannedStmt *stmt = queryDesc->plannedstmt;
	int class;
	bool by_class;
	AuditItem *item;
	ListCell *lc;
	bool only_catalog = true;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	if (!audit_capture_active())
		return;
	audit_flush_deferred(true);

	class = (stmt->commandType == CMD_SELECT && !stmt->hasModifyingCTE) ? AUDIT_CLASS_READ : AUDIT_CLASS_WRITE;
	if (!audit_class_may_be_wanted(class, &by_class) && !(audit_classes & AUDIT_BIT(AUDIT_CLASS_FUNCTION)))
		return;

	item = audit_item_new(class, GetCommandTagName(CreateCommandTag((Node *) stmt)), by_class);
	item->queryDesc = queryDesc;
	item->source = queryDesc->sourceText;
	item->location = stmt->stmt_location;
	item->len = stmt->stmt_len;
	item->running = 1;

	foreach (lc, stmt->rtable)
	{
		RangeTblEntry *rte = (RangeTblEntry *) lfirst(lc);

		if (rte->rtekind != RTE_RELATION || rte->requiredPerms == 0)
			continue;
		if (!audit_relation_is_catalog(rte->relid))
			only_catalog = false;
		audit_item_add_object(item, audit_relation_name(rte->relid),
							  audit_privilege_text(rte->requiredPerms));
	}
	if (item->nobjects > 0 && only_catalog && !audit_catalog)
	{
		item->wanted_by_class = false;
		item->failed = true; /* never reported */
	}
	if (audit_log_parameters && queryDesc->params != NULL && queryDesc->params->numParams > 0)
		item->params = BuildParamLogString(queryDesc->params, NULL, audit_parameter_max_length);
}

/* After the standard ExecutorStart returned. */
void
audit_executor_started(QueryDesc *queryDesc)
{
	AuditItem *item;

	if (dlist_is_empty(&audit_items))
		return;
	item = audit_find_item(queryDesc);
	if (item != NULL)
		item->running--;
}

void
audit_executor_run_begin(QueryDesc *queryDesc)
{
	AuditItem *item;

	if (dlist_is_empty(&audit_items))
		return;
	item = audit_find_item(queryDesc);
	if (item != NULL)
		item->running++;
}

void
audit_executor_run_end(QueryDesc *queryDesc, bool run)
{
	AuditItem *item;

	if (dlist_is_empty(&audit_items))
		return;
	item = audit_find_item(queryDesc);
	if (item == NULL)
		return;
	item->running--;
	/* Each run of a portal (a FETCH) counts its own rows. */
	if (run && queryDesc->estate != NULL)
		item->rows += queryDesc->estate->es_processed;
}

/*
 * Called by the ExecutorEnd hook before the standard ExecutorEnd: the
 * statement (or cursor) completed.
 */
void
audit_executor_end(QueryDesc *queryDesc)
{
	AuditItem *item;

	if (dlist_is_empty(&audit_items))
		return;
	item = audit_find_item(queryDesc);
	if (item == NULL)
		return;
	audit_item_finish(item, item->rows, true);
}

/* --- utility ------------------------------------------------------------ */

/*
 * Called by the ProcessUtility hook before the statement runs.  Returns the
 * item to pass to audit_utility_end(), or NULL when it is not audited.
 */
void *
audit_utility_begin(PlannedStmt *pstmt, const char *queryString, ProcessUtilityContext context,
					ParamListInfo params)
{
	Node *parsetree = pstmt->utilityStmt;
	int class;
	bool by_class;
	bool always;
	AuditItem *item;

	/* Parts of a statement (CREATE TABLE's index...) are the statement's. */
	if (context == PROCESS_UTILITY_SUBCOMMAND || !audit_capture_active())
		return NULL;
	audit_flush_deferred(true);

	class = audit_utility_class(parsetree);
	always = audit_is_settings_change(parsetree);
	if (!always && !audit_class_may_be_wanted(class, &by_class) &&
		!(nodeTag(parsetree) == T_CallStmt && (audit_classes & AUDIT_BIT(AUDIT_CLASS_FUNCTION))))
		return NULL;
	by_class = (audit_classes & AUDIT_BIT(class)) != 0;

	item = audit_item_new(class, GetCommandTagName(CreateCommandTag(parsetree)), by_class);
	item->source = queryString;
	item->location = pstmt->stmt_location;
	item->len = pstmt->stmt_len;
	item->running = 1;
	item->is_call = nodeTag(parsetree) == T_CallStmt;
	if (always)
		item->flags |= AUDIT_EVENT_ALWAYS;
	if (nodeTag(parsetree) == T_TransactionStmt)
		item->flags |= AUDIT_EVENT_TXN_CONTROL;
	if (queryString != NULL && audit_needs_redaction(parsetree))
		item->text = audit_redact_at(parsetree, queryString, pstmt->stmt_location, pstmt->stmt_len);

	{
		List *objects = audit_utility_objects(parsetree);
		ListCell *lc;

		foreach (lc, objects)
		{
			AuditObject *obj = (AuditObject *) lfirst(lc);

			audit_item_add_object(item, obj->name, obj->privilege);
		}
	}
	return item;
}

/*
 * Called by the ProcessUtility hook after the statement completed.
 */
void
audit_utility_end(void *arg, QueryCompletion *qc)
{
	AuditItem *item = (AuditItem *) arg;

	if (item == NULL || !item->linked)
		return;
	item->running--;
	audit_item_finish(item, qc ? (int64) qc->nprocessed : 0,
					  qc != NULL && (qc->commandTag == CMDTAG_COPY || qc->commandTag == CMDTAG_SELECT ||
									 qc->commandTag == CMDTAG_CREATE_TABLE_AS ||
									 qc->commandTag == CMDTAG_SELECT_INTO ||
									 qc->commandTag == CMDTAG_REFRESH_MATERIALIZED_VIEW ||
									 qc->commandTag == CMDTAG_FETCH || qc->commandTag == CMDTAG_MOVE));
}

/*
 * Identities of the objects a DDL statement created, altered or dropped,
 * from the event triggers: they join the innermost running utility item.
 */
void
audit_ddl_objects(List *identities)
{
	dlist_iter iter;
	ListCell *lc;

	dlist_foreach(iter, &audit_items)
	{
		AuditItem *item = dlist_container(AuditItem, node, iter.cur);

		if (item->queryDesc != NULL || item->running <= 0)
			continue;
		foreach (lc, identities)
			audit_item_add_object(item, (const char *) lfirst(lc), NULL);
		return;
	}
}

/*
 * Is a utility statement being audited right now (for the event triggers)?
 */
bool
audit_utility_running(void)
{
	dlist_iter iter;

	dlist_foreach(iter, &audit_items)
	{
		AuditItem *item = dlist_container(AuditItem, node, iter.cur);

		if (item->queryDesc == NULL && item->running > 0)
			return true;
	}
	return false;
}

/* --- functions ---------------------------------------------------------- */

/*
 * A function is about to be executed (object access hook).  User functions
 * join the innermost running item; a CALL records its procedure as its
 * object instead.
 */
void
audit_function_called(Oid funcid)
{
	AuditItem *item;
	MemoryContext old;
	char *name;
	ListCell *lc;

	if (funcid < FirstNormalObjectId || dlist_is_empty(&audit_items) ||
		audit_internal_depth > 0)
		return;
	item = dlist_container(AuditItem, node, dlist_head_node(&audit_items));
	if (item->failed)
		return;
	if (item->is_call)
	{
		if (item->nobjects == 0)
			audit_item_add_object(item, format_procedure_qualified(funcid), "EXECUTE");
		return;
	}
	if (!(audit_classes & AUDIT_BIT(AUDIT_CLASS_FUNCTION)) && !audit_rules_may_include())
		return;
	if (audit_is_our_namespace(get_func_namespace(funcid)))
		return;
	name = format_procedure_qualified(funcid);
	foreach (lc, item->functions)
	{
		if (strcmp((const char *) lfirst(lc), name) == 0)
			return;
	}
	old = MemoryContextSwitchTo(item->cxt);
	item->functions = lappend(item->functions, pstrdup(name));
	MemoryContextSwitchTo(old);
}

/* --- errors ------------------------------------------------------------- */

static int
audit_error_outcome(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE ? AUDIT_OUTCOME_DENIED : AUDIT_OUTCOME_ERROR;
}

/*
 * emit_log_hook: an ERROR (or worse) is being reported.  The running
 * statements failed; a failure during connection set-up is a failed login.
 */
void
audit_error(ErrorData *edata)
{
	dlist_iter iter;
	bool any = false;

	if (edata->elevel < ERROR || audit_in_error || !opsdata_preloaded ||
		MyBackendType != B_BACKEND || IsParallelWorker())
		return;
	audit_in_error = true;

	if (IsInitProcessingMode() && edata->elevel >= FATAL)
	{
		audit_login_failed(edata);
		audit_in_error = false;
		return;
	}
	if (!IsNormalProcessingMode() || audit_internal_depth > 0 || RecoveryInProgress() ||
		(audit_ext_known && !audit_ext_present))
	{
		audit_in_error = false;
		return;
	}

	audit_ensure_contexts();
	dlist_foreach(iter, &audit_items)
	{
		AuditItem *item = dlist_container(AuditItem, node, iter.cur);
		int outcome = audit_error_outcome(edata->sqlerrcode);

		if (item->running <= 0 || item->failed)
			continue;
		item->failed = true;
		any = true;
		if (item->wanted_by_class || (item->flags & AUDIT_EVENT_ALWAYS) || audit_rules_may_include())
		{
			AuditEvent *ev = audit_item_event(item, item->class, item->command, outcome,
											  edata->sqlerrcode);

			if (audit_rules_wanted(ev, GetUserId()))
				audit_add_event(ev);
		}
		audit_item_function_events(item, outcome, edata->sqlerrcode);
	}

	/* An error outside any audited statement: record the statement text. */
	if (!any && debug_query_string != NULL)
	{
		const char *command;
		int class = audit_keyword_class(debug_query_string, &command);
		int len = strlen(debug_query_string);

		if (audit_classes & AUDIT_BIT(class) || audit_rules_may_include())
		{
			MemoryContext cxt = audit_in_live_xact()
									? audit_xact_cxt
									: audit_deferred_cxt;
			AuditEvent *ev = audit_new_event(cxt, class, command);

			ev->outcome = audit_error_outcome(edata->sqlerrcode);
			ev->sqlstate = edata->sqlerrcode;
			ev->statement = audit_unparsed_may_hold_secret(debug_query_string)
								? psprintf("%s ... (not recorded: the statement was not parsed and may hold a secret)", command)
								: MemoryContextStrdup(cxt, debug_query_string);
			/* Without its final semicolon, as a parsed statement's text is. */
			while (len > 0 && (debug_query_string[len - 1] == ';' || debug_query_string[len - 1] == ' ' ||
							   debug_query_string[len - 1] == '\n'))
				len--;
			if (!audit_unparsed_may_hold_secret(debug_query_string))
				((char *) ev->statement)[len] = '\0';
			if (audit_rules_wanted(ev, GetUserId()))
				audit_add_event(ev);
		}
	}
	audit_in_error = false;
}

/*
 * At exit: queue what is left (never waiting) and record the disconnect of
 * a session whose login was recorded.
 */
void
audit_on_exit(int code, Datum arg)
{
	audit_login_settled();

	if (audit_xact_nevents > 0)
	{
		int i;

		for (i = 0; i < audit_xact_nevents; i++)
		{
			AuditEvent *ev = audit_xact_events[i];

			if (ev->outcome == AUDIT_OUTCOME_OK && !(ev->flags & AUDIT_EVENT_TXN_CONTROL))
				ev->outcome = AUDIT_OUTCOME_ROLLED_BACK;
		}
		audit_queue_put(audit_database_name(), audit_confirmed(), audit_xact_events,
						audit_xact_nevents, AUDIT_PUT_DROP, NULL);
		audit_xact_nevents = 0;
	}
	audit_flush_deferred(false);

	audit_record_disconnect();
}

/* --- transaction ends --------------------------------------------------- */

static void
audit_xact_reset(void)
{
	audit_xact_events = NULL;
	audit_xact_nevents = 0;
	audit_xact_maxevents = 0;
	audit_xact_nqueued = 0;
	if (audit_xact_cxt != NULL)
		MemoryContextReset(audit_xact_cxt);
}

/*
 * Pre-commit: write the transaction's write events, queue the others.  The
 * written events stay in the list, marked, so that an abort after this
 * point still records them (as rolled back); queued events leave it as
 * they are queued.
 */
static void
audit_pre_commit(void)
{
	AuditEvent **written;
	AuditEvent **queued;
	int nw = 0;
	int nq = 0;
	int i;
	int done = 0;

	if (audit_xact_nevents == 0)
		return;
	written = palloc(sizeof(AuditEvent *) * audit_xact_nevents);
	queued = palloc(sizeof(AuditEvent *) * audit_xact_nevents);
	for (i = 0; i < audit_xact_nevents; i++)
	{
		AuditEvent *ev = audit_xact_events[i];

		if (ev->flags & AUDIT_EVENT_WRITTEN)
			continue;

		/*
		 * A session draining the queue (audit.flush()) frees room in it only
		 * when it commits, so it must not wait for room: it writes all its
		 * events itself.
		 */
		if ((AUDIT_BIT(ev->class) & AUDIT_TRANSACTIONAL_CLASSES) || audit_queue_claimed())
			written[nw++] = ev;
		else
			queued[nq++] = ev;
	}
	if (nw > 0)
	{
		audit_write_events(written, nw);
		for (i = 0; i < nw; i++)
			written[i]->flags |= AUDIT_EVENT_WRITTEN;
	}
	if (nq == 0)
		return;

	PG_TRY();
	{
		audit_queue_put(audit_database_name(), true, queued, nq,
						audit_overflow == AUDIT_OVERFLOW_DROP ? AUDIT_PUT_DROP : AUDIT_PUT_WAIT, &done);
	}
	PG_FINALLY();
	{
		/* Keep the written events and those not yet queued. */
		int n = 0;
		int q = 0;

		for (i = 0; i < audit_xact_nevents; i++)
		{
			AuditEvent *ev = audit_xact_events[i];

			if (q < done && ev == queued[q])
			{
				q++;
				continue;
			}
			audit_xact_events[n++] = ev;
		}
		audit_xact_nevents = n;
	}
	PG_END_TRY();
}

static void
audit_abort(void)
{
	int i;

	for (i = 0; i < audit_xact_nevents; i++)
	{
		AuditEvent *ev = audit_xact_events[i];

		if (ev->outcome == AUDIT_OUTCOME_OK && !(ev->flags & AUDIT_EVENT_TXN_CONTROL))
			ev->outcome = AUDIT_OUTCOME_ROLLED_BACK;
	}
	audit_queue_or_defer(audit_xact_events, audit_xact_nevents, true);
	audit_xact_nevents = 0;
}

void
audit_xact_callback(XactEvent event, void *arg)
{
	audit_login_settled();
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PRE_PREPARE:
			audit_pre_commit();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PREPARE:
			audit_queue_release(true);
			audit_statements_end_xact(true);
			audit_xact_reset();
			audit_ext_checked = false;
			break;
		case XACT_EVENT_ABORT:
			audit_queue_release(false);
			audit_statements_end_xact(false);
			audit_abort();
			audit_xact_reset();
			audit_ext_checked = false;
			break;
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			break;
	}
}

void
audit_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					   SubTransactionId parentSubid, void *arg)
{
	dlist_mutable_iter iter;
	int i;

	if (event != SUBXACT_EVENT_ABORT_SUB)
		return;
	for (i = 0; i < audit_xact_nevents; i++)
	{
		AuditEvent *ev = audit_xact_events[i];

		if (ev->subid >= mySubid && ev->outcome == AUDIT_OUTCOME_OK &&
			!(ev->flags & AUDIT_EVENT_TXN_CONTROL))
			ev->outcome = AUDIT_OUTCOME_ROLLED_BACK;
	}
	dlist_foreach_modify(iter, &audit_items)
	{
		AuditItem *item = dlist_container(AuditItem, node, iter.cur);

		if (item->subid < mySubid)
			continue;
		/* Failed with an error that was caught (its SQLSTATE is gone). */
		if (item->running > 0 && !item->failed &&
			(item->wanted_by_class || (item->flags & AUDIT_EVENT_ALWAYS)))
		{
			AuditEvent *ev = audit_item_event(item, item->class, item->command,
											  AUDIT_OUTCOME_ERROR, 0);

			ev->subid = item->subid;
			if (audit_rules_wanted(ev, GetUserId()))
				audit_add_event(ev);
		}
		audit_item_unlink(item);
	}
	audit_statements_end_subxact();
}
