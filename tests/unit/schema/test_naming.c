/*
 * tests/unit/schema/test_naming.c - deterministic PostgreSQL names for
 * databases and collections: sanitising, cutting, collisions, order
 * independence.
 */
#include "mg/schema.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void
test_sanitize(void **state)
{
    char out[MG_SCHEMA_IDENT_MAX + 1];

    assert_false(mg_schema_ident_sanitize("users", out));
    assert_string_equal(out, "users");
    assert_true(mg_schema_ident_sanitize("Users", out));
    assert_string_equal(out, "users");
    assert_true(mg_schema_ident_sanitize("order-items v2", out));
    assert_string_equal(out, "order_items_v2");
    assert_true(mg_schema_ident_sanitize("2024_logs", out));
    assert_string_equal(out, "c_2024_logs");
    assert_true(mg_schema_ident_sanitize("caf\xc3\xa9", out));
    assert_string_equal(out, "caf__");
    assert_true(mg_schema_ident_sanitize("", out));
    assert_string_equal(out, "c_");
}

static void
test_long_names_are_cut_with_a_hash(void **state)
{
    char a[200], b[200], oa[64], ob[64];

    memset(a, 'x', 100);
    a[100] = '\0';
    memcpy(b, a, 101);
    b[99] = 'y';
    assert_true(mg_schema_ident_sanitize(a, oa));
    assert_true(mg_schema_ident_sanitize(b, ob));
    assert_int_equal(strlen(oa), MG_SCHEMA_IDENT_MAX);
    assert_int_equal(strlen(ob), MG_SCHEMA_IDENT_MAX);
    assert_memory_equal(oa, ob, 54); /* same prefix */
    assert_string_not_equal(oa, ob); /* different hash */
    assert_int_equal(oa[54], '_');
}

static mg_schema_naming_t *
plan(const char *single, const char *const *names, size_t n)
{
    mg_schema_naming_t *p = mg_schema_naming_new(single);
    mg_error_t e;

    for (size_t i = 0; i < n; i += 2)
        assert_true(mg_schema_naming_add(p, names[i], names[i + 1], &e));
    assert_true(mg_schema_naming_resolve(p, &e));
    return p;
}

static void
test_collisions_get_hashes_and_are_order_independent(void **state)
{
    const char *const fwd[] = {"shop", "Users", "shop", "users", "shop", "orders"};
    const char *const rev[] = {"shop", "orders", "shop", "users", "shop", "Users"};
    mg_schema_naming_t *a = plan(NULL, fwd, 6);
    mg_schema_naming_t *b = plan(NULL, rev, 6);
    const mg_schema_naming_entry_t *u1 = mg_schema_naming_find(a, "shop", "Users");
    const mg_schema_naming_entry_t *u2 = mg_schema_naming_find(a, "shop", "users");
    const mg_schema_naming_entry_t *o = mg_schema_naming_find(a, "shop", "orders");

    assert_string_equal(o->table, "orders");
    assert_false(o->table_renamed);
    assert_string_equal(o->schema, "shop");
    /* both clashing names get a hash, the plain one too */
    assert_string_not_equal(u1->table, u2->table);
    assert_memory_equal(u1->table, "users_", 6);
    assert_memory_equal(u2->table, "users_", 6);
    assert_true(u1->table_renamed && u2->table_renamed);
    /* the same names whatever the order */
    assert_string_equal(mg_schema_naming_find(b, "shop", "Users")->table, u1->table);
    assert_string_equal(mg_schema_naming_find(b, "shop", "users")->table, u2->table);
    assert_null(mg_schema_naming_find(a, "shop", "nope"));
    mg_schema_naming_destroy(a);
    mg_schema_naming_destroy(b);
}

static void
test_same_collection_name_in_two_databases(void **state)
{
    const char *const names[] = {"app", "users", "Billing", "users"};
    mg_schema_naming_t *per_db = plan(NULL, names, 4);
    mg_schema_naming_t *one = plan("target", names, 4);
    size_t n;

    /* one schema per database: no clash, Billing's schema lower-cased */
    assert_string_equal(mg_schema_naming_find(per_db, "app", "users")->table, "users");
    assert_string_equal(mg_schema_naming_find(per_db, "Billing", "users")->table, "users");
    assert_string_equal(mg_schema_naming_find(per_db, "Billing", "users")->schema, "billing");
    assert_true(mg_schema_naming_find(per_db, "Billing", "users")->schema_renamed);
    /* a single target schema: the two "users" clash and both get hashes */
    const mg_schema_naming_entry_t *e = mg_schema_naming_entries(one, &n);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].schema, "target");
    assert_string_not_equal(e[0].table, e[1].table);
    mg_schema_naming_destroy(per_db);
    mg_schema_naming_destroy(one);
}

static void
test_quote(void **state)
{
    mg_buf_t b;
    mg_error_t e;

    mg_buf_init(&b, 1024);
    assert_true(mg_schema_quote_ident("we\"ird", &b, &e));
    assert_true(mg_schema_quote_literal(" it's", &b, &e));
    assert_string_equal(b.data, "\"we\"\"ird\"' it''s'");
    mg_buf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sanitize),
        cmocka_unit_test(test_long_names_are_cut_with_a_hash),
        cmocka_unit_test(test_collisions_get_hashes_and_are_order_independent),
        cmocka_unit_test(test_same_collection_name_in_two_databases),
        cmocka_unit_test(test_quote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
