/*
 * tests/unit/schema/test_key.c - the key column (issue 14, holes 1 and 8):
 * the canonical key follows MongoDB's _id equality both ways (a table of
 * pairs MongoDB holds as one _id and as two, for every BSON type that can be
 * an _id), reads back to an _id, turns long keys into a SHA-256 digest, and
 * the other key types refuse what they cannot hold with an error naming the
 * way out. A seeded randomized property test (MG_TEST_SEED, MG_TEST_ROUNDS)
 * checks the same equivalence against an oracle that knows equality by
 * construction: every number is built from one factorised value
 * (sign, m, 2^a, 5^b) and written as int32, int64, double or Decimal128.
 */
#include "mg/schema.h"
#include "schema_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* ---- helpers ---- */

/* doc_of parses {"_id": <json>} with libbson's Extended JSON reader. */
static bson_t *
doc_of(const char *json_value)
{
    char text[8192];
    bson_error_t be;
    bson_t *doc;

    snprintf(text, sizeof(text), "{\"_id\": %s}", json_value);
    doc = bson_new_from_json((const uint8_t *)text, -1, &be);
    if (doc == NULL)
        fail_msg("bad test JSON %s: %s", text, be.message);
    return doc;
}

/* key_of returns the malloc'd key text of doc's _id under type, or NULL (error set). */
static char *
key_of(const bson_t *doc, mg_schema_key_type_t type, mg_error_t *error)
{
    bson_iter_t it;
    mg_buf_t buf;
    char *out = NULL;

    if (!bson_iter_init_find(&it, doc, "_id"))
        fail_msg("no _id");
    mg_buf_init(&buf, 1u << 24);
    if (mg_schema_key_encode(&it, type, MG_SCHEMA_FIDELITY_RELAXED, false, &buf, error)) {
        out = malloc(buf.len + 1);
        memcpy(out, buf.data != NULL ? buf.data : "", buf.len);
        out[buf.len] = '\0';
        assert_int_equal(strlen(out), buf.len); /* a text parameter: no NUL */
    }
    mg_buf_cleanup(&buf);
    return out;
}

static char *
canon_key(const bson_t *doc)
{
    mg_error_t e;
    char *k = key_of(doc, MG_SCHEMA_KEY_CANONICAL, &e);

    if (k == NULL)
        fail_msg("could not encode: %s", e.message);
    return k;
}

/*
 * check_decodes reads key back to an _id and requires that _id to have the
 * same key again (decode is a right inverse of encode on every class).
 */
static void
check_decodes(const char *key)
{
    bson_t back = BSON_INITIALIZER;
    mg_error_t e;
    char *again;

    if (!mg_schema_key_append_id(MG_SCHEMA_KEY_CANONICAL, key, strlen(key), &back, "_id", -1, &e))
        fail_msg("key %s does not read back: %s", key, e.message);
    again = canon_key(&back);
    if (strcmp(again, key) != 0)
        fail_msg("key %s reads back as an _id with key %s", key, again);
    free(again);
    bson_destroy(&back);
}

/* ---- SHA-256 ---- */

static void
test_sha256_vectors(void **state)
{
    static const struct {
        const char *msg;
        const char *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqr"
         "lmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    uint8_t d[32];
    char hex[65];
    char *million = malloc(1000000);

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        mg_schema__sha256(v[i].msg, strlen(v[i].msg), d);
        for (int k = 0; k < 32; k++)
            snprintf(hex + 2 * k, 3, "%02x", d[k]);
        assert_string_equal(hex, v[i].hex);
    }
    memset(million, 'a', 1000000);
    mg_schema__sha256(million, 1000000, d);
    for (int k = 0; k < 32; k++)
        snprintf(hex + 2 * k, 3, "%02x", d[k]);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* every length around the padding boundaries gives a distinct digest */
    {
        uint8_t prev[32] = {0};

        for (size_t n = 50; n < 140; n++) {
            mg_schema__sha256(million, n, d);
            assert_memory_not_equal(d, prev, 32);
            memcpy(prev, d, 32);
        }
    }
    free(million);
}

/* ---- the equality table ---- */

/*
 * Groups of _id values (Extended JSON) MongoDB holds as ONE _id: every
 * member of a group must get the same key, and members of different groups
 * different keys (every pair across groups is a "different" case).
 */
static const char *const groups[][8] = {
    /* numbers by value across int32, int64, double, Decimal128 */
    {"1", "{\"$numberLong\": \"1\"}", "1.0", "{\"$numberDecimal\": \"1.0\"}",
     "{\"$numberDecimal\": \"1\"}", "{\"$numberDecimal\": \"0.001E+3\"}",
     "{\"$numberDecimal\": \"100E-2\"}", NULL},
    {"0", "{\"$numberDouble\": \"-0.0\"}", "{\"$numberLong\": \"0\"}",
     "{\"$numberDecimal\": \"-0\"}", "{\"$numberDecimal\": \"0E+300\"}",
     "{\"$numberDecimal\": \"-0.000\"}", "0.0", NULL},
    {"-1", "{\"$numberLong\": \"-1\"}", "-1.0", "{\"$numberDecimal\": \"-1.00\"}", NULL},
    {"{\"$numberDouble\": \"NaN\"}", "{\"$numberDecimal\": \"NaN\"}",
     "{\"$numberDecimal\": \"-NaN\"}", NULL},
    {"{\"$numberDouble\": \"Infinity\"}", "{\"$numberDecimal\": \"Infinity\"}", NULL},
    {"{\"$numberDouble\": \"-Infinity\"}", "{\"$numberDecimal\": \"-Infinity\"}", NULL},
    {"0.5", "{\"$numberDecimal\": \"0.5\"}", "{\"$numberDecimal\": \"0.50\"}",
     "{\"$numberDecimal\": \"5E-1\"}", NULL},
    {"0.1", NULL},
    {"{\"$numberDecimal\": \"0.1\"}", "{\"$numberDecimal\": \"0.10\"}",
     "{\"$numberDecimal\": \"1E-1\"}", NULL},
    {"{\"$numberDecimal\": \"0.1000000000000000055511151231257827\"}", NULL},
    {"0.125", "{\"$numberDecimal\": \"0.125\"}", "{\"$numberDecimal\": \"125E-3\"}", NULL},
    {"2147483648", "{\"$numberLong\": \"2147483648\"}", "2147483648.0",
     "{\"$numberDecimal\": \"2147483648\"}", NULL},
    /* 2^53 + 1: an int64 no double holds */
    {"{\"$numberLong\": \"9007199254740993\"}", "{\"$numberDecimal\": \"9007199254740993\"}",
     "{\"$numberDecimal\": \"9007199254740993.000\"}", NULL},
    {"{\"$numberLong\": \"9007199254740992\"}", "9007199254740992.0",
     "{\"$numberDecimal\": \"9.007199254740992E+15\"}", NULL},
    {"{\"$numberLong\": \"9223372036854775807\"}", "{\"$numberDecimal\": \"9223372036854775807\"}",
     NULL},
    /* 2^63: a double, not an int64 */
    {"9223372036854775808.0", "{\"$numberDecimal\": \"9223372036854775808\"}",
     "{\"$numberDecimal\": \"9.223372036854775808E+18\"}", NULL},
    {"{\"$numberLong\": \"-9223372036854775808\"}", "-9223372036854775808.0",
     "{\"$numberDecimal\": \"-9223372036854775808\"}", NULL},
    {"{\"$numberDecimal\": \"-9223372036854775809\"}", NULL},
    /* 10^22 is a double (5^22 < 2^53), 10^23 is not */
    {"1e22", "{\"$numberDecimal\": \"1E+22\"}", "{\"$numberDecimal\": \"10000000000E+12\"}", NULL},
    {"1e23", NULL},
    {"{\"$numberDecimal\": \"1E+23\"}", NULL},
    /* 5 * 2^100: a double with trailing zero bits in the coefficient */
    {"6338253001141147007483516026880.0",
     "{\"$numberDecimal\": \"6338253001141147007483516026880\"}",
     "{\"$numberDecimal\": \"6.338253001141147007483516026880E+30\"}", NULL},
    {"1e300", NULL},
    {"{\"$numberDecimal\": \"1E+300\"}", NULL},
    {"5e-324", NULL},
    {"{\"$numberDecimal\": \"4.9E-324\"}", NULL},
    {"{\"$numberDecimal\": \"9.999999999999999999999999999999999E+6144\"}", NULL},
    {"{\"$numberDecimal\": \"1E-6176\"}", NULL},
    {"{\"$numberDecimal\": \"-1E-6176\"}", NULL},
    /* strings and symbols by bytes */
    {"\"a\"", "{\"$symbol\": \"a\"}", NULL},
    {"\"A\"", NULL},
    {"\"\"", "{\"$symbol\": \"\"}", NULL},
    {"\"a\\u0000b\"", "{\"$symbol\": \"a\\u0000b\"}", NULL},
    {"\"a\\u0000c\"", NULL},
    {"\"\\u00e9\"", NULL},  /* é, NFC */
    {"\"e\\u0301\"", NULL}, /* é, NFD: other bytes, another _id */
    {"\"1\"", NULL},
    {"\"null\"", NULL},
    {"\"5f1d7a3b9c8e4d2f1a0b3c4d\"", NULL},
    {"\"s1:a\"", NULL},
    /* ObjectIds */
    {"{\"$oid\": \"5f1d7a3b9c8e4d2f1a0b3c4d\"}", NULL},
    {"{\"$oid\": \"5f1d7a3b9c8e4d2f1a0b3c4e\"}", NULL},
    /* embedded documents: field by field, in order, values by MongoDB's rules */
    {"{\"day\": 1, \"shop\": 2}", "{\"day\": 1.0, \"shop\": {\"$numberLong\": \"2\"}}",
     "{\"day\": {\"$numberDecimal\": \"1.0\"}, \"shop\": 2.0}", NULL},
    {"{\"shop\": 2, \"day\": 1}", NULL},
    {"{\"day\": \"1\", \"shop\": 2}", NULL},
    {"{\"day\": 1}", NULL},
    {"{\"Day\": 1, \"shop\": 2}", NULL},
    {"{\"a\": {\"b\": 1, \"c\": \"x\"}}", "{\"a\": {\"b\": 1.0, \"c\": {\"$symbol\": \"x\"}}}",
     NULL},
    {"{\"a\": {\"c\": \"x\", \"b\": 1}}", NULL},
    {"{\"a\": [1, 2]}", "{\"a\": [1.0, {\"$numberLong\": \"2\"}]}", NULL},
    {"{\"a\": [2, 1]}", NULL},
    {"{\"a\": {\"0\": 1, \"1\": 2}}", NULL},
    {"{\"a\": []}", NULL},
    {"{\"a\": {}}", NULL},
    {"{\"a\": null}", NULL},
    {"{}", NULL},
    {"{\"\": 1}", NULL},
    {"{\" \": 1}", NULL},
    {"{\"a\": 1, \"a\": 2}", NULL},
    {"{\"a\": 1, \"a\": 1}", NULL},
    {"{\"a\": {\"$regularExpression\": {\"pattern\": \"x\", \"options\": \"\"}}}", NULL},
    {"{\"a\": {\"$undefined\": true}}", NULL},
    /* binary: subtype and bytes */
    {"{\"$binary\": {\"base64\": \"AQID\", \"subType\": \"00\"}}", NULL},
    {"{\"$binary\": {\"base64\": \"AQID\", \"subType\": \"04\"}}", NULL},
    {"{\"$binary\": {\"base64\": \"AQIE\", \"subType\": \"04\"}}", NULL},
    {"{\"$binary\": {\"base64\": \"\", \"subType\": \"00\"}}", NULL},
    {"{\"$binary\": {\"base64\": \"\", \"subType\": \"80\"}}", NULL},
    {"{\"$binary\": {\"base64\": \"AQID\", \"subType\": \"02\"}}", NULL},
    {"{\"$binary\": {\"base64\": \"c//SZESzTGmQ6OfR38A11A==\", \"subType\": \"04\"}}", NULL},
    {"{\"$binary\": {\"base64\": \"c//SZESzTGmQ6OfR38A11A==\", \"subType\": \"03\"}}", NULL},
    /* booleans, dates, timestamps */
    {"true", NULL},
    {"false", NULL},
    {"{\"$date\": {\"$numberLong\": \"0\"}}", NULL},
    {"{\"$date\": {\"$numberLong\": \"1\"}}", NULL},
    {"{\"$date\": {\"$numberLong\": \"-62135596800000\"}}", NULL},
    {"{\"$timestamp\": {\"t\": 0, \"i\": 0}}", NULL},
    {"{\"$timestamp\": {\"t\": 1, \"i\": 2}}", NULL},
    {"{\"$timestamp\": {\"t\": 2, \"i\": 1}}", NULL},
    /* regular expressions: pattern and options bytes */
    {"{\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"i\"}}", NULL},
    {"{\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"m\"}}", NULL},
    {"{\"$regularExpression\": {\"pattern\": \"a\", \"options\": \"\"}}", NULL},
    {"{\"$regularExpression\": {\"pattern\": \"b\", \"options\": \"i\"}}", NULL},
    /* DBPointer, code, code with scope */
    {"{\"$dbPointer\": {\"$ref\": \"db.c\", \"$id\": {\"$oid\": \"5f1d7a3b9c8e4d2f1a0b3c4d\"}}}",
     NULL},
    {"{\"$dbPointer\": {\"$ref\": \"db.d\", \"$id\": {\"$oid\": \"5f1d7a3b9c8e4d2f1a0b3c4d\"}}}",
     NULL},
    {"{\"$dbPointer\": {\"$ref\": \"db.c\", \"$id\": {\"$oid\": \"5f1d7a3b9c8e4d2f1a0b3c4e\"}}}",
     NULL},
    {"{\"$code\": \"a\"}", NULL},
    {"{\"$code\": \"b\"}", NULL},
    {"{\"$code\": \"a\", \"$scope\": {\"x\": 1}}", "{\"$code\": \"a\", \"$scope\": {\"x\": 1.0}}",
     NULL},
    {"{\"$code\": \"a\", \"$scope\": {\"x\": 2}}", NULL},
    {"{\"$code\": \"a\", \"$scope\": {}}", NULL},
    /* the singletons */
    {"null", NULL},
    {"{\"$undefined\": true}", NULL},
    {"{\"$minKey\": 1}", NULL},
    {"{\"$maxKey\": 1}", NULL},
};
#define NGROUPS (sizeof(groups) / sizeof(groups[0]))

static void
test_equality_table(void **state)
{
    char **keys[NGROUPS];
    size_t pairs_equal = 0, pairs_different = 0;

    (void)state;
    for (size_t g = 0; g < NGROUPS; g++) {
        keys[g] = calloc(8, sizeof(char *));
        for (size_t m = 0; m < 8 && groups[g][m] != NULL; m++) {
            bson_t *doc = doc_of(groups[g][m]);

            keys[g][m] = canon_key(doc);
            check_decodes(keys[g][m]);
            bson_destroy(doc);
        }
    }
    /* equal within a group */
    for (size_t g = 0; g < NGROUPS; g++)
        for (size_t m = 1; m < 8 && keys[g][m] != NULL; m++, pairs_equal++)
            if (strcmp(keys[g][0], keys[g][m]) != 0)
                fail_msg("MongoDB holds %s and %s as one _id, but the keys differ: %s / %s",
                         groups[g][0], groups[g][m], keys[g][0], keys[g][m]);
    /* different across groups */
    for (size_t g = 0; g < NGROUPS; g++)
        for (size_t h = g + 1; h < NGROUPS; h++)
            for (size_t m = 0; m < 8 && keys[g][m] != NULL; m++)
                for (size_t n = 0; n < 8 && keys[h][n] != NULL; n++, pairs_different++)
                    if (strcmp(keys[g][m], keys[h][n]) == 0)
                        fail_msg("MongoDB holds %s and %s as two _ids, but both get key %s",
                                 groups[g][m], groups[h][n], keys[g][m]);
    print_message("equality table: %zu equal pairs, %zu different pairs\n", pairs_equal,
                  pairs_different);
    for (size_t g = 0; g < NGROUPS; g++) {
        for (size_t m = 0; m < 8; m++)
            free(keys[g][m]);
        free(keys[g]);
    }
}

/* The spellings the table does not reach through JSON: NaN payloads, bad UTF-8, sNaN. */
static void
test_values_json_cannot_spell(void **state)
{
    uint64_t nan_bits[] = {UINT64_C(0x7ff8000000000000), UINT64_C(0xfff8000000000000),
                           UINT64_C(0x7ff0000000000001), UINT64_C(0x7ff8dead00000000)};
    bson_decimal128_t snan = {.high = UINT64_C(0x7e00000000000000), .low = 42};
    /* a non-canonical significand (above 10^34 - 1) is zero */
    bson_decimal128_t big = {.high = UINT64_C(0x3041ed09bead87c0),
                             .low = UINT64_C(0x378d8e6400000000)};
    bson_decimal128_t implicit = {.high = UINT64_C(0x6c10000000000000), .low = 1};
    char *first = NULL, *k;
    bson_t *doc;

    (void)state;
    for (size_t i = 0; i < 4; i++) {
        double d;

        memcpy(&d, &nan_bits[i], 8);
        doc = BCON_NEW("_id", BCON_DOUBLE(d));
        k = canon_key(doc);
        if (first == NULL)
            first = k;
        else {
            assert_string_equal(k, first);
            free(k);
        }
        bson_destroy(doc);
    }
    doc = BCON_NEW("_id", BCON_DECIMAL128(&snan));
    k = canon_key(doc);
    assert_string_equal(k, first); /* every NaN is one _id */
    free(k);
    bson_destroy(doc);
    free(first);

    doc = BCON_NEW("_id", BCON_INT32(0));
    first = canon_key(doc);
    bson_destroy(doc);
    doc = BCON_NEW("_id", BCON_DECIMAL128(&big));
    k = canon_key(doc);
    assert_string_equal(k, first);
    free(k);
    bson_destroy(doc);
    doc = BCON_NEW("_id", BCON_DECIMAL128(&implicit));
    k = canon_key(doc);
    assert_string_equal(k, first);
    free(k);
    bson_destroy(doc);
    free(first);

    /* strings that are not UTF-8: by bytes, and text-safe */
    {
        bson_t *a = bson_new(), *b = bson_new(), *c = bson_new();
        char *ka, *kb, *kc;

        bson_append_utf8(a, "_id", 3, "\xff\xfe", 2);
        bson_append_utf8(b, "_id", 3, "\xff\xfd", 2);
        bson_append_symbol(c, "_id", 3, "\xff\xfe", 2);
        ka = canon_key(a);
        kb = canon_key(b);
        kc = canon_key(c);
        assert_string_not_equal(ka, kb);
        assert_string_equal(ka, kc);
        assert_true(mg_utf8_valid(ka, strlen(ka)));
        check_decodes(ka);
        free(ka);
        free(kb);
        free(kc);
        bson_destroy(a);
        bson_destroy(b);
        bson_destroy(c);
    }
}

static void
test_array_id_is_refused(void **state)
{
    bson_t *doc = doc_of("[1, 2]");
    mg_error_t e;
    char *k;

    (void)state;
    k = key_of(doc, MG_SCHEMA_KEY_CANONICAL, &e);
    assert_null(k);
    assert_non_null(strstr(e.message, "an array cannot be an _id"));
    assert_non_null(strstr(e.message, "[1,2]"));
    bson_destroy(doc);
}

/* ---- long keys ---- */

static void
test_long_keys_become_digests(void **state)
{
    size_t n = 5000;
    char *s = malloc(n + 1);
    bson_t *a = bson_new(), *b = bson_new(), *c = bson_new(), *d = bson_new();
    char *ka, *kb, *kc, *kd;
    bson_t back = BSON_INITIALIZER;
    mg_error_t e;

    (void)state;
    memset(s, 'x', n);
    s[n] = '\0';
    bson_append_utf8(a, "_id", 3, s, (int)n);
    bson_append_symbol(b, "_id", 3, s, (int)n); /* the same _id */
    s[n - 1] = 'y';
    bson_append_utf8(c, "_id", 3, s, (int)n); /* differs in the last byte */
    /* just under the limit: "s2594:" + 2594 bytes = 2600 */
    bson_append_utf8(d, "_id", 3, s, 2594);
    ka = canon_key(a);
    kb = canon_key(b);
    kc = canon_key(c);
    kd = canon_key(d);
    assert_int_equal(strlen(ka), 65);
    assert_int_equal(ka[0], '#');
    assert_string_equal(ka, kb);
    assert_string_not_equal(ka, kc);
    assert_true(mg_schema_key_is_digest(MG_SCHEMA_KEY_CANONICAL, ka, strlen(ka)));
    assert_int_equal(strlen(kd), MG_SCHEMA_KEY_MAX_BYTES);
    assert_false(mg_schema_key_is_digest(MG_SCHEMA_KEY_CANONICAL, kd, strlen(kd)));
    check_decodes(kd);
    /* a digest does not give the _id back, and says so */
    assert_false(
        mg_schema_key_append_id(MG_SCHEMA_KEY_CANONICAL, ka, strlen(ka), &back, "_id", -1, &e));
    assert_int_equal(e.code, MG_ERROR_CODE_NOT_FOUND);
    assert_non_null(strstr(e.message, "SHA-256"));
    assert_true(bson_empty(&back));
    free(ka);
    free(kb);
    free(kc);
    free(kd);
    free(s);
    bson_destroy(a);
    bson_destroy(b);
    bson_destroy(c);
    bson_destroy(d);
}

/* ---- the other key types ---- */

static void
test_text_and_bigint_types(void **state)
{
    static const struct {
        const char *id;
        mg_schema_key_type_t type;
        const char *key; /* NULL: does not fit */
    } cases[] = {
        {"{\"$oid\": \"5f1d7a3b9c8e4d2f1a0b3c4d\"}", MG_SCHEMA_KEY_TEXT_OID,
         "5f1d7a3b9c8e4d2f1a0b3c4d"},
        {"\"abc\"", MG_SCHEMA_KEY_TEXT_OID, "abc"},
        {"{\"$symbol\": \"abc\"}", MG_SCHEMA_KEY_TEXT_OID, "abc"},
        {"\"5f1d7a3b9c8e4d2f1a0b3c4d\"", MG_SCHEMA_KEY_TEXT_OID, NULL},
        {"1", MG_SCHEMA_KEY_TEXT_OID, NULL},
        {"\"a\\u0000b\"", MG_SCHEMA_KEY_TEXT_STRING, NULL},
        {"{\"$oid\": \"5f1d7a3b9c8e4d2f1a0b3c4d\"}", MG_SCHEMA_KEY_TEXT_STRING, NULL},
        {"\"5f1d7a3b9c8e4d2f1a0b3c4d\"", MG_SCHEMA_KEY_TEXT_STRING, "5f1d7a3b9c8e4d2f1a0b3c4d"},
        {"42", MG_SCHEMA_KEY_BIGINT, "42"},
        {"{\"$numberLong\": \"-9223372036854775808\"}", MG_SCHEMA_KEY_BIGINT,
         "-9223372036854775808"},
        {"42.0", MG_SCHEMA_KEY_BIGINT, "42"},
        {"{\"$numberDecimal\": \"4.20E+1\"}", MG_SCHEMA_KEY_BIGINT, "42"},
        {"{\"$numberDouble\": \"-0.0\"}", MG_SCHEMA_KEY_BIGINT, "0"},
        {"42.5", MG_SCHEMA_KEY_BIGINT, NULL},
        {"9223372036854775808.0", MG_SCHEMA_KEY_BIGINT, NULL},
        {"{\"$numberDouble\": \"NaN\"}", MG_SCHEMA_KEY_BIGINT, NULL},
        {"\"42\"", MG_SCHEMA_KEY_BIGINT, NULL},
    };
    mg_error_t e;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bson_t *doc = doc_of(cases[i].id);
        char *k = key_of(doc, cases[i].type, &e);

        if (cases[i].key == NULL) {
            if (k != NULL)
                fail_msg("%s fits %s as %s", cases[i].id, mg_schema_key_type_name(cases[i].type),
                         k);
            /* the error names the _id, the key type and the way out */
            assert_non_null(strstr(e.message, "does not fit key type"));
            assert_non_null(strstr(e.message, mg_schema_key_type_name(cases[i].type)));
            assert_non_null(strstr(e.message, "--key-type DB.COLL=canonical"));
        } else {
            if (k == NULL)
                fail_msg("%s does not fit %s: %s", cases[i].id,
                         mg_schema_key_type_name(cases[i].type), e.message);
            assert_string_equal(k, cases[i].key);
            /* reads back to an _id with the same key */
            {
                bson_t back = BSON_INITIALIZER;
                char *again;

                assert_true(
                    mg_schema_key_append_id(cases[i].type, k, strlen(k), &back, "_id", -1, &e));
                again = key_of(&back, cases[i].type, &e);
                assert_non_null(again);
                assert_string_equal(again, k);
                free(again);
                bson_destroy(&back);
            }
        }
        free(k);
        bson_destroy(doc);
    }
    /* a long string: text refuses it and names the way out */
    {
        char *s = malloc(3001);
        bson_t *doc = bson_new();
        char *k;

        memset(s, 'a', 3000);
        s[3000] = '\0';
        bson_append_utf8(doc, "_id", 3, s, 3000);
        k = key_of(doc, MG_SCHEMA_KEY_TEXT_STRING, &e);
        assert_null(k);
        assert_non_null(strstr(e.message, "2600 bytes"));
        assert_non_null(strstr(e.message, "canonical"));
        free(s);
        bson_destroy(doc);
    }
}

static void
test_key_append_id_rejects_garbage(void **state)
{
    static const char *const bad[] = {
        "",
        "i",
        "i12",
        "i-;",
        "i99999999999999999999;",
        "s5:ab",
        "S2:zz",
        "S1:0",
        "{s1:a",
        "{i1;}",
        "[i1;]",
        "5f1d7a3b9c",
        "Q",
        "r1.0",
        "rx;",
        "x1E;",
        "B0;",
        "B0011",
        "t1;",
        "t4294967296,0;",
        "R s1:a",
        "Rs1:as1:",
        "P s1:a",
        "Ps1:a5f1d",
        "Ks1:a",
        "Ks1:a{",
        "i1;i2;",
        "{s1:\x00i1;}",
        "#",
        "D;",
    };
    mg_error_t e;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bson_t dst = BSON_INITIALIZER;
        size_t len = i == 27 ? 9 : strlen(bad[i]);

        if (mg_schema_key_append_id(MG_SCHEMA_KEY_CANONICAL, bad[i], len, &dst, "_id", -1, &e))
            fail_msg("key \"%s\" read as an _id", bad[i]);
        assert_true(bson_empty(&dst));
        bson_destroy(&dst);
    }
}

/* ---- the randomized property test ---- */

/*
 * Two generators: `structure` draws the value MongoDB sees (which number,
 * which string, which fields), `spelling` how it is written (int32, int64,
 * double or Decimal128 with trailing zeros; string or symbol; which NaN or
 * zero). A pool of _ids is drawn from a few structure seeds with fresh
 * spellings, so equal _ids written differently are common.
 */
typedef struct {
    uint64_t s;
} rng_t;

static rng_t structure, spelling;

static uint64_t
rnd(rng_t *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * UINT64_C(0x2545f4914f6cdd1d);
}

typedef unsigned __int128 u128;

/*
 * A number in factorised form: zero, NaN, +-Infinity, or sign * m * 2^a *
 * 5^b with m coprime to 10. The form is unique, so two numbers are equal
 * exactly when their forms are: the oracle needs no arithmetic.
 */
typedef struct {
    int kind; /* 0 zero, 1 finite, 2 NaN, 3 +Inf, 4 -Inf */
    int neg;
    uint64_t m;
    int a, b;
} fnum_t;

static void
fnum_text(const fnum_t *f, char *out, size_t outsz)
{
    if (f->kind == 1)
        snprintf(out, outsz, "N%c%llu.%d.%d", f->neg ? '-' : '+', (unsigned long long)f->m, f->a,
                 f->b);
    else
        snprintf(out, outsz, "N%d", f->kind);
}

/* pow_fits multiplies *v by base^e, false when it passes limit. */
static bool
pow_fits(u128 *v, unsigned base, int e, u128 limit)
{
    for (int i = 0; i < e; i++) {
        if (*v > limit / base)
            return false;
        *v *= base;
    }
    return *v <= limit;
}

/* fnum_random draws a number, near the edges of int32, int64, doubles and decimals. */
static void
fnum_random(fnum_t *f)
{
    static const uint64_t ms[] = {1, 3, 99, 123456789, 9007199254740991, 4611686018427387903};
    static const int as[] = {-1074, -1060, -60, -3, -1, 0, 1, 2, 10, 31, 52, 53, 60, 63, 64, 100};
    static const int bs[] = {-30, -2, -1, 0, 1, 2, 22, 23, 40};
    uint64_t r = rnd(&structure) % 100;

    memset(f, 0, sizeof(*f));
    if (r < 5) {
        f->kind = 0;
    } else if (r < 8) {
        f->kind = 2;
    } else if (r < 10) {
        f->kind = 3 + (int)(rnd(&structure) % 2);
    } else {
        f->kind = 1;
        f->neg = (int)(rnd(&structure) % 2);
        f->m = ms[rnd(&structure) % (sizeof(ms) / sizeof(ms[0]))];
        f->a = as[rnd(&structure) % (sizeof(as) / sizeof(as[0]))];
        f->b = bs[rnd(&structure) % (sizeof(bs) / sizeof(bs[0]))];
    }
}

#define DEC_LIMIT ((u128)UINT64_C(10000000000000000) * UINT64_C(1000000000000000000) - 1)

/* decimal_coeff computes the coefficient of f at exponent q, false when over 10^34 - 1. */
static bool
decimal_coeff(const fnum_t *f, int q, u128 *c)
{
    *c = f->m;
    if (q > f->a || q > f->b || q < -6176)
        return false;
    return pow_fits(c, 2, f->a - q, DEC_LIMIT) && pow_fits(c, 5, f->b - q, DEC_LIMIT);
}

/* special_append writes zero, NaN or an infinity in a random spelling. */
static bool
special_append(const fnum_t *f, bson_t *dst, const char *key)
{
    uint64_t nan_bits = UINT64_C(0x7ff8000000000000) | (rnd(&spelling) % 2 ? UINT64_C(1) << 63 : 0);
    bson_decimal128_t dec;
    double d;

    if (f->kind == 0) {
        char text[64];

        switch (rnd(&spelling) % 5) {
        case 0:
            return bson_append_int32(dst, key, -1, 0);
        case 1:
            return bson_append_int64(dst, key, -1, 0);
        case 2:
            return bson_append_double(dst, key, -1, rnd(&spelling) % 2 ? -0.0 : 0.0);
        default:
            snprintf(text, sizeof(text), "%s0E%d", rnd(&spelling) % 2 ? "-" : "",
                     (int)(rnd(&spelling) % 200) - 100);
            bson_decimal128_from_string(text, &dec);
            return bson_append_decimal128(dst, key, -1, &dec);
        }
    }
    if (rnd(&spelling) % 2) {
        bson_decimal128_from_string(f->kind == 2   ? (rnd(&spelling) % 2 ? "NaN" : "-NaN")
                                    : f->kind == 3 ? "Infinity"
                                                   : "-Infinity",
                                    &dec);
        return bson_append_decimal128(dst, key, -1, &dec);
    }
    memcpy(&d, &nan_bits, 8);
    if (f->kind != 2)
        d = f->kind == 3 ? INFINITY : -INFINITY;
    return bson_append_double(dst, key, -1, d);
}

/*
 * fnum_append writes f as a random one of the BSON number types that hold
 * it exactly; returns false when none can (the caller draws another).
 */
static bool
fnum_append(const fnum_t *f, bson_t *dst, const char *key)
{
    int choices[4], n = 0, q0 = f->a < f->b ? f->a : f->b;
    bool int64_ok = false, double_ok = false;
    u128 mag = 0, c;

    if (f->kind != 1)
        return special_append(f, dst, key);
    /* int64: a >= 0, b >= 0 and the magnitude below 2^63 (2^63 itself when negative) */
    if (f->a >= 0 && f->b >= 0) {
        mag = f->m;
        int64_ok = pow_fits(&mag, 2, f->a, (u128)1 << 63) &&
                   pow_fits(&mag, 5, f->b, (u128)1 << 63) && (mag < ((u128)1 << 63) || f->neg);
    }
    /* double: b >= 0, the odd part m * 5^b below 2^53, the exponent in range */
    if (f->b >= 0) {
        u128 odd = f->m;
        int bits = 0;

        double_ok = pow_fits(&odd, 5, f->b, ((u128)1 << 53) - 1);
        for (u128 t = odd; t != 0; t >>= 1)
            bits++;
        double_ok = double_ok && f->a >= -1074 && bits + f->a <= 1024;
    }
    if (int64_ok && mag <= (u128)INT32_MAX + (u128)f->neg)
        choices[n++] = 0;
    if (int64_ok)
        choices[n++] = 1;
    if (double_ok)
        choices[n++] = 2;
    if (decimal_coeff(f, q0, &c))
        choices[n++] = 3;
    if (n == 0)
        return false;
    switch (choices[rnd(&spelling) % (uint64_t)n]) {
    case 0:
        return bson_append_int32(dst, key, -1, (int32_t)(f->neg ? -(int64_t)mag : (int64_t)mag));
    case 1:
        return bson_append_int64(dst, key, -1,
                                 f->neg ? (int64_t)(0 - (uint64_t)mag) : (int64_t)(uint64_t)mag);
    case 2: {
        u128 odd = f->m;
        double d;

        pow_fits(&odd, 5, f->b, ~(u128)0);
        d = ldexp((double)(uint64_t)odd, f->a);
        return bson_append_double(dst, key, -1, f->neg ? -d : d);
    }
    default: {
        int q = q0 - (int)(rnd(&spelling) % 3); /* trailing zeros: another spelling */
        char digits[64], text[96];
        size_t nd = 0;
        bson_decimal128_t dec;

        if (!decimal_coeff(f, q, &c)) {
            q = q0;
            decimal_coeff(f, q, &c);
        }
        do {
            digits[nd++] = (char)('0' + (int)(c % 10));
            c /= 10;
        } while (c != 0);
        for (size_t i = 0; i < nd / 2; i++) {
            char t = digits[i];

            digits[i] = digits[nd - 1 - i];
            digits[nd - 1 - i] = t;
        }
        digits[nd] = '\0';
        snprintf(text, sizeof(text), "%s%sE%d", f->neg ? "-" : "", digits, q);
        if (!bson_decimal128_from_string(text, &dec))
            fail_msg("decimal %s", text);
        return bson_append_decimal128(dst, key, -1, &dec);
    }
    }
}

/* oracle_add appends text to the oracle string. */
static void
oracle_add(char *oracle, size_t cap, const char *text)
{
    size_t used = strlen(oracle);

    snprintf(oracle + used, cap - used, "%s", text);
}

/*
 * random_value appends a random value under key and writes the oracle's
 * text of its MongoDB equality class into oracle (appended).
 */
static void
random_value(bson_t *dst, const char *key, char *oracle, size_t cap, int depth)
{
    static const char *const strs[] = {"a", "b", "A", "", "\xc3\xa9", "e\xcc\x81", "5f1d"};
    static const char *const names[] = {"a", "b", "day", "shop", ""};
    uint64_t r = rnd(&structure) % 100;
    char text[128];

    if (strlen(oracle) + 200 > cap)
        r = 99; /* keep the oracle text bounded: a scalar */
    if (r < 45) {
        fnum_t f;

        do
            fnum_random(&f);
        while (!fnum_append(&f, dst, key));
        fnum_text(&f, text, sizeof(text));
        oracle_add(oracle, cap, text);
    } else if (r < 65) {
        const char *s = strs[rnd(&structure) % (sizeof(strs) / sizeof(strs[0]))];

        if (rnd(&spelling) % 3 == 0)
            bson_append_symbol(dst, key, -1, s, -1);
        else
            bson_append_utf8(dst, key, -1, s, -1);
        snprintf(text, sizeof(text), "S<%s>", s);
        oracle_add(oracle, cap, text);
    } else if (r < 80 && depth < 3) {
        bson_t sub;
        bool is_array = depth > 0 && rnd(&structure) % 3 == 0;
        int n = (int)(rnd(&structure) % 3);

        if (is_array)
            bson_append_array_begin(dst, key, -1, &sub);
        else
            bson_append_document_begin(dst, key, -1, &sub);
        oracle_add(oracle, cap, is_array ? "[" : "{");
        for (int i = 0; i < n; i++) {
            char idx[16];
            const char *k = idx;

            if (is_array) {
                snprintf(idx, sizeof(idx), "%d", i);
            } else {
                k = names[rnd(&structure) % (sizeof(names) / sizeof(names[0]))];
                snprintf(text, sizeof(text), "K<%s>", k);
                oracle_add(oracle, cap, text);
            }
            random_value(&sub, k, oracle, cap, depth + 1);
        }
        if (is_array)
            bson_append_array_end(dst, &sub);
        else
            bson_append_document_end(dst, &sub);
        oracle_add(oracle, cap, is_array ? "]" : "}");
    } else {
        static const char *const others[] = {"null", "undef", "min", "max",  "true", "false",
                                             "oid",  "date",  "ts",  "bin4", "bin0"};
        size_t w = rnd(&structure) % (sizeof(others) / sizeof(others[0]));
        bson_oid_t oid;
        uint8_t bytes[2] = {1, 2};

        switch (w) {
        case 0:
            bson_append_null(dst, key, -1);
            break;
        case 1:
            bson_append_undefined(dst, key, -1);
            break;
        case 2:
            bson_append_minkey(dst, key, -1);
            break;
        case 3:
            bson_append_maxkey(dst, key, -1);
            break;
        case 4:
        case 5:
            bson_append_bool(dst, key, -1, w == 4);
            break;
        case 6:
            bson_oid_init_from_string(&oid, "5f1d7a3b9c8e4d2f1a0b3c4d");
            bson_append_oid(dst, key, -1, &oid);
            break;
        case 7:
            bson_append_date_time(dst, key, -1, 0);
            break;
        case 8:
            bson_append_timestamp(dst, key, -1, 0, 0);
            break;
        default:
            bson_append_binary(dst, key, -1, w == 9 ? BSON_SUBTYPE_UUID : BSON_SUBTYPE_BINARY,
                               bytes, 2);
        }
        snprintf(text, sizeof(text), "O<%s>", others[w]);
        oracle_add(oracle, cap, text);
    }
}

static void
test_random_equivalence(void **state)
{
    const char *seed_env = getenv("MG_TEST_SEED");
    const char *rounds_env = getenv("MG_TEST_ROUNDS");
    uint64_t seed = seed_env != NULL ? strtoull(seed_env, NULL, 0) : (uint64_t)time(NULL);
    size_t rounds = rounds_env != NULL ? strtoul(rounds_env, NULL, 10) : 3000;
    enum { POOL = 64, SEEDS = 12 };
    char *keys[POOL], *oracles[POOL], *shown[POOL];
    size_t equal = 0, different = 0, spelled_differently = 0;

    (void)state;
    print_message("test_random_equivalence: seed %llu (MG_TEST_SEED=%llu to repeat), %zu rounds\n",
                  (unsigned long long)seed, (unsigned long long)seed, rounds);
    spelling.s = seed != 0 ? seed : 1;
    for (size_t round = 0; round < rounds; round++) {
        uint64_t seeds[SEEDS];

        for (size_t i = 0; i < SEEDS; i++)
            seeds[i] = rnd(&spelling) | 1;
        /* a pool of random _ids from a few structures, compared all against all */
        for (size_t i = 0; i < POOL; i++) {
            bson_t *doc = bson_new();
            char oracle[4096] = "";

            structure.s = seeds[rnd(&spelling) % SEEDS];
            random_value(doc, "_id", oracle, sizeof(oracle), 0);
            keys[i] = canon_key(doc);
            oracles[i] = strdup(oracle);
            shown[i] = bson_as_canonical_extended_json(doc, NULL);
            check_decodes(keys[i]);
            bson_destroy(doc);
        }
        for (size_t i = 0; i < POOL; i++) {
            for (size_t j = i + 1; j < POOL; j++) {
                bool same_key = strcmp(keys[i], keys[j]) == 0;
                bool same_id = strcmp(oracles[i], oracles[j]) == 0;

                if (same_key != same_id)
                    fail_msg("seed %llu round %zu: %s and %s are %s in MongoDB but get %s keys "
                             "(%s / %s)",
                             (unsigned long long)seed, round, shown[i], shown[j],
                             same_id ? "one _id" : "two _ids", same_key ? "the same" : "different",
                             keys[i], keys[j]);
                if (same_id) {
                    equal++;
                    spelled_differently += strcmp(shown[i], shown[j]) != 0;
                } else {
                    different++;
                }
            }
        }
        for (size_t i = 0; i < POOL; i++) {
            free(keys[i]);
            free(oracles[i]);
            bson_free(shown[i]);
        }
    }
    print_message("test_random_equivalence: %zu equal pairs (%zu spelled differently), %zu "
                  "different pairs\n",
                  equal, spelled_differently, different);
    assert_true(spelled_differently > rounds); /* the point of the pool */
}

/* ---- key type choice ---- */

static void
test_key_type_choice(void **state)
{
    const char *const items[] = {"shop.*=canonical", "shop.ints=bigint"};
    const char *const bad1[] = {"nope"};
    const char *const bad2[] = {"shop=canonical"};
    const char *const bad3[] = {"jsonb"};
    const char *const strings[] = {"shop.ints=text_string"};
    mg_schema_census_t *c = mg_schema_census_new("shop", "ints");
    mg_schema_census_t *o = mg_schema_census_new("shop", "orders");
    mg_error_t e;

    (void)state;
    assert_true(mg_schema_key_choice_check(items, 2, &e));
    assert_false(mg_schema_key_choice_check(bad1, 1, &e));
    assert_non_null(strstr(e.message, "key_type"));
    assert_false(mg_schema_key_choice_check(bad2, 1, &e));
    assert_false(mg_schema_key_choice_check(bad3, 1, &e));
    assert_non_null(strstr(e.message, "canonical"));
    assert_true(mg_schema_census_add_id_type(c, "int", 10, &e));
    assert_true(mg_schema_census_add_id_type(o, "objectId", 10, &e));
    assert_true(mg_schema_census_choose_key(c, items, 2, &e)); /* the last match wins */
    assert_int_equal(mg_schema_census_key_type(c), MG_SCHEMA_KEY_BIGINT);
    assert_true(mg_schema_census_choose_key(o, items, 2, &e));
    assert_int_equal(mg_schema_census_key_type(o), MG_SCHEMA_KEY_CANONICAL);
    /* a forced type the census shows cannot hold every _id: refused, naming the way out */
    assert_false(mg_schema_census_choose_key(c, strings, 1, &e));
    assert_non_null(strstr(e.message, "shop.ints"));
    assert_non_null(strstr(e.message, "int"));
    assert_non_null(strstr(e.message, "canonical"));
    mg_schema_census_destroy(c);
    mg_schema_census_destroy(o);
}

/* shell_word reads the first shell word after "--key-type " in msg (plain or '...' with '\\''). */
static void
shell_word(const char *msg, char *out, size_t outsz)
{
    const char *p = strstr(msg, "--key-type ");
    size_t o = 0;
    bool quoted = false;

    assert_non_null(p);
    for (p += 11; *p != '\0' && o + 1 < outsz; p++) {
        if (!quoted && (*p == ';' || *p == ' '))
            break;
        if (*p == '\'') {
            quoted = !quoted;
            continue;
        }
        if (!quoted && *p == '\\') {
            out[o++] = *++p;
            continue;
        }
        out[o++] = *p;
    }
    out[o] = '\0';
}

/*
 * The way out of a misfit names the collection as a --key-type item that
 * works as given: a shell word that init reads as a pattern matching that
 * collection only (the old message said DB.COLL literally). It comes before
 * the _id, so a long _id and a caller's prefix cannot cut it off, and the
 * message is UTF-8 cut between characters.
 */
static void
test_misfit_names_the_collection(void **state)
{
    static const struct {
        const char *db, *coll, *item, *other; /* other: a name the item must not match */
    } names[] = {
        {"shop", "orders", "shop.orders=canonical", "shop.orders2"},
        {"shop", "it's [a]*?\\x", "'shop.it'\\''s \\[a]\\*\\?\\\\x=canonical'", "shop.it's a*?x"},
        {"db", "a=b", "db.a=b=canonical", "db.a"},
    };
    mg_error_t e;

    (void)state;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        bson_t *doc = bson_new();
        bson_iter_t it;
        mg_buf_t buf;
        char word[512], ns[256];
        const char *items[1] = {word};
        mg_schema_census_t *c = mg_schema_census_new(names[i].db, names[i].coll);
        mg_schema_census_t *other;

        bson_append_int32(doc, "_id", 3, 424242);
        assert_true(bson_iter_init_find(&it, doc, "_id"));
        mg_buf_init(&buf, 1024);
        assert_false(mg_schema_key_encode_for(names[i].db, names[i].coll, &it,
                                              MG_SCHEMA_KEY_TEXT_OID, MG_SCHEMA_FIDELITY_RELAXED,
                                              false, &buf, &e));
        assert_int_equal(buf.len, 0);
        assert_null(strstr(e.message, "DB.COLL"));
        if (strstr(e.message, names[i].item) == NULL)
            fail_msg("want %s in: %s", names[i].item, e.message);
        assert_non_null(strstr(e.message, "424242"));
        /* the word, as a shell reads it, is an item init takes for this collection only */
        shell_word(e.message, word, sizeof(word));
        assert_true(mg_schema_key_choice_check(items, 1, &e));
        assert_true(mg_schema_census_add_id_type(c, "int", 1, &e));
        assert_true(mg_schema_census_choose_key(c, items, 1, &e));
        assert_int_equal(mg_schema_census_key_type(c), MG_SCHEMA_KEY_CANONICAL);
        snprintf(ns, sizeof(ns), "%s", names[i].other);
        *strchr(ns, '.') = '\0';
        other = mg_schema_census_new(ns, ns + strlen(ns) + 1);
        assert_true(mg_schema_census_add_id_type(other, "int", 1, &e));
        assert_true(mg_schema_census_choose_key(other, items, 1, &e));
        assert_int_equal(mg_schema_census_key_type(other), MG_SCHEMA_KEY_BIGINT);
        mg_schema_census_destroy(other);
        mg_schema_census_destroy(c);
        mg_buf_cleanup(&buf);
        bson_destroy(doc);
    }
    /* a 3000-byte _id of "\xc3\xa9z" (the randomized test's) under a long prefix: the way
     * out is whole, the message UTF-8 */
    {
        char big[3001];
        bson_t *doc = bson_new();
        bson_iter_t it;
        mg_buf_t buf;
        char shown[256];

        for (size_t i = 0; i < 3000; i += 3)
            memcpy(big + i, "\xc3\xa9z", 3);
        big[3000] = '\0';
        bson_append_symbol(doc, "_id", 3, big, 3000);
        assert_true(bson_iter_init_find(&it, doc, "_id"));
        mg_buf_init(&buf, 1 << 20);
        assert_false(mg_schema_key_encode_for("shop", "orders", &it, MG_SCHEMA_KEY_TEXT_STRING,
                                              MG_SCHEMA_FIDELITY_RELAXED, false, &buf, &e));
        mg_schema_id_describe(&it, shown, sizeof(shown));
        assert_true(mg_utf8_valid(shown, strlen(shown)));
        assert_true(strlen(shown) < sizeof(shown));
        mg_error_prefix(&e, "collection \"shop.orders\", _id %s", shown);
        assert_true(mg_utf8_valid(e.message, strlen(e.message)));
        assert_non_null(strstr(e.message, "--key-type shop.orders=canonical;"));
        mg_buf_cleanup(&buf);
        bson_destroy(doc);
    }
}

/*
 * mg_schema_id_describe cuts between characters whatever the room: the old
 * code cut the randomized test's Symbol("\xc3\xa9z" x 1000) inside an
 * e-acute, and PostgreSQL refused the text (the copier retried ~88,000 times).
 */
static void
test_id_describe_is_utf8(void **state)
{
    char big[3001], shown[300];
    bson_t *doc = bson_new();
    bson_iter_t it;

    (void)state;
    for (size_t i = 0; i < 3000; i += 3)
        memcpy(big + i, "\xc3\xa9z", 3);
    bson_append_symbol(doc, "_id", 3, big, 3000);
    assert_true(bson_iter_init_find(&it, doc, "_id"));
    for (size_t outsz = 1; outsz <= sizeof(shown); outsz++) {
        mg_schema_id_describe(&it, shown, outsz);
        assert_true(strlen(shown) < outsz);
        if (!bson_utf8_validate(shown, strlen(shown), false))
            fail_msg("cut to %zu bytes: not UTF-8: %s", outsz, shown);
        if (outsz > 20)
            assert_memory_equal(shown, "{\"$symbol\":\"\xc3\xa9z", 14);
    }
    bson_destroy(doc);
}

/* A string _id the sample shows text cannot hold makes the rule choose canonical. */
static void
test_census_sees_text_misfits(void **state)
{
    mg_schema_census_t *c = mg_schema_census_new("db", "c");
    bson_t *doc = bson_new();
    mg_error_t e;

    (void)state;
    assert_true(mg_schema_census_add_id_type(c, "string", 2, &e));
    bson_append_utf8(doc, "_id", 3, "plain", -1);
    assert_true(mg_schema_census_add_sample(c, doc, &e));
    assert_int_equal(mg_schema_census_key_type(c), MG_SCHEMA_KEY_TEXT_STRING);
    bson_reinit(doc);
    bson_append_utf8(doc, "_id", 3, "nul\0inside", 10);
    assert_true(mg_schema_census_add_sample(c, doc, &e));
    assert_int_equal(mg_schema_census_key_type(c), MG_SCHEMA_KEY_CANONICAL);
    bson_destroy(doc);
    mg_schema_census_destroy(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256_vectors),
        cmocka_unit_test(test_equality_table),
        cmocka_unit_test(test_values_json_cannot_spell),
        cmocka_unit_test(test_array_id_is_refused),
        cmocka_unit_test(test_long_keys_become_digests),
        cmocka_unit_test(test_text_and_bigint_types),
        cmocka_unit_test(test_key_append_id_rejects_garbage),
        cmocka_unit_test(test_random_equivalence),
        cmocka_unit_test(test_key_type_choice),
        cmocka_unit_test(test_misfit_names_the_collection),
        cmocka_unit_test(test_id_describe_is_utf8),
        cmocka_unit_test(test_census_sees_text_misfits),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
