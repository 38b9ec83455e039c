/*-------------------------------------------------------------------------
 *
 * seal_scan.h
 *		Reading audit entries for sealing and verification (seal_scan.c).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/seal_scan.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_AUDIT_SEAL_SCAN_H
#define OPSDATA_AUDIT_SEAL_SCAN_H

#include "audit/seal.h"

/* An entry read by a scan. */
typedef struct SealEntry
{
	int64 id;
	TimestampTz ts;
	int64 stmt;		/* statement_id */
	bool stmt_null; /* no statement_id */
	int entry_columns;
	int statement_columns;
	int offset; /* of its encoding in SealScan.data */
	int len;
	int group; /* free for the caller */
	uint8 leaf[SEAL_HASH_LEN];
} SealEntry;

typedef struct SealScan
{
	MemoryContext cxt;
	SealEntry *entries;
	int nentries;
	int maxentries;
	int entry_columns;	   /* columns of audit.entries (all) */
	int statement_columns; /* default for the statements */
	StringInfoData data;   /* the encodings, one after the other */
} SealScan;

/* How many columns of entry id and of its statement to encode. */
typedef void (*SealColumnsFn)(void *arg, int64 id, int *entry_columns,
							  int *statement_columns);

extern void audit_seal_scan_init(SealScan *scan, int statement_columns,
								 MemoryContext cxt);
extern void audit_seal_scan_entries(SealScan *scan, int64 first, int64 last,
									int64 limit, SealColumnsFn columns,
									void *arg);
extern void audit_seal_scan_leaves(SealScan *scan, pg_cryptohash_ctx *ctx);

#endif /* OPSDATA_AUDIT_SEAL_SCAN_H */
