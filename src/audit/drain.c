/*-------------------------------------------------------------------------
 *
 * drain.c
 *		Move entries from the database's audit queue into audit.entries.
 *
 * audit_drain() takes ownership of the database's queue, copies a batch of
 * records out and stores them in the current transaction (hold.c: with the
 * writer, or held while a dump is being restored into the database);
 * the records leave the queue only when that transaction commits (the
 * transaction callbacks release the queue: advancing it at commit, leaving
 * it as it was at abort), so an error loses nothing.  audit.flush() drains
 * everything in the caller's transaction; the database's scheduler runs
 * audit_drain_service() as a scheduler service (src/worker/worker.h),
 * draining in batches of one transaction each every
 * pg_opsdata.audit_flush_interval, and sooner when a writer wakes it.
 * Both first move the entries held during a restore that has ended.
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

#include "audit/audit.h"
#include "worker/worker.h"

#define AUDIT_DRAIN_BATCH 10000

/*
 * Drain up to max_events entries of the current database's queue into
 * audit.entries, in the current transaction.  When another process is
 * draining, wait for it if wait_for_owner, else return 0.  Returns the
 * number of queue records consumed.
 */
static int64
audit_drain_batch(bool wait_for_owner, int max_events)
{
	AuditQueueBatch batch;
	AuditEvent **events;
	char *dbname;
	int n = 0;
	int i;

	if (!audit_queue_active())
		return 0;
	dbname = get_database_name(MyDatabaseId);
	if (dbname == NULL ||
		!audit_queue_claim(dbname, max_events, wait_for_owner, &batch))
		return 0;
	if (batch.nevents == 0)
		return 0;

	events = palloc(sizeof(AuditEvent *) * batch.nevents);
	for (i = 0; i < batch.nevents; i++)
	{
		AuditEvent *ev = &batch.events[i];

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
		audit_queue_count_writer_error(dbname);
		PG_RE_THROW();
	}
	PG_END_TRY();
	pfree(events);
	pfree(batch.events);
	pfree(batch.data);
	return batch.nevents;
}

/*
 * Drain everything queued for the current database so far, in the
 * caller's transaction (audit.flush()), after moving the entries held
 * during a restore that has ended.  Returns how many entries it wrote.
 */
int64
audit_drain(bool wait_for_owner)
{
	int64 moved = 0;
	int64 n;

	/* In batches, so that the memory of one is freed before the next. */
	do
	{
		CHECK_FOR_INTERRUPTS();
		n = audit_move_held(AUDIT_DRAIN_BATCH);
		moved += n;
	} while (n == AUDIT_DRAIN_BATCH);
	return moved + audit_drain_batch(wait_for_owner, INT_MAX);
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
 * The scheduler service: first load the statement filter of the database
 * (statements.c), then drain in batches of one transaction each until the
 * queue is empty, and ask to be called again after the flush interval.
 * Called outside any transaction.
 */
long
audit_drain_service(void)
{
	static bool filter_loaded = false;

	if (!filter_loaded)
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		audit_statements_filter_load();
		PopActiveSnapshot();
		CommitTransactionCommand();
		filter_loaded = true;
	}
	audit_drain_held();
	for (;;)
	{
		int64 n;

		CHECK_FOR_INTERRUPTS();
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		n = audit_drain_batch(false, AUDIT_DRAIN_BATCH);
		PopActiveSnapshot();
		CommitTransactionCommand();
		if (n < AUDIT_DRAIN_BATCH)
			break;
	}
	return audit_flush_interval_ms;
}
