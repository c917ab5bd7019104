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

/*
 * Patterns PostgreSQL refuses (found by fuzz_shadow with MG_FUZZ_PG: "^*x"
 * was translated and PostgreSQL failed the query with "invalid regular
 * expression") are not translated; what both engines accept still is.
 */
static void
test_regex_both_engines_accept(void **state)
{
    const char *refused[][2] = {
        {"^*x", "quantifier without an operand"},
        {"a|+b", "quantifier without an operand"},
        {"(*a)", "quantifier without an operand"},
        {"a**", "quantifier without an operand"},
        {"$?", "quantifier without an operand"},
        {"a*?+", "quantifier without an operand"},
        {"a)", "unbalanced )"},
        {"(a", "unbalanced ("},
        {"(?:a", "unbalanced ("},
        {"a{256}", "bound above 255"},
        {"a{3,2}", "out of order"},
        {"[z-a]", "character range"},
        {"[\\\\d-z]", "character range"},
        {"[a-z-0]", "character range"},
        {"[\u00e9-z]", "character range"},
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        char filter[256];
        snprintf(filter, sizeof(filter), "{\"s\": {\"$regex\": \"%s\"}}", refused[i][0]);
        expect_refused(filter, NULL, NULL, refused[i][1]);
    }
    expect_contains("{\"s\": {\"$regex\": \"a*?b+?c??d{2,3}?\"}}", "a*?b+?c??d{2,3}?");
    expect_contains("{\"s\": {\"$regex\": \"(?:ab|c)+[-a][a-][+--]x{255}\"}}",
                    "(?:ab|c)+[-a][a-][+--]x{255}");
    expect_contains("{\"s\": {\"$regex\": \"[]a]\\\\)\"}}", "[\\\\]a]\\\\)");
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
    /* the typed key of a.b: MongoDB's type rank, a number, bytes */
    assert_non_null(strstr(q.sql, "jsonb_typeof((doc -> 'a' -> 'b'))"));
    assert_non_null(strstr(q.sql, "COLLATE \"C\") DESC, "));
    /* skip and limit are parameters after the path */
    assert_non_null(strstr(q.sql, " OFFSET $2::bigint LIMIT $3::bigint"));
    assert_int_equal(q.nparams, 3);
    assert_string_equal(q.params[0], q.jsonpath);
    assert_string_equal(q.params[1], "5");
    assert_string_equal(q.params[2], "10");
    assert_true(q.ordered);
    /* the guard looks for arrays on the path and values it cannot order */
    assert_non_null(q.guard_sql);
    assert_int_equal(q.guard_nparams, 1);
    assert_non_null(strstr(q.guard_sql, "WHEN jsonb_typeof((doc -> 'a')) = 'array' THEN 98"));
    assert_non_null(strstr(q.guard_sql, ">= 98"));
    mg_validate_sql_cleanup(&q);

    assert_true(tr("{}", NULL, NULL, 0, 3, &q, &e));
    assert_true(q.count_only);
    mg_validate_sql_cleanup(&q);

    /* projected keys are a text[] parameter */
    assert_true(tr("{}", NULL, "{\"s\": 1, \"_id\": 0}", 0, 0, &q, &e));
    assert_non_null(strstr(q.sql, "WHERE key = ANY($1::text[])"));
    assert_int_equal(q.nparams, 1);
    assert_string_equal(q.params[0], "{\"s\"}");
    mg_validate_sql_cleanup(&q);
    assert_true(tr("{}", NULL, "{\"s\": 0}", 0, 0, &q, &e));
    assert_non_null(strstr(q.sql, "(doc - $1::text[])::text"));
    assert_string_equal(q.params[0], "{\"s\"}");
    mg_validate_sql_cleanup(&q);
    mg_validate_sql_cleanup(NULL);
    assert_string_equal(mg_validate_shadow_status_name(MG_VALIDATE_SHADOW_NOT_TRANSLATED),
                        "not_translated");
}

/*
 * outside_literals returns a malloc'd copy of sql with every string literal
 * ('...', E'...') and quoted identifier ("...") blanked, as PostgreSQL's
 * lexer reads them with standard_conforming_strings on or off alike (a
 * literal the translator writes must not depend on the setting: a
 * backslash only ever appears inside E'...'). NULL when a literal or
 * identifier is not closed.
 */
static char *
outside_literals(const char *sql)
{
    char *out = strdup(sql);
    size_t i = 0;

    while (out[i] != '\0') {
        bool e = (out[i] == 'E' || out[i] == 'e') && out[i + 1] == '\'';
        char q = out[i];
        if (e || q == '\'' || q == '"') {
            if (e)
                out[i++] = ' ';
            q = out[i];
            out[i++] = ' ';
            while (true) {
                if (out[i] == '\0') {
                    free(out);
                    return NULL;
                }
                if (q == '\'' && !e && out[i] == '\\') {
                    /* a backslash in a plain literal: its meaning depends on the setting */
                    free(out);
                    return NULL;
                }
                if (e && out[i] == '\\' && out[i + 1] != '\0') {
                    out[i++] = ' ';
                    out[i++] = ' ';
                    continue;
                }
                if (out[i] == q && out[i + 1] == q) {
                    out[i++] = ' ';
                    out[i++] = ' ';
                    continue;
                }
                if (out[i] == q) {
                    out[i++] = ' ';
                    break;
                }
                out[i++] = ' ';
            }
            continue;
        }
        i++;
    }
    return out;
}

/* expect_inert translates find and checks that the SQL it carries stays inside literals. */
static void
expect_inert(const char *filter, const char *sort, const char *proj, const char *payload)
{
    mg_validate_sql_t q;
    mg_error_t e;

    if (!tr(filter, sort, proj, 0, 0, &q, &e)) {
        /* a refusal is safe, but these are all translatable */
        fail_msg("%s %s %s: %s", filter, sort ? sort : "", proj ? proj : "", e.message);
    }
    const char *stmts[2] = {q.sql, q.guard_sql};
    for (int i = 0; i < 2; i++) {
        if (stmts[i] == NULL)
            continue;
        char *bare = outside_literals(stmts[i]);
        if (bare == NULL)
            fail_msg("unclosed or setting-dependent literal in %.300s", stmts[i]);
        if (strstr(bare, payload) != NULL)
            fail_msg("\"%s\" outside any literal in %.3000s", payload, stmts[i]);
        /* the statement is whole: it still ends where the translator ends it */
        free(bare);
    }
    mg_validate_sql_cleanup(&q);
}

static void
test_no_injection(void **state)
{
    char sort[9000], proj[9000];

    /* issue 17 item 1: a long first key cut a fixed buffer inside a literal */
    for (int n = 40; n < 200; n++) {
        int k = snprintf(sort, sizeof(sort), "{\"");
        for (int i = 0; i < n; i++)
            sort[k++] = 'a';
        snprintf(sort + k, sizeof(sort) - (size_t)k,
                 "\": 1, \"]::text[]) IS NULL THEN 1 END, (SELECT 1 FROM pg_sleep(5)) --\": 1}");
        expect_inert("{}", sort, NULL, "pg_sleep");
    }
    /* quotes and backslashes in every place a field name goes */
    const char *keys[] = {"x\\\\', pg_sleep(1), '", "\\\\", "'", "a\\\"b",
                          "\\\\'); pg_sleep(1); --"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        snprintf(sort, sizeof(sort), "{\"%s\": 1, \"a.%s\": -1}", keys[i], keys[i]);
        expect_inert("{}", sort, NULL, "pg_sleep");
        snprintf(proj, sizeof(proj), "{\"%s\": 1}", keys[i]);
        expect_inert("{}", NULL, proj, "pg_sleep");
        snprintf(proj, sizeof(proj), "{\"%s\": 0}", keys[i]);
        expect_inert("{}", NULL, proj, "pg_sleep");
        snprintf(sort, sizeof(sort), "{\"%s\": {\"$gt\": \"%s\"}}", keys[i], keys[i]);
        expect_inert(sort, NULL, NULL, "pg_sleep");
    }
    /* a backslash in a name is written E'...' with the backslash doubled */
    mg_validate_sql_t q;
    mg_error_t e;
    assert_true(tr("{}", "{\"a\\\\b'c\": 1}", NULL, 0, 0, &q, &e));
    assert_non_null(strstr(q.sql, "(doc -> E'a\\\\b''c')"));
    mg_validate_sql_cleanup(&q);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_comparisons_bracket_types),
        cmocka_unit_test(test_paths_and_arrays),
        cmocka_unit_test(test_regex_subset),
        cmocka_unit_test(test_regex_both_engines_accept),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_sql_shape),
        cmocka_unit_test(test_no_injection),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
