/*-------------------------------------------------------------------------
 *
 * seal_scan.c
 *		Read a range of audit entries and compute their leaves.
 *
 * Sealing and verification both read the entries of one server (one
 * server_id) in a range of ids and need, in (entry_id, ts) order, each one's encoding followed by the hash
 * of its statement (seal_encode.c): what the SHA-256 of a seal covers, and
 * what its locator is the CRC-32C of.  The rows are read by
 * one query whose executor hands each row to a DestReceiver here, which
 * encodes it at once into one buffer: no row is copied, no per-row SPI call
 * is made.  The query has no ORDER BY, so that the planner reads each heap
 * page once (a bitmap scan of the primary key's range) instead of fetching
 * the rows one by one in index order; the entries are sorted afterwards,
 * which costs next to nothing as they arrive nearly in order.  The hash
 * of an entry's statement comes from a memo of the hashes computed (its
 * slot prefetched as the entry is read, and used at the next one), and
 * the locator is computed then, while the entry's bytes are in cache; the
 * statements missing from the memo are then looked up in the scan's cache
 * of statement hashes, those it lacks with one query.  A scan's buffers,
 * and its cache, are kept from one use to the next
 * (audit_seal_scan_reset()): statements never change, so a hash once
 * computed holds.
 *
 * How many columns of an entry and of its statement are encoded can
 * differ per entry (seals made before a column was added cover fewer): a
 * callback tells, per entry id.
 *
 * The caller is connected to SPI and has switched the client encoding
 * (audit_seal_encoding_begin()); the query takes a snapshot of its own.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/seal_scan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/qunique.h"
#include "miscadmin.h"
#include "tcop/dest.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "port/pg_crc32c.h"
#include "utils/timestamp.h"

#include "audit/seal.h"
#include "audit/seal_scan.h"
#include "core/opsdata.h"

typedef struct SealReceiver
{
	DestReceiver pub;
	SealScan *scan;
	SealColumnsFn columns;
	void *arg;
	SealCodec *codec;
	int idcol; /* 0-based */
	int tscol;
	int stmtcol;   /* -1: no such column */
	int servercol; /* -1: no such column */
	int64 server_id;
} SealReceiver;

/* What the codec picks for the receiver. */
#define SEAL_PICK_ID		0
#define SEAL_PICK_TS		1
#define SEAL_PICK_STATEMENT 2
#define SEAL_PICK_SERVER	3

static SPIPlanPtr seal_scan_plan = NULL;
static SPIPlanPtr seal_scan_strangers_plan = NULL;

StaticAssertDecl(sizeof(SealStatementMemo) == 64,
				 "a slot of the memo fills a cache line");

/* The slot of the memo for statement id. */
static inline SealStatementMemo *
seal_scan_memo(SealScan *scan, int64 id)
{
	return &scan->memo[((uint64) id * UINT64CONST(0x9E3779B97F4A7C15)) >>
					   (64 - SEAL_SCAN_MEMO_BITS)];
}

#ifdef __GNUC__
#define SEAL_PREFETCH(p) __builtin_prefetch(p)
#else
#define SEAL_PREFETCH(p) ((void) 0)
#endif

/*
 * Entry e's statement hash is hash: copy it after the entry's bytes and
 * finish its locator.
 */
static inline void
seal_scan_locate(SealScan *scan, SealEntry *e, const uint8 *hash)
{
	memcpy(scan->data.data + e->offset + e->len, hash, SEAL_HASH_LEN);
	COMP_CRC32C(e->locator, hash, SEAL_HASH_LEN);
	FIN_CRC32C(e->locator);
	e->located = true;
}

static void
seal_receiver_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	SealReceiver *r = (SealReceiver *) self;
	int i;

	r->codec = audit_seal_codec(typeinfo, -1, r->scan->cxt);
	r->idcol = r->tscol = r->stmtcol = r->servercol = -1;
	for (i = 0; i < typeinfo->natts; i++)
	{
		const char *name = NameStr(TupleDescAttr(typeinfo, i)->attname);

		if (strcmp(name, SEAL_ENTRY_ID_COLUMN) == 0)
			r->idcol = i;
		else if (strcmp(name, SEAL_ENTRY_TS_COLUMN) == 0)
			r->tscol = i;
		else if (strcmp(name, SEAL_STATEMENT_ID_COLUMN) == 0 &&
				 TupleDescAttr(typeinfo, i)->atttypid == INT8OID)
			r->stmtcol = i;
		else if (strcmp(name, SEAL_SERVER_ID_COLUMN) == 0 &&
				 TupleDescAttr(typeinfo, i)->atttypid == INT8OID)
			r->servercol = i;
	}
	if (r->idcol < 0 || r->tscol < 0)
		elog(ERROR, "audit.entries lacks its entry_id or ts column");
	audit_seal_codec_pick(r->codec, r->idcol, SEAL_PICK_ID);
	audit_seal_codec_pick(r->codec, r->tscol, SEAL_PICK_TS);
	if (r->stmtcol >= 0)
		audit_seal_codec_pick(r->codec, r->stmtcol, SEAL_PICK_STATEMENT);
	if (r->servercol >= 0)
		audit_seal_codec_pick(r->codec, r->servercol, SEAL_PICK_SERVER);
	r->scan->entry_columns = typeinfo->natts;
}

static bool
seal_receiver_receive(TupleTableSlot *slot, DestReceiver *self)
{
	SealReceiver *r = (SealReceiver *) self;
	SealScan *scan = r->scan;
	SealEntry *e;
	int ncolumns = scan->entry_columns;
	int statement_columns = scan->statement_columns;
	int offset = scan->data.len;
	bool isnull;
	Datum d;

	CHECK_FOR_INTERRUPTS();
	if (scan->nentries == scan->maxentries)
	{
		scan->maxentries *= 2;
		scan->entries =
			repalloc_huge(scan->entries, sizeof(SealEntry) * scan->maxentries);
	}
	if (r->columns != NULL)
	{
		/* The id comes before the encoding: read it from the slot. */
		d = slot_getattr(slot, r->idcol + 1, &isnull);
		r->columns(r->arg, DatumGetInt64(d), &ncolumns, &statement_columns);
		if (ncolumns < 0 || ncolumns > audit_seal_codec_columns(r->codec))
			ereport(
				ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg(
					 "a seal covers %d columns of audit.entries, which has %d",
					 ncolumns, audit_seal_codec_columns(r->codec)),
				 errhint("Columns of audit tables must never be dropped.")));
	}
	audit_seal_encode(r->codec, slot, ncolumns, &scan->data);
	if (r->servercol >= 0)
	{
		d = audit_seal_codec_picked(r->codec, SEAL_PICK_SERVER, &isnull);
		if (isnull || DatumGetInt64(d) != r->server_id)
		{
			/* Another server's entry: noted, not kept. */
			scan->data.len = offset;
			if (scan->nstrangers == scan->maxstrangers)
			{
				scan->maxstrangers = Max(16, scan->maxstrangers * 2);
				scan->stranger_ids =
					scan->stranger_ids
						? repalloc(scan->stranger_ids,
								   sizeof(int64) * scan->maxstrangers)
						: MemoryContextAlloc(
							  scan->cxt, sizeof(int64) * scan->maxstrangers);
				scan->stranger_servers =
					scan->stranger_servers
						? repalloc(scan->stranger_servers,
								   sizeof(int64) * scan->maxstrangers)
						: MemoryContextAlloc(
							  scan->cxt, sizeof(int64) * scan->maxstrangers);
			}
			scan->stranger_ids[scan->nstrangers] = DatumGetInt64(
				audit_seal_codec_picked(r->codec, SEAL_PICK_ID, &isnull));
			scan->stranger_servers[scan->nstrangers++] =
				DatumGetInt64(d); /* NULL: 0 */
			return true;
		}
	}
	e = &scan->entries[scan->nentries++];
	e->id = DatumGetInt64(
		audit_seal_codec_picked(r->codec, SEAL_PICK_ID, &isnull));
	e->ts = DatumGetTimestampTz(
		audit_seal_codec_picked(r->codec, SEAL_PICK_TS, &isnull));
	e->stmt_null = true;
	e->stmt = 0;
	if (r->stmtcol >= 0)
	{
		d = audit_seal_codec_picked(r->codec, SEAL_PICK_STATEMENT, &isnull);
		e->stmt_null = isnull;
		e->stmt = isnull ? 0 : DatumGetInt64(d);
	}
	e->statement_columns = statement_columns;
	e->group = -1;
	e->entry_columns = ncolumns;
	e->offset = offset;
	e->len = scan->data.len - offset;
	/* Room for the statement hash: an entry's bytes are then contiguous. */
	if (scan->data.len + SEAL_HASH_LEN >= scan->data.maxlen)
		enlargeStringInfo(&scan->data, SEAL_HASH_LEN);
	scan->data.len += SEAL_HASH_LEN;

	/*
	 * The locator's CRC over the bytes while they are at hand.  The memo's
	 * slot for the entry's statement is asked of the processor now, and
	 * read at the next entry (a memo of many statements is seldom in
	 * cache): the hash is then copied after the bytes of this entry, still
	 * in cache, and its locator finished.  audit_seal_scan_finish() does
	 * what is left.
	 */
	INIT_CRC32C(e->locator);
	COMP_CRC32C(e->locator, scan->data.data + offset, e->len);
	e->located = false;
	e->stmt_hash = NULL;
	if (e->stmt_null)
		seal_scan_locate(scan, e, audit_seal_no_statement());
	else
		SEAL_PREFETCH(seal_scan_memo(scan, e->stmt));
	if (scan->nentries >= 2)
	{
		SealEntry *prev = &scan->entries[scan->nentries - 2];

		if (!prev->located)
		{
			SealStatementMemo *memo = seal_scan_memo(scan, prev->stmt);

			if (memo->valid && memo->id == prev->stmt &&
				memo->columns == prev->statement_columns)
				seal_scan_locate(scan, prev, memo->hash);
		}
	}
	return true;
}

static void
seal_receiver_shutdown(DestReceiver *self)
{
}

static void
seal_receiver_destroy(DestReceiver *self)
{
}

/*
 * Start a scan whose results live in cxt.  statement_columns is the count
 * of columns of audit.statements encoded when the callback does not say.
 */
void
audit_seal_scan_init(SealScan *scan, int statement_columns, MemoryContext cxt)
{
	memset(scan, 0, sizeof(SealScan));
	scan->cxt = cxt;
	scan->statement_columns = statement_columns;
	scan->maxentries = 1024;
	scan->entries =
		MemoryContextAllocHuge(cxt, sizeof(SealEntry) * scan->maxentries);
	scan->data.data = MemoryContextAlloc(cxt, 64 * 1024);
	scan->data.maxlen = 64 * 1024;
	scan->data.len = 0;
	scan->data.cursor = 0;
	scan->data.data[0] = '\0';
	scan->statements = audit_seal_statement_cache(cxt);
	/* Slots on cache lines of their own. */
	scan->memo = (SealStatementMemo *) TYPEALIGN(
		64, MemoryContextAllocZero(
				cxt, sizeof(SealStatementMemo) * SEAL_SCAN_MEMO_SIZE + 64));
}

/* Statement hashes a scan keeps at most. */
#define SEAL_SCAN_MAX_STATEMENTS 100000

/* Forget the entries of a scan, keeping its buffers. */
void
audit_seal_scan_reset(SealScan *scan, int statement_columns)
{
	scan->nentries = 0;
	scan->nstrangers = 0;
	scan->data.len = 0;
	scan->statement_columns = statement_columns;
	if (hash_get_num_entries(scan->statements) > SEAL_SCAN_MAX_STATEMENTS)
		audit_seal_scan_forget_statements(scan);
}

/*
 * Forget the statement hashes a scan keeps (the rows of audit.statements
 * they were computed from may be others now).  Between uses of the scan.
 */
void
audit_seal_scan_forget_statements(SealScan *scan)
{
	hash_destroy(scan->statements);
	scan->statements = audit_seal_statement_cache(scan->cxt);
	memset(scan->memo, 0, sizeof(SealStatementMemo) * SEAL_SCAN_MEMO_SIZE);
}

/* Entries in (entry_id, ts) order, the comparison inlined in the sort. */
static inline int
seal_entry_cmp(const SealEntry *a, const SealEntry *b)
{
	if (a->id != b->id)
		return a->id < b->id ? -1 : 1;
	if (a->ts != b->ts)
		return a->ts < b->ts ? -1 : 1;
	return 0;
}

#define ST_SORT			 seal_sort_entries
#define ST_ELEMENT_TYPE	 SealEntry
#define ST_COMPARE(a, b) seal_entry_cmp(a, b)
#define ST_SCOPE		 static
#define ST_DECLARE
#define ST_DEFINE
#include "lib/sort_template.h"

/*
 * Read the entries of server server_id with first <= entry_id <= last,
 * appending them to the scan, and sort the scan's entries by (entry_id,
 * ts).  columns, if not NULL, tells for each entry id how many of its
 * columns and of its statement's to encode.  known_servers, if not 0, is
 * an int8[]: the entries in that range of a server not in it (nor
 * server_id) are read too, and noted as strangers.
 */
void
audit_seal_scan_entries(SealScan *scan, int64 server_id, int64 first,
						int64 last, SealColumnsFn columns, void *arg,
						Datum known_servers)
{
	SealReceiver r;
	SPIExecuteOptions options;
	ParamListInfo params;
	MemoryContext old;
	int nestlevel;
	int ret;

	if (seal_scan_plan == NULL)
	{
		Oid argtypes[3] = {INT8OID, INT8OID, INT8OID};
		SPIPlanPtr plan = SPI_prepare(
			"SELECT * FROM audit.entries"
			" WHERE entry_id OPERATOR(pg_catalog.>=) $1"
			" AND entry_id OPERATOR(pg_catalog.<=) $2"
			" AND " SEAL_SERVER_ID_COLUMN " OPERATOR(pg_catalog.=) $3",
			3, argtypes);

		if (plan == NULL)
			opsdata_spi_failed(SPI_result,
							   "prepare the scan of audit.entries");
		SPI_keepplan(plan);
		seal_scan_plan = plan;
	}
	if (known_servers != (Datum) 0 && seal_scan_strangers_plan == NULL)
	{
		Oid argtypes[4] = {INT8OID, INT8OID, INT8OID, INT8ARRAYOID};
		SPIPlanPtr plan = SPI_prepare(
			"SELECT * FROM audit.entries"
			" WHERE entry_id OPERATOR(pg_catalog.>=) $1"
			" AND entry_id OPERATOR(pg_catalog.<=) $2"
			" AND (" SEAL_SERVER_ID_COLUMN " OPERATOR(pg_catalog.=) $3"
			" OR " SEAL_SERVER_ID_COLUMN " IS NULL"
			" OR " SEAL_SERVER_ID_COLUMN " OPERATOR(pg_catalog.<>) ALL ($4))",
			4, argtypes);

		if (plan == NULL)
			elog(ERROR, "could not prepare the scan of audit.entries: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		seal_scan_strangers_plan = plan;
	}

	memset(&r, 0, sizeof(r));
	r.pub.receiveSlot = seal_receiver_receive;
	r.pub.rStartup = seal_receiver_startup;
	r.pub.rShutdown = seal_receiver_shutdown;
	r.pub.rDestroy = seal_receiver_destroy;
	r.pub.mydest = DestNone;
	r.scan = scan;
	r.columns = columns;
	r.arg = arg;
	r.server_id = server_id;

	params = makeParamList(4);
	params->params[0].value = Int64GetDatum(first);
	params->params[0].ptype = INT8OID;
	params->params[0].isnull = false;
	params->params[1].value = Int64GetDatum(last);
	params->params[1].ptype = INT8OID;
	params->params[1].isnull = false;
	params->params[2].value = Int64GetDatum(server_id);
	params->params[2].ptype = INT8OID;
	params->params[2].isnull = false;
	params->params[3].value = known_servers;
	params->params[3].ptype = INT8ARRAYOID;
	params->params[3].isnull = known_servers == (Datum) 0;
	params->numParams = known_servers != (Datum) 0 ? 4 : 3;

	/*
	 * The snapshot is taken before the query is planned: maintenance moves
	 * rows out of the default partition into a new one and attaches it in
	 * one transaction, and a plan made from the partitions as they were
	 * before that commit must not read with a snapshot taken after it (the
	 * rows would be neither in the default partition nor in a partition the
	 * plan knows).  Either the snapshot predates the commit (the rows are in
	 * the default partition), or the commit predates the plan.
	 */
	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = true;
	options.dest = (DestReceiver *) &r;

	/*
	 * Whatever the statistics say, read each page once: a bitmap scan of the
	 * primary key's range (the plan is made with these settings at its first
	 * use and kept).  The receiver's codec is made in the scan's context.
	 */
	nestlevel = NewGUCNestLevel();
	(void) set_config_option("enable_seqscan", "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_indexscan", "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("enable_indexonlyscan", "off", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);
	/*
	 * Sealing reads the entries just written, in shared buffers: asking the
	 * kernel to read ahead only costs a lookup per page.
	 */
	if (!scan->prefetch)
		(void) set_config_option("effective_io_concurrency", "0", PGC_USERSET,
								 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0,
								 false);
	old = MemoryContextSwitchTo(scan->cxt);
	CommandCounterIncrement();
	PushActiveSnapshot(GetTransactionSnapshot());
	ret = SPI_execute_plan_extended(
		known_servers != (Datum) 0 ? seal_scan_strangers_plan : seal_scan_plan,
		&options);
	PopActiveSnapshot();
	MemoryContextSwitchTo(old);
	AtEOXact_GUC(true, nestlevel);
	/* With a receiver of its own, SPI reports a SELECT as a utility. */
	if (ret != SPI_OK_SELECT && ret != SPI_OK_UTILITY)
		opsdata_spi_failed(ret, "read audit.entries");
	if (r.codec != NULL)
		audit_seal_codec_free(r.codec);
	seal_sort_entries(scan->entries, scan->nentries);
}

static int
seal_id_cmp(const void *a, const void *b)
{
	int64 x = *(const int64 *) a;
	int64 y = *(const int64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * Give every entry of the scan the hash of its statement (those the cache
 * lacks are looked up, one query per count of statement columns) and its
 * locator.
 */
void
audit_seal_scan_finish(SealScan *scan, pg_cryptohash_ctx *ctx)
{
	HTAB *cache = scan->statements;
	int64 *ids = palloc(sizeof(int64) * Max(scan->nentries, 1));
	int *idcols = palloc(sizeof(int) * Max(scan->nentries, 1));
	int nmissing = 0;
	int i;

	for (i = 0; i < scan->nentries; i++)
	{
		SealEntry *e = &scan->entries[i];
		SealStatementMemo *memo;
		bool missing;

		if (e->located)
			continue;
		Assert(!e->stmt_null);
		memo = seal_scan_memo(scan, e->stmt);
		if (memo->valid && memo->id == e->stmt &&
			memo->columns == e->statement_columns)
		{
			seal_scan_locate(scan, e, memo->hash);
			continue;
		}
		e->stmt_hash = audit_seal_statement_slot(
			cache, e->stmt, e->statement_columns, &missing);
		if (missing)
		{
			ids[nmissing] = e->stmt;
			idcols[nmissing++] = e->statement_columns;
		}
		else
		{
			/* Only hashes computed: a missing one is looked up again. */
			memo->id = e->stmt;
			memo->columns = e->statement_columns;
			memo->valid = true;
			memcpy(memo->hash, e->stmt_hash, SEAL_HASH_LEN);
		}
	}
	/* Usually one count of columns for all; one query per count. */
	while (nmissing > 0)
	{
		int64 *batch = palloc(sizeof(int64) * nmissing);
		int cols = idcols[0];
		int n = 0;
		int k = 0;

		for (i = 0; i < nmissing; i++)
		{
			if (idcols[i] == cols)
				batch[n++] = ids[i];
			else
			{
				ids[k] = ids[i];
				idcols[k++] = idcols[i];
			}
		}
		/* An id missing for several entries is asked for once. */
		qsort(batch, n, sizeof(int64), seal_id_cmp);
		n = (int) qunique(batch, n, sizeof(int64), seal_id_cmp);
		audit_seal_statement_fetch(cache, batch, n, cols, ctx);
		pfree(batch);
		nmissing = k;
	}
	for (i = 0; i < scan->nentries; i++)
	{
		SealEntry *e = &scan->entries[i];

		if (!e->located)
			seal_scan_locate(scan, e, e->stmt_hash);
		e->stmt_hash = NULL;
	}
	pfree(ids);
	pfree(idcols);
}

/*
 * out = SHA-256 of the encodings and statement hashes of the entries
 * indexes[0..n) of the scan (NULL: its first n entries), in that order.
 */
void
audit_seal_scan_digest(SealScan *scan, const int *indexes, int n,
					   pg_cryptohash_ctx *ctx, uint8 *out)
{
	int i;
	int run;

	if (pg_cryptohash_init(ctx) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
	/* Entries next to one another in the buffer are hashed in one call. */
	for (i = 0; i < n; i += run)
	{
		SealEntry *e = &scan->entries[indexes ? indexes[i] : i];
		Size start = e->offset;
		Size end = start + e->len + SEAL_HASH_LEN;

		for (run = 1; i + run < n; run++)
		{
			SealEntry *next =
				&scan->entries[indexes ? indexes[i + run] : i + run];

			if ((Size) next->offset != end)
				break;
			end += next->len + SEAL_HASH_LEN;
		}
		if (pg_cryptohash_update(ctx, (uint8 *) scan->data.data + start,
								 end - start) < 0)
			elog(ERROR, "could not compute SHA-256: %s",
				 pg_cryptohash_error(ctx));
	}
	if (pg_cryptohash_final(ctx, out, SEAL_HASH_LEN) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
}
