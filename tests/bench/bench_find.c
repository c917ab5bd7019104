/*
 * tests/bench/bench_find.c - benchmark: how fast a server (mongosim or a
 * real MongoDB) serves a libmongoc find over N documents of about S bytes.
 * Loads the collection first unless --no-load; prints one JSON line.
 *
 * usage: bench_find --uri URI [--docs N] [--size BYTES] [--db D] [--coll C]
 *                   [--no-load] [--runs R] [--clients K]
 *
 * With --clients K > 1 each run splits the _id range into K partitions read
 * by K threads with their own connections (as the copier's workers do), and
 * reports the aggregate rate.
 */
#include <pthread.h>
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool
load(mongoc_collection_t *coll, long docs, long size)
{
    bson_error_t err;
    char *filler;
    long batch = 10000;
    mongoc_collection_drop(coll, NULL);
    filler = malloc((size_t)size + 1);
    if (filler == NULL)
        return false;
    for (long i = 0; i < size; i++)
        filler[i] = (char)('a' + i % 26);
    filler[size > 120 ? size - 120 : 1] = '\0';
    for (long start = 0; start < docs; start += batch) {
        mongoc_bulk_operation_t *bulk =
            mongoc_collection_create_bulk_operation_with_opts(coll, NULL);
        bson_t reply;
        for (long i = start; i < start + batch && i < docs; i++) {
            bson_t d = BSON_INITIALIZER;
            BSON_APPEND_INT64(&d, "_id", i);
            BSON_APPEND_UTF8(&d, "name", "benchmark document");
            BSON_APPEND_INT32(&d, "n", (int32_t)i);
            BSON_APPEND_DOUBLE(&d, "score", (double)i * 0.5);
            BSON_APPEND_UTF8(&d, "pad", filler);
            mongoc_bulk_operation_insert(bulk, &d);
            bson_destroy(&d);
        }
        if (!mongoc_bulk_operation_execute(bulk, &reply, &err)) {
            fprintf(stderr, "bench_find: could not load documents: %s\n", err.message);
            bson_destroy(&reply);
            mongoc_bulk_operation_destroy(bulk);
            free(filler);
            return false;
        }
        bson_destroy(&reply);
        mongoc_bulk_operation_destroy(bulk);
    }
    free(filler);
    return true;
}

typedef struct {
    const char *uri, *db, *coll;
    long lo, hi, n;
    uint64_t bytes;
    bool failed;
} part_t;

static void *
read_part(void *arg)
{
    part_t *p = arg;
    mongoc_client_t *client = mongoc_client_new(p->uri);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, p->db, p->coll);
    bson_t *filter = BCON_NEW("_id", "{", "$gte", BCON_INT64(p->lo), "$lt", BCON_INT64(p->hi), "}");
    bson_t *opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t err;
    while (mongoc_cursor_next(cur, &doc)) {
        p->n++;
        p->bytes += doc->len;
    }
    if (mongoc_cursor_error(cur, &err)) {
        fprintf(stderr, "bench_find: partition find failed: %s\n", err.message);
        p->failed = true;
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    return NULL;
}

/* parallel_run reads the collection in k _id partitions at once. */
static bool
parallel_run(const char *uri, const char *db, const char *coll, long docs, long k, long *n,
             uint64_t *bytes)
{
    pthread_t th[64];
    part_t parts[64];
    bool ok = true;
    *n = 0;
    *bytes = 0;
    for (long i = 0; i < k; i++) {
        parts[i] = (part_t){uri, db, coll, docs * i / k, docs * (i + 1) / k, 0, 0, false};
        pthread_create(&th[i], NULL, read_part, &parts[i]);
    }
    for (long i = 0; i < k; i++) {
        pthread_join(th[i], NULL);
        *n += parts[i].n;
        *bytes += parts[i].bytes;
        ok &= !parts[i].failed;
    }
    return ok;
}

int
main(int argc, char **argv)
{
    const char *uri_s = NULL, *dbname = "bench", *collname = "find1k";
    long docs = 1000000, size = 1024, runs = 3, clients = 1;
    bool do_load = true;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    double best_rate = 0, best_mb = 0, load_s = 0;
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--uri") == 0 && i + 1 < argc)
            uri_s = argv[++i];
        else if (strcmp(argv[i], "--docs") == 0 && i + 1 < argc)
            docs = atol(argv[++i]);
        else if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            size = atol(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atol(argv[++i]);
        else if (strcmp(argv[i], "--clients") == 0 && i + 1 < argc)
            clients = atol(argv[++i]);
        else if (strcmp(argv[i], "--db") == 0 && i + 1 < argc)
            dbname = argv[++i];
        else if (strcmp(argv[i], "--coll") == 0 && i + 1 < argc)
            collname = argv[++i];
        else if (strcmp(argv[i], "--no-load") == 0)
            do_load = false;
        else {
            fprintf(stderr, "usage: bench_find --uri URI [--docs N] [--size BYTES] [--runs R] "
                            "[--db D] [--coll C] [--no-load]\n");
            return 2;
        }
    }
    if (uri_s == NULL || docs <= 0 || size < 200 || runs <= 0 || clients < 1 || clients > 64) {
        fprintf(stderr, "bench_find: --uri is required; --docs > 0, --size >= 200\n");
        return 2;
    }
    mongoc_init();
    client = mongoc_client_new(uri_s);
    if (client == NULL) {
        fprintf(stderr, "bench_find: invalid URI\n");
        return 2;
    }
    coll = mongoc_client_get_collection(client, dbname, collname);
    if (do_load) {
        double t0 = now_s();
        if (!load(coll, docs, size)) {
            rc = 1;
            goto done;
        }
        load_s = now_s() - t0;
    }
    for (long r = 0; r < runs; r++) {
        bson_t filter = BSON_INITIALIZER;
        bson_t opts = BSON_INITIALIZER, sort;
        mongoc_cursor_t *cur;
        const bson_t *doc;
        bson_error_t err;
        long n = 0;
        uint64_t bytes = 0;
        double t0, el;
        BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
        BSON_APPEND_INT32(&sort, "_id", 1);
        bson_append_document_end(&opts, &sort);
        t0 = now_s();
        if (clients > 1) {
            if (!parallel_run(uri_s, dbname, collname, docs, clients, &n, &bytes))
                rc = 1;
        } else {
            cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
            while (mongoc_cursor_next(cur, &doc)) {
                n++;
                bytes += doc->len;
            }
            if (mongoc_cursor_error(cur, &err)) {
                fprintf(stderr, "bench_find: find failed: %s\n", err.message);
                rc = 1;
            }
            mongoc_cursor_destroy(cur);
        }
        el = now_s() - t0;
        bson_destroy(&filter);
        bson_destroy(&opts);
        if (n != docs) {
            fprintf(stderr, "bench_find: expected %ld documents, got %ld\n", docs, n);
            rc = 1;
        }
        fprintf(stderr, "run %ld: %ld docs in %.3f s: %.0f docs/s, %.1f MB/s\n", r + 1, n, el,
                (double)n / el, (double)bytes / el / 1e6);
        if ((double)n / el > best_rate) {
            best_rate = (double)n / el;
            best_mb = (double)bytes / el / 1e6;
        }
    }
    printf("{\"benchmark\":\"find\",\"docs\":%ld,\"doc_size\":%ld,\"clients\":%ld,"
           "\"load_seconds\":%.2f,\"best_docs_per_s\":%.0f,\"best_mb_per_s\":%.1f}\n",
           docs, size, clients, load_s, best_rate, best_mb);
done:
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mongoc_cleanup();
    return rc;
}
