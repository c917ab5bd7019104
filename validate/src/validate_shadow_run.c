/*
 * validate/src/validate_shadow_run.c - shadow reads: each find runs on the
 * MongoDB source and, translated, on PostgreSQL; the results are compared
 * through the canonical form (as ordered lists when sorted - documents
 * whose sort keys tie as sets, any members of a tied group cut by skip or
 * limit - as multisets otherwise, by count when skip/limit pick
 * unspecified documents), with latency percentiles per side.
 */
#include "validate_internal.h"

#include <libpq-fe.h>
#include <math.h>
#include <mongoc/mongoc.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IDS      1000
#define MAX_DIFF_IDS 20
#define MAX_REPEAT   1000

typedef struct {
    uint8_t *bytes;
    uint32_t len;
    char *id;
} row_t;

typedef struct {
    row_t *v;
    size_t n;
    size_t cap;
} rows_t;

const char *
mg_validate_shadow_status_name(mg_validate_shadow_status_t status)
{
    switch (status) {
    case MG_VALIDATE_SHADOW_MATCH:
        return "match";
    case MG_VALIDATE_SHADOW_MISMATCH:
        return "mismatch";
    case MG_VALIDATE_SHADOW_NOT_TRANSLATED:
        return "not_translated";
    case MG_VALIDATE_SHADOW_ERROR:
        return "error";
    }
    return "unknown";
}

static void
strs_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void
mg_validate_shadow_results_free(mg_validate_shadow_result_t *results, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mg_validate_shadow_result_t *r = &results[i];
        free(r->name);
        free(r->ns);
        free(r->query);
        free(r->sql);
        free(r->jsonpath);
        free(r->reason);
        strs_free(r->diff_ids, r->ndiff_ids);
        strs_free(r->pg_ids, r->npg_ids);
    }
    free(results);
}

static void
rows_free(rows_t *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->v[i].bytes);
        free(r->v[i].id);
    }
    free(r->v);
    memset(r, 0, sizeof(*r));
}

/* rows_add canonicalises doc (borrowed) and keeps its bytes and _id. */
static bool
rows_add(rows_t *r, const bson_t *doc, mg_schema_fidelity_t fidelity, mg_error_t *error)
{
    bson_t *canon = mg_schema_doc_canonicalize(doc, fidelity, error);
    bson_iter_t it;
    char id[512] = "(no _id)";

    if (canon == NULL)
        return false;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 64;
        row_t *grown = realloc(r->v, cap * sizeof(*grown));
        if (grown == NULL) {
            bson_destroy(canon);
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        }
        r->v = grown;
        r->cap = cap;
    }
    if (bson_iter_init_find(&it, canon, "_id"))
        mg_schema_id_describe(&it, id, sizeof(id));
    row_t *row = &r->v[r->n];
    row->len = canon->len;
    row->bytes = malloc(canon->len);
    row->id = strdup(id);
    if (row->bytes == NULL || row->id == NULL) {
        free(row->bytes);
        free(row->id);
        bson_destroy(canon);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    memcpy(row->bytes, bson_get_data(canon), canon->len);
    bson_destroy(canon);
    r->n++;
    return true;
}

static int
row_cmp(const void *a, const void *b)
{
    const row_t *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->bytes, y->bytes, n);

    if (c != 0)
        return c;
    return x->len < y->len ? -1 : (x->len > y->len ? 1 : 0);
}

static int
double_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : (x > y ? 1 : 0);
}

static void
percentiles(double *v, int n, double *p50, double *p95)
{
    if (n <= 0) {
        *p50 = *p95 = 0;
        return;
    }
    qsort(v, (size_t)n, sizeof(double), double_cmp);
    *p50 = v[(n - 1) / 2];
    int k = (int)ceil(0.95 * n) - 1;
    *p95 = v[k < 0 ? 0 : (k >= n ? n - 1 : k)];
}

static char *dupf(const char *fmt, ...) MG_PRINTF(1, 2);

static char *
dupf(const char *fmt, ...)
{
    char buf[MG_ERROR_MESSAGE_SIZE + 256];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return strdup(buf);
}

static bool
push_str(char ***v, size_t *n, size_t max, const char *s)
{
    char **grown;

    if (*n >= max)
        return true;
    for (size_t i = 0; i < *n; i++)
        if (strcmp((*v)[i], s) == 0)
            return true;
    grown = realloc(*v, (*n + 1) * sizeof(char *));
    if (grown == NULL)
        return false;
    *v = grown;
    if ((grown[*n] = strdup(s)) == NULL)
        return false;
    (*n)++;
    return true;
}

/* ---- ties: documents the sort does not order ---- */

static bool
is_number(const bson_iter_t *v)
{
    return BSON_ITER_HOLDS_INT32(v) || BSON_ITER_HOLDS_INT64(v) || BSON_ITER_HOLDS_DOUBLE(v);
}

/*
 * value_tie says whether two sort values (NULL: missing) are equal to
 * MongoDB's sort: null and missing alike, numbers by value, other values
 * of one type by their bytes (a stricter equality is safe: fewer ties).
 */
static bool
value_tie(const bson_iter_t *a, const bson_iter_t *b)
{
    bool an = a == NULL || BSON_ITER_HOLDS_NULL(a) || BSON_ITER_HOLDS_UNDEFINED(a);
    bool bn = b == NULL || BSON_ITER_HOLDS_NULL(b) || BSON_ITER_HOLDS_UNDEFINED(b);
    const uint8_t *ad, *bd;
    size_t al, bl;

    if (an || bn)
        return an && bn;
    if (is_number(a) && is_number(b)) {
        if (!BSON_ITER_HOLDS_DOUBLE(a) && !BSON_ITER_HOLDS_DOUBLE(b))
            return bson_iter_as_int64(a) == bson_iter_as_int64(b);
        double x = bson_iter_as_double(a), y = bson_iter_as_double(b);
        return x == y || (isnan(x) && isnan(y));
    }
    if (bson_iter_type(a) != bson_iter_type(b))
        return false;
    mg_validate__value_bytes(a, &ad, &al);
    mg_validate__value_bytes(b, &bd, &bl);
    return al == bl && memcmp(ad, bd, al) == 0;
}

/* keys_tie says whether rows x and y hold tied values on every path of sort. */
static bool
keys_tie(const row_t *x, const row_t *y, const bson_t *sort)
{
    bson_t dx, dy;
    bson_iter_t k, ix, iy, vx, vy;

    if (!bson_init_static(&dx, x->bytes, x->len) || !bson_init_static(&dy, y->bytes, y->len) ||
        !bson_iter_init(&k, sort))
        return false;
    while (bson_iter_next(&k)) {
        const char *path = bson_iter_key(&k);
        bool hx = bson_iter_init(&ix, &dx) && bson_iter_find_descendant(&ix, path, &vx);
        bool hy = bson_iter_init(&iy, &dy) && bson_iter_find_descendant(&iy, path, &vy);
        if (!value_tie(hx ? &vx : NULL, hy ? &vy : NULL))
            return false;
    }
    return true;
}

/*
 * ties_visible: the rows hold every sort path as the collection does (no
 * projection, or one that includes the first component of each), so ties
 * can be read from them.
 */
static bool
ties_visible(const mg_validate_find_t *f)
{
    bson_iter_t k, p;

    if (f->sort == NULL || f->projection == NULL || bson_count_keys(f->projection) == 0)
        return f->sort != NULL;
    if (!bson_iter_init(&k, f->sort))
        return false;
    while (bson_iter_next(&k)) {
        const char *path = bson_iter_key(&k), *dot = strchr(path, '.');
        size_t n = dot != NULL ? (size_t)(dot - path) : strlen(path);
        bool included = false;
        if (!bson_iter_init(&p, f->projection))
            return false;
        while (!included && bson_iter_next(&p))
            included = strlen(bson_iter_key(&p)) == n && strncmp(bson_iter_key(&p), path, n) == 0 &&
                       bson_iter_as_bool(&p);
        if (!included)
            return false;
    }
    return true;
}

/* same_rows: n rows of a and b hold the same documents (as multisets; sorts the copies). */
static bool
same_rows(const row_t *a, const row_t *b, size_t n, bool *in_order)
{
    row_t *x = malloc(n * sizeof(row_t)), *y = malloc(n * sizeof(row_t));
    bool same = x != NULL && y != NULL;

    *in_order = true;
    for (size_t i = 0; i < n; i++)
        *in_order = *in_order && row_cmp(&a[i], &b[i]) == 0;
    if (same && !*in_order) {
        memcpy(x, a, n * sizeof(row_t));
        memcpy(y, b, n * sizeof(row_t));
        qsort(x, n, sizeof(row_t), row_cmp);
        qsort(y, n, sizeof(row_t), row_cmp);
        for (size_t i = 0; same && i < n; i++)
            same = row_cmp(&x[i], &y[i]) == 0;
    }
    free(x);
    free(y);
    return same;
}

/*
 * compare_tied compares sorted results group by group of tied sort keys:
 * PostgreSQL's rows at the positions of a group must tie with it, and hold
 * the same documents in any order - or, for a group cut by skip (the
 * first) or by limit (the last), any members of it. Returns true when the
 * results match so (r: match, tie_sensitive when a group had several
 * members, reason when they came in another order or differed at a cut);
 * false leaves r to the strict comparison.
 */
static bool
compare_tied(mg_validate_shadow_result_t *r, const mg_validate_find_t *f, const rows_t *m,
             const rows_t *p)
{
    bool cut_end = f->limit != 0 && (int64_t)m->n == (f->limit < 0 ? -f->limit : f->limit);
    bool reordered = false, cut_differs = false, ties = false;

    if (m->n != p->n || !ties_visible(f))
        return false;
    for (size_t a = 0, b; a < m->n; a = b) {
        bool in_order;
        for (b = a + 1; b < m->n && keys_tie(&m->v[a], &m->v[b], f->sort); b++)
            ;
        for (size_t x = a; x < b; x++)
            if (!keys_tie(&m->v[a], &p->v[x], f->sort))
                return false;
        ties = ties || b - a > 1;
        if (same_rows(m->v + a, p->v + a, b - a, &in_order))
            reordered = reordered || !in_order;
        else if ((b == m->n && cut_end) || (a == 0 && f->skip > 0))
            cut_differs = true;
        else
            return false;
    }
    r->status = MG_VALIDATE_SHADOW_MATCH;
    r->tie_sensitive = ties;
    if (cut_differs)
        r->reason = strdup("tie-sensitive: the sort does not order every document; skip or limit "
                           "cut a group of tied documents and each side kept other members");
    else if (reordered)
        r->reason = strdup("tie-sensitive: documents with equal sort keys came in another order");
    return true;
}

/* compare fills the status, reason and differing _ids of r. */
static void
compare(mg_validate_shadow_result_t *r, const mg_validate_find_t *f, rows_t *m, rows_t *p)
{
    r->mongo_count = (int64_t)m->n;
    r->pg_count = (int64_t)p->n;
    if (r->count_only) {
        r->status = m->n == p->n ? MG_VALIDATE_SHADOW_MATCH : MG_VALIDATE_SHADOW_MISMATCH;
        if (m->n != p->n)
            r->reason = dupf("counts differ: MongoDB %zu, PostgreSQL %zu", m->n, p->n);
        return;
    }
    if (r->ordered && compare_tied(r, f, m, p))
        return;
    if (r->ordered) {
        bool same = m->n == p->n;
        size_t first = 0;
        for (size_t i = 0; same && i < m->n; i++) {
            if (row_cmp(&m->v[i], &p->v[i]) != 0) {
                same = false;
                first = i;
            }
        }
        if (same) {
            r->status = MG_VALIDATE_SHADOW_MATCH;
            return;
        }
        r->status = MG_VALIDATE_SHADOW_MISMATCH;
        if (m->n == p->n)
            r->reason = dupf("order or content differs from position %zu", first);
    }
    /* as multisets: sort both and walk */
    row_t *mv = malloc((m->n + 1) * sizeof(row_t)), *pv = malloc((p->n + 1) * sizeof(row_t));
    if (mv == NULL || pv == NULL) {
        free(mv);
        free(pv);
        r->status = MG_VALIDATE_SHADOW_ERROR;
        r->reason = strdup("out of memory");
        return;
    }
    if (m->n > 0)
        memcpy(mv, m->v, m->n * sizeof(row_t));
    if (p->n > 0)
        memcpy(pv, p->v, p->n * sizeof(row_t));
    if (m->n > 1)
        qsort(mv, m->n, sizeof(row_t), row_cmp);
    if (p->n > 1)
        qsort(pv, p->n, sizeof(row_t), row_cmp);
    size_t i = 0, j = 0, only_m = 0, only_p = 0;
    while (i < m->n || j < p->n) {
        int c = i < m->n && j < p->n ? row_cmp(&mv[i], &pv[j]) : (i < m->n ? -1 : 1);
        if (c == 0) {
            i++;
            j++;
        } else if (c < 0) {
            push_str(&r->diff_ids, &r->ndiff_ids, MAX_DIFF_IDS, mv[i++].id);
            only_m++;
        } else {
            push_str(&r->diff_ids, &r->ndiff_ids, MAX_DIFF_IDS, pv[j++].id);
            only_p++;
        }
    }
    free(mv);
    free(pv);
    if (only_m == 0 && only_p == 0) {
        if (!r->ordered)
            r->status = MG_VALIDATE_SHADOW_MATCH;
        else if (r->reason == NULL)
            r->reason = strdup("same documents in a different order");
        return;
    }
    r->status = MG_VALIDATE_SHADOW_MISMATCH;
    free(r->reason);
    r->reason =
        dupf("%zu document(s) only in MongoDB's result, %zu only in PostgreSQL's", only_m, only_p);
}

/* run_mongo runs the find repeat times; the first run's documents go to rows. */
static bool
run_mongo(mongoc_client_t *client, const char *db, const char *coll, const mg_validate_find_t *f,
          int repeat, mg_schema_fidelity_t fidelity, rows_t *rows, double *lat, mg_error_t *error)
{
    mongoc_collection_t *c = mongoc_client_get_collection(client, db, coll);
    bson_t opts = BSON_INITIALIZER;
    bool ok = true;

    if (f->projection != NULL)
        BSON_APPEND_DOCUMENT(&opts, "projection", f->projection);
    if (f->sort != NULL)
        BSON_APPEND_DOCUMENT(&opts, "sort", f->sort);
    if (f->skip > 0)
        BSON_APPEND_INT64(&opts, "skip", f->skip);
    if (f->limit != 0)
        BSON_APPEND_INT64(&opts, "limit", f->limit < 0 ? -f->limit : f->limit);
    for (int k = 0; ok && k < repeat; k++) {
        bson_t empty = BSON_INITIALIZER;
        double t0 = mg_now_s();
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(
            c, f->filter != NULL ? f->filter : &empty, &opts, NULL);
        const bson_t *doc;
        bson_error_t be;
        while (ok && mongoc_cursor_next(cur, &doc))
            if (k == 0)
                ok = rows_add(rows, doc, fidelity, error);
        if (ok && mongoc_cursor_error(cur, &be))
            ok = mg_error_set_bson(error, &be, "find on %s.%s failed", db, coll);
        mongoc_cursor_destroy(cur);
        bson_destroy(&empty);
        lat[k] = (mg_now_s() - t0) * 1000.0;
    }
    bson_destroy(&opts);
    mongoc_collection_destroy(c);
    return ok;
}

static bool
run_pg(PGconn *pg, const mg_validate_sql_t *q, int repeat, mg_schema_fidelity_t fidelity,
       rows_t *rows, double *lat, mg_error_t *error)
{
    for (int k = 0; k < repeat; k++) {
        double t0 = mg_now_s();
        PGresult *res = PQexecParams(pg, q->sql, q->nparams, NULL, (const char *const *)q->params,
                                     NULL, NULL, 0);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            mg_error_set_pgresult(error, res, "translated query failed");
            PQclear(res);
            return false;
        }
        for (int i = 0; k == 0 && i < PQntuples(res); i++) {
            bson_t *doc =
                mg_schema_json_parse(PQgetvalue(res, i, 0), (size_t)PQgetlength(res, i, 0), error);
            bool ok = doc != NULL && rows_add(rows, doc, fidelity, error);
            bson_destroy(doc);
            if (!ok) {
                PQclear(res);
                return false;
            }
        }
        PQclear(res);
        lat[k] = (mg_now_s() - t0) * 1000.0;
    }
    return true;
}

/* guard_hit runs the sort guard: true when the data holds values the sort cannot order. */
static bool
guard_hit(PGconn *pg, const mg_validate_sql_t *q, bool *hit, mg_error_t *error)
{
    PGresult *res;

    *hit = false;
    if (q->guard_sql == NULL)
        return true;
    res = PQexecParams(pg, q->guard_sql, q->guard_nparams, NULL, (const char *const *)q->params,
                       NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        mg_error_set_pgresult(error, res, "sort guard failed");
        PQclear(res);
        return false;
    }
    *hit = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "t") == 0;
    PQclear(res);
    return true;
}

static const mg_validate_shadow_ns_t *
find_ns(const mg_validate_shadow_options_t *o, const char *ns)
{
    for (size_t i = 0; i < o->nnamespaces; i++) {
        const mg_validate_shadow_ns_t *n = &o->namespaces[i];
        size_t dl = strlen(n->db);
        if (strncmp(ns, n->db, dl) == 0 && ns[dl] == '.' && strcmp(ns + dl + 1, n->coll) == 0)
            return n;
    }
    return NULL;
}

/* copy_renamed appends src to dst with every key MG_VALIDATE_TYPE_KEY back to "$type". */
static void
copy_renamed(bson_t *dst, const bson_t *src)
{
    bson_iter_t it;

    if (!bson_iter_init(&it, src))
        return;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, MG_VALIDATE_TYPE_KEY) == 0)
            k = "$type";
        if (BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it)) {
            uint32_t len;
            const uint8_t *data;
            bson_t sub, child;
            bool is_doc = BSON_ITER_HOLDS_DOCUMENT(&it);
            if (is_doc)
                bson_iter_document(&it, &len, &data);
            else
                bson_iter_array(&it, &len, &data);
            if (!bson_init_static(&sub, data, len))
                continue;
            if (is_doc)
                bson_append_document_begin(dst, k, -1, &child);
            else
                bson_append_array_begin(dst, k, -1, &child);
            copy_renamed(&child, &sub);
            if (is_doc)
                bson_append_document_end(dst, &child);
            else
                bson_append_array_end(dst, &child);
        } else {
            bson_append_iter(dst, k, -1, &it);
        }
    }
}

/* sub_doc points out at the document value of key in line, or NULL. */
static const bson_t *
sub_doc(const bson_t *line, const char *key, bson_t *out)
{
    bson_iter_t it;
    uint32_t len;
    const uint8_t *data;

    if (!bson_iter_init_find(&it, line, key) || !BSON_ITER_HOLDS_DOCUMENT(&it))
        return NULL;
    bson_iter_document(&it, &len, &data);
    return bson_init_static(out, data, len) ? out : NULL;
}

/* find_of points l's find at the parts of l->doc. */
static void
find_of(mg_validate_shadow_line_t *l)
{
    bson_iter_t it;

    memset(&l->find, 0, sizeof(l->find));
    l->find.filter = sub_doc(&l->doc, "filter", &l->filter);
    l->find.projection = sub_doc(&l->doc, "projection", &l->projection);
    l->find.sort = sub_doc(&l->doc, "sort", &l->sort);
    if (bson_iter_init_find(&it, &l->doc, "skip") && BSON_ITER_HOLDS_NUMBER(&it))
        l->find.skip = bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, &l->doc, "limit") && BSON_ITER_HOLDS_NUMBER(&it))
        l->find.limit = bson_iter_as_int64(&it);
    l->ns = bson_iter_init_find(&it, &l->doc, "ns") && BSON_ITER_HOLDS_UTF8(&it)
                ? bson_iter_utf8(&it, NULL)
                : NULL;
}

/* one_query runs one parsed line into r. */
static void
one_query(const mg_validate_shadow_options_t *o, mongoc_client_t *client, PGconn *pg,
          const bson_t *line, mg_validate_shadow_result_t *r)
{
    mg_validate_shadow_line_t l;
    mg_validate_sql_t q = {0};
    rows_t mrows = {0}, prows = {0};
    mg_error_t e;
    double mlat[MAX_REPEAT], plat[MAX_REPEAT];
    int repeat = o->repeat < 1 ? 1 : (o->repeat > MAX_REPEAT ? MAX_REPEAT : o->repeat);
    const mg_validate_shadow_ns_t *ns;

    mg_error_clear(&e);
    bson_init_static(&l.doc, bson_get_data(line), line->len);
    find_of(&l);
    mg_validate_find_t f = l.find;
    if (l.ns == NULL) {
        r->status = MG_VALIDATE_SHADOW_ERROR;
        r->reason = strdup("the line has no \"ns\" string");
        return;
    }
    r->ns = strdup(l.ns);
    ns = find_ns(o, r->ns);
    if (ns == NULL) {
        r->status = MG_VALIDATE_SHADOW_ERROR;
        r->reason = dupf("namespace \"%s\" is not a migrated collection", r->ns);
        return;
    }
    if (!mg_validate_shadow_translate(&f, ns->schema, ns->table, o->fidelity, &q, &e)) {
        r->status = e.code == MG_VALIDATE_ERR_NOT_TRANSLATED ? MG_VALIDATE_SHADOW_NOT_TRANSLATED
                                                             : MG_VALIDATE_SHADOW_ERROR;
        r->reason = strdup(e.message);
        return;
    }
    r->sql = strdup(q.sql);
    r->jsonpath = q.jsonpath != NULL ? strdup(q.jsonpath) : NULL;
    r->ordered = q.ordered;
    r->count_only = q.count_only;
    bool hit = false;
    if (!guard_hit(pg, &q, &hit, &e)) {
        r->status = MG_VALIDATE_SHADOW_ERROR;
        r->reason = strdup(e.message);
        goto done;
    }
    if (hit) {
        r->status = MG_VALIDATE_SHADOW_NOT_TRANSLATED;
        r->reason = strdup("not translated: the sort meets arrays, documents or values of "
                           "types it cannot order on this data");
        goto done;
    }
    /* the source gets the query operator under its own name again */
    bson_t mongo_filter = BSON_INITIALIZER;
    mg_validate_find_t mf = f;
    if (f.filter != NULL) {
        copy_renamed(&mongo_filter, f.filter);
        mf.filter = &mongo_filter;
    }
    bool ran = run_mongo(client, ns->db, ns->coll, &mf, repeat, o->fidelity, &mrows, mlat, &e) &&
               run_pg(pg, &q, repeat, o->fidelity, &prows, plat, &e);
    bson_destroy(&mongo_filter);
    if (!ran) {
        r->status = MG_VALIDATE_SHADOW_ERROR;
        r->reason = strdup(e.message);
        goto done;
    }
    percentiles(mlat, repeat, &r->mongo_p50_ms, &r->mongo_p95_ms);
    percentiles(plat, repeat, &r->pg_p50_ms, &r->pg_p95_ms);
    for (size_t i = 0; i < prows.n && r->npg_ids < MAX_IDS; i++) {
        char **grown = realloc(r->pg_ids, (r->npg_ids + 1) * sizeof(char *));
        if (grown == NULL)
            break;
        r->pg_ids = grown;
        if ((grown[r->npg_ids] = strdup(prows.v[i].id)) == NULL)
            break;
        r->npg_ids++;
    }
    compare(r, &f, &mrows, &prows);
done:
    rows_free(&mrows);
    rows_free(&prows);
    mg_validate_sql_cleanup(&q);
}

/*
 * type_keys_renamed returns a malloc'd copy of len bytes of line with every
 * key "$type" renamed MG_VALIDATE_TYPE_KEY: libbson's JSON reader takes
 * {"$type": "..."} for the legacy binary form {"$binary": ..., "$type": ...}
 * and refuses the query operator. A "$type" inside a string value is
 * written \"$type\" in JSON and stays as it is.
 */
static char *
type_keys_renamed(const char *line, size_t len)
{
    static const char key[] = "\"$type\"";
    size_t klen = sizeof(key) - 1, rlen = strlen(MG_VALIDATE_TYPE_KEY) + 2;
    char *out = malloc(len * 2 + 1);
    size_t o = 0;
    bool in_string = false;

    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < len;) {
        if (!in_string && i + klen <= len && memcmp(line + i, key, klen) == 0) {
            size_t j = i + klen;
            while (j < len && (line[j] == ' ' || line[j] == '\t'))
                j++;
            if (j < len && line[j] == ':') {
                out[o++] = '"';
                memcpy(out + o, MG_VALIDATE_TYPE_KEY, rlen - 2);
                o += rlen - 2;
                out[o++] = '"';
                i += klen;
                continue;
            }
        }
        if (line[i] == '"')
            in_string = !in_string;
        else if (line[i] == '\\' && in_string && i + 1 < len)
            out[o++] = line[i++];
        out[o++] = line[i++];
    }
    out[o] = '\0';
    return out;
}

bool
mg_validate_shadow_line_parse(const char *text, size_t len, mg_validate_shadow_line_t *line,
                              mg_error_t *error)
{
    bson_error_t be;
    char *renamed = type_keys_renamed(text, len);
    bool parsed = renamed != NULL && bson_init_from_json(&line->doc, renamed, -1, &be);

    free(renamed);
    if (renamed == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    if (!parsed)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "could not parse query \"%.*s\": %s", (int)(len < 200 ? len : 200),
                            text, be.message);
    find_of(line);
    return true;
}

void
mg_validate_shadow_line_cleanup(mg_validate_shadow_line_t *line)
{
    if (line != NULL)
        bson_destroy(&line->doc);
}

bool
mg_validate_shadow_run_lines(const mg_validate_shadow_options_t *o, const char *text,
                             mg_validate_shadow_result_t **results, size_t *nresults,
                             mg_error_t *error)
{
    mongoc_client_t *client = NULL;
    PGconn *pg = NULL;
    mg_validate_shadow_result_t *res = NULL;
    size_t n = 0;
    int lineno = 0;
    bool ok = false;

    client = mg_mongo_client_new(o->source_uri, NULL, MG_MONGO_SERVER_SELECTION_MS, error);
    if (client == NULL)
        goto done;
    {
        const char *const keys[] = {"fallback_application_name", "connect_timeout", "dbname", NULL};
        const char *const values[] = {"migrate-shadow", "10", o->target, NULL};
        pg = PQconnectdbParams(keys, values, 1);
        if (pg == NULL || PQstatus(pg) != CONNECTION_OK) {
            mg_error_set_pgconn(error, pg, "could not connect to target \"%s\"", o->target);
            goto done;
        }
        mg_log_attach_pgconn(pg);
    }
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        lineno++;
        p = end != NULL ? end + 1 : p + len;
        while (len > 0 && (*s == ' ' || *s == '\t' || *s == '\r')) {
            s++;
            len--;
        }
        if (len == 0 || *s == '#')
            continue;
        mg_validate_shadow_result_t *grown = realloc(res, (n + 1) * sizeof(*grown));
        if (grown == NULL) {
            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
            goto done;
        }
        res = grown;
        mg_validate_shadow_result_t *r = &res[n++];
        memset(r, 0, sizeof(*r));
        bson_t line;
        bson_error_t be;
        char *text_line = type_keys_renamed(s, len);
        bool parsed = text_line != NULL && bson_init_from_json(&line, text_line, -1, &be);
        free(text_line);
        if (text_line == NULL)
            snprintf(be.message, sizeof(be.message), "out of memory");
        if (!parsed) {
            r->name = dupf("#%d", lineno);
            r->status = MG_VALIDATE_SHADOW_ERROR;
            r->reason = dupf("line %d is not JSON: %s", lineno, be.message);
            continue;
        }
        bson_iter_t it;
        if (bson_iter_init_find(&it, &line, "name") && BSON_ITER_HOLDS_UTF8(&it))
            r->name = strdup(bson_iter_utf8(&it, NULL));
        else
            r->name = dupf("#%d", lineno);
        r->query = strndup(s, len);
        one_query(o, client, pg, &line, r);
        bson_destroy(&line);
        MG_LOG_EVENT(MG_LOG_DEBUG, "validate", "validate.shadow",
                     MG_LOG_FIELDS(MG_LOG_STR("query", r->name),
                                   MG_LOG_STR("status", mg_validate_shadow_status_name(r->status))),
                     "shadow query %s: %s", r->name, mg_validate_shadow_status_name(r->status));
    }
    ok = true;
done:
    if (pg != NULL)
        PQfinish(pg);
    if (client != NULL)
        mongoc_client_destroy(client);
    if (ok) {
        *results = res;
        *nresults = n;
    } else {
        mg_validate_shadow_results_free(res, n);
    }
    return ok;
}

bool
mg_validate_shadow_profiler_lines(const mg_validate_shadow_options_t *o, size_t max, mg_buf_t *out,
                                  mg_error_t *error)
{
    mongoc_client_t *client =
        mg_mongo_client_new(o->source_uri, NULL, MG_MONGO_SERVER_SELECTION_MS, error);
    bool ok = client != NULL;

    for (size_t i = 0; ok && i < o->nnamespaces; i++) {
        const char *db = o->namespaces[i].db;
        bool seen = false;
        for (size_t k = 0; k < i; k++)
            if (strcmp(o->namespaces[k].db, db) == 0)
                seen = true;
        if (seen)
            continue;
        mongoc_collection_t *prof = mongoc_client_get_collection(client, db, "system.profile");
        bson_t *filter = BCON_NEW("op", BCON_UTF8("query"));
        bson_t *opts =
            BCON_NEW("sort", "{", "ts", BCON_INT32(-1), "}", "limit", BCON_INT64((int64_t)max));
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(prof, filter, opts, NULL);
        const bson_t *entry;
        bson_error_t be;
        while (ok && mongoc_cursor_next(cur, &entry)) {
            bson_iter_t it, cmd;
            const char *coll = NULL;
            if (!bson_iter_init_find(&it, entry, "command") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
                !bson_iter_recurse(&it, &cmd))
                continue;
            bson_t line = BSON_INITIALIZER;
            while (bson_iter_next(&cmd)) {
                const char *k = bson_iter_key(&cmd);
                if (strcmp(k, "find") == 0 && BSON_ITER_HOLDS_UTF8(&cmd))
                    coll = bson_iter_utf8(&cmd, NULL);
                else if (strcmp(k, "filter") == 0 || strcmp(k, "sort") == 0 ||
                         strcmp(k, "projection") == 0 || strcmp(k, "skip") == 0 ||
                         strcmp(k, "limit") == 0)
                    bson_append_iter(&line, k, -1, &cmd);
            }
            if (coll != NULL) {
                char ns[1024];
                snprintf(ns, sizeof(ns), "%s.%s", db, coll);
                bson_t full = BSON_INITIALIZER;
                BSON_APPEND_UTF8(&full, "ns", ns);
                BSON_APPEND_UTF8(&full, "name", "profiler");
                bson_concat(&full, &line);
                char *json = bson_as_canonical_extended_json(&full, NULL);
                ok = json != NULL && mg_buf_append_str(out, json, error) &&
                     mg_buf_append_str(out, "\n", error);
                bson_free(json);
                bson_destroy(&full);
            }
            bson_destroy(&line);
        }
        if (ok && mongoc_cursor_error(cur, &be))
            ok = mg_error_set_bson(error, &be, "could not read %s.system.profile", db);
        mongoc_cursor_destroy(cur);
        bson_destroy(filter);
        bson_destroy(opts);
        mongoc_collection_destroy(prof);
    }
    if (client != NULL)
        mongoc_client_destroy(client);
    return ok;
}
