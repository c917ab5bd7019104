/*
 * tests/mongosim/msim_docops.c - sort, projection and aggregation
 * expressions over raw BSON documents.
 */
#include "msim.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Expressions ($project, $group, $addFields)
 * ------------------------------------------------------------------------ */

/* path_values appends, under key, the value(s) at a dotted path; arrays map. */
static bool
path_value(const bson_iter_t *container, const char *path, bson_t *out, const char *key)
{
    const char *dot = strchr(path, '.');
    char comp[256];
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    bson_iter_t it = *container, sub;
    if (len >= sizeof comp)
        return false;
    memcpy(comp, path, len);
    comp[len] = '\0';
    if (!bson_iter_find(&it, comp))
        return false;
    if (dot == NULL) {
        msim_append_iter(out, key, -1, &it);
        return true;
    }
    if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_recurse(&it, &sub);
        return path_value(&sub, dot + 1, out, key);
    }
    if (BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_t arr;
        bson_iter_t el;
        uint32_t i = 0;
        bson_append_array_begin(out, key, -1, &arr);
        bson_iter_recurse(&it, &el);
        while (bson_iter_next(&el)) {
            if (BSON_ITER_HOLDS_DOCUMENT(&el)) {
                char idx[16];
                const char *k;
                bson_uint32_to_string(i, &k, idx, sizeof idx);
                bson_iter_recurse(&el, &sub);
                if (path_value(&sub, dot + 1, &arr, k))
                    i++;
            }
        }
        bson_append_array_end(out, &arr);
        return true;
    }
    return false;
}

/* eval_tmp evaluates expr into a temporary {v: ...}; returns whether v exists. */
static bool
eval_tmp(const bson_iter_t *expr, const bson_iter_t *root, bson_t *tmp, bson_iter_t *v,
         mg_error_t *error, bool *ok)
{
    bson_init(tmp);
    *ok = msim_expr_eval(expr, root, tmp, "v", error);
    return *ok && bson_iter_init_find(v, tmp, "v");
}

bool
msim_expr_eval(const bson_iter_t *expr, const bson_iter_t *root, bson_t *out, const char *key,
               mg_error_t *error)
{
    if (BSON_ITER_HOLDS_UTF8(expr)) {
        const char *s = bson_iter_utf8(expr, NULL);
        if (s[0] == '$' && s[1] == '$') {
            if (strcmp(s, "$$ROOT") == 0 || strcmp(s, "$$CURRENT") == 0) {
                bson_t d;
                /* root is an iter positioned at the start of a document's fields */
                if (bson_init_static(&d, root->raw, root->len))
                    bson_append_document(out, key, -1, &d);
                return true;
            }
            return msim_fail(error, 17276, "Use of undefined variable: %s", s + 2);
        }
        if (s[0] == '$') {
            path_value(root, s + 1, out, key);
            return true;
        }
        msim_append_iter(out, key, -1, expr);
        return true;
    }
    if (BSON_ITER_HOLDS_ARRAY(expr)) {
        bson_t arr;
        bson_iter_t c;
        uint32_t i = 0;
        bson_append_array_begin(out, key, -1, &arr);
        bson_iter_recurse(expr, &c);
        while (bson_iter_next(&c)) {
            char idx[16];
            const char *k;
            bson_uint32_to_string(i, &k, idx, sizeof idx);
            if (!msim_expr_eval(&c, root, &arr, k, error)) {
                bson_append_array_end(out, &arr);
                return false;
            }
            if (bson_has_field(&arr, k))
                i++;
            else
                BSON_APPEND_NULL(&arr, k), i++;
        }
        bson_append_array_end(out, &arr);
        return true;
    }
    if (BSON_ITER_HOLDS_DOCUMENT(expr)) {
        bson_iter_t c;
        const char *op;
        bson_iter_recurse(expr, &c);
        if (!bson_iter_next(&c)) {
            bson_t empty = BSON_INITIALIZER;
            bson_append_document(out, key, -1, &empty);
            return true;
        }
        op = bson_iter_key(&c);
        if (op[0] != '$') {
            bson_t sub;
            bson_append_document_begin(out, key, -1, &sub);
            bson_iter_recurse(expr, &c);
            while (bson_iter_next(&c)) {
                if (!msim_expr_eval(&c, root, &sub, bson_iter_key(&c), error)) {
                    bson_append_document_end(out, &sub);
                    return false;
                }
            }
            bson_append_document_end(out, &sub);
            return true;
        }
        if (strcmp(op, "$literal") == 0) {
            msim_append_iter(out, key, -1, &c);
            return true;
        }
        {
            /* operators take one argument or an array of arguments */
            struct {
                bson_t b;
            } tmpbox[8];
            struct {
                bson_iter_t i;
            } argbox[8], valbox[8];
            size_t nargs = 0;
            bool have[8], ok = true;
#define args(n) (argbox[n].i)
#define tmps(n) (tmpbox[n].b)
#define vals(n) (valbox[n].i)
            if (BSON_ITER_HOLDS_ARRAY(&c)) {
                bson_iter_t a;
                bson_iter_recurse(&c, &a);
                while (bson_iter_next(&a) && nargs < 8)
                    args(nargs++) = a;
            } else {
                args(nargs++) = c;
            }
            for (size_t i = 0; i < nargs; i++) {
                have[i] = eval_tmp(&args(i), root, &tmps(i), &vals(i), error, &ok);
                if (!ok) {
                    for (size_t j = 0; j <= i; j++)
                        bson_destroy(&tmps(j));
                    return false;
                }
            }
            if (strcmp(op, "$type") == 0) {
                BSON_APPEND_UTF8(out, key,
                                 have[0] ? msim_type_name(bson_iter_type(&vals(0))) : "missing");
            } else if (strcmp(op, "$ifNull") == 0) {
                bool done = false;
                for (size_t i = 0; i < nargs && !done; i++) {
                    if ((have[i] && !BSON_ITER_HOLDS_NULL(&vals(i))) || i + 1 == nargs) {
                        if (have[i])
                            msim_append_iter(out, key, -1, &vals(i));
                        else
                            BSON_APPEND_NULL(out, key);
                        done = true;
                    }
                }
            } else if (strcmp(op, "$size") == 0) {
                bson_iter_t el;
                int32_t n = 0;
                if (!have[0] || !BSON_ITER_HOLDS_ARRAY(&vals(0))) {
                    ok = msim_fail(error, 17124,
                                   "The argument to $size must be an array. Type was: %s",
                                   have[0] ? msim_type_name(bson_iter_type(&vals(0))) : "missing");
                } else {
                    bson_iter_recurse(&vals(0), &el);
                    while (bson_iter_next(&el))
                        n++;
                    BSON_APPEND_INT32(out, key, n);
                }
            } else if (strcmp(op, "$concat") == 0) {
                char *s = bson_strdup("");
                bool null = false;
                for (size_t i = 0; i < nargs; i++) {
                    if (!have[i] || BSON_ITER_HOLDS_NULL(&vals(i))) {
                        null = true;
                    } else if (BSON_ITER_HOLDS_UTF8(&vals(i))) {
                        char *t = bson_strdup_printf("%s%s", s, bson_iter_utf8(&vals(i), NULL));
                        bson_free(s);
                        s = t;
                    } else {
                        ok = msim_fail(error, 16702, "$concat only supports strings, not %s",
                                       msim_type_name(bson_iter_type(&vals(i))));
                    }
                }
                if (ok) {
                    if (null)
                        BSON_APPEND_NULL(out, key);
                    else
                        BSON_APPEND_UTF8(out, key, s);
                }
                bson_free(s);
            } else if (strcmp(op, "$add") == 0 || strcmp(op, "$multiply") == 0 ||
                       strcmp(op, "$subtract") == 0) {
                bool all_int = true, null = false;
                double d = op[1] == 'm' ? 1 : 0;
                int64_t n = op[1] == 'm' ? 1 : 0;
                for (size_t i = 0; i < nargs; i++) {
                    int64_t x;
                    if (!have[i] || BSON_ITER_HOLDS_NULL(&vals(i))) {
                        null = true;
                        continue;
                    }
                    if (!msim_is_number(bson_iter_type(&vals(i)))) {
                        ok = msim_fail(error, 16554, "%s only supports numeric types, not %s", op,
                                       msim_type_name(bson_iter_type(&vals(i))));
                        break;
                    }
                    if (BSON_ITER_HOLDS_DOUBLE(&vals(i)) ||
                        bson_iter_type(&vals(i)) == BSON_TYPE_DECIMAL128)
                        all_int = false;
                    msim_iter_int64(&vals(i), &x);
                    if (op[1] == 'm') {
                        d *= msim_as_double(&vals(i));
                        n *= x;
                    } else if (op[1] == 's' && i > 0) {
                        d -= msim_as_double(&vals(i));
                        n -= x;
                    } else {
                        d += msim_as_double(&vals(i));
                        n += x;
                    }
                }
                if (ok) {
                    if (null)
                        BSON_APPEND_NULL(out, key);
                    else if (all_int)
                        BSON_APPEND_INT64(out, key, n);
                    else
                        BSON_APPEND_DOUBLE(out, key, d);
                }
            } else if (strcmp(op, "$toString") == 0) {
                if (!have[0] || BSON_ITER_HOLDS_NULL(&vals(0)))
                    BSON_APPEND_NULL(out, key);
                else if (BSON_ITER_HOLDS_UTF8(&vals(0)))
                    msim_append_iter(out, key, -1, &vals(0));
                else if (BSON_ITER_HOLDS_OID(&vals(0))) {
                    char hex[25];
                    bson_oid_to_string(bson_iter_oid(&vals(0)), hex);
                    BSON_APPEND_UTF8(out, key, hex);
                } else {
                    char *j = msim_value_json(&vals(0));
                    BSON_APPEND_UTF8(out, key, j);
                    bson_free(j);
                }
            } else if (strcmp(op, "$eq") == 0 || strcmp(op, "$ne") == 0 || strcmp(op, "$gt") == 0 ||
                       strcmp(op, "$lt") == 0 || strcmp(op, "$gte") == 0 ||
                       strcmp(op, "$lte") == 0) {
                int cmp;
                bson_iter_t nul;
                bson_t nd = BSON_INITIALIZER;
                BSON_APPEND_NULL(&nd, "v");
                bson_iter_init_find(&nul, &nd, "v");
                if (nargs != 2) {
                    ok = msim_fail(error, 16020, "Expression %s takes exactly 2 arguments", op);
                } else {
                    cmp = msim_cmp(have[0] ? &vals(0) : &nul, have[1] ? &vals(1) : &nul);
                    bool r = strcmp(op, "$eq") == 0    ? cmp == 0
                             : strcmp(op, "$ne") == 0  ? cmp != 0
                             : strcmp(op, "$gt") == 0  ? cmp > 0
                             : strcmp(op, "$lt") == 0  ? cmp < 0
                             : strcmp(op, "$gte") == 0 ? cmp >= 0
                                                       : cmp <= 0;
                    BSON_APPEND_BOOL(out, key, r);
                }
                bson_destroy(&nd);
            } else {
                ok = msim_fail(error, 31325,
                               "Invalid $project :: caused by :: Unknown expression %s", op);
            }
            for (size_t i = 0; i < nargs; i++)
                bson_destroy(&tmps(i));
            return ok;
#undef args
#undef tmps
#undef vals
        }
    }
    msim_append_iter(out, key, -1, expr);
    return true;
}

/* ------------------------------------------------------------------------
 * Sort
 * ------------------------------------------------------------------------ */

typedef struct {
    char *path;
    int dir;
} sortkey_t;

struct msim_sort {
    sortkey_t keys[32];
    size_t nkeys;
};

msim_sort_t *
msim_sort_new(const bson_t *spec, mg_error_t *error)
{
    msim_sort_t *s = calloc(1, sizeof *s);
    bson_iter_t it;
    if (s == NULL)
        abort();
    if (spec == NULL)
        return s;
    bson_iter_init(&it, spec);
    while (bson_iter_next(&it)) {
        int64_t d = 0;
        if (strcmp(bson_iter_key(&it), "$natural") == 0)
            continue;
        if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
            msim_sort_destroy(s);
            msim_fail(error, MSIM_E_BAD_VALUE, "$meta sort is not supported by mongosim");
            return NULL;
        }
        if (!msim_iter_int64(&it, &d) || (d != 1 && d != -1)) {
            msim_sort_destroy(s);
            msim_fail(error, 15975,
                      "$sort key ordering must be 1 (for ascending) or -1 (for "
                      "descending)");
            return NULL;
        }
        if (s->nkeys == 32) {
            msim_sort_destroy(s);
            msim_fail(error, MSIM_E_BAD_VALUE, "too many sort keys");
            return NULL;
        }
        s->keys[s->nkeys].path = strdup(bson_iter_key(&it));
        s->keys[s->nkeys].dir = (int)d;
        s->nkeys++;
    }
    return s;
}

void
msim_sort_destroy(msim_sort_t *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nkeys; i++)
        free(s->keys[i].path);
    free(s);
}

bool
msim_sort_is_id_asc(const msim_sort_t *s)
{
    return s->nkeys == 0 ||
           (s->nkeys == 1 && strcmp(s->keys[0].path, "_id") == 0 && s->keys[0].dir == 1);
}

typedef struct {
    bson_t key;
    bool found;
    int dir;
} keyctx_t;

static void
consider(keyctx_t *k, const bson_iter_t *v)
{
    bson_iter_t cur;
    if (k->found && bson_iter_init_find(&cur, &k->key, "k")) {
        int c = msim_cmp(v, &cur);
        if ((k->dir > 0 && c >= 0) || (k->dir < 0 && c <= 0))
            return;
        bson_reinit(&k->key);
    }
    msim_append_iter(&k->key, "k", 1, v);
    k->found = true;
}

static void
collect_key(keyctx_t *k, const bson_iter_t *container, const char *path)
{
    const char *dot = strchr(path, '.');
    char comp[256];
    size_t len = dot ? (size_t)(dot - path) : strlen(path);
    bson_iter_t it = *container, sub;
    if (len >= sizeof comp)
        return;
    memcpy(comp, path, len);
    comp[len] = '\0';
    if (!bson_iter_find(&it, comp))
        return;
    if (dot == NULL) {
        if (BSON_ITER_HOLDS_ARRAY(&it)) {
            bson_iter_t el;
            bson_iter_recurse(&it, &el);
            while (bson_iter_next(&el))
                consider(k, &el);
        } else {
            consider(k, &it);
        }
        return;
    }
    if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_recurse(&it, &sub);
        collect_key(k, &sub, dot + 1);
    } else if (BSON_ITER_HOLDS_ARRAY(&it)) {
        bson_iter_t el;
        bson_iter_recurse(&it, &el);
        while (bson_iter_next(&el))
            if (BSON_ITER_HOLDS_DOCUMENT(&el)) {
                bson_iter_recurse(&el, &sub);
                collect_key(k, &sub, dot + 1);
            }
    }
}

typedef struct {
    msim_doc_t *doc;
    bson_t *keys;
    size_t idx;
} sortitem_t;

static const msim_sort_t *g_sort_spec; /* qsort has no context argument */
static pthread_mutex_t g_sort_mu = PTHREAD_MUTEX_INITIALIZER;

static int
sort_cmp(const void *pa, const void *pb)
{
    const sortitem_t *a = pa, *b = pb;
    bson_iter_t ia, ib;
    bson_iter_init(&ia, a->keys);
    bson_iter_init(&ib, b->keys);
    for (size_t i = 0; i < g_sort_spec->nkeys; i++) {
        int c;
        bson_iter_next(&ia);
        bson_iter_next(&ib);
        c = msim_cmp(&ia, &ib) * g_sort_spec->keys[i].dir;
        if (c != 0)
            return c;
    }
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

void
msim_sort_docs(const msim_sort_t *s, msim_doc_t **docs, size_t n)
{
    sortitem_t *items;
    if (s == NULL || s->nkeys == 0 || n < 2)
        return;
    items = calloc(n, sizeof *items);
    if (items == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        bson_iter_t root;
        items[i].doc = docs[i];
        items[i].idx = i;
        items[i].keys = bson_new();
        bson_iter_init_from_data(&root, docs[i]->data, docs[i]->len);
        for (size_t k = 0; k < s->nkeys; k++) {
            keyctx_t kc;
            bson_iter_t kv;
            char idx[16];
            const char *key;
            bson_init(&kc.key);
            kc.found = false;
            kc.dir = s->keys[k].dir;
            collect_key(&kc, &root, s->keys[k].path);
            bson_uint32_to_string((uint32_t)k, &key, idx, sizeof idx);
            if (kc.found && bson_iter_init_find(&kv, &kc.key, "k"))
                msim_append_iter(items[i].keys, key, -1, &kv);
            else
                bson_append_null(items[i].keys, key, -1);
            bson_destroy(&kc.key);
        }
    }
    pthread_mutex_lock(&g_sort_mu);
    g_sort_spec = s;
    qsort(items, n, sizeof *items, sort_cmp);
    pthread_mutex_unlock(&g_sort_mu);
    for (size_t i = 0; i < n; i++) {
        docs[i] = items[i].doc;
        bson_destroy(items[i].keys);
    }
    free(items);
}

/* ------------------------------------------------------------------------
 * Projection
 * ------------------------------------------------------------------------ */

typedef struct pnode {
    char *name;
    bool leaf;
    bool computed;
    bson_iter_t expr;
    struct pnode **kids;
    size_t nkids;
} pnode_t;

struct msim_proj {
    bson_t *spec;
    pnode_t root;
    bool inclusion;
    bool id_excluded;
    bool any;
};

static pnode_t *
pnode_child(pnode_t *p, const char *name, size_t len)
{
    pnode_t *c;
    for (size_t i = 0; i < p->nkids; i++)
        if (strlen(p->kids[i]->name) == len && strncmp(p->kids[i]->name, name, len) == 0)
            return p->kids[i];
    c = msim_zalloc(sizeof *c);
    p->kids = realloc(p->kids, (p->nkids + 1) * sizeof(pnode_t *));
    if (p->kids == NULL)
        abort();
    c->name = strndup(name, len);
    p->kids[p->nkids++] = c;
    return c;
}

static void
pnode_free(pnode_t *p, bool self)
{
    for (size_t i = 0; i < p->nkids; i++)
        pnode_free(p->kids[i], true);
    free(p->kids);
    free(p->name);
    if (self)
        free(p);
}

msim_proj_t *
msim_proj_new(const bson_t *spec, mg_error_t *error)
{
    msim_proj_t *p = msim_zalloc(sizeof *p);
    bson_iter_t it;
    int mode = -1; /* 1 inclusion, 0 exclusion */
    if (spec == NULL || bson_empty(spec))
        return p;
    p->spec = bson_copy(spec);
    p->any = true;
    bson_iter_init(&it, p->spec);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it), *s, *dot;
        bool computed = false, include;
        pnode_t *n = &p->root;
        if (k[0] == '$') {
            msim_proj_destroy(p);
            msim_fail(error, 16410,
                      "FieldPath field names may not start with '$'. Consider "
                      "using $getField or $setField.");
            return NULL;
        }
        if (BSON_ITER_HOLDS_BOOL(&it) || msim_is_number(bson_iter_type(&it))) {
            include = msim_truthy(&it);
        } else {
            computed = true;
            include = true;
        }
        if (strcmp(k, "_id") == 0 && !computed) {
            p->id_excluded = !include;
            if (include) {
                pnode_child(&p->root, "_id", 3)->leaf = true;
            }
            continue;
        }
        if (mode == -1)
            mode = include ? 1 : 0;
        else if (mode != (include ? 1 : 0)) {
            msim_fail(error, 31254, "Cannot do %s on field %s in %s projection",
                      include ? "inclusion" : "exclusion", k, include ? "exclusion" : "inclusion");
            msim_proj_destroy(p); /* k points into p->spec */
            return NULL;
        }
        for (s = k;; s = dot + 1) {
            dot = strchr(s, '.');
            n = pnode_child(n, s, dot ? (size_t)(dot - s) : strlen(s));
            if (dot == NULL)
                break;
        }
        n->leaf = true;
        n->computed = computed;
        n->expr = it;
    }
    p->inclusion = mode != 0;
    if (mode == -1) {
        /* only _id given: {_id: 0} excludes it, {_id: 1} includes only it */
        p->inclusion = !p->id_excluded;
    }
    if (p->inclusion && !p->id_excluded && mode != -1)
        pnode_child(&p->root, "_id", 3)->leaf = true;
    return p;
}

void
msim_proj_destroy(msim_proj_t *p)
{
    if (p == NULL)
        return;
    pnode_free(&p->root, false);
    if (p->spec)
        bson_destroy(p->spec);
    free(p);
}

static pnode_t *
pnode_find(const pnode_t *p, const char *name)
{
    for (size_t i = 0; i < p->nkids; i++)
        if (strcmp(p->kids[i]->name, name) == 0)
            return p->kids[i];
    return NULL;
}

static void apply_node(const msim_proj_t *p, const pnode_t *n, const bson_iter_t *container,
                       const bson_iter_t *root, bson_t *out);

static void
apply_value(const msim_proj_t *p, const pnode_t *n, const bson_iter_t *v, const bson_iter_t *root,
            bson_t *out, const char *key)
{
    if (BSON_ITER_HOLDS_DOCUMENT(v)) {
        bson_t sub;
        bson_iter_t c;
        bson_append_document_begin(out, key, -1, &sub);
        bson_iter_recurse(v, &c);
        apply_node(p, n, &c, root, &sub);
        bson_append_document_end(out, &sub);
    } else if (BSON_ITER_HOLDS_ARRAY(v)) {
        bson_t arr;
        bson_iter_t el;
        uint32_t i = 0;
        bson_append_array_begin(out, key, -1, &arr);
        bson_iter_recurse(v, &el);
        while (bson_iter_next(&el)) {
            char idx[16];
            const char *k;
            bson_uint32_to_string(i, &k, idx, sizeof idx);
            if (BSON_ITER_HOLDS_DOCUMENT(&el) || BSON_ITER_HOLDS_ARRAY(&el)) {
                apply_value(p, n, &el, root, &arr, k);
                i++;
            } else if (!p->inclusion) {
                msim_append_iter(&arr, k, -1, &el);
                i++;
            }
        }
        bson_append_array_end(out, &arr);
    } else if (!p->inclusion) {
        msim_append_iter(out, key, -1, v);
    }
}

static void
apply_node(const msim_proj_t *p, const pnode_t *n, const bson_iter_t *container,
           const bson_iter_t *root, bson_t *out)
{
    bson_iter_t it = *container;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        const pnode_t *c = pnode_find(n, k);
        if (n == &p->root && p->id_excluded && strcmp(k, "_id") == 0)
            continue;
        if (c == NULL) {
            if (!p->inclusion)
                msim_append_iter(out, k, -1, &it);
            continue;
        }
        if (c->computed)
            continue; /* written below, in spec order */
        if (c->leaf) {
            if (p->inclusion)
                msim_append_iter(out, k, -1, &it);
            continue;
        }
        apply_value(p, c, &it, root, out, k);
    }
    /* computed fields (aggregation $project) */
    for (size_t i = 0; i < n->nkids; i++) {
        const pnode_t *c = n->kids[i];
        if (c->computed) {
            if (bson_has_field(out, c->name))
                continue;
            msim_expr_eval(&c->expr, root, out, c->name, NULL);
        } else if (!c->leaf && p->inclusion && !bson_has_field(out, c->name)) {
            /* a computed field nested under a missing parent */
            bool any_computed = false;
            for (size_t j = 0; j < c->nkids; j++)
                any_computed |= c->kids[j]->computed;
            if (any_computed) {
                bson_t sub, empty = BSON_INITIALIZER;
                bson_iter_t e;
                bson_iter_init(&e, &empty);
                bson_append_document_begin(out, c->name, -1, &sub);
                apply_node(p, c, &e, root, &sub);
                bson_append_document_end(out, &sub);
            }
        }
    }
}

void
msim_proj_apply(const msim_proj_t *p, const uint8_t *data, uint32_t len, bson_t *out)
{
    bson_iter_t root;
    bson_iter_init_from_data(&root, data, len);
    if (p == NULL || !p->any) {
        bson_t d;
        bson_init_static(&d, data, len);
        bson_concat(out, &d);
        return;
    }
    apply_node(p, &p->root, &root, &root, out);
}
