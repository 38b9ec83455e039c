/*-------------------------------------------------------------------------
 *
 * spi.c
 *		One wording for SPI calls that fail.
 *
 * An SPI call whose statement fails raises that statement's error itself.
 * What is left for pg_opsdata to report is an SPI call that returned a
 * result code other than the one its caller expects (a negative
 * SPI_ERROR_* code, or another SPI_OK_* code): a defect of pg_opsdata, or
 * of an object of the extension changed by hand.  Every area reports it
 * through opsdata_spi_failed(), with what it was doing and the code SPI
 * returned, under SQLSTATE XX000 (internal_error).  opsdata_spi_connect()
 * connects with that check.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/spi.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"

#include "core/opsdata.h"

/*
 * Raise the error for an SPI call that returned rc where the caller
 * expected another code.  what is a verb phrase: "read opsdata.jobs"
 * gives "pg_opsdata could not read opsdata.jobs: SPI_ERROR_...".
 */
void
opsdata_spi_failed(int rc, const char *what)
{
	ereport(ERROR, (errcode(ERRCODE_INTERNAL_ERROR),
					errmsg("pg_opsdata could not %s: %s", what,
						   SPI_result_code_string(rc))));
	pg_unreachable();
}

/*
 * rc, when it is the code expected; else the error above.  For a call
 * whose result is checked and then read:
 * opsdata_spi_check(SPI_execute(sql, true, 0), SPI_OK_SELECT, "read ...").
 */
int
opsdata_spi_check(int rc, int expected, const char *what)
{
	if (rc != expected)
		opsdata_spi_failed(rc, what);
	return rc;
}

/*
 * SPI_connect_ext(options), raising the error above if it fails.
 */
void
opsdata_spi_connect(int options)
{
	int rc = SPI_connect_ext(options);

	if (rc != SPI_OK_CONNECT)
		opsdata_spi_failed(rc, "connect to SPI");
}
