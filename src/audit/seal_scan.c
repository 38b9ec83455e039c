/*-------------------------------------------------------------------------
 *
 * seal_scan.c
 *		Read a range of audit entries and compute their leaves.
 *
 * Sealing and verification both read the entries of a range of ids in
 * (entry_id, ts) order and need, for each, its leaf: SHA-256 of its
 * encoding and of the hash of its statement (seal_encode.c).  The rows are
 * read by one query whose executor hands each row to a DestReceiver here,
 * which encodes it at once into one buffer: no row is copied, no per-row
 * SPI call is made.  The statements are then looked up with one query for
 * all the distinct ids, and the leaves computed.
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

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "tcop/dest.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "audit/seal.h"
#include "audit/seal_scan.h"

typedef struct SealReceiver
{
	DestReceiver pub;
	SealScan *scan;
	SealColumnsFn columns;
	void *arg;
	SealCodec *codec;
	int idcol; /* 0-based */
	int tscol;
	int stmtcol; /* -1: no such column */
} SealReceiver;

static SPIPlanPtr seal_scan_plan = NULL;

static void
seal_receiver_startup(DestReceiver *self, int operation, TupleDesc typeinfo)
{
	SealReceiver *r = (SealReceiver *) self;
	int i;

	r->codec = audit_seal_codec(typeinfo, -1, r->scan->cxt);
	r->idcol = r->tscol = r->stmtcol = -1;
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
	}
	if (r->idcol < 0 || r->tscol < 0)
		elog(ERROR, "audit.entries lacks its entry_id or ts column");
	r->scan->entry_columns = typeinfo->natts;
}

static bool
seal_receiver_receive(TupleTableSlot *slot, DestReceiver *self)
{
	SealReceiver *r = (SealReceiver *) self;
	SealScan *scan = r->scan;
	SealEntry *e;
	int ncolumns = scan->entry_columns;

	CHECK_FOR_INTERRUPTS();
	slot_getallattrs(slot);
	if (scan->nentries == scan->maxentries)
	{
		scan->maxentries *= 2;
		scan->entries =
			repalloc_huge(scan->entries, sizeof(SealEntry) * scan->maxentries);
	}
	e = &scan->entries[scan->nentries++];
	e->id = DatumGetInt64(slot->tts_values[r->idcol]);
	e->ts = DatumGetTimestampTz(slot->tts_values[r->tscol]);
	e->stmt_null = r->stmtcol < 0 || slot->tts_isnull[r->stmtcol];
	e->stmt = e->stmt_null ? 0 : DatumGetInt64(slot->tts_values[r->stmtcol]);
	e->statement_columns = scan->statement_columns;
	e->group = -1;
	if (r->columns != NULL)
		r->columns(r->arg, e->id, &ncolumns, &e->statement_columns);
	if (ncolumns < 0 || ncolumns > audit_seal_codec_columns(r->codec))
		ereport(
			ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("a seal covers %d columns of audit.entries, which has %d",
					ncolumns, audit_seal_codec_columns(r->codec)),
			 errhint("Columns of audit tables must never be dropped.")));
	e->entry_columns = ncolumns;
	e->offset = scan->data.len;
	audit_seal_encode(r->codec, slot, ncolumns, &scan->data);
	e->len = scan->data.len - e->offset;
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
	scan->data.data = MemoryContextAllocHuge(cxt, 64 * 1024);
	scan->data.maxlen = 64 * 1024;
	scan->data.len = 0;
	scan->data.cursor = 0;
	scan->data.data[0] = '\0';
}

/*
 * Read the entries with first <= entry_id <= last in (entry_id, ts) order,
 * at most limit of them (0: all), appending them to the scan.  columns,
 * if not NULL, tells for each entry id how many of its columns and of its
 * statement's to encode.
 */
void
audit_seal_scan_entries(SealScan *scan, int64 first, int64 last, int64 limit,
						SealColumnsFn columns, void *arg)
{
	SealReceiver r;
	SPIExecuteOptions options;
	ParamListInfo params;
	MemoryContext old;
	int ret;

	if (seal_scan_plan == NULL)
	{
		Oid argtypes[3] = {INT8OID, INT8OID, INT8OID};
		SPIPlanPtr plan =
			SPI_prepare("SELECT * FROM audit.entries"
						" WHERE entry_id OPERATOR(pg_catalog.>=) $1"
						" AND entry_id OPERATOR(pg_catalog.<=) $2"
						" ORDER BY entry_id, ts LIMIT $3",
						3, argtypes);

		if (plan == NULL)
			elog(ERROR, "could not prepare the scan of audit.entries: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		seal_scan_plan = plan;
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

	params = makeParamList(3);
	params->params[0].value = Int64GetDatum(first);
	params->params[0].ptype = INT8OID;
	params->params[0].isnull = false;
	params->params[1].value = Int64GetDatum(last);
	params->params[1].ptype = INT8OID;
	params->params[1].isnull = false;
	params->params[2].value = Int64GetDatum(limit);
	params->params[2].ptype = INT8OID;
	params->params[2].isnull = limit <= 0;

	memset(&options, 0, sizeof(options));
	options.params = params;
	options.read_only = false;
	options.dest = (DestReceiver *) &r;

	/* The receiver's buffers grow in the scan's context. */
	old = MemoryContextSwitchTo(scan->cxt);
	ret = SPI_execute_plan_extended(seal_scan_plan, &options);
	MemoryContextSwitchTo(old);
	/* With a receiver of its own, SPI reports a SELECT as a utility. */
	if (ret != SPI_OK_SELECT && ret != SPI_OK_UTILITY)
		elog(ERROR, "could not read audit.entries: %s",
			 SPI_result_code_string(ret));
}

/*
 * Compute the leaf of every entry of the scan: its statements are looked up
 * (one query per count of statement columns), then each leaf is
 * SHA-256(encoding || statement hash).
 */
void
audit_seal_scan_leaves(SealScan *scan, pg_cryptohash_ctx *ctx)
{
	HTAB *cache = audit_seal_statement_cache(CurrentMemoryContext);
	int64 *ids = palloc(sizeof(int64) * Max(scan->nentries, 1));
	int done_columns[8];
	int ndone = 0;
	int i;

	for (i = 0; i < scan->nentries; i++)
	{
		int cols = scan->entries[i].statement_columns;
		int n = 0;
		int j;
		bool seen = false;

		for (j = 0; j < ndone; j++)
			seen |= done_columns[j] == cols;
		if (seen)
			continue;
		for (j = i; j < scan->nentries; j++)
		{
			SealEntry *e = &scan->entries[j];

			if (!e->stmt_null && e->statement_columns == cols)
				ids[n++] = e->stmt;
		}
		audit_seal_statement_hashes(cache, ids, n, cols, ctx);
		if (ndone < (int) lengthof(done_columns))
			done_columns[ndone++] = cols;
	}
	for (i = 0; i < scan->nentries; i++)
	{
		SealEntry *e = &scan->entries[i];
		const uint8 *h = audit_seal_statement_hash(
			cache, e->stmt_null, e->stmt, e->statement_columns);

		audit_seal_sha256(ctx, scan->data.data + e->offset, e->len, h,
						  SEAL_HASH_LEN, e->leaf);
	}
	hash_destroy(cache);
	pfree(ids);
}
