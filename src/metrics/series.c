/*-------------------------------------------------------------------------
 *
 * series.c
 *		Resolving (name, tags) to a series id through a per-backend cache.
 *
 * Every ingest path turns a metric name and its tags into the series_id of
 * metrics.series, creating the series on first use.  A hash table in
 * TopMemoryContext remembers the answers, so a repeated (name, tags) costs
 * one hash lookup; only a miss runs SQL.  In front of it, a direct-mapped
 * array of entries answers most lookups from the hash of the name and tags
 * and one comparison, without building a key.  Keys are the name and the
 * tags as given: the binary jsonb for record() and record_many(), the raw
 * text for the metrics.ingest foreign table (so COPY does not parse JSON per
 * row).
 * Different spellings of the same tags are different keys of the same
 * series.
 *
 * The cache must never hand out an id the database does not have:
 *
 *	 - an entry made in a transaction is tentative until that transaction
 *	   commits; it is dropped when its (sub)transaction aborts, since the
 *	   series row it may have created is gone;
 *	 - a relcache invalidation of metrics.series empties the cache.  Such an
 *	   invalidation reaches every backend when metrics.series is dropped or
 *	   truncated, and when rows of it are updated or deleted (a statement
 *	   trigger, metrics._series_changed, sends one);
 *	 - the cache is emptied when it reaches
 *	   pg_opsdata.metrics_series_cache_size entries, which bounds its memory.
 *
 * When metrics.series is a reference table of Citus (opsdata.distribute()),
 * a new series is inserted as the table's owner, once the caller's INSERT
 * privilege is checked, since Citus lets only roles that may update a
 * reference table lock its shards for an upsert.
 *
 * Validation happens on a miss only: an entry exists only for a name and
 * tags that passed it.  The cardinality limit (setting
 * metrics.series_limit) is checked when a series is created; concurrent
 * transactions creating series of one name may each add one beyond it.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/series.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "core/opsdata.h"
#include "core/privileged.h"
#include "metrics/metrics.h"

#define METRICS_NAME_MAX 255

int metrics_series_cache_size = 10000;

typedef struct SeriesKey
{
	uint32 hash;
	int len;
	char *data; /* kind byte, name, '\0', tags bytes */
} SeriesKey;

typedef struct SeriesEntry
{
	SeriesKey key;
	int64 series_id;
	SubTransactionId
		subid; /* creating subtransaction; Invalid once committed */
} SeriesEntry;

static HTAB *series_cache = NULL;
static MemoryContext series_cxt = NULL;

/* Entries of series_cache by the low bits of their hash. */
#define SERIES_FRONT_SIZE 4096
static SeriesEntry *series_front[SERIES_FRONT_SIZE];
static Oid series_cached_relid = InvalidOid;

/* Entries made by the current transaction, to settle at its end. */
static SeriesEntry **series_tentative = NULL;
static int series_ntentative = 0;
static int series_tentative_size = 0;

/* Buffer the lookup keys are built in. */
static StringInfoData series_keybuf;

PG_FUNCTION_INFO_V1(metrics_series_changed);

static uint32
series_hash(const void *key, Size keysize)
{
	return ((const SeriesKey *) key)->hash;
}

static int
series_match(const void *a, const void *b, Size keysize)
{
	const SeriesKey *ka = a;
	const SeriesKey *kb = b;

	if (ka->hash != kb->hash || ka->len != kb->len)
		return 1;
	return memcmp(ka->data, kb->data, ka->len);
}

/*
 * Forget every entry (the memory context goes with them).
 */
static void
series_cache_reset(void)
{
	if (series_cxt != NULL)
		MemoryContextDelete(series_cxt);
	memset(series_front, 0, sizeof(series_front));
	series_cxt = NULL;
	series_cache = NULL;
	series_ntentative = 0;
	series_cached_relid = InvalidOid;
}

static void
series_cache_create(void)
{
	HASHCTL ctl;

	series_cxt = AllocSetContextCreate(
		TopMemoryContext, "pg_opsdata series cache", ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(SeriesKey);
	ctl.entrysize = sizeof(SeriesEntry);
	ctl.hash = series_hash;
	ctl.match = series_match;
	ctl.hcxt = series_cxt;
	series_cache =
		hash_create("pg_opsdata series cache", 256, &ctl,
					HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
}

static void
series_forget(SeriesEntry *entry)
{
	char *data = entry->key.data;
	bool found;

	if (series_front[entry->key.hash % SERIES_FRONT_SIZE] == entry)
		series_front[entry->key.hash % SERIES_FRONT_SIZE] = NULL;
	hash_search(series_cache, &entry->key, HASH_REMOVE, &found);
	pfree(data);
}

/*
 * Settle tentative entries at the end of a (sub)transaction: on commit they
 * become permanent (or move to the parent), on abort they are dropped.
 */
static void
series_settle(bool commit, SubTransactionId mine, SubTransactionId parent)
{
	int i;
	int kept = 0;

	for (i = 0; i < series_ntentative; i++)
	{
		SeriesEntry *entry = series_tentative[i];

		if (mine != InvalidSubTransactionId && entry->subid != mine)
			series_tentative[kept++] = entry;
		else if (!commit)
			series_forget(entry);
		else if (parent != InvalidSubTransactionId)
		{
			entry->subid = parent;
			series_tentative[kept++] = entry;
		}
		else
			entry->subid = InvalidSubTransactionId;
	}
	series_ntentative = kept;
}

static void
series_xact_callback(XactEvent event, void *arg)
{
	if (series_cache == NULL || series_ntentative == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			series_settle(true, InvalidSubTransactionId,
						  InvalidSubTransactionId);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			series_settle(false, InvalidSubTransactionId,
						  InvalidSubTransactionId);
			break;
		default:
			break;
	}
}

static void
series_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	if (series_cache == NULL || series_ntentative == 0)
		return;
	if (event == SUBXACT_EVENT_COMMIT_SUB)
		series_settle(true, mySubid, parentSubid);
	else if (event == SUBXACT_EVENT_ABORT_SUB)
		series_settle(false, mySubid, parentSubid);
}

static void
series_relcache_callback(Datum arg, Oid relid)
{
	if (series_cache != NULL &&
		(relid == InvalidOid || relid == series_cached_relid))
		series_cache_reset();
}

/*
 * Register the cache's callbacks; called once per process from
 * metrics_init().
 */
void
metrics_series_init(void)
{
	opsdata_register_xact(OPSDATA_XACT_METRICS, series_xact_callback,
						  series_subxact_callback);
	opsdata_register_relcache(OPSDATA_RELCACHE_METRICS_SERIES,
							  series_relcache_callback);
}

/*
 * Raise the error for a name that cannot be a metric name.
 */
void
metrics_check_name(const char *name, int len)
{
	if (len == 0)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("metric name must not be empty")));
	if (len > METRICS_NAME_MAX)
		ereport(
			ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("metric name is too long"),
			 errdetail("Metric names are at most %d bytes; this one has %d.",
					   METRICS_NAME_MAX, len)));
}

static const char *
jsonb_kind(enum jbvType type)
{
	switch (type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "string";
		case jbvNumeric:
			return "number";
		case jbvBool:
			return "boolean";
		case jbvArray:
			return "array";
		case jbvObject:
		case jbvBinary:
			return "object";
		default:
			return "value";
	}
}

/*
 * Raise the error for tags that are not a flat JSON object of strings.
 */
static void
series_check_tags(Jsonb *tags)
{
	JsonbIterator *it;
	JsonbValue v;
	JsonbIteratorToken tok;
	char *key = NULL;

	if (!JB_ROOT_IS_OBJECT(tags) || JB_ROOT_IS_SCALAR(tags))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tags must be a JSON object of strings"),
				 errdetail("The tags are a JSON %s.",
						   JB_ROOT_IS_ARRAY(tags) && !JB_ROOT_IS_SCALAR(tags)
							   ? "array"
							   : "scalar"),
				 errhint("Write tags like {\"route\": \"/search\"}.")));

	it = JsonbIteratorInit(&tags->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
			key = pnstrdup(v.val.string.val, v.val.string.len);
		else if (tok == WJB_VALUE && v.type != jbvString)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("tags must be a JSON object of strings"),
					 errdetail("Tag \"%s\" is a %s.", key ? key : "",
							   jsonb_kind(v.type)),
					 errhint("Write tags like {\"route\": \"/search\"}.")));
	}
}

/*
 * Hash of the bytes of a key part, eight at a time, continuing from h.  The
 * last bytes are read as one word that may overlap the ones before.
 */
static inline uint64
series_hash_part(const char *p, int len, uint64 h)
{
	const uint64 mul = UINT64CONST(0x9E3779B97F4A7C15);
	const char *end = p + len;
	uint64 w;

	for (; end - p > 8; p += 8)
	{
		memcpy(&w, p, 8);
		h = (h ^ w) * mul;
		h ^= h >> 29;
	}
	if (len >= 8)
		memcpy(&w, end - 8, 8);
	else if (len >= 4)
	{
		uint32 a;
		uint32 b;

		memcpy(&a, p, 4);
		memcpy(&b, end - 4, 4);
		w = (uint64) a | ((uint64) b << 32);
	}
	else if (len > 0)
		w = (uint64) (unsigned char) p[0] |
			((uint64) (unsigned char) p[len / 2] << 8) |
			((uint64) (unsigned char) end[-1] << 16);
	else
		return h;
	h = (h ^ w) * mul;
	return h ^ (h >> 29);
}

/*
 * Hash of (kind, name, tags); the lengths are part of it, so that moving
 * bytes from the name to the tags changes it.
 */
static uint32
series_hash_key(char kind, const char *name, int namelen, const char *tags,
				int tagslen)
{
	uint64 h = ((uint64) (unsigned char) kind << 48) ^
			   ((uint64) namelen << 24) ^ (uint64) tagslen;

	h = series_hash_part(tags, tagslen, series_hash_part(name, namelen, h));
	h ^= h >> 33;
	h *= UINT64CONST(0xFF51AFD7ED558CCD);
	h ^= h >> 33;
	return (uint32) h;
}

/*
 * Build the cache key of (kind, name, tags) in series_keybuf.
 */
static SeriesKey
series_make_key(char kind, const char *name, int namelen, const char *tags,
				int tagslen)
{
	SeriesKey key;

	if (series_keybuf.data == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		initStringInfo(&series_keybuf);
		MemoryContextSwitchTo(old);
	}
	resetStringInfo(&series_keybuf);
	appendStringInfoChar(&series_keybuf, kind);
	appendBinaryStringInfo(&series_keybuf, name, namelen);
	appendStringInfoChar(&series_keybuf, '\0');
	appendBinaryStringInfo(&series_keybuf, tags, tagslen);
	key.data = series_keybuf.data;
	key.len = series_keybuf.len;
	key.hash = series_hash_key(kind, name, namelen, tags, tagslen);
	return key;
}

/*
 * The cached entry of (kind, name, tags) whose hash is hash, if the front
 * array has it.
 */
static inline SeriesEntry *
series_front_lookup(uint32 hash, char kind, const char *name, int namelen,
					const char *tags, int tagslen)
{
	SeriesEntry *entry = series_front[hash % SERIES_FRONT_SIZE];
	const char *data;

	if (entry == NULL || entry->key.hash != hash ||
		entry->key.len != namelen + tagslen + 2)
		return NULL;
	data = entry->key.data;
	if (data[0] != kind || memcmp(data + 1, name, namelen) != 0 ||
		data[namelen + 1] != '\0' ||
		memcmp(data + namelen + 2, tags, tagslen) != 0)
		return NULL;
	return entry;
}

/* A palloc'd copy of a key's bytes (which contain a zero byte). */
static char *
series_copy_key(const SeriesKey *key)
{
	char *copy = palloc(key->len);

	memcpy(copy, key->data, key->len);
	return copy;
}

static SeriesEntry *
series_lookup(const SeriesKey *key)
{
	SeriesEntry *entry;

	if (series_cache == NULL)
		return NULL;
	entry = (SeriesEntry *) hash_search(series_cache, key, HASH_FIND, NULL);
	if (entry != NULL)
		series_front[key->hash % SERIES_FRONT_SIZE] = entry;
	return entry;
}

/*
 * Remember key -> series_id as a tentative entry of the current
 * subtransaction.
 */
static void
series_remember(const SeriesKey *key, int64 series_id, Oid relid)
{
	SeriesEntry *entry;
	bool found;

	if (metrics_series_cache_size <= 0)
		return;
	if (series_cache != NULL &&
		(hash_get_num_entries(series_cache) >= metrics_series_cache_size ||
		 series_cached_relid != relid))
		series_cache_reset();
	if (series_cache == NULL)
		series_cache_create();
	series_cached_relid = relid;

	entry = (SeriesEntry *) hash_search(series_cache, key, HASH_ENTER, &found);
	if (found)
		return;
	entry->key.data = MemoryContextAlloc(series_cxt, key->len);
	memcpy(entry->key.data, key->data, key->len);
	entry->series_id = series_id;
	entry->subid = GetCurrentSubTransactionId();
	series_front[key->hash % SERIES_FRONT_SIZE] = entry;

	if (series_ntentative >= series_tentative_size)
	{
		int newsize = Max(64, series_tentative_size * 2);

		if (series_tentative == NULL)
			series_tentative = MemoryContextAlloc(
				TopMemoryContext, sizeof(SeriesEntry *) * newsize);
		else
			series_tentative =
				repalloc(series_tentative, sizeof(SeriesEntry *) * newsize);
		series_tentative_size = newsize;
	}
	series_tentative[series_ntentative++] = entry;
}

typedef struct SeriesInsert
{
	Datum *args;
	int ret;
} SeriesInsert;

static void
series_insert_statement(void *arg)
{
	SeriesInsert *insert = (SeriesInsert *) arg;
	Oid argtypes[2] = {TEXTOID, JSONBOID};

	insert->ret = SPI_execute_with_args(
		"INSERT INTO metrics.series (name, tags) VALUES ($1, $2) "
		"ON CONFLICT (name, tags) DO NOTHING RETURNING series_id",
		2, argtypes, insert->args, NULL, false, 1);
	if (insert->ret != SPI_OK_INSERT_RETURNING)
		opsdata_spi_failed(insert->ret, "write to metrics.series");
}

/*
 * Insert the series (args: name, tags) unless it exists, in the caller's
 * SPI connection; SPI_tuptable has its id when it was inserted.  As the
 * caller, but as the owner of metrics.series, once the caller's INSERT
 * privilege is checked, when it is a reference table of Citus: Citus locks
 * a reference table's shards for an upsert only for roles that may update
 * the table, which writers may not.
 */
static int
series_insert(Datum *args)
{
	Oid relid = metrics_relid("series");
	SeriesInsert insert;

	insert.args = args;
	if (opsdata_citus_table(relid))
	{
		AclResult aclresult =
			pg_class_aclcheck(relid, GetUserId(), ACL_INSERT);

		if (aclresult != ACLCHECK_OK)
			aclcheck_error(aclresult, OBJECT_TABLE, "series");
		opsdata_run_as_table_owner(relid, series_insert_statement, &insert);
	}
	else
		series_insert_statement(&insert);
	return insert.ret;
}

/*
 * Find or create the series (name, tags) with SQL; tags are validated.
 * Runs as the calling user, who needs SELECT and INSERT on metrics.series.
 */
static int64
series_find_or_create(text *name, Jsonb *tags)
{
	Datum args[2];
	Oid argtypes[2] = {TEXTOID, JSONBOID};
	Oid limit_types[2] = {TEXTOID, INT4OID};
	int32 limit;
	int64 series_id = 0;
	bool found = false;
	int attempt;
	int ret;

	args[0] = PointerGetDatum(name);
	args[1] = PointerGetDatum(tags);

	opsdata_spi_connect(0);
	for (attempt = 0; attempt < 2 && !found; attempt++)
	{
		bool isnull;

		ret = SPI_execute_with_args(
			"SELECT series_id FROM metrics.series WHERE name OPERATOR(pg_catalog.=) $1 AND tags OPERATOR(pg_catalog.=) $2",
			2, argtypes, args, NULL, false, 1);
		if (ret != SPI_OK_SELECT)
			opsdata_spi_failed(ret, "read metrics.series");
		if (SPI_processed > 0)
		{
			series_id = DatumGetInt64(SPI_getbinval(
				SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			found = true;
			break;
		}
		if (attempt > 0)
			break;

		/* A new series: check the cardinality limit of its name first. */
		ret = SPI_execute(
			"SELECT opsdata.setting('metrics.series_limit')::integer", false,
			1);
		if (ret != SPI_OK_SELECT)
			opsdata_spi_failed(ret,
							   "read the setting \"metrics.series_limit\"");
		limit = DatumGetInt32(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		args[1] = Int32GetDatum(limit);
		ret = SPI_execute_with_args(
			"SELECT pg_catalog.count(*) OPERATOR(pg_catalog.>=) $2 FROM "
			"(SELECT FROM metrics.series WHERE name OPERATOR(pg_catalog.=) $1 LIMIT $2) s",
			2, limit_types, args, NULL, false, 1);
		args[1] = PointerGetDatum(tags);
		if (ret != SPI_OK_SELECT)
			opsdata_spi_failed(ret, "count the series of a metric");
		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull)))
			ereport(
				ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("metric \"%s\" has reached its limit of %d series",
						text_to_cstring(name), limit),
				 errdetail(
					 "Each distinct set of tags of a metric is a series of its own."),
				 errhint(
					 "Record fewer distinct tag values, or raise the setting \"%s\" with opsdata.set_setting().",
					 "metrics.series_limit")));

		ret = series_insert(args);
		if (SPI_processed > 0)
		{
			series_id = DatumGetInt64(SPI_getbinval(
				SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
			found = true;
		}
		/* Else another transaction made it meanwhile: look again. */
	}
	SPI_finish();
	if (!found)
		ereport(
			ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("could not create metric series \"%s\"",
					text_to_cstring(name)),
			 errdetail(
				 "A concurrent transaction created it, and it is not visible to this transaction's snapshot."),
			 errhint("Retry the transaction.")));
	return series_id;
}

/*
 * The series id of (name, tags), creating the series if needed.  The
 * caller checked that neither is NULL.
 */
int64
metrics_series_resolve(text *name, Jsonb *tags)
{
	const char *n = VARDATA_ANY(name);
	const char *t = VARDATA_ANY(tags);
	int nlen = VARSIZE_ANY_EXHDR(name);
	int tlen = VARSIZE_ANY_EXHDR(tags);
	SeriesEntry *entry = series_front_lookup(
		series_hash_key('j', n, nlen, t, tlen), 'j', n, nlen, t, tlen);
	SeriesKey key;
	int64 series_id;
	SeriesKey saved;

	if (entry != NULL)
		return entry->series_id;
	key = series_make_key('j', n, nlen, t, tlen);
	entry = series_lookup(&key);
	if (entry != NULL)
		return entry->series_id;

	metrics_check_name(VARDATA_ANY(name), VARSIZE_ANY_EXHDR(name));
	series_check_tags(tags);
	/* The key buffer is reused by nested lookups: keep a copy. */
	saved = key;
	saved.data = series_copy_key(&key);
	series_id = series_find_or_create(name, tags);
	series_remember(&saved, series_id, metrics_relid("series"));
	pfree(saved.data);
	return series_id;
}

/*
 * The series id of a name and tags given as JSON text (metrics.ingest).
 */
int64
metrics_series_resolve_text(const char *name, int namelen, const char *tags,
							int tagslen)
{
	SeriesEntry *entry =
		series_front_lookup(series_hash_key('t', name, namelen, tags, tagslen),
							't', name, namelen, tags, tagslen);
	SeriesKey key;
	SeriesKey saved;
	Jsonb *jtags;
	text *tname;
	int64 series_id;

	if (entry != NULL)
		return entry->series_id;
	key = series_make_key('t', name, namelen, tags, tagslen);
	entry = series_lookup(&key);
	if (entry != NULL)
		return entry->series_id;

	metrics_check_name(name, namelen);
	saved = key;
	saved.data = series_copy_key(&key);
	jtags = DatumGetJsonbP(DirectFunctionCall1(
		jsonb_in, CStringGetDatum(pnstrdup(tags, tagslen))));
	tname = cstring_to_text_with_len(name, namelen);
	series_id = metrics_series_resolve(tname, jtags);
	series_remember(&saved, series_id, metrics_relid("series"));
	pfree(saved.data);
	return series_id;
}

/*
 * metrics._series_changed(): statement trigger on UPDATE, DELETE and
 * TRUNCATE of metrics.series.  Ids cached by any backend may now be
 * wrong: send a relcache invalidation of the table, which every backend
 * processes when this transaction commits.
 */
Datum
metrics_series_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(
			ERROR,
			(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
			 errmsg("metrics._series_changed() must be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	PG_RETURN_POINTER(NULL);
}
