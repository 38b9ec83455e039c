/*-------------------------------------------------------------------------
 *
 * redact.c
 *		Remove secrets from statement texts, guided by the parse tree.
 *
 * Secrets never reach the audit tables: passwords of CREATE/ALTER ROLE,
 * option values of user mappings and foreign servers, the connection
 * string of CREATE/ALTER SUBSCRIPTION, and the values given to settings
 * that carry connection strings, passwords or commands (primary_conninfo,
 * the archive, restore and passphrase commands, and settings of
 * extensions named for a password, secret, token or the like) by SET,
 * ALTER SYSTEM, ALTER ROLE / ALTER DATABASE ... SET and the SET clauses of
 * functions.  The parse tree says which
 * statement carries a secret and where its option starts (DefElem
 * location); PostgreSQL's own scanner then finds the string constant that
 * follows, and that token is replaced by '<redacted>'.  Nothing is searched
 * for in the text with patterns, so quoting, comments, dollar quotes and
 * odd spacing cannot defeat it.
 *
 * A statement that failed to parse has no tree.  If its text mentions one
 * of the keywords that introduce such secrets, or such a setting, it is
 * not recorded at all; only its first keywords and a note are.
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
#include "nodes/nodeFuncs.h"
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
 * Settings of PostgreSQL 15 whose values carry connection strings (with
 * their passwords) or shell commands (which often carry credentials).
 */
static const char *const audit_secret_settings[] = {
	"primary_conninfo", "ssl_passphrase_command",  "archive_command",
	"restore_command",	"archive_cleanup_command", "recovery_end_command",
};

/* Words that make a setting of an extension (a dotted name) secret. */
static const char *const audit_secret_words[] = {
	"password", "passwd",	  "passphrase", "secret", "conninfo",
	"connstr",	"credential", "token",		"apikey", "api_key",
};

static bool
contains_ci(const char *text, const char *word)
{
	int wl = strlen(word);
	const char *p;

	for (p = text; *p; p++)
	{
		if (pg_strncasecmp(p, word, wl) == 0)
			return true;
	}
	return false;
}

/*
 * Does the value of this setting carry a secret?  The settings above, and
 * settings of extensions whose name mentions a password, a secret, a
 * token, a connection string or credentials.
 */
bool
audit_setting_is_secret(const char *name)
{
	int i;

	if (name == NULL)
		return false;
	for (i = 0; i < (int) lengthof(audit_secret_settings); i++)
	{
		if (pg_strcasecmp(name, audit_secret_settings[i]) == 0)
			return true;
	}
	if (strchr(name, '.') == NULL)
		return false;
	for (i = 0; i < (int) lengthof(audit_secret_words); i++)
	{
		if (contains_ci(strchr(name, '.') + 1, audit_secret_words[i]))
			return true;
	}
	return false;
}

/* The SET of a statement that sets a setting (SET, ALTER ... SET), or NULL. */
static VariableSetStmt *
audit_set_stmt(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_VariableSetStmt:
			return (VariableSetStmt *) parsetree;
		case T_AlterSystemStmt:
			return ((AlterSystemStmt *) parsetree)->setstmt;
		case T_AlterRoleSetStmt:
			return ((AlterRoleSetStmt *) parsetree)->setstmt;
		case T_AlterDatabaseSetStmt:
			return ((AlterDatabaseSetStmt *) parsetree)->setstmt;
		default:
			return NULL;
	}
}

static bool
audit_set_is_secret(VariableSetStmt *set)
{
	return set != NULL && set->kind == VAR_SET_VALUE && set->args != NIL &&
		   audit_setting_is_secret(set->name);
}

/* The SET clauses of CREATE or ALTER FUNCTION (or PROCEDURE), or NIL. */
static List *
audit_function_sets(Node *parsetree)
{
	List *options;
	List *sets = NIL;
	ListCell *lc;

	if (IsA(parsetree, CreateFunctionStmt))
		options = ((CreateFunctionStmt *) parsetree)->options;
	else if (IsA(parsetree, AlterFunctionStmt))
		options = ((AlterFunctionStmt *) parsetree)->actions;
	else
		return NIL;
	foreach (lc, options)
	{
		DefElem *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "set") == 0 && def->arg != NULL &&
			IsA(def->arg, VariableSetStmt))
			sets = lappend(sets, def->arg);
	}
	return sets;
}

/*
 * Does this statement carry a secret that must be redacted?
 */
bool
audit_needs_redaction(Node *parsetree)
{
	ListCell *lc;

	if (audit_set_stmt(parsetree) != NULL)
		return audit_set_is_secret(audit_set_stmt(parsetree));
	foreach (lc, audit_function_sets(parsetree))
	{
		if (audit_set_is_secret((VariableSetStmt *) lfirst(lc)))
			return true;
	}
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

/*
 * Mark the values of a SET as secret, whatever their kind of token (a
 * string, a number, a word); a sign before a number goes with it.
 */
static void
mark_set_values(VariableSetStmt *set, int base, AuditToken *tokens,
				int ntokens, bool *secret)
{
	ListCell *lc;

	foreach (lc, set->args)
	{
		Node *arg = (Node *) lfirst(lc);
		int loc = exprLocation(arg);
		int i;

		if (loc < 0)
			continue;
		i = token_at(tokens, ntokens, loc - base);
		if (i >= ntokens)
			continue;
		secret[i] = true;
		if ((tokens[i].token == '-' || tokens[i].token == '+') &&
			i + 1 < ntokens)
			secret[i + 1] = true;
	}
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

	if (audit_set_is_secret(audit_set_stmt(parsetree)))
		mark_set_values(audit_set_stmt(parsetree), base, tokens, ntokens,
						secret);
	{
		ListCell *lc;

		foreach (lc, audit_function_sets(parsetree))
		{
			if (audit_set_is_secret((VariableSetStmt *) lfirst(lc)))
				mark_set_values((VariableSetStmt *) lfirst(lc), base, tokens,
								ntokens, secret);
		}
	}
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
		/* A secret token right after another (a sign, a number) joins it. */
		if (!(i > 0 && secret[i - 1] && copied == start))
		{
			appendBinaryStringInfo(&out, text + copied, start - copied);
			appendStringInfoString(&out, AUDIT_REDACTED);
		}
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
	int i;

	if (has_word(text, "password") || has_word(text, "mapping") ||
		has_word(text, "server") || has_word(text, "subscription"))
		return true;
	for (i = 0; i < (int) lengthof(audit_secret_settings); i++)
	{
		if (contains_ci(text, audit_secret_settings[i]))
			return true;
	}
	for (i = 0; i < (int) lengthof(audit_secret_words); i++)
	{
		if (contains_ci(text, audit_secret_words[i]))
			return true;
	}
	return false;
}
