/*-------------------------------------------------------------------------
 *
 * guc.c
 *		The pg_opsdata.audit* settings and the names of classes and outcomes.
 *
 * pg_opsdata.audit is a list of classes (read, write, function, role, ddl,
 * misc, login, all, none; a class preceded by "-" is taken away), parsed
 * once by its check hook into a bit set that the hooks test.  The policy
 * settings are SUSET: only superusers change them, in a session or with
 * ALTER ROLE / ALTER DATABASE ... SET; among them how long a session may
 * wait for room in a full queue.  Queue sizes are fixed at server
 * start (POSTMASTER); the flush interval is reloadable (SIGHUP).
 * pg_opsdata.audit_skip_applications names Citus's internal connections,
 * which are not audited in a server where Citus is loaded (active.c).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/guc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "audit/audit.h"
#include "core/opsdata.h"

int audit_classes = 0;
char *audit_skip_applications = NULL;
const char *audit_skip_prefixes = NULL;
int audit_overflow = AUDIT_OVERFLOW_WAIT;
int audit_overflow_timeout_ms = 30 * 1000;
bool audit_catalog = true;
bool audit_log_parameters = false;
int audit_parameter_max_length = 1024;
int audit_queue_size_kb = 1024;
int audit_max_databases = 8;
int audit_flush_interval_ms = 200;

static char *audit_classes_text = NULL;

/* The context an application declares (audit.set_context()). */
char *audit_actor = NULL;
char *audit_request_id = NULL;
char *audit_attributes = NULL;

#define AUDIT_CONTEXT_MAX_LENGTH	1024
#define AUDIT_ATTRIBUTES_MAX_LENGTH 8192

static const char *const audit_class_names[AUDIT_NUM_CLASSES] = {
	"read", "write", "function", "role",	"ddl",
	"misc", "login", "app",		 "imported"};

static const char *const audit_outcome_names[] = {"ok", "error", "rolled back",
												  "denied", "failed"};

static const struct config_enum_entry audit_overflow_options[] = {
	{"wait", AUDIT_OVERFLOW_WAIT, false},
	{"drop", AUDIT_OVERFLOW_DROP, false},
	{NULL, 0, false}};

const char *
audit_class_name(int class)
{
	Assert(class >= 0 && class < AUDIT_NUM_CLASSES);
	return audit_class_names[class];
}

const char *
audit_outcome_name(int outcome)
{
	return audit_outcome_names[outcome];
}

/*
 * The classes of a bit set as a comma-separated list, for health reports.
 */
char *
audit_classes_string(int classes)
{
	StringInfoData buf;
	int i;

	if (classes == 0)
		return pstrdup("none");
	if (classes == AUDIT_ALL_CLASSES)
		return pstrdup("all");
	initStringInfo(&buf);
	for (i = 0; i < AUDIT_CLASS_APP; i++)
	{
		if (classes & AUDIT_BIT(i))
			appendStringInfo(&buf, "%s%s", buf.len > 0 ? "," : "",
							 audit_class_names[i]);
	}
	return buf.data;
}

/*
 * Parse pg_opsdata.audit; on success *extra holds the bit set.
 */
static bool
audit_check_classes(char **newval, void **extra, GucSource source)
{
	char *raw = pstrdup(*newval);
	List *items;
	ListCell *lc;
	int classes = 0;
	int *result;

	if (!SplitIdentifierString(raw, ',', &items))
	{
		GUC_check_errdetail("List syntax is invalid.");
		pfree(raw);
		list_free(items);
		return false;
	}

	foreach (lc, items)
	{
		char *item = (char *) lfirst(lc);
		bool subtract = false;
		int bits = -1;
		int i;

		if (item[0] == '-')
		{
			subtract = true;
			item++;
		}
		if (pg_strcasecmp(item, "all") == 0)
			bits = AUDIT_ALL_CLASSES;
		else if (pg_strcasecmp(item, "none") == 0)
			bits = 0;
		else
		{
			for (i = 0; i < AUDIT_CLASS_APP; i++)
			{
				if (pg_strcasecmp(item, audit_class_names[i]) == 0)
					bits = AUDIT_BIT(i);
			}
		}
		if (bits < 0)
		{
			GUC_check_errdetail("Unrecognized audit class: \"%s\".", item);
			GUC_check_errhint(
				"Valid classes are read, write, function, role, ddl, misc, login, all and none.");
			pfree(raw);
			list_free(items);
			return false;
		}
		if (subtract)
			classes &= ~bits;
		else
			classes |= bits;
	}
	pfree(raw);
	list_free(items);

	result = (int *) malloc(sizeof(int));
	if (result == NULL)
		return false;
	*result = classes;
	*extra = result;
	return true;
}

static void
audit_assign_classes(const char *newval, void *extra)
{
	audit_classes = *((int *) extra);
}

/* An actor or request id: at most AUDIT_CONTEXT_MAX_LENGTH bytes. */
/*
 * pg_opsdata.audit_skip_applications: a list of application_name
 * prefixes.  The check hook turns it into the prefixes one after another,
 * each ended by a NUL, the last followed by a second NUL.
 */
static bool
audit_check_skip_applications(char **newval, void **extra, GucSource source)
{
	char *raw = pstrdup(*newval);
	List *items;
	ListCell *lc;
	Size len = 1;
	char *out;
	char *p;

	if (!SplitGUCList(raw, ',', &items))
	{
		GUC_check_errdetail("List syntax is invalid.");
		pfree(raw);
		return false;
	}
	foreach (lc, items)
		len += strlen((char *) lfirst(lc)) + 1;
	out = malloc(len);
	if (out == NULL)
		return false;
	p = out;
	foreach (lc, items)
	{
		const char *item = (const char *) lfirst(lc);

		if (item[0] == '\0')
			continue;
		strcpy(p, item);
		p += strlen(item) + 1;
	}
	*p = '\0';
	list_free(items);
	pfree(raw);
	*extra = out;
	return true;
}

static void
audit_assign_skip_applications(const char *newval, void *extra)
{
	audit_skip_prefixes = (const char *) extra;
}

static bool
audit_check_context(char **newval, void **extra, GucSource source)
{
	if (*newval != NULL && strlen(*newval) > AUDIT_CONTEXT_MAX_LENGTH)
	{
		GUC_check_errdetail("The value is longer than %d bytes.",
							AUDIT_CONTEXT_MAX_LENGTH);
		return false;
	}
	return true;
}

/* Attributes: empty, or a JSON object of at most 8 kB. */
static bool
audit_check_attributes(char **newval, void **extra, GucSource source)
{
	const char *s = *newval;
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType err;

	if (s == NULL || s[0] == '\0')
		return true;
	if (strlen(s) > AUDIT_ATTRIBUTES_MAX_LENGTH)
	{
		GUC_check_errdetail("The value is longer than %d bytes.",
							AUDIT_ATTRIBUTES_MAX_LENGTH);
		return false;
	}
	while (audit_is_blank(*s))
		s++;
	if (*s != '{')
	{
		GUC_check_errdetail("The value is not a JSON object.");
		return false;
	}
	/*
	 * With its strings de-escaped, as jsonb_in() parses it: an escape that
	 * text cannot hold (\u0000, or beyond ASCII in a database that is not
	 * UTF8) is refused here, not when an entry is written.
	 */
	memset(&sem, 0, sizeof(sem));
	lex = makeJsonLexContextCstringLen((char *) s, strlen(s),
									   GetDatabaseEncoding(), true);
	err = pg_parse_json(lex, &sem);
	pfree(lex->strval->data);
	pfree(lex->strval);
	pfree(lex);
	if (err != JSON_SUCCESS)
	{
		GUC_check_errdetail("The value is not valid JSON.");
		return false;
	}
	return true;
}

/*
 * Define the audit settings.  Called from audit_init() whether or not the
 * library is preloaded, so that the settings exist for every session.
 */
void
audit_define_gucs(void)
{
	DefineCustomStringVariable(
		"pg_opsdata.audit", "Classes of statements to audit.",
		"A comma-separated list of read, write, function, role, ddl, misc, login, all or none; "
		"a class preceded by \"-\" is removed.",
		&audit_classes_text, "none", PGC_SUSET, GUC_LIST_INPUT,
		audit_check_classes, audit_assign_classes, NULL);

	DefineCustomStringVariable(
		"pg_opsdata.audit_actor",
		"The end user the application acts for, recorded in every audit entry.",
		"Declared by the application (audit.set_context()); it proves nothing "
		"about who authenticated.",
		&audit_actor, "", PGC_USERSET, 0, audit_check_context, NULL, NULL);

	DefineCustomStringVariable(
		"pg_opsdata.audit_request_id",
		"The application's request, recorded in every audit entry.", NULL,
		&audit_request_id, "", PGC_USERSET, 0, audit_check_context, NULL,
		NULL);

	DefineCustomStringVariable(
		"pg_opsdata.audit_attributes",
		"More of the application's context, a JSON object recorded in every audit entry.",
		NULL, &audit_attributes, "", PGC_USERSET, 0, audit_check_attributes,
		NULL, NULL);

	DefineCustomEnumVariable(
		"pg_opsdata.audit_overflow",
		"What a session does when its database's audit queue is full.",
		"wait: wait until the queue has room; drop: drop the entry and count it.",
		&audit_overflow, AUDIT_OVERFLOW_WAIT, audit_overflow_options,
		PGC_SUSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"pg_opsdata.audit_overflow_timeout",
		"Longest time a session waits for room in a full audit queue.",
		"With pg_opsdata.audit_overflow = wait, a statement whose entries "
		"found no room for this long fails.",
		&audit_overflow_timeout_ms, 30 * 1000, 1, 24 * 3600 * 1000, PGC_SUSET,
		GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomStringVariable(
		"pg_opsdata.audit_skip_applications",
		"Application names of Citus's internal connections, which are not "
		"audited.",
		"A comma-separated list of prefixes of application_name, by default "
		"those of Citus's internal connections.  Only in a server where "
		"Citus is loaded, and only when the session user is a superuser, is "
		"a session with such a name left out of the audit; every other "
		"session is audited whatever its name.",
		&audit_skip_applications,
		"citus_internal,citus_rebalancer,citus_run_command", PGC_SUSET,
		GUC_LIST_INPUT, audit_check_skip_applications,
		audit_assign_skip_applications, NULL);

	DefineCustomBoolVariable(
		"pg_opsdata.audit_catalog",
		"Audit statements that touch only system catalogs.", NULL,
		&audit_catalog, true, PGC_SUSET, 0, NULL, NULL, NULL);

	DefineCustomBoolVariable(
		"pg_opsdata.audit_parameters",
		"Record the bind parameters of audited statements.", NULL,
		&audit_log_parameters, false, PGC_SUSET, 0, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"pg_opsdata.audit_parameter_max_length",
		"Bytes of each bind parameter recorded; longer values are truncated.",
		"-1 records parameters in full.", &audit_parameter_max_length, 1024,
		-1, INT_MAX / 2, PGC_SUSET, GUC_UNIT_BYTE, NULL, NULL, NULL);

	/* Sizes of shared memory exist only when it is allocated. */
	if (!opsdata_preloaded)
		goto reloadable;

	DefineCustomIntVariable(
		"pg_opsdata.audit_queue_size",
		"Size of the shared-memory audit queue of each database.", NULL,
		&audit_queue_size_kb, 1024, 64, 1024 * 1024, PGC_POSTMASTER,
		GUC_UNIT_KB, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"pg_opsdata.audit_max_databases",
		"Databases that can have an audit queue at the same time.", NULL,
		&audit_max_databases, 8, 1, 1024, PGC_POSTMASTER, 0, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"pg_opsdata.audit_statement_cache_size",
		"Shared memory for the cache of statement texts known to be stored.",
		"0 turns the cache off.", &audit_text_cache_kb, 16 * 1024, 0,
		1024 * 1024, PGC_POSTMASTER, GUC_UNIT_KB, NULL, NULL, NULL);

reloadable:
	DefineCustomIntVariable(
		"pg_opsdata.audit_flush_interval",
		"Longest time an entry waits in the audit queue before the scheduler writes it.",
		NULL, &audit_flush_interval_ms, 200, 10, 60 * 1000, PGC_SIGHUP,
		GUC_UNIT_MS, NULL, NULL, NULL);
}
