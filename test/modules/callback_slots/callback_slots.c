/*-------------------------------------------------------------------------
 *
 * callback_slots.c
 *		Test module: takes PostgreSQL's relcache invalidation callback
 *		slots, as another preloaded library with many caches would.
 *
 * A process has room for 10 relcache invalidation callbacks (PostgreSQL
 * 15), shared by every library it loads; PostgreSQL's own caches take some
 * of them as a session goes.  Preloaded before pg_opsdata, this module
 * registers callbacks until only callback_slots.relcache_free slots are
 * left, so that a test can check that pg_opsdata needs no more than one.
 * Its callbacks do nothing.  The registrations are made in the postmaster
 * and inherited by every process it starts.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		test/modules/callback_slots/callback_slots.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/inval.h"

PG_MODULE_MAGIC;

/* MAX_RELCACHE_CALLBACKS of PostgreSQL 15 (utils/cache/inval.c). */
#define CALLBACK_SLOTS_RELCACHE 10

static int callback_slots_relcache_free = 3;

void _PG_init(void);

static void
callback_slots_relcache(Datum arg, Oid relid)
{
}

void
_PG_init(void)
{
	int i;

	DefineCustomIntVariable(
		"callback_slots.relcache_free",
		"Relcache invalidation callback slots this module leaves free.", NULL,
		&callback_slots_relcache_free, 3, 0, CALLBACK_SLOTS_RELCACHE,
		PGC_POSTMASTER, 0, NULL, NULL, NULL);
	MarkGUCPrefixReserved("callback_slots");

	if (!process_shared_preload_libraries_in_progress)
		return;
	for (i = 0; i < CALLBACK_SLOTS_RELCACHE - callback_slots_relcache_free;
		 i++)
		CacheRegisterRelcacheCallback(callback_slots_relcache,
									  Int32GetDatum(i));
}
