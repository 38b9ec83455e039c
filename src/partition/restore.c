/*-------------------------------------------------------------------------
 *
 * restore.c
 *		Restoring partitions that maintenance made for pg_opsdata's own
 *		partitioned tables.
 *
 * audit.entries and metrics.points belong to the extension; their daily
 * partitions, made at run time, do not, so pg_dump dumps them as ordinary
 * tables: CREATE TABLE, ALTER TABLE ONLY parent ATTACH PARTITION (pre-data),
 * then each partition's primary key and indexes, and ALTER INDEX ... ATTACH
 * PARTITION (post-data).  For a table the user created, the parent's
 * indexes are themselves restored in post-data, after the partitions are
 * attached.  For an extension's table they already exist, made by CREATE
 * EXTENSION, so ATTACH PARTITION clones them onto the partition at once,
 * under the very names pg_dump uses, and the later ADD CONSTRAINT ...
 * PRIMARY KEY and CREATE INDEX fail ("multiple primary keys", "already
 * exists") although the restored partition is exactly as dumped.
 *
 * This ProcessUtility handler skips, with a NOTICE, exactly those statements:
 * a CREATE INDEX, or an ALTER TABLE ... ADD CONSTRAINT ... PRIMARY KEY or
 * UNIQUE, naming an index or constraint that already exists on a partition
 * of one of pg_opsdata's tables and is already the partition of the
 * parent's index or constraint.  Any other statement, and the same
 * statement on any other table, goes through unchanged; a skipped one does
 * not reach the handlers after this one nor the hooks of the libraries
 * loaded before pg_opsdata (src/core/hooks.c).  Registered only when the
 * library is preloaded.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/partition/restore.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "core/opsdata.h"
#include "partition/partition.h"

/*
 * The partition named by rv, when it is a partition of a table of
 * pg_opsdata; InvalidOid otherwise.  Takes no lock.
 */
static Oid
partition_of_extension_table(RangeVar *rv)
{
	Oid relid;
	Oid parent;
	Oid extension;

	if (rv == NULL)
		return InvalidOid;
	relid = RangeVarGetRelid(rv, NoLock, true);
	if (!OidIsValid(relid) || !get_rel_relispartition(relid))
		return InvalidOid;
	parent = get_partition_parent(relid, true);
	extension = get_extension_oid(OPSDATA_NAME, true);
	if (!OidIsValid(parent) || !OidIsValid(extension) ||
		getExtensionOfObject(RelationRelationId, parent) != extension)
		return InvalidOid;
	return relid;
}

/*
 * True when stmt would make again an index or constraint that ATTACH
 * PARTITION already cloned onto a partition of a pg_opsdata table.
 */
static bool
partition_restore_duplicate(Node *stmt, char **what)
{
	if (IsA(stmt, IndexStmt))
	{
		IndexStmt *index = (IndexStmt *) stmt;
		Oid relid;
		Oid indexid;

		if (index->idxname == NULL || index->concurrent)
			return false;
		relid = partition_of_extension_table(index->relation);
		if (!OidIsValid(relid))
			return false;
		indexid = get_relname_relid(index->idxname, get_rel_namespace(relid));
		if (!OidIsValid(indexid) ||
			get_rel_relkind(indexid) != RELKIND_INDEX ||
			!get_rel_relispartition(indexid))
			return false;
		*what = psprintf("index \"%s\"", index->idxname);
		return true;
	}
	if (IsA(stmt, AlterTableStmt))
	{
		AlterTableStmt *alter = (AlterTableStmt *) stmt;
		AlterTableCmd *cmd;
		Constraint *constraint;
		Oid relid;
		Oid conid;
		HeapTuple tuple;
		bool inherited;

		if (list_length(alter->cmds) != 1)
			return false;
		cmd = linitial_node(AlterTableCmd, alter->cmds);
		if (cmd->subtype != AT_AddConstraint || !IsA(cmd->def, Constraint))
			return false;
		constraint = (Constraint *) cmd->def;
		if ((constraint->contype != CONSTR_PRIMARY &&
			 constraint->contype != CONSTR_UNIQUE) ||
			constraint->conname == NULL)
			return false;
		relid = partition_of_extension_table(alter->relation);
		if (!OidIsValid(relid))
			return false;
		conid = get_relation_constraint_oid(relid, constraint->conname, true);
		if (!OidIsValid(conid))
			return false;
		tuple = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conid));
		if (!HeapTupleIsValid(tuple))
			return false;
		inherited =
			OidIsValid(((Form_pg_constraint) GETSTRUCT(tuple))->conparentid);
		ReleaseSysCache(tuple);
		if (!inherited)
			return false;
		*what = psprintf("constraint \"%s\"", constraint->conname);
		return true;
	}
	return false;
}

static void
partition_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	char *what = NULL;

	if (partition_restore_duplicate(pstmt->utilityStmt, &what))
	{
		ereport(
			NOTICE,
			(errmsg("%s already exists, skipping", what),
			 errdetail(
				 "The partition was attached to a table of pg_opsdata, which gave it the parent's indexes and keys.")));
		return;
	}
	opsdata_utility_next(pstmt, queryString, readOnlyTree, context, params,
						 queryEnv, dest, qc);
}

/*
 * Registers the utility handler with the core (src/core/hooks.c); called
 * from partition_init() when preloaded.
 */
void
partition_restore_init(void)
{
	opsdata_register_utility(OPSDATA_UTILITY_PARTITION,
							 partition_ProcessUtility);
}
