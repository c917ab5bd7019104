/*
 * tests/integration/mongosim/msim_client.c - drives a server through
 * libmongoc: handshake and replica-set discovery, CRUD of every BSON type
 * (byte-exact), cursors over many batches, bulk writeErrors, aggregate,
 * change streams with resume, a transaction. Run by test_libmongoc.py.
 *
 * usage: msim_client URI [mongos]   exit 0 when every check passed
 *
 * With "mongos" the server is a sharded cluster's router: the handshake
 * checks msg "isdbgrid" instead of the replica set's name, and the
 * collection is sharded on a hashed _id each time it is recreated, so every
 * check runs over documents spread across the shards.
 */
#include <mongoc/mongoc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static bool g_mongos;
static mongoc_client_t *g_client;

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                   \
            fprintf(stderr, "\n");                                          \
            failures++;                                                     \
            return;                                                         \
        }                                                                   \
    } while (0)

static void
check_handshake(mongoc_client_t *client)
{
    bson_t cmd = BSON_INITIALIZER, reply;
    bson_error_t err;
    bson_iter_t it;
    bool ok;
    BSON_APPEND_INT32(&cmd, "hello", 1);
    ok = mongoc_client_command_simple(client, "admin", &cmd, NULL, &reply, &err);
    bson_destroy(&cmd);
    CHECK(ok, "hello failed: %s", err.message);
    CHECK(bson_iter_init_find(&it, &reply, "isWritablePrimary") && bson_iter_bool(&it),
          "not a writable primary");
    if (g_mongos)
        CHECK(bson_iter_init_find(&it, &reply, "msg") &&
                  strcmp(bson_iter_utf8(&it, NULL), "isdbgrid") == 0,
              "msg isdbgrid");
    else
        CHECK(bson_iter_init_find(&it, &reply, "setName") &&
                  strcmp(bson_iter_utf8(&it, NULL), "mongosim") == 0,
              "setName");
    CHECK(bson_iter_init_find(&it, &reply, "operationTime") && BSON_ITER_HOLDS_TIMESTAMP(&it),
          "operationTime missing");
    bson_destroy(&reply);
    printf("ok handshake\n");
}

static void
every_type(bson_t *d, int32_t id)
{
    bson_oid_t oid;
    bson_decimal128_t dec;
    bson_t sub, arr, scope;
    uint8_t bin[4] = {0, 1, 2, 255};
    bson_oid_init_from_string(&oid, "5f1e2d3c4b5a697887766554");
    bson_decimal128_from_string("-1.25E+10", &dec);
    BSON_APPEND_INT32(d, "_id", id);
    BSON_APPEND_DOUBLE(d, "double", -0.0);
    BSON_APPEND_UTF8(d, "utf8", "h\xc3\xa9llo");
    bson_append_utf8(d, "nul", -1, "a\0b", 3);
    BSON_APPEND_DOCUMENT_BEGIN(d, "doc", &sub);
    BSON_APPEND_INT64(&sub, "deep", INT64_MIN);
    bson_append_document_end(d, &sub);
    BSON_APPEND_ARRAY_BEGIN(d, "array", &arr);
    BSON_APPEND_INT32(&arr, "0", 1);
    BSON_APPEND_NULL(&arr, "1");
    bson_append_array_end(d, &arr);
    BSON_APPEND_BINARY(d, "bin", BSON_SUBTYPE_BINARY, bin, sizeof bin);
    BSON_APPEND_BINARY(d, "uuid", BSON_SUBTYPE_UUID, (const uint8_t *)"0123456789abcdef", 16);
    BSON_APPEND_UNDEFINED(d, "undefined");
    BSON_APPEND_OID(d, "oid", &oid);
    BSON_APPEND_BOOL(d, "bool", true);
    BSON_APPEND_DATE_TIME(d, "date", -62135596800000LL);
    BSON_APPEND_NULL(d, "null");
    BSON_APPEND_REGEX(d, "regex", "^a[b-c]+$", "imsx");
    BSON_APPEND_DBPOINTER(d, "dbpointer", "db.coll", &oid);
    BSON_APPEND_CODE(d, "code", "function() { return 1; }");
    BSON_APPEND_SYMBOL(d, "symbol", "sym");
    bson_init(&scope);
    BSON_APPEND_INT32(&scope, "x", 1);
    BSON_APPEND_CODE_WITH_SCOPE(d, "codews", "x + 1", &scope);
    bson_destroy(&scope);
    BSON_APPEND_INT32(d, "int32", INT32_MIN);
    BSON_APPEND_TIMESTAMP(d, "ts", 4294967295u, 4294967295u);
    BSON_APPEND_INT64(d, "int64", INT64_MAX);
    BSON_APPEND_DECIMAL128(d, "decimal", &dec);
    BSON_APPEND_MINKEY(d, "minkey");
    BSON_APPEND_MAXKEY(d, "maxkey");
}

/* reset drops the collection; through a router it is sharded again (hashed _id). */
static bool
reset(mongoc_collection_t *coll)
{
    bson_t cmd = BSON_INITIALIZER, key;
    bson_error_t err;
    char ns[256];
    bool ok;
    mongoc_collection_drop(coll, NULL);
    if (!g_mongos)
        return true;
    snprintf(ns, sizeof ns, "libmongoc.%s", mongoc_collection_get_name(coll));
    BSON_APPEND_UTF8(&cmd, "shardCollection", ns);
    bson_append_document_begin(&cmd, "key", -1, &key);
    BSON_APPEND_UTF8(&key, "_id", "hashed");
    bson_append_document_end(&cmd, &key);
    ok = mongoc_client_command_simple(g_client, "admin", &cmd, NULL, NULL, &err);
    bson_destroy(&cmd);
    if (!ok) {
        fprintf(stderr, "shardCollection: %s\n", err.message);
        failures++;
    }
    return ok;
}

static void
check_crud(mongoc_collection_t *coll)
{
    bson_t doc = BSON_INITIALIZER, filter = BSON_INITIALIZER, reply;
    const bson_t *got;
    bson_error_t err;
    mongoc_cursor_t *cur;
    bool ok, found;

    if (!reset(coll))
        return;
    every_type(&doc, 1);
    ok = mongoc_collection_insert_one(coll, &doc, NULL, NULL, &err);
    CHECK(ok, "insert: %s", err.message);
    BSON_APPEND_INT32(&filter, "_id", 1);
    cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
    found = mongoc_cursor_next(cur, &got);
    CHECK(found, "document not found");
    CHECK(got->len == doc.len && memcmp(bson_get_data(got), bson_get_data(&doc), doc.len) == 0,
          "round trip differs");
    mongoc_cursor_destroy(cur);

    /* find by a value of every type */
    {
        bson_iter_t it;
        bson_iter_init(&it, &doc);
        while (bson_iter_next(&it)) {
            bson_t f = BSON_INITIALIZER;
            int64_t n;
            if (BSON_ITER_HOLDS_REGEX(&it))
                continue; /* a regex in a filter is a pattern */
            bson_append_iter(&f, NULL, 0, &it);
            n = mongoc_collection_count_documents(coll, &f, NULL, NULL, NULL, &err);
            bson_destroy(&f);
            CHECK(n == 1, "filter on %s found %lld", bson_iter_key(&it), (long long)n);
        }
    }
    {
        bson_t upd = BSON_INITIALIZER, set;
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
        BSON_APPEND_UTF8(&set, "added", "yes");
        bson_append_document_end(&upd, &set);
        ok = mongoc_collection_update_one(coll, &filter, &upd, NULL, &reply, &err);
        bson_destroy(&upd);
        CHECK(ok, "update: %s", err.message);
        bson_destroy(&reply);
    }
    ok = mongoc_collection_delete_one(coll, &filter, NULL, &reply, &err);
    CHECK(ok, "delete: %s", err.message);
    bson_destroy(&reply);
    CHECK(mongoc_collection_count_documents(coll, &filter, NULL, NULL, NULL, &err) == 0,
          "still there after delete");
    bson_destroy(&doc);
    bson_destroy(&filter);
    printf("ok crud_every_type\n");
}

static void
check_cursor_and_bulk(mongoc_collection_t *coll)
{
    mongoc_bulk_operation_t *bulk;
    bson_t reply, opts = BSON_INITIALIZER, filter = BSON_INITIALIZER;
    bson_error_t err;
    mongoc_cursor_t *cur;
    const bson_t *doc;
    int n = 0;
    bool ok;
    uint32_t code;

    if (!reset(coll))
        return;
    bulk = mongoc_collection_create_bulk_operation_with_opts(coll, NULL);
    for (int i = 0; i < 3000; i++) {
        bson_t d = BSON_INITIALIZER;
        BSON_APPEND_INT32(&d, "_id", i);
        BSON_APPEND_UTF8(&d, "pad", "0123456789012345678901234567890123456789");
        mongoc_bulk_operation_insert(bulk, &d);
        bson_destroy(&d);
    }
    ok = mongoc_bulk_operation_execute(bulk, &reply, &err) != 0;
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(&reply);
    CHECK(ok, "bulk insert: %s", err.message);
    BSON_APPEND_INT32(&opts, "batchSize", 100);
    cur = mongoc_collection_find_with_opts(coll, &filter, &opts, NULL);
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        CHECK(bson_iter_init_find(&it, doc, "_id") && bson_iter_int32(&it) == n, "order at %d", n);
        n++;
    }
    CHECK(!mongoc_cursor_error(cur, &err), "cursor: %s", err.message);
    mongoc_cursor_destroy(cur);
    CHECK(n == 3000, "got %d documents", n);

    /* ordered bulk stops at the duplicate */
    bulk = mongoc_collection_create_bulk_operation_with_opts(coll, NULL);
    for (int i = 2999; i < 3002; i++) {
        bson_t d = BSON_INITIALIZER;
        BSON_APPEND_INT32(&d, "_id", i == 3001 ? 5000 : i);
        mongoc_bulk_operation_insert(bulk, &d);
        bson_destroy(&d);
    }
    ok = mongoc_bulk_operation_execute(bulk, &reply, &err) != 0;
    mongoc_bulk_operation_destroy(bulk);
    code = err.code;
    bson_destroy(&reply);
    CHECK(!ok && code == 11000, "expected duplicate key, got %u", code);
    CHECK(mongoc_collection_count_documents(coll, &filter, NULL, NULL, NULL, &err) == 3000,
          "ordered bulk went on after the error");
    bson_destroy(&opts);
    bson_destroy(&filter);
    printf("ok cursor_and_bulk\n");
}

static void
check_aggregate(mongoc_collection_t *coll)
{
    bson_t *pipeline = BCON_NEW("pipeline", "[", "{", "$group", "{", "_id", BCON_NULL, "n", "{",
                                "$sum", BCON_INT32(1), "}", "}", "}", "]");
    mongoc_cursor_t *cur =
        mongoc_collection_aggregate(coll, MONGOC_QUERY_NONE, pipeline, NULL, NULL);
    const bson_t *doc;
    bson_iter_t it;
    bool found = mongoc_cursor_next(cur, &doc);
    bson_destroy(pipeline);
    CHECK(found, "no aggregate result");
    CHECK(bson_iter_init_find(&it, doc, "n") && bson_iter_int32(&it) == 3000, "count");
    mongoc_cursor_destroy(cur);
    printf("ok aggregate\n");
}

static void
check_change_stream(mongoc_client_t *client, mongoc_collection_t *coll)
{
    bson_t empty = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    mongoc_change_stream_t *cs;
    const bson_t *ev;
    bson_error_t err;
    bson_t *token = NULL;
    int seen = 0;

    BSON_APPEND_INT32(&opts, "maxAwaitTimeMS", 200);
    cs = mongoc_collection_watch(coll, &empty, &opts);
    for (int i = 0; i < 3; i++) {
        bson_t d = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&d, "_id", i == 0 ? "a" : i == 1 ? "b" : "c");
        mongoc_collection_insert_one(coll, &d, NULL, NULL, NULL);
        bson_destroy(&d);
    }
    for (int tries = 0; seen < 3 && tries < 50; tries++) {
        while (seen < 3 && mongoc_change_stream_next(cs, &ev)) {
            bson_iter_t it;
            if (seen == 0)
                token = bson_copy(mongoc_change_stream_get_resume_token(cs));
            CHECK(bson_iter_init_find(&it, ev, "operationType") &&
                      strcmp(bson_iter_utf8(&it, NULL), "insert") == 0,
                  "operationType");
            seen++;
        }
        CHECK(!mongoc_change_stream_error_document(cs, &err, NULL), "stream: %s", err.message);
    }
    mongoc_change_stream_destroy(cs);
    CHECK(seen == 3, "saw %d events", seen);

    /* resume after the first event: exactly the two later ones */
    bson_reinit(&opts);
    BSON_APPEND_DOCUMENT(&opts, "resumeAfter", token);
    BSON_APPEND_INT32(&opts, "maxAwaitTimeMS", 200);
    cs = mongoc_collection_watch(coll, &empty, &opts);
    seen = 0;
    for (int tries = 0; tries < 10; tries++)
        while (mongoc_change_stream_next(cs, &ev)) {
            bson_iter_t it, id;
            const char *want = seen == 0 ? "b" : "c";
            CHECK(bson_iter_init(&it, ev) &&
                      bson_iter_find_descendant(&it, "documentKey._id", &id) &&
                      BSON_ITER_HOLDS_UTF8(&id) && strcmp(bson_iter_utf8(&id, NULL), want) == 0,
                  "resumed event %d is not _id %s", seen, want);
            seen++;
        }
    mongoc_change_stream_destroy(cs);
    CHECK(seen == 2, "resumed stream saw %d events", seen);
    bson_destroy(token);
    bson_destroy(&empty);
    bson_destroy(&opts);
    (void)client;
    printf("ok change_stream\n");
}

static void
check_transaction(mongoc_client_t *client, mongoc_collection_t *coll)
{
    bson_error_t err;
    mongoc_client_session_t *s = mongoc_client_start_session(client, NULL, &err);
    bson_t opts = BSON_INITIALIZER, d = BSON_INITIALIZER, f = BSON_INITIALIZER, reply;
    bool ok;
    CHECK(s != NULL, "session: %s", err.message);
    ok = mongoc_client_session_start_transaction(s, NULL, &err);
    CHECK(ok, "start: %s", err.message);
    mongoc_client_session_append(s, &opts, &err);
    BSON_APPEND_UTF8(&d, "_id", "in-txn");
    ok = mongoc_collection_insert_one(coll, &d, &opts, NULL, &err);
    CHECK(ok, "insert in txn: %s", err.message);
    BSON_APPEND_UTF8(&f, "_id", "in-txn");
    CHECK(mongoc_collection_count_documents(coll, &f, NULL, NULL, NULL, &err) == 0,
          "visible before commit");
    ok = mongoc_client_session_commit_transaction(s, &reply, &err);
    bson_destroy(&reply);
    CHECK(ok, "commit: %s", err.message);
    CHECK(mongoc_collection_count_documents(coll, &f, NULL, NULL, NULL, &err) == 1,
          "not visible after commit");
    mongoc_client_session_destroy(s);
    bson_destroy(&opts);
    bson_destroy(&d);
    bson_destroy(&f);
    printf("ok transaction\n");
}

int
main(int argc, char **argv)
{
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    bson_error_t err;
    mongoc_uri_t *uri;
    if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "mongos") != 0)) {
        fprintf(stderr, "usage: msim_client URI [mongos]\n");
        return 2;
    }
    g_mongos = argc == 3;
    mongoc_init();
    uri = mongoc_uri_new_with_error(argv[1], &err);
    if (uri == NULL) {
        fprintf(stderr, "msim_client: invalid URI: %s\n", err.message);
        return 2;
    }
    client = g_client = mongoc_client_new_from_uri(uri);
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    coll = mongoc_client_get_collection(client, "libmongoc", "c");
    check_handshake(client);
    check_crud(coll);
    check_cursor_and_bulk(coll);
    check_aggregate(coll);
    check_change_stream(client, coll);
    check_transaction(client, coll);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mongoc_uri_destroy(uri);
    mongoc_cleanup();
    if (failures > 0) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    return 0;
}
