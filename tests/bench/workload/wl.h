/*
 * tests/bench/workload/wl.h - the application-workload benchmark's shared
 * types: operations, the per-thread random stream, the run's shared state,
 * the document generator and the two backends (PostgreSQL through libpq on
 * the tables `migrate init` creates, MongoDB through libmongoc).
 */
#ifndef WL_H
#define WL_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

typedef enum {
    WL_OP_POINT,        /* an order by _id */
    WL_OP_RANGE,        /* a customer's 10 latest orders (the translated compound index) */
    WL_OP_INSERT,       /* a new event */
    WL_OP_UPDATE_SMALL, /* $inc of a customer's loyalty points (~0.5 KB document) */
    WL_OP_UPDATE_LARGE, /* $inc of a product's stock (8-16 KB document, TOASTed) */
    WL_OP_TXN, /* place an order: read prices, insert order, update stock, customer, event */
    WL_OP_COUNT
} wl_op_t;

extern const char *const wl_op_names[WL_OP_COUNT];

/* splitmix64: cheap, deterministic, one stream per thread or per document */
typedef struct {
    uint64_t s;
} wl_rng_t;

static inline uint64_t
wl_rng_next(wl_rng_t *r)
{
    uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* wl_rng_range returns a value in [lo, hi] (hi >= lo). */
static inline int64_t
wl_rng_range(wl_rng_t *r, int64_t lo, int64_t hi)
{
    return lo + (int64_t)(wl_rng_next(r) % (uint64_t)(hi - lo + 1));
}

static inline wl_rng_t
wl_rng_for(uint64_t seed, uint64_t index, uint64_t salt)
{
    wl_rng_t r = {seed * UINT64_C(0x100000001B3) ^ (index * UINT64_C(0x9E3779B97F4A7C15)) ^
                  (salt << 48)};
    wl_rng_next(&r);
    return r;
}

static inline uint64_t
wl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * UINT64_C(1000000000) + (uint64_t)ts.tv_nsec;
}

/* sizes of the dataset: fixed by the loader, read back from the target at start */
typedef struct {
    int64_t customers, products, orders, events;
} wl_sizes_t;

/* wl_sizes_for returns the collection sizes the loader makes for `orders` orders. */
wl_sizes_t wl_sizes_for(int64_t orders);

/* The run's state shared by every thread (ids handed out atomically). */
typedef struct {
    wl_sizes_t sizes;      /* existing documents (max _id; ids are 1..n) */
    int64_t next_order_id; /* atomic */
    int64_t next_event_id; /* atomic */
    uint64_t seed;
    bool txn;        /* multi-document transactions on (else autocommit statements) */
    bool dry;        /* build every request, send none (client capacity) */
    const char *uri; /* libpq conninfo or MongoDB URI (no password: PGPASSWORD) */
    const char *ns;  /* PostgreSQL schema / MongoDB database */
    int threads;
} wl_shared_t;

/* Per connection: the backend's handle plus time spent inside driver calls. */
typedef struct {
    void *handle;
    uint64_t db_ns;     /* inside libpq / libmongoc calls */
    uint64_t bytes_in;  /* document bytes read */
    uint64_t bytes_out; /* document bytes written */
    wl_rng_t rng;
    wl_shared_t *shared;
    char err[512];
} wl_conn_t;

typedef struct {
    const char *name;
    /* prepare: read sizes from the target; called once before connecting threads */
    bool (*prepare)(wl_shared_t *shared, char *err, size_t errlen);
    bool (*connect)(wl_conn_t *c);
    /* op runs one operation; false with c->err set on failure */
    bool (*op)(wl_conn_t *c, wl_op_t op);
    void (*disconnect)(wl_conn_t *c);
    void (*cleanup)(void);
} wl_backend_t;

extern const wl_backend_t wl_backend_pg;
extern const wl_backend_t wl_backend_mongo;

/* documents (wl_docs.c): deterministic from (seed, id); caller destroys */
bson_t *wl_doc_customer(uint64_t seed, int64_t id);
bson_t *wl_doc_product(uint64_t seed, int64_t id);
bson_t *wl_doc_order(uint64_t seed, int64_t id, const wl_sizes_t *sizes);
bson_t *wl_doc_event(uint64_t seed, int64_t id, int64_t customer_id, const char *type,
                     int64_t ts_ms);
/* wl_doc_order_placed builds an order of the given products and prices (txn op). */
bson_t *wl_doc_order_placed(int64_t id, int64_t customer_id, int n, const int64_t *product_ids,
                            const int64_t *prices, const int64_t *qty, int64_t ts_ms);

/* wl_load fills db with `orders` orders and the collections around them, and
 * creates the secondary indexes; prints progress to stderr. */
bool wl_load(const char *uri, const char *db, int64_t orders, uint64_t seed, char *err,
             size_t errlen);

/* wl_time_ms returns the wall clock in milliseconds (document timestamps). */
int64_t wl_time_ms(void);

#endif
