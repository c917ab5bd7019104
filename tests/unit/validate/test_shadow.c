/*
 * tests/unit/validate/test_shadow.c - the MongoDB find -> SQL/JSON path
 * translator: the shape of what it writes for each operator family, and
 * every refusal ("not translated: <reason>") the documentation promises.
 * Whether the translations return MongoDB's answers is proven against a
 * server by tests/integration/validate/test_shadow.py.
 */
#include "mg/validate.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* tr translates a filter (JSON) with optional sort/projection; returns success. */
static bool
tr(const char *filter, const char *sort, const char *proj, int64_t skip, int64_t limit,
   mg_validate_sql_t *out, mg_error_t *error)
{
    bson_error_t be;
    bson_t *f = filter ? bson_new_from_json((const uint8_t *)filter, -1, &be) : NULL;
    bson_t *s = sort ? bson_new_from_json((const uint8_t *)sort, -1, &be) : NULL;
    bson_t *p = proj ? bson_new_from_json((const uint8_t *)proj, -1, &be) : NULL;
    mg_validate_find_t find = {f, p, s, skip, limit};
    bool ok;

    if ((filter && !f) || (sort && !s) || (proj && !p))
        fail_msg("bad test JSON: %s", be.message);
    ok = mg_validate_shadow_translate(&find, "db", "t", MG_SCHEMA_FIDELITY_RELAXED, out, error);
    bson_destroy(f);
    bson_destroy(s);
    bson_destroy(p);
    return ok;
}

static void
expect_contains(const char *filter, const char *needle)
{
    mg_validate_sql_t q;
    mg_error_t e;

    if (!tr(filter, NULL, NULL, 0, 0, &q, &e))
        fail_msg("%s: %s", filter, e.message);
    if (strstr(q.jsonpath, needle) == NULL)
        fail_msg("%s: expected \"%s\" in %s", filter, needle, q.jsonpath);
    mg_validate_sql_cleanup(&q);
}

static void
expect_refused(const char *filter, const char *sort, const char *proj, const char *reason)
{
    mg_validate_sql_t q;
    mg_error_t e;

    if (tr(filter, sort, proj, 0, 0, &q, &e))
        fail_msg("%s: translated, expected a refusal (%s): %s", filter, reason, q.jsonpath);
    assert_int_equal(e.code, MG_VALIDATE_ERR_NOT_TRANSLATED);
    if (strncmp(e.message, "not translated: ", 16) != 0 || strstr(e.message, reason) == NULL)
        fail_msg("%s: message \"%s\", expected \"%s\"", filter, e.message, reason);
    assert_null(q.sql);
    assert_null(q.jsonpath);
}

static void
test_comparisons_bracket_types(void **state)
{
    expect_contains("{\"n\": 5}", "@.type() == \"number\" && @ == 5");
    expect_contains("{\"n\": {\"$gt\": 1.5}}", "@ > 1.5");
    /* -0.0 equals 0; +Infinity is above every finite bound */
    expect_contains("{\"x\": {\"$gte\": 0}}", "\"$numberDouble\" == \"-0.0\"");
    expect_contains("{\"x\": {\"$gt\": 7}}", "\"$numberDouble\" == \"Infinity\"");
    expect_contains("{\"s\": {\"$lt\": \"b\\\"q\"}}", "@.type() == \"string\" && @ < \"b\\\"q\"");
    expect_contains("{\"o\": {\"$oid\": \"0123456789abcdef01234567\"}}",
                    "@.\"$oid\" == \"0123456789abcdef01234567\"");
    expect_contains("{\"d\": {\"$lt\": {\"$date\": \"2000-01-01T00:00:00Z\"}}}",
                    "@.\"$date\" < \"2000-01-01T00:00:00.000Z\"");
    /* dates before 1970 are stored as $numberLong: below every in-range bound */
    expect_contains("{\"d\": {\"$lt\": {\"$date\": \"2000-01-01T00:00:00Z\"}}}",
                    "starts with \"-\"");
    expect_contains("{\"b\": {\"$gt\": false}}", "@.type() == \"boolean\" && @ > false");
}

static void
test_paths_and_arrays(void **state)
{
    /* a dotted step goes through objects and arrays of objects only */
    expect_contains("{\"a.b\": 1}", "exists(@.\"a\" ? (@.type() == \"object\" && ");
    /* a numeric step is also an array index, guarded */
    expect_contains("{\"a.0\": 1}", "@.\"a\".type() == \"array\" && exists(@.\"a\"[0]");
    /* $size, $elemMatch and array $type look at the array itself */
    expect_contains("{\"a\": {\"$size\": 2}}",
                    "@.\"a\".type() == \"array\" && @.\"a\".size() == 2");
    expect_contains("{\"a\": {\"$elemMatch\": {\"x\": 1}}}",
                    "@.\"a\".type() == \"array\" && exists(");
    /* libbson's JSON reader takes {"$type": ...} for legacy binary: build these directly */
    bson_t *f = BCON_NEW("a", "{", "$type", BCON_UTF8("array"), "}");
    mg_validate_find_t find = {f, NULL, NULL, 0, 0};
    mg_validate_sql_t q;
    mg_error_t e;
    assert_true(mg_validate_shadow_translate(&find, "db", "t", MG_SCHEMA_FIDELITY_RELAXED, &q, &e));
    assert_non_null(strstr(q.jsonpath, "(@.\"a\".type() == \"array\")"));
    mg_validate_sql_cleanup(&q);
    bson_destroy(f);
    expect_contains("{\"a\": [1, \"x\"]}", "@.size() == 2");
    expect_contains("{\"a\": null}", "!exists(@.\"a\")");
    expect_contains("{\"$nor\": [{\"a\": 1}, {\"b\": 2}]}", "!(");
    expect_contains("{\"a\": {\"$exists\": false}}", "!exists(@.\"a\")");
    expect_contains("{\"k\\\"ey\": 1}", "@.\"k\\\"ey\"");
}

static void
test_regex_subset(void **state)
{
    expect_contains("{\"s\": {\"$regex\": \"^a.c$\", \"$options\": \"i\"}}",
                    "like_regex \"^a.c(?:\\\\n?$)\" flag \"i\"");
    expect_contains("{\"s\": {\"$regex\": \"x{2,3}[a-z]\\\\d\"}}", "x{2,3}[a-z]\\\\d");
    expect_refused("{\"s\": {\"$regex\": \"(?=a)\"}}", NULL, NULL, "(? group");
    expect_refused("{\"s\": {\"$regex\": \"(a)\\\\1\"}}", NULL, NULL, "regex escape \\1");
    expect_refused("{\"s\": {\"$regex\": \"a\", \"$options\": \"x\"}}", NULL, NULL,
                   "regex option x");
    expect_refused("{\"s\": {\"$regex\": \"^a\", \"$options\": \"m\"}}", NULL, NULL,
                   "option m with ^ or $");
    expect_refused("{\"s\": {\"$regex\": \"[[:alpha:]]\"}}", NULL, NULL, "POSIX bracket");
    expect_refused("{\"s\": {\"$regex\": \"a{\"}}", NULL, NULL, "literal {");
}

static void
test_refusals(void **state)
{
    expect_refused("{\"$where\": \"1\"}", NULL, NULL, "operator $where");
    expect_refused("{\"$expr\": {\"$eq\": [1, 1]}}", NULL, NULL, "operator $expr");
    expect_refused("{\"n\": {\"$mod\": [2, 0]}}", NULL, NULL, "operator $mod");
    expect_refused("{\"a\": {\"b\": 1}}", NULL, NULL, "embedded document");
    bson_t *f = BCON_NEW("n", "{", "$type", BCON_UTF8("double"), "}");
    mg_validate_find_t tf = {f, NULL, NULL, 0, 0};
    mg_validate_sql_t tq;
    mg_error_t te;
    assert_false(
        mg_validate_shadow_translate(&tf, "db", "t", MG_SCHEMA_FIDELITY_RELAXED, &tq, &te));
    assert_non_null(strstr(te.message, "not translated: $type \"double\": jsonb numbers"));
    bson_destroy(f);
    expect_refused("{\"n\": {\"$numberDecimal\": \"1.5\"}}", NULL, NULL, "Decimal128");
    expect_refused("{\"a.b\": null}", NULL, NULL, "dotted path");
    expect_refused("{\"n\": {\"$gt\": {\"$numberDouble\": \"NaN\"}}}", NULL, NULL, "NaN");
    expect_refused("{\"a\": {\"$gt\": 1, \"b\": 2}}", NULL, NULL, "mixed with fields");
    expect_refused("{}", "{\"a\": \"text\"}", NULL, "only 1 and -1");
    expect_refused("{}", NULL, "{\"a.b\": 1}", "dotted path");
    expect_refused("{}", NULL, "{\"a\": 1, \"b\": 0}", "mixes inclusion and exclusion");

    /* exact fidelity stores numbers as strings: nothing is translated */
    mg_validate_sql_t q;
    mg_error_t e;
    mg_validate_find_t find = {0};
    assert_false(mg_validate_shadow_translate(&find, "db", "t", MG_SCHEMA_FIDELITY_EXACT, &q, &e));
    assert_non_null(strstr(e.message, "exact fidelity"));
}

static void
test_sql_shape(void **state)
{
    mg_validate_sql_t q;
    mg_error_t e;

    assert_true(tr("{}", NULL, NULL, 0, 0, &q, &e));
    assert_string_equal(q.sql, "SELECT doc::text FROM \"db\".\"t\"");
    assert_null(q.jsonpath);
    assert_false(q.ordered || q.count_only);
    mg_validate_sql_cleanup(&q);

    assert_true(tr("{\"n\": 1}", "{\"a.b\": -1, \"_id\": 1}", NULL, 5, 10, &q, &e));
    assert_non_null(strstr(q.sql, "WHERE doc @? $1::jsonpath ORDER BY "));
    assert_non_null(strstr(q.sql, "(doc #> ARRAY['a','b']::text[])"));
    assert_non_null(strstr(q.sql, " OFFSET 5 LIMIT 10"));
    assert_true(q.ordered);
    /* the guard looks for arrays on the path and values it cannot order */
    assert_non_null(q.guard_sql);
    assert_non_null(strstr(q.guard_sql, "jsonb_typeof(doc #> ARRAY['a']::text[]) = 'array'"));
    mg_validate_sql_cleanup(&q);

    assert_true(tr("{}", NULL, NULL, 0, 3, &q, &e));
    assert_true(q.count_only);
    mg_validate_sql_cleanup(&q);

    assert_true(tr("{}", NULL, "{\"s\": 1, \"_id\": 0}", 0, 0, &q, &e));
    assert_non_null(strstr(q.sql, "WHERE key IN ('s')"));
    mg_validate_sql_cleanup(&q);
    assert_true(tr("{}", NULL, "{\"s\": 0}", 0, 0, &q, &e));
    assert_non_null(strstr(q.sql, "(doc - ARRAY['s']::text[])::text"));
    mg_validate_sql_cleanup(&q);
    mg_validate_sql_cleanup(NULL);
    assert_string_equal(mg_validate_shadow_status_name(MG_VALIDATE_SHADOW_NOT_TRANSLATED),
                        "not_translated");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_comparisons_bracket_types),
        cmocka_unit_test(test_paths_and_arrays),
        cmocka_unit_test(test_regex_subset),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_sql_shape),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
