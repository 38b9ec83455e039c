/*-------------------------------------------------------------------------
 *
 * audit.h
 *		Declarations shared by the files of the audit area.
 *
 * An audited statement, login or disconnect becomes an AuditEvent in the
 * backend that saw it.  Events of write, ddl and role statements are kept
 * in the transaction and inserted into audit.entries at pre-commit
 * (writer.c); every other event goes through the database's shared-memory
 * queue (queue.c) and is inserted by whoever drains it (drain.c).  While
 * a dump is being restored into the database, both hold their entries in
 * audit.held_entries instead, until the restore has ended (hold.c).  hooks.c
 * only collects and hands over to capture.c, which owns the events of the
 * running statements; events.c owns those of the current transaction, and
 * active.c decides whether capture is on at all.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/audit.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_AUDIT_H
#define OPSDATA_AUDIT_H

#include "access/tupdesc.h"
#include "access/xact.h"
#include "datatype/timestamp.h"
#include "executor/execdesc.h"
#include "fmgr.h"
#include "audit/port.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "parser/parse_node.h"
#include "utils/jsonb.h"
#include "utils/queryjumble.h"
#include "tcop/cmdtag.h"
#include "tcop/utility.h"

/* Statement classes; pg_opsdata.audit is a set of them. */
typedef enum AuditClass
{
	AUDIT_CLASS_READ = 0,
	AUDIT_CLASS_WRITE,
	AUDIT_CLASS_FUNCTION,
	AUDIT_CLASS_ROLE,
	AUDIT_CLASS_DDL,
	AUDIT_CLASS_MISC,
	AUDIT_CLASS_LOGIN,
	AUDIT_CLASS_APP, /* audit.log_event(): not a class of pg_opsdata.audit */
	AUDIT_CLASS_IMPORTED, /* imported history (import.c): nor this one */
	AUDIT_NUM_CLASSES
} AuditClass;

#define AUDIT_BIT(c) (1 << (c))
/* The classes pg_opsdata.audit may name. */
#define AUDIT_ALL_CLASSES ((1 << AUDIT_CLASS_APP) - 1)

/* Classes whose entries are written in the statement's own transaction. */
#define AUDIT_TRANSACTIONAL_CLASSES                                           \
	(AUDIT_BIT(AUDIT_CLASS_WRITE) | AUDIT_BIT(AUDIT_CLASS_DDL) |              \
	 AUDIT_BIT(AUDIT_CLASS_ROLE) | AUDIT_BIT(AUDIT_CLASS_APP))

typedef enum AuditOutcome
{
	AUDIT_OUTCOME_OK = 0,
	AUDIT_OUTCOME_ERROR,
	AUDIT_OUTCOME_ROLLED_BACK,
	AUDIT_OUTCOME_DENIED,
	AUDIT_OUTCOME_FAILED
} AuditOutcome;

/* AuditEvent.flags */
#define AUDIT_EVENT_HAS_ROWS	 0x01
#define AUDIT_EVENT_HAS_DURATION 0x02
#define AUDIT_EVENT_HAS_XID		 0x04
#define AUDIT_EVENT_TXN_CONTROL                                               \
	0x08						 /* BEGIN, COMMIT...: never "rolled back" */
#define AUDIT_EVENT_ALWAYS	0x10 /* audit settings or rules: rules ignored */
#define AUDIT_EVENT_WRITTEN 0x20 /* backend-local: inserted at pre-commit */
#define AUDIT_EVENT_READ_ONLY                                                 \
	0x40 /* backend-local: made in a read-only transaction */

/* A constant of a statement: where its bytes are in the statement text. */
typedef struct AuditSpan
{
	int32 offset;
	int32 len;
} AuditSpan;

/*
 * One audit entry before it is written.  Strings are NUL-terminated; the
 * pointers refer to memory owned by whoever made the event (a transaction's
 * event context, or a buffer read from the queue).  objects and privileges
 * have nobjects elements each.
 */
typedef struct AuditEvent
{
	TimestampTz ts;
	int64 duration_us;
	int64 rows;
	uint64 xid;
	int32 backend_pid;
	int32 sqlstate; /* packed with MAKE_SQLSTATE, 0 for none */
	uint8 class;
	uint8 outcome;
	uint8 flags;
	SubTransactionId subid; /* backend-local: for savepoint rollbacks */
	SubTransactionId written_subid; /* backend-local: where it was written */
	const char *database;
	const char *username;
	const char *current_user_name;
	const char *application;
	const char *client_addr; /* text form of an inet, or NULL */
	const char *command;
	const char *statement;	 /* redacted statement text, or NULL */
	const char *params;		 /* bind parameters, or NULL */
	int nconsts;			 /* constants of statement (shapes.c) */
	int param_base;			 /* their placeholders are $(param_base + 1)... */
	const AuditSpan *consts; /* nconsts of them, in order */
	int nobjects;
	const char **objects;
	const char **privileges; /* per object; elements may be NULL */
	const char *actor; /* pg_opsdata.audit_actor when it happened, or NULL */
	const char *request_id; /* pg_opsdata.audit_request_id, or NULL */
	const char *attributes; /* pg_opsdata.audit_attributes (JSON), or NULL */
	const char *details;	/* an application event's details (JSON) */
} AuditEvent;

/*
 * Room for element n of *array, which has *max elements of elemsize
 * bytes: the array is doubled (to at least minimum elements, allocated in
 * cxt the first time) when full.  Returns the array, perhaps moved.
 */
static inline void *
audit_array_room(void *array, int n, int *max, Size elemsize, int minimum,
				 MemoryContext cxt)
{
	if (n < *max)
		return array;
	*max = Max(minimum, *max * 2);
	if (array == NULL)
		return MemoryContextAlloc(cxt, elemsize * *max);
	return repalloc(array, elemsize * *max);
}

/* A blank as the SQL scanner sees one. */
static inline bool
audit_is_blank(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f';
}

/*
 * The bounds of a statement within the string it came in: blanks around
 * it and the semicolons that end it are left out.  *text and *len are
 * adjusted.
 */
static inline void
audit_trim_statement(const char **text, int *len)
{
	const char *s = *text;
	int n = *len;

	while (n > 0 && audit_is_blank(*s))
		s++, n--;
	while (n > 0 && (audit_is_blank(s[n - 1]) || s[n - 1] == ';'))
		n--;
	*text = s;
	*len = n;
}

/* A copy in cxt of a statement's text, trimmed by audit_trim_statement(). */
static inline char *
audit_trimmed_copy(MemoryContext cxt, const char *text)
{
	int len = strlen(text);
	char *copy;

	audit_trim_statement(&text, &len);
	copy = MemoryContextAlloc(cxt, len + 1);
	memcpy(copy, text, len);
	copy[len] = '\0';
	return copy;
}

/*
 * The text of the statement at location (-1: unknown) of source, len
 * bytes long (0: to the end), trimmed as audit_trim_statement() does.
 */
static inline void
audit_statement_bounds(const char *source, int location, int len,
					   const char **text, int *textlen)
{
	*text = source + Max(location, 0);
	*textlen = len > 0 && location >= 0 ? len : (int) strlen(*text);
	audit_trim_statement(text, textlen);
}

/* guc.c */
extern int audit_classes;
extern char *audit_actor;
extern char *audit_request_id;
extern char *audit_attributes;
extern int audit_overflow;
extern char *audit_skip_applications;
extern const char *audit_skip_prefixes;
extern int audit_overflow_timeout_ms;
extern bool audit_catalog;
extern bool audit_log_parameters;
extern int audit_parameter_max_length;
extern int audit_queue_size_kb;
extern int audit_max_databases;
extern int audit_flush_interval_ms;

#define AUDIT_OVERFLOW_WAIT 0
#define AUDIT_OVERFLOW_DROP 1

/* active.c: sessions of pg_opsdata.audit_skip_applications */
extern bool audit_internal_application(void);
extern bool audit_internal_application_name(const char *name);
extern bool audit_citus_loaded(void);
extern bool audit_skipped_session(void);
extern int audit_overflow_policy(void);

extern void audit_define_gucs(void);
extern const char *audit_class_name(int class);
extern const char *audit_outcome_name(int outcome);
extern char *audit_classes_string(int classes);

/* hooks.c */
extern void audit_install_hooks(void);
extern void audit_xact_callback(XactEvent event, void *arg);
extern void audit_subxact_callback(SubXactEvent event,
								   SubTransactionId mySubid,
								   SubTransactionId parentSubid, void *arg);

/* indexer.c */
extern void audit_indexer_init(void);

/* active.c */
extern bool audit_internal(void);
extern void audit_run_internal(void (*fn)(void *arg), void *arg);
extern bool audit_reporting_error(void);
extern void audit_run_reporting_error(void (*fn)(void *arg), void *arg);
extern bool audit_fmgr_needed(Oid fn_oid);
extern void audit_fmgr_event(FmgrHookEventType event, FmgrInfo *flinfo,
							 Datum *private, bool private_ours);
extern bool audit_is_our_namespace(Oid nspoid);
extern bool audit_capture_active(void);
extern bool audit_user_process(void);
extern bool audit_extension_present(void);
extern bool audit_extension_known_absent(void);
extern void audit_active_init(void);
extern bool audit_confirmed(void);
extern bool audit_class_may_be_wanted(int class, bool *by_class);
extern const char *audit_database_name(void);
extern const char *audit_role_name(Oid roleid);
extern const char *audit_client_address(Port *port);
extern const char *audit_application(void);

/* capture.c */
extern void audit_executor_started(QueryDesc *queryDesc);
extern bool audit_utility_running(void);
extern void audit_executor_start(QueryDesc *queryDesc, int eflags);
extern void audit_executor_run_begin(QueryDesc *queryDesc);
extern void audit_executor_run_end(QueryDesc *queryDesc, bool run);
extern void audit_executor_end(QueryDesc *queryDesc);
extern void *audit_utility_begin(PlannedStmt *pstmt, const char *queryString,
								 ProcessUtilityContext context,
								 ParamListInfo params);
extern void audit_utility_end(void *item, QueryCompletion *qc);
extern void audit_function_called(Oid funcid);
extern void audit_error(ErrorData *edata);
extern void audit_items_subxact_abort(SubTransactionId mySubid);
extern void audit_ddl_objects(List *identities);

/* events.c */
extern MemoryContext audit_xact_cxt;
extern void audit_ensure_contexts(void);
extern bool audit_in_live_xact(void);
extern MemoryContext audit_event_context(void);
extern void audit_event_declared(AuditEvent *ev, MemoryContext cxt);
extern const char *audit_last_event_statement(void);
extern AuditEvent *audit_new_event(MemoryContext cxt, int class,
								   const char *command);
extern void audit_add_event(AuditEvent *ev);
extern void audit_flush_deferred(bool wait);
extern void audit_requeue(AuditEvent **events, int n);
extern void audit_events_at_exit(void);
extern void audit_events_pre_commit(void);
extern void audit_events_end_xact(bool commit, bool prepared);
extern void audit_note_prepared_drop(void);
extern void audit_events_subxact_abort(SubTransactionId mySubid);
extern void audit_note_extension_dropped(void);

/* appevents.c */
extern void audit_app_check_session(void);
extern AuditEvent *audit_app_event(MemoryContext cxt, int class,
								   const char *action, const char *object,
								   const char *outcome, Jsonb *details);

/* functions.c */
extern void audit_import_end(void);
extern AuditEvent *audit_record_change(const char *command,
									   const char *object);

/* viewrows.c */
struct TriggerData;
extern struct TriggerData *audit_view_trigger(FunctionCallInfo fcinfo,
											  const char *fn, int natts,
											  bool statement_ok);
extern Datum audit_view_column(struct TriggerData *trigdata, int attnum,
							   bool *isnull);
extern char *audit_view_text(struct TriggerData *trigdata, int attnum);

/* session.c */
extern void audit_login(Port *port, int status);
extern void audit_login_failed(ErrorData *edata);
extern void audit_login_settled(void);

/* classify.c */
typedef struct AuditObject
{
	const char *name;
	const char *privilege; /* constant string, or NULL */
} AuditObject;

extern List *audit_utility_objects(Node *parsetree);
extern const char *audit_privilege_text(AclMode perms);
extern int audit_utility_class(Node *parsetree);
extern bool audit_is_settings_change(Node *parsetree);
extern int audit_keyword_class(const char *text, const char **command);
extern const char *audit_relation_name(Oid relid);
extern bool audit_relation_is_catalog(Oid relid);
extern void audit_classify_init(void);

/* redact.c */
extern bool audit_needs_redaction(Node *parsetree);
extern char *audit_redact_at(Node *parsetree, const char *source, int location,
							 int len);
extern bool audit_unparsed_may_hold_secret(const char *text);
extern bool audit_setting_is_secret(const char *name);
extern char *audit_redact_set_config(const char *source, int location,
									 int len);

/* rules.c */
extern bool audit_rules_wanted(const AuditEvent *event, Oid roleid);
extern bool audit_rules_excluded(const AuditEvent *event, Oid roleid);
extern bool audit_rules_may_include(void);
extern bool audit_rules_may_exclude(void);
extern void audit_rules_init(void);
extern void audit_rules_invalidate(void);
extern Oid audit_rules_relid(void);

/* queue.c */
extern void audit_queue_init(void);
extern AuditEvent *audit_event_copy(const AuditEvent *src, MemoryContext cxt);
#define AUDIT_PUT_WAIT 0
#define AUDIT_PUT_DROP 1
#define AUDIT_PUT_TRY  2
extern int audit_queue_put(const char *dbname, bool confirm,
						   AuditEvent **events, int nevents, int mode,
						   int *progress);
extern bool audit_queue_active(void);

typedef struct AuditQueueBatch
{
	char *data;	 /* copied records */
	Size bytes;	 /* bytes of data */
	uint64 end;	 /* queue position after the last record */
	int nevents; /* records */
	AuditEvent *events;
} AuditQueueBatch;

extern bool audit_queue_claim(const char *dbname, int max_events,
							  bool wait_for_owner, AuditQueueBatch *batch);
extern bool audit_queue_take(const char *dbname, int max_events,
							 AuditQueueBatch *batch);
extern void audit_queue_release(bool advance);
extern void audit_queue_discard(const char *dbname);
extern bool audit_queue_claimed(void);
extern void audit_queue_count_writer_error(const char *dbname,
										   const char *message);
extern void audit_queue_note_held(const char *dbname);
extern bool audit_queue_take_held(const char *dbname);

/* Bytes kept of the message of the last failed write of a queue. */
#define AUDIT_QUEUE_ERROR_LEN 128

typedef struct AuditQueueStats
{
	char database[NAMEDATALEN];
	Size capacity;
	Size used;
	uint64 enqueued;
	uint64 drained;
	uint64 dropped;
	uint64 waits;
	uint64 writer_errors;
	TimestampTz last_drained; /* 0 for never */
	TimestampTz last_error;	  /* 0 for never */
	char last_error_message[AUDIT_QUEUE_ERROR_LEN];
} AuditQueueStats;

extern int audit_queue_stats(AuditQueueStats **stats);
extern uint64 audit_queue_unassigned_drops(void);

/* ids.c */
extern void audit_ids_init(void);
extern int64 audit_ids_allocate(Oid entries, Oid seq, int n);
extern int64 audit_seq_next(Oid seq);

/* indexcache.c */
extern void audit_open_indices(ResultRelInfo *rri);
extern void audit_index_cache_invalidate(Oid relid);

/*
 * entryrow.c: the columns of an entry, as audit.entries, audit.held_entries
 * and audit.trail name them (audit_entry_column_names); a table has some.
 */
typedef enum AuditEntryColumn
{
	AUDIT_COL_ENTRY_ID,
	AUDIT_COL_TS,
	AUDIT_COL_DATABASE,
	AUDIT_COL_USERNAME,
	AUDIT_COL_CURRENT_USER,
	AUDIT_COL_APPLICATION,
	AUDIT_COL_CLIENT_ADDR,
	AUDIT_COL_BACKEND_PID,
	AUDIT_COL_XID,
	AUDIT_COL_CLASS,
	AUDIT_COL_COMMAND,
	AUDIT_COL_OBJECTS,
	AUDIT_COL_PRIVILEGES,
	AUDIT_COL_ROWS,
	AUDIT_COL_DURATION,
	AUDIT_COL_OUTCOME,
	AUDIT_COL_SQLSTATE,
	AUDIT_COL_STATEMENT_ID,
	AUDIT_COL_STATEMENT_TEXT,
	AUDIT_COL_PARAMS,
	AUDIT_COL_CONSTANTS,
	AUDIT_COL_ACTOR,
	AUDIT_COL_REQUEST_ID,
	AUDIT_COL_ATTRIBUTES,
	AUDIT_COL_DETAILS,
	AUDIT_COL_SERVER_ID,
	AUDIT_NUM_COLS
} AuditEntryColumn;

/* Where audit_entry_values() puts each column, and how. */
typedef struct AuditEntryRow
{
	int attnum[AUDIT_NUM_COLS];	 /* 1 + index in values; 0: not in the row */
	Oid atttype[AUDIT_NUM_COLS]; /* NAMEOID for a name column, else text */
	bool null_unknown_names;	 /* no database or user: null, not '' */
	MemoryContext cxt; /* datums reused by consecutive rows; NULL: none */
	const char *last_src[AUDIT_NUM_COLS]; /* value each last datum is of */
	Datum last_datum[AUDIT_NUM_COLS];
} AuditEntryRow;

extern const char *const audit_entry_column_names[AUDIT_NUM_COLS];
extern void audit_entry_columns(AuditEntryRow *row, TupleDesc desc);
extern void audit_entry_values(AuditEntryRow *row, const AuditEvent *ev,
							   int64 entry_id, bool has_statement,
							   int64 statement_id, bool with_constants,
							   Datum *values, bool *isnull);
extern Datum audit_json_datum(const char *json);
extern Datum audit_text_array(const char **items, int n);

/* writer.c */
extern void audit_writer_init(void);
extern void audit_write_events(AuditEvent **events, int nevents);
extern bool audit_writer_try_lock(AuditEvent **events, int nevents);

/* hold.c */
extern void audit_store_events(AuditEvent **events, int nevents);
extern int64 audit_move_held(int max_entries);
extern int64 audit_held_count(void);

/* pqueue_*.c: the processing queues */
extern void audit_pq_init(void);
extern void audit_pq_xact_end(XactEvent event);
extern void audit_pq_subxact_abort(void);
extern void audit_pq_entries_written(AuditEvent **events,
									 const int64 *entry_ids, int nevents);

/* shapes.c */
extern void audit_shapes_parsed(ParseState *pstate, Query *query,
								JumbleState *jstate);
extern int audit_shapes_lookup(const char *text, int len, const char *source,
							   AuditSpan **consts, int *param_base,
							   MemoryContext cxt);
extern char *audit_shape_text(const char *text, const AuditSpan *consts,
							  int nconsts, int param_base, int *len,
							  int32 *placeholders);
extern void audit_shapes_init(void);

/* statements.c */
typedef struct AuditStmtWriter AuditStmtWriter;

/*
 * A statement's shape as audit.statements stores it: its text, and the
 * byte offsets of the placeholders its constants left (none for a text
 * stored as it was).
 */
typedef struct AuditShape
{
	const char *text; /* NULL: no statement */
	int len;
	int nplaceholders;
	const int32 *placeholders;
} AuditShape;

extern void audit_statements_init(void);
extern void audit_statements_filter_load(void);
extern AuditStmtWriter *audit_statements_open(EState *estate,
											  ResultRelInfo *rri);
typedef AuditStmtWriter *(*AuditStmtOpener)(void *arg);
extern void audit_statement_ids(const AuditShape *shapes, int n, int64 *ids,
								AuditStmtOpener open, void *arg);
extern void audit_statements_check_storage(Oid relid, Oid relfilenode);
extern void audit_statements_close(AuditStmtWriter *sw);
extern void audit_statements_end_xact(bool commit);
extern void audit_statements_end_subxact(void);

/* textcache.c */
extern int audit_text_cache_kb;
extern void audit_text_cache_init(void);
extern uint64 audit_text_cache_bind(Oid relfilenode);
extern void audit_text_cache_invalidate(void);
extern bool audit_text_cache_lookup(uint64 h1, uint64 h2, int64 *id);
extern void audit_text_cache_enter(uint64 h1, uint64 h2, int64 id);

/* drain.c */
extern int64 audit_drain_flush(void);
extern void audit_drain_end_xact(bool commit);
extern void audit_drain_end_subxact(SubTransactionId mySubid);
extern void audit_drain_check_prepare(void);
extern long audit_drain_service(void);

#endif /* OPSDATA_AUDIT_H */
