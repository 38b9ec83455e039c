/*-------------------------------------------------------------------------
 *
 * indexer.c
 *		The by-user and by-object indexes of closed days of audit.entries.
 *
 * Every partition of audit.entries has the indexes of its parent: the
 * primary key and a BRIN index on ts, which cost next to nothing per row.
 * The indexes auditors need to find a user's or an object's entries, a
 * B-tree on (username, ts) and a GIN index on objects, would cost every
 * audited statement an index insertion or two; they are built instead on
 * each day's partition once that day is over (and an hour more, for the
 * entries of statements that started before midnight), when nothing writes
 * there any more.  Queries on the current day read its partition, found by
 * partition pruning and the BRIN index.
 *
 * audit._index_closed_partitions(), the command of the built-in job "audit
 * index closed partitions", counts the closed partitions that lack one of
 * those indexes (or hold a leftover invalid one) and starts a background
 * worker for them, without waiting: CREATE INDEX CONCURRENTLY waits for
 * every transaction older than itself, the caller's among them.  The
 * worker connects as the extension owner, takes a session advisory lock so
 * that two never overlap, and runs DROP INDEX CONCURRENTLY of a leftover
 * invalid index and CREATE INDEX CONCURRENTLY as top-level statements, so
 * that writers and readers of the partition never wait for it.  Errors end
 * the worker (they are logged); the next run of the job starts over from
 * the catalog.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/indexer.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "audit/audit.h"
#include "core/opsdata.h"

#define AUDIT_INDEXER_TYPE "pg_opsdata audit indexer"

/* Key of the advisory lock of the worker ("opsd", "audi"). */
#define AUDIT_INDEXER_LOCK_KEY1 1869639524
#define AUDIT_INDEXER_LOCK_KEY2 1635083369

typedef struct AuditIndexerArgs
{
	Oid database;
	Oid owner;
} AuditIndexerArgs;

PG_FUNCTION_INFO_V1(audit_index_closed_partitions);
PGDLLEXPORT void audit_indexer_main(Datum main_arg);

/*
 * The statements that give the closed partitions their missing indexes,
 * one per row: the DROP of a leftover invalid index comes before the
 * CREATE of the same index.
 */
static const char *const audit_indexer_plan_sql =
	"WITH closed AS ("
	"  SELECT n.nspname, c.relname"
	"    FROM opsdata._partition_layout('audit.entries') l"
	"    JOIN pg_catalog.pg_class c ON c.oid = l.partition"
	"    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
	"   WHERE NOT l.is_default AND NOT l.detach_pending"
	"     AND l.upper_time <= pg_catalog.now() - interval '1 hour'),"
	" wanted AS ("
	"  SELECT nspname, relname, pg_catalog.left(relname, 47) || '_username_ts_idx' AS idx,"
	"         'btree (username, ts)' AS def, 1 AS ord FROM closed"
	"  UNION ALL"
	"  SELECT nspname, relname, pg_catalog.left(relname, 50) || '_objects_idx',"
	"         'gin (objects)', 2 FROM closed),"
	" state AS ("
	"  SELECT w.*, i.indisvalid"
	"    FROM wanted w"
	"    LEFT JOIN pg_catalog.pg_class ic ON ic.relname = w.idx"
	"     AND ic.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = w.nspname)"
	"    LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = ic.oid)"
	"SELECT pg_catalog.format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I', nspname, idx)"
	"  FROM state WHERE indisvalid = false "
	"UNION ALL "
	"SELECT pg_catalog.format('CREATE INDEX CONCURRENTLY %I ON %I.%I USING %s', idx, nspname, relname, def)"
	"  FROM state WHERE indisvalid IS NOT TRUE "
	"ORDER BY 1 DESC";

/*
 * audit._index_closed_partitions() returns integer: how many indexes of
 * closed partitions are missing; when any is, a worker is started to build
 * them (it is not waited for).
 */
Datum
audit_index_closed_partitions(PG_FUNCTION_ARGS)
{
	AuditIndexerArgs args;
	HeapTuple proc;
	int64 missing;
	bool isnull;
	int rc;

	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(rc));
	if ((rc = SPI_execute(
			 psprintf(
				 "SELECT count(*) FROM (%s) s WHERE s.format LIKE 'CREATE %%'",
				 audit_indexer_plan_sql),
			 true, 0)) != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
	missing = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	if (missing == 0)
		PG_RETURN_INT32(0);

	/* The worker runs as the owner of this function: the extension's. */
	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(proc))
		elog(ERROR, "cache lookup failed for function %u",
			 fcinfo->flinfo->fn_oid);
	args.owner = ((Form_pg_proc) GETSTRUCT(proc))->proowner;
	ReleaseSysCache(proc);
	args.database = MyDatabaseId;
	if (opsdata_start_worker("audit_indexer_main", AUDIT_INDEXER_TYPE,
							 AUDIT_INDEXER_TYPE, (Datum) 0, &args,
							 sizeof(args), false) == NULL)
		ereport(
			ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("could not start the pg_opsdata audit indexer"),
			 errhint("Consider increasing the configuration parameter \"%s\".",
					 "max_worker_processes")));
	PG_RETURN_INT32((int32) Min(missing, PG_INT32_MAX));
}

/*
 * Run sql as a top-level statement through a portal, as a client's query
 * is run, in transactions of its own: CREATE and DROP INDEX CONCURRENTLY
 * commit in the middle (the active portal survives the commits) and event
 * triggers that run SQL find the portal's snapshot.  Parse, analysis and
 * plan live in cxt.
 */
static void
audit_indexer_exec(const char *sql, MemoryContext cxt)
{
	MemoryContext old;
	List *parsetrees;
	List *querytrees;
	List *plantrees;
	RawStmt *raw;
	Portal portal;
	QueryCompletion qc;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	old = MemoryContextSwitchTo(cxt);
	pgstat_report_activity(STATE_RUNNING, sql);
	parsetrees = pg_parse_query(sql);
	raw = linitial_node(RawStmt, parsetrees);
	querytrees = pg_analyze_and_rewrite_fixedparams(raw, sql, NULL, 0, NULL);
	plantrees = pg_plan_queries(querytrees, sql, 0, NULL);

	portal = CreatePortal("", true, true);
	portal->visible = false;
	PortalDefineQuery(portal, NULL, sql, CreateCommandTag(raw->stmt),
					  plantrees, NULL);
	PortalStart(portal, NULL, 0, InvalidSnapshot);
	InitializeQueryCompletion(&qc);
	(void) PortalRun(portal, FETCH_ALL, true, true, None_Receiver,
					 None_Receiver, &qc);
	PortalDrop(portal, false);
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(old);
	MemoryContextReset(cxt);
}

/*
 * Main function of the worker: build the missing indexes, one statement
 * at a time, then exit.
 */
void
audit_indexer_main(Datum main_arg)
{
	AuditIndexerArgs args;
	MemoryContext cxt;
	List *statements = NIL;
	ListCell *lc;
	bool locked;
	bool isnull;
	uint64 i;
	int rc;

	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(args.database, args.owner, 0);
	pgstat_report_appname(AUDIT_INDEXER_TYPE);
	SetConfigOption("application_name", AUDIT_INDEXER_TYPE, PGC_USERSET,
					PGC_S_SESSION);
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_USERSET,
					PGC_S_SESSION);
	/*
	 * An index build may take long; a server-wide limit meant for applications
	 * must not cut it.
	 */
	SetConfigOption("statement_timeout", "0", PGC_USERSET, PGC_S_SESSION);
	cxt = AllocSetContextCreate(TopMemoryContext, "pg_opsdata audit indexer",
								ALLOCSET_DEFAULT_SIZES);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(rc));
	if ((rc = SPI_execute(
			 psprintf("SELECT pg_catalog.pg_try_advisory_lock(%d, %d)",
					  AUDIT_INDEXER_LOCK_KEY1, AUDIT_INDEXER_LOCK_KEY2),
			 false, 0)) != SPI_OK_SELECT)
		elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
	locked = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 1, &isnull));
	if (locked)
	{
		if ((rc = SPI_execute(audit_indexer_plan_sql, true, 0)) !=
			SPI_OK_SELECT)
			elog(ERROR, "SPI_execute failed: %s", SPI_result_code_string(rc));
		for (i = 0; i < SPI_processed; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(cxt);

			statements = lappend(
				statements, pstrdup(SPI_getvalue(SPI_tuptable->vals[i],
												 SPI_tuptable->tupdesc, 1)));
			MemoryContextSwitchTo(old);
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (!locked)
		proc_exit(0); /* another indexer is at work */

	foreach (lc, statements)
	{
		MemoryContext stmt_cxt = AllocSetContextCreate(
			cxt, "pg_opsdata audit indexer statement", ALLOCSET_DEFAULT_SIZES);

		CHECK_FOR_INTERRUPTS();
		ereport(DEBUG1,
				(errmsg("pg_opsdata audit indexer: %s", (char *) lfirst(lc))));
		audit_indexer_exec((const char *) lfirst(lc), stmt_cxt);
		MemoryContextDelete(stmt_cxt);
	}
	proc_exit(0);
}
