/*-------------------------------------------------------------------------
 *
 * ingest_copy.c
 *		COPY into metrics.ingest, read field by field without the executor.
 *
 * A COPY into the metrics.ingest foreign table normally goes through
 * COPY's executor path: every field is converted by its type's input
 * function, the row is formed in a slot and handed to the foreign table's
 * insert routine (ingest_fdw.c), one call per row.  When the library is
 * preloaded, a utility hook takes such a COPY over instead and reads the
 * rows with PostgreSQL's own COPY reader (BeginCopyFrom and
 * NextCopyFromRawFields: the same formats, options, encodings, header and
 * error context), then converts each row's fields itself:
 *
 *	 - the name and tags are used as the bytes COPY read, never made into
 *	   text datums (the series cache is keyed by those bytes);
 *	 - a timestamp written in the ISO form COPY TO and most producers write
 *	   ("2024-05-01 10:00:00.25+02", with an explicit offset or Z) is
 *	   converted by metrics_parse_timestamptz(); any other spelling goes to
 *	   timestamptz's input function, so the result is always the value
 *	   timestamptz_in would give;
 *	 - the value is read by float8's own parser.
 *
 * Each point then takes the same checks and the same writer as a row
 * given to the foreign table (metrics_ingest_point()), so both paths store
 * the same points, queue the same sketches and raise the same errors.
 *
 * The hook takes over only a COPY FROM into metrics.ingest that names all
 * its columns (or none), with no WHERE clause, in text or CSV format,
 * into the foreign table as this extension made it (its four columns, no
 * trigger, no NOT NULL or check constraint).  Anything else, and every
 * COPY when the library is loaded on demand, takes PostgreSQL's path.
 * Before reading, it makes the checks DoCopy makes (the roles needed to
 * read a server file or run a program, INSERT privilege on the columns,
 * row-level security, read-only transactions, recovery and parallel
 * mode), and reports the row count to the caller as COPY does.  Its
 * handler is the last of the library's utility handlers
 * (OPSDATA_UTILITY_METRICS), so the others (audit among them) see the COPY
 * as they see any other; a COPY it reads itself does not reach the hooks
 * of the libraries loaded before pg_opsdata, which see every other
 * statement.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/ingest_copy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "commands/copyfrom_internal.h"
#include "commands/extension.h"
#include "commands/progress.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "pgstat.h"
#include "tcop/cmdtag.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/rls.h"

#include "core/opsdata.h"
#include "metrics/metrics.h"

/* Rows between two progress reports and two resets of the row context. */
#define INGEST_COPY_REPORT_ROWS 1024

static inline bool
ingest_digits(const char *s, int n, int *out)
{
	int v = 0;
	int i;

	for (i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/*
 * Convert a timestamp written "YYYY-MM-DD HH:MM:SS" (or with "T" between
 * date and time), optionally followed by up to six digits of fraction,
 * then by "Z", "+HH", "-HH", "+HH:MM" or "-HH:MM" and nothing else.
 * Returns false, leaving *result alone, for any other text, including
 * values timestamptz_in accepts in other ways (other layouts, time zone
 * names, no offset, leap seconds, 24:00:00, years before 1 or after 9999);
 * for the text it accepts, *result is what timestamptz_in gives, whatever
 * DateStyle and TimeZone are.
 */
bool
metrics_parse_timestamptz(const char *s, TimestampTz *result)
{
	int year, month, day, hour, minute, second;
	int64 fraction = 0;
	int offset = 0;
	const char *p;
	int days;
	int digits;

	/* Each test stops at the terminating zero byte. */
	if (!ingest_digits(s, 4, &year) || s[4] != '-' ||
		!ingest_digits(s + 5, 2, &month) || s[7] != '-' ||
		!ingest_digits(s + 8, 2, &day) || (s[10] != ' ' && s[10] != 'T') ||
		!ingest_digits(s + 11, 2, &hour) || s[13] != ':' ||
		!ingest_digits(s + 14, 2, &minute) || s[16] != ':' ||
		!ingest_digits(s + 17, 2, &second))
		return false;
	if (year < 1 || month < 1 || month > 12 || day < 1 || hour > 23 ||
		minute > 59 || second > 59)
		return false;
	days = day_tab[isleap(year)][month - 1];
	if (day > days)
		return false;

	p = s + 19;
	if (*p == '.')
	{
		p++;
		for (digits = 0; digits < 6 && *p >= '0' && *p <= '9'; digits++, p++)
			fraction = fraction * 10 + (*p - '0');
		if (digits == 0 || (*p >= '0' && *p <= '9'))
			return false;
		for (; digits < 6; digits++)
			fraction *= 10;
	}
	if (*p == 'Z')
		p++;
	else if (*p == '+' || *p == '-')
	{
		int oh;
		int om = 0;

		if (!ingest_digits(p + 1, 2, &oh) || oh > 14)
			return false;
		if (p[3] == ':')
		{
			if (!ingest_digits(p + 4, 2, &om) || om > 59)
				return false;
			offset = oh * SECS_PER_HOUR + om * SECS_PER_MINUTE;
			offset = *p == '-' ? -offset : offset;
			p += 6;
		}
		else
		{
			offset = oh * SECS_PER_HOUR;
			offset = *p == '-' ? -offset : offset;
			p += 3;
		}
	}
	else
		return false;
	if (*p != '\0')
		return false;

	*result = ((int64) (date2j(year, month, day) - POSTGRES_EPOCH_JDATE) *
			   USECS_PER_DAY) +
			  ((int64) ((hour * MINS_PER_HOUR + minute) * SECS_PER_MINUTE +
						second - offset)) *
				  USECS_PER_SEC +
			  fraction;
	return true;
}

/*
 * The foreign table as this extension made it: a member of the extension,
 * columns name text, tags text, ts timestamptz and value float8
 * (attribute numbers 1 to 4), no trigger and no constraint COPY would
 * check.
 */
static bool
ingest_copy_table_is_plain(Relation rel)
{
	TupleDesc desc = RelationGetDescr(rel);
	static const char *const names[4] = {"name", "tags", "ts", "value"};
	static const Oid types[4] = {TEXTOID, TEXTOID, TIMESTAMPTZOID, FLOAT8OID};
	int i;

	if (rel->rd_rel->relkind != RELKIND_FOREIGN_TABLE ||
		rel->trigdesc != NULL || desc->natts != 4 ||
		(desc->constr != NULL &&
		 (desc->constr->has_not_null || desc->constr->num_check > 0 ||
		  desc->constr->has_generated_stored)))
		return false;
	if (getExtensionOfObject(RelationRelationId, RelationGetRelid(rel)) !=
		get_extension_oid(OPSDATA_NAME, true))
		return false;
	for (i = 0; i < 4; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->atttypid != types[i] ||
			strcmp(NameStr(att->attname), names[i]) != 0)
			return false;
	}
	return true;
}

/*
 * Whether this COPY may be one ingest_copy_run() reads: from a client, file
 * or program into metrics.ingest, four columns or none, no WHERE, text or
 * CSV.  No lock is taken: the caller locks and checks the table again.
 */
static bool
ingest_copy_applies(CopyStmt *stmt, Oid *relid)
{
	Oid nsp;
	Oid ingest;
	ListCell *lc;

	if (!stmt->is_from || stmt->relation == NULL || stmt->query != NULL ||
		stmt->whereClause != NULL ||
		(stmt->attlist != NIL && list_length(stmt->attlist) != 4))
		return false;
	/* Options are checked by BeginCopyFrom; here only those it cannot take. */
	foreach (lc, stmt->options)
	{
		DefElem *def = lfirst_node(DefElem, lc);

		if (strcmp(def->defname, "format") == 0)
		{
			if (def->arg == NULL || !IsA(def->arg, String) ||
				(strcmp(strVal(def->arg), "text") != 0 &&
				 strcmp(strVal(def->arg), "csv") != 0))
				return false;
		}
		else if (strcmp(def->defname, "freeze") == 0 ||
				 strcmp(def->defname, "convert_selectively") == 0)
			return false;
	}
	nsp = get_namespace_oid("metrics", true);
	if (!OidIsValid(nsp))
		return false;
	ingest = get_relname_relid("ingest", nsp);
	if (!OidIsValid(ingest) ||
		RangeVarGetRelid(stmt->relation, NoLock, true) != ingest)
		return false;
	*relid = ingest;
	return true;
}

/*
 * The checks DoCopy makes before reading a COPY FROM into rel, in its
 * order; adds rel's range table entry to pstate.
 */
static void
ingest_copy_check(ParseState *pstate, CopyStmt *stmt, Relation rel,
				  List *attnums)
{
	ParseNamespaceItem *nsitem;
	RangeTblEntry *rte;
	ListCell *lc;

	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL,
										   false, false);
	rte = nsitem->p_rte;
	rte->requiredPerms = ACL_INSERT;
	foreach (lc, attnums)
		rte->insertedCols = bms_add_member(
			rte->insertedCols,
			lfirst_int(lc) - FirstLowInvalidHeapAttributeNumber);
	ExecCheckRTPerms(pstate->p_rtable, true);
	if (check_enable_rls(rte->relid, InvalidOid, false) == RLS_ENABLED)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("COPY FROM not supported with row-level security"),
				 errhint("Use INSERT statements instead.")));
	if (XactReadOnly && !rel->rd_islocaltemp)
		PreventCommandIfReadOnly("COPY FROM");
}

/*
 * Read the rows of the COPY and write their points.  Returns the number of
 * rows.  The caller set up the error context with cstate.
 */
static uint64
ingest_copy_rows(CopyFromState cstate, MetricsPointWriter *writer)
{
	TupleDesc desc = RelationGetDescr(cstate->rel);
	MemoryContext rowcxt =
		AllocSetContextCreate(CurrentMemoryContext, "pg_opsdata ingest rows",
							  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(rowcxt);
	int nattrs = list_length(cstate->attnumlist);
	int position[4]; /* field number of each column */
	char *field[4];
	char **raw;
	int nraw;
	uint64 processed = 0;
	ListCell *lc;
	int i = 0;

	foreach (lc, cstate->attnumlist)
		position[lfirst_int(lc) - 1] = i++;

	while (NextCopyFromRawFields(cstate, &raw, &nraw))
	{
		TimestampTz ts = 0;
		double value = 0.0;

		CHECK_FOR_INTERRUPTS();
		if (nraw > nattrs)
			ereport(ERROR, (errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
							errmsg("extra data after last expected column")));
		/* In the order of the fields, as COPY converts them. */
		foreach (lc, cstate->attnumlist)
		{
			int m = lfirst_int(lc) - 1;
			int fieldno = position[m];
			char *string;

			if (fieldno >= nraw)
				ereport(ERROR,
						(errcode(ERRCODE_BAD_COPY_FILE_FORMAT),
						 errmsg("missing data for column \"%s\"",
								NameStr(TupleDescAttr(desc, m)->attname))));
			string = raw[fieldno];
			if (cstate->opts.csv_mode)
			{
				if (string == NULL && cstate->opts.force_notnull_flags[m])
					string = cstate->opts.null_print;
				else if (string != NULL && cstate->opts.force_null_flags[m] &&
						 strcmp(string, cstate->opts.null_print) == 0)
					string = NULL;
			}
			field[m] = string;
			if (string == NULL || m < 2)
				continue;
			cstate->cur_attname = NameStr(TupleDescAttr(desc, m)->attname);
			cstate->cur_attval = string;
			if (m == 3)
				value = float8in_internal(string, NULL, "double precision",
										  string);
			else if (!metrics_parse_timestamptz(string, &ts))
				ts = DatumGetTimestampTz(InputFunctionCall(
					&cstate->in_functions[m], string, cstate->typioparams[m],
					TupleDescAttr(desc, m)->atttypmod));
			cstate->cur_attname = NULL;
			cstate->cur_attval = NULL;
		}

		metrics_ingest_point(writer, field[0], field[0] ? strlen(field[0]) : 0,
							 field[1], field[1] ? strlen(field[1]) : 0,
							 field[2] == NULL, ts, field[3] == NULL, value);
		if (++processed % INGEST_COPY_REPORT_ROWS == 0)
		{
			pgstat_progress_update_param(PROGRESS_COPY_TUPLES_PROCESSED,
										 processed);
			MemoryContextReset(rowcxt);
		}
	}
	pgstat_progress_update_param(PROGRESS_COPY_TUPLES_PROCESSED, processed);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(rowcxt);
	return processed;
}

/*
 * Run a COPY FROM into metrics.ingest if it is one this file reads.
 * Returns false, having done nothing the client can see, if it is not.
 */
static bool
ingest_copy_run(CopyStmt *stmt, const char *queryString,
				QueryEnvironment *queryEnv, uint64 *processed)
{
	ParseState *pstate;
	Relation rel;
	Oid relid;
	List *attnums;
	CopyFromState cstate;
	MetricsPointWriter *writer;
	ErrorContextCallback errcallback;

	if (!ingest_copy_applies(stmt, &relid))
		return false;

	/* As standard_ProcessUtility and DoCopy check, in their order. */
	PreventCommandIfParallelMode("COPY");
	PreventCommandDuringRecovery("COPY");
	if (stmt->filename != NULL)
	{
		if (stmt->is_program)
		{
			if (!has_privs_of_role(GetUserId(),
								   ROLE_PG_EXECUTE_SERVER_PROGRAM))
				ereport(
					ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg(
						 "must be superuser or have privileges of the pg_execute_server_program role to COPY to or from an external program"),
					 errhint(
						 "Anyone can COPY to stdout or from stdin. psql's \\copy command also works for anyone.")));
		}
		else if (!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
			ereport(
				ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg(
					 "must be superuser or have privileges of the pg_read_server_files role to COPY from a file"),
				 errhint(
					 "Anyone can COPY to stdout or from stdin. psql's \\copy command also works for anyone.")));
	}

	pstate = make_parsestate(NULL);
	pstate->p_sourcetext = queryString;
	pstate->p_queryEnv = queryEnv;
	rel = table_openrv(stmt->relation, RowExclusiveLock);
	attnums = CopyGetAttnums(RelationGetDescr(rel), rel, stmt->attlist);
	if (RelationGetRelid(rel) != relid || !ingest_copy_table_is_plain(rel) ||
		list_length(attnums) != 4)
	{
		/* Changed meanwhile, or not as made: COPY's own path. */
		table_close(rel, NoLock);
		free_parsestate(pstate);
		return false;
	}
	ingest_copy_check(pstate, stmt, rel, attnums);
	ereport(DEBUG1,
			(errmsg_internal(
				"COPY into metrics.ingest read without the executor")));

	cstate = BeginCopyFrom(pstate, rel, NULL, stmt->filename, stmt->is_program,
						   NULL, stmt->attlist, stmt->options);
	writer = metrics_writer_begin();

	errcallback.callback = CopyFromErrorCallback;
	errcallback.arg = (void *) cstate;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	*processed = ingest_copy_rows(cstate, writer);
	error_context_stack = errcallback.previous;

	metrics_writer_finish(writer);
	EndCopyFrom(cstate);
	table_close(rel, NoLock);
	free_parsestate(pstate);
	return true;
}

static void
metrics_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
					   bool readOnlyTree, ProcessUtilityContext context,
					   ParamListInfo params, QueryEnvironment *queryEnv,
					   DestReceiver *dest, QueryCompletion *qc)
{
	uint64 processed;

	if (IsA(pstmt->utilityStmt, CopyStmt) &&
		ingest_copy_run((CopyStmt *) pstmt->utilityStmt, queryString, queryEnv,
						&processed))
	{
		if (qc)
			SetQueryCompletion(qc, CMDTAG_COPY, processed);
		return;
	}
	opsdata_utility_next(pstmt, queryString, readOnlyTree, context, params,
						 queryEnv, dest, qc);
}

/*
 * Register the utility handler with the core (src/core/hooks.c), last of
 * the library's; from metrics_init() while preloading.
 */
void
metrics_ingest_copy_init(void)
{
	opsdata_register_utility(OPSDATA_UTILITY_METRICS, metrics_ProcessUtility);
}
