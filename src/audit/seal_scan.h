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
	int offset; /* of its encoding in SealScan.data, followed by stmt_hash */
	int len;	/* of its encoding */
	int group;	/* free for the caller */
	const uint8 *stmt_hash; /* SHA-256 of its statement's encoding, while
							 * audit_seal_scan_finish() looks for it */
	uint32 locator; /* CRC-32C of encoding || its statement's hash (of the
					 * encoding only until located) */
	bool located;	/* statement hash copied after the encoding, and
					 * locator final: as the next entry is read when the
					 * memo has the hash, else by
					 * audit_seal_scan_finish() */
} SealEntry;

/* A direct-mapped memo in front of the cache of statement hashes. */
#define SEAL_SCAN_MEMO_BITS 14
#define SEAL_SCAN_MEMO_SIZE (1 << SEAL_SCAN_MEMO_BITS)

/* A slot of the memo: one cache line. */
typedef struct SealStatementMemo
{
	int64 id;
	int32 columns;
	bool valid;
	uint8 hash[SEAL_HASH_LEN];
	char pad[64 - 8 - 4 - 4 - SEAL_HASH_LEN];
} SealStatementMemo;

typedef struct SealScan
{
	MemoryContext cxt;
	SealEntry *entries;
	int nentries;
	int maxentries;
	int entry_columns;		 /* columns of audit.entries (all) */
	int statement_columns;	 /* default for the statements */
	StringInfoData data;	 /* the encodings, one after the other */
	HTAB *statements;		 /* statement hashes, kept across resets */
	SealStatementMemo *memo; /* SEAL_SCAN_MEMO_SIZE of them, aligned */
	bool prefetch;			 /* pages may be out of shared buffers */

	/*
	 * Entries of servers not known to the scan (audit_seal_scan_entries()),
	 * read and not encoded: each one's id and server.
	 */
	int64 *stranger_ids;
	int64 *stranger_servers;
	int nstrangers;
	int maxstrangers;
} SealScan;

/* How many columns of entry id and of its statement to encode. */
typedef void (*SealColumnsFn)(void *arg, int64 id, int *entry_columns,
							  int *statement_columns);

extern void audit_seal_scan_init(SealScan *scan, int statement_columns,
								 MemoryContext cxt);
extern void audit_seal_scan_reset(SealScan *scan, int statement_columns);
extern void audit_seal_scan_forget_statements(SealScan *scan);
extern void audit_seal_scan_entries(SealScan *scan, int64 server_id,
									int64 first, int64 last,
									SealColumnsFn columns, void *arg,
									Datum known_servers);
extern void audit_seal_scan_finish(SealScan *scan, pg_cryptohash_ctx *ctx);
extern void audit_seal_scan_digest(SealScan *scan, const int *indexes, int n,
								   pg_cryptohash_ctx *ctx, uint8 *out);

#endif /* OPSDATA_AUDIT_SEAL_SCAN_H */
