/*
 * schema/src/schema_scan.c - the census scan of per-document facts, the
 * canonical form used for comparisons, and the names of fidelities and facts.
 */
#include "schema_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool
mg_schema_fidelity_parse(const char *text, mg_schema_fidelity_t *fidelity)
{
    if (text == NULL)
        return false;
    if (strcmp(text, "relaxed") == 0) {
        *fidelity = MG_SCHEMA_FIDELITY_RELAXED;
        return true;
    }
    if (strcmp(text, "exact") == 0) {
        *fidelity = MG_SCHEMA_FIDELITY_EXACT;
        return true;
    }
    return false;
}

const char *
mg_schema_fidelity_name(mg_schema_fidelity_t fidelity)
{
    return fidelity == MG_SCHEMA_FIDELITY_EXACT ? "exact" : "relaxed";
}

const char *
mg_schema_fact_name(uint32_t fact)
{
    switch (fact) {
    case MG_SCHEMA_FACT_NAN_INF:
        return "nan_or_infinity";
    case MG_SCHEMA_FACT_NEGATIVE_ZERO:
        return "negative_zero";
    case MG_SCHEMA_FACT_NUL_STRING:
        return "nul_in_string";
    case MG_SCHEMA_FACT_INVALID_UTF8:
        return "invalid_utf8_string";
    case MG_SCHEMA_FACT_DOLLAR_KEY:
        return "dollar_key";
    case MG_SCHEMA_FACT_DOTTED_KEY:
        return "dotted_key";
    case MG_SCHEMA_FACT_LITERAL:
        return "wrapper_like_document";
    case MG_SCHEMA_FACT_DEPRECATED:
        return "deprecated_type";
    case MG_SCHEMA_FACT_DUPLICATE_KEY:
        return "duplicate_key";
    case MG_SCHEMA_FACT_EMPTY_KEY:
        return "empty_key";
    case MG_SCHEMA_FACT_NAN_DECIMAL:
        return "decimal_nan_or_infinity";
    case MG_SCHEMA_FACT_UNRENDERABLE:
        return "unrenderable_key_or_regex";
    default:
        return "unknown";
    }
}

/* ------------------------------------------------------------------------
 * Scan
 * ------------------------------------------------------------------------ */

typedef struct {
    const char *key;
    size_t len;
    uint32_t index; /* position in the document: later wins on duplicates */
    bson_iter_t it;
} member_t;

typedef struct {
    uint32_t facts;
    uint32_t max_depth;
    mg_error_t *error;
} scan_t;

/* member_cmp orders like jsonb (shorter keys first, then bytewise), then by position. */
static int
member_cmp(const void *pa, const void *pb)
{
    const member_t *a = pa, *b = pb;
    int c;

    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    c = memcmp(a->key, b->key, a->len);
    if (c != 0)
        return c;
    return a->index < b->index ? -1 : a->index > b->index;
}

/*
 * collect_members reads the members of the container child iterates into a
 * new array (caller frees; NULL and *n = 0 for an empty one), sorted when
 * sort is set. Returns false on corrupt BSON or memory exhaustion.
 */
static bool
collect_members(bson_iter_t *child, bool sort, member_t **out, size_t *n)
{
    member_t *m = NULL, *grown;
    size_t cap = 0, count = 0;

    while (bson_iter_next(child)) {
        if (count == cap) {
            cap = cap == 0 ? 16 : cap * 2;
            grown = realloc(m, cap * sizeof(*m));
            if (grown == NULL) {
                free(m);
                return false;
            }
            m = grown;
        }
        m[count].key = bson_iter_key(child);
        m[count].len = strlen(m[count].key);
        m[count].index = (uint32_t)count;
        m[count].it = *child;
        count++;
    }
    if (child->err_off != 0) {
        free(m);
        return false;
    }
    if (sort && count > 1)
        qsort(m, count, sizeof(*m), member_cmp);
    *out = m;
    *n = count;
    return true;
}

/* string_facts records NUL and invalid UTF-8 in a BSON string. */
static void
string_facts(scan_t *s, const char *str, uint32_t len)
{
    if (memchr(str, '\0', len) != NULL)
        s->facts |= MG_SCHEMA_FACT_NUL_STRING;
    else if (!mg_utf8_valid(str, len))
        s->facts |= MG_SCHEMA_FACT_INVALID_UTF8;
}

static bool scan_container(scan_t *s, bson_iter_t *child, bool is_array, uint32_t depth);

/* scan_value records the facts of one value. */
static bool
scan_value(scan_t *s, const bson_iter_t *it, uint32_t depth)
{
    bson_iter_t child;
    uint32_t len;

    switch (bson_iter_type(it)) {
    case BSON_TYPE_DOUBLE: {
        double d = bson_iter_double(it);

        if (!isfinite(d))
            s->facts |= MG_SCHEMA_FACT_NAN_INF;
        else if (d == 0.0 && signbit(d))
            s->facts |= MG_SCHEMA_FACT_NEGATIVE_ZERO;
        return true;
    }
    case BSON_TYPE_UTF8: {
        const char *str = bson_iter_utf8(it, &len);

        string_facts(s, str, len);
        return true;
    }
    case BSON_TYPE_DOCUMENT:
        if (!bson_iter_recurse(it, &child))
            return mg_error_set(s->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                                "could not scan BSON: corrupt embedded document \"%s\"",
                                bson_iter_key(it));
        if (mg_schema__doc_is_reserved(&child))
            s->facts |= MG_SCHEMA_FACT_LITERAL;
        return scan_container(s, &child, false, depth + 1);
    case BSON_TYPE_ARRAY:
        if (!bson_iter_recurse(it, &child))
            return mg_error_set(s->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                                "could not scan BSON: corrupt embedded array \"%s\"",
                                bson_iter_key(it));
        return scan_container(s, &child, true, depth + 1);
    case BSON_TYPE_REGEX: {
        const char *options;
        const char *pattern = bson_iter_regex(it, &options);

        if (!mg_utf8_valid(pattern, strlen(pattern)) || !mg_utf8_valid(options, strlen(options)))
            s->facts |= MG_SCHEMA_FACT_UNRENDERABLE;
        return true;
    }
    case BSON_TYPE_DBPOINTER: {
        const char *coll;
        const bson_oid_t *oid;

        s->facts |= MG_SCHEMA_FACT_DEPRECATED;
        bson_iter_dbpointer(it, &len, &coll, &oid);
        string_facts(s, coll, len);
        return true;
    }
    case BSON_TYPE_CODE:
        string_facts(s, bson_iter_code(it, &len), len);
        return true;
    case BSON_TYPE_SYMBOL:
        s->facts |= MG_SCHEMA_FACT_DEPRECATED;
        string_facts(s, bson_iter_symbol(it, &len), len);
        return true;
    case BSON_TYPE_CODEWSCOPE: {
        uint32_t scope_len;
        const uint8_t *scope;
        const char *code = bson_iter_codewscope(it, &len, &scope_len, &scope);

        s->facts |= MG_SCHEMA_FACT_DEPRECATED;
        string_facts(s, code, len);
        if (!bson_iter_init_from_data(&child, scope, scope_len))
            return mg_error_set(s->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                                "could not scan BSON: corrupt scope \"%s\"", bson_iter_key(it));
        return scan_container(s, &child, false, depth + 1);
    }
    case BSON_TYPE_UNDEFINED:
        s->facts |= MG_SCHEMA_FACT_DEPRECATED;
        return true;
    case BSON_TYPE_DECIMAL128: {
        bson_decimal128_t dec;
        char text[BSON_DECIMAL128_STRING];

        bson_iter_decimal128(it, &dec);
        bson_decimal128_to_string(&dec, text);
        if (text[0] == 'N' || text[strspn(text, "-")] == 'I')
            s->facts |= MG_SCHEMA_FACT_NAN_DECIMAL;
        return true;
    }
    default:
        return true;
    }
}

/* scan_container records the facts of a document's keys and of its values. */
static bool
scan_container(scan_t *s, bson_iter_t *child, bool is_array, uint32_t depth)
{
    member_t *m = NULL;
    size_t n = 0, i;
    bool ok = true;

    if (depth > MG_SCHEMA_MAX_DEPTH)
        return mg_error_set(s->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                            "could not scan BSON: nested deeper than %d", MG_SCHEMA_MAX_DEPTH);
    if (depth > s->max_depth)
        s->max_depth = depth;
    if (!collect_members(child, !is_array, &m, &n))
        return mg_error_set(s->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "could not scan BSON: corrupt document at depth %u", depth);
    for (i = 0; i < n && ok; i++) {
        if (!is_array) {
            if (m[i].len == 0)
                s->facts |= MG_SCHEMA_FACT_EMPTY_KEY;
            else if (m[i].key[0] == '$')
                s->facts |= MG_SCHEMA_FACT_DOLLAR_KEY;
            if (memchr(m[i].key, '.', m[i].len) != NULL)
                s->facts |= MG_SCHEMA_FACT_DOTTED_KEY;
            if (!mg_utf8_valid(m[i].key, m[i].len))
                s->facts |= MG_SCHEMA_FACT_UNRENDERABLE;
            if (i > 0 && m[i].len == m[i - 1].len && memcmp(m[i].key, m[i - 1].key, m[i].len) == 0)
                s->facts |= MG_SCHEMA_FACT_DUPLICATE_KEY;
        }
        ok = scan_value(s, &m[i].it, depth);
    }
    free(m);
    return ok;
}

bool
mg_schema_doc_scan(const bson_t *doc, uint32_t *facts, uint32_t *max_depth, mg_error_t *error)
{
    scan_t s = {0, 0, error};
    bson_iter_t it;

    if (!bson_iter_init(&it, doc))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "could not scan BSON: corrupt document header");
    if (!scan_container(&s, &it, false, 1))
        return false;
    if (facts != NULL)
        *facts |= s.facts;
    if (max_depth != NULL)
        *max_depth = s.max_depth;
    return true;
}

/* ------------------------------------------------------------------------
 * Canonical form
 * ------------------------------------------------------------------------ */

typedef struct {
    mg_schema_fidelity_t fidelity;
    mg_error_t *error;
} canon_t;

static bool canon_container(canon_t *c, bson_iter_t *child, bool is_array, bson_t *dst,
                            uint32_t depth);

/* canon_fail sets a parse error. */
static bool
canon_fail(canon_t *c, const char *what)
{
    return mg_error_set(c->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                        "could not canonicalize BSON: %s", what);
}

/* copy_raw appends the value it points at byte for byte under key. */
static bool
copy_raw(canon_t *c, const bson_iter_t *it, bson_t *dst, const char *key, size_t klen)
{
    /* the value's bytes run from d1 to next_off (bson_iter_t layout) */
    const uint8_t *value = it->raw + it->d1;
    size_t vlen = it->next_off - it->d1;

    return mg_schema__append_raw(dst, bson_iter_type(it), key, klen, value, vlen) ||
           canon_fail(c, "document too large");
}

/* canon_value appends the canonical form of one value. */
static bool
canon_value(canon_t *c, const bson_iter_t *it, bson_t *dst, const char *key, size_t klen,
            uint32_t depth)
{
    bson_iter_t child;
    bson_t sub;
    bool ok;

    switch (bson_iter_type(it)) {
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
        bool is_array = bson_iter_type(it) == BSON_TYPE_ARRAY;

        if (!bson_iter_recurse(it, &child))
            return canon_fail(c, "corrupt embedded document");
        if (is_array ? !bson_append_array_begin(dst, key, (int)klen, &sub)
                     : !bson_append_document_begin(dst, key, (int)klen, &sub))
            return canon_fail(c, "document too large");
        ok = canon_container(c, &child, is_array, &sub, depth + 1);
        if (is_array)
            bson_append_array_end(dst, &sub);
        else
            bson_append_document_end(dst, &sub);
        return ok;
    }
    case BSON_TYPE_CODEWSCOPE: {
        uint32_t len, scope_len;
        const uint8_t *scope;
        const char *code = bson_iter_codewscope(it, &len, &scope_len, &scope);
        uint8_t *payload;
        size_t plen;

        if (!bson_iter_init_from_data(&child, scope, scope_len))
            return canon_fail(c, "corrupt scope");
        bson_init(&sub);
        ok = canon_container(c, &child, false, &sub, depth + 1);
        plen = 4 + 4 + (size_t)len + 1 + sub.len;
        payload = ok ? malloc(plen) : NULL;
        if (ok && payload == NULL)
            ok = canon_fail(c, "out of memory");
        if (ok) {
            uint32_t total = BSON_UINT32_TO_LE((uint32_t)plen);
            uint32_t slen = BSON_UINT32_TO_LE(len + 1);

            memcpy(payload, &total, 4);
            memcpy(payload + 4, &slen, 4);
            memcpy(payload + 8, code, len);
            payload[8 + len] = 0;
            memcpy(payload + 9 + len, bson_get_data(&sub), sub.len);
            ok = mg_schema__append_raw(dst, BSON_TYPE_CODEWSCOPE, key, klen, payload, plen) ||
                 canon_fail(c, "document too large");
        }
        free(payload);
        bson_destroy(&sub);
        return ok;
    }
    case BSON_TYPE_INT64: {
        int64_t v = bson_iter_int64(it);

        if (c->fidelity == MG_SCHEMA_FIDELITY_RELAXED && v >= INT32_MIN && v <= INT32_MAX)
            return bson_append_int32(dst, key, (int)klen, (int32_t)v) ||
                   canon_fail(c, "document too large");
        return copy_raw(c, it, dst, key, klen);
    }
    case BSON_TYPE_DOUBLE: {
        double d = bson_iter_double(it);

        if (c->fidelity == MG_SCHEMA_FIDELITY_RELAXED && isnan(d)) {
            uint64_t bits = MG_SCHEMA_CANONICAL_NAN_BITS;

            memcpy(&d, &bits, sizeof(d));
            return bson_append_double(dst, key, (int)klen, d) ||
                   canon_fail(c, "document too large");
        }
        return copy_raw(c, it, dst, key, klen);
    }
    case BSON_TYPE_DECIMAL128: {
        bson_decimal128_t dec;
        char text[BSON_DECIMAL128_STRING];

        if (c->fidelity != MG_SCHEMA_FIDELITY_RELAXED)
            return copy_raw(c, it, dst, key, klen);
        bson_iter_decimal128(it, &dec);
        /* relaxed keeps the value: a non-canonical coefficient is zero, NaN the quiet NaN */
        mg_schema__decimal_text(&dec, text);
        if (!bson_decimal128_from_string(text, &dec))
            return copy_raw(c, it, dst, key, klen);
        return bson_append_decimal128(dst, key, (int)klen, &dec) ||
               canon_fail(c, "document too large");
    }
    default:
        return copy_raw(c, it, dst, key, klen);
    }
}

/* by_position orders members as they are in the document. */
static int
by_position(const void *pa, const void *pb)
{
    const member_t *a = pa, *b = pb;

    return a->index < b->index ? -1 : a->index > b->index;
}

/*
 * canon_container appends the canonical members of the container child
 * iterates: documents sorted in jsonb's key order, arrays renumbered. A
 * document with a duplicate key is stored as {"$fieldPairs": ...}, which
 * keeps every member in order: its canonical form is all of its members in
 * their order.
 */
static bool
canon_container(canon_t *c, bson_iter_t *child, bool is_array, bson_t *dst, uint32_t depth)
{
    member_t *m = NULL;
    size_t n = 0, i;
    bool ok = true;

    if (depth > MG_SCHEMA_MAX_DEPTH)
        return mg_error_set(c->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                            "could not canonicalize BSON: nested deeper than %d",
                            MG_SCHEMA_MAX_DEPTH);
    if (!collect_members(child, !is_array, &m, &n))
        return canon_fail(c, "corrupt document");
    for (i = 0; !is_array && i + 1 < n; i++) {
        if (m[i + 1].len == m[i].len && memcmp(m[i + 1].key, m[i].key, m[i].len) == 0) {
            qsort(m, n, sizeof(*m), by_position);
            break;
        }
    }
    for (i = 0; i < n && ok; i++) {
        char idx[16];
        const char *key = m[i].key;
        size_t klen = m[i].len;

        if (is_array)
            klen = bson_uint32_to_string((uint32_t)i, &key, idx, sizeof(idx));
        ok = canon_value(c, &m[i].it, dst, key, klen, depth);
    }
    free(m);
    return ok;
}

bson_t *
mg_schema_doc_canonicalize(const bson_t *doc, mg_schema_fidelity_t fidelity, mg_error_t *error)
{
    canon_t c = {fidelity, error};
    bson_iter_t it;
    bson_t *out;

    if (!bson_iter_init(&it, doc)) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                     "could not canonicalize BSON: corrupt document header");
        return NULL;
    }
    out = bson_new();
    if (!canon_container(&c, &it, false, out, 1)) {
        bson_destroy(out);
        return NULL;
    }
    return out;
}

bool
mg_schema_doc_equal(const bson_t *a, const bson_t *b, mg_schema_fidelity_t fidelity, bool *equal,
                    mg_error_t *error)
{
    bson_t *ca = mg_schema_doc_canonicalize(a, fidelity, error);
    bson_t *cb = NULL;
    bool ok = false;

    if (ca == NULL)
        goto done;
    cb = mg_schema_doc_canonicalize(b, fidelity, error);
    if (cb == NULL)
        goto done;
    *equal = ca->len == cb->len && memcmp(bson_get_data(ca), bson_get_data(cb), ca->len) == 0;
    ok = true;
done:
    bson_destroy(cb);
    bson_destroy(ca);
    return ok;
}
