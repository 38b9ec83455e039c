/*-------------------------------------------------------------------------
 *
 * shapes.c
 *		Statement shapes: the constants of each statement, and the text they
 *		leave when each is replaced by a placeholder.
 *
 * audit.statements stores each distinct shape once: the statement with
 * every constant replaced by a placeholder ($1, $2... numbered after the
 * statement's own parameters, as pg_stat_statements numbers them), with
 * the byte offsets of the placeholders.  Each entry of audit.entries keeps
 * its constants exactly as they were written (the bytes of each literal
 * token), so that audit.rebuild_statement() gives the statement back byte
 * for byte.  Statements without constants, utility statements, statements
 * that did not parse and statements that needed redaction are stored as
 * they are, without placeholders.
 *
 * Which tokens are constants comes from PostgreSQL's query jumbling: once
 * EnableQueryId() was called, post_parse_analyze_hook receives a
 * JumbleState with the location of every constant of the analyzed query
 * (utility statements are not jumbled).  A location is where a token
 * starts; its length is found here, by a direct reading of the common
 * forms (numbers, negative numbers, plain strings, true, false, null) and
 * by PostgreSQL's own scanner for everything else (escape strings, dollar
 * quoting, bit strings, strings continued on another line...).  A
 * location that does not start a literal token (LIMIT ALL) stays in the
 * shape.  Whatever the spans found, the shape and the constants put
 * together are the text: a span only decides which bytes go where.  The
 * shape's id (statements.c) is a hash of its text and placeholders, so
 * it depends on no OID and is the same on every server.
 *
 * The constants are learnt at parse analysis and needed when the
 * statement runs, which for a cached plan (prepared statements, PL/pgSQL)
 * may be much later, so each analyzed statement text is remembered with
 * the spans of its constants, keyed by the text itself: a statement that
 * runs finds them by its text.  The memory is backend-local and bounded,
 * in two parts: texts seen once wait in a short first-in first-out list
 * (a statement with literals, sent by the simple protocol, runs right
 * after its analysis and is never seen again); a text that runs twice, or
 * from a cached plan, moves to a larger list kept in least recently used
 * order.  A statement whose text is no longer remembered is stored as it
 * is, which only costs a shape of its own.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/shapes.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "lib/ilist.h"
#include "miscadmin.h"
#include "parser/scanner.h"
#include "parser/gram.h"
#include "parser/parser.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "audit/audit.h"

PG_FUNCTION_INFO_V1(audit_rebuild_statement);

/* Chains of remembered texts; a power of two. */
#define AUDIT_PARSED_BUCKETS 4096

/* Texts seen once: how many, and how many bytes, at most. */
#define AUDIT_PARSED_PROBATION		 64
#define AUDIT_PARSED_PROBATION_BYTES (4 * 1024 * 1024)

/* Texts that ran again: how many, and how many bytes, at most. */
#define AUDIT_PARSED_PROTECTED		 2048
#define AUDIT_PARSED_PROTECTED_BYTES (8 * 1024 * 1024)

/* What a direct reading of a token can say besides its length. */
#define AUDIT_TOKEN_SCAN		(-1) /* ask the scanner */
#define AUDIT_TOKEN_NOT_LITERAL (-2) /* not a constant: stays in the shape */

/* A statement text seen by parse analysis, with its constants. */
typedef struct AuditParsed
{
	struct AuditParsed *next; /* in its chain */
	dlist_node node;		  /* in the probation or protected list */
	uint32 hash;
	bool protected;
	int hits;
	const char *source; /* string the analysis saw; compared, never read */
	int len;
	int nconsts;
	int param_base;
	AuditSpan *consts;
	char text[FLEXIBLE_ARRAY_MEMBER];
} AuditParsed;

static MemoryContext audit_parsed_cxt = NULL;
static AuditParsed **audit_parsed_buckets = NULL;
static dlist_head audit_probation = DLIST_STATIC_INIT(audit_probation);
static dlist_head audit_protected = DLIST_STATIC_INIT(audit_protected);
static int audit_nprobation = 0;
static int audit_nprotected = 0;
static Size audit_probation_bytes = 0;
static Size audit_protected_bytes = 0;

/* --- reading tokens ------------------------------------------------------ */

static inline bool
audit_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* Can c continue an identifier (or follow a number only in junk)? */
static inline bool
audit_is_ident_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		   audit_is_digit(c) || c == '_' || c == '$' ||
		   (unsigned char) c >= 0x80;
}

/* Length of the number at s (n bytes left), or AUDIT_TOKEN_SCAN. */
static int
audit_number_length(const char *s, int n)
{
	int i = 0;
	bool digits = false;

	while (i < n && audit_is_digit(s[i]))
		i++, digits = true;
	if (i < n && s[i] == '.')
	{
		if (i + 1 < n && s[i + 1] == '.')
			return AUDIT_TOKEN_SCAN;
		i++;
		while (i < n && audit_is_digit(s[i]))
			i++, digits = true;
	}
	if (!digits)
		return AUDIT_TOKEN_SCAN;
	if (i < n && (s[i] == 'e' || s[i] == 'E'))
	{
		int j = i + 1;

		if (j < n && (s[j] == '+' || s[j] == '-'))
			j++;
		if (j >= n || !audit_is_digit(s[j]))
			return AUDIT_TOKEN_SCAN;
		while (j < n && audit_is_digit(s[j]))
			j++;
		i = j;
	}
	if (i < n && (audit_is_ident_char(s[i]) || s[i] == '.'))
		return AUDIT_TOKEN_SCAN;
	return i;
}

/*
 * Length of the plain string at s (s[0] is a quote), or AUDIT_TOKEN_SCAN
 * when it may be more than that: backslashes that are escapes, or blanks
 * and comments after it that may continue it on another line.
 */
static int
audit_string_length(const char *s, int n)
{
	int i = 1;

	for (;;)
	{
		if (i >= n)
			return AUDIT_TOKEN_SCAN;
		if (s[i] == '\'')
		{
			if (i + 1 < n && s[i + 1] == '\'')
			{
				i += 2;
				continue;
			}
			i++;
			break;
		}
		if (s[i] == '\\' && !standard_conforming_strings)
			return AUDIT_TOKEN_SCAN;
		i++;
	}
	{
		int j = i;

		while (j < n && (s[j] == ' ' || s[j] == '\t'))
			j++;
		if (j < n && (s[j] == '\n' || s[j] == '\r' || s[j] == '\f' ||
					  s[j] == '-' || s[j] == '/'))
			return AUDIT_TOKEN_SCAN;
	}
	return i;
}

/*
 * Length of the literal token at s (n bytes left) read directly, or
 * AUDIT_TOKEN_SCAN when the scanner must decide, or
 * AUDIT_TOKEN_NOT_LITERAL.  A '-' at a constant's location starts a
 * negative number: the parser puts the location of a negated constant
 * there, and the constant's span takes both.
 */
static int
audit_token_length(const char *s, int n)
{
	int i;

	if (n <= 0)
		return AUDIT_TOKEN_NOT_LITERAL;
	if (audit_is_digit(s[0]) || (s[0] == '.' && n > 1 && audit_is_digit(s[1])))
		return audit_number_length(s, n);
	if (s[0] == '\'')
		return audit_string_length(s, n);
	if (s[0] == '-')
	{
		int len;

		for (i = 1; i < n && audit_is_blank(s[i]); i++)
			;
		if (i >= n || !(audit_is_digit(s[i]) || (s[i] == '.' && i + 1 < n &&
												 audit_is_digit(s[i + 1]))))
			return AUDIT_TOKEN_SCAN;
		len = audit_number_length(s + i, n - i);
		return len < 0 ? len : i + len;
	}
	if ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))
	{
		for (i = 1; i < n && audit_is_ident_char(s[i]); i++)
			;
		/* E'', B'', X'', U&'' and the like. */
		if (i < n && (s[i] == '\'' || s[i] == '&'))
			return AUDIT_TOKEN_SCAN;
		if ((i == 4 && (pg_strncasecmp(s, "true", 4) == 0 ||
						pg_strncasecmp(s, "null", 4) == 0)) ||
			(i == 5 && pg_strncasecmp(s, "false", 5) == 0))
			return i;
		return AUDIT_TOKEN_NOT_LITERAL;
	}
	return AUDIT_TOKEN_SCAN;
}

static bool
audit_is_literal_token(int tok)
{
	switch (tok)
	{
		case ICONST:
		case FCONST:
		case SCONST:
		case USCONST:
		case BCONST:
		case XCONST:
		case TRUE_P:
		case FALSE_P:
		case NULL_P:
			return true;
		default:
			return false;
	}
}

/* PostgreSQL's scanner over a statement, for the tokens read in order. */
typedef struct AuditScan
{
	bool started;
	bool done;
	char *copy; /* the statement, NUL-terminated */
	core_yyscan_t scanner;
	core_yy_extra_type extra;
	int tok;
	int loc; /* of tok */
	int nconsts;
} AuditScan;

/*
 * Length of the literal token at offset loc of text (the statement, len
 * bytes) by PostgreSQL's scanner, or AUDIT_TOKEN_NOT_LITERAL.  Offsets
 * must be asked in increasing order.  As pg_stat_statements does, the
 * length is read where the scanner ends the token text it returns.
 */
static int
audit_scanned_length(AuditScan *scan, const char *text, int len, int loc)
{
	core_YYSTYPE yylval;
	YYLTYPE yylloc;

	if (!scan->started)
	{
		scan->copy = pnstrdup(text, len);
		scan->scanner = scanner_init(scan->copy, &scan->extra, &ScanKeywords,
									 ScanKeywordTokens);
		scan->extra.escape_string_warning = false;
		scan->started = true;
		scan->loc = -1;
	}
	while (!scan->done && scan->loc < loc)
	{
		scan->tok = core_yylex(&yylval, &yylloc, scan->scanner);
		scan->loc = yylloc;
		if (scan->tok == 0)
			scan->done = true;
	}
	if (scan->done || scan->loc != loc)
		return AUDIT_TOKEN_NOT_LITERAL;
	if (scan->tok == '-')
	{
		scan->tok = core_yylex(&yylval, &yylloc, scan->scanner);
		if (scan->tok == 0)
		{
			scan->done = true;
			return AUDIT_TOKEN_NOT_LITERAL;
		}
		if (scan->tok != ICONST && scan->tok != FCONST)
			return AUDIT_TOKEN_NOT_LITERAL;
		scan->loc = yylloc;
	}
	else if (!audit_is_literal_token(scan->tok))
		return AUDIT_TOKEN_NOT_LITERAL;
	return strlen(scan->extra.scanbuf + loc);
}

static int
audit_int_cmp(const void *a, const void *b)
{
	int x = *(const int *) a;
	int y = *(const int *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * The spans of the constants at the given offsets of text (len bytes), in
 * increasing order, into consts (room for nlocs); returns how many.
 * Offsets are sorted here; repeated ones, and those inside a constant
 * already taken, are skipped.  Never raises an error: should the scanner
 * fail, the constants found so far are kept.
 */
static int
audit_find_constants(const char *text, int len, int *locs, int nlocs,
					 AuditSpan *consts)
{
	AuditScan *scan = palloc0(sizeof(AuditScan));
	MemoryContext cxt = CurrentMemoryContext;
	int n;

	if (nlocs > 1)
		qsort(locs, nlocs, sizeof(int), audit_int_cmp);
	PG_TRY();
	{
		int end = 0;
		int i;

		for (i = 0; i < nlocs; i++)
		{
			int loc = locs[i];
			int tlen;

			if (loc < end || loc >= len)
				continue;
			tlen = audit_token_length(text + loc, len - loc);
			if (tlen == AUDIT_TOKEN_SCAN)
				tlen = audit_scanned_length(scan, text, len, loc);
			if (tlen <= 0 || loc + tlen > len)
				continue;
			consts[scan->nconsts].offset = loc;
			consts[scan->nconsts].len = tlen;
			scan->nconsts++;
			end = loc + tlen;
		}
	}
	PG_CATCH();
	{
		/* The text parsed, so the scanner should not fail on it. */
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		scan->started = false;
	}
	PG_END_TRY();
	if (scan->started)
	{
		scanner_finish(scan->scanner);
		pfree(scan->copy);
	}
	n = scan->nconsts;
	pfree(scan);
	return n;
}

/* --- remembered texts ---------------------------------------------------- */

static void
audit_parsed_unlink(AuditParsed *p)
{
	AuditParsed **link =
		&audit_parsed_buckets[p->hash & (AUDIT_PARSED_BUCKETS - 1)];

	while (*link != p)
		link = &(*link)->next;
	*link = p->next;
	dlist_delete(&p->node);
	if (p->protected)
	{
		audit_nprotected--;
		audit_protected_bytes -= p->len;
	}
	else
	{
		audit_nprobation--;
		audit_probation_bytes -= p->len;
	}
}

static AuditParsed *
audit_parsed_find(const char *text, int len, uint32 hash)
{
	AuditParsed *p;

	if (audit_parsed_buckets == NULL)
		return NULL;
	for (p = audit_parsed_buckets[hash & (AUDIT_PARSED_BUCKETS - 1)];
		 p != NULL; p = p->next)
	{
		if (p->hash == hash && p->len == len &&
			memcmp(p->text, text, len) == 0)
			return p;
	}
	return NULL;
}

/* Keep each list within its bounds, dropping the oldest. */
static void
audit_parsed_trim(void)
{
	while (audit_nprobation > AUDIT_PARSED_PROBATION ||
		   (audit_nprobation > 1 &&
			audit_probation_bytes > AUDIT_PARSED_PROBATION_BYTES))
	{
		AuditParsed *p = dlist_container(AuditParsed, node,
										 dlist_head_node(&audit_probation));

		audit_parsed_unlink(p);
		pfree(p);
	}
	while (audit_nprotected > AUDIT_PARSED_PROTECTED ||
		   (audit_nprotected > 1 &&
			audit_protected_bytes > AUDIT_PARSED_PROTECTED_BYTES))
	{
		AuditParsed *p = dlist_container(AuditParsed, node,
										 dlist_tail_node(&audit_protected));

		audit_parsed_unlink(p);
		pfree(p);
	}
}

/* Make a text that ran again (or from a cached plan) one to keep. */
static void
audit_parsed_protect(AuditParsed *p)
{
	if (p->protected)
	{
		dlist_move_head(&audit_protected, &p->node);
		return;
	}
	dlist_delete(&p->node);
	audit_nprobation--;
	audit_probation_bytes -= p->len;
	p->protected = true;
	dlist_push_head(&audit_protected, &p->node);
	audit_nprotected++;
	audit_protected_bytes += p->len;
	audit_parsed_trim();
}

/*
 * post_parse_analyze_hook: remember the constants of an analyzed statement
 * that may be audited.  The statement's text is its part of the source
 * string, as capture.c takes it.
 */
void
audit_shapes_parsed(ParseState *pstate, Query *query, JumbleState *jstate)
{
	const char *source = pstate->p_sourcetext;
	const char *text;
	int len;
	int class;
	bool by_class;
	int *locs;
	AuditSpan *consts;
	int n;
	int i;
	uint32 hash;
	AuditParsed *p;
	bool protect = false;
	int hits = 0;
	MemoryContext old;

	if (jstate == NULL || jstate->clocations_count == 0 || source == NULL ||
		query->utilityStmt != NULL || !audit_capture_active())
		return;
	class = (query->commandType == CMD_SELECT && !query->hasModifyingCTE)
				? AUDIT_CLASS_READ
				: AUDIT_CLASS_WRITE;
	if (!audit_class_may_be_wanted(class, &by_class) &&
		!(audit_classes & AUDIT_BIT(AUDIT_CLASS_FUNCTION)))
		return;

	audit_statement_bounds(source, query->stmt_location, query->stmt_len,
						   &text, &len);
	if (len == 0)
		return;

	if (audit_parsed_cxt == NULL)
	{
		audit_parsed_cxt =
			AllocSetContextCreate(TopMemoryContext, "pg_opsdata audit shapes",
								  ALLOCSET_DEFAULT_SIZES);
		audit_parsed_buckets = MemoryContextAllocZero(
			audit_parsed_cxt, sizeof(AuditParsed *) * AUDIT_PARSED_BUCKETS);
	}

	/* Locations relative to the statement's text. */
	locs = palloc(sizeof(int) * jstate->clocations_count);
	for (i = 0; i < jstate->clocations_count; i++)
		locs[i] = jstate->clocations[i].location - (int) (text - source);
	consts = palloc(sizeof(AuditSpan) * jstate->clocations_count);
	n = audit_find_constants(text, len, locs, jstate->clocations_count,
							 consts);
	pfree(locs);

	hash = hash_bytes((const unsigned char *) text, len);
	p = audit_parsed_find(text, len, hash);
	if (p != NULL)
	{
		/* Analyzed again (a cached plan revalidated, the same text sent). */
		protect = p->protected;
		hits = p->hits;
		audit_parsed_unlink(p);
		pfree(p);
	}
	if (n == 0)
	{
		pfree(consts);
		return;
	}

	old = MemoryContextSwitchTo(audit_parsed_cxt);
	p = palloc(MAXALIGN(offsetof(AuditParsed, text) + len + 1) +
			   sizeof(AuditSpan) * n);
	MemoryContextSwitchTo(old);
	p->hash = hash;
	p->protected = false;
	p->hits = hits;
	p->source = source;
	p->len = len;
	p->nconsts = n;
	p->param_base = jstate->highest_extern_param_id;
	memcpy(p->text, text, len);
	p->text[len] = '\0';
	p->consts =
		(AuditSpan *) ((char *) p +
					   MAXALIGN(offsetof(AuditParsed, text) + len + 1));
	memcpy(p->consts, consts, sizeof(AuditSpan) * n);
	pfree(consts);

	p->next = audit_parsed_buckets[hash & (AUDIT_PARSED_BUCKETS - 1)];
	audit_parsed_buckets[hash & (AUDIT_PARSED_BUCKETS - 1)] = p;
	dlist_push_tail(&audit_probation, &p->node);
	audit_nprobation++;
	audit_probation_bytes += len;
	if (protect)
		audit_parsed_protect(p);
	audit_parsed_trim();
}

/*
 * The constants of a statement about to run, whose text (len bytes, as
 * audit_trim_statement() leaves it) was analyzed in this backend and is
 * still remembered: returns how many, with their spans copied into cxt
 * (*consts) and the number after which their placeholders are numbered
 * (*param_base).  source is the string the text is part of: a statement
 * that runs from another string than the one analyzed is a cached plan.
 */
int
audit_shapes_lookup(const char *text, int len, const char *source,
					AuditSpan **consts, int *param_base, MemoryContext cxt)
{
	AuditParsed *p;

	if (audit_parsed_buckets == NULL || len == 0)
		return 0;
	p = audit_parsed_find(text, len,
						  hash_bytes((const unsigned char *) text, len));
	if (p == NULL)
		return 0;
	p->hits++;
	if (p->protected || p->hits > 1 || p->source != source)
		audit_parsed_protect(p);
	*consts = MemoryContextAlloc(cxt, sizeof(AuditSpan) * p->nconsts);
	memcpy(*consts, p->consts, sizeof(AuditSpan) * p->nconsts);
	*param_base = p->param_base;
	return p->nconsts;
}

/* --- shapes -------------------------------------------------------------- */

/*
 * The shape of text (len bytes) whose constants are consts: each replaced
 * by its placeholder, $(param_base + 1) onwards.  Returns the shape,
 * palloc'd, with its length in *len and the byte offset of each
 * placeholder in placeholders (room for nconsts).
 */
char *
audit_shape_text(const char *text, const AuditSpan *consts, int nconsts,
				 int param_base, int *len, int32 *placeholders)
{
	int size = *len + nconsts * 12 + 1;
	char *shape = palloc(size);
	int in = 0;
	int out = 0;
	int i;

	for (i = 0; i < nconsts; i++)
	{
		int piece = consts[i].offset - in;

		memcpy(shape + out, text + in, piece);
		out += piece;
		placeholders[i] = out;
		out += pg_ltoa(param_base + i + 1, shape + out + 1) + 1;
		shape[placeholders[i]] = '$';
		in = consts[i].offset + consts[i].len;
	}
	memcpy(shape + out, text + in, *len - in);
	out += *len - in;
	shape[out] = '\0';
	*len = out;
	return shape;
}

/*
 * audit.rebuild_statement(shape text, placeholders integer[], constants
 * text[]) returns text: the statement whose shape and constants these
 * are.  A shape without placeholders is the statement itself.
 */
Datum
audit_rebuild_statement(PG_FUNCTION_ARGS)
{
	text *shape;
	const char *s;
	int slen;
	Datum *offsets;
	bool *offnulls;
	int noffsets;
	Datum *values;
	bool *valnulls;
	int nvalues;
	StringInfoData out;
	int in = 0;
	int i;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	shape = PG_GETARG_TEXT_PP(0);
	if (PG_ARGISNULL(1) || PG_ARGISNULL(2))
		PG_RETURN_TEXT_P(shape);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), INT4OID, 4, true, TYPALIGN_INT,
					  &offsets, &offnulls, &noffsets);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(2), TEXTOID, -1, false,
					  TYPALIGN_INT, &values, &valnulls, &nvalues);
	if (noffsets != nvalues)
		ereport(
			ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("a shape with %d placeholders cannot take %d constants",
					noffsets, nvalues)));
	s = VARDATA_ANY(shape);
	slen = VARSIZE_ANY_EXHDR(shape);
	initStringInfo(&out);
	for (i = 0; i < noffsets; i++)
	{
		int at = offnulls[i] ? -1 : DatumGetInt32(offsets[i]);
		int end;
		text *value;

		if (at < in || at >= slen || s[at] != '$' || valnulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("placeholder %d of the shape is not at a \"$\"",
							i + 1),
					 errdetail("Placeholders are byte offsets, in increasing "
							   "order, of \"$\" signs in the shape.")));
		for (end = at + 1; end < slen && audit_is_digit(s[end]); end++)
			;
		appendBinaryStringInfo(&out, s + in, at - in);
		value = DatumGetTextPP(values[i]);
		appendBinaryStringInfo(&out, VARDATA_ANY(value),
							   VARSIZE_ANY_EXHDR(value));
		in = end;
	}
	appendBinaryStringInfo(&out, s + in, slen - in);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}

/*
 * Ask for query identifiers, whose computation gives the constants'
 * locations (unless compute_query_id is off: statements are then stored
 * as they are).  Preloaded only.
 */
void
audit_shapes_init(void)
{
	EnableQueryId();
}
