/*-------------------------------------------------------------------------
 *
 * redact.c
 *		Remove secrets from statement texts, guided by the parse tree.
 *
 * Secrets never reach the audit tables: passwords of CREATE/ALTER ROLE,
 * option values of user mappings and foreign servers, and the connection
 * string of CREATE/ALTER SUBSCRIPTION.  The parse tree says which
 * statement carries a secret and where its option starts (DefElem
 * location); PostgreSQL's own scanner then finds the string constant that
 * follows, and that token is replaced by '<redacted>'.  Nothing is searched
 * for in the text with patterns, so quoting, comments, dollar quotes and
 * odd spacing cannot defeat it.
 *
 * A statement that failed to parse has no tree.  If its text mentions one
 * of the keywords that introduce such secrets, it is not recorded at all;
 * only its first keywords and a note are.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/redact.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "nodes/parsenodes.h"
#include "parser/scanner.h"
#include "parser/gram.h"

#include "audit/audit.h"

#define AUDIT_REDACTED "'<redacted>'"

typedef struct AuditToken
{
	int token;
	int location;
} AuditToken;

/*
 * Does this statement carry a secret that must be redacted?
 */
bool
audit_needs_redaction(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_CreateRoleStmt:
		case T_AlterRoleStmt:
		case T_CreateUserMappingStmt:
		case T_AlterUserMappingStmt:
		case T_CreateForeignServerStmt:
		case T_AlterForeignServerStmt:
		case T_CreateSubscriptionStmt:
		case T_AlterSubscriptionStmt:
			return true;
		default:
			return false;
	}
}

/* Every token of text[0..len), in order. */
static AuditToken *
audit_lex(const char *text, int len, int *ntokens)
{
	char *copy = pnstrdup(text, len);
	core_yyscan_t scanner;
	core_yy_extra_type extra;
	core_YYSTYPE yylval;
	YYLTYPE yylloc;
	int size = 64;
	int n = 0;
	AuditToken *tokens = palloc(sizeof(AuditToken) * size);

	scanner = scanner_init(copy, &extra, &ScanKeywords, ScanKeywordTokens);
	for (;;)
	{
		int tok = core_yylex(&yylval, &yylloc, scanner);

		if (tok == 0)
			break;
		if (n == size)
		{
			size *= 2;
			tokens = repalloc(tokens, sizeof(AuditToken) * size);
		}
		tokens[n].token = tok;
		tokens[n].location = yylloc;
		n++;
	}
	scanner_finish(scanner);
	*ntokens = n;
	return tokens;
}

static bool
is_string_token(int tok)
{
	return tok == SCONST || tok == USCONST;
}

/*
 * Mark the first string constant at or after token i (within the next
 * limit tokens) as secret.
 */
static void
mark_string_after(AuditToken *tokens, int ntokens, int i, int limit,
				  bool *secret)
{
	int j;

	for (j = i; j < ntokens && j <= i + limit; j++)
	{
		if (is_string_token(tokens[j].token))
		{
			secret[j] = true;
			return;
		}
	}
}

/* Index of the first token at or after location loc (relative). */
static int
token_at(AuditToken *tokens, int ntokens, int loc)
{
	int i;

	for (i = 0; i < ntokens; i++)
	{
		if (tokens[i].location >= loc)
			return i;
	}
	return ntokens;
}

static void
mark_options(List *options, int base, AuditToken *tokens, int ntokens,
			 bool *secret, const char *only)
{
	ListCell *lc;

	foreach (lc, options)
	{
		DefElem *def = (DefElem *) lfirst(lc);

		if (only != NULL && strcmp(def->defname, only) != 0)
			continue;
		if (def->location < 0 || def->arg == NULL)
			continue;
		mark_string_after(tokens, ntokens,
						  token_at(tokens, ntokens, def->location - base), 3,
						  secret);
	}
}

/*
 * The text of a statement (len bytes, len 0 meaning to the end) with its
 * secrets replaced.  text is the statement's own start within the string
 * the parser saw; locations in the tree are offsets into that string, so
 * base is the statement's offset in it.
 */
static char *
audit_redact_tokens(Node *parsetree, const char *text, int len, int base)
{
	AuditToken *tokens;
	int ntokens;
	bool *secret;
	StringInfoData out;
	int i;
	int copied = 0;

	tokens = audit_lex(text, len, &ntokens);
	secret = palloc0(sizeof(bool) * Max(ntokens, 1));

	switch (nodeTag(parsetree))
	{
		case T_CreateRoleStmt:
			mark_options(((CreateRoleStmt *) parsetree)->options, base, tokens,
						 ntokens, secret, "password");
			break;
		case T_AlterRoleStmt:
			mark_options(((AlterRoleStmt *) parsetree)->options, base, tokens,
						 ntokens, secret, "password");
			break;
		case T_CreateUserMappingStmt:
			mark_options(((CreateUserMappingStmt *) parsetree)->options, base,
						 tokens, ntokens, secret, NULL);
			break;
		case T_AlterUserMappingStmt:
			mark_options(((AlterUserMappingStmt *) parsetree)->options, base,
						 tokens, ntokens, secret, NULL);
			break;
		case T_CreateForeignServerStmt:
			mark_options(((CreateForeignServerStmt *) parsetree)->options,
						 base, tokens, ntokens, secret, NULL);
			break;
		case T_AlterForeignServerStmt:
			mark_options(((AlterForeignServerStmt *) parsetree)->options, base,
						 tokens, ntokens, secret, NULL);
			break;
		case T_CreateSubscriptionStmt:
		case T_AlterSubscriptionStmt:
			/* The connection string follows the keyword CONNECTION. */
			for (i = 0; i < ntokens; i++)
			{
				if (tokens[i].token == CONNECTION)
					mark_string_after(tokens, ntokens, i + 1, 0, secret);
			}
			break;
		default:
			break;
	}

	initStringInfo(&out);
	for (i = 0; i < ntokens; i++)
	{
		int start;
		int end;

		if (!secret[i])
			continue;
		start = tokens[i].location;
		end = i + 1 < ntokens ? tokens[i + 1].location : len;
		/* The token ends where the blanks before the next one begin. */
		while (end > start + 1 &&
			   (text[end - 1] == ' ' || text[end - 1] == '\t' ||
				text[end - 1] == '\n' || text[end - 1] == '\r'))
			end--;
		appendBinaryStringInfo(&out, text + copied, start - copied);
		appendStringInfoString(&out, AUDIT_REDACTED);
		copied = end;
	}
	appendBinaryStringInfo(&out, text + copied, len - copied);
	pfree(tokens);
	pfree(secret);
	return out.data;
}

/*
 * The text of a statement that audit_needs_redaction() accepted, with its
 * secrets replaced: the statement starts at offset location of the string
 * source the parser saw, and is len bytes long (0: to the end).
 */
char *
audit_redact_at(Node *parsetree, const char *source, int location, int len)
{
	if (location < 0)
		location = 0;
	if (len <= 0)
		len = strlen(source + location);
	return audit_redact_tokens(parsetree, source + location, len, location);
}

static bool
has_word(const char *text, const char *word)
{
	int wl = strlen(word);
	const char *p;

	for (p = text; *p; p++)
	{
		if (pg_strncasecmp(p, word, wl) == 0 &&
			(p == text || !(isalnum((unsigned char) p[-1]) || p[-1] == '_')) &&
			!(isalnum((unsigned char) p[wl]) || p[wl] == '_'))
			return true;
	}
	return false;
}

/*
 * Could the text of a statement that failed to parse carry a secret?  True
 * when it mentions a keyword that introduces one; the caller then records
 * no text.
 */
bool
audit_unparsed_may_hold_secret(const char *text)
{
	return has_word(text, "password") || has_word(text, "mapping") ||
		   has_word(text, "server") || has_word(text, "subscription");
}
