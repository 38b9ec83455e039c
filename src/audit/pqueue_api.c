/*-------------------------------------------------------------------------
 *
 * pqueue_api.c
 *		SQL functions of the processing queues: enqueue, settle, and the
 *		checks every one of them makes.
 *
 * Who may do what is decided by the EXECUTE grants (src/audit/pqueue.sql)
 * and, per queue, here: an application queue is consumed by members of
 * opsdata_writer; the items of a subscription are audit entries, consumed
 * only by roles that may read audit.entries; no one enqueues into a
 * subscription.  The functions are not SECURITY DEFINER: they reach the
 * tables through the table access method (pqueue_store.c), which checks no
 * table privilege, so the caller needs none on the tables themselves.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/pqueue_api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "audit/pqueue.h"

PG_FUNCTION_INFO_V1(audit_pq_enqueue);
PG_FUNCTION_INFO_V1(audit_pq_enqueue_many);
PG_FUNCTION_INFO_V1(audit_pq_requeue);
PG_FUNCTION_INFO_V1(audit_pq_ack);
PG_FUNCTION_INFO_V1(audit_pq_nack);
PG_FUNCTION_INFO_V1(audit_pq_extend);
PG_FUNCTION_INFO_V1(audit_pq_may_read_trail);
PG_FUNCTION_INFO_V1(audit_pq_forget);

/* Longest lease, delay or wait: about 30 years. */
#define PQ_MAX_INTERVAL_US ((int64) 1000000000 * USECS_PER_SEC)

/*
 * An interval as microseconds (a month as 30 days); an error when negative,
 * zero (unless zero_ok) or too long.
 */
int64
pq_interval_us(Interval *iv, const char *what, bool zero_ok)
{
	double us =
		((double) iv->month * DAYS_PER_MONTH + iv->day) * USECS_PER_DAY +
		iv->time;

	if (us < 0 || (us == 0 && !zero_ok))
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("%s must be a positive interval", what)));
	if (us > PQ_MAX_INTERVAL_US)
		ereport(ERROR, (errcode(ERRCODE_INTERVAL_FIELD_OVERFLOW),
						errmsg("%s is too long", what)));
	return (int64) us;
}

/*
 * Whether roleid may read audit.entries (and so the items of a
 * subscription).
 */
bool
pq_may_read_trail(Oid roleid)
{
	return pg_class_aclcheck(pq_rel(PQ_REL_ENTRIES), roleid, ACL_SELECT) ==
		   ACLCHECK_OK;
}

/* Whether the current role may consume application queues. */
static bool
pq_may_consume_application(void)
{
	Oid writer = get_role_oid("opsdata_writer", true);

	return superuser() ||
		   (OidIsValid(writer) && has_privs_of_role(GetUserId(), writer));
}

/*
 * The queue called name; an error when there is none.
 */
void
pq_get_queue(text *name, PqQueue *queue)
{
	char *cname = text_to_cstring(name);

	if (!pq_lookup(cname, queue))
		ereport(ERROR, (errcode(ERRCODE_UNDEFINED_OBJECT),
						errmsg("queue \"%s\" does not exist", cname),
						errhint("Queues are made with audit.create_queue() or "
								"audit.subscribe().")));
}

/*
 * An error unless the current role may consume the queue's items.
 */
void
pq_check_consume(const PqQueue *queue)
{
	if (queue->kind == PQ_KIND_SUBSCRIPTION)
	{
		if (!pq_may_read_trail(GetUserId()))
			ereport(
				ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for queue \"%s\"", queue->name),
				 errdetail(
					 "The items of an audit subscription are audit entries."),
				 errhint(
					 "They are consumed by roles that may read audit.entries (opsdata_auditor).")));
	}
	else if (!pq_may_consume_application())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for queue \"%s\"", queue->name),
				 errhint("Application queues are used by members of "
						 "opsdata_writer.")));
}

/* The application queue named by argument 0, ready to take items. */
static void
pq_producer_queue(FunctionCallInfo fcinfo, PqQueue *queue, const char *fn)
{
	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("queue name must not be null")));
	pq_get_queue(PG_GETARG_TEXT_PP(0), queue);
	if (queue->kind != PQ_KIND_APPLICATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("queue \"%s\" is an audit subscription", queue->name),
				 errdetail("A subscription receives the audit entries that "
						   "match its filter; nothing else is enqueued into "
						   "it.")));
	PreventCommandIfReadOnly(fn);
	PreventCommandIfParallelMode(fn);
}

/* When an item enqueued now with the delay of argument 2 is available. */
static TimestampTz
pq_visible_at(FunctionCallInfo fcinfo, TimestampTz now)
{
	if (PG_ARGISNULL(2))
		return now;
	return now + pq_interval_us(PG_GETARG_INTERVAL_P(2), "delay", true);
}

/*
 * audit.enqueue(queue, payload, delay) returns the new item's id.
 */
Datum
audit_pq_enqueue(PG_FUNCTION_ARGS)
{
	PqQueue queue;
	PqInserter *ins;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz visible_at;
	int64 id;

	pq_producer_queue(fcinfo, &queue, "audit.enqueue()");
	if (PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("payload must not be null")));
	visible_at = pq_visible_at(fcinfo, now);
	ins = pq_insert_begin(false);
	id = pq_insert(ins, queue.queue_id, PG_GETARG_JSONB_P(1), 0, now,
				   visible_at);
	pq_insert_end(ins);
	PG_RETURN_INT64(id);
}

/*
 * audit.enqueue_many(queue, payloads, delay) enqueues one item per
 * payload, in order, and returns how many.
 */
Datum
audit_pq_enqueue_many(PG_FUNCTION_ARGS)
{
	PqQueue queue;
	PqInserter *ins;
	ArrayType *array;
	Datum *elems;
	bool *nulls;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz visible_at;
	int n;
	int i;

	pq_producer_queue(fcinfo, &queue, "audit.enqueue_many()");
	if (PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("payloads must not be null")));
	visible_at = pq_visible_at(fcinfo, now);
	array = PG_GETARG_ARRAYTYPE_P(1);
	if (ARR_NDIM(array) > 1)
		ereport(ERROR, (errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
						errmsg("payloads must be a one-dimensional array")));
	deconstruct_array(array, JSONBOID, -1, false, TYPALIGN_INT, &elems, &nulls,
					  &n);
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("payloads must not contain nulls")));
	}
	ins = pq_insert_begin(false);
	for (i = 0; i < n; i++)
	{
		CHECK_FOR_INTERRUPTS();
		(void) pq_insert(ins, queue.queue_id, DatumGetJsonbP(elems[i]), 0, now,
						 visible_at);
	}
	pq_insert_end(ins);
	PG_RETURN_INT64(n);
}

/*
 * audit._requeue(queue_id, payloads, entry_ids, enqueued_ats): enqueue
 * items again (dead letters that are redriven); returns how many.
 */
Datum
audit_pq_requeue(PG_FUNCTION_ARGS)
{
	PqInserter *ins;
	Datum *payloads;
	bool *payload_nulls;
	Datum *entries;
	bool *entry_nulls;
	Datum *ats;
	bool *at_nulls;
	int n;
	int n2;
	int n3;
	int i;
	TimestampTz now = GetCurrentTimestamp();

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2) ||
		PG_ARGISNULL(3))
		PG_RETURN_INT64(0);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), JSONBOID, -1, false,
					  TYPALIGN_INT, &payloads, &payload_nulls, &n);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), INT8OID, 8, FLOAT8PASSBYVAL,
					  TYPALIGN_DOUBLE, &entries, &entry_nulls, &n2);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(3), TIMESTAMPTZOID, 8,
					  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &ats, &at_nulls, &n3);
	if (n2 != n || n3 != n)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("payloads, entry ids and enqueue times must be arrays "
						"of the same length")));
	ins = pq_insert_begin(false);
	for (i = 0; i < n; i++)
		(void) pq_insert(ins, PG_GETARG_INT32(0),
						 payload_nulls[i] ? NULL : DatumGetJsonbP(payloads[i]),
						 entry_nulls[i] ? 0 : DatumGetInt64(entries[i]),
						 at_nulls[i] ? now : DatumGetTimestampTz(ats[i]), now);
	pq_insert_end(ins);
	PG_RETURN_INT64(n);
}

/* Settle the ids of argument 0. */
static int64
pq_settle_args(FunctionCallInfo fcinfo, PqSettle how, TimestampTz until,
			   const char *fn)
{
	ArrayType *array;
	Datum *elems;
	bool *nulls;
	int64 *ids;
	int n;
	int nids = 0;
	int i;
	bool may_trail;
	bool may_app;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("item ids must not be null")));
	array = PG_GETARG_ARRAYTYPE_P(0);
	deconstruct_array(array, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, &n);
	PreventCommandIfReadOnly(fn);
	PreventCommandIfParallelMode(fn);
	ids = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		if (!nulls[i])
			ids[nids++] = DatumGetInt64(elems[i]);
	}
	may_trail = pq_may_read_trail(GetUserId());
	may_app = pq_may_consume_application();
	return pq_settle(how, ids, nids, until, may_app, may_trail);
}

/*
 * audit.ack(ids) acknowledges items; returns how many were not before.
 */
Datum
audit_pq_ack(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(
		pq_settle_args(fcinfo, PQ_ACK, GetCurrentTimestamp(), "audit.ack()"));
}

/*
 * audit.nack(ids, delay) makes items available again after delay; returns
 * how many.
 */
Datum
audit_pq_nack(PG_FUNCTION_ARGS)
{
	int64 delay = 0;

	if (!PG_ARGISNULL(1))
		delay = pq_interval_us(PG_GETARG_INTERVAL_P(1), "delay", true);
	PG_RETURN_INT64(pq_settle_args(
		fcinfo, PQ_NACK, GetCurrentTimestamp() + delay, "audit.nack()"));
}

/*
 * audit.extend(ids, visibility_timeout) extends the leases that still hold;
 * returns how many.
 */
Datum
audit_pq_extend(PG_FUNCTION_ARGS)
{
	int64 vt;

	if (PG_ARGISNULL(1))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("visibility timeout must not be null")));
	vt = pq_interval_us(PG_GETARG_INTERVAL_P(1), "visibility timeout", false);
	PG_RETURN_INT64(pq_settle_args(
		fcinfo, PQ_EXTEND, GetCurrentTimestamp() + vt, "audit.extend()"));
}

/*
 * audit._may_read_trail(): whether the role of the session (as SET ROLE
 * made it, whatever SECURITY DEFINER function runs) may read audit.entries.
 */
Datum
audit_pq_may_read_trail(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pq_may_read_trail(GetOuterUserId()));
}

/*
 * audit._queue_forget(queue_id): drop what shared memory holds of a queue.
 */
Datum
audit_pq_forget(PG_FUNCTION_ARGS)
{
	pq_state_forget(PG_GETARG_INT32(0));
	PG_RETURN_VOID();
}
