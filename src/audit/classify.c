/*-------------------------------------------------------------------------
 *
 * classify.c
 *		Which class a statement belongs to, and the names of its objects.
 *
 * Planned statements are read (SELECT) or write (INSERT, UPDATE, DELETE,
 * MERGE, or a SELECT with a data-modifying WITH); utility statements are
 * classified from their parse tree: role statements, DDL, function calls
 * (DO, CALL), COPY (read or write by direction), and the rest misc.  A
 * statement that failed before it was parsed is classified from its first
 * keyword, for the record only.
 *
 * Relation names are resolved in the backend (a relation may be dropped
 * before the queue is drained) and cached per relation OID; the relcache
 * invalidation callback forgets an entry when its relation changes.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/classify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "nodes/parsenodes.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "audit/audit.h"
#include "core/opsdata.h"

typedef struct AuditRelName
{
	Oid relid;
	bool is_catalog;
	char *name;
} AuditRelName;

static HTAB *audit_relnames = NULL;

static void
audit_relnames_invalidate(Datum arg, Oid relid)
{
	AuditRelName *entry;

	if (audit_relnames == NULL)
		return;
	if (relid == InvalidOid)
	{
		HASH_SEQ_STATUS status;

		hash_seq_init(&status, audit_relnames);
		while ((entry = hash_seq_search(&status)) != NULL)
		{
			pfree(entry->name);
			hash_search(audit_relnames, &entry->relid, HASH_REMOVE, NULL);
		}
		return;
	}
	entry = hash_search(audit_relnames, &relid, HASH_FIND, NULL);
	if (entry != NULL)
	{
		pfree(entry->name);
		hash_search(audit_relnames, &relid, HASH_REMOVE, NULL);
	}
}

/*
 * Register the invalidation callback.  Preloaded only.
 */
void
audit_classify_init(void)
{
	opsdata_register_relcache(OPSDATA_RELCACHE_AUDIT_CLASSIFY,
							  audit_relnames_invalidate);
}

static AuditRelName *
audit_relname_entry(Oid relid)
{
	AuditRelName *entry;
	bool found;

	if (audit_relnames == NULL)
	{
		HASHCTL ctl;

		ctl.keysize = sizeof(Oid);
		ctl.entrysize = sizeof(AuditRelName);
		ctl.hcxt = TopMemoryContext;
		audit_relnames =
			hash_create("pg_opsdata audit relation names", 256, &ctl,
						HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	entry = hash_search(audit_relnames, &relid, HASH_FIND, NULL);
	if (entry != NULL)
		return entry;

	{
		char *relname = get_rel_name(relid);
		Oid nsp = get_rel_namespace(relid);
		char *nspname = OidIsValid(nsp) ? get_namespace_name(nsp) : NULL;
		char *name;

		if (relname == NULL)
			name = psprintf("%u", relid);
		else
			name = quote_qualified_identifier(nspname, relname);
		entry = hash_search(audit_relnames, &relid, HASH_ENTER, &found);
		entry->is_catalog = IsCatalogNamespace(nsp) || IsToastNamespace(nsp);
		entry->name = MemoryContextStrdup(TopMemoryContext, name);
	}
	return entry;
}

/*
 * Qualified, quoted name of a relation (cached; valid until the next
 * invalidation, so copy it if it must live longer than the statement).
 */
const char *
audit_relation_name(Oid relid)
{
	return audit_relname_entry(relid)->name;
}

bool
audit_relation_is_catalog(Oid relid)
{
	return audit_relname_entry(relid)->is_catalog;
}

/*
 * Class of a utility statement.
 */
int
audit_utility_class(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_CreateRoleStmt:
		case T_AlterRoleStmt:
		case T_AlterRoleSetStmt:
		case T_DropRoleStmt:
		case T_GrantStmt:
		case T_GrantRoleStmt:
		case T_AlterDefaultPrivilegesStmt:
		case T_ReassignOwnedStmt:
		case T_DropOwnedStmt:
			return AUDIT_CLASS_ROLE;
		case T_DoStmt:
		case T_CallStmt:
			return AUDIT_CLASS_FUNCTION;
		case T_CopyStmt:
			return ((CopyStmt *) parsetree)->is_from ? AUDIT_CLASS_WRITE
													 : AUDIT_CLASS_READ;
		case T_TruncateStmt:
			return AUDIT_CLASS_WRITE;
		case T_TransactionStmt:
		case T_VariableSetStmt:
		case T_VariableShowStmt:
		case T_AlterSystemStmt:
		case T_DiscardStmt:
		case T_CheckPointStmt:
		case T_VacuumStmt:
		case T_ClusterStmt:
		case T_ReindexStmt:
		case T_LoadStmt:
		case T_NotifyStmt:
		case T_ListenStmt:
		case T_UnlistenStmt:
		case T_LockStmt:
		case T_FetchStmt:
		case T_ClosePortalStmt:
		case T_DeclareCursorStmt:
		case T_PrepareStmt:
		case T_ExecuteStmt:
		case T_DeallocateStmt:
		case T_ExplainStmt:
		case T_ConstraintsSetStmt:
			return AUDIT_CLASS_MISC;
		default:
			break;
	}
	switch (GetCommandLogLevel(parsetree))
	{
		case LOGSTMT_DDL:
			return AUDIT_CLASS_DDL;
		case LOGSTMT_MOD:
			return AUDIT_CLASS_WRITE;
		default:
			return AUDIT_CLASS_MISC;
	}
}

static bool
audit_setting_name(const char *name)
{
	return name != NULL && pg_strncasecmp(name, "pg_opsdata.audit", 16) == 0;
}

static bool
audit_setting_stmt(VariableSetStmt *stmt)
{
	if (stmt == NULL)
		return false;
	return stmt->kind == VAR_RESET_ALL || audit_setting_name(stmt->name);
}

/*
 * Does this statement change an audit setting (SET, RESET, ALTER SYSTEM,
 * ALTER ROLE / DATABASE ... SET of pg_opsdata.audit*)?  Such statements are
 * always audited.
 */
bool
audit_is_settings_change(Node *parsetree)
{
	switch (nodeTag(parsetree))
	{
		case T_VariableSetStmt:
			return audit_setting_stmt((VariableSetStmt *) parsetree);
		case T_AlterSystemStmt:
			return audit_setting_stmt(
				((AlterSystemStmt *) parsetree)->setstmt);
		case T_AlterRoleSetStmt:
			return audit_setting_stmt(
				((AlterRoleSetStmt *) parsetree)->setstmt);
		case T_AlterDatabaseSetStmt:
			return audit_setting_stmt(
				((AlterDatabaseSetStmt *) parsetree)->setstmt);
		default:
			return false;
	}
}

/* Skip white space and comments. */
static const char *
skip_blank(const char *p)
{
	for (;;)
	{
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' ||
			   *p == '(')
			p++;
		if (p[0] == '-' && p[1] == '-')
		{
			while (*p && *p != '\n')
				p++;
		}
		else if (p[0] == '/' && p[1] == '*')
		{
			p += 2;
			while (*p && !(p[0] == '*' && p[1] == '/'))
				p++;
			if (*p)
				p += 2;
		}
		else
			return p;
	}
}

static int
read_word(const char **pp, char *word, int size)
{
	const char *p = skip_blank(*pp);
	int n = 0;

	while (
		((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_') &&
		n < size - 1)
		word[n++] = pg_toupper((unsigned char) *p++);
	word[n] = '\0';
	*pp = p;
	return n;
}

/*
 * Class and command of a statement that failed before it was parsed or
 * analyzed, from its first keywords.  *command is a constant string.
 */
int
audit_keyword_class(const char *text, const char **command)
{
	static const struct
	{
		const char *word;
		int class;
	} words[] = {
		{"SELECT", AUDIT_CLASS_READ},	 {"WITH", AUDIT_CLASS_READ},
		{"VALUES", AUDIT_CLASS_READ},	 {"TABLE", AUDIT_CLASS_READ},
		{"INSERT", AUDIT_CLASS_WRITE},	 {"UPDATE", AUDIT_CLASS_WRITE},
		{"DELETE", AUDIT_CLASS_WRITE},	 {"MERGE", AUDIT_CLASS_WRITE},
		{"COPY", AUDIT_CLASS_WRITE},	 {"TRUNCATE", AUDIT_CLASS_WRITE},
		{"CREATE", AUDIT_CLASS_DDL},	 {"ALTER", AUDIT_CLASS_DDL},
		{"DROP", AUDIT_CLASS_DDL},		 {"COMMENT", AUDIT_CLASS_DDL},
		{"GRANT", AUDIT_CLASS_ROLE},	 {"REVOKE", AUDIT_CLASS_ROLE},
		{"DO", AUDIT_CLASS_FUNCTION},	 {"CALL", AUDIT_CLASS_FUNCTION},
		{"BEGIN", AUDIT_CLASS_MISC},	 {"START", AUDIT_CLASS_MISC},
		{"COMMIT", AUDIT_CLASS_MISC},	 {"END", AUDIT_CLASS_MISC},
		{"ROLLBACK", AUDIT_CLASS_MISC},	 {"ABORT", AUDIT_CLASS_MISC},
		{"SAVEPOINT", AUDIT_CLASS_MISC}, {"RELEASE", AUDIT_CLASS_MISC},
		{"PREPARE", AUDIT_CLASS_MISC},	 {"EXECUTE", AUDIT_CLASS_MISC},
		{"SET", AUDIT_CLASS_MISC},		 {"RESET", AUDIT_CLASS_MISC},
		{"SHOW", AUDIT_CLASS_MISC},		 {"VACUUM", AUDIT_CLASS_MISC},
		{"ANALYZE", AUDIT_CLASS_MISC},	 {"EXPLAIN", AUDIT_CLASS_MISC},
		{"LOCK", AUDIT_CLASS_MISC},		 {"FETCH", AUDIT_CLASS_MISC},
		{"DECLARE", AUDIT_CLASS_MISC},	 {"CLOSE", AUDIT_CLASS_MISC}};
	char word[32];
	const char *p = text ? text : "";
	int i;

	*command = "???";
	if (read_word(&p, word, sizeof(word)) == 0)
		return AUDIT_CLASS_MISC;
	for (i = 0; i < (int) lengthof(words); i++)
	{
		if (strcmp(word, words[i].word) == 0)
		{
			*command = words[i].word;
			if (words[i].class == AUDIT_CLASS_DDL)
			{
				char second[32];

				read_word(&p, second, sizeof(second));
				if (strcmp(second, "ROLE") == 0 ||
					strcmp(second, "USER") == 0 ||
					strcmp(second, "GROUP") == 0)
					return AUDIT_CLASS_ROLE;
			}
			return words[i].class;
		}
	}
	return AUDIT_CLASS_MISC;
}

const char *
audit_privilege_text(AclMode perms)
{
	static const char *const names[] = {
		"SELECT",		 "INSERT",		  "UPDATE",
		"DELETE",		 "SELECT,INSERT", "SELECT,UPDATE",
		"SELECT,DELETE", "INSERT,UPDATE", "SELECT,INSERT,UPDATE"};

	switch (perms & (ACL_SELECT | ACL_INSERT | ACL_UPDATE | ACL_DELETE))
	{
		case ACL_SELECT:
			return names[0];
		case ACL_INSERT:
			return names[1];
		case ACL_UPDATE:
			return names[2];
		case ACL_DELETE:
			return names[3];
		case ACL_SELECT | ACL_INSERT:
			return names[4];
		case ACL_SELECT | ACL_UPDATE:
			return names[5];
		case ACL_SELECT | ACL_DELETE:
			return names[6];
		case ACL_INSERT | ACL_UPDATE:
			return names[7];
		case ACL_SELECT | ACL_INSERT | ACL_UPDATE:
			return names[8];
		default:
			return NULL;
	}
}

#define ADD(n, p) (objects = lappend(objects, audit_object((n), (p))))

static AuditObject *
audit_object(const char *name, const char *privilege)
{
	AuditObject *obj = palloc(sizeof(AuditObject));

	obj->name = pstrdup(name);
	obj->privilege = privilege;
	return obj;
}

/*
 * Objects a utility statement names, from its parse tree: the relation of
 * COPY and TRUNCATE, the roles of role statements, the relations and
 * grantees of GRANT, the setting of SET and ALTER SYSTEM.  (DDL learns its
 * objects from the event triggers.)  Returns a List of AuditObject.
 */
List *
audit_utility_objects(Node *parsetree)
{
	List *objects = NIL;

	switch (nodeTag(parsetree))
	{
		case T_CopyStmt:
		{
			CopyStmt *copy = (CopyStmt *) parsetree;

			if (copy->relation != NULL)
			{
				Oid relid = RangeVarGetRelid(copy->relation, NoLock, true);

				if (OidIsValid(relid))
					ADD(audit_relation_name(relid),
						copy->is_from ? "INSERT" : "SELECT");
			}
			break;
		}
		case T_TruncateStmt:
		{
			ListCell *lc;

			foreach (lc, ((TruncateStmt *) parsetree)->relations)
			{
				Oid relid =
					RangeVarGetRelid((RangeVar *) lfirst(lc), NoLock, true);

				if (OidIsValid(relid))
					ADD(audit_relation_name(relid), "TRUNCATE");
			}
			break;
		}
		case T_CreateRoleStmt:
			ADD(quote_identifier(((CreateRoleStmt *) parsetree)->role), NULL);
			break;
		case T_AlterRoleStmt:
		case T_AlterRoleSetStmt:
		case T_DropRoleStmt:
		case T_GrantRoleStmt:
		{
			List *roles = NIL;
			ListCell *lc;

			if (IsA(parsetree, AlterRoleStmt))
				roles = list_make1(((AlterRoleStmt *) parsetree)->role);
			else if (IsA(parsetree, AlterRoleSetStmt) &&
					 ((AlterRoleSetStmt *) parsetree)->role)
				roles = list_make1(((AlterRoleSetStmt *) parsetree)->role);
			else if (IsA(parsetree, DropRoleStmt))
				roles = ((DropRoleStmt *) parsetree)->roles;
			else if (IsA(parsetree, GrantRoleStmt))
				roles = list_concat_copy(
					((GrantRoleStmt *) parsetree)->granted_roles,
					((GrantRoleStmt *) parsetree)->grantee_roles);
			foreach (lc, roles)
			{
				Node *n = lfirst(lc);

				if (IsA(n, RoleSpec) &&
					((RoleSpec *) n)->roletype == ROLESPEC_CSTRING)
					ADD(quote_identifier(((RoleSpec *) n)->rolename), NULL);
				else if (IsA(n, AccessPriv) && ((AccessPriv *) n)->priv_name)
					ADD(quote_identifier(((AccessPriv *) n)->priv_name), NULL);
			}
			break;
		}
		case T_GrantStmt:
		{
			GrantStmt *grant = (GrantStmt *) parsetree;
			ListCell *lc;

			if (grant->targtype == ACL_TARGET_OBJECT &&
				grant->objtype == OBJECT_TABLE)
			{
				foreach (lc, grant->objects)
				{
					Oid relid = RangeVarGetRelid((RangeVar *) lfirst(lc),
												 NoLock, true);

					if (OidIsValid(relid))
						ADD(audit_relation_name(relid), NULL);
				}
			}
			foreach (lc, grant->grantees)
			{
				RoleSpec *role = (RoleSpec *) lfirst(lc);

				if (role->roletype == ROLESPEC_CSTRING)
					ADD(quote_identifier(role->rolename), NULL);
			}
			break;
		}
		case T_VariableSetStmt:
			if (((VariableSetStmt *) parsetree)->name)
				ADD(((VariableSetStmt *) parsetree)->name, NULL);
			break;
		case T_AlterSystemStmt:
			if (((AlterSystemStmt *) parsetree)->setstmt->name)
				ADD(((AlterSystemStmt *) parsetree)->setstmt->name, NULL);
			break;
		default:
			break;
	}
	return objects;
}
