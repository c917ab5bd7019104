/*
 * migrator/src/copy_worker.c - one copy worker: claim a partition, read it
 * from MongoDB sorted by _id, render each document, stream the rows with
 * COPY ... FROM STDIN (FORMAT binary), and commit the rows together with
 * the partition's done mark.
 *
 * The claim is SELECT ... FOR UPDATE SKIP LOCKED inside the copy's own
 * transaction: the row lock is held until the commit, so any number of
 * workers (threads here, or `migrate sync --worker` processes elsewhere)
 * share the plan with no coordinator but PostgreSQL. A worker that dies
 * rolls back: its partition is pending again and nothing of it is visible.
 *
 * COPY binary row: int16 field count (2), then per field int32 length and
 * bytes. The key is text bytes, an 8-byte big-endian bigint, or jsonb; the
 * document is jsonb = version byte 1 + JSON text.
 */
#include "migrator_internal.h"

#include <arpa/inet.h>
#include <endian.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COPY_SIGNATURE "PGCOPY\n\377\r\n\0"
#define MAX_REJECTS    100 /* rows PostgreSQL may reject in one partition (--skip-invalid) */
#define IDLOG_LIMIT    (256u * 1024 * 1024)
#define IDOFFS_LIMIT   (64u * 1024 * 1024)

/* A partition being copied. */
typedef struct {
    int64_t id;
    mg_copy_coll_t *coll;
    bson_t *filter;
    int seq;
} partition_t;

/* partition_cleanup frees what claim gave p. */
static void
partition_cleanup(partition_t *p)
{
    if (p->filter != NULL)
        bson_destroy(p->filter);
    p->filter = NULL;
}

/* _ids to leave out of a partition after PostgreSQL refused them. */
typedef struct {
    bson_value_t *ids;
    char **reasons;
    size_t n;
} skip_set_t;

/* Per-worker state. */
typedef struct {
    const mg_copy_settings_t *s;
    char name[96];
    mongoc_client_t *mongo;
    PGconn *pg;
    mg_state_t *st;  /* the state on pg */
    mg_buf_t out;    /* COPY data waiting to be sent */
    mg_buf_t idlog;  /* raw _id elements of the rows sent in this partition */
    mg_buf_t idoffs; /* uint32 offsets into idlog, one per row */
    mg_copy_timing_t *timing;
    mg_copy_coll_t *colls;
    size_t ncolls;
} worker_t;

static void
skip_set_free(skip_set_t *k)
{
    for (size_t i = 0; i < k->n; i++) {
        bson_value_destroy(&k->ids[i]);
        free(k->reasons[i]);
    }
    free(k->ids);
    free(k->reasons);
    memset(k, 0, sizeof(*k));
}

static bool
skip_set_add(skip_set_t *k, const bson_value_t *id, const char *reason)
{
    bson_value_t *ni = realloc(k->ids, (k->n + 1) * sizeof(*ni));
    if (ni == NULL)
        return false;
    k->ids = ni;
    char **nr = realloc(k->reasons, (k->n + 1) * sizeof(*nr));
    if (nr == NULL)
        return false;
    k->reasons = nr;
    k->reasons[k->n] = strdup(reason);
    if (k->reasons[k->n] == NULL)
        return false;
    bson_value_copy(id, &k->ids[k->n]);
    k->n++;
    return true;
}

static bool
values_equal(const bson_value_t *a, const bson_value_t *b)
{
    bson_t da = BSON_INITIALIZER, db = BSON_INITIALIZER;
    bool eq;

    bson_append_value(&da, "v", 1, a);
    bson_append_value(&db, "v", 1, b);
    eq = da.len == db.len && memcmp(bson_get_data(&da), bson_get_data(&db), da.len) == 0;
    bson_destroy(&da);
    bson_destroy(&db);
    return eq;
}

static bool
skip_set_has(const skip_set_t *k, const bson_value_t *id)
{
    for (size_t i = 0; i < k->n; i++)
        if (values_equal(&k->ids[i], id))
            return true;
    return false;
}

/* send_out pushes the pending COPY data to the server. */
static bool
send_out(worker_t *w, mg_error_t *error)
{
    double t0 = mg_now_s();
    bool ok = true;

    if (w->out.len > 0 && PQputCopyData(w->pg, w->out.data, (int)w->out.len) != 1)
        ok = mg_error_set_pgconn(error, w->pg, "could not send COPY data");
    w->out.len = 0;
    w->timing->pg_s += mg_now_s() - t0;
    return ok;
}

static void
put_u32(uint8_t *p, uint32_t v)
{
    v = htonl(v);
    memcpy(p, &v, 4);
}

/*
 * append_row renders one document as a COPY binary row into w->out. On a
 * document that cannot be written the buffer is restored and *bad is set
 * (error holds the reason); other failures return false.
 */
static bool
append_row(worker_t *w, mg_copy_coll_t *c, const bson_t *doc, bson_iter_t *id, bool *bad,
           mg_error_t *error)
{
    size_t start = w->out.len;
    size_t len_at;

    *bad = false;
    if (!mg_buf_reserve(&w->out, 10, error))
        goto bad_row;
    w->out.data[w->out.len++] = 0;
    w->out.data[w->out.len++] = 2; /* two fields */
    len_at = w->out.len;
    w->out.len += 4;
    if (!mg_schema_key_encode_for(c->db, c->coll, id, c->key, w->s->fidelity, true, &w->out, error))
        goto bad_row;
    put_u32((uint8_t *)w->out.data + len_at, (uint32_t)(w->out.len - len_at - 4));
    if (!mg_buf_reserve(&w->out, 5, error))
        goto bad_row;
    len_at = w->out.len;
    w->out.len += 4;
    w->out.data[w->out.len++] = 1; /* jsonb version */
    if (!mg_schema_doc_render(doc, w->s->fidelity, &w->out, NULL, error))
        goto bad_row;
    put_u32((uint8_t *)w->out.data + len_at, (uint32_t)(w->out.len - len_at - 4));
    return true;
bad_row:
    w->out.len = start;
    *bad = true;
    return true;
}

/* log_id remembers the raw _id of the row just sent (for PostgreSQL errors). */
static bool
log_id(worker_t *w, const bson_iter_t *id, mg_error_t *error)
{
    uint32_t off = (uint32_t)w->idlog.len;
    bson_t one = BSON_INITIALIZER;
    bool ok;

    bson_append_iter(&one, "_id", 3, id);
    ok = mg_buf_append(&w->idlog, bson_get_data(&one), one.len, error) &&
         mg_buf_append(&w->idoffs, &off, sizeof(off), error);
    bson_destroy(&one);
    return ok;
}

/* id_of_row fetches the _id of COPY row `line` (1-based) into *value. */
static bool
id_of_row(worker_t *w, long line, bson_value_t *value)
{
    uint32_t off;
    bson_t one;
    bson_iter_t it;

    if (line < 1 || (size_t)line > w->idoffs.len / sizeof(uint32_t))
        return false;
    memcpy(&off, w->idoffs.data + (size_t)(line - 1) * sizeof(uint32_t), sizeof(off));
    if (!bson_init_static(&one, (const uint8_t *)w->idlog.data + off,
                          (size_t) * (const int32_t *)(w->idlog.data + off)) ||
        !bson_iter_init_find(&it, &one, "_id"))
        return false;
    bson_value_copy(bson_iter_value(&it), value);
    return true;
}

static void
describe_value(const bson_value_t *v, char *out, size_t outsz)
{
    bson_t one = BSON_INITIALIZER;
    bson_iter_t it;

    bson_append_value(&one, "_id", 3, v);
    if (bson_iter_init_find(&it, &one, "_id"))
        mg_schema_id_describe(&it, out, outsz);
    else
        snprintf(out, outsz, "?");
    bson_destroy(&one);
}

static bool
pg_exec(worker_t *w, const char *sql, mg_error_t *error)
{
    double t0 = mg_now_s();
    bool ok = mg_pg_exec(w->pg, sql, error);

    w->timing->pg_s += mg_now_s() - t0;
    return ok;
}

static void
rollback(worker_t *w)
{
    PGresult *r;

    /* drain a COPY still in progress, then end the transaction */
    if (PQtransactionStatus(w->pg) == PQTRANS_ACTIVE) {
        PQputCopyEnd(w->pg, "aborted by migrate");
        while ((r = PQgetResult(w->pg)) != NULL)
            PQclear(r);
    }
    r = PQexec(w->pg, "ROLLBACK");
    PQclear(r);
}

/*
 * claim opens the copy transaction and locks the next pending partition.
 * *got is false when none is free; *others_pending tells whether some are
 * pending but locked by other workers.
 */
static bool
claim(worker_t *w, partition_t *p, bool *got, bool *others_pending, mg_error_t *error)
{
    mg_state_partition_t sp;
    double t0 = mg_now_s();
    bool ok = mg_state_partition_claim(w->st, &sp, got, others_pending, error);

    w->timing->pg_s += mg_now_s() - t0;
    if (!ok || !*got)
        return ok;
    p->id = sp.id;
    p->seq = sp.seq;
    p->coll = NULL;
    for (size_t i = 0; i < w->ncolls; i++)
        if (strcmp(w->colls[i].db, sp.db) == 0 && strcmp(w->colls[i].coll, sp.coll) == 0)
            p->coll = &w->colls[i];
    p->filter = bson_new_from_data(sp.filter, sp.filter_len);
    mg_state_partition_cleanup(&sp);
    if (p->coll == NULL)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_NOT_FOUND,
                          "partition %lld belongs to a collection not in the plan",
                          (long long)p->id);
    else if (p->filter == NULL)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                          "partition %lld has a corrupt filter", (long long)p->id);
    if (!ok) {
        partition_cleanup(p);
        *got = false;
        rollback(w);
    }
    return ok;
}

/*
 * mark_failed records a partition's failure in its own transaction. When
 * that fails too the worker stops with both reasons: the partition would
 * otherwise stay claimable and be copied, and fail, again and again.
 */
static bool
mark_failed(worker_t *w, const partition_t *p, const mg_error_t *why, mg_error_t *error)
{
    mg_error_t e;

    if (mg_state_partition_failed(w->st, p->id, why->message, w->name, &e))
        return true;
    return mg_error_set(error, e.domain, e.code,
                        "could not mark partition %d of \"%s.%s\" failed: %s (it failed: %s)",
                        p->seq, p->coll->db, p->coll->coll, e.message, why->message);
}

/* finish_partition marks the partition done and records skipped documents. */
static bool
finish_partition(worker_t *w, const partition_t *p, int64_t docs, int64_t bytes,
                 const skip_set_t *skips, mg_error_t *error)
{
    if (!mg_state_partition_done(w->st, p->id, docs, bytes, (int64_t)skips->n, w->name, error))
        return false;
    for (size_t i = 0; i < skips->n; i++) {
        char shown[512];
        describe_value(&skips->ids[i], shown, sizeof(shown));
        if (!mg_state_invalid_doc_add(w->st, p->coll->db, p->coll->coll, p->id, shown,
                                      skips->reasons[i], error))
            return false;
    }
    return true;
}

typedef enum {
    COPY_DONE,     /* committed */
    COPY_REJECTED, /* PostgreSQL refused a row; *rejected names it (retry without it) */
    COPY_BAD_DOC,  /* a document cannot be written and --skip-invalid is off */
    COPY_STOPPED,  /* abort requested */
    COPY_FATAL,    /* connection or source failure */
} copy_result_t;

/* parse_copy_line extracts N from "COPY x, line N" in a COPY error's context. */
static long
parse_copy_line(const PGresult *res)
{
    const char *ctx = PQresultErrorField(res, PG_DIAG_CONTEXT);
    const char *p = ctx ? strstr(ctx, ", line ") : NULL;

    return p ? strtol(p + 7, NULL, 10) : -1;
}

/* begin_copy starts COPY into the partition's table and queues the binary header. */
static bool
begin_copy(worker_t *w, const partition_t *p, mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res;
    double t;
    bool ok;

    mg_buf_init(&sql, 4096);
    ok = mg_buf_append_str(&sql, "COPY ", error) &&
         mg_schema_quote_ident(p->coll->schema, &sql, error) &&
         mg_buf_append_str(&sql, ".", error) &&
         mg_schema_quote_ident(p->coll->table, &sql, error) &&
         mg_buf_append_str(&sql, " (_id, doc) FROM STDIN (FORMAT binary)", error);
    if (ok) {
        t = mg_now_s();
        res = PQexec(w->pg, sql.data);
        w->timing->pg_s += mg_now_s() - t;
        if (PQresultStatus(res) != PGRES_COPY_IN)
            ok = mg_error_set_pgresult(error, res, "could not start COPY into \"%s\".\"%s\"",
                                       p->coll->schema, p->coll->table);
        PQclear(res);
    }
    mg_buf_cleanup(&sql);
    /* header: signature, flags, extension length */
    return ok && mg_buf_append(&w->out, COPY_SIGNATURE, 11, error) &&
           mg_buf_append(&w->out, "\0\0\0\0\0\0\0\0", 8, error);
}

/*
 * bad_document handles a document that cannot be written (error says why):
 * with --skip-invalid it joins the skip set (COPY_DONE: go on), otherwise
 * the partition fails naming the _id (COPY_BAD_DOC).
 */
static copy_result_t
bad_document(worker_t *w, const partition_t *p, skip_set_t *skips, const bson_iter_t *id,
             mg_error_t *error)
{
    char shown[256];

    mg_schema_id_describe(id, shown, sizeof(shown));
    if (!w->s->skip_invalid) {
        mg_error_prefix(error, "collection \"%s.%s\", _id %s", p->coll->db, p->coll->coll, shown);
        return COPY_BAD_DOC;
    }
    if (!skip_set_add(skips, bson_iter_value((bson_iter_t *)id), error->message)) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        return COPY_FATAL;
    }
    MG_LOG_EVENT(MG_LOG_WARNING, "copy", "sync.invalid_doc",
                 MG_LOG_FIELDS(MG_LOG_STR("db", p->coll->db),
                               MG_LOG_STR("collection", p->coll->coll), MG_LOG_STR("_id", shown)),
                 "skipped a document that cannot be written: %s", error->message);
    return COPY_DONE;
}

/*
 * end_copy sends the trailer, ends the COPY and reads its result: COPY_DONE
 * (the transaction still open), COPY_REJECTED with *rejected naming the row
 * PostgreSQL refused (reason its message), COPY_BAD_DOC when the row cannot
 * be named, COPY_FATAL when the connection is gone.
 */
static copy_result_t
end_copy(worker_t *w, const partition_t *p, bson_value_t *rejected, char *reason, size_t reasonsz,
         mg_error_t *error)
{
    PGresult *res, *r2;
    double t;
    long line;

    if (!mg_buf_append(&w->out, "\xff\xff", 2, error) || !send_out(w, error))
        return COPY_FATAL;
    t = mg_now_s();
    if (PQputCopyEnd(w->pg, NULL) != 1) {
        mg_error_set_pgconn(error, w->pg, "could not end COPY");
        return COPY_FATAL;
    }
    res = PQgetResult(w->pg);
    w->timing->pg_s += mg_now_s() - t;
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        while ((res = PQgetResult(w->pg)) != NULL)
            PQclear(res);
        return COPY_DONE;
    }
    line = parse_copy_line(res);
    mg_error_set_pgresult(error, res, "PostgreSQL refused a row of \"%s.%s\"", p->coll->db,
                          p->coll->coll);
    PQclear(res);
    while ((r2 = PQgetResult(w->pg)) != NULL)
        PQclear(r2);
    if (PQstatus(w->pg) != CONNECTION_OK)
        return COPY_FATAL; /* the connection is gone */
    if (id_of_row(w, line, rejected)) {
        char shown[256];
        describe_value(rejected, shown, sizeof(shown));
        snprintf(reason, reasonsz, "%s", error->message);
        mg_error_prefix(error, "_id %s", shown);
        return COPY_REJECTED;
    }
    mg_error_prefix(error, "row %ld of partition %d", line, p->seq);
    return COPY_BAD_DOC;
}

/*
 * copy_partition streams one claimed partition inside the open transaction
 * and commits. skips lists _ids to leave out (and record as invalid).
 */
static copy_result_t
copy_partition(worker_t *w, partition_t *p, skip_set_t *skips, bson_value_t *rejected, char *reason,
               size_t reasonsz, mg_error_t *error)
{
    mongoc_collection_t *coll = NULL;
    mongoc_cursor_t *cursor = NULL;
    bson_t *opts = NULL;
    const bson_t *doc;
    bson_error_t be;
    copy_result_t result = COPY_FATAL;
    int64_t docs = 0, bytes = 0;
    double t;

    w->idlog.len = 0;
    w->idoffs.len = 0;
    w->idoffs.limit = IDOFFS_LIMIT;
    w->out.len = 0;
    if (!begin_copy(w, p, error))
        goto done;

    coll = mongoc_client_get_collection(w->mongo, p->coll->db, p->coll->coll);
    opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}", "hint", "{", "_id", BCON_INT32(1), "}",
                    "batchSize", BCON_INT64(w->s->batch_docs));
    cursor = mongoc_collection_find_with_opts(coll, p->filter, opts, NULL);
    for (;;) {
        bson_iter_t id;
        bool bad, more;

        if (atomic_load(w->s->stop) >= 2) {
            result = COPY_STOPPED;
            goto done;
        }
        t = mg_now_s();
        more = mongoc_cursor_next(cursor, &doc);
        w->timing->mongo_s += mg_now_s() - t;
        if (!more)
            break;
        if (!bson_iter_init_find(&id, doc, "_id")) {
            snprintf(reason, reasonsz, "a document of \"%s.%s\" has no _id", p->coll->db,
                     p->coll->coll);
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE, "%s", reason);
            result = COPY_BAD_DOC;
            goto done;
        }
        if (skips->n > 0 && skip_set_has(skips, bson_iter_value(&id)))
            continue;
        t = mg_now_s();
        if (!append_row(w, p->coll, doc, &id, &bad, error)) {
            w->timing->render_s += mg_now_s() - t;
            goto done;
        }
        w->timing->render_s += mg_now_s() - t;
        if (bad) {
            /* skipped (--skip-invalid), or the partition stops here */
            result = bad_document(w, p, skips, &id, error);
            if (result != COPY_DONE)
                goto done;
            continue;
        }
        {
            /* the _id log only names rows PostgreSQL refuses; when full, stop logging */
            mg_error_t ignored;
            if (!log_id(w, &id, &ignored))
                w->idoffs.limit = w->idoffs.len;
        }
        docs++;
        bytes += doc->len;
        atomic_fetch_add(&p->coll->docs_done, 1);
        atomic_fetch_add(&p->coll->bytes_done, doc->len);
        if ((int64_t)w->out.len >= w->s->flush_bytes && !send_out(w, error))
            goto done;
    }
    if (mongoc_cursor_error(cursor, &be)) {
        mg_error_set_bson(error, &be, "could not read partition %d of \"%s.%s\"", p->seq,
                          p->coll->db, p->coll->coll);
        goto done;
    }
    result = end_copy(w, p, rejected, reason, reasonsz, error);
    if (result == COPY_DONE &&
        (!finish_partition(w, p, docs, bytes, skips, error) || !pg_exec(w, "COMMIT", error)))
        result = COPY_FATAL;
    if (result == COPY_DONE) {
        atomic_fetch_add(&p->coll->parts_done, 1);
        w->timing->docs += docs;
        w->timing->bytes += bytes;
        w->timing->partitions++;
        w->timing->skipped_docs += (int64_t)skips->n;
    }
done:
    if (result != COPY_DONE) {
        /* uncount what this attempt added to the live progress */
        atomic_fetch_sub(&p->coll->docs_done, docs);
        atomic_fetch_sub(&p->coll->bytes_done, bytes);
    }
    if (cursor != NULL)
        mongoc_cursor_destroy(cursor);
    if (coll != NULL)
        mongoc_collection_destroy(coll);
    bson_destroy(opts);
    return result;
}

/* reclaim locks partition p again (same id) for a retry; *got false if gone. */
static bool
reclaim(worker_t *w, partition_t *p, bool *got, mg_error_t *error)
{
    return mg_state_partition_reclaim(w->st, p->id, got, error);
}

static bool
worker_open(worker_t *w, mg_error_t *error)
{
    w->mongo = mg_mongo_client_new(w->s->source_uri, "migrate-copy", 0, error);
    if (w->mongo == NULL)
        return false;
    w->pg = mg_pg_connect(w->s->target, error);
    if (w->pg == NULL)
        return false;
    w->st = mg_state_new(w->pg, w->s->state_schema, error);
    if (w->st == NULL)
        return false;
    /* rows and done mark commit or vanish together, so an asynchronous
     * commit cannot lose a partition: a lost commit loses its mark too */
    return mg_pg_exec(w->pg, "SET synchronous_commit = off", error);
}

/*
 * reopen_target replaces a lost target connection (a restart or a failover
 * behind HAProxy). The partition in flight died with its transaction, rows
 * and claim alike, so it is pending again and the next claim picks it up.
 */
static bool
reopen_target(worker_t *w, mg_error_t *error)
{
    char why[MG_ERROR_MESSAGE_SIZE];
    bool ok;

    snprintf(why, sizeof(why), "%s (worker %s)", error->message, w->name);
    ok = mg_pg_reconnect(&w->pg, w->s->target, "SET synchronous_commit = off", "copy", why,
                         MG_PG_RECONNECT_BUDGET_S, w->s->stop, 1, error);
    mg_state_set_conn(w->st, w->pg);
    return ok;
}

bool
mg_migrator__copy_worker_run(const mg_copy_settings_t *s, int index, mg_copy_coll_t *colls,
                             size_t ncolls, mg_copy_timing_t *timing, mg_error_t *error)
{
    worker_t w;
    bool ok = false;
    double started = mg_now_s();

    memset(&w, 0, sizeof(w));
    memset(timing, 0, sizeof(*timing));
    w.s = s;
    w.timing = timing;
    w.colls = colls;
    w.ncolls = ncolls;
    snprintf(w.name, sizeof(w.name), "%s/%d", s->worker_name, index);
    mg_buf_init(&w.out, (size_t)(s->flush_bytes + s->doc_cap_bytes + 64));
    mg_buf_init(&w.idlog, IDLOG_LIMIT);
    mg_buf_init(&w.idoffs, IDOFFS_LIMIT);
    if (!worker_open(&w, error))
        goto done;

    while (atomic_load(s->stop) == 0) {
        partition_t p = {0};
        bool got, others;
        skip_set_t skips = {0};

        if (!claim(&w, &p, &got, &others, error)) {
            if (mg_pg_lost(w.pg, error)) {
                if (reopen_target(&w, error))
                    continue;
                ok = atomic_load(s->stop) > 0;
            }
            goto done;
        }
        if (!got) {
            if (!others)
                break;          /* the plan is finished */
            usleep(200 * 1000); /* another worker holds the rest; it may die */
            continue;
        }
        for (int attempt = 0;; attempt++) {
            bson_value_t rejected;
            char reason[MG_ERROR_MESSAGE_SIZE] = "";
            copy_result_t r =
                copy_partition(&w, &p, &skips, &rejected, reason, sizeof(reason), error);
            if (r == COPY_DONE)
                break;
            rollback(&w);
            if (r != COPY_STOPPED && r != COPY_REJECTED && mg_pg_lost(w.pg, error)) {
                if (reopen_target(&w, error))
                    break; /* claim again */
                skip_set_free(&skips);
                bson_destroy(p.filter);
                ok = atomic_load(s->stop) > 0;
                goto done;
            }
            if (r == COPY_STOPPED || r == COPY_FATAL) {
                skip_set_free(&skips);
                bson_destroy(p.filter);
                ok = r == COPY_STOPPED;
                goto done;
            }
            if (r == COPY_REJECTED && s->skip_invalid && attempt < MAX_REJECTS) {
                MG_LOG_EVENT(MG_LOG_WARNING, "copy", "sync.invalid_doc",
                             MG_LOG_FIELDS(MG_LOG_STR("db", p.coll->db),
                                           MG_LOG_STR("collection", p.coll->coll)),
                             "%s; copying the partition again without it", error->message);
                bool added = skip_set_add(&skips, &rejected, reason);
                bson_value_destroy(&rejected);
                bool again = false;
                if (!added || !reclaim(&w, &p, &again, error)) {
                    bool lost = added && mg_pg_lost(w.pg, error);
                    if (lost && reopen_target(&w, error))
                        break; /* claim again; the skip set is rebuilt on the way */
                    skip_set_free(&skips);
                    bson_destroy(p.filter);
                    ok = lost && atomic_load(s->stop) > 0;
                    goto done;
                }
                if (again)
                    continue;
                break; /* someone else took it over */
            }
            if (r == COPY_REJECTED)
                bson_value_destroy(&rejected);
            /* this partition's data cannot be written: record it and go on */
            MG_LOG_EVENT(MG_LOG_ERROR, "copy", "sync.partition_failed",
                         MG_LOG_FIELDS(MG_LOG_STR("db", p.coll->db),
                                       MG_LOG_STR("collection", p.coll->coll),
                                       MG_LOG_INT("partition", p.seq)),
                         "partition %d of %s.%s failed: %s", p.seq, p.coll->db, p.coll->coll,
                         error->message);
            timing->failed++;
            mg_error_t why = *error;
            if (!mark_failed(&w, &p, &why, error)) {
                skip_set_free(&skips);
                bson_destroy(p.filter);
                goto done; /* ok false: the run stops with the error */
            }
            break;
        }
        skip_set_free(&skips);
        bson_destroy(p.filter);
    }
    ok = true;
done:
    timing->total_s = mg_now_s() - started;
    mg_state_destroy(w.st);
    if (w.pg != NULL)
        PQfinish(w.pg);
    if (w.mongo != NULL)
        mongoc_client_destroy(w.mongo);
    mg_buf_cleanup(&w.out);
    mg_buf_cleanup(&w.idlog);
    mg_buf_cleanup(&w.idoffs);
    return ok;
}
