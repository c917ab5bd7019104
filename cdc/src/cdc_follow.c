/*
 * cdc/src/cdc_follow.c - the change-stream follower of `migrate sync` (and
 * of the cutover's drain):
 * one deployment-wide change stream (filtered to the included databases)
 * opened at T0 or at the committed checkpoint, events batched and coalesced
 * (cdc/), each batch applied in one transaction with the checkpoint. Runs
 * until the lag is under --max-lag (plain sync) or until stopped (--follow).
 *
 * Failure handling (docs/cdc.md): a resumable source error reopens the
 * stream from the last event read; ChangeStreamHistoryLost stops with the
 * command that re-syncs; a lost target connection reconnects with backoff
 * and resumes from the committed checkpoint, dropping the uncommitted batch.
 */
#include "cdc_follow.h"
#include "mg/state.h"

#include <libpq-fe.h>
#include <math.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void
free_colls(follow_t *f)
{
    for (size_t i = 0; i < f->ncolls; i++) {
        free(f->colls[i].db);
        free(f->colls[i].coll);
        free(f->colls[i].schema);
        free(f->colls[i].table);
    }
    free(f->colls);
    free(f->tables);
    f->colls = NULL;
    f->tables = NULL;
    f->ncolls = 0;
}

/*
 * new_batch sizes a batch: applied at --batch-events / --batch-size, with
 * room for TXN_MAX_DOCS more documents (and 512 MB) while a source
 * transaction is open; a larger transaction fails with an error.
 */
static mg_cdc_batch_t *
new_batch(follow_t *f)
{
    return mg_cdc_batch_new(f->tables, f->ncolls, f->fidelity, (size_t)f->s->batch_events,
                            (size_t)f->s->batch_bytes, (size_t)f->s->batch_events + TXN_MAX_DOCS,
                            (size_t)f->s->batch_bytes + 512u * 1024 * 1024);
}

/* load_state reads the collections, T0, fidelity and the checkpoint (through state/). */
static bool
load_state(follow_t *f, mg_error_t *error)
{
    mg_state_colls_t colls = {0};
    mg_state_migration_t mig;
    mg_state_checkpoint_t cp = {0};
    bool ok = false;

    free_colls(f);
    if (!mg_state_collections_load(f->st, false, &colls, error) ||
        !mg_state_migration_get(f->st, &mig, error) ||
        !mg_state_checkpoint_get(f->st, 0, &cp, error))
        goto done;
    f->colls = calloc(colls.n + 1, sizeof(follow_coll_t));
    f->tables = calloc(colls.n + 1, sizeof(mg_cdc_table_t));
    if (f->colls == NULL || f->tables == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }
    /* take the strings over from colls */
    for (size_t i = 0; i < colls.n; i++) {
        mg_state_coll_t *sc = &colls.items[i];
        follow_coll_t *c = &f->colls[f->ncolls++];
        c->db = sc->db;
        c->coll = sc->coll;
        c->schema = sc->schema;
        c->table = sc->table;
        sc->db = sc->coll = sc->schema = sc->table = NULL;
        c->key = sc->key;
        snprintf(c->status, sizeof(c->status), "%s", sc->status);
        f->tables[i] = (mg_cdc_table_t){c->db, c->coll, c->schema, c->table, c->key};
    }
    if (!mig.has_t0) {
        mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                     "no T0 recorded: the change stream needs a copy first (migrate sync)");
        goto done;
    }
    f->t0_t = mig.t0_t;
    f->t0_i = mig.t0_i;
    f->fidelity = mig.fidelity;
    if (f->committed != NULL)
        bson_destroy(f->committed);
    f->committed = NULL;
    if (cp.token != NULL && (f->committed = bson_new_from_data(cp.token, cp.token_len)) == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "the stored resume token is corrupt");
        goto done;
    }
    if (!mg_cdc__watch_dbs(f, error))
        goto done;
    f->has_committed_pos = cp.applied;
    f->committed_t = cp.t;
    f->committed_i = cp.i;
    ok = true;
done:
    mg_state_checkpoint_cleanup(&cp);
    mg_state_colls_cleanup(&colls);
    return ok;
}

/* find_table returns the index of db.coll, or -1. */
int
mg_cdc__find_table(follow_t *f, const char *db, const char *coll)
{
    for (size_t i = 0; i < f->ncolls; i++)
        if (strcmp(f->colls[i].db, db) == 0 && strcmp(f->colls[i].coll, coll) == 0 &&
            strcmp(f->colls[i].status, "replaced") != 0)
            return (int)i;
    return -1;
}

bool
mg_cdc__active(const follow_coll_t *c)
{
    return strcmp(c->status, "copied") == 0 || strcmp(c->status, "following") == 0;
}

static void
set_token(bson_t **slot, const bson_t *token)
{
    if (*slot != NULL)
        bson_destroy(*slot);
    *slot = token ? bson_copy(token) : NULL;
}

/* applier_main commits the batches handed over by submit(). */
static void *
applier_main(void *arg)
{
    follow_t *f = arg;
    applier_t *a = &f->ap;
    sigset_t all;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&a->lock);
    for (;;) {
        while (!a->busy && !a->quit)
            pthread_cond_wait(&a->cond, &a->lock);
        if (a->quit)
            break;
        mg_cdc_batch_t *b = a->batch;
        mg_cdc_position_t pos = {a->token, a->t, a->i, a->wall_ms};
        mg_cdc_guard_t guard = {.follower = f->name};
        mg_cdc_batch_stats_t st;
        mg_error_t e;
        pthread_mutex_unlock(&a->lock);

        double now = mg_now_s();
        mg_cdc_batch_stats(b, &st);
        bool ok = mg_cdc_batch_apply(b, a->st, &pos, &guard, &e);

        pthread_mutex_lock(&a->lock);
        if (ok) {
            set_token(&f->committed, a->token);
            f->has_committed_pos = true; /* the lag's probes read it (cdc_lease.c) */
            f->committed_t = a->t;
            f->committed_i = a->i;
            pthread_mutex_lock(&f->stats_lock);
            f->applied_events += (int64_t)st.events;
            double dt = now - f->last_apply;
            if (dt > 0) {
                double inst = (double)st.events / dt;
                f->rate = f->rate == 0 ? inst : 0.8 * f->rate + 0.2 * inst;
            }
            f->last_apply = now;
            pthread_mutex_unlock(&f->stats_lock);
            if (st.events > 0)
                MG_LOG_EVENT(MG_LOG_DEBUG, "cdc", "cdc.apply",
                             MG_LOG_FIELDS(MG_LOG_UINT("events", st.events),
                                           MG_LOG_UINT("upserts", st.upserts),
                                           MG_LOG_UINT("deletes", st.deletes),
                                           MG_LOG_UINT("ct_t", a->t), MG_LOG_UINT("ct_i", a->i)),
                             "applied %zu events (%zu documents)", st.events, st.entries);
        } else {
            a->failed = true;
            a->fenced = guard.fenced; /* the reader reads the stream again, reporting only */
            a->error = e;
        }
        a->busy = false;
        pthread_cond_broadcast(&a->cond);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* wait_idle waits until the applier has committed what it holds. */
bool
mg_cdc__wait_idle(follow_t *f, mg_error_t *error)
{
    applier_t *a = &f->ap;
    bool ok = true;
    double t0 = mg_now_s();

    pthread_mutex_lock(&a->lock);
    while (a->busy)
        pthread_cond_wait(&a->cond, &a->lock);
    if (a->failed) {
        a->failed = false;
        if (error != NULL)
            *error = a->error;
        ok = false;
    }
    pthread_mutex_unlock(&a->lock);
    f->t_wait += mg_now_s() - t0;
    return ok;
}

/*
 * submit hands the batch being filled, with the position of the last event
 * read, to the applier and continues with the other batch. Returns false
 * when the previous batch failed (error set).
 */
static bool
submit(follow_t *f, mg_error_t *error)
{
    applier_t *a = &f->ap;
    mg_cdc_batch_stats_t st;

    if (!mg_cdc__wait_idle(f, error))
        return false;
    if (f->last_read == NULL)
        return true;
    mg_cdc_batch_stats(f->batch, &st);
    pthread_mutex_lock(&a->lock);
    bool nothing = st.events == 0 && f->committed != NULL && bson_equal(f->committed, f->last_read);
    if (nothing) {
        pthread_mutex_unlock(&a->lock);
        return true;
    }
    set_token(&a->token, f->last_read);
    a->t = f->pos_t;
    a->i = f->pos_i;
    a->wall_ms = f->pos_wall_ms;
    a->batch = f->batch;
    f->batch = f->spare; /* committed (so reset) by the applier, or never used */
    f->spare = a->batch;
    a->busy = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    return true;
}

/* apply commits everything read so far and waits for it. */
bool
mg_cdc__apply(follow_t *f, mg_error_t *error)
{
    return submit(f, error) && mg_cdc__wait_idle(f, error);
}

static void
applier_stop(follow_t *f)
{
    applier_t *a = &f->ap;

    if (!a->started)
        return;
    pthread_mutex_lock(&a->lock);
    while (a->busy)
        pthread_cond_wait(&a->cond, &a->lock);
    a->quit = true;
    pthread_cond_broadcast(&a->cond);
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    a->started = false;
}

/* set_status records a collection's status and error (best effort: a failure is logged). */
void
mg_cdc__set_status(follow_t *f, size_t k, const char *status, const char *err)
{
    mg_error_t e;

    snprintf(f->colls[k].status, sizeof(f->colls[k].status), "%s", status);
    if (!mg_state_collection_set_status(f->st, f->colls[k].db, f->colls[k].coll, status, err, &e))
        mg_log_error(MG_LOG_WARNING, "cdc", &e);
}

void
mg_cdc__stop_collection(follow_t *f, size_t k, const char *why)
{
    MG_LOG_EVENT(
        MG_LOG_ERROR, "cdc", "cdc.collection_stopped",
        MG_LOG_FIELDS(MG_LOG_STR("db", f->colls[k].db), MG_LOG_STR("collection", f->colls[k].coll)),
        "collection %s.%s stopped: %s", f->colls[k].db, f->colls[k].coll, why);
    mg_cdc__set_status(f, k, "failed", why);
}

static void
http_handler(void *userdata, const char *path, const mg_http_request_t *req, mg_http_reply_t *reply)
{
    follow_t *f = userdata;
    mg_error_t e;

    pthread_mutex_lock(&f->stats_lock);
    int64_t events = f->applied_events;
    double rate = f->rate, lag = f->lag_s;
    pthread_mutex_unlock(&f->stats_lock);
    (void)req;
    char lagtext[32];
    if (lag >= 0)
        snprintf(lagtext, sizeof(lagtext), "%.3f", lag);
    if (strcmp(path, "/metrics") == 0) {
        reply->status = 200;
        reply->content_type = "text/plain; version=0.0.4";
        mg_buf_printf(&reply->body, &e,
                      "# HELP migrate_cdc_applied_events_total change events applied\n"
                      "# TYPE migrate_cdc_applied_events_total counter\n"
                      "migrate_cdc_applied_events_total %lld\n"
                      "# HELP migrate_cdc_events_per_second smoothed apply rate\n"
                      "# TYPE migrate_cdc_events_per_second gauge\n"
                      "migrate_cdc_events_per_second %.1f\n"
                      "# HELP migrate_cdc_lag_seconds seconds behind the source's latest write "
                      "(NaN: not known yet)\n"
                      "# TYPE migrate_cdc_lag_seconds gauge\n"
                      "migrate_cdc_lag_seconds %s\n",
                      (long long)events, rate, lag >= 0 ? lagtext : "NaN");
    } else if (strcmp(path, "/progress") == 0) {
        reply->status = 200;
        reply->content_type = "application/json";
        mg_buf_printf(&reply->body, &e,
                      "{\"phase\":\"follow\",\"applied_events\":%lld,\"events_per_s\":%.1f,"
                      "\"lag_s\":%s}\n",
                      (long long)events, rate, lag >= 0 ? lagtext : "null");
    } else {
        reply->status = 404;
        reply->content_type = "text/plain";
        mg_buf_append_str(&reply->body, "not found\n", &e);
    }
}

/* save_rate writes the smoothed rate for `migrate status` (best effort). */
static void
save_rate(follow_t *f)
{
    mg_error_t e;

    if (!mg_state_checkpoint_set_rate(f->st, f->rate, &e))
        mg_log_error(MG_LOG_DEBUG, "cdc", &e);
}

/*
 * connect_both connects the reader's and the applier's connections; after a
 * lost target (writable) the applier's must reach a node that takes writes.
 */
static bool
connect_both(follow_t *f, bool writable, mg_error_t *error)
{
    if (f->pg == NULL && (f->pg = mg_pg_connect(f->s->target, error)) == NULL)
        return false;
    if (f->ap.pg == NULL && (f->ap.pg = mg_pg_connect(f->s->target, error)) == NULL)
        return false;
    mg_state_set_conn(f->st, f->pg);
    mg_state_set_conn(f->ap.st, f->ap.pg);
    return !writable || mg_pg_writable(f->ap.pg, error);
}

/*
 * reconnect_target waits for the target to come back (a restart, a failover
 * behind HAProxy) through the one reconnect loop (mg_pg_reconnect: backoff,
 * writable node), reloads the committed state and reopens the stream from
 * it. The uncommitted batch is dropped: its events are read again.
 */
static bool
reconnect_target(follow_t *f, mg_error_t *error)
{
    double started = mg_now_s();
    char why[MG_ERROR_MESSAGE_SIZE];

    snprintf(why, sizeof(why), "%s", error->message);
    mg_cdc__wait_idle(f, NULL); /* the applier's failure, if any, is this one */
    mg_cdc_batch_reset(f->batch);
    for (;;) {
        double left = MG_PG_RECONNECT_BUDGET_S - (mg_now_s() - started);
        if (f->ap.pg != NULL)
            PQfinish(f->ap.pg);
        f->ap.pg = NULL;
        if (left <= 0 ||
            !mg_pg_reconnect(&f->pg, f->s->target, NULL, "cdc", why, left, f->s->stop, 2, error))
            return false;
        if (connect_both(f, true, error) && load_state(f, error))
            break;
        snprintf(why, sizeof(why), "%s", error->message); /* lost again at once: go on waiting */
    }
    /* the lease's lock went with the old session: take it again, unless another took over */
    if (f->claimed && !mg_cdc__lease_claim(f, error))
        return false;
    /* the tables were reloaded: the batches must point at the new ones */
    mg_cdc_batch_destroy(f->batch);
    mg_cdc_batch_destroy(f->spare);
    f->batch = new_batch(f);
    f->spare = new_batch(f);
    if (f->batch == NULL || f->spare == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    set_token(&f->last_read, f->committed);
    if (!mg_cdc__open_stream(f, f->committed, error))
        return false;
    MG_LOG(MG_LOG_NOTICE, "cdc", "resuming from the committed checkpoint");
    return true;
}

static bool
pg_lost(follow_t *f, const mg_error_t *error)
{
    return mg_pg_lost(f->pg, error) || mg_pg_lost(f->ap.pg, NULL);
}

/*
 * history_lost explains ChangeStreamHistoryLost: every collection missed
 * changes and must be copied again; the checkpoint records when it happened
 * so --resync can insist on all of them.
 */
static void
history_lost(follow_t *f, mg_error_t *error)
{
    mg_buf_t list;
    mg_error_t e2;

    mg_buf_init(&list, 64 * 1024);
    for (size_t i = 0; i < f->ncolls; i++)
        if (mg_cdc__active(&f->colls[i]))
            mg_buf_printf(&list, &e2, "%s%s.%s", list.len ? " " : "", f->colls[i].db,
                          f->colls[i].coll);
    mg_error_set(error, MG_ERROR_DOMAIN_MONGO, ERR_HISTORY_LOST,
                 "the change stream cannot resume: the source's oplog no longer holds the "
                 "checkpoint (ChangeStreamHistoryLost). These collections missed changes and "
                 "must be copied again: %s. Run: migrate sync --resync '*'",
                 list.data ? list.data : "");
    mg_buf_cleanup(&list);
    if (!mg_state_checkpoint_history_lost(f->st, &e2))
        mg_log_error(MG_LOG_WARNING, "cdc", &e2);
}

/* ---- the engine ---- */

mg_cdc_follow_t *
mg_cdc_follow_new(const mg_cdc_follow_settings_t *s, mg_error_t *error)
{
    follow_t *f = calloc(1, sizeof(*f));

    if (f == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        return NULL;
    }
    f->s = s;
    pthread_mutex_init(&f->stats_lock, NULL);
    mg_cdc__split_init(&f->frags);
    pthread_mutex_init(&f->ap.lock, NULL);
    pthread_cond_init(&f->ap.cond, NULL);
    f->st = mg_state_new(NULL, s->state_schema, error);
    f->ap.st = f->st != NULL ? mg_state_new(NULL, s->state_schema, error) : NULL;
    if (f->ap.st == NULL || !connect_both(f, false, error) || !load_state(f, error))
        goto fail;
    f->batch = new_batch(f);
    f->spare = new_batch(f);
    if (f->batch == NULL || f->spare == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto fail;
    }
    f->mongo = mg_mongo_client_new(s->source_uri, "migrate-cdc", 0, error);
    if (f->mongo == NULL)
        goto fail;
    return f;
fail:
    mg_cdc_follow_destroy(f);
    return NULL;
}

/* follow_start starts the applier, opens the stream and the metrics endpoint. */
static int
follow_start(follow_t *f, mg_error_t *error)
{
    if (pthread_create(&f->ap.thread, NULL, applier_main, f) != 0) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                     "could not start the applier thread");
        return MG_EXIT_FAILURE;
    }
    f->ap.started = true;
    mg_cdc__lag_init(&f->lag);
    if (!mg_cdc__lease_claim(f, error) || !mg_cdc__fence_check(f, &f->fence_seen, error))
        return mg_cdc__exit_code(error);
    if (!mg_cdc__stream_probe(f, error))
        return MG_EXIT_SOURCE;
    if (!mg_cdc__open_stream(f, f->committed, error)) {
        if (error->domain == MG_ERROR_DOMAIN_MONGO && error->code == ERR_HISTORY_LOST) {
            history_lost(f, error);
            return MG_EXIT_SOURCE;
        }
        return MG_EXIT_FAILURE;
    }
    set_token(&f->last_read, f->committed);
    if (f->s->metrics_port > 0) {
        f->http =
            mg_http_server_new("127.0.0.1", (uint16_t)f->s->metrics_port, http_handler, f, error);
        if (f->http == NULL)
            return MG_EXIT_FAILURE;
    }
    MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.start",
                 MG_LOG_FIELDS(MG_LOG_BOOL("resuming", f->committed != NULL),
                               MG_LOG_UINT("t0_ts", f->t0_t), MG_LOG_BOOL("follow", f->s->follow)),
                 "following the change stream from %s",
                 f->committed != NULL ? "the committed checkpoint" : "T0");
    f->last_apply = f->batch_started = f->t_started = mg_now_s();
    return MG_EXIT_OK;
}

/*
 * Outcomes of one turn of the run loop: go on, stop with exit code 0,
 * fail (exit code from the error), stop with *rc (history lost), or (from
 * submit_or_reconnect) the target came back and the stream reopened.
 */
typedef enum { TURN_ON, TURN_DONE, TURN_FAILED, TURN_RC, TURN_RECONNECTED, TURN_FENCED } turn_t;

/* submit_or_reconnect submits (wait: and commits) the batch; a lost target is waited out. */
static turn_t
submit_or_reconnect(follow_t *f, bool wait, mg_error_t *error)
{
    if (wait ? mg_cdc__apply(f, error) : submit(f, error))
        return TURN_ON;
    if (f->ap.fenced) /* the cutover flipped: read again from the checkpoint, reporting only */
        return mg_cdc__fence_enter(f, error) ? TURN_RECONNECTED : TURN_FAILED;
    if (pg_lost(f, error) && reconnect_target(f, error)) {
        f->have_prev = false;
        return TURN_RECONNECTED;
    }
    return TURN_FAILED;
}

/* on_event handles one change event read from the stream. */
static turn_t
on_event(follow_t *f, const bson_t *raw, mg_error_t *error)
{
    double t_add = mg_now_s();
    mg_cdc_event_t ev;
    int32_t frag, of;
    int k;

    f->source_fail_since = 0;
    if (mg_cdc__split_of(raw, &frag, &of)) {
        /* a fragment: the position moves only once the event is whole */
        int whole = mg_cdc__split_add(&f->frags, raw, &raw, error);
        if (whole < 0) {
            MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.source_error", NULL, 0, "%s", error->message);
            return mg_cdc__open_stream(f, f->last_read, error) ? TURN_ON : TURN_FAILED;
        }
        if (whole == 0)
            return TURN_ON;
    }
    if (!mg_cdc_event_decode_ex(raw, f->slim ? MG_CDC_DECODE_NO_DOCUMENT : 0, &ev, error))
        return TURN_FAILED;
    if (f->fence_seen) /* the event is read again, reporting only */
        return mg_cdc__fence_enter(f, error) ? TURN_ON : TURN_FAILED;
    if (f->fenced) {
        if (!mg_cdc__fence_event(f, &ev, error))
            return TURN_FAILED;
        set_token(&f->last_read, mongoc_change_stream_get_resume_token(f->stream));
        return TURN_ON;
    }
    /* a source transaction never straddles two batches */
    if (!(f->have_prev && mg_cdc_same_txn(&f->prev, &ev)) &&
        (mg_cdc_batch_full(f->batch) ||
         mg_now_s() - f->batch_started >= f->s->batch_delay_ms / 1e3)) {
        turn_t t = submit_or_reconnect(f, false, error);
        if (t != TURN_ON) /* reconnected: the event is read again from the checkpoint */
            return t == TURN_RECONNECTED ? TURN_ON : t;
        f->batch_started = mg_now_s();
    }
    k = (ev.op == MG_CDC_OP_DROP_DATABASE || ev.op == MG_CDC_OP_INVALIDATE)
            ? -1
            : mg_cdc__find_table(f, ev.db, ev.coll);
    switch (ev.op) {
    case MG_CDC_OP_INSERT:
    case MG_CDC_OP_UPDATE:
    case MG_CDC_OP_REPLACE:
    case MG_CDC_OP_DELETE:
        if (k >= 0 && mg_cdc__active(&f->colls[k]) &&
            !mg_cdc__on_data_event(f, (size_t)k, &ev, error))
            return TURN_FAILED;
        break;
    case MG_CDC_OP_DROP:
    case MG_CDC_OP_RENAME:
    case MG_CDC_OP_DROP_DATABASE:
        /* what came before is applied first, then the policy */
        if (!mg_cdc__apply(f, error) || !mg_cdc__on_ddl_event(f, &ev, error))
            return TURN_FAILED;
        break;
    case MG_CDC_OP_INVALIDATE:
        mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                     "the change stream was invalidated; run migrate sync again to resume after "
                     "it");
        mg_cdc__apply(f, error);
        return TURN_FAILED;
    default:
        break;
    }
    set_token(&f->last_read, mongoc_change_stream_get_resume_token(f->stream));
    f->pos_t = ev.ct_t;
    f->pos_i = ev.ct_i;
    f->pos_wall_ms = ev.wall_ms;
    if (f->slim || f->rewatch) {
        /* the oversize event is handled: back to full documents; or a followed rename
         * into a database not watched yet */
        f->slim = f->rewatch = false;
        if (!mg_cdc__open_stream(f, f->last_read, error))
            return TURN_FAILED;
    }
    f->prev = ev;
    f->have_prev = true;
    f->t_batch += mg_now_s() - t_add;
    return mg_cdc__lease_tick(f, error) ? TURN_ON : TURN_FAILED;
}

/*
 * on_stream_error handles a failed read: history lost stops (exit code
 * source), an oversize event reopens without documents, anything else is
 * retried from the last event read for MG_PG_RECONNECT_BUDGET_S.
 */
static turn_t
on_stream_error(follow_t *f, const bson_error_t *be, mg_error_t *error)
{
    double now = mg_now_s();

    if (be->code == ERR_HISTORY_LOST) {
        history_lost(f, error);
        return TURN_RC;
    }
    if ((be->code == ERR_TOO_LARGE || be->code == ERR_FIELD_TOO_LARGE) && !f->slim) {
        mg_cdc__too_large(f, be->code);
        return mg_cdc__open_stream(f, f->last_read, error) ? TURN_ON : TURN_FAILED;
    }
    if (f->source_fail_since == 0)
        f->source_fail_since = now;
    if (now - f->source_fail_since > RECONNECT_BUDGET_S) {
        mg_error_set_bson(error, be, "the change stream kept failing for %.0f s",
                          RECONNECT_BUDGET_S);
        return TURN_FAILED;
    }
    MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.source_error",
                 MG_LOG_FIELDS(MG_LOG_INT("err_code", be->code)),
                 "change stream error: %s; resuming from the last event read", be->message);
    usleep(500 * 1000);
    if (!mg_cdc__open_stream(f, f->last_read, error)) {
        if (error->domain == MG_ERROR_DOMAIN_MONGO && error->code == ERR_HISTORY_LOST) {
            history_lost(f, error);
            return TURN_RC;
        }
        MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.source_error", NULL, 0, "%s", error->message);
        mg_error_clear(error);
    }
    return TURN_ON;
}

/*
 * on_idle runs when a server batch ended: the post-batch resume token moves
 * the position forward, the batch is submitted (committed when not
 * following), progress is logged, and a plain sync stops once caught up.
 */
static turn_t
on_idle(follow_t *f, mg_error_t *error)
{
    const bson_t *pbrt = mongoc_change_stream_get_resume_token(f->stream);
    double now;
    turn_t t;

    f->source_fail_since = 0;
    if (f->fenced) { /* everything the source had is reported */
        mg_cdc__fence_finish(f, error);
        return TURN_FENCED;
    }
    if (f->fence_seen)
        return mg_cdc__fence_enter(f, error) ? TURN_ON : TURN_FAILED;
    /* never a position inside an event that was split: its fragments are read again */
    if (pbrt != NULL && f->frags.next == 0 &&
        (f->last_read == NULL || !bson_equal(pbrt, f->last_read))) {
        uint32_t ts, inc;
        set_token(&f->last_read, pbrt);
        if (mg_cdc_token_time(pbrt, &ts, &inc) &&
            (ts > f->pos_t || (ts == f->pos_t && inc >= f->pos_i))) {
            f->pos_t = ts;
            f->pos_i = inc;
            f->pos_wall_ms = 0;
        }
    }
    t = submit_or_reconnect(f, !f->s->follow, error);
    if (t != TURN_ON)
        return t == TURN_RECONNECTED ? TURN_ON : t;
    f->batch_started = mg_now_s();
    f->have_prev = false;
    /* the lag: the commit above may have reached the last probe; the next one is read
     * before the next getMore, whose post-batch resume token is then at or past it */
    if (!mg_cdc__lease_tick(f, error))
        return TURN_FAILED;
    now = mg_now_s();
    if (now - f->last_log >= 5.0) {
        MG_LOG_EVENT(
            MG_LOG_INFO, "cdc", "cdc.progress",
            MG_LOG_FIELDS(MG_LOG_INT("applied_events", f->applied_events),
                          MG_LOG_DOUBLE("events_per_s", f->rate), MG_LOG_DOUBLE("lag_s", f->lag_s)),
            "following: %lld events applied, lag %.1f s", (long long)f->applied_events, f->lag_s);
        f->last_log = now;
    }
    if (now - f->last_rate_save >= 2.0) {
        save_rate(f);
        f->last_rate_save = now;
    }
    if (!f->s->follow && f->committed != NULL && f->lag_s >= 0 &&
        f->lag_s * 1000.0 <= (double)f->s->max_lag_ms) {
        MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.caught_up",
                     MG_LOG_FIELDS(MG_LOG_DOUBLE("lag_s", f->lag_s),
                                   MG_LOG_INT("applied_events", f->applied_events)),
                     "caught up: lag %.1f s", f->lag_s);
        return TURN_DONE;
    }
    return TURN_ON;
}

/* log_stats logs where the reader's time went. */
static void
log_stats(const follow_t *f)
{
    double total = mg_now_s() - f->t_started;

    MG_LOG_EVENT(MG_LOG_INFO, "cdc", "cdc.stats",
                 MG_LOG_FIELDS(MG_LOG_INT("applied_events", f->applied_events),
                               MG_LOG_DOUBLE("seconds", total),
                               MG_LOG_DOUBLE("source_s", f->t_source),
                               MG_LOG_DOUBLE("batch_s", f->t_batch),
                               MG_LOG_DOUBLE("wait_apply_s", f->t_wait)),
                 "change stream: %lld events in %.1f s; reader waited %.1f s on the source, %.1f s "
                 "on the applier, spent %.1f s building batches",
                 (long long)f->applied_events, total, f->t_source, f->t_wait, f->t_batch);
}

int
mg_cdc__exit_code(const mg_error_t *error)
{
    int rc = mg_exit_code_for_error(error);

    if (rc == MG_EXIT_OK)
        rc = MG_EXIT_FAILURE;
    if (error->domain == MG_ERROR_DOMAIN_CORE && error->code == MG_ERROR_CODE_INVALID_ARGUMENT &&
        strstr(error->message, "invariant") != NULL)
        rc = MG_EXIT_INTERNAL;
    return rc;
}

int
mg_cdc_follow_run(mg_cdc_follow_t *f, mg_error_t *error)
{
    turn_t t = TURN_ON;
    int rc = follow_start(f, error);

    while (rc == MG_EXIT_OK && t == TURN_ON) {
        const bson_t *raw, *err_doc;
        bson_error_t be;
        double t_next;
        bool got;

        if (atomic_load(f->s->stop) > 0) {
            /* finish the batch, commit, stop */
            t = submit_or_reconnect(f, true, error) == TURN_FAILED ? TURN_FAILED : TURN_DONE;
            break;
        }
        t_next = mg_now_s();
        got = mongoc_change_stream_next(f->stream, &raw);
        f->t_source += mg_now_s() - t_next;
        if (got)
            t = on_event(f, raw, error);
        else if (mongoc_change_stream_error_document(f->stream, &be, &err_doc))
            t = on_stream_error(f, &be, error);
        else
            t = on_idle(f, error);
    }
    if (rc == MG_EXIT_OK)
        rc = t == TURN_DONE     ? MG_EXIT_OK
             : t == TURN_RC     ? MG_EXIT_SOURCE
             : t == TURN_FENCED ? MG_EXIT_STATE
                                : mg_cdc__exit_code(error);
    else if (rc != MG_EXIT_SOURCE)
        rc = mg_cdc__exit_code(error);
    if (rc == MG_EXIT_OK)
        save_rate(f);
    applier_stop(f);
    mg_cdc__lease_release(f, rc == MG_EXIT_OK ? (f->s->follow ? "stopped" : "caught up")
                                              : error->message);
    if (f->t_started > 0)
        log_stats(f);
    return rc;
}

void
mg_cdc_follow_stats(mg_cdc_follow_t *f, mg_cdc_follow_stats_t *stats)
{
    pthread_mutex_lock(&f->stats_lock);
    stats->applied_events = f->applied_events;
    stats->events_per_s = f->rate;
    stats->lag_s = f->lag_s;
    pthread_mutex_unlock(&f->stats_lock);
}

void
mg_cdc_follow_destroy(mg_cdc_follow_t *f)
{
    if (f == NULL)
        return;
    applier_stop(f);
    mg_http_server_destroy(f->http);
    if (f->stream != NULL)
        mongoc_change_stream_destroy(f->stream);
    if (f->mongo != NULL)
        mongoc_client_destroy(f->mongo);
    mg_cdc_batch_destroy(f->batch);
    mg_cdc_batch_destroy(f->spare);
    if (f->ap.token != NULL)
        bson_destroy(f->ap.token);
    if (f->ap.pg != NULL)
        PQfinish(f->ap.pg);
    mg_state_destroy(f->ap.st);
    if (f->committed != NULL)
        bson_destroy(f->committed);
    if (f->last_read != NULL)
        bson_destroy(f->last_read);
    free_colls(f);
    if (f->pg != NULL)
        PQfinish(f->pg);
    mg_state_destroy(f->st);
    pthread_mutex_destroy(&f->ap.lock);
    pthread_cond_destroy(&f->ap.cond);
    pthread_mutex_destroy(&f->stats_lock);
    mg_cdc__split_cleanup(&f->frags);
    for (size_t i = 0; i < f->ndbs; i++)
        free(f->dbs[i]);
    free(f->dbs);
    free(f);
}
