/*-------------------------------------------------------------------------
 *
 * seal.h
 *		Declarations shared by the files of the audit seal chain.
 *
 * seal_encode.c turns rows into the canonical bytes that are hashed (the
 * encoding is specified in doc/audit.md) and computes the hashes of
 * entries and seals; seal.c closes blocks of entries into seals (the
 * scheduler service, audit.seal(), retention seals); verify.c checks the
 * chain against the trail (audit.verify(), audit.digest(),
 * audit.verify_digest()).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/seal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_AUDIT_SEAL_H
#define OPSDATA_AUDIT_SEAL_H

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "datatype/timestamp.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "utils/hsearch.h"

#define SEAL_HASH_LEN	 PG_SHA256_DIGEST_LENGTH
#define SEAL_LOCATOR_LEN 4

/* Columns of audit.entries and audit.statements the seal code names. */
#define SEAL_ENTRY_ID_COLUMN	 "entry_id"
#define SEAL_ENTRY_TS_COLUMN	 "ts"
#define SEAL_STATEMENT_ID_COLUMN "statement_id"
#define SEAL_SERVER_ID_COLUMN	 "server_id"

/*
 * How the first ncolumns columns of a query's rows are encoded (as
 * record_send() encodes a row).  Made for a result tuple descriptor whose
 * columns are those of the table, in order (SELECT *).
 */
typedef struct SealCodec SealCodec;

/* Columns whose values audit_seal_encode() can give besides, at most. */
#define SEAL_CODEC_PICKS 4

/* A seal, as stored in audit.seals. */
typedef struct SealRow
{
	int64 seal_id;
	bool retention; /* kind: 'retention', else 'entries' */
	bool has_window;
	int64 first_entry_id; /* the window of ids its round covered */
	int64 last_entry_id;
	TimestampTz ts_from; /* the bucket of ts of its entries */
	TimestampTz ts_to;
	int64 entry_count;
	Datum entry_ids; /* int8multirange, or 0 for NULL */
	bytea *locators; /* or NULL */
	bool has_entries_hash;
	uint8 entries_hash[SEAL_HASH_LEN];
	bool has_columns;
	int16 entry_columns;
	int16 statement_columns;
	int64 total_entries;
	char *detail; /* or NULL */
	uint8 prev_hash[SEAL_HASH_LEN];
	TimestampTz sealed_at;
	uint8 hash[SEAL_HASH_LEN];
	bool has_server;
	int64 server_id; /* whose entries it seals (entries seals) */
} SealRow;

/* seal_encode.c */
extern SealCodec *audit_seal_codec(TupleDesc desc, int ncolumns,
								   MemoryContext cxt);
extern int audit_seal_codec_columns(const SealCodec *codec);
extern void audit_seal_codec_free(SealCodec *codec);
extern void audit_seal_codec_pick(SealCodec *codec, int column, int pick);
extern Datum audit_seal_codec_picked(const SealCodec *codec, int pick,
									 bool *isnull);
extern void audit_seal_encode(SealCodec *codec, TupleTableSlot *slot,
							  int ncolumns, StringInfo out);
extern int audit_seal_encoding_begin(void);
extern void audit_seal_encoding_end(int saved);
extern pg_cryptohash_ctx *audit_seal_sha256_create(void);
extern void audit_seal_sha256(pg_cryptohash_ctx *ctx, const void *data1,
							  size_t len1, const void *data2, size_t len2,
							  uint8 *out);
extern HTAB *audit_seal_statement_cache(MemoryContext cxt);
extern const uint8 *audit_seal_statement_slot(HTAB *cache, int64 id,
											  int ncolumns, bool *missing);
extern void audit_seal_statement_fetch(HTAB *cache, const int64 *ids, int n,
									   int ncolumns, pg_cryptohash_ctx *ctx);
extern const uint8 *audit_seal_no_statement(void);
extern int audit_seal_table_columns(const char *relname);
extern void audit_seal_bucket(TimestampTz ts, int64 width, TimestampTz *from,
							  TimestampTz *to);
extern int64 audit_seal_bucket_width(void);
extern void audit_seal_row_hash(pg_cryptohash_ctx *ctx, const SealRow *row,
								uint8 *out);
extern void audit_seal_read_row(HeapTuple tuple, TupleDesc desc, SealRow *row);
extern Datum audit_seal_id_ranges(const int64 *ids, int n);
extern int64 *audit_seal_expand_ids(Datum multirange, int64 *count);
extern char *audit_seal_hex(const uint8 *hash);
extern int64 audit_seal_local_server(void);

/* seal.c */
extern int audit_seal_interval_ms;
extern void audit_seal_define_gucs(void);
extern void audit_seal_init(void);
extern long audit_seal_service(void);

#endif /* OPSDATA_AUDIT_SEAL_H */
