/*
 * schema/src/schema_parse.c - the reverse mapping: JSON text (the renderer's
 * output, or the same after a trip through jsonb) -> BSON.
 *
 * Two passes. yajl first turns the text into an intermediate BSON tree that
 * is just the JSON (objects, arrays, strings with their lengths, numbers kept
 * as their text in CODE elements, which JSON cannot produce otherwise). The
 * second pass walks that tree and can look at a whole object's key set
 * before deciding whether it is a wrapper, which jsonb's key reordering
 * requires.
 */
#include "schema_internal.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <yajl/yajl_parse.h>

/* JSON nesting the renderer can produce: wrappers add levels, {"$fieldPairs":
 * [[key, value]]} three per document. */
#define JSON_MAX_DEPTH (3 * MG_SCHEMA_MAX_DEPTH + 8)

/* Longest number text accepted (the renderer writes at most ~350). */
#define NUMBER_MAX 1100

/* ------------------------------------------------------------------------
 * Pass 1: JSON -> intermediate tree
 * ------------------------------------------------------------------------ */

typedef struct {
    bson_t *root;
    bson_t child[JSON_MAX_DEPTH + 1];
    bool is_array[JSON_MAX_DEPTH + 1];
    uint32_t count[JSON_MAX_DEPTH + 1];
    int top;          /* index of the open container, -1 before the root opens */
    bool value_mode;  /* the root holds one value under "v" */
    bool root_closed; /* the top-level object has ended */
    char *key;        /* pending object key, NUL-terminated */
    size_t key_len;
    size_t key_cap;
    char *scratch; /* NUL-terminated copy of a number */
    size_t scratch_cap;
    mg_error_t *error;
    bool failed; /* error set by a callback */
} build_t;

/* build_fail records an error from a callback and stops yajl. */
static int
build_fail(build_t *b, int32_t code, const char *fmt, const char *arg)
{
    mg_error_set(b->error, MG_ERROR_DOMAIN_CORE, code, fmt, arg);
    b->failed = true;
    return 0;
}

/* too_large stops the parse when the tree would pass BSON's 2 GB limit. */
static int
too_large(build_t *b)
{
    return build_fail(b, MG_ERROR_CODE_LIMIT, "could not parse JSON: %s", "document too large");
}

/* cur returns the open container. */
static bson_t *
cur(build_t *b)
{
    return b->top == 0 ? b->root : &b->child[b->top];
}

/*
 * next_key yields the key of the next value in the open container: the
 * pending object key or the array index. Returns false (error set) when no
 * container is open.
 */
static bool
next_key(build_t *b, const char **key, int *klen, char *index_buf)
{
    if (b->top < 0) {
        build_fail(b, MG_ERROR_CODE_PARSE, "could not parse JSON: %s",
                   "the top-level value is not an object");
        return false;
    }
    if (b->is_array[b->top]) {
        size_t n = bson_uint32_to_string(b->count[b->top]++, key, index_buf, 16);

        *klen = (int)n;
        return true;
    }
    *key = b->key;
    *klen = (int)b->key_len;
    return true;
}

static int
cb_null(void *ctx)
{
    build_t *b = ctx;
    const char *key;
    int klen;
    char idx[16];

    if (!next_key(b, &key, &klen, idx))
        return 0;
    if (!bson_append_null(cur(b), key, klen))
        return too_large(b);
    return 1;
}

static int
cb_boolean(void *ctx, int v)
{
    build_t *b = ctx;
    const char *key;
    int klen;
    char idx[16];

    if (!next_key(b, &key, &klen, idx))
        return 0;
    if (!bson_append_bool(cur(b), key, klen, v != 0))
        return too_large(b);
    return 1;
}

static int
cb_number(void *ctx, const char *s, size_t len)
{
    build_t *b = ctx;
    const char *key;
    int klen;
    char idx[16];

    if (len > NUMBER_MAX)
        return build_fail(b, MG_ERROR_CODE_PARSE, "could not parse JSON: %s",
                          "number text too long");
    if (!next_key(b, &key, &klen, idx))
        return 0;
    memcpy(b->scratch, s, len);
    b->scratch[len] = '\0';
    if (!bson_append_code(cur(b), key, klen, b->scratch))
        return too_large(b);
    return 1;
}

static int
cb_string(void *ctx, const unsigned char *s, size_t len)
{
    build_t *b = ctx;
    const char *key;
    int klen;
    char idx[16];

    if (len > INT32_MAX - 64)
        return build_fail(b, MG_ERROR_CODE_LIMIT, "could not parse JSON: %s", "string too long");
    if (!next_key(b, &key, &klen, idx))
        return 0;
    if (!bson_append_utf8(cur(b), key, klen, (const char *)s, (int)len))
        return too_large(b);
    return 1;
}

static int
cb_map_key(void *ctx, const unsigned char *s, size_t len)
{
    build_t *b = ctx;

    if (memchr(s, '\0', len) != NULL)
        return build_fail(b, MG_ERROR_CODE_PARSE, "could not parse JSON: %s",
                          "an object key holds U+0000");
    if (len + 1 > b->key_cap) {
        size_t cap = len + 64;
        char *grown = realloc(b->key, cap);

        if (grown == NULL)
            return build_fail(b, MG_ERROR_CODE_LIMIT, "could not parse JSON: %s", "out of memory");
        b->key = grown;
        b->key_cap = cap;
    }
    memcpy(b->key, s, len);
    b->key[len] = '\0';
    b->key_len = len;
    return 1;
}

/* open_container starts an object or array under the next key. */
static int
open_container(build_t *b, bool is_array)
{
    const char *key;
    int klen;
    char idx[16];
    bson_t *parent;

    if (b->top < 0 && !is_array && !b->value_mode && !b->root_closed) {
        b->top = 0; /* the top-level object is the root itself */
        b->is_array[0] = false;
        return 1;
    }
    if (!next_key(b, &key, &klen, idx))
        return 0;
    if (b->top + 1 > JSON_MAX_DEPTH)
        return build_fail(b, MG_ERROR_CODE_LIMIT, "could not parse JSON: %s", "nested too deeply");
    parent = cur(b);
    b->top++;
    b->is_array[b->top] = is_array;
    b->count[b->top] = 0;
    if (is_array ? !bson_append_array_begin(parent, key, klen, &b->child[b->top])
                 : !bson_append_document_begin(parent, key, klen, &b->child[b->top])) {
        b->top--;
        return too_large(b);
    }
    return 1;
}

/* close_container ends the open object or array. */
static int
close_container(build_t *b)
{
    bson_t *child;

    if (b->top == 0 && !b->value_mode) {
        b->top = -1;
        b->root_closed = true;
        return 1;
    }
    child = &b->child[b->top];
    b->top--;
    if (b->is_array[b->top + 1])
        bson_append_array_end(cur(b), child);
    else
        bson_append_document_end(cur(b), child);
    return 1;
}

static int
cb_start_map(void *ctx)
{
    return open_container(ctx, false);
}

static int
cb_end_map(void *ctx)
{
    return close_container(ctx);
}

static int
cb_start_array(void *ctx)
{
    build_t *b = ctx;

    if (b->top < 0)
        return build_fail(b, MG_ERROR_CODE_PARSE, "could not parse JSON: %s",
                          "the top-level value is not an object");
    return open_container(b, true);
}

static int
cb_end_array(void *ctx)
{
    return close_container(ctx);
}

static const yajl_callbacks callbacks = {
    cb_null,      cb_boolean, NULL,       NULL,           cb_number,    cb_string,
    cb_start_map, cb_map_key, cb_end_map, cb_start_array, cb_end_array,
};

/*
 * build_tree parses json into a new intermediate tree (caller destroys).
 * value_mode: any JSON value, stored under key "v".
 */
static bson_t *
build_tree(const char *json, size_t len, bool value_mode, mg_error_t *error)
{
    build_t *b = calloc(1, sizeof(*b));
    yajl_handle h = NULL;
    bson_t *tree = NULL;
    yajl_status st;

    if (b == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                     "could not parse JSON: out of memory");
        return NULL;
    }
    b->root = bson_new();
    b->error = error;
    b->value_mode = value_mode;
    b->top = -1;
    b->scratch = malloc(NUMBER_MAX + 1);
    if (value_mode) {
        b->top = 0;
        b->is_array[0] = false;
        cb_map_key(b, (const unsigned char *)"v", 1);
    }
    h = yajl_alloc(&callbacks, NULL, b);
    if (h == NULL || b->scratch == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                     "could not parse JSON: out of memory");
        goto done;
    }
    st = yajl_parse(h, (const unsigned char *)json, len);
    if (st == yajl_status_ok)
        st = yajl_complete_parse(h);
    if (st != yajl_status_ok) {
        if (!b->failed) {
            unsigned char *msg = yajl_get_error(h, 0, (const unsigned char *)json, len);

            mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                         "could not parse JSON: %s (at byte %zu)",
                         msg != NULL ? (const char *)msg : "syntax error",
                         yajl_get_bytes_consumed(h));
            if (msg != NULL)
                yajl_free_error(h, msg);
        }
        goto done;
    }
    if (value_mode ? bson_count_keys(b->root) != 1 : !b->root_closed) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE, "could not parse JSON: %s",
                     value_mode ? "no value" : "the top-level value is not an object");
        goto done;
    }
    tree = b->root;
    b->root = NULL;
done:
    if (h != NULL)
        yajl_free(h);
    /* containers left open by a failed parse share the root's storage */
    bson_destroy(b->root);
    free(b->key);
    free(b->scratch);
    free(b);
    return tree;
}

/* ------------------------------------------------------------------------
 * Pass 2: intermediate tree -> BSON
 * ------------------------------------------------------------------------ */

typedef struct {
    mg_error_t *error;
    uint32_t depth;
    const char *path[JSON_MAX_DEPTH + 2];
} conv_t;

static bool convert_value(conv_t *c, const bson_iter_t *it, bson_t *dst, const char *key, int klen);

/* bad fails naming the current path. */
static bool
bad(conv_t *c, int32_t code, const char *what)
{
    char path[256];
    size_t n = 0;
    uint32_t i;

    path[0] = '\0';
    for (i = 1; i <= c->depth && i < JSON_MAX_DEPTH + 2; i++) {
        int w = snprintf(path + n, sizeof(path) - n, "%s%s", i > 1 ? "." : "",
                         c->path[i] != NULL ? c->path[i] : "");

        if (w < 0 || (size_t)w >= sizeof(path) - n)
            break;
        n += (size_t)w;
    }
    return mg_error_set(c->error, MG_ERROR_DOMAIN_CORE, code,
                        "could not map JSON to BSON: %s at \"%s\"", what, path);
}

/* convert_members appends every member of the object obj (a tree document). */
static bool
convert_members(conv_t *c, const bson_iter_t *obj, bson_t *dst)
{
    bson_iter_t it;

    if (c->depth >= JSON_MAX_DEPTH)
        return bad(c, MG_ERROR_CODE_LIMIT, "nested too deeply");
    if (!bson_iter_recurse(obj, &it))
        return bad(c, MG_ERROR_CODE_PARSE, "corrupt tree");
    c->depth++;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);

        c->path[c->depth] = key;
        if (!convert_value(c, &it, dst, key, (int)strlen(key)))
            return false;
    }
    c->depth--;
    return true;
}

/*
 * convert_pairs appends the members of a {"$fieldPairs": [[key, value], ...]}
 * form (pairs: the tree array) to dst in order, duplicates included.
 */
static bool
convert_pairs(conv_t *c, const bson_iter_t *pairs, bson_t *dst)
{
    bson_iter_t it;

    if (c->depth >= JSON_MAX_DEPTH)
        return bad(c, MG_ERROR_CODE_LIMIT, "nested too deeply");
    if (!BSON_ITER_HOLDS_ARRAY(pairs) || !bson_iter_recurse(pairs, &it))
        return bad(c, MG_ERROR_CODE_PARSE, MG_SCHEMA_FIELD_PAIRS " is not an array of field pairs");
    c->depth++;
    while (bson_iter_next(&it)) {
        bson_iter_t pair, k, v;
        const char *key;
        uint32_t klen;

        c->path[c->depth] = bson_iter_key(&it);
        if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &pair) ||
            !bson_iter_next(&pair) || !BSON_ITER_HOLDS_UTF8(&pair))
            return bad(c, MG_ERROR_CODE_PARSE, "a field pair is not [key string, value]");
        k = pair;
        if (!bson_iter_next(&pair))
            return bad(c, MG_ERROR_CODE_PARSE, "a field pair is not [key string, value]");
        v = pair;
        if (bson_iter_next(&pair))
            return bad(c, MG_ERROR_CODE_PARSE, "a field pair has more than two items");
        key = bson_iter_utf8(&k, &klen);
        if (memchr(key, '\0', klen) != NULL)
            return bad(c, MG_ERROR_CODE_PARSE, "a field pair's key holds U+0000");
        c->path[c->depth] = key;
        if (!convert_value(c, &v, dst, key, (int)klen))
            return false;
    }
    c->depth--;
    return true;
}

/*
 * pairs_member positions *pairs on the "$fieldPairs" member of obj (a tree
 * document) when every member is "$fieldPairs" (once) or, with id_too,
 * "_id" (once): the top-level and scope form of a document with duplicate
 * keys (the "_id" beside it is a copy for SQL and is not read).
 */
static bool
pairs_member(const bson_iter_t *obj, bool id_too, bson_iter_t *pairs)
{
    bson_iter_t it;
    int seen_pairs = 0, seen_id = 0;

    if (!bson_iter_recurse(obj, &it))
        return false;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);

        if (strcmp(key, MG_SCHEMA_FIELD_PAIRS) == 0) {
            *pairs = it;
            seen_pairs++;
        } else if (id_too && strcmp(key, "_id") == 0) {
            seen_id++;
        } else {
            return false;
        }
    }
    return seen_pairs == 1 && seen_id <= 1;
}

/* convert_object appends the members of a top-level document or scope (obj). */
static bool
convert_object(conv_t *c, const bson_iter_t *obj, bool top, bson_t *dst)
{
    bson_iter_t pairs;

    if (pairs_member(obj, top, &pairs))
        return convert_pairs(c, &pairs, dst);
    return convert_members(c, obj, dst);
}

/* parse_i64 reads an optionally negative decimal integer; false on overflow or junk. */
static bool
parse_i64(const char *s, size_t len, int64_t *v)
{
    size_t i = 0;
    bool neg = false;
    uint64_t acc = 0;

    if (len > 0 && s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == len || len - i > 19)
        return false;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        acc = acc * 10 + (uint64_t)(s[i] - '0');
    }
    if (neg) {
        if (acc > (uint64_t)INT64_MAX + 1)
            return false;
        *v = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
    } else {
        if (acc > (uint64_t)INT64_MAX)
            return false;
        *v = (int64_t)acc;
    }
    return true;
}

/* code_i64 reads a tree number (CODE element) that must be an integer. */
static bool
code_i64(const bson_iter_t *it, int64_t *v)
{
    uint32_t len;
    const char *text;

    if (!BSON_ITER_HOLDS_CODE(it))
        return false;
    text = bson_iter_code(it, &len);
    return parse_i64(text, strlen(text), v);
}

/* parse_double reads decimal text (no hex, inf or nan spellings) fully. */
static bool
parse_double(const char *s, size_t len, double *v)
{
    char buf[NUMBER_MAX + 1];
    char *end;

    if (len == 0 || len > NUMBER_MAX || strspn(s, "+-.0123456789eE") < len)
        return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    *v = strtod(buf, &end);
    /* ERANGE on underflow still gives the correctly rounded subnormal or 0 */
    return end == buf + len && isfinite(*v);
}

/* parse_hex reads exactly n hex digits into *v. */
static bool
parse_hex(const char *s, size_t n, uint64_t *v)
{
    size_t i;

    *v = 0;
    for (i = 0; i < n; i++) {
        char ch = s[i];
        unsigned d;

        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'a' && ch <= 'f')
            d = (unsigned)(ch - 'a' + 10);
        else if (ch >= 'A' && ch <= 'F')
            d = (unsigned)(ch - 'A' + 10);
        else
            return false;
        *v = *v << 4 | d;
    }
    return true;
}

/* append_number appends a plain JSON number by the documented rule. */
static bool
append_number(conv_t *c, const char *text, bson_t *dst, const char *key, int klen)
{
    size_t len = strlen(text);
    int64_t i;
    double d;

    if (strpbrk(text, ".eE") == NULL && parse_i64(text, len, &i)) {
        if (i >= INT32_MIN && i <= INT32_MAX)
            return bson_append_int32(dst, key, klen, (int32_t)i) ||
                   bad(c, MG_ERROR_CODE_LIMIT, "document too large");
        return bson_append_int64(dst, key, klen, i) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    }
    if (!parse_double(text, len, &d))
        return bad(c, MG_ERROR_CODE_PARSE, "number out of range");
    return bson_append_double(dst, key, klen, d) ||
           bad(c, MG_ERROR_CODE_LIMIT, "document too large");
}

/* only_member returns true when obj (a tree document) has exactly one member
 * named name; *member is positioned on it. */
static bool
only_member(const bson_iter_t *obj, const char *name, bson_iter_t *member)
{
    bson_iter_t it;

    if (!BSON_ITER_HOLDS_DOCUMENT(obj) || !bson_iter_recurse(obj, &it) || !bson_iter_next(&it) ||
        strcmp(bson_iter_key(&it), name) != 0)
        return false;
    *member = it;
    return !bson_iter_next(&it);
}

/*
 * two_members positions a and b on the members named na and nb of obj (a
 * tree document with exactly those two members, any order).
 */
static bool
two_members(const bson_iter_t *obj, const char *na, const char *nb, bson_iter_t *a, bson_iter_t *b)
{
    bson_iter_t it;
    bool seen_a = false, seen_b = false;
    int n = 0;

    if (!BSON_ITER_HOLDS_DOCUMENT(obj) || !bson_iter_recurse(obj, &it))
        return false;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);

        n++;
        if (strcmp(k, na) == 0 && !seen_a) {
            *a = it;
            seen_a = true;
        } else if (strcmp(k, nb) == 0 && !seen_b) {
            *b = it;
            seen_b = true;
        } else {
            return false;
        }
    }
    return n == 2 && seen_a && seen_b;
}

/*
 * base64_bytes decodes len characters of canonical padded base64 into a
 * malloc'd buffer (caller frees; its length in *n), or returns NULL when the
 * text is not the encoding of its bytes or memory runs out.
 */
static uint8_t *
base64_bytes(const char *b64, uint32_t len, uint32_t *n)
{
    mg_buf_t buf;

    mg_buf_init(&buf, (size_t)len / 4 * 3 + 1);
    if (!mg_base64_decode_canonical(b64, len, &buf, NULL)) {
        mg_buf_cleanup(&buf);
        return NULL;
    }
    *n = (uint32_t)buf.len;
    return (uint8_t *)buf.data; /* steal: malloc'd by the buffer (never NULL once reserved) */
}

/*
 * string_slot reads a string-valued slot: a JSON string or a
 * {"$stringBase64": ...} escape. *owned receives malloc'd bytes to free
 * (NULL when *s points into the tree).
 */
static bool
string_slot(const bson_iter_t *v, const char **s, uint32_t *len, uint8_t **owned)
{
    bson_iter_t m;

    *owned = NULL;
    if (BSON_ITER_HOLDS_UTF8(v)) {
        *s = bson_iter_utf8(v, len);
        return true;
    }
    if (only_member(v, "$stringBase64", &m) && BSON_ITER_HOLDS_UTF8(&m)) {
        uint32_t b64len;
        const char *b64 = bson_iter_utf8(&m, &b64len);
        uint8_t *bytes = base64_bytes(b64, b64len, len);

        if (bytes == NULL)
            return false;
        *owned = bytes;
        *s = (const char *)bytes;
        return true;
    }
    return false;
}

/* tree_oid reads a {"$oid": "<24 hex>"} tree object. */
static bool
tree_oid(const bson_iter_t *v, bson_oid_t *oid)
{
    bson_iter_t m;
    uint32_t len;
    const char *hex;

    if (!only_member(v, "$oid", &m) || !BSON_ITER_HOLDS_UTF8(&m))
        return false;
    hex = bson_iter_utf8(&m, &len);
    if (len != 24 || !bson_oid_is_valid(hex, 24))
        return false;
    bson_oid_init_from_string(oid, hex);
    return true;
}

/* append_raw appends a hand-built element, failing with a path on overflow. */
static bool
append_raw(conv_t *c, bson_t *dst, bson_type_t type, const char *key, int klen,
           const uint8_t *payload, size_t plen)
{
    return mg_schema__append_raw(dst, type, key, (size_t)klen, payload, plen) ||
           bad(c, MG_ERROR_CODE_LIMIT, "document too large");
}

/* put_le32 writes v little-endian. */
static void
put_le32(uint8_t *p, uint32_t v)
{
    v = BSON_UINT32_TO_LE(v);
    memcpy(p, &v, 4);
}

/* string_payload builds [int32 len+1][bytes][NUL] (+ extra bytes) for raw elements. */
static uint8_t *
string_payload(const char *s, uint32_t len, const uint8_t *extra, size_t extra_len, size_t *plen)
{
    uint8_t *p = malloc(4 + (size_t)len + 1 + extra_len);

    if (p == NULL)
        return NULL;
    put_le32(p, len + 1);
    memcpy(p + 4, s, len);
    p[4 + len] = 0;
    if (extra_len > 0)
        memcpy(p + 5 + len, extra, extra_len);
    *plen = 4 + (size_t)len + 1 + extra_len;
    return p;
}

/* decode_double reads the string of a $numberDouble wrapper. */
static bool
decode_double(const char *s, uint32_t len, double *d)
{
    uint64_t bits;

    if (len == 3 && memcmp(s, "NaN", 3) == 0) {
        bits = MG_SCHEMA_CANONICAL_NAN_BITS;
        memcpy(d, &bits, sizeof(bits));
        return true;
    }
    if (len == 8 && memcmp(s, "Infinity", 8) == 0) {
        *d = INFINITY;
        return true;
    }
    if (len == 9 && memcmp(s, "-Infinity", 9) == 0) {
        *d = -INFINITY;
        return true;
    }
    if (len == 21 && memcmp(s, "bits:", 5) == 0 && parse_hex(s + 5, 16, &bits)) {
        memcpy(d, &bits, sizeof(bits));
        return true;
    }
    return parse_double(s, len, d);
}

/*
 * decode_document_wrapper appends the document a {"$literal": {...}} or
 * {"$fieldPairs": [...]} wrapper holds (v: the wrapper's value).
 */
static bool
decode_document_wrapper(conv_t *c, mg_schema_wrap_t kind, const bson_iter_t *v, bson_t *dst,
                        const char *key, int klen)
{
    bson_t child;
    bool ok;

    if (kind == MG_SCHEMA_WRAP_LITERAL && !BSON_ITER_HOLDS_DOCUMENT(v))
        return bad(c, MG_ERROR_CODE_PARSE, "$literal value is not an object");
    if (!bson_append_document_begin(dst, key, klen, &child))
        return bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    if (kind == MG_SCHEMA_WRAP_FIELD_PAIRS) {
        ok = convert_pairs(c, v, &child);
    } else {
        c->depth++;
        ok = convert_members(c, v, &child);
        c->depth--;
    }
    bson_append_document_end(dst, &child);
    return ok;
}

/* decode_wrapper appends the typed value a wrapper object stands for. */
static bool
decode_wrapper(conv_t *c, mg_schema_wrap_t kind, const bson_iter_t *obj, bson_t *dst,
               const char *key, int klen)
{
    bson_iter_t v, w, x;
    const char *s = NULL;
    uint32_t len = 0;
    uint8_t *owned = NULL, *payload = NULL;
    size_t plen = 0;
    bool ok = false;
    bson_oid_t oid;
    int64_t i64;

    /* single-key wrappers: v is the value */
    if (kind != MG_SCHEMA_WRAP_CODE_SCOPE) {
        bson_iter_recurse(obj, &v);
        bson_iter_next(&v);
        c->path[c->depth + 1] = bson_iter_key(&v);
    }
    switch (kind) {
    case MG_SCHEMA_WRAP_OID:
        if (!tree_oid(obj, &oid))
            return bad(c, MG_ERROR_CODE_PARSE, "$oid is not 24 hex digits");
        return bson_append_oid(dst, key, klen, &oid) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    case MG_SCHEMA_WRAP_SYMBOL:
        if (!string_slot(&v, &s, &len, &owned))
            return bad(c, MG_ERROR_CODE_PARSE, "$symbol is not a string");
        ok = bson_append_symbol(dst, key, klen, s, (int)len) ||
             bad(c, MG_ERROR_CODE_LIMIT, "document too large");
        break;
    case MG_SCHEMA_WRAP_INT32:
        if (!BSON_ITER_HOLDS_UTF8(&v) || (s = bson_iter_utf8(&v, &len)) == NULL ||
            !parse_i64(s, len, &i64) || i64 < INT32_MIN || i64 > INT32_MAX)
            return bad(c, MG_ERROR_CODE_PARSE, "$numberInt is not a 32-bit integer string");
        return bson_append_int32(dst, key, klen, (int32_t)i64) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    case MG_SCHEMA_WRAP_INT64:
        if (!BSON_ITER_HOLDS_UTF8(&v) || (s = bson_iter_utf8(&v, &len)) == NULL ||
            !parse_i64(s, len, &i64))
            return bad(c, MG_ERROR_CODE_PARSE, "$numberLong is not a 64-bit integer string");
        return bson_append_int64(dst, key, klen, i64) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    case MG_SCHEMA_WRAP_DOUBLE: {
        double d;

        if (!BSON_ITER_HOLDS_UTF8(&v) || (s = bson_iter_utf8(&v, &len)) == NULL ||
            !decode_double(s, len, &d))
            return bad(c, MG_ERROR_CODE_PARSE, "$numberDouble is not a double string");
        return bson_append_double(dst, key, klen, d) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    }
    case MG_SCHEMA_WRAP_DECIMAL: {
        bson_decimal128_t dec;
        uint64_t hi, lo;

        if (!BSON_ITER_HOLDS_UTF8(&v))
            return bad(c, MG_ERROR_CODE_PARSE, "$numberDecimal is not a string");
        s = bson_iter_utf8(&v, &len);
        if (len == 37 && memcmp(s, "bits:", 5) == 0 && parse_hex(s + 5, 16, &hi) &&
            parse_hex(s + 21, 16, &lo)) {
            dec.high = hi;
            dec.low = lo;
        } else if (!bson_decimal128_from_string_w_len(s, (int)len, &dec)) {
            return bad(c, MG_ERROR_CODE_PARSE, "$numberDecimal is not a decimal string");
        }
        return bson_append_decimal128(dst, key, klen, &dec) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    }
    case MG_SCHEMA_WRAP_BINARY: {
        uint32_t b64len, stlen, n;
        const char *b64, *st;
        uint64_t subtype;

        if (!two_members(&v, "base64", "subType", &w, &x) || !BSON_ITER_HOLDS_UTF8(&w) ||
            !BSON_ITER_HOLDS_UTF8(&x))
            return bad(c, MG_ERROR_CODE_PARSE, "$binary needs base64 and subType strings");
        b64 = bson_iter_utf8(&w, &b64len);
        st = bson_iter_utf8(&x, &stlen);
        if (stlen < 1 || stlen > 2 || !parse_hex(st, stlen, &subtype))
            return bad(c, MG_ERROR_CODE_PARSE, "$binary subType is not 1-2 hex digits");
        owned = base64_bytes(b64, b64len, &n);
        if (owned == NULL)
            return bad(c, MG_ERROR_CODE_PARSE, "$binary base64 is malformed");
        ok = bson_append_binary(dst, key, klen, (bson_subtype_t)subtype, owned, n) ||
             bad(c, MG_ERROR_CODE_LIMIT, "document too large");
        break;
    }
    case MG_SCHEMA_WRAP_CODE:
        if (!string_slot(&v, &s, &len, &owned))
            return bad(c, MG_ERROR_CODE_PARSE, "$code is not a string");
        payload = string_payload(s, len, NULL, 0, &plen);
        ok = payload != NULL ? append_raw(c, dst, BSON_TYPE_CODE, key, klen, payload, plen)
                             : bad(c, MG_ERROR_CODE_LIMIT, "out of memory");
        break;
    case MG_SCHEMA_WRAP_CODE_SCOPE: {
        bson_t scope;
        size_t total;

        two_members(obj, "$code", "$scope", &v, &w);
        c->path[c->depth + 1] = "$code";
        if (!string_slot(&v, &s, &len, &owned))
            return bad(c, MG_ERROR_CODE_PARSE, "$code is not a string");
        c->path[c->depth + 1] = "$scope";
        if (!BSON_ITER_HOLDS_DOCUMENT(&w)) {
            free(owned);
            return bad(c, MG_ERROR_CODE_PARSE, "$scope is not an object");
        }
        bson_init(&scope);
        c->depth++;
        ok = convert_object(c, &w, false, &scope);
        c->depth--;
        if (ok) {
            payload = string_payload(s, len, bson_get_data(&scope), scope.len, &plen);
            if (payload == NULL) {
                ok = bad(c, MG_ERROR_CODE_LIMIT, "out of memory");
            } else {
                /* code_w_s: int32 total, then the string, then the scope */
                uint8_t *full = malloc(plen + 4);

                total = plen + 4;
                if (full == NULL) {
                    ok = bad(c, MG_ERROR_CODE_LIMIT, "out of memory");
                } else {
                    put_le32(full, (uint32_t)total);
                    memcpy(full + 4, payload, plen);
                    ok = append_raw(c, dst, BSON_TYPE_CODEWSCOPE, key, klen, full, total);
                    free(full);
                }
            }
        }
        bson_destroy(&scope);
        break;
    }
    case MG_SCHEMA_WRAP_TIMESTAMP: {
        int64_t t, inc;

        if (!two_members(&v, "t", "i", &w, &x) || !code_i64(&w, &t) || !code_i64(&x, &inc) ||
            t < 0 || t > UINT32_MAX || inc < 0 || inc > UINT32_MAX)
            return bad(c, MG_ERROR_CODE_PARSE, "$timestamp needs unsigned 32-bit t and i");
        return bson_append_timestamp(dst, key, klen, (uint32_t)t, (uint32_t)inc) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    }
    case MG_SCHEMA_WRAP_REGEX: {
        uint32_t pl, ol;
        const char *pat, *opt;

        if (!two_members(&v, "pattern", "options", &w, &x) || !BSON_ITER_HOLDS_UTF8(&w) ||
            !BSON_ITER_HOLDS_UTF8(&x))
            return bad(c, MG_ERROR_CODE_PARSE, "$regularExpression needs pattern and options");
        pat = bson_iter_utf8(&w, &pl);
        opt = bson_iter_utf8(&x, &ol);
        if (memchr(pat, '\0', pl) != NULL || memchr(opt, '\0', ol) != NULL)
            return bad(c, MG_ERROR_CODE_PARSE, "$regularExpression holds U+0000");
        payload = malloc((size_t)pl + ol + 2);
        if (payload == NULL)
            return bad(c, MG_ERROR_CODE_LIMIT, "out of memory");
        memcpy(payload, pat, pl);
        payload[pl] = 0;
        memcpy(payload + pl + 1, opt, ol);
        payload[pl + 1 + ol] = 0;
        ok = append_raw(c, dst, BSON_TYPE_REGEX, key, klen, payload, (size_t)pl + ol + 2);
        break;
    }
    case MG_SCHEMA_WRAP_DBPOINTER:
        if (!two_members(&v, "$ref", "$id", &w, &x) || !string_slot(&w, &s, &len, &owned))
            return bad(c, MG_ERROR_CODE_PARSE, "$dbPointer needs $ref and $id");
        if (!tree_oid(&x, &oid)) {
            free(owned);
            return bad(c, MG_ERROR_CODE_PARSE, "$dbPointer $id is not an $oid");
        }
        payload = string_payload(s, len, oid.bytes, 12, &plen);
        ok = payload != NULL ? append_raw(c, dst, BSON_TYPE_DBPOINTER, key, klen, payload, plen)
                             : bad(c, MG_ERROR_CODE_LIMIT, "out of memory");
        break;
    case MG_SCHEMA_WRAP_DATE:
        if (BSON_ITER_HOLDS_UTF8(&v)) {
            s = bson_iter_utf8(&v, &len);
            if (!mg_schema__date_parse(s, len, &i64))
                return bad(c, MG_ERROR_CODE_PARSE, "$date is not an ISO-8601 UTC date");
        } else if (!only_member(&v, "$numberLong", &w) || !BSON_ITER_HOLDS_UTF8(&w) ||
                   (s = bson_iter_utf8(&w, &len)) == NULL || !parse_i64(s, len, &i64)) {
            return bad(c, MG_ERROR_CODE_PARSE, "$date is neither a date string nor $numberLong");
        }
        return bson_append_date_time(dst, key, klen, i64) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    case MG_SCHEMA_WRAP_MINKEY:
    case MG_SCHEMA_WRAP_MAXKEY:
        if (!BSON_ITER_HOLDS_CODE(&v) || strcmp(bson_iter_code(&v, &len), "1") != 0)
            return bad(c, MG_ERROR_CODE_PARSE, "$minKey/$maxKey value is not 1");
        return (kind == MG_SCHEMA_WRAP_MINKEY ? bson_append_minkey(dst, key, klen)
                                              : bson_append_maxkey(dst, key, klen)) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    case MG_SCHEMA_WRAP_UNDEFINED:
        if (!BSON_ITER_HOLDS_BOOL(&v) || !bson_iter_bool(&v))
            return bad(c, MG_ERROR_CODE_PARSE, "$undefined value is not true");
        return bson_append_undefined(dst, key, klen) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    case MG_SCHEMA_WRAP_STRING_BASE64:
        if (!string_slot(obj, &s, &len, &owned))
            return bad(c, MG_ERROR_CODE_PARSE, "$stringBase64 is not base64");
        ok = bson_append_utf8(dst, key, klen, s, (int)len) ||
             bad(c, MG_ERROR_CODE_LIMIT, "document too large");
        break;
    case MG_SCHEMA_WRAP_FIELD_PAIRS:
    case MG_SCHEMA_WRAP_LITERAL:
        return decode_document_wrapper(c, kind, &v, dst, key, klen);
    case MG_SCHEMA_WRAP_NONE:
    default:
        return bad(c, MG_ERROR_CODE_PARSE, "unknown wrapper");
    }
    free(owned);
    free(payload);
    return ok;
}

/* wrap_kind_of returns the wrapper a tree object stands for (NONE: a document). */
static bool
wrap_kind_of(conv_t *c, const bson_iter_t *obj, mg_schema_wrap_t *kind)
{
    bson_iter_t it;
    const char *k[3] = {NULL, NULL, NULL};
    int n = 0;

    *kind = MG_SCHEMA_WRAP_NONE;
    bson_iter_recurse(obj, &it);
    while (n < 3 && bson_iter_next(&it)) {
        k[n] = bson_iter_key(&it);
        if (k[n][0] != '$')
            return true;
        n++;
    }
    if (n == 0 || n == 3)
        return true;
    if (n == 2 && strcmp(k[0], k[1]) == 0) {
        if (mg_schema__wrap_kind(k[0], strlen(k[0]), NULL, 0) != MG_SCHEMA_WRAP_NONE)
            return bad(c, MG_ERROR_CODE_PARSE, "wrapper object with a duplicate key");
        return true;
    }
    *kind = mg_schema__wrap_kind(k[0], strlen(k[0]), k[1], k[1] != NULL ? strlen(k[1]) : 0);
    return true;
}

static bool
convert_value(conv_t *c, const bson_iter_t *it, bson_t *dst, const char *key, int klen)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_UTF8: {
        uint32_t len;
        const char *s = bson_iter_utf8(it, &len);

        return bson_append_utf8(dst, key, klen, s, (int)len) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    }
    case BSON_TYPE_CODE: {
        uint32_t len;

        return append_number(c, bson_iter_code(it, &len), dst, key, klen);
    }
    case BSON_TYPE_BOOL:
        return bson_append_bool(dst, key, klen, bson_iter_bool(it)) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    case BSON_TYPE_NULL:
        return bson_append_null(dst, key, klen) ||
               bad(c, MG_ERROR_CODE_LIMIT, "document too large");
    case BSON_TYPE_ARRAY: {
        bson_t child;
        bool ok;

        if (!bson_append_array_begin(dst, key, klen, &child))
            return bad(c, MG_ERROR_CODE_LIMIT, "document too large");
        ok = convert_members(c, it, &child);
        bson_append_array_end(dst, &child);
        return ok;
    }
    case BSON_TYPE_DOCUMENT: {
        mg_schema_wrap_t kind;
        bson_t child;
        bool ok;

        if (!wrap_kind_of(c, it, &kind))
            return false;
        if (kind != MG_SCHEMA_WRAP_NONE)
            return decode_wrapper(c, kind, it, dst, key, klen);
        if (!bson_append_document_begin(dst, key, klen, &child))
            return bad(c, MG_ERROR_CODE_LIMIT, "document too large");
        ok = convert_members(c, it, &child);
        bson_append_document_end(dst, &child);
        return ok;
    }
    default:
        return bad(c, MG_ERROR_CODE_PARSE, "corrupt tree");
    }
}

bson_t *
mg_schema_json_parse(const char *json, size_t len, mg_error_t *error)
{
    bson_t *tree = build_tree(json, len, false, error);
    bson_t *out = NULL;
    conv_t *c = NULL;
    bson_iter_t root;

    if (tree == NULL)
        return NULL;
    c = calloc(1, sizeof(*c));
    out = bson_new();
    if (c == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                     "could not parse JSON: out of memory");
        goto fail;
    }
    c->error = error;
    /* convert_members recurses from an iterator on a document value: wrap the root */
    {
        bson_t holder = BSON_INITIALIZER;

        bson_append_document(&holder, "", 0, tree);
        bson_iter_init(&root, &holder);
        bson_iter_next(&root);
        if (!convert_object(c, &root, true, out)) {
            bson_destroy(&holder);
            goto fail;
        }
        bson_destroy(&holder);
    }
    free(c);
    bson_destroy(tree);
    return out;
fail:
    free(c);
    bson_destroy(out);
    bson_destroy(tree);
    return NULL;
}

bool
mg_schema_json_append_value(bson_t *dst, const char *key, int key_len, const char *json, size_t len,
                            mg_error_t *error)
{
    bson_t *tree = build_tree(json, len, true, error);
    bson_t tmp = BSON_INITIALIZER;
    conv_t *c = NULL;
    bson_iter_t it;
    bool ok = false;

    if (tree == NULL)
        return false;
    if (key_len < 0)
        key_len = (int)strlen(key);
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                     "could not parse JSON: out of memory");
        goto done;
    }
    c->error = error;
    c->depth = 1;
    c->path[1] = key;
    bson_iter_init(&it, tree);
    bson_iter_next(&it);
    if (!convert_value(c, &it, &tmp, key, key_len))
        goto done;
    ok = bson_concat(dst, &tmp) || mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                                "could not append value: document too large");
done:
    free(c);
    bson_destroy(&tmp);
    bson_destroy(tree);
    return ok;
}
