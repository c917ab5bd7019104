/*
 * tests/bench/workload/wl_mongo.c - the same workload through libmongoc, and
 * the loader that fills the source before `migrate init` + `migrate sync`.
 *
 * Against mongosim this is a check of the client (that it can offer the
 * load it claims, through another driver), never a claim about MongoDB:
 * mongosim is a test double with one global write lock and no secondary
 * indexes.
 */
#include "wl.h"

#include <mongoc/mongoc.h>
#include <stdlib.h>
#include <string.h>

static mongoc_client_pool_t *pool;
static const char *const colls[4] = {"customers", "products", "orders", "events"};

typedef struct {
    mongoc_client_t *client;
    mongoc_collection_t *coll[4]; /* customers, products, orders, events */
} handle_t;

static void
set_err(wl_conn_t *c, const char *what, const bson_error_t *e)
{
    snprintf(c->err, sizeof c->err, "could not run %s: %u.%u %s", what, e->domain, e->code,
             e->message);
}

/* find runs a find and reads every document; returns the count or -1 */
static int
find(wl_conn_t *c, const char *what, mongoc_collection_t *coll, const bson_t *filter,
     const bson_t *opts)
{
    const bson_t *doc;
    bson_error_t e;
    int n = 0;
    uint64_t t0 = wl_now_ns();
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    while (mongoc_cursor_next(cur, &doc)) {
        c->bytes_in += doc->len;
        n++;
    }
    if (mongoc_cursor_error(cur, &e)) {
        set_err(c, what, &e);
        n = -1;
    }
    mongoc_cursor_destroy(cur);
    c->db_ns += wl_now_ns() - t0;
    return n;
}

static bool
insert(wl_conn_t *c, const char *what, mongoc_collection_t *coll, const bson_t *doc,
       const bson_t *opts)
{
    bson_error_t e;
    c->bytes_out += doc->len;
    uint64_t t0 = wl_now_ns();
    bool ok = mongoc_collection_insert_one(coll, doc, opts, NULL, &e);
    c->db_ns += wl_now_ns() - t0;
    if (!ok)
        set_err(c, what, &e);
    return ok;
}

static bool
inc(wl_conn_t *c, const char *what, mongoc_collection_t *coll, int64_t id, const char *field,
    int64_t by, const bson_t *opts)
{
    bson_error_t e;
    bson_t reply;
    bson_t *sel = BCON_NEW("_id", BCON_INT64(id));
    bson_t *upd = BCON_NEW("$inc", "{", field, BCON_INT64(by), "}");
    uint64_t t0 = wl_now_ns();
    bool ok = mongoc_collection_update_one(coll, sel, upd, opts, &reply, &e);
    c->db_ns += wl_now_ns() - t0;
    if (!ok) {
        set_err(c, what, &e);
    } else {
        bson_iter_t it;
        if (bson_iter_init_find(&it, &reply, "matchedCount") && bson_iter_as_int64(&it) != 1) {
            snprintf(c->err, sizeof c->err, "%s: _id %lld not found", what, (long long)id);
            ok = false;
        }
    }
    bson_destroy(&reply);
    bson_destroy(sel);
    bson_destroy(upd);
    return ok;
}

static bool
place_order(wl_conn_t *c, const bson_t *opts)
{
    handle_t *h = c->handle;
    wl_shared_t *s = c->shared;
    int64_t pid[3], qty[3], price[3], total = 0;
    int n = (int)wl_rng_range(&c->rng, 1, 3);
    for (int i = 0; i < n; i++) {
        pid[i] = wl_rng_range(&c->rng, 1, s->sizes.products);
        qty[i] = wl_rng_range(&c->rng, 1, 3);
        price[i] = 100;
    }
    int64_t cust = wl_rng_range(&c->rng, 1, s->sizes.customers), now = wl_time_ms();
    bson_t filter = BSON_INITIALIZER, in, fopts = BSON_INITIALIZER;
    char k[8];
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
    bson_t arr;
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "%d", i);
        BSON_APPEND_INT64(&arr, k, pid[i]);
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(&filter, &in);
    if (opts)
        bson_concat(&fopts, opts);
    bool ok = find(c, "read prices", h->coll[1], &filter, &fopts) >= 1;
    bson_destroy(&filter);
    bson_destroy(&fopts);
    int64_t oid = __atomic_fetch_add(&s->next_order_id, 1, __ATOMIC_RELAXED);
    bson_t *order = wl_doc_order_placed(oid, cust, n, pid, price, qty, now);
    ok = ok && insert(c, "insert order", h->coll[2], order, opts);
    bson_destroy(order);
    for (int i = 0; i < n && ok; i++) {
        ok = inc(c, "update stock", h->coll[1], pid[i], "stock", -qty[i], opts);
        total += qty[i] * price[i];
    }
    ok = ok && inc(c, "update loyalty", h->coll[0], cust, "loyalty_points", total / 100, opts);
    if (ok) {
        int64_t eid = __atomic_fetch_add(&s->next_event_id, 1, __ATOMIC_RELAXED);
        bson_t *ev = wl_doc_event(s->seed, eid, cust, "order_placed", now);
        ok = insert(c, "insert event", h->coll[3], ev, opts);
        bson_destroy(ev);
    }
    return ok;
}

static bool
op_txn(wl_conn_t *c)
{
    handle_t *h = c->handle;
    if (!c->shared->txn)
        return place_order(c, NULL);
    bson_error_t e;
    bson_t opts = BSON_INITIALIZER;
    bool ok = false;
    uint64_t t0 = wl_now_ns();
    mongoc_client_session_t *cs = mongoc_client_start_session(h->client, NULL, &e);
    if (cs == NULL || !mongoc_client_session_start_transaction(cs, NULL, &e) ||
        !mongoc_client_session_append(cs, &opts, &e)) {
        c->db_ns += wl_now_ns() - t0;
        set_err(c, "start transaction", &e);
        goto done;
    }
    c->db_ns += wl_now_ns() - t0;
    ok = place_order(c, &opts);
    t0 = wl_now_ns();
    if (ok && !mongoc_client_session_commit_transaction(cs, NULL, &e)) {
        set_err(c, "commit", &e);
        ok = false;
    } else if (!ok) {
        mongoc_client_session_abort_transaction(cs, NULL);
    }
    c->db_ns += wl_now_ns() - t0;
done:
    bson_destroy(&opts);
    mongoc_client_session_destroy(cs);
    return ok;
}

static bool
mongo_op(wl_conn_t *c, wl_op_t op)
{
    handle_t *h = c->handle;
    wl_shared_t *s = c->shared;
    bool ok;
    switch (op) {
    case WL_OP_POINT: {
        int64_t id = wl_rng_range(&c->rng, 1, s->sizes.orders);
        bson_t *f = BCON_NEW("_id", BCON_INT64(id)), *o = BCON_NEW("limit", BCON_INT64(1));
        int n = find(c, "point read", h->coll[2], f, o);
        if (n == 0)
            snprintf(c->err, sizeof c->err, "point read: order %lld not found", (long long)id);
        bson_destroy(f);
        bson_destroy(o);
        return n == 1;
    }
    case WL_OP_RANGE: {
        bson_t *f =
            BCON_NEW("customer_id", BCON_INT64(wl_rng_range(&c->rng, 1, s->sizes.customers)));
        bson_t *o =
            BCON_NEW("sort", "{", "created_at", BCON_INT32(-1), "}", "limit", BCON_INT64(10));
        ok = find(c, "range read", h->coll[2], f, o) >= 0;
        bson_destroy(f);
        bson_destroy(o);
        return ok;
    }
    case WL_OP_INSERT: {
        int64_t id = __atomic_fetch_add(&s->next_event_id, 1, __ATOMIC_RELAXED);
        bson_t *doc = wl_doc_event(s->seed, id, wl_rng_range(&c->rng, 1, s->sizes.customers), NULL,
                                   wl_time_ms());
        ok = insert(c, "insert event", h->coll[3], doc, NULL);
        bson_destroy(doc);
        return ok;
    }
    case WL_OP_UPDATE_SMALL:
        return inc(c, "update small", h->coll[0], wl_rng_range(&c->rng, 1, s->sizes.customers),
                   "loyalty_points", 1, NULL);
    case WL_OP_UPDATE_LARGE:
        return inc(c, "update large", h->coll[1], wl_rng_range(&c->rng, 1, s->sizes.products),
                   "stock", 1, NULL);
    case WL_OP_TXN:
        return op_txn(c);
    default:
        snprintf(c->err, sizeof c->err, "unknown operation %d", (int)op);
        return false;
    }
}

static bool
max_id(mongoc_client_t *client, const char *db, const char *coll, int64_t *out, char *err,
       size_t errlen)
{
    mongoc_collection_t *cl = mongoc_client_get_collection(client, db, coll);
    bson_t filter = BSON_INITIALIZER;
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(-1), "}", "limit", BCON_INT64(1));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(cl, &filter, opts, NULL);
    const bson_t *doc;
    bson_error_t e;
    bson_iter_t it;
    *out = 0;
    if (mongoc_cursor_next(cur, &doc) && bson_iter_init_find(&it, doc, "_id"))
        *out = bson_iter_as_int64(&it);
    bool ok = !mongoc_cursor_error(cur, &e);
    if (!ok)
        snprintf(err, errlen, "could not read the size of %s.%s: %s", db, coll, e.message);
    else if (*out < 1) {
        snprintf(err, errlen, "collection %s.%s is empty (load it first)", db, coll);
        ok = false;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    mongoc_collection_destroy(cl);
    return ok;
}

static bool
mongo_prepare(wl_shared_t *s, char *err, size_t errlen)
{
    bson_error_t e;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(s->uri, &e);
    if (uri == NULL) {
        snprintf(err, errlen, "could not parse the MongoDB URI: %s", e.message);
        return false;
    }
    pool = mongoc_client_pool_new(uri);
    mongoc_uri_destroy(uri);
    mongoc_client_pool_max_size(pool, (uint32_t)s->threads + 1);
    mongoc_client_t *client = mongoc_client_pool_pop(pool);
    int64_t *dst[4] = {&s->sizes.customers, &s->sizes.products, &s->sizes.orders, &s->sizes.events};
    bool ok = true;
    for (int i = 0; i < 4 && ok; i++)
        ok = max_id(client, s->ns, colls[i], dst[i], err, errlen);
    mongoc_client_pool_push(pool, client);
    return ok;
}

static bool
mongo_connect(wl_conn_t *c)
{
    handle_t *h = calloc(1, sizeof *h);
    h->client = mongoc_client_pool_pop(pool);
    for (int i = 0; i < 4; i++)
        h->coll[i] = mongoc_client_get_collection(h->client, c->shared->ns, colls[i]);
    c->handle = h;
    return true;
}

static void
mongo_disconnect(wl_conn_t *c)
{
    handle_t *h = c->handle;
    if (h == NULL)
        return;
    for (int i = 0; i < 4; i++)
        mongoc_collection_destroy(h->coll[i]);
    mongoc_client_pool_push(pool, h->client);
    free(h);
    c->handle = NULL;
}

static void
mongo_cleanup(void)
{
    if (pool != NULL)
        mongoc_client_pool_destroy(pool);
    pool = NULL;
}

const wl_backend_t wl_backend_mongo = {"mongodb", mongo_prepare,    mongo_connect,
                                       mongo_op,  mongo_disconnect, mongo_cleanup};

/* ---- the loader --------------------------------------------------------- */

typedef bson_t *(*make_fn)(uint64_t seed, int64_t id, const wl_sizes_t *sizes);

static bson_t *
mk_customer(uint64_t seed, int64_t id, const wl_sizes_t *sizes)
{
    (void)sizes;
    return wl_doc_customer(seed, id);
}

static bson_t *
mk_product(uint64_t seed, int64_t id, const wl_sizes_t *sizes)
{
    (void)sizes;
    return wl_doc_product(seed, id);
}

static bson_t *
mk_event(uint64_t seed, int64_t id, const wl_sizes_t *sizes)
{
    wl_rng_t r = wl_rng_for(seed, (uint64_t)id, 5);
    return wl_doc_event(seed, id, wl_rng_range(&r, 1, sizes->customers), NULL,
                        INT64_C(1600000000000) + id * 1000);
}

static bool
load_coll(mongoc_client_t *client, const char *db, const char *name, int64_t n, make_fn make,
          uint64_t seed, const wl_sizes_t *sizes, char *err, size_t errlen)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(client, db, name);
    bson_error_t e;
    bool ok = true;
    uint64_t t0 = wl_now_ns();
    mongoc_collection_drop(coll, NULL);
    for (int64_t first = 1; first <= n && ok; first += 1000) {
        bson_t *opts = BCON_NEW("ordered", BCON_BOOL(false));
        mongoc_bulk_operation_t *bulk =
            mongoc_collection_create_bulk_operation_with_opts(coll, opts);
        for (int64_t id = first; id < first + 1000 && id <= n; id++) {
            bson_t *doc = make(seed, id, sizes);
            mongoc_bulk_operation_insert(bulk, doc);
            bson_destroy(doc);
        }
        bson_t reply;
        if (!mongoc_bulk_operation_execute(bulk, &reply, &e)) {
            snprintf(err, errlen, "could not load %s.%s: %s", db, name, e.message);
            ok = false;
        }
        bson_destroy(&reply);
        mongoc_bulk_operation_destroy(bulk);
        bson_destroy(opts);
    }
    if (ok)
        fprintf(stderr, "loaded %s.%s: %lld documents in %.1f s\n", db, name, (long long)n,
                (double)(wl_now_ns() - t0) / 1e9);
    mongoc_collection_destroy(coll);
    return ok;
}

static bool
create_index(mongoc_client_t *client, const char *db, const char *coll, const char *name,
             bson_t *keys, char *err, size_t errlen)
{
    mongoc_database_t *d = mongoc_client_get_database(client, db);
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(coll), "indexes", "[", "{", "key",
                           BCON_DOCUMENT(keys), "name", BCON_UTF8(name), "}", "]");
    bson_error_t e;
    bool ok = mongoc_database_write_command_with_opts(d, cmd, NULL, NULL, &e);
    if (!ok)
        snprintf(err, errlen, "could not create index %s on %s.%s: %s", name, db, coll, e.message);
    bson_destroy(cmd);
    bson_destroy(keys);
    mongoc_database_destroy(d);
    return ok;
}

bool
wl_load(const char *uri_text, const char *db, int64_t orders, uint64_t seed, char *err,
        size_t errlen)
{
    bson_error_t e;
    mongoc_uri_t *uri = mongoc_uri_new_with_error(uri_text, &e);
    if (uri == NULL) {
        snprintf(err, errlen, "could not parse the MongoDB URI: %s", e.message);
        return false;
    }
    mongoc_client_t *client = mongoc_client_new_from_uri(uri);
    mongoc_uri_destroy(uri);
    wl_sizes_t sz = wl_sizes_for(orders);
    bool ok =
        load_coll(client, db, "customers", sz.customers, mk_customer, seed, &sz, err, errlen) &&
        load_coll(client, db, "products", sz.products, mk_product, seed, &sz, err, errlen) &&
        load_coll(client, db, "orders", sz.orders, wl_doc_order, seed, &sz, err, errlen) &&
        load_coll(client, db, "events", sz.events, mk_event, seed, &sz, err, errlen);
    /* the application's indexes: `migrate init` translates them */
    ok = ok &&
         create_index(client, db, "orders", "customer_created",
                      BCON_NEW("customer_id", BCON_INT32(1), "created_at", BCON_INT32(-1)), err,
                      errlen) &&
         create_index(client, db, "events", "customer_ts",
                      BCON_NEW("customer_id", BCON_INT32(1), "ts", BCON_INT32(-1)), err, errlen) &&
         create_index(client, db, "products", "category_price",
                      BCON_NEW("category", BCON_INT32(1), "price_cents", BCON_INT32(1)), err,
                      errlen) &&
         create_index(client, db, "customers", "email", BCON_NEW("email", BCON_INT32(1)), err,
                      errlen);
    mongoc_client_destroy(client);
    return ok;
}
