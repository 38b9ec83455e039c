/*-------------------------------------------------------------------------
 *
 * health.c
 *		The core's rows of opsdata.health() and the preload check.
 *
 * opsdata.health() (src/core/finish.sql) is the union of one row source per
 * area; this file provides the core's: whether the server is a primary or
 * a hot standby, whether the library was preloaded and what shared memory
 * it holds, plus the library's own version so that
 * SQL can compare it with the installed extension version.  The row
 * builder opsdata_health_row() is shared with the other areas.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/health.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/tuplestore.h"

#include "core/opsdata.h"

PG_FUNCTION_INFO_V1(opsdata_health_core);
PG_FUNCTION_INFO_V1(opsdata_library_version);
PG_FUNCTION_INFO_V1(opsdata_warn_if_not_preloaded);

#define OPSDATA_PRELOAD_HINT                                                  \
	"Add pg_opsdata to shared_preload_libraries in postgresql.conf and restart the server."

/*
 * Append a (component, status, detail) row to the result of a health
 * function that called InitMaterializedSRF().  Every area's _health_*()
 * function uses it.
 */
void
opsdata_health_row(ReturnSetInfo *rsinfo, const char *component,
				   const char *status, const char *detail)
{
	Datum values[3];
	bool nulls[3] = {false, false, false};

	values[0] = CStringGetTextDatum(component);
	values[1] = CStringGetTextDatum(status);
	values[2] = CStringGetTextDatum(detail);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * opsdata._health_core() returns (component, status, detail) rows for the
 * library itself.
 */
Datum
opsdata_health_core(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);

	if (RecoveryInProgress())
		opsdata_health_row(
			rsinfo, "server", "ok",
			"This server is a hot standby: pg_opsdata's workers wait and nothing is written here until it is promoted, and statements run here are not audited; reads see the primary's data as replayed.");
	else
		opsdata_health_row(rsinfo, "server", "ok",
						   "This server is a primary: it accepts writes.");

	if (opsdata_preloaded)
	{
		opsdata_health_row(
			rsinfo, "preload", "ok",
			"pg_opsdata is loaded through shared_preload_libraries.");
		opsdata_health_row(rsinfo, "shared memory", "ok",
						   psprintf("%d parts, %zu bytes.",
									opsdata_shmem_parts(),
									opsdata_shmem_total()));
	}
	else
	{
		opsdata_health_row(
			rsinfo, "preload", "warning",
			"pg_opsdata is not in shared_preload_libraries: audit capture, "
			"the audit queue and the background workers are off. " OPSDATA_PRELOAD_HINT);
		opsdata_health_row(
			rsinfo, "shared memory", "off",
			"No shared memory without shared_preload_libraries.");
	}

	return (Datum) 0;
}

/*
 * opsdata._library_version() returns the version of the loaded library.
 */
Datum
opsdata_library_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(OPSDATA_VERSION));
}

/*
 * opsdata._warn_if_not_preloaded() raises a WARNING when the library was
 * not preloaded.  CREATE EXTENSION calls it so that the user learns at once
 * what is off and how to fix it.
 */
Datum
opsdata_warn_if_not_preloaded(PG_FUNCTION_ARGS)
{
	if (!opsdata_preloaded)
		ereport(
			WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg(
				 "pg_opsdata is not loaded through shared_preload_libraries"),
			 errdetail(
				 "Audit capture, the audit queue and the background workers stay off until the server is restarted with it; the SQL functions work."),
			 errhint(OPSDATA_PRELOAD_HINT)));
	PG_RETURN_BOOL(opsdata_preloaded);
}
