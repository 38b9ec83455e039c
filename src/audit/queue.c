/*-------------------------------------------------------------------------
 *
 * queue.c
 *		The per-database shared-memory audit queue.
 *
 * Reads, failed statements, rolled-back transactions, logins and
 * disconnects are not written by the session that saw them: they are
 * serialized into a ring buffer in shared memory, one ring per database,
 * and inserted into audit.entries in batches by whoever drains the ring
 * (the database's scheduler, or audit.flush()).
 *
 * Layout: pg_opsdata.audit_max_databases slots, each a ring of
 * pg_opsdata.audit_queue_size bytes.  A slot is assigned to a database by
 * name the first time an event for it arrives (logins arrive before the
 * session knows its database's OID).  A slot that no session of its
 * database has yet confirmed (i.e. seen the extension installed) can be
 * taken back when the slots run out; its records are then counted as
 * dropped.  A slot learns its database's OID when a session or drainer of
 * that database confirms it, so that writers can wake that database's
 * scheduler (lock-free, see worker_wake_scheduler()) when the ring is half
 * full or they wait for room.
 *
 * A record is a uint32 length (MAXALIGNed, header included) followed by the
 * serialized event; records never straddle the claim boundary but may wrap
 * around the end of the ring.  head and tail are byte positions that only
 * grow; used space is head - tail.
 *
 * Locking: lock 0 of the tranche guards slot assignment (exclusive to
 * assign, shared to look up); lock i + 1 guards everything in slot i.
 * Writers hold the slot lock while copying in.  One drainer at a time owns
 * a slot (drainer_pid): the scheduler copies a range of records out under
 * the lock, writes them in a transaction of its own, short and committed
 * at once, and only then advances tail, so a failed write loses nothing.
 * audit.flush() never owns a slot beyond the lock: it takes records out
 * and advances tail at once, and puts them back if its transaction aborts
 * (drain.c), so a transaction left open after a flush holds nothing.
 * Sessions waiting for room sleep on space_cv; a drainer's successor
 * waits on owner_cv.  A crash of any process resets shared memory, and
 * with it the queue.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/condition_variable.h"
#include "access/xact.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "audit/audit.h"
#include "core/opsdata.h"
#include "worker/worker.h"

#define AUDIT_QUEUE_NAME "pg_opsdata audit queue"

typedef struct AuditQueueSlot
{
	bool in_use;
	bool confirmed;
	int drainer_pid;
	Oid dboid; /* once a session or drainer of the database confirmed it */
	char dbname[NAMEDATALEN];
	uint64 head;
	uint64 tail;
	uint64 claim_end;
	uint64 enqueued;
	uint64 drained;
	uint64 dropped;
	uint64 waits;
	uint64 writer_errors;
	TimestampTz last_drained; /* last commit of a drainer, 0 for never */
	TimestampTz last_error;	  /* last failed write, 0 for never */
	char last_error_message[AUDIT_QUEUE_ERROR_LEN]; /* its message */
	bool held;	  /* entries were held during a restore (hold.c) */
	bool discard; /* the extension was dropped while a drainer owned it */
	ConditionVariable space_cv;
	ConditionVariable owner_cv;
} AuditQueueSlot;

typedef struct AuditQueueShared
{
	int nslots;
	Size capacity;
	pg_atomic_uint64 unassigned_drops;
	AuditQueueSlot slots[FLEXIBLE_ARRAY_MEMBER];
} AuditQueueShared;

/* Fixed part of a serialized event. */
typedef struct AuditRecordHeader
{
	uint32 length; /* whole record, MAXALIGNed */
	int32 backend_pid;
	int64 ts;
	int64 duration_us;
	int64 rows;
	uint64 xid;
	int32 sqlstate;
	uint8 class;
	uint8 outcome;
	uint8 flags;
	uint8 pad;
	int32 nobjects;
	int32 nconsts; /* spans after the strings */
	int32 param_base;
} AuditRecordHeader;

#define AUDIT_NULL_STRING ((uint32) 0xFFFFFFFF)

static AuditQueueShared *audit_queue = NULL;
static LWLockPadded *audit_queue_locks = NULL;

/* The slot this backend owns as drainer, or -1. */
static int audit_claimed_slot = -1;
static int audit_claimed_events = 0;

/* Serialization buffer, kept across calls (usable during abort). */
static StringInfoData audit_serial_buf;
static bool audit_serial_buf_ready = false;

static Size
audit_queue_shmem_size(void)
{
	Size size = offsetof(AuditQueueShared, slots);

	size =
		add_size(size, mul_size(sizeof(AuditQueueSlot), audit_max_databases));
	size = MAXALIGN(size);
	size = add_size(size, mul_size((Size) audit_queue_size_kb * 1024,
								   audit_max_databases));
	return size;
}

static void
audit_queue_shmem_startup(void)
{
	bool found;
	int i;

	audit_queue =
		ShmemInitStruct(AUDIT_QUEUE_NAME, audit_queue_shmem_size(), &found);
	audit_queue_locks = GetNamedLWLockTranche(AUDIT_QUEUE_NAME);
	if (found)
		return;

	audit_queue->nslots = audit_max_databases;
	audit_queue->capacity = (Size) audit_queue_size_kb * 1024;
	pg_atomic_init_u64(&audit_queue->unassigned_drops, 0);
	for (i = 0; i < audit_queue->nslots; i++)
	{
		AuditQueueSlot *slot = &audit_queue->slots[i];

		memset(slot, 0, sizeof(AuditQueueSlot));
		ConditionVariableInit(&slot->space_cv);
		ConditionVariableInit(&slot->owner_cv);
	}
}

static OpsdataShmemPart audit_queue_part = {
	AUDIT_QUEUE_NAME, audit_queue_shmem_size, 0, audit_queue_shmem_startup};

/*
 * Register the queue's shared memory.  Preloaded only.
 */
void
audit_queue_init(void)
{
	audit_queue_part.lwlocks = audit_max_databases + 1;
	opsdata_shmem_register(&audit_queue_part);
}

bool
audit_queue_active(void)
{
	return audit_queue != NULL;
}

static inline LWLock *
slot_lock(int i)
{
	return &audit_queue_locks[i + 1].lock;
}

static inline char *
slot_ring(int i)
{
	char *base = (char *) audit_queue +
				 MAXALIGN(offsetof(AuditQueueShared, slots) +
						  sizeof(AuditQueueSlot) * audit_queue->nslots);

	return base + (Size) i * audit_queue->capacity;
}

/*
 * Find the slot of a database, assigning one if create is true.  Returns
 * -1 when there is none.  confirm marks the slot as belonging to a
 * database that has the extension.
 */
static int
audit_queue_slot(const char *dbname, bool create, bool confirm)
{
	LWLock *alloc = &audit_queue_locks[0].lock;
	int i;
	int victim = -1;

	LWLockAcquire(alloc, LW_SHARED);
	for (i = 0; i < audit_queue->nslots; i++)
	{
		if (audit_queue->slots[i].in_use &&
			strcmp(audit_queue->slots[i].dbname, dbname) == 0)
			break;
	}
	LWLockRelease(alloc);
	if (i < audit_queue->nslots)
	{
		if (confirm && (!audit_queue->slots[i].confirmed ||
						audit_queue->slots[i].dboid != MyDatabaseId))
		{
			LWLockAcquire(slot_lock(i), LW_EXCLUSIVE);
			audit_queue->slots[i].confirmed = true;
			audit_queue->slots[i].dboid = MyDatabaseId;
			LWLockRelease(slot_lock(i));
		}
		return i;
	}
	if (!create)
		return -1;

	LWLockAcquire(alloc, LW_EXCLUSIVE);
	for (i = 0; i < audit_queue->nslots; i++)
	{
		AuditQueueSlot *slot = &audit_queue->slots[i];

		if (slot->in_use && strcmp(slot->dbname, dbname) == 0)
		{
			LWLockRelease(alloc);
			return i;
		}
		if (!slot->in_use && victim < 0)
			victim = i;
	}
	/*
	 * No free slot: take back one that no session of its database confirmed.
	 */
	if (victim < 0)
	{
		for (i = 0; i < audit_queue->nslots; i++)
		{
			AuditQueueSlot *slot = &audit_queue->slots[i];

			if (!slot->confirmed && slot->drainer_pid == 0)
			{
				victim = i;
				break;
			}
		}
	}
	if (victim >= 0)
	{
		AuditQueueSlot *slot = &audit_queue->slots[victim];
		uint64 lost = 0;

		LWLockAcquire(slot_lock(victim), LW_EXCLUSIVE);
		if (slot->in_use)
			lost = slot->enqueued - slot->drained;
		slot->in_use = true;
		slot->confirmed = confirm;
		slot->dboid = confirm ? MyDatabaseId : InvalidOid;
		slot->drainer_pid = 0;
		slot->last_drained = slot->last_error = 0;
		slot->held = false;
		slot->discard = false;
		strlcpy(slot->dbname, dbname, NAMEDATALEN);
		slot->head = slot->tail = slot->claim_end = 0;
		slot->enqueued = slot->drained = slot->dropped = slot->waits =
			slot->writer_errors = 0;
		LWLockRelease(slot_lock(victim));
		if (lost > 0)
			pg_atomic_fetch_add_u64(&audit_queue->unassigned_drops, lost);
	}
	LWLockRelease(alloc);
	return victim;
}

/* Empty a slot and start its counters again; its lock is held. */
static void
slot_empty(AuditQueueSlot *slot)
{
	slot->tail = slot->claim_end = slot->head;
	slot->confirmed = false;
	slot->discard = false;
	slot->enqueued = slot->drained = slot->dropped = slot->waits =
		slot->writer_errors = 0;
	slot->last_drained = slot->last_error = 0;
}

/*
 * The extension was dropped in the database: what its queue holds belonged
 * to the dropped trail and is discarded, and its counters start again.
 * While a drainer owns the slot (the scheduler, in the middle of a batch,
 * perhaps waiting for the locks the drop held), the drainer discards it
 * when it lets the slot go.  Runs after the commit of DROP EXTENSION, so
 * it must not fail.
 */
void
audit_queue_discard(const char *dbname)
{
	int i = audit_queue_slot(dbname, false, false);
	AuditQueueSlot *slot;

	if (i < 0)
		return;
	slot = &audit_queue->slots[i];
	LWLockAcquire(slot_lock(i), LW_EXCLUSIVE);
	if (slot->drainer_pid == 0)
		slot_empty(slot);
	else
		slot->discard = true;
	LWLockRelease(slot_lock(i));
	ConditionVariableBroadcast(&slot->space_cv);
}

static void
append_string(StringInfo buf, const char *s)
{
	uint32 len;

	if (s == NULL)
	{
		len = AUDIT_NULL_STRING;
		appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
		return;
	}
	len = strlen(s);
	appendBinaryStringInfo(buf, (char *) &len, sizeof(len));
	appendBinaryStringInfo(buf, s, len + 1);
}

/*
 * Append s, cut to at most max bytes on a character boundary; returns the
 * bytes kept.
 */
static Size
append_string_capped(StringInfo buf, const char *s, Size max)
{
	Size len;
	char *cut;

	if (s == NULL || (len = strlen(s)) <= max)
	{
		append_string(buf, s);
		return s == NULL ? 0 : len;
	}
	len = pg_mbcliplen(s, len, max);
	cut = pnstrdup(s, len);
	append_string(buf, cut);
	pfree(cut);
	return len;
}

static inline Size
audit_strlen0(const char *s)
{
	return s == NULL ? 0 : strlen(s);
}

/*
 * Serialize one event at the end of buf.  The statement and parameters are
 * cut so that a record never takes more than a quarter of the ring (with
 * the declared context and an application event's details, which are
 * bounded and never cut, at most 20 kB more).
 */
static void
audit_event_serialize(StringInfo buf, const AuditEvent *ev)
{
	int start = buf->len;
	AuditRecordHeader hdr;
	Size budget = audit_queue->capacity / 4;
	Size fixed;
	Size kept;
	int nconsts = 0;
	int i;

	memset(&hdr, 0, sizeof(hdr));
	hdr.backend_pid = ev->backend_pid;
	hdr.ts = ev->ts;
	hdr.duration_us = ev->duration_us;
	hdr.rows = ev->rows;
	hdr.xid = ev->xid;
	hdr.sqlstate = ev->sqlstate;
	hdr.class = ev->class;
	hdr.outcome = ev->outcome;
	hdr.flags = ev->flags;
	hdr.nobjects = ev->nobjects;
	hdr.param_base = ev->param_base;
	appendBinaryStringInfo(buf, (char *) &hdr, sizeof(hdr));
	append_string(buf, ev->database);
	append_string(buf, ev->username);
	append_string(buf, ev->current_user_name);
	append_string(buf, ev->application);
	append_string(buf, ev->client_addr);
	append_string(buf, ev->command);
	for (i = 0; i < ev->nobjects; i++)
	{
		append_string(buf, ev->objects[i]);
		append_string(buf, ev->privileges ? ev->privileges[i] : NULL);
	}
	fixed = buf->len - start + sizeof(AuditSpan) * ev->nconsts +
			audit_strlen0(ev->actor) + audit_strlen0(ev->request_id) +
			audit_strlen0(ev->attributes) + audit_strlen0(ev->details);
	kept = append_string_capped(
		buf, ev->statement, budget > fixed + 64 ? budget - fixed - 64 : 64);
	append_string_capped(buf, ev->params, 1024);
	append_string(buf, ev->actor);
	append_string(buf, ev->request_id);
	append_string(buf, ev->attributes);
	append_string(buf, ev->details);
	/* The constants of the part of the statement kept. */
	while (nconsts < ev->nconsts && (Size) (ev->consts[nconsts].offset +
											ev->consts[nconsts].len) <= kept)
		nconsts++;
	appendBinaryStringInfo(buf, (const char *) ev->consts,
						   sizeof(AuditSpan) * nconsts);
	while (buf->len % MAXIMUM_ALIGNOF != 0)
		appendStringInfoChar(buf, '\0');
	((AuditRecordHeader *) (buf->data + start))->length = buf->len - start;
	((AuditRecordHeader *) (buf->data + start))->nconsts = nconsts;
}

static const char *
read_string(char **p)
{
	uint32 len;
	char *s;

	memcpy(&len, *p, sizeof(len));
	*p += sizeof(len);
	if (len == AUDIT_NULL_STRING)
		return NULL;
	s = *p;
	*p += len + 1;
	return s;
}

/*
 * Parse one record; the event points into the record's memory.
 */
static void
audit_event_deserialize(char *rec, AuditEvent *ev)
{
	AuditRecordHeader hdr;
	char *p = rec + sizeof(AuditRecordHeader);
	int i;

	memcpy(&hdr, rec, sizeof(hdr));
	memset(ev, 0, sizeof(AuditEvent));
	ev->backend_pid = hdr.backend_pid;
	ev->ts = hdr.ts;
	ev->duration_us = hdr.duration_us;
	ev->rows = hdr.rows;
	ev->xid = hdr.xid;
	ev->sqlstate = hdr.sqlstate;
	ev->class = hdr.class;
	ev->outcome = hdr.outcome;
	ev->flags = hdr.flags;
	ev->nobjects = hdr.nobjects;
	ev->database = read_string(&p);
	ev->username = read_string(&p);
	ev->current_user_name = read_string(&p);
	ev->application = read_string(&p);
	ev->client_addr = read_string(&p);
	ev->command = read_string(&p);
	if (ev->nobjects > 0)
	{
		ev->objects = palloc(sizeof(char *) * ev->nobjects);
		ev->privileges = palloc(sizeof(char *) * ev->nobjects);
		for (i = 0; i < ev->nobjects; i++)
		{
			ev->objects[i] = read_string(&p);
			ev->privileges[i] = read_string(&p);
		}
	}
	ev->statement = read_string(&p);
	ev->params = read_string(&p);
	ev->actor = read_string(&p);
	ev->request_id = read_string(&p);
	ev->attributes = read_string(&p);
	ev->details = read_string(&p);
	ev->nconsts = hdr.nconsts;
	ev->param_base = hdr.param_base;
	if (hdr.nconsts > 0)
	{
		AuditSpan *consts = palloc(sizeof(AuditSpan) * hdr.nconsts);

		memcpy(consts, p, sizeof(AuditSpan) * hdr.nconsts);
		ev->consts = consts;
	}
}

static void
ring_write(int i, uint64 pos, const char *src, Size len)
{
	Size cap = audit_queue->capacity;
	Size off = pos % cap;
	char *ring = slot_ring(i);

	if (off + len <= cap)
		memcpy(ring + off, src, len);
	else
	{
		memcpy(ring + off, src, cap - off);
		memcpy(ring, src + (cap - off), len - (cap - off));
	}
}

static void
ring_read(int i, uint64 pos, char *dst, Size len)
{
	Size cap = audit_queue->capacity;
	Size off = pos % cap;
	char *ring = slot_ring(i);

	if (off + len <= cap)
		memcpy(dst, ring + off, len);
	else
	{
		memcpy(dst, ring + off, cap - off);
		memcpy(dst + (cap - off), ring, len - (cap - off));
	}
}

/*
 * How long a session waiting for room since wait_start may sleep before it
 * looks again, at most a second.  Ends the wait with an error once
 * pg_opsdata.audit_overflow_timeout has passed, or statement_timeout since
 * the statement started (which PostgreSQL no longer enforces while a
 * transaction commits, where entries are queued).  Cancel and termination
 * are served by the sleep itself.
 */
static long
audit_queue_wait_ms(const char *dbname, TimestampTz wait_start)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz deadline =
		TimestampTzPlusMilliseconds(wait_start, audit_overflow_timeout_ms);
	long left;

	if (StatementTimeout > 0)
	{
		TimestampTz stmt_deadline = TimestampTzPlusMilliseconds(
			GetCurrentStatementStartTimestamp(), StatementTimeout);

		if (now >= stmt_deadline)
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("canceling statement due to statement timeout"),
					 errdetail("The audit queue of database \"%s\" is full.",
							   dbname)));
		deadline = Min(deadline, stmt_deadline);
	}
	if (now >=
		TimestampTzPlusMilliseconds(wait_start, audit_overflow_timeout_ms))
		ereport(
			ERROR,
			(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
			 errmsg("audit queue of database \"%s\" is full", dbname),
			 errdetail(
				 "The statement's audit entries waited %d ms for room in the queue (pg_opsdata.audit_overflow_timeout).",
				 audit_overflow_timeout_ms),
			 errhint(
				 "Check that the database's pg_opsdata scheduler runs and can write audit.entries (opsdata.health()), or increase pg_opsdata.audit_queue_size.")));
	left = TimestampDifferenceMilliseconds(now, deadline);
	return Min(Max(left, 1), 1000);
}

/*
 * Ask the scheduler of database dboid to drain its queue now: the queue is
 * filling up or a session waits for room.  Cheap and lock-free; a queue
 * whose database is not known yet (only logins reached it) falls back on
 * the current database.
 */
static void
audit_wake_drainer(Oid dboid)
{
	if (!OidIsValid(dboid))
		dboid = MyDatabaseId;
	if (OidIsValid(dboid))
		worker_wake_scheduler(dboid);
}

/*
 * Put events into the queue of database dbname and return how many of
 * them, from the first, were handled (queued, or dropped and counted).
 *
 * AUDIT_PUT_WAIT: when the ring is full, sleep until a drainer makes room,
 * at most pg_opsdata.audit_overflow_timeout (then, or at statement_timeout,
 * an ERROR); interrupts are served meanwhile, so the caller must be able to
 * take an ERROR.  AUDIT_PUT_DROP: events that do not fit are dropped and counted.
 * AUDIT_PUT_TRY: stop at the first event that does not fit and leave it and
 * the rest to the caller.  confirm says that the caller is a session of
 * that database and saw the extension installed.  When progress is given,
 * it is kept up to date with the count handled so far, for a caller whose
 * wait is interrupted by an error.
 */
int
audit_queue_put(const char *dbname, bool confirm, AuditEvent **events,
				int nevents, int mode, int *progress)
{
	int i;
	int done = 0;
	MemoryContext old;
	AuditQueueSlot *slot;

	if (audit_queue == NULL || nevents == 0)
		return nevents;

	i = audit_queue_slot(dbname, true, confirm);
	if (i < 0)
	{
		pg_atomic_fetch_add_u64(&audit_queue->unassigned_drops, nevents);
		return nevents;
	}
	slot = &audit_queue->slots[i];

	if (!audit_serial_buf_ready)
	{
		old = MemoryContextSwitchTo(TopMemoryContext);
		initStringInfo(&audit_serial_buf);
		MemoryContextSwitchTo(old);
		audit_serial_buf_ready = true;
	}

	while (done < nevents)
	{
		int n = 0;
		Size bytes;
		bool fits = false;
		bool slept = false;
		TimestampTz wait_start = 0;

		/* Serialize as many events as fit in a quarter of the ring. */
		resetStringInfo(&audit_serial_buf);
		while (done + n < nevents && (n == 0 || (Size) audit_serial_buf.len <
													audit_queue->capacity / 4))
		{
			audit_event_serialize(&audit_serial_buf, events[done + n]);
			n++;
		}
		bytes = audit_serial_buf.len;

		for (;;)
		{
			LWLockAcquire(slot_lock(i), LW_EXCLUSIVE);
			fits = audit_queue->capacity - (slot->head - slot->tail) >= bytes;
			if (fits)
			{
				ring_write(i, slot->head, audit_serial_buf.data, bytes);
				slot->head += bytes;
				slot->enqueued += n;
				LWLockRelease(slot_lock(i));
				break;
			}
			if (mode != AUDIT_PUT_WAIT)
			{
				if (mode == AUDIT_PUT_DROP)
					slot->dropped += n;
				LWLockRelease(slot_lock(i));
				break;
			}
			if (!slept)
			{
				slot->waits++;
				wait_start = GetCurrentTimestamp();
			}
			LWLockRelease(slot_lock(i));
			audit_wake_drainer(slot->dboid);
			slept = true;
			ConditionVariableTimedSleep(
				&slot->space_cv, audit_queue_wait_ms(dbname, wait_start),
				PG_WAIT_EXTENSION);
		}
		if (slept)
			ConditionVariableCancelSleep();
		if (!fits && mode == AUDIT_PUT_TRY)
			return done;
		done += n;
		if (progress)
			*progress = done;
		/* Wake the drainer early when the ring is getting full. */
		if (fits && slot->head - slot->tail > audit_queue->capacity / 2)
			audit_wake_drainer(slot->dboid);
	}
	return done;
}

/*
 * Take ownership of the queue of dbname as its drainer and copy out up to
 * max_events records into batch (allocated in the current memory context).
 * When another process drains it, wait for it if wait_for_owner, else
 * return false.  Returns false when there is no queue for dbname.  The
 * caller must call audit_queue_release() (the transaction callbacks do it
 * at commit and abort).
 */
bool
audit_queue_claim(const char *dbname, int max_events, bool wait_for_owner,
				  AuditQueueBatch *batch)
{
	int i;
	AuditQueueSlot *slot;
	uint64 pos;
	uint64 start;
	int n = 0;
	char *p;

	memset(batch, 0, sizeof(AuditQueueBatch));
	if (audit_queue == NULL)
		return false;
	i = audit_queue_slot(dbname, false, true);
	if (i < 0)
		return false;
	slot = &audit_queue->slots[i];

	for (;;)
	{
		LWLockAcquire(slot_lock(i), LW_EXCLUSIVE);
		if (slot->drainer_pid == 0 || slot->drainer_pid == MyProcPid)
			break;
		LWLockRelease(slot_lock(i));
		if (!wait_for_owner)
			return false;
		ConditionVariableTimedSleep(&slot->owner_cv, 1000, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();

	/* A second claim in the same transaction continues after the first. */
	start = slot->drainer_pid == MyProcPid ? slot->claim_end : slot->tail;
	slot->drainer_pid = MyProcPid;
	audit_claimed_slot = i;
	pos = start;
	while (pos < slot->head && n < max_events)
	{
		uint32 len;

		ring_read(i, pos, (char *) &len, sizeof(len));
		pos += len;
		n++;
	}
	slot->claim_end = pos;
	batch->bytes = pos - start;
	batch->end = pos;
	batch->nevents = n;
	batch->data = palloc(Max(batch->bytes, 1));
	ring_read(i, start, batch->data, batch->bytes);
	LWLockRelease(slot_lock(i));
	audit_claimed_events += n;

	batch->events = palloc(sizeof(AuditEvent) * Max(n, 1));
	p = batch->data;
	for (i = 0; i < n; i++)
	{
		audit_event_deserialize(p, &batch->events[i]);
		p += ((AuditRecordHeader *) p)->length;
	}
	return true;
}

/*
 * Take up to max_events records out of the queue of dbname at once, into
 * batch (allocated in the current memory context): they leave the queue
 * now, and the caller becomes responsible for them (audit.flush() writes
 * them in its transaction and puts them back if that transaction aborts).
 * Waits, interruptibly, while a drainer owns the queue.  Returns false when
 * there is no queue for dbname.  Never leaves the queue owned.
 */
bool
audit_queue_take(const char *dbname, int max_events, AuditQueueBatch *batch)
{
	int i;
	AuditQueueSlot *slot;
	uint64 pos;
	int n = 0;
	char *p;

	memset(batch, 0, sizeof(AuditQueueBatch));
	if (audit_queue == NULL)
		return false;
	i = audit_queue_slot(dbname, false, true);
	if (i < 0)
		return false;
	slot = &audit_queue->slots[i];

	for (;;)
	{
		LWLockAcquire(slot_lock(i), LW_EXCLUSIVE);
		if (slot->drainer_pid == 0)
			break;
		LWLockRelease(slot_lock(i));
		ConditionVariableTimedSleep(&slot->owner_cv, 1000, PG_WAIT_EXTENSION);
	}
	ConditionVariableCancelSleep();

	pos = slot->tail;
	while (pos < slot->head && n < max_events)
	{
		uint32 len;

		ring_read(i, pos, (char *) &len, sizeof(len));
		pos += len;
		n++;
	}
	batch->bytes = pos - slot->tail;
	batch->end = pos;
	batch->nevents = n;
	batch->data = palloc(Max(batch->bytes, 1));
	ring_read(i, slot->tail, batch->data, batch->bytes);
	slot->tail = slot->claim_end = pos;
	slot->drained += n;
	if (n > 0)
		slot->last_drained = GetCurrentTimestamp();
	LWLockRelease(slot_lock(i));
	if (n > 0)
		ConditionVariableBroadcast(&slot->space_cv);

	batch->events = palloc(sizeof(AuditEvent) * Max(n, 1));
	p = batch->data;
	for (i = 0; i < n; i++)
	{
		audit_event_deserialize(p, &batch->events[i]);
		p += ((AuditRecordHeader *) p)->length;
	}
	return true;
}

/*
 * Give up ownership of the claimed queue; with advance, the claimed
 * records are gone from it (they were written).  Never raises an error:
 * the transaction callbacks call it at commit and abort.
 */
void
audit_queue_release(bool advance)
{
	AuditQueueSlot *slot;
	int i = audit_claimed_slot;

	if (i < 0)
		return;
	slot = &audit_queue->slots[i];
	LWLockAcquire(slot_lock(i), LW_EXCLUSIVE);
	if (slot->discard)
		slot_empty(slot);
	else if (advance)
	{
		slot->tail = slot->claim_end;
		slot->drained += audit_claimed_events;
		slot->last_drained = GetCurrentTimestamp();
	}
	slot->drainer_pid = 0;
	LWLockRelease(slot_lock(i));
	audit_claimed_slot = -1;
	audit_claimed_events = 0;
	ConditionVariableBroadcast(&slot->space_cv);
	ConditionVariableBroadcast(&slot->owner_cv);
}

bool
audit_queue_claimed(void)
{
	return audit_claimed_slot >= 0;
}

/*
 * Count a failed attempt to write the queue of dbname, and keep the start
 * of its message for health.
 */
void
audit_queue_count_writer_error(const char *dbname, const char *message)
{
	int i;
	AuditQueueSlot *slot;

	if (audit_queue == NULL ||
		(i = audit_queue_slot(dbname, false, false)) < 0)
		return;
	slot = &audit_queue->slots[i];
	LWLockAcquire(slot_lock(i), LW_EXCLUSIVE);
	slot->writer_errors++;
	slot->last_error = GetCurrentTimestamp();
	strlcpy(slot->last_error_message, message ? message : "",
			pg_mbcliplen(message ? message : "",
						 strlen(message ? message : ""),
						 AUDIT_QUEUE_ERROR_LEN - 1) +
				1);
	LWLockRelease(slot_lock(i));
}

/*
 * A session or drainer of the current database held entries while a dump
 * was being restored (hold.c): the drainer is to move them once the
 * restore has ended.
 */
void
audit_queue_note_held(const char *dbname)
{
	int i;

	if (audit_queue == NULL || (i = audit_queue_slot(dbname, true, true)) < 0)
		return;
	LWLockAcquire(slot_lock(i), LW_EXCLUSIVE);
	audit_queue->slots[i].held = true;
	LWLockRelease(slot_lock(i));
}

/*
 * Whether entries of dbname were held since the last call; clears the
 * flag.
 */
bool
audit_queue_take_held(const char *dbname)
{
	int i;
	bool held;

	if (audit_queue == NULL ||
		(i = audit_queue_slot(dbname, false, false)) < 0)
		return false;
	LWLockAcquire(slot_lock(i), LW_EXCLUSIVE);
	held = audit_queue->slots[i].held;
	audit_queue->slots[i].held = false;
	LWLockRelease(slot_lock(i));
	return held;
}

/*
 * Snapshot of every assigned slot, palloc'd; returns how many.
 */
int
audit_queue_stats(AuditQueueStats **stats)
{
	int i;
	int n = 0;

	if (audit_queue == NULL)
	{
		*stats = NULL;
		return 0;
	}
	*stats = palloc0(sizeof(AuditQueueStats) * audit_queue->nslots);
	for (i = 0; i < audit_queue->nslots; i++)
	{
		AuditQueueSlot *slot = &audit_queue->slots[i];
		AuditQueueStats *st = &(*stats)[n];

		LWLockAcquire(slot_lock(i), LW_SHARED);
		if (slot->in_use)
		{
			strlcpy(st->database, slot->dbname, NAMEDATALEN);
			st->capacity = audit_queue->capacity;
			st->used = slot->head - slot->tail;
			st->enqueued = slot->enqueued;
			st->drained = slot->drained;
			st->dropped = slot->dropped;
			st->waits = slot->waits;
			st->writer_errors = slot->writer_errors;
			st->last_drained = slot->last_drained;
			st->last_error = slot->last_error;
			strlcpy(st->last_error_message, slot->last_error_message,
					AUDIT_QUEUE_ERROR_LEN);
			n++;
		}
		LWLockRelease(slot_lock(i));
	}
	return n;
}

/*
 * Events dropped because no slot could be assigned to their database.
 */
uint64
audit_queue_unassigned_drops(void)
{
	if (audit_queue == NULL)
		return 0;
	return pg_atomic_read_u64(&audit_queue->unassigned_drops);
}

/*
 * A deep copy of an event in cxt.
 */
AuditEvent *
audit_event_copy(const AuditEvent *src, MemoryContext cxt)
{
	AuditEvent *ev = MemoryContextAlloc(cxt, sizeof(AuditEvent));
	int j;

	*ev = *src;
#define COPY_STR(f) (ev->f = src->f ? MemoryContextStrdup(cxt, src->f) : NULL)
	COPY_STR(database);
	COPY_STR(username);
	COPY_STR(current_user_name);
	COPY_STR(application);
	COPY_STR(client_addr);
	COPY_STR(command);
	COPY_STR(statement);
	COPY_STR(params);
	COPY_STR(actor);
	COPY_STR(request_id);
	COPY_STR(attributes);
	COPY_STR(details);
#undef COPY_STR
	if (src->nconsts > 0)
	{
		AuditSpan *consts =
			MemoryContextAlloc(cxt, sizeof(AuditSpan) * src->nconsts);

		memcpy(consts, src->consts, sizeof(AuditSpan) * src->nconsts);
		ev->consts = consts;
	}
	if (src->nobjects > 0)
	{
		ev->objects = MemoryContextAlloc(cxt, sizeof(char *) * src->nobjects);
		ev->privileges =
			MemoryContextAllocZero(cxt, sizeof(char *) * src->nobjects);
		for (j = 0; j < src->nobjects; j++)
		{
			ev->objects[j] = MemoryContextStrdup(cxt, src->objects[j]);
			if (src->privileges && src->privileges[j])
				ev->privileges[j] =
					MemoryContextStrdup(cxt, src->privileges[j]);
		}
	}
	return ev;
}
