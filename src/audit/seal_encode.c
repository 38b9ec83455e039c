/*-------------------------------------------------------------------------
 *
 * seal_encode.c
 *		The canonical bytes of audit entries and seals, and their hashes.
 *
 * What is hashed is specified in doc/audit.md ("How the chain is made"),
 * so that an auditor can compute it outside the database; in short:
 *
 *	- a row (of audit.entries, of audit.statements) is encoded as
 *	  record_send() encodes it: the count of its columns, then for each
 *	  column in table order its type's OID and either -1 (NULL) or the
 *	  length and bytes of the value's binary send form, every number in
 *	  network byte order, text in UTF-8.  Only the first n columns count,
 *	  n being recorded in the seal (entry_columns, statement_columns), so
 *	  a column added to a table later leaves older seals valid; nothing
 *	  names a column, so a new column is covered without changing code;
 *	- an entry stands in its seal as its encoding followed by the SHA-256
 *	  of the encoding of the audit.statements row it refers to (of no
 *	  bytes when it refers to none); a seal's entries_hash is the SHA-256
 *	  of that, entry after entry in (entry_id, ts) order, and each entry's
 *	  locator the CRC-32C of the same bytes;
 *	- a seal's hash is SHA-256 of the record_send() encoding of its
 *	  columns in table order, hash left out and locators replaced by their
 *	  SHA-256.
 *
 * One SHA-256 runs over all the entries of a seal, so an entry costs the
 * hashing of its bytes and no computation of a digest of its own; its
 * CRC-32C (4 bytes, in hardware where the processor has it) tells which
 * entry differs when a seal no longer matches.
 *
 * The encoder writes the send form itself for the types whose form is
 * fixed (integers, floats, timestamps, xid8, interval, bool, and text,
 * name and bytea when no conversion applies), and calls the type's send
 * function for every other type; the result is the same bytes.  Send
 * functions of text convert to the client encoding, so the callers switch
 * it to UTF-8 for as long as they encode (audit_seal_encoding_begin()),
 * unless no conversion can happen.  Every caller gives it back under
 * PG_FINALLY, so a session sees its own encoding again however the run
 * ends (test/isolation/specs/audit_seal_encoding.spec); the GUC
 * client_encoding itself is never changed.  Only a message sent to the
 * client in the middle of the run (a FATAL on termination: nothing in the
 * run raises a notice) would be converted to UTF-8.
 *
 * Nothing here takes a lock; the statement lookup runs one query through
 * SPI (the caller is connected) and its results are cached per call.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/seal_encode.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "access/htup_details.h"
#include "access/tupmacs.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_type.h"
#include "common/int.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "port/pg_bswap.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inet.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/multirangetypes.h"
#include "utils/rangetypes.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "audit/seal.h"
#include "core/opsdata.h"

/* How one column's values are written. */
typedef enum SealValueKind
{
	SEAL_VALUE_SEND,	   /* the type's send function */
	SEAL_VALUE_INT2,	   /* 2 bytes */
	SEAL_VALUE_INT4,	   /* 4 bytes (int4, oid, date, xid) */
	SEAL_VALUE_FLOAT4,	   /* the 4 bytes of the float */
	SEAL_VALUE_INT8,	   /* 8 bytes (int8, timestamps, time, xid8) */
	SEAL_VALUE_FLOAT8,	   /* the 8 bytes of the double */
	SEAL_VALUE_BOOL,	   /* 1 byte, 0 or 1 */
	SEAL_VALUE_INTERVAL,   /* time (8), day (4), month (4) */
	SEAL_VALUE_BYTES,	   /* bytea: its bytes */
	SEAL_VALUE_TEXT,	   /* text, varchar, bpchar: bytes, no conversion */
	SEAL_VALUE_NAME,	   /* name: bytes up to the NUL, no conversion */
	SEAL_VALUE_TEXT_ARRAY, /* text[], varchar[]: no call per element */
	SEAL_VALUE_INET,	   /* inet: family, bits, 0, length, address */
	SEAL_VALUE_CIDR		   /* cidr: the same with 1 */
} SealValueKind;

/*
 * How seal_encode_stored() reads and writes a column of a stored tuple:
 * the usual ones in one step, any other deformed and written by kind.
 */
typedef enum SealStoredOp
{
	SEAL_OP_ANY,
	SEAL_OP_INT8,	  /* 8 bytes by value, aligned on a double */
	SEAL_OP_INT4,	  /* 4 bytes by value, aligned on an int */
	SEAL_OP_INTERVAL, /* an interval */
	SEAL_OP_TEXT,	  /* text or bytea with no conversion: its bytes */
	SEAL_OP_INET,	  /* inet or cidr */
	SEAL_OP_ARRAY	  /* an array of text with no conversion */
} SealStoredOp;

typedef struct SealColumn
{
	Oid typid;
	SealValueKind kind;
	SealStoredOp op;
	int16 attlen; /* how the value is stored */
	bool attbyval;
	char attalign;
	uint8 align;   /* attalign in bytes */
	int pick;	   /* where audit_seal_encode() gives its value, or -1 */
	char head[8];  /* the type and length, for a value of fixed length */
	char null[8];  /* the type and -1: the NULL of this column */
	FmgrInfo send; /* SEAL_VALUE_SEND only */
} SealColumn;

struct SealCodec
{
	int ncolumns;
	MemoryContext cxt;		/* the codec and what it looks up */
	MemoryContext valuecxt; /* what send functions allocate, per row */
	int npicked;			/* columns before the last one picked, + 1 */
	Datum picked[SEAL_CODEC_PICKS];
	bool picked_null[SEAL_CODEC_PICKS];
	SealColumn columns[FLEXIBLE_ARRAY_MEMBER];
};

/* A statement's hash, per id and count of columns encoded. */
typedef struct SealStatementKey
{
	int64 id;
	int64 ncolumns; /* 64 bits: no padding in the hashed key */
} SealStatementKey;

typedef struct SealStatementHash
{
	SealStatementKey key;
	bool known; /* hash computed */
	uint8 hash[SEAL_HASH_LEN];
} SealStatementHash;

static SPIPlanPtr seal_statements_plan = NULL;
static SPIPlanPtr seal_width_plan = NULL;

/* SHA-256 of no bytes: the statement hash of an entry without one. */
static const uint8 seal_empty_hash[SEAL_HASH_LEN] = {
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4,
	0xc8, 0x99, 0x6f, 0xb9, 0x24, 0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b,
	0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55};

/* Buckets of ts are aligned on 2000-01-03 00:00 UTC, as partitions are. */
#define SEAL_BUCKET_ANCHOR ((int64) 2 * USECS_PER_DAY)

static inline void
seal_put_int16(StringInfo out, int16 v)
{
	uint16 n = pg_hton16((uint16) v);

	appendBinaryStringInfo(out, (char *) &n, 2);
}

static inline void
seal_put_int32(StringInfo out, int32 v)
{
	uint32 n = pg_hton32((uint32) v);

	appendBinaryStringInfo(out, (char *) &n, 4);
}

static inline void
seal_put_int64(StringInfo out, int64 v)
{
	uint64 n = pg_hton64((uint64) v);

	appendBinaryStringInfo(out, (char *) &n, 8);
}

/* A field: its length, then its bytes. */
static inline void
seal_put_field(StringInfo out, const char *data, int len)
{
	seal_put_int32(out, len);
	appendBinaryStringInfo(out, data, len);
}

/* Room for n more bytes at the end of out; returns where they go. */
static inline char *
seal_reserve(StringInfo out, int n)
{
	if (out->len + n >= out->maxlen)
		enlargeStringInfo(out, n);
	return out->data + out->len;
}

static inline char *
seal_w16(char *p, uint16 v)
{
	v = pg_hton16(v);
	memcpy(p, &v, 2);
	return p + 2;
}

static inline char *
seal_w32(char *p, uint32 v)
{
	v = pg_hton32(v);
	memcpy(p, &v, 4);
	return p + 4;
}

static inline char *
seal_w64(char *p, uint64 v)
{
	v = pg_hton64(v);
	memcpy(p, &v, 8);
	return p + 8;
}

/*
 * The length of the send form of a value of kind, when it is fixed; 0
 * otherwise.
 */
static int
seal_fixed_length(SealValueKind kind)
{
	switch (kind)
	{
		case SEAL_VALUE_INT2:
			return 2;
		case SEAL_VALUE_INT4:
		case SEAL_VALUE_FLOAT4:
			return 4;
		case SEAL_VALUE_INT8:
		case SEAL_VALUE_FLOAT8:
			return 8;
		case SEAL_VALUE_BOOL:
			return 1;
		case SEAL_VALUE_INTERVAL:
			return 16;
		default:
			return 0;
	}
}

/*
 * memcpy() of len bytes, without a call for the few bytes of most text
 * values: two copies of 8 or 4 bytes that may overlap, reading and
 * writing only the len bytes.
 */
static inline void
seal_copy(char *dst, const char *src, int len)
{
	uint64 a;
	uint64 b;
	uint32 c;
	uint32 d;

	if (len > 16)
		memcpy(dst, src, len);
	else if (len >= 8)
	{
		memcpy(&a, src, 8);
		memcpy(&b, src + len - 8, 8);
		memcpy(dst, &a, 8);
		memcpy(dst + len - 8, &b, 8);
	}
	else if (len >= 4)
	{
		memcpy(&c, src, 4);
		memcpy(&d, src + len - 4, 4);
		memcpy(dst, &c, 4);
		memcpy(dst + len - 4, &d, 4);
	}
	else if (len > 0)
	{
		dst[0] = src[0];
		dst[len / 2] = src[len / 2];
		dst[len - 1] = src[len - 1];
	}
}

/*
 * The codec for the first ncolumns columns of rows of desc (-1: every
 * column), allocated in cxt.  Columns dropped from the table do not appear
 * in a SELECT *'s descriptor; the check guards against any other.
 */
SealCodec *
audit_seal_codec(TupleDesc desc, int ncolumns, MemoryContext cxt)
{
	SealCodec *codec;
	int db = GetDatabaseEncoding();
	bool raw_text = db == PG_UTF8 || db == PG_SQL_ASCII;
	int i;

	if (ncolumns < 0)
		ncolumns = desc->natts;
	if (ncolumns > desc->natts)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("a seal covers %d columns of a table that has %d",
						ncolumns, desc->natts),
				 errhint("Columns of audit tables must never be dropped.")));
	cxt = AllocSetContextCreate(cxt, "pg_opsdata seal codec",
								ALLOCSET_SMALL_SIZES);
	codec = MemoryContextAllocZero(cxt, offsetof(SealCodec, columns) +
											sizeof(SealColumn) * ncolumns);
	codec->ncolumns = ncolumns;
	codec->cxt = cxt;
	codec->valuecxt = AllocSetContextCreate(cxt, "pg_opsdata seal values",
											ALLOCSET_SMALL_SIZES);
	for (i = 0; i < ncolumns; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		SealColumn *col = &codec->columns[i];
		Oid base;

		if (att->attisdropped)
			elog(ERROR, "unexpected dropped column in a sealed row");
		col->typid = att->atttypid;
		col->attlen = att->attlen;
		col->attbyval = att->attbyval;
		col->attalign = att->attalign;
		col->align = att->attalign == TYPALIGN_DOUBLE  ? ALIGNOF_DOUBLE
					 : att->attalign == TYPALIGN_INT   ? ALIGNOF_INT
					 : att->attalign == TYPALIGN_SHORT ? ALIGNOF_SHORT
													   : 1;
		col->pick = -1;
		base = getBaseType(att->atttypid);
		switch (base)
		{
			case INT2OID:
				col->kind = SEAL_VALUE_INT2;
				break;
			case INT4OID:
			case OIDOID:
			case DATEOID:
			case XIDOID:
				col->kind = SEAL_VALUE_INT4;
				break;
			case FLOAT4OID:
				col->kind = SEAL_VALUE_FLOAT4;
				break;
			case INT8OID:
			case TIMESTAMPOID:
			case TIMESTAMPTZOID:
			case TIMEOID:
			case XID8OID:
				col->kind = SEAL_VALUE_INT8;
				break;
			case FLOAT8OID:
				col->kind = SEAL_VALUE_FLOAT8;
				break;
			case BOOLOID:
				col->kind = SEAL_VALUE_BOOL;
				break;
			case INTERVALOID:
				col->kind = SEAL_VALUE_INTERVAL;
				break;
			case BYTEAOID:
				col->kind = SEAL_VALUE_BYTES;
				break;
			case TEXTOID:
			case VARCHAROID:
			case BPCHAROID:
				col->kind = raw_text ? SEAL_VALUE_TEXT : SEAL_VALUE_SEND;
				break;
			case NAMEOID:
				col->kind = raw_text ? SEAL_VALUE_NAME : SEAL_VALUE_SEND;
				break;
			case INETOID:
				col->kind = SEAL_VALUE_INET;
				break;
			case CIDROID:
				col->kind = SEAL_VALUE_CIDR;
				break;
			case TEXTARRAYOID:
			case 1015: /* varchar[] */
				col->kind = raw_text ? SEAL_VALUE_TEXT_ARRAY : SEAL_VALUE_SEND;
				break;
			default:
				col->kind = SEAL_VALUE_SEND;
				break;
		}
		seal_w32(col->null, col->typid);
		seal_w32(col->null + 4, (uint32) -1);
		col->op = SEAL_OP_ANY;
		if (col->kind == SEAL_VALUE_INT8 && col->attlen == 8 &&
			col->attbyval && col->align == ALIGNOF_DOUBLE)
			col->op = SEAL_OP_INT8;
		else if (col->kind == SEAL_VALUE_INT4 && col->attlen == 4 &&
				 col->attbyval && col->align == ALIGNOF_INT)
			col->op = SEAL_OP_INT4;
		else if (col->kind == SEAL_VALUE_INTERVAL &&
				 col->attlen == sizeof(Interval) && !col->attbyval &&
				 col->align == ALIGNOF_DOUBLE)
			col->op = SEAL_OP_INTERVAL;
		else if ((col->kind == SEAL_VALUE_TEXT ||
				  col->kind == SEAL_VALUE_BYTES) &&
				 col->attlen == -1)
			col->op = SEAL_OP_TEXT;
		else if ((col->kind == SEAL_VALUE_INET ||
				  col->kind == SEAL_VALUE_CIDR) &&
				 col->attlen == -1)
			col->op = SEAL_OP_INET;
		else if (col->kind == SEAL_VALUE_TEXT_ARRAY && col->attlen == -1)
			col->op = SEAL_OP_ARRAY;
		seal_w32(col->head, col->typid);
		seal_w32(col->head + 4, seal_fixed_length(col->kind));
		if (col->kind == SEAL_VALUE_SEND)
		{
			Oid sendfn;
			bool varlena;

			getTypeBinaryOutputInfo(att->atttypid, &sendfn, &varlena);
			fmgr_info_cxt(sendfn, &col->send, cxt);
		}
	}
	return codec;
}

int
audit_seal_codec_columns(const SealCodec *codec)
{
	return codec->ncolumns;
}

/*
 * Have audit_seal_encode() give the value of column (from 0) in
 * audit_seal_codec_picked(..., pick, ...), whether it encodes it or not.
 */
void
audit_seal_codec_pick(SealCodec *codec, int column, int pick)
{
	Assert(pick >= 0 && pick < SEAL_CODEC_PICKS);
	if (column < 0 || column >= codec->ncolumns)
		elog(ERROR, "column %d of a sealed row does not exist", column);
	codec->columns[column].pick = pick;
	codec->npicked = Max(codec->npicked, column + 1);
}

/* The value of a picked column in the row last encoded. */
Datum
audit_seal_codec_picked(const SealCodec *codec, int pick, bool *isnull)
{
	*isnull = codec->picked_null[pick];
	return codec->picked[pick];
}

/* Free a codec and all it allocated. */
void
audit_seal_codec_free(SealCodec *codec)
{
	MemoryContextDelete(codec->cxt);
}

/* A column's type, length and bytes. */
static inline void
seal_put_value(StringInfo out, Oid typid, const char *data, int len)
{
	char *p = seal_reserve(out, 8 + len);

	p = seal_w32(p, typid);
	p = seal_w32(p, len);
	memcpy(p, data, len);
	out->len += 8 + len;
}

/*
 * An array of text-like elements, written as array_send() writes it,
 * without a call per element: the elements are walked in place.  An array
 * stored inline is read where it is, whether its header is of one byte or
 * four (positions are counted from where a four-byte header would start,
 * as alignment is); one compressed or stored out of line is detoasted.
 */
static void
seal_put_text_array(StringInfo out, Oid typid, Datum value,
					MemoryContext valuecxt)
{
	struct varlena *v = (struct varlena *) DatumGetPointer(value);
	const char *body; /* what follows the header: ndim, dataoffset... */
	int32 ndim;
	int32 dataoffset;
	Oid elemtype;
	int dims[MAXDIM];
	int lbounds[MAXDIM];
	int nitems;
	int start = out->len;
	const bits8 *bitmap;
	uint32 off; /* of the next element, from the start of a 4-byte header */
	char *p;
	int i;

	if (VARATT_IS_EXTERNAL(v) || VARATT_IS_COMPRESSED(v))
	{
		MemoryContext old = MemoryContextSwitchTo(valuecxt);

		v = (struct varlena *) DatumGetArrayTypeP(value);
		MemoryContextSwitchTo(old);
	}
	body = VARDATA_ANY(v);
	memcpy(&ndim, body, sizeof(int32));
	memcpy(&dataoffset, body + 4, sizeof(int32));
	memcpy(&elemtype, body + 8, sizeof(Oid));
	if (ndim < 0 || ndim > MAXDIM)
		ereport(ERROR,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("an array of %d dimensions cannot be sealed", ndim)));
	for (i = 0; i < ndim; i++)
	{
		memcpy(&dims[i], body + 12 + sizeof(int) * i, sizeof(int));
		memcpy(&lbounds[i], body + 12 + sizeof(int) * (ndim + i), sizeof(int));
	}
	/* One dimension, the usual case, needs no product of dimensions. */
	nitems = ndim == 0 ? 0 : ndim == 1 ? dims[0] : ArrayGetNItems(ndim, dims);
	bitmap = dataoffset != 0
				 ? (const bits8 *) (body + 12 + 2 * sizeof(int) * ndim)
				 : NULL;
	off = dataoffset != 0 ? (uint32) dataoffset : ARR_OVERHEAD_NONULLS(ndim);

	/*
	 * Room for all of it at once: the headers, and no more bytes per element
	 * than its length word and what the array stores of it.
	 */
	p = seal_reserve(out, 8 + 12 + 8 * ndim + 4 * nitems + VARSIZE_ANY(v));
	p = seal_w32(p, typid);
	p = seal_w32(p, 0); /* the length, set below */
	p = seal_w32(p, ndim);
	p = seal_w32(p, dataoffset != 0 ? 1 : 0);
	p = seal_w32(p, elemtype);
	for (i = 0; i < ndim; i++)
	{
		p = seal_w32(p, dims[i]);
		p = seal_w32(p, lbounds[i]);
	}
	for (i = 0; i < nitems; i++)
	{
		const char *e;
		int len;

		if (bitmap != NULL && (bitmap[i / 8] & (1 << (i % 8))) == 0)
		{
			p = seal_w32(p, (uint32) -1);
			continue;
		}
		/* A pad byte is 0; a short header never is. */
		if (body[off - VARHDRSZ] == 0)
			off = INTALIGN(off);
		e = body + off - VARHDRSZ;
		len = VARSIZE_ANY_EXHDR(e);
		p = seal_w32(p, len);
		seal_copy(p, VARDATA_ANY(e), len);
		p += len;
		off += VARSIZE_ANY(e);
	}
	out->len = p - out->data;
	seal_w32(out->data + start + 4, out->len - start - 8);
}

/*
 * Append one non-NULL value of column col.  Memory the send functions
 * allocate goes into the codec's value context.
 */
static pg_attribute_always_inline void
seal_put_datum(const SealCodec *codec, const SealColumn *col, Datum value,
			   StringInfo out)
{
	MemoryContext old;
	char *p;

	switch (col->kind)
	{
		case SEAL_VALUE_INT2:
			p = seal_reserve(out, 10);
			p = seal_w32(p, col->typid);
			p = seal_w32(p, 2);
			seal_w16(p, (uint16) DatumGetInt16(value));
			out->len += 10;
			break;
		case SEAL_VALUE_INT4:
			p = seal_reserve(out, 12);
			p = seal_w32(p, col->typid);
			p = seal_w32(p, 4);
			seal_w32(p, (uint32) DatumGetInt32(value));
			out->len += 12;
			break;
		case SEAL_VALUE_FLOAT4:
		{
			float4 f = DatumGetFloat4(value);
			uint32 bits;

			memcpy(&bits, &f, 4);
			p = seal_reserve(out, 12);
			p = seal_w32(p, col->typid);
			p = seal_w32(p, 4);
			seal_w32(p, bits);
			out->len += 12;
			break;
		}
		case SEAL_VALUE_INT8:
			p = seal_reserve(out, 16);
			p = seal_w32(p, col->typid);
			p = seal_w32(p, 8);
			seal_w64(p, (uint64) DatumGetInt64(value));
			out->len += 16;
			break;
		case SEAL_VALUE_FLOAT8:
		{
			float8 f = DatumGetFloat8(value);
			uint64 bits;

			memcpy(&bits, &f, 8);
			p = seal_reserve(out, 16);
			p = seal_w32(p, col->typid);
			p = seal_w32(p, 8);
			seal_w64(p, bits);
			out->len += 16;
			break;
		}
		case SEAL_VALUE_BOOL:
		{
			char b = DatumGetBool(value) ? 1 : 0;

			seal_put_value(out, col->typid, &b, 1);
			break;
		}
		case SEAL_VALUE_INTERVAL:
		{
			Interval *iv = DatumGetIntervalP(value);

			p = seal_reserve(out, 24);
			p = seal_w32(p, col->typid);
			p = seal_w32(p, 16);
			p = seal_w64(p, (uint64) iv->time);
			p = seal_w32(p, (uint32) iv->day);
			seal_w32(p, (uint32) iv->month);
			out->len += 24;
			break;
		}
		case SEAL_VALUE_BYTES:
		case SEAL_VALUE_TEXT:
		{
			struct varlena *v = (struct varlena *) DatumGetPointer(value);

			/* A short header is read in place; only TOAST is expanded. */
			if (VARATT_IS_EXTERNAL(v) || VARATT_IS_COMPRESSED(v))
			{
				old = MemoryContextSwitchTo(codec->valuecxt);
				v = pg_detoast_datum_packed(v);
				MemoryContextSwitchTo(old);
			}
			seal_put_value(out, col->typid, VARDATA_ANY(v),
						   VARSIZE_ANY_EXHDR(v));
			break;
		}
		case SEAL_VALUE_NAME:
		{
			const char *s = NameStr(*DatumGetName(value));

			seal_put_value(out, col->typid, s, strlen(s));
			break;
		}
		case SEAL_VALUE_TEXT_ARRAY:
			seal_put_text_array(out, col->typid, value, codec->valuecxt);
			break;
		case SEAL_VALUE_INET:
		case SEAL_VALUE_CIDR:
		{
			inet *ip = DatumGetInetPP(value);
			int nb = Max(ip_addrsize(ip), 0);

			p = seal_reserve(out, 12 + nb);
			p = seal_w32(p, col->typid);
			p = seal_w32(p, 4 + nb);
			*p++ = ip_family(ip);
			*p++ = ip_bits(ip);
			*p++ = col->kind == SEAL_VALUE_CIDR ? 1 : 0;
			*p++ = nb;
			memcpy(p, ip_addr(ip), nb);
			out->len += 12 + nb;
			break;
		}
		case SEAL_VALUE_SEND:
		{
			bytea *b;

			old = MemoryContextSwitchTo(codec->valuecxt);
			b = SendFunctionCall((FmgrInfo *) &col->send, value);
			MemoryContextSwitchTo(old);
			seal_put_value(out, col->typid, VARDATA(b), VARSIZE(b) - VARHDRSZ);
			break;
		}
	}
}

/* Append the NULL of column col. */
static inline void
seal_put_null_value(const SealColumn *col, StringInfo out)
{
	char *p = seal_reserve(out, 8);

	p = seal_w32(p, col->typid);
	seal_w32(p, (uint32) -1);
	out->len += 8;
}

/*
 * Ask the processor for the cache lines of the tuple about to be encoded,
 * and of the one after it on its page (scans of entries return the tuples
 * of a page in order): walking a tuple's values is a chain of dependent
 * loads, each value's place known only from the length of the one before,
 * and without this each line the chain reaches first is a wait on memory.
 * The next tuple's line pointer is read without a lock (the buffer is
 * pinned): a stale one only makes a useless prefetch.
 */
static inline void
seal_prefetch(TupleTableSlot *slot, HeapTuple tuple)
{
#ifdef __GNUC__
	const char *t = (const char *) tuple->t_data;
	uint32 len = tuple->t_len;
	uint32 x;

	for (x = 0; x < len; x += 64)
		__builtin_prefetch(t + x);
	if (TTS_IS_BUFFERTUPLE(slot) &&
		BufferIsValid(((BufferHeapTupleTableSlot *) slot)->buffer) &&
		ItemPointerIsValid(&tuple->t_self))
	{
		Page page = BufferGetPage(((BufferHeapTupleTableSlot *) slot)->buffer);
		OffsetNumber next = ItemPointerGetOffsetNumber(&tuple->t_self) + 1;
		ItemId lp;
		uint32 start;

		if (next > PageGetMaxOffsetNumber(page))
			return;
		lp = PageGetItemId(page, next);
		if (!ItemIdIsNormal(lp))
			return;
		start = ItemIdGetOffset(lp);
		len = ItemIdGetLength(lp);
		if (start >= BLCKSZ || len > BLCKSZ - start)
			return;
		t = (const char *) page + start;
		for (x = 0; x < len; x += 64)
			__builtin_prefetch(t + x);
	}
#endif
}

/*
 * seal_put_datum() out of line, for the values seal_encode_stored() does
 * not write itself: its loop stays small.
 */
static pg_noinline void
seal_put_other(const SealCodec *codec, const SealColumn *col, Datum value,
			   StringInfo out)
{
	seal_put_datum(codec, col, value, out);
}

/* Room, in bytes, that the value of any kind but the variable ones takes. */
#define SEAL_FIXED_ROOM 32

/*
 * The encoding straight from the stored tuple of a heap slot, walking its
 * attributes once (as deforming would) without filling the slot's arrays.
 * False, with nothing written, when the tuple lacks some of the columns
 * (added to the table after it was stored): the caller deforms then.
 *
 * The bytes are written through a pointer into out, with room made once
 * for the headers and values of fixed length of every column
 * (SEAL_FIXED_ROOM each); a value of variable length makes room for its
 * bytes besides.  Values that need a detoasting, a send function or an
 * array walk go through seal_put_datum().
 */
static bool
seal_encode_stored(SealCodec *codec, TupleTableSlot *slot, int ncolumns,
				   StringInfo out)
{
	HeapTuple tuple;
	HeapTupleHeader tup;
	bool hasnulls;
	bits8 *bp;
	char *tp;
	uint32 off = 0;
	int nwalk = Max(ncolumns, codec->npicked);
	uint64 present = ~UINT64CONST(0); /* bit i: column i is not NULL */
	char *p;
	int i;

	if (TTS_IS_BUFFERTUPLE(slot) || TTS_IS_HEAPTUPLE(slot))
		tuple = ((HeapTupleTableSlot *) slot)->tuple;
	else
		return false;
	if (tuple == NULL)
		return false;
	tup = tuple->t_data;
	if (HeapTupleHeaderGetNatts(tup) < nwalk)
		return false;
	seal_prefetch(slot, tuple);
	hasnulls = HeapTupleHasNulls(tuple);
	bp = tup->t_bits;
	tp = (char *) tup + tup->t_hoff;
	/* The null bitmap as a word, when it fits in one. */
	if (hasnulls && nwalk <= 64)
	{
		present = 0;
		for (i = 0; i < BITMAPLEN(nwalk); i++)
			present |= (uint64) bp[i] << (8 * i);
	}

	p = seal_reserve(out, 4 + SEAL_FIXED_ROOM * ncolumns);
	p = seal_w32(p, ncolumns);
	for (i = 0; i < nwalk; i++)
	{
		const SealColumn *col = &codec->columns[i];
		char *vp;
		Datum value;

		if (nwalk <= 64 ? ((present >> i) & 1) == 0
						: hasnulls && att_isnull(i, bp))
		{
			if (i < ncolumns)
			{
				memcpy(p, col->null, 8);
				p += 8;
			}
			if (col->pick >= 0)
				codec->picked_null[col->pick] = true;
			continue;
		}
		/* The usual columns, read and written in one go. */
		switch (i < ncolumns ? col->op : SEAL_OP_ANY)
		{
			case SEAL_OP_INT8:
			{
				uint64 v;

				off = TYPEALIGN(ALIGNOF_DOUBLE, off);
				memcpy(&v, tp + off, 8);
				off += 8;
				memcpy(p, col->head, 8);
				seal_w64(p + 8, v);
				p += 16;
				value = Int64GetDatum((int64) v);
				break;
			}
			case SEAL_OP_INT4:
			{
				uint32 v;

				off = TYPEALIGN(ALIGNOF_INT, off);
				memcpy(&v, tp + off, 4);
				off += 4;
				memcpy(p, col->head, 8);
				seal_w32(p + 8, v);
				p += 12;
				value = Int32GetDatum((int32) v);
				break;
			}
			case SEAL_OP_INTERVAL:
			{
				Interval *iv;

				off = TYPEALIGN(ALIGNOF_DOUBLE, off);
				iv = (Interval *) (tp + off);
				off += sizeof(Interval);
				memcpy(p, col->head, 8);
				seal_w64(p + 8, (uint64) iv->time);
				seal_w32(p + 16, (uint32) iv->day);
				seal_w32(p + 20, (uint32) iv->month);
				p += 24;
				value = PointerGetDatum(iv);
				break;
			}
			case SEAL_OP_TEXT:
			{
				const char *data;
				int len;

				/* A pad byte is 0; a short header never is. */
				if (tp[off] == 0)
					off = TYPEALIGN(col->align, off);
				vp = tp + off;
				value = PointerGetDatum(vp);
				if (VARATT_IS_1B(vp) && !VARATT_IS_1B_E(vp))
				{
					len = VARSIZE_1B(vp) - VARHDRSZ_SHORT;
					data = vp + VARHDRSZ_SHORT;
					off += VARHDRSZ_SHORT + len;
				}
				else if (VARATT_IS_4B_U(vp))
				{
					len = VARSIZE_4B(vp) - VARHDRSZ;
					data = vp + VARHDRSZ;
					off += VARHDRSZ + len;
				}
				else
				{
					/* Compressed or out of line: expanded. */
					off += VARSIZE_ANY(vp);
					out->len = p - out->data;
					seal_put_other(codec, col, value, out);
					p = seal_reserve(out, SEAL_FIXED_ROOM * (ncolumns - i));
					break;
				}
				if (p + 8 + len + SEAL_FIXED_ROOM * (ncolumns - i) >=
					out->data + out->maxlen)
				{
					out->len = p - out->data;
					p = seal_reserve(
						out, 8 + len + SEAL_FIXED_ROOM * (ncolumns - i));
				}
				memcpy(p, col->head, 4);
				seal_w32(p + 4, len);
				seal_copy(p + 8, data, len);
				p += 8 + len;
				break;
			}
			case SEAL_OP_INET:
			{
				const inet_struct *ip;
				int nb;

				if (tp[off] == 0)
					off = TYPEALIGN(col->align, off);
				vp = tp + off;
				value = PointerGetDatum(vp);
				off += VARSIZE_ANY(vp);
				if (VARATT_IS_EXTERNAL(vp) || VARATT_IS_COMPRESSED(vp))
				{
					out->len = p - out->data;
					seal_put_other(codec, col, value, out);
					p = seal_reserve(out, SEAL_FIXED_ROOM * (ncolumns - i));
					break;
				}
				ip = (const inet_struct *) VARDATA_ANY(vp);
				nb = ip->family == PGSQL_AF_INET ? 4 : 16;
				memcpy(p, col->head, 4);
				seal_w32(p + 4, 4 + nb);
				p[8] = ip->family;
				p[9] = ip->bits;
				p[10] = col->kind == SEAL_VALUE_CIDR ? 1 : 0;
				p[11] = nb;
				memcpy(p + 12, ip->ipaddr, nb);
				p += 12 + nb;
				break;
			}
			case SEAL_OP_ARRAY:
				if (tp[off] == 0)
					off = TYPEALIGN(col->align, off);
				vp = tp + off;
				value = PointerGetDatum(vp);
				off += VARSIZE_ANY(vp);
				out->len = p - out->data;
				seal_put_text_array(out, col->typid, value, codec->valuecxt);
				p = seal_reserve(out, SEAL_FIXED_ROOM * (ncolumns - i));
				break;
			default:
				/* Any other column: deformed, then written as its kind. */
				if (col->attlen == -1)
				{
					if (tp[off] == 0)
						off = TYPEALIGN(col->align, off);
					vp = tp + off;
					value = PointerGetDatum(vp);
					off += VARSIZE_ANY(vp);
				}
				else
				{
					off = TYPEALIGN(col->align, off);
					vp = tp + off;
					value = fetch_att(vp, col->attbyval, col->attlen);
					off = att_addlength_pointer(off, col->attlen, vp);
				}
				if (i < ncolumns)
				{
					out->len = p - out->data;
					seal_put_other(codec, col, value, out);
					p = seal_reserve(out, SEAL_FIXED_ROOM * (ncolumns - i));
				}
				break;
		}
		if (col->pick >= 0)
		{
			codec->picked[col->pick] = value;
			codec->picked_null[col->pick] = false;
		}
	}
	out->len = p - out->data;
	return true;
}

/*
 * Append the encoding of the first ncolumns columns (at most those of the
 * codec) of the row in slot to out, and set the values of the columns
 * audit_seal_codec_pick() named (in the slot's memory).  Memory the send
 * functions allocate is freed at the next call.
 */
void
audit_seal_encode(SealCodec *codec, TupleTableSlot *slot, int ncolumns,
				  StringInfo out)
{
	int nwalk = Max(ncolumns, codec->npicked);
	char *p;
	int i;

	Assert(ncolumns <= codec->ncolumns);
	/* Most rows allocate nothing: no call then. */
	if (!codec->valuecxt->isReset)
		MemoryContextReset(codec->valuecxt);
	if (seal_encode_stored(codec, slot, ncolumns, out))
		return;
	slot_getsomeattrs(slot, nwalk);
	p = seal_reserve(out, 4);
	seal_w32(p, ncolumns);
	out->len += 4;
	for (i = 0; i < nwalk; i++)
	{
		const SealColumn *col = &codec->columns[i];

		if (col->pick >= 0)
		{
			codec->picked[col->pick] = slot->tts_values[i];
			codec->picked_null[col->pick] = slot->tts_isnull[i];
		}
		if (i >= ncolumns)
			continue;
		if (slot->tts_isnull[i])
			seal_put_null_value(col, out);
		else
			seal_put_datum(codec, col, slot->tts_values[i], out);
	}
}

/*
 * Make the send functions of text write UTF-8 until
 * audit_seal_encoding_end(), which the caller must call with the value
 * returned, also on error.  Returns -1 when nothing had to change.  In a
 * transaction.
 */
int
audit_seal_encoding_begin(void)
{
	int db = GetDatabaseEncoding();
	int client = pg_get_client_encoding();

	if (db == PG_SQL_ASCII || client == PG_UTF8 ||
		(db == PG_UTF8 && client == PG_SQL_ASCII))
		return -1;
	if (PrepareClientEncoding(PG_UTF8) < 0 || SetClientEncoding(PG_UTF8) < 0)
		ereport(ERROR, (errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						errmsg("conversion between %s and %s is not supported",
							   GetDatabaseEncodingName(), "UTF8")));
	return client;
}

void
audit_seal_encoding_end(int saved)
{
	if (saved >= 0)
		(void) SetClientEncoding(saved);
}

/*
 * A SHA-256 context for audit_seal_sha256(), owned by the current resource
 * owner (freed at the end of the transaction if the caller does not).
 */
pg_cryptohash_ctx *
audit_seal_sha256_create(void)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY), errmsg("out of memory")));
	return ctx;
}

/* out = SHA-256(data1 || data2); data2 may be NULL. */
void
audit_seal_sha256(pg_cryptohash_ctx *ctx, const void *data1, size_t len1,
				  const void *data2, size_t len2, uint8 *out)
{
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, data1, len1) < 0 ||
		(data2 != NULL && pg_cryptohash_update(ctx, data2, len2) < 0) ||
		pg_cryptohash_final(ctx, out, SEAL_HASH_LEN) < 0)
		elog(ERROR, "could not compute SHA-256: %s", pg_cryptohash_error(ctx));
}

/* An empty cache of statement hashes, in cxt. */
HTAB *
audit_seal_statement_cache(MemoryContext cxt)
{
	HASHCTL ctl;

	ctl.keysize = sizeof(SealStatementKey);
	ctl.entrysize = sizeof(SealStatementHash);
	ctl.hcxt = cxt;
	return hash_create("pg_opsdata seal statements", 1024, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * The slot of the hash of statement id (its first ncolumns columns) in the
 * cache; *missing is set when audit_seal_statement_fetch() must compute it
 * (until then it holds the hash of nothing): when it is new, or when no row
 * had that id at the last fetch (a cache kept across transactions looks
 * again).  Slots stay where they are until the cache is destroyed.
 */
const uint8 *
audit_seal_statement_slot(HTAB *cache, int64 id, int ncolumns, bool *missing)
{
	SealStatementKey key;
	SealStatementHash *h;
	bool found;

	key.id = id;
	key.ncolumns = ncolumns;
	h = hash_search(cache, &key, HASH_ENTER, &found);
	if (!found)
	{
		h->known = false;
		memcpy(h->hash, seal_empty_hash, SEAL_HASH_LEN);
	}
	*missing = !h->known;
	return h->hash;
}

/*
 * Compute the hashes of statements ids (slots made by
 * audit_seal_statement_slot()), their first ncolumns columns encoded, with
 * one query.  An id that no row has keeps the hash of nothing.  The query
 * takes a snapshot of its own, later than the one that read the entries:
 * the statement of an entry committed with it or before.  Connected to
 * SPI, in the caller's encoding switch.
 */
void
audit_seal_statement_fetch(HTAB *cache, const int64 *ids, int n, int ncolumns,
						   pg_cryptohash_ctx *ctx)
{
	Datum *elems;
	Oid argtypes[1] = {INT8ARRAYOID};
	Datum values[1];
	SealCodec *codec;
	TupleTableSlot *slot;
	StringInfoData buf;
	int idcol;
	uint64 r;
	int i;

	if (n == 0 || audit_seal_table_columns("statements") < 0)
		return;
	elems = palloc(sizeof(Datum) * n);
	for (i = 0; i < n; i++)
		elems[i] = Int64GetDatum(ids[i]);
	values[0] = PointerGetDatum(construct_array(
		elems, n, INT8OID, sizeof(int64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	if (seal_statements_plan == NULL)
	{
		SPIPlanPtr plan = SPI_prepare_cursor(
			"SELECT * FROM audit.statements WHERE " SEAL_STATEMENT_ID_COLUMN
			" OPERATOR(pg_catalog.=) ANY ($1)",
			1, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			opsdata_spi_failed(SPI_result,
							   "prepare the lookup of audit.statements");
		SPI_keepplan(plan);
		seal_statements_plan = plan;
	}
	opsdata_spi_check(
		SPI_execute_plan(seal_statements_plan, values, NULL, false, 0),
		SPI_OK_SELECT, "read audit.statements");
	pfree(elems);
	idcol = SPI_fnumber(SPI_tuptable->tupdesc, SEAL_STATEMENT_ID_COLUMN);
	if (SPI_processed == 0 || idcol <= 0)
	{
		SPI_freetuptable(SPI_tuptable);
		return;
	}

	codec = audit_seal_codec(SPI_tuptable->tupdesc, ncolumns,
							 CurrentMemoryContext);
	slot = MakeSingleTupleTableSlot(SPI_tuptable->tupdesc, &TTSOpsHeapTuple);
	initStringInfo(&buf);
	for (r = 0; r < SPI_processed; r++)
	{
		SealStatementKey key;
		SealStatementHash *h;
		bool isnull;
		Datum id = SPI_getbinval(SPI_tuptable->vals[r], SPI_tuptable->tupdesc,
								 idcol, &isnull);

		if (isnull)
			continue;
		key.id = DatumGetInt64(id);
		key.ncolumns = ncolumns;
		h = hash_search(cache, &key, HASH_FIND, NULL);
		if (h == NULL || h->known)
			continue;
		ExecStoreHeapTuple(SPI_tuptable->vals[r], slot, false);
		resetStringInfo(&buf);
		audit_seal_encode(codec, slot, ncolumns, &buf);
		ExecClearTuple(slot);
		audit_seal_sha256(ctx, buf.data, buf.len, NULL, 0, h->hash);
		h->known = true;
	}
	ExecDropSingleTupleTableSlot(slot);
	audit_seal_codec_free(codec);
	pfree(buf.data);
	SPI_freetuptable(SPI_tuptable);
}

/* The hash of no statement. */
const uint8 *
audit_seal_no_statement(void)
{
	return seal_empty_hash;
}

/*
 * How many columns audit.<relname> has (those not dropped), or -1 when it
 * does not exist.  Takes no lock.
 */
int
audit_seal_table_columns(const char *relname)
{
	Oid nsp = get_namespace_oid("audit", true);
	Oid relid = OidIsValid(nsp) ? get_relname_relid(relname, nsp) : InvalidOid;
	int n = 0;
	AttrNumber att;

	if (!OidIsValid(relid))
		return -1;
	for (att = 1;; att++)
	{
		HeapTuple tup = SearchSysCache2(ATTNUM, ObjectIdGetDatum(relid),
										Int16GetDatum(att));

		if (!HeapTupleIsValid(tup))
			break;
		if (!((Form_pg_attribute) GETSTRUCT(tup))->attisdropped)
			n++;
		ReleaseSysCache(tup);
	}
	return n;
}

/*
 * The bucket [from, to) of width microseconds that ts falls in, on the
 * grid of partitions (aligned on 2000-01-03 00:00 UTC).  An infinite ts
 * has the bucket [ts, ts].
 */
void
audit_seal_bucket(TimestampTz ts, int64 width, TimestampTz *from,
				  TimestampTz *to)
{
	int64 offset;
	int64 q;

	if (TIMESTAMP_NOT_FINITE(ts) || width <= 0)
	{
		*from = ts;
		*to = ts;
		return;
	}
	offset = ts - SEAL_BUCKET_ANCHOR;
	q = offset / width;
	if (offset % width < 0)
		q--;
	*from = SEAL_BUCKET_ANCHOR + q * width;
	if (pg_add_s64_overflow(*from, width, to) || *to > END_TIMESTAMP)
		*to = DT_NOEND;
}

/*
 * The width of the buckets of new seals, in microseconds: the partition
 * interval of audit.entries when it has no months (so that a bucket is
 * one partition, which retention drops whole), else one day.  Connected to
 * SPI.
 */
int64
audit_seal_bucket_width(void)
{
	int64 width = USECS_PER_DAY;
	Oid nsp = get_namespace_oid("audit", true);
	Datum entries = ObjectIdGetDatum(
		OidIsValid(nsp) ? get_relname_relid("entries", nsp) : InvalidOid);
	bool isnull;
	Datum d;

	if (!OidIsValid(nsp) || !OidIsValid(DatumGetObjectId(entries)))
		return width;
	if (seal_width_plan == NULL)
	{
		Oid argtypes[1] = {REGCLASSOID};
		SPIPlanPtr plan = SPI_prepare_cursor(
			"SELECT CASE WHEN pg_catalog.date_part('month', p.part_interval::pg_catalog.interval) OPERATOR(pg_catalog.=) 0"
			" AND pg_catalog.date_part('year', p.part_interval::pg_catalog.interval) OPERATOR(pg_catalog.=) 0"
			" THEN (pg_catalog.date_part('epoch', p.part_interval::pg_catalog.interval)"
			" OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 END"
			" FROM opsdata.partitions p"
			" WHERE p.parent OPERATOR(pg_catalog.=) $1",
			1, argtypes, CURSOR_OPT_GENERIC_PLAN);

		if (plan == NULL)
			opsdata_spi_failed(SPI_result,
							   "prepare the read of the partitioning of "
							   "audit.entries");
		SPI_keepplan(plan);
		seal_width_plan = plan;
	}
	opsdata_spi_check(
		SPI_execute_plan(seal_width_plan, &entries, NULL, true, 1),
		SPI_OK_SELECT, "read the partitioning of audit.entries");
	if (SPI_processed == 1)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
						  &isnull);
		if (!isnull && DatumGetInt64(d) > 0)
			width = DatumGetInt64(d);
	}
	SPI_freetuptable(SPI_tuptable);
	return width;
}

/* Appends a NULL field of type typid. */
static void
seal_put_null(StringInfo out, Oid typid)
{
	seal_put_int32(out, (int32) typid);
	seal_put_int32(out, -1);
}

static void
seal_put_int8_field(StringInfo out, int64 v)
{
	seal_put_int32(out, INT8OID);
	seal_put_int32(out, 8);
	seal_put_int64(out, v);
}

static void
seal_put_timestamptz_field(StringInfo out, TimestampTz v)
{
	seal_put_int32(out, TIMESTAMPTZOID);
	seal_put_int32(out, 8);
	seal_put_int64(out, v);
}

static void
seal_put_int2_field(StringInfo out, int16 v)
{
	seal_put_int32(out, INT2OID);
	seal_put_int32(out, 2);
	seal_put_int16(out, v);
}

static void
seal_put_bytea_field(StringInfo out, const uint8 *data, int len)
{
	seal_put_int32(out, BYTEAOID);
	seal_put_field(out, (const char *) data, len);
}

/* A text field, in UTF-8. */
static void
seal_put_text_field(StringInfo out, const char *s)
{
	char *utf8 = pg_server_to_any(s, strlen(s), PG_UTF8);

	seal_put_int32(out, TEXTOID);
	seal_put_field(out, utf8, strlen(utf8));
	if (utf8 != s)
		pfree(utf8);
}

/*
 * The hash of a seal: SHA-256 of the record_send() encoding of its columns
 * in table order, hash left out and locators replaced by their SHA-256.
 */
void
audit_seal_row_hash(pg_cryptohash_ctx *ctx, const SealRow *row, uint8 *out)
{
	static FmgrInfo multirange_send;
	static bool have_send = false;
	StringInfoData buf;

	initStringInfo(&buf);
	seal_put_int32(&buf, 17);
	seal_put_int8_field(&buf, row->seal_id);
	seal_put_text_field(&buf, row->retention ? "retention" : "entries");
	if (row->has_window)
	{
		seal_put_int8_field(&buf, row->first_entry_id);
		seal_put_int8_field(&buf, row->last_entry_id);
	}
	else
	{
		seal_put_null(&buf, INT8OID);
		seal_put_null(&buf, INT8OID);
	}
	seal_put_timestamptz_field(&buf, row->ts_from);
	seal_put_timestamptz_field(&buf, row->ts_to);
	seal_put_int8_field(&buf, row->entry_count);
	if (row->entry_ids != (Datum) 0)
	{
		bytea *b;

		if (!have_send)
		{
			Oid sendfn;
			bool varlena;

			getTypeBinaryOutputInfo(INT8MULTIRANGEOID, &sendfn, &varlena);
			fmgr_info_cxt(sendfn, &multirange_send, TopMemoryContext);
			have_send = true;
		}
		b = SendFunctionCall(&multirange_send, row->entry_ids);
		seal_put_int32(&buf, INT8MULTIRANGEOID);
		seal_put_field(&buf, VARDATA(b), VARSIZE(b) - VARHDRSZ);
	}
	else
		seal_put_null(&buf, INT8MULTIRANGEOID);
	if (row->locators != NULL)
	{
		uint8 h[SEAL_HASH_LEN];

		audit_seal_sha256(ctx, VARDATA_ANY(row->locators),
						  VARSIZE_ANY_EXHDR(row->locators), NULL, 0, h);
		seal_put_bytea_field(&buf, h, SEAL_HASH_LEN);
	}
	else
		seal_put_null(&buf, BYTEAOID);
	if (row->has_entries_hash)
		seal_put_bytea_field(&buf, row->entries_hash, SEAL_HASH_LEN);
	else
		seal_put_null(&buf, BYTEAOID);
	if (row->has_columns)
	{
		seal_put_int2_field(&buf, row->entry_columns);
		seal_put_int2_field(&buf, row->statement_columns);
	}
	else
	{
		seal_put_null(&buf, INT2OID);
		seal_put_null(&buf, INT2OID);
	}
	seal_put_int8_field(&buf, row->total_entries);
	if (row->detail != NULL)
		seal_put_text_field(&buf, row->detail);
	else
		seal_put_null(&buf, TEXTOID);
	seal_put_bytea_field(&buf, row->prev_hash, SEAL_HASH_LEN);
	seal_put_timestamptz_field(&buf, row->sealed_at);
	if (row->has_server)
		seal_put_int8_field(&buf, row->server_id);
	else
		seal_put_null(&buf, INT8OID);
	audit_seal_sha256(ctx, buf.data, buf.len, NULL, 0, out);
	pfree(buf.data);
}

/* A bytea column of SEAL_HASH_LEN bytes into out; false if NULL. */
static bool
seal_read_hash(HeapTuple tuple, TupleDesc desc, const char *column, uint8 *out)
{
	bool isnull;
	Datum d = SPI_getbinval(tuple, desc, SPI_fnumber(desc, column), &isnull);
	bytea *b;

	memset(out, 0, SEAL_HASH_LEN);
	if (isnull)
		return false;
	b = DatumGetByteaPP(d);
	memcpy(out, VARDATA_ANY(b),
		   Min(VARSIZE_ANY_EXHDR(b), (Size) SEAL_HASH_LEN));
	/* A hash of the wrong length can never match: make it differ. */
	if (VARSIZE_ANY_EXHDR(b) != SEAL_HASH_LEN)
		out[0] ^= 0xff;
	return true;
}

static Datum
seal_read(HeapTuple tuple, TupleDesc desc, const char *column, bool *isnull)
{
	int fnum = SPI_fnumber(desc, column);

	if (fnum <= 0)
		elog(ERROR, "audit.seals has no column \"%s\"", column);
	return SPI_getbinval(tuple, desc, fnum, isnull);
}

/*
 * Read a row of SELECT * FROM audit.seals (an SPI result) into row; the
 * values it points to live in the tuple's memory or in the current context.
 */
void
audit_seal_read_row(HeapTuple tuple, TupleDesc desc, SealRow *row)
{
	bool isnull;
	bool null2;
	Datum d;

	memset(row, 0, sizeof(SealRow));
	row->seal_id = DatumGetInt64(seal_read(tuple, desc, "seal_id", &isnull));
	d = seal_read(tuple, desc, "kind", &isnull);
	row->retention =
		!isnull && strcmp(TextDatumGetCString(d), "retention") == 0;
	d = seal_read(tuple, desc, "first_entry_id", &isnull);
	row->first_entry_id = isnull ? 0 : DatumGetInt64(d);
	d = seal_read(tuple, desc, "last_entry_id", &null2);
	row->last_entry_id = null2 ? 0 : DatumGetInt64(d);
	row->has_window = !isnull && !null2;
	row->ts_from =
		DatumGetTimestampTz(seal_read(tuple, desc, "ts_from", &isnull));
	row->ts_to = DatumGetTimestampTz(seal_read(tuple, desc, "ts_to", &isnull));
	row->entry_count =
		DatumGetInt64(seal_read(tuple, desc, "entry_count", &isnull));
	d = seal_read(tuple, desc, "entry_ids", &isnull);
	row->entry_ids = isnull ? (Datum) 0 : PointerGetDatum(PG_DETOAST_DATUM(d));
	d = seal_read(tuple, desc, "locators", &isnull);
	row->locators = isnull ? NULL : DatumGetByteaPP(d);
	row->has_entries_hash =
		seal_read_hash(tuple, desc, "entries_hash", row->entries_hash);
	d = seal_read(tuple, desc, "entry_columns", &isnull);
	row->entry_columns = isnull ? 0 : DatumGetInt16(d);
	d = seal_read(tuple, desc, "statement_columns", &null2);
	row->statement_columns = null2 ? 0 : DatumGetInt16(d);
	row->has_columns = !isnull && !null2;
	row->total_entries =
		DatumGetInt64(seal_read(tuple, desc, "total_entries", &isnull));
	d = seal_read(tuple, desc, "detail", &isnull);
	row->detail = isnull ? NULL : TextDatumGetCString(d);
	(void) seal_read_hash(tuple, desc, "prev_hash", row->prev_hash);
	row->sealed_at =
		DatumGetTimestampTz(seal_read(tuple, desc, "sealed_at", &isnull));
	(void) seal_read_hash(tuple, desc, "hash", row->hash);
	d = seal_read(tuple, desc, "server_id", &isnull);
	row->has_server = !isnull;
	row->server_id = isnull ? 0 : DatumGetInt64(d);
}

/*
 * This server's identifier, the one its entries carry in server_id
 * (audit.server_id(), server.c): the entries sealed here are those.
 */
int64
audit_seal_local_server(void)
{
	return (int64) GetSystemIdentifier();
}

/*
 * The int8multirange of n ids in ascending order (repeats allowed), as
 * ranges of consecutive ids.
 */
Datum
audit_seal_id_ranges(const int64 *ids, int n)
{
	TypeCacheEntry *mtyp =
		lookup_type_cache(INT8MULTIRANGEOID, TYPECACHE_MULTIRANGE_INFO);
	TypeCacheEntry *rtyp = mtyp->rngtype;
	RangeType **ranges = palloc(sizeof(RangeType *) * Max(n, 1));
	int nranges = 0;
	int i = 0;

	while (i < n)
	{
		RangeBound lower;
		RangeBound upper;
		int64 last = ids[i];
		int j = i + 1;

		while (j < n && (ids[j] == last || ids[j] == last + 1))
			last = ids[j++];
		lower.val = Int64GetDatum(ids[i]);
		lower.infinite = false;
		lower.inclusive = true;
		lower.lower = true;
		upper.val = Int64GetDatum(last);
		upper.infinite = false;
		upper.inclusive = true;
		upper.lower = false;
		ranges[nranges++] = make_range(rtyp, &lower, &upper, false);
		i = j;
	}
	return PointerGetDatum(
		make_multirange(INT8MULTIRANGEOID, rtyp, nranges, ranges));
}

/*
 * The ids of an int8multirange, in ascending order; *count gets how many.
 * A range too wide to list (only a forged seal has one) is an error.
 */
int64 *
audit_seal_expand_ids(Datum multirange, int64 *count)
{
	TypeCacheEntry *mtyp =
		lookup_type_cache(INT8MULTIRANGEOID, TYPECACHE_MULTIRANGE_INFO);
	MultirangeType *mr = DatumGetMultirangeTypeP(multirange);
	int64 total = 0;
	int64 *ids;
	int64 k = 0;
	uint32 i;

	for (i = 0; i < mr->rangeCount; i++)
	{
		RangeBound lower;
		RangeBound upper;

		multirange_get_bounds(mtyp->rngtype, mr, i, &lower, &upper);
		if (lower.infinite || upper.infinite ||
			DatumGetInt64(upper.val) - DatumGetInt64(lower.val) >
				(int64) (MaxAllocHugeSize / sizeof(int64)) - total)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("a seal lists an unbounded range of entry ids")));
		total += DatumGetInt64(upper.val) - DatumGetInt64(lower.val);
	}
	ids = MemoryContextAllocHuge(CurrentMemoryContext,
								 sizeof(int64) * Max(total, 1));
	for (i = 0; i < mr->rangeCount; i++)
	{
		RangeBound lower;
		RangeBound upper;
		int64 v;

		multirange_get_bounds(mtyp->rngtype, mr, i, &lower, &upper);
		/* int8range is canonical: [lower, upper) */
		for (v = DatumGetInt64(lower.val); v < DatumGetInt64(upper.val); v++)
			ids[k++] = v;
	}
	*count = total;
	return ids;
}

/* The hex form of a hash, palloc'd. */
char *
audit_seal_hex(const uint8 *hash)
{
	static const char digits[] = "0123456789abcdef";
	char *s = palloc(SEAL_HASH_LEN * 2 + 1);
	int i;

	for (i = 0; i < SEAL_HASH_LEN; i++)
	{
		s[2 * i] = digits[hash[i] >> 4];
		s[2 * i + 1] = digits[hash[i] & 0x0f];
	}
	s[SEAL_HASH_LEN * 2] = '\0';
	return s;
}
