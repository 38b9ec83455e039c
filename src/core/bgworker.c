/*-------------------------------------------------------------------------
 *
 * bgworker.c
 *		Starting the library's dynamic background workers.
 *
 * Every process pg_opsdata starts on demand (schedulers, and job workers,
 * which run a due job or work a caller asked for now) is a dynamic
 * background worker of this library, connected to a database, started once
 * recovery is over and never restarted by the postmaster: whoever starts
 * it decides whether and when to start another.  opsdata_start_worker()
 * registers one.
 *
 * Every worker of the library, the launcher included, starts the same way:
 * opsdata_worker_init() sets its signal handlers (SIGHUP reloads the
 * configuration, SIGTERM ends it at the next interruption point) and
 * unblocks signals; then, after whatever must happen before a connection
 * (a job worker claims its slot), opsdata_worker_connect()
 * (core/privileged.h) connects it with search_path pinned and its type as
 * application_name.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/bgworker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "tcop/tcopprot.h"

#include "core/opsdata.h"

/*
 * Register a dynamic worker that runs function of this library, shown as
 * type and name, with main_arg and extra_size bytes of extra (at most
 * BGW_EXTRALEN); the postmaster signals this process when it starts and
 * ends if notify.  Returns its handle, allocated in the current memory
 * context, or NULL when every background worker slot is in use.
 */
BackgroundWorkerHandle *
opsdata_start_worker(const char *function, const char *type, const char *name,
					 Datum main_arg, const void *extra, Size extra_size,
					 bool notify)
{
	BackgroundWorker bgw;
	BackgroundWorkerHandle *handle;

	Assert(extra_size <= BGW_EXTRALEN);
	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags =
		BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "%s", OPSDATA_NAME);
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "%s", name);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "%s", type);
	bgw.bgw_main_arg = main_arg;
	bgw.bgw_notify_pid = notify ? MyProcPid : 0;
	if (extra_size > 0)
		memcpy(bgw.bgw_extra, extra, extra_size);
	if (!RegisterDynamicBackgroundWorker(&bgw, &handle))
		return NULL;
	return handle;
}

/*
 * The first call of every worker's main function: signal handlers set and
 * signals unblocked.
 */
void
opsdata_worker_init(void)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
}
