/*
 * tests/mongosim/msim_update.c - update operators ($set, $unset, $inc,
 * $mul, $min, $max, $push, $addToSet, $pull, $pop, $rename, $setOnInsert,
 * $currentDate) and replacement, applied to a mutable tree built from the
 * stored BSON, plus the change event's updateDescription.
 */
#include "msim.h"

#include <stdlib.h>
#include <string.h>

typedef struct mnode {
    char *key;
    bson_type_t type;
    bson_value_t val; /* scalars, owned */
    struct mnode **kids;
    size_t n, cap;
} mnode_t;

static void
mnode_free(mnode_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        mnode_free(m->kids[i]);
    free(m->kids);
    free(m->key);
    if (m->type != BSON_TYPE_DOCUMENT && m->type != BSON_TYPE_ARRAY)
        bson_value_destroy(&m->val);
    free(m);
}

static mnode_t *
mnode_new(const char *key, bson_type_t type)
{
    mnode_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        abort();
    m->key = key ? strdup(key) : NULL;
    m->type = type;
    if (type != BSON_TYPE_DOCUMENT && type != BSON_TYPE_ARRAY)
        m->val.value_type = BSON_TYPE_NULL;
    return m;
}

static void
mnode_insert(mnode_t *p, size_t at, mnode_t *kid)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 8;
        p->kids = realloc(p->kids, p->cap * sizeof(mnode_t *));
        if (p->kids == NULL)
            abort();
    }
    memmove(&p->kids[at + 1], &p->kids[at], (p->n - at) * sizeof(mnode_t *));
    p->kids[at] = kid;
    p->n++;
}

static void
mnode_append(mnode_t *p, mnode_t *kid)
{
    mnode_insert(p, p->n, kid);
}

static mnode_t *
mnode_from_iter(const char *key, const bson_iter_t *it)
{
    bson_type_t t = bson_iter_type(it);
    mnode_t *m = mnode_new(key, t);
    if (t == BSON_TYPE_DOCUMENT || t == BSON_TYPE_ARRAY) {
        bson_iter_t c;
        bson_iter_recurse(it, &c);
        while (bson_iter_next(&c))
            mnode_append(m, mnode_from_iter(bson_iter_key(&c), &c));
    } else {
        bson_value_copy(bson_iter_value((bson_iter_t *)it), &m->val);
    }
    return m;
}

static mnode_t *
mnode_from_bson(const bson_t *doc)
{
    mnode_t *m = mnode_new(NULL, BSON_TYPE_DOCUMENT);
    bson_iter_t c;
    if (doc != NULL && bson_iter_init(&c, doc))
        while (bson_iter_next(&c))
            mnode_append(m, mnode_from_iter(bson_iter_key(&c), &c));
    return m;
}

static void
mnode_to_bson(const mnode_t *m, bson_t *out)
{
    for (size_t i = 0; i < m->n; i++) {
        const mnode_t *k = m->kids[i];
        char idx[16];
        const char *key = k->key;
        if (m->type == BSON_TYPE_ARRAY)
            bson_uint32_to_string((uint32_t)i, &key, idx, sizeof idx);
        if (k->type == BSON_TYPE_DOCUMENT) {
            bson_t sub;
            bson_append_document_begin(out, key, -1, &sub);
            mnode_to_bson(k, &sub);
            bson_append_document_end(out, &sub);
        } else if (k->type == BSON_TYPE_ARRAY) {
            bson_t sub;
            bson_append_array_begin(out, key, -1, &sub);
            mnode_to_bson(k, &sub);
            bson_append_array_end(out, &sub);
        } else {
            bson_append_value(out, key, -1, &k->val);
        }
    }
}

/* mnode_to_value writes node m as {"v": m} into tmp and points it at v. */
static void
mnode_to_iter(const mnode_t *m, bson_t *tmp, bson_iter_t *v)
{
    mnode_t wrap = {.type = BSON_TYPE_DOCUMENT};
    mnode_t *kids[1];
    mnode_t copy = *m;
    copy.key = (char *)"v";
    kids[0] = &copy;
    wrap.kids = kids;
    wrap.n = 1;
    bson_init(tmp);
    mnode_to_bson(&wrap, tmp);
    bson_iter_init_find(v, tmp, "v");
}

static mnode_t *
mnode_child(const mnode_t *m, const char *key, size_t *pos)
{
    if (m->type == BSON_TYPE_ARRAY) {
        char *end;
        unsigned long i = strtoul(key, &end, 10);
        if (*key == '\0' || *end != '\0' || i >= m->n)
            return NULL;
        if (pos)
            *pos = i;
        return m->kids[i];
    }
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->kids[i]->key, key) == 0) {
            if (pos)
                *pos = i;
            return m->kids[i];
        }
    return NULL;
}

typedef struct {
    char **paths;
    bool *removed;
    size_t n;
} touched_t;

static void
touch(touched_t *t, const char *path, bool removed)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->paths[i], path) == 0) {
            t->removed[i] = removed;
            return;
        }
    t->paths = realloc(t->paths, (t->n + 1) * sizeof(char *));
    t->removed = realloc(t->removed, (t->n + 1) * sizeof(bool));
    if (t->paths == NULL || t->removed == NULL)
        abort();
    t->paths[t->n] = strdup(path);
    t->removed[t->n] = removed;
    t->n++;
}

/*
 * resolve finds the parent container of path's last component. With create,
 * missing intermediate documents are made. *last receives the last component
 * (pointer into the path copy held in buf).
 */
static mnode_t *
resolve(mnode_t *root, const char *path, bool create, char *buf, size_t bufsz, char **last,
        mg_error_t *error, bool *fail)
{
    mnode_t *cur = root;
    char *p, *dot;
    *fail = false;
    if (strlen(path) >= bufsz) {
        *fail = true;
        msim_fail(error, MSIM_E_BAD_VALUE, "path too long");
        return NULL;
    }
    strcpy(buf, path);
    p = buf;
    if (*p == '\0' || strstr(p, "..") != NULL || p[strlen(p) - 1] == '.') {
        *fail = true;
        msim_fail(error, 56, "An empty update path is not valid.");
        return NULL;
    }
    while ((dot = strchr(p, '.')) != NULL) {
        mnode_t *next;
        *dot = '\0';
        next = mnode_child(cur, p, NULL);
        if (next == NULL) {
            if (!create)
                return NULL;
            if (cur->type == BSON_TYPE_ARRAY) {
                char *end;
                unsigned long idx = strtoul(p, &end, 10);
                if (*end != '\0' || idx > 1000000) {
                    *fail = true;
                    msim_fail(error, 28, "Cannot create field '%s' in element {%s: [...]}", p,
                              cur->key ? cur->key : "");
                    return NULL;
                }
                while (cur->n < idx)
                    mnode_append(cur, mnode_new(NULL, BSON_TYPE_NULL));
                next = mnode_new(NULL, BSON_TYPE_DOCUMENT);
                mnode_append(cur, next);
            } else {
                next = mnode_new(p, BSON_TYPE_DOCUMENT);
                mnode_append(cur, next);
            }
        } else if (next->type != BSON_TYPE_DOCUMENT && next->type != BSON_TYPE_ARRAY) {
            if (!create)
                return NULL;
            *fail = true;
            msim_fail(error, 28, "Cannot create field '%s' in element {%s: %s}", dot + 1, p,
                      msim_type_name(next->type));
            return NULL;
        }
        cur = next;
        p = dot + 1;
    }
    *last = p;
    return cur;
}

/* set_at replaces or adds the node for last in parent; takes ownership of v. */
static bool
set_at(mnode_t *parent, const char *last, mnode_t *v, mg_error_t *error)
{
    size_t pos;
    mnode_t *old = mnode_child(parent, last, &pos);
    free(v->key);
    v->key = strdup(last);
    if (old != NULL) {
        mnode_free(old);
        parent->kids[pos] = v;
        return true;
    }
    if (parent->type == BSON_TYPE_ARRAY) {
        char *end;
        unsigned long idx = strtoul(last, &end, 10);
        if (*last == '\0' || *end != '\0' || idx > 1000000) {
            mnode_free(v);
            return msim_fail(error, 28, "Cannot create field '%s' in an array", last);
        }
        while (parent->n < idx)
            mnode_append(parent, mnode_new(NULL, BSON_TYPE_NULL));
    }
    mnode_append(parent, v);
    return true;
}

static mnode_t *
get_path(mnode_t *root, const char *path)
{
    char buf[1024], *last;
    bool fail;
    mnode_t *p = resolve(root, path, false, buf, sizeof buf, &last, NULL, &fail);
    return p ? mnode_child(p, last, NULL) : NULL;
}

static const char *
id_desc(mnode_t *root, char *buf, size_t sz)
{
    mnode_t *id = mnode_child(root, "_id", NULL);
    bson_t tmp;
    bson_iter_t v;
    char *j;
    if (id == NULL) {
        snprintf(buf, sz, "{}");
        return buf;
    }
    mnode_to_iter(id, &tmp, &v);
    j = msim_value_json(&v);
    snprintf(buf, sz, "{_id: %s}", j);
    bson_free(j);
    bson_destroy(&tmp);
    return buf;
}

static bool
arith(mnode_t *root, const char *op, const char *path, const bson_iter_t *arg, mg_error_t *error)
{
    char buf[1024], *last, idb[256];
    bool fail;
    mnode_t *parent, *cur;
    bson_type_t ta = bson_iter_type(arg);

    if (!msim_is_number(ta))
        return msim_fail(
            error, MSIM_E_TYPE_MISMATCH, "Cannot %s with non-numeric argument: {%s: %s}",
            strcmp(op, "$inc") == 0 ? "increment" : "multiply", path, msim_type_name(ta));
    parent = resolve(root, path, true, buf, sizeof buf, &last, error, &fail);
    if (parent == NULL)
        return false;
    cur = mnode_child(parent, last, NULL);
    if (cur == NULL) {
        mnode_t *v = mnode_from_iter(last, arg);
        if (strcmp(op, "$mul") == 0) {
            /* $mul on a missing field sets 0 of the argument's type */
            bson_value_destroy(&v->val);
            v->val.value_type = ta == BSON_TYPE_DOUBLE  ? BSON_TYPE_DOUBLE
                                : ta == BSON_TYPE_INT64 ? BSON_TYPE_INT64
                                                        : BSON_TYPE_INT32;
            v->type = v->val.value_type;
            v->val.value.v_int64 = 0;
            if (ta == BSON_TYPE_DOUBLE)
                v->val.value.v_double = 0;
            else if (v->type == BSON_TYPE_INT32)
                v->val.value.v_int32 = 0;
        }
        return set_at(parent, last, v, error);
    }
    if (!msim_is_number(cur->type))
        return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                         "Cannot apply %s to a value of non-numeric type. %s has the field '%s' "
                         "of non-numeric type %s",
                         op, id_desc(root, idb, sizeof idb), last, msim_type_name(cur->type));
    {
        bson_t tmp;
        bson_iter_t cv;
        bool mul = strcmp(op, "$mul") == 0;
        mnode_to_iter(cur, &tmp, &cv);
        if (cur->type == BSON_TYPE_DOUBLE || ta == BSON_TYPE_DOUBLE ||
            cur->type == BSON_TYPE_DECIMAL128 || ta == BSON_TYPE_DECIMAL128) {
            double r = mul ? msim_as_double(&cv) * msim_as_double(arg)
                           : msim_as_double(&cv) + msim_as_double(arg);
            cur->type = BSON_TYPE_DOUBLE;
            cur->val.value_type = BSON_TYPE_DOUBLE;
            cur->val.value.v_double = r;
        } else {
            int64_t a = 0, b = 0, r;
            bool ovf;
            msim_iter_int64(&cv, &a);
            msim_iter_int64(arg, &b);
            ovf = mul ? __builtin_mul_overflow(a, b, &r) : __builtin_add_overflow(a, b, &r);
            if (ovf) {
                cur->type = BSON_TYPE_DOUBLE;
                cur->val.value_type = BSON_TYPE_DOUBLE;
                cur->val.value.v_double = mul ? (double)a * (double)b : (double)a + (double)b;
            } else if (cur->type == BSON_TYPE_INT32 && ta == BSON_TYPE_INT32 && r >= INT32_MIN &&
                       r <= INT32_MAX) {
                cur->val.value_type = BSON_TYPE_INT32;
                cur->val.value.v_int32 = (int32_t)r;
            } else {
                cur->type = BSON_TYPE_INT64;
                cur->val.value_type = BSON_TYPE_INT64;
                cur->val.value.v_int64 = r;
            }
        }
        bson_destroy(&tmp);
    }
    return true;
}

static bool
minmax(mnode_t *root, bool is_min, const char *path, const bson_iter_t *arg, mg_error_t *error)
{
    char buf[1024], *last;
    bool fail;
    mnode_t *parent = resolve(root, path, true, buf, sizeof buf, &last, error, &fail), *cur;
    bson_t tmp;
    bson_iter_t cv;
    int c;
    if (parent == NULL)
        return false;
    cur = mnode_child(parent, last, NULL);
    if (cur == NULL)
        return set_at(parent, last, mnode_from_iter(last, arg), error);
    mnode_to_iter(cur, &tmp, &cv);
    c = msim_cmp(arg, &cv);
    bson_destroy(&tmp);
    if ((is_min && c < 0) || (!is_min && c > 0))
        return set_at(parent, last, mnode_from_iter(last, arg), error);
    return true;
}

static bool
array_target(mnode_t *root, const char *op, const char *path, bool create, mnode_t **arr,
             mg_error_t *error)
{
    char buf[1024], *last, idb[256];
    bool fail;
    mnode_t *parent = resolve(root, path, create, buf, sizeof buf, &last, error, &fail), *cur;
    *arr = NULL;
    if (parent == NULL)
        return !fail;
    cur = mnode_child(parent, last, NULL);
    if (cur == NULL) {
        if (!create)
            return true;
        cur = mnode_new(last, BSON_TYPE_ARRAY);
        if (!set_at(parent, last, cur, error))
            return false;
    } else if (cur->type != BSON_TYPE_ARRAY) {
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "The field '%s' must be an array but is of type %s in document %s", path,
                         msim_type_name(cur->type), id_desc(root, idb, sizeof idb));
    }
    (void)op;
    *arr = cur;
    return true;
}

static bool
contains(const mnode_t *arr, const bson_iter_t *v)
{
    for (size_t i = 0; i < arr->n; i++) {
        bson_t tmp;
        bson_iter_t cv;
        int c;
        mnode_to_iter(arr->kids[i], &tmp, &cv);
        c = msim_cmp(&cv, v);
        bson_destroy(&tmp);
        if (c == 0)
            return true;
    }
    return false;
}

static bool
push(mnode_t *root, bool add_to_set, const char *path, const bson_iter_t *arg, mg_error_t *error)
{
    mnode_t *arr;
    bson_iter_t each, c;
    bool has_each = false;
    int64_t position = -1, slice = INT64_MAX;
    bool has_slice = false;

    if (BSON_ITER_HOLDS_DOCUMENT(arg)) {
        bson_iter_recurse(arg, &c);
        if (bson_iter_next(&c) && bson_iter_key(&c)[0] == '$') {
            bson_iter_recurse(arg, &c);
            while (bson_iter_next(&c)) {
                const char *k = bson_iter_key(&c);
                if (strcmp(k, "$each") == 0) {
                    if (!BSON_ITER_HOLDS_ARRAY(&c))
                        return msim_fail(error, MSIM_E_BAD_VALUE,
                                         "The argument to $each in %s must be an array but it "
                                         "was of type: %s",
                                         add_to_set ? "$addToSet" : "$push",
                                         msim_type_name(bson_iter_type(&c)));
                    each = c;
                    has_each = true;
                } else if (!add_to_set && strcmp(k, "$position") == 0) {
                    msim_iter_int64(&c, &position);
                } else if (!add_to_set && strcmp(k, "$slice") == 0) {
                    msim_iter_int64(&c, &slice);
                    has_slice = true;
                } else {
                    return msim_fail(error, MSIM_E_BAD_VALUE, "Unrecognized clause in %s: %s",
                                     add_to_set ? "$addToSet" : "$push", k);
                }
            }
            if (!has_each)
                return msim_fail(error, MSIM_E_BAD_VALUE, "$each is required with modifiers");
        }
    }
    if (!array_target(root, add_to_set ? "$addToSet" : "$push", path, true, &arr, error))
        return false;
    if (has_each) {
        size_t at = position < 0 ? arr->n : (size_t)position > arr->n ? arr->n : (size_t)position;
        bson_iter_recurse(&each, &c);
        while (bson_iter_next(&c)) {
            if (add_to_set && contains(arr, &c))
                continue;
            mnode_insert(arr, at++, mnode_from_iter(NULL, &c));
        }
    } else {
        if (add_to_set && contains(arr, arg))
            return true;
        mnode_append(arr, mnode_from_iter(NULL, arg));
    }
    if (has_slice) {
        if (slice >= 0) {
            while ((int64_t)arr->n > slice)
                mnode_free(arr->kids[--arr->n]);
        } else {
            while ((int64_t)arr->n > -slice) {
                mnode_free(arr->kids[0]);
                memmove(&arr->kids[0], &arr->kids[1], (arr->n - 1) * sizeof(mnode_t *));
                arr->n--;
            }
        }
    }
    return true;
}

static bool
pull(mnode_t *root, const char *path, const bson_iter_t *arg, mg_error_t *error)
{
    mnode_t *arr;
    msim_matcher_t *m = NULL;
    bool op_doc = false, plain_doc = false;
    if (!array_target(root, "$pull", path, false, &arr, error))
        return false;
    if (arr == NULL)
        return true;
    if (BSON_ITER_HOLDS_DOCUMENT(arg)) {
        bson_iter_t c;
        bson_t f = BSON_INITIALIZER;
        bson_iter_recurse(arg, &c);
        op_doc = bson_iter_next(&c) && bson_iter_key(&c)[0] == '$' &&
                 strcmp(bson_iter_key(&c), "$and") != 0 && strcmp(bson_iter_key(&c), "$or") != 0;
        plain_doc = !op_doc;
        if (op_doc) {
            bson_append_value(&f, "v", 1, bson_iter_value((bson_iter_t *)arg));
        } else {
            const uint8_t *d;
            uint32_t l;
            bson_t sub;
            bson_iter_document(arg, &l, &d);
            bson_init_static(&sub, d, l);
            bson_concat(&f, &sub);
        }
        m = msim_matcher_new(&f, error);
        bson_destroy(&f);
        if (m == NULL)
            return false;
    } else if (BSON_ITER_HOLDS_REGEX(arg)) {
        bson_t f = BSON_INITIALIZER;
        bson_append_value(&f, "v", 1, bson_iter_value((bson_iter_t *)arg));
        op_doc = true;
        m = msim_matcher_new(&f, error);
        bson_destroy(&f);
        if (m == NULL)
            return false;
    }
    for (size_t i = 0; i < arr->n;) {
        bson_t tmp;
        bson_iter_t cv;
        bool hit;
        mnode_to_iter(arr->kids[i], &tmp, &cv);
        if (op_doc) {
            hit = msim_matcher_match(m, bson_get_data(&tmp), tmp.len);
        } else if (plain_doc) {
            hit = false;
            if (BSON_ITER_HOLDS_DOCUMENT(&cv)) {
                const uint8_t *d;
                uint32_t l;
                bson_iter_document(&cv, &l, &d);
                hit = msim_matcher_match(m, d, l);
            }
        } else {
            hit = msim_cmp(&cv, arg) == 0;
        }
        bson_destroy(&tmp);
        if (hit) {
            mnode_free(arr->kids[i]);
            memmove(&arr->kids[i], &arr->kids[i + 1], (arr->n - i - 1) * sizeof(mnode_t *));
            arr->n--;
        } else {
            i++;
        }
    }
    msim_matcher_destroy(m);
    return true;
}

static bool
unset(mnode_t *root, const char *path)
{
    char buf[1024], *last;
    bool fail;
    size_t pos;
    mnode_t *parent = resolve(root, path, false, buf, sizeof buf, &last, NULL, &fail), *cur;
    if (parent == NULL)
        return false;
    cur = mnode_child(parent, last, &pos);
    if (cur == NULL)
        return false;
    if (parent->type == BSON_TYPE_ARRAY) {
        /* $unset of an array element sets it to null */
        mnode_t *nul = mnode_new(NULL, BSON_TYPE_NULL);
        mnode_free(cur);
        parent->kids[pos] = nul;
        return true;
    }
    mnode_free(cur);
    memmove(&parent->kids[pos], &parent->kids[pos + 1], (parent->n - pos - 1) * sizeof(mnode_t *));
    parent->n--;
    return true;
}

static mnode_t *
detach(mnode_t *root, const char *path)
{
    char buf[1024], *last;
    bool fail;
    size_t pos;
    mnode_t *parent = resolve(root, path, false, buf, sizeof buf, &last, NULL, &fail), *cur;
    if (parent == NULL || parent->type != BSON_TYPE_DOCUMENT)
        return NULL;
    cur = mnode_child(parent, last, &pos);
    if (cur == NULL)
        return NULL;
    memmove(&parent->kids[pos], &parent->kids[pos + 1], (parent->n - pos - 1) * sizeof(mnode_t *));
    parent->n--;
    return cur;
}

/* paths_conflict: equal, or one is a component-wise prefix of the other. */
static bool
paths_conflict(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t l = la < lb ? la : lb;
    if (strncmp(a, b, l) != 0)
        return false;
    if (la == lb)
        return true;
    return (la > lb ? a[l] : b[l]) == '.';
}

bool
msim_update_is_replacement(const bson_iter_t *update)
{
    bson_iter_t c;
    if (!BSON_ITER_HOLDS_DOCUMENT(update) || !bson_iter_recurse(update, &c))
        return false;
    if (!bson_iter_next(&c))
        return true; /* {} replaces with an empty document */
    return bson_iter_key(&c)[0] != '$';
}

static void
seed_from_query(mnode_t *root, const bson_t *query)
{
    bson_iter_t it;
    if (query == NULL || !bson_iter_init(&it, query))
        return;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bson_iter_t c;
        if (k[0] == '$') {
            if (strcmp(k, "$and") == 0 && BSON_ITER_HOLDS_ARRAY(&it)) {
                bson_iter_recurse(&it, &c);
                while (bson_iter_next(&c))
                    if (BSON_ITER_HOLDS_DOCUMENT(&c)) {
                        const uint8_t *d;
                        uint32_t l;
                        bson_t sub;
                        bson_iter_document(&c, &l, &d);
                        bson_init_static(&sub, d, l);
                        seed_from_query(root, &sub);
                    }
            }
            continue;
        }
        if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
            bson_iter_recurse(&it, &c);
            if (bson_iter_next(&c) && bson_iter_key(&c)[0] == '$') {
                if (strcmp(bson_iter_key(&c), "$eq") == 0) {
                    char buf[1024], *last;
                    bool fail;
                    mnode_t *p = resolve(root, k, true, buf, sizeof buf, &last, NULL, &fail);
                    if (p)
                        set_at(p, last, mnode_from_iter(last, &c), NULL);
                }
                continue;
            }
        }
        if (BSON_ITER_HOLDS_REGEX(&it))
            continue;
        {
            char buf[1024], *last;
            bool fail;
            mnode_t *p = resolve(root, k, true, buf, sizeof buf, &last, NULL, &fail);
            if (p)
                set_at(p, last, mnode_from_iter(last, &it), NULL);
        }
    }
}

static void
id_first(mnode_t *root)
{
    size_t pos;
    mnode_t *id = mnode_child(root, "_id", &pos);
    if (id != NULL && pos != 0) {
        memmove(&root->kids[1], &root->kids[0], pos * sizeof(mnode_t *));
        root->kids[0] = id;
    }
}

static bool
apply_ops(mnode_t *root, const bson_iter_t *update, bool upsert_insert, touched_t *t,
          mg_error_t *error)
{
    bson_iter_t ops, args;
    char **all = NULL;
    size_t nall = 0;
    bool ok = true;

    /* validate operators and path conflicts first */
    bson_iter_recurse(update, &ops);
    while (ok && bson_iter_next(&ops)) {
        const char *op = bson_iter_key(&ops);
        static const char *known[] = {"$set",    "$unset",       "$inc",         "$mul",    "$min",
                                      "$max",    "$push",        "$addToSet",    "$pull",   "$pop",
                                      "$rename", "$setOnInsert", "$currentDate", "$pullAll"};
        bool found = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            found |= strcmp(known[i], op) == 0;
        if (!found) {
            ok = msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                           "Unknown modifier: %s. Expected a valid update modifier or "
                           "pipeline-style update specified as an array",
                           op);
            break;
        }
        if (!BSON_ITER_HOLDS_DOCUMENT(&ops)) {
            ok = msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                           "Modifiers operate on fields but we found type %s instead. For "
                           "example: {$mod: {<field>: ...}} not {%s: %s}",
                           msim_type_name(bson_iter_type(&ops)), op,
                           msim_type_name(bson_iter_type(&ops)));
            break;
        }
        bson_iter_recurse(&ops, &args);
        while (ok && bson_iter_next(&args)) {
            const char *p = bson_iter_key(&args);
            if (strcmp(op, "$setOnInsert") == 0 && !upsert_insert)
                continue;
            for (size_t i = 0; i < nall; i++)
                if (paths_conflict(all[i], p)) {
                    ok = msim_fail(error, 40,
                                   "Updating the path '%s' would create a conflict at '%s'", p,
                                   all[i]);
                    break;
                }
            all = realloc(all, (nall + 2) * sizeof(char *));
            all[nall++] = (char *)p;
            if (strcmp(op, "$rename") == 0 && BSON_ITER_HOLDS_UTF8(&args))
                all[nall++] = (char *)bson_iter_utf8(&args, NULL);
        }
    }
    free(all);
    if (!ok)
        return false;

    bson_iter_recurse(update, &ops);
    while (ok && bson_iter_next(&ops)) {
        const char *op = bson_iter_key(&ops);
        bson_iter_recurse(&ops, &args);
        while (ok && bson_iter_next(&args)) {
            const char *path = bson_iter_key(&args);
            if (strcmp(path, "_id") == 0 && strcmp(op, "$set") != 0 &&
                strcmp(op, "$setOnInsert") != 0) {
                ok = msim_fail(error, MSIM_E_IMMUTABLE_FIELD,
                               "Performing an update on the path '_id' would modify the "
                               "immutable field '_id'");
                break;
            }
            if (strcmp(op, "$set") == 0 || (strcmp(op, "$setOnInsert") == 0 && upsert_insert)) {
                char buf[1024], *last;
                bool fail;
                mnode_t *p = resolve(root, path, true, buf, sizeof buf, &last, error, &fail);
                ok = p != NULL && set_at(p, last, mnode_from_iter(last, &args), error);
                touch(t, path, false);
            } else if (strcmp(op, "$setOnInsert") == 0) {
                continue;
            } else if (strcmp(op, "$unset") == 0) {
                if (unset(root, path))
                    touch(t, path, true);
            } else if (strcmp(op, "$inc") == 0 || strcmp(op, "$mul") == 0) {
                ok = arith(root, op, path, &args, error);
                touch(t, path, false);
            } else if (strcmp(op, "$min") == 0 || strcmp(op, "$max") == 0) {
                ok = minmax(root, op[2] == 'i', path, &args, error);
                touch(t, path, false);
            } else if (strcmp(op, "$push") == 0 || strcmp(op, "$addToSet") == 0) {
                ok = push(root, op[1] == 'a', path, &args, error);
                touch(t, path, false);
            } else if (strcmp(op, "$pull") == 0) {
                ok = pull(root, path, &args, error);
                touch(t, path, false);
            } else if (strcmp(op, "$pullAll") == 0) {
                bson_iter_t c;
                if (!BSON_ITER_HOLDS_ARRAY(&args)) {
                    ok = msim_fail(error, MSIM_E_BAD_VALUE, "$pullAll requires an array argument");
                    break;
                }
                bson_iter_recurse(&args, &c);
                while (ok && bson_iter_next(&c))
                    ok = pull(root, path, &c, error);
                touch(t, path, false);
            } else if (strcmp(op, "$pop") == 0) {
                mnode_t *arr;
                int64_t dir = 1;
                msim_iter_int64(&args, &dir);
                ok = array_target(root, op, path, false, &arr, error);
                if (ok && arr != NULL && arr->n > 0) {
                    if (dir >= 0) {
                        mnode_free(arr->kids[--arr->n]);
                    } else {
                        mnode_free(arr->kids[0]);
                        memmove(&arr->kids[0], &arr->kids[1], (arr->n - 1) * sizeof(mnode_t *));
                        arr->n--;
                    }
                    touch(t, path, false);
                }
            } else if (strcmp(op, "$rename") == 0) {
                mnode_t *v;
                if (!BSON_ITER_HOLDS_UTF8(&args)) {
                    ok = msim_fail(error, MSIM_E_BAD_VALUE,
                                   "The 'to' field for $rename must be a string: %s", path);
                    break;
                }
                v = detach(root, path);
                if (v != NULL) {
                    char buf[1024], *last;
                    bool fail;
                    const char *to = bson_iter_utf8(&args, NULL);
                    mnode_t *p = resolve(root, to, true, buf, sizeof buf, &last, error, &fail);
                    if (p == NULL) {
                        mnode_free(v);
                        ok = false;
                    } else {
                        ok = set_at(p, last, v, error);
                    }
                    touch(t, path, true);
                    touch(t, to, false);
                }
            } else if (strcmp(op, "$currentDate") == 0) {
                char buf[1024], *last;
                bool fail, ts = false;
                mnode_t *p = resolve(root, path, true, buf, sizeof buf, &last, error, &fail), *v;
                if (BSON_ITER_HOLDS_DOCUMENT(&args)) {
                    bson_iter_t c;
                    bson_iter_recurse(&args, &c);
                    ts = bson_iter_find(&c, "$type") && BSON_ITER_HOLDS_UTF8(&c) &&
                         strcmp(bson_iter_utf8(&c, NULL), "timestamp") == 0;
                }
                if (p == NULL) {
                    ok = false;
                    break;
                }
                v = mnode_new(last, ts ? BSON_TYPE_TIMESTAMP : BSON_TYPE_DATE_TIME);
                v->val.value_type = v->type;
                if (ts) {
                    msim_ts_t now = msim_clock_now();
                    v->val.value.v_timestamp.timestamp = now.t;
                    v->val.value.v_timestamp.increment = now.i;
                } else {
                    v->val.value.v_datetime = msim_now_ms();
                }
                ok = set_at(p, last, v, error);
                touch(t, path, false);
            }
        }
    }
    return ok;
}

static void
fill_desc(mnode_t *root, touched_t *t, bson_t *desc)
{
    bson_t upd, rem, trunc;
    uint32_t ri = 0;
    bson_append_document_begin(desc, "updatedFields", -1, &upd);
    for (size_t i = 0; i < t->n; i++) {
        mnode_t *v;
        if (t->removed[i])
            continue;
        v = get_path(root, t->paths[i]);
        if (v != NULL) {
            bson_t tmp;
            bson_iter_t cv;
            mnode_to_iter(v, &tmp, &cv);
            msim_append_iter(&upd, t->paths[i], -1, &cv);
            bson_destroy(&tmp);
        }
    }
    bson_append_document_end(desc, &upd);
    bson_append_array_begin(desc, "removedFields", -1, &rem);
    for (size_t i = 0; i < t->n; i++) {
        char idx[16];
        const char *k;
        if (!t->removed[i])
            continue;
        bson_uint32_to_string(ri++, &k, idx, sizeof idx);
        bson_append_utf8(&rem, k, -1, t->paths[i], -1);
    }
    bson_append_array_end(desc, &rem);
    bson_append_array_begin(desc, "truncatedArrays", -1, &trunc);
    bson_append_array_end(desc, &trunc);
}

bool
msim_update_apply(const bson_t *doc, const bson_t *query, const bson_iter_t *update,
                  bool upsert_insert, bson_t *out, bson_t *desc, bool *replaced, mg_error_t *error)
{
    mnode_t *root;
    bson_t oldid_doc = BSON_INITIALIZER;
    bson_iter_t oldid_it;
    touched_t t = {0};
    bool ok = true;

    *replaced = false;
    if (BSON_ITER_HOLDS_ARRAY(update))
        return msim_fail(error, MSIM_E_COMMAND_NOT_SUPPORTED,
                         "pipeline-style updates are not supported by mongosim");
    if (!BSON_ITER_HOLDS_DOCUMENT(update))
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                         "Update argument must be either an object "
                         "or an array");
    if (doc != NULL && bson_iter_init_find(&oldid_it, doc, "_id"))
        msim_append_iter(&oldid_doc, "_id", 3, &oldid_it);

    if (msim_update_is_replacement(update)) {
        const uint8_t *d;
        uint32_t l;
        bson_t rep;
        bson_iter_t c;
        bson_iter_document(update, &l, &d);
        bson_init_static(&rep, d, l);
        bson_iter_init(&c, &rep);
        while (bson_iter_next(&c))
            if (strchr(bson_iter_key(&c), '$') == bson_iter_key(&c)) {
                bson_destroy(&oldid_doc);
                return msim_fail(error, 52,
                                 "The dollar ($) prefixed field '%s' in '%s' is not "
                                 "allowed in the context of an update's replacement "
                                 "document.",
                                 bson_iter_key(&c), bson_iter_key(&c));
            }
        root = mnode_from_bson(&rep);
        *replaced = true;
        if (doc == NULL)
            seed_from_query(root, NULL);
    } else {
        root = mnode_from_bson(doc);
        if (doc == NULL && upsert_insert)
            seed_from_query(root, query);
        ok = apply_ops(root, update, upsert_insert, desc ? &t : NULL, error);
    }
    if (ok) {
        mnode_t *nid = mnode_child(root, "_id", NULL);
        if (bson_iter_init_find(&oldid_it, &oldid_doc, "_id")) {
            if (nid == NULL) {
                set_at(root, "_id", mnode_from_iter("_id", &oldid_it), NULL);
            } else {
                bson_t tmp;
                bson_iter_t cv;
                mnode_to_iter(nid, &tmp, &cv);
                if (msim_cmp(&cv, &oldid_it) != 0 ||
                    bson_iter_type(&cv) != bson_iter_type(&oldid_it)) {
                    char *j = msim_value_json(&cv);
                    ok = msim_fail(error, MSIM_E_IMMUTABLE_FIELD,
                                   *replaced ? "After applying the update, the (immutable) field "
                                               "'_id' was found to have been altered to _id: %s"
                                             : "Performing an update on the path '_id' would "
                                               "modify the immutable field '_id' (new value %s)",
                                   j);
                    bson_free(j);
                }
                bson_destroy(&tmp);
            }
        } else if (nid == NULL && doc == NULL && query != NULL) {
            /* upsert: _id from the query's equality, else the caller generates one */
            bson_iter_t qid;
            if (bson_iter_init_find(&qid, query, "_id") && !BSON_ITER_HOLDS_DOCUMENT(&qid))
                set_at(root, "_id", mnode_from_iter("_id", &qid), NULL);
        }
    }
    if (ok && mnode_child(root, "_id", NULL) != NULL &&
        mnode_child(root, "_id", NULL)->type == BSON_TYPE_ARRAY)
        ok = msim_fail(error, 53, "The '_id' value cannot be of type array");
    if (ok) {
        id_first(root);
        mnode_to_bson(root, out);
        if (desc != NULL && !*replaced)
            fill_desc(root, &t, desc);
    }
    for (size_t i = 0; i < t.n; i++)
        free(t.paths[i]);
    free(t.paths);
    free(t.removed);
    mnode_free(root);
    bson_destroy(&oldid_doc);
    return ok;
}
