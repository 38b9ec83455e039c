/*-------------------------------------------------------------------------
 *
 * metrics.h
 *		Declarations shared by the files of the metrics area.
 *
 * The area's SQL objects live in schema "metrics" (the SQL files of src/metrics).
 * Points reach metrics.points by three paths, all of which also queue
 * their contribution to the rollups in metrics.rollup_queue, in the same
 * transaction as the points:
 *
 *	 - metrics.record(), metrics.record_many() and the metrics.ingest foreign
 *	   table (COPY) hand points to a MetricsPointWriter (writer.c), which
 *	   writes them straight into the leaf partitions of metrics.points and
 *	   queues their sketches itself;
 *	   (COPY into metrics.ingest is read by ingest_copy.c when the library is
 *	   preloaded, by the foreign table's insert routine otherwise);
 *	 - an INSERT into metrics.points by the application fires its statement
 *	   trigger (capture.c), which queues what the statement added.
 *
 * Series ids are resolved through a per-backend cache (series.c).
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/metrics/metrics.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef METRICS_METRICS_H
#define METRICS_METRICS_H

#include "datatype/timestamp.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"

#include "metrics/sketch.h"

/* Contributions are queued per series and minute (UTC). */
#define METRICS_QUEUE_GRANULARITY USECS_PER_MINUTE

/*
 * Timestamps of points: from 0001-01-01 (inclusive) to 10000-01-01
 * (exclusive), UTC.  Rollups bucket any of them with any widths and
 * lateness far from the limits of timestamptz; record(), record_many(),
 * COPY into metrics.ingest and INSERT into metrics.points refuse others
 * (22008), and the rollup job skips any it finds.
 */
#define METRICS_TS_MIN INT64CONST(-63082281600000000)
#define METRICS_TS_END INT64CONST(252455616000000000)
#define METRICS_TS_IN_RANGE(ts)                                               \
	((ts) >= METRICS_TS_MIN && (ts) < METRICS_TS_END)

/* GUC: entries of the per-backend series cache. */
extern int metrics_series_cache_size;

/* series.c */
extern void metrics_series_init(void);
extern int64 metrics_series_resolve(text *name, Jsonb *tags);
extern int64 metrics_series_resolve_text(const char *name, int namelen,
										 const char *tags, int tagslen);
extern void metrics_check_name(const char *name, int len);

/*
 * queue.c: contributions to queue, per series and minute.  Values are kept
 * until METRICS_DELTAS_FOLD_VALUES wait, then folded into one stored sketch
 * per series and minute; the sketches go to the queue when there are
 * METRICS_DELTAS_FLUSH_ENTRIES of them, or at metrics_deltas_flush().
 */
#define METRICS_DELTAS_FOLD_VALUES	 65536
#define METRICS_DELTAS_FLUSH_ENTRIES 16384

typedef struct MetricsDeltaKey
{
	int64 series_id;
	TimestampTz minute;
} MetricsDeltaKey;

typedef struct MetricsDeltas MetricsDeltas;

extern MetricsDeltas *metrics_deltas_create(MemoryContext parent);
extern void metrics_deltas_add(MetricsDeltas *deltas, int64 series_id,
							   TimestampTz minute, double value);
extern void metrics_deltas_flush(MetricsDeltas *deltas);
extern TimestampTz metrics_minute_of(TimestampTz ts);
extern void metrics_check_ts(TimestampTz ts, int position);
extern Oid metrics_relid(const char *relname);
extern void metrics_check_writable(const char *what);

/* writer.c: bulk insertion into the leaf partitions of metrics.points */
typedef struct MetricsPointWriter MetricsPointWriter;

extern MetricsPointWriter *metrics_writer_begin(void);
extern void metrics_writer_add(MetricsPointWriter *writer, int64 series_id,
							   TimestampTz ts, double value);
extern uint64 metrics_writer_finish(MetricsPointWriter *writer);

/* ingest_fdw.c: one row of metrics.ingest, checked and written */
extern void metrics_ingest_point(MetricsPointWriter *writer, const char *name,
								 int namelen, const char *tags, int tagslen,
								 bool ts_null, TimestampTz ts, bool value_null,
								 double value);

/* ingest_copy.c: COPY into metrics.ingest without the executor */
extern void metrics_ingest_copy_init(void);
extern void metrics_citus_init(void);
extern bool metrics_parse_timestamptz(const char *str, TimestampTz *result);

#endif /* METRICS_METRICS_H */
