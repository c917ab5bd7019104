/*
 * tests/mongosim/msim_router.c - the router of a sharded mongosim, speaking
 * as mongos: hello with msg "isdbgrid"; unsharded collections live on their
 * database's primary shard and their commands pass through (cursors
 * included); sharded collections are routed by shard key (targeted when
 * the filter pins the key, scatter-gather otherwise, results merged here,
 * orphans skipped on the shards through shardVersion); DDL reaches every
 * shard; config.* is served from the routing catalog; transactions are
 * coordinated here (a shard joins at its first statement, commit is one
 * timestamp across participants); write blocking reaches every shard.
 */
#include "msim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SHARDS 64

static msim_cluster_t *
CL(void)
{
    return msim_srv->cluster;
}

/* ------------------------------------------------------------------------
 * Transactions through the router
 * ------------------------------------------------------------------------ */

struct msim_rtxn {
    msim_rtxn_t *next;
    bson_t *lsid;
    int64_t number;
    bool part[MAX_SHARDS];
    bool active, committed;
};

typedef struct {
    const bson_t *lsid;
    bool has_number;
    int64_t number;
    bool in_txn;
    msim_rtxn_t *t;
} rtx_t;

static bool
same_lsid(const bson_t *a, const bson_t *b)
{
    return a->len == b->len && memcmp(bson_get_data(a), bson_get_data(b), a->len) == 0;
}

/* rtx_begin reads the session fields of ctx and finds (or starts) the
 * router's transaction state; NoSuchTransaction for an unknown one. */
static bool
rtx_begin(msim_ctx_t *ctx, rtx_t *rt, mg_error_t *error)
{
    msim_cluster_t *cl = CL();
    bson_iter_t it;
    bool start = false;
    memset(rt, 0, sizeof *rt);
    rt->lsid = ctx->lsid;
    if (bson_iter_init_find(&it, ctx->cmd, "txnNumber") && msim_iter_int64(&it, &rt->number))
        rt->has_number = true;
    if (rt->lsid == NULL || !rt->has_number || !bson_iter_init_find(&it, ctx->cmd, "autocommit"))
        return true;
    if (!BSON_ITER_HOLDS_BOOL(&it) || bson_iter_bool(&it))
        return msim_fail(error, MSIM_E_INVALID_OPTIONS,
                         "Specifying autocommit=true is not allowed.");
    rt->in_txn = true;
    if (bson_iter_init_find(&it, ctx->cmd, "startTransaction"))
        start = msim_truthy(&it);
    pthread_mutex_lock(&cl->mu);
    for (msim_rtxn_t *t = cl->txns; t != NULL; t = t->next)
        if (same_lsid(t->lsid, rt->lsid))
            rt->t = t;
    if (start) {
        if (rt->t == NULL) {
            rt->t = calloc(1, sizeof *rt->t);
            if (rt->t == NULL)
                abort();
            rt->t->lsid = bson_copy(rt->lsid);
            rt->t->next = cl->txns;
            cl->txns = rt->t;
        }
        memset(rt->t->part, 0, sizeof rt->t->part);
        rt->t->number = rt->number;
        rt->t->active = true;
        rt->t->committed = false;
    } else if (rt->t == NULL || rt->t->number != rt->number ||
               (!rt->t->active &&
                !(rt->t->committed && strcmp(ctx->name, "commitTransaction") == 0))) {
        pthread_mutex_unlock(&cl->mu);
        return msim_fail(error, MSIM_E_NO_SUCH_TRANSACTION,
                         "Transaction with { txnNumber: %lld } has been aborted.",
                         (long long)rt->number);
    }
    pthread_mutex_unlock(&cl->mu);
    return true;
}

/* rtx_append adds the session fields for shard s to a forwarded command
 * (startTransaction when s joins the transaction now). */
static void
rtx_append(rtx_t *rt, int s, bson_t *cmd)
{
    if (rt->lsid != NULL)
        BSON_APPEND_DOCUMENT(cmd, "lsid", rt->lsid);
    if (rt->has_number)
        BSON_APPEND_INT64(cmd, "txnNumber", rt->number);
    if (rt->in_txn) {
        bool join;
        pthread_mutex_lock(&CL()->mu);
        join = !rt->t->part[s];
        rt->t->part[s] = true;
        pthread_mutex_unlock(&CL()->mu);
        if (join)
            BSON_APPEND_BOOL(cmd, "startTransaction", true);
        BSON_APPEND_BOOL(cmd, "autocommit", false);
    }
}

/* ------------------------------------------------------------------------
 * Calling shards
 * ------------------------------------------------------------------------ */

static bool
is_session_field(const char *k)
{
    static const char *const skip[] = {"$db",
                                       "lsid",
                                       "txnNumber",
                                       "autocommit",
                                       "startTransaction",
                                       "$clusterTime",
                                       "$readPreference",
                                       "shardVersion",
                                       NULL};
    for (int i = 0; skip[i] != NULL; i++)
        if (strcmp(k, skip[i]) == 0)
            return true;
    return false;
}

/* body_of copies the command's own fields (not the session's) into out. */
static void
body_of(const bson_t *cmd, bson_t *out)
{
    bson_iter_t it;
    bson_iter_init(&it, cmd);
    while (bson_iter_next(&it))
        if (!is_session_field(bson_iter_key(&it)))
            msim_append_iter(out, NULL, 0, &it);
}

/* shard_version appends the routed version of sc (shards then skip orphans). */
static void
shard_version(const msim_scoll_t *sc, bson_t *cmd)
{
    bson_t v;
    char k[4] = "0";
    bson_append_array_begin(cmd, "shardVersion", -1, &v);
    bson_append_timestamp(&v, k, -1, sc->major, 0);
    BSON_APPEND_OID(&v, "1", &sc->epoch);
    bson_append_array_end(cmd, &v);
}

/*
 * shard_run runs body (+ $db, session fields, shardVersion for sc) on shard
 * s. reply is initialized here (caller destroys). False with the shard's
 * error when it replied ok: 0.
 */
static bool
shard_run(msim_ctx_t *ctx, rtx_t *rt, int s, const msim_scoll_t *sc, const bson_t *body,
          const char *db, bson_t *reply, mg_error_t *error)
{
    bson_t cmd = BSON_INITIALIZER;
    bson_iter_t it;
    bson_concat(&cmd, body);
    BSON_APPEND_UTF8(&cmd, "$db", db ? db : ctx->db);
    if (rt != NULL)
        rtx_append(rt, s, &cmd);
    if (sc != NULL)
        shard_version(sc, &cmd);
    bson_init(reply);
    msim_dispatch_internal(CL()->shards[s], &cmd, reply);
    bson_destroy(&cmd);
    if (bson_iter_init_find(&it, reply, "ok") && msim_as_double(&it) == 1)
        return true;
    {
        int64_t code = MSIM_E_INTERNAL;
        const char *msg = "shard error";
        if (bson_iter_init_find(&it, reply, "code"))
            msim_iter_int64(&it, &code);
        if (bson_iter_init_find(&it, reply, "errmsg") && BSON_ITER_HOLDS_UTF8(&it))
            msg = bson_iter_utf8(&it, NULL);
        return msim_fail(error, (int32_t)code, "%s", msg);
    }
}

/* copy_reply copies a shard's reply fields (not ok, times, cursor) into ctx->reply. */
static void
copy_reply(msim_ctx_t *ctx, const bson_t *reply, bool with_cursor)
{
    bson_iter_t it;
    bson_iter_init(&it, reply);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "ok") == 0 || strcmp(k, "operationTime") == 0 ||
            strcmp(k, "$clusterTime") == 0 || (!with_cursor && strcmp(k, "cursor") == 0))
            continue;
        msim_append_iter(ctx->reply, NULL, 0, &it);
    }
}

/* wrap_cursor passes a shard's cursor through: a router cursor stands for it. */
static void
wrap_cursor(msim_ctx_t *ctx, int s, const bson_t *reply, const char *db)
{
    bson_iter_t it, c;
    bson_t cur;
    int64_t id = 0;
    msim_cursor_t *rc = NULL;
    if (!bson_iter_init_find(&it, reply, "cursor") || !BSON_ITER_HOLDS_DOCUMENT(&it))
        return;
    bson_iter_recurse(&it, &c);
    if (bson_iter_find(&c, "id"))
        msim_iter_int64(&c, &id);
    if (id != 0) {
        const char *ns = "", *dot;
        bson_iter_recurse(&it, &c);
        if (bson_iter_find(&c, "ns") && BSON_ITER_HOLDS_UTF8(&c))
            ns = bson_iter_utf8(&c, NULL);
        rc = calloc(1, sizeof *rc);
        if (rc == NULL)
            abort();
        rc->kind = MSIM_CURSOR_REMOTE;
        rc->remote_shard = s;
        rc->remote_id = id;
        snprintf(rc->ns, sizeof rc->ns, "%s", ns);
        dot = strchr(ns, '.');
        snprintf(rc->remote_db, sizeof rc->remote_db, "%.*s", dot ? (int)(dot - ns) : 0, ns);
        snprintf(rc->remote_coll, sizeof rc->remote_coll, "%s", dot ? dot + 1 : ns);
        if (rc->remote_db[0] == '\0')
            snprintf(rc->remote_db, sizeof rc->remote_db, "%s", db);
        msim_cursor_register(rc);
    }
    bson_append_document_begin(ctx->reply, "cursor", -1, &cur);
    bson_iter_recurse(&it, &c);
    while (bson_iter_next(&c)) {
        if (strcmp(bson_iter_key(&c), "id") == 0)
            BSON_APPEND_INT64(&cur, "id", rc ? rc->id : 0);
        else
            msim_append_iter(&cur, NULL, 0, &c);
    }
    bson_append_document_end(ctx->reply, &cur);
}

/* primary_of: the database's primary shard; create the database entry for writes. */
static int
primary_of(const char *db, bool create)
{
    msim_cluster_t *cl = CL();
    msim_sdb_t *d;
    int p = 0;
    if (create)
        return msim_cluster_primary(cl, db);
    pthread_mutex_lock(&cl->mu);
    d = msim_cluster_db(cl, db, false);
    if (d != NULL)
        p = d->primary;
    pthread_mutex_unlock(&cl->mu);
    return p;
}

/* passthrough runs the whole command on shard s and returns its reply. */
static bool
passthrough(msim_ctx_t *ctx, int s, mg_error_t *error)
{
    bson_t body = BSON_INITIALIZER, reply;
    rtx_t rt;
    bool ok;
    if (!rtx_begin(ctx, &rt, error)) {
        bson_destroy(&body);
        return false;
    }
    body_of(ctx->cmd, &body);
    ok = shard_run(ctx, &rt, s, NULL, &body, NULL, &reply, error);
    if (ok) {
        copy_reply(ctx, &reply, false);
        wrap_cursor(ctx, s, &reply, ctx->db);
    }
    bson_destroy(&body);
    bson_destroy(&reply);
    return ok;
}

bool
msim_router_remote_get_more(msim_ctx_t *ctx, msim_cursor_t *cur, mg_error_t *error)
{
    bson_t body = BSON_INITIALIZER, reply, out;
    bson_iter_t it, c;
    rtx_t rt;
    bool ok;
    int64_t id = 0;
    if (!rtx_begin(ctx, &rt, error)) {
        bson_destroy(&body);
        return false;
    }
    BSON_APPEND_INT64(&body, "getMore", cur->remote_id);
    BSON_APPEND_UTF8(&body, "collection", cur->remote_coll);
    if (bson_iter_init_find(&it, ctx->cmd, "batchSize"))
        msim_append_iter(&body, NULL, 0, &it);
    if (bson_iter_init_find(&it, ctx->cmd, "maxTimeMS"))
        msim_append_iter(&body, NULL, 0, &it);
    ok = shard_run(ctx, &rt, cur->remote_shard, NULL, &body, cur->remote_db, &reply, error);
    bson_destroy(&body);
    if (!ok) {
        bson_destroy(&reply);
        cur->remote_id = 0;
        return false;
    }
    bson_iter_init_find(&it, &reply, "cursor");
    bson_iter_recurse(&it, &c);
    if (bson_iter_find(&c, "id"))
        msim_iter_int64(&c, &id);
    cur->remote_id = id;
    if (id == 0)
        cur->id = 0;
    bson_append_document_begin(ctx->reply, "cursor", -1, &out);
    bson_iter_recurse(&it, &c);
    while (bson_iter_next(&c)) {
        if (strcmp(bson_iter_key(&c), "id") == 0)
            BSON_APPEND_INT64(&out, "id", cur->id);
        else
            msim_append_iter(&out, NULL, 0, &c);
    }
    bson_append_document_end(ctx->reply, &out);
    bson_destroy(&reply);
    return true;
}

void
msim_router_remote_kill(msim_cursor_t *cur)
{
    bson_t cmd = BSON_INITIALIZER, ids, reply = BSON_INITIALIZER;
    msim_cluster_t *cl = msim_srv->cluster;
    if (cur->remote_id == 0 || cl == NULL)
        return;
    BSON_APPEND_UTF8(&cmd, "killCursors", cur->remote_coll);
    bson_append_array_begin(&cmd, "cursors", -1, &ids);
    BSON_APPEND_INT64(&ids, "0", cur->remote_id);
    bson_append_array_end(&cmd, &ids);
    BSON_APPEND_UTF8(&cmd, "$db", cur->remote_db);
    msim_dispatch_internal(cl->shards[cur->remote_shard], &cmd, &reply);
    bson_destroy(&cmd);
    bson_destroy(&reply);
    cur->remote_id = 0;
}

/* ------------------------------------------------------------------------
 * Targeting
 * ------------------------------------------------------------------------ */

/* eq_value finds filter's equality value for a field ({f: v} or {f: {$eq: v}}). */
static bool
eq_value(const bson_t *filter, const char *field, bson_iter_t *out)
{
    bson_iter_t it, op;
    if (filter == NULL || !bson_iter_init_find(&it, filter, field))
        return false;
    if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        if (!bson_iter_recurse(&it, &op) || !bson_iter_next(&op) || bson_iter_key(&op)[0] != '$')
            return false; /* an embedded document compared whole: not supported for keys */
        bson_iter_t rest;
        if (strcmp(bson_iter_key(&op), "$eq") != 0)
            return false;
        rest = op;
        if (bson_iter_next(&rest))
            return false; /* $eq with other operators */
        it = op;
    }
    if (BSON_ITER_HOLDS_REGEX(&it) || BSON_ITER_HOLDS_ARRAY(&it) || BSON_ITER_HOLDS_DOCUMENT(&it))
        return false;
    *out = it;
    return true;
}

/* exact_key builds the shard key a filter pins (every key field equal to a value). */
static bool
exact_key(const msim_scoll_t *sc, const bson_t *filter, bson_t *key)
{
    bson_t doc = BSON_INITIALIZER;
    bson_iter_t p;
    bool ok = true;
    bson_iter_init(&p, sc->key);
    while (ok && bson_iter_next(&p)) {
        bson_iter_t v;
        ok = eq_value(filter, bson_iter_key(&p), &v);
        if (ok)
            msim_append_iter(&doc, bson_iter_key(&p), -1, &v);
    }
    if (ok) {
        /* shard key of the pinned values: dotted names are taken literally */
        bson_iter_init(&p, sc->key);
        while (bson_iter_next(&p)) {
            bson_iter_t v;
            bson_iter_init_find(&v, &doc, bson_iter_key(&p));
            if (BSON_ITER_HOLDS_UTF8(&p))
                bson_append_int64(key, bson_iter_key(&p), -1, msim_hash64(&v));
            else
                msim_append_iter(key, bson_iter_key(&p), -1, &v);
        }
    }
    bson_destroy(&doc);
    return ok;
}

/* target marks the shards that may hold documents matching filter (route lock held). */
static void
target(const msim_scoll_t *sc, const bson_t *filter, bool *mask)
{
    bson_t key = BSON_INITIALIZER;
    memset(mask, 0, sizeof(bool) * MAX_SHARDS);
    if (exact_key(sc, filter, &key))
        mask[sc->chunks[msim_scoll_chunk_of(sc, &key)].shard] = true;
    else
        msim_scoll_shards(sc, mask);
    bson_destroy(&key);
}

/* ------------------------------------------------------------------------
 * Reads: documents gathered from the shards, then the shared machinery
 * ------------------------------------------------------------------------ */

typedef struct {
    msim_ctx_t *ctx;
    rtx_t *rt;
    msim_scoll_t *sc; /* NULL: config.* */
    const bson_t *filter;
    msim_doc_t **extra; /* preset documents ($collStats), taken over */
    size_t nextra;
    bool failed;
    mg_error_t err;
} gather_t;

static void
push(msim_doc_t ***arr, size_t *n, size_t *cap, msim_doc_t *d)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *arr = realloc(*arr, *cap * sizeof **arr);
        if (*arr == NULL)
            abort();
    }
    (*arr)[(*n)++] = d;
}

/* take_batch appends the documents of a cursor batch array to arr. */
static void
take_batch(const bson_t *reply, const char *key, msim_doc_t ***arr, size_t *n, size_t *cap,
           int64_t *id)
{
    bson_iter_t it, c, b;
    *id = 0;
    if (!bson_iter_init_find(&it, reply, "cursor") || !bson_iter_recurse(&it, &c))
        return;
    while (bson_iter_next(&c)) {
        if (strcmp(bson_iter_key(&c), "id") == 0)
            msim_iter_int64(&c, id);
        else if (strcmp(bson_iter_key(&c), key) == 0 && bson_iter_recurse(&c, &b))
            while (bson_iter_next(&b)) {
                const uint8_t *d;
                uint32_t l;
                if (!BSON_ITER_HOLDS_DOCUMENT(&b))
                    continue;
                bson_iter_document(&b, &l, &d);
                push(arr, n, cap, msim_doc_new(d, l));
            }
    }
}

static int
by_id(const void *pa, const void *pb)
{
    msim_doc_t *a = *(msim_doc_t *const *)pa, *b = *(msim_doc_t *const *)pb;
    bson_iter_t ia, ib;
    bool ha = msim_doc_id(a, &ia), hb = msim_doc_id(b, &ib);
    if (!ha || !hb)
        return ha - hb;
    return msim_cmp(&ia, &ib);
}

static msim_doc_t **
gather(void *arg, const char *db, const char *coll, size_t *n)
{
    gather_t *g = arg;
    msim_doc_t **arr = NULL;
    size_t cap = 0;
    bool mask[MAX_SHARDS];
    *n = 0;
    if (g->extra != NULL) {
        arr = g->extra;
        *n = cap = g->nextra;
        g->extra = NULL;
        return arr;
    }
    if (g->sc == NULL) {
        arr = msim_cluster_config_docs(CL(), coll, n);
        qsort(arr, *n, sizeof *arr, by_id);
        return arr;
    }
    target(g->sc, g->filter, mask);
    for (int s = 0; s < CL()->nshards && !g->failed; s++) {
        bson_t body = BSON_INITIALIZER, reply;
        int64_t id = 0;
        if (!mask[s])
            continue;
        BSON_APPEND_UTF8(&body, "find", coll);
        if (g->filter != NULL)
            BSON_APPEND_DOCUMENT(&body, "filter", g->filter);
        BSON_APPEND_INT32(&body, "batchSize", INT32_MAX);
        if (shard_run(g->ctx, g->rt, s, g->sc, &body, db, &reply, &g->err))
            take_batch(&reply, "firstBatch", &arr, n, &cap, &id);
        else
            g->failed = true;
        bson_destroy(&body);
        bson_destroy(&reply);
        while (id != 0 && !g->failed) {
            bson_t more = BSON_INITIALIZER;
            BSON_APPEND_INT64(&more, "getMore", id);
            BSON_APPEND_UTF8(&more, "collection", coll);
            if (shard_run(g->ctx, g->rt, s, NULL, &more, db, &reply, &g->err))
                take_batch(&reply, "nextBatch", &arr, n, &cap, &id);
            else
                g->failed = true;
            bson_destroy(&more);
            bson_destroy(&reply);
        }
    }
    if (arr == NULL)
        arr = malloc(sizeof *arr);
    qsort(arr, *n, sizeof *arr, by_id);
    return arr;
}

/* filter_of returns the command's filter (find: filter, count/distinct: query,
 * aggregate: a first $match) as a static view, or NULL. */
static bool
filter_of(const msim_ctx_t *ctx, bson_t *view)
{
    bson_iter_t it, st, f;
    const uint8_t *d;
    uint32_t l;
    const char *key = strcmp(ctx->name, "find") == 0 ? "filter" : "query";
    if (strcmp(ctx->name, "aggregate") == 0) {
        if (!bson_iter_init_find(&it, ctx->cmd, "pipeline") || !BSON_ITER_HOLDS_ARRAY(&it) ||
            !bson_iter_recurse(&it, &st) || !bson_iter_next(&st) ||
            !BSON_ITER_HOLDS_DOCUMENT(&st) || !bson_iter_recurse(&st, &f) || !bson_iter_next(&f) ||
            strcmp(bson_iter_key(&f), "$match") != 0 || !BSON_ITER_HOLDS_DOCUMENT(&f))
            return false;
        bson_iter_document(&f, &l, &d);
    } else {
        if (!bson_iter_init_find(&it, ctx->cmd, key) || !BSON_ITER_HOLDS_DOCUMENT(&it))
            return false;
        bson_iter_document(&it, &l, &d);
    }
    bson_init_static(view, d, l);
    return true;
}

/* read_via runs a read handler on the router with documents gathered from the shards. */
static bool
read_via(msim_ctx_t *ctx, msim_cmd_fn fn, msim_scoll_t *sc, msim_doc_t **extra, size_t nextra,
         mg_error_t *error)
{
    gather_t g;
    bson_t filter;
    rtx_t rt;
    bool ok;
    memset(&g, 0, sizeof g);
    if (!rtx_begin(ctx, &rt, error))
        return false;
    g.ctx = ctx;
    g.rt = &rt;
    g.sc = sc;
    g.filter = filter_of(ctx, &filter) ? &filter : NULL;
    g.extra = extra;
    g.nextra = nextra;
    if (sc != NULL)
        pthread_rwlock_rdlock(&sc->route);
    msim_tls_snapshot_hook = gather;
    msim_tls_snapshot_arg = &g;
    ok = fn(ctx, error);
    msim_tls_snapshot_hook = NULL;
    msim_tls_snapshot_arg = NULL;
    if (sc != NULL)
        pthread_rwlock_unlock(&sc->route);
    for (size_t i = 0; g.extra != NULL && i < g.nextra; i++)
        msim_doc_unref(g.extra[i]);
    free(g.extra);
    if (g.failed) {
        bson_reinit(ctx->reply);
        *error = g.err;
        return false;
    }
    return ok;
}

/* coll_arg_of returns the collection a command names (its first field), or NULL. */
static const char *
coll_arg_of(const msim_ctx_t *ctx)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, ctx->cmd, ctx->name) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

/* routed_read: config.* and sharded collections are gathered, the rest passes through. */
static bool
routed_read(msim_ctx_t *ctx, msim_cmd_fn fn, mg_error_t *error)
{
    const char *coll = coll_arg_of(ctx);
    msim_scoll_t *sc;
    if (coll == NULL)
        return fn(ctx, error); /* the handler reports the bad argument */
    if (strcmp(ctx->db, "config") == 0)
        return read_via(ctx, fn, NULL, NULL, 0, error);
    sc = msim_cluster_scoll(CL(), ctx->db, coll);
    if (sc == NULL)
        return passthrough(ctx, primary_of(ctx->db, false), error);
    return read_via(ctx, fn, sc, NULL, 0, error);
}

static bool
r_find(msim_ctx_t *ctx, mg_error_t *error)
{
    return routed_read(ctx, msim_cmd_find, error);
}

static bool
r_count(msim_ctx_t *ctx, mg_error_t *error)
{
    return routed_read(ctx, msim_cmd_count, error);
}

static bool
r_distinct(msim_ctx_t *ctx, mg_error_t *error)
{
    return routed_read(ctx, msim_cmd_distinct, error);
}

/* coll_stats_docs: one $collStats document per shard holding the collection,
 * with its "shard", as mongos returns them. */
static bool
coll_stats_docs(msim_ctx_t *ctx, const char *coll, const bson_iter_t *spec, msim_scoll_t *sc,
                msim_doc_t ***out, size_t *n, mg_error_t *error)
{
    bool mask[MAX_SHARDS];
    size_t cap = 0;
    bool ok = true;
    memset(mask, 0, sizeof mask);
    if (sc != NULL) {
        pthread_rwlock_rdlock(&sc->route);
        msim_scoll_shards(sc, mask);
        pthread_rwlock_unlock(&sc->route);
    }
    mask[primary_of(ctx->db, false)] = true;
    *out = NULL;
    *n = 0;
    for (int s = 0; s < CL()->nshards && ok; s++) {
        bson_t body = BSON_INITIALIZER, pipe, st, cur, reply;
        bson_iter_t it, c, b;
        if (!mask[s])
            continue;
        BSON_APPEND_UTF8(&body, "aggregate", coll);
        bson_append_array_begin(&body, "pipeline", -1, &pipe);
        bson_append_document_begin(&pipe, "0", -1, &st);
        msim_append_iter(&st, "$collStats", -1, spec);
        bson_append_document_end(&pipe, &st);
        bson_append_array_end(&body, &pipe);
        bson_append_document_begin(&body, "cursor", -1, &cur);
        bson_append_document_end(&body, &cur);
        ok = shard_run(ctx, NULL, s, NULL, &body, NULL, &reply, error);
        if (ok && bson_iter_init_find(&it, &reply, "cursor") && bson_iter_recurse(&it, &c) &&
            bson_iter_find(&c, "firstBatch") && bson_iter_recurse(&c, &b))
            while (bson_iter_next(&b)) {
                bson_t doc = BSON_INITIALIZER, in;
                const uint8_t *d;
                uint32_t l;
                bson_iter_document(&b, &l, &d);
                bson_init_static(&in, d, l);
                BSON_APPEND_UTF8(&doc, "shard", CL()->shards[s]->name);
                bson_concat(&doc, &in);
                push(out, n, &cap, msim_doc_from_bson(&doc));
                bson_destroy(&doc);
            }
        bson_destroy(&body);
        bson_destroy(&reply);
    }
    return ok;
}

static bool
r_aggregate(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_iter_t it, st, first;
    const char *coll = coll_arg_of(ctx), *stage = NULL;
    msim_scoll_t *sc;
    if (bson_iter_init_find(&it, ctx->cmd, "pipeline") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &st) && bson_iter_next(&st) && BSON_ITER_HOLDS_DOCUMENT(&st) &&
        bson_iter_recurse(&st, &first) && bson_iter_next(&first))
        stage = bson_iter_key(&first);
    if (stage != NULL && strcmp(stage, "$changeStream") == 0)
        return msim_route_stream_open(ctx, ctx->cmd, coll, error);
    if (coll == NULL)
        return passthrough(ctx, primary_of(ctx->db, false), error);
    if (strcmp(ctx->db, "config") == 0)
        return read_via(ctx, msim_cmd_aggregate, NULL, NULL, 0, error);
    sc = msim_cluster_scoll(CL(), ctx->db, coll);
    if (stage != NULL && strcmp(stage, "$collStats") == 0) {
        /* the per-shard documents feed the rest of the pipeline */
        msim_doc_t **docs;
        size_t n;
        bson_t cmd = BSON_INITIALIZER, pipe, m, empty = BSON_INITIALIZER;
        const bson_t *saved = ctx->cmd;
        uint32_t idx = 1;
        bool ok;
        if (!coll_stats_docs(ctx, coll, &first, sc, &docs, &n, error))
            return false;
        bson_iter_init(&it, ctx->cmd);
        while (bson_iter_next(&it)) {
            if (strcmp(bson_iter_key(&it), "pipeline") != 0) {
                msim_append_iter(&cmd, NULL, 0, &it);
                continue;
            }
            bson_append_array_begin(&cmd, "pipeline", -1, &pipe);
            bson_append_document_begin(&pipe, "0", -1, &m);
            BSON_APPEND_DOCUMENT(&m, "$match", &empty);
            bson_append_document_end(&pipe, &m);
            bson_iter_recurse(&it, &st);
            bson_iter_next(&st);
            while (bson_iter_next(&st)) {
                char k[16];
                const char *ks;
                bson_uint32_to_string(idx++, &ks, k, sizeof k);
                msim_append_iter(&pipe, ks, -1, &st);
            }
            bson_append_array_end(&cmd, &pipe);
        }
        ctx->cmd = &cmd;
        ok = read_via(ctx, msim_cmd_aggregate, NULL, docs, n, error);
        ctx->cmd = saved;
        bson_destroy(&cmd);
        bson_destroy(&empty);
        return ok;
    }
    if (sc == NULL)
        return passthrough(ctx, primary_of(ctx->db, false), error);
    return read_via(ctx, msim_cmd_aggregate, sc, NULL, 0, error);
}

/* ------------------------------------------------------------------------
 * Writes
 * ------------------------------------------------------------------------ */

/* write_errors appends a shard's writeErrors to errs with their index moved by base. */
static void
write_errors(const bson_t *reply, int32_t base, bson_t *errs, uint32_t *nerr)
{
    bson_iter_t it, e;
    if (!bson_iter_init_find(&it, reply, "writeErrors") || !bson_iter_recurse(&it, &e))
        return;
    while (bson_iter_next(&e)) {
        bson_t we;
        bson_iter_t f;
        char k[16];
        const char *ks;
        bson_uint32_to_string((*nerr)++, &ks, k, sizeof k);
        bson_append_document_begin(errs, ks, -1, &we);
        bson_iter_recurse(&e, &f);
        while (bson_iter_next(&f)) {
            if (strcmp(bson_iter_key(&f), "index") == 0) {
                int64_t i = 0;
                msim_iter_int64(&f, &i);
                BSON_APPEND_INT32(&we, "index", base + (int32_t)i);
            } else {
                msim_append_iter(&we, NULL, 0, &f);
            }
        }
        bson_append_document_end(errs, &we);
    }
}

static int32_t
int_field(const bson_t *reply, const char *key)
{
    bson_iter_t it;
    int64_t v = 0;
    if (bson_iter_init_find(&it, reply, key))
        msim_iter_int64(&it, &v);
    return (int32_t)v;
}

/* with_id returns doc with an _id (a new ObjectId first when it has none). */
static bson_t *
with_id(const uint8_t *d, uint32_t l)
{
    bson_t in, *out = bson_new();
    bson_iter_t id;
    bson_init_static(&in, d, l);
    if (!bson_iter_init_find(&id, &in, "_id")) {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        BSON_APPEND_OID(out, "_id", &oid);
    }
    bson_concat(out, &in);
    return out;
}

/* flush_insert sends the batch docs (indexes base..) to shard s. */
static bool
flush_insert(msim_ctx_t *ctx, rtx_t *rt, msim_scoll_t *sc, int s, const char *coll, bson_t *batch,
             int32_t base, bool ordered, int32_t *n, bson_t *errs, uint32_t *nerr,
             mg_error_t *error)
{
    bson_t body = BSON_INITIALIZER, reply;
    bool ok;
    BSON_APPEND_UTF8(&body, "insert", coll);
    BSON_APPEND_ARRAY(&body, "documents", batch);
    BSON_APPEND_BOOL(&body, "ordered", ordered);
    ok = shard_run(ctx, rt, s, sc, &body, NULL, &reply, error);
    if (ok) {
        *n += int_field(&reply, "n");
        write_errors(&reply, base, errs, nerr);
    }
    bson_destroy(&body);
    bson_destroy(&reply);
    return ok;
}

static bool
r_insert(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = coll_arg_of(ctx);
    msim_scoll_t *sc;
    bson_iter_t it, docs;
    bson_t batch = BSON_INITIALIZER, errs = BSON_INITIALIZER;
    uint32_t nerr = 0, nb = 0;
    int32_t n = 0, index = 0, base = 0;
    int cur = -1;
    bool ordered = msim_ordered_arg(ctx->cmd), ok = true;
    rtx_t rt;
    if (coll == NULL || (sc = msim_cluster_scoll(CL(), ctx->db, coll)) == NULL)
        return passthrough(ctx, primary_of(ctx->db, true), error);
    if (!bson_iter_init_find(&it, ctx->cmd, "documents") || !BSON_ITER_HOLDS_ARRAY(&it))
        return passthrough(ctx, primary_of(ctx->db, true), error); /* the shard reports it */
    if (!rtx_begin(ctx, &rt, error))
        return false;
    bson_iter_recurse(&it, &docs);
    pthread_rwlock_rdlock(&sc->route);
    while (ok && bson_iter_next(&docs)) {
        bson_t key = BSON_INITIALIZER, *doc;
        mg_error_t e;
        const uint8_t *d;
        uint32_t l;
        int s;
        if (!BSON_ITER_HOLDS_DOCUMENT(&docs)) {
            msim_fail(&e, MSIM_E_TYPE_MISMATCH, "document to insert must be an object");
            msim_write_error(&errs, &nerr, index++, &e);
            if (ordered)
                break;
            continue;
        }
        bson_iter_document(&docs, &l, &d);
        doc = with_id(d, l);
        if (!msim_shardkey_of(sc->key, bson_get_data(doc), doc->len, &key, &e)) {
            bson_destroy(doc);
            bson_destroy(&key);
            msim_write_error(&errs, &nerr, index++, &e);
            if (ordered)
                break;
            continue;
        }
        s = sc->chunks[msim_scoll_chunk_of(sc, &key)].shard;
        bson_destroy(&key);
        if (s != cur && nb > 0) {
            uint32_t before = nerr;
            ok = flush_insert(ctx, &rt, sc, cur, coll, &batch, base, ordered, &n, &errs, &nerr,
                              error);
            bson_reinit(&batch);
            nb = 0;
            if (ok && ordered && nerr > before) {
                bson_destroy(doc);
                break;
            }
        }
        if (nb == 0) {
            cur = s;
            base = index;
        }
        {
            char k[16];
            const char *ks;
            bson_uint32_to_string(nb++, &ks, k, sizeof k);
            bson_append_document(&batch, ks, -1, doc);
        }
        bson_destroy(doc);
        index++;
    }
    if (ok && nb > 0)
        ok = flush_insert(ctx, &rt, sc, cur, coll, &batch, base, ordered, &n, &errs, &nerr, error);
    pthread_rwlock_unlock(&sc->route);
    if (ok) {
        BSON_APPEND_INT32(ctx->reply, "n", n);
        if (nerr > 0)
            BSON_APPEND_ARRAY(ctx->reply, "writeErrors", &errs);
    }
    bson_destroy(&batch);
    bson_destroy(&errs);
    return ok;
}

/* touches_key: an update modifies a shard key field (mongosim does not move documents). */
static bool
touches_key(const msim_scoll_t *sc, const bson_iter_t *u, const bson_t *q, mg_error_t *error)
{
    bson_iter_t ops, p;
    if (BSON_ITER_HOLDS_DOCUMENT(u) && bson_iter_recurse(u, &ops) && bson_iter_next(&ops) &&
        bson_iter_key(&ops)[0] != '$') {
        /* a replacement keeps the key the filter pins */
        bson_t want = BSON_INITIALIZER, got = BSON_INITIALIZER;
        const uint8_t *d;
        uint32_t l;
        bool same;
        bson_iter_document(u, &l, &d);
        same = exact_key(sc, q, &want) && msim_shardkey_of(sc->key, d, l, &got, NULL) &&
               msim_shardkey_cmp(&want, &got) == 0;
        bson_destroy(&want);
        bson_destroy(&got);
        return !same &&
               !msim_fail(error, MSIM_E_IMMUTABLE_FIELD,
                          "a replacement on a sharded collection must keep the shard key the "
                          "filter pins (mongosim does not move documents between shards)");
    }
    if (!BSON_ITER_HOLDS_DOCUMENT(u) || !bson_iter_recurse(u, &ops))
        return false;
    while (bson_iter_next(&ops)) {
        bson_iter_t f;
        if (strcmp(bson_iter_key(&ops), "$setOnInsert") == 0 || !bson_iter_recurse(&ops, &f))
            continue;
        while (bson_iter_next(&f)) {
            bson_iter_init(&p, sc->key);
            while (bson_iter_next(&p)) {
                size_t kl = strlen(bson_iter_key(&p)), fl = strlen(bson_iter_key(&f));
                const char *a = bson_iter_key(&p), *b = bson_iter_key(&f);
                size_t m = kl < fl ? kl : fl;
                if (strncmp(a, b, m) == 0 && (kl == fl || a[m] == '.' || b[m] == '.'))
                    return !msim_fail(error, MSIM_E_IMMUTABLE_FIELD,
                                      "Performing an update on the path '%s' would modify the "
                                      "shard key field '%s' (mongosim does not move documents "
                                      "between shards)",
                                      b, a);
            }
        }
    }
    return false;
}

/* one_stmt runs one update/delete statement on the shards it targets:
 * exact key: its owner; multi: all; single without key: each until one matches. */
static bool
one_stmt(msim_ctx_t *ctx, rtx_t *rt, msim_scoll_t *sc, const char *coll, bool is_update,
         const bson_t *stmt, bool multi, int32_t index, int32_t *n, int32_t *nmod, bson_t *upserted,
         uint32_t *nups, bson_t *errs, uint32_t *nerr, mg_error_t *error)
{
    bool mask[MAX_SHARDS];
    bson_t q = BSON_INITIALIZER, key = BSON_INITIALIZER;
    bson_iter_t it;
    bool exact, ok = true;
    if (bson_iter_init_find(&it, stmt, "q") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *d;
        uint32_t l;
        bson_t v;
        bson_iter_document(&it, &l, &d);
        bson_init_static(&v, d, l);
        bson_concat(&q, &v);
    }
    exact = exact_key(sc, &q, &key);
    memset(mask, 0, sizeof mask);
    if (exact)
        mask[sc->chunks[msim_scoll_chunk_of(sc, &key)].shard] = true;
    else
        msim_scoll_shards(sc, mask);
    bson_destroy(&key);
    if (is_update) {
        bson_iter_t u, up;
        mg_error_t e;
        bool upsert = bson_iter_init_find(&up, stmt, "upsert") && msim_truthy(&up);
        if (upsert && !exact) {
            msim_fail(&e, 61,
                      "Failed to target upsert by query :: could not extract exact shard key");
            msim_write_error(errs, nerr, index, &e);
            bson_destroy(&q);
            return true;
        }
        if (bson_iter_init_find(&u, stmt, "u") && touches_key(sc, &u, &q, &e)) {
            msim_write_error(errs, nerr, index, &e);
            bson_destroy(&q);
            return true;
        }
    }
    for (int s = 0; s < CL()->nshards && ok; s++) {
        bson_t body = BSON_INITIALIZER, arr, reply;
        int32_t got;
        if (!mask[s])
            continue;
        BSON_APPEND_UTF8(&body, is_update ? "update" : "delete", coll);
        bson_append_array_begin(&body, is_update ? "updates" : "deletes", -1, &arr);
        BSON_APPEND_DOCUMENT(&arr, "0", stmt);
        bson_append_array_end(&body, &arr);
        ok = shard_run(ctx, rt, s, sc, &body, NULL, &reply, error);
        bson_destroy(&body);
        if (!ok) {
            bson_destroy(&reply);
            break;
        }
        got = int_field(&reply, "n");
        *n += got;
        if (nmod != NULL)
            *nmod += int_field(&reply, "nModified");
        write_errors(&reply, index, errs, nerr);
        if (upserted != NULL && bson_iter_init_find(&it, &reply, "upserted")) {
            bson_iter_t e, f;
            bson_iter_recurse(&it, &e);
            while (bson_iter_next(&e)) {
                bson_t up;
                char k[16];
                const char *ks;
                bson_uint32_to_string((*nups)++, &ks, k, sizeof k);
                bson_append_document_begin(upserted, ks, -1, &up);
                BSON_APPEND_INT32(&up, "index", index);
                if (bson_iter_recurse(&e, &f) && bson_iter_find(&f, "_id"))
                    msim_append_iter(&up, "_id", 3, &f);
                bson_append_document_end(upserted, &up);
            }
        }
        bson_destroy(&reply);
        if (!multi && got > 0)
            break; /* a single update/delete without the key: the first shard that matched */
    }
    bson_destroy(&q);
    return ok;
}

static bool
routed_write(msim_ctx_t *ctx, bool is_update, mg_error_t *error)
{
    const char *coll = coll_arg_of(ctx), *arr_key = is_update ? "updates" : "deletes";
    msim_scoll_t *sc;
    bson_iter_t it, stmts;
    bson_t errs = BSON_INITIALIZER, upserted = BSON_INITIALIZER;
    uint32_t nerr = 0, nups = 0;
    int32_t n = 0, nmod = 0, index = 0;
    bool ordered = msim_ordered_arg(ctx->cmd), ok = true;
    rtx_t rt;
    if (coll == NULL || (sc = msim_cluster_scoll(CL(), ctx->db, coll)) == NULL ||
        !bson_iter_init_find(&it, ctx->cmd, arr_key) || !BSON_ITER_HOLDS_ARRAY(&it))
        return passthrough(ctx, primary_of(ctx->db, true), error);
    if (!rtx_begin(ctx, &rt, error))
        return false;
    bson_iter_recurse(&it, &stmts);
    pthread_rwlock_rdlock(&sc->route);
    while (ok && bson_iter_next(&stmts)) {
        bson_t stmt;
        bson_iter_t f;
        bool multi = false;
        uint32_t before = nerr;
        const uint8_t *d;
        uint32_t l;
        if (!BSON_ITER_HOLDS_DOCUMENT(&stmts)) {
            mg_error_t e;
            msim_fail(&e, MSIM_E_TYPE_MISMATCH, "statement must be an object");
            msim_write_error(&errs, &nerr, index++, &e);
            if (ordered)
                break;
            continue;
        }
        bson_iter_document(&stmts, &l, &d);
        bson_init_static(&stmt, d, l);
        if (is_update)
            multi = bson_iter_init_find(&f, &stmt, "multi") && msim_truthy(&f);
        else
            multi = !(bson_iter_init_find(&f, &stmt, "limit") && msim_as_double(&f) == 1);
        ok = one_stmt(ctx, &rt, sc, coll, is_update, &stmt, multi, index, &n,
                      is_update ? &nmod : NULL, is_update ? &upserted : NULL, &nups, &errs, &nerr,
                      error);
        index++;
        if (ordered && nerr > before)
            break;
    }
    pthread_rwlock_unlock(&sc->route);
    if (ok) {
        BSON_APPEND_INT32(ctx->reply, "n", n);
        if (is_update) {
            BSON_APPEND_INT32(ctx->reply, "nModified", nmod);
            if (nups > 0)
                BSON_APPEND_ARRAY(ctx->reply, "upserted", &upserted);
        }
        if (nerr > 0)
            BSON_APPEND_ARRAY(ctx->reply, "writeErrors", &errs);
    }
    bson_destroy(&errs);
    bson_destroy(&upserted);
    return ok;
}

static bool
r_update(msim_ctx_t *ctx, mg_error_t *error)
{
    return routed_write(ctx, true, error);
}

static bool
r_delete(msim_ctx_t *ctx, mg_error_t *error)
{
    return routed_write(ctx, false, error);
}

/* best_candidate finds, over the targeted shards, the first document findAndModify
 * would pick (query + sort); its _id goes to *id (false: none). */
static bool
best_candidate(msim_ctx_t *ctx, rtx_t *rt, msim_scoll_t *sc, const char *coll, const bool *mask,
               bson_t *id_out, bool *found, mg_error_t *error)
{
    bson_iter_t it;
    msim_doc_t **docs = NULL;
    size_t n = 0, cap = 0;
    bson_t sort = BSON_INITIALIZER;
    bool ok = true;
    if (bson_iter_init_find(&it, ctx->cmd, "sort") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *d;
        uint32_t l;
        bson_t v;
        bson_iter_document(&it, &l, &d);
        bson_init_static(&v, d, l);
        bson_concat(&sort, &v);
    }
    for (int s = 0; s < CL()->nshards && ok; s++) {
        bson_t body = BSON_INITIALIZER, reply;
        int64_t cid;
        if (!mask[s])
            continue;
        BSON_APPEND_UTF8(&body, "find", coll);
        if (bson_iter_init_find(&it, ctx->cmd, "query"))
            msim_append_iter(&body, "filter", -1, &it);
        BSON_APPEND_DOCUMENT(&body, "sort", &sort);
        BSON_APPEND_INT32(&body, "limit", 1);
        ok = shard_run(ctx, rt, s, sc, &body, NULL, &reply, error);
        if (ok)
            take_batch(&reply, "firstBatch", &docs, &n, &cap, &cid);
        bson_destroy(&body);
        bson_destroy(&reply);
    }
    *found = false;
    if (ok && n > 0) {
        msim_sort_t *so = msim_sort_new(&sort, error);
        ok = so != NULL;
        if (ok) {
            bson_iter_t id;
            msim_sort_docs(so, docs, n);
            msim_sort_destroy(so);
            msim_doc_id(docs[0], &id);
            msim_append_iter(id_out, "_id", 3, &id);
            *found = true;
        }
    }
    for (size_t i = 0; i < n; i++)
        msim_doc_unref(docs[i]);
    free(docs);
    bson_destroy(&sort);
    return ok;
}

static bool
r_find_and_modify(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = coll_arg_of(ctx);
    msim_scoll_t *sc;
    bson_iter_t it;
    bson_t q = BSON_INITIALIZER, key = BSON_INITIALIZER, body = BSON_INITIALIZER, reply;
    bool mask[MAX_SHARDS], exact, ok = true, upsert;
    int s = -1;
    rtx_t rt;
    if (coll == NULL || (sc = msim_cluster_scoll(CL(), ctx->db, coll)) == NULL) {
        bson_destroy(&q);
        bson_destroy(&key);
        bson_destroy(&body);
        return passthrough(ctx, primary_of(ctx->db, true), error);
    }
    if (!rtx_begin(ctx, &rt, error)) {
        bson_destroy(&q);
        bson_destroy(&key);
        bson_destroy(&body);
        return false;
    }
    if (bson_iter_init_find(&it, ctx->cmd, "query") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *d;
        uint32_t l;
        bson_t v;
        bson_iter_document(&it, &l, &d);
        bson_init_static(&v, d, l);
        bson_concat(&q, &v);
    }
    upsert = bson_iter_init_find(&it, ctx->cmd, "upsert") && msim_truthy(&it);
    pthread_rwlock_rdlock(&sc->route);
    exact = exact_key(sc, &q, &key);
    if (bson_iter_init_find(&it, ctx->cmd, "update") && touches_key(sc, &it, &q, error)) {
        ok = false;
    } else if (exact) {
        s = sc->chunks[msim_scoll_chunk_of(sc, &key)].shard;
        body_of(ctx->cmd, &body);
    } else if (upsert) {
        ok = msim_fail(error, 61,
                       "Query for sharded findAndModify with upsert must contain the shard key");
    } else {
        /* without the key: find the document first, then modify it on its shard */
        bson_t id = BSON_INITIALIZER;
        bool found = false;
        memset(mask, 0, sizeof mask);
        msim_scoll_shards(sc, mask);
        ok = best_candidate(ctx, &rt, sc, coll, mask, &id, &found, error);
        if (ok && found) {
            bson_t and, a, one;
            bson_iter_t id_it;
            bson_iter_init_find(&id_it, &id, "_id");
            bson_iter_init(&it, ctx->cmd);
            while (bson_iter_next(&it)) {
                if (is_session_field(bson_iter_key(&it)))
                    continue;
                if (strcmp(bson_iter_key(&it), "query") != 0) {
                    msim_append_iter(&body, NULL, 0, &it);
                    continue;
                }
                bson_append_document_begin(&body, "query", -1, &and);
                bson_append_array_begin(&and, "$and", -1, &a);
                BSON_APPEND_DOCUMENT(&a, "0", &q);
                bson_append_document_begin(&a, "1", -1, &one);
                msim_append_iter(&one, "_id", 3, &id_it);
                bson_append_document_end(&a, &one);
                bson_append_array_end(&and, &a);
                bson_append_document_end(&body, &and);
            }
            /* the shard that owns it */
            for (int k = 0; k < CL()->nshards && s < 0; k++)
                if (mask[k])
                    s = k; /* refined below by an exact probe */
            {
                bson_t probe = BSON_INITIALIZER, pr;
                for (int k = 0; k < CL()->nshards && ok; k++) {
                    int64_t cid;
                    msim_doc_t **docs = NULL;
                    size_t nd = 0, cap = 0;
                    if (!mask[k])
                        continue;
                    bson_reinit(&probe);
                    BSON_APPEND_UTF8(&probe, "find", coll);
                    BSON_APPEND_DOCUMENT(&probe, "filter", &id);
                    ok = shard_run(ctx, &rt, k, sc, &probe, NULL, &pr, error);
                    if (ok)
                        take_batch(&pr, "firstBatch", &docs, &nd, &cap, &cid);
                    if (nd > 0)
                        s = k;
                    for (size_t x = 0; x < nd; x++)
                        msim_doc_unref(docs[x]);
                    free(docs);
                    bson_destroy(&pr);
                }
                bson_destroy(&probe);
            }
        } else if (ok) {
            s = primary_of(ctx->db, false); /* nothing matches anywhere */
            body_of(ctx->cmd, &body);
        }
        bson_destroy(&id);
    }
    if (ok) {
        ok = shard_run(ctx, &rt, s, sc, &body, NULL, &reply, error);
        if (ok)
            copy_reply(ctx, &reply, false);
        bson_destroy(&reply);
    }
    pthread_rwlock_unlock(&sc->route);
    bson_destroy(&q);
    bson_destroy(&key);
    bson_destroy(&body);
    return ok;
}

/* ------------------------------------------------------------------------
 * Catalog and DDL
 * ------------------------------------------------------------------------ */

static bool
r_create(msim_ctx_t *ctx, mg_error_t *error)
{
    return passthrough(ctx, primary_of(ctx->db, true), error);
}

static bool
r_primary_read(msim_ctx_t *ctx, mg_error_t *error)
{
    return passthrough(ctx, primary_of(ctx->db, false), error);
}

static bool
r_list_collections(msim_ctx_t *ctx, mg_error_t *error)
{
    static const char *const config[] = {"chunks",   "collections", "databases",
                                         "settings", "shards",      NULL};
    bson_t cur, batch;
    if (strcmp(ctx->db, "config") != 0)
        return r_primary_read(ctx, error);
    bson_append_document_begin(ctx->reply, "cursor", -1, &cur);
    BSON_APPEND_INT64(&cur, "id", 0);
    BSON_APPEND_UTF8(&cur, "ns", "config.$cmd.listCollections");
    bson_append_array_begin(&cur, "firstBatch", -1, &batch);
    for (int i = 0; config[i] != NULL; i++) {
        bson_t d, o;
        char k[16];
        const char *ks;
        bson_uint32_to_string((uint32_t)i, &ks, k, sizeof k);
        bson_append_document_begin(&batch, ks, -1, &d);
        BSON_APPEND_UTF8(&d, "name", config[i]);
        BSON_APPEND_UTF8(&d, "type", "collection");
        bson_append_document_begin(&d, "options", -1, &o);
        bson_append_document_end(&d, &o);
        bson_append_document_end(&batch, &d);
    }
    bson_append_array_end(&cur, &batch);
    bson_append_document_end(ctx->reply, &cur);
    return true;
}

/* on_all runs the command body on every shard in mask; the reply is the
 * primary's, with every shard's under "raw" (as mongos). */
static bool
on_all(msim_ctx_t *ctx, const bool *mask, int primary, mg_error_t *error)
{
    bson_t body = BSON_INITIALIZER, raw, primary_reply = BSON_INITIALIZER;
    bool ok = true;
    rtx_t rt;
    if (!rtx_begin(ctx, &rt, error)) {
        bson_destroy(&body);
        bson_destroy(&primary_reply);
        return false;
    }
    body_of(ctx->cmd, &body);
    bson_init(&raw);
    for (int s = 0; s < CL()->nshards && ok; s++) {
        bson_t reply;
        if (!mask[s] && s != primary)
            continue;
        ok = shard_run(ctx, &rt, s, NULL, &body, NULL, &reply, error);
        if (ok) {
            char name[160];
            snprintf(name, sizeof name, "%s/%s:%d", CL()->shards[s]->name, CL()->shards[s]->bind,
                     CL()->shards[s]->port);
            BSON_APPEND_DOCUMENT(&raw, name, &reply);
            if (s == primary) {
                bson_reinit(&primary_reply);
                bson_concat(&primary_reply, &reply);
            }
        }
        bson_destroy(&reply);
    }
    if (ok) {
        copy_reply(ctx, &primary_reply, false);
        BSON_APPEND_DOCUMENT(ctx->reply, "raw", &raw);
    }
    bson_destroy(&raw);
    bson_destroy(&body);
    bson_destroy(&primary_reply);
    return ok;
}

static bool
r_indexes(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = coll_arg_of(ctx);
    msim_scoll_t *sc = coll ? msim_cluster_scoll(CL(), ctx->db, coll) : NULL;
    bool mask[MAX_SHARDS];
    int primary = primary_of(ctx->db, strcmp(ctx->name, "createIndexes") == 0);
    memset(mask, 0, sizeof mask);
    if (sc == NULL)
        return passthrough(ctx, primary, error);
    for (int s = 0; s < CL()->nshards; s++)
        mask[s] = true; /* the collection exists on every shard */
    return on_all(ctx, mask, primary, error);
}

/* quiet_drop drops db.coll on shard s as an internal (fromMigrate) write. */
static void
quiet_drop(int s, const char *db, const char *coll)
{
    msim_server_t *prev = msim_srv;
    msim_srv = CL()->shards[s];
    msim_drop_quiet(db, coll);
    msim_srv = prev;
}

static bool
r_drop(msim_ctx_t *ctx, mg_error_t *error)
{
    const char *coll = coll_arg_of(ctx);
    msim_scoll_t *sc = coll ? msim_cluster_scoll(CL(), ctx->db, coll) : NULL;
    int primary = primary_of(ctx->db, false);
    bool ok;
    if (sc == NULL)
        return passthrough(ctx, primary, error);
    if (!msim_write_allowed(ctx->db, error))
        return false;
    pthread_mutex_lock(&CL()->migrate_mu);
    pthread_rwlock_wrlock(&sc->route);
    /* the primary's drop is the one event; the other shards drop quietly */
    ok = passthrough(ctx, primary, error);
    if (ok) {
        for (int s = 0; s < CL()->nshards; s++)
            if (s != primary)
                quiet_drop(s, ctx->db, coll);
        pthread_mutex_lock(&CL()->mu);
        sc->dropped = true;
        pthread_mutex_unlock(&CL()->mu);
    }
    pthread_rwlock_unlock(&sc->route);
    pthread_mutex_unlock(&CL()->migrate_mu);
    return ok;
}

static bool
r_drop_database(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_cluster_t *cl = CL();
    int primary = primary_of(ctx->db, false);
    bool ok;
    if (!msim_write_allowed(ctx->db, error))
        return false;
    pthread_mutex_lock(&cl->migrate_mu);
    ok = passthrough(ctx, primary, error);
    if (ok) {
        for (int s = 0; s < cl->nshards; s++)
            if (s != primary) {
                msim_server_t *prev = msim_srv;
                msim_srv = cl->shards[s];
                msim_drop_database_quiet(ctx->db);
                msim_srv = prev;
            }
        pthread_mutex_lock(&cl->mu);
        for (size_t i = 0; i < cl->ncolls; i++)
            if (strcmp(cl->colls[i]->db, ctx->db) == 0)
                cl->colls[i]->dropped = true;
        for (size_t i = 0; i < cl->ndbs; i++)
            if (strcmp(cl->dbs[i].name, ctx->db) == 0) {
                cl->dbs[i] = cl->dbs[--cl->ndbs];
                break;
            }
        pthread_mutex_unlock(&cl->mu);
    }
    pthread_mutex_unlock(&cl->migrate_mu);
    return ok;
}

static bool
r_rename(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_cluster_t *cl = CL();
    bson_iter_t it;
    char fdb[128] = "", tdb[128] = "";
    const char *from = NULL, *to = NULL, *fcoll = NULL, *tcoll = NULL, *dot;
    msim_scoll_t *sc;
    bool ok;
    if (bson_iter_init_find(&it, ctx->cmd, "renameCollection") && BSON_ITER_HOLDS_UTF8(&it))
        from = bson_iter_utf8(&it, NULL);
    if (bson_iter_init_find(&it, ctx->cmd, "to") && BSON_ITER_HOLDS_UTF8(&it))
        to = bson_iter_utf8(&it, NULL);
    if (from && (dot = strchr(from, '.')) && (size_t)(dot - from) < sizeof fdb) {
        snprintf(fdb, sizeof fdb, "%.*s", (int)(dot - from), from);
        fcoll = dot + 1;
    }
    if (to && (dot = strchr(to, '.')) && (size_t)(dot - to) < sizeof tdb) {
        snprintf(tdb, sizeof tdb, "%.*s", (int)(dot - to), to);
        tcoll = dot + 1;
    }
    if (fcoll == NULL || tcoll == NULL)
        return passthrough(ctx, 0, error); /* the shard names the bad namespace */
    sc = msim_cluster_scoll(cl, fdb, fcoll);
    if (strcmp(fdb, tdb) != 0) {
        if (sc != NULL)
            return msim_fail(error, MSIM_E_ILLEGAL_OPERATION,
                             "cannot rename a sharded collection to another database");
        if (primary_of(fdb, false) != primary_of(tdb, true))
            return msim_fail(error, MSIM_E_ILLEGAL_OPERATION,
                             "cannot rename across databases with different primary shards");
        return passthrough(ctx, primary_of(fdb, false), error);
    }
    if (sc == NULL)
        return passthrough(ctx, primary_of(fdb, false), error);
    if (msim_cluster_scoll(cl, tdb, tcoll) != NULL)
        return msim_fail(error, MSIM_E_ILLEGAL_OPERATION,
                         "cannot rename onto a sharded collection (mongosim)");
    pthread_mutex_lock(&cl->migrate_mu);
    pthread_rwlock_wrlock(&sc->route);
    ok = passthrough(ctx, primary_of(fdb, false), error);
    if (ok) {
        for (int s = 0; s < cl->nshards; s++)
            if (s != primary_of(fdb, false)) {
                msim_server_t *prev = msim_srv;
                msim_srv = cl->shards[s];
                msim_rename_quiet(fdb, fcoll, tcoll);
                msim_srv = prev;
            }
        pthread_mutex_lock(&cl->mu);
        snprintf(sc->coll, sizeof sc->coll, "%s", tcoll);
        snprintf(sc->ns, sizeof sc->ns, "%s.%s", tdb, tcoll);
        pthread_mutex_unlock(&cl->mu);
    }
    pthread_rwlock_unlock(&sc->route);
    pthread_mutex_unlock(&cl->migrate_mu);
    return ok;
}

/* sum_field adds a numeric field of a shard's stats. */
static int64_t
num(const bson_t *d, const char *k)
{
    bson_iter_t it;
    int64_t v = 0;
    if (bson_iter_init_find(&it, d, k) && msim_is_number(bson_iter_type(&it)))
        v = (int64_t)msim_as_double(&it);
    return v;
}

static bool
r_coll_stats(msim_ctx_t *ctx, mg_error_t *error)
{
    static const char *const sums[] = {"count",          "size",      "storageSize",
                                       "totalIndexSize", "totalSize", NULL};
    const char *coll = coll_arg_of(ctx);
    msim_scoll_t *sc = coll ? msim_cluster_scoll(CL(), ctx->db, coll) : NULL;
    int64_t totals[8] = {0};
    bson_t shards, body = BSON_INITIALIZER;
    bool ok = true;
    int nidx = 0;
    if (sc == NULL) {
        int p = primary_of(ctx->db, false);
        ok = passthrough(ctx, p, error);
        if (ok) {
            BSON_APPEND_BOOL(ctx->reply, "sharded", false);
            BSON_APPEND_UTF8(ctx->reply, "primary", CL()->shards[p]->name);
        }
        bson_destroy(&body);
        return ok;
    }
    body_of(ctx->cmd, &body);
    bson_init(&shards);
    for (int s = 0; s < CL()->nshards && ok; s++) {
        bson_t reply;
        ok = shard_run(ctx, NULL, s, NULL, &body, NULL, &reply, error);
        if (ok) {
            for (int k = 0; sums[k] != NULL; k++)
                totals[k] += num(&reply, sums[k]);
            nidx = (int)num(&reply, "nindexes");
            BSON_APPEND_DOCUMENT(&shards, CL()->shards[s]->name, &reply);
        }
        bson_destroy(&reply);
    }
    if (ok) {
        BSON_APPEND_BOOL(ctx->reply, "sharded", true);
        BSON_APPEND_UTF8(ctx->reply, "ns", sc->ns);
        for (int k = 0; sums[k] != NULL; k++)
            BSON_APPEND_INT64(ctx->reply, sums[k], totals[k]);
        BSON_APPEND_INT64(ctx->reply, "avgObjSize", totals[0] ? totals[1] / totals[0] : 0);
        BSON_APPEND_INT32(ctx->reply, "nindexes", nidx);
        BSON_APPEND_INT64(ctx->reply, "nchunks", (int64_t)sc->nchunks);
        BSON_APPEND_DOCUMENT(ctx->reply, "shards", &shards);
    }
    bson_destroy(&shards);
    bson_destroy(&body);
    return ok;
}

static bool
r_db_stats(msim_ctx_t *ctx, mg_error_t *error)
{
    static const char *const sums[] = {"collections", "objects",   "dataSize",  "storageSize",
                                       "indexes",     "indexSize", "totalSize", NULL};
    int64_t totals[8] = {0};
    bson_t raw, body = BSON_INITIALIZER;
    bool ok = true;
    body_of(ctx->cmd, &body);
    bson_init(&raw);
    for (int s = 0; s < CL()->nshards && ok; s++) {
        bson_t reply;
        ok = shard_run(ctx, NULL, s, NULL, &body, NULL, &reply, error);
        if (ok) {
            for (int k = 0; sums[k] != NULL; k++)
                totals[k] += num(&reply, sums[k]);
            BSON_APPEND_DOCUMENT(&raw, CL()->shards[s]->name, &reply);
        }
        bson_destroy(&reply);
    }
    if (ok) {
        BSON_APPEND_DOCUMENT(ctx->reply, "raw", &raw);
        BSON_APPEND_UTF8(ctx->reply, "db", ctx->db);
        for (int k = 0; sums[k] != NULL; k++)
            BSON_APPEND_INT64(ctx->reply, sums[k], totals[k]);
        BSON_APPEND_DOUBLE(ctx->reply, "avgObjSize",
                           totals[1] ? (double)totals[2] / (double)totals[1] : 0);
    }
    bson_destroy(&raw);
    bson_destroy(&body);
    return ok;
}

static bool
r_list_databases(msim_ctx_t *ctx, mg_error_t *error)
{
    char **names = NULL;
    int64_t *sizes = NULL;
    size_t n = 0, cap = 0;
    int64_t total = 0;
    bool ok = true, name_only = false;
    bson_t body = BSON_INITIALIZER, dbs;
    bson_iter_t it;
    if (bson_iter_init_find(&it, ctx->cmd, "nameOnly"))
        name_only = msim_truthy(&it);
    body_of(ctx->cmd, &body);
    for (int s = 0; s < CL()->nshards && ok; s++) {
        bson_t reply;
        bson_iter_t d, e;
        ok = shard_run(ctx, NULL, s, NULL, &body, NULL, &reply, error);
        if (ok && bson_iter_init_find(&d, &reply, "databases") && bson_iter_recurse(&d, &e))
            while (bson_iter_next(&e)) {
                bson_t db;
                const uint8_t *p;
                uint32_t l;
                bson_iter_t f;
                const char *name;
                size_t k;
                bson_iter_document(&e, &l, &p);
                bson_init_static(&db, p, l);
                if (!bson_iter_init_find(&f, &db, "name") || !BSON_ITER_HOLDS_UTF8(&f))
                    continue;
                name = bson_iter_utf8(&f, NULL);
                for (k = 0; k < n && strcmp(names[k], name) != 0; k++)
                    ;
                if (k == n) {
                    if (n == cap) {
                        cap = cap ? cap * 2 : 32;
                        names = realloc(names, cap * sizeof *names);
                        sizes = realloc(sizes, cap * sizeof *sizes);
                        if (names == NULL || sizes == NULL)
                            abort();
                    }
                    names[n] = strdup(name);
                    if (names[n] == NULL)
                        abort();
                    sizes[n++] = 0;
                }
                sizes[k] += num(&db, "sizeOnDisk");
            }
        bson_destroy(&reply);
    }
    bson_destroy(&body);
    if (!ok) {
        for (size_t k = 0; k < n; k++)
            free(names[k]);
        free(names);
        free(sizes);
        return false;
    }
    bson_append_array_begin(ctx->reply, "databases", -1, &dbs);
    for (size_t k = 0; k < n; k++) {
        bson_t d;
        char key[16];
        const char *ks;
        bson_uint32_to_string((uint32_t)k, &ks, key, sizeof key);
        bson_append_document_begin(&dbs, ks, -1, &d);
        BSON_APPEND_UTF8(&d, "name", names[k]);
        if (!name_only) {
            BSON_APPEND_INT64(&d, "sizeOnDisk", sizes[k]);
            BSON_APPEND_BOOL(&d, "empty", sizes[k] == 0);
        }
        bson_append_document_end(&dbs, &d);
        total += sizes[k];
        free(names[k]);
    }
    free(names);
    free(sizes);
    bson_append_array_end(ctx->reply, &dbs);
    if (!name_only)
        BSON_APPEND_INT64(ctx->reply, "totalSize", total);
    return true;
}

/* ------------------------------------------------------------------------
 * Sessions, transactions, write blocking, handshake
 * ------------------------------------------------------------------------ */

static bool
r_end_sessions(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_t body = BSON_INITIALIZER;
    (void)error;
    body_of(ctx->cmd, &body);
    for (int s = 0; s < CL()->nshards; s++) {
        bson_t reply;
        mg_error_t ignored;
        shard_run(ctx, NULL, s, NULL, &body, "admin", &reply, &ignored);
        bson_destroy(&reply);
    }
    bson_destroy(&body);
    return true;
}

static bool
r_commit(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_cluster_t *cl = CL();
    rtx_t rt;
    msim_server_t *members[MAX_SHARDS];
    int n = 0, only = -1;
    bool ok;
    if (!rtx_begin(ctx, &rt, error))
        return false;
    if (!rt.in_txn)
        return msim_fail(error, MSIM_E_INVALID_OPTIONS,
                         "commitTransaction must be run within a transaction");
    pthread_mutex_lock(&cl->mu);
    if (rt.t->committed) {
        pthread_mutex_unlock(&cl->mu);
        return true; /* a retried commit */
    }
    for (int s = 0; s < cl->nshards; s++)
        if (rt.t->part[s]) {
            members[n++] = cl->shards[s];
            only = s;
        }
    pthread_mutex_unlock(&cl->mu);
    if (n == 0) {
        ok = true; /* nothing ran */
    } else if (n == 1) {
        bson_t body = BSON_INITIALIZER, reply;
        BSON_APPEND_INT32(&body, "commitTransaction", 1);
        ok = shard_run(ctx, &rt, only, NULL, &body, "admin", &reply, error);
        bson_destroy(&body);
        bson_destroy(&reply);
    } else {
        ok = msim_txn_commit_shards(members, n, rt.lsid, rt.number, error);
    }
    pthread_mutex_lock(&cl->mu);
    rt.t->active = false;
    rt.t->committed = ok;
    pthread_mutex_unlock(&cl->mu);
    return ok;
}

static bool
r_abort(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_cluster_t *cl = CL();
    rtx_t rt;
    if (!rtx_begin(ctx, &rt, error))
        return false;
    if (!rt.in_txn)
        return msim_fail(error, MSIM_E_INVALID_OPTIONS,
                         "abortTransaction must be run within a transaction");
    for (int s = 0; s < cl->nshards; s++) {
        if (!rt.t->part[s])
            continue;
        {
            msim_server_t *prev = msim_srv;
            msim_srv = cl->shards[s];
            msim_txn_abort_session(rt.lsid);
            msim_srv = prev;
        }
    }
    pthread_mutex_lock(&cl->mu);
    rt.t->active = false;
    pthread_mutex_unlock(&cl->mu);
    return true;
}

static bool
r_set_user_write_block_mode(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_t body = BSON_INITIALIZER;
    bool ok = true;
    body_of(ctx->cmd, &body);
    /* every shard blocks; the reply's operationTime is the latest of their entries */
    for (int s = 0; s < CL()->nshards && ok; s++) {
        bson_t reply;
        ok = shard_run(ctx, NULL, s, NULL, &body, "admin", &reply, error);
        bson_destroy(&reply);
    }
    bson_destroy(&body);
    return ok;
}

static bool
r_hello(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_t *r = ctx->reply, tv;
    bson_iter_t it;
    bool legacy = strcmp(ctx->name, "hello") != 0;
    (void)error;
    if (bson_iter_init_find(&it, ctx->cmd, "client") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t app;
        if (bson_iter_recurse(&it, &app) &&
            bson_iter_find_descendant(&app, "application.name", &app) && BSON_ITER_HOLDS_UTF8(&app))
            snprintf(ctx->conn->app_name, sizeof ctx->conn->app_name, "%s",
                     bson_iter_utf8(&app, NULL));
    }
    if (bson_iter_init_find(&it, ctx->cmd, "helloOk") && msim_truthy(&it))
        BSON_APPEND_BOOL(r, "helloOk", true);
    BSON_APPEND_BOOL(r, legacy ? "ismaster" : "isWritablePrimary", true);
    BSON_APPEND_UTF8(r, "msg", "isdbgrid");
    bson_append_document_begin(r, "topologyVersion", -1, &tv);
    BSON_APPEND_OID(&tv, "processId", &msim_srv->process_id);
    BSON_APPEND_INT64(&tv, "counter", 0);
    bson_append_document_end(r, &tv);
    msim_hello_common(ctx);
    return true;
}

static bool
r_kill_cursors(msim_ctx_t *ctx, mg_error_t *error)
{
    return msim_cmd_kill_cursors(ctx, error);
}

static bool
r_get_more(msim_ctx_t *ctx, mg_error_t *error)
{
    return msim_cmd_get_more(ctx, error);
}

static const msim_cmd_entry_t router_commands[] = {
    {"hello", r_hello, true, 5, false},
    {"isMaster", r_hello, true, 5, false},
    {"ismaster", r_hello, true, 5, false},
    {"ping", msim_cmd_ping, true, 5, false},
    {"buildInfo", msim_cmd_build_info, true, 5, false},
    {"buildinfo", msim_cmd_build_info, true, 5, false},
    {"endSessions", r_end_sessions, true, 5, false},
    {"saslStart", msim_cmd_sasl_start, true, 5, false},
    {"saslContinue", msim_cmd_sasl_continue, true, 5, false},
    {"whatsmyuri", msim_cmd_whatsmyuri, true, 5, false},
    {"connectionStatus", msim_cmd_connection_status, true, 5, false},
    {"usersInfo", msim_cmd_users_info, false, 5, false},
    {"getParameter", msim_cmd_get_parameter, false, 5, false},
    {"serverStatus", msim_cmd_server_status, false, 5, false},
    {"listShards", msim_cmd_list_shards, false, 5, false},
    {"enableSharding", msim_cmd_enable_sharding, false, 5, false},
    {"enablesharding", msim_cmd_enable_sharding, false, 5, false},
    {"shardCollection", msim_cmd_shard_collection, false, 5, false},
    {"shardcollection", msim_cmd_shard_collection, false, 5, false},
    {"split", msim_cmd_split, false, 5, false},
    {"moveChunk", msim_cmd_move_chunk, false, 5, false},
    {"movechunk", msim_cmd_move_chunk, false, 5, false},
    {"balancerStatus", msim_cmd_balancer_status, false, 5, false},
    {"balancerStart", msim_cmd_balancer_start, false, 5, false},
    {"balancerStop", msim_cmd_balancer_stop, false, 5, false},
    {"listDatabases", r_list_databases, false, 5, false},
    {"listCollections", r_list_collections, false, 5, false},
    {"create", r_create, false, 5, false},
    {"collMod", r_primary_read, false, 5, false},
    {"drop", r_drop, false, 5, false},
    {"dropDatabase", r_drop_database, false, 5, false},
    {"renameCollection", r_rename, false, 5, false},
    {"createIndexes", r_indexes, false, 5, false},
    {"listIndexes", r_primary_read, false, 5, false},
    {"dropIndexes", r_indexes, false, 5, false},
    {"deleteIndexes", r_indexes, false, 5, false},
    {"collStats", r_coll_stats, false, 5, false},
    {"dbStats", r_db_stats, false, 5, false},
    {"setUserWriteBlockMode", r_set_user_write_block_mode, false, 5, false},
    {"configureFailPoint", msim_cmd_configure_fail_point, false, 5, false},
    {"insert", r_insert, false, 0, false},
    {"update", r_update, false, 2, false},
    {"delete", r_delete, false, 3, false},
    {"find", r_find, false, 1, false},
    {"findAndModify", r_find_and_modify, false, 5, false},
    {"findandmodify", r_find_and_modify, false, 5, false},
    {"count", r_count, false, 5, false},
    {"distinct", r_distinct, false, 5, false},
    {"getMore", r_get_more, false, 4, false},
    {"killCursors", r_kill_cursors, false, 5, false},
    {"aggregate", r_aggregate, false, 5, false},
    {"commitTransaction", r_commit, false, 5, false},
    {"abortTransaction", r_abort, false, 5, false},
};

const msim_cmd_entry_t *
msim_router_command(const char *name)
{
    for (size_t i = 0; i < sizeof router_commands / sizeof router_commands[0]; i++)
        if (strcmp(router_commands[i].name, name) == 0)
            return &router_commands[i];
    return NULL;
}
