/*
 * tests/unit/schema/test_roundtrip.c - seeded random round-trip property:
 * documents with every BSON type, nesting, arrays, awkward keys and values
 * render and map back byte-identical in exact mode and to the same
 * canonical form in relaxed mode; also the reverse mapping of jsonb-shaped
 * text, its errors, the canonical form and the census scan.
 */
#include "schema_test_util.h"
#include "schema_random.h"

#include <math.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define SEED 20261126u

static void
test_random_round_trip(void **state)
{
    int n, checked = 0;

    rs = SEED;
    for (n = 0; n < 20000; n++) {
        bson_t *doc = random_doc(), *back;
        mg_error_t error;
        bool equal = false;

        back = round_trip(doc, MG_SCHEMA_FIDELITY_EXACT, &error);
        if (back == NULL)
            fail_msg("doc %d: exact: %s", n, error.message);
        if (!bson_same(doc, back)) {
            char *j = bson_as_canonical_extended_json(doc, NULL);

            fail_msg("doc %d: exact round trip differs: %s", n, j);
        }
        bson_destroy(back);
        back = round_trip(doc, MG_SCHEMA_FIDELITY_RELAXED, &error);
        if (back == NULL)
            fail_msg("doc %d: relaxed: %s", n, error.message);
        assert_true(mg_schema_doc_equal(doc, back, MG_SCHEMA_FIDELITY_RELAXED, &equal, &error));
        if (!equal) {
            char *j = bson_as_canonical_extended_json(doc, NULL);

            fail_msg("doc %d: relaxed round trip not equivalent: %s", n, j);
        }
        checked++;
        bson_destroy(back);
        bson_destroy(doc);
    }
    assert_int_equal(checked, 20000);
}

/* parse_ok parses json and returns the document (fails the test otherwise). */
static bson_t *
parse_ok(const char *json)
{
    mg_error_t error;
    bson_t *b = mg_schema_json_parse(json, strlen(json), &error);

    if (b == NULL)
        fail_msg("parse of %s failed: %s", json, error.message);
    return b;
}

static void
test_parse_jsonb_shaped_text(void **state)
{
    /* what jsonb::text returns: spaces, keys by length, wrapper keys reordered */
    const char *json =
        "{\"a\": 1, \"b\": 2.50, \"i\": 3000000000, \"o\": {\"$oid\": "
        "\"57E193D7A9CC81B4027498B5\"}, "
        "\"d\": {\"$date\": \"2012-12-24T12:15:30.5Z\"}, \"x\": {\"$scope\": {\"z\": null}, "
        "\"$code\": \"f()\"}, \"ts\": {\"$timestamp\": {\"i\": 2, \"t\": 1}}, \"big\": "
        "1000000000000000000000000, \"bin\": {\"$binary\": {\"subType\": \"5\", \"base64\": "
        "\"AQI=\"}}, \"lit\": {\"$literal\": {\"$date\": 1}}, \"arr\": [true, false, \"s\"]}";
    bson_t *b = parse_ok(json);
    bson_iter_t it;
    uint32_t t, inc;

    assert_true(bson_iter_init_find(&it, b, "a") && BSON_ITER_HOLDS_INT32(&it));
    assert_true(bson_iter_init_find(&it, b, "b") && BSON_ITER_HOLDS_DOUBLE(&it));
    assert_true(bson_iter_double(&it) == 2.5);
    assert_true(bson_iter_init_find(&it, b, "i") && BSON_ITER_HOLDS_INT64(&it));
    assert_true(bson_iter_init_find(&it, b, "o") && BSON_ITER_HOLDS_OID(&it));
    assert_true(bson_iter_init_find(&it, b, "d") && BSON_ITER_HOLDS_DATE_TIME(&it));
    assert_true(bson_iter_date_time(&it) == INT64_C(1356351330500));
    assert_true(bson_iter_init_find(&it, b, "x") && BSON_ITER_HOLDS_CODEWSCOPE(&it));
    assert_true(bson_iter_init_find(&it, b, "ts") && BSON_ITER_HOLDS_TIMESTAMP(&it));
    bson_iter_timestamp(&it, &t, &inc);
    assert_int_equal(t, 1);
    assert_int_equal(inc, 2);
    assert_true(bson_iter_init_find(&it, b, "big") && BSON_ITER_HOLDS_DOUBLE(&it));
    assert_true(bson_iter_init_find(&it, b, "bin") && BSON_ITER_HOLDS_BINARY(&it));
    assert_true(bson_iter_init_find(&it, b, "lit") && BSON_ITER_HOLDS_DOCUMENT(&it));
    assert_true(bson_iter_init_find(&it, b, "arr") && BSON_ITER_HOLDS_ARRAY(&it));
    bson_destroy(b);
}

static void
test_parse_errors(void **state)
{
    static const struct {
        const char *json;
        const char *msg;
    } cases[] = {
        {"[1]", "not an object"},
        {"42", "not an object"},
        {"{\"a\": 1", "could not parse JSON"},
        {"", "could not parse JSON"},
        {"{\"a\": {\"$oid\": \"xyz\"}}", "$oid is not 24 hex digits"},
        {"{\"a\": {\"$numberInt\": \"2147483648\"}}", "$numberInt"},
        {"{\"a\": {\"$numberLong\": 5}}", "$numberLong"},
        {"{\"a\": {\"$numberDouble\": \"0x1p3\"}}", "$numberDouble"},
        {"{\"a\": {\"$date\": \"2012-13-01T00:00:00Z\"}}", "$date"},
        {"{\"a\": {\"$binary\": {\"base64\": \"***\", \"subType\": \"00\"}}}", "base64"},
        /* pad bits not zero: not the text the renderer writes for any bytes */
        {"{\"a\": {\"$binary\": {\"base64\": \"Zh==\", \"subType\": \"00\"}}}", "base64"},
        {"{\"a\": {\"$timestamp\": {\"t\": -1, \"i\": 0}}}", "$timestamp"},
        {"{\"a\": {\"$minKey\": 2}}", "$minKey"},
        {"{\"a\": {\"$literal\": 1}}", "$literal"},
        {"{\"a\": {\"$oid\": \"x\", \"$oid\": \"y\"}}", "duplicate key"},
        {"{\"a\\u0000b\": 1}", "U+0000"},
        {"{\"a\": {\"b\": {\"$regularExpression\": {\"pattern\": \"a\"}}}}", "a.b"},
    };
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mg_error_t error;
        bson_t *b = mg_schema_json_parse(cases[i].json, strlen(cases[i].json), &error);

        if (b != NULL)
            fail_msg("%s parsed", cases[i].json);
        if (strstr(error.message, cases[i].msg) == NULL)
            fail_msg("%s: error \"%s\" lacks \"%s\"", cases[i].json, error.message, cases[i].msg);
    }
}

static void
test_parse_depth_limit(void **state)
{
    size_t depth = 3 * MG_SCHEMA_MAX_DEPTH + 20, i;
    char *json = malloc(depth * 6 + 16);
    size_t n = 0;
    mg_error_t error;

    for (i = 0; i < depth; i++) {
        memcpy(json + n, "{\"a\":", 5);
        n += 5;
    }
    json[n++] = '1';
    for (i = 0; i < depth; i++)
        json[n++] = '}';
    assert_null(mg_schema_json_parse(json, n, &error));
    assert_int_equal(error.code, MG_ERROR_CODE_LIMIT);
    free(json);
}

static void
test_append_value_untouched_on_error(void **state)
{
    bson_t dst = BSON_INITIALIZER;
    mg_error_t error;

    assert_true(mg_schema_json_append_value(&dst, "a", -1, "\"x\"", 3, &error));
    {
        const char *v = "[1, {\"$numberLong\": \"2\"}]";

        assert_true(mg_schema_json_append_value(&dst, "b", 1, v, strlen(v), &error));
    }
    assert_false(mg_schema_json_append_value(&dst, "c", -1, "{\"$oid\": 1}", 11, &error));
    assert_false(mg_schema_json_append_value(&dst, "c", -1, "1 2", 3, &error));
    assert_int_equal(bson_count_keys(&dst), 2);
    bson_destroy(&dst);
}

static void
test_canonical_form(void **state)
{
    bson_t *a = BCON_NEW("b", BCON_INT64(1), "aa", "{", "y", BCON_INT32(1), "x", BCON_INT32(2), "}",
                         "a", BCON_INT32(0), "a", BCON_INT32(9));
    bson_t *b = parse_ok("{\"a\": 9, \"b\": 1, \"aa\": {\"x\": 2, \"y\": 1}}");
    bson_t *c;
    mg_error_t error;
    bool equal = false;

    /* a document with a duplicate key is compared exactly: not the same as its last value */
    assert_true(mg_schema_doc_equal(a, b, MG_SCHEMA_FIDELITY_RELAXED, &equal, &error));
    assert_false(equal);
    /* without the duplicate: jsonb's order does not matter; int64 vs int32 only in exact */
    bson_destroy(b);
    b = parse_ok("{\"b\": 1, \"aa\": {\"x\": 2, \"y\": 1}, \"a\": 0, \"a\": 9}");
    assert_true(mg_schema_doc_equal(a, b, MG_SCHEMA_FIDELITY_RELAXED, &equal, &error));
    assert_true(equal);
    assert_true(mg_schema_doc_equal(a, b, MG_SCHEMA_FIDELITY_EXACT, &equal, &error));
    assert_false(equal);
    /* jsonb's order (shorter keys first) where keys are unique; every member in order
     * where one repeats */
    c = mg_schema_doc_canonicalize(a, MG_SCHEMA_FIDELITY_RELAXED, &error);
    assert_non_null(c);
    {
        char *j = bson_as_relaxed_extended_json(c, NULL);

        assert_string_equal(
            j, "{ \"b\" : 1, \"aa\" : { \"x\" : 2, \"y\" : 1 }, \"a\" : 0, \"a\" : 9 }");
        bson_free(j);
    }
    bson_destroy(c);
    bson_destroy(a);
    bson_destroy(b);
}

static void
test_scan_facts(void **state)
{
    bson_t *doc = BCON_NEW(
        "k", BCON_INT32(1), "k", BCON_INT32(2), "$x", BCON_INT32(1), "a.b", BCON_INT32(1), "",
        BCON_NULL, "n", BCON_DOUBLE(NAN), "z", BCON_DOUBLE(-0.0), "w", "{", "$oid", BCON_UTF8("x"),
        "}", "u", BCON_UNDEFINED, "arr", "[", "{", "deep", "[", BCON_INT32(1), "]", "}", "]");
    bson_t clean = BSON_INITIALIZER;
    mg_error_t error;
    uint32_t facts = 0, depth = 0;

    bson_append_utf8(doc, "s", 1, "a\0b", 3);
    assert_true(mg_schema_doc_scan(doc, &facts, &depth, &error));
    assert_true(facts & MG_SCHEMA_FACT_DUPLICATE_KEY);
    assert_true(facts & MG_SCHEMA_FACT_DOLLAR_KEY);
    assert_true(facts & MG_SCHEMA_FACT_DOTTED_KEY);
    assert_true(facts & MG_SCHEMA_FACT_EMPTY_KEY);
    assert_true(facts & MG_SCHEMA_FACT_NAN_INF);
    assert_true(facts & MG_SCHEMA_FACT_NEGATIVE_ZERO);
    assert_true(facts & MG_SCHEMA_FACT_LITERAL);
    assert_true(facts & MG_SCHEMA_FACT_DEPRECATED);
    assert_true(facts & MG_SCHEMA_FACT_NUL_STRING);
    assert_int_equal(depth, 4);
    bson_append_int32(&clean, "a", 1, 1);
    facts = 0;
    assert_true(mg_schema_doc_scan(&clean, &facts, &depth, &error));
    assert_int_equal(facts, 0);
    assert_int_equal(depth, 1);
    bson_destroy(&clean);
    bson_destroy(doc);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_round_trip),
        cmocka_unit_test(test_parse_jsonb_shaped_text),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_depth_limit),
        cmocka_unit_test(test_append_value_untouched_on_error),
        cmocka_unit_test(test_canonical_form),
        cmocka_unit_test(test_scan_facts),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
