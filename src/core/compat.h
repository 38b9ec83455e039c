/*-------------------------------------------------------------------------
 *
 * compat.h
 *		Everything that depends on the PostgreSQL major version.
 *
 * PostgreSQL 15 is the oldest release pg_opsdata supports: it brought
 * shmem_request_hook and MarkGUCPrefixReserved, which the core relies on.
 * Code elsewhere uses the names defined here instead of testing
 * PG_VERSION_NUM itself, so that supporting a new release means editing
 * this file only.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/core/compat.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_COMPAT_H
#define OPSDATA_COMPAT_H

#if PG_VERSION_NUM < 150000
#error "pg_opsdata requires PostgreSQL 15 or later"
#endif

/* Ownership checks became object_ownercheck() in PostgreSQL 16. */
#if PG_VERSION_NUM >= 160000
#define opsdata_class_ownercheck(relid, roleid)                               \
	object_ownercheck(RelationRelationId, (relid), (roleid))
#define opsdata_database_ownercheck(dboid, roleid)                            \
	object_ownercheck(DatabaseRelationId, (dboid), (roleid))
#define opsdata_extension_ownercheck(extoid, roleid)                          \
	object_ownercheck(ExtensionRelationId, (extoid), (roleid))
#else
#define opsdata_class_ownercheck(relid, roleid)                               \
	pg_class_ownercheck((relid), (roleid))
#define opsdata_database_ownercheck(dboid, roleid)                            \
	pg_database_ownercheck((dboid), (roleid))
#define opsdata_extension_ownercheck(extoid, roleid)                          \
	pg_extension_ownercheck((extoid), (roleid))
#endif

#endif /* OPSDATA_COMPAT_H */
