/*-------------------------------------------------------------------------
 *
 * threshold.c
 *		learning.threshold(key): the per-request threshold lookup, and the
 *		settings the learning area reads on hot paths.
 *
 * An application calls learning.threshold() for every decision it makes, so
 * the lookup avoids SQL entirely: it probes the primary key of
 * learning.thresholds with a direct index scan, and, when pg_opsdata is
 * preloaded, keeps the answers in a per-backend hash table.  The cache is
 * dropped whenever the shared threshold generation moves (see shared.c: any
 * committed change to learning.thresholds or opsdata.config moves it), so a
 * cached answer is never older than the last committed change; within a
 * transaction that changed thresholds itself nothing is cached, so it sees
 * its own changes.  The answer is the latest committed threshold even
 * inside a repeatable-read transaction: the probe uses a fresh snapshot,
 * taken after the generation was read.
 *
 * The probes read the tables directly, without permission checks on them:
 * the function's own EXECUTE grant is the boundary.  Relation OIDs are
 * looked up by name and forgotten on any relcache invalidation of them.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/learning/threshold.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "core/opsdata.h"
#include "learning/learning.h"

PG_FUNCTION_INFO_V1(learning_threshold);
PG_FUNCTION_INFO_V1(learning_thresholds_changed);

/* Keys longer than this are looked up every time. */
#define THRESHOLD_CACHE_KEYLEN 256
/* A backend that asks for more keys than this starts its cache over. */
#define THRESHOLD_CACHE_MAX 10000
#define SETTINGS_CACHE_MAX	16

typedef struct ThresholdCacheEntry
{
	char key[THRESHOLD_CACHE_KEYLEN];
	double value;
} ThresholdCacheEntry;

typedef struct SettingCacheEntry
{
	const char *name;
	char *value;
} SettingCacheEntry;

/* A table with a text primary key, found by name. */
typedef struct KeyedTable
{
	const char *nspname;
	const char *relname;
	const char *indexname;
	Oid relid;
	Oid indexid;
} KeyedTable;

static KeyedTable thresholds_table = {
	"learning", "thresholds", "thresholds_pkey", InvalidOid, InvalidOid};
static KeyedTable config_table = {"opsdata", "config", "config_pkey",
								  InvalidOid, InvalidOid};
static KeyedTable settings_table = {"opsdata", "settings", "settings_pkey",
									InvalidOid, InvalidOid};

static MemoryContext threshold_cache_cxt = NULL;
static HTAB *threshold_cache = NULL;
static uint64 threshold_cache_generation = 0;
static SettingCacheEntry settings_cache[SETTINGS_CACHE_MAX];
static int settings_cached = 0;
static bool relcache_callback_registered = false;

static void
threshold_relcache_callback(Datum arg, Oid relid)
{
	KeyedTable *tables[] = {&thresholds_table, &config_table, &settings_table};
	int i;

	for (i = 0; i < (int) lengthof(tables); i++)
	{
		if (relid == InvalidOid || relid == tables[i]->relid ||
			relid == tables[i]->indexid)
		{
			tables[i]->relid = InvalidOid;
			tables[i]->indexid = InvalidOid;
			learning_threshold_cache_reset();
		}
	}
}

/*
 * Forget every cached threshold and setting of this backend.
 */
void
learning_threshold_cache_reset(void)
{
	if (threshold_cache_cxt != NULL)
		MemoryContextReset(threshold_cache_cxt);
	threshold_cache = NULL;
	settings_cached = 0;
}

static void
keyed_table_resolve(KeyedTable *t)
{
	Oid nsp;

	if (OidIsValid(t->relid) && OidIsValid(t->indexid))
		return;
	if (!relcache_callback_registered)
	{
		opsdata_register_relcache(OPSDATA_RELCACHE_LEARNING_THRESHOLDS,
								  threshold_relcache_callback);
		relcache_callback_registered = true;
	}
	nsp = get_namespace_oid(t->nspname, false);
	t->relid = get_relname_relid(t->relname, nsp);
	t->indexid = get_relname_relid(t->indexname, nsp);
	if (!OidIsValid(t->relid) || !OidIsValid(t->indexid))
		ereport(
			ERROR,
			(errcode(ERRCODE_UNDEFINED_TABLE),
			 errmsg("relation \"%s.%s\" does not exist", t->nspname,
					t->relname),
			 errhint(
				 "Is the extension pg_opsdata installed in this database?")));
}

/*
 * Find the row whose text primary key equals key, with a fresh snapshot,
 * and copy the named columns out (in the caller's memory context).  Returns
 * false when there is no such row.
 */
static bool
keyed_table_probe(KeyedTable *t, Datum key, int ncols, const char **colnames,
				  Datum *values, bool *nulls)
{
	Relation rel;
	Relation index;
	IndexScanDesc scan;
	TupleTableSlot *slot;
	ScanKeyData skey;
	Snapshot snapshot;
	bool found = false;
	int i;

	keyed_table_resolve(t);
	rel = table_open(t->relid, AccessShareLock);
	index = index_open(t->indexid, AccessShareLock);
	snapshot = RegisterSnapshot(GetLatestSnapshot());

	ScanKeyEntryInitialize(&skey, 0, 1, BTEqualStrategyNumber, InvalidOid,
						   index->rd_indcollation[0], F_TEXTEQ, key);
	slot = table_slot_create(rel, NULL);
	scan = index_beginscan(rel, index, snapshot, 1, 0);
	index_rescan(scan, &skey, 1, NULL, 0);
	if (index_getnext_slot(scan, ForwardScanDirection, slot))
	{
		TupleDesc desc = RelationGetDescr(rel);

		found = true;
		for (i = 0; i < ncols; i++)
		{
			AttrNumber att = attnameAttNum(rel, colnames[i], false);
			Form_pg_attribute form;

			if (att == InvalidAttrNumber)
				ereport(
					ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg(
						 "column \"%s\" of relation \"%s.%s\" does not exist",
						 colnames[i], t->nspname, t->relname)));
			form = TupleDescAttr(desc, att - 1);
			values[i] = slot_getattr(slot, att, &nulls[i]);
			if (!nulls[i])
				values[i] = datumCopy(values[i], form->attbyval, form->attlen);
		}
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	UnregisterSnapshot(snapshot);
	index_close(index, AccessShareLock);
	table_close(rel, AccessShareLock);
	return found;
}

/*
 * Make the cache current; returns the generation it holds, or 0 when
 * nothing may be cached now.
 */
static uint64
threshold_cache_prepare(void)
{
	uint64 generation = learning_threshold_generation();

	if (generation == 0 || learning_thresholds_touched_in_xact())
	{
		learning_threshold_cache_reset();
		threshold_cache_generation = 0;
		return 0;
	}
	if (generation != threshold_cache_generation)
	{
		learning_threshold_cache_reset();
		threshold_cache_generation = generation;
	}
	if (threshold_cache_cxt == NULL)
		threshold_cache_cxt = AllocSetContextCreate(
			TopMemoryContext, "pg_opsdata threshold cache",
			ALLOCSET_SMALL_SIZES);
	if (threshold_cache == NULL)
	{
		HASHCTL ctl;

		memset(&ctl, 0, sizeof(ctl));
		ctl.keysize = THRESHOLD_CACHE_KEYLEN;
		ctl.entrysize = sizeof(ThresholdCacheEntry);
		ctl.hcxt = threshold_cache_cxt;
		threshold_cache = hash_create("pg_opsdata thresholds", 64, &ctl,
									  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}
	return generation;
}

/*
 * Current value of a pg_opsdata setting, as opsdata.setting() gives it;
 * cached like the thresholds.  The result must not be freed or changed.
 */
char *
learning_setting(const char *name)
{
	static const char *valuecol[] = {"value"};
	static const char *defaultcol[] = {"default_value"};
	Datum value;
	bool isnull;
	char *result;
	MemoryContext old;
	int i;

	threshold_cache_prepare();
	if (threshold_cache != NULL)
	{
		for (i = 0; i < settings_cached; i++)
		{
			if (strcmp(settings_cache[i].name, name) == 0)
				return settings_cache[i].value;
		}
	}

	if (!keyed_table_probe(&config_table, CStringGetTextDatum(name), 1,
						   valuecol, &value, &isnull) &&
		!keyed_table_probe(&settings_table, CStringGetTextDatum(name), 1,
						   defaultcol, &value, &isnull))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unrecognized pg_opsdata setting \"%s\"", name),
				 errhint("The settings are listed in opsdata.settings.")));
	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pg_opsdata setting \"%s\" is null", name),
				 errhint("Set it with opsdata.set_setting(), or reset it with "
						 "opsdata.reset_setting().")));

	if (threshold_cache == NULL || settings_cached >= SETTINGS_CACHE_MAX)
		return TextDatumGetCString(value);
	old = MemoryContextSwitchTo(threshold_cache_cxt);
	result = TextDatumGetCString(value);
	MemoryContextSwitchTo(old);
	settings_cache[settings_cached].name = name;
	settings_cache[settings_cached].value = result;
	settings_cached++;
	return result;
}

/*
 * The threshold in force for a key: the tuned one once its support reaches
 * min_support, else the setting learning.default_threshold.
 */
double
learning_threshold_value(text *key)
{
	static const char *cols[] = {"threshold", "support", "min_support"};
	ThresholdCacheEntry *entry = NULL;
	Size len = VARSIZE_ANY_EXHDR(key);
	char keybuf[THRESHOLD_CACHE_KEYLEN];
	Datum values[3];
	bool nulls[3];
	double result;
	uint64 generation;

	generation = threshold_cache_prepare();
	if (generation != 0 && len < THRESHOLD_CACHE_KEYLEN)
	{
		bool found;

		memcpy(keybuf, VARDATA_ANY(key), len);
		keybuf[len] = '\0';
		entry = hash_search(threshold_cache, keybuf, HASH_FIND, &found);
		if (found)
			return entry->value;
		entry = NULL;
	}

	if (keyed_table_probe(&thresholds_table, PointerGetDatum(key), 3, cols,
						  values, nulls) &&
		!nulls[0] && DatumGetInt64(values[1]) >= DatumGetInt32(values[2]))
		result = DatumGetFloat8(values[0]);
	else
		result = DatumGetFloat8(DirectFunctionCall1(
			float8in,
			CStringGetDatum(learning_setting("learning.default_threshold"))));

	/* Cache it only if no change committed since the generation was read. */
	if (generation != 0 && len < THRESHOLD_CACHE_KEYLEN &&
		threshold_cache != NULL && threshold_cache_generation == generation &&
		learning_threshold_generation() == generation)
	{
		bool found;

		if (hash_get_num_entries(threshold_cache) >= THRESHOLD_CACHE_MAX)
		{
			learning_threshold_cache_reset();
			threshold_cache_prepare();
		}
		entry = hash_search(threshold_cache, keybuf, HASH_ENTER, &found);
		entry->value = result;
	}
	return result;
}

/*
 * learning.threshold(key) returns the threshold in force for the key.
 */
Datum
learning_threshold(PG_FUNCTION_ARGS)
{
	PG_RETURN_FLOAT8(learning_threshold_value(PG_GETARG_TEXT_PP(0)));
}

/*
 * Statement trigger on learning.thresholds and opsdata.config: their change
 * invalidates every backend's cache once this transaction commits.
 */
Datum
learning_thresholds_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("function %s was not called by the trigger manager",
						"learning._thresholds_changed")));
	learning_thresholds_touched();
	return PointerGetDatum(NULL);
}
