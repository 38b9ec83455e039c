/*-------------------------------------------------------------------------
 *
 * layout.c
 *		The partitions of a table and their range bounds, read from the
 *		catalog.
 *
 * opsdata._partition_layout(parent) returns one row per partition listed in
 * pg_inherits (detach-pending ones included and flagged), with the bounds
 * of a single-column range partition as typed values: timestamptz for time
 * keys (a date is midnight UTC of that day, so that plans never depend on
 * the session's TimeZone), bigint for integer keys, NULL for MINVALUE and
 * MAXVALUE.  Reading relpartbound directly is several times cheaper than
 * deparsing it with pg_get_expr() and parsing the text back, which matters
 * for sets of hundreds of partitions maintained every few minutes.
 *
 * No lock is taken on the parent or its partitions: the result is a
 * snapshot of the catalog that DDL run later revalidates.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/partition/layout.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "funcapi.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/fmgroids.h"
#include "utils/syscache.h"
#include "utils/tuplestore.h"

#include "core/opsdata.h"
#include "partition/partition.h"

PG_FUNCTION_INFO_V1(partition_layout);

#define PARTITION_LAYOUT_COLS 7

/*
 * Stores one bound into values[]/nulls[] at the time and id positions.
 * Returns false when the bound's type is not one a managed set can have.
 */
static bool
partition_bound_value(PartitionRangeDatum *prd, Datum *time, bool *time_null,
					  Datum *id, bool *id_null)
{
	Const *c;

	*time_null = true;
	*id_null = true;
	if (prd->kind != PARTITION_RANGE_DATUM_VALUE)
		return true;
	c = castNode(Const, prd->value);
	if (c->constisnull)
		return true;
	switch (c->consttype)
	{
		case TIMESTAMPTZOID:
			*time = c->constvalue;
			*time_null = false;
			return true;
		case DATEOID:
		{
			DateADT d = DatumGetDateADT(c->constvalue);

			if (DATE_IS_NOBEGIN(d))
				*time = TimestampTzGetDatum(DT_NOBEGIN);
			else if (DATE_IS_NOEND(d))
				*time = TimestampTzGetDatum(DT_NOEND);
			else
				*time = TimestampTzGetDatum((TimestampTz) d * USECS_PER_DAY);
			*time_null = false;
			return true;
		}
		case INT2OID:
			*id = Int64GetDatum((int64) DatumGetInt16(c->constvalue));
			*id_null = false;
			return true;
		case INT4OID:
			*id = Int64GetDatum((int64) DatumGetInt32(c->constvalue));
			*id_null = false;
			return true;
		case INT8OID:
			*id = c->constvalue;
			*id_null = false;
			return true;
		default:
			return false;
	}
}

/*
 * opsdata._partition_layout(parent regclass) returns (partition, is_default,
 * detach_pending, lower_time, upper_time, lower_id, upper_id) for every
 * partition of parent.  Partitions whose bounds are not a single value of a
 * supported type come back with NULL bounds.
 */
Datum
partition_layout(PG_FUNCTION_ARGS)
{
	Oid parent = PG_GETARG_OID(0);
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation inherits;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple tuple;

	InitMaterializedSRF(fcinfo, 0);

	inherits = table_open(InheritsRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_inherits_inhparent, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(parent));
	scan = systable_beginscan(inherits, InheritsParentIndexId, true, NULL, 1,
							  &key);
	while (HeapTupleIsValid(tuple = systable_getnext(scan)))
	{
		Form_pg_inherits inh = (Form_pg_inherits) GETSTRUCT(tuple);
		Datum values[PARTITION_LAYOUT_COLS];
		bool nulls[PARTITION_LAYOUT_COLS];
		HeapTuple reltup;
		Datum bound;
		bool isnull;
		PartitionBoundSpec *spec;

		CHECK_FOR_INTERRUPTS();
		reltup = SearchSysCache1(RELOID, ObjectIdGetDatum(inh->inhrelid));
		if (!HeapTupleIsValid(reltup))
			continue;
		bound = SysCacheGetAttr(RELOID, reltup, Anum_pg_class_relpartbound,
								&isnull);
		if (isnull)
		{
			ReleaseSysCache(reltup);
			continue;
		}
		spec = castNode(PartitionBoundSpec,
						stringToNode(TextDatumGetCString(bound)));
		ReleaseSysCache(reltup);

		memset(nulls, true, sizeof(nulls));
		values[0] = ObjectIdGetDatum(inh->inhrelid);
		nulls[0] = false;
		values[1] = BoolGetDatum(spec->is_default);
		nulls[1] = false;
		values[2] = BoolGetDatum(inh->inhdetachpending);
		nulls[2] = false;
		if (!spec->is_default && spec->strategy == PARTITION_STRATEGY_RANGE &&
			list_length(spec->lowerdatums) == 1 &&
			list_length(spec->upperdatums) == 1)
		{
			PartitionRangeDatum *lower =
				linitial_node(PartitionRangeDatum, spec->lowerdatums);
			PartitionRangeDatum *upper =
				linitial_node(PartitionRangeDatum, spec->upperdatums);

			if (!partition_bound_value(lower, &values[3], &nulls[3],
									   &values[5], &nulls[5]) ||
				!partition_bound_value(upper, &values[4], &nulls[4],
									   &values[6], &nulls[6]))
			{
				nulls[3] = nulls[4] = nulls[5] = nulls[6] = true;
			}
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values,
							 nulls);
	}
	systable_endscan(scan);
	table_close(inherits, AccessShareLock);

	return (Datum) 0;
}
