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

#include <fnmatch.h>
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

bool
mg_migrator__copy_record_t0(mg_mongo_t *src, PGconn *pg, const char *state_schema, uint32_t *t_out,
                            uint32_t *i_out, mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res = NULL;
    bson_t *cmd = NULL;
    bson_t reply = BSON_INITIALIZER;
    bson_iter_t it;
    uint32_t t = 0, i = 0;
    bool ok = false;

    mg_buf_init(&sql, 4096);
    if (!mg_buf_append_str(&sql, "SELECT t0_ts, t0_inc FROM ", error) ||
        !mg_schema_quote_ident(state_schema, &sql, error) ||
        !mg_buf_append_str(&sql, ".migration WHERE id = 1 FOR UPDATE", error))
        goto done;
    res = mg_pg_query(pg, sql.data, 0, NULL, error);
    if (res == NULL)
        goto done;
    if (PQntuples(res) != 1) {
        mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                     "state schema \"%s\" has no migration row: run migrate init first",
                     state_schema);
        goto done;
    }
    if (!PQgetisnull(res, 0, 0)) {
        *t_out = (uint32_t)strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        *i_out = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
        ok = true;
        goto done;
    }
    PQclear(res);
    res = NULL;

    /* T0: the operationTime of a command, i.e. the cluster time now. */
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
    char ts[16], inc[16];
    snprintf(ts, sizeof(ts), "%u", t);
    snprintf(inc, sizeof(inc), "%u", i);
    const char *params[2] = {ts, inc};
    mg_buf_reset(&sql);
    if (!mg_buf_append_str(&sql, "UPDATE ", error) ||
        !mg_schema_quote_ident(state_schema, &sql, error) ||
        !mg_buf_append_str(&sql,
                           ".migration SET t0_ts = $1, t0_inc = $2, t0_recorded_at = now(), "
                           "updated_at = now() WHERE id = 1",
                           error))
        goto done;
    res = mg_pg_query(pg, sql.data, 2, params, error);
    if (res == NULL)
        goto done;
    *t_out = t;
    *i_out = i;
    MG_LOG_EVENT(MG_LOG_NOTICE, "copy", "sync.t0",
                 MG_LOG_FIELDS(MG_LOG_UINT("t0_ts", t), MG_LOG_UINT("t0_inc", i)),
                 "recorded T0 = Timestamp(%u, %u): the change stream replays from here", t, i);
    ok = true;
done:
    PQclear(res);
    bson_destroy(&reply);
    bson_destroy(cmd);
    mg_buf_cleanup(&sql);
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
insert_partition(PGconn *pg, const char *state_schema, const char *db, const char *coll, int seq,
                 const bson_t *filter, int64_t est, mg_error_t *error)
{
    mg_buf_t sql;
    char seqs[16], ests[32];
    char *json = bson_as_relaxed_extended_json(filter, NULL);
    const char *values[6] = {db, coll, seqs, (const char *)bson_get_data(filter), json, ests};
    int lengths[6] = {0, 0, 0, (int)filter->len, 0, 0};
    int formats[6] = {0, 0, 0, 1, 0, 0};
    PGresult *res;
    bool ok;

    snprintf(seqs, sizeof(seqs), "%d", seq);
    snprintf(ests, sizeof(ests), "%lld", (long long)est);
    mg_buf_init(&sql, 4096);
    ok = mg_buf_append_str(&sql, "INSERT INTO ", error) &&
         mg_schema_quote_ident(state_schema, &sql, error) &&
         mg_buf_append_str(&sql,
                           ".partitions (db, coll, seq, filter, filter_json, est_docs) "
                           "VALUES ($1, $2, $3, $4, $5, $6)",
                           error);
    if (ok) {
        res = PQexecParams(pg, sql.data, 6, NULL, values, lengths, formats, 0);
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            ok = mg_error_set_pgresult(error, res, "could not record a partition of \"%s.%s\"", db,
                                       coll);
        PQclear(res);
    }
    bson_free(json);
    mg_buf_cleanup(&sql);
    return ok;
}

/* plan_collection splits one collection and persists its partitions. */
static bool
plan_collection(mg_mongo_t *src, PGconn *pg, const char *state_schema, const char *db,
                const char *coll, int64_t partition_docs, int64_t partition_bytes,
                int64_t avg_doc_bytes, int64_t total_docs, int64_t spread, int *nparts,
                mg_error_t *error)
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
            ok = insert_partition(pg, state_schema, db, coll, seq++, &filter, tc->count, error);
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
            ok = insert_partition(pg, state_schema, db, coll, seq++, &filter,
                                  k < b.ncounts ? b.counts[k] : 0, error);
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
mg_migrator__copy_plan(mg_mongo_t *src, PGconn *pg, const char *state_schema,
                       int64_t partition_docs, int64_t partition_bytes, int64_t spread,
                       mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res = NULL;
    bool ok = false;

    mg_buf_init(&sql, 4096);
    /* collections without partitions yet (a fresh run, or a re-sync) */
    if (!mg_buf_append_str(&sql,
                           "SELECT c.db, c.coll, coalesce(c.doc_count, 0), "
                           "coalesce(c.size_bytes, 0) FROM ",
                           error) ||
        !mg_schema_quote_ident(state_schema, &sql, error) ||
        !mg_buf_append_str(&sql,
                           ".collections c WHERE c.status = 'planned' AND NOT EXISTS "
                           "(SELECT 1 FROM ",
                           error) ||
        !mg_schema_quote_ident(state_schema, &sql, error) ||
        !mg_buf_append_str(&sql,
                           ".partitions p WHERE p.db = c.db AND p.coll = c.coll) "
                           "ORDER BY c.db, c.coll",
                           error))
        goto done;
    res = mg_pg_query(pg, sql.data, 0, NULL, error);
    if (res == NULL)
        goto done;
    for (int r = 0; r < PQntuples(res); r++) {
        const char *db = PQgetvalue(res, r, 0), *coll = PQgetvalue(res, r, 1);
        int64_t count = strtoll(PQgetvalue(res, r, 2), NULL, 10);
        int64_t size = strtoll(PQgetvalue(res, r, 3), NULL, 10);
        int nparts = 0;
        double t = mg_now_s();

        if (!plan_collection(src, pg, state_schema, db, coll, partition_docs, partition_bytes,
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
    PQclear(res);
    mg_buf_cleanup(&sql);
    return ok;
}

bool
mg_migrator__copy_load_collections(PGconn *pg, const char *state_schema, mg_copy_coll_t **out,
                                   size_t *nout, mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res = NULL;
    mg_copy_coll_t *colls = NULL;
    int n = 0;
    bool ok = false;

    mg_buf_init(&sql, 4096);
    if (!mg_buf_append_str(&sql,
                           "SELECT c.db, c.coll, c.schema_name, c.table_name, c.key_type, "
                           "coalesce(c.doc_count, 0), coalesce(c.size_bytes, 0), "
                           "(SELECT count(*) FROM ",
                           error) ||
        !mg_schema_quote_ident(state_schema, &sql, error) ||
        !mg_buf_append_str(&sql,
                           ".partitions p WHERE p.db = c.db AND p.coll = c.coll), "
                           "(SELECT count(*) FROM ",
                           error) ||
        !mg_schema_quote_ident(state_schema, &sql, error) ||
        !mg_buf_append_str(&sql,
                           ".partitions p WHERE p.db = c.db AND p.coll = c.coll AND p.status = "
                           "'done'), (SELECT coalesce(sum(copied_docs), 0) FROM ",
                           error) ||
        !mg_schema_quote_ident(state_schema, &sql, error) ||
        !mg_buf_append_str(&sql,
                           ".partitions p WHERE p.db = c.db AND p.coll = c.coll AND p.status = "
                           "'done'), (SELECT coalesce(sum(copied_bytes), 0) FROM ",
                           error) ||
        !mg_schema_quote_ident(state_schema, &sql, error) ||
        !mg_buf_append_str(&sql,
                           ".partitions p WHERE p.db = c.db AND p.coll = c.coll AND p.status = "
                           "'done') FROM ",
                           error) ||
        !mg_schema_quote_ident(state_schema, &sql, error) ||
        !mg_buf_append_str(&sql, ".collections c ORDER BY c.db, c.coll", error))
        goto done;
    res = mg_pg_query(pg, sql.data, 0, NULL, error);
    if (res == NULL)
        goto done;
    n = PQntuples(res);
    colls = calloc((size_t)n + 1, sizeof(*colls));
    if (colls == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }
    for (int r = 0; r < n; r++) {
        mg_copy_coll_t *c = &colls[r];
        c->db = strdup(PQgetvalue(res, r, 0));
        c->coll = strdup(PQgetvalue(res, r, 1));
        c->schema = strdup(PQgetvalue(res, r, 2));
        c->table = strdup(PQgetvalue(res, r, 3));
        if (c->db == NULL || c->coll == NULL || c->schema == NULL || c->table == NULL) {
            mg_migrator__copy_free_collections(colls, (size_t)n);
            colls = NULL;
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
            goto done;
        }
        if (!mg_schema_key_type_parse(PQgetvalue(res, r, 4), &c->key)) {
            mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                         "collection \"%s.%s\" has an unknown key type \"%s\" in the state", c->db,
                         c->coll, PQgetvalue(res, r, 4));
            mg_migrator__copy_free_collections(colls, (size_t)n);
            colls = NULL;
            goto done;
        }
        c->est_docs = strtoll(PQgetvalue(res, r, 5), NULL, 10);
        c->est_bytes = strtoll(PQgetvalue(res, r, 6), NULL, 10);
        c->parts_total = strtoll(PQgetvalue(res, r, 7), NULL, 10);
        atomic_init(&c->parts_done, strtoll(PQgetvalue(res, r, 8), NULL, 10));
        atomic_init(&c->docs_done, strtoll(PQgetvalue(res, r, 9), NULL, 10));
        atomic_init(&c->bytes_done, strtoll(PQgetvalue(res, r, 10), NULL, 10));
    }
    *out = colls;
    *nout = (size_t)n;
    ok = true;
done:
    PQclear(res);
    mg_buf_cleanup(&sql);
    return ok;
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

bool
mg_migrator__resync(PGconn *pg, const char *ss, const mg_strlist_t *patterns, size_t *count,
                    mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res = NULL;
    bool ok = false, lost;
    size_t total, hit = 0;

    *count = 0;
    mg_buf_init(&sql, 64 * 1024);
    if (!mg_buf_append_str(&sql,
                           "SELECT c.db, c.coll, c.schema_name, c.table_name, "
                           "(SELECT history_lost_at IS NOT NULL FROM ",
                           error) ||
        !mg_schema_quote_ident(ss, &sql, error) ||
        !mg_buf_append_str(&sql, ".checkpoint WHERE id = 1) FROM ", error) ||
        !mg_schema_quote_ident(ss, &sql, error) ||
        !mg_buf_append_str(&sql, ".collections c ORDER BY 1, 2", error))
        goto done;
    if ((res = mg_pg_query(pg, sql.data, 0, NULL, error)) == NULL)
        goto done;
    total = (size_t)PQntuples(res);
    lost = total > 0 && strcmp(PQgetvalue(res, 0, 4), "t") == 0;
    bool *match = calloc(total + 1, sizeof(bool));
    if (match == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }
    for (size_t p = 0; p < patterns->count; p++) {
        bool any = false;
        for (size_t r = 0; r < total; r++) {
            char ns[600];
            snprintf(ns, sizeof(ns), "%s.%s", PQgetvalue(res, (int)r, 0),
                     PQgetvalue(res, (int)r, 1));
            if (strcmp(patterns->items[p], "*") == 0 || fnmatch(patterns->items[p], ns, 0) == 0) {
                any |= true;
                match[r] = true;
            }
        }
        if (!any) {
            free(match);
            mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                         "--resync pattern \"%s\" matches no planned collection",
                         patterns->items[p]);
            goto done;
        }
    }
    for (size_t r = 0; r < total; r++)
        hit += match[r];
    if (lost && hit < total) {
        free(match);
        mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "the change-stream history was lost, so every collection missed changes: "
                     "re-sync all of them (--resync '*'), not %zu of %zu",
                     hit, total);
        goto done;
    }
    if (!mg_pg_exec(pg, "BEGIN", error)) {
        free(match);
        goto done;
    }
    for (size_t r = 0; r < total; r++) {
        if (!match[r])
            continue;
        const char *params[2] = {PQgetvalue(res, (int)r, 0), PQgetvalue(res, (int)r, 1)};
        PGresult *x;
        mg_buf_reset(&sql);
        ok = mg_buf_append_str(&sql, "TRUNCATE ", error) &&
             mg_schema_quote_ident(PQgetvalue(res, (int)r, 2), &sql, error) &&
             mg_buf_append_str(&sql, ".", error) &&
             mg_schema_quote_ident(PQgetvalue(res, (int)r, 3), &sql, error) &&
             mg_pg_exec(pg, sql.data, error);
        mg_buf_reset(&sql);
        ok = ok && mg_buf_append_str(&sql, "DELETE FROM ", error) &&
             mg_schema_quote_ident(ss, &sql, error) &&
             mg_buf_append_str(&sql, ".partitions WHERE db = $1 AND coll = $2", error) &&
             (x = mg_pg_query(pg, sql.data, 2, params, error)) != NULL;
        if (ok)
            PQclear(x);
        mg_buf_reset(&sql);
        ok = ok && mg_buf_append_str(&sql, "UPDATE ", error) &&
             mg_schema_quote_ident(ss, &sql, error) &&
             mg_buf_append_str(&sql,
                               ".collections SET status = 'planned', error = NULL, updated_at = "
                               "now() WHERE db = $1 AND coll = $2",
                               error) &&
             (x = mg_pg_query(pg, sql.data, 2, params, error)) != NULL;
        if (ok)
            PQclear(x);
        if (!ok)
            break;
        MG_LOG_EVENT(
            MG_LOG_NOTICE, "sync", "sync.resync",
            MG_LOG_FIELDS(MG_LOG_STR("db", params[0]), MG_LOG_STR("collection", params[1])),
            "re-syncing %s.%s: table emptied, it will be copied again", params[0], params[1]);
    }
    free(match);
    if (ok && lost) {
        /* a new start: new T0, no checkpoint */
        mg_buf_reset(&sql);
        ok = mg_buf_append_str(&sql, "UPDATE ", error) && mg_schema_quote_ident(ss, &sql, error) &&
             mg_buf_append_str(&sql,
                               ".checkpoint SET resume_token = NULL, resume_token_json = NULL, "
                               "cluster_time_ts = NULL, cluster_time_inc = NULL, history_lost_at "
                               "= NULL WHERE id = 1",
                               error) &&
             mg_pg_exec(pg, sql.data, error);
        mg_buf_reset(&sql);
        ok = ok && mg_buf_append_str(&sql, "UPDATE ", error) &&
             mg_schema_quote_ident(ss, &sql, error) &&
             mg_buf_append_str(&sql,
                               ".migration SET t0_ts = NULL, t0_inc = NULL, phase = 'copying' "
                               "WHERE id = 1",
                               error) &&
             mg_pg_exec(pg, sql.data, error);
    }
    if (ok)
        ok = mg_pg_exec(pg, "COMMIT", error);
    if (!ok) {
        PGresult *x = PQexec(pg, "ROLLBACK");
        PQclear(x);
        goto done;
    }
    *count = hit;
    ok = true;
done:
    PQclear(res);
    mg_buf_cleanup(&sql);
    return ok;
}
