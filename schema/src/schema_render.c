/*
 * schema/src/schema_render.c - the BSON -> JSON renderer: a bson_iter walker
 * writing straight into a caller's capped mg_buf_t (the copier's hot path).
 */
#include "schema_internal.h"

#include <math.h>
#include <string.h>

/* Input bytes escaped per reservation: bounds the worst case (6x) we ask for. */
#define STR_CHUNK 4096

/* Bloom filter bits per document for the duplicate-key check (2^DUP_BLOOM_LOG2). */
#define DUP_BLOOM_LOG2 8
#define DUP_BLOOM_BITS (1u << DUP_BLOOM_LOG2)

/* Alarms of the filter in one document checked one by one before a sort takes over. */
#define DUP_ALARMS 32

/*
 * The duplicate-key check can be compiled out, only so that the renderer
 * benchmark (tests/bench/schema) measures its cost side by side.
 */
#ifdef MG_SCHEMA_RENDER_NO_DUP_CHECK
#define DUP_CHECK 0
#else
#define DUP_CHECK 1
#endif

/* Keys remembered along the path being rendered (beyond: a sort at the end). */
#define DUP_KEYS 256

/* One key of a document being rendered, for the duplicate-key check. */
typedef struct {
    uint32_t hash;
    uint32_t len;
    const char *key;
} key_ent_t;

typedef struct {
    mg_buf_t *out;
    mg_schema_fidelity_t fidelity;
    uint32_t facts;
    mg_error_t *error;
    uint32_t depth;
    bool dup;                 /* render_container stopped: the document has a duplicate key */
    uint32_t nkeys;           /* keys[] in use: the open documents' keys, innermost last */
    key_ent_t keys[DUP_KEYS]; /* a stack: each document pushes its keys, pops them at its end */
    /* keys along the current path, for error messages */
    const char *path[MG_SCHEMA_MAX_DEPTH + 2];
} render_t;

typedef enum {
    STR_OK = 0,
    STR_NUL,     /* the bytes hold U+0000 */
    STR_BAD,     /* the bytes are not valid UTF-8 */
    STR_NO_ROOM, /* out's cap reached; error set */
} str_status_t;

static bool render_value(render_t *r, const bson_iter_t *it);

/* path_text writes the dotted path of the current value into out. */
static void
path_text(const render_t *r, char *out, size_t outsz)
{
    size_t n = 0;
    uint32_t i;

    out[0] = '\0';
    for (i = 1; i <= r->depth && i < MG_SCHEMA_MAX_DEPTH + 2; i++) {
        const char *k = r->path[i] != NULL ? r->path[i] : "";
        int w = snprintf(out + n, outsz - n, "%s%s", i > 1 ? "." : "", k);

        if (w < 0 || (size_t)w >= outsz - n)
            return;
        n += (size_t)w;
    }
}

/* fail sets r->error to a parse or limit error naming the current path. */
static bool
fail(render_t *r, int32_t code, const char *what)
{
    char path[256];

    path_text(r, path, sizeof(path));
    return mg_error_set(r->error, MG_ERROR_DOMAIN_CORE, code, "could not render BSON: %s at \"%s\"",
                        what, path);
}

/*
 * room returns a pointer where n more bytes may be written, or NULL with the
 * error set (path added) when out's cap would be exceeded.
 */
static inline char *
room(render_t *r, size_t n)
{
    mg_buf_t *out = r->out;

    if (BSON_UNLIKELY(out->data == NULL || out->cap - out->len < n)) {
        if (!mg_buf_reserve(out, n, r->error)) {
            char path[256];

            path_text(r, path, sizeof(path));
            mg_error_prefix(r->error, "could not render BSON at \"%s\"", path);
            return NULL;
        }
    }
    return out->data + out->len;
}

/* done_at records that the output now ends at p. */
static inline void
done_at(render_t *r, char *p)
{
    r->out->len = (size_t)(p - r->out->data);
}

/* put appends n literal bytes. */
static inline bool
put(render_t *r, const char *s, size_t n)
{
    char *p = room(r, n);

    if (p == NULL)
        return false;
    memcpy(p, s, n);
    done_at(r, p + n);
    return true;
}

#define PUT_LIT(r, lit) put((r), (lit), sizeof(lit) - 1)

/*
 * special8 flags (in bit 7 of each byte) the bytes of v that cannot be
 * copied as they are: < 0x20, '"', '\\' and >= 0x80. The lowest flagged
 * byte is always a true hit (borrows only run upwards from a true hit).
 */
static inline uint64_t
special8(uint64_t v)
{
    const uint64_t ones = UINT64_C(0x0101010101010101);
    const uint64_t high = UINT64_C(0x8080808080808080);
    uint64_t lt = (v - ones * 0x20) & ~v & high;
    uint64_t q = v ^ (ones * 0x22);
    uint64_t b = v ^ (ones * 0x5c);

    q = (q - ones) & ~q & high;
    b = (b - ones) & ~b & high;
    return lt | q | b | (v & high);
}

/* first_flagged returns the index of the lowest flagged byte of m (m != 0). */
static inline size_t
first_flagged(uint64_t m)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return (size_t)__builtin_clzll(m) >> 3;
#else
    return (size_t)__builtin_ctzll(m) >> 3;
#endif
}

/*
 * write_str appends s[0..n) as a quoted JSON string. Runs of bytes needing
 * no escape are copied eight at a time. Returns STR_NUL or STR_BAD (output
 * partially written; the caller rewinds) when jsonb could not hold the text.
 */
static str_status_t
write_str(render_t *r, const uint8_t *s, size_t n)
{
    size_t i = 0;
    char *p = room(r, n + 2 < STR_CHUNK ? 6 * n + 16 : 6 * STR_CHUNK + 16);

    if (p == NULL)
        return STR_NO_ROOM;
    *p++ = '"';
    while (i < n) {
        size_t end = n - i > STR_CHUNK ? i + STR_CHUNK : n;

        if (i > 0) {
            done_at(r, p);
            p = room(r, 6 * (end - i) + 16);
            if (p == NULL)
                return STR_NO_ROOM;
        }
        while (i < end) {
            uint8_t c;

            if (i + 8 <= n) {
                uint64_t v, m;

                memcpy(&v, s + i, 8);
                m = special8(v);
                memcpy(p, &v, 8); /* the reservation has 16 bytes of slack */
                if (m == 0) {
                    p += 8;
                    i += 8;
                    continue;
                }
                m = first_flagged(m);
                p += m;
                i += m;
            }
            c = s[i];
            if (c >= 0x80) {
                size_t l = mg_utf8_char_len(s + i, n - i);

                if (l == 0)
                    return STR_BAD;
                memcpy(p, s + i, l);
                p += l;
                i += l;
            } else if (c == '"' || c == '\\') {
                *p++ = '\\';
                *p++ = (char)c;
                i++;
            } else if (c < 0x20) {
                if (c == 0)
                    return STR_NUL;
                *p++ = '\\';
                switch (c) {
                case '\n':
                    *p++ = 'n';
                    break;
                case '\t':
                    *p++ = 't';
                    break;
                case '\r':
                    *p++ = 'r';
                    break;
                case '\b':
                    *p++ = 'b';
                    break;
                case '\f':
                    *p++ = 'f';
                    break;
                default:
                    memcpy(p, "u00", 3);
                    p[3] = mg_schema__hex[c >> 4];
                    p[4] = mg_schema__hex[c & 15];
                    p += 5;
                }
                i++;
            } else {
                *p++ = (char)c;
                i++;
            }
        }
    }
    *p++ = '"';
    done_at(r, p);
    return STR_OK;
}

/*
 * write_string_slot appends a BSON string as a JSON string, or as
 * {"$stringBase64": "..."} when jsonb cannot store it as text (U+0000 or
 * not UTF-8).
 */
static bool
write_string_slot(render_t *r, const char *s, size_t n)
{
    size_t mark = r->out->len;
    str_status_t st = write_str(r, (const uint8_t *)s, n);
    char *p;

    if (st == STR_OK)
        return true;
    if (st == STR_NO_ROOM)
        return false;
    r->out->len = mark;
    r->facts |= st == STR_NUL ? MG_SCHEMA_FACT_NUL_STRING : MG_SCHEMA_FACT_INVALID_UTF8;
    p = room(r, mg_base64_encoded_len(n) + 24);
    if (p == NULL)
        return false;
    memcpy(p, "{\"$stringBase64\":\"", 18);
    p += 18;
    mg_base64_encode_to((const uint8_t *)s, n, p);
    p += mg_base64_encoded_len(n);
    memcpy(p, "\"}", 2);
    done_at(r, p + 2);
    return true;
}

/* write_key_text appends a key as a JSON string; keys must be UTF-8. */
static bool
write_key_text(render_t *r, const char *key, size_t len)
{
    str_status_t st;

    if (len > 0 && key[0] == '$')
        r->facts |= MG_SCHEMA_FACT_DOLLAR_KEY;
    if (memchr(key, '.', len) != NULL)
        r->facts |= MG_SCHEMA_FACT_DOTTED_KEY;
    st = write_str(r, (const uint8_t *)key, len);
    if (st == STR_BAD)
        return fail(r, MG_ERROR_CODE_PARSE, "key is not valid UTF-8");
    return st == STR_OK;
}

/* write_key appends "key": for a document element. */
static bool
write_key(render_t *r, const char *key, size_t len)
{
    char *p;

    if (!write_key_text(r, key, len))
        return false;
    p = room(r, 1);
    if (p == NULL)
        return false;
    *p = ':';
    done_at(r, p + 1);
    return true;
}

/* key_len returns the length of the current element's key without strlen. */
static inline size_t
key_len(const bson_iter_t *it)
{
    /* the value follows the key's NUL: d1 - key - 1 (bson_iter_t layout) */
    return (size_t)(it->d1 - it->key - 1);
}

/*
 * key_hash hashes a key from its length, its
 * first 8 bytes and the next 8 (or, for a longer key, its last 8): the same
 * value write_member_key computes from the words it copies, so every key
 * of a document gets its hash one way or the other. A collision only costs
 * a comparison.
 */
static uint64_t
key_hash(const char *key, size_t klen)
{
    uint64_t a = 0, b = 0;

    memcpy(&a, key, klen < 8 ? klen : 8);
    if (klen > 16)
        memcpy(&b, key + klen - 8, 8);
    else if (klen > 8)
        memcpy(&b, key + 8, klen - 8);
    return (a ^ (b * UINT64_C(0xff51afd7ed558ccd)) ^ klen) * UINT64_C(0x9e3779b97f4a7c15);
}

/* has_byte8 flags (bit 7 of each byte) the bytes of v equal to c (repeated in c8). */
static inline uint64_t
has_byte8(uint64_t v, uint64_t c8)
{
    uint64_t x = v ^ c8;

    return (x - UINT64_C(0x0101010101010101)) & ~x & UINT64_C(0x8080808080808080);
}

/* byte_mask returns the mask of the first n (0..8) bytes of a little-endian word. */
static inline uint64_t
byte_mask(size_t n)
{
    return n >= 8 ? ~UINT64_C(0) : (UINT64_C(1) << (8 * n)) - 1;
}

/*
 * write_member_key appends "key": (after a ',' unless first) for the element
 * `it` iterates and sets *hash for the duplicate-key check (key_hash). A key
 * of at most 16 plain ASCII bytes (the common case) is copied as two words
 * when the document has 16 bytes from its start; the words give the hash.
 */
static inline bool
write_member_key(render_t *r, const bson_iter_t *it, const char *key, size_t klen, bool first,
                 uint64_t *hash)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (klen <= 16 && (size_t)((const uint8_t *)key - it->raw) + 16 <= it->len) {
        const uint64_t dots = UINT64_C(0x2e2e2e2e2e2e2e2e);
        uint64_t a, b, ma = byte_mask(klen), mb = byte_mask(klen > 8 ? klen - 8 : 0);
        char *p;

        memcpy(&a, key, 8);
        memcpy(&b, key + 8, 8);
        if (((special8(a) & ma) | (special8(b) & mb)) == 0) {
            p = room(r, 20);
            if (p == NULL)
                return false;
            if (!first)
                *p++ = ',';
            *p++ = '"';
            memcpy(p, &a, 8);
            memcpy(p + 8, &b, 8);
            p += klen;
            *p++ = '"';
            *p++ = ':';
            done_at(r, p);
            if (klen > 0 && key[0] == '$')
                r->facts |= MG_SCHEMA_FACT_DOLLAR_KEY;
            if (((has_byte8(a, dots) & ma) | (has_byte8(b, dots) & mb)) != 0)
                r->facts |= MG_SCHEMA_FACT_DOTTED_KEY;
            a &= ma;
            b &= mb;
            *hash = (a ^ (b * UINT64_C(0xff51afd7ed558ccd)) ^ klen) * UINT64_C(0x9e3779b97f4a7c15);
            return true;
        }
    }
#endif
    *hash = key_hash(key, klen);
    return (first || PUT_LIT(r, ",")) && write_key(r, key, klen);
}

typedef struct {
    const char *key;
    size_t len;
} key_ref_t;

static int
key_ref_cmp(const void *pa, const void *pb)
{
    const key_ref_t *a = pa, *b = pb;

    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return memcmp(a->key, b->key, a->len);
}

static int
key_ent_cmp(const void *pa, const void *pb)
{
    const key_ent_t *a = pa, *b = pb;

    if (a->hash != b->hash)
        return a->hash < b->hash ? -1 : 1;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return memcmp(a->key, b->key, a->len);
}

/*
 * sorted_has_duplicate sorts the document's keys and compares neighbours:
 * the remembered ones in place, or (when they did not fit in r->keys) all
 * n of them read again from the document (raw, rawlen bytes). Returns -1
 * when memory runs out.
 */
static int
sorted_has_duplicate(render_t *r, uint32_t base, bool overflow, const uint8_t *raw, uint32_t rawlen,
                     uint32_t n)
{
    key_ref_t *refs;
    bson_iter_t it;
    uint32_t count = 0;
    int found = 0;

    if (!overflow) {
        key_ent_t *e = r->keys + base;

        qsort(e, r->nkeys - base, sizeof(*e), key_ent_cmp);
        for (uint32_t i = 1; i < r->nkeys - base; i++)
            if (key_ent_cmp(&e[i - 1], &e[i]) == 0)
                return 1;
        return 0;
    }
    refs = malloc((size_t)n * sizeof(*refs) + 1);
    if (refs == NULL || !bson_iter_init_from_data(&it, raw, rawlen)) {
        free(refs);
        return -1;
    }
    while (count < n && bson_iter_next(&it)) {
        refs[count].key = bson_iter_key(&it);
        refs[count].len = key_len(&it);
        count++;
    }
    qsort(refs, count, sizeof(*refs), key_ref_cmp);
    for (uint32_t i = 1; i < count && !found; i++)
        found = key_ref_cmp(&refs[i - 1], &refs[i]) == 0;
    free(refs);
    return found;
}

/* seen_before returns true when the document's remembered keys hold key. */
static bool
seen_before(const render_t *r, uint32_t base, uint32_t hash, const char *key, size_t klen)
{
    for (uint32_t i = base; i < r->nkeys; i++)
        if (r->keys[i].hash == hash && r->keys[i].len == klen &&
            memcmp(r->keys[i].key, key, klen) == 0)
            return true;
    return false;
}

/*
 * render_array appends an array whose elements child iterates (positioned
 * before the first element).
 */
static bool
render_array(render_t *r, bson_iter_t *child)
{
    bool first = true;
    char *p;

    if (r->depth >= MG_SCHEMA_MAX_DEPTH)
        return fail(r, MG_ERROR_CODE_LIMIT, "document nested too deeply");
    r->depth++;
    if (!PUT_LIT(r, "["))
        return false;
    while (bson_iter_next(child)) {
        r->path[r->depth] = bson_iter_key(child);
        if (!first && !PUT_LIT(r, ","))
            return false;
        first = false;
        if (!render_value(r, child))
            return false;
    }
    if (child->err_off != 0) {
        r->path[r->depth] = "";
        return fail(r, MG_ERROR_CODE_PARSE, "corrupt BSON");
    }
    p = room(r, 1);
    if (p == NULL)
        return false;
    *p = ']';
    done_at(r, p + 1);
    r->depth--;
    return true;
}

/*
 * render_container appends a document whose elements child iterates
 * (positioned before the first element). A document with a duplicate key
 * stops with r->dup set (no error): the caller rewinds and writes it as
 * {"$fieldPairs": ...} instead (render_pairs).
 *
 * The check: a Bloom filter bit per key; a key whose bit is already set is
 * compared with the document's earlier keys (remembered in r->keys), and
 * after DUP_ALARMS such alarms (or when r->keys is full) the keys are
 * sorted once at the end instead.
 */
static bool
render_container(render_t *r, bson_iter_t *child)
{
    const uint8_t *raw = child->raw; /* the iterator forgets it at the end */
    uint32_t rawlen = child->len;
    uint64_t bloom[DUP_BLOOM_BITS / 64] = {0};
    uint32_t nkeys = 0, alarms = 0, base = r->nkeys;
    bool sort_check = false, overflow = false;
    char *p;

    if (r->depth >= MG_SCHEMA_MAX_DEPTH)
        return fail(r, MG_ERROR_CODE_LIMIT, "document nested too deeply");
    r->depth++;
    if (!PUT_LIT(r, "{"))
        return false;
    while (bson_iter_next(child)) {
        const char *key = bson_iter_key(child);
        size_t klen = key_len(child);

        uint64_t h;

        r->path[r->depth] = key;
        if (!write_member_key(r, child, key, klen, nkeys++ == 0, &h))
            return false;
        if (DUP_CHECK) {
            uint32_t bit = (uint32_t)(h >> (64 - DUP_BLOOM_LOG2));
            uint64_t mask = UINT64_C(1) << (bit & 63);

            if (BSON_UNLIKELY(bloom[bit >> 6] & mask) && !sort_check) {
                if (++alarms > DUP_ALARMS || overflow)
                    sort_check = true;
                else if (seen_before(r, base, (uint32_t)h, key, klen))
                    goto duplicate;
            }
            bloom[bit >> 6] |= mask;
            if (BSON_LIKELY(r->nkeys < DUP_KEYS))
                r->keys[r->nkeys++] = (key_ent_t){(uint32_t)h, (uint32_t)klen, key};
            else
                overflow = true;
        }
        if (!render_value(r, child))
            return false;
    }
    if (child->err_off != 0) {
        r->path[r->depth] = "";
        return fail(r, MG_ERROR_CODE_PARSE, "corrupt BSON");
    }
    if (BSON_UNLIKELY(sort_check)) {
        int found = sorted_has_duplicate(r, base, overflow, raw, rawlen, nkeys);

        if (found < 0)
            return mg_error_set(r->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                "could not render BSON: out of memory");
        if (found)
            goto duplicate;
    }
    r->nkeys = base;
    p = room(r, 1);
    if (p == NULL)
        return false;
    *p = '}';
    done_at(r, p + 1);
    r->depth--;
    return true;
duplicate:
    r->nkeys = base;
    r->depth--;
    r->dup = true;
    return false;
}

/*
 * render_pairs appends the document start iterates as {"$fieldPairs": [[key,
 * value], ...]}: every member in order, duplicates included. At the top
 * level (with_id) the first _id is also written before it as "_id", so
 * doc->'_id' stays queryable.
 */
static bool
render_pairs(render_t *r, const bson_iter_t *start, bool with_id)
{
    bson_iter_t it = *start;
    bool first = true;

    r->facts |= MG_SCHEMA_FACT_DUPLICATE_KEY;
    if (r->depth >= MG_SCHEMA_MAX_DEPTH)
        return fail(r, MG_ERROR_CODE_LIMIT, "document nested too deeply");
    r->depth++;
    if (!PUT_LIT(r, "{"))
        return false;
    if (with_id && bson_iter_find(&it, "_id")) {
        r->path[r->depth] = "_id";
        if (!PUT_LIT(r, "\"_id\":") || !render_value(r, &it) || !PUT_LIT(r, ","))
            return false;
    }
    if (!PUT_LIT(r, "\"" MG_SCHEMA_FIELD_PAIRS "\":["))
        return false;
    it = *start;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);

        r->path[r->depth] = key;
        if (!put(r, first ? "[" : ",[", first ? 1 : 2) || !write_key_text(r, key, key_len(&it)) ||
            !PUT_LIT(r, ",") || !render_value(r, &it) || !PUT_LIT(r, "]"))
            return false;
        first = false;
    }
    if (it.err_off != 0) {
        r->path[r->depth] = "";
        return fail(r, MG_ERROR_CODE_PARSE, "corrupt BSON");
    }
    r->depth--;
    return PUT_LIT(r, "]}");
}

/*
 * render_object appends a document that child iterates (positioned before
 * its first element) at `where`: inside {"$literal": ...} when literal, and
 * as {"$fieldPairs": ...} when it has a duplicate key or when `pairs` says
 * its key set would read as that form (the top level and a scope, where
 * $literal is not read).
 */
static bool
render_object(render_t *r, bson_iter_t *child, bool literal, bool pairs, bool with_id)
{
    size_t mark = r->out->len;
    bson_iter_t start = *child;

    if (!pairs) {
        if (literal) {
            r->facts |= MG_SCHEMA_FACT_LITERAL;
            if (PUT_LIT(r, "{\"$literal\":") && render_container(r, child) && PUT_LIT(r, "}"))
                return true;
        } else if (render_container(r, child)) {
            return true;
        }
        if (!r->dup)
            return false;
        r->dup = false;
        r->out->len = mark;
    }
    return render_pairs(r, &start, with_id);
}

/*
 * pairs_like returns true when every key of the document start iterates is
 * "$fieldPairs" (or "_id" when id_too) and "$fieldPairs" is one of them: a
 * top-level document or scope that would read back as the pairs form.
 */
static bool
pairs_like(const bson_iter_t *start, bool id_too)
{
    bson_iter_t it = *start;
    bool seen = false;

    while (bson_iter_next(&it)) {
        size_t klen = key_len(&it);
        const char *key = bson_iter_key(&it);

        if (klen == MG_SCHEMA_FIELD_PAIRS_LEN && memcmp(key, MG_SCHEMA_FIELD_PAIRS, klen) == 0)
            seen = true;
        else if (!(id_too && klen == 3 && memcmp(key, "_id", 3) == 0))
            return false;
    }
    return seen;
}

/*
 * render_document appends an embedded document; one whose key set is that of
 * a wrapper goes inside {"$literal": ...} so it reads back as a document.
 */
static bool
render_document(render_t *r, const bson_iter_t *it)
{
    bson_iter_t child;
    bool literal = false;

    if (!bson_iter_recurse(it, &child))
        return fail(r, MG_ERROR_CODE_PARSE, "corrupt embedded document");
    /* only a document whose first key starts with '$' can look like a wrapper */
    if (BSON_UNLIKELY(bson_iter_next(&child) && bson_iter_key(&child)[0] == '$')) {
        bson_iter_recurse(it, &child);
        literal = mg_schema__doc_is_reserved(&child);
    }
    bson_iter_recurse(it, &child);
    return render_object(r, &child, literal, false, false);
}

/* write_double appends a double in the current fidelity. */
static bool
write_double(render_t *r, double v)
{
    char *p = room(r, MG_SCHEMA_DOUBLE_MAX + 32);
    uint64_t bits;

    if (p == NULL)
        return false;
    if (BSON_UNLIKELY(!isfinite(v) || (v == 0.0 && signbit(v)))) {
        const char *text;

        if (isnan(v)) {
            r->facts |= MG_SCHEMA_FACT_NAN_INF;
            memcpy(&bits, &v, sizeof(bits));
            if (r->fidelity == MG_SCHEMA_FIDELITY_EXACT && bits != MG_SCHEMA_CANONICAL_NAN_BITS) {
                int i;

                /* exact mode keeps a NaN's sign and payload: "bits:<16 hex>" */
                memcpy(p, "{\"$numberDouble\":\"bits:", 23);
                p += 23;
                for (i = 60; i >= 0; i -= 4)
                    *p++ = mg_schema__hex[(bits >> i) & 15];
                memcpy(p, "\"}", 2);
                done_at(r, p + 2);
                return true;
            }
            text = "{\"$numberDouble\":\"NaN\"}";
        } else if (isinf(v)) {
            r->facts |= MG_SCHEMA_FACT_NAN_INF;
            text = v > 0 ? "{\"$numberDouble\":\"Infinity\"}" : "{\"$numberDouble\":\"-Infinity\"}";
        } else {
            r->facts |= MG_SCHEMA_FACT_NEGATIVE_ZERO;
            text = "{\"$numberDouble\":\"-0.0\"}";
        }
        done_at(r, p);
        return put(r, text, strlen(text));
    }
    if (r->fidelity == MG_SCHEMA_FIDELITY_EXACT) {
        memcpy(p, "{\"$numberDouble\":\"", 18);
        p += 18;
        p += mg_schema__double_format(v, p);
        memcpy(p, "\"}", 2);
        done_at(r, p + 2);
        return true;
    }
    done_at(r, p + mg_schema__double_format(v, p));
    return true;
}

/* write_int appends an int32 or int64 in the current fidelity. */
static bool
write_int(render_t *r, int64_t v, bool is_int64)
{
    char *p = room(r, 48);

    if (p == NULL)
        return false;
    if (r->fidelity == MG_SCHEMA_FIDELITY_EXACT) {
        if (is_int64) {
            memcpy(p, "{\"$numberLong\":\"", 16);
            p += 16;
        } else {
            memcpy(p, "{\"$numberInt\":\"", 15);
            p += 15;
        }
        p += mg_schema__i64_format(v, p);
        memcpy(p, "\"}", 2);
        done_at(r, p + 2);
        return true;
    }
    done_at(r, p + mg_schema__i64_format(v, p));
    return true;
}

/* write_oid appends the 24 hex digits of oid (no quotes). */
static char *
write_oid_hex(char *p, const bson_oid_t *oid)
{
    int i;

    for (i = 0; i < 12; i++) {
        *p++ = mg_schema__hex[oid->bytes[i] >> 4];
        *p++ = mg_schema__hex[oid->bytes[i] & 15];
    }
    return p;
}

/* write_binary appends {"$binary":{"base64":"...","subType":"xx"}}. */
static bool
write_binary(render_t *r, bson_subtype_t subtype, const uint8_t *data, uint32_t len)
{
    size_t b64 = mg_base64_encoded_len(len);
    char *p = room(r, b64 + 48);

    if (p == NULL)
        return false;
    memcpy(p, "{\"$binary\":{\"base64\":\"", 22);
    p += 22;
    mg_base64_encode_to(data, len, p);
    p += b64;
    memcpy(p, "\",\"subType\":\"", 13);
    p += 13;
    *p++ = mg_schema__hex[(subtype >> 4) & 15];
    *p++ = mg_schema__hex[subtype & 15];
    memcpy(p, "\"}}", 3);
    done_at(r, p + 3);
    return true;
}

/* write_date appends {"$date":"ISO"} or {"$date":{"$numberLong":"ms"}}. */
static bool
write_date(render_t *r, int64_t ms)
{
    char *p = room(r, 64);

    if (p == NULL)
        return false;
    if (ms >= 0 && ms <= MG_SCHEMA_DATE_ISO_MAX_MS) {
        memcpy(p, "{\"$date\":\"", 10);
        p += 10;
        mg_schema__date_format(ms, p);
        p += MG_SCHEMA_DATE_ISO_LEN;
        memcpy(p, "\"}", 2);
        done_at(r, p + 2);
        return true;
    }
    memcpy(p, "{\"$date\":{\"$numberLong\":\"", 25);
    p += 25;
    p += mg_schema__i64_format(ms, p);
    memcpy(p, "\"}}", 3);
    done_at(r, p + 3);
    return true;
}

/* write_decimal appends {"$numberDecimal":"..."}. */
static bool
write_decimal(render_t *r, const bson_decimal128_t *dec)
{
    char text[BSON_DECIMAL128_STRING];
    char *p = room(r, BSON_DECIMAL128_STRING + 64);
    bson_decimal128_t back;
    size_t n;

    if (p == NULL)
        return false;
    /* the text of the value: a non-canonical coefficient is zero */
    mg_schema__decimal_text(dec, text);
    if (text[0] == 'N' || text[strspn(text, "-")] == 'I')
        r->facts |= MG_SCHEMA_FACT_NAN_DECIMAL;
    memcpy(p, "{\"$numberDecimal\":\"", 19);
    p += 19;
    /* in exact mode the text must read back to the same bits (it does not for
     * NaN payloads, sNaN and non-canonical coefficients); otherwise write the
     * bits: "bits:<high><low>". The text of every value reads back
     * (test_render checks every exponent), so relaxed mode never writes bits */
    if (BSON_UNLIKELY(!bson_decimal128_from_string(text, &back) ||
                      (r->fidelity == MG_SCHEMA_FIDELITY_EXACT &&
                       (back.high != dec->high || back.low != dec->low)))) {
        int i;

        memcpy(p, "bits:", 5);
        p += 5;
        for (i = 60; i >= 0; i -= 4)
            *p++ = mg_schema__hex[(dec->high >> i) & 15];
        for (i = 60; i >= 0; i -= 4)
            *p++ = mg_schema__hex[(dec->low >> i) & 15];
    } else {
        n = strlen(text);
        memcpy(p, text, n);
        p += n;
    }
    memcpy(p, "\"}", 2);
    done_at(r, p + 2);
    return true;
}

/* write_regex appends {"$regularExpression":{"pattern":...,"options":...}}. */
static bool
write_regex(render_t *r, const char *pattern, const char *options)
{
    str_status_t st;

    if (!PUT_LIT(r, "{\"$regularExpression\":{\"pattern\":"))
        return false;
    st = write_str(r, (const uint8_t *)pattern, strlen(pattern));
    if (st == STR_BAD)
        return fail(r, MG_ERROR_CODE_PARSE, "regular expression pattern is not valid UTF-8");
    if (st != STR_OK)
        return false;
    if (!PUT_LIT(r, ",\"options\":"))
        return false;
    st = write_str(r, (const uint8_t *)options, strlen(options));
    if (st == STR_BAD)
        return fail(r, MG_ERROR_CODE_PARSE, "regular expression options are not valid UTF-8");
    if (st != STR_OK)
        return false;
    return PUT_LIT(r, "}}");
}

/* write_dbpointer appends {"$dbPointer":{"$ref":...,"$id":{"$oid":...}}}. */
static bool
write_dbpointer(render_t *r, const bson_iter_t *it)
{
    uint32_t len;
    const char *coll;
    const bson_oid_t *oid;
    char *p;

    r->facts |= MG_SCHEMA_FACT_DEPRECATED;
    bson_iter_dbpointer(it, &len, &coll, &oid);
    if (!PUT_LIT(r, "{\"$dbPointer\":{\"$ref\":") || !write_string_slot(r, coll, len))
        return false;
    p = room(r, 48);
    if (p == NULL)
        return false;
    memcpy(p, ",\"$id\":{\"$oid\":\"", 16);
    p = write_oid_hex(p + 16, oid);
    memcpy(p, "\"}}}", 4);
    done_at(r, p + 4);
    return true;
}

/*
 * write_code_scope appends {"$code":...,"$scope":{...}}. The $scope value is
 * always a document: no $literal needed, but the pairs form is read there.
 */
static bool
write_code_scope(render_t *r, const bson_iter_t *it)
{
    uint32_t len, scope_len;
    const uint8_t *scope;
    const char *code = bson_iter_codewscope(it, &len, &scope_len, &scope);
    bson_iter_t child;

    r->facts |= MG_SCHEMA_FACT_DEPRECATED;
    if (!bson_iter_init_from_data(&child, scope, scope_len))
        return fail(r, MG_ERROR_CODE_PARSE, "corrupt code-with-scope scope");
    return PUT_LIT(r, "{\"$code\":") && write_string_slot(r, code, len) &&
           PUT_LIT(r, ",\"$scope\":") &&
           render_object(r, &child, false, pairs_like(&child, false), false) && PUT_LIT(r, "}");
}

/* render_value appends the JSON of the value it points at. */
static bool
render_value(render_t *r, const bson_iter_t *it)
{
    char *p;

    switch (bson_iter_type(it)) {
    case BSON_TYPE_DOUBLE:
        return write_double(r, bson_iter_double(it));
    case BSON_TYPE_UTF8: {
        uint32_t len;
        const char *s = bson_iter_utf8(it, &len);

        return write_string_slot(r, s, len);
    }
    case BSON_TYPE_DOCUMENT:
        return render_document(r, it);
    case BSON_TYPE_ARRAY: {
        bson_iter_t child;

        if (!bson_iter_recurse(it, &child))
            return fail(r, MG_ERROR_CODE_PARSE, "corrupt embedded array");
        return render_array(r, &child);
    }
    case BSON_TYPE_BINARY: {
        bson_subtype_t subtype;
        uint32_t len;
        const uint8_t *data;

        bson_iter_binary(it, &subtype, &len, &data);
        return write_binary(r, subtype, data, len);
    }
    case BSON_TYPE_UNDEFINED:
        r->facts |= MG_SCHEMA_FACT_DEPRECATED;
        return PUT_LIT(r, "{\"$undefined\":true}");
    case BSON_TYPE_OID:
        p = room(r, 40);
        if (p == NULL)
            return false;
        memcpy(p, "{\"$oid\":\"", 9);
        p = write_oid_hex(p + 9, bson_iter_oid(it));
        memcpy(p, "\"}", 2);
        done_at(r, p + 2);
        return true;
    case BSON_TYPE_BOOL:
        return bson_iter_bool(it) ? PUT_LIT(r, "true") : PUT_LIT(r, "false");
    case BSON_TYPE_DATE_TIME:
        return write_date(r, bson_iter_date_time(it));
    case BSON_TYPE_NULL:
        return PUT_LIT(r, "null");
    case BSON_TYPE_REGEX: {
        const char *options;
        const char *pattern = bson_iter_regex(it, &options);

        return write_regex(r, pattern, options);
    }
    case BSON_TYPE_DBPOINTER:
        return write_dbpointer(r, it);
    case BSON_TYPE_CODE: {
        uint32_t len;
        const char *code = bson_iter_code(it, &len);

        return PUT_LIT(r, "{\"$code\":") && write_string_slot(r, code, len) && PUT_LIT(r, "}");
    }
    case BSON_TYPE_SYMBOL: {
        uint32_t len;
        const char *sym = bson_iter_symbol(it, &len);

        r->facts |= MG_SCHEMA_FACT_DEPRECATED;
        return PUT_LIT(r, "{\"$symbol\":") && write_string_slot(r, sym, len) && PUT_LIT(r, "}");
    }
    case BSON_TYPE_CODEWSCOPE:
        return write_code_scope(r, it);
    case BSON_TYPE_INT32:
        return write_int(r, bson_iter_int32(it), false);
    case BSON_TYPE_TIMESTAMP: {
        uint32_t t, i;

        bson_iter_timestamp(it, &t, &i);
        p = room(r, 64);
        if (p == NULL)
            return false;
        memcpy(p, "{\"$timestamp\":{\"t\":", 19);
        p += 19;
        p += mg_schema__u64_format(t, p);
        memcpy(p, ",\"i\":", 5);
        p += 5;
        p += mg_schema__u64_format(i, p);
        memcpy(p, "}}", 2);
        done_at(r, p + 2);
        return true;
    }
    case BSON_TYPE_INT64:
        return write_int(r, bson_iter_int64(it), true);
    case BSON_TYPE_DECIMAL128: {
        bson_decimal128_t dec;

        bson_iter_decimal128(it, &dec);
        return write_decimal(r, &dec);
    }
    case BSON_TYPE_MAXKEY:
        return PUT_LIT(r, "{\"$maxKey\":1}");
    case BSON_TYPE_MINKEY:
        return PUT_LIT(r, "{\"$minKey\":1}");
    case BSON_TYPE_EOD:
    default:
        return fail(r, MG_ERROR_CODE_PARSE, "unknown BSON type");
    }
}

/* render_start sets up r; finish_* restore out on failure and publish facts. */
static void
render_start(render_t *r, mg_buf_t *out, mg_schema_fidelity_t fidelity, mg_error_t *error)
{
    r->out = out;
    r->fidelity = fidelity;
    r->facts = 0;
    r->error = error;
    r->depth = 0;
    r->dup = false;
    r->nkeys = 0;
    r->path[0] = NULL;
}

/* render_finish publishes facts on success, restores out->len on failure. */
static bool
render_finish(render_t *r, bool ok, size_t mark, uint32_t *facts)
{
    if (!ok) {
        r->out->len = mark;
        if (r->out->data != NULL)
            r->out->data[mark] = '\0';
        return false;
    }
    if (r->out->data != NULL)
        r->out->data[r->out->len] = '\0';
    if (facts != NULL)
        *facts |= r->facts;
    return true;
}

bool
mg_schema_doc_render_raw(const uint8_t *data, size_t len, mg_schema_fidelity_t fidelity,
                         mg_buf_t *out, uint32_t *facts, mg_error_t *error)
{
    render_t r;
    bson_iter_t it;
    size_t mark = out->len;
    bool ok;

    render_start(&r, out, fidelity, error);
    if (data == NULL || !bson_iter_init_from_data(&it, data, len)) {
        ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                          "could not render BSON: corrupt document header (%zu bytes)", len);
    } else {
        ok = render_object(&r, &it, false, pairs_like(&it, true), true);
    }
    return render_finish(&r, ok, mark, facts);
}

bool
mg_schema_doc_render(const bson_t *doc, mg_schema_fidelity_t fidelity, mg_buf_t *out,
                     uint32_t *facts, mg_error_t *error)
{
    return mg_schema_doc_render_raw(bson_get_data(doc), doc->len, fidelity, out, facts, error);
}

bool
mg_schema_value_render(const bson_iter_t *iter, mg_schema_fidelity_t fidelity, mg_buf_t *out,
                       uint32_t *facts, mg_error_t *error)
{
    render_t r;
    size_t mark = out->len;

    render_start(&r, out, fidelity, error);
    r.depth = 1;
    r.path[1] = bson_iter_key(iter);
    return render_finish(&r, render_value(&r, iter), mark, facts);
}
