/*-------------------------------------------------------------------------
 *
 * server.c
 *		Which server wrote an audit entry.
 *
 * Every entry of audit.entries carries, in server_id, the system
 * identifier of the cluster whose server wrote it: the number initdb chose,
 * kept in pg_control, the same for a primary and its streaming standbys
 * (so a trail goes on under the same identifier after a failover), and
 * different for every other cluster.  The writer (writer.c) fills it in
 * for the entries it writes; the column's default, audit.server_id(),
 * fills it in for rows inserted otherwise.  Entries replicated by logical
 * replication from another server keep that server's identifier, so a
 * central database that receives the trails of several servers tells them
 * apart, and their entry_ids, which each server numbers on its own, never
 * collide: the primary key is (entry_id, ts, server_id).
 *
 * Nothing here takes a lock or reads a table: the identifier is read from
 * the copy of pg_control in shared memory.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/server.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "fmgr.h"

#include "audit/audit.h"

PG_FUNCTION_INFO_V1(audit_server_id);

/*
 * audit.server_id(): this server's system identifier, as the bigint
 * pg_control_system() shows.
 */
Datum
audit_server_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) GetSystemIdentifier());
}
