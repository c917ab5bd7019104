/*
 * tests/unit/schema/test_index.c - index translation: each MongoDB index kind
 * becomes the documented expression index, or a not-translated plan with a
 * reason and a suggestion.
 */
#include "mg/schema.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* translate parses the relaxed Extended JSON spec and translates it. */
static void
translate(const char *json, const mg_schema_census_t *census, mg_schema_index_plan_t *plan)
{
    bson_error_t be;
    mg_error_t e;
    bson_t *spec = bson_new_from_json((const uint8_t *)json, -1, &be);

    if (spec == NULL)
        fail_msg("bad test json %s: %s", json, be.message);
    if (!mg_schema_index_translate(spec, "shop", "orders", census, plan, &e))
        fail_msg("translate failed: %s", e.message);
    bson_destroy(spec);
}

static void
expect_sql(const char *json, mg_schema_index_status_t status, const char *sql)
{
    mg_schema_index_plan_t p;

    translate(json, NULL, &p);
    assert_int_equal(p.status, status);
    if (p.statement == NULL || strcmp(p.statement, sql) != 0)
        fail_msg("spec %s\n  got  %s\n  want %s", json, p.statement ? p.statement : "(null)", sql);
    /* what builds it: the statement inside a DO block that checks an existing index */
    assert_non_null(p.sql);
    assert_non_null(strstr(p.sql, p.statement));
    assert_non_null(strstr(p.sql, "EXCEPTION WHEN duplicate_table"));
    mg_schema_index_plan_cleanup(&p);
}

static void
test_primary(void **state)
{
    mg_schema_index_plan_t p;

    translate("{\"v\":2,\"key\":{\"_id\":1},\"name\":\"_id_\"}", NULL, &p);
    assert_int_equal(p.status, MG_SCHEMA_INDEX_PRIMARY);
    assert_null(p.sql);
    mg_schema_index_plan_cleanup(&p);
}

static void
test_single_and_compound(void **state)
{
    expect_sql("{\"key\":{\"status\":1},\"name\":\"status_1\"}", MG_SCHEMA_INDEX_TRANSLATED,
               "CREATE INDEX \"orders_status_1\" ON \"shop\".\"orders\" "
               "((doc -> 'status'))");
    expect_sql("{\"key\":{\"customer.id\":1,\"at\":-1},\"name\":\"customer.id_1_at_-1\"}",
               MG_SCHEMA_INDEX_TRANSLATED,
               /* name: sanitised, plus FNV-1a of "orders_customer.id_1_at_-1" */
               "CREATE INDEX \"orders_customer_id_1_at__1_97103e33\" ON "
               "\"shop\".\"orders\" ((doc -> 'customer' -> 'id'), (doc -> 'at') DESC)");
}

static void
test_unique_treats_missing_as_null(void **state)
{
    expect_sql("{\"key\":{\"email\":1},\"name\":\"email_1\",\"unique\":true}",
               MG_SCHEMA_INDEX_TRANSLATED,
               "CREATE UNIQUE INDEX \"orders_email_1\" ON \"shop\".\"orders\" "
               "(COALESCE((doc -> 'email'), 'null'::jsonb))");
}

static void
test_sparse_and_partial(void **state)
{
    expect_sql("{\"key\":{\"sku\":1},\"name\":\"sku_1\",\"unique\":true,\"sparse\":true}",
               MG_SCHEMA_INDEX_TRANSLATED,
               "CREATE UNIQUE INDEX \"orders_sku_1\" ON \"shop\".\"orders\" "
               "((doc -> 'sku')) WHERE (doc -> 'sku') IS NOT NULL");
    expect_sql("{\"key\":{\"total\":1},\"name\":\"total_1\",\"partialFilterExpression\":"
               "{\"total\":{\"$gt\":100},\"state\":\"open\"}}",
               MG_SCHEMA_INDEX_TRANSLATED,
               "CREATE INDEX \"orders_total_1\" ON \"shop\".\"orders\" "
               "((doc -> 'total')) WHERE (jsonb_typeof((doc -> 'total')) = 'number' AND "
               "(doc -> 'total') > '100'::jsonb) AND (doc -> 'state') = '\"open\"'::jsonb");

    mg_schema_index_plan_t p;
    translate("{\"key\":{\"a\":1},\"name\":\"a_1\",\"partialFilterExpression\":"
              "{\"a\":{\"$in\":[1,2]}}}",
              NULL, &p);
    assert_int_equal(p.status, MG_SCHEMA_INDEX_NOT_TRANSLATED);
    assert_null(p.sql);
    assert_non_null(strstr(p.note, "partial filter operator $in on \"a\" is not translated"));
    mg_schema_index_plan_cleanup(&p);
}

static void
test_hashed_ttl_wildcard(void **state)
{
    mg_schema_index_plan_t p;

    expect_sql("{\"key\":{\"user\":\"hashed\"},\"name\":\"user_hashed\"}",
               MG_SCHEMA_INDEX_TRANSLATED,
               "CREATE INDEX \"orders_user_hashed\" ON \"shop\".\"orders\" USING "
               "hash ((doc -> 'user'))");
    translate("{\"key\":{\"at\":1},\"name\":\"at_1\",\"expireAfterSeconds\":3600}", NULL, &p);
    assert_int_equal(p.status, MG_SCHEMA_INDEX_CAVEAT);
    assert_non_null(p.sql);
    assert_non_null(strstr(p.note, "TTL (expireAfterSeconds=3600) is not enforced"));
    assert_non_null(strstr(p.suggestion, "interval '3600 seconds'"));
    mg_schema_index_plan_cleanup(&p);

    translate("{\"key\":{\"$**\":1},\"name\":\"$**_1\"}", NULL, &p);
    assert_int_equal(p.status, MG_SCHEMA_INDEX_CAVEAT);
    assert_non_null(strstr(p.statement, "USING gin (doc jsonb_path_ops)"));
    mg_schema_index_plan_cleanup(&p);

    translate("{\"key\":{\"attrs.$**\":1},\"name\":\"attrs.$**_1\"}", NULL, &p);
    assert_non_null(strstr(p.statement, "USING gin ((doc -> 'attrs') jsonb_path_ops)"));
    mg_schema_index_plan_cleanup(&p);
}

static void
test_not_translated_kinds(void **state)
{
    static const struct {
        const char *json;
        const char *note;
        const char *suggestion;
    } cases[] = {
        {"{\"key\":{\"_fts\":\"text\",\"_ftsx\":1},\"name\":\"body_text\",\"weights\":{\"body\":1}"
         "}",
         "text indexes", "to_tsvector('english'"},
        {"{\"key\":{\"loc\":\"2dsphere\"},\"name\":\"loc_2dsphere\"}", "need PostGIS",
         "ST_GeomFromGeoJSON(doc ->> 'loc')"},
        {"{\"key\":{\"a\":1,\"b\":\"hashed\"},\"name\":\"a_1_b_hashed\"}", "compound hashed",
         "btree"},
        {"{\"key\":{\"name\":1},\"name\":\"name_ci\",\"unique\":true,\"collation\":"
         "{\"locale\":\"en\",\"strength\":2}}",
         "case-insensitive collation", "lower(doc ->> 'name')"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mg_schema_index_plan_t p;
        translate(cases[i].json, NULL, &p);
        assert_int_equal(p.status, MG_SCHEMA_INDEX_NOT_TRANSLATED);
        assert_null(p.sql);
        if (strstr(p.note, cases[i].note) == NULL)
            fail_msg("note \"%s\" lacks \"%s\"", p.note, cases[i].note);
        if (p.suggestion == NULL || strstr(p.suggestion, cases[i].suggestion) == NULL)
            fail_msg("suggestion \"%s\" lacks \"%s\"", p.suggestion ? p.suggestion : "(null)",
                     cases[i].suggestion);
        mg_schema_index_plan_cleanup(&p);
    }
}

static void
test_array_field_caveat(void **state)
{
    mg_schema_census_t *c = mg_schema_census_new("shop", "orders");
    bson_t *d = BCON_NEW("_id", BCON_INT32(1), "tags", "[", BCON_UTF8("a"), "]");
    mg_schema_index_plan_t p;
    mg_error_t e;

    assert_true(mg_schema_census_add_sample(c, d, &e));
    translate("{\"key\":{\"tags\":1},\"name\":\"tags_1\"}", c, &p);
    assert_int_equal(p.status, MG_SCHEMA_INDEX_CAVEAT);
    assert_non_null(strstr(p.note, "field \"tags\" holds arrays"));
    assert_non_null(strstr(p.suggestion, "gin"));
    mg_schema_index_plan_cleanup(&p);
    bson_destroy(d);
    mg_schema_census_destroy(c);
}

static void
test_malformed_spec(void **state)
{
    bson_t *spec = BCON_NEW("key", "{", "a", BCON_INT32(1), "}");
    mg_schema_index_plan_t p;
    mg_error_t e;

    assert_false(mg_schema_index_translate(spec, "s", "t", NULL, &p, &e));
    assert_non_null(strstr(e.message, "has no name"));
    bson_destroy(spec);
}

static void
test_table_ddl(void **state)
{
    mg_buf_t b;
    mg_error_t e;

    mg_buf_init(&b, 4096);
    assert_true(mg_schema_table_ddl("shop", "orders", MG_SCHEMA_KEY_TEXT_OID, &b, &e));
    assert_string_equal(b.data, "CREATE TABLE \"shop\".\"orders\" (_id text NOT NULL PRIMARY KEY, "
                                "doc jsonb NOT NULL)");
    mg_buf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_primary),
        cmocka_unit_test(test_single_and_compound),
        cmocka_unit_test(test_unique_treats_missing_as_null),
        cmocka_unit_test(test_sparse_and_partial),
        cmocka_unit_test(test_hashed_ttl_wildcard),
        cmocka_unit_test(test_not_translated_kinds),
        cmocka_unit_test(test_array_field_caveat),
        cmocka_unit_test(test_malformed_spec),
        cmocka_unit_test(test_table_ddl),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
