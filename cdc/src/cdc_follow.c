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
#include "mg/cdc.h"
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
    PGconn *pg; /* the applier's own connection */
} applier_t;

typedef struct {
    const mg_cdc_follow_settings_t *s;
    PGconn *pg;
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
} follow_t;

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

/* load_state reads the collections, T0, fidelity and the checkpoint. */
static bool
load_state(follow_t *f, mg_error_t *error)
{
    const char *ss = f->s->state_schema;
    mg_buf_t sql;
    PGresult *res = NULL;
    bool ok = false;

    free_colls(f);
    mg_buf_init(&sql, 4096);
    if (!mg_buf_append_str(&sql, "SELECT db, coll, schema_name, table_name, key_type, status FROM ",
                           error) ||
        !mg_schema_quote_ident(ss, &sql, error) ||
        !mg_buf_append_str(&sql, ".collections ORDER BY db, coll", error))
        goto done;
    if ((res = mg_pg_query(f->pg, sql.data, 0, NULL, error)) == NULL)
        goto done;
    f->ncolls = (size_t)PQntuples(res);
    f->colls = calloc(f->ncolls + 1, sizeof(follow_coll_t));
    f->tables = calloc(f->ncolls + 1, sizeof(mg_cdc_table_t));
    if (f->colls == NULL || f->tables == NULL)
        goto oom;
    for (size_t i = 0; i < f->ncolls; i++) {
        follow_coll_t *c = &f->colls[i];
        c->db = strdup(PQgetvalue(res, (int)i, 0));
        c->coll = strdup(PQgetvalue(res, (int)i, 1));
        c->schema = strdup(PQgetvalue(res, (int)i, 2));
        c->table = strdup(PQgetvalue(res, (int)i, 3));
        if (c->db == NULL || c->coll == NULL || c->schema == NULL || c->table == NULL)
            goto oom;
        mg_schema_key_type_parse(PQgetvalue(res, (int)i, 4), &c->key);
        snprintf(c->status, sizeof(c->status), "%s", PQgetvalue(res, (int)i, 5));
        f->tables[i] = (mg_cdc_table_t){c->db, c->coll, c->schema, c->table, c->key};
    }
    PQclear(res);
    res = NULL;

    mg_buf_reset(&sql);
    if (!mg_buf_append_str(&sql, "SELECT m.t0_ts, m.t0_inc, m.type_fidelity, c.resume_token FROM ",
                           error) ||
        !mg_schema_quote_ident(ss, &sql, error) ||
        !mg_buf_append_str(&sql, ".migration m LEFT JOIN ", error) ||
        !mg_schema_quote_ident(ss, &sql, error) ||
        !mg_buf_append_str(&sql, ".checkpoint c ON c.id = 1 WHERE m.id = 1", error))
        goto done;
    res = PQexecParams(f->pg, sql.data, 0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mg_error_set_pgresult(error, res, "could not read the checkpoint");
        goto done;
    }
    if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
        mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                     "no T0 recorded: the change stream needs a copy first (migrate sync)");
        goto done;
    }
    f->t0_t = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
    f->t0_i = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
    mg_schema_fidelity_parse(PQgetvalue(res, 0, 2), &f->fidelity);
    if (f->committed != NULL)
        bson_destroy(f->committed);
    f->committed = NULL;
    if (!PQgetisnull(res, 0, 3)) {
        size_t len = 0;
        unsigned char *raw = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 3), &len);
        if (raw != NULL)
            f->committed = bson_new_from_data(raw, len);
        PQfreemem(raw);
        if (f->committed == NULL) {
            mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "the stored resume token is corrupt");
            goto done;
        }
    }
    ok = true;
    goto done;
oom:
    mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
done:
    PQclear(res);
    mg_buf_cleanup(&sql);
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
static bool
open_stream(follow_t *f, const bson_t *token, mg_error_t *error)
{
    bson_t pipeline = BSON_INITIALIZER, arr, stage, match, in, dbs;
    bson_t opts = BSON_INITIALIZER;
    const bson_t *err_doc;
    bson_error_t be;
    size_t ndb = 0;

    if (f->stream != NULL)
        mongoc_change_stream_destroy(f->stream);
    f->stream = NULL;
    bson_append_array_begin(&pipeline, "pipeline", -1, &arr);
    bson_append_document_begin(&arr, "0", 1, &stage);
    bson_append_document_begin(&stage, "$match", -1, &match);
    bson_append_document_begin(&match, "ns.db", -1, &in);
    bson_append_array_begin(&in, "$in", -1, &dbs);
    for (size_t i = 0; i < f->ncolls; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = strcmp(f->colls[j].db, f->colls[i].db) == 0;
        if (seen)
            continue;
        char key[16];
        snprintf(key, sizeof(key), "%zu", ndb++);
        bson_append_utf8(&dbs, key, -1, f->colls[i].db, -1);
    }
    bson_append_array_end(&in, &dbs);
    bson_append_document_end(&match, &in);
    bson_append_document_end(&stage, &match);
    bson_append_document_end(&arr, &stage);
    if (f->slim) {
        bson_t proj, p2;
        bson_append_document_begin(&arr, "1", 1, &proj);
        bson_append_document_begin(&proj, "$project", -1, &p2);
        BSON_APPEND_INT32(&p2, "fullDocument", 0);
        bson_append_document_end(&proj, &p2);
        bson_append_document_end(&arr, &proj);
    } else {
        BSON_APPEND_UTF8(&opts, "fullDocument", "updateLookup");
    }
    bson_append_array_end(&pipeline, &arr);
    BSON_APPEND_INT32(&opts, "batchSize", 5000);
    BSON_APPEND_INT64(&opts, "maxAwaitTimeMS", 500);
    if (token != NULL)
        BSON_APPEND_DOCUMENT(&opts, "startAfter", token);
    else
        BSON_APPEND_TIMESTAMP(&opts, "startAtOperationTime", f->t0_t, f->t0_i);
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
        bool ok = mg_cdc_batch_apply(b, a->pg, f->s->state_schema, &pos, &e);

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

/* set_status marks a collection's status and error (autocommit). */
static void
set_status(follow_t *f, size_t k, const char *status, const char *err)
{
    mg_buf_t sql;
    mg_error_t e;
    const char *params[4] = {f->colls[k].db, f->colls[k].coll, status, err};
    PGresult *res;

    snprintf(f->colls[k].status, sizeof(f->colls[k].status), "%s", status);
    mg_buf_init(&sql, 4096);
    if (mg_buf_append_str(&sql, "UPDATE ", &e) &&
        mg_schema_quote_ident(f->s->state_schema, &sql, &e) &&
        mg_buf_append_str(&sql,
                          ".collections SET status = $3, error = $4, updated_at = now() WHERE "
                          "db = $1 AND coll = $2",
                          &e)) {
        res = mg_pg_query(f->pg, sql.data, 4, params, &e);
        PQclear(res);
    }
    mg_buf_cleanup(&sql);
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
    mg_buf_t sql;
    mg_error_t e;
    char shown[512];
    PGresult *res;

    if (ev->has_id)
        mg_schema_id_describe(&ev->id, shown, sizeof(shown));
    else
        snprintf(shown, sizeof(shown), "?");
    const char *params[4] = {f->colls[k].db, f->colls[k].coll, shown, reason};
    mg_buf_init(&sql, 4096);
    if (mg_buf_append_str(&sql, "INSERT INTO ", &e) &&
        mg_schema_quote_ident(f->s->state_schema, &sql, &e) &&
        mg_buf_append_str(&sql,
                          ".invalid_docs (db, coll, doc_id, reason) VALUES ($1, $2, $3, $4) ON "
                          "CONFLICT (db, coll, doc_id) DO UPDATE SET reason = EXCLUDED.reason, "
                          "at = now()",
                          &e)) {
        res = mg_pg_query(f->pg, sql.data, 4, params, &e);
        PQclear(res);
    }
    mg_buf_cleanup(&sql);
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
        if (ev->op == MG_CDC_OP_RENAME) {
            if (f->s->on_rename == MG_CDC_RENAME_FOLLOW) {
                mg_buf_t sql;
                mg_error_t e;
                const char *params[4] = {c->db, c->coll, ev->to_db, ev->to_coll};
                PGresult *res;
                mg_buf_init(&sql, 4096);
                if (mg_buf_append_str(&sql, "UPDATE ", &e) &&
                    mg_schema_quote_ident(f->s->state_schema, &sql, &e) &&
                    mg_buf_append_str(&sql,
                                      ".collections SET db = $3, coll = $4, updated_at = now() "
                                      "WHERE db = $1 AND coll = $2",
                                      &e) &&
                    (res = mg_pg_query(f->pg, sql.data, 4, params, &e)) != NULL) {
                    PQclear(res);
                    MG_LOG_EVENT(
                        MG_LOG_NOTICE, "cdc", "cdc.rename",
                        MG_LOG_FIELDS(MG_LOG_STR("from", ev->coll), MG_LOG_STR("to", ev->to_coll)),
                        "collection %s.%s renamed to %s.%s: following it", ev->db, ev->coll,
                        ev->to_db, ev->to_coll);
                    free(c->db);
                    free(c->coll);
                    c->db = strdup(ev->to_db);
                    c->coll = strdup(ev->to_coll);
                    f->tables[k].db = c->db;
                    f->tables[k].coll = c->coll;
                } else {
                    mg_buf_cleanup(&sql);
                    return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "%s", e.message);
                }
                mg_buf_cleanup(&sql);
                continue;
            }
            snprintf(why, sizeof(why),
                     "renamed to %s.%s on the source; the table \"%s\".\"%s\" is kept as it "
                     "was. Re-run with --on-rename follow to follow renames, or re-sync: "
                     "migrate sync --resync %s.%s",
                     ev->to_db, ev->to_coll, c->schema, c->table, c->db, c->coll);
            stop_collection(f, k, why);
            continue;
        }
        /* drop and dropDatabase */
        switch (f->s->on_drop) {
        case MG_CDC_DROP_STOP:
            snprintf(why, sizeof(why),
                     "dropped on the source; the table \"%s\".\"%s\" is kept as it was. If "
                     "the collection was recreated, re-sync it: migrate sync --resync %s.%s; "
                     "or choose a policy with --on-drop truncate|keep",
                     c->schema, c->table, c->db, c->coll);
            stop_collection(f, k, why);
            break;
        case MG_CDC_DROP_TRUNCATE: {
            mg_buf_t sql;
            mg_buf_init(&sql, 4096);
            bool ok = mg_buf_append_str(&sql, "TRUNCATE ", error) &&
                      mg_schema_quote_ident(c->schema, &sql, error) &&
                      mg_buf_append_str(&sql, ".", error) &&
                      mg_schema_quote_ident(c->table, &sql, error) &&
                      mg_pg_exec(f->pg, sql.data, error);
            mg_buf_cleanup(&sql);
            if (!ok)
                return false;
            MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.drop",
                         MG_LOG_FIELDS(MG_LOG_STR("db", c->db), MG_LOG_STR("collection", c->coll)),
                         "collection %s.%s dropped on the source: table emptied, still followed",
                         c->db, c->coll);
            break;
        }
        case MG_CDC_DROP_KEEP:
            MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.drop",
                         MG_LOG_FIELDS(MG_LOG_STR("db", c->db), MG_LOG_STR("collection", c->coll)),
                         "collection %s.%s dropped on the source: table kept as it was, still "
                         "followed",
                         c->db, c->coll);
            break;
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

/* save_rate writes the smoothed rate for `migrate status`. */
static void
save_rate(follow_t *f)
{
    mg_buf_t sql;
    mg_error_t e;
    char r[32];
    const char *params[1] = {r};
    PGresult *res;

    snprintf(r, sizeof(r), "%.1f", f->rate);
    mg_buf_init(&sql, 1024);
    if (mg_buf_append_str(&sql, "UPDATE ", &e) &&
        mg_schema_quote_ident(f->s->state_schema, &sql, &e) &&
        mg_buf_append_str(&sql, ".checkpoint SET events_per_s = $1 WHERE id = 1", &e)) {
        res = mg_pg_query(f->pg, sql.data, 1, params, &e);
        PQclear(res);
    }
    mg_buf_cleanup(&sql);
}

/*
 * reconnect_target waits for the target to come back (a restart, a failover
 * behind HAProxy), reloads the committed state and reopens the stream from
 * it. The uncommitted batch is dropped: its events are read again.
 */
static bool
reconnect_target(follow_t *f, mg_error_t *error)
{
    double started = mg_now_s(), wait = 0.5;
    mg_error_t last;

    MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.target_lost", NULL, 0,
                 "lost the target: %s; reconnecting", error->message);
    wait_idle(f, NULL); /* the applier's failure, if any, is this one */
    mg_cdc_batch_reset(f->batch);
    while (mg_now_s() - started < RECONNECT_BUDGET_S) {
        if (atomic_load(f->s->stop) >= 2)
            return false;
        if (f->pg != NULL)
            PQfinish(f->pg);
        f->pg = mg_pg_connect(f->s->target, &last);
        if (f->ap.pg != NULL)
            PQfinish(f->ap.pg);
        f->ap.pg = f->pg != NULL ? mg_pg_connect(f->s->target, &last) : NULL;
        if (f->pg != NULL && f->ap.pg != NULL && mg_pg_writable(f->ap.pg, &last) &&
            load_state(f, &last)) {
            /* the tables were reloaded: the batches must point at the new ones */
            mg_cdc_batch_destroy(f->batch);
            mg_cdc_batch_destroy(f->spare);
            f->batch = new_batch(f);
            f->spare = new_batch(f);
            if (f->batch == NULL || f->spare == NULL) {
                mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
                return false;
            }
            set_token(&f->last_read, f->committed);
            if (!open_stream(f, f->committed, error))
                return false;
            MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.target_back", NULL, 0,
                         "target back after %.1f s; resuming from the committed checkpoint",
                         mg_now_s() - started);
            return true;
        }
        usleep((useconds_t)(wait * 1e6));
        wait = wait * 2 > 10 ? 10 : wait * 2;
    }
    *error = last;
    mg_error_prefix(error, "target did not come back within %.0f s", RECONNECT_BUDGET_S);
    return false;
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
    mg_buf_t list, sql;
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
    mg_buf_init(&sql, 1024);
    if (mg_buf_append_str(&sql, "UPDATE ", &e2) &&
        mg_schema_quote_ident(f->s->state_schema, &sql, &e2) &&
        mg_buf_append_str(&sql, ".checkpoint SET history_lost_at = now() WHERE id = 1", &e2))
        mg_pg_exec(f->pg, sql.data, &e2);
    mg_buf_cleanup(&sql);
}

int
mg_cdc_follow_run(const mg_cdc_follow_settings_t *s, mg_error_t *error)
{
    follow_t f;
    int rc = MG_EXIT_FAILURE;
    double last_log = 0, last_rate_save = 0;
    double source_fail_since = 0;
    mg_cdc_event_t prev;
    bool have_prev = false;

    memset(&f, 0, sizeof(f));
    f.s = s;
    pthread_mutex_init(&f.stats_lock, NULL);
    f.pg = mg_pg_connect(s->target, error);
    if (f.pg == NULL)
        goto done;
    if (!load_state(&f, error))
        goto done;
    f.batch = new_batch(&f);
    f.spare = new_batch(&f);
    if (f.batch == NULL || f.spare == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }
    f.ap.pg = mg_pg_connect(s->target, error);
    if (f.ap.pg == NULL)
        goto done;
    pthread_mutex_init(&f.ap.lock, NULL);
    pthread_cond_init(&f.ap.cond, NULL);
    if (pthread_create(&f.ap.thread, NULL, applier_main, &f) != 0) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                     "could not start the applier thread");
        goto done;
    }
    f.ap.started = true;
    f.mongo = mg_mongo_client_new(s->source_uri, "migrate-cdc", 0, error);
    if (f.mongo == NULL)
        goto done;
    if (!open_stream(&f, f.committed, error)) {
        if (error->domain == MG_ERROR_DOMAIN_MONGO && error->code == ERR_HISTORY_LOST) {
            history_lost(&f, error);
            rc = MG_EXIT_SOURCE;
            goto done_rc;
        }
        goto done;
    }
    set_token(&f.last_read, f.committed);
    if (s->metrics_port > 0) {
        f.http =
            mg_http_server_new("127.0.0.1", (uint16_t)s->metrics_port, http_handler, &f, error);
        if (f.http == NULL)
            goto done;
    }
    MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.start",
                 MG_LOG_FIELDS(MG_LOG_BOOL("resuming", f.committed != NULL),
                               MG_LOG_UINT("t0_ts", f.t0_t), MG_LOG_BOOL("follow", s->follow)),
                 "following the change stream from %s",
                 f.committed != NULL ? "the committed checkpoint" : "T0");
    f.last_apply = f.batch_started = f.t_started = mg_now_s();

    for (;;) {
        const bson_t *raw;
        bson_error_t be;
        const bson_t *err_doc;
        mg_cdc_event_t ev;
        double now;

        if (atomic_load(s->stop) > 0) {
            /* finish the batch, commit, stop */
            if (!apply(&f, error) && !(pg_lost(&f, error) && reconnect_target(&f, error)))
                goto done;
            rc = MG_EXIT_OK;
            break;
        }
        double t_next = mg_now_s();
        bool got = mongoc_change_stream_next(f.stream, &raw);
        f.t_source += mg_now_s() - t_next;
        if (got) {
            double t_add = mg_now_s();
            source_fail_since = 0;
            if (!mg_cdc_event_decode(raw, &ev, error))
                goto done;
            /* a source transaction never straddles two batches */
            bool txn_open = have_prev && mg_cdc_same_txn(&prev, &ev);
            if (!txn_open && (mg_cdc_batch_full(f.batch) ||
                              mg_now_s() - f.batch_started >= s->batch_delay_ms / 1e3)) {
                if (!submit(&f, error)) {
                    if (pg_lost(&f, error) && reconnect_target(&f, error)) {
                        have_prev = false;
                        continue;
                    }
                    goto done;
                }
                f.batch_started = mg_now_s();
            }
            int k = (ev.op == MG_CDC_OP_DROP_DATABASE || ev.op == MG_CDC_OP_INVALIDATE)
                        ? -1
                        : find_table(&f, ev.db, ev.coll);
            switch (ev.op) {
            case MG_CDC_OP_INSERT:
            case MG_CDC_OP_UPDATE:
            case MG_CDC_OP_REPLACE:
            case MG_CDC_OP_DELETE:
                if (k >= 0 && active(&f.colls[k]) && !on_data_event(&f, (size_t)k, &ev, error))
                    goto done;
                break;
            case MG_CDC_OP_DROP:
            case MG_CDC_OP_RENAME:
            case MG_CDC_OP_DROP_DATABASE:
                /* what came before is applied first, then the policy */
                if (!apply(&f, error) || !on_ddl_event(&f, &ev, error))
                    goto done;
                break;
            case MG_CDC_OP_INVALIDATE:
                mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                             "the change stream was invalidated; run migrate sync again to "
                             "resume after it");
                apply(&f, error);
                goto done;
            default:
                break;
            }
            set_token(&f.last_read, mongoc_change_stream_get_resume_token(f.stream));
            f.pos_t = ev.ct_t;
            f.pos_i = ev.ct_i;
            f.pos_wall_ms = ev.wall_ms;
            if (f.slim) {
                /* the oversize event is handled: back to full documents */
                f.slim = false;
                if (!open_stream(&f, f.last_read, error))
                    goto done;
            }
            prev = ev;
            have_prev = true;
            f.t_batch += mg_now_s() - t_add;
            /* prev's pointers are not used, only its txn identity */
            continue;
        }
        if (mongoc_change_stream_error_document(f.stream, &be, &err_doc)) {
            if (be.code == ERR_HISTORY_LOST) {
                history_lost(&f, error);
                rc = MG_EXIT_SOURCE;
                goto done_rc;
            }
            if (be.code == ERR_TOO_LARGE && !f.slim) {
                MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.too_large", NULL, 0,
                             "a change event is over 16 MB: reading its document by _id");
                f.slim = true;
                if (!open_stream(&f, f.last_read, error))
                    goto done;
                continue;
            }
            /* other errors: resumable ones are retried from the last event read */
            now = mg_now_s();
            if (source_fail_since == 0)
                source_fail_since = now;
            if (now - source_fail_since > RECONNECT_BUDGET_S) {
                mg_error_set_bson(error, &be, "the change stream kept failing for %.0f s",
                                  RECONNECT_BUDGET_S);
                goto done;
            }
            MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.source_error",
                         MG_LOG_FIELDS(MG_LOG_INT("err_code", be.code)),
                         "change stream error: %s; resuming from the last event read", be.message);
            usleep(500 * 1000);
            if (!open_stream(&f, f.last_read, error)) {
                if (error->domain == MG_ERROR_DOMAIN_MONGO && error->code == ERR_HISTORY_LOST) {
                    history_lost(&f, error);
                    rc = MG_EXIT_SOURCE;
                    goto done_rc;
                }
                MG_LOG_EVENT(MG_LOG_WARNING, "cdc", "cdc.source_error", NULL, 0, "%s",
                             error->message);
                mg_error_clear(error);
            }
            continue;
        }
        /* idle: the batch ended; the post-batch resume token moves us forward */
        source_fail_since = 0;
        const bson_t *pbrt = mongoc_change_stream_get_resume_token(f.stream);
        if (pbrt != NULL && (f.last_read == NULL || !bson_equal(pbrt, f.last_read))) {
            uint32_t t, i;
            set_token(&f.last_read, pbrt);
            if (mg_cdc_token_time(pbrt, &t, &i) &&
                (t > f.pos_t || (t == f.pos_t && i >= f.pos_i))) {
                f.pos_t = t;
                f.pos_i = i;
                f.pos_wall_ms = 0;
            }
        }
        if (!(s->follow ? submit(&f, error) : apply(&f, error))) {
            if (pg_lost(&f, error) && reconnect_target(&f, error)) {
                have_prev = false;
                continue;
            }
            goto done;
        }
        f.batch_started = mg_now_s();
        have_prev = false;
        now = mg_now_s();
        if (now - last_log >= 5.0) {
            MG_LOG_EVENT(MG_LOG_INFO, "cdc", "cdc.progress",
                         MG_LOG_FIELDS(MG_LOG_INT("applied_events", f.applied_events),
                                       MG_LOG_DOUBLE("events_per_s", f.rate),
                                       MG_LOG_DOUBLE("lag_s", f.lag_s)),
                         "following: %lld events applied, lag %.1f s", (long long)f.applied_events,
                         f.lag_s);
            last_log = now;
        }
        if (now - last_rate_save >= 2.0) {
            save_rate(&f);
            last_rate_save = now;
        }
        if (!s->follow && f.committed != NULL && f.lag_s * 1000.0 <= (double)s->max_lag_ms) {
            MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "cdc.caught_up",
                         MG_LOG_FIELDS(MG_LOG_DOUBLE("lag_s", f.lag_s),
                                       MG_LOG_INT("applied_events", f.applied_events)),
                         "caught up: lag %.1f s", f.lag_s);
            rc = MG_EXIT_OK;
            break;
        }
    }
    goto done_ok;
done:
    rc = mg_exit_code_for_error(error);
    if (rc == MG_EXIT_OK)
        rc = MG_EXIT_FAILURE;
    if (error->domain == MG_ERROR_DOMAIN_CORE && error->code == MG_ERROR_CODE_INVALID_ARGUMENT &&
        strstr(error->message, "invariant") != NULL)
        rc = MG_EXIT_INTERNAL;
done_rc:
done_ok:
    if (f.pg != NULL && rc == MG_EXIT_OK)
        save_rate(&f);
    applier_stop(&f);
    if (f.t_started > 0) {
        double total = mg_now_s() - f.t_started;
        MG_LOG_EVENT(MG_LOG_INFO, "cdc", "cdc.stats",
                     MG_LOG_FIELDS(MG_LOG_INT("applied_events", f.applied_events),
                                   MG_LOG_DOUBLE("seconds", total),
                                   MG_LOG_DOUBLE("source_s", f.t_source),
                                   MG_LOG_DOUBLE("batch_s", f.t_batch),
                                   MG_LOG_DOUBLE("wait_apply_s", f.t_wait)),
                     "change stream: %lld events in %.1f s; reader waited %.1f s on the source, "
                     "%.1f s on the applier, spent %.1f s building batches",
                     (long long)f.applied_events, total, f.t_source, f.t_wait, f.t_batch);
    }
    mg_http_server_destroy(f.http);
    if (f.stream != NULL)
        mongoc_change_stream_destroy(f.stream);
    if (f.mongo != NULL)
        mongoc_client_destroy(f.mongo);
    mg_cdc_batch_destroy(f.batch);
    mg_cdc_batch_destroy(f.spare);
    if (f.ap.token != NULL)
        bson_destroy(f.ap.token);
    if (f.ap.pg != NULL)
        PQfinish(f.ap.pg);
    if (f.committed != NULL)
        bson_destroy(f.committed);
    if (f.last_read != NULL)
        bson_destroy(f.last_read);
    free_colls(&f);
    if (f.pg != NULL)
        PQfinish(f.pg);
    pthread_mutex_destroy(&f.stats_lock);
    return rc;
}
