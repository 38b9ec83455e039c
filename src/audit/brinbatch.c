/*-------------------------------------------------------------------------
 *
 * brinbatch.c
 *		The index entries of a batch of audit entries, when the partition's
 *		indexes are all BRIN minmax indexes on one column.
 *
 * The partition of the current day of audit.entries has BRIN indexes only
 * (on ts and on entry_id, see indexer.c).  A BRIN minmax index keeps, per
 * range of heap blocks, the least and the greatest value of its column
 * (and whether any row has none): inserting a row widens the summary of
 * its block range, when that range is summarized, to take in its value.
 * The summary of a range after a batch of rows is therefore the same
 * whether every row of the batch is inserted into the index, or only, per
 * range, the row with the least value, the row with the greatest and the
 * rows without a value.  The writer inserts its rows in batches (the
 * entries of a transaction, or the thousands of the queue's drain) that
 * land on a few heap pages; here each index gets those few rows only.
 *
 * Used only when every index of the partition qualifies: BRIN, one key
 * column that is a plain column of type bigint or timestamptz (whose
 * datums compare as int64), the minmax operator class (its opcinfo
 * support function is brin_minmax_opcinfo), no predicate, and no
 * autosummarize (which is requested by the insertion of the first row of
 * a block range).  Anything else goes through ExecInsertIndexTuples(), row
 * by row.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/brinbatch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/brin.h"
#include "access/brin_internal.h"
#include "access/genam.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "nodes/execnodes.h"
#include "storage/itemptr.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

#include "audit/audit.h"

/* Does index i of rri qualify (see above)? */
static bool
audit_brin_minmax(ResultRelInfo *rri, int i)
{
	Relation index = rri->ri_IndexRelationDescs[i];
	IndexInfo *info = rri->ri_IndexRelationInfo[i];
	Oid type;

	if (index == NULL || info == NULL || index->rd_rel->relam != BRIN_AM_OID ||
		info->ii_NumIndexAttrs != 1 || info->ii_IndexAttrNumbers[0] <= 0 ||
		info->ii_Expressions != NIL || info->ii_Predicate != NIL ||
		BrinGetAutoSummarize(index))
		return false;
	type = TupleDescAttr(RelationGetDescr(rri->ri_RelationDesc),
						 info->ii_IndexAttrNumbers[0] - 1)
			   ->atttypid;
	if (type != INT8OID && type != TIMESTAMPTZOID)
		return false;
	return index_getprocid(index, 1, BRIN_PROCNUM_OPCINFO) ==
		   F_BRIN_MINMAX_OPCINFO;
}

/*
 * Whether the rows of a batch for rri can be indexed by
 * audit_brin_insert_batch(): every index of rri qualifies.
 */
bool
audit_brin_batch_ok(ResultRelInfo *rri)
{
	int i;

	for (i = 0; i < rri->ri_NumIndices; i++)
	{
		if (!audit_brin_minmax(rri, i))
			return false;
	}
	return true;
}

/* Insert the index entry of slot into index i of rri. */
static void
audit_brin_insert_one(ResultRelInfo *rri, int i, TupleTableSlot *slot,
					  Datum value, bool isnull)
{
	Relation heap = rri->ri_RelationDesc;

	(void) index_insert(rri->ri_IndexRelationDescs[i], &value, &isnull,
						&slot->tts_tid, heap, UNIQUE_CHECK_NO, false,
						rri->ri_IndexRelationInfo[i]);
}

/*
 * Insert the index entries of the n rows of slots (inserted into the heap
 * of rri, in that order) into the indexes of rri, which
 * audit_brin_batch_ok() accepted: per index and block range, the rows with
 * the least and the greatest value, and those without one.
 */
void
audit_brin_insert_batch(ResultRelInfo *rri, TupleTableSlot **slots, int n)
{
	int i;

	for (i = 0; i < rri->ri_NumIndices; i++)
	{
		Relation index = rri->ri_IndexRelationDescs[i];
		AttrNumber att = rri->ri_IndexRelationInfo[i]->ii_IndexAttrNumbers[0];
		BlockNumber per_range = BrinGetPagesPerRange(index);
		int first = 0;

		/*
		 * Runs of rows of one block range (the rows fill the heap's pages
		 * one after another, but a page the free space map gives may lie
		 * in another range): each run on its own.
		 */
		while (first < n)
		{
			BlockNumber range =
				ItemPointerGetBlockNumber(&slots[first]->tts_tid) / per_range;
			int lo = -1;
			int hi = -1;
			int64 lo_value = 0;
			int64 hi_value = 0;
			int j;

			for (j = first; j < n; j++)
			{
				bool isnull;
				Datum d;

				if (ItemPointerGetBlockNumber(&slots[j]->tts_tid) /
						per_range !=
					range)
					break;
				d = slot_getattr(slots[j], att, &isnull);
				if (isnull)
				{
					audit_brin_insert_one(rri, i, slots[j], d, true);
					continue;
				}
				if (lo < 0 || DatumGetInt64(d) < lo_value)
				{
					lo = j;
					lo_value = DatumGetInt64(d);
				}
				if (hi < 0 || DatumGetInt64(d) > hi_value)
				{
					hi = j;
					hi_value = DatumGetInt64(d);
				}
			}
			if (lo >= 0)
				audit_brin_insert_one(rri, i, slots[lo],
									  Int64GetDatum(lo_value), false);
			if (hi >= 0 && hi != lo)
				audit_brin_insert_one(rri, i, slots[hi],
									  Int64GetDatum(hi_value), false);
			first = j;
		}
	}
}
