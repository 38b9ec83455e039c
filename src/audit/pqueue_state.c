/*-------------------------------------------------------------------------
 *
 * pqueue_state.c
 *		Where the reads of each processing queue start, and what the
 *		transactions that change a queue announce at commit.
 *
 * A read (pqueue_read.c) scans a queue's range of the item index from a
 * start position and leases what is available.  This file keeps, per
 * queue, the positions that spare reads from walking what is already
 * settled or handed out:
 *
 *	settled_below	every item with a lower id is acknowledged (or dead);
 *	cursor			items from here on were never looked at by a read;
 *	rescan_from		lowest id below the cursor that may be available again
 *					(PQ_NO_ID when none): reads start there, else at the
 *					cursor;
 *	due_at			when a lease or delay of an item below the cursor may
 *					end: then rescan_from drops to settled_below.
 *
 * An item below the cursor becomes available again when its lease or delay
 * ends (due_at), when it is nacked, when the transaction that leased it,
 * acknowledged it or nacked it rolls back, and when a transaction that
 * enqueued it commits after a read passed its id (ids are taken before
 * commit, so commits come out of id order).  Transactions note what they
 * did to each queue (pq_xact_*), and the transaction callback announces it
 * after commit or abort: it lowers rescan_from, and wakes a reader that
 * waits (long polling) through the queue's condition variable, without any
 * lock held over commit (unlike NOTIFY).  One reader is woken; a reader
 * that took all it asked for wakes the next, so that a commit of one item
 * wakes one reader, not all.
 *
 * The one race is a read that passes an id whose transaction is still
 * running and commits before the read has moved the cursor past it: the
 * committing transaction finds the cursor below its item and says nothing.
 * So every commit of enqueued items also enters its lowest id in a ring of
 * recent commits, and a read (or a walk of settled items) reads the commit
 * count before taking its snapshot and, when it moves a position, looks at
 * every commit since: one below the new position lowers it again.  A read
 * that saw more commits than the ring holds starts over from where it
 * started.  The commit is visible before its callback runs, so one of the
 * two sees the other.
 *
 * With the library preloaded these states are slots in shared memory
 * (pg_opsdata.audit_max_queues of them, for every database), found through
 * a per-backend map from queue to slot; a slot that is taken for another
 * queue gets a new incarnation, which every holder checks under the slot's
 * spinlock, so a state is only ever used for the queue it was made for.  A
 * new state is safe: it starts at the queue's head (audit.queues.head) and
 * walks up from there.  Without shared memory (not preloaded, or no free
 * slot) each backend keeps its own states and, hearing no announcements,
 * looks again from settled_below every PQ_LOCAL_RESCAN, and advances
 * settled_below only to a position found one walk earlier once every
 * transaction then running has ended.  Waiting readers then poll.
 *
 * Locking: PqShared.lock (one LWLock) is held to find, assign or free a
 * slot; every field of a slot is read and written under its spinlock, held
 * for a few instructions only.  Transaction callbacks take spinlocks only.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/pqueue_state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/condition_variable.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "audit/pqueue.h"
#include "core/opsdata.h"

#define PQ_SHMEM_NAME "pg_opsdata processing queues"

/*
 * A log of positions (the lowest id of each commit of enqueued items, each
 * position rescan_from was lowered to): the last PQ_RING exactly, and the
 * minimum of each run of PQ_RING before them, PQ_BUCKETS runs back.
 */
#define PQ_RING	   64
#define PQ_BUCKETS 64

typedef struct PqLog
{
	uint64 count;
	int64 exact[PQ_RING];
	int64 bucket[PQ_BUCKETS];
} PqLog;

/* Longest time a shared state goes without looking below the cursor. */
#define PQ_SHARED_RESCAN (60 * USECS_PER_SEC)
/* The same without announcements. */
#define PQ_LOCAL_RESCAN (1 * USECS_PER_SEC)
/* Shortest time between two walks of settled items of a queue. */
#define PQ_WALK_INTERVAL (10 * 1000)
/* How long a walk may take before another one may start. */
#define PQ_WALK_TIMEOUT (5 * USECS_PER_SEC)
/* Poll interval of waiting readers without shared memory. */
#define PQ_POLL_MS 100

int audit_pq_max_queues = 128;

struct PqState
{
	slock_t mutex;
	uint64 incarnation;
	Oid dboid;
	int32 queue_id; /* 0: free */
	TimestampTz last_used;
	int64 settled_below;
	int64 cursor;
	int64 rescan_from;
	PqLog lowered; /* where rescan_from was lowered to */
	TimestampTz due_at;
	PqLog commits; /* lowest id of each commit of enqueued items */
	uint64 news;
	TimestampTz walk_after;
	/* without announcements: a settled_below waiting for its fence */
	int64 candidate;
	TransactionId candidate_fence;
	ConditionVariable cv;
};

typedef struct PqShared
{
	LWLock *lock;
	int nslots;
	PqState slots[FLEXIBLE_ARRAY_MEMBER];
} PqShared;

static PqShared *pq_shared = NULL;

/* What this backend knows of a queue: its slot, or its own state. */
typedef struct PqLocal
{
	int32 queue_id; /* hash key */
	int slot;		/* -1: none */
	uint64 incarnation;
	PqState *own; /* state kept here when there is no slot */
} PqLocal;

static HTAB *pq_locals = NULL;

/* What the current transaction did to a queue. */
typedef struct PqXactQueue
{
	int32 queue_id;
	int64 min_enqueued;
	int64 min_touched;
	int64 min_announced; /* touched items to look at again at commit */
	TimestampTz due;
} PqXactQueue;

#define PQ_XACT_MAX 64
static PqXactQueue pq_xact[PQ_XACT_MAX];
static int pq_xact_n = 0;
static bool pq_xact_overflow = false;
static bool pq_xact_subabort = false;

static void
pq_lock(PqRef *ref)
{
	if (ref->shared)
		SpinLockAcquire(&ref->state->mutex);
}

static void
pq_unlock(PqRef *ref)
{
	if (ref->shared)
		SpinLockRelease(&ref->state->mutex);
}

/* Caller holds the spinlock: is the slot still the queue's? */
static bool
pq_current(PqRef *ref)
{
	return !ref->shared || ref->state->incarnation == ref->incarnation;
}

/* ---- shared memory ------------------------------------------------------ */

static Size
pq_shmem_size(void)
{
	return add_size(offsetof(PqShared, slots),
					mul_size(sizeof(PqState), audit_pq_max_queues));
}

static void
pq_shmem_startup(void)
{
	bool found;
	int i;

	pq_shared = ShmemInitStruct(PQ_SHMEM_NAME, pq_shmem_size(), &found);
	if (found)
		return;
	pq_shared->lock = &(GetNamedLWLockTranche(PQ_SHMEM_NAME))->lock;
	pq_shared->nslots = audit_pq_max_queues;
	for (i = 0; i < pq_shared->nslots; i++)
	{
		PqState *s = &pq_shared->slots[i];

		memset(s, 0, sizeof(PqState));
		SpinLockInit(&s->mutex);
		ConditionVariableInit(&s->cv);
	}
}

static OpsdataShmemPart pq_shmem_part = {PQ_SHMEM_NAME, pq_shmem_size, 1,
										 pq_shmem_startup};

/* pg_opsdata.audit_max_queues sizes shared memory: only when preloaded. */
static void
pq_define_gucs(void)
{
	DefineCustomIntVariable(
		"pg_opsdata.audit_max_queues",
		"Processing queues whose read positions are kept in shared memory, for all databases.",
		"A queue without a slot is still served, more slowly, and waiting readers poll.",
		&audit_pq_max_queues, 128, 1, 100000, PGC_POSTMASTER, 0, NULL, NULL,
		NULL);
}

/* ---- position logs ------------------------------------------------------ */

static void
pq_log_init(PqLog *log)
{
	int i;

	log->count = 0;
	for (i = 0; i < PQ_BUCKETS; i++)
		log->bucket[i] = PQ_NO_ID;
}

static void
pq_log_add(PqLog *log, int64 id)
{
	uint64 c = ++log->count;
	int b = (int) ((c / PQ_RING) % PQ_BUCKETS);

	log->exact[c % PQ_RING] = id;
	if (c % PQ_RING == 0)
		log->bucket[b] = id;
	else
		log->bucket[b] = Min(log->bucket[b], id);
}

/*
 * The lowest position logged after the log counted "since" (a bucket may
 * add positions logged a little before, which only makes it lower);
 * fallback when the log no longer goes back that far.
 */
static int64
pq_log_min_since(const PqLog *log, uint64 since, int64 fallback)
{
	int64 lowest = PQ_NO_ID;
	uint64 c = since + 1;

	if (log->count - since >= (uint64) PQ_RING * (PQ_BUCKETS - 1))
		return fallback;
	while (c <= log->count)
	{
		if (log->count - c < PQ_RING)
		{
			lowest = Min(lowest, log->exact[c % PQ_RING]);
			c++;
		}
		else
		{
			lowest = Min(lowest, log->bucket[(c / PQ_RING) % PQ_BUCKETS]);
			c = (c / PQ_RING + 1) * PQ_RING;
		}
	}
	return lowest;
}

/* ---- finding a state ---------------------------------------------------- */

static void
pq_state_init(PqState *s, int64 head, TimestampTz now)
{
	s->last_used = now;
	s->settled_below = head;
	s->cursor = head;
	s->rescan_from = PQ_NO_ID;
	pq_log_init(&s->lowered);
	s->due_at = now;
	pq_log_init(&s->commits);
	s->news = 0;
	s->walk_after = 0;
	s->candidate = PQ_NO_ID;
	s->candidate_fence = InvalidTransactionId;
}

static PqLocal *
pq_local_entry(int32 queue_id)
{
	PqLocal *local;
	bool found;

	if (pq_locals == NULL)
	{
		HASHCTL ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = sizeof(int32);
		ctl.entrysize = sizeof(PqLocal);
		pq_locals = hash_create("pg_opsdata processing queue states", 16, &ctl,
								HASH_ELEM | HASH_BLOBS);
	}
	local = hash_search(pq_locals, &queue_id, HASH_ENTER, &found);
	if (!found)
	{
		local->slot = -1;
		local->incarnation = 0;
		local->own = NULL;
	}
	return local;
}

/* Find the slot of the queue, or take one; -1 when none can be had. */
static int
pq_slot_assign(int32 queue_id, int64 head, TimestampTz now)
{
	int i;
	int victim = -1;
	TimestampTz oldest = DT_NOEND;

	LWLockAcquire(pq_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < pq_shared->nslots; i++)
	{
		PqState *s = &pq_shared->slots[i];

		if (s->queue_id == queue_id && s->dboid == MyDatabaseId)
		{
			LWLockRelease(pq_shared->lock);
			return i;
		}
		if (s->queue_id == 0)
		{
			if (oldest != DT_NOBEGIN)
			{
				oldest = DT_NOBEGIN;
				victim = i;
			}
		}
		else if (s->last_used < oldest)
		{
			oldest = s->last_used;
			victim = i;
		}
	}
	if (victim >= 0)
	{
		PqState *s = &pq_shared->slots[victim];

		/* Whoever holds it notices the new incarnation. */
		SpinLockAcquire(&s->mutex);
		s->incarnation++;
		s->dboid = MyDatabaseId;
		s->queue_id = queue_id;
		pq_state_init(s, head, now);
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(pq_shared->lock);
	return victim;
}

/*
 * The slot of a queue if it has one, without taking one; the caller checks
 * under its spinlock that it still is the queue's.
 */
static PqState *
pq_slot_find(int32 queue_id)
{
	PqLocal *local = pq_locals != NULL
						 ? hash_search(pq_locals, &queue_id, HASH_FIND, NULL)
						 : NULL;
	PqState *found = NULL;
	int i;

	if (local != NULL && local->slot >= 0)
	{
		PqState *s = &pq_shared->slots[local->slot];
		bool same;

		SpinLockAcquire(&s->mutex);
		same = s->queue_id == queue_id && s->dboid == MyDatabaseId;
		SpinLockRelease(&s->mutex);
		if (same)
			return s;
	}
	LWLockAcquire(pq_shared->lock, LW_SHARED);
	for (i = 0; i < pq_shared->nslots && found == NULL; i++)
	{
		PqState *s = &pq_shared->slots[i];

		if (s->queue_id == queue_id && s->dboid == MyDatabaseId)
			found = s;
	}
	LWLockRelease(pq_shared->lock);
	return found;
}

/*
 * The state of a queue for this call, made at head when there is none.
 * Caller is in a transaction.
 */
void
pq_state_get(PqRef *ref, int32 queue_id, int64 head)
{
	PqLocal *local = pq_local_entry(queue_id);
	TimestampTz now = GetCurrentTimestamp();

	head = Max(head, PQ_FIRST_ID(queue_id));
	ref->queue_id = queue_id;
	if (pq_shared != NULL)
	{
		int attempt;

		for (attempt = 0; attempt < 2; attempt++)
		{
			if (local->slot < 0)
			{
				local->slot = pq_slot_assign(queue_id, head, now);
				if (local->slot < 0)
					break;
				SpinLockAcquire(&pq_shared->slots[local->slot].mutex);
				local->incarnation = pq_shared->slots[local->slot].incarnation;
				SpinLockRelease(&pq_shared->slots[local->slot].mutex);
			}
			ref->state = &pq_shared->slots[local->slot];
			ref->shared = true;
			ref->slot = local->slot;
			ref->incarnation = local->incarnation;
			SpinLockAcquire(&ref->state->mutex);
			if (pq_current(ref) && ref->state->queue_id == queue_id &&
				ref->state->dboid == MyDatabaseId)
			{
				ref->state->last_used = now;
				SpinLockRelease(&ref->state->mutex);
				return;
			}
			SpinLockRelease(&ref->state->mutex);
			local->slot = -1; /* taken for another queue: look again */
		}
	}

	/* No shared memory for it: this backend's own state. */
	if (local->own == NULL)
	{
		local->own = MemoryContextAllocZero(TopMemoryContext, sizeof(PqState));
		pq_state_init(local->own, head, now);
	}
	if (local->own->settled_below < head)
	{
		local->own->settled_below = head;
		local->own->cursor = Max(local->own->cursor, head);
	}
	ref->state = local->own;
	ref->shared = false;
	ref->slot = -1;
	ref->incarnation = 0;
}

/*
 * Forget a queue that is dropped (or whose id is about to be reused).
 */
void
pq_state_forget(int32 queue_id)
{
	int i;

	if (pq_locals != NULL)
	{
		PqLocal *local = hash_search(pq_locals, &queue_id, HASH_FIND, NULL);

		if (local != NULL && local->own != NULL)
			pfree(local->own);
		hash_search(pq_locals, &queue_id, HASH_REMOVE, NULL);
	}
	if (pq_shared == NULL)
		return;
	LWLockAcquire(pq_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < pq_shared->nslots; i++)
	{
		PqState *s = &pq_shared->slots[i];

		if (s->queue_id == queue_id && s->dboid == MyDatabaseId)
		{
			SpinLockAcquire(&s->mutex);
			s->incarnation++;
			s->queue_id = 0;
			s->dboid = InvalidOid;
			SpinLockRelease(&s->mutex);
			ConditionVariableBroadcast(&s->cv);
		}
	}
	LWLockRelease(pq_shared->lock);
}

/* ---- reads -------------------------------------------------------------- */

/*
 * Caller holds the spinlock: items from id on may be available again below
 * the cursor.
 */
static void
pq_lower(PqState *s, int64 id)
{
	s->rescan_from = Min(s->rescan_from, id);
	pq_log_add(&s->lowered, id);
}

/*
 * Start a read: where it starts, and what it must compare at its end.
 * Call before taking the read's snapshot.
 */
void
pq_pass_begin(PqRef *ref, TimestampTz now, PqPass *pass)
{
	PqState *s = ref->state;

	pq_lock(ref);
	if (!pq_current(ref))
	{
		/* Lost the slot meanwhile: look at everything, change nothing. */
		pq_unlock(ref);
		pass->lost = true;
		pass->start = PQ_FIRST_ID(ref->queue_id);
		pass->from_below = false;
		pass->commits = pass->lowered = pass->news = 0;
		return;
	}
	pass->lost = false;
	if (now >= s->due_at)
	{
		pq_lower(s, s->settled_below);
		s->due_at = now + (ref->shared ? PQ_SHARED_RESCAN : PQ_LOCAL_RESCAN);
	}
	if (s->rescan_from >= s->cursor)
		s->rescan_from = PQ_NO_ID;
	pass->from_below = s->rescan_from < s->cursor;
	pass->start = pass->from_below ? s->rescan_from : s->cursor;
	pass->commits = s->commits.count;
	pass->lowered = s->lowered.count;
	pass->news = s->news;
	pq_unlock(ref);
}

/*
 * A read leased item id until "until": later reads start above it.
 */
void
pq_note_leased(PqRef *ref, int64 id, TimestampTz until)
{
	PqState *s = ref->state;

	pq_lock(ref);
	if (pq_current(ref))
	{
		if (id >= s->cursor)
			s->cursor = id + 1;
		s->due_at = Min(s->due_at, until);
	}
	pq_unlock(ref);
}

/*
 * End a read that looked at every item from pass->start up to (not
 * including) reached; exhausted when it reached the end of the queue.
 * due is the earliest end of a lease or delay it passed.
 */
void
pq_pass_end(PqRef *ref, const PqPass *pass, int64 reached, bool exhausted,
			TimestampTz due)
{
	PqState *s = ref->state;
	int64 late;

	pq_lock(ref);
	if (!pq_current(ref) || pass->lost)
	{
		pq_unlock(ref);
		return;
	}
	if (reached > s->cursor)
		s->cursor = reached;
	if (pass->from_below)
	{
		/*
		 * Everything from the start up to reached was looked at: what is
		 * still to look at again is what was announced since the pass
		 * began, and what lies between reached and the cursor.
		 */
		int64 again =
			pq_log_min_since(&s->lowered, pass->lowered, pass->start);

		if (!exhausted && reached < s->cursor)
			again = Min(again, reached);
		s->rescan_from = again;
	}
	s->due_at = Min(s->due_at, due);
	if (ref->shared)
	{
		late = pq_log_min_since(&s->commits, pass->commits, pass->start);
		if (late < s->cursor)
			pq_lower(s, late);
	}
	pq_unlock(ref);
}

/*
 * Start a walk of settled items, unless one ran lately (or runs): returns
 * false then.  pass->start is where it starts.
 */
bool
pq_walk_begin(PqRef *ref, TimestampTz now, PqPass *pass)
{
	PqState *s = ref->state;
	bool go;

	pq_lock(ref);
	go = pq_current(ref) && now >= s->walk_after;
	if (go)
	{
		pass->lost = false;
		s->walk_after = now + PQ_WALK_TIMEOUT;
		pass->start = s->settled_below;
		pass->commits = s->commits.count;
		pass->from_below = false;
		pass->lowered = s->lowered.count;
		pass->news = s->news;
	}
	pq_unlock(ref);
	return go;
}

/*
 * End a walk that found every item below "settled" acknowledged.
 */
void
pq_walk_end(PqRef *ref, const PqPass *pass, int64 settled)
{
	PqState *s = ref->state;
	TimestampTz now = GetCurrentTimestamp();
	TransactionId oldest = InvalidTransactionId;
	TransactionId next = InvalidTransactionId;

	if (!ref->shared)
	{
		/* The xmin of a new snapshot: the oldest transaction running. */
		oldest = GetLatestSnapshot()->xmin;
		next = ReadNextTransactionId();
	}
	pq_lock(ref);
	if (!pq_current(ref))
	{
		pq_unlock(ref);
		return;
	}
	if (ref->shared)
		s->settled_below =
			Min(settled,
				pq_log_min_since(&s->commits, pass->commits, pass->start));
	else
	{
		/*
		 * No announcements: an item whose id was taken before the walk may
		 * still be inserted below what it found.  Take the previous walk's
		 * result once every transaction running then has ended, and only
		 * up to what this walk found.
		 */
		if (s->candidate != PQ_NO_ID &&
			TransactionIdPrecedesOrEquals(s->candidate_fence, oldest))
			s->settled_below =
				Max(s->settled_below, Min(s->candidate, settled));
		s->candidate = settled;
		s->candidate_fence = next;
	}
	s->walk_after = now + PQ_WALK_INTERVAL;
	pq_unlock(ref);
}

/*
 * The best known position below which every item is settled.
 */
int64
pq_settled_below(PqRef *ref)
{
	int64 result;

	pq_lock(ref);
	result = ref->state->settled_below;
	pq_unlock(ref);
	return result;
}

/*
 * Wait until a transaction announces something for the queue since the
 * pass began, a lease or delay may have ended, or deadline; false at the
 * deadline.  Without shared memory, sleep one poll interval.
 */
bool
pq_wait(PqRef *ref, const PqPass *pass, TimestampTz deadline)
{
	TimestampTz now = GetCurrentTimestamp();
	bool changed = false;

	if (now >= deadline)
		return false;
	if (!ref->shared)
	{
		long ms = Min(PQ_POLL_MS, (deadline - now + 999) / 1000);

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		return GetCurrentTimestamp() < deadline;
	}

	ConditionVariablePrepareToSleep(&ref->state->cv);
	for (;;)
	{
		TimestampTz until;
		long ms;

		SpinLockAcquire(&ref->state->mutex);
		changed = !pq_current(ref) || ref->state->news != pass->news;
		until = Min(deadline, ref->state->due_at);
		SpinLockRelease(&ref->state->mutex);
		now = GetCurrentTimestamp();
		if (changed || now >= until)
			break;
		ms = (until - now + 999) / 1000;
		(void) ConditionVariableTimedSleep(&ref->state->cv, ms,
										   PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();
	return changed || now < deadline;
}

/*
 * A read took all it asked for: there may be more, wake the next waiting
 * reader.
 */
void
pq_wake_next(PqRef *ref)
{
	if (ref->shared)
		ConditionVariableSignal(&ref->state->cv);
}

/*
 * The current transaction made item id available again at "at" (a nack):
 * this backend's later reads look for it at once; other backends hear of
 * it at commit.
 */
void
pq_note_available(int32 queue_id, int64 id, TimestampTz at)
{
	PqLocal *local = pq_locals != NULL
						 ? hash_search(pq_locals, &queue_id, HASH_FIND, NULL)
						 : NULL;
	PqRef ref;

	if (local == NULL)
		return; /* no state yet: a new one looks at everything */
	ref.queue_id = queue_id;
	if (local->slot >= 0)
	{
		ref.state = &pq_shared->slots[local->slot];
		ref.shared = true;
		ref.incarnation = local->incarnation;
	}
	else if (local->own != NULL)
	{
		ref.state = local->own;
		ref.shared = false;
	}
	else
		return;
	pq_lock(&ref);
	if (pq_current(&ref))
	{
		if (at <= GetCurrentTimestamp())
			pq_lower(ref.state, id);
		else
			ref.state->due_at = Min(ref.state->due_at, at);
	}
	pq_unlock(&ref);
}

/* ---- what transactions did ---------------------------------------------- */

static PqXactQueue *
pq_xact_entry(int32 queue_id)
{
	PqXactQueue *x;
	int i;

	if (pq_shared == NULL)
		return NULL; /* nobody to tell */
	for (i = 0; i < pq_xact_n; i++)
	{
		if (pq_xact[i].queue_id == queue_id)
			return &pq_xact[i];
	}
	if (pq_xact_n == PQ_XACT_MAX)
	{
		pq_xact_overflow = true;
		return NULL;
	}
	x = &pq_xact[pq_xact_n++];
	x->queue_id = queue_id;
	x->min_enqueued = PQ_NO_ID;
	x->min_touched = PQ_NO_ID;
	x->min_announced = PQ_NO_ID;
	x->due = DT_NOEND;
	return x;
}

/*
 * The current transaction enqueued item id.
 */
void
pq_xact_enqueued(int32 queue_id, int64 id)
{
	PqXactQueue *x = pq_xact_entry(queue_id);

	if (x != NULL)
		x->min_enqueued = Min(x->min_enqueued, id);
}

/*
 * The current transaction changed item id (leased, acknowledged, nacked,
 * extended it); due is when it becomes available again if that is to be
 * announced at commit (a nack), else DT_NOEND.
 */
void
pq_xact_touched(int32 queue_id, int64 id, TimestampTz due)
{
	PqXactQueue *x = pq_xact_entry(queue_id);

	if (x == NULL)
		return;
	x->min_touched = Min(x->min_touched, id);
	if (due != DT_NOEND)
	{
		x->min_announced = Min(x->min_announced, id);
		x->due = Min(x->due, due);
	}
}

/* Announce what the transaction did, after commit or abort. */
static void
pq_xact_announce(bool commit)
{
	TimestampTz now = GetCurrentTimestamp();
	int i;

	for (i = 0; i < pq_xact_n; i++)
	{
		PqXactQueue *x = &pq_xact[i];
		PqState *s = pq_slot_find(x->queue_id);
		int64 again = PQ_NO_ID;
		bool wake = false;

		/*
		 * Found after the commit became visible: a state made later starts
		 * with a snapshot that sees it.
		 */
		if (s == NULL)
			continue;
		SpinLockAcquire(&s->mutex);
		if (s->queue_id != x->queue_id || s->dboid != MyDatabaseId)
		{
			SpinLockRelease(&s->mutex);
			continue;
		}
		if (commit && x->min_enqueued != PQ_NO_ID)
		{
			pq_log_add(&s->commits, x->min_enqueued);
			if (x->min_enqueued < s->cursor)
				again = x->min_enqueued;
			if (x->min_enqueued < s->settled_below)
				s->settled_below = x->min_enqueued;
			wake = true;
		}
		if (!commit || pq_xact_subabort)
			again = Min(again, x->min_touched);
		else if (x->min_announced != PQ_NO_ID)
		{
			if (x->due <= now)
				again = Min(again, x->min_announced);
			else
				s->due_at = Min(s->due_at, x->due);
		}
		if (again != PQ_NO_ID)
		{
			pq_lower(s, again);
			wake = true;
		}
		if (wake)
			s->news++;
		SpinLockRelease(&s->mutex);
		/* One reader at a time: one that takes all it asked for wakes the next. */
		if (wake)
			ConditionVariableSignal(&s->cv);
	}
}

/*
 * Without room to note a queue, every queue is told to look again.
 */
static void
pq_xact_announce_all(void)
{
	int i;

	for (i = 0; i < pq_shared->nslots; i++)
	{
		PqState *s = &pq_shared->slots[i];

		SpinLockAcquire(&s->mutex);
		if (s->dboid == MyDatabaseId && s->queue_id != 0)
		{
			s->due_at = 0;
			s->news++;
		}
		SpinLockRelease(&s->mutex);
		ConditionVariableBroadcast(&s->cv);
	}
}

static void
pq_xact_reset(void)
{
	pq_xact_n = 0;
	pq_xact_overflow = false;
	pq_xact_subabort = false;
}

/*
 * The end of a transaction, from audit_xact_callback(): announce what it
 * changed in the queues, and refuse to prepare a transaction that used one.
 */
void
audit_pq_xact_end(XactEvent event)
{
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			if (pq_xact_n > 0 || pq_xact_overflow)
				ereport(
					ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg(
						 "cannot PREPARE a transaction that used an audit processing queue")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (pq_xact_n > 0)
				pq_xact_announce(event == XACT_EVENT_COMMIT ||
								 event == XACT_EVENT_PARALLEL_COMMIT);
			if (pq_xact_overflow)
				pq_xact_announce_all();
			pq_xact_reset();
			break;
		case XACT_EVENT_PREPARE:
			pq_xact_reset();
			break;
		default:
			break;
	}
}

/* A subtransaction rolled back, from audit_subxact_callback(). */
void
audit_pq_subxact_abort(void)
{
	if (pq_xact_n > 0)
		pq_xact_subabort = true;
}

/*
 * Set the processing queues up: with the library preloaded, their setting,
 * shared memory and the subscription cache's invalidation; without,
 * nothing.  The audit area's transaction callbacks announce changes
 * (without shared memory there is nobody to tell).
 */
void
audit_pq_init(void)
{
	if (!opsdata_preloaded)
		return;
	pq_define_gucs();
	opsdata_shmem_register(&pq_shmem_part);
	pq_register_callback();
}

/* ---- inspection --------------------------------------------------------- */

/*
 * The states of the queues of the current database that shared memory
 * holds (or this backend, without it).  Returns how many.
 */
int
pq_state_list(PqStateInfo **infos)
{
	int n = 0;
	int i;

	if (pq_shared == NULL)
	{
		HASH_SEQ_STATUS seq;
		PqLocal *local;

		*infos = palloc(sizeof(PqStateInfo) *
						(pq_locals ? hash_get_num_entries(pq_locals) + 1 : 1));
		if (pq_locals == NULL)
			return 0;
		hash_seq_init(&seq, pq_locals);
		while ((local = hash_seq_search(&seq)) != NULL)
		{
			PqStateInfo *info = &(*infos)[n];

			if (local->own == NULL)
				continue;
			info->queue_id = local->queue_id;
			info->shared = false;
			info->settled_below = local->own->settled_below;
			info->cursor = local->own->cursor;
			info->rescan_from = local->own->rescan_from;
			info->due_at = local->own->due_at;
			n++;
		}
		return n;
	}
	*infos = palloc(sizeof(PqStateInfo) * pq_shared->nslots);
	LWLockAcquire(pq_shared->lock, LW_SHARED);
	for (i = 0; i < pq_shared->nslots; i++)
	{
		PqState *s = &pq_shared->slots[i];
		PqStateInfo *info = &(*infos)[n];

		SpinLockAcquire(&s->mutex);
		if (s->queue_id != 0 && s->dboid == MyDatabaseId)
		{
			info->queue_id = s->queue_id;
			info->shared = true;
			info->settled_below = s->settled_below;
			info->cursor = s->cursor;
			info->rescan_from = s->rescan_from;
			info->due_at = s->due_at;
			n++;
		}
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(pq_shared->lock);
	return n;
}
