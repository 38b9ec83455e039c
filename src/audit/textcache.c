/*-------------------------------------------------------------------------
 *
 * textcache.c
 *		Shared cache of the statement texts known to be in audit.statements.
 *
 * A text seen before but not in the backend's own cache costs a probe of
 * the primary key of audit.statements and a fetch of the row to compare
 * the text: two reads at random places of a table that grows with every
 * new text.  Statements written with literals repeat that way (the same
 * UPDATE with the same value, run again by another session an hour
 * later).  This cache, shared by every backend and the scheduler, holds
 * texts whose rows are committed, so such a text costs a read of one
 * cache line instead.
 *
 * The cache is a table of buckets of two entries (64 bytes, one cache
 * line), indexed by the text's hash.  A new entry takes the first place
 * of its bucket and moves the previous one to the second.  Entries are
 * read and written without locks: each carries a check word computed from
 * the others, and a read that sees parts of two entries (written at the
 * same time) fails the check and counts as a miss.  A miss is always
 * safe: it only costs the probe.
 *
 * A text is entered when a probe finds its row committed, that is when
 * it is seen again after the session that stored it: most texts of
 * statements written with literals are never seen twice, and entering
 * them as they are stored would only push out the texts that do repeat.
 * The key of an entry folds in the database, the storage of
 * audit.statements (its relfilenode: a truncated or recreated table makes
 * new keys) and a generation that the owner's UPDATE or DELETE of rows
 * of audit.statements advances (the statement trigger
 * audit._statements_changed() below), so no entry outlives its row.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/textcache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/shmem.h"

#include "audit/audit.h"
#include "core/opsdata.h"

#define AUDIT_TEXT_CACHE_NAME "pg_opsdata audit statement text cache"

/* Bytes of a bucket: two entries, one cache line. */
#define AUDIT_TEXT_BUCKET 64

typedef struct AuditTextEntry
{
	uint64 k1;
	uint64 k2;
	uint64 id;
	uint64 check;
} AuditTextEntry;

typedef struct AuditTextCache
{
	pg_atomic_uint64 generation; /* advanced when rows are changed */
	uint64 nbuckets;			 /* a power of two */
} AuditTextCache;

StaticAssertDecl(
	sizeof(AuditTextCache) <= AUDIT_TEXT_BUCKET,
	"the header of the text cache must fit before the first bucket");
StaticAssertDecl(sizeof(AuditTextEntry) * 2 == AUDIT_TEXT_BUCKET,
				 "a bucket of the text cache is two entries");

/* pg_opsdata.audit_statement_cache_size, in kB; 0 turns the cache off. */
int audit_text_cache_kb = 16 * 1024;

static AuditTextCache *audit_text_cache = NULL;
static AuditTextEntry *audit_text_entries = NULL;

/* What the keys of this backend fold in, set by audit_text_cache_bind(). */
static uint64 audit_text_salt1 = 0;
static uint64 audit_text_salt2 = 0;
static bool audit_text_bound = false;

/* A 64-bit mixing function (the finalizer of splitmix64). */
static inline uint64
audit_text_mix(uint64 x)
{
	x ^= x >> 30;
	x *= UINT64CONST(0xbf58476d1ce4e5b9);
	x ^= x >> 27;
	x *= UINT64CONST(0x94d049bb133111eb);
	x ^= x >> 31;
	return x;
}

static inline uint64
audit_text_check(uint64 k1, uint64 k2, uint64 id)
{
	return audit_text_mix(
		k1 ^ audit_text_mix(
				 k2 ^ audit_text_mix(id ^ UINT64CONST(0x7465787463616368))));
}

static uint64
audit_text_nbuckets(void)
{
	uint64 want = ((uint64) audit_text_cache_kb * 1024) / AUDIT_TEXT_BUCKET;
	uint64 n = 1;

	if (want == 0)
		return 0;
	while (n * 2 <= want)
		n *= 2;
	return n;
}

static Size
audit_text_cache_size(void)
{
	uint64 n = audit_text_nbuckets();

	if (n == 0)
		return 0;
	/* A bucket's worth of room to align the buckets on a cache line. */
	return add_size(AUDIT_TEXT_BUCKET * 2, mul_size(n, AUDIT_TEXT_BUCKET));
}

static void
audit_text_cache_startup(void)
{
	bool found;
	Size size = audit_text_cache_size();
	char *base;

	if (size == 0)
		return;
	base = ShmemInitStruct(AUDIT_TEXT_CACHE_NAME, size, &found);
	audit_text_cache = (AuditTextCache *) base;
	audit_text_entries = (AuditTextEntry *) TYPEALIGN(
		AUDIT_TEXT_BUCKET, base + sizeof(AuditTextCache));
	if (found)
		return;
	pg_atomic_init_u64(&audit_text_cache->generation, 0);
	audit_text_cache->nbuckets = audit_text_nbuckets();
	memset(audit_text_entries, 0,
		   audit_text_cache->nbuckets * AUDIT_TEXT_BUCKET);
}

static const OpsdataShmemPart audit_text_cache_part = {
	AUDIT_TEXT_CACHE_NAME, audit_text_cache_size, 0, audit_text_cache_startup};

/*
 * Register the cache's shared memory.  Preloaded only, after the GUCs.
 */
void
audit_text_cache_init(void)
{
	if (audit_text_nbuckets() > 0)
		opsdata_shmem_register(&audit_text_cache_part);
}

/*
 * Make the keys of the following calls those of audit.statements stored
 * in relfilenode, in the current database.  Returns the generation, which
 * the caller compares with the one its own cache was made under.
 */
uint64
audit_text_cache_bind(Oid relfilenode)
{
	uint64 generation;

	if (audit_text_cache == NULL)
		return 0;
	generation = pg_atomic_read_u64(&audit_text_cache->generation);
	audit_text_salt1 =
		audit_text_mix(((uint64) MyDatabaseId << 32) | relfilenode);
	audit_text_salt1 = audit_text_mix(audit_text_salt1 ^ generation);
	audit_text_salt2 =
		audit_text_mix(audit_text_salt1 + UINT64CONST(0x9e3779b97f4a7c15));
	audit_text_bound = true;
	return generation;
}

/*
 * Rows of audit.statements were changed: no entry made before is trusted
 * any more, here or in any backend's own cache.
 */
void
audit_text_cache_invalidate(void)
{
	if (audit_text_cache != NULL)
		pg_atomic_fetch_add_u64(&audit_text_cache->generation, 1);
	audit_text_bound = false;
}

PG_FUNCTION_INFO_V1(audit_statements_changed);

/*
 * audit._statements_changed(): statement-level AFTER UPDATE OR DELETE
 * trigger of audit.statements, which only its owner may change.
 */
Datum
audit_statements_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function %s was not called by the trigger manager",
						"audit._statements_changed")));
	audit_text_cache_invalidate();
	return PointerGetDatum(NULL);
}

static inline AuditTextEntry *
audit_text_bucket(uint64 k1)
{
	return &audit_text_entries[(k1 & (audit_text_cache->nbuckets - 1)) * 2];
}

/* The statement_id of the text hashed to (h1, h2), if the cache has it. */
bool
audit_text_cache_lookup(uint64 h1, uint64 h2, int64 *id)
{
	uint64 k1 = h1 ^ audit_text_salt1;
	uint64 k2 = h2 ^ audit_text_salt2;
	AuditTextEntry *bucket;
	int i;

	if (!audit_text_bound || audit_text_cache == NULL)
		return false;
	bucket = audit_text_bucket(k1);
	for (i = 0; i < 2; i++)
	{
		volatile AuditTextEntry *e = &bucket[i];
		uint64 e1 = e->k1;
		uint64 e2 = e->k2;
		uint64 eid = e->id;
		uint64 check = e->check;

		if (e1 == k1 && e2 == k2 && check == audit_text_check(e1, e2, eid))
		{
			*id = (int64) eid;
			return true;
		}
	}
	return false;
}

/* Remember that the text hashed to (h1, h2) is stored, committed, as id. */
void
audit_text_cache_enter(uint64 h1, uint64 h2, int64 id)
{
	uint64 k1 = h1 ^ audit_text_salt1;
	uint64 k2 = h2 ^ audit_text_salt2;
	volatile AuditTextEntry *first;
	volatile AuditTextEntry *second;

	if (!audit_text_bound || audit_text_cache == NULL)
		return;
	first = audit_text_bucket(k1);
	second = first + 1;
	if (first->k1 == k1 && first->k2 == k2 && first->id == (uint64) id)
		return;
	second->k1 = first->k1;
	second->k2 = first->k2;
	second->id = first->id;
	second->check = first->check;
	first->k1 = k1;
	first->k2 = k2;
	first->id = (uint64) id;
	first->check = audit_text_check(k1, k2, (uint64) id);
}
