/*
 * tests/unit/schema/test_census.c - the census: key column decision from the
 * _id type distribution, field types, problem values, and its JSON report.
 */
#include "mg/schema.h"

#include <math.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static mg_schema_key_type_t
key_for(const char *const *aliases, const int64_t *counts, size_t n, int64_t oid_like)
{
    mg_schema_census_t *c = mg_schema_census_new("db", "c");
    mg_schema_key_type_t k;
    mg_error_t e;

    for (size_t i = 0; i < n; i++)
        assert_true(mg_schema_census_add_id_type(c, aliases[i], counts[i], &e));
    mg_schema_census_set_oid_like_strings(c, oid_like);
    k = mg_schema_census_key_type(c);
    mg_schema_census_destroy(c);
    return k;
}

static void
test_key_type_rule(void **state)
{
    const char *const oid[] = {"objectId"};
    const char *const str[] = {"string"};
    const char *const mix[] = {"objectId", "string"};
    const char *const ints[] = {"int", "long"};
    const char *const dbl[] = {"int", "double"};
    const char *const other[] = {"date"};
    const int64_t n1[] = {10};
    const int64_t n2[] = {10, 5};

    assert_int_equal(key_for(oid, n1, 1, 0), MG_SCHEMA_KEY_TEXT_OID);
    assert_int_equal(key_for(str, n1, 1, 3), MG_SCHEMA_KEY_TEXT_STRING);
    assert_int_equal(key_for(mix, n2, 2, 0), MG_SCHEMA_KEY_TEXT_OID);
    /* a string that reads as ObjectId hex could collide: canonical keeps them apart */
    assert_int_equal(key_for(mix, n2, 2, 1), MG_SCHEMA_KEY_CANONICAL);
    assert_int_equal(key_for(ints, n2, 2, 0), MG_SCHEMA_KEY_BIGINT);
    assert_int_equal(key_for(dbl, n2, 2, 0), MG_SCHEMA_KEY_CANONICAL);
    assert_int_equal(key_for(other, n1, 1, 0), MG_SCHEMA_KEY_CANONICAL);
    assert_int_equal(key_for(NULL, NULL, 0, 0), MG_SCHEMA_KEY_CANONICAL); /* empty */
    assert_string_equal(mg_schema_key_type_sql(MG_SCHEMA_KEY_TEXT_OID), "text");
    assert_string_equal(mg_schema_key_type_sql(MG_SCHEMA_KEY_BIGINT), "bigint");
}

static void
test_unknown_alias_is_an_error(void **state)
{
    mg_schema_census_t *c = mg_schema_census_new("db", "c");
    mg_error_t e;

    assert_false(mg_schema_census_add_id_type(c, "banana", 1, &e));
    assert_non_null(strstr(e.message, "collection \"db.c\": unknown _id type \"banana\""));
    mg_schema_census_destroy(c);
}

static void
test_sample_decides_without_distribution(void **state)
{
    mg_schema_census_t *c = mg_schema_census_new("db", "c");
    bson_t *d1 = BCON_NEW("_id", BCON_INT32(1), "a", BCON_UTF8("x"));
    bson_t *d2 = BCON_NEW("_id", BCON_INT64(2), "a", BCON_INT32(5), "tags", "[", "]");
    mg_error_t e;

    assert_true(mg_schema_census_add_sample(c, d1, &e));
    assert_true(mg_schema_census_add_sample(c, d2, &e));
    assert_int_equal(mg_schema_census_key_type(c), MG_SCHEMA_KEY_BIGINT);
    assert_true(mg_schema_census_field_is_array(c, "tags"));
    assert_false(mg_schema_census_field_is_array(c, "a"));
    assert_int_equal(mg_schema_census_count(c), 2);
    bson_destroy(d1);
    bson_destroy(d2);
    mg_schema_census_destroy(c);
}

/*
 * A string _id that PostgreSQL's text refuses (a surrogate, an overlong
 * form, a code point above U+10FFFF) makes a text key impossible: the
 * census must say canonical, as the key encoder (the same checker,
 * mg_utf8_valid) would refuse the _id under text_string.
 */
static void
test_string_id_postgres_refuses_is_a_misfit(void **state)
{
    static const char *const bad[] = {"\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80"};

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        mg_schema_census_t *c = mg_schema_census_new("db", "c");
        bson_t d1 = BSON_INITIALIZER, d2 = BSON_INITIALIZER;
        mg_error_t e;

        bson_append_utf8(&d1, "_id", 3, "plain", 5);
        bson_append_utf8(&d2, "_id", 3, bad[i], (int)strlen(bad[i]));
        assert_true(mg_schema_census_add_sample(c, &d1, &e));
        assert_true(mg_schema_census_add_sample(c, &d2, &e));
        if (mg_schema_census_key_type(c) != MG_SCHEMA_KEY_CANONICAL)
            fail_msg("_id #%zu: key type %s, want canonical", i,
                     mg_schema_key_type_name(mg_schema_census_key_type(c)));
        bson_destroy(&d1);
        bson_destroy(&d2);
        mg_schema_census_destroy(c);
    }
}

static yajl_val
report(mg_schema_census_t *c)
{
    mg_buf_t b;
    mg_error_t e;
    char err[128];
    yajl_val v;

    mg_buf_init(&b, 1 << 20);
    assert_true(mg_schema_census_to_json(c, &b, &e));
    v = yajl_tree_parse(b.data, err, sizeof(err));
    if (v == NULL)
        fail_msg("report is not JSON: %s", err);
    mg_buf_cleanup(&b);
    return v;
}

static yajl_val
get(yajl_val v, const char *a, const char *b)
{
    const char *path[] = {a, b, NULL};
    return yajl_tree_get(v, path, yajl_t_any);
}

static void
test_report_fields_facts_and_warnings(void **state)
{
    mg_schema_census_t *c = mg_schema_census_new("shop", "orders");
    bson_t *docs[3];
    mg_error_t e;
    yajl_val v;
    bson_oid_t oid;

    bson_oid_init_from_string(&oid, "507f1f77bcf86cd799439011");
    docs[0] = BCON_NEW("_id", BCON_OID(&oid), "price", BCON_DOUBLE(NAN), "name", BCON_UTF8("a"));
    docs[1] = BCON_NEW("_id", BCON_UTF8("k1"), "price", BCON_INT32(3), "$weird", BCON_BOOL(true));
    docs[2] = bson_new();
    BSON_APPEND_UTF8(docs[2], "_id", "k2");
    BSON_APPEND_INT32(docs[2], "dup", 1);
    BSON_APPEND_INT32(docs[2], "dup", 2);
    bson_append_utf8(docs[2], "nul", -1, "a\0b", 3);
    mg_schema_census_set_stats(c, 3000, 300000, 120000);
    assert_true(mg_schema_census_add_id_type(c, "objectId", 1000, &e));
    assert_true(mg_schema_census_add_id_type(c, "string", 2000, &e));
    for (int i = 0; i < 3; i++)
        assert_true(mg_schema_census_add_sample(c, docs[i], &e));

    v = report(c);
    assert_int_equal(YAJL_GET_INTEGER(get(v, "count", NULL)), 3000);
    assert_int_equal(YAJL_GET_INTEGER(get(v, "avg_doc_bytes", NULL)), 100);
    assert_string_equal(YAJL_GET_STRING(get(v, "key_type", NULL)), "text_objectid");
    assert_int_equal(YAJL_GET_INTEGER(get(v, "id_types", "objectId")), 1000);
    assert_int_equal(YAJL_GET_INTEGER(get(v, "id_types", "string")), 2000);
    assert_int_equal(YAJL_GET_INTEGER(get(v, "facts", "nan_or_infinity")), 1);
    assert_int_equal(YAJL_GET_INTEGER(get(v, "facts", "dollar_key")), 1);
    assert_int_equal(YAJL_GET_INTEGER(get(v, "facts", "duplicate_key")), 1);
    assert_int_equal(YAJL_GET_INTEGER(get(v, "facts", "nul_in_string")), 1);
    yajl_val fields = get(v, "fields", NULL);
    assert_true(YAJL_IS_ARRAY(fields));
    bool saw_price = false;
    for (size_t i = 0; i < YAJL_GET_ARRAY(fields)->len; i++) {
        yajl_val f = YAJL_GET_ARRAY(fields)->values[i];
        const char *name = YAJL_GET_STRING(get(f, "name", NULL));
        assert_non_null(name);
        if (strcmp(name, "price") == 0) {
            saw_price = true;
            assert_int_equal(YAJL_GET_INTEGER(get(f, "count", NULL)), 2);
            assert_int_equal(YAJL_GET_INTEGER(get(f, "types", "double")), 1);
            assert_int_equal(YAJL_GET_INTEGER(get(f, "types", "int")), 1);
        }
    }
    assert_true(saw_price);
    yajl_val w = get(v, "warnings", NULL);
    bool mixed = false, dup = false;
    for (size_t i = 0; i < YAJL_GET_ARRAY(w)->len; i++) {
        const char *s = YAJL_GET_STRING(YAJL_GET_ARRAY(w)->values[i]);
        assert_non_null(s);
        mixed |= strstr(s, "mixed _id types: string=2000 objectId=1000") != NULL;
        dup |= strstr(s, "1 of 3 sampled documents have duplicate keys") != NULL;
    }
    assert_true(mixed);
    assert_true(dup);
    yajl_tree_free(v);
    for (int i = 0; i < 3; i++)
        bson_destroy(docs[i]);
    mg_schema_census_destroy(c);
}

static void
test_field_cap(void **state)
{
    mg_schema_census_t *c = mg_schema_census_new("db", "wide");
    bson_t *d = bson_new();
    char key[32];
    mg_error_t e;
    size_t n;
    mg_buf_t b;

    for (int i = 0; i < MG_SCHEMA_CENSUS_MAX_FIELDS + 50; i++) {
        snprintf(key, sizeof(key), "f%d", i);
        BSON_APPEND_INT32(d, key, i);
    }
    assert_true(mg_schema_census_add_sample(c, d, &e));
    mg_buf_init(&b, 1 << 16);
    assert_true(mg_schema_census_warnings(c, &b, &n, &e));
    assert_non_null(strstr(b.data, "more than 1000 distinct top-level fields"));
    mg_buf_cleanup(&b);
    bson_destroy(d);
    mg_schema_census_destroy(c);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_type_rule),
        cmocka_unit_test(test_unknown_alias_is_an_error),
        cmocka_unit_test(test_sample_decides_without_distribution),
        cmocka_unit_test(test_string_id_postgres_refuses_is_a_misfit),
        cmocka_unit_test(test_report_fields_facts_and_warnings),
        cmocka_unit_test(test_field_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
