/*-------------------------------------------------------------------------
 *
 * partition.h
 *		Declarations shared by the files of partition maintenance.
 *
 * A maintenance run is planned in SQL (opsdata._partition_plan(), in
 * partition_plan.sql) and executed in C: exec.c runs the steps of a plan
 * inside a transaction with the privileges of the table's owner, under a
 * short lock_timeout with jittered retries; pass.c is the job entry that
 * runs a whole pass in a job worker, one short transaction per step, and
 * runs DETACH ... CONCURRENTLY as a top-level statement; api.c holds the
 * SQL entry points.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/partition/partition.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_PARTITION_H
#define OPSDATA_PARTITION_H

#include "nodes/pg_list.h"
#include "datatype/timestamp.h"
#include "utils/elog.h"

#include "worker/worker.h"

/* How long a step waits for its locks, and how it retries. */
typedef struct PartitionTiming
{
	int lock_timeout_ms;
	int detach_timeout_ms;
	int lock_retries;
	int retry_delay_ms;
} PartitionTiming;

/* One step of a plan: the statements of one transaction. */
typedef struct PartitionStep
{
	int step;
	char *phase;	  /* finalize, create, move or retention */
	char *action;	  /* create, move, finalize, detach, drop, archive,
					   note */
	char *partition;  /* qualified name of the partition, or NULL */
	List *statements; /* of char *; NIL for a note */
	bool toplevel;	  /* must run outside a transaction block */
	bool replica;	  /* run with session_replication_role = replica */
	char *detail;
} PartitionStep;

typedef enum PartitionStepStatus
{
	PARTITION_STEP_DONE,
	PARTITION_STEP_SKIPPED, /* a lock was not granted in any try */
	PARTITION_STEP_PENDING, /* a concurrent detach was left to FINALIZE */
	PARTITION_STEP_FAILED
} PartitionStepStatus;

/* What a pass that found another one running tells its caller. */
#define PARTITION_PASS_BUSY 0

/* exec.c */
extern void partition_read_timing(PartitionTiming *timing);
extern List *partition_plan(Oid parent, const char *start_from, bool maintain,
							MemoryContext cxt);
extern PartitionStepStatus partition_exec_step(const PartitionStep *step,
											   Oid owner,
											   const char *parent_name,
											   const PartitionTiming *timing,
											   int64 *rows, ErrorData **error);
extern PartitionStepStatus partition_exec_batch(List *steps, Oid owner,
												const char *parent_name,
												const PartitionTiming *timing,
												ErrorData **error);
extern void partition_log(const char *parent_name, const char *action,
						  const char *partition, const char *detail);
extern bool partition_lock_error(const ErrorData *edata);
extern void partition_sleep(int mean_ms);

/* pass.c */
extern TimestampTz partition_current_pass;
extern const WorkerEntry partition_pass_entry;

/* restore.c */
extern void partition_restore_init(void);

#endif /* OPSDATA_PARTITION_H */
