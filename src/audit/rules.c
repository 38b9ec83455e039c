/*-------------------------------------------------------------------------
 *
 * rules.c
 *		Include and exclude rules of audit.rules, cached per backend.
 *
 * A statement is audited when no exclude rule matches it and either its
 * class is in pg_opsdata.audit or an include rule matches it: exclusions
 * win.  A rule matches when each of its non-NULL conditions holds: the
 * current user is a member of role_name (directly or not), the database
 * is database_name, one of the statement's objects is in schema_name or is
 * relation_name, and the statement is of class class.  Superusers are
 * members of a role only if they were granted it.
 *
 * The rules of the current database are read once and kept in
 * TopMemoryContext; audit.add_rule() and audit.drop_rule() send a relcache
 * invalidation for audit.rules, and the callback here makes every backend
 * read them again at its next statement.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/rules.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "audit/audit.h"
#include "core/opsdata.h"

typedef struct AuditRule
{
	bool include;
	bool has_role;
	Oid roleid; /* InvalidOid when the role does not exist: never matches */
	char *schema_prefix; /* quoted schema name followed by a dot */
	char *relation;
	int class; /* -1: any */
} AuditRule;

static bool audit_rules_loaded = false;
static int audit_nrules = 0;
static AuditRule *audit_rules = NULL;
static bool audit_has_include = false;
static bool audit_has_exclude = false;
static Oid audit_rules_oid = InvalidOid;
static MemoryContext audit_rules_cxt = NULL;

static void
audit_rules_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == audit_rules_oid)
		audit_rules_loaded = false;
}

/*
 * Register the invalidation callback.  Preloaded only.
 */
void
audit_rules_init(void)
{
	opsdata_register_relcache(OPSDATA_RELCACHE_AUDIT_RULES,
							  audit_rules_callback);
}

/*
 * Forget the cached rules (after a change in this transaction).
 */
void
audit_rules_invalidate(void)
{
	audit_rules_loaded = false;
}

/*
 * OID of audit.rules, or InvalidOid.
 */
Oid
audit_rules_relid(void)
{
	Oid nsp = get_namespace_oid("audit", true);

	return OidIsValid(nsp) ? get_relname_relid("rules", nsp) : InvalidOid;
}

static int
class_from_name(const char *name)
{
	int i;

	for (i = 0; i < AUDIT_NUM_CLASSES; i++)
	{
		if (strcmp(name, audit_class_name(i)) == 0)
			return i;
	}
	return -1;
}

static char *
text_attr(HeapTuple tuple, TupleDesc desc, const char *attname,
		  MemoryContext cxt)
{
	int i;
	bool isnull;
	Datum d;

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || strcmp(NameStr(att->attname), attname) != 0)
			continue;
		d = heap_getattr(tuple, i + 1, desc, &isnull);
		if (isnull)
			return NULL;
		if (att->atttypid == NAMEOID)
			return MemoryContextStrdup(cxt, NameStr(*DatumGetName(d)));
		return MemoryContextStrdup(cxt, TextDatumGetCString(d));
	}
	return NULL;
}

/*
 * Read the rules of the current database into the cache, as the
 * extension's own work.  Caller is in a transaction.
 */
static void
audit_rules_read(void *arg)
{
	Relation rel;
	TableScanDesc scan;
	HeapTuple tuple;
	TupleDesc desc;
	Snapshot snapshot;
	int size = 8;
	char *dbname = get_database_name(MyDatabaseId);

	if (audit_rules_cxt == NULL)
		audit_rules_cxt = AllocSetContextCreate(
			TopMemoryContext, "pg_opsdata audit rules", ALLOCSET_SMALL_SIZES);
	MemoryContextReset(audit_rules_cxt);
	audit_rules =
		MemoryContextAlloc(audit_rules_cxt, sizeof(AuditRule) * size);
	audit_nrules = 0;
	audit_has_include = audit_has_exclude = false;

	/*
	 * The OID found by name may be gone once its lock is granted: a DROP
	 * EXTENSION that held the lock committed meanwhile (perhaps with a new
	 * CREATE EXTENSION).  Taking the lock read the invalidations, so the
	 * name is looked up again; the session goes on without rules when the
	 * table is gone, never fails.
	 */
	for (;;)
	{
		audit_rules_oid = audit_rules_relid();
		if (!OidIsValid(audit_rules_oid))
			return;
		rel = try_table_open(audit_rules_oid, AccessShareLock);
		if (rel != NULL)
			break;
	}
	desc = RelationGetDescr(rel);
	/*
	 * A fresh catalog snapshot, not the transaction's: a session's first
	 * statement may be BEGIN ISOLATION LEVEL ..., which must come before the
	 * transaction takes its snapshot.
	 */
	InvalidateCatalogSnapshot();
	snapshot = RegisterSnapshot(GetCatalogSnapshot(audit_rules_oid));
	scan = table_beginscan(rel, snapshot, 0, NULL);
	while ((tuple = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		AuditRule *rule;
		char *action = text_attr(tuple, desc, "action", CurrentMemoryContext);
		char *role = text_attr(tuple, desc, "role_name", audit_rules_cxt);
		char *database =
			text_attr(tuple, desc, "database_name", CurrentMemoryContext);
		char *schema =
			text_attr(tuple, desc, "schema_name", CurrentMemoryContext);
		char *relation =
			text_attr(tuple, desc, "relation_name", audit_rules_cxt);
		char *class = text_attr(tuple, desc, "class", CurrentMemoryContext);

		if (database != NULL && strcmp(database, dbname) != 0)
			continue;
		audit_rules = audit_array_room(audit_rules, audit_nrules, &size,
									   sizeof(AuditRule), 8, audit_rules_cxt);
		rule = &audit_rules[audit_nrules++];
		rule->include = action != NULL && strcmp(action, "include") == 0;
		rule->has_role = role != NULL;
		rule->roleid = role != NULL ? get_role_oid(role, true) : InvalidOid;
		rule->schema_prefix =
			schema != NULL ? MemoryContextStrdup(
								 audit_rules_cxt,
								 psprintf("%s.", quote_identifier(schema)))
						   : NULL;
		rule->relation = relation;
		rule->class = class != NULL ? class_from_name(class) : -1;
		if (rule->include)
			audit_has_include = true;
		else
			audit_has_exclude = true;
	}
	table_endscan(scan);
	UnregisterSnapshot(snapshot);
	table_close(rel, AccessShareLock);
}

/* Load the rules if needed and possible (never while reporting an error). */
static void
audit_rules_ensure(void)
{
	if (!audit_rules_loaded && IsTransactionState() &&
		!IsAbortedTransactionBlockState() && !audit_reporting_error())
	{
		audit_run_internal(audit_rules_read, NULL);
		audit_rules_loaded = true;
	}
}

/*
 * May an include rule bring in a statement whose class is not audited?
 */
bool
audit_rules_may_include(void)
{
	audit_rules_ensure();
	return audit_has_include;
}

bool
audit_rules_may_exclude(void)
{
	audit_rules_ensure();
	return audit_has_exclude;
}

static bool
audit_rule_matches(const AuditRule *rule, const AuditEvent *ev, Oid roleid)
{
	int i;

	if (rule->class >= 0 && rule->class != ev->class)
		return false;
	if (rule->has_role && (!OidIsValid(rule->roleid) || !OidIsValid(roleid) ||
						   !is_member_of_role_nosuper(roleid, rule->roleid)))
		return false;
	if (rule->schema_prefix != NULL || rule->relation != NULL)
	{
		for (i = 0; i < ev->nobjects; i++)
		{
			const char *obj = ev->objects[i];

			if (rule->relation != NULL && strcmp(obj, rule->relation) != 0)
				continue;
			if (rule->schema_prefix != NULL &&
				strncmp(obj, rule->schema_prefix,
						strlen(rule->schema_prefix)) != 0)
				continue;
			return true;
		}
		return false;
	}
	return true;
}

/*
 * Is this event audited, given the classes of pg_opsdata.audit and the
 * rules?  roleid is the role the statement ran as.  Events that change
 * audit settings or rules are always audited.
 */
bool
audit_rules_wanted(const AuditEvent *ev, Oid roleid)
{
	bool by_class = (audit_classes & AUDIT_BIT(ev->class)) != 0;
	int i;

	if (ev->flags & AUDIT_EVENT_ALWAYS)
		return true;
	audit_rules_ensure();
	if (audit_nrules == 0)
		return by_class;
	if (audit_has_exclude)
	{
		for (i = 0; i < audit_nrules; i++)
		{
			if (!audit_rules[i].include &&
				audit_rule_matches(&audit_rules[i], ev, roleid))
				return false;
		}
	}
	if (by_class)
		return true;
	for (i = 0; i < audit_nrules; i++)
	{
		if (audit_rules[i].include &&
			audit_rule_matches(&audit_rules[i], ev, roleid))
			return true;
	}
	return false;
}

/*
 * Does an exclude rule match this event?  Used for logins, whose class was
 * decided when they happened, before the session had a database.
 */
bool
audit_rules_excluded(const AuditEvent *ev, Oid roleid)
{
	int i;

	audit_rules_ensure();
	for (i = 0; i < audit_nrules; i++)
	{
		if (!audit_rules[i].include &&
			audit_rule_matches(&audit_rules[i], ev, roleid))
			return true;
	}
	return false;
}
