/*-------------------------------------------------------------------------
 *
 * citus.c
 *		DROP EXTENSION pg_opsdata once Citus distributes the tables of
 *		metrics.
 *
 * opsdata.distribute() (distribute.sql) makes Citus keep shards of the
 * tables of metrics in the schema "metrics" on every node.  The shards
 * are not members of the extension, so DROP EXTENSION would stop at them
 * ("other objects depend on it").  Before such a DROP EXTENSION reaches
 * the other handlers and Citus, this handler makes Citus forget those
 * tables (opsdata._citus_forget_all(): their shards and metadata go, as
 * when Citus drops a table), in the same transaction, so that the drop
 * then removes plain local tables and Citus sends it on to the workers.
 * It does so only once the role may drop the extension (it owns it, or
 * is a superuser): the same ownership check as DROP EXTENSION's is made
 * first, and refuses as it would, so that a role that may not drop the
 * extension cannot make Citus forget its tables either.  Should the drop
 * fail after that, the transaction takes the forgetting back with it.
 * Nothing happens without Citus or while the tables are local
 * (core/routing.c).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/citus.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"

#include "core/compat.h"
#include "core/opsdata.h"
#include "metrics/metrics.h"

/*
 * Does the statement drop pg_opsdata, which is installed here?  Returns
 * its OID, or InvalidOid.
 */
static Oid
citus_drops_opsdata(Node *stmt)
{
	DropStmt *drop;
	ListCell *lc;

	if (!IsA(stmt, DropStmt))
		return InvalidOid;
	drop = (DropStmt *) stmt;
	if (drop->removeType != OBJECT_EXTENSION)
		return InvalidOid;
	foreach (lc, drop->objects)
	{
		if (strcmp(strVal(lfirst(lc)), OPSDATA_NAME) == 0)
			return get_extension_oid(OPSDATA_NAME, true);
	}
	return InvalidOid;
}

static void
metrics_citus_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
							 bool readOnlyTree, ProcessUtilityContext context,
							 ParamListInfo params, QueryEnvironment *queryEnv,
							 DestReceiver *dest, QueryCompletion *qc)
{
	Oid extension = citus_drops_opsdata(pstmt->utilityStmt);
	Oid points;

	if (OidIsValid(extension) &&
		OidIsValid(points = get_relname_relid(
					   "points", get_namespace_oid("metrics", true))) &&
		opsdata_citus_table(points))
	{
		int rc;

		/* DROP EXTENSION's own check, before anything is forgotten. */
		if (!opsdata_extension_ownercheck(extension, GetUserId()))
			aclcheck_error(ACLCHECK_NOT_OWNER, OBJECT_EXTENSION, OPSDATA_NAME);

		opsdata_spi_connect(0);
		rc = SPI_execute("SELECT opsdata._citus_forget_all()", false, 0);
		if (rc != SPI_OK_SELECT)
			opsdata_spi_failed(rc,
							   "remove the shards of the tables of metrics");
		SPI_finish();
	}
	opsdata_utility_next(pstmt, queryString, readOnlyTree, context, params,
						 queryEnv, dest, qc);
}

/*
 * Register the utility handler with the core; from metrics_init() while
 * preloading.
 */
void
metrics_citus_init(void)
{
	opsdata_register_utility(OPSDATA_UTILITY_METRICS_CITUS,
							 metrics_citus_ProcessUtility);
}
