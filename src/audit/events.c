/*-------------------------------------------------------------------------
 *
 * events.c
 *		The audit events of the current transaction, and where they go.
 *
 * Events of finished statements wait in the transaction's list
 * (audit_xact_cxt).  At pre-commit the events of write, ddl and role
 * statements are inserted into audit.entries in the same transaction
 * (writer.c); the others are put into the database's queue (queue.c).  A
 * transaction with many queued-class events queues them as it goes.  At
 * abort every event that was "ok" becomes "rolled back" (transaction
 * control statements excepted) and all are queued; at a savepoint rollback
 * the same happens to the events of the aborted subtransactions.  Events
 * that cannot be queued while aborting (the ring is full and nothing may
 * wait there) are kept in a deferred list and queued at the start of the
 * next statement, or at exit.
 *
 * A read-only transaction may write temporary tables, nothing else: the
 * events made in it go to the queue, never into the transaction.  When the
 * queue is full, a transaction that may write and can lock the trail at
 * once writes its entries itself rather than wait (it may be the one whose
 * lock keeps the drain out); otherwise the session waits, interruptibly and
 * at most pg_opsdata.audit_overflow_timeout (queue.c).  A drainer owning the queue
 * (the scheduler, in its own short transactions) frees room in it only when
 * it commits, so at pre-commit it writes all its events instead of waiting
 * for room it holds.  audit.flush() never owns the queue (drain.c).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/events.c
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
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "audit/audit.h"
#include "core/opsdata.h"

/* Above this many queued-class events a transaction queues them at once. */
#define AUDIT_XACT_QUEUE_BATCH 1000

/* Events of the current transaction. */
MemoryContext audit_xact_cxt = NULL;
static AuditEvent **audit_xact_events = NULL;
static int audit_xact_nevents = 0;
static int audit_xact_maxevents = 0;
static int audit_xact_nqueued = 0; /* of them, events that go to the queue */

static void audit_mark_written(AuditEvent *ev);

/*
 * DROP EXTENSION pg_opsdata in this transaction: at commit, the database's
 * queue goes with it.  The name is taken now: no catalog access at commit.
 */
static bool audit_extension_dropped = false;
static char audit_dropped_dbname[NAMEDATALEN];

/* Events waiting for room in the queue. */
static MemoryContext audit_deferred_cxt = NULL;
static AuditEvent **audit_deferred = NULL;
static int audit_deferred_n = 0;
static int audit_deferred_max = 0;

/* --- events ------------------------------------------------------------- */

/*
 * Is a transaction open whose end the callbacks will see?  (A savepoint
 * being defined or a failed transaction block are not "in progress", but
 * belong to one.)
 */
bool
audit_in_live_xact(void)
{
	return IsTransactionOrTransactionBlock() &&
		   !IsAbortedTransactionBlockState();
}

void
audit_ensure_contexts(void)
{
	if (audit_xact_cxt == NULL)
	{
		audit_xact_cxt =
			AllocSetContextCreate(TopMemoryContext, "pg_opsdata audit events",
								  ALLOCSET_DEFAULT_SIZES);
		audit_deferred_cxt = AllocSetContextCreate(TopMemoryContext,
												   "pg_opsdata audit deferred",
												   ALLOCSET_SMALL_SIZES);
	}
}

/*
 * The copies of the declared context the last event got, and the events
 * context (and its generation: bumped when it is reset) they are in.
 * Events made in the same context while the settings keep their values
 * share them: the events of a transaction do not each hold up to 10 kB of
 * the same context.  Nothing frees an event's strings one by one.
 */
static uint64 audit_xact_generation = 0;
static uint64 audit_deferred_generation = 0;
static MemoryContext audit_declared_cxt = NULL;
static uint64 audit_declared_generation = 0;
static const char *audit_declared_actor = NULL;
static const char *audit_declared_request_id = NULL;
static const char *audit_declared_attributes = NULL;

/* value (a setting) in cxt: the last copy when it is equal, or a new one. */
static const char *
audit_declared_copy(const char *value, const char *last, bool shared,
					MemoryContext cxt)
{
	if (value == NULL || value[0] == '\0')
		return NULL;
	if (shared && last != NULL && strcmp(last, value) == 0)
		return last;
	return MemoryContextStrdup(cxt, value);
}

/*
 * The context the application declared (pg_opsdata.audit_actor and the
 * like), copied into cxt: the settings may change before the event is
 * written.
 */
void
audit_event_declared(AuditEvent *ev, MemoryContext cxt)
{
	uint64 generation = 0;
	bool known = true; /* one of the events contexts, not the caller's own */
	bool shared;

	if (cxt == audit_xact_cxt)
		generation = audit_xact_generation;
	else if (cxt == audit_deferred_cxt)
		generation = audit_deferred_generation;
	else
		known = false;
	shared = known && cxt == audit_declared_cxt &&
			 generation == audit_declared_generation;
	ev->actor =
		audit_declared_copy(audit_actor, audit_declared_actor, shared, cxt);
	ev->request_id = audit_declared_copy(
		audit_request_id, audit_declared_request_id, shared, cxt);
	ev->attributes = audit_declared_copy(
		audit_attributes, audit_declared_attributes, shared, cxt);
	if (!known)
		return;
	audit_declared_cxt = cxt;
	audit_declared_generation = generation;
	audit_declared_actor = ev->actor;
	audit_declared_request_id = ev->request_id;
	audit_declared_attributes = ev->attributes;
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
	audit_event_declared(ev, cxt);
	if (XactReadOnly)
		ev->flags |= AUDIT_EVENT_READ_ONLY;
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

		audit_deferred = audit_array_room(
			audit_deferred, audit_deferred_n, &audit_deferred_max,
			sizeof(AuditEvent *), 16, audit_deferred_cxt);
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
	if (audit_overflow_policy() == AUDIT_OVERFLOW_DROP)
	{
		audit_queue_put(audit_database_name(), confirm, events, n,
						AUDIT_PUT_DROP, NULL);
		return;
	}
	done = audit_deferred_n > 0
			   ? 0
			   : audit_queue_put(audit_database_name(), confirm, events, n,
								 AUDIT_PUT_TRY, NULL);
	if (done < n)
		audit_defer(events + done, n - done);
}

/*
 * Put events back into the queue (entries an aborted audit.flush() took):
 * never waits, and keeps what does not fit with the deferred events.
 */
void
audit_requeue(AuditEvent **events, int n)
{
	audit_queue_or_defer(events, n, true);
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
	int done = 0;

	if (audit_deferred_n == 0)
		return;
	mode = !wait || audit_overflow_policy() == AUDIT_OVERFLOW_DROP
			   ? AUDIT_PUT_DROP
			   : AUDIT_PUT_WAIT;
	PG_TRY();
	{
		audit_queue_put(audit_database_name(), audit_confirmed(),
						audit_deferred, audit_deferred_n, mode, &done);
	}
	PG_CATCH();
	{
		/* A wait that ended in an error keeps only what it did not queue. */
		memmove(audit_deferred, audit_deferred + done,
				sizeof(AuditEvent *) * (audit_deferred_n - done));
		audit_deferred_n -= done;
		PG_RE_THROW();
	}
	PG_END_TRY();
	audit_deferred_n = 0;
	MemoryContextReset(audit_deferred_cxt);
	audit_deferred_generation++;
	audit_deferred = NULL;
	audit_deferred_max = 0;
}

/*
 * Queue the transaction's queued-class events that completed so far.  When
 * the queue is full, a transaction that may write and can lock the trail
 * without waiting writes them itself (they stay in its list, marked, as
 * written events do); otherwise it waits for room.
 */
static void
audit_xact_queue_now(void)
{
	AuditEvent **queued = palloc(sizeof(AuditEvent *) * audit_xact_nevents);
	int nq = 0;
	int nk = 0;
	int done = 0;
	int progress = 0;
	int i;

	for (i = 0; i < audit_xact_nevents; i++)
	{
		AuditEvent *ev = audit_xact_events[i];

		if ((AUDIT_BIT(ev->class) & AUDIT_TRANSACTIONAL_CLASSES) ||
			(ev->flags & AUDIT_EVENT_WRITTEN))
			audit_xact_events[nk++] = ev;
		else
			queued[nq++] = ev;
	}
	if (audit_overflow_policy() == AUDIT_OVERFLOW_WAIT && !XactReadOnly)
	{
		done = audit_queue_put(audit_database_name(), true, queued, nq,
							   AUDIT_PUT_TRY, NULL);
		if (done < nq && audit_writer_try_lock(queued + done, nq - done))
		{
			audit_store_events(queued + done, nq - done);
			for (i = done; i < nq; i++)
			{
				audit_mark_written(queued[i]);
				audit_xact_events[nk++] = queued[i];
			}
			nq = done;
		}
	}
	audit_xact_nevents = nk;
	PG_TRY();
	{
		audit_queue_put(audit_database_name(), true, queued + done, nq - done,
						audit_overflow_policy() == AUDIT_OVERFLOW_DROP
							? AUDIT_PUT_DROP
							: AUDIT_PUT_WAIT,
						&progress);
	}
	PG_FINALLY();
	{
		/* A wait that ended in an error keeps what it did not queue. */
		for (i = done + progress; i < nq; i++)
			audit_xact_events[audit_xact_nevents++] = queued[i];
	}
	PG_END_TRY();
	audit_xact_nqueued = 0;
	pfree(queued);
}

/* The event's row is in audit.entries, in the current subtransaction. */
static void
audit_mark_written(AuditEvent *ev)
{
	ev->flags |= AUDIT_EVENT_WRITTEN;
	ev->written_subid = GetCurrentSubTransactionId();
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
	audit_xact_events = audit_array_room(
		audit_xact_events, audit_xact_nevents, &audit_xact_maxevents,
		sizeof(AuditEvent *), 32, audit_xact_cxt);
	audit_xact_events[audit_xact_nevents++] = ev;
	if (!(AUDIT_BIT(ev->class) & AUDIT_TRANSACTIONAL_CLASSES) &&
		++audit_xact_nqueued >= AUDIT_XACT_QUEUE_BATCH &&
		!audit_reporting_error())
		audit_xact_queue_now();
}

/* The context for a new event: the transaction's, or the deferred list's. */
MemoryContext
audit_event_context(void)
{
	audit_ensure_contexts();
	return audit_in_live_xact() ? audit_xact_cxt : audit_deferred_cxt;
}

/* The statement text of the newest event of the transaction, or NULL. */
const char *
audit_last_event_statement(void)
{
	return audit_xact_nevents > 0
			   ? audit_xact_events[audit_xact_nevents - 1]->statement
			   : NULL;
}

/*
 * Events of the transaction that completed ("ok") become "rolled back",
 * those of subtransaction from and its children only when from is given
 * (InvalidSubTransactionId: all).  Transaction control statements keep
 * "ok": BEGIN did begin, ROLLBACK did roll back.
 */
static void
audit_mark_rolled_back(SubTransactionId from)
{
	int i;

	for (i = 0; i < audit_xact_nevents; i++)
	{
		AuditEvent *ev = audit_xact_events[i];

		if (ev->subid >= from && ev->outcome == AUDIT_OUTCOME_OK &&
			!(ev->flags & AUDIT_EVENT_TXN_CONTROL))
			ev->outcome = AUDIT_OUTCOME_ROLLED_BACK;
	}
}

/*
 * Application events (audit.log_event()) belong to the application's work:
 * they vanish with the transaction, or with the subtransaction from (and
 * its children) when it is given, that rolled back.
 */
static void
audit_forget_app_events(SubTransactionId from)
{
	int n = 0;
	int i;

	for (i = 0; i < audit_xact_nevents; i++)
	{
		AuditEvent *ev = audit_xact_events[i];

		if (ev->class == AUDIT_CLASS_APP && ev->subid >= from)
			continue;
		audit_xact_events[n++] = ev;
	}
	audit_xact_nevents = n;
}

/*
 * At exit: queue what is left (never waiting).  The transaction still
 * open is rolled back.
 */
void
audit_events_at_exit(void)
{
	if (audit_xact_nevents > 0)
	{
		audit_forget_app_events(InvalidSubTransactionId);
		audit_mark_rolled_back(InvalidSubTransactionId);
		audit_queue_put(audit_database_name(), audit_confirmed(),
						audit_xact_events, audit_xact_nevents, AUDIT_PUT_DROP,
						NULL);
		audit_xact_nevents = 0;
	}
	audit_flush_deferred(false);
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
	audit_xact_generation++;
}

/*
 * Pre-commit: write the transaction's write events, queue the others (and
 * the events made while the transaction was read-only).  The written
 * events stay in the list, marked, so that an abort after this point still
 * records them (as rolled back); queued events leave it as they are
 * queued.
 */
void
audit_events_pre_commit(void)
{
	AuditEvent **written;
	AuditEvent **queued;
	int nw = 0;
	int nq = 0;
	int i;
	int done = 0;
	volatile int tried = 0;
	bool read_only;

	audit_import_end();
	if (audit_xact_nevents == 0)
		return;
	/*
	 * The transaction dropped the extension, and the trail with it (a
	 * statement may have run after DROP EXTENSION in the transaction, or
	 * with it: Citus runs the statements of its propagation to the other
	 * nodes meanwhile): its entries have nowhere to go, as those the trail
	 * held are gone (the queue goes at commit).  Unless it made the
	 * extension again, they are forgotten rather than failing the commit.
	 */
	if (audit_extension_dropped && !audit_extension_present())
	{
		audit_xact_nevents = 0;
		audit_xact_nqueued = 0;
		return;
	}
	/*
	 * A read-only transaction may write temporary tables, and nothing else:
	 * its entries go through the queue.  A transaction made read-only after
	 * it wrote (SET TRANSACTION READ ONLY is allowed then) still writes the
	 * entries of the statements it ran while it could write, with it.
	 */
	read_only = XactReadOnly;
	written = palloc(sizeof(AuditEvent *) * audit_xact_nevents);
	queued = palloc(sizeof(AuditEvent *) * audit_xact_nevents);
	for (i = 0; i < audit_xact_nevents; i++)
	{
		AuditEvent *ev = audit_xact_events[i];

		if (ev->flags & AUDIT_EVENT_WRITTEN)
			continue;

		/*
		 * A drainer owning the queue frees room in it only when it commits,
		 * so it must not wait for room: it writes all its events itself.
		 */
		if (!(ev->flags & AUDIT_EVENT_READ_ONLY) &&
			((AUDIT_BIT(ev->class) & AUDIT_TRANSACTIONAL_CLASSES) ||
			 audit_queue_claimed()))
			written[nw++] = ev;
		else
			queued[nq++] = ev;
	}
	if (nw > 0)
	{
		audit_store_events(written, nw);
		for (i = 0; i < nw; i++)
			audit_mark_written(written[i]);
	}
	if (nq == 0)
		return;

	PG_TRY();
	{
		/*
		 * When the queue is full, a transaction that may write and can lock
		 * the trail without waiting (nobody else holds it: the drain is only
		 * slow; or this very transaction holds it, and would wait for
		 * itself) writes its remaining entries itself instead of waiting.
		 */
		if (audit_overflow_policy() == AUDIT_OVERFLOW_WAIT && !read_only)
		{
			tried = audit_queue_put(audit_database_name(), true, queued, nq,
									AUDIT_PUT_TRY, NULL);
			if (tried < nq &&
				audit_writer_try_lock(queued + tried, nq - tried))
			{
				audit_store_events(queued + tried, nq - tried);
				for (i = tried; i < nq; i++)
					audit_mark_written(queued[i]);
				nq = tried;
			}
		}
		audit_queue_put(
			audit_database_name(), true, queued + tried, nq - tried,
			audit_overflow_policy() == AUDIT_OVERFLOW_DROP ? AUDIT_PUT_DROP
														   : AUDIT_PUT_WAIT,
			&done);
	}
	PG_FINALLY();
	{
		/* Keep the written events and those not yet queued. */
		int n = 0;
		int q = 0;
		int nqueued = tried + done;

		for (i = 0; i < audit_xact_nevents; i++)
		{
			AuditEvent *ev = audit_xact_events[i];

			if (q < nqueued && ev == queued[q])
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
	audit_forget_app_events(InvalidSubTransactionId);
	audit_mark_rolled_back(InvalidSubTransactionId);
	audit_queue_or_defer(audit_xact_events, audit_xact_nevents, true);
	audit_xact_nevents = 0;
}

void
audit_note_extension_dropped(void)
{
	char *dbname = get_database_name(MyDatabaseId);

	if (dbname == NULL)
		return;
	strlcpy(audit_dropped_dbname, dbname, NAMEDATALEN);
	audit_extension_dropped = true;
}

/*
 * COMMIT PREPARED has just committed a prepared transaction of this
 * database, which had pg_opsdata: if the extension is gone now, that
 * transaction dropped it, and this one takes the queue with it when it
 * commits.  The prepared transaction's catalog changes are read after
 * taking in its invalidations.
 */
void
audit_note_prepared_drop(void)
{
	AcceptInvalidationMessages();
	InvalidateCatalogSnapshot();
	if (!OidIsValid(get_extension_oid(OPSDATA_NAME, true)))
		audit_note_extension_dropped();
}

/*
 * The transaction ended (after the queue's release and the statement
 * caches, see hooks.c): on abort its events are queued as rolled back; a
 * committed DROP EXTENSION takes the database's queue with it.  A
 * prepared one does not, yet: ROLLBACK PREPARED would find the queue
 * emptied, and COMMIT PREPARED discards it (audit_note_prepared_drop()).
 * Never fails.
 */
void
audit_events_end_xact(bool commit, bool prepared)
{
	if (!commit)
		audit_abort();
	audit_xact_reset();
	if (commit && !prepared && audit_extension_dropped && audit_queue_active())
		audit_queue_discard(audit_dropped_dbname);
	audit_extension_dropped = false;
}

/*
 * A subtransaction aborted: the events of its statements become "rolled
 * back".
 */
void
audit_events_subxact_abort(SubTransactionId mySubid)
{
	int i;

	/*
	 * Rows written in the aborted subtransactions (a transaction that wrote
	 * its own entries while the queue was full) vanished with them: those
	 * events are written again at commit, or queued.
	 */
	for (i = 0; i < audit_xact_nevents; i++)
	{
		AuditEvent *ev = audit_xact_events[i];

		if ((ev->flags & AUDIT_EVENT_WRITTEN) && ev->written_subid >= mySubid)
			ev->flags &= ~AUDIT_EVENT_WRITTEN;
	}
	audit_forget_app_events(mySubid);
	audit_mark_rolled_back(mySubid);
}
