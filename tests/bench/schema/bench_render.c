/*
 * tests/bench/schema/bench_render.c - renderer throughput against libbson's
 * bson_as_relaxed_extended_json on the same generated documents, in one run:
 * 1M documents of ~0.8 KB and 20k documents of ~20 KB (nested documents,
 * arrays, strings, ObjectIds, dates, numbers). Prints docs/s, MB/s (of BSON
 * input) and the ratio, then the cost of the duplicate-key check: the same
 * documents rendered with and without it (the renderer compiled a second
 * time without it), alternating for `rounds` rounds, best CPU time of each.
 * Not a test: numbers depend on the machine.
 *
 * Usage: bench_schema_render [docs_small [docs_large [rounds]]]
 */
#include "mg/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* rng is a small deterministic generator (xorshift64*), fixed seed. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t
rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1du;
}

static const char *const words[] = {
    "alpha",  "bravo",  "charlie", "delta", "echo",    "foxtrot",    "golf",      "hotel",
    "india",  "juliet", "kilo",    "lima",  "mike",    "november",   "oscar",     "papa",
    "quebec", "romeo",  "sierra",  "tango", "uniform", "victor",     "whiskey",   "x-ray",
    "yankee", "zulu",   "Zürich",  "café",  "naïve",   "\"quoted\"", "tab\there", "東京",
};

/* add_text appends a string of about n bytes made of words. */
static void
add_text(bson_t *b, const char *key, size_t n)
{
    char buf[4096];
    size_t len = 0;

    while (len < n && len < sizeof(buf) - 32) {
        const char *w = words[rng() % (sizeof(words) / sizeof(words[0]))];
        size_t wl = strlen(w);

        if (len > 0)
            buf[len++] = ' ';
        memcpy(buf + len, w, wl);
        len += wl;
    }
    bson_append_utf8(b, key, -1, buf, (int)len);
}

/* add_item appends one order line: a small nested document. */
static void
add_item(bson_t *arr, uint32_t i)
{
    bson_t item;
    char key[16];
    const char *k;
    bson_oid_t oid;

    bson_uint32_to_string(i, &k, key, sizeof(key));
    bson_append_document_begin(arr, k, -1, &item);
    bson_oid_init(&oid, NULL);
    bson_append_oid(&item, "sku", -1, &oid);
    add_text(&item, "name", 12 + rng() % 20);
    bson_append_int32(&item, "qty", -1, (int32_t)(rng() % 50));
    bson_append_double(&item, "price", -1, (double)(rng() % 100000) / 100.0);
    bson_append_bool(&item, "gift", -1, rng() % 4 == 0);
    bson_append_document_end(arr, &item);
}

/* make_doc builds a document; items controls the size (~0.8 KB at 4). */
static bson_t *
make_doc(uint64_t id, uint32_t items, uint32_t notes)
{
    bson_t *b = bson_new();
    bson_t sub, arr;
    bson_oid_t oid;
    uint32_t i;

    bson_oid_init(&oid, NULL);
    bson_append_oid(b, "_id", -1, &oid);
    bson_append_int64(b, "orderNo", -1, (int64_t)id * 7919);
    bson_append_date_time(b, "createdAt", -1, 1600000000000 + (int64_t)(rng() % 100000000000));
    bson_append_date_time(b, "updatedAt", -1, 1600000000000 + (int64_t)(rng() % 100000000000));
    add_text(b, "status", 6);
    bson_append_document_begin(b, "customer", -1, &sub);
    add_text(&sub, "name", 16);
    add_text(&sub, "email", 20);
    bson_append_int32(&sub, "tier", -1, (int32_t)(rng() % 5));
    bson_append_double(&sub, "score", -1, (double)rng() / 18446744073709551616.0);
    {
        bson_t addr;

        bson_append_document_begin(&sub, "address", -1, &addr);
        add_text(&addr, "street", 24);
        add_text(&addr, "city", 10);
        add_text(&addr, "zip", 5);
        bson_append_document_end(&sub, &addr);
    }
    bson_append_document_end(b, &sub);
    bson_append_array_begin(b, "items", -1, &arr);
    for (i = 0; i < items; i++)
        add_item(&arr, i);
    bson_append_array_end(b, &arr);
    bson_append_array_begin(b, "tags", -1, &arr);
    for (i = 0; i < 3; i++) {
        char key[16];
        const char *k;

        bson_uint32_to_string(i, &k, key, sizeof(key));
        add_text(&arr, k, 6);
    }
    bson_append_array_end(b, &arr);
    bson_append_double(b, "total", -1, (double)(rng() % 10000000) / 100.0);
    bson_append_null(b, "coupon", -1);
    for (i = 0; i < notes; i++) {
        char key[24];

        snprintf(key, sizeof(key), "note%u", i);
        add_text(b, key, 200);
    }
    return b;
}

static double
now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* cpu_s is this thread's CPU time: steadier than wall time on a shared machine. */
static double
cpu_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    double ours_s, ours_cpu_s, libbson_s;
    size_t bson_bytes, ours_json, libbson_json;
} result_t;

/*
 * run times both renderers over n documents packed back to back in arena
 * (as they arrive in a cursor's reply), each renderer in its own pass.
 */
static void
run(const uint8_t *arena, const size_t *offsets, size_t n, result_t *r)
{
    mg_buf_t buf;
    mg_error_t error;
    size_t i;
    double t0;

    memset(r, 0, sizeof(*r));
    r->bson_bytes = offsets[n];
    mg_buf_init(&buf, 64u << 20);
    t0 = now_s();
    r->ours_cpu_s = cpu_s();
    for (i = 0; i < n; i++) {
        mg_buf_reset(&buf);
        if (!mg_schema_doc_render_raw(arena + offsets[i], offsets[i + 1] - offsets[i],
                                      MG_SCHEMA_FIDELITY_RELAXED, &buf, NULL, &error)) {
            fprintf(stderr, "render failed: %s\n", error.message);
            exit(1);
        }
        r->ours_json += buf.len;
    }
    r->ours_s = now_s() - t0;
    r->ours_cpu_s = cpu_s() - r->ours_cpu_s;
    mg_buf_cleanup(&buf);
    t0 = now_s();
    for (i = 0; i < n; i++) {
        bson_t doc;
        size_t len;
        char *json;

        bson_init_static(&doc, arena + offsets[i], offsets[i + 1] - offsets[i]);
        json = bson_as_relaxed_extended_json(&doc, &len);
        r->libbson_json += len;
        bson_free(json);
    }
    r->libbson_s = now_s() - t0;
}

/* The renderer compiled without the duplicate-key check (CMakeLists.txt). */
bool bench_nodup_doc_render_raw(const uint8_t *data, size_t len, mg_schema_fidelity_t fidelity,
                                mg_buf_t *out, uint32_t *facts, mg_error_t *error);

typedef bool (*render_fn)(const uint8_t *data, size_t len, mg_schema_fidelity_t fidelity,
                          mg_buf_t *out, uint32_t *facts, mg_error_t *error);

/* cpu_pass renders the n documents with fn; returns CPU seconds, adds the JSON bytes. */
static double
cpu_pass(render_fn fn, const uint8_t *arena, const size_t *offsets, size_t n, size_t *json)
{
    mg_buf_t buf;
    mg_error_t error;
    double t0 = cpu_s();

    mg_buf_init(&buf, 64u << 20);
    for (size_t i = 0; i < n; i++) {
        mg_buf_reset(&buf);
        if (!fn(arena + offsets[i], offsets[i + 1] - offsets[i], MG_SCHEMA_FIDELITY_RELAXED, &buf,
                NULL, &error)) {
            fprintf(stderr, "render failed: %s\n", error.message);
            exit(1);
        }
        *json += buf.len;
    }
    t0 = cpu_s() - t0;
    mg_buf_cleanup(&buf);
    return t0;
}

/*
 * dup_check_cost renders the documents with and without the duplicate-key
 * check, alternating for `rounds` rounds, and prints the best CPU time of
 * each and their ratio (the check's cost on documents without duplicates).
 */
static void
dup_check_cost(const uint8_t *arena, const size_t *offsets, size_t n, int rounds)
{
    double best_with = 1e99, best_without = 1e99;
    size_t json_with = 0, json_without = 0;

    for (int k = 0; k < rounds; k++) {
        double w = cpu_pass(mg_schema_doc_render_raw, arena, offsets, n, &json_with);
        double wo = cpu_pass(bench_nodup_doc_render_raw, arena, offsets, n, &json_without);

        best_with = w < best_with ? w : best_with;
        best_without = wo < best_without ? wo : best_without;
    }
    if (json_with != json_without) {
        fprintf(stderr, "the two renderers wrote different JSON\n");
        exit(1);
    }
    printf("%22s duplicate-key check: %.0f ns/doc with, %.0f without (CPU, best of %d "
           "alternating rounds): %+.1f%%\n",
           "", best_with * 1e9 / (double)n, best_without * 1e9 / (double)n, rounds,
           (best_with / best_without - 1) * 100);
}

static void
print_row(const char *name, size_t n, const result_t *r)
{
    double mb = (double)r->bson_bytes / 1e6;

    printf("%-22s %9zu %8.0f  %12.0f %9.1f  %12.0f %9.1f  %6.2fx\n", name, n,
           (double)r->bson_bytes / (double)n, (double)n / r->ours_s, mb / r->ours_s,
           (double)n / r->libbson_s, mb / r->libbson_s, r->libbson_s / r->ours_s);
}

/* bench builds n documents with the given shape and prints one row. */
static void
bench(const char *name, size_t n, uint32_t items, uint32_t notes, int rounds)
{
    size_t *offsets = malloc((n + 1) * sizeof(*offsets));
    size_t cap = n * 1024, i;
    uint8_t *arena = malloc(cap);
    result_t r;

    offsets[0] = 0;
    for (i = 0; i < n; i++) {
        bson_t *doc = make_doc(i, items, notes);

        while (offsets[i] + doc->len > cap) {
            cap *= 2;
            arena = realloc(arena, cap);
        }
        memcpy(arena + offsets[i], bson_get_data(doc), doc->len);
        offsets[i + 1] = offsets[i] + doc->len;
        bson_destroy(doc);
    }
    run(arena, offsets, n, &r);
    print_row(name, n, &r);
    printf("%22s JSON bytes: ours %zu, libbson %zu; ours CPU %.0f ns/doc\n", "", r.ours_json,
           r.libbson_json, r.ours_cpu_s * 1e9 / (double)n);
    if (rounds > 0)
        dup_check_cost(arena, offsets, n, rounds);
    free(arena);
    free(offsets);
}

int
main(int argc, char **argv)
{
    size_t small = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000000;
    size_t large = argc > 2 ? strtoul(argv[2], NULL, 10) : 20000;
    int rounds = argc > 3 ? atoi(argv[3]) : 5;

    printf("%-22s %9s %8s  %12s %9s  %12s %9s  %7s\n", "workload", "docs", "bytes", "ours doc/s",
           "ours MB/s", "libbson doc/s", "lib MB/s", "ratio");
    bench("small (~0.8 KB)", small, 4, 0, rounds);
    bench("large (~20 KB)", large, 60, 60, rounds);
    return 0;
}
