/*
 * migrator/src/copy_plan.c - T0 and the partition plan of the bulk copy.
 *
 * MongoDB compares values of different types by type first and bounds
 * queries by type ("type bracketing": {$gte: 5} never matches a string), so
 * a range partition must stay inside one type class. Each collection is
 * therefore split by _id type class first (numbers, strings, ObjectIds,
 * ...), then each class that is larger than a partition is cut at
 * $bucketAuto boundaries. The first and last range of a class are open
 * ({$lt: b1}, {$gte: bn}) and, because of type bracketing, still cover
 * exactly that class. Every filter also names its types with $type, so
 * nothing depends on that subtlety alone.
 */
#include "migrator_internal.h"

#include "mg/cdc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Type classes whose members compare with each other in MongoDB. */
/* smallest partition made only to spread a collection over the workers */
#define MIN_PARTITION_DOCS 10000

static const char *const class_number[] = {"int", "long", "double", "decimal", NULL};
static const char *const class_string[] = {"string", "symbol", NULL};

/* class_of returns the class of alias (a NULL-terminated list), or NULL for a class of one. */
static const char *const *
class_of(const char *alias)
{
    for (int i = 0; class_number[i]; i++)
        if (strcmp(alias, class_number[i]) == 0)
            return class_number;
    for (int i = 0; class_string[i]; i++)
        if (strcmp(alias, class_string[i]) == 0)
            return class_string;
    return NULL;
}

/*
 * t0_from_stream opens a change stream over the whole deployment and takes
 * T0 from where it starts: the post-batch resume token of its first reply,
 * as the change-streams specification takes a stream's starting point. A
 * write in flight at that moment is either visible to the copy, which
 * starts after, or after T0 (*has false: the server gave no token, before
 * 4.0.7).
 */
static bool
t0_from_stream(mg_mongo_t *src, uint32_t *t, uint32_t *i, bool *has, mg_error_t *error)
{
    bson_t pipeline = BSON_INITIALIZER, opts = BSON_INITIALIZER;
    mongoc_change_stream_t *cs;
    const bson_t *err_doc, *token;
    bson_error_t be;
    bool ok = true;

    *has = false;
    BSON_APPEND_INT32(&opts, "batchSize", 0);
    cs = mongoc_client_watch(src->client, &pipeline, &opts);
    if (mongoc_change_stream_error_document(cs, &be, &err_doc))
        ok = mg_error_set_bson(error, &be,
                               "could not open a change stream on the source to take "
                               "T0 from it");
    else if ((token = mongoc_change_stream_get_resume_token(cs)) != NULL)
        *has = mg_cdc_token_time(token, t, i);
    mongoc_change_stream_destroy(cs);
    bson_destroy(&pipeline);
    bson_destroy(&opts);
    return ok;
}

bool
mg_migrator__copy_record_t0(mg_mongo_t *src, mg_state_t *st, uint32_t *t_out, uint32_t *i_out,
                            mg_error_t *error)
{
    bson_t *cmd = NULL;
    bson_t reply = BSON_INITIALIZER;
    bson_iter_t it;
    uint32_t t = 0, i = 0;
    bool has = false, from_stream = false, ok = false;

    if (!mg_state_t0_lock(st, &has, &t, &i, error))
        goto done;
    if (has) {
        *t_out = t;
        *i_out = i;
        ok = true;
        goto done;
    }
    /* T0: where a change stream opened now starts */
    if (!t0_from_stream(src, &t, &i, &from_stream, error))
        goto done;
    if (!from_stream) { /* a server without post-batch resume tokens: the cluster time now */
        cmd = BCON_NEW("ping", BCON_INT32(1));
        bson_destroy(&reply);
        if (!mg_mongo_command(src, "admin", cmd, &reply, error))
            goto done;
        if (!bson_iter_init_find(&it, &reply, "operationTime") || !BSON_ITER_HOLDS_TIMESTAMP(&it)) {
            mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                         "the source returned no operationTime: it is not a replica set member, "
                         "and the change stream that sync replays needs one");
            goto done;
        }
        bson_iter_timestamp(&it, &t, &i);
    }
    if (!mg_state_t0_set(st, t, i, error))
        goto done;
    *t_out = t;
    *i_out = i;
    MG_LOG_EVENT(MG_LOG_NOTICE, "copy", "sync.t0",
                 MG_LOG_FIELDS(MG_LOG_UINT("t0_ts", t), MG_LOG_UINT("t0_inc", i),
                               MG_LOG_STR("from", from_stream ? "stream" : "operationTime")),
                 "recorded T0 = Timestamp(%u, %u) (%s): the change stream replays from here", t, i,
                 from_stream ? "where a change stream opened now starts"
                             : "the source's operationTime");
    ok = true;
done:
    bson_destroy(&reply);
    bson_destroy(cmd);
    return ok;
}

/* A type class present in a collection. */
typedef struct {
    const char *const *members; /* class_number, class_string, or NULL */
    char alias[32];             /* the alias when members is NULL */
    int64_t count;
} type_class_t;

typedef struct {
    type_class_t classes[32];
    size_t n;
} classes_t;

static bool
on_type(void *vctx, const bson_t *doc, mg_error_t *error)
{
    classes_t *c = vctx;
    bson_iter_t it;
    const char *alias = NULL;
    int64_t n = 0;

    if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_UTF8(&it))
        alias = bson_iter_utf8(&it, NULL);
    if (bson_iter_init_find(&it, doc, "n") && BSON_ITER_HOLDS_NUMBER(&it))
        n = bson_iter_as_int64(&it);
    if (alias == NULL)
        return true;
    const char *const *members = class_of(alias);
    for (size_t i = 0; i < c->n; i++) {
        if ((members != NULL && c->classes[i].members == members) ||
            (members == NULL && c->classes[i].members == NULL &&
             strcmp(c->classes[i].alias, alias) == 0)) {
            c->classes[i].count += n;
            return true;
        }
    }
    if (c->n == sizeof(c->classes) / sizeof(c->classes[0]))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "too many _id types");
    type_class_t *tc = &c->classes[c->n++];
    tc->members = members;
    snprintf(tc->alias, sizeof(tc->alias), "%s", alias);
    tc->count = n;
    return true;
}

/* append_type_filter appends "$type": [aliases] to the _id condition doc. */
static void
append_type_filter(bson_t *cond, const type_class_t *tc)
{
    bson_t arr;
    char key[16];

    bson_append_array_begin(cond, "$type", -1, &arr);
    if (tc->members != NULL) {
        for (int i = 0; tc->members[i] != NULL; i++) {
            snprintf(key, sizeof(key), "%d", i);
            bson_append_utf8(&arr, key, -1, tc->members[i], -1);
        }
    } else {
        bson_append_utf8(&arr, "0", -1, tc->alias, -1);
    }
    bson_append_array_end(cond, &arr);
}

typedef struct {
    bson_value_t *bounds; /* minimum of every bucket after the first */
    size_t n;
    size_t cap;
    int64_t *counts; /* documents per bucket */
    size_t ncounts;
} buckets_t;

static bool
on_bucket(void *vctx, const bson_t *doc, mg_error_t *error)
{
    buckets_t *b = vctx;
    bson_iter_t it, id;
    int64_t count = 0;

    if (bson_iter_init_find(&it, doc, "count") && BSON_ITER_HOLDS_NUMBER(&it))
        count = bson_iter_as_int64(&it);
    if (b->ncounts == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        bson_value_t *nb = realloc(b->bounds, cap * sizeof(*nb));
        if (nb == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        b->bounds = nb;
        int64_t *nc = realloc(b->counts, cap * sizeof(*nc));
        if (nc == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        b->counts = nc;
        b->cap = cap;
    }
    b->counts[b->ncounts] = count;
    if (b->ncounts > 0) {
        if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
            !bson_iter_recurse(&it, &id) || !bson_iter_find(&id, "min"))
            return mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                                "unexpected $bucketAuto result (no _id.min)");
        bson_value_copy(bson_iter_value(&id), &b->bounds[b->n++]);
    }
    b->ncounts++;
    return true;
}

static void
buckets_free(buckets_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        bson_value_destroy(&b->bounds[i]);
    free(b->bounds);
    free(b->counts);
}

/* insert_partition persists one partition (filter as BSON and as JSON). */
static bool
insert_partition(mg_state_t *st, const char *db, const char *coll, int seq, const bson_t *filter,
                 int64_t est, mg_error_t *error)
{
    char *json = bson_as_relaxed_extended_json(filter, NULL);
    bool ok = mg_state_partition_insert(st, db, coll, seq, bson_get_data(filter), filter->len, json,
                                        est, error);

    bson_free(json);
    return ok;
}

/* plan_collection splits one collection and persists its partitions. */
static bool
plan_collection(mg_mongo_t *src, mg_state_t *st, const char *db, const char *coll,
                int64_t partition_docs, int64_t partition_bytes, int64_t avg_doc_bytes,
                int64_t total_docs, int64_t spread, int *nparts, mg_error_t *error)
{
    classes_t classes = {0};
    bson_t *pipe;
    int seq = 0;
    bool ok = false;
    int64_t per_part = partition_docs;

    if (avg_doc_bytes > 0 && partition_bytes / avg_doc_bytes < per_part)
        per_part = partition_bytes / avg_doc_bytes;
    if (per_part < 1)
        per_part = 1;
    /* enough partitions to keep every worker busy, but none below
     * MIN_PARTITION_DOCS documents (each costs a query and a commit) */
    if (spread > 0 && total_docs / spread < per_part) {
        int64_t spread_part = (total_docs + spread - 1) / spread;
        per_part = spread_part > MIN_PARTITION_DOCS ? spread_part : MIN_PARTITION_DOCS;
        if (per_part > partition_docs)
            per_part = partition_docs;
    }

    pipe = BCON_NEW("pipeline", "[", "{", "$group", "{", "_id", "{", "$type", BCON_UTF8("$_id"),
                    "}", "n", "{", "$sum", BCON_INT32(1), "}", "}", "}", "]");
    ok = mg_mongo_aggregate(src, db, coll, pipe, on_type, &classes, error);
    bson_destroy(pipe);
    if (!ok)
        return false;

    for (size_t c = 0; c < classes.n; c++) {
        type_class_t *tc = &classes.classes[c];
        int64_t nb = (tc->count + per_part - 1) / per_part;

        if (nb <= 1) {
            bson_t filter = BSON_INITIALIZER, cond;
            bson_append_document_begin(&filter, "_id", 3, &cond);
            append_type_filter(&cond, tc);
            bson_append_document_end(&filter, &cond);
            ok = insert_partition(st, db, coll, seq++, &filter, tc->count, error);
            bson_destroy(&filter);
            if (!ok)
                return false;
            continue;
        }
        /* $bucketAuto within the class */
        bson_t p = BSON_INITIALIZER, arr, stage, inner, idcond;
        bson_append_array_begin(&p, "pipeline", -1, &arr);
        bson_append_document_begin(&arr, "0", 1, &stage);
        bson_append_document_begin(&stage, "$match", -1, &inner);
        bson_append_document_begin(&inner, "_id", 3, &idcond);
        append_type_filter(&idcond, tc);
        bson_append_document_end(&inner, &idcond);
        bson_append_document_end(&stage, &inner);
        bson_append_document_end(&arr, &stage);
        bson_append_document_begin(&arr, "1", 1, &stage);
        bson_append_document_begin(&stage, "$bucketAuto", -1, &inner);
        BSON_APPEND_UTF8(&inner, "groupBy", "$_id");
        BSON_APPEND_INT64(&inner, "buckets", nb);
        bson_append_document_end(&stage, &inner);
        bson_append_document_end(&arr, &stage);
        bson_append_array_end(&p, &arr);
        buckets_t b = {0};
        ok = mg_mongo_aggregate(src, db, coll, &p, on_bucket, &b, error);
        bson_destroy(&p);
        if (!ok) {
            buckets_free(&b);
            return false;
        }
        /* b.n boundaries give b.n + 1 ranges */
        for (size_t k = 0; ok && k <= b.n; k++) {
            bson_t filter = BSON_INITIALIZER, cond;
            bson_append_document_begin(&filter, "_id", 3, &cond);
            append_type_filter(&cond, tc);
            if (k > 0)
                bson_append_value(&cond, "$gte", 4, &b.bounds[k - 1]);
            if (k < b.n)
                bson_append_value(&cond, "$lt", 3, &b.bounds[k]);
            bson_append_document_end(&filter, &cond);
            ok = insert_partition(st, db, coll, seq++, &filter, k < b.ncounts ? b.counts[k] : 0,
                                  error);
            bson_destroy(&filter);
        }
        buckets_free(&b);
        if (!ok)
            return false;
    }
    *nparts = seq;
    return true;
}

bool
mg_migrator__copy_plan(mg_mongo_t *src, mg_state_t *st, int64_t partition_docs,
                       int64_t partition_bytes, int64_t spread, mg_error_t *error)
{
    mg_state_colls_t colls = {0};
    bool ok = false;

    /* collections without partitions yet (a fresh run, or a re-sync) */
    if (!mg_state_collections_unplanned(st, &colls, error))
        return false;
    for (size_t r = 0; r < colls.n; r++) {
        const char *db = colls.items[r].db, *coll = colls.items[r].coll;
        int64_t count = colls.items[r].doc_count, size = colls.items[r].size_bytes;
        int nparts = 0;
        double t = mg_now_s();

        if (!plan_collection(src, st, db, coll, partition_docs, partition_bytes,
                             count > 0 ? size / count : 0, count, spread, &nparts, error)) {
            mg_error_prefix(error, "could not plan the copy of \"%s.%s\"", db, coll);
            goto done;
        }
        MG_LOG_EVENT(MG_LOG_INFO, "copy", "sync.plan",
                     MG_LOG_FIELDS(MG_LOG_STR("db", db), MG_LOG_STR("collection", coll),
                                   MG_LOG_INT("partitions", nparts),
                                   MG_LOG_DOUBLE("seconds", mg_now_s() - t)),
                     "planned %s.%s: %d partitions", db, coll, nparts);
    }
    ok = true;
done:
    mg_state_colls_cleanup(&colls);
    return ok;
}

bool
mg_migrator__copy_load_collections(mg_state_t *st, mg_copy_coll_t **out, size_t *nout,
                                   mg_error_t *error)
{
    mg_state_colls_t sc = {0};
    mg_copy_coll_t *colls;

    if (!mg_state_collections_load(st, true, &sc, error))
        return false;
    colls = calloc(sc.n + 1, sizeof(*colls));
    if (colls == NULL) {
        mg_state_colls_cleanup(&sc);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    for (size_t r = 0; r < sc.n; r++) {
        mg_state_coll_t *s = &sc.items[r];
        mg_copy_coll_t *c = &colls[r];
        if (!s->key_known) {
            mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                         "collection \"%s.%s\" has an unknown key type \"%s\" in the state", s->db,
                         s->coll, s->key_type);
            mg_migrator__copy_free_collections(colls, r);
            mg_state_colls_cleanup(&sc);
            return false;
        }
        /* take the strings over */
        c->db = s->db;
        c->coll = s->coll;
        c->schema = s->schema;
        c->table = s->table;
        s->db = s->coll = s->schema = s->table = NULL;
        c->key = s->key;
        c->est_docs = s->doc_count;
        c->est_bytes = s->size_bytes;
        c->parts_total = s->parts_total;
        atomic_init(&c->parts_done, s->parts_done);
        atomic_init(&c->docs_done, s->docs_copied);
        atomic_init(&c->bytes_done, s->bytes_copied);
    }
    *out = colls;
    *nout = sc.n;
    mg_state_colls_cleanup(&sc);
    return true;
}

void
mg_migrator__copy_free_collections(mg_copy_coll_t *colls, size_t ncolls)
{
    if (colls == NULL)
        return;
    for (size_t i = 0; i < ncolls; i++) {
        free(colls[i].db);
        free(colls[i].coll);
        free(colls[i].schema);
        free(colls[i].table);
    }
    free(colls);
}
