/*-------------------------------------------------------------------------
 *
 * pqueue.h
 *		Declarations shared by the files of the audit processing queues.
 *
 * The queues live in audit.queue_items, one table for every queue, with a
 * single index: the primary key on item_id.  An item id is the queue_id in
 * its high 16 bits and a number from audit.queue_items_seq below, so the
 * items of a queue are one range of the index, in enqueue order.
 *
 *	pqueue_state.c		where reads of each queue start, in shared memory
 *						(or per backend without preloading); what the
 *						transaction did to each queue, announced at commit;
 *						waiting for items
 *	pqueue_store.c		inserting items, finding and changing one by id
 *	pqueue_read.c		audit.read(): the scan that leases items
 *	pqueue_api.c		the other SQL functions of the queues
 *	pqueue_subscribe.c	subscriptions: audit entries enqueued as written
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/pqueue.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_PQUEUE_H
#define OPSDATA_PQUEUE_H

#include "access/tableam.h"
#include "datatype/timestamp.h"
#include "executor/execdesc.h"
#include "nodes/execnodes.h"
#include "utils/jsonb.h"
#include "utils/relcache.h"

#include "audit/audit.h"

/* Item ids: the queue in the high bits. */
#define PQ_ID_SHIFT		48
#define PQ_FIRST_ID(q)	((int64) (q) << PQ_ID_SHIFT)
#define PQ_END_ID(q)	(((int64) (q) + 1) << PQ_ID_SHIFT)
#define PQ_QUEUE_OF(id) ((int32) ((id) >> PQ_ID_SHIFT))
#define PQ_NO_ID		PG_INT64_MAX

/* Most items one call reads, enqueues or settles. */
#define PQ_MAX_READ 1000

/* Columns of audit.queue_items. */
#define PQ_ATT_ITEM_ID	   1
#define PQ_ATT_QUEUE_ID	   2
#define PQ_ATT_DELIVERIES  3
#define PQ_ATT_LEASED	   4
#define PQ_ATT_ENQUEUED_AT 5
#define PQ_ATT_VISIBLE_AT  6
#define PQ_ATT_ACKED_AT	   7
#define PQ_ATT_ENTRY_ID	   8
#define PQ_ATT_PAYLOAD	   9
#define PQ_NATTS		   9

typedef enum PqKind
{
	PQ_KIND_APPLICATION,
	PQ_KIND_SUBSCRIPTION
} PqKind;

/* A row of audit.queues. */
typedef struct PqQueue
{
	int32 queue_id;
	PqKind kind;
	int32 max_deliveries;
	int64 head;
	char *name;
} PqQueue;

/*
 * Where the reads of a queue start: in a shared-memory slot, or in backend
 * memory when there is none.  Obtained with pq_state_get() for the
 * duration of one call; every field is read and written through the
 * functions of pqueue_state.c.
 */
typedef struct PqState PqState;

typedef struct PqRef
{
	PqState *state;
	bool shared;
	int slot;
	uint64 incarnation;
	int32 queue_id;
} PqRef;

/* What pq_pass_begin() hands to a scan, and pq_pass_end() takes back. */
typedef struct PqPass
{
	int64 start;	 /* first item id to look at */
	bool from_below; /* start is below the read position */
	uint64 commits;	 /* commit sequence before the snapshot */
	uint64 lowered;	 /* times rescan_from was lowered, at the start */
	uint64 news;	 /* what waiters compare */
	bool lost;		 /* the state was taken for another queue */
} PqPass;

/* pqueue_state.c */
extern int audit_pq_max_queues;
extern void pq_state_get(PqRef *ref, int32 queue_id, int64 head);
extern void pq_state_forget(int32 queue_id);
extern void pq_pass_begin(PqRef *ref, TimestampTz now, PqPass *pass);
extern void pq_pass_end(PqRef *ref, const PqPass *pass, int64 reached,
						bool exhausted, TimestampTz due);
extern void pq_note_leased(PqRef *ref, int64 id, TimestampTz until);
extern bool pq_walk_begin(PqRef *ref, TimestampTz now, PqPass *pass);
extern void pq_walk_end(PqRef *ref, const PqPass *pass, int64 settled_below);
extern int64 pq_settled_below(PqRef *ref);
extern bool pq_wait(PqRef *ref, const PqPass *pass, TimestampTz deadline);
extern void pq_wake_next(PqRef *ref);
extern void pq_note_available(int32 queue_id, int64 id, TimestampTz at);
extern void pq_xact_enqueued(int32 queue_id, int64 id);
extern void pq_xact_touched(int32 queue_id, int64 id, TimestampTz due);

typedef struct PqStateInfo
{
	int32 queue_id;
	bool shared;
	int64 settled_below;
	int64 cursor;
	int64 rescan_from;
	TimestampTz due_at;
} PqStateInfo;
extern int pq_state_list(PqStateInfo **infos);

/* pqueue_store.c */
typedef enum PqRel
{
	PQ_REL_QUEUES,
	PQ_REL_QUEUES_NAME,
	PQ_REL_QUEUES_PKEY,
	PQ_REL_ITEMS,
	PQ_REL_SEQ,
	PQ_REL_DEAD_LETTERS,
	PQ_REL_SUBSCRIPTIONS,
	PQ_REL_ENTRIES,
	PQ_REL_TRAIL,
	PQ_REL_ITEMS_PKEY
} PqRel;
extern Oid pq_rel(PqRel which);
extern Oid pq_rel_if_exists(PqRel which);
extern void pq_register_callback(void);
typedef struct PqInserter PqInserter;
extern bool pq_lookup(const char *name, PqQueue *queue);
extern bool pq_lookup_id(int32 queue_id, PqQueue *queue);
extern PqInserter *pq_insert_begin(bool quiet);
extern int64 pq_insert(PqInserter *ins, int32 queue_id, Jsonb *payload,
					   int64 entry_id, TimestampTz enqueued_at,
					   TimestampTz visible_at);
extern int64 pq_insert_item(PqInserter *ins, int32 queue_id, Jsonb *payload,
							int64 entry_id, TimestampTz enqueued_at,
							TimestampTz visible_at, int32 deliveries,
							TimestampTz acked_at);
extern int64 pq_insert_dead_letter(PqInserter *ins, int32 queue_id,
								   Jsonb *payload, TimestampTz enqueued_at,
								   int32 deliveries);
extern void pq_insert_end(PqInserter *ins);

typedef enum PqSettle
{
	PQ_ACK,
	PQ_NACK,
	PQ_EXTEND
} PqSettle;
extern int64 pq_settle(PqSettle how, const int64 *ids, int nids,
					   TimestampTz until, bool may_app, bool may_trail);
extern void pq_dead_letter(Relation items, TupleTableSlot *slot,
						   EState *estate);
extern void pq_index_new_version(ResultRelInfo *rri, TupleTableSlot *slot,
								 EState *estate);

/* pqueue_read.c */
extern int64 pq_walk_settled(PqRef *ref, int32 queue_id, bool force);

/* pqueue_api.c */
extern bool pq_may_read_trail(Oid roleid);
extern void pq_get_queue(text *name, PqQueue *queue);
extern void pq_check_consume(const PqQueue *queue);
extern int64 pq_interval_us(Interval *iv, const char *what, bool zero_ok);

/* pqueue_subscribe.c (audit_pq_entries_written() is in audit.h) */
extern void pq_subscriptions_invalidate(void);

#endif /* OPSDATA_PQUEUE_H */
