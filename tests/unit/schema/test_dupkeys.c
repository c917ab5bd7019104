/*
 * tests/unit/schema/test_dupkeys.c - documents with duplicate field names
 * (issue 14, hole 2): the renderer writes them as {"$fieldPairs": [[key,
 * value], ...]} (with a copy of the first _id at the top level), the reverse
 * mapping gives back the same bytes, also after jsonb reorders the wrapper's
 * keys, the census and the renderer report them, the canonical form keeps
 * every value in order, and documents whose key set would read as the pairs
 * form are escaped. Wide documents take the sort path of the check.
 */
#include "mg/schema.h"
#include "schema_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* exact_round_trip renders doc (exact), parses it back and requires the same bytes. */
static char *
exact_round_trip(const bson_t *doc, uint32_t *facts)
{
    mg_error_t error;
    char *json = render_text(doc, MG_SCHEMA_FIDELITY_EXACT, facts, &error);
    bson_t *back;

    if (json == NULL)
        fail_msg("render: %s", error.message);
    back = mg_schema_json_parse(json, strlen(json), &error);
    if (back == NULL)
        fail_msg("parse %s: %s", json, error.message);
    if (!bson_same(doc, back)) {
        char *a = bson_as_canonical_extended_json(doc, NULL);
        char *b = bson_as_canonical_extended_json(back, NULL);

        fail_msg("round trip changed %s into %s (via %s)", a, b, json);
    }
    bson_destroy(back);
    return json;
}

static void
test_top_level_duplicates(void **state)
{
    bson_t *doc =
        BCON_NEW("_id", BCON_INT32(7), "a", BCON_INT32(1), "b", BCON_UTF8("x"), "a", BCON_INT32(2));
    uint32_t facts = 0;
    char *json;

    (void)state;
    json = exact_round_trip(doc, &facts);
    assert_string_equal(json, "{\"_id\":{\"$numberInt\":\"7\"},\"$fieldPairs\":["
                              "[\"_id\",{\"$numberInt\":\"7\"}],[\"a\",{\"$numberInt\":\"1\"}],"
                              "[\"b\",\"x\"],[\"a\",{\"$numberInt\":\"2\"}]]}");
    assert_true(facts & MG_SCHEMA_FACT_DUPLICATE_KEY);
    free(json);
    /* relaxed: the _id copy is the plain value, queryable as doc->'_id' */
    {
        mg_error_t error;

        json = render_text(doc, MG_SCHEMA_FIDELITY_RELAXED, NULL, &error);
        assert_string_equal(json, "{\"_id\":7,\"$fieldPairs\":[[\"_id\",7],[\"a\",1],[\"b\",\"x\"],"
                                  "[\"a\",2]]}");
        free(json);
    }
    bson_destroy(doc);
}

static void
test_nested_duplicates_at_every_level(void **state)
{
    /* {_id: 1, d: {x: 1, y: {k: 1, k: [ {z: 1, z: 2} ]}, x: 2}, e: {unique: 1}} */
    bson_t *doc =
        BCON_NEW("_id", BCON_INT32(1), "d", "{", "x", BCON_INT32(1), "y", "{", "k", BCON_INT32(1),
                 "k", "[", "{", "z", BCON_INT32(1), "z", BCON_INT32(2), "}", "]", "}", "x",
                 BCON_INT32(2), "}", "e", "{", "unique", BCON_INT32(1), "}");
    mg_error_t error;
    char *json;

    (void)state;
    free(exact_round_trip(doc, NULL));
    json = render_text(doc, MG_SCHEMA_FIDELITY_RELAXED, NULL, &error);
    /* the top level has no duplicate: a plain object; each level decides for itself */
    assert_string_equal(json,
                        "{\"_id\":1,\"d\":{\"$fieldPairs\":[[\"x\",1],[\"y\",{\"$fieldPairs\":"
                        "[[\"k\",1],[\"k\",[{\"$fieldPairs\":[[\"z\",1],[\"z\",2]]}]]]}],"
                        "[\"x\",2]]},\"e\":{\"unique\":1}}");
    free(json);
    bson_destroy(doc);
}

static void
test_two_ids_and_scope(void **state)
{
    bson_t *doc = bson_new(), scope = BSON_INITIALIZER;
    char *json;

    (void)state;
    bson_append_utf8(doc, "_id", 3, "first", -1);
    bson_append_utf8(doc, "_id", 3, "second", -1);
    bson_append_int32(&scope, "v", 1, 1);
    bson_append_int32(&scope, "v", 1, 2);
    bson_append_code_with_scope(doc, "c", 1, "f()", &scope);
    json = exact_round_trip(doc, NULL);
    /* the copy beside the pairs is the first _id */
    assert_non_null(strstr(json, "{\"_id\":\"first\",\"$fieldPairs\":[[\"_id\",\"first\"],"));
    assert_non_null(strstr(json, "\"$scope\":{\"$fieldPairs\":[[\"v\","));
    free(json);
    bson_destroy(&scope);
    bson_destroy(doc);
}

/* Documents without duplicates whose key set is the pairs form's are escaped. */
static void
test_pairs_like_documents_escaped(void **state)
{
    bson_t *top1 = BCON_NEW("$fieldPairs", "[", "[", BCON_UTF8("a"), BCON_INT32(1), "]", "]");
    bson_t *top2 = BCON_NEW("_id", BCON_INT32(1), "$fieldPairs", BCON_UTF8("not pairs"));
    bson_t *top3 = BCON_NEW("$fieldPairs", BCON_INT32(1), "_id", BCON_INT32(1));
    bson_t *nested = BCON_NEW("_id", BCON_INT32(1), "n", "{", "$fieldPairs", BCON_INT32(3), "}");
    bson_t *other =
        BCON_NEW("_id", BCON_INT32(1), "$fieldPairs", BCON_INT32(1), "x", BCON_INT32(2));
    bson_t *scoped = bson_new(), scope = BSON_INITIALIZER;
    mg_error_t error;
    char *json;

    (void)state;
    json = exact_round_trip(top1, NULL);
    assert_true(strncmp(json, "{\"$fieldPairs\":[[\"$fieldPairs\",", 31) == 0);
    free(json);
    free(exact_round_trip(top2, NULL));
    free(exact_round_trip(top3, NULL));
    json = render_text(nested, MG_SCHEMA_FIDELITY_RELAXED, NULL, &error);
    assert_string_equal(json, "{\"_id\":1,\"n\":{\"$literal\":{\"$fieldPairs\":3}}}");
    free(json);
    free(exact_round_trip(nested, NULL));
    /* a third key: a plain document, written as it is */
    json = render_text(other, MG_SCHEMA_FIDELITY_RELAXED, NULL, &error);
    assert_string_equal(json, "{\"_id\":1,\"$fieldPairs\":1,\"x\":2}");
    free(json);
    free(exact_round_trip(other, NULL));
    bson_append_int32(&scope, "$fieldPairs", -1, 5);
    bson_append_code_with_scope(scoped, "c", 1, "f()", &scope);
    json = exact_round_trip(scoped, NULL);
    assert_non_null(strstr(json, "\"$scope\":{\"$fieldPairs\":[[\"$fieldPairs\","));
    free(json);
    bson_destroy(&scope);
    bson_destroy(scoped);
    bson_destroy(top1);
    bson_destroy(top2);
    bson_destroy(top3);
    bson_destroy(nested);
    bson_destroy(other);
}

/* What jsonb returns: keys of the wrapper reordered, spaces; arrays keep their order. */
static void
test_parse_jsonb_shaped_pairs(void **state)
{
    const char *text = "{\"_id\": 7, \"$fieldPairs\": [[\"_id\", 7], [\"a\", {\"$fieldPairs\": "
                       "[[\"k\", 1.0], [\"k\", 2]]}], [\"a\", null]]}";
    bson_t *want = bson_new(), sub;
    bson_t *got;
    mg_error_t error;

    (void)state;
    bson_append_int32(want, "_id", 3, 7);
    bson_append_document_begin(want, "a", 1, &sub);
    bson_append_double(&sub, "k", 1, 1.0);
    bson_append_int32(&sub, "k", 1, 2);
    bson_append_document_end(want, &sub);
    bson_append_null(want, "a", 1);
    got = mg_schema_json_parse(text, strlen(text), &error);
    assert_non_null(got);
    assert_true(bson_same(got, want));
    bson_destroy(got);
    bson_destroy(want);
}

static void
test_malformed_pairs_are_errors(void **state)
{
    static const char *const bad[] = {
        "{\"a\": {\"$fieldPairs\": 1}}",         "{\"a\": {\"$fieldPairs\": [1]}}",
        "{\"a\": {\"$fieldPairs\": [[\"k\"]]}}", "{\"a\": {\"$fieldPairs\": [[\"k\", 1, 2]]}}",
        "{\"a\": {\"$fieldPairs\": [[1, 2]]}}",  "{\"a\": {\"$fieldPairs\": [[\"k\\u0000\", 2]]}}",
        "{\"$fieldPairs\": {\"k\": 1}}",         "{\"_id\": 1, \"$fieldPairs\": [[\"_id\"]]}",
    };
    mg_error_t error;

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bson_t *doc = mg_schema_json_parse(bad[i], strlen(bad[i]), &error);

        if (doc != NULL)
            fail_msg("%s parsed", bad[i]);
        assert_int_equal(error.code, MG_ERROR_CODE_PARSE);
        assert_non_null(strstr(error.message, "pair"));
    }
}

/* Many keys: the filter's false alarms switch to the sort check; the answer is the same. */
static void
test_wide_documents(void **state)
{
    bson_t *doc = bson_new();
    mg_error_t error;
    uint32_t facts = 0;
    char key[32], *json;

    (void)state;
    /* 200 keys: the alarms pass DUP_ALARMS, the remembered keys are sorted */
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        bson_append_int32(doc, key, -1, i);
    }
    json = render_text(doc, MG_SCHEMA_FIDELITY_RELAXED, &facts, &error);
    assert_true(strncmp(json, "{\"k0\":0,", 8) == 0);
    assert_false(facts & MG_SCHEMA_FACT_DUPLICATE_KEY);
    free(json);
    bson_append_int32(doc, "k17", -1, -1);
    free(exact_round_trip(doc, &facts));
    assert_true(facts & MG_SCHEMA_FACT_DUPLICATE_KEY);
    bson_reinit(doc);
    facts = 0;
    /* 3000 keys: more than the renderer remembers, read again and sorted */
    for (int i = 0; i < 3000; i++) {
        snprintf(key, sizeof(key), "field_%d", i);
        bson_append_int32(doc, key, -1, i);
    }
    json = render_text(doc, MG_SCHEMA_FIDELITY_RELAXED, &facts, &error);
    assert_non_null(json);
    assert_true(strncmp(json, "{\"field_0\":0,", 13) == 0);
    assert_false(facts & MG_SCHEMA_FACT_DUPLICATE_KEY);
    free(json);
    bson_append_int32(doc, "field_1234", -1, -1); /* one duplicate, last */
    facts = 0;
    json = exact_round_trip(doc, &facts);
    assert_true(strncmp(json, "{\"$fieldPairs\":[[\"field_0\",", 27) == 0);
    assert_true(facts & MG_SCHEMA_FACT_DUPLICATE_KEY);
    free(json);
    bson_destroy(doc);
}

/* Keys alike in length and most bytes are not duplicates; one that is, is found. */
static void
test_filter_collisions_are_not_duplicates(void **state)
{
    bson_t *doc = bson_new();
    mg_error_t error;
    uint32_t facts = 0;
    char *json;
    const char *keys[] = {"aXbXc", "aYbYc", "aZbZc", "aQbQc", "aWbWc", "aEbEc", "aRbRc",
                          "aTbTc", "aUbUc", "aIbIc", "aObOc", "aPbPc", "aSbSc", "aDbDc"};

    (void)state;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        bson_append_int32(doc, keys[i], -1, (int32_t)i);
    json = render_text(doc, MG_SCHEMA_FIDELITY_RELAXED, &facts, &error);
    assert_true(strncmp(json, "{\"aXbXc\":0,", 11) == 0);
    assert_false(facts & MG_SCHEMA_FACT_DUPLICATE_KEY);
    free(json);
    bson_append_int32(doc, "aXbXc", -1, 99);
    json = render_text(doc, MG_SCHEMA_FIDELITY_RELAXED, &facts, &error);
    assert_true(strncmp(json, "{\"$fieldPairs\":", 15) == 0);
    free(json);
    bson_destroy(doc);
}

static void
test_census_and_canonical_form(void **state)
{
    bson_t *a = BCON_NEW("_id", BCON_INT32(1), "v", BCON_INT32(1), "v", BCON_INT32(2));
    bson_t *b = BCON_NEW("_id", BCON_INT32(1), "v", BCON_INT32(5), "v", BCON_INT32(2));
    bson_t *c = BCON_NEW("_id", BCON_INT32(1), "v", BCON_INT32(2));
    mg_schema_census_t *census = mg_schema_census_new("db", "c");
    mg_buf_t warn;
    mg_error_t error;
    bool equal = true;

    (void)state;
    /* only the first value differs: not equal (it used to compare the last value only) */
    assert_true(mg_schema_doc_equal(a, b, MG_SCHEMA_FIDELITY_RELAXED, &equal, &error));
    assert_false(equal);
    assert_true(mg_schema_doc_equal(a, c, MG_SCHEMA_FIDELITY_RELAXED, &equal, &error));
    assert_false(equal);
    assert_true(mg_schema_doc_equal(a, a, MG_SCHEMA_FIDELITY_RELAXED, &equal, &error));
    assert_true(equal);
    assert_true(mg_schema_census_add_sample(census, a, &error));
    assert_true(mg_schema_census_add_sample(census, c, &error));
    mg_buf_init(&warn, 1 << 20);
    assert_true(mg_schema_census_warnings(census, &warn, NULL, &error));
    assert_non_null(strstr(warn.data, "1 of 2 sampled documents have duplicate keys"));
    assert_non_null(strstr(warn.data, "$fieldPairs"));
    mg_buf_cleanup(&warn);
    mg_schema_census_destroy(census);
    bson_destroy(a);
    bson_destroy(b);
    bson_destroy(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_level_duplicates),
        cmocka_unit_test(test_nested_duplicates_at_every_level),
        cmocka_unit_test(test_two_ids_and_scope),
        cmocka_unit_test(test_pairs_like_documents_escaped),
        cmocka_unit_test(test_parse_jsonb_shaped_pairs),
        cmocka_unit_test(test_malformed_pairs_are_errors),
        cmocka_unit_test(test_wide_documents),
        cmocka_unit_test(test_filter_collisions_are_not_duplicates),
        cmocka_unit_test(test_census_and_canonical_form),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
