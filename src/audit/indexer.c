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
 * The work is a job entry (worker/worker.h), run in a job worker connected
 * as the extension owner: the built-in job "audit.index_closed_partitions"
 * runs it in its own job worker.  It takes a session advisory lock so that
 * two never overlap, and runs DROP INDEX CONCURRENTLY of a leftover invalid
 * index and CREATE INDEX CONCURRENTLY as top-level statements
 * (opsdata_toplevel_exec), so that writers and readers of the partition
 * never wait for it.  Errors end the work (a scheduled run is recorded as
 * failed); the next run starts over from the catalog.
 *
 * audit._index_closed_partitions(), the job's command in a session, counts
 * the closed partitions that lack one of those indexes (or hold a leftover
 * invalid one) and starts a job worker for the entry when any does, without
 * waiting: CREATE INDEX CONCURRENTLY waits for every transaction older than
 * itself, the caller's among them.
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
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "audit/audit.h"
#include "core/opsdata.h"
#include "worker/worker.h"

/* Key of the advisory lock of the worker ("opsd", "audi"). */
#define AUDIT_INDEXER_LOCK_KEY1 1869639524
#define AUDIT_INDEXER_LOCK_KEY2 1635083369

PG_FUNCTION_INFO_V1(audit_index_closed_partitions);

static void audit_indexer_run(Datum arg);

/* The job entry of the built-in job, and of the function in a session. */
static const WorkerEntry audit_indexer_entry = {
	.name = "audit indexer",
	.command = "SELECT audit._index_closed_partitions()",
	.run = audit_indexer_run,
};

/*
 * The statements that give the closed partitions their missing indexes,
 * one per row: the DROP of a leftover invalid index comes before the
 * CREATE of the same index.
 */
static const char *const audit_indexer_plan_sql =
	"WITH closed AS ("
	"  SELECT n.nspname, c.relname"
	"    FROM opsdata._partition_layout('audit.entries') l"
	"    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) l.partition"
	"    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace"
	"   WHERE NOT l.is_default AND NOT l.detach_pending"
	"     AND l.upper_time OPERATOR(pg_catalog.<=) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '1 hour')),"
	" wanted AS ("
	"  SELECT nspname, relname, pg_catalog.left(relname, 47) OPERATOR(pg_catalog.||) '_username_ts_idx' AS idx,"
	"         'btree (username, ts)' AS def, 1 AS ord FROM closed"
	"  UNION ALL"
	"  SELECT nspname, relname, pg_catalog.left(relname, 50) OPERATOR(pg_catalog.||) '_objects_idx',"
	"         'gin (objects)', 2 FROM closed),"
	" state AS ("
	"  SELECT w.*, i.indisvalid"
	"    FROM wanted w"
	"    LEFT JOIN pg_catalog.pg_class ic ON ic.relname OPERATOR(pg_catalog.=) w.idx"
	"     AND ic.relnamespace OPERATOR(pg_catalog.=) (SELECT n.oid FROM pg_catalog.pg_namespace n"
	"                                                  WHERE n.nspname OPERATOR(pg_catalog.=) w.nspname)"
	"    LEFT JOIN pg_catalog.pg_index i ON i.indexrelid OPERATOR(pg_catalog.=) ic.oid)"
	"SELECT pg_catalog.format('DROP INDEX CONCURRENTLY IF EXISTS %I.%I', nspname, idx)"
	"  FROM state WHERE indisvalid OPERATOR(pg_catalog.=) false "
	"UNION ALL "
	"SELECT pg_catalog.format('CREATE INDEX CONCURRENTLY %I ON %I.%I USING %s', idx, nspname, relname, def)"
	"  FROM state WHERE indisvalid IS NOT TRUE "
	"ORDER BY 1 DESC";

/*
 * Registers the job entry; called by audit_init() in every process.
 */
void
audit_indexer_init(void)
{
	worker_register_entry(&audit_indexer_entry);
}

/*
 * audit._index_closed_partitions() returns integer: how many indexes of
 * closed partitions are missing; when any is, a job worker is started to
 * build them (it is not waited for).
 */
Datum
audit_index_closed_partitions(PG_FUNCTION_ARGS)
{
	HeapTuple proc;
	Oid owner;
	int64 missing;
	bool isnull;
	int rc;

	opsdata_spi_connect(0);
	rc = SPI_execute(
		psprintf(
			"SELECT pg_catalog.count(*) FROM (%s) s WHERE s.format OPERATOR(pg_catalog.~~) 'CREATE %%'",
			audit_indexer_plan_sql),
		true, 0);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "list the closed partitions of audit.entries");
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
	owner = ((Form_pg_proc) GETSTRUCT(proc))->proowner;
	ReleaseSysCache(proc);
	if (worker_run_entry(&audit_indexer_entry, (Datum) 0, owner, false,
						 NULL) == WORKER_ENTRY_NO_SLOT)
		ereport(
			ERROR,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("could not start the pg_opsdata audit indexer"),
			 errhint("Consider increasing the configuration parameter \"%s\".",
					 "max_worker_processes")));
	PG_RETURN_INT32((int32) Min(missing, PG_INT32_MAX));
}

/*
 * Takes the indexer's lock and lists the statements to run, in cxt; NIL
 * when another indexer holds the lock.  The lock is held by the session
 * until its worker ends.
 */
static List *
audit_indexer_plan(MemoryContext cxt)
{
	List *statements = NIL;
	bool isnull;
	uint64 i;
	int rc;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	opsdata_spi_connect(0);
	rc =
		SPI_execute(psprintf("SELECT pg_catalog.pg_try_advisory_lock(%d, %d)",
							 AUDIT_INDEXER_LOCK_KEY1, AUDIT_INDEXER_LOCK_KEY2),
					false, 0);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "take the lock of the audit indexer");
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
								   SPI_tuptable->tupdesc, 1, &isnull)))
	{
		rc = SPI_execute(audit_indexer_plan_sql, true, 0);
		if (rc != SPI_OK_SELECT)
			opsdata_spi_failed(rc,
							   "list the closed partitions of audit.entries");
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
	return statements;
}

/*
 * The entry: build the missing indexes, one statement at a time, each at
 * top level in a transaction of its own.
 */
static void
audit_indexer_run(Datum arg)
{
	MemoryContext cxt;
	List *statements;
	ListCell *lc;

	cxt = AllocSetContextCreate(TopMemoryContext, "pg_opsdata audit indexer",
								ALLOCSET_DEFAULT_SIZES);
	statements = audit_indexer_plan(cxt);
	MemoryContextSwitchTo(cxt);
	foreach (lc, statements)
	{
		CHECK_FOR_INTERRUPTS();
		ereport(DEBUG1,
				(errmsg("pg_opsdata audit indexer: %s", (char *) lfirst(lc))));
		opsdata_toplevel_exec((const char *) lfirst(lc), NULL, NULL);
		MemoryContextSwitchTo(cxt);
	}
	MemoryContextSwitchTo(TopMemoryContext);
	MemoryContextDelete(cxt);
}
