/*-------------------------------------------------------------------------
 *
 * ids.c
 *		Audit entry ids, allocated without touching the session's state.
 *
 * audit.entries.entry_id numbers the trail.  The writer (writer.c) runs in
 * the user's own transaction at pre-commit, so it must not use nextval():
 * that would set the session's lastval() and currval(), and is refused in
 * read-only transactions.  Ids come from here instead:
 *
 *	- A counter per database in shared memory hands them out.  It is seeded
 *	  once per server life (and again when audit.entries is a new relation,
 *	  after DROP and CREATE EXTENSION) from the highest entry_id of any row
 *	  version of audit.entries, in-progress and prepared ones included (the
 *	  rightmost key of each partition's primary key index, read with
 *	  SnapshotAny), and from the sequence audit.entries_entry_id_seq.
 *	- The sequence is the counter's persistent high-water mark, read at
 *	  every allocation.  Whenever the counter passes it, it is advanced
 *	  (AUDIT_IDS_AHEAD beyond, the counter's "mark") by writing its page and
 *	  WAL record here, as nextval() does, without nextval()'s session state.
 *	  Values up to the mark are the counter's own; a sequence found at any
 *	  other value was moved by someone else, and the counter then goes above
 *	  it.  So a dump carries a value above every id it holds, a restore's
 *	  setval() lifts the counter above the restored ids, a table emptied by
 *	  retention does not restart the numbering, and the column default
 *	  (nextval()) never collides.
 *	- The counter only grows: a setval() that lowers the sequence, by anyone
 *	  who may update it, is ignored (and undone at the next allocation)
 *	  while the server runs, and after a restart the seed from the rows
 *	  themselves still lies above every id present.
 *
 * audit_seq_next() gives the next value of another sequence in the same
 * way, for the items the processing queues' subscriptions enqueue where
 * entries are written (pqueue_store.c).
 *
 * Ids are unique, not gapless: aborted transactions and restarts leave gaps.
 * Within a transaction they grow in the order of its entries; across
 * concurrent transactions they follow the order of allocation, not of
 * commit.
 *
 * Locking: the caller holds RowExclusiveLock on audit.entries.  The
 * sequence's buffer content lock (exclusive) serializes allocations of a
 * database, as for nextval(); the counters are guarded by the one LWLock
 * of this part, taken inside the buffer lock and never the other way
 * round.  Seeding reads the partitions before either lock is taken.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/ids.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/relscan.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xloginsert.h"
#include "catalog/pg_am.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_sequence.h"
#include "catalog/pg_type.h"
#include "commands/sequence.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "audit/audit.h"
#include "core/opsdata.h"

#define AUDIT_IDS_NAME "pg_opsdata audit ids"

/* How far beyond the last id handed out the sequence is advanced. */
#define AUDIT_IDS_AHEAD 100

/* The magic number of a sequence page's special space (sequence.c). */
#define AUDIT_SEQ_MAGIC 0x1717

typedef struct AuditIdCounter
{
	Oid dboid;	 /* InvalidOid: free */
	Oid entries; /* audit.entries the counter was seeded from */
	int64 last;	 /* the last id handed out */
	int64 mark;	 /* what the counter last wrote into the sequence */
	uint64 used; /* tick of the last use, to pick a victim */
} AuditIdCounter;

typedef struct AuditIdShared
{
	int ncounters;
	uint64 tick;
	AuditIdCounter counters[FLEXIBLE_ARRAY_MEMBER];
} AuditIdShared;

static AuditIdShared *audit_ids = NULL;
static LWLock *audit_ids_lock = NULL;

/* A counter per database that can have a queue, and as many again. */
static int
audit_ids_ncounters(void)
{
	return audit_max_databases * 2;
}

static Size
audit_ids_shmem_size(void)
{
	return add_size(offsetof(AuditIdShared, counters),
					mul_size(sizeof(AuditIdCounter), audit_ids_ncounters()));
}

static void
audit_ids_shmem_startup(void)
{
	bool found;

	audit_ids =
		ShmemInitStruct(AUDIT_IDS_NAME, audit_ids_shmem_size(), &found);
	audit_ids_lock = &(GetNamedLWLockTranche(AUDIT_IDS_NAME))->lock;
	if (found)
		return;
	memset(audit_ids, 0, audit_ids_shmem_size());
	audit_ids->ncounters = audit_ids_ncounters();
}

static OpsdataShmemPart audit_ids_part = {AUDIT_IDS_NAME, audit_ids_shmem_size,
										  1, audit_ids_shmem_startup};

/*
 * Register the counters' shared memory.  Preloaded only.
 */
void
audit_ids_init(void)
{
	opsdata_shmem_register(&audit_ids_part);
}

/* The counter of the current database, or NULL.  Caller holds the lock. */
static AuditIdCounter *
audit_ids_counter(void)
{
	int i;

	for (i = 0; i < audit_ids->ncounters; i++)
	{
		if (audit_ids->counters[i].dboid == MyDatabaseId)
			return &audit_ids->counters[i];
	}
	return NULL;
}

/*
 * A counter for the current database, taking a free one or the one used
 * longest ago.  Caller holds the lock exclusively.
 */
static AuditIdCounter *
audit_ids_new_counter(void)
{
	AuditIdCounter *victim = &audit_ids->counters[0];
	int i;

	for (i = 0; i < audit_ids->ncounters; i++)
	{
		AuditIdCounter *c = &audit_ids->counters[i];

		if (c->dboid == InvalidOid)
		{
			victim = c;
			break;
		}
		if (c->used < victim->used)
			victim = c;
	}
	victim->dboid = MyDatabaseId;
	victim->entries = InvalidOid;
	victim->last = 0;
	victim->mark = 0;
	return victim;
}

/* Is the current database's counter seeded from this audit.entries? */
static bool
audit_ids_seeded(Oid entries)
{
	AuditIdCounter *c;
	bool seeded;

	LWLockAcquire(audit_ids_lock, LW_SHARED);
	c = audit_ids_counter();
	seeded = c != NULL && c->entries == entries;
	LWLockRelease(audit_ids_lock);
	return seeded;
}

/*
 * The highest entry_id of any row version of one leaf of audit.entries,
 * or 0: the rightmost key of a B-tree index led by entry_id, or else the
 * greatest value of a scan of every row version.  Dead versions count too,
 * which only makes the answer higher.
 */
static int64
audit_ids_leaf_max(Oid relid)
{
	Relation rel = table_open(relid, AccessShareLock);
	AttrNumber attnum = get_attnum(relid, "entry_id");
	List *indexes;
	ListCell *lc;
	int64 max = 0;
	bool done = false;

	if (attnum == InvalidAttrNumber || get_atttype(relid, attnum) != INT8OID)
	{
		table_close(rel, AccessShareLock);
		return 0;
	}
	indexes = RelationGetIndexList(rel);
	foreach (lc, indexes)
	{
		Relation index = index_open(lfirst_oid(lc), AccessShareLock);
		IndexScanDesc scan;

		if (index->rd_rel->relam != BTREE_AM_OID ||
			index->rd_index->indkey.values[0] != attnum ||
			!index->rd_index->indisvalid)
		{
			index_close(index, AccessShareLock);
			continue;
		}
		scan = index_beginscan(rel, index, SnapshotAny, 0, 0);
		scan->xs_want_itup = true;
		index_rescan(scan, NULL, 0, NULL, 0);
		while (index_getnext_tid(scan, BackwardScanDirection) != NULL)
		{
			bool isnull;
			Datum d =
				index_getattr(scan->xs_itup, 1, scan->xs_itupdesc, &isnull);

			if (!isnull)
			{
				max = DatumGetInt64(d);
				break;
			}
		}
		index_endscan(scan);
		index_close(index, AccessShareLock);
		done = true;
		break;
	}
	list_free(indexes);

	if (!done)
	{
		TableScanDesc scan = table_beginscan(rel, SnapshotAny, 0, NULL);
		TupleTableSlot *slot = table_slot_create(rel, NULL);

		while (table_scan_getnextslot(scan, ForwardScanDirection, slot))
		{
			bool isnull;
			Datum d = slot_getattr(slot, attnum, &isnull);

			CHECK_FOR_INTERRUPTS();
			if (!isnull && DatumGetInt64(d) > max)
				max = DatumGetInt64(d);
		}
		ExecDropSingleTupleTableSlot(slot);
		table_endscan(scan);
	}
	table_close(rel, AccessShareLock);
	return max;
}

/* The highest entry_id of any row version of audit.entries, or 0. */
static int64
audit_ids_scan(Oid entries)
{
	List *rels = find_all_inheritors(entries, AccessShareLock, NULL);
	ListCell *lc;
	int64 max = 0;

	foreach (lc, rels)
	{
		Oid relid = lfirst_oid(lc);

		if (get_rel_relkind(relid) != RELKIND_RELATION)
			continue;
		max = Max(max, audit_ids_leaf_max(relid));
	}
	list_free(rels);
	return max;
}

/*
 * The data of sequence seqrel, its page locked exclusively in *buf (the
 * caller releases it) and its tuple in *tuple.
 */
static Form_pg_sequence_data
audit_seq_lock(Relation seqrel, Buffer *buf, HeapTupleData *tuple)
{
	Page page;
	ItemId lp;

	if (seqrel->rd_rel->relkind != RELKIND_SEQUENCE)
		elog(ERROR, "\"%s\" is not a sequence",
			 RelationGetRelationName(seqrel));
	*buf = ReadBuffer(seqrel, 0);
	LockBuffer(*buf, BUFFER_LOCK_EXCLUSIVE);
	page = BufferGetPage(*buf);
	if (PageGetSpecialSize(page) != MAXALIGN(sizeof(uint32)) ||
		*(uint32 *) PageGetSpecialPointer(page) != AUDIT_SEQ_MAGIC ||
		PageGetMaxOffsetNumber(page) < FirstOffsetNumber)
		elog(ERROR, "bad page in sequence \"%s\"",
			 RelationGetRelationName(seqrel));
	lp = PageGetItemId(page, FirstOffsetNumber);
	tuple->t_data = (HeapTupleHeader) PageGetItem(page, lp);
	tuple->t_len = ItemIdGetLength(lp);
	return (Form_pg_sequence_data) GETSTRUCT(tuple);
}

/*
 * Set the locked sequence page of buf to last_value value (called), with
 * log_cnt values logged ahead.  With logit, first write the WAL record
 * that recovery sets it to logged from; as nextval() does, the transaction
 * then gets an id, so that its commit flushes the record.
 */
static void
audit_seq_write(Relation seqrel, Buffer buf, HeapTupleData *tuple, int64 value,
				bool logit, int64 logged, int64 log_cnt)
{
	Form_pg_sequence_data form = (Form_pg_sequence_data) GETSTRUCT(tuple);
	Page page = BufferGetPage(buf);

	if (logit && RelationNeedsWAL(seqrel))
		(void) GetTopTransactionId();
	START_CRIT_SECTION();
	MarkBufferDirty(buf);
	if (logit && RelationNeedsWAL(seqrel))
	{
		xl_seq_rec xlrec;
		XLogRecPtr recptr;

		form->last_value = logged;
		form->is_called = true;
		form->log_cnt = 0;
		XLogBeginInsert();
		XLogRegisterBuffer(0, buf, REGBUF_WILL_INIT);
		xlrec.node = seqrel->rd_node;
		XLogRegisterData((char *) &xlrec, sizeof(xl_seq_rec));
		XLogRegisterData((char *) tuple->t_data, tuple->t_len);
		recptr = XLogInsert(RM_SEQ_ID, XLOG_SEQ_LOG);
		PageSetLSN(page, recptr);
	}
	form->last_value = value;
	form->is_called = true;
	form->log_cnt = log_cnt;
	END_CRIT_SECTION();
}

/*
 * Hand out n consecutive entry ids for the current database and return
 * the first.  entries and seq are audit.entries and its sequence; the
 * caller holds RowExclusiveLock on entries and is in a transaction that
 * writes.  Raises an error when the ids are exhausted.
 */
int64
audit_ids_allocate(Oid entries, Oid seq, int n)
{
	int64 seed = 0;
	bool have_seed = false;

	Assert(n > 0);
	for (;;)
	{
		Relation seqrel;
		Buffer buf;
		HeapTupleData tuple;
		Form_pg_sequence_data form;
		AuditIdCounter *c;
		int64 floor;
		int64 first;
		int64 last;
		int64 mark;
		bool write;

		if (!have_seed && !audit_ids_seeded(entries))
		{
			seed = audit_ids_scan(entries);
			have_seed = true;
		}

		seqrel = relation_open(seq, AccessShareLock);
		form = audit_seq_lock(seqrel, &buf, &tuple);
		floor = form->is_called ? form->last_value : form->last_value - 1;

		LWLockAcquire(audit_ids_lock, LW_EXCLUSIVE);
		c = audit_ids_counter();
		if (c == NULL || c->entries != entries)
		{
			if (!have_seed)
			{
				/* Taken over since it was looked at: seed it, and again. */
				LWLockRelease(audit_ids_lock);
				UnlockReleaseBuffer(buf);
				relation_close(seqrel, NoLock);
				continue;
			}
			if (c == NULL)
				c = audit_ids_new_counter();
			c->entries = entries;
			c->last = seed;
			c->mark = 0;
		}
		else if (have_seed)
			c->last = Max(c->last, seed);

		/*
		 * Values up to the mark are reserved for the counter.  A sequence
		 * moved by anyone else (nextval() of the column default, a
		 * restore's setval()) may have handed out values up to its own: the
		 * counter goes above them.  A sequence set lower is ignored, and set
		 * back.
		 */
		if (floor != c->mark)
			c->last = Max(c->last, floor);
		if (c->last > PG_INT64_MAX - n)
		{
			LWLockRelease(audit_ids_lock);
			ereport(ERROR,
					(errcode(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED),
					 errmsg("audit entry ids are exhausted"),
					 errdetail("The highest entry id is " INT64_FORMAT ".",
							   c->last)));
		}
		first = c->last + 1;
		last = c->last + n;
		c->last = last;
		c->used = ++audit_ids->tick;
		write = last > floor || floor != c->mark;
		if (write)
			c->mark = last > PG_INT64_MAX - AUDIT_IDS_AHEAD
						  ? PG_INT64_MAX
						  : last + AUDIT_IDS_AHEAD;
		mark = c->mark;
		LWLockRelease(audit_ids_lock);

		if (write)
			audit_seq_write(seqrel, buf, &tuple, mark, true, mark, 0);
		UnlockReleaseBuffer(buf);
		relation_close(seqrel, NoLock);
		return first;
	}
}

/* Values nextval() logs ahead of the one it hands out (sequence.c). */
#define AUDIT_SEQ_LOG_VALS 32

/* Can value take one more step of incby within [minv, maxv]? */
static inline bool
audit_seq_can_step(int64 value, int64 incby, int64 minv, int64 maxv)
{
	return incby > 0 ? value <= maxv - incby : value >= minv - incby;
}

/*
 * The next value of sequence seq, as nextval() would give it to a caller
 * exempt from privilege checks, but without touching the session's state:
 * lastval() and currval() stay as they were, and a read-only transaction
 * may take it (the processing queues' items of audit entries are enqueued
 * where the entries are written).  Increment, bounds and cycling are the
 * sequence's own; its CACHE is not used (each call reads the page), and,
 * as nextval() does, values are WAL-logged AUDIT_SEQ_LOG_VALS ahead.
 */
int64
audit_seq_next(Oid seq)
{
	Relation seqrel = relation_open(seq, RowExclusiveLock);
	HeapTuple pgstup;
	Form_pg_sequence pgs;
	Buffer buf;
	HeapTupleData tuple;
	Form_pg_sequence_data form;
	int64 incby;
	int64 maxv;
	int64 minv;
	bool cycle;
	int64 next;
	int64 logged;
	int64 log_cnt;

	pgstup = SearchSysCache1(SEQRELID, ObjectIdGetDatum(seq));
	if (!HeapTupleIsValid(pgstup))
		elog(ERROR, "cache lookup failed for sequence %u", seq);
	pgs = (Form_pg_sequence) GETSTRUCT(pgstup);
	incby = pgs->seqincrement;
	maxv = pgs->seqmax;
	minv = pgs->seqmin;
	cycle = pgs->seqcycle;
	ReleaseSysCache(pgstup);

	form = audit_seq_lock(seqrel, &buf, &tuple);
	next = form->last_value;
	if (form->is_called)
	{
		if (audit_seq_can_step(next, incby, minv, maxv))
			next += incby;
		else if (cycle)
			next = incby > 0 ? minv : maxv;
		else
		{
			UnlockReleaseBuffer(buf);
			ereport(ERROR, (errcode(ERRCODE_SEQUENCE_GENERATOR_LIMIT_EXCEEDED),
							errmsg("reached the %s value of sequence \"%s\"",
								   incby > 0 ? "maximum" : "minimum",
								   RelationGetRelationName(seqrel))));
		}
	}
	if (form->is_called && form->log_cnt > 0 &&
		PageGetLSN(BufferGetPage(buf)) > GetRedoRecPtr())
	{
		/* Logged ahead already, since the last checkpoint. */
		audit_seq_write(seqrel, buf, &tuple, next, false, next,
						form->log_cnt - 1);
	}
	else
	{
		logged = next;
		for (log_cnt = 0; log_cnt < AUDIT_SEQ_LOG_VALS &&
						  audit_seq_can_step(logged, incby, minv, maxv);
			 log_cnt++)
			logged += incby;
		audit_seq_write(seqrel, buf, &tuple, next, true, logged, log_cnt);
	}
	UnlockReleaseBuffer(buf);
	relation_close(seqrel, NoLock);
	return next;
}
