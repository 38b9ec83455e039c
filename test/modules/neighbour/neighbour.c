/*-------------------------------------------------------------------------
 *
 * neighbour.c
 *		Test module: another library preloaded before pg_opsdata, that
 *		takes PostgreSQL's relcache invalidation callback slots and has a
 *		ProcessUtility hook of its own.
 *
 * A process has room for 10 relcache invalidation callbacks (PostgreSQL
 * 15), shared by every library it loads; PostgreSQL's own caches take some
 * of them as a session goes.  This module registers callbacks, in the
 * postmaster (every process it starts inherits them), until only
 * neighbour.relcache_free slots are left, so that a test can check that
 * pg_opsdata needs no more than one.  Its callbacks do nothing.
 *
 * Its ProcessUtility hook, installed before pg_opsdata's, counts the
 * utility statements that reach it in the read-only setting
 * neighbour.utility_calls, so that a test can check that pg_opsdata passes
 * every statement on to the libraries loaded before it.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		test/modules/neighbour/neighbour.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "tcop/utility.h"
#include "utils/guc.h"
#include "utils/inval.h"

PG_MODULE_MAGIC;

/* MAX_RELCACHE_CALLBACKS of PostgreSQL 15 (utils/cache/inval.c). */
#define NEIGHBOUR_RELCACHE_SLOTS 10

static int neighbour_relcache_free = 3;
static int neighbour_utility_calls = 0;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

void _PG_init(void);

static void
neighbour_relcache(Datum arg, Oid relid)
{
}

static void
neighbour_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	char value[16];

	snprintf(value, sizeof(value), "%d", neighbour_utility_calls + 1);
	SetConfigOption("neighbour.utility_calls", value, PGC_INTERNAL,
					PGC_S_OVERRIDE);
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
}

void
_PG_init(void)
{
	int i;

	DefineCustomIntVariable(
		"neighbour.relcache_free",
		"Relcache invalidation callback slots this module leaves free.", NULL,
		&neighbour_relcache_free, 3, 0, NEIGHBOUR_RELCACHE_SLOTS,
		PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable(
		"neighbour.utility_calls",
		"Utility statements this session's ProcessUtility hook saw.", NULL,
		&neighbour_utility_calls, 0, 0, PG_INT32_MAX, PGC_INTERNAL, 0, NULL,
		NULL, NULL);
	MarkGUCPrefixReserved("neighbour");

	if (!process_shared_preload_libraries_in_progress)
		return;
	for (i = 0; i < NEIGHBOUR_RELCACHE_SLOTS - neighbour_relcache_free; i++)
		CacheRegisterRelcacheCallback(neighbour_relcache, Int32GetDatum(i));
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = neighbour_ProcessUtility;
}
