/*
 * tests/mongosim/msim_lock.c - the global lock and what hangs on it: user
 * write blocking (setUserWriteBlockMode), user index builds it aborts, and
 * the periodic no-op writer of an idle primary.
 *
 * As on mongod, every operation on data holds the global lock in a shared
 * mode (IS/IX) while it runs, and a multi-document transaction holds it
 * from its first statement until it commits or aborts. Enabling write
 * blocking takes the lock in exclusive mode: it waits for every holder
 * (open transactions included), and while it waits every new request for
 * the lock - reads too - queues behind it. A transaction's first statement
 * waits at most 5 ms (maxTransactionLockRequestTimeoutMillis) and then
 * fails with LockTimeout, labelled TransientTransactionError.
 */
#include "msim.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static __thread bool tls_glock_held;

static void
deadline_of(int64_t timeout_ms, struct timespec *ts)
{
    int64_t until = msim_now_ms() + timeout_ms;
    ts->tv_sec = until / 1000;
    ts->tv_nsec = (until % 1000) * 1000000;
}

bool
msim_glock_acquire_shared(int64_t timeout_ms)
{
    msim_server_t *s = msim_srv;
    struct timespec ts;
    bool ok = true;
    if (timeout_ms >= 0)
        deadline_of(timeout_ms, &ts);
    pthread_mutex_lock(&s->glock_mu);
    while (s->glock_x_waiting > 0 || s->glock_x_held) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&s->glock_cv, &s->glock_mu);
        } else if (pthread_cond_timedwait(&s->glock_cv, &s->glock_mu, &ts) == ETIMEDOUT) {
            ok = !(s->glock_x_waiting > 0 || s->glock_x_held);
            break;
        }
    }
    if (ok)
        s->glock_shared++;
    pthread_mutex_unlock(&s->glock_mu);
    return ok;
}

void
msim_glock_release_shared(void)
{
    msim_server_t *s = msim_srv;
    pthread_mutex_lock(&s->glock_mu);
    if (s->glock_shared > 0)
        s->glock_shared--;
    pthread_cond_broadcast(&s->glock_cv);
    pthread_mutex_unlock(&s->glock_mu);
}

/*
 * glock_acquire_exclusive waits for every shared holder (timeout_ms < 0:
 * forever); new shared requests queue meanwhile. False on timeout.
 */
static bool
glock_acquire_exclusive(int64_t timeout_ms)
{
    msim_server_t *s = msim_srv;
    struct timespec ts;
    bool ok = true;
    if (timeout_ms >= 0)
        deadline_of(timeout_ms, &ts);
    pthread_mutex_lock(&s->glock_mu);
    s->glock_x_waiting++;
    while (s->glock_shared > 0 || s->glock_x_held) {
        if (timeout_ms < 0) {
            pthread_cond_wait(&s->glock_cv, &s->glock_mu);
        } else if (pthread_cond_timedwait(&s->glock_cv, &s->glock_mu, &ts) == ETIMEDOUT) {
            ok = s->glock_shared == 0 && !s->glock_x_held;
            break;
        }
    }
    s->glock_x_waiting--;
    if (ok)
        s->glock_x_held = true;
    pthread_cond_broadcast(&s->glock_cv); /* queued requests may go on */
    pthread_mutex_unlock(&s->glock_mu);
    return ok;
}

static void
glock_release_exclusive(void)
{
    msim_server_t *s = msim_srv;
    pthread_mutex_lock(&s->glock_mu);
    s->glock_x_held = false;
    pthread_cond_broadcast(&s->glock_cv);
    pthread_mutex_unlock(&s->glock_mu);
}

void
msim_glock_enter(void)
{
    msim_glock_acquire_shared(-1);
    tls_glock_held = true;
}

void
msim_glock_leave(void)
{
    if (tls_glock_held) {
        tls_glock_held = false;
        msim_glock_release_shared();
    }
}

bool
msim_glock_yield(void)
{
    bool held = tls_glock_held;
    msim_glock_leave();
    return held;
}

void
msim_glock_resume(bool held)
{
    if (held)
        msim_glock_enter();
}

/* ------------------------------------------------------------------------
 * User index builds (held by the hangAfterStartingIndexBuild fail point)
 * ------------------------------------------------------------------------ */

bool
msim_index_build_begin(const char *db, mg_error_t *error)
{
    msim_server_t *s = msim_srv;
    bool internal =
        strcmp(db, "admin") == 0 || strcmp(db, "config") == 0 || strcmp(db, "local") == 0;
    if (!internal && atomic_load(&s->index_builds_blocked))
        return msim_fail(error, MSIM_E_USER_WRITES_BLOCKED, "User index builds blocked");
    if (internal || !atomic_load(&s->fp_hang_index_build))
        return true;
    /* an index build in progress: it ends when the fail point is turned
     * off, or fails when write blocking aborts it */
    pthread_mutex_lock(&s->glock_mu);
    {
        uint64_t gen = s->index_build_abort_gen;
        bool aborted = false;
        s->index_builds_active++;
        pthread_cond_broadcast(&s->glock_cv);
        int64_t until = s->wait_cap_ms >= 0 ? msim_now_ms() + s->wait_cap_ms : INT64_MAX;
        while (atomic_load(&s->fp_hang_index_build) && !atomic_load(&s->stopping) &&
               msim_now_ms() < until) {
            struct timespec ts;
            if (s->index_build_abort_gen != gen) {
                aborted = true;
                break;
            }
            deadline_of(100, &ts);
            pthread_cond_timedwait(&s->glock_cv, &s->glock_mu, &ts);
        }
        if (s->index_build_abort_gen != gen)
            aborted = true;
        s->index_builds_active--;
        pthread_cond_broadcast(&s->glock_cv);
        pthread_mutex_unlock(&s->glock_mu);
        if (aborted)
            return msim_fail(error, MSIM_E_INDEX_BUILD_ABORTED,
                             "Index build aborted: User write blocking");
    }
    return true;
}

/* abort_index_builds makes every hanging user index build fail, and waits for them. */
static void
abort_index_builds(void)
{
    msim_server_t *s = msim_srv;
    pthread_mutex_lock(&s->glock_mu);
    if (s->index_builds_active > 0) {
        MG_LOG(MG_LOG_INFO, "mongosim", "aborting %d user index build(s) for user write blocking",
               s->index_builds_active);
        s->index_build_abort_gen++;
        pthread_cond_broadcast(&s->glock_cv);
        while (s->index_builds_active > 0)
            pthread_cond_wait(&s->glock_cv, &s->glock_mu);
    }
    pthread_mutex_unlock(&s->glock_mu);
}

/* ------------------------------------------------------------------------
 * setUserWriteBlockMode
 * ------------------------------------------------------------------------ */

/* block_doc_entry is the oplog entry of the critical-section document in
 * config.user_writes_critical_sections that engages or releases the block. */
static void
block_doc_entry(bool engage)
{
    msim_oplog_entry_t *e = msim_oplog_entry_new(engage ? "insert" : "delete", "config",
                                                 "user_writes_critical_sections");
    bson_t key = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&key, "_id", "");
    e->doc_key = bson_copy(&key);
    bson_destroy(&key);
    msim_oplog_append(e);
}

bool
msim_cmd_set_user_write_block_mode(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_server_t *s = msim_srv;
    bson_iter_t it;
    bool on, changed = false;
    int64_t max_ms = -1;
    if (bson_iter_init_find(&it, ctx->cmd, "maxTimeMS") &&
        (!msim_iter_int64(&it, &max_ms) || max_ms < 0))
        return msim_fail(error, MSIM_E_BAD_VALUE, "maxTimeMS must be a non-negative number");
    if (max_ms == 0)
        max_ms = -1; /* 0 means no limit */
    if (s->wait_cap_ms >= 0 && (max_ms < 0 || max_ms > s->wait_cap_ms))
        max_ms = s->wait_cap_ms;
    if (!bson_iter_init_find(&it, ctx->cmd, "global"))
        return msim_fail(error, 40414,
                         "BSON field 'setUserWriteBlockMode.global' is missing but a required "
                         "field");
    if (!BSON_ITER_HOLDS_BOOL(&it))
        return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                         "BSON field 'setUserWriteBlockMode.global' is the wrong type '%s', "
                         "expected type 'bool'",
                         msim_type_name(bson_iter_type(&it)));
    on = bson_iter_bool(&it);
    pthread_mutex_lock(&s->block_mu);
    if (on) {
        /* no new user index builds, abort the running ones, then the lock
         * in exclusive mode: every write in progress and every open
         * transaction finishes first, and everything else queues */
        atomic_store(&s->index_builds_blocked, true);
        abort_index_builds();
        if (!glock_acquire_exclusive(max_ms)) {
            /* maxTimeMS ran out waiting for the lock (open transactions) */
            atomic_store(&s->index_builds_blocked, false);
            pthread_mutex_unlock(&s->block_mu);
            return msim_fail(error, MSIM_E_MAX_TIME_EXPIRED,
                             "operation exceeded time limit (waiting for the global lock in "
                             "exclusive mode)");
        }
        pthread_rwlock_wrlock(&s->lock);
        if (!atomic_load(&s->write_blocked)) {
            block_doc_entry(true);
            atomic_store(&s->write_blocked, true);
            changed = true;
        }
        pthread_rwlock_unlock(&s->lock);
        glock_release_exclusive();
        atomic_store(&s->index_builds_blocked, false);
    } else {
        msim_glock_acquire_shared(-1);
        pthread_rwlock_wrlock(&s->lock);
        if (atomic_load(&s->write_blocked)) {
            block_doc_entry(false);
            atomic_store(&s->write_blocked, false);
            changed = true;
        }
        pthread_rwlock_unlock(&s->lock);
        msim_glock_release_shared();
    }
    pthread_mutex_unlock(&s->block_mu);
    msim_oplog_publish();
    if (changed)
        MG_LOG_EVENT(MG_LOG_INFO, "mongosim", "mongosim.write_block",
                     MG_LOG_FIELDS(MG_LOG_BOOL("global", on)), "user write blocking %s",
                     on ? "enabled" : "disabled");
    return true;
}

/* ------------------------------------------------------------------------
 * The periodic no-op writer
 * ------------------------------------------------------------------------ */

void
msim_noop_writer_tick(int64_t now_ms)
{
    msim_server_t *s = msim_srv;
    bool wrote = false;
    if (now_ms - s->noop_last_ms < (int64_t)s->noop_interval_secs * 1000)
        return;
    s->noop_last_ms = now_ms;
    /* as mongod: skip this round when the lock is not free within 1 ms */
    if (!msim_glock_acquire_shared(1))
        return;
    pthread_rwlock_wrlock(&s->lock);
    if (s->oplog_next_seq - 1 == s->noop_last_seq) {
        /* nothing was written since the last check: write a no-op so the
         * oplog (and with it operationTime, lastWrite, resume tokens) moves */
        msim_oplog_entry_t *e = msim_oplog_entry_new("noop", "", NULL);
        msim_oplog_append(e);
        wrote = true;
    }
    s->noop_last_seq = s->oplog_next_seq - 1;
    pthread_rwlock_unlock(&s->lock);
    msim_glock_release_shared();
    if (wrote)
        msim_oplog_publish();
}
