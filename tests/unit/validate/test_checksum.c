/*
 * tests/unit/validate/test_checksum.c - the document hash over the canonical
 * form: equal on both sides of the BSON -> JSON -> BSON trip for random
 * documents of every type, blind to key order, sensitive to every value and
 * type change; and the field-level diff.
 */
#include "mg/validate.h"
#include "schema_random.h"
#include "schema_test_util.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define SEED 20261127u

static void
test_hash64_basics(void **state)
{
    const char a[] = "hello, world: sixteen+ bytes here";
    char b[sizeof(a)];

    assert_true(mg_validate_hash64(a, sizeof(a), 0) == mg_validate_hash64(a, sizeof(a), 0));
    assert_true(mg_validate_hash64(a, sizeof(a), 0) != mg_validate_hash64(a, sizeof(a), 1));
    /* every single-bit flip changes the hash */
    for (size_t i = 0; i < sizeof(a); i++) {
        for (int bit = 0; bit < 8; bit++) {
            memcpy(b, a, sizeof(a));
            b[i] = (char)(b[i] ^ (1 << bit));
            assert_true(mg_validate_hash64(a, sizeof(a), 0) != mg_validate_hash64(b, sizeof(b), 0));
        }
    }
    /* the length is part of the hash: trailing zero bytes count */
    assert_true(mg_validate_hash64("a", 1, 0) != mg_validate_hash64("a\0", 2, 0));
    assert_true(mg_validate_hash64("", 0, 0) != mg_validate_hash64("\0", 1, 0));
}

/* json_hash_of hashes a JSON text; fails the test on error. */
static void
json_hash_of(const char *json, uint64_t *dh, uint64_t *ih)
{
    mg_error_t error;

    if (!mg_validate_json_hash(json, strlen(json), MG_SCHEMA_FIDELITY_RELAXED, dh, ih, &error))
        fail_msg("%s: %s", json, error.message);
}

static void
test_both_sides_hash_the_same(void **state)
{
    int n;

    rs = SEED;
    for (n = 0; n < 5000; n++) {
        bson_t *body = random_doc(), doc = BSON_INITIALIZER;
        mg_error_t error;
        uint64_t sd, si, td, ti;

        if (n % 3 == 0)
            BSON_APPEND_INT32(&doc, "_id", n);
        else if (n % 3 == 1)
            BSON_APPEND_UTF8(&doc, "_id", "some id");
        else
            add_random_value(&doc, "_id", 3);
        bson_concat(&doc, body);
        for (int f = 0; f < 2; f++) {
            mg_schema_fidelity_t fid = f ? MG_SCHEMA_FIDELITY_EXACT : MG_SCHEMA_FIDELITY_RELAXED;
            char *text = render_text(&doc, fid, NULL, &error);
            if (text == NULL)
                continue; /* unrenderable on purpose (not UTF-8 keys): not a row */
            assert_true(mg_validate_doc_hash(&doc, fid, &sd, &si, &error));
            if (!mg_validate_json_hash(text, strlen(text), fid, &td, &ti, &error))
                fail_msg("doc %d: %s", n, error.message);
            if (sd != td || si != ti)
                fail_msg("doc %d (%s): source and target hashes differ: %s", n,
                         f ? "exact" : "relaxed", text);
            free(text);
        }
        bson_destroy(&doc);
        bson_destroy(body);
    }
}

static void
test_hash_sees_changes_not_key_order(void **state)
{
    uint64_t a, b, ia, ib;
    mg_error_t error;
    bson_t nid = BSON_INITIALIZER;

    json_hash_of("{\"b\": 1, \"_id\": \"x\", \"a\": {\"z\": [1, 2], \"y\": null}}", &a, &ia);
    json_hash_of("{\"_id\": \"x\", \"a\": {\"y\": null, \"z\": [1, 2]}, \"b\": 1}", &b, &ib);
    assert_true(a == b && ia == ib);
    /* same _id, different content: same id hash, other doc hash */
    json_hash_of("{\"_id\": \"x\", \"a\": {\"y\": null, \"z\": [2, 1]}, \"b\": 1}", &b, &ib);
    assert_true(a != b && ia == ib);
    /* double 2.0 vs int 2 */
    json_hash_of("{\"_id\": 1, \"v\": 2.0}", &a, &ia);
    json_hash_of("{\"_id\": 1, \"v\": 2}", &b, &ib);
    assert_true(a != b && ia == ib);
    /* int 1 vs string "1" as _id: different segments' ids */
    json_hash_of("{\"_id\": 1}", &a, &ia);
    json_hash_of("{\"_id\": \"1\"}", &b, &ib);
    assert_true(ia != ib);
    /* relaxed: an int64 that fits int32 is the int32 */
    bson_t l = BSON_INITIALIZER, i = BSON_INITIALIZER;
    BSON_APPEND_INT64(&l, "_id", 5);
    BSON_APPEND_INT32(&i, "_id", 5);
    assert_true(mg_validate_doc_hash(&l, MG_SCHEMA_FIDELITY_RELAXED, &a, &ia, &error));
    assert_true(mg_validate_doc_hash(&i, MG_SCHEMA_FIDELITY_RELAXED, &b, &ib, &error));
    assert_true(a == b && ia == ib);
    assert_true(mg_validate_doc_hash(&l, MG_SCHEMA_FIDELITY_EXACT, &a, &ia, &error));
    assert_true(mg_validate_doc_hash(&i, MG_SCHEMA_FIDELITY_EXACT, &b, &ib, &error));
    assert_true(a != b);
    bson_destroy(&l);
    bson_destroy(&i);
    /* no _id: an error, outputs untouched */
    BSON_APPEND_INT32(&nid, "x", 1);
    a = 42;
    assert_false(mg_validate_doc_hash(&nid, MG_SCHEMA_FIDELITY_RELAXED, &a, &ia, &error));
    assert_true(a == 42);
    assert_non_null(strstr(error.message, "_id"));
    bson_destroy(&nid);
}

/* expect_jsonb_text checks that json normalises to exactly jsonb's text (from PostgreSQL 15). */
static void
expect_jsonb_text(const char *json, const char *jsonb)
{
    uint64_t got, id;
    mg_error_t error;

    if (!mg_validate_json_hash(json, strlen(json), MG_SCHEMA_FIDELITY_RELAXED, &got, &id, &error))
        fail_msg("%s: %s", json, error.message);
    if (got != mg_validate_hash64(jsonb, strlen(jsonb), 0))
        fail_msg("%s does not normalise to %s", json, jsonb);
}

static void
test_normalised_text_is_jsonb_text(void **state)
{
    /* expected texts printed by PostgreSQL 15 for the same input cast to jsonb */
    expect_jsonb_text("{\"_id\":1,\"b\":[1,{},[],{\"y\":1,\"x\":[true,null]}],"
                      "\"a\":\"q\\\"\\\\\\u0001\\n\\u00e9\\/\",\"aa\":1.50}",
                      "{\"a\": \"q\\\"\\\\\\u0001\\n\xc3\xa9/\", \"b\": [1, {}, [], {\"x\": [true, "
                      "null], \"y\": 1}], \"aa\": 1.50, \"_id\": 1}");
    /* duplicate keys: the last one is kept */
    expect_jsonb_text("{\"_id\": 2, \"k\": 1, \"k\": {\"z\": 0, \"z\": [ ]}}",
                      "{\"k\": {\"z\": []}, \"_id\": 2}");
    /* already in order: unchanged apart from spacing; tabs and \b escaped like jsonb */
    expect_jsonb_text("{\"a\":\"x\\ty\\b\",\"_id\":{\"$oid\":\"0123456789abcdef01234567\"}}",
                      "{\"a\": \"x\\ty\\b\", \"_id\": {\"$oid\": \"0123456789abcdef01234567\"}}");
    /* escaped keys sort by their unescaped bytes */
    expect_jsonb_text("{\"_id\":1,\"z\\n\":1,\"\\u00e9\":2,\"b\":3, \"b\": [\"\\t\"]}",
                      "{\"b\": [\"\\t\"], \"z\\n\": 1, \"\xc3\xa9\": 2, \"_id\": 1}");
    /* a surrogate pair becomes the UTF-8 character */
    expect_jsonb_text("{\"_id\":\"\\ud83d\\ude00\"}", "{\"_id\": \"\xf0\x9f\x98\x80\"}");
}

/* diff_json diffs two JSON documents; returns the diffs (caller frees). */
static mg_validate_field_diff_t *
diff_json(const char *s, const char *t, size_t max, size_t *n, bool *more)
{
    mg_error_t error;
    bson_t *bs = mg_schema_json_parse(s, strlen(s), &error);
    bson_t *bt = mg_schema_json_parse(t, strlen(t), &error);
    mg_validate_field_diff_t *diffs = NULL;

    assert_non_null(bs);
    assert_non_null(bt);
    *n = 0;
    *more = false;
    assert_true(
        mg_validate_doc_diff(bs, bt, MG_SCHEMA_FIDELITY_RELAXED, max, &diffs, n, more, &error));
    bson_destroy(bs);
    bson_destroy(bt);
    return diffs;
}

static void
test_diff_names_paths_and_values(void **state)
{
    size_t n;
    bool more;
    mg_validate_field_diff_t *d;

    d = diff_json("{\"_id\": 1, \"a\": {\"b\": {\"c\": \"x\"}}, \"arr\": [1, {\"k\": 2}, 3], "
                  "\"gone\": true, \"num\": 2.0}",
                  "{\"_id\": 1, \"new\": null, \"a\": {\"b\": {\"c\": \"y\"}}, \"arr\": [1, "
                  "{\"k\": 5}], \"num\": 2}",
                  100, &n, &more);
    assert_int_equal(n, 6);
    assert_false(more);
    /* canonical order: shorter keys first, then bytewise */
    assert_string_equal(d[0].path, "a.b.c");
    assert_string_equal(d[0].source_value, "\"x\"");
    assert_string_equal(d[0].target_value, "\"y\"");
    assert_string_equal(d[1].path, "arr.1.k");
    assert_string_equal(d[1].source_value, "2");
    assert_string_equal(d[1].target_value, "5");
    assert_string_equal(d[2].path, "arr.2");
    assert_string_equal(d[2].source_value, "3");
    assert_null(d[2].target_value);
    assert_string_equal(d[2].target_type, "absent");
    assert_string_equal(d[3].path, "new");
    assert_null(d[3].source_value);
    assert_string_equal(d[3].target_value, "null");
    assert_string_equal(d[4].path, "num");
    assert_string_equal(d[4].source_type, "double");
    assert_string_equal(d[4].target_type, "int");
    assert_string_equal(d[4].source_value, "2.0");
    assert_string_equal(d[5].path, "gone");
    assert_string_equal(d[5].source_value, "true");
    mg_validate_field_diffs_free(d, n);

    /* a type change of a container is one difference at its path */
    d = diff_json("{\"_id\": 1, \"a\": [1]}", "{\"_id\": 1, \"a\": {\"0\": 1}}", 100, &n, &more);
    assert_int_equal(n, 1);
    assert_string_equal(d[0].path, "a");
    assert_string_equal(d[0].source_type, "array");
    assert_string_equal(d[0].target_type, "object");
    mg_validate_field_diffs_free(d, n);

    /* the cap: max kept, more set */
    d = diff_json("{\"_id\": 1, \"a\": 1, \"b\": 1, \"c\": 1}",
                  "{\"_id\": 1, \"a\": 2, \"b\": 2, \"c\": 2}", 2, &n, &more);
    assert_int_equal(n, 2);
    assert_true(more);
    mg_validate_field_diffs_free(d, n);

    /* equal documents (key order differs): nothing */
    d = diff_json("{\"_id\": 1, \"b\": [1, 2], \"a\": 1}", "{\"a\": 1, \"_id\": 1, \"b\": [1, 2]}",
                  10, &n, &more);
    assert_int_equal(n, 0);
    mg_validate_field_diffs_free(d, n);
}

static void
test_options_and_kind_names(void **state)
{
    mg_validate_check_options_t o;
    mg_validate_result_t r;
    mg_validate_coll_t c = {"db", "c", "db", "c", MG_SCHEMA_KEY_TEXT_OID};
    mg_error_t error;

    mg_validate_check_options_init(&o);
    assert_int_equal(o.segments, 1024);
    assert_true(o.max_named > 0 && o.max_diffs > 0 && o.drilldown_bytes > 0);
    assert_string_equal(mg_validate_mismatch_kind_name(MG_VALIDATE_MISSING), "missing");
    assert_string_equal(mg_validate_mismatch_kind_name(MG_VALIDATE_EXTRA), "extra");
    assert_string_equal(mg_validate_mismatch_kind_name(MG_VALIDATE_DIFFERENT), "different");
    /* bad options fail before any connection */
    o.segments = 0;
    o.source_uri = "mongodb://127.0.0.1:1/";
    o.target = "host=127.0.0.1 port=1";
    assert_false(mg_validate_check_collection(&o, &c, &r, &error));
    assert_non_null(strstr(error.message, "segments"));
    mg_validate_result_cleanup(&r);
    mg_validate_result_cleanup(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash64_basics),
        cmocka_unit_test(test_both_sides_hash_the_same),
        cmocka_unit_test(test_hash_sees_changes_not_key_order),
        cmocka_unit_test(test_normalised_text_is_jsonb_text),
        cmocka_unit_test(test_diff_names_paths_and_values),
        cmocka_unit_test(test_options_and_kind_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
