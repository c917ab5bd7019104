/*
 * state/src/state_copy.c - the state of the bulk copy: collections (their
 * mapping, status and census), the index plan, partitions, invalid
 * documents, live progress, and re-sync.
 */
#include "state_internal.h"

#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

/* ---- collections ---- */

#define COLLS_BASE                                                             \
    "SELECT c.db, c.coll, c.schema_name, c.table_name, c.key_type, c.status, " \
    "coalesce(c.doc_count, 0), coalesce(c.size_bytes, 0), c.error"

static const char *const q_collections = COLLS_BASE " FROM @.collections c ORDER BY c.db, c.coll";

static const char *const q_collections_progress =
    COLLS_BASE ", (SELECT count(*) FROM @.partitions p WHERE p.db = c.db AND p.coll = c.coll), "
               "(SELECT count(*) FROM @.partitions p WHERE p.db = c.db AND p.coll = c.coll AND "
               "p.status = 'done'), "
               "(SELECT count(*) FROM @.partitions p WHERE p.db = c.db AND p.coll = c.coll AND "
               "p.status = 'failed'), "
               "(SELECT coalesce(sum(copied_docs), 0) FROM @.partitions p WHERE p.db = c.db AND "
               "p.coll = c.coll AND p.status = 'done'), "
               "(SELECT coalesce(sum(copied_bytes), 0) FROM @.partitions p WHERE p.db = c.db AND "
               "p.coll = c.coll AND p.status = 'done'), "
               "(SELECT count(*) FROM @.indexes i WHERE i.db = c.db AND i.coll = c.coll AND "
               "i.build_status = 'built'), "
               "(SELECT count(*) FROM @.indexes i WHERE i.db = c.db AND i.coll = c.coll AND "
               "i.build_status IN ('pending', 'built', 'failed')) "
               "FROM @.collections c ORDER BY c.db, c.coll";

static const char *const q_collections_unplanned =
    COLLS_BASE " FROM @.collections c WHERE c.status = 'planned' AND NOT EXISTS (SELECT 1 FROM "
               "@.partitions p WHERE p.db = c.db AND p.coll = c.coll) ORDER BY c.db, c.coll";

void
mg_state_colls_cleanup(mg_state_colls_t *colls)
{
    if (colls == NULL)
        return;
    for (size_t i = 0; i < colls->n; i++) {
        mg_state_coll_t *c = &colls->items[i];
        free(c->db);
        free(c->coll);
        free(c->schema);
        free(c->table);
        free(c->error);
    }
    free(colls->items);
    colls->items = NULL;
    colls->n = 0;
}

/* read_colls fills out from res (columns of COLLS_BASE, then the progress counters). */
static bool
read_colls(const PGresult *res, bool with_progress, mg_state_colls_t *out, mg_error_t *error)
{
    int n = PQntuples(res);
    bool failed = false;

    out->items = calloc((size_t)n + 1, sizeof(*out->items));
    out->n = 0;
    if (out->items == NULL)
        return mg_state__oom(error);
    for (int r = 0; r < n; r++) {
        mg_state_coll_t *c = &out->items[out->n++];
        c->db = mg_state__dup(PQgetvalue(res, r, 0), &failed);
        c->coll = mg_state__dup(PQgetvalue(res, r, 1), &failed);
        c->schema = mg_state__dup(PQgetvalue(res, r, 2), &failed);
        c->table = mg_state__dup(PQgetvalue(res, r, 3), &failed);
        mg_state__copy(res, r, 4, c->key_type, sizeof(c->key_type));
        c->key_known = mg_schema_key_type_parse(c->key_type, &c->key);
        mg_state__copy(res, r, 5, c->status, sizeof(c->status));
        c->doc_count = mg_state__int64(res, r, 6);
        c->size_bytes = mg_state__int64(res, r, 7);
        if (!PQgetisnull(res, r, 8) && *PQgetvalue(res, r, 8) != '\0')
            c->error = mg_state__dup(PQgetvalue(res, r, 8), &failed);
        if (with_progress) {
            c->parts_total = mg_state__int64(res, r, 9);
            c->parts_done = mg_state__int64(res, r, 10);
            c->parts_failed = mg_state__int64(res, r, 11);
            c->docs_copied = mg_state__int64(res, r, 12);
            c->bytes_copied = mg_state__int64(res, r, 13);
            c->indexes_built = mg_state__int64(res, r, 14);
            c->indexes_planned = mg_state__int64(res, r, 15);
        }
    }
    if (failed) {
        mg_state_colls_cleanup(out);
        return mg_state__oom(error);
    }
    return true;
}

static bool
load_colls(mg_state_t *st, const char *tmpl, bool with_progress, mg_state_colls_t *out,
           mg_error_t *error)
{
    PGresult *res = mg_state__query(st, tmpl, 0, NULL, error);
    bool ok = res != NULL && read_colls(res, with_progress, out, error);

    PQclear(res);
    return ok;
}

bool
mg_state_collections_load(mg_state_t *st, bool with_progress, mg_state_colls_t *out,
                          mg_error_t *error)
{
    return load_colls(st, with_progress ? q_collections_progress : q_collections, with_progress,
                      out, error);
}

bool
mg_state_collections_unplanned(mg_state_t *st, mg_state_colls_t *out, mg_error_t *error)
{
    return load_colls(st, q_collections_unplanned, false, out, error);
}

bool
mg_state_collection_insert(mg_state_t *st, const mg_state_coll_new_t *c, mg_error_t *error)
{
    char count[32], size[32];
    const char *p[7] = {c->db,
                        c->coll,
                        c->schema,
                        c->table,
                        c->key_type,
                        mg_state__i64(count, c->doc_count),
                        mg_state__i64(size, c->size_bytes)};
    const char *p2[3] = {c->db, c->coll, c->census_json != NULL ? c->census_json : "{}"};

    return mg_state__exec(st,
                          "INSERT INTO @.collections (db, coll, schema_name, table_name, key_type, "
                          "doc_count, size_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                          7, p, error) &&
           mg_state__exec(st, "INSERT INTO @.census (db, coll, report) VALUES ($1, $2, $3::jsonb)",
                          3, p2, error);
}

bool
mg_state_collection_set_status(mg_state_t *st, const char *db, const char *coll, const char *status,
                               const char *err, mg_error_t *error)
{
    const char *p[4] = {db, coll, status, err};

    return mg_state__exec(st,
                          "UPDATE @.collections SET status = $3, error = $4, updated_at = now() "
                          "WHERE db = $1 AND coll = $2",
                          4, p, error);
}

bool
mg_state_collection_rename(mg_state_t *st, const char *db, const char *coll, const char *to_db,
                           const char *to_coll, mg_error_t *error)
{
    const char *p[4] = {db, coll, to_db, to_coll};
    bool ok;

    if (!mg_state_begin(st, error))
        return false;
    ok = mg_state__exec(st,
                        "DELETE FROM @.collections WHERE db = $3 AND coll = $4 AND NOT (db = $1 "
                        "AND coll = $2)",
                        4, p, error) &&
         mg_state__exec(st,
                        "DELETE FROM @.changed_docs WHERE db = $3 AND coll = $4 AND NOT (db = $1 "
                        "AND coll = $2)",
                        4, p, error) &&
         mg_state__exec(st,
                        "UPDATE @.collections SET db = $3, coll = $4, updated_at = now() WHERE "
                        "db = $1 AND coll = $2",
                        4, p, error) &&
         mg_state__exec(st,
                        "UPDATE @.changed_docs SET db = $3, coll = $4 WHERE db = $1 AND coll = $2",
                        4, p, error) &&
         mg_state_commit(st, error);
    if (!ok)
        mg_state_rollback(st);
    return ok;
}

bool
mg_state_collections_copy_start(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(st,
                          "UPDATE @.collections c SET status = 'copying', error = NULL, "
                          "updated_at = now() WHERE c.status = 'planned' OR (c.status = 'failed' "
                          "AND EXISTS (SELECT 1 FROM @.partitions p WHERE p.db = c.db AND p.coll "
                          "= c.coll AND p.status = 'pending'))",
                          0, NULL, error);
}

bool
mg_state_collections_copy_finish(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(
        st,
        "UPDATE @.collections c SET status = CASE WHEN EXISTS (SELECT 1 FROM @.partitions p WHERE "
        "p.db = c.db AND p.coll = c.coll AND p.status = 'failed') THEN 'failed' ELSE 'copied' "
        "END, error = (SELECT string_agg(p.error, '; ') FROM @.partitions p WHERE p.db = c.db AND "
        "p.coll = c.coll AND p.status = 'failed'), copied_at = now(), updated_at = now() WHERE "
        "c.status = 'copying' "
        "AND NOT EXISTS (SELECT 1 FROM @.partitions p WHERE p.db = c.db AND p.coll = c.coll AND "
        "p.status = 'pending')",
        0, NULL, error);
}

bool
mg_state_collection_first_failed(mg_state_t *st, bool *found, char *ns, size_t nssz, char *why,
                                 size_t whysz, mg_error_t *error)
{
    PGresult *res = mg_state__query(st,
                                    "SELECT db || '.' || coll, coalesce(error, '') FROM "
                                    "@.collections WHERE status = 'failed' ORDER BY 1 LIMIT 1",
                                    0, NULL, error);

    if (res == NULL)
        return false;
    *found = PQntuples(res) > 0;
    if (*found) {
        mg_state__copy(res, 0, 0, ns, nssz);
        mg_state__copy(res, 0, 1, why, whysz);
    }
    PQclear(res);
    return true;
}

/* ---- re-sync ---- */

/* resync_match marks the collections patterns name; fails on a pattern that names none. */
static bool
resync_match(const mg_state_colls_t *colls, const mg_strlist_t *patterns, bool *match, size_t *hit,
             mg_error_t *error)
{
    *hit = 0;
    for (size_t p = 0; p < patterns->count; p++) {
        bool any = false;
        for (size_t r = 0; r < colls->n; r++) {
            char ns[1024];
            snprintf(ns, sizeof(ns), "%s.%s", colls->items[r].db, colls->items[r].coll);
            if (strcmp(patterns->items[p], "*") == 0 || fnmatch(patterns->items[p], ns, 0) == 0) {
                any = true;
                match[r] = true;
            }
        }
        if (!any)
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_NOT_FOUND,
                                "--resync pattern \"%s\" matches no planned collection",
                                patterns->items[p]);
    }
    for (size_t r = 0; r < colls->n; r++)
        *hit += match[r];
    return true;
}

/* resync_one empties c's table, forgets its partitions and plans it again. */
static bool
resync_one(mg_state_t *st, const mg_state_coll_t *c, mg_error_t *error)
{
    const char *p[2] = {c->db, c->coll};
    mg_buf_t sql;
    bool ok;

    mg_buf_init(&sql, 4096);
    ok = mg_buf_append_str(&sql, "TRUNCATE ", error) &&
         mg_schema_quote_ident(c->schema, &sql, error) && mg_buf_append_str(&sql, ".", error) &&
         mg_schema_quote_ident(c->table, &sql, error) && mg_pg_exec(st->conn, sql.data, error);
    mg_buf_cleanup(&sql);
    ok = ok &&
         mg_state__exec(st, "DELETE FROM @.partitions WHERE db = $1 AND coll = $2", 2, p, error) &&
         mg_state__exec(st,
                        "UPDATE @.collections SET status = 'planned', error = NULL, copied_at = "
                        "NULL, updated_at = now() WHERE db = $1 AND coll = $2",
                        2, p, error);
    if (ok)
        MG_LOG_EVENT(MG_LOG_NOTICE, "sync", "sync.resync",
                     MG_LOG_FIELDS(MG_LOG_STR("db", c->db), MG_LOG_STR("collection", c->coll)),
                     "re-syncing %s.%s: table emptied, it will be copied again", c->db, c->coll);
    return ok;
}

bool
mg_state_resync(mg_state_t *st, const mg_strlist_t *patterns, size_t *count, mg_error_t *error)
{
    mg_state_colls_t colls = {0};
    mg_state_checkpoint_t cp = {0};
    bool *match = NULL;
    size_t hit = 0;
    bool ok = false;

    *count = 0;
    if (!mg_state_collections_load(st, false, &colls, error) ||
        !mg_state_checkpoint_get(st, 0, &cp, error))
        goto done;
    match = calloc(colls.n + 1, sizeof(bool));
    if (match == NULL) {
        mg_state__oom(error);
        goto done;
    }
    if (!resync_match(&colls, patterns, match, &hit, error))
        goto done;
    if (cp.history_lost && hit < colls.n) {
        mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                     "the change-stream history was lost, so every collection missed changes: "
                     "re-sync all of them (--resync '*'), not %zu of %zu",
                     hit, colls.n);
        goto done;
    }
    if (!mg_state_begin(st, error))
        goto done;
    for (size_t r = 0; r < colls.n; r++)
        if (match[r] && !resync_one(st, &colls.items[r], error))
            goto rollback;
    /* after a lost history: a new start, new T0, no checkpoint */
    if (cp.history_lost &&
        (!mg_state__exec(st,
                         "UPDATE @.checkpoint SET resume_token = NULL, resume_token_json = NULL, "
                         "cluster_time_ts = NULL, cluster_time_inc = NULL, history_lost_at = NULL "
                         "WHERE id = 1",
                         0, NULL, error) ||
         !mg_state__exec(st,
                         "UPDATE @.migration SET t0_ts = NULL, t0_inc = NULL, phase = 'copying' "
                         "WHERE id = 1",
                         0, NULL, error)))
        goto rollback;
    if (!mg_state_commit(st, error))
        goto rollback;
    *count = hit;
    ok = true;
    goto done;
rollback:
    mg_state_rollback(st);
done:
    free(match);
    mg_state_checkpoint_cleanup(&cp);
    mg_state_colls_cleanup(&colls);
    return ok;
}

/* ---- indexes ---- */

bool
mg_state_index_insert(mg_state_t *st, const mg_state_index_t *x, mg_error_t *error)
{
    const char *p[11] = {x->db,          x->coll,         x->mongo_name,
                         x->pg_name,     x->key_json,     x->unique ? "true" : "false",
                         x->translation, x->build_status, x->sql,
                         x->note,        x->suggestion};

    return mg_state__exec(st,
                          "INSERT INTO @.indexes (db, coll, mongo_name, pg_name, key_spec, "
                          "is_unique, translation, build_status, sql, note, suggestion) VALUES "
                          "($1, $2, $3, $4, $5::jsonb, $6::boolean, $7, $8, $9, $10, $11)",
                          11, p, error);
}

void
mg_state_index_jobs_free(mg_state_index_job_t *jobs, size_t n)
{
    for (size_t k = 0; jobs != NULL && k < n; k++) {
        free(jobs[k].db);
        free(jobs[k].coll);
        free(jobs[k].name);
        free(jobs[k].sql);
    }
    free(jobs);
}

bool
mg_state_indexes_to_build(mg_state_t *st, mg_state_index_job_t **jobs, size_t *n, mg_error_t *error)
{
    PGresult *res = mg_state__query(
        st,
        "SELECT i.db, i.coll, i.mongo_name, i.sql FROM @.indexes i WHERE i.build_status IN "
        "('pending', 'failed') AND i.sql IS NOT NULL AND NOT EXISTS (SELECT 1 FROM @.partitions "
        "p WHERE p.db = i.db AND p.coll = i.coll AND p.status <> 'done') ORDER BY i.db, i.coll, "
        "i.mongo_name",
        0, NULL, error);
    mg_state_index_job_t *out;
    bool failed = false;
    size_t count;

    if (res == NULL)
        return false;
    count = (size_t)PQntuples(res);
    out = calloc(count + 1, sizeof(*out));
    for (size_t k = 0; out != NULL && k < count; k++) {
        out[k].db = mg_state__dup(PQgetvalue(res, (int)k, 0), &failed);
        out[k].coll = mg_state__dup(PQgetvalue(res, (int)k, 1), &failed);
        out[k].name = mg_state__dup(PQgetvalue(res, (int)k, 2), &failed);
        out[k].sql = mg_state__dup(PQgetvalue(res, (int)k, 3), &failed);
    }
    PQclear(res);
    if (out == NULL || failed) {
        mg_state_index_jobs_free(out, count);
        return mg_state__oom(error);
    }
    *jobs = out;
    *n = count;
    return true;
}

bool
mg_state_index_mark(mg_state_t *st, const char *db, const char *coll, const char *name,
                    const char *status, const char *note, mg_error_t *error)
{
    const char *p[5] = {db, coll, name, status, note};

    return mg_state__exec(st,
                          "UPDATE @.indexes SET build_status = $4, note = coalesce($5, note) "
                          "WHERE db = $1 AND coll = $2 AND mongo_name = $3",
                          5, p, error);
}

/* ---- partitions ---- */

bool
mg_state_partition_insert(mg_state_t *st, const char *db, const char *coll, int seq,
                          const uint8_t *filter, size_t filter_len, const char *filter_json,
                          int64_t est_docs, mg_error_t *error)
{
    char seqs[32], ests[32];
    const char *values[6] = {db,
                             coll,
                             mg_state__i64(seqs, seq),
                             (const char *)filter,
                             filter_json,
                             mg_state__i64(ests, est_docs)};
    int lengths[6] = {0, 0, 0, (int)filter_len, 0, 0};
    int formats[6] = {0, 0, 0, 1, 0, 0};
    PGresult *res = mg_state__query_bin(st,
                                        "INSERT INTO @.partitions (db, coll, seq, filter, "
                                        "filter_json, est_docs) VALUES ($1, $2, $3, $4, $5, $6)",
                                        6, values, lengths, formats, 0, error);

    if (res == NULL) {
        mg_error_prefix(error, "could not record a partition of \"%s.%s\"", db, coll);
        return false;
    }
    PQclear(res);
    return true;
}

bool
mg_state_partitions_retry_failed(mg_state_t *st, mg_error_t *error)
{
    return mg_state__exec(
        st, "UPDATE @.partitions SET status = 'pending', error = NULL WHERE status = 'failed'", 0,
        NULL, error);
}

void
mg_state_partition_cleanup(mg_state_partition_t *p)
{
    if (p == NULL)
        return;
    free(p->db);
    free(p->coll);
    PQfreemem(p->filter);
    memset(p, 0, sizeof(*p));
}

bool
mg_state_partition_claim(mg_state_t *st, mg_state_partition_t *p, bool *got, bool *others_pending,
                         mg_error_t *error)
{
    PGresult *res;
    bool failed = false;
    int64_t pending = 0;

    *got = false;
    *others_pending = false;
    memset(p, 0, sizeof(*p));
    if (!mg_state_begin(st, error))
        return false;
    res = mg_state__query(st,
                          "SELECT id, db, coll, seq, filter FROM @.partitions WHERE status = "
                          "'pending' ORDER BY est_docs DESC, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                          0, NULL, error);
    if (res == NULL)
        goto fail;
    if (PQntuples(res) == 0) {
        PQclear(res);
        mg_state_rollback(st);
        if (!mg_state_partitions_count(st, "pending", &pending, error))
            return false;
        *others_pending = pending > 0;
        return true;
    }
    p->id = mg_state__int64(res, 0, 0);
    p->db = mg_state__dup(PQgetvalue(res, 0, 1), &failed);
    p->coll = mg_state__dup(PQgetvalue(res, 0, 2), &failed);
    p->seq = (int)mg_state__int64(res, 0, 3);
    p->filter = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 4), &p->filter_len);
    PQclear(res);
    if (failed || p->filter == NULL) {
        mg_state_partition_cleanup(p);
        mg_state__oom(error);
        goto fail;
    }
    *got = true;
    return true;
fail:
    mg_state_rollback(st);
    return false;
}

bool
mg_state_partition_reclaim(mg_state_t *st, int64_t id, bool *got, mg_error_t *error)
{
    char ids[32];
    const char *p[1] = {mg_state__i64(ids, id)};
    PGresult *res;

    if (!mg_state_begin(st, error))
        return false;
    res = mg_state__query(
        st,
        "SELECT 1 FROM @.partitions WHERE id = $1 AND status = 'pending' FOR UPDATE SKIP LOCKED", 1,
        p, error);
    if (res == NULL)
        return false;
    *got = PQntuples(res) == 1;
    PQclear(res);
    if (!*got)
        mg_state_rollback(st);
    return true;
}

bool
mg_state_partition_done(mg_state_t *st, int64_t id, int64_t docs, int64_t bytes, int64_t skipped,
                        const char *worker, mg_error_t *error)
{
    char a[32], b[32], c[32], d[32];
    const char *p[5] = {mg_state__i64(a, id), mg_state__i64(b, docs), mg_state__i64(c, bytes),
                        mg_state__i64(d, skipped), worker};

    return mg_state__exec(st,
                          "UPDATE @.partitions SET status = 'done', copied_docs = $2, "
                          "copied_bytes = $3, skipped_docs = $4, worker = $5, error = NULL, "
                          "finished_at = now(), commits = commits + 1 WHERE id = $1",
                          5, p, error);
}

bool
mg_state_partition_failed(mg_state_t *st, int64_t id, const char *reason, const char *worker,
                          mg_error_t *error)
{
    char a[32];
    const char *p[3] = {mg_state__i64(a, id), reason, worker};

    return mg_state__exec(st,
                          "UPDATE @.partitions SET status = 'failed', error = $2, worker = $3, "
                          "finished_at = now() WHERE id = $1",
                          3, p, error);
}

bool
mg_state_partitions_count(mg_state_t *st, const char *status, int64_t *n, mg_error_t *error)
{
    const char *p[1] = {status};
    PGresult *res =
        mg_state__query(st, "SELECT count(*) FROM @.partitions WHERE status = $1", 1, p, error);

    if (res == NULL)
        return false;
    *n = mg_state__int64(res, 0, 0);
    PQclear(res);
    return true;
}

void
mg_state_blobs_cleanup(mg_state_blobs_t *blobs)
{
    for (size_t k = 0; blobs != NULL && k < blobs->n; k++)
        PQfreemem(blobs->data[k]);
    if (blobs != NULL) {
        free(blobs->data);
        free(blobs->len);
        memset(blobs, 0, sizeof(*blobs));
    }
}

bool
mg_state_partition_filters(mg_state_t *st, const char *db, const char *coll, mg_state_blobs_t *out,
                           mg_error_t *error)
{
    const char *p[2] = {db, coll};
    PGresult *res = mg_state__query(
        st, "SELECT filter FROM @.partitions WHERE db = $1 AND coll = $2 ORDER BY seq", 2, p,
        error);
    size_t n;

    memset(out, 0, sizeof(*out));
    if (res == NULL)
        return false;
    n = (size_t)PQntuples(res);
    out->data = calloc(n + 1, sizeof(*out->data));
    out->len = calloc(n + 1, sizeof(*out->len));
    for (size_t k = 0; out->data != NULL && out->len != NULL && k < n; k++) {
        out->data[k] =
            PQunescapeBytea((const unsigned char *)PQgetvalue(res, (int)k, 0), &out->len[k]);
        if (out->data[k] == NULL)
            break;
        out->n++;
    }
    PQclear(res);
    if (out->n != n) {
        mg_state_blobs_cleanup(out);
        return mg_state__oom(error);
    }
    return true;
}

/* ---- invalid documents, live progress ---- */

bool
mg_state_invalid_doc_add(mg_state_t *st, const char *db, const char *coll, int64_t partition_id,
                         const char *doc_id, const char *reason, mg_error_t *error)
{
    char part[32];
    const char *p[5] = {db, coll, partition_id > 0 ? mg_state__i64(part, partition_id) : NULL,
                        doc_id, reason};

    return mg_state__exec(st,
                          "INSERT INTO @.invalid_docs (db, coll, partition_id, doc_id, reason) "
                          "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (db, coll, doc_id) DO UPDATE "
                          "SET reason = EXCLUDED.reason, at = now()",
                          5, p, error);
}

bool
mg_state_progress_save(mg_state_t *st, const char *worker, int64_t docs, int64_t bytes,
                       mg_error_t *error)
{
    char d[32], b[32];
    const char *p[3] = {worker, mg_state__i64(d, docs), mg_state__i64(b, bytes)};

    return mg_state__exec(st,
                          "INSERT INTO @.copy_progress (worker, docs, bytes) VALUES ($1, $2, $3) "
                          "ON CONFLICT (worker) DO UPDATE SET docs = EXCLUDED.docs, bytes = "
                          "EXCLUDED.bytes, updated_at = now()",
                          3, p, error);
}

bool
mg_state_progress_remove(mg_state_t *st, const char *worker, mg_error_t *error)
{
    const char *p[1] = {worker};

    return mg_state__exec(st, "DELETE FROM @.copy_progress WHERE worker = $1", 1, p, error);
}
