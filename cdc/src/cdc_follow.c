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
#include "cdc_internal.h"
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

#define ERR_HISTORY_LOST   286
#define ERR_TOO_LARGE      10334
#define RECONNECT_BUDGET_S MG_PG_RECONNECT_BUDGET_S
#define TXN_MAX_DOCS       100000

typedef struct {
    char *db, *coll, *schema, *table;
    mg_schema_key_type_t key;
    char status[32];
} follow_coll_t;

/*
 * The applier thread commits one batch while the reader fills the next, so
 * the source's and the target's round trips overlap instead of adding up.
 */
typedef struct {
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool busy; /* a batch is handed over and not yet committed */
    bool quit;
    mg_cdc_batch_t *batch;
    bson_t *token;
    uint32_t t, i;
    int64_t wall_ms;
    bool failed;
    mg_error_t error;
    PGconn *pg;     /* the applier's own connection */
    mg_state_t *st; /* the state on it */
} applier_t;

struct mg_cdc_follow {
    const mg_cdc_follow_settings_t *s;
    PGconn *pg;     /* the reader's connection: state and DDL policies */
    mg_state_t *st; /* the state on it */
    mongoc_client_t *mongo;
    mongoc_change_stream_t *stream;
    follow_coll_t *colls;
    size_t ncolls;
    mg_cdc_table_t *tables;
    mg_cdc_batch_t *batch; /* being filled by the reader */
    mg_cdc_batch_t *spare; /* the other one: empty, or with the applier */
    applier_t ap;
    mg_schema_fidelity_t fidelity;
    uint32_t t0_t, t0_i;
    bson_t *committed;     /* checkpoint token, NULL before the first apply */
    bson_t *last_read;     /* token after the last event read */
    uint32_t pos_t, pos_i; /* cluster time of last_read */
    int64_t pos_wall_ms;
    bool slim; /* reopen without fullDocument for one oversize event */
    /* stats */
    int64_t applied_events;
    double rate; /* events/s, smoothed */
    double lag_s;
    double last_apply;
    double batch_started;
    mg_http_server_t *http;
    pthread_mutex_t stats_lock;
    /* where the reader's time went */
    double t_source; /* in mongoc_change_stream_next */
    double t_batch;  /* decoding, rendering into the batch */
    double t_wait;   /* waiting for the applier */
    double t_started;
    /* the run loop */
    double last_log, last_rate_save, source_fail_since;
    mg_cdc_event_t prev; /* only its transaction identity is used */
    bool have_prev;
};

typedef struct mg_cdc_follow follow_t;

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
    ok = true;
done:
    mg_state_checkpoint_cleanup(&cp);
    mg_state_colls_cleanup(&colls);
    return ok;
}

/* find_table returns the index of db.coll, or -1. */
static int
find_table(follow_t *f, const char *db, const char *coll)
{
    for (size_t i = 0; i < f->ncolls; i++)
        if (strcmp(f->colls[i].db, db) == 0 && strcmp(f->colls[i].coll, coll) == 0)
            return (int)i;
    return -1;
}

static bool
active(const follow_coll_t *c)
{
    return strcmp(c->status, "copied") == 0 || strcmp(c->status, "following") == 0;
}

/* open_stream opens the change stream at token (or T0 when NULL). */
void
mg_cdc__stream_args(const mg_cdc_table_t *tables, size_t ntables, bool slim, const bson_t *token,
                    uint32_t t0_t, uint32_t t0_i, bson_t *pipeline, bson_t *opts)
{
    bson_t arr, stage, match, in, dbs;
    size_t ndb = 0;

    bson_init(pipeline);
    bson_init(opts);
    bson_append_array_begin(pipeline, "pipeline", -1, &arr);
    bson_append_document_begin(&arr, "0", 1, &stage);
    bson_append_document_begin(&stage, "$match", -1, &match);
    bson_append_document_begin(&match, "ns.db", -1, &in);
    bson_append_array_begin(&in, "$in", -1, &dbs);
    for (size_t i = 0; i < ntables; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(tables[j].db, tables[i].db) == 0;
        if (seen)
            continue;
        char key[16];
        snprintf(key, sizeof(key), "%zu", ndb++);
        bson_append_utf8(&dbs, key, -1, tables[i].db, -1);
    }
    bson_append_array_end(&in, &dbs);
    bson_append_document_end(&match, &in);
    bson_append_document_end(&stage, &match);
    bson_append_document_end(&arr, &stage);
    if (slim) {
        bson_t proj, p2;
        bson_append_document_begin(&arr, "1", 1, &proj);
        bson_append_document_begin(&proj, "$project", -1, &p2);
        BSON_APPEND_INT32(&p2, "fullDocument", 0);
        bson_append_document_end(&proj, &p2);
        bson_append_document_end(&arr, &proj);
    } else {
        BSON_APPEND_UTF8(opts, "fullDocument", "updateLookup");
    }
    bson_append_array_end(pipeline, &arr);
    BSON_APPEND_INT32(opts, "batchSize", 5000);
    BSON_APPEND_INT64(opts, "maxAwaitTimeMS", 500);
    if (token != NULL)
        BSON_APPEND_DOCUMENT(opts, "startAfter", token);
    else
        BSON_APPEND_TIMESTAMP(opts, "startAtOperationTime", t0_t, t0_i);
}

/* open_stream opens the change stream at token (or T0 when NULL). */
static bool
open_stream(follow_t *f, const bson_t *token, mg_error_t *error)
{
    bson_t pipeline, opts;
    const bson_t *err_doc;
    bson_error_t be;

    if (f->stream != NULL)
        mongoc_change_stream_destroy(f->stream);
    f->stream = NULL;
    mg_cdc__stream_args(f->tables, f->ncolls, f->slim, token, f->t0_t, f->t0_i, &pipeline, &opts);
    f->stream = mongoc_client_watch(f->mongo, &pipeline, &opts);
    bson_destroy(&pipeline);
    bson_destroy(&opts);
    if (mongoc_change_stream_error_document(f->stream, &be, &err_doc))
        return mg_error_set_bson(error, &be, "could not open the change stream");
    return true;
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
        mg_cdc_batch_stats_t st;
        mg_error_t e;
        pthread_mutex_unlock(&a->lock);

        double now = mg_now_s();
        mg_cdc_batch_stats(b, &st);
        bool ok = mg_cdc_batch_apply(b, a->st, &pos, &e);

        pthread_mutex_lock(&a->lock);
        if (ok) {
            set_token(&f->committed, a->token);
            pthread_mutex_lock(&f->stats_lock);
            f->applied_events += (int64_t)st.events;
            double dt = now - f->last_apply;
            if (dt > 0) {
                double inst = (double)st.events / dt;
                f->rate = f->rate == 0 ? inst : 0.8 * f->rate + 0.2 * inst;
            }
            f->lag_s = a->t > 0 ? (double)time(NULL) - (double)a->t : 0;
            if (f->lag_s < 0)
                f->lag_s = 0;
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
            a->error = e;
        }
        a->busy = false;
        pthread_cond_broadcast(&a->cond);
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* wait_idle waits until the applier has committed what it holds. */
static bool
wait_idle(follow_t *f, mg_error_t *error)
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

    if (!wait_idle(f, error))
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
static bool
apply(follow_t *f, mg_error_t *error)
{
    return submit(f, error) && wait_idle(f, error);
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
static void
set_status(follow_t *f, size_t k, const char *status, const char *err)
{
    mg_error_t e;

    snprintf(f->colls[k].status, sizeof(f->colls[k].status), "%s", status);
    if (!mg_state_collection_set_status(f->st, f->colls[k].db, f->colls[k].coll, status, err, &e))
        mg_log_error(MG_LOG_WARNING, "cdc", &e);
}

static void
stop_collection(follow_t *f, size_t k, const char *why)
{
    MG_LOG_EVENT(
        MG_LOG_ERROR, "cdc", "cdc.collection_stopped",
        MG_LOG_FIELDS(MG_LOG_STR("db", f->colls[k].db), MG_LOG_STR("collection", f->colls[k].coll)),
        "collection %s.%s stopped: %s", f->colls[k].db, f->colls[k].coll, why);
    set_status(f, k, "failed", why);
}

static void
record_invalid(follow_t *f, size_t k, const mg_cdc_event_t *ev, const char *reason)
{
    mg_error_t e;
    char shown[512];

    if (ev->has_id)
        mg_schema_id_describe(&ev->id, shown, sizeof(shown));
    else
        snprintf(shown, sizeof(shown), "?");
    if (!mg_state_invalid_doc_add(f->st, f->colls[k].db, f->colls[k].coll, 0, shown, reason, &e))
        mg_log_error(MG_LOG_WARNING, "cdc", &e);
    MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.invalid_doc",
                 MG_LOG_FIELDS(MG_LOG_STR("db", f->colls[k].db),
                               MG_LOG_STR("collection", f->colls[k].coll),
                               MG_LOG_STR("_id", shown)),
                 "skipped a change that cannot be written: %s", reason);
}

/* fetch_by_id reads the current document by _id (for an oversize event). */
static bool
fetch_by_id(follow_t *f, size_t k, const bson_iter_t *id, bson_t **doc, mg_error_t *error)
{
    mongoc_collection_t *c =
        mongoc_client_get_collection(f->mongo, f->colls[k].db, f->colls[k].coll);
    bson_t filter = BSON_INITIALIZER;
    mongoc_cursor_t *cur;
    const bson_t *d;
    bson_error_t be;
    bool ok = true;

    bson_append_iter(&filter, "_id", 3, id);
    cur = mongoc_collection_find_with_opts(c, &filter, NULL, NULL);
    *doc = NULL;
    if (mongoc_cursor_next(cur, &d))
        *doc = bson_copy(d);
    else if (mongoc_cursor_error(cur, &be))
        ok = mg_error_set_bson(error, &be, "could not read a document of \"%s.%s\" by _id",
                               f->colls[k].db, f->colls[k].coll);
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(c);
    bson_destroy(&filter);
    return ok;
}

/* on_data_event adds an insert/update/replace/delete to the batch. */
static bool
on_data_event(follow_t *f, size_t k, const mg_cdc_event_t *ev, mg_error_t *error)
{
    mg_error_t e;
    bool ok;
    bson_t *fetched = NULL;
    const bson_t *doc = ev->has_full_document ? &ev->full_document : NULL;

    if (f->slim && ev->op != MG_CDC_OP_DELETE) {
        /* the event was too large with its document: read the document now */
        if (!fetch_by_id(f, k, &ev->id, &fetched, error))
            return false;
        doc = fetched;
    }
    mg_error_clear(&e);
    if (ev->op == MG_CDC_OP_DELETE || doc == NULL) {
        /* an update whose document is gone: it was deleted since; a delete follows */
        ok = mg_cdc_batch_delete(f->batch, k, &ev->id, ev->ct_t, ev->ct_i, &e);
    } else {
        ok = mg_cdc_batch_upsert(f->batch, k, doc, ev->ct_t, ev->ct_i, &e);
    }
    if (fetched != NULL)
        bson_destroy(fetched);
    if (ok)
        return true;
    if (e.code == MG_ERROR_CODE_LIMIT && mg_cdc_batch_full(f->batch))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "%s", e.message);
    if (f->s->skip_invalid)
        record_invalid(f, k, ev, e.message);
    else
        stop_collection(f, k, e.message);
    return true;
}

/* follow_rename makes collection k follow its new name (--on-rename follow). */
static bool
follow_rename(follow_t *f, size_t k, const mg_cdc_event_t *ev, mg_error_t *error)
{
    follow_coll_t *c = &f->colls[k];
    char *db, *coll;

    if (!mg_state_collection_rename(f->st, c->db, c->coll, ev->to_db, ev->to_coll, error))
        return false;
    MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.rename",
                 MG_LOG_FIELDS(MG_LOG_STR("from", ev->coll), MG_LOG_STR("to", ev->to_coll)),
                 "collection %s.%s renamed to %s.%s: following it", ev->db, ev->coll, ev->to_db,
                 ev->to_coll);
    db = strdup(ev->to_db);
    coll = strdup(ev->to_coll);
    if (db == NULL || coll == NULL) {
        free(db);
        free(coll);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    free(c->db);
    free(c->coll);
    c->db = db;
    c->coll = coll;
    f->tables[k].db = c->db;
    f->tables[k].coll = c->coll;
    return true;
}

/* on_drop applies --on-drop to collection k, dropped on the source (alone or with its database). */
static bool
on_drop(follow_t *f, size_t k, mg_error_t *error)
{
    follow_coll_t *c = &f->colls[k];
    char why[1024];
    mg_buf_t sql;
    bool ok;

    switch (f->s->on_drop) {
    case MG_CDC_DROP_STOP:
        snprintf(why, sizeof(why),
                 "dropped on the source; the table \"%s\".\"%s\" is kept as it was. If the "
                 "collection was recreated, re-sync it: migrate sync --resync %s.%s; or choose a "
                 "policy with --on-drop truncate|keep",
                 c->schema, c->table, c->db, c->coll);
        stop_collection(f, k, why);
        return true;
    case MG_CDC_DROP_TRUNCATE:
        mg_buf_init(&sql, 4096);
        ok = mg_buf_append_str(&sql, "TRUNCATE ", error) &&
             mg_schema_quote_ident(c->schema, &sql, error) && mg_buf_append_str(&sql, ".", error) &&
             mg_schema_quote_ident(c->table, &sql, error) && mg_pg_exec(f->pg, sql.data, error);
        mg_buf_cleanup(&sql);
        if (!ok)
            return false;
        MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.drop",
                     MG_LOG_FIELDS(MG_LOG_STR("db", c->db), MG_LOG_STR("collection", c->coll)),
                     "collection %s.%s dropped on the source: table emptied, still followed", c->db,
                     c->coll);
        return true;
    case MG_CDC_DROP_KEEP:
        MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.drop",
                     MG_LOG_FIELDS(MG_LOG_STR("db", c->db), MG_LOG_STR("collection", c->coll)),
                     "collection %s.%s dropped on the source: table kept as it was, still "
                     "followed",
                     c->db, c->coll);
        return true;
    }
    return true;
}

/* on_ddl_event applies the documented policy for drop/rename/dropDatabase. */
static bool
on_ddl_event(follow_t *f, const mg_cdc_event_t *ev, mg_error_t *error)
{
    char why[1024];

    for (size_t k = 0; k < f->ncolls; k++) {
        follow_coll_t *c = &f->colls[k];
        bool hit = strcmp(c->db, ev->db) == 0 &&
                   (ev->op == MG_CDC_OP_DROP_DATABASE || strcmp(c->coll, ev->coll) == 0);
        if (!hit || !active(c))
            continue;
        if (ev->op == MG_CDC_OP_RENAME && f->s->on_rename == MG_CDC_RENAME_FOLLOW) {
            if (!follow_rename(f, k, ev, error))
                return false;
        } else if (ev->op == MG_CDC_OP_RENAME) {
            snprintf(why, sizeof(why),
                     "renamed to %s.%s on the source; the table \"%s\".\"%s\" is kept as it "
                     "was. Re-run with --on-rename follow to follow renames, or re-sync: "
                     "migrate sync --resync %s.%s",
                     ev->to_db, ev->to_coll, c->schema, c->table, c->db, c->coll);
            stop_collection(f, k, why);
        } else if (!on_drop(f, k, error)) {
            return false;
        }
    }
    return true;
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
                      "# HELP migrate_cdc_lag_seconds now minus the cluster time applied\n"
                      "# TYPE migrate_cdc_lag_seconds gauge\n"
                      "migrate_cdc_lag_seconds %.3f\n",
                      (long long)events, rate, lag);
    } else if (strcmp(path, "/progress") == 0) {
        reply->status = 200;
        reply->content_type = "application/json";
        mg_buf_printf(&reply->body, &e,
                      "{\"phase\":\"follow\",\"applied_events\":%lld,\"events_per_s\":%.1f,"
                      "\"lag_s\":%.3f}\n",
                      (long long)events, rate, lag);
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
    wait_idle(f, NULL); /* the applier's failure, if any, is this one */
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
    /* the tables were reloaded: the batches must point at the new ones */
    mg_cdc_batch_destroy(f->batch);
    mg_cdc_batch_destroy(f->spare);
    f->batch = new_batch(f);
    f->spare = new_batch(f);
    if (f->batch == NULL || f->spare == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    set_token(&f->last_read, f->committed);
    if (!open_stream(f, f->committed, error))
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
        if (active(&f->colls[i]))
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
    if (!open_stream(f, f->committed, error)) {
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
typedef enum { TURN_ON, TURN_DONE, TURN_FAILED, TURN_RC, TURN_RECONNECTED } turn_t;

/* submit_or_reconnect submits (wait: and commits) the batch; a lost target is waited out. */
static turn_t
submit_or_reconnect(follow_t *f, bool wait, mg_error_t *error)
{
    if (wait ? apply(f, error) : submit(f, error))
        return TURN_ON;
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
    int k;

    f->source_fail_since = 0;
    if (!mg_cdc_event_decode(raw, &ev, error))
        return TURN_FAILED;
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
            : find_table(f, ev.db, ev.coll);
    switch (ev.op) {
    case MG_CDC_OP_INSERT:
    case MG_CDC_OP_UPDATE:
    case MG_CDC_OP_REPLACE:
    case MG_CDC_OP_DELETE:
        if (k >= 0 && active(&f->colls[k]) && !on_data_event(f, (size_t)k, &ev, error))
            return TURN_FAILED;
        break;
    case MG_CDC_OP_DROP:
    case MG_CDC_OP_RENAME:
    case MG_CDC_OP_DROP_DATABASE:
        /* what came before is applied first, then the policy */
        if (!apply(f, error) || !on_ddl_event(f, &ev, error))
            return TURN_FAILED;
        break;
    case MG_CDC_OP_INVALIDATE:
        mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                     "the change stream was invalidated; run migrate sync again to resume after "
                     "it");
        apply(f, error);
        return TURN_FAILED;
    default:
        break;
    }
    set_token(&f->last_read, mongoc_change_stream_get_resume_token(f->stream));
    f->pos_t = ev.ct_t;
    f->pos_i = ev.ct_i;
    f->pos_wall_ms = ev.wall_ms;
    if (f->slim) {
        /* the oversize event is handled: back to full documents */
        f->slim = false;
        if (!open_stream(f, f->last_read, error))
            return TURN_FAILED;
    }
    f->prev = ev;
    f->have_prev = true;
    f->t_batch += mg_now_s() - t_add;
    return TURN_ON;
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
    if (be->code == ERR_TOO_LARGE && !f->slim) {
        MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.too_large", NULL, 0,
                     "a change event is over 16 MB: reading its document by _id");
        f->slim = true;
        return open_stream(f, f->last_read, error) ? TURN_ON : TURN_FAILED;
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
    if (!open_stream(f, f->last_read, error)) {
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
    if (pbrt != NULL && (f->last_read == NULL || !bson_equal(pbrt, f->last_read))) {
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
    if (!f->s->follow && f->committed != NULL && f->lag_s * 1000.0 <= (double)f->s->max_lag_ms) {
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
        rc = t == TURN_DONE ? MG_EXIT_OK : t == TURN_RC ? MG_EXIT_SOURCE : mg_cdc__exit_code(error);
    else if (rc != MG_EXIT_SOURCE)
        rc = mg_cdc__exit_code(error);
    if (rc == MG_EXIT_OK)
        save_rate(f);
    applier_stop(f);
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
    free(f);
}
