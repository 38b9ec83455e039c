/*-------------------------------------------------------------------------
 *
 * entryrow.c
 *		One audit event as the values of a row: the one builder of the
 *		rows of audit.entries (writer.c), audit.held_entries (hold.c) and
 *		of the audit.trail rows a subscription's predicate reads
 *		(pqueue_subscribe.c).
 *
 * Every table and view of entries names its columns as
 * audit_entry_column_names does; a row has some of them, at positions
 * given by an AuditEntryRow (audit_entry_columns() finds them by name in a
 * tuple descriptor).  audit_entry_values() fills those it has and leaves
 * the others alone, so the caller sets every value null first.
 *
 * A row with a memory context (the writer's batch) reuses datums: the
 * string and JSON columns made for the previous row when the value is the
 * same, and arrays of objects and privileges made lately, from a cache of
 * this backend.  Nothing here takes a lock or reads a table.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/entryrow.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "audit/audit.h"

const char *const audit_entry_column_names[AUDIT_NUM_COLS] = {
	"entry_id",
	"ts",
	"database",
	"username",
	"current_user_name",
	"application",
	"client_addr",
	"backend_pid",
	"xid",
	"class",
	"command",
	"objects",
	"privileges",
	"rows",
	"duration",
	"outcome",
	"sqlstate",
	"statement_id",
	"statement_text",
	"params",
	"constants",
	"actor",
	"request_id",
	"attributes",
	"details",
	"server_id"};

/*
 * The positions of the columns of desc (attnum[c], 0 for a column desc
 * lacks) and their types; no memory context.
 */
void
audit_entry_columns(AuditEntryRow *row, TupleDesc desc)
{
	int i;
	int j;

	memset(row, 0, sizeof(*row));
	for (i = 0; i < AUDIT_NUM_COLS; i++)
	{
		for (j = 0; j < desc->natts; j++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, j);

			if (!att->attisdropped && strcmp(NameStr(att->attname),
											 audit_entry_column_names[i]) == 0)
			{
				row->attnum[i] = j + 1;
				row->atttype[i] = att->atttypid;
				break;
			}
		}
	}
}

/* items as text[], a NULL item (or items) as null. */
Datum
audit_text_array(const char **items, int n)
{
	Datum *elems = palloc(sizeof(Datum) * n);
	bool *nulls = palloc(sizeof(bool) * n);
	int dims[1] = {n};
	int lbs[1] = {1};
	int i;

	for (i = 0; i < n; i++)
	{
		nulls[i] = items == NULL || items[i] == NULL;
		elems[i] = nulls[i] ? (Datum) 0 : CStringGetTextDatum(items[i]);
	}
	return PointerGetDatum(construct_md_array(
		elems, nulls, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * Arrays of objects and privileges made lately: the statements of an
 * application touch the same objects again and again.  Direct-mapped by a
 * hash of the items; the arrays live in their own context.
 */
#define AUDIT_ARRAY_CACHE_SLOTS 64

typedef struct AuditArraySlot
{
	uint32 hash;
	int keylen; /* 0: empty */
	char *key;	/* the items, each a flag byte and its string */
	Datum array;
} AuditArraySlot;

static MemoryContext audit_array_cxt = NULL;
static AuditArraySlot audit_array_cache[AUDIT_ARRAY_CACHE_SLOTS];

/* audit_text_array(), made once for items met again. */
static Datum
audit_cached_text_array(const char **items, int n)
{
	StringInfoData key;
	AuditArraySlot *slot;
	uint32 hash;
	MemoryContext old;
	int i;

	initStringInfo(&key);
	for (i = 0; i < n; i++)
	{
		bool isnull = items == NULL || items[i] == NULL;

		appendStringInfoChar(&key, isnull ? 'n' : 'v');
		if (!isnull)
			appendBinaryStringInfo(&key, items[i], strlen(items[i]) + 1);
	}
	hash = hash_bytes((const unsigned char *) key.data, key.len);
	slot = &audit_array_cache[hash % AUDIT_ARRAY_CACHE_SLOTS];
	if (slot->keylen == key.len && slot->hash == hash &&
		memcmp(slot->key, key.data, key.len) == 0)
	{
		pfree(key.data);
		return slot->array;
	}
	if (audit_array_cxt == NULL)
		audit_array_cxt = AllocSetContextCreate(
			TopMemoryContext, "pg_opsdata audit arrays", ALLOCSET_SMALL_SIZES);
	if (slot->keylen > 0)
	{
		pfree(slot->key);
		pfree(DatumGetPointer(slot->array));
	}
	old = MemoryContextSwitchTo(audit_array_cxt);
	slot->key = palloc(key.len);
	memcpy(slot->key, key.data, key.len);
	slot->array = audit_text_array(items, n);
	MemoryContextSwitchTo(old);
	slot->hash = hash;
	slot->keylen = key.len;
	pfree(key.data);
	return slot->array;
}

/* The constants of an event's statement, as text[]. */
static Datum
audit_constants_array(const AuditEvent *ev)
{
	Datum *elems = palloc(sizeof(Datum) * ev->nconsts);
	int i;

	for (i = 0; i < ev->nconsts; i++)
		elems[i] = PointerGetDatum(cstring_to_text_with_len(
			ev->statement + ev->consts[i].offset, ev->consts[i].len));
	return PointerGetDatum(
		construct_array(elems, ev->nconsts, TEXTOID, -1, false, TYPALIGN_INT));
}

/*
 * JSON text as jsonb.  The text was checked when it was set (the settings'
 * check, audit.log_event()); should it not parse as jsonb_in() parses it
 * (strings de-escaped), it is kept as a JSON string rather than failing
 * the transaction that wrote it.
 */
Datum
audit_json_datum(const char *json)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType err;

	memset(&sem, 0, sizeof(sem));
	lex = makeJsonLexContextCstringLen((char *) json, strlen(json),
									   GetDatabaseEncoding(), true);
	err = pg_parse_json(lex, &sem);
	pfree(lex->strval->data);
	pfree(lex->strval);
	pfree(lex);
	if (err != JSON_SUCCESS)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		escape_json(&buf, json);
		json = buf.data;
	}
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(json));
}

/* A string as a datum of column c's type (name or text). */
static Datum
audit_string_datum(const AuditEntryRow *row, int c, const char *s)
{
	if (row->atttype[c] == NAMEOID)
	{
		Name name = (Name) palloc0(NAMEDATALEN);

		namestrcpy(name, s ? s : "");
		return NameGetDatum(name);
	}
	return CStringGetTextDatum(s ? s : "");
}

/*
 * The datum of a string (or, json, JSON) column; in a row with a memory
 * context, made once for consecutive rows with the same value (the session
 * facts, class, command and outcome of a batch mostly repeat) and kept
 * there.
 */
static Datum
audit_row_datum(AuditEntryRow *row, int c, const char *s, bool json)
{
	MemoryContext old;

	if (row->cxt == NULL)
		return json ? audit_json_datum(s) : audit_string_datum(row, c, s);
	if (row->last_src[c] != NULL &&
		(row->last_src[c] == s || strcmp(row->last_src[c], s) == 0))
		return row->last_datum[c];
	old = MemoryContextSwitchTo(row->cxt);
	row->last_datum[c] =
		json ? audit_json_datum(s) : audit_string_datum(row, c, s);
	MemoryContextSwitchTo(old);
	row->last_src[c] = s;
	return row->last_datum[c];
}

/* Only a column the row has: v is not evaluated for the others. */
#define SET_COL(c, v)                                                         \
	do                                                                        \
	{                                                                         \
		int attnum_ = row->attnum[c];                                         \
                                                                              \
		if (attnum_ > 0)                                                      \
		{                                                                     \
			values[attnum_ - 1] = (v);                                        \
			isnull[attnum_ - 1] = false;                                      \
		}                                                                     \
	} while (0)

/*
 * Set the values of the columns row has for one event: as entry entry_id,
 * stored under shape statement_id when has_statement, with its constants
 * when with_constants (and has_statement); the statement's text in a row
 * with a statement_text column.  A database, username or current user the
 * event lacks is '' unless row->null_unknown_names.
 */
void
audit_entry_values(AuditEntryRow *row, const AuditEvent *ev, int64 entry_id,
				   bool has_statement, int64 statement_id, bool with_constants,
				   Datum *values, bool *isnull)
{
	bool empty = !row->null_unknown_names;

	SET_COL(AUDIT_COL_ENTRY_ID, Int64GetDatum(entry_id));
	SET_COL(AUDIT_COL_TS, TimestampTzGetDatum(ev->ts));
	if (ev->database || empty)
		SET_COL(AUDIT_COL_DATABASE,
				audit_row_datum(row, AUDIT_COL_DATABASE,
								ev->database ? ev->database : "", false));
	if (ev->username || empty)
		SET_COL(AUDIT_COL_USERNAME,
				audit_row_datum(row, AUDIT_COL_USERNAME,
								ev->username ? ev->username : "", false));
	if (ev->current_user_name || empty)
		SET_COL(
			AUDIT_COL_CURRENT_USER,
			audit_row_datum(row, AUDIT_COL_CURRENT_USER,
							ev->current_user_name ? ev->current_user_name : "",
							false));
	if (ev->application)
		SET_COL(AUDIT_COL_APPLICATION,
				audit_row_datum(row, AUDIT_COL_APPLICATION, ev->application,
								false));
	if (ev->client_addr)
		SET_COL(
			AUDIT_COL_CLIENT_ADDR,
			DirectFunctionCall1(inet_in, CStringGetDatum(ev->client_addr)));
	SET_COL(AUDIT_COL_BACKEND_PID, Int32GetDatum(ev->backend_pid));
	if (ev->flags & AUDIT_EVENT_HAS_XID)
		SET_COL(AUDIT_COL_XID,
				FullTransactionIdGetDatum(FullTransactionIdFromU64(ev->xid)));
	SET_COL(AUDIT_COL_CLASS,
			audit_row_datum(row, AUDIT_COL_CLASS, audit_class_name(ev->class),
							false));
	SET_COL(AUDIT_COL_COMMAND,
			audit_row_datum(row, AUDIT_COL_COMMAND,
							ev->command ? ev->command : "???", false));
	if (ev->nobjects > 0)
	{
		if (row->cxt != NULL)
		{
			SET_COL(AUDIT_COL_OBJECTS,
					audit_cached_text_array(ev->objects, ev->nobjects));
			SET_COL(AUDIT_COL_PRIVILEGES,
					audit_cached_text_array(ev->privileges, ev->nobjects));
		}
		else
		{
			SET_COL(AUDIT_COL_OBJECTS,
					audit_text_array(ev->objects, ev->nobjects));
			SET_COL(AUDIT_COL_PRIVILEGES,
					audit_text_array(ev->privileges, ev->nobjects));
		}
	}
	if (ev->flags & AUDIT_EVENT_HAS_ROWS)
		SET_COL(AUDIT_COL_ROWS, Int64GetDatum(ev->rows));
	if (ev->flags & AUDIT_EVENT_HAS_DURATION)
	{
		Interval *iv = palloc0(sizeof(Interval));

		iv->time = ev->duration_us;
		SET_COL(AUDIT_COL_DURATION, IntervalPGetDatum(iv));
	}
	SET_COL(AUDIT_COL_OUTCOME,
			audit_row_datum(row, AUDIT_COL_OUTCOME,
							audit_outcome_name(ev->outcome), false));
	if (ev->sqlstate != 0)
		SET_COL(AUDIT_COL_SQLSTATE,
				CStringGetTextDatum(unpack_sql_state(ev->sqlstate)));
	if (has_statement)
		SET_COL(AUDIT_COL_STATEMENT_ID, Int64GetDatum(statement_id));
	if (ev->statement)
		SET_COL(AUDIT_COL_STATEMENT_TEXT, CStringGetTextDatum(ev->statement));
	if (ev->params)
		SET_COL(AUDIT_COL_PARAMS, CStringGetTextDatum(ev->params));
	if (has_statement && with_constants)
		SET_COL(AUDIT_COL_CONSTANTS, audit_constants_array(ev));
	if (ev->actor)
		SET_COL(AUDIT_COL_ACTOR,
				audit_row_datum(row, AUDIT_COL_ACTOR, ev->actor, false));
	if (ev->request_id)
		SET_COL(
			AUDIT_COL_REQUEST_ID,
			audit_row_datum(row, AUDIT_COL_REQUEST_ID, ev->request_id, false));
	if (ev->attributes)
		SET_COL(
			AUDIT_COL_ATTRIBUTES,
			audit_row_datum(row, AUDIT_COL_ATTRIBUTES, ev->attributes, true));
	if (ev->details)
		SET_COL(AUDIT_COL_DETAILS, audit_json_datum(ev->details));
	SET_COL(AUDIT_COL_SERVER_ID, Int64GetDatum((int64) GetSystemIdentifier()));
}
