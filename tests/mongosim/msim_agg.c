/*
 * tests/mongosim/msim_agg.c - the aggregate command: $changeStream and
 * $collStats as first stages, then $match, $sort, $limit, $skip, $project,
 * $addFields/$set, $unset, $unwind, $sample, $count, $group and
 * $bucketAuto over an in-memory array of document references.
 */
#include "msim.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    msim_doc_t **docs;
    size_t n, cap;
} docarr_t;

static void
arr_push(docarr_t *a, msim_doc_t *d)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->docs = realloc(a->docs, a->cap * sizeof *a->docs);
        if (a->docs == NULL)
            abort();
    }
    a->docs[a->n++] = d;
}

static void
arr_clear(docarr_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        msim_doc_unref(a->docs[i]);
    free(a->docs);
    a->docs = NULL;
    a->n = a->cap = 0;
}

static void
arr_push_bson(docarr_t *a, const bson_t *b)
{
    arr_push(a, msim_doc_from_bson(b));
}

static bool
spec_doc(const bson_iter_t *it, bson_t *out, const char *stage, mg_error_t *error)
{
    const uint8_t *d;
    uint32_t l;
    if (!BSON_ITER_HOLDS_DOCUMENT(it))
        return msim_fail(error, 15955, "the %s stage specification must be an object", stage);
    bson_iter_document(it, &l, &d);
    bson_init_static(out, d, l);
    return true;
}

/* eval_key evaluates expr for doc into tmp {"k": value}; null when missing. */
static void
eval_key(const bson_iter_t *expr, const msim_doc_t *doc, bson_t *tmp, mg_error_t *error, bool *ok)
{
    bson_iter_t root;
    bson_init(tmp);
    bson_iter_init_from_data(&root, doc->data, doc->len);
    *ok = msim_expr_eval(expr, &root, tmp, "k", error);
    if (*ok && !bson_has_field(tmp, "k"))
        BSON_APPEND_NULL(tmp, "k");
}

/* ------------------------------------------------------------------------
 * $group
 * ------------------------------------------------------------------------ */

enum { ACC_SUM, ACC_AVG, ACC_MIN, ACC_MAX, ACC_FIRST, ACC_LAST, ACC_PUSH, ACC_ADDTOSET, ACC_COUNT };

typedef struct {
    char *name;
    int kind;
    bson_iter_t expr;
} acc_spec_t;

typedef struct {
    double dsum;
    int64_t isum;
    bool is_double, overflow;
    int64_t count;
    bson_t *val; /* min/max/first/last: {"v": x}; push/addToSet: array */
    uint32_t nvals;
} acc_state_t;

typedef struct {
    bson_t *key;
    uint64_t hash;
    acc_state_t *acc;
} group_t;

static uint64_t
fnv(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void
acc_add(const acc_spec_t *spec, acc_state_t *st, const bson_iter_t *v, bool present)
{
    switch (spec->kind) {
    case ACC_SUM:
    case ACC_AVG:
        if (present && msim_is_number(bson_iter_type(v))) {
            int64_t x;
            st->count++;
            st->dsum += msim_as_double(v);
            if (BSON_ITER_HOLDS_DOUBLE(v) || bson_iter_type(v) == BSON_TYPE_DECIMAL128 ||
                !msim_iter_int64(v, &x))
                st->is_double = true;
            else if (__builtin_add_overflow(st->isum, x, &st->isum))
                st->overflow = true;
        }
        break;
    case ACC_COUNT:
        st->count++;
        break;
    case ACC_MIN:
    case ACC_MAX:
        if (present && !BSON_ITER_HOLDS_NULL(v) && bson_iter_type(v) != BSON_TYPE_UNDEFINED) {
            bson_iter_t cur;
            if (st->val != NULL && bson_iter_init_find(&cur, st->val, "v")) {
                int c = msim_cmp(v, &cur);
                if ((spec->kind == ACC_MIN && c >= 0) || (spec->kind == ACC_MAX && c <= 0))
                    break;
                bson_destroy(st->val);
            }
            st->val = bson_new();
            msim_append_iter(st->val, "v", 1, v);
        }
        break;
    case ACC_FIRST:
        if (st->count++ == 0) {
            st->val = bson_new();
            if (present)
                msim_append_iter(st->val, "v", 1, v);
            else
                BSON_APPEND_NULL(st->val, "v");
        }
        break;
    case ACC_LAST:
        if (st->val)
            bson_destroy(st->val);
        st->val = bson_new();
        if (present)
            msim_append_iter(st->val, "v", 1, v);
        else
            BSON_APPEND_NULL(st->val, "v");
        break;
    case ACC_PUSH:
    case ACC_ADDTOSET:
        if (!present)
            break;
        if (st->val == NULL)
            st->val = bson_new();
        if (spec->kind == ACC_ADDTOSET) {
            bson_iter_t e;
            bson_iter_init(&e, st->val);
            while (bson_iter_next(&e))
                if (msim_cmp(&e, v) == 0)
                    return;
        }
        {
            char key[16];
            const char *k;
            bson_uint32_to_string(st->nvals++, &k, key, sizeof key);
            msim_append_iter(st->val, k, -1, v);
        }
        break;
    }
}

static void
acc_result(const acc_spec_t *spec, const acc_state_t *st, bson_t *out)
{
    bson_iter_t v;
    switch (spec->kind) {
    case ACC_SUM:
        if (st->is_double || st->overflow)
            BSON_APPEND_DOUBLE(out, spec->name, st->dsum);
        else if (st->isum >= INT32_MIN && st->isum <= INT32_MAX)
            BSON_APPEND_INT32(out, spec->name, (int32_t)st->isum);
        else
            BSON_APPEND_INT64(out, spec->name, st->isum);
        break;
    case ACC_AVG:
        if (st->count == 0)
            BSON_APPEND_NULL(out, spec->name);
        else
            BSON_APPEND_DOUBLE(out, spec->name, st->dsum / (double)st->count);
        break;
    case ACC_COUNT:
        if (st->count <= INT32_MAX)
            BSON_APPEND_INT32(out, spec->name, (int32_t)st->count);
        else
            BSON_APPEND_INT64(out, spec->name, st->count);
        break;
    case ACC_PUSH:
    case ACC_ADDTOSET: {
        bson_t arr;
        bson_append_array_begin(out, spec->name, -1, &arr);
        if (st->val)
            bson_concat(&arr, st->val);
        bson_append_array_end(out, &arr);
        break;
    }
    default:
        if (st->val != NULL && bson_iter_init_find(&v, st->val, "v"))
            msim_append_iter(out, spec->name, -1, &v);
        else
            BSON_APPEND_NULL(out, spec->name);
    }
}

static bool
stage_group(const bson_t *spec, docarr_t *in, docarr_t *out, mg_error_t *error)
{
    bson_iter_t it, idexpr;
    acc_spec_t accs[64];
    size_t nacc = 0, ngroups = 0, tabsz = 1024;
    group_t *groups = NULL;
    size_t *table;
    bool ok = true, have_id = false;
    const char *type_field = NULL;

    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bson_iter_t a;
        const char *op;
        if (strcmp(k, "_id") == 0) {
            idexpr = it;
            have_id = true;
            continue;
        }
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &a) || !bson_iter_next(&a))
            return msim_fail(error, 40234, "The field '%s' must be an accumulator object", k);
        if (nacc == 64)
            return msim_fail(error, MSIM_E_BAD_VALUE, "too many accumulators");
        op = bson_iter_key(&a);
        accs[nacc].name = (char *)k;
        accs[nacc].expr = a;
        if (strcmp(op, "$sum") == 0)
            accs[nacc].kind = ACC_SUM;
        else if (strcmp(op, "$avg") == 0)
            accs[nacc].kind = ACC_AVG;
        else if (strcmp(op, "$min") == 0)
            accs[nacc].kind = ACC_MIN;
        else if (strcmp(op, "$max") == 0)
            accs[nacc].kind = ACC_MAX;
        else if (strcmp(op, "$first") == 0)
            accs[nacc].kind = ACC_FIRST;
        else if (strcmp(op, "$last") == 0)
            accs[nacc].kind = ACC_LAST;
        else if (strcmp(op, "$push") == 0)
            accs[nacc].kind = ACC_PUSH;
        else if (strcmp(op, "$addToSet") == 0)
            accs[nacc].kind = ACC_ADDTOSET;
        else if (strcmp(op, "$count") == 0)
            accs[nacc].kind = ACC_COUNT;
        else
            return msim_fail(error, 15952, "unknown group operator '%s'", op);
        nacc++;
    }
    if (!have_id)
        return msim_fail(error, 15955, "a group specification must include an _id");
    if (BSON_ITER_HOLDS_DOCUMENT(&idexpr)) {
        bson_iter_t t;
        const char *field = NULL;
        bson_iter_recurse(&idexpr, &t);
        if (bson_iter_next(&t) && strcmp(bson_iter_key(&t), "$type") == 0 &&
            BSON_ITER_HOLDS_UTF8(&t))
            field = bson_iter_utf8(&t, NULL);
        if (field != NULL && field[0] == '$' && field[1] != '$' && strchr(field, '.') == NULL &&
            !bson_iter_next(&t))
            type_field = field + 1;
    }
    table = malloc(tabsz * sizeof *table);
    if (table == NULL)
        abort();
    memset(table, 0xff, tabsz * sizeof *table);
    for (size_t i = 0; i < in->n && ok; i++) {
        bson_t key;
        uint64_t h;
        size_t slot, g;
        bson_iter_t root;
        if (type_field != NULL) {
            /* fast path for the census: {_id: {$type: "$field"}} */
            bson_iter_t f;
            bson_init(&key);
            BSON_APPEND_UTF8(&key, "k",
                             bson_iter_init_from_data(&f, in->docs[i]->data, in->docs[i]->len) &&
                                     bson_iter_find(&f, type_field)
                                 ? msim_type_name(bson_iter_type(&f))
                                 : "missing");
        } else {
            eval_key(&idexpr, in->docs[i], &key, error, &ok);
        }
        if (!ok) {
            bson_destroy(&key);
            break;
        }
        h = fnv(bson_get_data(&key), key.len);
        slot = h & (tabsz - 1);
        for (;;) {
            g = table[slot];
            if (g == (size_t)-1 ||
                (groups[g].hash == h && groups[g].key->len == key.len &&
                 memcmp(bson_get_data(groups[g].key), bson_get_data(&key), key.len) == 0))
                break;
            slot = (slot + 1) & (tabsz - 1);
        }
        if (g == (size_t)-1) {
            groups = realloc(groups, (ngroups + 1) * sizeof *groups);
            if (groups == NULL)
                abort();
            groups[ngroups].key = bson_copy(&key);
            groups[ngroups].hash = h;
            groups[ngroups].acc = calloc(nacc ? nacc : 1, sizeof(acc_state_t));
            g = ngroups++;
            table[slot] = g;
            if (ngroups * 2 > tabsz) {
                size_t nsz = tabsz * 2;
                size_t *nt = malloc(nsz * sizeof *nt);
                if (nt == NULL)
                    abort();
                memset(nt, 0xff, nsz * sizeof *nt);
                for (size_t j = 0; j < ngroups; j++) {
                    size_t s = groups[j].hash & (nsz - 1);
                    while (nt[s] != (size_t)-1)
                        s = (s + 1) & (nsz - 1);
                    nt[s] = j;
                }
                free(table);
                table = nt;
                tabsz = nsz;
            }
        }
        bson_destroy(&key);
        bson_iter_init_from_data(&root, in->docs[i]->data, in->docs[i]->len);
        for (size_t a = 0; a < nacc && ok; a++) {
            bson_t tmp = BSON_INITIALIZER;
            if (accs[a].kind == ACC_SUM && msim_is_number(bson_iter_type(&accs[a].expr))) {
                /* {$sum: <constant>} needs no evaluation */
                acc_add(&accs[a], &groups[g].acc[a], &accs[a].expr, true);
                bson_destroy(&tmp);
                continue;
            }
            bson_iter_t v;
            bool present;
            ok = msim_expr_eval(&accs[a].expr, &root, &tmp, "v", error);
            present = ok && bson_iter_init_find(&v, &tmp, "v");
            if (ok)
                acc_add(&accs[a], &groups[g].acc[a], &v, present);
            bson_destroy(&tmp);
        }
    }
    for (size_t g = 0; g < ngroups; g++) {
        if (ok) {
            bson_t doc = BSON_INITIALIZER;
            bson_iter_t k;
            bson_iter_init_find(&k, groups[g].key, "k");
            msim_append_iter(&doc, "_id", 3, &k);
            for (size_t a = 0; a < nacc; a++)
                acc_result(&accs[a], &groups[g].acc[a], &doc);
            arr_push_bson(out, &doc);
            bson_destroy(&doc);
        }
        for (size_t a = 0; a < nacc; a++)
            if (groups[g].acc[a].val)
                bson_destroy(groups[g].acc[a].val);
        free(groups[g].acc);
        bson_destroy(groups[g].key);
    }
    free(groups);
    free(table);
    return ok;
}

/* ------------------------------------------------------------------------
 * $bucketAuto
 * ------------------------------------------------------------------------ */

typedef struct {
    bson_t *key;
} bucket_item_t;

static int
bucket_cmp(const void *a, const void *b)
{
    bson_iter_t x, y;
    bson_iter_init_find(&x, ((const bucket_item_t *)a)->key, "k");
    bson_iter_init_find(&y, ((const bucket_item_t *)b)->key, "k");
    return msim_cmp(&x, &y);
}

static bool
stage_bucket_auto(const bson_t *spec, docarr_t *in, docarr_t *out, mg_error_t *error)
{
    bson_iter_t it, group_by;
    int64_t buckets = 0;
    bucket_item_t *items;
    bool ok = true, have_group = false, by_id = false, sorted = true;
    size_t n = in->n, per, i = 0;

    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "groupBy") == 0) {
            group_by = it;
            have_group = true;
        } else if (strcmp(k, "buckets") == 0) {
            if (!msim_iter_int64(&it, &buckets) || buckets <= 0)
                return msim_fail(error, 40243,
                                 "The $bucketAuto 'buckets' field must be greater than 0, but "
                                 "found: %lld",
                                 (long long)buckets);
        } else {
            return msim_fail(error, 40245,
                             "Unrecognized option to $bucketAuto: %s (mongosim supports groupBy "
                             "and buckets)",
                             k);
        }
    }
    by_id = have_group && BSON_ITER_HOLDS_UTF8(&group_by) &&
            strcmp(bson_iter_utf8(&group_by, NULL), "$_id") == 0;
    if (!have_group || buckets <= 0)
        return msim_fail(error, 40246,
                         "$bucketAuto requires 'groupBy' and 'buckets' to be "
                         "specified");
    items = calloc(n ? n : 1, sizeof *items);
    if (items == NULL)
        abort();
    for (size_t j = 0; j < n && ok; j++) {
        bson_t tmp;
        if (by_id) {
            bson_iter_t id;
            items[j].key = bson_new();
            if (msim_doc_id(in->docs[j], &id))
                msim_append_iter(items[j].key, "k", 1, &id);
            else
                BSON_APPEND_NULL(items[j].key, "k");
            if (j > 0 && sorted && bucket_cmp(&items[j - 1], &items[j]) > 0)
                sorted = false;
            continue;
        }
        eval_key(&group_by, in->docs[j], &tmp, error, &ok);
        items[j].key = bson_copy(&tmp);
        bson_destroy(&tmp);
        sorted = false;
    }
    if (ok) {
        if (!sorted) /* documents usually arrive in _id order already */
            qsort(items, n, sizeof *items, bucket_cmp);
        per = (size_t)((n + (size_t)buckets - 1) / (size_t)buckets);
        if (per == 0)
            per = 1;
        while (i < n) {
            size_t start = i, count;
            bson_t doc = BSON_INITIALIZER, id;
            bson_iter_t mn, mx;
            i += per;
            if (i > n)
                i = n;
            /* equal values never straddle two buckets */
            while (i < n && bucket_cmp(&items[i - 1], &items[i]) == 0)
                i++;
            count = i - start;
            bson_iter_init_find(&mn, items[start].key, "k");
            bson_iter_init_find(&mx, items[i < n ? i : n - 1].key, "k");
            bson_append_document_begin(&doc, "_id", 3, &id);
            msim_append_iter(&id, "min", 3, &mn);
            msim_append_iter(&id, "max", 3, &mx);
            bson_append_document_end(&doc, &id);
            if (count <= INT32_MAX)
                BSON_APPEND_INT32(&doc, "count", (int32_t)count);
            else
                BSON_APPEND_INT64(&doc, "count", (int64_t)count);
            arr_push_bson(out, &doc);
            bson_destroy(&doc);
        }
    }
    for (size_t j = 0; j < n; j++)
        if (items[j].key)
            bson_destroy(items[j].key);
    free(items);
    return ok;
}

/* ------------------------------------------------------------------------
 * Other stages
 * ------------------------------------------------------------------------ */

static bool
stage_add_fields(const bson_t *spec, docarr_t *in, docarr_t *out, mg_error_t *error)
{
    for (size_t i = 0; i < in->n; i++) {
        bson_t doc = BSON_INITIALIZER, vals = BSON_INITIALIZER;
        bson_iter_t root, f, s;
        bson_iter_init_from_data(&root, in->docs[i]->data, in->docs[i]->len);
        bson_iter_init(&s, spec);
        while (bson_iter_next(&s)) {
            if (strchr(bson_iter_key(&s), '.') != NULL) {
                bson_destroy(&doc);
                bson_destroy(&vals);
                return msim_fail(error, MSIM_E_COMMAND_NOT_SUPPORTED,
                                 "mongosim's $addFields supports top-level fields only");
            }
            if (!msim_expr_eval(&s, &root, &vals, bson_iter_key(&s), error)) {
                bson_destroy(&doc);
                bson_destroy(&vals);
                return false;
            }
        }
        f = root;
        while (bson_iter_next(&f)) {
            bson_iter_t v;
            if (bson_iter_init_find(&v, &vals, bson_iter_key(&f)))
                msim_append_iter(&doc, bson_iter_key(&f), -1, &v);
            else if (!bson_has_field(spec, bson_iter_key(&f)))
                msim_append_iter(&doc, NULL, 0, &f);
        }
        bson_iter_init(&f, &vals);
        while (bson_iter_next(&f))
            if (!bson_has_field(&doc, bson_iter_key(&f)))
                msim_append_iter(&doc, NULL, 0, &f);
        arr_push_bson(out, &doc);
        bson_destroy(&doc);
        bson_destroy(&vals);
    }
    return true;
}

static bool
stage_unwind(const bson_iter_t *arg, docarr_t *in, docarr_t *out, mg_error_t *error)
{
    const char *path = NULL;
    bool preserve = false;
    if (BSON_ITER_HOLDS_UTF8(arg)) {
        path = bson_iter_utf8(arg, NULL);
    } else if (BSON_ITER_HOLDS_DOCUMENT(arg)) {
        bson_iter_t o;
        bson_iter_recurse(arg, &o);
        while (bson_iter_next(&o)) {
            if (strcmp(bson_iter_key(&o), "path") == 0 && BSON_ITER_HOLDS_UTF8(&o))
                path = bson_iter_utf8(&o, NULL);
            else if (strcmp(bson_iter_key(&o), "preserveNullAndEmptyArrays") == 0)
                preserve = msim_truthy(&o);
        }
    }
    if (path == NULL || path[0] != '$' || strchr(path, '.') != NULL)
        return msim_fail(error, 28818,
                         "mongosim's $unwind needs a top-level field path like "
                         "\"$field\"");
    path++;
    for (size_t i = 0; i < in->n; i++) {
        bson_t d, arr;
        bson_iter_t v, el;
        bson_init_static(&d, in->docs[i]->data, in->docs[i]->len);
        bson_init(&arr);
        if (!bson_iter_init_find(&v, &d, path) || !BSON_ITER_HOLDS_ARRAY(&v)) {
            bool keep = bson_iter_init_find(&v, &d, path) && !BSON_ITER_HOLDS_NULL(&v);
            if (keep || preserve)
                arr_push(out, msim_doc_ref(in->docs[i]));
            bson_destroy(&arr);
            continue;
        }
        bson_iter_recurse(&v, &el);
        if (!bson_iter_next(&el)) {
            if (preserve) {
                bson_t nd = BSON_INITIALIZER;
                bson_iter_t f;
                bson_iter_init(&f, &d);
                while (bson_iter_next(&f))
                    if (strcmp(bson_iter_key(&f), path) != 0)
                        msim_append_iter(&nd, NULL, 0, &f);
                arr_push_bson(out, &nd);
                bson_destroy(&nd);
            }
            bson_destroy(&arr);
            continue;
        }
        bson_iter_recurse(&v, &el);
        while (bson_iter_next(&el)) {
            bson_t nd = BSON_INITIALIZER;
            bson_iter_t f;
            bson_iter_init(&f, &d);
            while (bson_iter_next(&f)) {
                if (strcmp(bson_iter_key(&f), path) == 0)
                    msim_append_iter(&nd, path, -1, &el);
                else
                    msim_append_iter(&nd, NULL, 0, &f);
            }
            arr_push_bson(out, &nd);
            bson_destroy(&nd);
        }
        bson_destroy(&arr);
    }
    return true;
}

static void
coll_stats_doc(const char *db, const char *coll, const bson_t *spec, docarr_t *out)
{
    bson_t doc = BSON_INITIALIZER, st;
    msim_coll_t *c;
    char ns[512];
    snprintf(ns, sizeof ns, "%s.%s", db, coll);
    BSON_APPEND_UTF8(&doc, "ns", ns);
    BSON_APPEND_UTF8(&doc, "host", msim_srv->bind);
    BSON_APPEND_DATE_TIME(&doc, "localTime", msim_now_ms());
    pthread_rwlock_rdlock(&msim_srv->lock);
    c = msim_catalog_get(db, coll);
    if (bson_has_field(spec, "storageStats")) {
        bson_append_document_begin(&doc, "storageStats", -1, &st);
        if (c != NULL)
            msim_coll_stats(c, &st, 1);
        else {
            BSON_APPEND_INT64(&st, "size", 0);
            BSON_APPEND_INT64(&st, "count", 0);
            BSON_APPEND_INT64(&st, "storageSize", 0);
        }
        bson_append_document_end(&doc, &st);
    }
    if (bson_has_field(spec, "count")) {
        bson_append_document_begin(&doc, "count", -1, &st);
        BSON_APPEND_INT64(&st, "count", c ? (int64_t)msim_coll_count(c) : 0);
        bson_append_document_end(&doc, &st);
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    arr_push_bson(out, &doc);
    bson_destroy(&doc);
}

bool
msim_cmd_aggregate(msim_ctx_t *ctx, mg_error_t *error)
{
    bson_iter_t it, pipe, stage;
    const char *coll = NULL;
    int64_t batch = 101;
    docarr_t cur = {0};
    bool ok = true, loaded = false, first = true;
    char ns[512];

    if (!bson_iter_init_find(&it, ctx->cmd, "aggregate"))
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "aggregate requires a collection");
    if (BSON_ITER_HOLDS_UTF8(&it)) {
        coll = bson_iter_utf8(&it, NULL);
        if (!msim_valid_coll_name(ctx->db, coll, error))
            return false;
    } else if (!(msim_is_number(bson_iter_type(&it)) && msim_as_double(&it) == 1)) {
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                         "Invalid command format: the 'aggregate' field must specify a "
                         "collection name or 1");
    }
    if (!bson_iter_init_find(&pipe, ctx->cmd, "pipeline") || !BSON_ITER_HOLDS_ARRAY(&pipe))
        return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                         "'pipeline' option must be specified as an array");
    if (bson_iter_init_find(&it, ctx->cmd, "explain") && msim_truthy(&it))
        return msim_fail(error, MSIM_E_COMMAND_NOT_SUPPORTED,
                         "explain is not supported by "
                         "mongosim");
    if (bson_iter_init_find(&it, ctx->cmd, "cursor")) {
        bson_iter_t c;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it))
            return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                             "cursor field must be missing or an "
                             "object");
        bson_iter_recurse(&it, &c);
        if (bson_iter_find(&c, "batchSize") && (!msim_iter_int64(&c, &batch) || batch < 0))
            return msim_fail(error, MSIM_E_BAD_VALUE, "batchSize must be non-negative");
    } else {
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                         "The 'cursor' option is required, except for aggregate with the explain "
                         "argument");
    }
    if (coll != NULL)
        snprintf(ns, sizeof ns, "%s.%s", ctx->db, coll);
    else
        snprintf(ns, sizeof ns, "%s.$cmd.aggregate", ctx->db);

    bson_iter_recurse(&pipe, &stage);
    while (ok && bson_iter_next(&stage)) {
        bson_iter_t st;
        const char *name;
        bson_t spec;
        docarr_t next = {0};
        if (!BSON_ITER_HOLDS_DOCUMENT(&stage) || !bson_iter_recurse(&stage, &st) ||
            !bson_iter_next(&st)) {
            ok = msim_fail(error, 40323,
                           "A pipeline stage specification object must contain "
                           "exactly one field.");
            break;
        }
        name = bson_iter_key(&st);
        if (strcmp(name, "$changeStream") == 0) {
            bson_t rest = BSON_INITIALIZER;
            uint32_t i = 0;
            if (!first) {
                ok = msim_fail(error, 40602,
                               "$changeStream is only valid as the first stage in a pipeline");
                break;
            }
            while (bson_iter_next(&stage)) {
                char key[16];
                const char *k;
                bson_uint32_to_string(i++, &k, key, sizeof key);
                msim_append_iter(&rest, k, -1, &stage);
            }
            if (ctx->txn != NULL)
                ok = msim_fail(error, MSIM_E_OP_NOT_IN_TXN,
                               "Operation not permitted in transaction :: caused by :: "
                               "$changeStream");
            else
                ok = msim_stream_open(ctx, &st, &rest, coll, batch, error);
            bson_destroy(&rest);
            arr_clear(&cur);
            return ok;
        }
        if (strcmp(name, "$collStats") == 0) {
            if (!first || coll == NULL) {
                ok = msim_fail(error, 40602,
                               "$collStats is only valid as the first stage in a "
                               "pipeline on a collection");
                break;
            }
            if (!(ok = spec_doc(&st, &spec, name, error)))
                break;
            coll_stats_doc(ctx->db, coll, &spec, &cur);
            loaded = true;
            first = false;
            continue;
        }
        if (coll == NULL) {
            ok = msim_fail(error, MSIM_E_INVALID_NAMESPACE,
                           "{aggregate: 1} is not valid for '%s'; a collection is required.", name);
            break;
        }
        if (!loaded) {
            msim_matcher_t *m = NULL;
            if (strcmp(name, "$match") == 0) {
                if (!(ok = spec_doc(&st, &spec, name, error)))
                    break;
                m = msim_matcher_new(&spec, error);
                if (m == NULL) {
                    ok = false;
                    break;
                }
            }
            cur.docs = msim_snapshot(ctx->txn, ctx->db, coll, m, 0, &cur.n);
            cur.cap = cur.n;
            loaded = true;
            first = false;
            msim_matcher_destroy(m);
            if (strcmp(name, "$match") == 0)
                continue;
        }
        first = false;
        if (strcmp(name, "$match") == 0) {
            msim_matcher_t *m;
            if (!(ok = spec_doc(&st, &spec, name, error)))
                break;
            m = msim_matcher_new(&spec, error);
            if (m == NULL) {
                ok = false;
                break;
            }
            for (size_t i = 0; i < cur.n; i++) {
                if (msim_matcher_match(m, cur.docs[i]->data, cur.docs[i]->len))
                    arr_push(&next, cur.docs[i]);
                else
                    msim_doc_unref(cur.docs[i]);
            }
            free(cur.docs);
            cur = next;
            msim_matcher_destroy(m);
        } else if (strcmp(name, "$sort") == 0) {
            msim_sort_t *s;
            if (!(ok = spec_doc(&st, &spec, name, error)))
                break;
            s = msim_sort_new(&spec, error);
            if (s == NULL) {
                ok = false;
                break;
            }
            msim_sort_docs(s, cur.docs, cur.n);
            msim_sort_destroy(s);
        } else if (strcmp(name, "$limit") == 0 || strcmp(name, "$skip") == 0) {
            int64_t v;
            if (!msim_iter_int64(&st, &v) || v < 0 || (name[1] == 'l' && v == 0)) {
                ok = msim_fail(error, 15958, "invalid argument to %s stage", name);
                break;
            }
            if (name[1] == 'l') {
                for (size_t i = (size_t)v; i < cur.n; i++)
                    msim_doc_unref(cur.docs[i]);
                if ((size_t)v < cur.n)
                    cur.n = (size_t)v;
            } else {
                size_t k = (size_t)v < cur.n ? (size_t)v : cur.n;
                for (size_t i = 0; i < k; i++)
                    msim_doc_unref(cur.docs[i]);
                memmove(cur.docs, cur.docs + k, (cur.n - k) * sizeof *cur.docs);
                cur.n -= k;
            }
        } else if (strcmp(name, "$project") == 0 || strcmp(name, "$unset") == 0) {
            msim_proj_t *p;
            bson_t uspec = BSON_INITIALIZER;
            if (name[1] == 'u') {
                if (BSON_ITER_HOLDS_UTF8(&st)) {
                    BSON_APPEND_INT32(&uspec, bson_iter_utf8(&st, NULL), 0);
                } else if (BSON_ITER_HOLDS_ARRAY(&st)) {
                    bson_iter_t f;
                    bson_iter_recurse(&st, &f);
                    while (bson_iter_next(&f))
                        if (BSON_ITER_HOLDS_UTF8(&f))
                            BSON_APPEND_INT32(&uspec, bson_iter_utf8(&f, NULL), 0);
                }
                p = msim_proj_new(&uspec, error);
            } else {
                if (!(ok = spec_doc(&st, &spec, name, error))) {
                    bson_destroy(&uspec);
                    break;
                }
                if (bson_empty(&spec)) {
                    bson_destroy(&uspec);
                    ok = msim_fail(error, 51272,
                                   "$project specification must have at least one "
                                   "field");
                    break;
                }
                p = msim_proj_new(&spec, error);
            }
            bson_destroy(&uspec);
            if (p == NULL) {
                ok = false;
                break;
            }
            for (size_t i = 0; i < cur.n; i++) {
                bson_t o = BSON_INITIALIZER;
                msim_proj_apply(p, cur.docs[i]->data, cur.docs[i]->len, &o);
                arr_push_bson(&next, &o);
                bson_destroy(&o);
            }
            msim_proj_destroy(p);
            arr_clear(&cur);
            cur = next;
        } else if (strcmp(name, "$addFields") == 0 || strcmp(name, "$set") == 0) {
            if (!(ok = spec_doc(&st, &spec, name, error)))
                break;
            ok = stage_add_fields(&spec, &cur, &next, error);
            arr_clear(&cur);
            cur = next;
        } else if (strcmp(name, "$unwind") == 0) {
            ok = stage_unwind(&st, &cur, &next, error);
            arr_clear(&cur);
            cur = next;
        } else if (strcmp(name, "$count") == 0) {
            bson_t d = BSON_INITIALIZER;
            if (!BSON_ITER_HOLDS_UTF8(&st) || bson_iter_utf8(&st, NULL)[0] == '\0' ||
                bson_iter_utf8(&st, NULL)[0] == '$') {
                bson_destroy(&d);
                ok = msim_fail(error, 40156, "the count field must be a non-empty string");
                break;
            }
            if (cur.n > 0) {
                BSON_APPEND_INT32(&d, bson_iter_utf8(&st, NULL), (int32_t)cur.n);
                arr_push_bson(&next, &d);
            }
            bson_destroy(&d);
            arr_clear(&cur);
            cur = next;
        } else if (strcmp(name, "$sample") == 0) {
            bson_iter_t sz;
            int64_t size = -1;
            if (BSON_ITER_HOLDS_DOCUMENT(&st) && bson_iter_recurse(&st, &sz) &&
                bson_iter_find(&sz, "size"))
                msim_iter_int64(&sz, &size);
            if (size < 0) {
                ok = msim_fail(error, 28749,
                               "size argument to $sample must be a non-negative "
                               "number");
                break;
            }
            for (size_t i = 0; i < cur.n && i < (size_t)size; i++) {
                size_t j = i + (size_t)rand() % (cur.n - i);
                msim_doc_t *t = cur.docs[i];
                cur.docs[i] = cur.docs[j];
                cur.docs[j] = t;
            }
            for (size_t i = (size_t)size; i < cur.n; i++)
                msim_doc_unref(cur.docs[i]);
            if ((size_t)size < cur.n)
                cur.n = (size_t)size;
        } else if (strcmp(name, "$group") == 0) {
            if (!(ok = spec_doc(&st, &spec, name, error)))
                break;
            ok = stage_group(&spec, &cur, &next, error);
            arr_clear(&cur);
            cur = next;
        } else if (strcmp(name, "$bucketAuto") == 0) {
            if (!(ok = spec_doc(&st, &spec, name, error)))
                break;
            ok = stage_bucket_auto(&spec, &cur, &next, error);
            arr_clear(&cur);
            cur = next;
        } else if (strcmp(name, "$out") == 0 || strcmp(name, "$merge") == 0 ||
                   strcmp(name, "$lookup") == 0 || strcmp(name, "$facet") == 0 ||
                   strcmp(name, "$graphLookup") == 0 || strcmp(name, "$bucket") == 0 ||
                   strcmp(name, "$replaceRoot") == 0 || strcmp(name, "$replaceWith") == 0) {
            ok = msim_fail(error, MSIM_E_COMMAND_NOT_SUPPORTED,
                           "the %s stage is not supported by mongosim", name);
        } else if (strcmp(name, "$changeStreamSplitLargeEvent") == 0 &&
                   msim_srv->server_version >= MSIM_VERSION_70) {
            ok = msim_fail(error, MSIM_E_ILLEGAL_OPERATION,
                           "$changeStreamSplitLargeEvent can only be used in a $changeStream "
                           "pipeline");
        } else {
            ok = msim_fail(error, MSIM_E_UNRECOGNIZED_STAGE,
                           "Unrecognized pipeline stage name: '%s'", name);
        }
    }
    if (!ok) {
        arr_clear(&cur);
        return false;
    }
    if (!loaded && coll != NULL)
        cur.docs = msim_snapshot(ctx->txn, ctx->db, coll, NULL, 0, &cur.n);
    if (cur.docs == NULL)
        cur.docs = malloc(sizeof *cur.docs);
    msim_cursor_first_batch(ctx, ns, cur.docs, cur.n, NULL, batch == 0 ? -1 : batch, false);
    return true;
}
