/*-------------------------------------------------------------------------
 *
 * port.h
 *		Include libpq/libpq-be.h (struct Port) without the GSSAPI headers.
 *
 * A server built with GSSAPI makes libpq-be.h include <gssapi/gssapi.h>,
 * which the server development package does not bring along.  The audit
 * area only reads plain fields of Port (database and user names, the
 * client address), and Port's layout does not depend on GSSAPI: its "gss"
 * member is a pointer either way.  Include this header before anything
 * else that includes libpq-be.h.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/audit/port.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef OPSDATA_AUDIT_PORT_H
#define OPSDATA_AUDIT_PORT_H

#ifdef ENABLE_GSS
#undef ENABLE_GSS
#include "libpq/libpq-be.h"
#define ENABLE_GSS 1
#else
#include "libpq/libpq-be.h"
#endif

#endif /* OPSDATA_AUDIT_PORT_H */
