/*-------------------------------------------------------------------------
 *
 * drain.c
 *		Move entries from the database's audit queue into audit.entries.
 *
 * The database's scheduler runs audit_drain_service() as a scheduler
 * service (src/worker/worker.h), every pg_opsdata.audit_flush_interval and
 * sooner when a writer wakes it: it takes ownership of the queue, copies a
 * batch of records out and stores them in a transaction of its own (hold.c:
 * with the writer, or held while a dump is being restored into the
 * database); the records leave the queue only when that transaction
 * commits (the transaction callbacks release the queue: advancing it at
 * commit, leaving it as it was at abort), so an error loses nothing.
 *
 * audit.flush() writes everything queued so far in the caller's
 * transaction, which may stay open for as long as its user likes: so it
 * never owns the queue beyond taking the records out (they leave it at
 * once), keeps them, and puts them back into the queue if the transaction
 * or the subtransaction that flushed aborts.  The scheduler drains beside
 * it whatever arrives meanwhile.  Both first move the entries held during
 * a restore that has ended.
 *
 * Logins were classified when they happened, before the session had a
 * database and could read the rules; the exclude rules are applied to them
 * here.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/drain.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "audit/audit.h"
#include "worker/worker.h"

#define AUDIT_DRAIN_BATCH 10000

/*
 * Write the events of a batch taken from the queue of dbname in the
 * current transaction, but for the logins the exclude rules leave out.  A
 * failure is counted, with its message, for health, and raised again.
 */
static void
audit_drain_write(const char *dbname, AuditQueueBatch *batch)
{
	AuditEvent **events = palloc(sizeof(AuditEvent *) * batch->nevents);
	MemoryContext cxt = CurrentMemoryContext;
	int n = 0;
	int i;

	for (i = 0; i < batch->nevents; i++)
	{
		AuditEvent *ev = &batch->events[i];

		if (ev->class == AUDIT_CLASS_LOGIN && ev->username != NULL &&
			audit_rules_excluded(ev, get_role_oid(ev->username, true)))
			continue;
		events[n++] = ev;
	}
	PG_TRY();
	{
		audit_store_events(events, n);
	}
	PG_CATCH();
	{
		ErrorData *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		audit_queue_count_writer_error(dbname, edata->message);
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pfree(events);
}

/*
 * Drain up to max_events entries of the current database's queue into
 * audit.entries, in the current transaction, which the caller commits at
 * once: the records leave the queue at that commit.  When another process
 * is draining, return 0.  Returns the number of queue records consumed.
 */
static int64
audit_drain_batch(int max_events)
{
	AuditQueueBatch batch;
	char *dbname;

	if (!audit_queue_active())
		return 0;
	dbname = get_database_name(MyDatabaseId);
	if (dbname == NULL ||
		!audit_queue_claim(dbname, max_events, false, &batch))
		return 0;
	if (batch.nevents == 0)
		return 0;

	audit_drain_write(dbname, &batch);
	pfree(batch.events);
	pfree(batch.data);
	return batch.nevents;
}

/*
 * Entries audit.flush() took out of the queue and wrote in a transaction
 * still open: put back into the queue if that transaction (or the
 * subtransaction that flushed) aborts.  They live in audit_taken_cxt, out
 * of the transaction's memory.
 */
typedef struct AuditTaken
{
	SubTransactionId subid;
	int nevents;
	AuditEvent **events;
} AuditTaken;

static MemoryContext audit_taken_cxt = NULL;
static List *audit_taken = NIL;
static bool audit_flushed = false; /* in the current transaction */

/*
 * Write everything queued for the current database so far, in the caller's
 * transaction (audit.flush()).  The entries leave the queue at once, so
 * that the transaction holds nothing the scheduler needs however long it
 * stays open; they come back into the queue if it aborts.  The entries
 * held during a restore that has ended are moved first.  Returns the
 * number of entries moved and taken.
 */
int64
audit_drain_flush(void)
{
	AuditQueueBatch batch;
	AuditTaken *taken;
	char *dbname;
	MemoryContext old;
	int64 moved = 0;
	int64 n;
	int i;

	audit_flushed = true;
	/* In batches, so that the memory of one is freed before the next. */
	do
	{
		CHECK_FOR_INTERRUPTS();
		n = audit_move_held(AUDIT_DRAIN_BATCH);
		moved += n;
	} while (n == AUDIT_DRAIN_BATCH);
	if (!audit_queue_active())
		return moved;
	dbname = get_database_name(MyDatabaseId);
	if (dbname == NULL)
		return moved;
	if (audit_taken_cxt == NULL)
		audit_taken_cxt =
			AllocSetContextCreate(TopMemoryContext, "pg_opsdata audit flushed",
								  ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(audit_taken_cxt);
	if (!audit_queue_take(dbname, INT_MAX, &batch) || batch.nevents == 0)
	{
		MemoryContextSwitchTo(old);
		return moved;
	}
	taken = palloc(sizeof(AuditTaken));
	taken->subid = GetCurrentSubTransactionId();
	taken->nevents = batch.nevents;
	taken->events = palloc(sizeof(AuditEvent *) * batch.nevents);
	for (i = 0; i < batch.nevents; i++)
		taken->events[i] = &batch.events[i];
	audit_taken = lappend(audit_taken, taken);
	MemoryContextSwitchTo(old);

	audit_drain_write(dbname, &batch);
	return moved + batch.nevents;
}

/*
 * Move the entries held during a restore of this database into
 * audit.entries, in transactions of AUDIT_DRAIN_BATCH entries, once the
 * restore has ended.  The drainer looks when told to (a session held
 * entries), after it saw a restore under way, and once at its start, for
 * entries held before the server restarted.  Called outside any
 * transaction.
 */
static void
audit_drain_held(void)
{
	static bool look = true;
	char *dbname;

	if (worker_restore_under_way(MyDatabaseId))
	{
		look = true;
		return;
	}
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	dbname = get_database_name(MyDatabaseId);
	if (dbname != NULL && audit_queue_take_held(dbname))
		look = true;
	CommitTransactionCommand();
	while (look)
	{
		int64 n;

		CHECK_FOR_INTERRUPTS();
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		n = audit_move_held(AUDIT_DRAIN_BATCH);
		PopActiveSnapshot();
		CommitTransactionCommand();
		if (n < AUDIT_DRAIN_BATCH)
			look = false;
	}
}

/*
 * The transaction that flushed ends: at commit the entries it took are
 * written; at abort they go back into the queue (or, when it is full, to
 * the session's deferred entries).  Must not fail.
 */
void
audit_drain_end_xact(bool commit)
{
	ListCell *lc;

	audit_flushed = false;
	if (audit_taken == NIL)
		return;
	if (!commit)
	{
		foreach (lc, audit_taken)
		{
			AuditTaken *taken = (AuditTaken *) lfirst(lc);

			audit_requeue(taken->events, taken->nevents);
		}
	}
	audit_taken = NIL;
	MemoryContextReset(audit_taken_cxt);
}

/*
 * A subtransaction aborts: the entries its flushes took go back into the
 * queue.
 */
void
audit_drain_end_subxact(SubTransactionId mySubid)
{
	List *kept = NIL;
	ListCell *lc;
	MemoryContext old;

	if (audit_taken == NIL)
		return;
	old = MemoryContextSwitchTo(audit_taken_cxt);
	foreach (lc, audit_taken)
	{
		AuditTaken *taken = (AuditTaken *) lfirst(lc);

		if (taken->subid >= mySubid)
			audit_requeue(taken->events, taken->nevents);
		else
			kept = lappend(kept, taken);
	}
	MemoryContextSwitchTo(old);
	audit_taken = kept;
}

/*
 * A transaction that flushed cannot be prepared: if it were rolled back
 * later, from another session, the entries it took would be lost.
 */
void
audit_drain_check_prepare(void)
{
	if (audit_flushed)
		ereport(
			ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot PREPARE a transaction that has run audit.flush()"),
			 errhint("Run audit.flush() in a transaction of its own.")));
}

/*
 * After a batch could not lock what it writes, the next attempt comes this
 * soon: the queue starts moving again within it once the lock is gone.
 */
#define AUDIT_DRAIN_RETRY_MS 1000

/*
 * The scheduler service: first load the statement filter of the database
 * (statements.c), then drain in batches of one transaction each until the
 * queue is empty, and ask to be called again after the flush interval.
 * Called outside any transaction, in the scheduler, whose lock_timeout
 * bounds every lock wait: a batch that cannot lock audit.entries or one of
 * its partitions is rolled back (nothing leaves the queue), counted for
 * health, logged at most once a minute, and tried again after
 * AUDIT_DRAIN_RETRY_MS, so that a lock held for long never keeps the
 * scheduler waiting, nor the queue stuck once it is released.  Other
 * errors go to the scheduler, which backs the service off.
 */
long
audit_drain_service(void)
{
	static bool filter_loaded = false;
	static char *dbname = NULL;
	static TimestampTz last_report = 0;
	MemoryContext cxt = CurrentMemoryContext;

	if (!filter_loaded)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		audit_statements_filter_load();
		dbname = MemoryContextStrdup(TopMemoryContext,
									 get_database_name(MyDatabaseId));
		PopActiveSnapshot();
		CommitTransactionCommand();
		filter_loaded = true;
	}
	audit_drain_held();
	for (;;)
	{
		volatile int64 n = 0;
		volatile bool blocked = false;

		CHECK_FOR_INTERRUPTS();
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PG_TRY();
		{
			PushActiveSnapshot(GetTransactionSnapshot());
			n = audit_drain_batch(AUDIT_DRAIN_BATCH);
			PopActiveSnapshot();
			CommitTransactionCommand();
		}
		PG_CATCH();
		{
			ErrorData *edata;
			TimestampTz now = GetCurrentTimestamp();

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
				PG_RE_THROW();
			FlushErrorState();
			AbortCurrentTransaction();
			if (TimestampDifferenceExceeds(last_report, now, 60 * 1000))
			{
				ereport(
					LOG,
					(errmsg(
						 "could not drain the audit queue of database \"%s\": %s",
						 dbname, edata->message),
					 errdetail(
						 "Another session holds a lock on audit.entries, one of its partitions or audit.statements; the scheduler tries again every %d ms.",
						 AUDIT_DRAIN_RETRY_MS)));
				last_report = now;
			}
			FreeErrorData(edata);
			blocked = true;
		}
		PG_END_TRY();
		if (blocked)
			return AUDIT_DRAIN_RETRY_MS;
		if (n < AUDIT_DRAIN_BATCH)
			break;
	}
	return audit_flush_interval_ms;
}
