/*-------------------------------------------------------------------------
 *
 * hold.c
 *		Audit entries held while a dump is being restored.
 *
 * While a dump is being restored into a database (worker_restore_under_way),
 * nothing may be written into its audit.entries or audit.statements: the
 * restore has yet to load their rows, attach the daily partitions of
 * audit.entries (an entry in the default partition for a day whose
 * partition is restored later makes that ATTACH fail) and set the
 * sequence of entry_ids (an id taken before that is taken again by a
 * restored entry).  So every entry the database's sessions make meanwhile,
 * those of the restore's own statements included, is held in
 * audit.held_entries instead, in the transaction that would have written
 * it into audit.entries: at pre-commit for write, ddl and role statements,
 * in the drainer's transaction for the queued classes.  A held entry has
 * its statement text inline and no entry_id.
 *
 * Once the restore has ended, the database's scheduler (audit queue drain
 * service) or audit.flush() moves the held entries into audit.entries
 * with the ordinary writer, in batches: the writer gives them their
 * entry_ids then, after every restored one, and stores their texts; each
 * batch leaves audit.held_entries in the transaction that writes it.  A
 * held entry survives a crash or a restart of the server like any row.
 *
 * Locking: a writer that may have to hold (worker_restore_under_way() is
 * cheap and says "maybe" while any restore entry is in use) takes
 * RowExclusiveLock on audit.held_entries before it asks again and holds.
 * The mover asks first, then takes ShareRowExclusiveLock, which waits for
 * every writer that decided to hold; a writer that asks after that finds
 * the restore over, since a restore once ended does not resume.  So no
 * entry is held behind a move.  A writer that holds also flags the
 * database's queue slot (queue.c), so that the drainer knows to move even
 * when its interval is longer than a whole restore; the drainer clears the
 * flag before it takes the lock.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/hold.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/xid8.h"

#include "audit/audit.h"
#include "core/opsdata.h"
#include "worker/worker.h"

/* audit.held_entries, or InvalidOid (an older schema without it). */
static Oid
audit_held_relid(void)
{
	Oid nsp = get_namespace_oid("audit", true);

	return OidIsValid(nsp) ? get_relname_relid("held_entries", nsp)
						   : InvalidOid;
}

/*
 * Insert events into audit.held_entries (relid, locked by the caller) in
 * the current transaction.
 */
static void
audit_hold_events(Oid relid, AuditEvent **events, int nevents)
{
	Relation rel = table_open(relid, NoLock);
	EState *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	TupleTableSlot *slot;
	MemoryContext rowcxt;
	MemoryContext old;
	CommandId cid = GetCurrentCommandId(true);
	AuditEntryRow row;
	int i;

	audit_entry_columns(&row, RelationGetDescr(rel));
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	slot = table_slot_create(rel, NULL);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext,
								   "pg_opsdata held audit row",
								   ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < nevents; i++)
	{
		MemoryContextReset(rowcxt);
		old = MemoryContextSwitchTo(rowcxt);
		ExecClearTuple(slot);
		memset(slot->tts_isnull, true,
			   sizeof(bool) * slot->tts_tupleDescriptor->natts);
		audit_entry_values(&row, events[i], 0, false, 0, false,
						   slot->tts_values, slot->tts_isnull);
		ExecStoreVirtualTuple(slot);
		table_tuple_insert(rel, slot, cid, 0, NULL);
		if (rri->ri_NumIndices > 0)
			list_free(ExecInsertIndexTuples(rri, slot, estate, false, false,
											NULL, NIL));
		MemoryContextSwitchTo(old);
		ResetPerTupleExprContext(estate);
	}
	MemoryContextDelete(rowcxt);
	ExecDropSingleTupleTableSlot(slot);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
}

/* What audit_hold_batch() holds. */
typedef struct AuditHoldBatch
{
	Oid relid;
	AuditEvent **events;
	int nevents;
} AuditHoldBatch;

/* audit_hold_events() as the extension's own work. */
static void
audit_hold_batch(void *arg)
{
	AuditHoldBatch *batch = (AuditHoldBatch *) arg;

	audit_hold_events(batch->relid, batch->events, batch->nevents);
}

/*
 * Store events of the current database in the current transaction: into
 * audit.entries (writer.c), or into audit.held_entries while a dump is
 * being restored into the database.  Every caller that would write audit
 * entries goes through here; it refuses (version.c) when the extension's
 * objects are too old for the library.
 */
void
audit_store_events(AuditEvent **events, int nevents)
{
	Oid held;

	if (nevents == 0)
		return;
	opsdata_check_schema();
	if (worker_restore_under_way(MyDatabaseId) &&
		OidIsValid(held = audit_held_relid()))
	{
		/* The lock first: see the banner. */
		LockRelationOid(held, RowExclusiveLock);
		if (worker_restore_under_way(MyDatabaseId))
		{
			AuditHoldBatch batch;

			batch.relid = held;
			batch.events = events;
			batch.nevents = nevents;
			audit_run_internal(audit_hold_batch, &batch);
			audit_queue_note_held(audit_database_name());
			return;
		}
	}
	audit_write_events(events, nevents);
}

/* A class or outcome by name; -1 when unknown. */
static int
audit_held_code(const char *name, const char *(*namer)(int), int n)
{
	int i;

	for (i = 0; i < n; i++)
	{
		if (strcmp(namer(i), name) == 0)
			return i;
	}
	return -1;
}

static const char *
audit_held_string(Datum d)
{
	return TextDatumGetCString(d);
}

/* The elements of a text[] datum, NULL elements as NULL pointers. */
static const char **
audit_held_strings(Datum d, int *n)
{
	ArrayType *array = DatumGetArrayTypeP(d);
	Datum *elems;
	bool *nulls;
	const char **items;
	int i;

	deconstruct_array(array, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls,
					  n);
	items = palloc(sizeof(char *) * Max(*n, 1));
	for (i = 0; i < *n; i++)
		items[i] = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
	return items;
}

/* An event made from a row of audit.held_entries (in the current context). */
static AuditEvent *
audit_held_event(TupleTableSlot *slot, const int *attnum)
{
	AuditEvent *ev = palloc0(sizeof(AuditEvent));
	Datum *values = slot->tts_values;
	bool *isnull = slot->tts_isnull;
	int nobjects = 0;
	int nprivileges = 0;

#define HELD_GIVEN(c) (attnum[c] > 0 && !isnull[attnum[c] - 1])
#define HELD_VALUE(c) (values[attnum[c] - 1])

	slot_getallattrs(slot);
	if (HELD_GIVEN(AUDIT_COL_TS))
		ev->ts = DatumGetTimestampTz(HELD_VALUE(AUDIT_COL_TS));
	if (HELD_GIVEN(AUDIT_COL_DATABASE))
		ev->database = audit_held_string(HELD_VALUE(AUDIT_COL_DATABASE));
	if (HELD_GIVEN(AUDIT_COL_USERNAME))
		ev->username = audit_held_string(HELD_VALUE(AUDIT_COL_USERNAME));
	if (HELD_GIVEN(AUDIT_COL_CURRENT_USER))
		ev->current_user_name =
			audit_held_string(HELD_VALUE(AUDIT_COL_CURRENT_USER));
	if (HELD_GIVEN(AUDIT_COL_APPLICATION))
		ev->application = audit_held_string(HELD_VALUE(AUDIT_COL_APPLICATION));
	if (HELD_GIVEN(AUDIT_COL_CLIENT_ADDR))
		ev->client_addr = DatumGetCString(
			DirectFunctionCall1(inet_out, HELD_VALUE(AUDIT_COL_CLIENT_ADDR)));
	if (HELD_GIVEN(AUDIT_COL_BACKEND_PID))
		ev->backend_pid = DatumGetInt32(HELD_VALUE(AUDIT_COL_BACKEND_PID));
	if (HELD_GIVEN(AUDIT_COL_XID))
	{
		ev->xid = U64FromFullTransactionId(
			DatumGetFullTransactionId(HELD_VALUE(AUDIT_COL_XID)));
		ev->flags |= AUDIT_EVENT_HAS_XID;
	}
	ev->class = AUDIT_CLASS_MISC;
	if (HELD_GIVEN(AUDIT_COL_CLASS))
	{
		int class =
			audit_held_code(audit_held_string(HELD_VALUE(AUDIT_COL_CLASS)),
							audit_class_name, AUDIT_NUM_CLASSES);

		if (class >= 0)
			ev->class = class;
	}
	ev->command = HELD_GIVEN(AUDIT_COL_COMMAND)
					  ? audit_held_string(HELD_VALUE(AUDIT_COL_COMMAND))
					  : "???";
	if (HELD_GIVEN(AUDIT_COL_OBJECTS))
		ev->objects =
			audit_held_strings(HELD_VALUE(AUDIT_COL_OBJECTS), &nobjects);
	ev->nobjects = nobjects;
	if (nobjects > 0)
	{
		ev->privileges = palloc0(sizeof(char *) * nobjects);
		if (HELD_GIVEN(AUDIT_COL_PRIVILEGES))
		{
			const char **privileges = audit_held_strings(
				HELD_VALUE(AUDIT_COL_PRIVILEGES), &nprivileges);

			memcpy(ev->privileges, privileges,
				   sizeof(char *) * Min(nprivileges, nobjects));
		}
	}
	if (HELD_GIVEN(AUDIT_COL_ROWS))
	{
		ev->rows = DatumGetInt64(HELD_VALUE(AUDIT_COL_ROWS));
		ev->flags |= AUDIT_EVENT_HAS_ROWS;
	}
	if (HELD_GIVEN(AUDIT_COL_DURATION))
	{
		Interval *iv = DatumGetIntervalP(HELD_VALUE(AUDIT_COL_DURATION));

		ev->duration_us = iv->time + (int64) iv->day * USECS_PER_DAY;
		ev->flags |= AUDIT_EVENT_HAS_DURATION;
	}
	ev->outcome = AUDIT_OUTCOME_OK;
	if (HELD_GIVEN(AUDIT_COL_OUTCOME))
	{
		int outcome =
			audit_held_code(audit_held_string(HELD_VALUE(AUDIT_COL_OUTCOME)),
							audit_outcome_name, AUDIT_OUTCOME_FAILED + 1);

		if (outcome >= 0)
			ev->outcome = outcome;
	}
	if (HELD_GIVEN(AUDIT_COL_SQLSTATE))
	{
		const char *s = audit_held_string(HELD_VALUE(AUDIT_COL_SQLSTATE));

		if (strlen(s) == 5)
			ev->sqlstate = MAKE_SQLSTATE(s[0], s[1], s[2], s[3], s[4]);
	}
	if (HELD_GIVEN(AUDIT_COL_STATEMENT_TEXT))
		ev->statement =
			audit_held_string(HELD_VALUE(AUDIT_COL_STATEMENT_TEXT));
	if (HELD_GIVEN(AUDIT_COL_PARAMS))
		ev->params = audit_held_string(HELD_VALUE(AUDIT_COL_PARAMS));
	if (HELD_GIVEN(AUDIT_COL_ACTOR))
		ev->actor = audit_held_string(HELD_VALUE(AUDIT_COL_ACTOR));
	if (HELD_GIVEN(AUDIT_COL_REQUEST_ID))
		ev->request_id = audit_held_string(HELD_VALUE(AUDIT_COL_REQUEST_ID));
	if (HELD_GIVEN(AUDIT_COL_ATTRIBUTES))
		ev->attributes = DatumGetCString(
			DirectFunctionCall1(jsonb_out, HELD_VALUE(AUDIT_COL_ATTRIBUTES)));
	if (HELD_GIVEN(AUDIT_COL_DETAILS))
		ev->details = DatumGetCString(
			DirectFunctionCall1(jsonb_out, HELD_VALUE(AUDIT_COL_DETAILS)));
#undef HELD_GIVEN
#undef HELD_VALUE
	return ev;
}

/*
 * Move up to max_entries held entries into audit.entries, in the current
 * transaction, unless a restore is still under way in the database.
 * Returns how many were moved.  Caller is in a transaction with a
 * snapshot; errors abort it, and the entries stay held.
 */
int64
audit_move_held(int max_entries)
{
	Oid relid = audit_held_relid();
	Relation rel;
	Snapshot snapshot;
	TableScanDesc scan;
	TupleTableSlot *slot;
	AuditEvent **events;
	ItemPointerData *tids;
	AuditEntryRow row;
	int n = 0;
	int max = 64;
	int i;
	MemoryContext cxt;
	MemoryContext old;

	if (!OidIsValid(relid) || worker_restore_under_way(MyDatabaseId))
		return 0;
	rel = table_open(relid, AccessShareLock);
	/*
	 * Nothing ever held: no lock that would make concurrent calls wait for
	 * each other.  A writer still about to hold flags it when it has.
	 */
	if (RelationGetNumberOfBlocks(rel) == 0)
	{
		table_close(rel, AccessShareLock);
		return 0;
	}
	/* Waits for the writers that decided to hold: see the banner. */
	LockRelationOid(relid, ShareRowExclusiveLock);
	cxt = AllocSetContextCreate(CurrentMemoryContext, "pg_opsdata held audit",
								ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(cxt);
	audit_entry_columns(&row, RelationGetDescr(rel));
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	slot = table_slot_create(rel, NULL);
	events = palloc(sizeof(AuditEvent *) * max);
	tids = palloc(sizeof(ItemPointerData) * max);
	while (n < max_entries &&
		   table_scan_getnextslot(scan, ForwardScanDirection, slot))
	{
		CHECK_FOR_INTERRUPTS();
		if (n == max)
		{
			max *= 2;
			events = repalloc(events, sizeof(AuditEvent *) * max);
			tids = repalloc(tids, sizeof(ItemPointerData) * max);
		}
		events[n] = audit_held_event(slot, row.attnum);
		tids[n] = slot->tts_tid;
		n++;
	}
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);

	audit_write_events(events, n);
	for (i = 0; i < n; i++)
		simple_table_tuple_delete(rel, &tids[i], snapshot);
	UnregisterSnapshot(snapshot);
	table_close(rel, NoLock);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	if (n > 0)
		CommandCounterIncrement();
	return n;
}

/*
 * How many entries audit.held_entries holds, or -1 without the table.
 * For health.
 */
int64
audit_held_count(void)
{
	Oid relid = audit_held_relid();
	Relation rel;
	TableScanDesc scan;
	TupleTableSlot *slot;
	int64 n = 0;

	if (!OidIsValid(relid))
		return -1;
	rel = table_open(relid, AccessShareLock);
	scan = table_beginscan(rel, GetActiveSnapshot(), 0, NULL);
	slot = table_slot_create(rel, NULL);
	while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		n++;
	table_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, AccessShareLock);
	return n;
}
