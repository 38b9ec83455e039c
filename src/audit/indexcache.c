/*-------------------------------------------------------------------------
 *
 * indexcache.c
 *		The index descriptions of the partitions the audit writer inserts
 *		into, kept from one transaction to the next.
 *
 * Opening a relation's indexes for insertion the executor's way builds an
 * IndexInfo per index from its catalog rows, and a BRIN index builds its
 * description again at its first insertion: for a writer that inserts a
 * handful of entries per transaction, that is a good part of the work.
 * Here the IndexInfo of each index of the last few partitions written is
 * built once, in a memory context of its own, and reused (a BRIN index
 * keeps its description in it too); the indexes themselves are opened and
 * locked in each transaction as the executor opens them.  Partitions with
 * an expression or partial index, whose IndexInfo holds state made for one
 * executor run, are opened the executor's way every time.
 *
 * Any relcache invalidation of a cached partition or of one of its indexes
 * (an index made, dropped, made ready, a change of the table) forgets the
 * whole cache; the writer's relcache callback passes them on
 * (audit_index_cache_invalidate()).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/indexcache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "catalog/index.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"

#include "audit/audit.h"

/* Partitions whose indexes are described; a day's and the default, mostly. */
#define AUDIT_INDEX_CACHE_RELS 4

typedef struct AuditIndexCacheEntry
{
	Oid relid;	 /* InvalidOid: free */
	bool simple; /* no expression or partial index: cached */
	int nindexes;
	Oid *indexoids;
	IndexInfo **infos;
} AuditIndexCacheEntry;

static MemoryContext audit_index_cxt = NULL;
static AuditIndexCacheEntry audit_index_cache[AUDIT_INDEX_CACHE_RELS];
static int audit_index_next = 0;

/*
 * Forget every description after a relcache invalidation of relid (any
 * relation when InvalidOid) that concerns a cached partition.
 */
void
audit_index_cache_invalidate(Oid relid)
{
	int i;
	int j;
	bool hit = !OidIsValid(relid);

	for (i = 0; i < AUDIT_INDEX_CACHE_RELS && !hit; i++)
	{
		AuditIndexCacheEntry *e = &audit_index_cache[i];

		if (!OidIsValid(e->relid))
			continue;
		if (e->relid == relid)
			hit = true;
		for (j = 0; j < e->nindexes && !hit; j++)
			hit = e->indexoids[j] == relid;
	}
	if (!hit || audit_index_cxt == NULL)
		return;
	MemoryContextReset(audit_index_cxt);
	memset(audit_index_cache, 0, sizeof(audit_index_cache));
	audit_index_next = 0;
}

/* Describe the indexes of rel, opened and locked as the caller holds it. */
static AuditIndexCacheEntry *
audit_index_cache_build(Relation rel, Relation *opened)
{
	AuditIndexCacheEntry *e = &audit_index_cache[audit_index_next];
	List *oids = RelationGetIndexList(rel);
	MemoryContext old;
	ListCell *lc;
	int i = 0;

	if (audit_index_cxt == NULL)
		audit_index_cxt =
			AllocSetContextCreate(TopMemoryContext, "pg_opsdata audit indexes",
								  ALLOCSET_SMALL_SIZES);
	audit_index_next = (audit_index_next + 1) % AUDIT_INDEX_CACHE_RELS;
	memset(e, 0, sizeof(AuditIndexCacheEntry));
	old = MemoryContextSwitchTo(audit_index_cxt);
	e->nindexes = list_length(oids);
	e->indexoids = palloc(sizeof(Oid) * Max(e->nindexes, 1));
	e->infos = palloc(sizeof(IndexInfo *) * Max(e->nindexes, 1));
	e->simple = true;
	foreach (lc, oids)
	{
		Relation idx = index_open(lfirst_oid(lc), RowExclusiveLock);

		e->indexoids[i] = RelationGetRelid(idx);
		e->infos[i] = BuildIndexInfo(idx);
		if (e->infos[i]->ii_Expressions != NIL ||
			e->infos[i]->ii_Predicate != NIL)
			e->simple = false;
		opened[i++] = idx;
	}
	MemoryContextSwitchTo(old);
	list_free(oids);
	e->relid = RelationGetRelid(rel);
	return e;
}

/*
 * Open the indexes of the result relation rri for insertion, as
 * ExecOpenIndices() does (locks included), with their descriptions from
 * the cache.  Close them with ExecCloseIndices().
 */
void
audit_open_indices(ResultRelInfo *rri)
{
	Relation rel = rri->ri_RelationDesc;
	Oid relid = RelationGetRelid(rel);
	AuditIndexCacheEntry *e = NULL;
	Relation *descs;
	int i;

	rri->ri_NumIndices = 0;
	if (!RelationGetForm(rel)->relhasindex)
		return;
	for (i = 0; i < AUDIT_INDEX_CACHE_RELS; i++)
	{
		if (audit_index_cache[i].relid == relid)
			e = &audit_index_cache[i];
	}
	if (e != NULL && !e->simple)
	{
		ExecOpenIndices(rri, false);
		return;
	}
	if (e == NULL)
	{
		List *oids = RelationGetIndexList(rel);

		descs = palloc(sizeof(Relation) * Max(list_length(oids), 1));
		list_free(oids);
		e = audit_index_cache_build(rel, descs);
		if (!e->simple)
		{
			for (i = 0; i < e->nindexes; i++)
				index_close(descs[i], RowExclusiveLock);
			ExecOpenIndices(rri, false);
			return;
		}
	}
	else
	{
		descs = palloc(sizeof(Relation) * Max(e->nindexes, 1));
		for (i = 0; i < e->nindexes; i++)
			descs[i] = index_open(e->indexoids[i], RowExclusiveLock);
	}
	rri->ri_NumIndices = e->nindexes;
	rri->ri_IndexRelationDescs = descs;
	rri->ri_IndexRelationInfo =
		palloc(sizeof(IndexInfo *) * Max(e->nindexes, 1));
	memcpy(rri->ri_IndexRelationInfo, e->infos,
		   sizeof(IndexInfo *) * e->nindexes);
}
