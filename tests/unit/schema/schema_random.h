/*
 * tests/unit/schema/schema_random.h - a seeded generator of random BSON
 * documents with every type, nesting, arrays and awkward keys and values;
 * shared by the round-trip unit test and the integration test tool.
 */
#ifndef MG_TEST_SCHEMA_RANDOM_H
#define MG_TEST_SCHEMA_RANDOM_H

#include <bson/bson.h>

#include <stdio.h>
#include <string.h>

static uint64_t rs;

static uint64_t
rnd(void)
{
    rs ^= rs >> 12;
    rs ^= rs << 25;
    rs ^= rs >> 27;
    return rs * UINT64_C(0x2545f4914f6cdd1d);
}

/* random_text writes up to n bytes of text mixing ASCII, escapes and UTF-8. */
static void
random_text(char *buf, size_t n)
{
    static const char *const pieces[] = {
        "a",  "Z",    "0",    " ",        "\"",           "\\",
        "\n", "\x01", "\x7f", "\xc3\xa9", "\xe6\x9d\xb1", "\xf0\x9f\x98\x80",
        ".",  "$"};
    size_t len = 0;

    while (len < n) {
        const char *p = pieces[rnd() % (sizeof(pieces) / sizeof(pieces[0]))];
        size_t pl = strlen(p);

        if (len + pl > n)
            break;
        memcpy(buf + len, p, pl);
        len += pl;
    }
    buf[len] = '\0';
}

/* random_key writes a key: plain, $-prefixed, dotted, empty or a wrapper name. */
static const char *
random_key(char *buf, uint32_t index)
{
    static const char *const special[] = {
        "$oid", "$date", "$code", "$scope",        "$literal", "$numberLong", "$binary", "$ref",
        "$id",  "a.b",   "",      "$stringBase64", "k"};
    uint64_t r = rnd() % 10;

    if (r < 3)
        return special[rnd() % (sizeof(special) / sizeof(special[0]))];
    if (r < 5) {
        random_text(buf, 1 + rnd() % 12);
        if (strlen(buf) > 0)
            return buf;
    }
    snprintf(buf, 32, "f%u", index);
    return buf;
}

static void add_random_value(bson_t *b, const char *key, int depth);

/* add_random_container appends a document or array of random values. */
static void
add_random_container(bson_t *b, const char *key, int depth, bool is_array)
{
    bson_t child;
    uint32_t n = (uint32_t)(rnd() % 6), i;

    if (is_array)
        bson_append_array_begin(b, key, -1, &child);
    else
        bson_append_document_begin(b, key, -1, &child);
    for (i = 0; i < n; i++) {
        char kb[64];
        const char *k;

        if (is_array)
            bson_uint32_to_string(i, &k, kb, sizeof(kb));
        else
            k = random_key(kb, i);
        add_random_value(&child, k, depth + 1);
    }
    if (is_array)
        bson_append_array_end(b, &child);
    else
        bson_append_document_end(b, &child);
}

static void
add_random_value(bson_t *b, const char *key, int depth)
{
    char text[64];
    uint8_t bytes[24];
    bson_oid_t oid;
    size_t i;
    uint64_t kind = rnd() % (depth > 6 ? 21 : 24);

    for (i = 0; i < sizeof(bytes); i++)
        bytes[i] = (uint8_t)rnd();
    memcpy(oid.bytes, bytes, 12);
    switch (kind) {
    case 0: {
        static const double specials[] = {
            0.0, -0.0, 1.0, -1.5, 0.1, 1e300, -1e-300, 5e-324, 1.7976931348623157e308};
        uint64_t bits = rnd();
        double d;

        if (rnd() % 2) {
            d = specials[rnd() % (sizeof(specials) / sizeof(specials[0]))];
        } else {
            memcpy(&d, &bits, sizeof(d)); /* any bit pattern: NaN payloads, Inf, ... */
        }
        bson_append_double(b, key, -1, d);
        break;
    }
    case 1:
        random_text(text, rnd() % 40);
        bson_append_utf8(b, key, -1, text, -1);
        break;
    case 2: /* NUL and bytes that are not UTF-8 */
        bson_append_utf8(b, key, -1, (const char *)bytes, (int)(rnd() % sizeof(bytes)));
        break;
    case 3:
        bson_append_binary(b, key, -1, (bson_subtype_t)(rnd() % 10), bytes,
                           (uint32_t)(rnd() % sizeof(bytes)));
        break;
    case 4:
        bson_append_binary(b, key, -1, (bson_subtype_t)(0x80 + rnd() % 0x80), bytes, 5);
        break;
    case 5:
        bson_append_undefined(b, key, -1);
        break;
    case 6:
        bson_append_oid(b, key, -1, &oid);
        break;
    case 7:
        bson_append_bool(b, key, -1, rnd() % 2);
        break;
    case 8: {
        int64_t ms = (int64_t)rnd();

        if (rnd() % 2)
            ms = (int64_t)(rnd() % UINT64_C(253402300800000));
        bson_append_date_time(b, key, -1, ms);
        break;
    }
    case 9:
        bson_append_null(b, key, -1);
        break;
    case 10: {
        static const char *const opts[] = {"", "i", "imsx", "xi", "lu", "g"};

        random_text(text, rnd() % 10);
        bson_append_regex(b, key, -1, text, opts[rnd() % 6]);
        break;
    }
    case 11:
        random_text(text, rnd() % 10);
        bson_append_dbpointer(b, key, -1, text, &oid);
        break;
    case 12:
        random_text(text, rnd() % 20);
        bson_append_code(b, key, -1, text);
        break;
    case 13:
        bson_append_symbol(b, key, -1, (const char *)bytes, (int)(rnd() % 8));
        break;
    case 14: {
        bson_t scope = BSON_INITIALIZER;

        add_random_value(&scope, "v", depth + 1);
        random_text(text, rnd() % 20);
        bson_append_code_with_scope(b, key, -1, text, &scope);
        bson_destroy(&scope);
        break;
    }
    case 15:
        bson_append_int32(b, key, -1, (int32_t)rnd());
        break;
    case 16:
        bson_append_timestamp(b, key, -1, (uint32_t)rnd(), (uint32_t)rnd());
        break;
    case 17:
        bson_append_int64(b, key, -1, rnd() % 2 ? (int64_t)rnd() : (int64_t)(rnd() % 100));
        break;
    case 18: {
        bson_decimal128_t dec;

        if (rnd() % 2) {
            snprintf(text, sizeof(text), "%lld.%03dE%d", (long long)(rnd() % 1000000) - 500000,
                     (int)(rnd() % 1000), (int)(rnd() % 100) - 50);
            bson_decimal128_from_string(text, &dec);
        } else {
            dec.high = rnd(); /* any bit pattern */
            dec.low = rnd();
        }
        bson_append_decimal128(b, key, -1, &dec);
        break;
    }
    case 19:
        bson_append_minkey(b, key, -1);
        break;
    case 20:
        bson_append_maxkey(b, key, -1);
        break;
    case 21:
    case 22:
        add_random_container(b, key, depth, false);
        break;
    default:
        add_random_container(b, key, depth, true);
        break;
    }
}

/* random_doc returns a new random document (caller destroys). */
static bson_t *
random_doc(void)
{
    bson_t *doc = bson_new();
    uint32_t fields = (uint32_t)(1 + rnd() % 8), i;

    for (i = 0; i < fields; i++) {
        char kb[64];

        add_random_value(doc, random_key(kb, i), 0);
    }
    return doc;
}

#endif /* MG_TEST_SCHEMA_RANDOM_H */
