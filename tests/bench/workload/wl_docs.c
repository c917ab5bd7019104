/*
 * tests/bench/workload/wl_docs.c - the e-commerce documents: customers,
 * products (8-16 KB: a long description and reviews, so PostgreSQL stores
 * them out of line in TOAST), orders with line items, events. Document id of
 * a collection is the same on every run with the same seed. Every number is
 * an int64 (prices in cents), so the JSON the migrator writes for a document
 * and the JSON this client writes for a new one are the same text.
 */
#include "wl.h"

#include <stdlib.h>
#include <string.h>

#define EPOCH_MS INT64_C(1600000000000)

static const char *const cities[] = {"Lisbon", "Oslo",  "Lima",  "Osaka", "Quito",
                                     "Perth",  "Accra", "Turku", "Porto", "Cusco"};
static const char *const tiers[] = {"bronze", "silver", "gold", "platinum"};
static const char *const statuses[] = {"placed", "paid", "shipped", "delivered", "returned"};
static const char *const colors[] = {"red", "green", "blue", "black", "white", "teal"};
static const char *const event_types[] = {"view", "search", "cart_add", "cart_remove", "login"};

wl_sizes_t
wl_sizes_for(int64_t orders)
{
    wl_sizes_t s;
    s.orders = orders < 10 ? 10 : orders;
    s.customers = s.orders / 10 < 10 ? 10 : s.orders / 10;
    s.products = s.orders / 100 < 10 ? 10 : s.orders / 100;
    s.events = s.orders;
    return s;
}

int64_t
wl_time_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* text writes n bytes of random lower-case words (barely compressible by
 * pglz: no long repeats) into buf, NUL-terminated; buf holds n + 1 bytes. */
static void
text(wl_rng_t *r, char *buf, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t w = (size_t)wl_rng_range(r, 2, 9);
        for (size_t k = 0; k < w && i < n; k++)
            buf[i++] = (char)('a' + wl_rng_next(r) % 26);
        if (i < n)
            buf[i++] = ' ';
    }
    buf[n] = '\0';
}

static void
put_str(bson_t *b, const char *key, const char *value)
{
    bson_append_utf8(b, key, -1, value, -1);
}

#define PICK(r, arr) (arr[wl_rng_next(r) % (sizeof arr / sizeof arr[0])])

bson_t *
wl_doc_customer(uint64_t seed, int64_t id)
{
    wl_rng_t r = wl_rng_for(seed, (uint64_t)id, 1);
    bson_t *d = bson_new(), sub;
    char s[512];
    BSON_APPEND_INT64(d, "_id", id);
    snprintf(s, sizeof s, "Customer %lld", (long long)id);
    put_str(d, "name", s);
    snprintf(s, sizeof s, "customer%lld@example.com", (long long)id);
    put_str(d, "email", s);
    put_str(d, "tier", PICK(&r, tiers));
    BSON_APPEND_DOCUMENT_BEGIN(d, "address", &sub);
    snprintf(s, sizeof s, "%d Main Street", (int)wl_rng_range(&r, 1, 999));
    put_str(&sub, "street", s);
    put_str(&sub, "city", PICK(&r, cities));
    snprintf(s, sizeof s, "%05d", (int)wl_rng_range(&r, 0, 99999));
    put_str(&sub, "zip", s);
    bson_append_document_end(d, &sub);
    BSON_APPEND_INT64(d, "created_at", EPOCH_MS + id * 1000);
    BSON_APPEND_INT64(d, "loyalty_points", wl_rng_range(&r, 0, 999));
    BSON_APPEND_DOCUMENT_BEGIN(d, "prefs", &sub);
    BSON_APPEND_BOOL(&sub, "newsletter", wl_rng_next(&r) & 1);
    put_str(&sub, "lang", "en");
    bson_append_document_end(d, &sub);
    text(&r, s, (size_t)wl_rng_range(&r, 100, 400));
    put_str(d, "notes", s);
    return d;
}

bson_t *
wl_doc_product(uint64_t seed, int64_t id)
{
    wl_rng_t r = wl_rng_for(seed, (uint64_t)id, 2);
    bson_t *d = bson_new(), sub, arr, rev;
    size_t n = (size_t)wl_rng_range(&r, 8000, 15000);
    char *buf = malloc(n + 1), s[256], k[16];
    BSON_APPEND_INT64(d, "_id", id);
    snprintf(s, sizeof s, "SKU-%08lld", (long long)id);
    put_str(d, "sku", s);
    snprintf(s, sizeof s, "Product %lld", (long long)id);
    put_str(d, "name", s);
    snprintf(s, sizeof s, "cat-%02d", (int)(wl_rng_next(&r) % 50));
    put_str(d, "category", s);
    BSON_APPEND_INT64(d, "price_cents", wl_rng_range(&r, 99, 99999));
    BSON_APPEND_INT64(d, "stock", 1000000);
    BSON_APPEND_DOCUMENT_BEGIN(d, "attributes", &sub);
    put_str(&sub, "color", PICK(&r, colors));
    BSON_APPEND_INT64(&sub, "weight_g", wl_rng_range(&r, 10, 20000));
    bson_append_document_end(d, &sub);
    text(&r, buf, n);
    put_str(d, "description", buf);
    BSON_APPEND_ARRAY_BEGIN(d, "reviews", &arr);
    for (int i = 0; i < 3; i++) {
        snprintf(k, sizeof k, "%d", i);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &rev);
        BSON_APPEND_INT64(&rev, "rating", wl_rng_range(&r, 1, 5));
        text(&r, s, 200);
        put_str(&rev, "text", s);
        bson_append_document_end(&arr, &rev);
    }
    bson_append_array_end(d, &arr);
    free(buf);
    return d;
}

static void
put_items(bson_t *d, int n, const int64_t *pid, const int64_t *price, const int64_t *qty)
{
    bson_t arr, item;
    char k[16];
    int64_t total = 0;
    BSON_APPEND_ARRAY_BEGIN(d, "items", &arr);
    for (int i = 0; i < n; i++) {
        snprintf(k, sizeof k, "%d", i);
        BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &item);
        BSON_APPEND_INT64(&item, "product_id", pid[i]);
        BSON_APPEND_INT64(&item, "qty", qty[i]);
        BSON_APPEND_INT64(&item, "price_cents", price[i]);
        bson_append_document_end(&arr, &item);
        total += qty[i] * price[i];
    }
    bson_append_array_end(d, &arr);
    BSON_APPEND_INT64(d, "total_cents", total);
}

bson_t *
wl_doc_order(uint64_t seed, int64_t id, const wl_sizes_t *sizes)
{
    wl_rng_t r = wl_rng_for(seed, (uint64_t)id, 3);
    bson_t *d = bson_new(), sub;
    int64_t pid[5], price[5], qty[5];
    int n = (int)wl_rng_range(&r, 1, 5);
    char s[512];
    BSON_APPEND_INT64(d, "_id", id);
    BSON_APPEND_INT64(d, "customer_id", wl_rng_range(&r, 1, sizes->customers));
    BSON_APPEND_INT64(d, "created_at", EPOCH_MS + id * 1000);
    put_str(d, "status", PICK(&r, statuses));
    for (int i = 0; i < n; i++) {
        pid[i] = wl_rng_range(&r, 1, sizes->products);
        price[i] = wl_rng_range(&r, 99, 99999);
        qty[i] = wl_rng_range(&r, 1, 3);
    }
    put_items(d, n, pid, price, qty);
    BSON_APPEND_DOCUMENT_BEGIN(d, "shipping", &sub);
    put_str(&sub, "method", wl_rng_next(&r) & 1 ? "standard" : "express");
    put_str(&sub, "city", PICK(&r, cities));
    snprintf(s, sizeof s, "%05d", (int)wl_rng_range(&r, 0, 99999));
    put_str(&sub, "zip", s);
    bson_append_document_end(d, &sub);
    text(&r, s, (size_t)wl_rng_range(&r, 50, 300));
    put_str(d, "notes", s);
    return d;
}

bson_t *
wl_doc_order_placed(int64_t id, int64_t customer_id, int n, const int64_t *product_ids,
                    const int64_t *prices, const int64_t *qty, int64_t ts_ms)
{
    bson_t *d = bson_new(), sub;
    BSON_APPEND_INT64(d, "_id", id);
    BSON_APPEND_INT64(d, "customer_id", customer_id);
    BSON_APPEND_INT64(d, "created_at", ts_ms);
    put_str(d, "status", "placed");
    put_items(d, n, product_ids, prices, qty);
    BSON_APPEND_DOCUMENT_BEGIN(d, "shipping", &sub);
    put_str(&sub, "method", "standard");
    bson_append_document_end(d, &sub);
    return d;
}

bson_t *
wl_doc_event(uint64_t seed, int64_t id, int64_t customer_id, const char *type, int64_t ts_ms)
{
    wl_rng_t r = wl_rng_for(seed, (uint64_t)id, 4);
    bson_t *d = bson_new(), sub;
    char s[64];
    BSON_APPEND_INT64(d, "_id", id);
    BSON_APPEND_INT64(d, "customer_id", customer_id);
    put_str(d, "type", type ? type : PICK(&r, event_types));
    BSON_APPEND_INT64(d, "ts", ts_ms);
    snprintf(s, sizeof s, "%016llx", (unsigned long long)wl_rng_next(&r));
    put_str(d, "session", s);
    BSON_APPEND_DOCUMENT_BEGIN(d, "payload", &sub);
    snprintf(s, sizeof s, "/p/%lld", (long long)wl_rng_range(&r, 1, 100000));
    put_str(&sub, "page", s);
    BSON_APPEND_INT64(&sub, "ms", wl_rng_range(&r, 1, 5000));
    bson_append_document_end(d, &sub);
    return d;
}
