/*-------------------------------------------------------------------------
 *
 * feedback.c
 *		learning.record_feedback(), and the SPI helpers of the area.
 *
 * Recording one feedback row is the application's hot path, so it is one
 * prepared INSERT kept for the life of the backend, run as the caller (who
 * needs INSERT on learning.feedback).  The histogram bookkeeping happens in
 * the statement trigger (histogram.c), so the batch form and COPY get it
 * too.  Arguments are checked here first so that a bad call gets an error
 * naming the argument rather than a constraint violation.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/learning/feedback.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "learning/learning.h"

PG_FUNCTION_INFO_V1(learning_record_feedback);

static SPIPlanPtr record_plan = NULL;

/*
 * Prepare a statement and keep its plan for the life of the backend.  The
 * caller is connected to SPI.  Plans are generic: the statements are written
 * so that the generic plan is the right one.  Data-changing statements must
 * be run without a row limit: a ModifyTable stopped early never fires its
 * AFTER STATEMENT triggers, and the histograms depend on one.
 */
SPIPlanPtr
learning_prepare(const char *query, int nargs, Oid *argtypes)
{
	SPIPlanPtr plan;
	int rc;

	plan = SPI_prepare_cursor(query, nargs, argtypes, CURSOR_OPT_GENERIC_PLAN);
	if (plan == NULL)
		opsdata_spi_failed(SPI_result, "prepare a learning statement");
	if ((rc = SPI_keepplan(plan)) != 0)
		opsdata_spi_failed(rc, "keep the plan of a learning statement");
	return plan;
}

/*
 * A score must be a number between 0 and 1.
 */
void
learning_check_score(const char *what, double score)
{
	if (isnan(score) || score < 0.0 || score > 1.0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("%s must be between 0 and 1, not %g", what, score)));
}

/*
 * learning.record_feedback(key, score, label, item_id, rating, given_by,
 * source, metadata) returns the new feedback_id.
 */
Datum
learning_record_feedback(PG_FUNCTION_ARGS)
{
	Oid types[8] = {TEXTOID, FLOAT8OID, BOOLOID, TEXTOID,
					INT2OID, TEXTOID,	TEXTOID, JSONBOID};
	Datum args[8];
	char nulls[8];
	bool isnull;
	Datum id;
	int rc;
	int i;

	if (PG_ARGISNULL(0))
		ereport(
			ERROR,
			(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
			 errmsg("feedback key must not be null"),
			 errhint(
				 "The key names what was decided: an intent, a model, a question type.")));
	if (!PG_ARGISNULL(1))
		learning_check_score("score", PG_GETARG_FLOAT8(1));

	for (i = 0; i < 8; i++)
	{
		nulls[i] = PG_ARGISNULL(i) ? 'n' : ' ';
		args[i] = PG_ARGISNULL(i) ? (Datum) 0 : PG_GETARG_DATUM(i);
	}

	opsdata_spi_connect(0);
	if (record_plan == NULL)
		record_plan = learning_prepare(
			"INSERT INTO learning.feedback (key, score, label, item_id, rating, given_by, source, metadata) "
			"VALUES ($1, $2, $3, $4, $5, $6, $7, COALESCE($8, '{}'::pg_catalog.jsonb)) "
			"RETURNING feedback_id",
			8, types);
	rc = SPI_execute_plan(record_plan, args, nulls, false, 0);
	if (rc != SPI_OK_INSERT_RETURNING)
		opsdata_spi_failed(rc, "write to learning.feedback");
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_TRIGGERED_ACTION_EXCEPTION),
				 errmsg("feedback was not recorded"),
				 errdetail("A trigger or rule on learning.feedback skipped "
						   "the row.")));
	id = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
					   &isnull);
	SPI_finish();
	PG_RETURN_DATUM(id);
}
