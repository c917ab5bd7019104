/*
 * tests/tools/datagen/datagen.c - test data for MongoDB (mongosim or a real
 * server): realistic collections and a live write workload with a log of
 * what the server acknowledged.
 *
 *   datagen generate --uri URI --db D --coll C --count N [--seed S]
 *           [--size-min B] [--size-max B] [--big-every K] [--big-size B]
 *           [--id-type objectid|int|string|uuid|mixed] [--all-types-every K]
 *           [--batch N] [--drop]
 *   datagen workload --uri URI --db D --coll C --existing N --rate OPS
 *           --duration SECONDS --ack-log FILE [--seed S] [--id-type T]
 *           [--mix insert=40,update=30,replace=10,delete=10,txn=10]
 *           (SIGINT/SIGTERM stop it early, after the operation in flight)
 *
 * Everything derives from --seed: document i of a collection is the same
 * on every run. The ack log has one JSON object per acknowledged write:
 *   {"seq":N,"op":"insert|update|replace|delete","txn":K|null,
 *    "id":<_id>,"doc":<document after the write, null after a delete>}
 * (canonical Extended JSON), so a test can compute the expected final state
 * of the collection: the last line of each _id wins.
 *
 * Exit codes: 0 done, 1 a write failed, 2 usage.
 */
#include <math.h>
#include <mongoc/mongoc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *cmd, *uri, *db, *coll, *ack_log, *id_type, *mix;
    uint64_t seed;
    long count, existing, batch, size_min, size_max, big_every, big_size, all_types_every;
    double rate, duration;
    bool drop;
} opts_t;

/* ------------------------------------------------------------------------
 * Deterministic randomness: splitmix64 streams keyed by (seed, index, salt)
 * ------------------------------------------------------------------------ */

typedef struct {
    uint64_t s;
} rng_t;

static uint64_t
rng_next(rng_t *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static rng_t
rng_for(uint64_t seed, uint64_t index, uint64_t salt)
{
    rng_t r = {seed * 0x100000001B3ull ^ (index * 0x9E3779B97F4A7C15ull) ^ (salt << 48)};
    rng_next(&r);
    return r;
}

static uint64_t
rng_range(rng_t *r, uint64_t n)
{
    return n == 0 ? 0 : rng_next(r) % n;
}

static double
rng_unit(rng_t *r)
{
    return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

static const char *words[] = {"alpha",  "bravo",    "charlie", "delta",  "echo",    "foxtrot",
                              "golf",   "hotel",    "india",   "juliet", "kilo",    "lima",
                              "mike",   "november", "oscar",   "papa",   "quebec",  "romeo",
                              "sierra", "tango",    "uniform", "victor", "whiskey", "xray",
                              "yankee", "zulu",     "ünïcödé", "日本"};
#define NWORDS (sizeof words / sizeof words[0])

static const char *cities[] = {"Lisbon", "Oslo",  "Lima",  "Osaka", "Quito",
                               "Perth",  "Accra", "Turku", "Porto", "Cusco"};

/* ------------------------------------------------------------------------
 * Documents
 * ------------------------------------------------------------------------ */

/* append_str appends a string (BSON_APPEND_UTF8 evaluates its value twice). */
static void
append_str(bson_t *b, const char *key, const char *value)
{
    bson_append_utf8(b, key, -1, value, -1);
}

/* append_id writes the _id of document index for the id type. */
static void
append_id(bson_t *d, const char *id_type, uint64_t seed, long index)
{
    rng_t r = rng_for(seed, (uint64_t)index, 1);
    const char *t = id_type;
    if (strcmp(t, "mixed") == 0) {
        static const char *kinds[] = {"objectid", "int", "string", "uuid"};
        t = kinds[index % 4];
    }
    if (strcmp(t, "int") == 0) {
        BSON_APPEND_INT64(d, "_id", index);
    } else if (strcmp(t, "string") == 0) {
        char s[32];
        snprintf(s, sizeof s, "user-%08ld", index);
        BSON_APPEND_UTF8(d, "_id", s);
    } else if (strcmp(t, "uuid") == 0) {
        uint8_t u[16];
        uint64_t a = rng_next(&r), b = rng_next(&r);
        memcpy(u, &a, 8);
        memcpy(u + 8, &b, 8);
        u[6] = (uint8_t)((u[6] & 0x0f) | 0x40);
        u[8] = (uint8_t)((u[8] & 0x3f) | 0x80);
        BSON_APPEND_BINARY(d, "_id", BSON_SUBTYPE_UUID, u, 16);
    } else {
        /* ObjectId: 4-byte increasing time, then 8 deterministic bytes */
        bson_oid_t oid;
        uint32_t ts = 1600000000u + (uint32_t)index;
        uint64_t rest = rng_next(&r);
        oid.bytes[0] = (uint8_t)(ts >> 24);
        oid.bytes[1] = (uint8_t)(ts >> 16);
        oid.bytes[2] = (uint8_t)(ts >> 8);
        oid.bytes[3] = (uint8_t)ts;
        memcpy(oid.bytes + 4, &rest, 8);
        BSON_APPEND_OID(d, "_id", &oid);
    }
}

static void
append_all_types(bson_t *d, rng_t *r)
{
    bson_t sub, scope;
    bson_oid_t oid;
    bson_decimal128_t dec;
    char num[64];
    uint8_t bin[8];
    uint64_t x = rng_next(r);
    memcpy(bin, &x, 8);
    bson_oid_init_from_string(&oid, "5f1e2d3c4b5a697887766554");
    snprintf(num, sizeof num, "%lld.%02d", (long long)(x % 100000), (int)(x % 100));
    bson_decimal128_from_string(num, &dec);
    BSON_APPEND_DOCUMENT_BEGIN(d, "allTypes", &sub);
    BSON_APPEND_DOUBLE(&sub, "double", rng_unit(r) * 1e6);
    BSON_APPEND_DOUBLE(&sub, "negzero", -0.0);
    BSON_APPEND_UTF8(&sub, "string", words[x % NWORDS]);
    BSON_APPEND_BINARY(&sub, "binary", BSON_SUBTYPE_BINARY, bin, 8);
    BSON_APPEND_UNDEFINED(&sub, "undefined");
    BSON_APPEND_OID(&sub, "oid", &oid);
    BSON_APPEND_BOOL(&sub, "bool", (x & 1) != 0);
    BSON_APPEND_DATE_TIME(&sub, "date", (int64_t)(x % 4000000000000ull) - 1000000000000ll);
    BSON_APPEND_NULL(&sub, "null");
    BSON_APPEND_REGEX(&sub, "regex", "^ab+c$", "i");
    BSON_APPEND_DBPOINTER(&sub, "dbpointer", "db.other", &oid);
    BSON_APPEND_CODE(&sub, "code", "function () { return 1; }");
    BSON_APPEND_SYMBOL(&sub, "symbol", "sym");
    bson_init(&scope);
    BSON_APPEND_INT32(&scope, "k", 1);
    BSON_APPEND_CODE_WITH_SCOPE(&sub, "codeWithScope", "k + 1", &scope);
    bson_destroy(&scope);
    BSON_APPEND_INT32(&sub, "int32", (int32_t)(x & 0x7fffffff));
    BSON_APPEND_TIMESTAMP(&sub, "timestamp", (uint32_t)(x >> 32), (uint32_t)x);
    BSON_APPEND_INT64(&sub, "int64", (int64_t)x);
    BSON_APPEND_DECIMAL128(&sub, "decimal", &dec);
    BSON_APPEND_MINKEY(&sub, "minKey");
    BSON_APPEND_MAXKEY(&sub, "maxKey");
    bson_append_document_end(d, &sub);
}

/*
 * make_doc builds document index (version: 0 for the original, n for the
 * n-th replacement) of about target bytes.
 */
static void
make_doc(bson_t *d, const opts_t *o, long index, uint64_t version)
{
    rng_t r = rng_for(o->seed, (uint64_t)index, 2 + version * 7);
    bson_t addr, geo, coords, tags, items, profile, prefs;
    char buf[128];
    long target;
    double lo = (double)o->size_min, hi = (double)o->size_max;

    if (o->big_every > 0 && index % o->big_every == o->big_every - 1)
        target = o->big_size;
    else
        target = (long)(lo * pow(hi / lo, rng_unit(&r)));
    append_id(d, o->id_type, o->seed, index);
    snprintf(buf, sizeof buf, "%s %s", words[rng_range(&r, NWORDS)], words[rng_range(&r, NWORDS)]);
    BSON_APPEND_UTF8(d, "name", buf);
    snprintf(buf, sizeof buf, "user%ld@example.com", index);
    BSON_APPEND_UTF8(d, "email", buf);
    BSON_APPEND_INT32(d, "age", (int32_t)(18 + rng_range(&r, 70)));
    BSON_APPEND_DOUBLE(d, "score", rng_unit(&r) * 100.0);
    BSON_APPEND_BOOL(d, "active", rng_range(&r, 4) != 0);
    BSON_APPEND_DATE_TIME(d, "createdAt",
                          1500000000000ll + (int64_t)rng_range(&r, 200000000000ull));
    BSON_APPEND_INT64(d, "version", (int64_t)version);
    if (rng_range(&r, 5) == 0)
        BSON_APPEND_NULL(d, "nickname");
    BSON_APPEND_DOCUMENT_BEGIN(d, "address", &addr);
    snprintf(buf, sizeof buf, "%d %s street", (int)rng_range(&r, 999) + 1,
             words[rng_range(&r, NWORDS)]);
    BSON_APPEND_UTF8(&addr, "street", buf);
    append_str(&addr, "city", cities[rng_range(&r, 10)]);
    BSON_APPEND_DOCUMENT_BEGIN(&addr, "geo", &geo);
    BSON_APPEND_UTF8(&geo, "type", "Point");
    BSON_APPEND_ARRAY_BEGIN(&geo, "coordinates", &coords);
    BSON_APPEND_DOUBLE(&coords, "0", rng_unit(&r) * 360.0 - 180.0);
    BSON_APPEND_DOUBLE(&coords, "1", rng_unit(&r) * 180.0 - 90.0);
    bson_append_array_end(&geo, &coords);
    bson_append_document_end(&addr, &geo);
    bson_append_document_end(d, &addr);
    BSON_APPEND_ARRAY_BEGIN(d, "tags", &tags);
    for (uint64_t i = 0, n = rng_range(&r, 6); i < n; i++) {
        char k[16];
        snprintf(k, sizeof k, "%u", (unsigned)i);
        append_str(&tags, k, words[rng_range(&r, NWORDS)]);
    }
    bson_append_array_end(d, &tags);
    BSON_APPEND_ARRAY_BEGIN(d, "items", &items);
    for (uint64_t i = 0, n = rng_range(&r, 4); i < n; i++) {
        bson_t it;
        char k[16];
        bson_decimal128_t price;
        snprintf(k, sizeof k, "%u", (unsigned)i);
        snprintf(buf, sizeof buf, "%d.%02d", (int)rng_range(&r, 500), (int)rng_range(&r, 100));
        bson_decimal128_from_string(buf, &price);
        BSON_APPEND_DOCUMENT_BEGIN(&items, k, &it);
        snprintf(buf, sizeof buf, "SKU-%05d", (int)rng_range(&r, 100000));
        BSON_APPEND_UTF8(&it, "sku", buf);
        BSON_APPEND_INT32(&it, "qty", (int32_t)rng_range(&r, 10) + 1);
        BSON_APPEND_DECIMAL128(&it, "price", &price);
        bson_append_document_end(&items, &it);
    }
    bson_append_array_end(d, &items);
    BSON_APPEND_DOCUMENT_BEGIN(d, "profile", &profile);
    BSON_APPEND_DOCUMENT_BEGIN(&profile, "prefs", &prefs);
    BSON_APPEND_BOOL(&prefs, "email", rng_range(&r, 2) == 0);
    append_str(&prefs, "lang", rng_range(&r, 2) ? "en" : "pt");
    bson_append_document_end(&profile, &prefs);
    BSON_APPEND_INT64(&profile, "visits", (int64_t)rng_range(&r, 100000));
    bson_append_document_end(d, &profile);
    if (o->all_types_every > 0 && index % o->all_types_every == 0)
        append_all_types(d, &r);
    if ((long)d->len + 12 < target) {
        long pad = target - (long)d->len - 12; /* type, "notes", length, NUL */
        char *text = malloc((size_t)pad + 1);
        if (text != NULL) {
            for (long i = 0; i < pad; i++)
                text[i] = (char)('a' + rng_range(&r, 26));
            text[pad] = '\0';
            BSON_APPEND_UTF8(d, "notes", text);
            free(text);
        }
    }
}

/* ------------------------------------------------------------------------
 * generate
 * ------------------------------------------------------------------------ */

static int
cmd_generate(const opts_t *o, mongoc_collection_t *coll)
{
    bson_error_t err;
    long done = 0;
    if (o->drop && !mongoc_collection_drop(coll, &err) && err.code != 26) {
        fprintf(stderr, "datagen: could not drop: %s\n", err.message);
        return 1;
    }
    while (done < o->count) {
        mongoc_bulk_operation_t *bulk;
        bson_t reply;
        bool ok;
        bson_t *bopts = BCON_NEW("ordered", BCON_BOOL(true));
        bulk = mongoc_collection_create_bulk_operation_with_opts(coll, bopts);
        bson_destroy(bopts);
        for (long i = done; i < done + o->batch && i < o->count; i++) {
            bson_t d = BSON_INITIALIZER;
            make_doc(&d, o, i, 0);
            mongoc_bulk_operation_insert(bulk, &d);
            bson_destroy(&d);
        }
        ok = mongoc_bulk_operation_execute(bulk, &reply, &err) != 0;
        mongoc_bulk_operation_destroy(bulk);
        bson_destroy(&reply);
        if (!ok) {
            fprintf(stderr, "datagen: could not insert documents %ld..: %s\n", done, err.message);
            return 1;
        }
        done = done + o->batch < o->count ? done + o->batch : o->count;
    }
    printf("{\"generated\":%ld,\"ns\":\"%s.%s\",\"seed\":%llu}\n", done, o->db, o->coll,
           (unsigned long long)o->seed);
    return 0;
}

/* ------------------------------------------------------------------------
 * workload
 * ------------------------------------------------------------------------ */

enum { W_INSERT, W_UPDATE, W_REPLACE, W_DELETE, W_TXN, W_KINDS };
static const char *wnames[] = {"insert", "update", "replace", "delete", "txn"};

typedef struct {
    const opts_t *o;
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    FILE *log;
    long seq;
    long next_index;
    unsigned char *deleted; /* per index: 1 = deleted */
    uint64_t *versions;
    long cap;
    long counts[W_KINDS];
    long failures;
    rng_t rng;
} work_t;

static void
log_ack(work_t *w, const char *op, long txn, const bson_t *id_doc, const bson_t *doc)
{
    bson_t line = BSON_INITIALIZER;
    bson_iter_t id;
    char *json;
    BSON_APPEND_INT64(&line, "seq", ++w->seq);
    BSON_APPEND_UTF8(&line, "op", op);
    if (txn >= 0)
        BSON_APPEND_INT64(&line, "txn", txn);
    else
        BSON_APPEND_NULL(&line, "txn");
    if (bson_iter_init_find(&id, id_doc, "_id"))
        bson_append_value(&line, "id", 2, bson_iter_value(&id));
    if (doc != NULL)
        BSON_APPEND_DOCUMENT(&line, "doc", doc);
    else
        BSON_APPEND_NULL(&line, "doc");
    json = bson_as_canonical_extended_json(&line, NULL);
    fprintf(w->log, "%s\n", json);
    bson_free(json);
    bson_destroy(&line);
}

static void
ensure_cap(work_t *w, long index)
{
    if (index < w->cap)
        return;
    long ncap = w->cap ? w->cap * 2 : 1024;
    while (ncap <= index)
        ncap *= 2;
    w->deleted = realloc(w->deleted, (size_t)ncap);
    w->versions = realloc(w->versions, (size_t)ncap * sizeof *w->versions);
    if (w->deleted == NULL || w->versions == NULL) {
        fprintf(stderr, "datagen: out of memory\n");
        exit(1);
    }
    memset(w->deleted + w->cap, 0, (size_t)(ncap - w->cap));
    memset(w->versions + w->cap, 0, (size_t)(ncap - w->cap) * sizeof *w->versions);
    w->cap = ncap;
}

/* pick_live returns a random index that is not deleted, or -1. */
static long
pick_live(work_t *w, long *avoid, int navoid)
{
    for (int tries = 0; tries < 64 && w->next_index > 0; tries++) {
        long i = (long)rng_range(&w->rng, (uint64_t)w->next_index);
        bool bad = w->deleted[i] != 0;
        for (int k = 0; k < navoid; k++)
            bad |= avoid[k] == i;
        if (!bad)
            return i;
    }
    return -1;
}

static void
id_filter(work_t *w, long index, bson_t *f)
{
    append_id(f, w->o->id_type, w->o->seed, index);
}

/* one_op runs one write (in session s when not NULL); logs on success. */
static bool
one_op(work_t *w, int kind, mongoc_client_session_t *s, long txn, long *avoid, int navoid,
       long *used)
{
    bson_t opts = BSON_INITIALIZER, reply, filter = BSON_INITIALIZER;
    bson_error_t err;
    bool ok = false;
    long index;
    *used = -1;
    if (s != NULL && !mongoc_client_session_append(s, &opts, &err))
        goto done;
    if (kind == W_INSERT) {
        bson_t d = BSON_INITIALIZER;
        index = w->next_index;
        ensure_cap(w, index);
        make_doc(&d, w->o, index, 0);
        ok = mongoc_collection_insert_one(w->coll, &d, &opts, &reply, &err);
        bson_destroy(&reply);
        if (ok) {
            w->next_index++;
            id_filter(w, index, &filter);
            if (txn < 0)
                log_ack(w, "insert", txn, &filter, &d);
            *used = index;
        }
        bson_destroy(&d);
        goto done;
    }
    index = pick_live(w, avoid, navoid);
    if (index < 0)
        goto done;
    *used = index;
    id_filter(w, index, &filter);
    if (kind == W_DELETE) {
        ok = mongoc_collection_delete_one(w->coll, &filter, &opts, &reply, &err);
        bson_destroy(&reply);
        if (ok && txn < 0) {
            w->deleted[index] = 1;
            log_ack(w, "delete", txn, &filter, NULL);
        }
    } else {
        mongoc_find_and_modify_opts_t *fam = mongoc_find_and_modify_opts_new();
        bson_t update = BSON_INITIALIZER;
        bson_iter_t it;
        if (kind == W_REPLACE) {
            bson_t d = BSON_INITIALIZER;
            make_doc(&d, w->o, index, w->versions[index] + 1);
            /* a replacement keeps _id; send the document without it */
            bson_iter_init(&it, &d);
            while (bson_iter_next(&it))
                if (strcmp(bson_iter_key(&it), "_id") != 0)
                    bson_append_iter(&update, NULL, 0, &it);
            bson_destroy(&d);
        } else {
            bson_t set, inc, push;
            char val[32];
            snprintf(val, sizeof val, "%s-%ld", words[rng_range(&w->rng, NWORDS)], w->seq);
            BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
            append_str(&set, "address.city", cities[rng_range(&w->rng, 10)]);
            BSON_APPEND_UTF8(&set, "status", val);
            bson_append_document_end(&update, &set);
            BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &inc);
            BSON_APPEND_INT64(&inc, "profile.visits", 1);
            bson_append_document_end(&update, &inc);
            BSON_APPEND_DOCUMENT_BEGIN(&update, "$push", &push);
            append_str(&push, "tags", words[rng_range(&w->rng, NWORDS)]);
            bson_append_document_end(&update, &push);
            if (rng_range(&w->rng, 3) == 0) {
                bson_t unset;
                BSON_APPEND_DOCUMENT_BEGIN(&update, "$unset", &unset);
                BSON_APPEND_UTF8(&unset, "nickname", "");
                bson_append_document_end(&update, &unset);
            }
        }
        mongoc_find_and_modify_opts_set_update(fam, &update);
        mongoc_find_and_modify_opts_set_flags(fam, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
        mongoc_find_and_modify_opts_append(fam, &opts);
        ok = mongoc_collection_find_and_modify_with_opts(w->coll, &filter, fam, &reply, &err);
        if (ok && txn < 0 && bson_iter_init_find(&it, &reply, "value") &&
            BSON_ITER_HOLDS_DOCUMENT(&it)) {
            const uint8_t *data;
            uint32_t len;
            bson_t after;
            bson_iter_document(&it, &len, &data);
            bson_init_static(&after, data, len);
            log_ack(w, kind == W_REPLACE ? "replace" : "update", txn, &filter, &after);
        }
        if (ok && kind == W_REPLACE)
            w->versions[index]++;
        bson_destroy(&reply);
        bson_destroy(&update);
        mongoc_find_and_modify_opts_destroy(fam);
    }
done:
    if (!ok && s == NULL)
        fprintf(stderr, "datagen: %s failed: %s\n", wnames[kind], err.message);
    bson_destroy(&opts);
    bson_destroy(&filter);
    return ok;
}

/* txn_op runs 2-3 writes on distinct documents in one transaction. */
static bool
txn_op(work_t *w, long txn)
{
    bson_error_t err;
    mongoc_client_session_t *s = mongoc_client_start_session(w->client, NULL, &err);
    long used[3] = {-1, -1, -1};
    int kinds[3], n = 2 + (int)rng_range(&w->rng, 2);
    bool ok;
    bson_t reply;
    if (s == NULL) {
        fprintf(stderr, "datagen: could not start a session: %s\n", err.message);
        return false;
    }
    ok = mongoc_client_session_start_transaction(s, NULL, &err);
    for (int i = 0; ok && i < n; i++) {
        kinds[i] = i == 0 ? W_INSERT : (int)(1 + rng_range(&w->rng, 3)); /* update/replace/delete */
        ok = one_op(w, kinds[i], s, txn, used, i, &used[i]);
    }
    if (ok)
        ok = mongoc_client_session_commit_transaction(s, &reply, &err);
    else
        mongoc_client_session_abort_transaction(s, NULL);
    if (ok)
        bson_destroy(&reply);
    if (ok) {
        /* acknowledged: log the effect of every statement (read back by _id) */
        for (int i = 0; i < n; i++) {
            bson_t f = BSON_INITIALIZER;
            mongoc_cursor_t *cur;
            const bson_t *doc;
            id_filter(w, used[i], &f);
            if (kinds[i] == W_DELETE) {
                w->deleted[used[i]] = 1;
                log_ack(w, "delete", txn, &f, NULL);
            } else {
                cur = mongoc_collection_find_with_opts(w->coll, &f, NULL, NULL);
                if (mongoc_cursor_next(cur, &doc))
                    log_ack(w, wnames[kinds[i]], txn, &f, doc);
                mongoc_cursor_destroy(cur);
            }
            bson_destroy(&f);
        }
    } else {
        /* nothing was applied: undo the bookkeeping of the statements */
        for (int i = 0; i < n; i++)
            if (used[i] >= 0 && kinds[i] == W_INSERT && used[i] == w->next_index - 1)
                w->next_index--;
        fprintf(stderr, "datagen: transaction %ld failed: %s\n", txn, err.message);
    }
    mongoc_client_session_destroy(s);
    return ok;
}

static bool
parse_mix(const char *mix, int weights[W_KINDS])
{
    char *copy = strdup(mix), *save = NULL, *tok;
    for (int i = 0; i < W_KINDS; i++)
        weights[i] = 0;
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        int k;
        if (eq == NULL) {
            free(copy);
            return false;
        }
        *eq = '\0';
        for (k = 0; k < W_KINDS && strcmp(wnames[k], tok) != 0; k++)
            ;
        if (k == W_KINDS || atoi(eq + 1) < 0) {
            free(copy);
            return false;
        }
        weights[k] = atoi(eq + 1);
    }
    free(copy);
    return true;
}

static double
now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* SIGINT/SIGTERM end a workload after the operation in flight, with its stats. */
static volatile sig_atomic_t workload_stop;

static void
on_stop_signal(int sig)
{
    (void)sig;
    workload_stop = 1;
}

static int
cmd_workload(const opts_t *o, mongoc_client_t *client, mongoc_collection_t *coll)
{
    work_t w;
    int weights[W_KINDS], total = 0;
    double t0, end;
    long n = 0, txns = 0;

    memset(&w, 0, sizeof w);
    w.o = o;
    w.client = client;
    w.coll = coll;
    w.next_index = o->existing;
    w.rng = rng_for(o->seed, 0, 99);
    ensure_cap(&w, o->existing + 1);
    if (!parse_mix(o->mix, weights)) {
        fprintf(stderr, "datagen: invalid --mix \"%s\"\n", o->mix);
        return 2;
    }
    for (int i = 0; i < W_KINDS; i++)
        total += weights[i];
    if (total <= 0) {
        fprintf(stderr, "datagen: --mix has no weight\n");
        return 2;
    }
    w.log = fopen(o->ack_log, "w");
    if (w.log == NULL) {
        fprintf(stderr, "datagen: could not open \"%s\"\n", o->ack_log);
        return 2;
    }
    signal(SIGINT, on_stop_signal);
    signal(SIGTERM, on_stop_signal);
    t0 = now_s();
    end = t0 + o->duration;
    while (now_s() < end && !workload_stop) {
        double due = t0 + (double)n / o->rate;
        int pick = (int)rng_range(&w.rng, (uint64_t)total), kind = 0;
        long used;
        bool ok;
        while (now_s() < due && !workload_stop)
            usleep(200);
        if (workload_stop)
            break;
        while (pick >= weights[kind])
            pick -= weights[kind++];
        if (kind == W_TXN)
            ok = txn_op(&w, txns++);
        else
            ok = one_op(&w, kind, NULL, -1, NULL, 0, &used);
        if (ok)
            w.counts[kind]++;
        else
            w.failures++;
        n++;
        fflush(w.log);
    }
    fclose(w.log);
    printf("{\"ops\":%ld,\"acknowledged_writes\":%ld,\"failures\":%ld,\"seconds\":%.2f,"
           "\"insert\":%ld,\"update\":%ld,\"replace\":%ld,\"delete\":%ld,\"txn\":%ld,"
           "\"next_index\":%ld}\n",
           n, w.seq, w.failures, now_s() - t0, w.counts[W_INSERT], w.counts[W_UPDATE],
           w.counts[W_REPLACE], w.counts[W_DELETE], w.counts[W_TXN], w.next_index);
    free(w.deleted);
    free(w.versions);
    return w.failures > 0 ? 1 : 0;
}

/* ------------------------------------------------------------------------ */

static void
usage(FILE *f)
{
    fprintf(f, "usage: datagen generate --uri URI --db D --coll C --count N [--seed S]\n"
               "                [--size-min B] [--size-max B] [--big-every K] [--big-size B]\n"
               "                [--id-type objectid|int|string|uuid|mixed] [--all-types-every K]\n"
               "                [--batch N] [--drop]\n"
               "       datagen workload --uri URI --db D --coll C --existing N --rate OPS\n"
               "                --duration SECONDS --ack-log FILE [--seed S] [--id-type T]\n"
               "                [--mix insert=40,update=30,replace=10,delete=10,txn=10]\n");
}

int
main(int argc, char **argv)
{
    opts_t o = {.db = "test",
                .coll = "data",
                .id_type = "objectid",
                .mix = "insert=40,update=30,replace=10,delete=10,txn=10",
                .seed = 1,
                .count = 1000,
                .batch = 1000,
                .size_min = 100,
                .size_max = 4096,
                .big_size = 4 << 20,
                .rate = 100,
                .duration = 5};
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    int rc;

    if (argc < 2 || (strcmp(argv[1], "generate") != 0 && strcmp(argv[1], "workload") != 0)) {
        usage(argc >= 2 && strcmp(argv[1], "--help") == 0 ? stdout : stderr);
        return argc >= 2 && strcmp(argv[1], "--help") == 0 ? 0 : 2;
    }
    o.cmd = argv[1];
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--drop") == 0) {
            o.drop = true;
            continue;
        }
        if (v == NULL) {
            fprintf(stderr, "datagen: %s needs a value\n", a);
            return 2;
        }
        i++;
        if (strcmp(a, "--uri") == 0)
            o.uri = v;
        else if (strcmp(a, "--db") == 0)
            o.db = v;
        else if (strcmp(a, "--coll") == 0)
            o.coll = v;
        else if (strcmp(a, "--seed") == 0)
            o.seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--count") == 0)
            o.count = atol(v);
        else if (strcmp(a, "--existing") == 0)
            o.existing = atol(v);
        else if (strcmp(a, "--batch") == 0)
            o.batch = atol(v);
        else if (strcmp(a, "--size-min") == 0)
            o.size_min = atol(v);
        else if (strcmp(a, "--size-max") == 0)
            o.size_max = atol(v);
        else if (strcmp(a, "--big-every") == 0)
            o.big_every = atol(v);
        else if (strcmp(a, "--big-size") == 0)
            o.big_size = atol(v);
        else if (strcmp(a, "--all-types-every") == 0)
            o.all_types_every = atol(v);
        else if (strcmp(a, "--id-type") == 0)
            o.id_type = v;
        else if (strcmp(a, "--mix") == 0)
            o.mix = v;
        else if (strcmp(a, "--rate") == 0)
            o.rate = atof(v);
        else if (strcmp(a, "--duration") == 0)
            o.duration = atof(v);
        else if (strcmp(a, "--ack-log") == 0)
            o.ack_log = v;
        else {
            fprintf(stderr, "datagen: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (o.uri == NULL || o.count < 0 || o.batch <= 0 || o.size_min < 100 ||
        o.size_max < o.size_min || o.big_size > 16 * 1024 * 1024 - 4096 || o.rate <= 0 ||
        o.duration < 0 || o.existing < 0 || (strcmp(o.cmd, "workload") == 0 && o.ack_log == NULL)) {
        fprintf(stderr, "datagen: invalid or missing options (see --help)\n");
        return 2;
    }
    if (strcmp(o.id_type, "objectid") != 0 && strcmp(o.id_type, "int") != 0 &&
        strcmp(o.id_type, "string") != 0 && strcmp(o.id_type, "uuid") != 0 &&
        strcmp(o.id_type, "mixed") != 0) {
        fprintf(stderr, "datagen: invalid --id-type \"%s\"\n", o.id_type);
        return 2;
    }
    mongoc_init();
    client = mongoc_client_new(o.uri);
    if (client == NULL) {
        fprintf(stderr, "datagen: invalid --uri\n");
        return 2;
    }
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_set_appname(client, "datagen");
    coll = mongoc_client_get_collection(client, o.db, o.coll);
    if (strcmp(o.cmd, "generate") == 0)
        rc = cmd_generate(&o, coll);
    else
        rc = cmd_workload(&o, client, coll);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
    mongoc_cleanup();
    return rc;
}
