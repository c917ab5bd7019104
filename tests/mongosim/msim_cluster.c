/*
 * tests/mongosim/msim_cluster.c - mongosim as a sharded cluster: N shard
 * members (each a one-member replica set "shardK" with its own oplog, in
 * this process) behind a router that speaks as mongos. This file holds the
 * routing catalog (databases with their primary shard, sharded collections
 * with their chunks), its config.* view, the sharding commands
 * (listShards, enableSharding, shardCollection, split, moveChunk,
 * balancer*), chunk migrations (copies and deletes written with
 * fromMigrate, so change streams never show them), the range deleter and a
 * toy balancer.
 *
 * Locks: cl->migrate_mu, then a collection's route lock (exclusive for
 * splits and migrations, shared for routed operations), then cl->mu
 * (briefly), then a shard's store lock.
 */
#include "msim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct msim_rdel {
    msim_rdel_t *next;
    int shard;
    char db[128], coll[128];
    bson_t *min, *max;
    int64_t due_ms;
};

static void
random_uuid(uint8_t *u)
{
    for (int i = 0; i < 16; i++)
        u[i] = (uint8_t)(rand() & 0xff);
    u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
    u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
}

msim_cluster_t *
msim_cluster_new(msim_server_t *router, int nshards)
{
    msim_cluster_t *cl = msim_zalloc(sizeof *cl);
    msim_ts_t max = router->own_clock.now;
    cl->nshards = nshards;
    cl->router = router;
    cl->shards = calloc((size_t)nshards, sizeof *cl->shards);
    cl->balancer_on = true;
    cl->balancer_interval_secs = 10;
    cl->orphan_delay_ms = 900 * 1000;
    pthread_mutex_init(&cl->clock.mu, NULL);
    pthread_mutex_init(&cl->mu, NULL);
    pthread_mutex_init(&cl->migrate_mu, NULL);
    pthread_mutex_init(&cl->wake_mu, NULL);
    pthread_cond_init(&cl->wake_cv, NULL);
    for (int i = 0; i < nshards; i++) {
        msim_server_t *s = msim_zalloc(sizeof *s);
        msim_server_init(s); /* makes s the thread's server */
        s->shard_index = i;
        snprintf(s->name, sizeof s->name, "shard%d", i);
        s->users = router->users;
        s->nusers = router->nusers;
        memcpy(s->decoy_salt, router->decoy_salt, sizeof s->decoy_salt);
        s->auth = router->auth;
        s->server_version = router->server_version;
        s->noop_interval_secs = router->noop_interval_secs;
        s->txn_lifetime_ms = router->txn_lifetime_ms;
        s->oplog_max_bytes = router->oplog_max_bytes;
        s->cursor_timeout_ms = router->cursor_timeout_ms;
        s->wait_cap_ms = router->wait_cap_ms;
        snprintf(s->bind, sizeof s->bind, "%s", router->bind);
        s->cluster = cl;
        if (msim_ts_cmp(s->own_clock.now, max) > 0)
            max = s->own_clock.now;
        cl->shards[i] = s;
    }
    cl->clock.now = max;
    for (int i = 0; i < nshards; i++)
        cl->shards[i]->clock = &cl->clock;
    router->clock = &cl->clock;
    router->cluster = cl;
    router->is_router = true;
    snprintf(router->name, sizeof router->name, "router");
    msim_srv = router;
    return cl;
}

void
msim_cluster_wake(msim_cluster_t *cl)
{
    pthread_mutex_lock(&cl->wake_mu);
    cl->wake_gen++;
    pthread_cond_broadcast(&cl->wake_cv);
    pthread_mutex_unlock(&cl->wake_mu);
}

/* ------------------------------------------------------------------------
 * Catalog
 * ------------------------------------------------------------------------ */

msim_sdb_t *
msim_cluster_db(msim_cluster_t *cl, const char *db, bool create)
{
    int *count;
    int best = 0;
    for (size_t i = 0; i < cl->ndbs; i++)
        if (strcmp(cl->dbs[i].name, db) == 0)
            return &cl->dbs[i];
    if (!create)
        return NULL;
    /* the new database's primary: the shard that is primary for the fewest */
    count = calloc((size_t)cl->nshards, sizeof *count);
    for (size_t i = 0; i < cl->ndbs; i++)
        count[cl->dbs[i].primary]++;
    for (int s = 1; s < cl->nshards; s++)
        if (count[s] < count[best])
            best = s;
    free(count);
    cl->dbs = realloc(cl->dbs, (cl->ndbs + 1) * sizeof *cl->dbs);
    if (cl->dbs == NULL)
        abort();
    memset(&cl->dbs[cl->ndbs], 0, sizeof cl->dbs[0]);
    snprintf(cl->dbs[cl->ndbs].name, sizeof cl->dbs[0].name, "%s", db);
    cl->dbs[cl->ndbs].primary = best;
    random_uuid(cl->dbs[cl->ndbs].uuid);
    cl->dbs[cl->ndbs].ts = msim_clock_now();
    return &cl->dbs[cl->ndbs++];
}

int
msim_cluster_primary(msim_cluster_t *cl, const char *db)
{
    int p;
    if (strcmp(db, "admin") == 0 || strcmp(db, "config") == 0)
        return 0;
    pthread_mutex_lock(&cl->mu);
    p = msim_cluster_db(cl, db, true)->primary;
    pthread_mutex_unlock(&cl->mu);
    return p;
}

msim_scoll_t *
msim_cluster_scoll(msim_cluster_t *cl, const char *db, const char *coll)
{
    msim_scoll_t *r = NULL;
    pthread_mutex_lock(&cl->mu);
    for (size_t i = 0; i < cl->ncolls && r == NULL; i++) {
        msim_scoll_t *sc = cl->colls[i];
        if (!sc->dropped && strcmp(sc->db, db) == 0 && strcmp(sc->coll, coll) == 0)
            r = sc;
    }
    pthread_mutex_unlock(&cl->mu);
    return r;
}

size_t
msim_scoll_chunk_of(const msim_scoll_t *sc, const bson_t *key)
{
    size_t lo = 0, hi = sc->nchunks;
    /* binary search: the last chunk whose min <= key */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (msim_shardkey_cmp(sc->chunks[mid].min, key) <= 0)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

void
msim_scoll_shards(const msim_scoll_t *sc, bool *mask)
{
    for (size_t i = 0; i < sc->nchunks; i++)
        mask[sc->chunks[i].shard] = true;
}

msim_owned_t *
msim_scoll_owned(const msim_scoll_t *sc, int shard)
{
    msim_owned_t *o = calloc(1, sizeof *o);
    if (o == NULL)
        abort();
    o->pattern = bson_copy(sc->key);
    o->min = calloc(sc->nchunks + 1, sizeof *o->min);
    o->max = calloc(sc->nchunks + 1, sizeof *o->max);
    for (size_t i = 0; i < sc->nchunks; i++) {
        if (sc->chunks[i].shard != shard)
            continue;
        o->min[o->n] = bson_copy(sc->chunks[i].min);
        o->max[o->n] = bson_copy(sc->chunks[i].max);
        o->n++;
    }
    return o;
}

/* bound_doc makes {field: MinKey|MaxKey...} for every field of the pattern. */
static bson_t *
bound_doc(const bson_t *pattern, bool max)
{
    bson_t *b = bson_new();
    bson_iter_t it;
    bson_iter_init(&it, pattern);
    while (bson_iter_next(&it)) {
        if (max)
            bson_append_maxkey(b, bson_iter_key(&it), -1);
        else
            bson_append_minkey(b, bson_iter_key(&it), -1);
    }
    return b;
}

/*
 * with_shard runs on shard i's store: switches the thread's server, takes
 * its store lock (write), and returns the previous server to restore with
 * end_shard.
 */
static msim_server_t *
with_shard(msim_cluster_t *cl, int i)
{
    msim_server_t *prev = msim_srv;
    msim_srv = cl->shards[i];
    pthread_rwlock_wrlock(&msim_srv->lock);
    return prev;
}

static void
end_shard(msim_server_t *prev)
{
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_oplog_publish();
    msim_srv = prev;
}

/* push_owned gives every shard the collection's key pattern and its own ranges. */
static void
push_owned(msim_cluster_t *cl, const msim_scoll_t *sc)
{
    for (int i = 0; i < cl->nshards; i++) {
        msim_server_t *prev = with_shard(cl, i);
        msim_coll_t *c = msim_catalog_get(sc->db, sc->coll);
        if (c != NULL) {
            if (c->shard_key == NULL)
                c->shard_key = bson_copy(sc->key);
            msim_owned_free(c->owned);
            c->owned = msim_scoll_owned(sc, i);
        }
        end_shard(prev);
    }
}

/* quiet_oplog marks the entry just appended as an internal (fromMigrate) write. */
static void
quiet_oplog(void)
{
    if (msim_srv->oplog_tail != NULL)
        msim_srv->oplog_tail->from_migrate = true;
}

/* ------------------------------------------------------------------------
 * config.* as the router shows it
 * ------------------------------------------------------------------------ */

static void
push_doc(msim_doc_t ***arr, size_t *n, size_t *cap, bson_t *b)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *arr = realloc(*arr, *cap * sizeof **arr);
        if (*arr == NULL)
            abort();
    }
    (*arr)[(*n)++] = msim_doc_from_bson(b);
    bson_destroy(b);
}

static void
append_ts(bson_t *b, const char *k, msim_ts_t t)
{
    bson_append_timestamp(b, k, -1, t.t, t.i);
}

/* snapshot_colls copies the live sharded collections' pointers (cl->mu taken). */
static msim_scoll_t **
snapshot_colls(msim_cluster_t *cl, size_t *n)
{
    msim_scoll_t **out;
    pthread_mutex_lock(&cl->mu);
    out = calloc(cl->ncolls + 1, sizeof *out);
    *n = 0;
    for (size_t i = 0; i < cl->ncolls; i++)
        if (!cl->colls[i]->dropped)
            out[(*n)++] = cl->colls[i];
    pthread_mutex_unlock(&cl->mu);
    return out;
}

static void
config_chunks(msim_scoll_t *sc, msim_doc_t ***arr, size_t *n, size_t *cap)
{
    pthread_rwlock_rdlock(&sc->route);
    for (size_t i = 0; i < sc->nchunks; i++) {
        msim_chunk_t *ch = &sc->chunks[i];
        bson_t *d = bson_new(), hist, h;
        char shard[32];
        snprintf(shard, sizeof shard, "shard%d", ch->shard);
        BSON_APPEND_OID(d, "_id", &ch->id);
        bson_append_binary(d, "uuid", -1, BSON_SUBTYPE_UUID, sc->uuid, 16);
        BSON_APPEND_DOCUMENT(d, "min", ch->min);
        BSON_APPEND_DOCUMENT(d, "max", ch->max);
        BSON_APPEND_UTF8(d, "shard", shard);
        bson_append_timestamp(d, "lastmod", -1, ch->major, ch->minor);
        append_ts(d, "onCurrentShardSince", ch->since);
        bson_append_array_begin(d, "history", -1, &hist);
        bson_append_document_begin(&hist, "0", -1, &h);
        append_ts(&h, "validAfter", ch->since);
        BSON_APPEND_UTF8(&h, "shard", shard);
        bson_append_document_end(&hist, &h);
        bson_append_array_end(d, &hist);
        push_doc(arr, n, cap, d);
    }
    pthread_rwlock_unlock(&sc->route);
}

msim_doc_t **
msim_cluster_config_docs(msim_cluster_t *cl, const char *coll, size_t *n)
{
    msim_doc_t **arr = NULL;
    size_t cap = 0;
    *n = 0;
    if (strcmp(coll, "shards") == 0) {
        for (int i = 0; i < cl->nshards; i++) {
            bson_t *d = bson_new();
            char id[32], host[160];
            snprintf(id, sizeof id, "shard%d", i);
            snprintf(host, sizeof host, "shard%d/%s:%d", i, cl->shards[i]->bind,
                     cl->shards[i]->port);
            BSON_APPEND_UTF8(d, "_id", id);
            BSON_APPEND_UTF8(d, "host", host);
            BSON_APPEND_INT32(d, "state", 1);
            append_ts(d, "topologyTime", cl->shards[0]->own_clock.now);
            push_doc(&arr, n, &cap, d);
        }
    } else if (strcmp(coll, "databases") == 0) {
        pthread_mutex_lock(&cl->mu);
        for (size_t i = 0; i < cl->ndbs; i++) {
            bson_t *d = bson_new(), v;
            char p[32];
            snprintf(p, sizeof p, "shard%d", cl->dbs[i].primary);
            BSON_APPEND_UTF8(d, "_id", cl->dbs[i].name);
            BSON_APPEND_UTF8(d, "primary", p);
            bson_append_document_begin(d, "version", -1, &v);
            bson_append_binary(&v, "uuid", -1, BSON_SUBTYPE_UUID, cl->dbs[i].uuid, 16);
            append_ts(&v, "timestamp", cl->dbs[i].ts);
            BSON_APPEND_INT32(&v, "lastMod", 1);
            bson_append_document_end(d, &v);
            push_doc(&arr, n, &cap, d);
        }
        pthread_mutex_unlock(&cl->mu);
    } else if (strcmp(coll, "collections") == 0 || strcmp(coll, "chunks") == 0) {
        size_t nc;
        msim_scoll_t **colls = snapshot_colls(cl, &nc);
        for (size_t i = 0; i < nc; i++) {
            msim_scoll_t *sc = colls[i];
            if (strcmp(coll, "chunks") == 0) {
                config_chunks(sc, &arr, n, &cap);
            } else {
                bson_t *d = bson_new();
                BSON_APPEND_UTF8(d, "_id", sc->ns);
                BSON_APPEND_OID(d, "lastmodEpoch", &sc->epoch);
                BSON_APPEND_DATE_TIME(d, "lastmod", sc->updated_ms);
                append_ts(d, "timestamp", sc->timestamp);
                bson_append_binary(d, "uuid", -1, BSON_SUBTYPE_UUID, sc->uuid, 16);
                BSON_APPEND_DOCUMENT(d, "key", sc->key);
                BSON_APPEND_BOOL(d, "unique", sc->unique);
                BSON_APPEND_BOOL(d, "noBalance", sc->no_balance);
                push_doc(&arr, n, &cap, d);
            }
        }
        free(colls);
    } else if (strcmp(coll, "settings") == 0) {
        bson_t *d = bson_new();
        BSON_APPEND_UTF8(d, "_id", "balancer");
        BSON_APPEND_UTF8(d, "mode", cl->balancer_on ? "full" : "off");
        BSON_APPEND_BOOL(d, "stopped", !cl->balancer_on);
        push_doc(&arr, n, &cap, d);
        d = bson_new();
        BSON_APPEND_UTF8(d, "_id", "chunksize");
        BSON_APPEND_INT32(d, "value", 128);
        push_doc(&arr, n, &cap, d);
    }
    if (arr == NULL)
        arr = malloc(sizeof *arr);
    return arr;
}

/* ------------------------------------------------------------------------
 * Commands
 * ------------------------------------------------------------------------ */

static msim_cluster_t *
cluster_of(msim_ctx_t *ctx, mg_error_t *error)
{
    if (msim_srv->cluster == NULL || !msim_srv->is_router) {
        msim_fail(error, MSIM_E_ILLEGAL_OPERATION,
                  "%s is only available on a router (mongosim --shards)", ctx->name);
        return NULL;
    }
    return msim_srv->cluster;
}

static bool
admin_only(msim_ctx_t *ctx, mg_error_t *error)
{
    if (strcmp(ctx->db, "admin") != 0)
        return msim_fail(error, MSIM_E_UNAUTHORIZED,
                         "%s may only be run against the admin database.", ctx->name);
    return true;
}

static bool
split_ns(const char *ns, char *db, size_t dbsz, char *coll, size_t csz)
{
    const char *dot = ns ? strchr(ns, '.') : NULL;
    if (dot == NULL || dot == ns || dot[1] == '\0' || (size_t)(dot - ns) >= dbsz ||
        strlen(dot + 1) >= csz)
        return false;
    snprintf(db, dbsz, "%.*s", (int)(dot - ns), ns);
    snprintf(coll, csz, "%s", dot + 1);
    return true;
}

static int
shard_by_name(const msim_cluster_t *cl, const char *name)
{
    for (int i = 0; i < cl->nshards; i++)
        if (strcmp(cl->shards[i]->name, name) == 0)
            return i;
    return -1;
}

bool
msim_cmd_list_shards(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_cluster_t *cl = cluster_of(ctx, error);
    msim_doc_t **docs;
    size_t n;
    bson_t arr;
    if (cl == NULL || !admin_only(ctx, error))
        return false;
    docs = msim_cluster_config_docs(cl, "shards", &n);
    bson_append_array_begin(ctx->reply, "shards", -1, &arr);
    for (size_t i = 0; i < n; i++) {
        bson_t d;
        char k[16];
        const char *ks;
        bson_uint32_to_string((uint32_t)i, &ks, k, sizeof k);
        bson_init_static(&d, docs[i]->data, docs[i]->len);
        bson_append_document(&arr, ks, -1, &d);
        msim_doc_unref(docs[i]);
    }
    bson_append_array_end(ctx->reply, &arr);
    free(docs);
    return true;
}

bool
msim_cmd_enable_sharding(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_cluster_t *cl = cluster_of(ctx, error);
    bson_iter_t it;
    const char *db;
    if (cl == NULL || !admin_only(ctx, error))
        return false;
    if (!bson_iter_init_find(&it, ctx->cmd, "enableSharding") || !BSON_ITER_HOLDS_UTF8(&it))
        return msim_fail(error, MSIM_E_TYPE_MISMATCH, "enableSharding takes a database name");
    db = bson_iter_utf8(&it, NULL);
    if (!msim_valid_coll_name(db, "x", error))
        return false;
    if (strcmp(db, "admin") == 0 || strcmp(db, "config") == 0 || strcmp(db, "local") == 0)
        return msim_fail(error, MSIM_E_INVALID_OPTIONS, "can't shard %s database", db);
    (void)msim_cluster_primary(cl, db);
    return true;
}

/* ensure_coll makes db.coll exist on shard i (lock held); quiet: a fromMigrate create. */
static msim_coll_t *
ensure_coll(const char *db, const char *coll, bool quiet, const msim_coll_t *like)
{
    bool created;
    msim_coll_t *c = msim_catalog_ensure(db, coll, &created);
    if (created) {
        if (like != NULL) {
            memcpy(c->uuid, like->uuid, 16);
            bson_concat(&c->options, &like->options);
            bson_destroy(&c->indexes);
            bson_copy_to(&like->indexes, &c->indexes);
            c->pre_post_images = like->pre_post_images;
        }
        msim_oplog_append(msim_oplog_entry_new("create", db, coll));
        if (quiet)
            quiet_oplog();
    }
    return c;
}

/* index_supports: c has an index whose key starts with the shard key pattern (lock held). */
static bool
index_supports(const msim_coll_t *c, const bson_t *pattern)
{
    bson_iter_t ix;
    bson_iter_init(&ix, &c->indexes);
    while (bson_iter_next(&ix)) {
        bson_iter_t k, kp, pp;
        bool ok = true;
        if (!bson_iter_recurse(&ix, &k) || !bson_iter_find(&k, "key") ||
            !BSON_ITER_HOLDS_DOCUMENT(&k) || !bson_iter_recurse(&k, &kp))
            continue;
        bson_iter_init(&pp, pattern);
        while (ok && bson_iter_next(&pp)) {
            ok = bson_iter_next(&kp) && strcmp(bson_iter_key(&kp), bson_iter_key(&pp)) == 0 &&
                 BSON_ITER_HOLDS_UTF8(&kp) == BSON_ITER_HOLDS_UTF8(&pp);
        }
        if (ok)
            return true;
    }
    return false;
}

/* add_key_index adds the shard key's index spec when no index supports it (lock held). */
static void
add_key_index(msim_coll_t *c, const bson_t *pattern, bool hashed)
{
    bson_t spec = BSON_INITIALIZER, *nidx;
    char name[256] = "";
    bson_iter_t it;
    const char *k;
    char key[16];
    if (index_supports(c, pattern))
        return;
    bson_iter_init(&it, pattern);
    while (bson_iter_next(&it)) {
        size_t l = strlen(name);
        snprintf(name + l, sizeof name - l, "%s%s_%s", l ? "_" : "", bson_iter_key(&it),
                 hashed ? "hashed" : "1");
    }
    BSON_APPEND_INT32(&spec, "v", 2);
    BSON_APPEND_DOCUMENT(&spec, "key", pattern);
    BSON_APPEND_UTF8(&spec, "name", name);
    nidx = bson_copy(&c->indexes);
    bson_uint32_to_string(bson_count_keys(&c->indexes), &k, key, sizeof key);
    bson_append_document(nidx, k, -1, &spec);
    bson_destroy(&c->indexes);
    bson_copy_to(nidx, &c->indexes);
    bson_destroy(nidx);
    bson_destroy(&spec);
}

/* hashed_split_point returns the i-th (of n - 1) initial split point of a
 * hashed key: evenly spaced and symmetric around 0, as mongod computes them. */
static int64_t
hashed_split_point(size_t i, size_t n)
{
    int64_t step = (INT64_MAX / (int64_t)n) * 2;
    int64_t half = (int64_t)(n / 2);
    int64_t k = (int64_t)i - half; /* -half .. half-1 (even n: with 0) */
    if (n % 2 == 0)
        return (k + 1) * step;
    return k >= 0 ? step / 2 + k * step : -(step / 2) + (k + 1) * step;
}

/* initial_chunks fills sc's chunks: one on the primary, or for an empty
 * hashed collection n chunks over the hash space spread over the shards. */
static void
initial_chunks(msim_cluster_t *cl, msim_scoll_t *sc, int primary, bool empty, int64_t want)
{
    size_t n = (sc->hashed && empty) ? (size_t)want : 1;
    const char *field = NULL;
    bson_iter_t it;
    msim_ts_t now = msim_clock_now();
    bson_iter_init(&it, sc->key);
    if (bson_iter_next(&it))
        field = bson_iter_key(&it);
    sc->chunks = calloc(n, sizeof *sc->chunks);
    sc->nchunks = n;
    for (size_t i = 0; i < n; i++) {
        msim_chunk_t *ch = &sc->chunks[i];
        if (i == 0) {
            ch->min = bound_doc(sc->key, false);
        } else {
            ch->min = bson_new();
            bson_append_int64(ch->min, field, -1, hashed_split_point(i - 1, n));
        }
        if (i > 0)
            sc->chunks[i - 1].max = bson_copy(ch->min);
        ch->shard = n == 1 ? primary : (int)(i % (size_t)cl->nshards);
        ch->major = 1;
        ch->minor = (uint32_t)i;
        ch->since = now;
        bson_oid_init(&ch->id, NULL);
    }
    sc->chunks[n - 1].max = bound_doc(sc->key, true);
    sc->major = 1;
}

/* keys_usable: every document of c has a usable shard key (primary's lock held). */
static bool
keys_usable(msim_coll_t *c, const bson_t *pattern, mg_error_t *error)
{
    msim_coll_iter_t ci;
    msim_doc_t *d;
    bool ok = true;
    msim_coll_iter_first(c, &ci);
    while (ok && (d = msim_coll_iter_next(&ci)) != NULL) {
        bson_t k = BSON_INITIALIZER;
        ok = msim_shardkey_of(pattern, d->data, d->len, &k, error);
        bson_destroy(&k);
    }
    return ok;
}

/* create_everywhere makes db.coll exist on every shard but the primary with
 * the primary's UUID, indexes and options, plus the shard key's index. */
static void
create_everywhere(msim_cluster_t *cl, int primary, const char *db, const char *coll,
                  const bson_t *pattern, bool hashed)
{
    for (int i = 0; i < cl->nshards; i++) {
        msim_server_t *prev;
        msim_coll_t *like, *c, tmp;
        if (i == primary)
            continue;
        /* copy what the new shard needs under the primary's lock */
        prev = with_shard(cl, primary);
        like = msim_catalog_get(db, coll);
        memset(&tmp, 0, sizeof tmp);
        memcpy(tmp.uuid, like->uuid, 16);
        bson_copy_to(&like->options, &tmp.options);
        bson_copy_to(&like->indexes, &tmp.indexes);
        tmp.pre_post_images = like->pre_post_images;
        pthread_rwlock_unlock(&msim_srv->lock);
        msim_srv = prev;
        prev = with_shard(cl, i);
        c = ensure_coll(db, coll, true, &tmp);
        add_key_index(c, pattern, hashed);
        bson_destroy(&tmp.options);
        bson_destroy(&tmp.indexes);
        end_shard(prev);
    }
}

bool
msim_cmd_shard_collection(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_cluster_t *cl = cluster_of(ctx, error);
    bson_iter_t it;
    const char *ns;
    char db[128], coll[128];
    bson_t pattern;
    bool hashed, unique = false, empty = true, ok = true;
    int64_t want = 0;
    int primary;
    msim_scoll_t *sc;
    msim_coll_t *pc;
    msim_server_t *prev;

    if (cl == NULL || !admin_only(ctx, error))
        return false;
    if (!bson_iter_init_find(&it, ctx->cmd, "shardCollection") || !BSON_ITER_HOLDS_UTF8(&it) ||
        !split_ns(ns = bson_iter_utf8(&it, NULL), db, sizeof db, coll, sizeof coll))
        return msim_fail(error, MSIM_E_INVALID_NAMESPACE, "invalid namespace for shardCollection");
    if (!msim_valid_coll_name(db, coll, error))
        return false;
    if (strcmp(db, "admin") == 0 || strcmp(db, "config") == 0 || strcmp(db, "local") == 0 ||
        strncmp(coll, "system.", 7) == 0)
        return msim_fail(error, MSIM_E_ILLEGAL_OPERATION, "can't shard %s", ns);
    if (!bson_iter_init_find(&it, ctx->cmd, "key") || !BSON_ITER_HOLDS_DOCUMENT(&it))
        return msim_fail(error, 40414,
                         "BSON field 'shardCollection.key' is missing but a required field");
    {
        const uint8_t *d;
        uint32_t l;
        bson_iter_document(&it, &l, &d);
        bson_init_static(&pattern, d, l);
    }
    if (!msim_shardkey_pattern_valid(&pattern, &hashed, error))
        return false;
    if (bson_iter_init_find(&it, ctx->cmd, "unique"))
        unique = msim_truthy(&it);
    if (unique && hashed)
        return msim_fail(error, MSIM_E_INVALID_OPTIONS,
                         "hashed shard keys cannot be declared unique.");
    if (bson_iter_init_find(&it, ctx->cmd, "numInitialChunks") &&
        (!msim_iter_int64(&it, &want) || want < 0 || want > 8192))
        return msim_fail(error, MSIM_E_INVALID_OPTIONS, "numInitialChunks must be 0..8192");
    if (want == 0)
        want = 2 * (int64_t)cl->nshards;
    if (!msim_write_allowed(db, error))
        return false;

    pthread_mutex_lock(&cl->migrate_mu);
    sc = msim_cluster_scoll(cl, db, coll);
    if (sc != NULL) {
        bool same = bson_equal(sc->key, &pattern);
        pthread_mutex_unlock(&cl->migrate_mu);
        if (!same)
            return msim_fail(error, 23,
                             "sharding already enabled for collection %s with a different key", ns);
        BSON_APPEND_UTF8(ctx->reply, "collectionsharded", ns);
        return true;
    }
    primary = msim_cluster_primary(cl, db);
    prev = with_shard(cl, primary);
    pc = ensure_coll(db, coll, false, NULL);
    empty = msim_coll_count(pc) == 0;
    if (!empty && !index_supports(pc, &pattern))
        ok = msim_fail(error, MSIM_E_INVALID_OPTIONS,
                       "Please create an index that starts with the proposed shard key before "
                       "sharding the collection %s",
                       ns);
    if (ok && !empty)
        ok = keys_usable(pc, &pattern, error);
    if (ok)
        add_key_index(pc, &pattern, hashed);
    sc = msim_zalloc(sizeof *sc);
    memcpy(sc->uuid, pc->uuid, 16);
    end_shard(prev);
    if (!ok) {
        free(sc);
        pthread_mutex_unlock(&cl->migrate_mu);
        return false;
    }
    snprintf(sc->db, sizeof sc->db, "%s", db);
    snprintf(sc->coll, sizeof sc->coll, "%s", coll);
    snprintf(sc->ns, sizeof sc->ns, "%s.%s", db, coll);
    sc->key = bson_copy(&pattern);
    sc->hashed = hashed;
    sc->unique = unique;
    bson_oid_init(&sc->epoch, NULL);
    sc->timestamp = msim_clock_now();
    sc->updated_ms = msim_now_ms();
    pthread_rwlock_init(&sc->route, NULL);
    initial_chunks(cl, sc, primary, empty, want);
    create_everywhere(cl, primary, db, coll, &pattern, hashed);
    pthread_mutex_lock(&cl->mu);
    cl->colls = realloc(cl->colls, (cl->ncolls + 1) * sizeof *cl->colls);
    if (cl->colls == NULL)
        abort();
    cl->colls[cl->ncolls++] = sc;
    pthread_mutex_unlock(&cl->mu);
    push_owned(cl, sc);
    pthread_mutex_unlock(&cl->migrate_mu);
    MG_LOG_EVENT(MG_LOG_INFO, "mongosim", "mongosim.shard_collection",
                 MG_LOG_FIELDS(MG_LOG_STR("ns", ns), MG_LOG_INT("chunks", (int64_t)sc->nchunks)),
                 "sharded %s", ns);
    BSON_APPEND_UTF8(ctx->reply, "collectionsharded", ns);
    bson_append_binary(ctx->reply, "collectionUUID", -1, BSON_SUBTYPE_UUID, sc->uuid, 16);
    return true;
}

/* scoll_arg reads the namespace of split/moveChunk and finds the collection. */
static msim_scoll_t *
scoll_arg(msim_ctx_t *ctx, msim_cluster_t *cl, mg_error_t *error)
{
    bson_iter_t it;
    char db[128], coll[128];
    msim_scoll_t *sc;
    if (!bson_iter_init_find(&it, ctx->cmd, ctx->name) || !BSON_ITER_HOLDS_UTF8(&it) ||
        !split_ns(bson_iter_utf8(&it, NULL), db, sizeof db, coll, sizeof coll)) {
        msim_fail(error, MSIM_E_INVALID_NAMESPACE, "%s needs a namespace", ctx->name);
        return NULL;
    }
    sc = msim_cluster_scoll(cl, db, coll);
    if (sc == NULL)
        msim_fail(error, MSIM_E_NAMESPACE_NOT_FOUND, "ns not sharded: %s.%s", db, coll);
    return sc;
}

/* doc_arg_key reads {field: value} of find/middle into the shard-key space. */
static bool
key_arg(msim_ctx_t *ctx, const msim_scoll_t *sc, const char *field, bool hash, bson_t *out,
        bool *present, mg_error_t *error)
{
    bson_iter_t it;
    const uint8_t *d;
    uint32_t l;
    *present = false;
    if (!bson_iter_init_find(&it, ctx->cmd, field))
        return true;
    if (!BSON_ITER_HOLDS_DOCUMENT(&it))
        return msim_fail(error, MSIM_E_TYPE_MISMATCH, "%s must be a document", field);
    *present = true;
    bson_iter_document(&it, &l, &d);
    if (hash)
        return msim_shardkey_of(sc->key, d, l, out, error);
    {
        bson_t given;
        bson_iter_t p;
        bson_init_static(&given, d, l);
        bson_iter_init(&p, sc->key);
        while (bson_iter_next(&p)) {
            bson_iter_t v;
            if (!bson_iter_init_find(&v, &given, bson_iter_key(&p)))
                return msim_fail(error, MSIM_E_BAD_VALUE, "%s must name every shard key field",
                                 field);
            msim_append_iter(out, bson_iter_key(&p), -1, &v);
        }
    }
    return true;
}

/* split_chunk_at splits chunk i at key (route lock held exclusively). */
static bool
split_chunk_at(msim_scoll_t *sc, size_t i, const bson_t *at, mg_error_t *error)
{
    msim_chunk_t nc;
    if (msim_shardkey_cmp(sc->chunks[i].min, at) >= 0 ||
        msim_shardkey_cmp(at, sc->chunks[i].max) >= 0)
        return msim_fail(error, MSIM_E_BAD_VALUE, "split point is not inside the chunk");
    sc->chunks = realloc(sc->chunks, (sc->nchunks + 1) * sizeof *sc->chunks);
    if (sc->chunks == NULL)
        abort();
    memmove(&sc->chunks[i + 2], &sc->chunks[i + 1], (sc->nchunks - i - 1) * sizeof *sc->chunks);
    nc = sc->chunks[i];
    nc.min = bson_copy(at);
    nc.max = sc->chunks[i].max;
    nc.minor++;
    bson_oid_init(&nc.id, NULL);
    sc->chunks[i].max = bson_copy(at);
    sc->chunks[i + 1] = nc;
    sc->nchunks++;
    sc->updated_ms = msim_now_ms();
    return true;
}

/* median_key finds a split point in the middle of chunk i's documents (route lock held). */
static bool
median_key(msim_cluster_t *cl, msim_scoll_t *sc, size_t i, bson_t *out, mg_error_t *error)
{
    msim_chunk_t *ch = &sc->chunks[i];
    msim_server_t *prev = msim_srv;
    bson_t **keys = NULL;
    size_t n = 0, cap = 0;
    bool ok = false;
    msim_coll_t *c;
    msim_srv = cl->shards[ch->shard];
    pthread_rwlock_rdlock(&msim_srv->lock);
    c = msim_catalog_get(sc->db, sc->coll);
    if (c != NULL) {
        msim_coll_iter_t it;
        msim_doc_t *d;
        msim_coll_iter_first(c, &it);
        while ((d = msim_coll_iter_next(&it)) != NULL) {
            bson_t *k = bson_new();
            if (!msim_shardkey_of(sc->key, d->data, d->len, k, NULL) ||
                !msim_range_contains(ch->min, ch->max, k)) {
                bson_destroy(k);
                continue;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                keys = realloc(keys, cap * sizeof *keys);
                if (keys == NULL)
                    abort();
            }
            keys[n++] = k;
        }
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_srv = prev;
    /* insertion sort is fine for the sizes a test splits */
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && msim_shardkey_cmp(keys[b - 1], keys[b]) > 0; b--) {
            bson_t *t = keys[b];
            keys[b] = keys[b - 1];
            keys[b - 1] = t;
        }
    for (size_t m = n / 2; m < n && !ok; m++)
        if (msim_shardkey_cmp(keys[m], ch->min) > 0) {
            bson_copy_to(keys[m], out);
            ok = true;
        }
    for (size_t a = 0; a < n; a++)
        bson_destroy(keys[a]);
    free(keys);
    return ok || msim_fail(error, MSIM_E_BAD_VALUE,
                           "cannot split chunk %zu of %s: not enough distinct keys", i, sc->ns);
}

bool
msim_cmd_split(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_cluster_t *cl = cluster_of(ctx, error);
    msim_scoll_t *sc;
    bson_t middle = BSON_INITIALIZER, find = BSON_INITIALIZER, at = BSON_INITIALIZER;
    bool has_middle, has_find, ok;
    if (cl == NULL || !admin_only(ctx, error) || (sc = scoll_arg(ctx, cl, error)) == NULL)
        return false;
    /* middle is in shard-key space (a hashed key's hash), find a document's values */
    ok = key_arg(ctx, sc, "middle", false, &middle, &has_middle, error) &&
         key_arg(ctx, sc, "find", true, &find, &has_find, error);
    if (ok && has_middle == has_find)
        ok = msim_fail(error, MSIM_E_BAD_VALUE, "split needs exactly one of middle and find");
    if (ok) {
        pthread_mutex_lock(&cl->migrate_mu);
        pthread_rwlock_wrlock(&sc->route);
        if (has_middle) {
            ok = split_chunk_at(sc, msim_scoll_chunk_of(sc, &middle), &middle, error);
        } else {
            size_t i = msim_scoll_chunk_of(sc, &find);
            ok = median_key(cl, sc, i, &at, error) && split_chunk_at(sc, i, &at, error);
        }
        pthread_rwlock_unlock(&sc->route);
        pthread_mutex_unlock(&cl->migrate_mu);
    }
    bson_destroy(&middle);
    bson_destroy(&find);
    bson_destroy(&at);
    return ok;
}

/* delete_range removes the documents of [min, max) that shard i no longer owns,
 * as fromMigrate deletes (the range deleter). */
static void
delete_range(msim_cluster_t *cl, int shard, const char *db, const char *coll, const bson_t *min,
             const bson_t *max)
{
    msim_server_t *prev = with_shard(cl, shard);
    msim_coll_t *c = msim_catalog_get(db, coll);
    if (c != NULL && c->shard_key != NULL) {
        msim_coll_iter_t it;
        msim_doc_t *d, **gone = NULL;
        size_t n = 0, cap = 0;
        msim_coll_iter_first(c, &it);
        while ((d = msim_coll_iter_next(&it)) != NULL) {
            bson_t k = BSON_INITIALIZER;
            bool del = msim_shardkey_of(c->shard_key, d->data, d->len, &k, NULL) &&
                       msim_range_contains(min, max, &k) &&
                       !msim_owned_contains(c->owned, d->data, d->len);
            bson_destroy(&k);
            if (!del)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                gone = realloc(gone, cap * sizeof *gone);
                if (gone == NULL)
                    abort();
            }
            gone[n++] = msim_doc_ref(d);
        }
        for (size_t i = 0; i < n; i++) {
            bson_iter_t id;
            msim_doc_t *old;
            msim_doc_id(gone[i], &id);
            old = msim_coll_remove(c, &id);
            if (old != NULL) {
                msim_log_write("delete", c, NULL, old, &id, NULL, NULL, 0, false, (msim_ts_t){0, 0},
                               0);
                quiet_oplog();
                msim_doc_unref(old);
            }
            msim_doc_unref(gone[i]);
        }
        free(gone);
    }
    end_shard(prev);
}

/*
 * migrate_chunk moves chunk i to shard `to` (migrate_mu and the route lock
 * held exclusively): the donor's documents of the range are copied to the
 * recipient as fromMigrate inserts, the chunk changes owner, and the donor's
 * copies become orphans for the range deleter.
 */
static bool
migrate_chunk(msim_cluster_t *cl, msim_scoll_t *sc, size_t i, int to)
{
    msim_chunk_t *ch = &sc->chunks[i];
    int from = ch->shard;
    msim_server_t *prev;
    msim_doc_t **docs = NULL;
    size_t n = 0, cap = 0;
    msim_coll_t *c, like;

    memset(&like, 0, sizeof like);
    prev = msim_srv;
    msim_srv = cl->shards[from];
    pthread_rwlock_rdlock(&msim_srv->lock);
    c = msim_catalog_get(sc->db, sc->coll);
    if (c != NULL) {
        msim_coll_iter_t it;
        msim_doc_t *d;
        memcpy(like.uuid, c->uuid, 16);
        bson_copy_to(&c->options, &like.options);
        bson_copy_to(&c->indexes, &like.indexes);
        like.pre_post_images = c->pre_post_images;
        msim_coll_iter_first(c, &it);
        while ((d = msim_coll_iter_next(&it)) != NULL) {
            bson_t k = BSON_INITIALIZER;
            bool in = msim_shardkey_of(sc->key, d->data, d->len, &k, NULL) &&
                      msim_range_contains(ch->min, ch->max, &k);
            bson_destroy(&k);
            if (!in)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                docs = realloc(docs, cap * sizeof *docs);
                if (docs == NULL)
                    abort();
            }
            docs[n++] = msim_doc_ref(d);
        }
    } else {
        bson_init(&like.options);
        bson_init(&like.indexes);
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    msim_srv = prev;

    prev = with_shard(cl, to);
    c = ensure_coll(sc->db, sc->coll, true, &like);
    if (c->shard_key == NULL)
        c->shard_key = bson_copy(sc->key);
    for (size_t k = 0; k < n; k++) {
        bson_iter_t id;
        msim_doc_t *old;
        msim_doc_id(docs[k], &id);
        old = msim_coll_remove(c, &id); /* a stale orphan of an earlier migration */
        msim_doc_unref(old);
        msim_doc_ref(docs[k]);
        if (msim_coll_insert(c, docs[k], NULL)) {
            msim_log_write("insert", c, docs[k], NULL, &id, NULL, NULL, 0, false, (msim_ts_t){0, 0},
                           0);
            quiet_oplog();
        }
        msim_doc_unref(docs[k]);
    }
    end_shard(prev);
    free(docs);
    bson_destroy(&like.options);
    bson_destroy(&like.indexes);

    /* commit: the chunk changes owner */
    ch->shard = to;
    ch->major = ++sc->major;
    ch->minor = 0;
    ch->since = msim_clock_now();
    sc->updated_ms = msim_now_ms();
    push_owned(cl, sc);
    MG_LOG_EVENT(MG_LOG_INFO, "mongosim", "mongosim.move_chunk",
                 MG_LOG_FIELDS(MG_LOG_STR("ns", sc->ns), MG_LOG_INT("from", from),
                               MG_LOG_INT("to", to), MG_LOG_INT("docs", (int64_t)n)),
                 "moved a chunk of %s from shard%d to shard%d (%zu documents)", sc->ns, from, to,
                 n);
    if (cl->orphan_delay_ms <= 0) {
        delete_range(cl, from, sc->db, sc->coll, ch->min, ch->max);
    } else {
        msim_rdel_t *r = calloc(1, sizeof *r);
        if (r == NULL)
            abort();
        r->shard = from;
        snprintf(r->db, sizeof r->db, "%s", sc->db);
        snprintf(r->coll, sizeof r->coll, "%s", sc->coll);
        r->min = bson_copy(ch->min);
        r->max = bson_copy(ch->max);
        r->due_ms = msim_now_ms() + cl->orphan_delay_ms;
        pthread_mutex_lock(&cl->mu);
        r->next = cl->rdel;
        cl->rdel = r;
        pthread_mutex_unlock(&cl->mu);
    }
    return true;
}

bool
msim_cmd_move_chunk(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_cluster_t *cl = cluster_of(ctx, error);
    msim_scoll_t *sc;
    bson_iter_t it;
    bson_t find = BSON_INITIALIZER;
    bool has_find, ok, wait_delete = false;
    int to;
    int64_t t0 = msim_now_ms();
    if (cl == NULL || !admin_only(ctx, error) || (sc = scoll_arg(ctx, cl, error)) == NULL)
        return false;
    if (!bson_iter_init_find(&it, ctx->cmd, "to") || !BSON_ITER_HOLDS_UTF8(&it))
        return msim_fail(error, 40414, "BSON field 'moveChunk.to' is missing but a required field");
    to = shard_by_name(cl, bson_iter_utf8(&it, NULL));
    if (to < 0)
        return msim_fail(error, 70, "Shard %s not found", bson_iter_utf8(&it, NULL));
    if (bson_iter_init_find(&it, ctx->cmd, "_waitForDelete"))
        wait_delete = msim_truthy(&it);
    if (bson_iter_init_find(&it, ctx->cmd, "bounds") && BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_iter_t b;
        const uint8_t *d;
        uint32_t l;
        /* bounds are in shard-key space: the chunk starting at the lower one */
        if (!bson_iter_recurse(&it, &b) || !bson_iter_next(&b) || !BSON_ITER_HOLDS_DOCUMENT(&b))
            return msim_fail(error, MSIM_E_BAD_VALUE, "bounds must be [min, max]");
        bson_iter_document(&b, &l, &d);
        bson_destroy(&find);
        bson_init(&find);
        {
            bson_t lo;
            bson_init_static(&lo, d, l);
            bson_concat(&find, &lo);
        }
        has_find = true;
        ok = true;
    } else {
        ok = key_arg(ctx, sc, "find", true, &find, &has_find, error);
        if (ok && !has_find)
            ok = msim_fail(error, MSIM_E_BAD_VALUE, "moveChunk needs find or bounds");
    }
    if (ok) {
        size_t i;
        int64_t saved = cl->orphan_delay_ms;
        pthread_mutex_lock(&cl->migrate_mu);
        pthread_rwlock_wrlock(&sc->route);
        i = msim_scoll_chunk_of(sc, &find);
        if (sc->chunks[i].shard != to) {
            if (wait_delete)
                cl->orphan_delay_ms = 0;
            ok = migrate_chunk(cl, sc, i, to);
            cl->orphan_delay_ms = saved;
        }
        pthread_rwlock_unlock(&sc->route);
        pthread_mutex_unlock(&cl->migrate_mu);
    }
    bson_destroy(&find);
    if (ok)
        BSON_APPEND_INT64(ctx->reply, "millis", msim_now_ms() - t0);
    return ok;
}

bool
msim_cmd_balancer_status(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_cluster_t *cl = cluster_of(ctx, error);
    if (cl == NULL || !admin_only(ctx, error))
        return false;
    BSON_APPEND_UTF8(ctx->reply, "mode", cl->balancer_on ? "full" : "off");
    BSON_APPEND_BOOL(ctx->reply, "inBalancerRound", false);
    BSON_APPEND_INT64(ctx->reply, "numBalancerRounds", cl->balancer_rounds);
    return true;
}

bool
msim_cmd_balancer_start(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_cluster_t *cl = cluster_of(ctx, error);
    if (cl == NULL || !admin_only(ctx, error))
        return false;
    cl->balancer_on = true;
    return true;
}

bool
msim_cmd_balancer_stop(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_cluster_t *cl = cluster_of(ctx, error);
    if (cl == NULL || !admin_only(ctx, error))
        return false;
    cl->balancer_on = false;
    return true;
}

/* ------------------------------------------------------------------------
 * Background: range deleter and the toy balancer
 * ------------------------------------------------------------------------ */

static void
run_range_deletions(msim_cluster_t *cl, int64_t now_ms)
{
    msim_rdel_t *due = NULL, **pp;
    pthread_mutex_lock(&cl->mu);
    pp = &cl->rdel;
    while (*pp != NULL) {
        msim_rdel_t *r = *pp;
        if (r->due_ms <= now_ms) {
            *pp = r->next;
            r->next = due;
            due = r;
        } else {
            pp = &r->next;
        }
    }
    pthread_mutex_unlock(&cl->mu);
    while (due != NULL) {
        msim_rdel_t *r = due;
        due = r->next;
        delete_range(cl, r->shard, r->db, r->coll, r->min, r->max);
        bson_destroy(r->min);
        bson_destroy(r->max);
        free(r);
    }
}

/* balance_one moves one chunk from the shard with the most chunks of sc to
 * the one with the fewest, when they differ by two or more. */
static void
balance_one(msim_cluster_t *cl, msim_scoll_t *sc)
{
    int *count = calloc((size_t)cl->nshards, sizeof *count), most = 0, least = 0;
    pthread_rwlock_wrlock(&sc->route);
    if (!sc->dropped && !sc->no_balance) {
        for (size_t i = 0; i < sc->nchunks; i++)
            count[sc->chunks[i].shard]++;
        for (int s = 1; s < cl->nshards; s++) {
            if (count[s] > count[most])
                most = s;
            if (count[s] < count[least])
                least = s;
        }
        if (count[most] - count[least] >= 2)
            for (size_t i = 0; i < sc->nchunks; i++)
                if (sc->chunks[i].shard == most) {
                    migrate_chunk(cl, sc, i, least);
                    break;
                }
    }
    pthread_rwlock_unlock(&sc->route);
    free(count);
}

void
msim_cluster_tick(msim_cluster_t *cl, int64_t now_ms)
{
    msim_server_t *prev = msim_srv;
    msim_srv = cl->router;
    run_range_deletions(cl, now_ms);
    if (cl->balancer_on &&
        now_ms - cl->balancer_last_ms >= (int64_t)cl->balancer_interval_secs * 1000) {
        size_t n;
        msim_scoll_t **colls;
        cl->balancer_last_ms = now_ms;
        colls = snapshot_colls(cl, &n);
        pthread_mutex_lock(&cl->migrate_mu);
        for (size_t i = 0; i < n; i++)
            balance_one(cl, colls[i]);
        pthread_mutex_unlock(&cl->migrate_mu);
        cl->balancer_rounds++;
        free(colls);
    }
    msim_srv = prev;
}
