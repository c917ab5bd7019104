/*
 * tests/mongosim/msim_update_leaf.c - the update modifiers themselves: the
 * checks mongod makes on their arguments when it parses the update, and
 * what each does to an existing element or creates at a missing path, with
 * mongod's result types ($inc on two int32 stays int32 unless it
 * overflows, int64 overflow fails, a Decimal128 operand gives a Decimal128)
 * and messages.
 */
#include "msim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msim_update_internal.h"

/* ------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------ */

char *
msim_elem_string(const msim_mnode_t *e)
{
    bson_t tmp;
    bson_iter_t v;
    char *j, *s;
    msim_mnode_value(e, &tmp, &v);
    j = msim_value_json(&v);
    bson_destroy(&tmp);
    s = bson_strdup_printf("%s: %s", e->key ? e->key : "", j);
    bson_free(j);
    return s;
}

char *
msim_id_string(const msim_mnode_t *root)
{
    msim_mnode_t *id = msim_mnode_child(root, "_id", NULL);
    return id ? msim_elem_string(id) : bson_strdup("no id");
}

/* ------------------------------------------------------------------------
 * Parsing the arguments (mongod's <Modifier>Node::init)
 * ------------------------------------------------------------------------ */

static bool
init_arith(unode_t *leaf, mg_error_t *error)
{
    char *j;
    if (msim_is_number(bson_iter_type(&leaf->arg)))
        return true;
    j = msim_value_json(&leaf->arg);
    msim_fail(error, MSIM_E_TYPE_MISMATCH, "Cannot %s with non-numeric argument: {%s: %s}",
              leaf->op == OP_INC ? "increment" : "multiply", leaf->path, j);
    bson_free(j);
    return false;
}

static bool
int_clause(const bson_iter_t *it, int64_t *out)
{
    /* mongod's parseIntegerElementToLong: an integral number */
    double d;
    if (BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it))
        return msim_iter_int64(it, out);
    if (!BSON_ITER_HOLDS_DOUBLE(it) && bson_iter_type(it) != BSON_TYPE_DECIMAL128)
        return false;
    d = msim_as_double(it);
    if (!isfinite(d) || d != floor(d) || d < -9.2e18 || d > 9.2e18)
        return false;
    *out = (int64_t)d;
    return true;
}

static bool
init_sort(unode_t *leaf, const bson_iter_t *c, mg_error_t *error)
{
    if (BSON_ITER_HOLDS_DOCUMENT(c)) {
        bson_iter_t p;
        bool any = false;
        bson_iter_recurse(c, &p);
        while (bson_iter_next(&p)) {
            const char *k = bson_iter_key(&p);
            double d = msim_is_number(bson_iter_type(&p)) ? msim_as_double(&p) : 0;
            any = true;
            if (d != 1 && d != -1)
                return msim_fail(error, MSIM_E_BAD_VALUE,
                                 "The $sort element value must be either 1 or -1");
            if (k[0] == '\0')
                return msim_fail(error, MSIM_E_BAD_VALUE, "The $sort field cannot be empty");
            if (k[strlen(k) - 1] == '.' || k[0] == '.' || strstr(k, "..") != NULL)
                return msim_fail(error, MSIM_E_BAD_VALUE,
                                 "The $sort field is a dotted field but has an empty part: %s", k);
        }
        if (!any)
            return msim_fail(error, MSIM_E_BAD_VALUE,
                             "The $sort pattern is empty when it should be a set of fields.");
        leaf->sort = 2;
        leaf->sort_pattern = *c;
        return true;
    }
    if (msim_is_number(bson_iter_type(c))) {
        double d = msim_as_double(c);
        if (d != 1 && d != -1)
            return msim_fail(error, MSIM_E_BAD_VALUE,
                             "The $sort element value must be either 1 or -1");
        leaf->sort = 1;
        leaf->sort_dir = d;
        return true;
    }
    return msim_fail(error, MSIM_E_BAD_VALUE,
                     "The $sort is invalid: use 1/-1 to sort the whole element, or {field:1/-1} "
                     "to sort embedded fields");
}

static bool
init_push(unode_t *leaf, mg_error_t *error)
{
    bson_iter_t c;
    bool seen[4] = {false, false, false, false};
    static const char *clauses[] = {"$each", "$slice", "$sort", "$position"};
    leaf->slice = INT64_MAX;
    if (!BSON_ITER_HOLDS_DOCUMENT(&leaf->arg) || !bson_iter_recurse(&leaf->arg, &c) ||
        !bson_iter_find(&c, "$each"))
        return true; /* the value itself is pushed, even {$slice: 1} */
    bson_iter_recurse(&leaf->arg, &c);
    while (bson_iter_next(&c)) {
        const char *k = bson_iter_key(&c);
        int which = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(clauses[i], k) == 0)
                which = i;
        if (which < 0)
            return msim_fail(error, MSIM_E_BAD_VALUE, "Unrecognized clause in $push: %s", k);
        if (seen[which])
            return msim_fail(error, MSIM_E_BAD_VALUE, "Only one %s is supported.", k);
        seen[which] = true;
        if (which == 0) {
            if (!BSON_ITER_HOLDS_ARRAY(&c))
                return msim_fail(error, MSIM_E_BAD_VALUE,
                                 "The argument to $each in $push must be an array but it was of "
                                 "type: %s",
                                 msim_type_name(bson_iter_type(&c)));
            leaf->each = c;
            leaf->has_each = true;
        } else if (which == 1) {
            if (!int_clause(&c, &leaf->slice))
                return msim_fail(error, MSIM_E_BAD_VALUE,
                                 "The value for $slice must be an integer value but was given "
                                 "type: %s",
                                 msim_type_name(bson_iter_type(&c)));
            leaf->has_slice = true;
        } else if (which == 2) {
            if (!init_sort(leaf, &c, error))
                return false;
        } else {
            if (!int_clause(&c, &leaf->position))
                return msim_fail(error, MSIM_E_BAD_VALUE,
                                 "The value for $position must be an integer value, not of type: "
                                 "%s",
                                 msim_type_name(bson_iter_type(&c)));
            leaf->has_position = true;
        }
    }
    return true;
}

static bool
init_add_to_set(unode_t *leaf, mg_error_t *error)
{
    bson_iter_t c;
    if (!BSON_ITER_HOLDS_DOCUMENT(&leaf->arg) || !bson_iter_recurse(&leaf->arg, &c) ||
        !bson_iter_next(&c) || strcmp(bson_iter_key(&c), "$each") != 0)
        return true;
    if (!BSON_ITER_HOLDS_ARRAY(&c))
        return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                         "The argument to $each in $addToSet must be an array but it was of "
                         "type %s",
                         msim_type_name(bson_iter_type(&c)));
    leaf->each = c;
    leaf->has_each = true;
    if (bson_iter_next(&c)) {
        char *j = msim_value_json(&leaf->arg);
        msim_fail(error, MSIM_E_BAD_VALUE, "Found unexpected fields after $each in $addToSet: %s",
                  j);
        bson_free(j);
        return false;
    }
    return true;
}

static bool
init_pull(unode_t *leaf, mg_error_t *error)
{
    bson_t f = BSON_INITIALIZER;
    bson_iter_t c;
    if (leaf->op == OP_PULL_ALL) {
        if (BSON_ITER_HOLDS_ARRAY(&leaf->arg))
            return true;
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "$pullAll requires an array argument but was given a %s",
                         msim_type_name(bson_iter_type(&leaf->arg)));
    }
    if (BSON_ITER_HOLDS_DOCUMENT(&leaf->arg) && bson_iter_recurse(&leaf->arg, &c) &&
        bson_iter_next(&c) && bson_iter_key(&c)[0] == '$') {
        leaf->pull_kind = PULL_WRAP; /* operators on the element itself */
        msim_append_iter(&f, "v", 1, &leaf->arg);
    } else if (BSON_ITER_HOLDS_DOCUMENT(&leaf->arg)) {
        const uint8_t *d;
        uint32_t l;
        bson_t sub;
        leaf->pull_kind = PULL_OBJ; /* a query on document elements */
        bson_iter_document(&leaf->arg, &l, &d);
        bson_init_static(&sub, d, l);
        bson_concat(&f, &sub);
    } else if (BSON_ITER_HOLDS_REGEX(&leaf->arg)) {
        leaf->pull_kind = PULL_WRAP;
        msim_append_iter(&f, "v", 1, &leaf->arg);
    } else {
        leaf->pull_kind = PULL_EQ;
        bson_destroy(&f);
        return true;
    }
    leaf->pull = msim_matcher_new(&f, error);
    bson_destroy(&f);
    return leaf->pull != NULL;
}

static bool
init_bit(unode_t *leaf, mg_error_t *error)
{
    bson_iter_t c;
    char *j;
    if (!BSON_ITER_HOLDS_DOCUMENT(&leaf->arg)) {
        j = msim_value_json(&leaf->arg);
        msim_fail(error, MSIM_E_BAD_VALUE,
                  "The $bit modifier is not compatible with a %s. You must pass in an embedded "
                  "document: {$bit: {field: {and/or/xor: #}}",
                  msim_type_name(bson_iter_type(&leaf->arg)));
        bson_free(j);
        return false;
    }
    bson_iter_recurse(&leaf->arg, &c);
    while (bson_iter_next(&c)) {
        const char *k = bson_iter_key(&c);
        char op = strcmp(k, "and") == 0   ? 'a'
                  : strcmp(k, "or") == 0  ? 'o'
                  : strcmp(k, "xor") == 0 ? 'x'
                                          : 0;
        if (op == 0) {
            j = msim_value_json(&leaf->arg);
            msim_fail(error, MSIM_E_BAD_VALUE,
                      "The $bit modifier only supports 'and', 'or', and 'xor', not '%s' which is "
                      "an unknown operator: %s",
                      k, j);
            bson_free(j);
            return false;
        }
        if (!BSON_ITER_HOLDS_INT32(&c) && !BSON_ITER_HOLDS_INT64(&c)) {
            j = msim_value_json(&leaf->arg);
            msim_fail(error, MSIM_E_BAD_VALUE,
                      "The $bit modifier field must be an Integer(32/64 bit); a '%s' is not "
                      "supported here: %s",
                      msim_type_name(bson_iter_type(&c)), j);
            bson_free(j);
            return false;
        }
        if (leaf->nbits == MSIM_MAX_BIT_OPS)
            return msim_fail(error, MSIM_E_BAD_VALUE, "too many $bit operations on '%s'",
                             leaf->path);
        leaf->bits[leaf->nbits].op = op;
        leaf->bits[leaf->nbits].is64 = BSON_ITER_HOLDS_INT64(&c);
        msim_iter_int64(&c, &leaf->bits[leaf->nbits].v);
        leaf->nbits++;
    }
    if (leaf->nbits == 0)
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "You must pass in at least one bitwise operation. The format is: {$bit: "
                         "{field: {and/or/xor: #}}");
    return true;
}

static bool
init_current_date(unode_t *leaf, mg_error_t *error)
{
    bson_iter_t c;
    if (BSON_ITER_HOLDS_BOOL(&leaf->arg))
        return true;
    if (BSON_ITER_HOLDS_DOCUMENT(&leaf->arg) && bson_iter_recurse(&leaf->arg, &c)) {
        bool ok = false;
        while (bson_iter_next(&c)) {
            const char *v;
            if (strcmp(bson_iter_key(&c), "$type") != 0 || !BSON_ITER_HOLDS_UTF8(&c))
                return msim_fail(error, MSIM_E_BAD_VALUE, "Unrecognized $currentDate option: %s",
                                 bson_iter_key(&c));
            v = bson_iter_utf8(&c, NULL);
            if (strcmp(v, "timestamp") != 0 && strcmp(v, "date") != 0)
                return msim_fail(error, MSIM_E_BAD_VALUE,
                                 "The '$type' string field is required to be 'date' or "
                                 "'timestamp': {$currentDate: {field : {$type: 'date'}}}");
            leaf->ts = strcmp(v, "timestamp") == 0;
            ok = true;
        }
        if (ok)
            return true;
    }
    return msim_fail(error, MSIM_E_BAD_VALUE,
                     "%s is not valid type for $currentDate. Please use a boolean ('true') or a "
                     "$type expression ({$type: 'timestamp/date'}).",
                     msim_type_name(bson_iter_type(&leaf->arg)));
}

bool
msim_leaf_init(unode_t *leaf, mg_error_t *error)
{
    switch (leaf->op) {
    case OP_INC:
    case OP_MUL:
        return init_arith(leaf, error);
    case OP_PUSH:
        return init_push(leaf, error);
    case OP_ADD_TO_SET:
        return init_add_to_set(leaf, error);
    case OP_PULL:
    case OP_PULL_ALL:
        return init_pull(leaf, error);
    case OP_POP: {
        double d;
        char *j;
        if (!msim_is_number(bson_iter_type(&leaf->arg))) {
            j = msim_value_json(&leaf->arg);
            msim_fail(error, MSIM_E_FAILED_TO_PARSE, "Expected a number in: %s: %s", leaf->path, j);
            bson_free(j);
            return false;
        }
        d = msim_as_double(&leaf->arg);
        if (d != 1 && d != -1)
            return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "$pop expects 1 or -1, found: %g", d);
        return true;
    }
    case OP_BIT:
        return init_bit(leaf, error);
    case OP_CURRENT_DATE:
        return init_current_date(leaf, error);
    default:
        return true;
    }
}

/* ------------------------------------------------------------------------
 * Arithmetic ($inc, $mul) and bits, with mongod's SafeNum types
 * ------------------------------------------------------------------------ */

/* arith computes cur (op) arg into out; false when an int64 result overflows. */
static bool
arith(bool mul, const bson_iter_t *cur, const bson_iter_t *arg, msim_mnode_t *out)
{
    bson_type_t tc = bson_iter_type(cur), ta = bson_iter_type(arg);
    bson_value_t v = {0};
    if (tc == BSON_TYPE_DECIMAL128 || ta == BSON_TYPE_DECIMAL128) {
        v.value_type = BSON_TYPE_DECIMAL128;
        msim_decimal_arith(mul ? '*' : '+', cur, arg, &v.value.v_decimal128);
    } else if (tc == BSON_TYPE_DOUBLE || ta == BSON_TYPE_DOUBLE) {
        double x = msim_as_double(cur), y = msim_as_double(arg);
        v.value_type = BSON_TYPE_DOUBLE;
        v.value.v_double = mul ? x * y : x + y;
    } else {
        int64_t x = 0, y = 0, r;
        msim_iter_int64(cur, &x);
        msim_iter_int64(arg, &y);
        if (mul ? __builtin_mul_overflow(x, y, &r) : __builtin_add_overflow(x, y, &r))
            return false;
        if (tc == BSON_TYPE_INT32 && ta == BSON_TYPE_INT32 && r >= INT32_MIN && r <= INT32_MAX) {
            v.value_type = BSON_TYPE_INT32;
            v.value.v_int32 = (int32_t)r;
        } else {
            v.value_type = BSON_TYPE_INT64;
            v.value.v_int64 = r;
        }
    }
    msim_mnode_set_value(out, &v);
    return true;
}

static void
bits_apply(const unode_t *leaf, const bson_iter_t *cur, msim_mnode_t *out)
{
    int64_t v = 0;
    bool is64 = cur != NULL && BSON_ITER_HOLDS_INT64(cur);
    bson_value_t r = {0};
    if (cur != NULL)
        msim_iter_int64(cur, &v);
    for (size_t i = 0; i < leaf->nbits; i++) {
        int64_t x = leaf->bits[i].v;
        is64 |= leaf->bits[i].is64;
        v = leaf->bits[i].op == 'a' ? v & x : leaf->bits[i].op == 'o' ? v | x : v ^ x;
    }
    if (is64) {
        r.value_type = BSON_TYPE_INT64;
        r.value.v_int64 = v;
    } else {
        r.value_type = BSON_TYPE_INT32;
        r.value.v_int32 = (int32_t)v;
    }
    msim_mnode_set_value(out, &r);
}

static void
current_date(const unode_t *leaf, msim_mnode_t *out)
{
    bson_value_t v = {0};
    if (leaf->ts) {
        msim_ts_t now = msim_clock_tick();
        v.value_type = BSON_TYPE_TIMESTAMP;
        v.value.v_timestamp.timestamp = now.t;
        v.value.v_timestamp.increment = now.i;
    } else {
        v.value_type = BSON_TYPE_DATE_TIME;
        v.value.v_datetime = msim_now_ms();
    }
    msim_mnode_set_value(out, &v);
}

/* ------------------------------------------------------------------------
 * Arrays: $push, $addToSet, $pull, $pullAll, $pop
 * ------------------------------------------------------------------------ */

typedef struct {
    const unode_t *leaf;
    size_t index;
    msim_mnode_t *node;
} sortent_t;

/* pattern_key extracts the sort pattern's fields of e (a non-document is {"": e}). */
static void
pattern_key(const unode_t *leaf, const msim_mnode_t *e, bson_t *key)
{
    bson_t doc = BSON_INITIALIZER;
    bson_iter_t p;
    if (e->type == BSON_TYPE_DOCUMENT)
        msim_mnode_to_bson(e, &doc);
    else
        msim_mnode_append_to(e, &doc, "");
    bson_init(key);
    bson_iter_recurse(&leaf->sort_pattern, &p);
    while (bson_iter_next(&p)) {
        bson_iter_t v;
        if (msim_get_path(&doc, bson_iter_key(&p), &v))
            msim_append_iter(key, "k", 1, &v);
        else
            BSON_APPEND_NULL(key, "k");
    }
    bson_destroy(&doc);
}

static int
sort_cmp(const void *pa, const void *pb)
{
    const sortent_t *a = pa, *b = pb;
    int c = 0;
    if (a->leaf->sort == 1) {
        c = msim_mnode_cmp(a->node, b->node);
        if (a->leaf->sort_dir < 0)
            c = -c;
    } else {
        bson_t ka, kb;
        bson_iter_t ia, ib, p;
        pattern_key(a->leaf, a->node, &ka);
        pattern_key(a->leaf, b->node, &kb);
        bson_iter_init(&ia, &ka);
        bson_iter_init(&ib, &kb);
        bson_iter_recurse(&a->leaf->sort_pattern, &p);
        while (c == 0 && bson_iter_next(&ia) && bson_iter_next(&ib) && bson_iter_next(&p)) {
            c = msim_cmp(&ia, &ib);
            if (msim_as_double(&p) < 0)
                c = -c;
        }
        bson_destroy(&ka);
        bson_destroy(&kb);
    }
    if (c == 0)
        c = a->index < b->index ? -1 : a->index > b->index;
    return c;
}

static void
push_values(const unode_t *leaf, msim_mnode_t *arr)
{
    size_t n = arr->n, at;
    if (!leaf->has_each) {
        msim_mnode_append(arr, msim_mnode_from_iter(NULL, &leaf->arg));
    } else {
        bson_iter_t c;
        int64_t p = leaf->has_position ? leaf->position : INT64_MAX;
        if (n == 0 || p > (int64_t)n)
            at = n;
        else if (p >= 0)
            at = (size_t)p;
        else if (-p < (int64_t)n)
            at = n - (size_t)(-p);
        else
            at = 0;
        bson_iter_recurse(&leaf->each, &c);
        while (bson_iter_next(&c))
            msim_mnode_insert(arr, at++, msim_mnode_from_iter(NULL, &c));
    }
    if (leaf->sort != 0 && arr->n > 1) {
        sortent_t *v = malloc(arr->n * sizeof *v);
        if (v == NULL)
            abort();
        for (size_t i = 0; i < arr->n; i++)
            v[i] = (sortent_t){leaf, i, arr->kids[i]};
        qsort(v, arr->n, sizeof *v, sort_cmp);
        for (size_t i = 0; i < arr->n; i++)
            arr->kids[i] = v[i].node;
        free(v);
    }
    if (leaf->has_slice) {
        uint64_t keep =
            leaf->slice < 0 ? (uint64_t)(-(leaf->slice + 1)) + 1 : (uint64_t)leaf->slice;
        while ((uint64_t)arr->n > keep)
            msim_mnode_free(msim_mnode_detach(arr, leaf->slice >= 0 ? arr->n - 1 : 0));
    }
}

static bool
contains(const msim_mnode_t *arr, const bson_iter_t *v)
{
    for (size_t i = 0; i < arr->n; i++)
        if (msim_mnode_cmp_iter(arr->kids[i], v) == 0)
            return true;
    return false;
}

static void
add_to_set(const unode_t *leaf, msim_mnode_t *arr)
{
    bson_iter_t c;
    if (!leaf->has_each) {
        if (!contains(arr, &leaf->arg))
            msim_mnode_append(arr, msim_mnode_from_iter(NULL, &leaf->arg));
        return;
    }
    bson_iter_recurse(&leaf->each, &c);
    while (bson_iter_next(&c))
        if (!contains(arr, &c)) /* also drops repeats within $each */
            msim_mnode_append(arr, msim_mnode_from_iter(NULL, &c));
}

static bool
pull_hit(const unode_t *leaf, const msim_mnode_t *e, const bson_iter_t *value)
{
    bson_t tmp;
    bool hit = false;
    if (leaf->op == OP_PULL_ALL)
        return msim_mnode_cmp_iter(e, value) == 0;
    if (leaf->pull_kind == PULL_EQ)
        return msim_mnode_cmp_iter(e, &leaf->arg) == 0;
    bson_init(&tmp);
    if (leaf->pull_kind == PULL_WRAP) {
        msim_mnode_append_to(e, &tmp, "v");
        hit = msim_matcher_match(leaf->pull, bson_get_data(&tmp), tmp.len);
    } else if (e->type == BSON_TYPE_DOCUMENT) {
        msim_mnode_to_bson(e, &tmp);
        hit = msim_matcher_match(leaf->pull, bson_get_data(&tmp), tmp.len);
    }
    bson_destroy(&tmp);
    return hit;
}

static void
pull(const unode_t *leaf, msim_mnode_t *arr)
{
    for (size_t i = 0; i < arr->n;) {
        bool hit = false;
        if (leaf->op == OP_PULL_ALL) {
            bson_iter_t c;
            bson_iter_recurse(&leaf->arg, &c);
            while (!hit && bson_iter_next(&c))
                hit = pull_hit(leaf, arr->kids[i], &c);
        } else {
            hit = pull_hit(leaf, arr->kids[i], NULL);
        }
        if (hit)
            msim_mnode_free(msim_mnode_detach(arr, i));
        else
            i++;
    }
}

/* ------------------------------------------------------------------------
 * Applying a leaf
 * ------------------------------------------------------------------------ */

/* replace_content moves v's value into e (keeping e's key) and frees v. */
static void
replace_content(msim_mnode_t *e, msim_mnode_t *v)
{
    msim_mnode_set_raw(e, v->type, v->raw, v->rawlen);
    for (size_t i = 0; i < v->n; i++)
        msim_mnode_append(e, v->kids[i]);
    v->n = 0;
    msim_mnode_free(v);
}

static bool
not_array(actx_t *a, const unode_t *leaf, const msim_mnode_t *e, mg_error_t *error)
{
    char *path = msim_path_join(&a->taken, NULL), *id = msim_id_string(a->root);
    if (leaf->op == OP_PUSH)
        msim_fail(error, MSIM_E_BAD_VALUE,
                  "The field '%s' must be an array but is of type %s in document {%s}", path,
                  msim_type_name(e->type), id);
    else if (leaf->op == OP_ADD_TO_SET)
        msim_fail(error, MSIM_E_BAD_VALUE,
                  "Cannot apply $addToSet to non-array field. Field named '%s' has non-array "
                  "type %s",
                  e->key ? e->key : path, msim_type_name(e->type));
    else if (leaf->op == OP_POP)
        msim_fail(error, MSIM_E_TYPE_MISMATCH,
                  "Path '%s' contains an element of non-array type '%s'", path,
                  msim_type_name(e->type));
    else
        msim_fail(error, MSIM_E_BAD_VALUE, "Cannot apply %s to a non-array value", leaf->opname);
    bson_free(path);
    bson_free(id);
    return false;
}

static bool
existing_arith(actx_t *a, const unode_t *leaf, msim_mnode_t *e, mg_error_t *error)
{
    bson_t tmp;
    bson_iter_t cur;
    char *id;
    bool ok;
    if (!msim_is_number(e->type)) {
        id = msim_id_string(a->root);
        msim_fail(error, MSIM_E_TYPE_MISMATCH,
                  "Cannot apply %s to a value of non-numeric type. {%s} has the field '%s' of "
                  "non-numeric type %s",
                  leaf->opname, id, e->key ? e->key : "", msim_type_name(e->type));
        bson_free(id);
        return false;
    }
    msim_mnode_value(e, &tmp, &cur);
    ok = arith(leaf->op == OP_MUL, &cur, &leaf->arg, e);
    if (!ok) {
        char *j = msim_value_json(&cur);
        id = msim_id_string(a->root);
        msim_fail(error, MSIM_E_BAD_VALUE,
                  "Failed to apply %s operations to current value ((NumberLong)%s) for document "
                  "{%s}",
                  leaf->opname, j, id);
        bson_free(j);
        bson_free(id);
    }
    bson_destroy(&tmp);
    return ok;
}

bool
msim_leaf_existing(actx_t *a, const unode_t *leaf, msim_mnode_t *e, mg_error_t *error)
{
    bson_t tmp;
    bson_iter_t cur;
    bool is_arr = e->type == BSON_TYPE_ARRAY;
    switch (leaf->op) {
    case OP_SET:
    case OP_SET_ON_INSERT:
        replace_content(e, msim_mnode_from_iter(NULL, &leaf->arg));
        return true;
    case OP_INC:
    case OP_MUL:
        return existing_arith(a, leaf, e, error);
    case OP_MIN:
    case OP_MAX: {
        int c = msim_mnode_cmp_iter(e, &leaf->arg);
        if ((leaf->op == OP_MIN && c > 0) || (leaf->op == OP_MAX && c < 0))
            replace_content(e, msim_mnode_from_iter(NULL, &leaf->arg));
        return true;
    }
    case OP_PUSH:
    case OP_ADD_TO_SET:
    case OP_PULL:
    case OP_PULL_ALL:
    case OP_POP:
        if (!is_arr)
            return not_array(a, leaf, e, error);
        if (leaf->op == OP_PUSH)
            push_values(leaf, e);
        else if (leaf->op == OP_ADD_TO_SET)
            add_to_set(leaf, e);
        else if (leaf->op == OP_POP && e->n > 0)
            msim_mnode_free(msim_mnode_detach(e, msim_as_double(&leaf->arg) > 0 ? e->n - 1 : 0));
        else if (leaf->op != OP_POP)
            pull(leaf, e);
        return true;
    case OP_CURRENT_DATE:
        current_date(leaf, e);
        return true;
    case OP_BIT:
        if (e->type != BSON_TYPE_INT32 && e->type != BSON_TYPE_INT64) {
            char *id = msim_id_string(a->root);
            msim_fail(error, MSIM_E_BAD_VALUE,
                      "Cannot apply $bit to a value of non-integral type.{%s} has the field %s "
                      "of non-integer type %s",
                      id, e->key ? e->key : "", msim_type_name(e->type));
            bson_free(id);
            return false;
        }
        msim_mnode_value(e, &tmp, &cur);
        bits_apply(leaf, &cur, e);
        bson_destroy(&tmp);
        return true;
    default:
        return true;
    }
}

msim_mnode_t *
msim_leaf_new_value(actx_t *a, const unode_t *leaf, mg_error_t *error)
{
    msim_mnode_t *v = NULL;
    (void)a;
    (void)error;
    switch (leaf->op) {
    case OP_SET:
    case OP_SET_ON_INSERT:
    case OP_MIN:
    case OP_MAX:
    case OP_INC:
        return msim_mnode_from_iter(NULL, &leaf->arg);
    case OP_MUL: {
        /* a missing field becomes the argument times int32 0 (so -0.0 for a negative double) */
        bson_t z = BSON_INITIALIZER;
        bson_iter_t zi;
        BSON_APPEND_INT32(&z, "z", 0);
        bson_iter_init_find(&zi, &z, "z");
        v = msim_mnode_new(NULL, BSON_TYPE_INT32);
        arith(true, &leaf->arg, &zi, v);
        bson_destroy(&z);
        return v;
    }
    case OP_PUSH:
    case OP_ADD_TO_SET:
        v = msim_mnode_new(NULL, BSON_TYPE_ARRAY);
        if (leaf->op == OP_PUSH)
            push_values(leaf, v);
        else
            add_to_set(leaf, v);
        return v;
    case OP_CURRENT_DATE:
        v = msim_mnode_new(NULL, BSON_TYPE_DATE_TIME);
        current_date(leaf, v);
        return v;
    case OP_BIT:
        v = msim_mnode_new(NULL, BSON_TYPE_INT32);
        bits_apply(leaf, NULL, v);
        return v;
    default:
        return NULL; /* $unset, $pull, $pullAll, $pop: nothing to create */
    }
}
