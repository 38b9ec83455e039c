/*-------------------------------------------------------------------------
 *
 * import.c
 *		Importing the stores of an older system into the audit area: its
 *		audit log into the trail, its audit queue into a processing queue.
 *
 * Both are INSTEAD OF INSERT triggers of write-only views (import.sql), so
 * that "COPY view FROM STDIN" checks every row, names the line of a bad
 * one (COPY's error context) and loads a whole file or nothing: the rows
 * are written in the statement's transaction.
 *
 * audit.import_events.  Each row becomes an entry of class imported, with
 * the old event's time (ts), actor, action (command), object, outcome,
 * details, request and attributes; the session columns (username,
 * current_user_name, application, backend_pid, xid) are those of the
 * session that imports, which says who wrote the entry and when the
 * import ran.  The class cannot be had otherwise: audit.log_event() makes
 * entries of class app, at the time they are logged, so no entry written
 * live passes for history, and no imported one for a live event.  Only
 * superusers import (the role the session acts as, as for the other
 * changes that could bend the trail, core/duties.c): an import writes any
 * time and any actor.  The first row of a statement also records the
 * import itself, always audited whatever the classes and rules: an entry
 * IMPORT AUDIT EVENTS of class ddl on audit.entries, with the statement's
 * text and, in rows, how many events it imported; it shares the xid of the
 * entries it brought.  A failed import rolls back its entries, and its
 * record is kept as rolled back, like any entry of a rolled-back
 * transaction.
 *
 * The entries are written in batches of AUDIT_IMPORT_BATCH rows, the last
 * one by the views' AFTER INSERT statement trigger, through
 * audit_store_events() like the entries of a committing transaction: their
 * ids come from the database's counter while the writer holds its lock on
 * audit.entries, as the sealing horizon requires (seal.c), and each is
 * sealed into the seal of its ts's bucket by the next sealing round.  So a
 * statement reads the entries its earlier statements imported, and an
 * import costs about what its rows cost to store, not a writer's setup per
 * row.  An entry older than audit.retention is refused rather than
 * imported and then dropped by partition maintenance; one in the future is
 * refused too.
 *
 * audit.import_queue_items.  Each row becomes an item of an application
 * queue, numbered in the order of the rows (so audit.read() hands them out
 * in that order), with its enqueue time, its delivery count and, for an
 * item the old store had acknowledged, its acknowledgement time; items not
 * acknowledged are available at once.  An item not acknowledged that the
 * old store had handed out as many times as the queue's max_deliveries
 * allows goes straight to audit.dead_letters (died_at: the import), as
 * the first read would move it there.  Whoever may insert into the view
 * (opsdata_admin) imports into any application queue, never into a
 * subscription's.  The first row of a statement records the import, as
 * for events: an entry IMPORT QUEUE ITEMS of class write on
 * audit.queue_items, always audited, with the role the session acts as,
 * the statement's text, in rows how many items it imported and in details
 * how many of them became dead letters.  The items are inserted as their
 * rows come, through one inserter (pqueue_store.c) that the statement keeps
 * open from its first row to its AFTER INSERT statement trigger.
 *
 * State per statement (the privileges checked, the import's record, the
 * retention cut-off, the events not yet stored, the open inserter) is an
 * AuditImport, made at the statement's first row in the memory of the
 * (sub)transaction and ended by the statement trigger.  A statement that
 * fails takes it with the (sub)transaction it aborts: a reset callback of
 * its memory forgets it, and the relations the inserter held are released
 * by the abort, so nothing of a failed COPY is stored.  Should a statement
 * end without its statement trigger (one disabled by a superuser), the
 * next import statement of the transaction, or else its commit, stores
 * what it left.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/import.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "audit/audit.h"
#include "audit/pqueue.h"
#include "core/opsdata.h"

PG_FUNCTION_INFO_V1(audit_import_event);
PG_FUNCTION_INFO_V1(audit_import_queue_item);

/* Columns of audit.import_events. */
#define IMP_TS		   1
#define IMP_ACTOR	   2
#define IMP_ACTION	   3
#define IMP_OBJECT	   4
#define IMP_OUTCOME	   5
#define IMP_DETAILS	   6
#define IMP_REQUEST_ID 7
#define IMP_ATTRIBUTES 8
#define IMP_NATTS	   8

/* Columns of audit.import_queue_items. */
#define IMQ_QUEUE		1
#define IMQ_PAYLOAD		2
#define IMQ_ENQUEUED_AT 3
#define IMQ_DELIVERIES	4
#define IMQ_ACKED_AT	5
#define IMQ_NATTS		5

/* Longest actor and request id, as pg_opsdata.audit_actor allows (guc.c). */
#define AUDIT_IMPORT_CONTEXT_MAX	1024
#define AUDIT_IMPORT_ATTRIBUTES_MAX 8192

/* Events of audit.import_events stored together. */
#define AUDIT_IMPORT_BATCH 1000

/* What one import statement keeps from row to row (see the banner). */
typedef struct AuditImport
{
	MemoryContext cxt;		  /* this and all it holds */
	MemoryContextCallback cb; /* forgets it when cxt goes */
	FmgrInfo *flinfo;		  /* of the statement's row trigger */
	AuditEvent *record;		  /* the import's own entry, in the xact's list */
	/* audit.import_events */
	TimestampTz cutoff;		/* entries must not be older */
	MemoryContext batchcxt; /* the events not yet stored */
	AuditEvent **events;	/* AUDIT_IMPORT_BATCH of them at most */
	int nevents;
	/* audit.import_queue_items */
	PqInserter *ins;	/* open from the first row */
	PqQueue queue;		/* the queue of the last row */
	char *queue_name;	/* its name, NULL before the first row */
	int64 dead_letters; /* items imported as dead letters */
	char *details;		/* the record's details, in the xact's memory */
} AuditImport;

/* The import statement under way, or NULL. */
static AuditImport *audit_import_current = NULL;

/* Store the events the statement has not stored yet. */
static void
audit_import_flush(AuditImport *imp)
{
	if (imp->nevents == 0)
		return;
	audit_store_events(imp->events, imp->nevents);
	imp->record->rows += imp->nevents;
	imp->nevents = 0;
	MemoryContextReset(imp->batchcxt);
}

/* Room for the details of an IMPORT QUEUE ITEMS record. */
#define AUDIT_IMPORT_DETAILS_LEN 64

/*
 * End the statement's import: store what it has not stored yet, close its
 * inserter, and free its state.
 */
static void
audit_import_finish(AuditImport *imp)
{
	if (imp->record != NULL)
		audit_import_flush(imp);
	if (imp->ins != NULL)
	{
		PqInserter *ins = imp->ins;

		imp->ins = NULL;
		pq_insert_end(ins);
	}
	MemoryContextDelete(imp->cxt);
}

/* The reset callback of an AuditImport's memory. */
static void
audit_import_forget(void *arg)
{
	if (audit_import_current == (AuditImport *) arg)
		audit_import_current = NULL;
}

/*
 * The state of the import statement whose row trigger is flinfo: the one
 * under way, or a new one (*first set) in the memory of the current
 * (sub)transaction.
 */
static AuditImport *
audit_import_state(FmgrInfo *flinfo, bool *first)
{
	AuditImport *imp = audit_import_current;
	MemoryContext cxt;

	*first = false;
	if (imp != NULL && imp->flinfo == flinfo)
		return imp;
	if (imp != NULL)
		audit_import_finish(imp);

	cxt = AllocSetContextCreate(CurTransactionContext, "pg_opsdata import",
								ALLOCSET_DEFAULT_SIZES);
	imp = MemoryContextAllocZero(cxt, sizeof(AuditImport));
	imp->cxt = cxt;
	imp->flinfo = flinfo;
	imp->cb.func = audit_import_forget;
	imp->cb.arg = imp;
	MemoryContextRegisterResetCallback(cxt, &imp->cb);
	audit_import_current = imp;
	*first = true;
	return imp;
}

/*
 * End the import statement under way, if any: from the views' AFTER
 * INSERT statement triggers, and at pre-commit for a statement that ended
 * without its trigger.
 */
void
audit_import_end(void)
{
	if (audit_import_current != NULL)
		audit_import_finish(audit_import_current);
}

/* Whether the session may import audit events at all. */
static void
audit_import_check_events(void)
{
	audit_app_check_session();
	opsdata_trail_require_superuser("import audit events",
									"write history into the audit trail");
	PreventCommandIfReadOnly("import audit events");
}

/* A timestamp of the row that must be given and not in the future. */
static TimestampTz
audit_import_time(TriggerData *trigdata, int attnum, const char *what,
				  bool required, TimestampTz now)
{
	bool isnull;
	Datum d = audit_view_column(trigdata, attnum, &isnull);
	TimestampTz ts;

	if (isnull)
	{
		if (required)
			ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							errmsg("%s must not be null", what)));
		return DT_NOBEGIN;
	}
	ts = DatumGetTimestampTz(d);
	if (TIMESTAMP_NOT_FINITE(ts) || ts > now)
		ereport(
			ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("%s %s is not in the past", what, timestamptz_to_str(ts)),
			 errdetail("Imported history lies before the import.")));
	return ts;
}

/*
 * The oldest time an entry may have to survive partition maintenance:
 * now() less the setting audit.retention.
 */
static TimestampTz
audit_import_cutoff(void)
{
	TimestampTz cutoff;
	bool isnull;
	int rc;

	opsdata_spi_connect(0);
	rc =
		SPI_execute("SELECT pg_catalog.now() OPERATOR(pg_catalog.-)"
					" opsdata.setting('audit.retention')::pg_catalog.interval",
					true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		opsdata_spi_failed(rc, "read the setting audit.retention");
	cutoff = DatumGetTimestampTz(SPI_getbinval(
		SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (isnull)
		cutoff = DT_NOBEGIN;
	SPI_finish();
	return cutoff;
}

/*
 * The entry that records an import: always audited, written with the
 * transaction at pre-commit (or queued as rolled back when it aborts), with
 * in rows the count of what it imported.
 */
static AuditEvent *
audit_import_record(int class, const char *command, const char *object)
{
	AuditEvent *ev = audit_record_change(command, object);

	if (ev == NULL)
		elog(ERROR, "an import cannot be recorded");
	ev->class = class;
	ev->flags |= AUDIT_EVENT_HAS_ROWS;
	ev->rows = 0;
	return ev;
}

/* A text of the row no longer than max bytes, or NULL. */
static char *
audit_import_context(TriggerData *trigdata, int attnum, const char *what,
					 int max)
{
	char *value = audit_view_text(trigdata, attnum);

	if (value != NULL && strlen(value) > (size_t) max)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s of an imported audit event is too long", what),
				 errdetail("It may have at most %d bytes.", max)));
	return value != NULL && value[0] != '\0' ? value : NULL;
}

/*
 * audit._import_event(): the INSTEAD OF INSERT trigger of
 * audit.import_events, which makes the row an entry of class imported; its
 * BEFORE INSERT statement trigger, which refuses an import the session may
 * not make, even of no rows; and its AFTER INSERT statement trigger, which
 * stores the entries not stored yet.
 */
Datum
audit_import_event(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata =
		audit_view_trigger(fcinfo, "audit._import_event()", IMP_NATTS, true);
	AuditImport *imp;
	TimestampTz now;
	AuditEvent *ev;
	TimestampTz ts;
	char *action;
	char *outcome;
	bool isnull;
	bool first;
	Datum d;
	Jsonb *details = NULL;
	MemoryContext old;

	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
	{
		if (TRIGGER_FIRED_BEFORE(trigdata->tg_event))
			audit_import_check_events();
		else
			audit_import_end();
		return PointerGetDatum(NULL);
	}

	imp = audit_import_state(fcinfo->flinfo, &first);
	if (first)
	{
		audit_import_check_events();
		imp->cutoff = audit_import_cutoff();
		(void) GetTopTransactionId(); /* the record shares the entries' xid */
		imp->record = audit_import_record(
			AUDIT_CLASS_DDL, "IMPORT AUDIT EVENTS", "audit.entries");
		imp->batchcxt = AllocSetContextCreate(
			imp->cxt, "pg_opsdata imported events", ALLOCSET_DEFAULT_SIZES);
		imp->events = MemoryContextAlloc(imp->cxt, sizeof(AuditEvent *) *
													   AUDIT_IMPORT_BATCH);
	}
	now = GetCurrentTimestamp();

	/* The event and what it holds live until its batch is stored. */
	old = MemoryContextSwitchTo(imp->batchcxt);
	ts = audit_import_time(trigdata, IMP_TS, "the time of an audit event",
						   true, now);
	if (ts < imp->cutoff)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("audit event of %s is older than the audit "
						"retention",
						timestamptz_to_str(ts)),
				 errdetail("Partition maintenance would remove it from the "
						   "trail; it keeps entries since %s.",
						   timestamptz_to_str(imp->cutoff)),
				 errhint("Raise the setting \"audit.retention\" with "
						 "opsdata.set_setting() before importing older "
						 "events.")));
	action = audit_view_text(trigdata, IMP_ACTION);
	if (action == NULL)
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("the action of an audit event must not be "
							   "null")));
	outcome = audit_view_text(trigdata, IMP_OUTCOME);
	d = audit_view_column(trigdata, IMP_DETAILS, &isnull);
	if (!isnull)
		details = DatumGetJsonbP(d);

	ev = audit_app_event(imp->batchcxt, AUDIT_CLASS_IMPORTED, action,
						 audit_view_text(trigdata, IMP_OBJECT),
						 outcome != NULL ? outcome : "ok", details);
	ev->ts = ts;
	ev->flags |= AUDIT_EVENT_ALWAYS;
	ev->actor = audit_import_context(trigdata, IMP_ACTOR, "the actor",
									 AUDIT_IMPORT_CONTEXT_MAX);
	ev->request_id = audit_import_context(
		trigdata, IMP_REQUEST_ID, "the request id", AUDIT_IMPORT_CONTEXT_MAX);
	ev->attributes = NULL;
	d = audit_view_column(trigdata, IMP_ATTRIBUTES, &isnull);
	if (!isnull)
	{
		Jsonb *attributes = DatumGetJsonbP(d);

		if (!JB_ROOT_IS_OBJECT(attributes))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the attributes of an audit event must be a "
							"JSON object")));
		ev->attributes =
			JsonbToCString(NULL, &attributes->root, VARSIZE(attributes));
		if (strlen(ev->attributes) > AUDIT_IMPORT_ATTRIBUTES_MAX)
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("the attributes of an imported audit event are "
							"too long"),
					 errdetail("They may have at most %d bytes as text.",
							   AUDIT_IMPORT_ATTRIBUTES_MAX)));
	}
	MemoryContextSwitchTo(old);

	imp->events[imp->nevents++] = ev;
	if (imp->nevents == AUDIT_IMPORT_BATCH)
		audit_import_flush(imp);
	return PointerGetDatum(trigdata->tg_trigtuple);
}

/*
 * The application queue called name, for the statement's import: looked
 * up when it differs from the previous row's.
 */
static const PqQueue *
audit_import_queue(AuditImport *imp, text *name)
{
	char *cname = text_to_cstring(name);
	PqQueue queue;

	if (imp->queue_name != NULL && strcmp(imp->queue_name, cname) == 0)
		return &imp->queue;
	pq_get_queue(name, &queue);
	if (queue.kind != PQ_KIND_APPLICATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("queue \"%s\" is an audit subscription", queue.name),
				 errdetail("A subscription receives the audit entries that "
						   "match its filter; nothing else is enqueued into "
						   "it.")));
	if (imp->queue_name != NULL)
		pfree(imp->queue_name);
	imp->queue = queue;
	imp->queue_name = MemoryContextStrdup(imp->cxt, cname);
	imp->queue.name = imp->queue_name;
	return &imp->queue;
}

/*
 * audit._import_queue_item(): the INSTEAD OF INSERT trigger of
 * audit.import_queue_items, which enqueues the row as an item of its
 * queue; and its AFTER INSERT statement trigger, which closes the
 * statement's inserter.
 */
Datum
audit_import_queue_item(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = audit_view_trigger(
		fcinfo, "audit._import_queue_item()", IMQ_NATTS, true);
	AuditImport *imp;
	TimestampTz now;
	const PqQueue *queue;
	TimestampTz enqueued_at;
	TimestampTz acked_at;
	int32 deliveries = 0;
	bool isnull;
	bool first;
	Datum d;

	if (!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
	{
		if (TRIGGER_FIRED_AFTER(trigdata->tg_event))
			audit_import_end();
		return PointerGetDatum(NULL);
	}

	imp = audit_import_state(fcinfo->flinfo, &first);
	if (first)
	{
		MemoryContext old;

		/*
		 * The view is granted to opsdata_admin; a role that writes every
		 * table (pg_write_all_data) gets no further than on
		 * audit.queue_items.
		 */
		if (!superuser() &&
			!has_privs_of_role(GetUserId(),
							   get_role_oid("opsdata_admin", false)))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to import queue items"),
					 errhint("Members of opsdata_admin import queue items.")));
		PreventCommandIfReadOnly("import queue items");
		(void) GetTopTransactionId(); /* the record shares the items' xid */
		imp->record = audit_import_record(
			AUDIT_CLASS_WRITE, "IMPORT QUEUE ITEMS", "audit.queue_items");
		imp->details =
			MemoryContextAlloc(audit_xact_cxt, AUDIT_IMPORT_DETAILS_LEN);
		old = MemoryContextSwitchTo(imp->cxt);
		imp->ins = pq_insert_begin(false);
		MemoryContextSwitchTo(old);
	}
	now = GetCurrentTimestamp();

	d = audit_view_column(trigdata, IMQ_QUEUE, &isnull);
	if (isnull)
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("queue name must not be null")));
	queue = audit_import_queue(imp, DatumGetTextPP(d));
	d = audit_view_column(trigdata, IMQ_PAYLOAD, &isnull);
	if (isnull)
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("payload must not be null")));
	enqueued_at = audit_import_time(trigdata, IMQ_ENQUEUED_AT,
									"the enqueue time of an item", true, now);
	acked_at =
		audit_import_time(trigdata, IMQ_ACKED_AT,
						  "the acknowledgement time of an item", false, now);
	if (acked_at != DT_NOBEGIN && acked_at < enqueued_at)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("item acknowledged at %s before it was enqueued",
						timestamptz_to_str(acked_at))));
	{
		Datum dd = audit_view_column(trigdata, IMQ_DELIVERIES, &isnull);

		if (!isnull)
			deliveries = DatumGetInt32(dd);
	}
	if (deliveries < 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("deliveries must not be negative")));

	/*
	 * An item not acknowledged that was handed out as many times as the
	 * queue allows is a dead letter at once, where the first read would
	 * move it.
	 */
	if (acked_at == DT_NOBEGIN && deliveries >= queue->max_deliveries)
	{
		(void) pq_insert_dead_letter(imp->ins, queue->queue_id,
									 DatumGetJsonbP(d), enqueued_at,
									 deliveries);
		imp->dead_letters++;
	}
	else
		(void) pq_insert_item(imp->ins, queue->queue_id, DatumGetJsonbP(d), 0,
							  enqueued_at, now, deliveries, acked_at);

	imp->record->rows++;
	snprintf(imp->details, AUDIT_IMPORT_DETAILS_LEN,
			 "{\"items\": " INT64_FORMAT ", \"dead_letters\": " INT64_FORMAT
			 "}",
			 imp->record->rows, imp->dead_letters);
	imp->record->details = imp->details;
	return PointerGetDatum(trigdata->tg_trigtuple);
}
