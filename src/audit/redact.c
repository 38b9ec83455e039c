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
 * functions, and by set_config() with a constant setting name: a statement
 * whose text mentions set_config is parsed again to find where its value
 * was written (the executor's tree no longer says), and a statement that
 * should not parse alone is not recorded.  The parse tree says which
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
#include "parser/parser.h"
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
 * text[0..len) with every token marked secret replaced by '<redacted>'; a
 * secret token right after another (a sign and its number) joins it.
 */
static char *
audit_replace_secrets(const char *text, int len, AuditToken *tokens,
					  int ntokens, bool *secret)
{
	StringInfoData out;
	int copied = 0;
	int i;

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
		if (!(i > 0 && secret[i - 1] && copied == start))
		{
			appendBinaryStringInfo(&out, text + copied, start - copied);
			appendStringInfoString(&out, AUDIT_REDACTED);
		}
		copied = end;
	}
	appendBinaryStringInfo(&out, text + copied, len - copied);
	return out.data;
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
	char *out;
	int i;

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

	out = audit_replace_secrets(text, len, tokens, ntokens, secret);
	pfree(tokens);
	pfree(secret);
	return out;
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

/* Locations (in the source string) of the values set_config() sets secret. */
typedef struct AuditSetConfigWalk
{
	List *locations;
} AuditSetConfigWalk;

static bool
audit_set_config_walker(Node *node, AuditSetConfigWalk *walk)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncCall))
	{
		FuncCall *fc = (FuncCall *) node;
		Node *name = (Node *) llast(fc->funcname);
		Node *setting = list_length(fc->args) >= 2 ? linitial(fc->args) : NULL;

		if (IsA(name, String) &&
			pg_strcasecmp(strVal(name), "set_config") == 0 &&
			setting != NULL && IsA(setting, A_Const) &&
			!((A_Const *) setting)->isnull &&
			IsA(&((A_Const *) setting)->val, String) &&
			audit_setting_is_secret(strVal(&((A_Const *) setting)->val)) &&
			exprLocation(lsecond(fc->args)) >= 0)
			walk->locations =
				lappend_int(walk->locations, exprLocation(lsecond(fc->args)));
	}
	return raw_expression_tree_walker(node, audit_set_config_walker,
									  (void *) walk);
}

/* The query of a statement the executor runs, for the walker, or NULL. */
static Node *
audit_walkable(Node *stmt)
{
	if (stmt == NULL)
		return NULL;
	switch (nodeTag(stmt))
	{
		case T_SelectStmt:
		case T_InsertStmt:
		case T_UpdateStmt:
		case T_DeleteStmt:
		case T_MergeStmt:
			return stmt;
		case T_ExplainStmt:
			return audit_walkable(((ExplainStmt *) stmt)->query);
		case T_CreateTableAsStmt:
			return audit_walkable(((CreateTableAsStmt *) stmt)->query);
		case T_DeclareCursorStmt:
			return audit_walkable(((DeclareCursorStmt *) stmt)->query);
		case T_CopyStmt:
			return audit_walkable(((CopyStmt *) stmt)->query);
		case T_PrepareStmt:
			return audit_walkable(((PrepareStmt *) stmt)->query);
		default:
			return NULL;
	}
}

/*
 * Parse text again and collect in walk the locations of the values its
 * set_config() calls give secret settings.  The text parsed once already;
 * should anything fail here, false is returned rather than the statement
 * failed.
 */
static bool
audit_find_set_config(const char *text, AuditSetConfigWalk *walk)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool ok = true;

	PG_TRY();
	{
		List *stmts = raw_parser(text, RAW_PARSE_DEFAULT);
		ListCell *lc;

		foreach (lc, stmts)
		{
			Node *query = audit_walkable(((RawStmt *) lfirst(lc))->stmt);

			if (query != NULL)
				audit_set_config_walker(query, walk);
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * The text of a statement that calls set_config() for a secret setting,
 * with the value it sets replaced, or NULL when it has none: the statement
 * is parsed again (only when its text mentions set_config) since the
 * executor's tree no longer says where its constants were written.  The
 * statement starts at offset location of source and is len bytes long (0:
 * to the end).
 */
char *
audit_redact_set_config(const char *source, int location, int len)
{
	char *text;
	AuditSetConfigWalk walk = {NIL};
	AuditToken *tokens;
	int ntokens;
	bool *secret;
	ListCell *lc;
	int i;

	if (location < 0)
		location = 0;
	if (len <= 0)
		len = strlen(source + location);
	/* Most statements do not mention it: look before copying anything. */
	for (i = 0; i + 10 <= len; i++)
	{
		if ((source[location + i] == 's' || source[location + i] == 'S') &&
			pg_strncasecmp(source + location + i, "set_config", 10) == 0)
			break;
	}
	if (i + 10 > len)
		return NULL;
	text = pnstrdup(source + location, len);
	if (!audit_find_set_config(text, &walk))
		return pstrdup(
			"... (not recorded: the statement calls set_config() and may hold a secret)");
	if (walk.locations == NIL)
		return NULL;

	tokens = audit_lex(text, len, &ntokens);
	secret = palloc0(sizeof(bool) * Max(ntokens, 1));
	foreach (lc, walk.locations)
	{
		i = token_at(tokens, ntokens, lfirst_int(lc));
		if (i < ntokens)
			secret[i] = true;
	}
	return audit_replace_secrets(text, len, tokens, ntokens, secret);
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
