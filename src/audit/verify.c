/*-------------------------------------------------------------------------
 *
 * verify.c
 *		Checking the audit trail against its seal chain: audit.verify()
 *		and audit.verify_digest().
 *
 * audit.verify(from, to) checks the seals made from "from" until "to" and
 * every entry in their windows, in chain order, and stops at the first
 * thing that differs:
 *
 *	- a seal: its id follows the previous one's, its hash is the hash of
 *	  its contents, its prev_hash is the previous seal's hash (else that
 *	  seal was changed and re-hashed), and the window of an entries seal
 *	  starts where the last round's ended (or is the same round's);
 *	- its entries: those of the seal's server (server_id) whose id is in
 *	  the seal's window and whose ts is in its bucket are read again, encoded, and their SHA-256 compared
 *	  with the seal's entries_hash; when it differs, the seal's list of ids
 *	  and its locators (a CRC-32C per entry, which the seal's hash covers)
 *	  name the first entry deleted, inserted or altered.  An entry of a
 *	  window that falls in no bucket of its round was inserted after
 *	  sealing;
 *	- an entries seal whose bucket a later retention seal covers may have
 *	  lost all its entries: that is retention.  Any other loss is reported.
 *	  A retention seal made after the range is itself checked, with the
 *	  seals that lead to it.
 *
 * Seals are read through a cursor and processed in chunks of whole rounds
 * (VERIFY_CHUNK_ENTRIES entries at most, unless one round is larger); the
 * entries of a chunk are read by one scan (seal_scan.c).
 *
 * audit.verify_digest() checks that the seal a digest names is still there
 * with the same hash, and that every seal since chains to it; it reads no
 * entry.  audit.digest() is in SQL (seal.sql).
 *
 * Both only read, as the caller: an auditor needs SELECT on the audit
 * tables, nothing more.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/verify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_bswap.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "audit/seal.h"
#include "audit/seal_scan.h"
#include "core/opsdata.h"

PG_FUNCTION_INFO_V1(audit_verify);
PG_FUNCTION_INFO_V1(audit_verify_digest);

#define VERIFY_CHUNK_ENTRIES 100000
#define VERIFY_FETCH		 256

/* A seal read by the verifier, with what the checks found. */
typedef struct VerifySeal
{
	SealRow row;
	int round; /* index in the chunk's rounds, entries seals only */
} VerifySeal;

/* Consecutive entries seals with one window. */
typedef struct VerifyRound
{
	int64 first;
	int64 last;
	int first_seal; /* index in the chunk */
	int nseals;
	int entry_columns;
	int statement_columns;
	bool has_server;
	int64 server_id; /* whose entries its seals cover */
} VerifyRound;

/* A retention seal. */
typedef struct VerifyRetention
{
	int64 seal_id;
	TimestampTz from;
	TimestampTz to;
} VerifyRetention;

/* What verification found; status NULL while nothing. */
typedef struct VerifyResult
{
	const char *status;
	bool has_entry;
	int64 entry_id;
	bool has_seal;
	int64 seal_id;
	char *detail;
} VerifyResult;

typedef struct Verifier
{
	MemoryContext cxt;
	pg_cryptohash_ctx *ctx;
	VerifyResult result;
	int64 seals;
	int64 entries;
	int64 retired;

	/* The range of seals. */
	bool any;
	int64 first;
	int64 last;

	/* The chain before the next seal. */
	int64 expect_first; /* the first seal's id, when none is before it */
	bool have_prev;
	int64 prev_id;
	uint8 prev_hash[SEAL_HASH_LEN];
	bool have_window; /* the last entries seal's window */
	int64 window_first;
	int64 window_last;

	/* Retention seals, by seal_id, and the union of those after a seal. */
	VerifyRetention *retentions;
	int nretentions;
	int union_from; /* retentions[union_from..] make up the union */
	TimestampTz *union_lo;
	TimestampTz *union_hi;
	int nunion;
	int64 retention_used; /* highest retention seal that excused a loss */

	/*
	 * The servers whose entries may lie in this server's windows (int8[]),
	 * or 0 when entries of any server may (the database subscribes).
	 */
	Datum known_servers;

	/* The chunk, and the buffers of its entries. */
	SealScan scan;
	VerifySeal *chunk;
	int nchunk;
	int maxchunk;
	VerifyRound *rounds;
	int nrounds;
} Verifier;

static void
verify_found(Verifier *v, const char *status, bool has_entry, int64 entry_id,
			 bool has_seal, int64 seal_id, char *detail)
{
	if (v->result.status != NULL)
		return;
	v->result.status = status;
	v->result.has_entry = has_entry;
	v->result.entry_id = entry_id;
	v->result.has_seal = has_seal;
	v->result.seal_id = seal_id;
	v->result.detail = detail;
}

/* A deep copy of an SPI row of audit.seals, in the verifier's context. */
static void
verify_copy_seal(Verifier *v, HeapTuple tuple, TupleDesc desc, SealRow *row)
{
	MemoryContext old = MemoryContextSwitchTo(v->cxt);

	audit_seal_read_row(tuple, desc, row);
	if (row->entry_ids != (Datum) 0)
		row->entry_ids =
			PointerGetDatum(PG_DETOAST_DATUM_COPY(row->entry_ids));
	if (row->locators != NULL)
		row->locators = (bytea *) PG_DETOAST_DATUM_COPY(row->locators);
	MemoryContextSwitchTo(old);
}

static int
verify_union_cmp(const void *a, const void *b)
{
	const VerifyRetention *ra = (const VerifyRetention *) a;
	const VerifyRetention *rb = (const VerifyRetention *) b;

	if (ra->from != rb->from)
		return ra->from < rb->from ? -1 : 1;
	return 0;
}

/*
 * Whether the retention seals made after seal_id cover [from, to).  Seals
 * are asked about in ascending order, so the union is rebuilt only when a
 * retention seal is passed.
 */
static bool
verify_retired(Verifier *v, int64 seal_id, TimestampTz from, TimestampTz to,
			   int64 *by)
{
	int k = 0;
	int i;

	while (k < v->nretentions && v->retentions[k].seal_id <= seal_id)
		k++;
	if (k == v->nretentions)
		return false;
	if (v->union_lo == NULL || v->union_from != k)
	{
		int n = v->nretentions - k;
		VerifyRetention *sorted = palloc(sizeof(VerifyRetention) * n);
		MemoryContext old = MemoryContextSwitchTo(v->cxt);

		if (v->union_lo != NULL)
		{
			pfree(v->union_lo);
			pfree(v->union_hi);
		}
		v->union_lo = palloc(sizeof(TimestampTz) * n);
		v->union_hi = palloc(sizeof(TimestampTz) * n);
		MemoryContextSwitchTo(old);
		memcpy(sorted, v->retentions + k, sizeof(VerifyRetention) * n);
		qsort(sorted, n, sizeof(VerifyRetention), verify_union_cmp);
		v->nunion = 0;
		for (i = 0; i < n; i++)
		{
			if (v->nunion > 0 && sorted[i].from <= v->union_hi[v->nunion - 1])
			{
				if (sorted[i].to > v->union_hi[v->nunion - 1])
					v->union_hi[v->nunion - 1] = sorted[i].to;
				continue;
			}
			v->union_lo[v->nunion] = sorted[i].from;
			v->union_hi[v->nunion] = sorted[i].to;
			v->nunion++;
		}
		pfree(sorted);
		v->union_from = k;
	}
	for (i = 0; i < v->nunion; i++)
	{
		if (v->union_lo[i] <= from && to <= v->union_hi[i])
		{
			int j;

			/* The last retention seal that covers it, for the link check. */
			*by = 0;
			for (j = k; j < v->nretentions; j++)
			{
				if (v->retentions[j].from < to && from < v->retentions[j].to)
					*by = v->retentions[j].seal_id;
			}
			return true;
		}
	}
	return false;
}

/*
 * Seal-level checks of one seal, in chain order: its id follows, its hash
 * is that of its contents, and it chains to the previous one.  Returns
 * false when a problem was found.
 */
static bool
verify_seal_header(Verifier *v, const SealRow *row)
{
	uint8 hash[SEAL_HASH_LEN];

	if (row->seal_id != (v->have_prev ? v->prev_id + 1 : v->expect_first))
	{
		int64 missing = v->have_prev ? v->prev_id + 1 : v->expect_first;

		verify_found(
			v, "chain broken", false, 0, true, missing,
			psprintf(
				"Seal " INT64_FORMAT
				" is missing: the next seal in the chain is seal " INT64_FORMAT
				".",
				missing, row->seal_id));
		return false;
	}
	audit_seal_row_hash(v->ctx, row, hash);
	if (memcmp(hash, row->hash, SEAL_HASH_LEN) != 0)
	{
		verify_found(
			v, "seal altered", false, 0, true, row->seal_id,
			psprintf("Seal " INT64_FORMAT
					 " was changed: its hash is not the hash of its contents.",
					 row->seal_id));
		return false;
	}
	if (v->have_prev &&
		memcmp(row->prev_hash, v->prev_hash, SEAL_HASH_LEN) != 0)
	{
		verify_found(v, "seal altered", false, 0, true, v->prev_id,
					 psprintf("Seal " INT64_FORMAT
							  " was changed and re-hashed: seal " INT64_FORMAT
							  " holds another hash for it.",
							  v->prev_id, row->seal_id));
		return false;
	}
	if (!v->have_prev && row->seal_id == 1)
	{
		static const uint8 zero[SEAL_HASH_LEN] = {0};

		if (memcmp(row->prev_hash, zero, SEAL_HASH_LEN) != 0)
		{
			verify_found(
				v, "seal altered", false, 0, true, 1,
				pstrdup(
					"Seal 1 does not start the chain: its prev_hash is not zero."));
			return false;
		}
	}
	if (!row->retention)
	{
		bool ok;

		if (!v->have_window)
			ok = row->first_entry_id == PG_INT64_MIN;
		else
			ok = (row->first_entry_id == v->window_first &&
				  row->last_entry_id == v->window_last) ||
				 (v->window_last < PG_INT64_MAX &&
				  row->first_entry_id == v->window_last + 1);
		if (!ok || !row->has_window ||
			row->last_entry_id < row->first_entry_id)
		{
			verify_found(
				v, "chain broken", false, 0, true, row->seal_id,
				psprintf("The window of entry ids of seal " INT64_FORMAT
						 " does not follow the one before it.",
						 row->seal_id));
			return false;
		}
		v->have_window = true;
		v->window_first = row->first_entry_id;
		v->window_last = row->last_entry_id;
	}
	v->have_prev = true;
	v->prev_id = row->seal_id;
	memcpy(v->prev_hash, row->hash, SEAL_HASH_LEN);
	v->seals++;
	return true;
}

/* The round of the chunk whose window holds id, or -1. */
static int
verify_round_of(Verifier *v, int64 id)
{
	int lo = 0;
	int hi = v->nrounds - 1;

	while (lo <= hi)
	{
		int mid = lo + (hi - lo) / 2;

		if (id < v->rounds[mid].first)
			hi = mid - 1;
		else if (id > v->rounds[mid].last)
			lo = mid + 1;
		else
			return mid;
	}
	return -1;
}

static void
verify_columns(void *arg, int64 id, int *entry_columns, int *statement_columns)
{
	Verifier *v = (Verifier *) arg;
	int r = verify_round_of(v, id);

	if (r >= 0)
	{
		*entry_columns = v->rounds[r].entry_columns;
		*statement_columns = v->rounds[r].statement_columns;
	}
}

/* Whether ts falls in the bucket of a seal. */
static inline bool
verify_in_bucket(const SealRow *row, TimestampTz ts)
{
	if (row->ts_from == row->ts_to)
		return ts == row->ts_from;
	return row->ts_from <= ts && ts < row->ts_to;
}

/*
 * Compare the entries found for an entries seal (indexes into scan, in
 * order) with what it sealed.  Returns false when a problem was found.
 */
static bool
verify_seal_entries(Verifier *v, const SealRow *row, SealScan *scan,
					const int *found, int nfound)
{
	uint8 digest[SEAL_HASH_LEN];
	int64 nids;
	int64 *ids;
	int64 retired_by;
	int64 i;
	int64 j;
	const uint8 *locators;
	int64 nlocators;
	uint32 locator = 0;

	if (nfound == 0 && row->entry_count > 0 &&
		verify_retired(v, row->seal_id, row->ts_from, row->ts_to, &retired_by))
	{
		v->retired += row->entry_count;
		v->retention_used = Max(v->retention_used, retired_by);
		return true;
	}
	audit_seal_scan_digest(scan, found, nfound, v->ctx, digest);
	if (row->has_entries_hash && nfound == row->entry_count &&
		memcmp(digest, row->entries_hash, SEAL_HASH_LEN) == 0)
	{
		v->entries += nfound;
		return true;
	}

	/* Something differs: walk the sealed ids and locators beside it. */
	ids = row->entry_ids != (Datum) 0
			  ? audit_seal_expand_ids(row->entry_ids, &nids)
			  : NULL;
	if (ids == NULL)
		nids = 0;
	locators =
		row->locators ? (const uint8 *) VARDATA_ANY(row->locators) : NULL;
	nlocators = row->locators
					? VARSIZE_ANY_EXHDR(row->locators) / SEAL_LOCATOR_LEN
					: 0;
	i = 0;
	j = 0;
	while (i < nids || j < nfound)
	{
		const SealEntry *e = j < nfound ? &scan->entries[found[j]] : NULL;

		if (e == NULL || (i < nids && ids[i] < e->id))
		{
			verify_found(
				v, "deleted", true, ids[i], true, row->seal_id,
				psprintf("Entry " INT64_FORMAT ", sealed by seal " INT64_FORMAT
						 ", is missing (the seal has %d of its " INT64_FORMAT
						 " entries).",
						 ids[i], row->seal_id, nfound, row->entry_count));
			return false;
		}
		if (i >= nids || e->id < ids[i])
		{
			verify_found(
				v, "inserted", true, e->id, true, row->seal_id,
				psprintf("Entry " INT64_FORMAT
						 " lies in the window and bucket of seal " INT64_FORMAT
						 " but was not sealed by it.",
						 e->id, row->seal_id));
			return false;
		}
		if (i < nlocators)
			memcpy(&locator, locators + SEAL_LOCATOR_LEN * i,
				   SEAL_LOCATOR_LEN);
		if (i >= nlocators || pg_ntoh32(locator) != e->locator)
		{
			verify_found(
				v, "altered", true, e->id, true, row->seal_id,
				psprintf(
					"Entry " INT64_FORMAT " is not what seal " INT64_FORMAT
					" sealed: a column of it, or of the statement it refers to, was changed.",
					e->id, row->seal_id));
			return false;
		}
		i++;
		j++;
	}
	verify_found(v, "altered", false, 0, true, row->seal_id,
				 psprintf("An entry of seal " INT64_FORMAT
						  " was changed; its locators do not tell which.",
						  row->seal_id));
	return false;
}

/*
 * Check the chunk: its seals in order, each followed by its entries.
 */
static void
verify_chunk(Verifier *v)
{
	SealScan *scan = &v->scan;
	int *seal_of;
	int **found;
	int *nfound;
	int64 *inserted; /* per round: the first entry in no bucket, or 0 */
	bool *has_inserted;
	int *stranger; /* per round: its first stranger (index), or -1 */
	MemoryContext old;
	int i;
	int r;

	if (v->nchunk == 0)
		return;
	old = MemoryContextSwitchTo(v->cxt);
	audit_seal_scan_reset(scan, 0);
	/* One scan per run of rounds sealing the entries of one server. */
	for (r = 0; r < v->nrounds;)
	{
		int end = r + 1;

		while (end < v->nrounds &&
			   v->rounds[end].has_server == v->rounds[r].has_server &&
			   v->rounds[end].server_id == v->rounds[r].server_id)
			end++;
		if (v->rounds[r].has_server)
			audit_seal_scan_entries(
				scan, v->rounds[r].server_id, v->rounds[r].first,
				v->rounds[end - 1].last, verify_columns, v, v->known_servers);
		r = end;
	}
	if (v->nrounds > 0)
		audit_seal_scan_finish(scan, v->ctx);

	/* Give each entry to the seal of its round whose bucket holds it. */
	seal_of = palloc(sizeof(int) * Max(scan->nentries, 1));
	nfound = palloc0(sizeof(int) * v->nchunk);
	found = palloc0(sizeof(int *) * v->nchunk);
	inserted = palloc0(sizeof(int64) * Max(v->nrounds, 1));
	has_inserted = palloc0(sizeof(bool) * Max(v->nrounds, 1));
	stranger = palloc(sizeof(int) * Max(v->nrounds, 1));
	for (r = 0; r < v->nrounds; r++)
		stranger[r] = -1;
	for (i = 0; i < scan->nstrangers; i++)
	{
		r = verify_round_of(v, scan->stranger_ids[i]);
		if (r >= 0 && (stranger[r] < 0 || scan->stranger_ids[i] <
											  scan->stranger_ids[stranger[r]]))
			stranger[r] = i;
	}
	for (i = 0; i < scan->nentries; i++)
	{
		SealEntry *e = &scan->entries[i];
		int k;

		seal_of[i] = -1;
		r = verify_round_of(v, e->id);
		if (r < 0)
			continue;
		for (k = 0; k < v->rounds[r].nseals; k++)
		{
			int s = v->rounds[r].first_seal + k;

			if (verify_in_bucket(&v->chunk[s].row, e->ts))
			{
				seal_of[i] = s;
				nfound[s]++;
				break;
			}
		}
		if (seal_of[i] < 0 && !has_inserted[r])
		{
			has_inserted[r] = true;
			inserted[r] = e->id;
		}
	}
	for (i = 0; i < v->nchunk; i++)
	{
		found[i] = palloc(sizeof(int) * Max(nfound[i], 1));
		nfound[i] = 0;
	}
	for (i = 0; i < scan->nentries; i++)
	{
		if (seal_of[i] >= 0)
			found[seal_of[i]][nfound[seal_of[i]]++] = i;
	}

	for (i = 0; i < v->nchunk && v->result.status == NULL; i++)
	{
		VerifySeal *s = &v->chunk[i];

		CHECK_FOR_INTERRUPTS();
		if (!verify_seal_header(v, &s->row) || s->row.retention)
			continue;
		if (!verify_seal_entries(v, &s->row, scan, found[i], nfound[i]))
			continue;
		r = s->round;
		if (i == v->rounds[r].first_seal + v->rounds[r].nseals - 1 &&
			stranger[r] >= 0)
			verify_found(
				v, "inserted", true, scan->stranger_ids[stranger[r]], true,
				v->chunk[v->rounds[r].first_seal].row.seal_id,
				psprintf("Entry " INT64_FORMAT
						 " lies in the window of seal " INT64_FORMAT
						 " with server_id " INT64_FORMAT
						 ", a server whose entries no seal of this database"
						 " covers and no subscription of it receives.",
						 scan->stranger_ids[stranger[r]],
						 v->chunk[v->rounds[r].first_seal].row.seal_id,
						 scan->stranger_servers[stranger[r]]));
		if (i == v->rounds[r].first_seal + v->rounds[r].nseals - 1 &&
			has_inserted[r])
			verify_found(
				v, "inserted", true, inserted[r], true,
				v->chunk[v->rounds[r].first_seal].row.seal_id,
				psprintf("Entry " INT64_FORMAT
						 " lies in the window of seal " INT64_FORMAT
						 " but in no bucket sealed in that window.",
						 inserted[r],
						 v->chunk[v->rounds[r].first_seal].row.seal_id));
	}
	v->nchunk = 0;
	v->nrounds = 0;
	MemoryContextSwitchTo(old);
	MemoryContextReset(v->cxt);
}

/* Add a seal read from the cursor to the chunk. */
static void
verify_add(Verifier *v, HeapTuple tuple, TupleDesc desc)
{
	VerifySeal *s;

	if (v->nchunk == v->maxchunk)
	{
		v->maxchunk *= 2;
		v->chunk = repalloc(v->chunk, sizeof(VerifySeal) * v->maxchunk);
		v->rounds = repalloc(v->rounds, sizeof(VerifyRound) * v->maxchunk);
	}
	s = &v->chunk[v->nchunk];
	verify_copy_seal(v, tuple, desc, &s->row);
	s->round = -1;
	if (!s->row.retention)
	{
		VerifyRound *last = v->nrounds > 0 ? &v->rounds[v->nrounds - 1] : NULL;

		if (last != NULL && last->first == s->row.first_entry_id &&
			last->last == s->row.last_entry_id &&
			last->has_server == s->row.has_server &&
			last->server_id == s->row.server_id &&
			last->first_seal + last->nseals == v->nchunk)
			last->nseals++;
		else
		{
			VerifyRound *round = &v->rounds[v->nrounds++];

			round->first = s->row.first_entry_id;
			round->last = s->row.last_entry_id;
			/*
			 * Overlapping windows are reported by the header checks; keep the
			 * rounds ordered and disjoint for the lookups meanwhile.
			 */
			if (last != NULL && round->first <= last->last)
				round->first = last->last + 1;
			if (round->last < round->first)
				round->last = round->first;
			round->first_seal = v->nchunk;
			round->nseals = 1;
			round->entry_columns = s->row.entry_columns;
			round->statement_columns = s->row.statement_columns;
			round->has_server = s->row.has_server;
			round->server_id = s->row.server_id;
		}
		s->round = v->nrounds - 1;
	}
	v->nchunk++;
}

/* Load every retention seal made after seal_id. */
static void
verify_load_retentions(Verifier *v, int64 after)
{
	Oid argtypes[1] = {INT8OID};
	Datum values[1];
	uint64 i;

	values[0] = Int64GetDatum(after);
	opsdata_spi_check(
		SPI_execute_with_args(
			"SELECT seal_id, ts_from, ts_to FROM audit.seals"
			" WHERE kind OPERATOR(pg_catalog.=) 'retention'"
			" AND seal_id OPERATOR(pg_catalog.>) $1 ORDER BY seal_id",
			1, argtypes, values, NULL, true, 0),
		SPI_OK_SELECT, "read the retention seals");
	v->nretentions = (int) SPI_processed;
	v->retentions = palloc(sizeof(VerifyRetention) * Max(v->nretentions, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple tup = SPI_tuptable->vals[i];
		bool isnull;

		v->retentions[i].seal_id = DatumGetInt64(
			SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		v->retentions[i].from = DatumGetTimestampTz(
			SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		v->retentions[i].to = DatumGetTimestampTz(
			SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * The servers whose entries may lie in this server's windows of ids: this
 * server, and those whose entries seals of the chain cover (a dump of
 * another server restored here brings its seals).  Entries of any other
 * server are strangers, unless the database subscribes to audit entries of
 * other servers (doc/scale-out.md): then it holds entries of servers it
 * has no seal of, verified by their own servers' chains, and any server is
 * known.
 */
static void
verify_load_servers(Verifier *v)
{
	Datum *elems;
	bool isnull;
	uint64 i;
	int n = 0;

	if (SPI_execute("SELECT EXISTS (SELECT FROM pg_catalog.pg_subscription s"
					" WHERE s.subdbid OPERATOR(pg_catalog.=) (SELECT d.oid"
					" FROM pg_catalog.pg_database d WHERE d.datname"
					" OPERATOR(pg_catalog.=) pg_catalog.current_database()))",
					true, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "could not read pg_subscription");
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
								   SPI_tuptable->tupdesc, 1, &isnull)))
	{
		SPI_freetuptable(SPI_tuptable);
		v->known_servers = (Datum) 0;
		return;
	}
	SPI_freetuptable(SPI_tuptable);
	if (SPI_execute("SELECT DISTINCT server_id FROM audit.seals"
					" WHERE server_id IS NOT NULL",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read audit.seals");
	elems = palloc(sizeof(Datum) * (SPI_processed + 1));
	elems[n++] = Int64GetDatum(audit_seal_local_server());
	for (i = 0; i < SPI_processed; i++)
	{
		Datum d = SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc,
								1, &isnull);

		if (!isnull)
			elems[n++] = d;
	}
	SPI_freetuptable(SPI_tuptable);
	v->known_servers = PointerGetDatum(construct_array(
		elems, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
}

/*
 * Walk seals first..last in chain order through a cursor, calling each
 * with entries (full check) or without (header checks only).
 */
static void
verify_walk(Verifier *v, int64 first, int64 last, bool with_entries)
{
	Oid argtypes[2] = {INT8OID, INT8OID};
	Datum values[2];
	Portal portal;
	int64 pending = 0;

	values[0] = Int64GetDatum(first);
	values[1] = Int64GetDatum(last);
	portal = SPI_cursor_open_with_args(
		NULL,
		"SELECT * FROM audit.seals WHERE seal_id OPERATOR(pg_catalog.>=) $1"
		" AND seal_id OPERATOR(pg_catalog.<=) $2 ORDER BY seal_id",
		2, argtypes, values, NULL, true, 0);
	for (;;)
	{
		SPITupleTable *tuptable;
		uint64 ntuples;
		uint64 i;

		/*
		 * Keep the batch: checking a chunk runs queries, which replace
		 * SPI_tuptable.
		 */
		SPI_cursor_fetch(portal, true, VERIFY_FETCH);
		tuptable = SPI_tuptable;
		ntuples = SPI_processed;
		if (ntuples == 0)
			break;
		for (i = 0; i < ntuples && v->result.status == NULL; i++)
		{
			HeapTuple tup = tuptable->vals[i];

			if (!with_entries)
			{
				SealRow row;

				verify_copy_seal(v, tup, tuptable->tupdesc, &row);
				(void) verify_seal_header(v, &row);
				MemoryContextReset(v->cxt);
				continue;
			}

			/* A chunk ends between rounds. */
			if (pending >= VERIFY_CHUNK_ENTRIES && v->nchunk > 0)
			{
				VerifySeal *lastseal = &v->chunk[v->nchunk - 1];
				bool isnull;
				Datum d = SPI_getbinval(
					tup, tuptable->tupdesc,
					SPI_fnumber(tuptable->tupdesc, "first_entry_id"), &isnull);

				if (lastseal->row.retention || isnull ||
					DatumGetInt64(d) != lastseal->row.first_entry_id)
				{
					verify_chunk(v);
					pending = 0;
				}
			}
			verify_add(v, tup, tuptable->tupdesc);
			pending += v->chunk[v->nchunk - 1].row.entry_count;
		}
		SPI_freetuptable(tuptable);
		if (v->result.status != NULL)
			break;
	}
	SPI_cursor_close(portal);
	if (with_entries && v->result.status == NULL)
		verify_chunk(v);
}

/*
 * Set up the chain's state before seal first: the hash and id of the seal
 * before it, and the window of the last entries seal before it.  Returns
 * false (with the problem recorded) when the seal before is missing.
 */
static bool
verify_start(Verifier *v, int64 first)
{
	Oid argtypes[1] = {INT8OID};
	Datum values[1];
	bool isnull;

	v->have_prev = false;
	v->have_window = false;
	v->expect_first = Max(first, 1);
	if (first <= 1)
		return true;
	values[0] = Int64GetDatum(first - 1);
	opsdata_spi_check(
		SPI_execute_with_args(
			"SELECT hash FROM audit.seals WHERE seal_id OPERATOR(pg_catalog.=) $1",
			1, argtypes, values, NULL, true, 1),
		SPI_OK_SELECT, "read audit.seals");
	if (SPI_processed != 1)
	{
		verify_found(
			v, "chain broken", false, 0, true, first - 1,
			psprintf("Seal " INT64_FORMAT
					 " is missing: the chain before seal " INT64_FORMAT
					 " is cut.",
					 first - 1, first));
		return false;
	}
	{
		bytea *h = DatumGetByteaPP(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

		memset(v->prev_hash, 0, SEAL_HASH_LEN);
		if (!isnull)
			memcpy(v->prev_hash, VARDATA_ANY(h),
				   Min(VARSIZE_ANY_EXHDR(h), (Size) SEAL_HASH_LEN));
	}
	v->have_prev = true;
	v->prev_id = first - 1;
	SPI_freetuptable(SPI_tuptable);
	values[0] = Int64GetDatum(first);
	opsdata_spi_check(
		SPI_execute_with_args(
			"SELECT first_entry_id, last_entry_id FROM audit.seals"
			" WHERE kind OPERATOR(pg_catalog.=) 'entries'"
			" AND seal_id OPERATOR(pg_catalog.<) $1"
			" ORDER BY seal_id DESC LIMIT 1",
			1, argtypes, values, NULL, true, 1),
		SPI_OK_SELECT, "read audit.seals");
	if (SPI_processed == 1)
	{
		bool null2;
		Datum a = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								1, &isnull);
		Datum b = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								2, &null2);

		if (!isnull && !null2)
		{
			v->have_window = true;
			v->window_first = DatumGetInt64(a);
			v->window_last = DatumGetInt64(b);
		}
	}
	SPI_freetuptable(SPI_tuptable);
	return true;
}

static void
verify_init(Verifier *v)
{
	memset(v, 0, sizeof(Verifier));
	v->cxt =
		AllocSetContextCreate(CurrentMemoryContext, "pg_opsdata verify chunk",
							  ALLOCSET_DEFAULT_SIZES);
	v->ctx = audit_seal_sha256_create();
	v->maxchunk = 64;
	v->chunk = palloc(sizeof(VerifySeal) * v->maxchunk);
	v->rounds = palloc(sizeof(VerifyRound) * v->maxchunk);
	audit_seal_scan_init(&v->scan, 0, CurrentMemoryContext);
	/* Old entries may have to be read from disk. */
	v->scan.prefetch = true;
}

/*
 * Verify the seals made in [args[0], args[1]) (NULL: unbounded) and their
 * entries.  Connected to SPI, in the encoding switch.
 */
static void
verify_range(Verifier *v, Datum *args, char *argnulls)
{
	Oid argtypes[2] = {TIMESTAMPTZOID, TIMESTAMPTZOID};
	bool isnull;
	bool null2;
	Datum a;
	Datum b;

	/* An aggregate: one row. */
	opsdata_spi_check(
		SPI_execute_with_args(
			"SELECT pg_catalog.min(seal_id), pg_catalog.max(seal_id)"
			" FROM audit.seals"
			" WHERE ($1 IS NULL OR sealed_at OPERATOR(pg_catalog.>=) $1)"
			" AND ($2 IS NULL OR sealed_at OPERATOR(pg_catalog.<) $2)",
			2, argtypes, args, argnulls, true, 1),
		SPI_OK_SELECT, "read audit.seals");
	a = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
					  &isnull);
	b = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &null2);
	v->any = !isnull && !null2;
	if (v->any)
	{
		v->first = DatumGetInt64(a);
		v->last = DatumGetInt64(b);
	}
	SPI_freetuptable(SPI_tuptable);
	if (!v->any || !verify_start(v, v->first))
		return;
	verify_load_retentions(v, v->first);
	verify_load_servers(v);
	verify_walk(v, v->first, v->last, true);

	/*
	 * A retention seal after the range that excused a loss must be part of
	 * the chain: check the seals that lead to it.
	 */
	if (v->result.status == NULL && v->retention_used > v->last)
	{
		int64 seals = v->seals;

		verify_walk(v, v->last + 1, v->retention_used, false);
		v->seals = seals;
	}
}

/*
 * Check the seals from seal_id (0: the start) to head, headers only, in the
 * encoding switch.
 */
static void
verify_digest_walk(Verifier *v, int64 seal_id, int64 head)
{
	int saved = audit_seal_encoding_begin();

	PG_TRY();
	{
		if (verify_start(v, Max(seal_id, 1)))
			verify_walk(v, Max(seal_id, 1), head, false);
	}
	PG_FINALLY();
	{
		audit_seal_encoding_end(saved);
	}
	PG_END_TRY();
}

/*
 * audit.verify(from timestamptz, to timestamptz): one row (status,
 * entry_id, seal_id, detail, seals, entries).
 */
Datum
audit_verify(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum args[2];
	char argnulls[2] = {' ', ' '};
	Datum values[6];
	bool nulls[6] = {false};
	Verifier v;
	int saved;

	InitMaterializedSRF(fcinfo, 0);
	args[0] = PG_ARGISNULL(0) ? (Datum) 0 : PG_GETARG_DATUM(0);
	args[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	if (PG_ARGISNULL(0))
		argnulls[0] = 'n';
	if (PG_ARGISNULL(1))
		argnulls[1] = 'n';

	opsdata_spi_connect(0);
	verify_init(&v);
	saved = audit_seal_encoding_begin();
	PG_TRY();
	{
		verify_range(&v, args, argnulls);
	}
	PG_FINALLY();
	{
		audit_seal_encoding_end(saved);
	}
	PG_END_TRY();
	pg_cryptohash_free(v.ctx);

	if (v.result.status == NULL)
	{
		if (!v.any)
			verify_found(&v, "intact", false, 0, false, 0,
						 pstrdup("No seal was made in the range."));
		else
			verify_found(&v, "intact", false, 0, false, 0,
						 psprintf("Seals " INT64_FORMAT " to " INT64_FORMAT
								  " and the " INT64_FORMAT
								  " entries they cover are intact"
								  "%s.",
								  v.first, v.last, v.entries,
								  v.retired > 0
									  ? psprintf("; " INT64_FORMAT
												 " more left by retention",
												 v.retired)
									  : ""));
	}
	values[0] = CStringGetTextDatum(v.result.status);
	values[1] = Int64GetDatum(v.result.entry_id);
	nulls[1] = !v.result.has_entry;
	values[2] = Int64GetDatum(v.result.seal_id);
	nulls[2] = !v.result.has_seal;
	values[3] = CStringGetTextDatum(v.result.detail);
	values[4] = Int64GetDatum(v.seals);
	values[5] = Int64GetDatum(v.entries);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	SPI_finish();
	return (Datum) 0;
}

static Datum verify_digest_check(FunctionCallInfo fcinfo, int64 seal_id,
								 const uint8 *hash, bool has_entries,
								 int64 entries);

/* An invalid digest: the error. */
static void
verify_bad_digest(Jsonb *digest)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid audit digest"),
			 errdetail("The digest is %s.",
					   JsonbToCString(NULL, &digest->root, VARSIZE(digest))),
			 errhint("A digest is what audit.digest() returns: an object with "
					 "\"seal_id\", \"hash\" (64 hexadecimal digits) and "
					 "\"entries\".")));
}

/* The value of key in the object digest, or NULL. */
static JsonbValue *
verify_digest_field(Jsonb *digest, const char *key)
{
	JsonbValue k;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	return findJsonbValueFromContainer(&digest->root, JB_FOBJECT, &k);
}

/* A whole number of the digest that fits in bigint, >= 0. */
static int64
verify_digest_number(Jsonb *digest, JsonbValue *v)
{
	Datum d;

	if (v == NULL || v->type != jbvNumeric)
		verify_bad_digest(digest);
	d = NumericGetDatum(v->val.numeric);
	if (!DatumGetBool(DirectFunctionCall2(
			numeric_eq, d,
			DirectFunctionCall2(numeric_trunc, d, Int32GetDatum(0)))) ||
		DatumGetBool(DirectFunctionCall2(
			numeric_lt, d, NumericGetDatum(int64_to_numeric(0)))) ||
		DatumGetBool(DirectFunctionCall2(
			numeric_gt, d, NumericGetDatum(int64_to_numeric(PG_INT64_MAX)))))
		verify_bad_digest(digest);
	return DatumGetInt64(DirectFunctionCall1(numeric_int8, d));
}

/*
 * audit.verify_digest(digest jsonb): one row (status, seal_id, detail).
 */
Datum
audit_verify_digest(PG_FUNCTION_ARGS)
{
	Jsonb *digest = PG_GETARG_JSONB_P(0);
	JsonbValue *v;
	uint8 hashbytes[SEAL_HASH_LEN];
	int64 seal_id;
	bool has_entries;
	int64 entries = 0;
	int i;

	if (!JB_ROOT_IS_OBJECT(digest))
		verify_bad_digest(digest);
	seal_id =
		verify_digest_number(digest, verify_digest_field(digest, "seal_id"));
	v = verify_digest_field(digest, "hash");
	if (v == NULL || v->type != jbvString ||
		v->val.string.len != 2 * SEAL_HASH_LEN)
		verify_bad_digest(digest);
	for (i = 0; i < 2 * SEAL_HASH_LEN; i++)
	{
		char c = v->val.string.val[i];
		int x;

		if (c >= '0' && c <= '9')
			x = c - '0';
		else if (c >= 'a' && c <= 'f')
			x = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			x = c - 'A' + 10;
		else
		{
			verify_bad_digest(digest);
			x = 0;
		}
		if (i % 2 == 0)
			hashbytes[i / 2] = x << 4;
		else
			hashbytes[i / 2] |= x;
	}
	v = verify_digest_field(digest, "entries");
	has_entries = v != NULL && v->type != jbvNull;
	if (has_entries)
		entries = verify_digest_number(digest, v);
	return verify_digest_check(fcinfo, seal_id, hashbytes, has_entries,
							   entries);
}

/*
 * Check the chain against a digest: seal seal_id still has hash, and every
 * seal since chains to it.  Returns the function's one row.
 */
static Datum
verify_digest_check(FunctionCallInfo fcinfo, int64 seal_id, const uint8 *hash,
					bool has_entries, int64 entries)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid argtypes[1] = {INT8OID};
	Datum args[1];
	Datum values[3];
	bool nulls[3] = {false};
	Verifier v;
	int64 head = 0;
	int64 head_total = 0;
	int64 base_total = 0;
	bool isnull;

	InitMaterializedSRF(fcinfo, 0);
	opsdata_spi_connect(0);
	verify_init(&v);

	opsdata_spi_check(
		SPI_execute("SELECT seal_id, total_entries FROM audit.seals"
					" ORDER BY seal_id DESC LIMIT 1",
					true, 1),
		SPI_OK_SELECT, "read audit.seals");
	if (SPI_processed == 1)
	{
		head = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
		head_total = DatumGetInt64(SPI_getbinval(
			SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);

	if (seal_id > head)
		verify_found(&v, "rewritten", false, 0, true, seal_id,
					 psprintf("The chain ends at seal " INT64_FORMAT
							  ", before seal " INT64_FORMAT
							  " of the digest: seals were removed.",
							  head, seal_id));
	else if (seal_id == 0)
	{
		static const uint8 zero[SEAL_HASH_LEN] = {0};

		if (memcmp(hash, zero, SEAL_HASH_LEN) != 0)
			verify_found(
				&v, "rewritten", false, 0, true, 0,
				pstrdup("The digest of an empty chain has a hash of zeros."));
	}
	else
	{
		SealRow row;

		args[0] = Int64GetDatum(seal_id);
		opsdata_spi_check(
			SPI_execute_with_args("SELECT * FROM audit.seals"
								  " WHERE seal_id OPERATOR(pg_catalog.=) $1",
								  1, argtypes, args, NULL, true, 1),
			SPI_OK_SELECT, "read audit.seals");
		if (SPI_processed != 1)
			verify_found(&v, "rewritten", false, 0, true, seal_id,
						 psprintf("Seal " INT64_FORMAT
								  " of the digest is no longer in the chain.",
								  seal_id));
		else
		{
			audit_seal_read_row(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
								&row);
			base_total = row.total_entries;
			if (memcmp(hash, row.hash, SEAL_HASH_LEN) != 0)
				verify_found(
					&v, "rewritten", false, 0, true, seal_id,
					psprintf(
						"Seal " INT64_FORMAT
						" now has hash %s, not the digest's: the chain was rebuilt after the digest was taken.",
						seal_id, audit_seal_hex(row.hash)));
			else if (has_entries && row.total_entries != entries)
				verify_found(
					&v, "rewritten", false, 0, true, seal_id,
					psprintf("Seal " INT64_FORMAT " counts " INT64_FORMAT
							 " entries sealed, the digest " INT64_FORMAT ".",
							 seal_id, row.total_entries, entries));
		}
		SPI_freetuptable(SPI_tuptable);
	}
	if (v.result.status == NULL && head > 0)
	{
		verify_digest_walk(&v, seal_id, head);
		if (v.result.status != NULL)
			v.result.status = "broken";
	}
	if (v.result.status == NULL && seal_id == head)
		verify_found(&v, "extends", false, 0, true, head,
					 psprintf("Seal " INT64_FORMAT
							  " of the digest is still the head of the chain.",
							  seal_id));
	else if (v.result.status == NULL)
		verify_found(
			&v, "extends", false, 0, true, head,
			psprintf("The chain extends the digest: seal " INT64_FORMAT
					 " is unchanged and seals " INT64_FORMAT
					 " to " INT64_FORMAT " follow it, sealing " INT64_FORMAT
					 " more entries.",
					 seal_id, seal_id + 1, head, head_total - base_total));
	pg_cryptohash_free(v.ctx);

	values[0] = CStringGetTextDatum(v.result.status);
	values[1] = Int64GetDatum(v.result.seal_id);
	nulls[1] = !v.result.has_seal;
	values[2] = CStringGetTextDatum(v.result.detail);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	SPI_finish();
	return (Datum) 0;
}
