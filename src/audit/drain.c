/*-------------------------------------------------------------------------
 *
 * drain.c
 *		Move entries from the database's audit queue into audit.entries.
 *
 * audit_drain() takes ownership of the database's queue, copies a batch of
 * records out and inserts them with the writer in the current transaction;
 * the records leave the queue only when that transaction commits (the
 * transaction callbacks release the queue: advancing it at commit, leaving
 * it as it was at abort), so an error loses nothing.  audit.flush() drains
 * everything in the caller's transaction; the database's scheduler runs
 * audit_drain_service() as a scheduler service (src/worker/worker.h),
 * draining in batches of one transaction each every
 * pg_opsdata.audit_flush_interval, and sooner when a writer wakes it.
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
		audit_write_events(events, n);
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
 * caller's transaction (audit.flush()).
 */
int64
audit_drain(bool wait_for_owner)
{
	return audit_drain_batch(wait_for_owner, INT_MAX);
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
