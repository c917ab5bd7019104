/*
 * tests/mongosim/msim_shardkey.c - shard keys: patterns ({a: 1, b: 1} or
 * {a: "hashed"}), the key of a document, MongoDB's hashed-index hash (md5
 * over the canonical type and value, numbers squashed to 64-bit integers,
 * the first 8 digest bytes little-endian), key comparison, chunk ranges and
 * which ranges a shard owns. Pure functions on BSON.
 */
#include "msim.h"

#include <math.h>
#include <openssl/evp.h>
#include <string.h>

/* canonical_type is MongoDB's canonical type number of a BSON type: its sort
 * class, except the end-of-object element, 0 (msim_type_rank sorts a missing
 * value as null). */
static int32_t
canonical_type(bson_type_t t)
{
    return t == BSON_TYPE_EOD ? 0 : msim_type_rank(t);
}

static void
add_le32(EVP_MD_CTX *md, int32_t v)
{
    uint8_t b[4];
    uint32_t u = (uint32_t)v;
    for (int i = 0; i < 4; i++)
        b[i] = (uint8_t)(u >> (8 * i));
    EVP_DigestUpdate(md, b, 4);
}

static void
add_le64(EVP_MD_CTX *md, int64_t v)
{
    uint8_t b[8];
    uint64_t u = (uint64_t)v;
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(u >> (8 * i));
    EVP_DigestUpdate(md, b, 8);
}

/* number_for_hash squashes a number to int64 as the server does: truncation,
 * NaN as 0, saturation at the int64 bounds. */
static int64_t
number_for_hash(const bson_iter_t *it)
{
    double d;
    switch (bson_iter_type(it)) {
    case BSON_TYPE_INT32:
        return bson_iter_int32(it);
    case BSON_TYPE_INT64:
        return bson_iter_int64(it);
    default:
        d = msim_as_double(it);
        if (isnan(d))
            return 0;
        if (d >= 9223372036854775807.0)
            return INT64_MAX;
        if (d <= -9223372036854775808.0)
            return INT64_MIN;
        return (int64_t)d;
    }
}

static void hash_element(EVP_MD_CTX *md, const bson_iter_t *it, bool with_name, int depth);

/* hash_document hashes each element of a subdocument, then an end marker. */
static void
hash_document(EVP_MD_CTX *md, const uint8_t *data, uint32_t len, int depth)
{
    bson_iter_t sub;
    if (depth < 200 && bson_iter_init_from_data(&sub, data, len))
        while (bson_iter_next(&sub))
            hash_element(md, &sub, true, depth + 1);
    add_le32(md, 0); /* the end-of-object element: canonical type 0, no name */
}

static void
hash_element(EVP_MD_CTX *md, const bson_iter_t *it, bool with_name, int depth)
{
    bson_type_t t = bson_iter_type(it);
    uint32_t len = 0;
    const uint8_t *data;
    add_le32(md, canonical_type(t));
    if (with_name)
        EVP_DigestUpdate(md, bson_iter_key(it), strlen(bson_iter_key(it)) + 1);
    switch (t) {
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
    case BSON_TYPE_DECIMAL128:
        add_le64(md, number_for_hash(it));
        break;
    case BSON_TYPE_DOCUMENT:
        bson_iter_document(it, &len, &data);
        hash_document(md, data, len, depth);
        break;
    case BSON_TYPE_ARRAY:
        bson_iter_array(it, &len, &data);
        hash_document(md, data, len, depth);
        break;
    case BSON_TYPE_CODEWSCOPE: {
        uint32_t clen = 0, slen = 0;
        const char *code = bson_iter_codewscope(it, &clen, &slen, &data);
        /* the code with its terminator, then the scope */
        EVP_DigestUpdate(md, code, clen + 1);
        hash_document(md, data, slen, depth);
        break;
    }
    case BSON_TYPE_NULL:
    case BSON_TYPE_UNDEFINED:
    case BSON_TYPE_MINKEY:
    case BSON_TYPE_MAXKEY:
        break; /* no value bytes */
    default:
        /* the value bytes as stored in the element (strings with their
         * length and terminator, binary with length and subtype, ...) */
        if (it->next_off > it->d1)
            EVP_DigestUpdate(md, it->raw + it->d1, it->next_off - it->d1);
        break;
    }
}

int64_t
msim_hash64(const bson_iter_t *it)
{
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int dlen = 0;
    uint64_t v = 0;
    if (md == NULL)
        abort();
    EVP_DigestInit_ex(md, EVP_md5(), NULL);
    add_le32(md, 0); /* the default hash seed */
    hash_element(md, it, false, 0);
    EVP_DigestFinal_ex(md, digest, &dlen);
    EVP_MD_CTX_free(md);
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | digest[i];
    return (int64_t)v;
}

bool
msim_shardkey_pattern_valid(const bson_t *pattern, bool *hashed, mg_error_t *error)
{
    bson_iter_t it;
    int n = 0, nhashed = 0;
    *hashed = false;
    if (!bson_iter_init(&it, pattern))
        return msim_fail(error, MSIM_E_BAD_VALUE, "invalid shard key");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        n++;
        if (k[0] == '\0' || k[0] == '$' || strstr(k, "..") != NULL)
            return msim_fail(error, MSIM_E_BAD_VALUE, "invalid shard key field \"%s\"", k);
        if (BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), "hashed") == 0) {
            nhashed++;
        } else if (!(msim_is_number(bson_iter_type(&it)) && msim_as_double(&it) == 1)) {
            return msim_fail(error, MSIM_E_BAD_VALUE,
                             "Unsupported shard key pattern. Pattern must either be a single "
                             "hashed field, or a list of ascending fields");
        }
    }
    if (n == 0)
        return msim_fail(error, MSIM_E_BAD_VALUE, "shard key pattern is empty");
    if (nhashed > 1 || (nhashed == 1 && n > 1))
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "mongosim supports a single hashed field or ascending fields as shard "
                         "key");
    *hashed = nhashed == 1;
    return true;
}

/* value_at finds a dotted path through documents; false when missing or through an array. */
static bool
value_at(const uint8_t *data, uint32_t len, const char *path, bson_iter_t *out, bool *through_array)
{
    bson_iter_t it, sub;
    *through_array = false;
    if (!bson_iter_init_from_data(&it, data, len))
        return false;
    if (!bson_iter_find_descendant(&it, path, &sub)) {
        /* an array on the way makes the key invalid */
        const char *dot = strchr(path, '.');
        if (dot != NULL) {
            char head[256];
            bson_iter_t h;
            snprintf(head, sizeof head, "%.*s", (int)(dot - path), path);
            if (bson_iter_init_from_data(&h, data, len) && bson_iter_find(&h, head) &&
                BSON_ITER_HOLDS_ARRAY(&h))
                *through_array = true;
        }
        return false;
    }
    *out = sub;
    return true;
}

bool
msim_shardkey_of(const bson_t *pattern, const uint8_t *data, uint32_t len, bson_t *out,
                 mg_error_t *error)
{
    bson_iter_t p;
    bson_iter_init(&p, pattern);
    while (bson_iter_next(&p)) {
        const char *field = bson_iter_key(&p);
        bool hashed = BSON_ITER_HOLDS_UTF8(&p), arr;
        bson_iter_t v;
        if (value_at(data, len, field, &v, &arr)) {
            if (BSON_ITER_HOLDS_ARRAY(&v) || BSON_ITER_HOLDS_REGEX(&v) ||
                bson_iter_type(&v) == BSON_TYPE_UNDEFINED)
                return msim_fail(error, 61,
                                 "Shard key cannot contain an array, regex or undefined value: "
                                 "field \"%s\"",
                                 field);
            if (hashed)
                bson_append_int64(out, field, -1, msim_hash64(&v));
            else
                msim_append_iter(out, field, -1, &v);
        } else {
            if (arr)
                return msim_fail(error, 61, "Shard key cannot contain an array: field \"%s\"",
                                 field);
            /* a missing shard key field is null (hashed: the hash of null) */
            if (hashed) {
                bson_t n = BSON_INITIALIZER;
                bson_iter_t ni;
                BSON_APPEND_NULL(&n, "v");
                bson_iter_init_find(&ni, &n, "v");
                bson_append_int64(out, field, -1, msim_hash64(&ni));
                bson_destroy(&n);
            } else {
                bson_append_null(out, field, -1);
            }
        }
    }
    return true;
}

void
msim_document_key(const bson_t *pattern, const uint8_t *data, uint32_t len, const bson_iter_t *id,
                  bson_t *out)
{
    /* the shard key fields (values as stored, not hashed), then _id */
    bson_iter_t p;
    bool id_in_key = false;
    if (pattern != NULL) {
        bson_iter_init(&p, pattern);
        while (bson_iter_next(&p)) {
            bson_iter_t v;
            bool arr;
            if (strcmp(bson_iter_key(&p), "_id") == 0) {
                id_in_key = true;
                msim_append_iter(out, "_id", 3, id);
            } else if (data != NULL && value_at(data, len, bson_iter_key(&p), &v, &arr)) {
                msim_append_iter(out, bson_iter_key(&p), -1, &v);
            }
        }
    }
    if (!id_in_key)
        msim_append_iter(out, "_id", 3, id);
}

int
msim_shardkey_cmp(const bson_t *a, const bson_t *b)
{
    bson_iter_t ia, ib;
    bson_iter_init(&ia, a);
    bson_iter_init(&ib, b);
    for (;;) {
        bool na = bson_iter_next(&ia), nb = bson_iter_next(&ib);
        int c;
        if (!na || !nb)
            return na == nb ? 0 : na ? 1 : -1;
        c = msim_cmp(&ia, &ib);
        if (c != 0)
            return c;
    }
}

bool
msim_range_contains(const bson_t *min, const bson_t *max, const bson_t *key)
{
    return msim_shardkey_cmp(min, key) <= 0 && msim_shardkey_cmp(key, max) < 0;
}

bool
msim_owned_contains(const msim_owned_t *o, const uint8_t *data, uint32_t len)
{
    bson_t key = BSON_INITIALIZER;
    bool in = false;
    if (o == NULL)
        return true;
    if (msim_shardkey_of(o->pattern, data, len, &key, NULL))
        for (size_t i = 0; i < o->n && !in; i++)
            in = msim_range_contains(o->min[i], o->max[i], &key);
    bson_destroy(&key);
    return in;
}

void
msim_owned_free(msim_owned_t *o)
{
    if (o == NULL)
        return;
    for (size_t i = 0; i < o->n; i++) {
        bson_destroy(o->min[i]);
        bson_destroy(o->max[i]);
    }
    free(o->min);
    free(o->max);
    if (o->pattern)
        bson_destroy(o->pattern);
    free(o);
}
