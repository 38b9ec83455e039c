/*-------------------------------------------------------------------------
 *
 * version.c
 *		Whether the objects of pg_opsdata installed in a database are
 *		recent enough for the loaded library.
 *
 * The library is built for the objects of its own version (OPSDATA_VERSION),
 * and works with those of every version back to OPSDATA_OLDEST_SCHEMA: it
 * keeps each C symbol an older install script names, and its C code copes
 * with each shape the extension's tables had since.  A later change that
 * the C code cannot cope with moves OPSDATA_OLDEST_SCHEMA up to the version
 * that brings it.  A database whose objects are older than that is
 * refused clearly rather than failing halfway or losing data: audited
 * statements, audit writes and the scheduler's jobs stop with an error
 * whose hint is to run ALTER EXTENSION pg_opsdata UPDATE, and
 * opsdata.health() says so (its "extension" row).
 *
 * The installed version is read from pg_extension.  Once found recent
 * enough it is remembered for the rest of the session (an update only moves
 * it forward); a version found too old is read again at every check, so
 * that the update is seen at once.  A database without the extension, and
 * the extension's own install and update scripts, are never refused.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/version.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/rel.h"

#include "core/opsdata.h"

PG_FUNCTION_INFO_V1(opsdata_oldest_schema);

/* What the last check found in this session's database. */
static bool opsdata_schema_ok = false;
static bool opsdata_schema_old = false;

/*
 * Compare two versions made of dot-separated numbers ("0.2", "1.10"):
 * negative, zero or positive as a is older than, the same as or newer than
 * b.  A part that is not a number counts as 0.
 */
int
opsdata_version_cmp(const char *a, const char *b)
{
	while (*a != '\0' || *b != '\0')
	{
		long x = strtol(a, NULL, 10);
		long y = strtol(b, NULL, 10);

		if (x != y)
			return x < y ? -1 : 1;
		while (*a != '\0' && *a != '.')
			a++;
		while (*b != '\0' && *b != '.')
			b++;
		if (*a == '.')
			a++;
		if (*b == '.')
			b++;
	}
	return 0;
}

/*
 * The installed version of pg_opsdata in the current database, palloc'd,
 * or NULL without the extension.  Caller is in a transaction.
 */
static char *
opsdata_installed_version(void)
{
	Relation rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple tuple;
	char *version = NULL;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum(OPSDATA_NAME));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tuple = systable_getnext(scan);
	if (HeapTupleIsValid(tuple))
	{
		bool isnull;
		Datum d = heap_getattr(tuple, Anum_pg_extension_extversion,
							   RelationGetDescr(rel), &isnull);

		if (!isnull)
			version = text_to_cstring(DatumGetTextPP(d));
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return version;
}

/*
 * Raise an ERROR when the objects of pg_opsdata in the current database
 * are older than this library can work with (OPSDATA_OLDEST_SCHEMA).
 * Cheap once they were found recent enough.  Caller is in a transaction.
 */
void
opsdata_check_schema(void)
{
	char *installed;

	if (opsdata_schema_ok || creating_extension)
		return;
	installed = opsdata_installed_version();
	if (installed == NULL ||
		opsdata_version_cmp(installed, OPSDATA_OLDEST_SCHEMA) >= 0)
	{
		opsdata_schema_ok = installed != NULL;
		opsdata_schema_old = false;
		return;
	}
	opsdata_schema_old = true;
	ereport(
		ERROR,
		(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
		 errmsg(
			 "pg_opsdata in database \"%s\" is version %s, older than this library (%s) can work with",
			 get_database_name(MyDatabaseId), installed, OPSDATA_VERSION),
		 errdetail(
			 "The library works with the objects of pg_opsdata %s or later; until they are updated, audited statements and the jobs of this database are refused.",
			 OPSDATA_OLDEST_SCHEMA),
		 errhint("Run ALTER EXTENSION pg_opsdata UPDATE in this database.")));
}

/*
 * Whether the objects of pg_opsdata in the current database are of version
 * at least version: for code whose statements name objects that version
 * brought, so that it can write what older objects hold instead.  Caller
 * is in a transaction.
 */
bool
opsdata_schema_at_least(const char *version)
{
	char *installed = opsdata_installed_version();

	return installed == NULL || opsdata_version_cmp(installed, version) >= 0;
}

/*
 * Whether the last check refused this database; no catalog access, for
 * code that runs while an error is being reported.
 */
bool
opsdata_schema_refused(void)
{
	return opsdata_schema_old;
}

/*
 * opsdata._oldest_schema() returns text: the oldest version of the
 * extension's objects the loaded library works with, for health.
 */
Datum
opsdata_oldest_schema(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(OPSDATA_OLDEST_SCHEMA));
}
