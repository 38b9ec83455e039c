/*-------------------------------------------------------------------------
 *
 * shared.c
 *		The learning area's shared state, its GUC, and the commit-time
 *		signals one backend sends the others.
 *
 * Two kinds of news travel between backends, both published only once the
 * transaction that caused them is visible to new snapshots (from the
 * XACT_EVENT_COMMIT callback, which runs after ProcArrayEndTransaction):
 *
 *	- thresholds changed: a committed change to learning.thresholds or to
 *	  opsdata.config bumps threshold_generation, and every backend drops its
 *	  cached thresholds and settings when it sees a new generation.  A
 *	  backend reads the generation before it reads the table, so a value it
 *	  caches under a generation is at least as new as that generation.
 *
 *	- candidates became available at some priority (offered, released,
 *	  labelled but not yet closed, or a claim rolled back): the highest such
 *	  priority of the transaction is pushed into a small ring of events.  A
 *	  claimer that remembers where its previous claim stopped rescans the
 *	  queue from the top when an event newer than its cursor is at or above
 *	  the cursor's priority, or when it has missed more events than the ring
 *	  holds.
 *
 * Without shared_preload_libraries there is no shared state: thresholds
 * are not cached, and claimers rescan by time alone
 * (pg_opsdata.learning_claim_rescan_interval).
 *
 * Locking: threshold_generation is an atomic; the ring and its counter are
 * protected by a spinlock held for a few instructions.
 *
 * Copyright (c) 2026, pg_opsdata developers
 *
 * IDENTIFICATION
 *		src/learning/shared.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>

#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/guc.h"

#include "core/opsdata.h"
#include "learning/learning.h"

#define LEARNING_EVENTS 64

typedef struct LearningShared
{
	pg_atomic_uint64 threshold_generation;
	slock_t mutex;
	uint64 candidates_generation; /* events published so far */
	double events
		[LEARNING_EVENTS]; /* priority of event g at g % LEARNING_EVENTS */
} LearningShared;

static LearningShared *learning_shared = NULL;

#define LEARNING_RESCAN_DEFAULT 10000

int learning_claim_rescan_interval = LEARNING_RESCAN_DEFAULT;

/*
 * pg_opsdata.claim_rescan_interval, the name of 0.1, kept for 0.2 as a
 * deprecated alias: -1 while not set; its value counts while the new name
 * keeps its default.
 */
static int learning_claim_rescan_interval_old = -1;

/* What the current transaction will publish when it ends. */
static bool xact_thresholds_touched = false;
static bool xact_available = false;
static double xact_available_max = 0;
static bool xact_locked = false;
static double xact_locked_max = 0;
static bool xact_callbacks_registered = false;

static Size learning_shmem_size(void);
static void learning_shmem_startup(void);
static void learning_xact_callback(XactEvent event, void *arg);
static void learning_subxact_callback(SubXactEvent event,
									  SubTransactionId mySubid,
									  SubTransactionId parentSubid, void *arg);

static const OpsdataShmemPart learning_shmem_part = {
	"pg_opsdata learning",
	learning_shmem_size,
	0,
	learning_shmem_startup,
};

/*
 * A value given to the deprecated name warns.  The server log hears it
 * once, from the postmaster, for a configuration file of a preloaded
 * library, not again from every backend that reloads it.
 */
static bool
learning_check_old_rescan(int *newval, void **extra, GucSource source)
{
	if (*newval == -1 || source == PGC_S_DEFAULT)
		return true;
	if (source == PGC_S_FILE && IsUnderPostmaster && opsdata_preloaded)
		return true;
	ereport(WARNING,
			(errcode(ERRCODE_WARNING_DEPRECATED_FEATURE),
			 errmsg("pg_opsdata.claim_rescan_interval is deprecated"),
			 errhint("Set pg_opsdata.learning_claim_rescan_interval instead; "
					 "the old name goes away in pg_opsdata 0.3.")));
	return true;
}

/*
 * The rescan interval in effect, in milliseconds: the new name's value,
 * or the deprecated name's while the new one keeps its default.
 */
int
learning_rescan_interval(void)
{
	if (learning_claim_rescan_interval_old >= 0 &&
		learning_claim_rescan_interval == LEARNING_RESCAN_DEFAULT)
		return learning_claim_rescan_interval_old;
	return learning_claim_rescan_interval;
}

/*
 * Called from _PG_init(): the GUC, the transaction callbacks, and (when
 * preloaded) the shared memory part.
 */
void
learning_init(void)
{
	DefineCustomIntVariable(
		"pg_opsdata.learning_claim_rescan_interval",
		"Longest time a claimer starts from where its previous claim stopped.",
		"After this time learning.claim() scans the queue from the highest "
		"priority again, which hands out expired leases above that point. "
		"0 rescans on every claim.",
		&learning_claim_rescan_interval, LEARNING_RESCAN_DEFAULT, 0,
		INT_MAX / 1000, PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomIntVariable(
		"pg_opsdata.claim_rescan_interval",
		"Deprecated name of pg_opsdata.learning_claim_rescan_interval.",
		"Used while pg_opsdata.learning_claim_rescan_interval keeps its "
		"default; -1 when not set.",
		&learning_claim_rescan_interval_old, -1, -1, INT_MAX / 1000,
		PGC_USERSET, GUC_UNIT_MS | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
		learning_check_old_rescan, NULL, NULL);

	if (!xact_callbacks_registered)
	{
		opsdata_register_xact(OPSDATA_XACT_LEARNING, learning_xact_callback,
							  learning_subxact_callback);
		xact_callbacks_registered = true;
	}

	if (opsdata_preloaded)
		opsdata_shmem_register(&learning_shmem_part);
}

static Size
learning_shmem_size(void)
{
	return MAXALIGN(sizeof(LearningShared));
}

static void
learning_shmem_startup(void)
{
	bool found;

	learning_shared =
		ShmemInitStruct("pg_opsdata learning", sizeof(LearningShared), &found);
	if (!found)
	{
		pg_atomic_init_u64(&learning_shared->threshold_generation, 1);
		SpinLockInit(&learning_shared->mutex);
		learning_shared->candidates_generation = 0;
		memset(learning_shared->events, 0, sizeof(learning_shared->events));
	}
}

/*
 * Current generation of the thresholds, or 0 when there is no shared
 * memory (then nothing may be cached).
 */
uint64
learning_threshold_generation(void)
{
	if (learning_shared == NULL)
		return 0;
	return pg_atomic_read_u64(&learning_shared->threshold_generation);
}

/*
 * The current transaction changed thresholds or settings: stop caching in
 * this backend until it ends, and bump the generation if it commits.
 */
void
learning_thresholds_touched(void)
{
	xact_thresholds_touched = true;
	learning_threshold_cache_reset();
}

bool
learning_thresholds_touched_in_xact(void)
{
	return xact_thresholds_touched;
}

/*
 * Generation of the candidate events, or 0 without shared memory.
 */
uint64
learning_candidates_generation(void)
{
	uint64 g;

	if (learning_shared == NULL)
		return 0;
	SpinLockAcquire(&learning_shared->mutex);
	g = learning_shared->candidates_generation;
	SpinLockRelease(&learning_shared->mutex);
	return g;
}

/*
 * Whether a candidate may have become available at or above a priority
 * since the given generation.  Without shared memory there is no news, and
 * the caller relies on time.
 */
bool
learning_candidates_raised_since(uint64 generation, double priority)
{
	bool raised = false;
	uint64 g;

	if (learning_shared == NULL)
		return false;
	SpinLockAcquire(&learning_shared->mutex);
	if (learning_shared->candidates_generation - generation > LEARNING_EVENTS)
		raised = true; /* missed some */
	else
	{
		for (g = generation; g < learning_shared->candidates_generation; g++)
		{
			if (learning_shared->events[g % LEARNING_EVENTS] >= priority)
			{
				raised = true;
				break;
			}
		}
	}
	SpinLockRelease(&learning_shared->mutex);
	return raised;
}

/*
 * A candidate becomes available at this priority if the transaction commits.
 */
void
learning_candidate_available(double priority)
{
	if (!xact_available || priority > xact_available_max)
		xact_available_max = priority;
	xact_available = true;
}

/*
 * This transaction leased a candidate at this priority; if it rolls back,
 * the candidate is available again.
 */
void
learning_candidate_locked(double priority)
{
	if (!xact_locked || priority > xact_locked_max)
		xact_locked_max = priority;
	xact_locked = true;
}

static void
learning_publish(double priority)
{
	if (learning_shared == NULL)
		return;
	SpinLockAcquire(&learning_shared->mutex);
	learning_shared
		->events[learning_shared->candidates_generation % LEARNING_EVENTS] =
		priority;
	learning_shared->candidates_generation++;
	SpinLockRelease(&learning_shared->mutex);
}

static void
learning_xact_reset(void)
{
	xact_thresholds_touched = false;
	xact_available = false;
	xact_locked = false;
}

static void
learning_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (xact_thresholds_touched)
			{
				if (learning_shared != NULL)
					pg_atomic_fetch_add_u64(
						&learning_shared->threshold_generation, 1);
				learning_threshold_cache_reset();
			}
			if (xact_available)
				learning_publish(xact_available_max);
			learning_xact_reset();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			if (xact_thresholds_touched)
				learning_threshold_cache_reset();
			if (xact_locked)
			{
				/* Leases rolled back: the candidates are free again. */
				learning_publish(xact_locked_max);
				learning_claim_cursor_reset();
			}
			learning_xact_reset();
			break;
		case XACT_EVENT_PREPARE:
			/* Other backends learn of it by time. */
			if (xact_thresholds_touched)
				learning_threshold_cache_reset();
			learning_xact_reset();
			break;
		default:
			break;
	}
}

static void
learning_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						  SubTransactionId parentSubid, void *arg)
{
	/*
	 * A rolled-back subtransaction may have leased candidates that are free
	 * again: announce them at top-level end whatever its outcome, and start
	 * the next claim of this backend from the top.
	 */
	if (event == SUBXACT_EVENT_ABORT_SUB && xact_locked)
	{
		learning_candidate_available(xact_locked_max);
		learning_claim_cursor_reset();
	}
}
