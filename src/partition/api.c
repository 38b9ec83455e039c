/*-------------------------------------------------------------------------
 *
 * api.c
 *		SQL entry points of partition maintenance.
 *
 * These functions are the role boundary of the area.  They are executable
 * by opsdata_admin only (GRANTs in partition.sql), and act as the extension
 * owner (the owner of the function itself) to write opsdata.partitions, so
 * that no role can change the table directly:
 *
 *	- manage_partitions() and unmanage_partitions() first check that the
 *	  caller owns the table (or is a member of its owner role), as ALTER
 *	  TABLE would; a set is only ever maintained on its owner's request.
 *	  manage_partitions() then makes the set's first partitions in the
 *	  caller's transaction, with the owner's privileges (exec.c).
 *	- run_maintenance() runs a pass now: it starts a job worker for the
 *	  job entry "partition maintenance" (pass.c) connected as the extension
 *	  owner, waits until the pass has committed its results, and returns
 *	  the 'run' rows the pass wrote to opsdata.partition_log.  The pass runs
 *	  in the worker's own transactions, so it neither sees nor depends on
 *	  what the caller's transaction has not committed, and none of its
 *	  locks is held until the caller commits.  The rows are read with a
 *	  fresh snapshot, so that a caller in a REPEATABLE READ transaction
 *	  sees them too.
 *
 * The extension owner's rights are used in a privileged region
 * (core/privileged.h): search_path pinned, a security-restricted operation,
 * the user restored whether the body succeeds or fails.  run_maintenance()
 * checks that a set is managed with the caller's rights.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/partition/api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xlog.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "core/opsdata.h"
#include "core/privileged.h"
#include "partition/partition.h"

PG_FUNCTION_INFO_V1(partition_manage);
PG_FUNCTION_INFO_V1(partition_unmanage);
PG_FUNCTION_INFO_V1(partition_run_maintenance);

#define PARTITION_RESULT_COLS 7

/*
 * The owner of the called function: the extension owner, whose rights the
 * entry points use past their own checks.
 */
static Oid
partition_function_owner(FunctionCallInfo fcinfo)
{
	HeapTuple tuple;
	Oid owner;

	tuple = SearchSysCache1(PROCOID, ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	if (!HeapTupleIsValid(tuple))
		elog(ERROR, "cache lookup failed for function %u",
			 fcinfo->flinfo->fn_oid);
	owner = ((Form_pg_proc) GETSTRUCT(tuple))->proowner;
	ReleaseSysCache(tuple);
	return owner;
}

/*
 * The qualified name of a relation, or its OID when it does not exist.
 */
static char *
partition_rel_name(Oid relid)
{
	char *name = get_rel_name(relid);

	if (name == NULL)
		return psprintf("%u", relid);
	return quote_qualified_identifier(
		get_namespace_name(get_rel_namespace(relid)), name);
}

/*
 * Checks that parent exists and that the current user owns it; returns its
 * owner.
 */
static Oid
partition_check_owner(Oid parent)
{
	Oid owner = opsdata_table_owner(parent);

	if (!opsdata_class_ownercheck(parent, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER,
					   get_relkind_objtype(get_rel_relkind(parent)),
					   get_rel_name(parent));
	return owner;
}

/* What partition_manage_as_owner() needs and returns. */
typedef struct PartitionManage
{
	FunctionCallInfo fcinfo;
	Oid parent;
	Oid owner; /* of the table */
	int made;
} PartitionManage;

/*
 * The body of manage_partitions(), run as the extension owner: record the
 * set, then make its partitions as the table's owner.
 */
static void
partition_manage_as_owner(void *arg)
{
	PartitionManage *manage = (PartitionManage *) arg;
	FunctionCallInfo fcinfo = manage->fcinfo;
	Oid argtypes[8] = {REGCLASSOID, NAMEOID, TEXTOID, INT4OID,
					   TEXTOID,		TEXTOID, NAMEOID, TEXTOID};
	Datum values[8];
	char nulls[8];
	char *start_from =
		PG_ARGISNULL(7) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(7));
	char *parent_name;
	MemoryContext cxt = CurrentMemoryContext;
	PartitionTiming timing;
	List *steps;
	List *work = NIL;
	ListCell *lc;
	ErrorData *edata;
	PartitionStepStatus status;
	int rc;
	int i;

	for (i = 0; i < 8; i++)
	{
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
		values[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
	}
	opsdata_spi_connect(0);
	rc = SPI_execute_with_args(
		"SELECT FROM opsdata._partition_register($1, $2, $3, $4, $5, $6, $7, $8, NULL, false)",
		8, argtypes, values, nulls, false, 0);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "record the partition set");
	partition_read_timing(&timing);
	steps = partition_plan(manage->parent, start_from, false, cxt);
	SPI_finish();

	parent_name = partition_rel_name(manage->parent);
	foreach (lc, steps)
	{
		PartitionStep *step = (PartitionStep *) lfirst(lc);

		if (strcmp(step->action, "note") != 0)
			work = lappend(work, step);
	}
	status = partition_exec_batch(work, manage->owner, parent_name, &timing,
								  &edata);
	if (status == PARTITION_STEP_SKIPPED)
		ereport(
			ERROR,
			(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
			 errmsg("could not make the partitions of \"%s\"", parent_name),
			 errdetail("%s", edata->message),
			 errhint(
				 "Another transaction holds a conflicting lock on the table; try again when it ends.")));
	if (status == PARTITION_STEP_FAILED)
		ReThrowError(edata);
	manage->made = list_length(work);
}

/*
 * opsdata.manage_partitions(parent, control_column, part_interval, premake,
 * retention, retention_mode, archive_schema, start_from) records the set
 * (or its new settings) and makes its partitions from the current one (or
 * start_from) to premake ahead; returns how many it made.  Rows of the
 * default partition that belong to these partitions are moved into them.
 */
Datum
partition_manage(PG_FUNCTION_ARGS)
{
	PartitionManage manage;

	if (PG_ARGISNULL(0))
		ereport(ERROR, (errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						errmsg("parent table must not be null")));
	memset(&manage, 0, sizeof(manage));
	manage.fcinfo = fcinfo;
	manage.parent = PG_GETARG_OID(0);
	manage.owner = partition_check_owner(manage.parent);
	opsdata_run_as(partition_function_owner(fcinfo), partition_manage_as_owner,
				   &manage);
	PG_RETURN_INT32(manage.made);
}

/* What partition_unmanage_as_owner() needs and returns. */
typedef struct PartitionUnmanage
{
	Oid parent;
	bool found;
} PartitionUnmanage;

/* The body of unmanage_partitions(), run as the extension owner. */
static void
partition_unmanage_as_owner(void *arg)
{
	PartitionUnmanage *unmanage = (PartitionUnmanage *) arg;
	Oid argtypes[1] = {REGCLASSOID};
	Datum values[1];
	int rc;

	values[0] = ObjectIdGetDatum(unmanage->parent);
	opsdata_spi_connect(0);
	rc = SPI_execute_with_args(
		"SELECT p.builtin FROM opsdata.partitions p"
		" WHERE p.parent OPERATOR(pg_catalog.=) $1 FOR UPDATE",
		1, argtypes, values, NULL, false, 1);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "read opsdata.partitions");
	if (SPI_processed == 1)
	{
		bool isnull;

		if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
									   SPI_tuptable->tupdesc, 1, &isnull)))
			ereport(
				ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("\"%s\" is a built-in partition set",
						partition_rel_name(unmanage->parent)),
				 errdetail("pg_opsdata keeps its own tables partitioned.")));
		rc = SPI_execute_with_args("DELETE FROM opsdata.partitions p"
								   " WHERE p.parent OPERATOR(pg_catalog.=) $1",
								   1, argtypes, values, NULL, false, 0);
		if (rc != SPI_OK_DELETE)
			opsdata_spi_failed(rc, "delete from opsdata.partitions");
		unmanage->found = true;
	}
	SPI_finish();
}

/*
 * opsdata.unmanage_partitions(parent) stops maintaining a set; returns
 * whether it was managed.  Built-in sets cannot be unmanaged.
 */
Datum
partition_unmanage(PG_FUNCTION_ARGS)
{
	PartitionUnmanage unmanage;

	memset(&unmanage, 0, sizeof(unmanage));
	unmanage.parent = PG_GETARG_OID(0);
	(void) partition_check_owner(unmanage.parent);
	opsdata_run_as(partition_function_owner(fcinfo),
				   partition_unmanage_as_owner, &unmanage);
	PG_RETURN_BOOL(unmanage.found);
}

/* What partition_read_results_as_owner() needs. */
typedef struct PartitionResults
{
	ReturnSetInfo *rsinfo;
	TimestampTz pass;
} PartitionResults;

/*
 * Returns the 'run' rows of a pass, in the order the pass wrote them, as
 * the extension owner, with a snapshot taken now: the pass committed them
 * after the caller's transaction began.
 */
static void
partition_read_results_as_owner(void *arg)
{
	PartitionResults *results = (PartitionResults *) arg;
	Oid argtypes[1] = {TIMESTAMPTZOID};
	Datum args[1];
	SPIPlanPtr plan;
	uint64 i;
	int rc;

	opsdata_spi_connect(0);
	plan = SPI_prepare(
		"SELECT CASE WHEN l.parent OPERATOR(pg_catalog.~) '^[0-9]+$'"
		"            THEN l.parent::pg_catalog.oid"
		"            ELSE pg_catalog.to_regclass(l.parent)::pg_catalog.oid END,"
		"       l.status, l.created, l.moved, l.detached, l.dropped, l.detail"
		"  FROM opsdata.partition_log l"
		" WHERE l.logged_at OPERATOR(pg_catalog.>=) $1"
		"   AND l.pass_started OPERATOR(pg_catalog.=) $1"
		"   AND l.action OPERATOR(pg_catalog.=) 'run'"
		" ORDER BY l.logged_at",
		1, argtypes);
	if (plan == NULL)
		opsdata_spi_failed(SPI_result, "read opsdata.partition_log");
	args[0] = TimestampTzGetDatum(results->pass);
	rc = SPI_execute_snapshot(plan, args, NULL, GetLatestSnapshot(),
							  InvalidSnapshot, true, false, 0);
	if (rc != SPI_OK_SELECT)
		opsdata_spi_failed(rc, "read opsdata.partition_log");
	for (i = 0; i < SPI_processed; i++)
	{
		Datum values[PARTITION_RESULT_COLS];
		bool nulls[PARTITION_RESULT_COLS];
		int col;

		for (col = 0; col < PARTITION_RESULT_COLS; col++)
			values[col] =
				SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
							  col + 1, &nulls[col]);
		/* Copied by the tuplestore, in its own memory. */
		tuplestore_putvalues(results->rsinfo->setResult,
							 results->rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
}

/*
 * opsdata.run_maintenance(parent regclass DEFAULT NULL) runs a maintenance
 * pass over one set or all of them now, in a job worker, and returns one
 * row per set: what was made, moved, detached and dropped, and the set's
 * status.  When another pass is running, returns one row saying so.
 */
Datum
partition_run_maintenance(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid parent = PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0);
	Oid ext_owner = partition_function_owner(fcinfo);
	PartitionResults results;
	int64 result = 0;

	if (RecoveryInProgress())
		ereport(
			ERROR,
			(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
			 errmsg("partition maintenance cannot run during recovery"),
			 errhint(
				 "Partitions are maintained on the primary and reach standbys by replication.")));

	/* What a pass did is read from rows the objects of 0.1 cannot hold. */
	if (!opsdata_schema_at_least("0.2"))
		ereport(
			ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg(
				 "opsdata.run_maintenance() needs the objects of pg_opsdata 0.2"),
			 errdetail(
				 "The objects of pg_opsdata in this database are older; scheduled maintenance goes on meanwhile."),
			 errhint(
				 "Run ALTER EXTENSION pg_opsdata UPDATE in this database.")));

	InitMaterializedSRF(fcinfo, 0);

	if (OidIsValid(parent))
	{
		Oid argtypes[1] = {REGCLASSOID};
		Datum values[1];
		int rc;

		values[0] = ObjectIdGetDatum(parent);
		opsdata_spi_connect(0);
		rc = SPI_execute_with_args("SELECT FROM opsdata.partitions p"
								   " WHERE p.parent OPERATOR(pg_catalog.=) $1",
								   1, argtypes, values, NULL, true, 1);
		if (rc != SPI_OK_SELECT)
			opsdata_spi_failed(rc, "read opsdata.partitions");
		if (SPI_processed == 0)
		{
			ereport(
				ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("relation \"%s\" is not a managed partition set",
						partition_rel_name(parent)),
				 errhint(
					 "Put it under management with opsdata.manage_partitions().")));
		}
		SPI_finish();
	}

	switch (worker_run_entry(&partition_pass_entry, ObjectIdGetDatum(parent),
							 ext_owner, true, &result))
	{
		case WORKER_ENTRY_NO_SLOT:
			ereport(
				ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start a partition maintenance worker"),
				 errdetail("Every background worker slot is in use."),
				 errhint(
					 "Consider increasing the configuration parameter \"%s\".",
					 "max_worker_processes")));
			break;
		case WORKER_ENTRY_EXITED:
		case WORKER_ENTRY_STARTED:
			ereport(
				ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg(
					 "partition maintenance worker exited before finishing"),
				 errhint(
					 "The server log tells why; what it did until then is in opsdata.partition_log.")));
			break;
		case WORKER_ENTRY_DONE:
			break;
	}

	if (result == PARTITION_PASS_BUSY)
	{
		Datum values[PARTITION_RESULT_COLS] = {0};
		bool nulls[PARTITION_RESULT_COLS] = {true,	false, false, false,
											 false, false, false};

		values[1] = CStringGetTextDatum("skipped");
		values[2] = Int32GetDatum(0);
		values[3] = Int64GetDatum(0);
		values[4] = Int32GetDatum(0);
		values[5] = Int32GetDatum(0);
		values[6] = CStringGetTextDatum(
			"another partition maintenance pass is running");
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values,
							 nulls);
		return (Datum) 0;
	}

	results.rsinfo = rsinfo;
	results.pass = (TimestampTz) result;
	opsdata_run_as(ext_owner, partition_read_results_as_owner, &results);
	return (Datum) 0;
}
