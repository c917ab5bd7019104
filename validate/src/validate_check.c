/*
 * validate/src/validate_check.c - segment checksums of one collection on
 * both sides, and the drill-down that names every differing _id.
 *
 * Pass 1: a source thread (libmongoc find over the whole collection) and a
 * target thread (COPY (SELECT _id::text, doc ...) TO STDOUT binary) reduce
 * every document to its canonical form, hash it, and add the hash to the
 * digest (count, wrapping sum, xor) of the segment its canonical _id hashes
 * into. Pass 2, only when digests differ: both sides are scanned again and
 * keep the canonical documents of the mismatching segments (as many as fit
 * in drilldown_bytes); the two lists are sorted by _id and merged, which
 * names each _id missing, extra or different, with a field diff.
 */
#include "validate_internal.h"

#include <libpq-fe.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define COPY_SIGNATURE     "PGCOPY\n\377\r\n\0"
#define COPY_SIGNATURE_LEN 11
#define SCAN_BUF_CAP       (256 * 1024 * 1024) /* a 16 MB document renders to < 100 MB */

typedef struct {
    int64_t count;
    uint64_t sum;
    uint64_t x;
} seg_digest_t;

/* One document kept by the drill-down. */
typedef struct {
    uint64_t id_hash;
    uint64_t doc_hash;
    bson_t *doc;  /* canonical, owned */
    char *doc_id; /* key column text form, owned */
} entry_t;

typedef struct {
    entry_t *v;
    size_t n;
    size_t cap;
    int64_t bytes;
} entries_t;

/* One side's scan: inputs, then outputs. */
typedef struct {
    const mg_validate_check_options_t *o;
    const mg_validate_coll_t *c;
    const uint8_t *want; /* segments to keep documents of; NULL in pass 1 */
    seg_digest_t *segs;  /* pass 1 output (calloc'd by the caller) */
    entries_t kept;      /* pass 2 output */
    int64_t docs;
    int64_t bytes;
    double secs;
    bool ok;
    mg_error_t error;
    mg_buf_t render; /* per scan: the renderer's JSON, its canonical text, working memory */
    mg_buf_t canon;
    mg_buf_t scratch;
} scan_t;

void
mg_validate_check_options_init(mg_validate_check_options_t *options)
{
    memset(options, 0, sizeof(*options));
    options->fidelity = MG_SCHEMA_FIDELITY_RELAXED;
    options->segments = 1024;
    options->max_named = 1000;
    options->max_diffs = 20;
    options->batch_docs = 2000;
    options->source_threads = 2;
    options->drilldown_bytes = 256 * 1024 * 1024;
}

const char *
mg_validate_mismatch_kind_name(mg_validate_mismatch_kind_t kind)
{
    switch (kind) {
    case MG_VALIDATE_MISSING:
        return "missing";
    case MG_VALIDATE_EXTRA:
        return "extra";
    case MG_VALIDATE_DIFFERENT:
        return "different";
    }
    return "unknown";
}

static void
entries_free(entries_t *e)
{
    for (size_t i = 0; i < e->n; i++) {
        bson_destroy(e->v[i].doc);
        free(e->v[i].doc_id);
    }
    free(e->v);
    memset(e, 0, sizeof(*e));
}

/* entries_push takes ownership of doc and doc_id (freed on failure too). */
static bool
entries_push(entries_t *e, uint64_t id_hash, uint64_t doc_hash, bson_t *doc, char *doc_id,
             mg_error_t *error)
{
    if (e->n == e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 64;
        entry_t *grown = realloc(e->v, cap * sizeof(*grown));
        if (grown == NULL) {
            bson_destroy(doc);
            free(doc_id);
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        }
        e->v = grown;
        e->cap = cap;
    }
    e->v[e->n++] = (entry_t){id_hash, doc_hash, doc, doc_id};
    e->bytes += doc->len;
    return true;
}

void
mg_validate_result_cleanup(mg_validate_result_t *result)
{
    if (result == NULL)
        return;
    for (size_t i = 0; i < result->nmismatches; i++) {
        mg_validate_mismatch_t *m = &result->mismatches[i];
        free(m->id_json);
        free(m->doc_id);
        mg_validate_field_diffs_free(m->diffs, m->ndiffs);
    }
    free(result->mismatches);
    memset(result, 0, sizeof(*result));
}

/*
 * take hashes one document given as its canonical jsonb text (borrowed)
 * and either adds it to its segment's digest (pass 1) or, when its segment
 * is wanted (pass 2), keeps its canonical BSON: from raw (the source's
 * document, borrowed) or parsed from the text (the target's). key_text
 * (NULL allowed, malloc'd, taken) is the key column's text form.
 */
static bool
take(scan_t *s, const char *text, size_t len, const bson_t *raw, char *key_text, mg_error_t *error)
{
    const char *idv;
    size_t idlen;
    uint64_t ih, dh;
    uint32_t seg;
    bson_t *canon;

    s->docs++;
    s->bytes += raw != NULL ? raw->len : len;
    if (!mg_validate__jsonb_id_span(text, len, &idv, &idlen)) {
        free(key_text);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "document has no _id");
    }
    ih = mg_validate_hash64(idv, idlen, 1);
    dh = mg_validate_hash64(text, len, 0);
    seg = (uint32_t)(ih % s->o->segments);
    if (s->want == NULL) {
        s->segs[seg].count++;
        s->segs[seg].sum += dh;
        s->segs[seg].x ^= dh;
        free(key_text);
        return true;
    }
    if ((s->want[seg / 8] & (1u << (seg % 8))) == 0) {
        free(key_text);
        return true;
    }
    if (raw != NULL) {
        canon = mg_schema_doc_canonicalize(raw, s->o->fidelity, error);
    } else {
        bson_t *parsed = mg_schema_json_parse(text, len, error);
        canon = parsed != NULL ? mg_schema_doc_canonicalize(parsed, s->o->fidelity, error) : NULL;
        bson_destroy(parsed);
    }
    if (canon == NULL) {
        free(key_text);
        return false;
    }
    if (key_text == NULL) {
        bson_iter_t it;
        char buf[512] = "?";
        if (bson_iter_init_find(&it, canon, "_id"))
            mg_schema_id_describe(&it, buf, sizeof(buf));
        key_text = strdup(buf);
    }
    return entries_push(&s->kept, ih, dh, canon, key_text, error);
}

/* take_source renders and normalises a source document, then takes it. */
static bool
take_source(scan_t *s, const bson_t *doc, char *key_text, mg_error_t *error)
{
    mg_buf_reset(&s->render);
    mg_buf_reset(&s->canon);
    if (!mg_schema_doc_render(doc, s->o->fidelity, &s->render, NULL, error) ||
        !mg_validate__jsonb_normalize(s->render.data, s->render.len, &s->canon, &s->scratch,
                                      error)) {
        free(key_text);
        return false;
    }
    return take(s, s->canon.data, s->canon.len, doc, key_text, error);
}

static void
scan_buffers_init(scan_t *s)
{
    mg_buf_init(&s->render, SCAN_BUF_CAP);
    mg_buf_init(&s->canon, SCAN_BUF_CAP);
    mg_buf_init(&s->scratch, SCAN_BUF_CAP);
}

static void
scan_buffers_cleanup(scan_t *s)
{
    mg_buf_cleanup(&s->render);
    mg_buf_cleanup(&s->canon);
    mg_buf_cleanup(&s->scratch);
}

/* source_key_text returns the key column's text form of doc's _id (malloc'd) or NULL. */
static char *
source_key_text(const bson_t *doc, const mg_validate_coll_t *c, mg_schema_fidelity_t fidelity)
{
    bson_iter_t it;
    mg_buf_t buf;
    char *out = NULL;

    if (!bson_iter_init_find(&it, doc, "_id"))
        return NULL;
    mg_buf_init(&buf, 64 * 1024);
    if (mg_schema_key_encode(&it, c->key_type, fidelity, false, &buf, NULL))
        out = strndup(buf.data != NULL ? buf.data : "", buf.len);
    mg_buf_cleanup(&buf);
    return out;
}

/* ---- source ---- */

/* source_find runs filter on the collection and feeds every document to take_source. */
static bool
source_find(scan_t *s, mongoc_client_t *client, const bson_t *filter, mg_error_t *error)
{
    mongoc_collection_t *coll = mongoc_client_get_collection(client, s->c->db, s->c->coll);
    bson_t *opts = BCON_NEW("batchSize", BCON_INT64(s->o->batch_docs));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
    const bson_t *doc;
    bson_error_t be;
    bool ok = true;

    while (ok && mongoc_cursor_next(cur, &doc)) {
        char *key = s->want != NULL ? source_key_text(doc, s->c, s->o->fidelity) : NULL;
        ok = take_source(s, doc, key, error);
        if (!ok) {
            bson_iter_t it;
            char id[256] = "?";
            if (bson_iter_init_find(&it, doc, "_id"))
                mg_schema_id_describe(&it, id, sizeof(id));
            mg_error_prefix(error, "source document %s of \"%s.%s\"", id, s->c->db, s->c->coll);
        }
    }
    if (ok && mongoc_cursor_error(cur, &be))
        ok = mg_error_set_bson(error, &be, "could not read source collection \"%s.%s\"", s->c->db,
                               s->c->coll);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    mongoc_collection_destroy(coll);
    return ok;
}

/* One source worker: a share of the filters, its own client, digests and buffers. */
typedef struct {
    scan_t scan;
    atomic_size_t *next; /* index of the next filter to run, shared */
} source_worker_t;

static void *
source_worker_thread(void *arg)
{
    source_worker_t *w = arg;
    scan_t *s = &w->scan;
    mongoc_client_t *client = mg_mongo_client_new(s->o->source_uri, "migrate-validate",
                                                  MG_MONGO_SERVER_SELECTION_MS, &s->error);
    bson_t all = BSON_INITIALIZER;

    scan_buffers_init(s);
    s->ok = client != NULL;
    while (s->ok) {
        size_t k = atomic_fetch_add(w->next, 1);
        const bson_t *filter;
        if (s->o->nsource_filters == 0)
            filter = k == 0 ? &all : NULL;
        else
            filter = k < s->o->nsource_filters ? s->o->source_filters[k] : NULL;
        if (filter == NULL)
            break;
        s->ok = source_find(s, client, filter, &s->error);
    }
    scan_buffers_cleanup(s);
    bson_destroy(&all);
    if (client != NULL)
        mongoc_client_destroy(client);
    return NULL;
}

/*
 * source_scan_thread scans the source with source_threads workers over the
 * filters (the copy's partitions) and merges their digests and documents
 * into the scan.
 */
static void *
source_scan_thread(void *arg)
{
    scan_t *s = arg;
    double t0 = mg_now_s();
    size_t nw = s->o->source_threads > 0 ? (size_t)s->o->source_threads : 1;
    size_t nf = s->o->nsource_filters > 0 ? s->o->nsource_filters : 1;
    atomic_size_t next = 0;
    source_worker_t *w;
    pthread_t *th;
    bool *started;

    if (nw > nf)
        nw = nf;
    w = calloc(nw, sizeof(*w));
    th = calloc(nw, sizeof(*th));
    started = calloc(nw, sizeof(*started));
    s->ok = w != NULL && th != NULL && started != NULL;
    if (!s->ok)
        mg_error_set(&s->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t i = 0; s->ok && i < nw; i++) {
        w[i].scan = *s;
        w[i].next = &next;
        memset(&w[i].scan.kept, 0, sizeof(w[i].scan.kept));
        w[i].scan.docs = w[i].scan.bytes = 0;
        if (s->segs != NULL) {
            w[i].scan.segs = calloc(s->o->segments, sizeof(seg_digest_t));
            if (w[i].scan.segs == NULL) {
                s->ok = mg_error_set(&s->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                     "out of memory");
                break;
            }
        }
        started[i] = pthread_create(&th[i], NULL, source_worker_thread, &w[i]) == 0;
        if (!started[i])
            source_worker_thread(&w[i]);
    }
    for (size_t i = 0; w != NULL && th != NULL && started != NULL && i < nw; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        scan_t *ws = &w[i].scan;
        if (ws->segs == NULL && s->segs != NULL)
            continue;
        if (!ws->ok && s->ok) {
            s->ok = false;
            s->error = ws->error;
        }
        s->docs += ws->docs;
        s->bytes += ws->bytes;
        for (uint32_t k = 0; s->segs != NULL && k < s->o->segments; k++) {
            s->segs[k].count += ws->segs[k].count;
            s->segs[k].sum += ws->segs[k].sum;
            s->segs[k].x ^= ws->segs[k].x;
        }
        for (size_t e = 0; e < ws->kept.n; e++) {
            entry_t *en = &ws->kept.v[e];
            if (s->ok &&
                entries_push(&s->kept, en->id_hash, en->doc_hash, en->doc, en->doc_id, &s->error)) {
                continue;
            }
            if (s->ok) {
                s->ok = false; /* entries_push freed this entry */
                continue;
            }
            bson_destroy(en->doc);
            free(en->doc_id);
        }
        free(ws->kept.v);
        if (s->segs != NULL)
            free(ws->segs);
    }
    free(w);
    free(th);
    free(started);
    s->secs = mg_now_s() - t0;
    return NULL;
}

/* ---- target ---- */

static bool
table_name(const mg_validate_coll_t *c, mg_buf_t *out, mg_error_t *error)
{
    return mg_schema_quote_ident(c->schema, out, error) && mg_buf_append_str(out, ".", error) &&
           mg_schema_quote_ident(c->table, out, error);
}

static uint32_t
get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* take_row reads one target row: key text and jsonb binary (version byte + JSON). */
static bool
take_row(scan_t *s, const char *key, size_t key_len, const char *jb, size_t jb_len,
         mg_error_t *error)
{
    char *key_text = NULL;
    bool ok;

    if (jb_len < 1 || jb[0] != 1)
        return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                            "target row \"%.*s\" of %s.%s: unexpected jsonb binary version",
                            (int)(key_len > 200 ? 200 : key_len), key, s->c->schema, s->c->table);
    if (s->want != NULL && (key_text = strndup(key, key_len)) == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    /* jsonb's text is already in the canonical text form */
    ok = take(s, jb + 1, jb_len - 1, NULL, key_text, error);
    if (!ok)
        mg_error_prefix(error, "target row \"%.*s\" of %s.%s", (int)(key_len > 200 ? 200 : key_len),
                        key, s->c->schema, s->c->table);
    return ok;
}

/*
 * parse_copy_message reads the tuples of one CopyData message of a binary
 * COPY with two columns (key text, doc jsonb); the first message starts
 * with the file header, the last holds the -1 trailer.
 */
static bool
parse_copy_message(scan_t *s, const uint8_t *p, size_t n, bool *header_done, mg_error_t *error)
{
    const uint8_t *end = p + n;

    if (!*header_done) {
        if (n < COPY_SIGNATURE_LEN + 8 || memcmp(p, COPY_SIGNATURE, COPY_SIGNATURE_LEN) != 0)
            return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "unexpected COPY binary header");
        uint32_t ext = get32(p + COPY_SIGNATURE_LEN + 4);
        p += COPY_SIGNATURE_LEN + 8;
        if ((size_t)(end - p) < ext)
            return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "unexpected COPY binary header");
        p += ext;
        *header_done = true;
    }
    while (p < end) {
        const uint8_t *field[2];
        uint32_t flen[2];
        if (end - p < 2)
            return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "truncated COPY tuple");
        int16_t nf = (int16_t)(((uint16_t)p[0] << 8) | p[1]);
        p += 2;
        if (nf == -1)
            return true;
        if (nf != 2)
            return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "COPY tuple with %d fields", nf);
        for (int i = 0; i < 2; i++) {
            if (end - p < 4)
                return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "truncated COPY tuple");
            flen[i] = get32(p);
            p += 4;
            if (flen[i] == 0xffffffffu || (size_t)(end - p) < flen[i])
                return mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "bad COPY field");
            field[i] = p;
            p += flen[i];
        }
        if (!take_row(s, (const char *)field[0], flen[0], (const char *)field[1], flen[1], error))
            return false;
    }
    return true;
}

/* target_copy runs COPY (SELECT _id::text, doc FROM table [where]) and feeds every row. */
static bool
target_copy(scan_t *s, PGconn *conn, mg_error_t *error)
{
    mg_buf_t sql;
    PGresult *res = NULL;
    bool ok = false, header_done = false;
    char *data = NULL;
    int n;

    mg_buf_init(&sql, 4096);
    if (!mg_buf_append_str(&sql, "COPY (SELECT _id::text, doc FROM ", error) ||
        !table_name(s->c, &sql, error) ||
        !mg_buf_append_str(&sql, ") TO STDOUT (FORMAT binary)", error))
        goto done;
    res = PQexec(conn, sql.data);
    if (PQresultStatus(res) != PGRES_COPY_OUT) {
        mg_error_set_pgresult(error, res, "could not read target table %s.%s", s->c->schema,
                              s->c->table);
        goto done;
    }
    PQclear(res);
    res = NULL;
    ok = true;
    while ((n = PQgetCopyData(conn, &data, 0)) > 0) {
        if (ok)
            ok = parse_copy_message(s, (const uint8_t *)data, (size_t)n, &header_done, error);
        PQfreemem(data);
        data = NULL;
    }
    if (n == -2) {
        ok = ok && mg_error_set_pgconn(error, conn, "could not read target table %s.%s",
                                       s->c->schema, s->c->table);
        goto done;
    }
    res = PQgetResult(conn);
    if (PQresultStatus(res) != PGRES_COMMAND_OK && ok)
        ok = mg_error_set_pgresult(error, res, "could not read target table %s.%s", s->c->schema,
                                   s->c->table);
    PQclear(res);
    res = NULL;
    while ((res = PQgetResult(conn)) != NULL)
        PQclear(res);
done:
    PQclear(res);
    mg_buf_cleanup(&sql);
    return ok;
}

static void *
target_scan_thread(void *arg)
{
    scan_t *s = arg;
    double t0 = mg_now_s();
    PGconn *conn = mg_pg_connect(s->o->target, &s->error);

    s->ok = conn != NULL && target_copy(s, conn, &s->error);
    PQfinish(conn);
    s->secs = mg_now_s() - t0;
    return NULL;
}

/* run_both runs the two scans in parallel; the first error wins. */
static bool
run_both(scan_t *src, scan_t *tgt, mg_error_t *error)
{
    pthread_t th;
    bool threaded = pthread_create(&th, NULL, source_scan_thread, src) == 0;

    if (!threaded)
        source_scan_thread(src);
    target_scan_thread(tgt);
    if (threaded)
        pthread_join(th, NULL);
    if (!src->ok) {
        if (error != NULL)
            *error = src->error;
        return false;
    }
    if (!tgt->ok) {
        if (error != NULL)
            *error = tgt->error;
        return false;
    }
    return true;
}

/* ---- merge: name the differences ---- */

static int
entry_cmp(const void *a, const void *b)
{
    const entry_t *x = a, *y = b;
    bson_iter_t xi, yi;
    const uint8_t *xd, *yd;
    size_t xl, yl;

    if (x->id_hash != y->id_hash)
        return x->id_hash < y->id_hash ? -1 : 1;
    bson_iter_init_find(&xi, x->doc, "_id");
    bson_iter_init_find(&yi, y->doc, "_id");
    if (bson_iter_type(&xi) != bson_iter_type(&yi))
        return bson_iter_type(&xi) < bson_iter_type(&yi) ? -1 : 1;
    mg_validate__value_bytes(&xi, &xd, &xl);
    mg_validate__value_bytes(&yi, &yd, &yl);
    if (xl != yl)
        return xl < yl ? -1 : 1;
    return memcmp(xd, yd, xl);
}

static bool
name_mismatch(const mg_validate_check_options_t *o, mg_validate_result_t *r,
              mg_validate_mismatch_kind_t kind, const entry_t *se, const entry_t *te,
              mg_error_t *error)
{
    const entry_t *any = se != NULL ? se : te;
    mg_validate_mismatch_t *m;
    bson_iter_t it;
    char id[1024];

    if (kind == MG_VALIDATE_MISSING)
        r->missing++;
    else if (kind == MG_VALIDATE_EXTRA)
        r->extra++;
    else
        r->different++;
    if (r->nmismatches >= o->max_named) {
        r->truncated = true;
        return true;
    }
    m = realloc(r->mismatches, (r->nmismatches + 1) * sizeof(*m));
    if (m == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    r->mismatches = m;
    m = &r->mismatches[r->nmismatches];
    memset(m, 0, sizeof(*m));
    m->kind = kind;
    bson_iter_init_find(&it, any->doc, "_id");
    mg_schema_id_describe(&it, id, sizeof(id));
    m->id_json = strdup(id);
    m->doc_id = strdup(any->doc_id);
    if (m->id_json == NULL || m->doc_id == NULL) {
        free(m->id_json);
        free(m->doc_id);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    r->nmismatches++;
    if (kind == MG_VALIDATE_DIFFERENT)
        return mg_validate_doc_diff(se->doc, te->doc, o->fidelity, o->max_diffs, &m->diffs,
                                    &m->ndiffs, &m->more_diffs, error);
    return true;
}

static int
mismatch_cmp(const void *a, const void *b)
{
    const mg_validate_mismatch_t *x = a, *y = b;

    return strcmp(x->id_json, y->id_json);
}

/* merge sorts both lists by _id and names every difference. */
static bool
merge(const mg_validate_check_options_t *o, entries_t *s, entries_t *t, mg_validate_result_t *r,
      mg_error_t *error)
{
    size_t i = 0, j = 0;

    if (s->n > 1)
        qsort(s->v, s->n, sizeof(entry_t), entry_cmp);
    if (t->n > 1)
        qsort(t->v, t->n, sizeof(entry_t), entry_cmp);
    while (i < s->n || j < t->n) {
        int c = i < s->n && j < t->n ? entry_cmp(&s->v[i], &t->v[j]) : (i < s->n ? -1 : 1);
        bool ok = true;
        if (c < 0) {
            ok = name_mismatch(o, r, MG_VALIDATE_MISSING, &s->v[i++], NULL, error);
        } else if (c > 0) {
            ok = name_mismatch(o, r, MG_VALIDATE_EXTRA, NULL, &t->v[j++], error);
        } else {
            /* the canonical BSON forms decide: a text-only difference is not one */
            if (s->v[i].doc_hash != t->v[j].doc_hash &&
                (s->v[i].doc->len != t->v[j].doc->len ||
                 memcmp(bson_get_data(s->v[i].doc), bson_get_data(t->v[j].doc), s->v[i].doc->len) !=
                     0))
                ok = name_mismatch(o, r, MG_VALIDATE_DIFFERENT, &s->v[i], &t->v[j], error);
            i++;
            j++;
        }
        if (!ok)
            return false;
    }
    if (r->nmismatches > 1)
        qsort(r->mismatches, r->nmismatches, sizeof(*r->mismatches), mismatch_cmp);
    return true;
}

static bool
check_options(const mg_validate_check_options_t *o, mg_error_t *error)
{
    if (o->segments < 1 || o->segments > (1u << 24))
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "segments must be between 1 and 16777216");
    if (o->source_uri == NULL || o->target == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "source and target are required");
    return true;
}

bool
mg_validate_check_collection(const mg_validate_check_options_t *o, const mg_validate_coll_t *c,
                             mg_validate_result_t *r, mg_error_t *error)
{
    scan_t src, tgt;
    uint8_t *want = NULL;
    double t0 = mg_now_s();
    bool ok = false;

    memset(r, 0, sizeof(*r));
    memset(&src, 0, sizeof(src));
    memset(&tgt, 0, sizeof(tgt));
    if (!check_options(o, error))
        return false;
    src.o = tgt.o = o;
    src.c = tgt.c = c;
    src.segs = calloc(o->segments, sizeof(seg_digest_t));
    tgt.segs = calloc(o->segments, sizeof(seg_digest_t));
    want = calloc(o->segments / 8 + 1, 1);
    if (src.segs == NULL || tgt.segs == NULL || want == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        goto done;
    }
    if (!run_both(&src, &tgt, error))
        goto done;
    r->segments = o->segments;
    r->source_docs = src.docs;
    r->target_docs = tgt.docs;
    r->source_s = src.secs;
    r->target_s = tgt.secs;

    /* choose the mismatching segments to drill into, within the memory budget */
    double avg = src.docs > 0 ? (double)src.bytes / (double)src.docs
                              : (tgt.docs > 0 ? (double)tgt.bytes / (double)tgt.docs : 1024.0);
    double budget = (double)o->drilldown_bytes, planned = 0;
    for (uint32_t k = 0; k < o->segments; k++) {
        seg_digest_t *a = &src.segs[k], *b = &tgt.segs[k];
        if (a->count == b->count && a->sum == b->sum && a->x == b->x)
            continue;
        r->segments_mismatched++;
        double need = (double)(a->count + b->count) * avg * 2.0;
        if (r->segments_drilled > 0 && planned + need > budget)
            continue;
        planned += need;
        want[k / 8] |= (uint8_t)(1u << (k % 8));
        r->segments_drilled++;
    }
    if (r->segments_mismatched > 0) {
        scan_t s2 = src, t2 = tgt;
        s2.want = t2.want = want;
        s2.segs = t2.segs = NULL;
        s2.docs = t2.docs = s2.bytes = t2.bytes = 0;
        memset(&s2.kept, 0, sizeof(s2.kept));
        memset(&t2.kept, 0, sizeof(t2.kept));
        ok = run_both(&s2, &t2, error) && merge(o, &s2.kept, &t2.kept, r, error);
        r->source_s += s2.secs;
        r->target_s += t2.secs;
        entries_free(&s2.kept);
        entries_free(&t2.kept);
        if (!ok)
            goto done;
        if (r->segments_drilled < r->segments_mismatched)
            r->truncated = true;
    }
    ok = true;
done:
    free(src.segs);
    free(tgt.segs);
    free(want);
    r->elapsed_s = mg_now_s() - t0;
    if (!ok)
        mg_validate_result_cleanup(r);
    return ok;
}

/* ---- re-checking named documents (--changed) ---- */

/* id_append appends the _id whose key column text form is doc_id to dst under key. */
static bool
id_append(const mg_validate_coll_t *c, const char *doc_id, bson_t *dst, const char *key,
          mg_error_t *error)
{
    return mg_schema_key_append_id(c->key_type, doc_id, strlen(doc_id), dst, key, -1, error);
}

#define IDS_BATCH 1000

bool
mg_validate_check_ids(const mg_validate_check_options_t *o, const mg_validate_coll_t *c,
                      const char *const *doc_ids, size_t n, mg_validate_result_t *r,
                      mg_error_t *error)
{
    scan_t src, tgt;
    uint8_t all = 0xff;
    mongoc_client_t *client = NULL;
    PGconn *conn = NULL;
    mg_buf_t sql;
    double t0 = mg_now_s(), t1;
    bool ok = false;

    memset(r, 0, sizeof(*r));
    memset(&src, 0, sizeof(src));
    memset(&tgt, 0, sizeof(tgt));
    mg_buf_init(&sql, 4096);
    mg_validate_check_options_t one = *o;
    one.segments = 1; /* every document lands in segment 0, which is wanted */
    src.o = tgt.o = &one;
    src.c = tgt.c = c;
    src.want = tgt.want = &all;
    scan_buffers_init(&src);
    if (!check_options(o, error))
        goto done;
    client =
        mg_mongo_client_new(o->source_uri, "migrate-validate", MG_MONGO_SERVER_SELECTION_MS, error);
    if (client == NULL)
        goto done;
    /* the source: {_id: {$in: [...]}} per batch */
    for (size_t i = 0; i < n; i += IDS_BATCH) {
        bson_t filter = BSON_INITIALIZER, cond, arr;
        bool fine = true;
        bson_append_document_begin(&filter, "_id", 3, &cond);
        bson_append_array_begin(&cond, "$in", 3, &arr);
        for (size_t k = i; fine && k < n && k < i + IDS_BATCH; k++) {
            char key[16];
            snprintf(key, sizeof(key), "%zu", k - i);
            fine = id_append(c, doc_ids[k], &arr, key, error);
        }
        bson_append_array_end(&cond, &arr);
        bson_append_document_end(&filter, &cond);
        fine = fine && source_find(&src, client, &filter, error);
        bson_destroy(&filter);
        if (!fine)
            goto done;
    }
    t1 = mg_now_s();
    src.secs = t1 - t0;
    conn = mg_pg_connect(o->target, error);
    if (conn == NULL)
        goto done;
    if (!mg_buf_append_str(&sql, "SELECT _id::text, doc::text FROM ", error) ||
        !table_name(c, &sql, error) ||
        !mg_buf_printf(&sql, error, " WHERE _id = ANY ($1::%s[])",
                       mg_schema_key_type_sql(c->key_type)))
        goto done;
    for (size_t i = 0; i < n; i += IDS_BATCH) {
        mg_buf_t lit;
        size_t k = n - i < IDS_BATCH ? n - i : IDS_BATCH;
        bool fine;
        mg_buf_init(&lit, 256u * 1024 * 1024);
        fine = mg_pg_text_array(doc_ids + i, k, &lit, error);
        const char *params[1] = {lit.data};
        PGresult *res = fine ? PQexecParams(conn, sql.data, 1, NULL, params, NULL, NULL, 0) : NULL;
        if (fine && PQresultStatus(res) != PGRES_TUPLES_OK) {
            mg_error_set_pgresult(error, res, "could not read %zu keys of %s.%s", k, c->schema,
                                  c->table);
            fine = false;
        }
        for (int row = 0; fine && row < PQntuples(res); row++) {
            mg_buf_t jb;
            mg_buf_init(&jb, (size_t)PQgetlength(res, row, 1) + 2);
            fine = mg_buf_append(&jb, "\x01", 1, error) &&
                   mg_buf_append(&jb, PQgetvalue(res, row, 1), (size_t)PQgetlength(res, row, 1),
                                 error) &&
                   take_row(&tgt, PQgetvalue(res, row, 0), (size_t)PQgetlength(res, row, 0),
                            jb.data, jb.len, error);
            mg_buf_cleanup(&jb);
        }
        PQclear(res);
        mg_buf_cleanup(&lit);
        if (!fine)
            goto done;
    }
    tgt.secs = mg_now_s() - t1;
    r->segments = 1;
    r->source_docs = src.docs;
    r->target_docs = tgt.docs;
    r->source_s = src.secs;
    r->target_s = tgt.secs;
    ok = merge(o, &src.kept, &tgt.kept, r, error);
    if (ok && r->nmismatches + (size_t)r->truncated > 0)
        r->segments_mismatched = r->segments_drilled = 1;
done:
    scan_buffers_cleanup(&src);
    entries_free(&src.kept);
    entries_free(&tgt.kept);
    mg_buf_cleanup(&sql);
    PQfinish(conn);
    if (client != NULL)
        mongoc_client_destroy(client);
    r->elapsed_s = mg_now_s() - t0;
    if (!ok)
        mg_validate_result_cleanup(r);
    return ok;
}
