/*-------------------------------------------------------------------------
 *
 * inval.c
 *		One relcache and one syscache invalidation callback for the whole
 *		library, dispatching to the areas' handlers.
 *
 * PostgreSQL keeps the invalidation callbacks of a process in fixed-size
 * arrays (10 relcache callbacks, 64 syscache callbacks in PostgreSQL 15),
 * shared with every other library the server loads: a library that takes
 * one slot per cache it keeps can make another library's registration
 * fail ("out of relcache_callback_list slots"), which is FATAL.  So the
 * core takes one relcache slot, and one syscache slot per catalog cache
 * some area watches, the first time an area registers a handler in the
 * process, and calls the registered handlers in the order of
 * OpsdataRelcacheOrder (and of registration for syscache handlers).
 *
 * Areas register their handlers from their *_init() (the postmaster's
 * registrations are inherited by every process it forks) or later, the
 * first time a backend needs the cache.  Registering the same handler
 * again does nothing.  A handler gets what PostgreSQL's callbacks get: a
 * relation OID (InvalidOid for all of them), or a syscache id and hash
 * value (0 for all entries); arg is always 0.  Handlers run in the middle
 * of invalidation processing: they may only forget what they cached.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/inval.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/inval.h"
#include "utils/syscache.h"

#include "core/opsdata.h"

/* Syscache handlers, and the caches the core has a callback for. */
#define OPSDATA_MAX_SYSCACHE_HANDLERS 8

typedef struct OpsdataSyscacheHandler
{
	int cacheid;
	SyscacheCallbackFunction handler;
} OpsdataSyscacheHandler;

static RelcacheCallbackFunction
	opsdata_relcache_handlers[OPSDATA_RELCACHE_NHANDLERS];
static bool opsdata_relcache_registered = false;

static OpsdataSyscacheHandler
	opsdata_syscache_handlers[OPSDATA_MAX_SYSCACHE_HANDLERS];
static int opsdata_nsyscache_handlers = 0;

static void opsdata_relcache_callback(Datum arg, Oid relid);
static void opsdata_syscache_callback(Datum arg, int cacheid,
									  uint32 hashvalue);

/*
 * Register an area's relcache invalidation handler in its place (order).
 * The first registration in a process takes the library's one relcache
 * callback slot.
 */
void
opsdata_register_relcache(OpsdataRelcacheOrder order,
						  RelcacheCallbackFunction handler)
{
	Assert(order >= 0 && order < OPSDATA_RELCACHE_NHANDLERS);
	opsdata_relcache_handlers[order] = handler;
	if (!opsdata_relcache_registered)
	{
		CacheRegisterRelcacheCallback(opsdata_relcache_callback, (Datum) 0);
		opsdata_relcache_registered = true;
	}
}

/*
 * Register an area's handler for invalidations of a catalog cache
 * (cacheid, as for CacheRegisterSyscacheCallback).  The first handler of a
 * cache in a process takes one syscache callback slot for it.
 */
void
opsdata_register_syscache(int cacheid, SyscacheCallbackFunction handler)
{
	bool cache_known = false;
	int i;

	for (i = 0; i < opsdata_nsyscache_handlers; i++)
	{
		if (opsdata_syscache_handlers[i].cacheid != cacheid)
			continue;
		if (opsdata_syscache_handlers[i].handler == handler)
			return;
		cache_known = true;
	}
	if (opsdata_nsyscache_handlers >= OPSDATA_MAX_SYSCACHE_HANDLERS)
		elog(ERROR, "too many pg_opsdata syscache invalidation handlers");
	opsdata_syscache_handlers[opsdata_nsyscache_handlers].cacheid = cacheid;
	opsdata_syscache_handlers[opsdata_nsyscache_handlers].handler = handler;
	opsdata_nsyscache_handlers++;
	if (!cache_known)
		CacheRegisterSyscacheCallback(cacheid, opsdata_syscache_callback,
									  (Datum) 0);
}

static void
opsdata_relcache_callback(Datum arg, Oid relid)
{
	int i;

	for (i = 0; i < OPSDATA_RELCACHE_NHANDLERS; i++)
	{
		if (opsdata_relcache_handlers[i] != NULL)
			opsdata_relcache_handlers[i]((Datum) 0, relid);
	}
}

static void
opsdata_syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	int i;

	for (i = 0; i < opsdata_nsyscache_handlers; i++)
	{
		if (opsdata_syscache_handlers[i].cacheid == cacheid)
			opsdata_syscache_handlers[i].handler((Datum) 0, cacheid,
												 hashvalue);
	}
}
