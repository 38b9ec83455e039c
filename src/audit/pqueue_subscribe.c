/*-------------------------------------------------------------------------
 *
 * pqueue_subscribe.c
 *		Audit subscriptions: entries that match a filter are enqueued into
 *		the subscription's queue as they are written.
 *
 * The audit writer (writer.c) hands every batch of entries it inserted to
 * audit_pq_entries_written(), in the transaction that inserted them: at
 * pre-commit for the write, DDL and role entries of a transaction (so
 * their items commit or vanish with it), in the drain's transaction for
 * the others.  Each entry is matched against the subscriptions of the
 * database, cached per backend and read again when audit.subscriptions
 * changes (audit._queues_changed() sends a relcache invalidation;
 * the writer's batch takes a lock on the table, which reads pending
 * invalidations, so a subscription applies to every entry written after
 * it committed).  A match becomes an item whose payload is the entry as in
 * audit.trail, in JSON.
 *
 * A filter's lists (classes, commands, outcomes, objects, roles, actors)
 * are checked in C.  A predicate is SQL over the columns of audit.trail, and
 * runs in the session of whoever writes the entry, at commit: so it may
 * only use built-in immutable functions and operators and the columns
 * (checked when it is made and again when it is loaded; no sub-query, no
 * type or function of a user), it is parsed with search_path set to
 * pg_catalog, pg_temp as a security-restricted operation of the role that
 * makes it (audit.subscribe()) or of the session, and it is evaluated in a
 * subtransaction: an error (a cast that fails on some entry) makes the
 * entry match, is logged, and never fails the user's transaction.  Only
 * roles that may read the trail make subscriptions.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/pqueue_subscribe.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/sysattr.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_relation.h"
#include "parser/parser.h"
#include "storage/lmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/inet.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "audit/pqueue.h"
#include "core/privileged.h"

PG_FUNCTION_INFO_V1(audit_pq_check_predicate);
PG_FUNCTION_INFO_V1(audit_pq_queues_changed);

/* Columns of audit.subscriptions. */
#define S_ATT_QUEUE_ID	1
#define S_ATT_CLASSES	2
#define S_ATT_COMMANDS	3
#define S_ATT_OUTCOMES	4
#define S_ATT_OBJECTS	5
#define S_ATT_ROLES		6
#define S_ATT_PREDICATE 7
#define S_ATT_ACTORS	8

/* Columns of audit.trail a predicate reads, in the order of trail_names. */
enum
{
	T_ENTRY_ID,
	T_TS,
	T_DATABASE,
	T_USERNAME,
	T_CURRENT_USER,
	T_APPLICATION,
	T_CLIENT_ADDR,
	T_BACKEND_PID,
	T_XID,
	T_CLASS,
	T_COMMAND,
	T_OBJECTS,
	T_PRIVILEGES,
	T_ROWS,
	T_DURATION,
	T_OUTCOME,
	T_SQLSTATE,
	T_STATEMENT_TEXT,
	T_PARAMS,
	T_ACTOR,
	T_REQUEST_ID,
	T_ATTRIBUTES,
	T_DETAILS,
	T_SERVER_ID,
	T_NUM
};

static const char *const trail_names[T_NUM] = {"entry_id",
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
											   "statement_text",
											   "params",
											   "actor",
											   "request_id",
											   "attributes",
											   "details",
											   "server_id"};

static const Oid trail_types[T_NUM] = {
	INT8OID, TIMESTAMPTZOID, TEXTOID,	   TEXTOID, TEXTOID,
	TEXTOID, INETOID,		 INT4OID,	   XID8OID, TEXTOID,
	TEXTOID, TEXTARRAYOID,	 TEXTARRAYOID, INT8OID, INTERVALOID,
	TEXTOID, TEXTOID,		 TEXTOID,	   TEXTOID, TEXTOID,
	TEXTOID, JSONBOID,		 JSONBOID,	   INT8OID};

typedef struct PqSub
{
	int32 queue_id;
	int classes;  /* bits of AuditClass; 0 for any */
	int outcomes; /* bits of AuditOutcome; 0 for any */
	int ncommands;
	char **commands;
	int nobjects;
	char **objects; /* names, or "schema." prefixes */
	bool *prefix;
	int nroles;
	char **roles;
	int nactors;
	char **actors;	 /* declared actors, compared exactly */
	char *predicate; /* source, or NULL */
	ExprState *pred; /* NULL with a predicate that does not load */
} PqSub;

static bool pq_subs_valid = false;
static Oid pq_subs_relid = InvalidOid;
static int pq_nsubs = 0;
static PqSub *pq_subs = NULL;
static MemoryContext pq_subs_cxt = NULL;
static ExprContext *pq_econtext = NULL;
static TupleTableSlot *pq_trail_slot = NULL;
static int pq_trail_attnum[T_NUM]; /* 0 when the column is absent */

/*
 * Forget the cached subscriptions (called by the relcache callback of
 * pqueue_store.c).
 */
void
pq_subscriptions_invalidate(void)
{
	pq_subs_valid = false;
}

/* ---- predicates --------------------------------------------------------- */

static bool
pq_unsafe_function(Oid funcid, void *context)
{
	return funcid >= FirstNormalObjectId ||
		   func_volatile(funcid) != PROVOLATILE_IMMUTABLE;
}

/* True when a node of the expression is not allowed in a predicate. */
static bool
pq_unsafe_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_Var:
		{
			Var *var = (Var *) node;

			if (var->varno != 1 || var->varlevelsup != 0 || var->varattno <= 0)
				return true;
			break;
		}
		case T_Const:
			if (((Const *) node)->consttype >= FirstNormalObjectId)
				return true;
			break;
		case T_MinMaxExpr:
			if (((MinMaxExpr *) node)->minmaxtype >= FirstNormalObjectId)
				return true;
			break;
		case T_SubscriptingRef:
			if (((SubscriptingRef *) node)->refcontainertype >=
				FirstNormalObjectId)
				return true;
			break;
		case T_ArrayExpr:
			if (((ArrayExpr *) node)->element_typeid >= FirstNormalObjectId)
				return true;
			break;
		case T_BoolExpr:
		case T_NullTest:
		case T_BooleanTest:
		case T_CaseExpr:
		case T_CaseWhen:
		case T_CaseTestExpr:
		case T_CoalesceExpr:
		case T_RelabelType:
		case T_CollateExpr:
		case T_FuncExpr:
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
		case T_ScalarArrayOpExpr:
		case T_CoerceViaIO:
		case T_ArrayCoerceExpr:
		case T_List:
			break;
		default:
			return true;
	}
	if (check_functions_in_node(node, pq_unsafe_function, NULL))
		return true;
	return expression_tree_walker(node, pq_unsafe_walker, context);
}

/*
 * Error unless every column expr reads is one the writer's session knows
 * when it matches an entry (trail_names): statement_id and constants are
 * not (statement_text is the statement with its constants).
 */
static void
pq_check_columns(Node *expr, TupleDesc desc)
{
	Bitmapset *attrs = NULL;
	int member = -1;

	pull_varattnos(expr, 1, &attrs);
	while ((member = bms_next_member(attrs, member)) >= 0)
	{
		AttrNumber attno = member + FirstLowInvalidHeapAttributeNumber;
		Form_pg_attribute att;
		int i;

		if (attno <= 0 || attno > desc->natts)
			continue; /* pq_unsafe_walker() refuses it */
		att = TupleDescAttr(desc, attno - 1);
		for (i = 0; i < T_NUM; i++)
		{
			if (strcmp(NameStr(att->attname), trail_names[i]) == 0 &&
				att->atttypid == trail_types[i])
				break;
		}
		if (i == T_NUM)
			ereport(
				ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subscription predicate may not read column \"%s\"",
						NameStr(att->attname)),
				 errdetail("It is not known when an entry is matched, as it "
						   "is written."),
				 errhint("statement_text holds the statement with its "
						 "constants.")));
	}
}

/* The arguments and result of pq_parse_predicate_as(). */
typedef struct PqParse
{
	const char *sql;
	Node *result;
} PqParse;

/*
 * The body of pq_parse_predicate(), run in a privileged region (search_path
 * pinned, security-restricted).
 */
static void
pq_parse_predicate_as(void *arg)
{
	PqParse *parse = (PqParse *) arg;
	const char *sql = parse->sql;
	List *raw;
	RawStmt *rs;
	SelectStmt *select;
	ParseState *pstate;
	ParseNamespaceItem *nsitem;
	Relation trail;
	Node *expr;

	raw = raw_parser(sql, RAW_PARSE_DEFAULT);
	rs = list_length(raw) == 1 ? linitial_node(RawStmt, raw) : NULL;
	select = rs != NULL && IsA(rs->stmt, SelectStmt) ? (SelectStmt *) rs->stmt
													 : NULL;
	if (select == NULL || list_length(select->targetList) != 1 ||
		select->fromClause != NIL || select->whereClause != NULL ||
		select->groupClause != NIL || select->havingClause != NULL ||
		select->windowClause != NIL || select->valuesLists != NIL ||
		select->sortClause != NIL || select->limitCount != NULL ||
		select->limitOffset != NULL || select->lockingClause != NIL ||
		select->withClause != NULL || select->intoClause != NULL ||
		select->distinctClause != NIL || select->op != SETOP_NONE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("subscription predicate must be one expression")));
	expr = ((ResTarget *) linitial(select->targetList))->val;

	trail = relation_open(pq_rel(PQ_REL_TRAIL), AccessShareLock);
	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = sql;
	nsitem = addRangeTableEntryForRelation(
		pstate, trail, AccessShareLock, makeAlias("trail", NIL), false, true);
	addNSItemToQuery(pstate, nsitem, false, true, true);
	expr = transformExpr(pstate, expr, EXPR_KIND_WHERE);
	expr = coerce_to_boolean(pstate, expr, "subscription predicate");
	assign_expr_collations(pstate, expr);
	free_parsestate(pstate);
	pq_check_columns(expr, RelationGetDescr(trail));
	relation_close(trail, NoLock);

	if (pq_unsafe_walker(expr, NULL))
		ereport(
			ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg(
				 "subscription predicate may only use the columns of audit.trail, constants, and built-in immutable functions and operators"),
			 errdetail(
				 "The predicate runs in the session of every role whose entries it sees."),
			 errhint(
				 "Sub-queries, volatile or stable functions, and types or functions not built into PostgreSQL are not allowed.")));
	parse->result = expr;
}

/*
 * Parse a predicate over audit.trail into a boolean expression, with
 * search_path pinned, as a security-restricted operation of roleid.
 * Errors (ERRCODE_INVALID_PARAMETER_VALUE) when it is not one expression,
 * or uses what a predicate may not.
 */
static Node *
pq_parse_predicate(const char *source, Oid roleid)
{
	PqParse parse;

	parse.sql = psprintf("SELECT (%s)", source);
	parse.result = NULL;
	opsdata_run_as(roleid, pq_parse_predicate_as, &parse);
	return parse.result;
}

/*
 * audit._check_predicate(predicate) returns the predicate when it is
 * allowed, else raises an error.  It is parsed as the role of the session.
 */
Datum
audit_pq_check_predicate(PG_FUNCTION_ARGS)
{
	text *source = PG_GETARG_TEXT_PP(0);

	(void) pq_parse_predicate(text_to_cstring(source), GetOuterUserId());
	PG_RETURN_TEXT_P(source);
}

/*
 * audit._queues_changed() makes every backend read the queues and the
 * subscriptions again.
 */
Datum
audit_pq_queues_changed(PG_FUNCTION_ARGS)
{
	CacheInvalidateRelcacheByRelid(pq_rel(PQ_REL_QUEUES));
	CacheInvalidateRelcacheByRelid(pq_rel(PQ_REL_SUBSCRIPTIONS));
	pq_subs_valid = false;
	PG_RETURN_VOID();
}

/* ---- the cache ---------------------------------------------------------- */

static char **
pq_text_list(HeapTuple tuple, TupleDesc desc, int attno, int *n)
{
	bool isnull;
	Datum d = heap_getattr(tuple, attno, desc, &isnull);
	Datum *elems;
	bool *nulls;
	char **result;
	Oid elemtype;
	int16 typlen;
	bool typbyval;
	char typalign;
	int i;

	*n = 0;
	if (isnull)
		return NULL;
	elemtype = ARR_ELEMTYPE(DatumGetArrayTypeP(d));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	deconstruct_array(DatumGetArrayTypeP(d), elemtype, typlen, typbyval,
					  typalign, &elems, &nulls, n);
	result = palloc(sizeof(char *) * Max(*n, 1));
	for (i = 0; i < *n; i++)
	{
		if (nulls[i])
			result[i] = pstrdup("");
		else if (elemtype == NAMEOID)
			result[i] = pstrdup(NameStr(*DatumGetName(elems[i])));
		else
			result[i] = TextDatumGetCString(elems[i]);
	}
	return result;
}

static int
pq_name_bits(char **names, int n, bool outcomes)
{
	int bits = 0;
	int i;
	int j;

	for (i = 0; i < n; i++)
	{
		for (j = 0; j < (outcomes ? 5 : AUDIT_NUM_CLASSES); j++)
		{
			const char *name =
				outcomes ? audit_outcome_name(j) : audit_class_name(j);

			if (strcmp(names[i], name) == 0)
				bits |= 1 << j;
		}
	}
	/* A list that names nothing known matches nothing. */
	return n > 0 && bits == 0 ? (1 << 30) : bits;
}

/* Where each column a predicate may read is in audit.trail. */
static void
pq_trail_columns(TupleDesc desc)
{
	int i;
	int j;

	for (i = 0; i < T_NUM; i++)
	{
		pq_trail_attnum[i] = 0;
		for (j = 0; j < desc->natts; j++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, j);

			if (!att->attisdropped &&
				strcmp(NameStr(att->attname), trail_names[i]) == 0 &&
				att->atttypid == trail_types[i])
				pq_trail_attnum[i] = j + 1;
		}
	}
}

/*
 * Compile a predicate for the cache (in a subtransaction: parsing opens
 * relations); NULL, and a log entry, if it fails.
 */
static ExprState *
pq_compile(const char *source, int32 queue_id)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	ExprState *volatile state = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		Node *expr = pq_parse_predicate(source, GetSessionUserId());
		MemoryContext old = MemoryContextSwitchTo(pq_subs_cxt);

		expr = (Node *) expression_planner((Expr *) copyObject(expr));
		state = ExecInitExpr((Expr *) expr, NULL);
		MemoryContextSwitchTo(old);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData *edata;

		MemoryContextSwitchTo(caller);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(caller);
		CurrentResourceOwner = owner;
		ereport(LOG,
				(errmsg("predicate of the audit subscription of queue %d does "
						"not load, every entry matches it: %s",
						queue_id, edata->message)));
		FreeErrorData(edata);
		state = NULL;
	}
	PG_END_TRY();
	return state;
}

/* Read the subscriptions of the database.  Caller is in a transaction. */
static void
pq_subs_load(Relation rel)
{
	TableScanDesc scan;
	HeapTuple tuple;
	Snapshot snapshot;
	TupleDesc desc = RelationGetDescr(rel);
	MemoryContext old;
	int max = 8;

	if (pq_subs_cxt == NULL)
		pq_subs_cxt = AllocSetContextCreate(TopMemoryContext,
											"pg_opsdata audit subscriptions",
											ALLOCSET_SMALL_SIZES);
	if (pq_econtext != NULL)
		FreeExprContext(pq_econtext, true);
	pq_econtext = NULL;
	pq_trail_slot = NULL;
	MemoryContextReset(pq_subs_cxt);
	pq_nsubs = 0;
	pq_subs = NULL;

	old = MemoryContextSwitchTo(pq_subs_cxt);
	pq_subs = palloc0(sizeof(PqSub) * max);
	snapshot = RegisterSnapshot(GetLatestSnapshot());
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		PqSub *sub;
		char **names;
		int n;
		bool isnull;
		Datum d;
		int i;

		if (pq_nsubs == max)
		{
			max *= 2;
			pq_subs = repalloc(pq_subs, sizeof(PqSub) * max);
		}
		sub = &pq_subs[pq_nsubs++];
		memset(sub, 0, sizeof(PqSub));
		sub->queue_id =
			DatumGetInt32(heap_getattr(tuple, S_ATT_QUEUE_ID, desc, &isnull));
		names = pq_text_list(tuple, desc, S_ATT_CLASSES, &n);
		sub->classes = pq_name_bits(names, n, false);
		names = pq_text_list(tuple, desc, S_ATT_OUTCOMES, &n);
		sub->outcomes = pq_name_bits(names, n, true);
		sub->commands =
			pq_text_list(tuple, desc, S_ATT_COMMANDS, &sub->ncommands);
		sub->objects =
			pq_text_list(tuple, desc, S_ATT_OBJECTS, &sub->nobjects);
		sub->prefix = palloc0(sizeof(bool) * Max(sub->nobjects, 1));
		for (i = 0; i < sub->nobjects; i++)
		{
			size_t len = strlen(sub->objects[i]);

			if (len >= 2 && strcmp(sub->objects[i] + len - 2, ".*") == 0)
			{
				sub->objects[i][len - 1] = '\0'; /* keep the dot */
				sub->prefix[i] = true;
			}
		}
		sub->roles = pq_text_list(tuple, desc, S_ATT_ROLES, &sub->nroles);
		sub->actors = pq_text_list(tuple, desc, S_ATT_ACTORS, &sub->nactors);
		d = heap_getattr(tuple, S_ATT_PREDICATE, desc, &isnull);
		if (!isnull)
			sub->predicate = TextDatumGetCString(d);
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);

	if (pq_nsubs > 0)
	{
		Relation trail = relation_open(pq_rel(PQ_REL_TRAIL), AccessShareLock);
		int i;

		pq_trail_columns(RelationGetDescr(trail));
		pq_trail_slot = MakeSingleTupleTableSlot(
			CreateTupleDescCopy(RelationGetDescr(trail)), &TTSOpsVirtual);
		relation_close(trail, AccessShareLock);
		pq_econtext = CreateStandaloneExprContext();
		for (i = 0; i < pq_nsubs; i++)
		{
			if (pq_subs[i].predicate != NULL)
				pq_subs[i].pred =
					pq_compile(pq_subs[i].predicate, pq_subs[i].queue_id);
		}
	}
	MemoryContextSwitchTo(old);
}

/* ---- matching ----------------------------------------------------------- */

static bool
pq_in_list(const char *s, char **list, int n)
{
	int i;

	for (i = 0; i < n; i++)
	{
		if (pg_strcasecmp(s, list[i]) == 0)
			return true;
	}
	return false;
}

/* Whether the lists of a subscription match an event. */
static bool
pq_lists_match(const PqSub *sub, const AuditEvent *ev)
{
	int i;
	int j;

	if (sub->classes != 0 && !(sub->classes & (1 << ev->class)))
		return false;
	if (sub->outcomes != 0 && !(sub->outcomes & (1 << ev->outcome)))
		return false;
	if (sub->ncommands > 0 && !pq_in_list(ev->command ? ev->command : "",
										  sub->commands, sub->ncommands))
		return false;
	if (sub->nroles > 0 &&
		!(ev->username && pq_in_list(ev->username, sub->roles, sub->nroles)) &&
		!(ev->current_user_name &&
		  pq_in_list(ev->current_user_name, sub->roles, sub->nroles)))
		return false;
	if (sub->nactors > 0)
	{
		bool found = false;

		for (i = 0; i < sub->nactors && ev->actor != NULL && !found; i++)
			found = strcmp(ev->actor, sub->actors[i]) == 0;
		if (!found)
			return false;
	}
	if (sub->nobjects > 0)
	{
		bool found = false;

		for (i = 0; i < ev->nobjects && !found; i++)
		{
			const char *object = ev->objects[i];

			if (object == NULL)
				continue;
			for (j = 0; j < sub->nobjects && !found; j++)
			{
				if (sub->prefix[j])
					found = strncmp(object, sub->objects[j],
									strlen(sub->objects[j])) == 0;
				else
					found = strcmp(object, sub->objects[j]) == 0;
			}
		}
		if (!found)
			return false;
	}
	return true;
}

/*
 * The values of an entry as columns of audit.trail (T_* order), as the
 * writer will write it (entryrow.c), but for a database or user it lacks,
 * which is null.
 */
static void
pq_entry_values(const AuditEvent *ev, int64 entry_id, Datum *values,
				bool *nulls)
{
	static AuditEntryRow row;
	static bool row_made = false;
	int i;

	if (!row_made)
	{
		int c;

		memset(&row, 0, sizeof(row));
		row.null_unknown_names = true;
		for (c = 0; c < AUDIT_NUM_COLS; c++)
			for (i = 0; i < T_NUM; i++)
				if (strcmp(audit_entry_column_names[c], trail_names[i]) == 0)
					row.attnum[c] = i + 1;
		row_made = true;
	}
	for (i = 0; i < T_NUM; i++)
		nulls[i] = true;
	audit_entry_values(&row, ev, entry_id, false, 0, false, values, nulls);
}

/* Evaluate a predicate on an entry; errors propagate. */
static bool
pq_predicate_true(ExprState *pred, const Datum *values, const bool *nulls)
{
	TupleTableSlot *slot = pq_trail_slot;
	bool isnull;
	Datum result;
	int i;

	ExecClearTuple(slot);
	for (i = 0; i < slot->tts_tupleDescriptor->natts; i++)
		slot->tts_isnull[i] = true;
	for (i = 0; i < T_NUM; i++)
	{
		if (pq_trail_attnum[i] > 0)
		{
			slot->tts_values[pq_trail_attnum[i] - 1] = values[i];
			slot->tts_isnull[pq_trail_attnum[i] - 1] = nulls[i];
		}
	}
	ExecStoreVirtualTuple(slot);
	pq_econtext->ecxt_scantuple = slot;
	result = ExecEvalExprSwitchContext(pred, pq_econtext, &isnull);
	ResetExprContext(pq_econtext);
	return !isnull && DatumGetBool(result);
}

/* Push a string, or null, as the value of key. */
static void
pq_json_key(JsonbParseState **state, const char *key)
{
	JsonbValue v;

	v.type = jbvString;
	v.val.string.val = (char *) key;
	v.val.string.len = strlen(key);
	pushJsonbValue(state, WJB_KEY, &v);
}

static void
pq_json_string(JsonbParseState **state, const char *key, const char *s)
{
	JsonbValue v;

	pq_json_key(state, key);
	if (s == NULL)
		v.type = jbvNull;
	else
	{
		v.type = jbvString;
		v.val.string.val = (char *) s;
		v.val.string.len = strlen(s);
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

static void
pq_json_number(JsonbParseState **state, const char *key, Datum numeric,
			   bool isnull)
{
	JsonbValue v;

	pq_json_key(state, key);
	if (isnull)
		v.type = jbvNull;
	else
	{
		v.type = jbvNumeric;
		v.val.numeric = DatumGetNumeric(numeric);
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

static void
pq_json_strings(JsonbParseState **state, const char *key, const char **items,
				int n, bool isnull)
{
	JsonbValue v;
	int i;

	pq_json_key(state, key);
	if (isnull)
	{
		v.type = jbvNull;
		pushJsonbValue(state, WJB_VALUE, &v);
		return;
	}
	pushJsonbValue(state, WJB_BEGIN_ARRAY, NULL);
	for (i = 0; i < n; i++)
	{
		if (items == NULL || items[i] == NULL)
			v.type = jbvNull;
		else
		{
			v.type = jbvString;
			v.val.string.val = (char *) items[i];
			v.val.string.len = strlen(items[i]);
		}
		pushJsonbValue(state, WJB_ELEM, &v);
	}
	pushJsonbValue(state, WJB_END_ARRAY, NULL);
}

/* Push JSON text, or null, as the value of key. */
static void
pq_json_value(JsonbParseState **state, const char *key, const char *json)
{
	JsonbValue v;
	Jsonb *jb;

	pq_json_key(state, key);
	if (json == NULL)
	{
		v.type = jbvNull;
		pushJsonbValue(state, WJB_VALUE, &v);
		return;
	}
	jb = DatumGetJsonbP(audit_json_datum(json));
	if (!JsonbExtractScalar(&jb->root, &v))
	{
		v.type = jbvBinary;
		v.val.binary.data = &jb->root;
		v.val.binary.len = VARSIZE(jb) - VARHDRSZ;
	}
	pushJsonbValue(state, WJB_VALUE, &v);
}

/*
 * The payload of an entry's item: the entry as a row of audit.trail, times
 * in UTC, the duration in seconds.
 */
static Jsonb *
pq_entry_payload(const AuditEvent *ev, int64 entry_id)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;
	char buf[MAXDATELEN + 1];
	int utc = 0;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	pq_json_number(&state, "entry_id",
				   DirectFunctionCall1(int8_numeric, Int64GetDatum(entry_id)),
				   false);
	pq_json_string(&state, "ts",
				   JsonEncodeDateTime(buf, TimestampTzGetDatum(ev->ts),
									  TIMESTAMPTZOID, &utc));
	pq_json_string(&state, "database", ev->database);
	pq_json_string(&state, "username", ev->username);
	pq_json_string(&state, "current_user_name", ev->current_user_name);
	pq_json_string(&state, "application", ev->application);
	pq_json_string(&state, "client_addr", ev->client_addr);
	pq_json_number(
		&state, "backend_pid",
		DirectFunctionCall1(int4_numeric, Int32GetDatum(ev->backend_pid)),
		false);
	pq_json_string(&state, "xid",
				   (ev->flags & AUDIT_EVENT_HAS_XID)
					   ? psprintf(UINT64_FORMAT, ev->xid)
					   : NULL);
	pq_json_string(&state, "class", audit_class_name(ev->class));
	pq_json_string(&state, "command", ev->command);
	pq_json_strings(&state, "objects", ev->objects, ev->nobjects,
					ev->nobjects == 0);
	pq_json_strings(&state, "privileges", ev->privileges, ev->nobjects,
					ev->nobjects == 0);
	pq_json_number(&state, "rows",
				   DirectFunctionCall1(int8_numeric, Int64GetDatum(ev->rows)),
				   !(ev->flags & AUDIT_EVENT_HAS_ROWS));
	pq_json_number(
		&state, "duration",
		DirectFunctionCall1(float8_numeric,
							Float8GetDatum((double) ev->duration_us / 1e6)),
		!(ev->flags & AUDIT_EVENT_HAS_DURATION));
	pq_json_string(&state, "outcome", audit_outcome_name(ev->outcome));
	pq_json_string(&state, "sqlstate",
				   ev->sqlstate != 0 ? unpack_sql_state(ev->sqlstate) : NULL);
	pq_json_string(&state, "statement_text", ev->statement);
	pq_json_string(&state, "params", ev->params);
	pq_json_string(&state, "actor", ev->actor);
	pq_json_string(&state, "request_id", ev->request_id);
	pq_json_value(&state, "attributes", ev->attributes);
	pq_json_value(&state, "details", ev->details);
	pq_json_number(
		&state, "server_id",
		DirectFunctionCall1(int8_numeric,
							Int64GetDatum((int64) GetSystemIdentifier())),
		false);
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * Evaluate the predicates of the candidate (subscription, entry) pairs
 * from the first one in a subtransaction, until one fails; that pair keeps
 * matching.  Returns where to go on: ncand when every pair was evaluated,
 * else the pair after the one that failed.
 */
static int
pq_eval_from(AuditEvent **events, const int64 *entry_ids, const int *cand_sub,
			 const int *cand_ev, bool *match, int ncand, int first)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile int i = first;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Datum values[T_NUM];
		bool nulls[T_NUM];
		int last = -1;

		for (; i < ncand; i++)
		{
			PqSub *sub = &pq_subs[cand_sub[i]];

			if (sub->pred == NULL)
				continue; /* did not load: matches */
			if (cand_ev[i] != last)
			{
				pq_entry_values(events[cand_ev[i]], entry_ids[cand_ev[i]],
								values, nulls);
				last = cand_ev[i];
			}
			match[i] = pq_predicate_true(sub->pred, values, nulls);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		if (pq_econtext != NULL)
			ResetExprContext(pq_econtext);
		ereport(LOG, (errmsg("predicate of the audit subscription of queue %d "
							 "failed on entry " INT64_FORMAT
							 ", which is enqueued as matching: %s",
							 pq_subs[cand_sub[i]].queue_id,
							 entry_ids[cand_ev[i]], edata->message)));
		FreeErrorData(edata);
		match[i] = true;
		i++;
	}
	PG_END_TRY();
	return i;
}

/*
 * Evaluate the predicates of every candidate pair; a pair whose predicate
 * fails keeps matching, and the rest are evaluated in a new subtransaction
 * (a loop, not a recursion: every entry of a batch may fail).
 */
static void
pq_eval_predicates(AuditEvent **events, const int64 *entry_ids,
				   const int *cand_sub, const int *cand_ev, bool *match,
				   int ncand)
{
	int i = 0;

	while (i < ncand)
		i = pq_eval_from(events, entry_ids, cand_sub, cand_ev, match, ncand,
						 i);
}

/*
 * Enqueue the entries of a batch the audit writer has just inserted into
 * the queues of the subscriptions they match, in the current transaction.
 * entry_ids are the entries' ids, in the order of events.
 */
void
audit_pq_entries_written(AuditEvent **events, const int64 *entry_ids,
						 int nevents)
{
	Oid relid;
	int *cand_sub;
	int *cand_ev;
	bool *match;
	int ncand = 0;
	bool predicates = false;
	PqInserter *ins = NULL;
	TimestampTz now;
	int i;
	int j;

	if (nevents == 0)
		return;
	relid = pq_rel_if_exists(PQ_REL_SUBSCRIPTIONS);
	if (!OidIsValid(relid))
		return; /* an extension version without subscriptions */

	/*
	 * Taking the locks reads the invalidations sent by audit.subscribe()
	 * and audit.drop_queue(); a queue is not dropped while they are held.
	 */
	LockRelationOid(pq_rel(PQ_REL_QUEUES), AccessShareLock);
	LockRelationOid(relid, AccessShareLock);
	if (relid != pq_subs_relid)
	{
		pq_subs_relid = relid;
		pq_subs_valid = false;
	}
	if (!pq_subs_valid)
	{
		Relation rel = table_open(relid, NoLock);

		pq_subs_load(rel);
		table_close(rel, NoLock);
		pq_subs_valid = true;
	}
	if (pq_nsubs == 0)
		return;

	cand_sub = palloc(sizeof(int) * nevents * pq_nsubs);
	cand_ev = palloc(sizeof(int) * nevents * pq_nsubs);
	match = palloc(sizeof(bool) * nevents * pq_nsubs);
	for (i = 0; i < nevents; i++)
	{
		for (j = 0; j < pq_nsubs; j++)
		{
			if (!pq_lists_match(&pq_subs[j], events[i]))
				continue;
			cand_sub[ncand] = j;
			cand_ev[ncand] = i;
			match[ncand] = true;
			if (pq_subs[j].predicate != NULL)
				predicates = true;
			ncand++;
		}
	}
	if (ncand == 0)
		return;
	if (predicates)
		pq_eval_predicates(events, entry_ids, cand_sub, cand_ev, match, ncand);

	now = GetCurrentTimestamp();
	for (i = 0; i < ncand; i++)
	{
		if (!match[i])
			continue;
		if (ins == NULL)
			ins = pq_insert_begin(true);
		(void) pq_insert(
			ins, pq_subs[cand_sub[i]].queue_id,
			pq_entry_payload(events[cand_ev[i]], entry_ids[cand_ev[i]]),
			entry_ids[cand_ev[i]], now, now);
	}
	if (ins != NULL)
		pq_insert_end(ins);
}
