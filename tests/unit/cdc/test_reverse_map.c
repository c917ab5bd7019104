/*
 * tests/unit/cdc/test_reverse_map.c - the reverse sync's mapping of
 * decoded pgoutput changes back to MongoDB operations (cdc_reverse_map.c):
 * inserts and updates to upserts of the row's doc read back to BSON,
 * deletes by the key or by the logged old row, a changed key, an
 * unchanged TOASTed doc read by key, truncates; and every refusal (a doc
 * with no BSON form, a doc whose _id does not give the row's key, a NULL
 * doc, a table that is not migrated, a digest key without the old row)
 * failing with an error that names the table and the key, appending
 * nothing.
 */
#include "cdc_reverse_internal.h"
#include "pgo_build.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define RELID 16401

static const mg_cdc_table_t tables[] = {
    {.db = "shop",
     .coll = "orders",
     .schema = "shop",
     .table = "orders",
     .key = MG_SCHEMA_KEY_TEXT_STRING},
};

static mg_pgo_decoder_t *dec;
static mg_cdc__rev_rels_t rels;
static mg_cdc__rev_ops_t ops;

static int
setup(void **state)
{
    (void)state;
    dec = mg_pgo_decoder_new();
    memset(&rels, 0, sizeof(rels));
    memset(&ops, 0, sizeof(ops));
    return dec == NULL;
}

static int
teardown(void **state)
{
    (void)state;
    mg_pgo_decoder_destroy(dec);
    mg_cdc__rev_rels_cleanup(&rels);
    mg_cdc__rev_ops_cleanup(&ops);
    return 0;
}

/* relation announces table nsp.rel (relid) with columns _id (key) and doc. */
static void
relation(uint32_t relid, const char *nsp, const char *rel, const mg_cdc_table_t *t, size_t n)
{
    msg_t r = {0};
    mg_pgo_msg_t m;
    mg_error_t e;

    put8(&r, 'R');
    put32(&r, relid);
    putstr(&r, nsp);
    putstr(&r, rel);
    put8(&r, 'd');
    put16(&r, 2);
    put8(&r, 1);
    putstr(&r, "_id");
    put32(&r, 25);
    put32(&r, 0xffffffffu);
    put8(&r, 0);
    putstr(&r, "doc");
    put32(&r, 3802);
    put32(&r, 0xffffffffu);
    assert_true(mg_pgo_decode(dec, r.b, r.n, &m, &e));
    assert_true(mg_cdc__rev_relation(&rels, t, n, &m, &e));
}

/* map decodes the message and maps it; returns what mg_cdc__rev_map returned. */
static bool
map(const msg_t *b, const mg_cdc_table_t *t, size_t n, mg_cdc__rev_lookup_fn lookup, void *ctx,
    mg_error_t *e)
{
    mg_pgo_msg_t m;

    assert_true(mg_pgo_decode(dec, b->b, b->n, &m, e));
    return mg_cdc__rev_map(&rels, t, n, &m, lookup, ctx, &ops, e);
}

/* insert builds an Insert of (key, doc) into relid; doc NULL sends a SQL NULL. */
static void
insert(msg_t *b, uint32_t relid, const char *key, const char *doc)
{
    put8(b, 'I');
    put32(b, relid);
    put8(b, 'N');
    put16(b, 2);
    puttext(b, key);
    if (doc != NULL)
        puttext(b, doc);
    else
        put8(b, 'n');
}

/* expect_int checks that doc's field holds the integer v. */
static void
expect_int(const bson_t *doc, const char *field, int64_t v)
{
    bson_iter_t it;

    assert_true(bson_iter_init_find(&it, doc, field));
    assert_true(BSON_ITER_HOLDS_NUMBER(&it));
    assert_int_equal(bson_iter_as_int64(&it), v);
}

static void
expect_id_str(const bson_t *id, const char *v)
{
    bson_iter_t it;

    assert_true(bson_iter_init_find(&it, id, "_id"));
    assert_true(BSON_ITER_HOLDS_UTF8(&it));
    assert_string_equal(bson_iter_utf8(&it, NULL), v);
}

static void
test_insert_upserts_the_doc(void **state)
{
    msg_t b = {0};
    mg_error_t e;

    (void)state;
    relation(RELID, "shop", "orders", tables, 1);
    insert(&b, RELID, "k1", "{\"_id\": \"k1\", \"qty\": 3, \"tags\": [\"a\", \"b\"]}");
    assert_true(map(&b, tables, 1, NULL, NULL, &e));
    assert_int_equal(ops.n, 1);
    assert_int_equal(ops.ops[0].kind, MG_CDC__REV_UPSERT);
    assert_int_equal(ops.ops[0].table, 0);
    assert_string_equal(ops.ops[0].doc_id, "k1");
    assert_false(ops.ops[0].dollar_top);
    expect_id_str(ops.ops[0].id, "k1");
    expect_id_str(ops.ops[0].doc, "k1");
    expect_int(ops.ops[0].doc, "qty", 3);
    assert_int_equal(ops.bytes, ops.ops[0].doc->len);
}

/* expect_refused maps b, expects failure with every piece of `want` in the message, no op. */
static void
expect_refused(const msg_t *b, const mg_cdc_table_t *t, size_t n, const char *const *want)
{
    size_t before = ops.n;
    mg_error_t e;

    mg_error_clear(&e);
    assert_false(map(b, t, n, NULL, NULL, &e));
    for (; *want != NULL; want++) {
        if (strstr(e.message, *want) == NULL)
            fail_msg("\"%s\" not in \"%s\"", *want, e.message);
    }
    assert_int_equal(ops.n, before);
}

static void
test_refusals_name_table_and_key(void **state)
{
    msg_t bad_json = {0}, wrong_id = {0}, no_id = {0}, null_doc = {0};
    const char *const table_key[] = {"\"shop\".\"orders\"", "\"k9\"", NULL};
    const char *const mismatch[] = {"\"shop\".\"orders\"", "\"k9\"", "not the row's", NULL};
    const char *const missing[] = {"\"k9\"", "has no _id", NULL};
    const char *const null[] = {"\"k9\"", "its doc is NULL", NULL};

    (void)state;
    relation(RELID, "shop", "orders", tables, 1);
    insert(&bad_json, RELID, "k9", "{\"_id\": \"k9\", \"x\": ");
    expect_refused(&bad_json, tables, 1, table_key);
    insert(&wrong_id, RELID, "k9", "{\"_id\": \"other\"}");
    expect_refused(&wrong_id, tables, 1, mismatch);
    insert(&no_id, RELID, "k9", "{\"a\": 1}");
    expect_refused(&no_id, tables, 1, missing);
    insert(&null_doc, RELID, "k9", NULL);
    expect_refused(&null_doc, tables, 1, null);
}

static void
test_unknown_tables(void **state)
{
    msg_t b = {0}, c = {0};
    const char *const not_migrated[] = {"\"public\".\"audit\"", "not a migrated table", NULL};
    const char *const no_relation[] = {"relation 777", "no Relation message", NULL};

    (void)state;
    relation(RELID + 1, "public", "audit", tables, 1);
    insert(&b, RELID + 1, "k1", "{\"_id\": \"k1\"}");
    expect_refused(&b, tables, 1, not_migrated);
    insert(&c, 777, "k1", "{\"_id\": \"k1\"}");
    expect_refused(&c, tables, 1, no_relation);
}

static void
test_delete_by_key(void **state)
{
    static const mg_cdc_table_t big[] = {
        {.db = "d", .coll = "c", .schema = "d", .table = "c", .key = MG_SCHEMA_KEY_BIGINT},
    };
    msg_t d = {0};
    bson_iter_t it;
    mg_error_t e;

    (void)state;
    relation(RELID, "d", "c", big, 1);
    put8(&d, 'D');
    put32(&d, RELID);
    put8(&d, 'K');
    put16(&d, 2);
    puttext(&d, "-42");
    put8(&d, 'n');
    assert_true(map(&d, big, 1, NULL, NULL, &e));
    assert_int_equal(ops.n, 1);
    assert_int_equal(ops.ops[0].kind, MG_CDC__REV_DELETE);
    assert_null(ops.ops[0].doc);
    assert_true(bson_iter_init_find(&it, ops.ops[0].id, "_id"));
    assert_true(BSON_ITER_HOLDS_NUMBER(&it));
    assert_int_equal(bson_iter_as_int64(&it), -42);
}

static void
test_delete_of_digest_key(void **state)
{
    static const mg_cdc_table_t canon[] = {
        {.db = "d", .coll = "c", .schema = "d", .table = "c", .key = MG_SCHEMA_KEY_CANONICAL},
    };
    char digest[66];
    msg_t k = {0}, o = {0};
    mg_error_t e;
    const char *const why[] = {"\"d\".\"c\"", "REPLICA IDENTITY", NULL};

    (void)state;
    digest[0] = '#';
    memset(digest + 1, 'a', 64);
    digest[65] = '\0';
    relation(RELID, "d", "c", canon, 1);
    /* only the key was logged: a digest gives no _id back */
    put8(&k, 'D');
    put32(&k, RELID);
    put8(&k, 'K');
    put16(&k, 2);
    puttext(&k, digest);
    put8(&k, 'n');
    expect_refused(&k, canon, 1, why);
    /* the whole old row was logged (REPLICA IDENTITY FULL): its doc gives the _id */
    put8(&o, 'D');
    put32(&o, RELID);
    put8(&o, 'O');
    put16(&o, 2);
    puttext(&o, digest);
    puttext(&o, "{\"_id\": \"a long one\", \"v\": 1}");
    assert_true(map(&o, canon, 1, NULL, NULL, &e));
    assert_int_equal(ops.n, 1);
    assert_int_equal(ops.ops[0].kind, MG_CDC__REV_DELETE);
    expect_id_str(ops.ops[0].id, "a long one");
}

static void
test_update_with_changed_key(void **state)
{
    msg_t u = {0};
    mg_error_t e;

    (void)state;
    relation(RELID, "shop", "orders", tables, 1);
    put8(&u, 'U');
    put32(&u, RELID);
    put8(&u, 'K');
    put16(&u, 2);
    puttext(&u, "old");
    put8(&u, 'n');
    put8(&u, 'N');
    put16(&u, 2);
    puttext(&u, "new");
    puttext(&u, "{\"_id\": \"new\", \"n\": 7}");
    assert_true(map(&u, tables, 1, NULL, NULL, &e));
    assert_int_equal(ops.n, 2);
    assert_int_equal(ops.ops[0].kind, MG_CDC__REV_DELETE);
    expect_id_str(ops.ops[0].id, "old");
    assert_int_equal(ops.ops[1].kind, MG_CDC__REV_UPSERT);
    expect_id_str(ops.ops[1].id, "new");
    expect_int(ops.ops[1].doc, "n", 7);
}

/* A lookup that returns a fixed doc for key "t1" and nothing for any other. */
static bool
lookup(void *ctx, const mg_cdc_table_t *t, const char *key, size_t key_len, mg_buf_t *out,
       bool *found, mg_error_t *error)
{
    int *calls = ctx;

    (void)t;
    (*calls)++;
    *found = key_len == 2 && memcmp(key, "t1", 2) == 0;
    return !*found || mg_buf_append_str(out, "{\"_id\": \"t1\", \"big\": 99}", error);
}

/* build_unchanged builds an Update of key whose doc is an unchanged TOASTed value. */
static void
build_unchanged(msg_t *u, const char *key)
{
    put8(u, 'U');
    put32(u, RELID);
    put8(u, 'N');
    put16(u, 2);
    puttext(u, key);
    put8(u, 'u');
}

static void
test_unchanged_toast_is_read(void **state)
{
    msg_t u = {0}, gone = {0};
    mg_error_t e;
    int calls = 0;
    const char *const no_lookup[] = {"\"t1\"", "not sent as text", NULL};

    (void)state;
    relation(RELID, "shop", "orders", tables, 1);
    build_unchanged(&u, "t1");
    expect_refused(&u, tables, 1, no_lookup); /* without a way to read it: refused */
    assert_true(map(&u, tables, 1, lookup, &calls, &e));
    assert_int_equal(calls, 1);
    assert_int_equal(ops.n, 1);
    expect_int(ops.ops[0].doc, "big", 99);
    /* the row is gone by now (a delete follows in the stream): nothing to do */
    build_unchanged(&gone, "t2");
    assert_true(map(&gone, tables, 1, lookup, &calls, &e));
    assert_int_equal(calls, 2);
    assert_int_equal(ops.n, 1);
}

static void
test_truncate_and_drop_front(void **state)
{
    msg_t t = {0}, i = {0};
    mg_error_t e;

    (void)state;
    relation(RELID, "shop", "orders", tables, 1);
    insert(&i, RELID, "k1", "{\"_id\": \"k1\"}");
    assert_true(map(&i, tables, 1, NULL, NULL, &e));
    put8(&t, 'T');
    put32(&t, 1);
    put8(&t, 0);
    put32(&t, RELID);
    assert_true(map(&t, tables, 1, NULL, NULL, &e));
    assert_int_equal(ops.n, 2);
    assert_int_equal(ops.ops[1].kind, MG_CDC__REV_TRUNCATE);
    assert_int_equal(ops.ops[1].table, 0);
    mg_cdc__rev_ops_drop_front(&ops, 1);
    assert_int_equal(ops.n, 1);
    assert_int_equal(ops.ops[0].kind, MG_CDC__REV_TRUNCATE);
    assert_int_equal(ops.bytes, 0);
}

static void
test_dollar_top_level_key(void **state)
{
    msg_t top = {0}, nested = {0};
    mg_error_t e;

    (void)state;
    relation(RELID, "shop", "orders", tables, 1);
    /* a top-level $-key cannot be in a replacement: the apply deletes and inserts */
    insert(&top, RELID, "k1", "{\"_id\": \"k1\", \"$price\": 1}");
    assert_true(map(&top, tables, 1, NULL, NULL, &e));
    insert(&nested, RELID, "k2", "{\"_id\": \"k2\", \"a\": {\"$price\": 1}}");
    assert_true(map(&nested, tables, 1, NULL, NULL, &e));
    assert_int_equal(ops.n, 2);
    expect_int(ops.ops[0].doc, "$price", 1);
    assert_true(ops.ops[0].dollar_top);
    assert_false(ops.ops[1].dollar_top);
}

static void
test_name_is_a_slot_name(void **state)
{
    char a[MG_CDC_REVERSE_NAME_SIZE], b[MG_CDC_REVERSE_NAME_SIZE];

    (void)state;
    mg_cdc_reverse_name("_migrate", a);
    mg_cdc_reverse_name("_migrate\"; DROP", b);
    assert_string_not_equal(a, b);
    assert_int_equal(strlen(a), strlen("migrate_reverse_") + 16);
    for (const char *p = a; *p; p++)
        assert_true((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_');
    /* what the engine accepts back from the state: only such names */
    assert_true(mg_cdc__rev_name_valid(a));
    assert_false(mg_cdc__rev_name_valid(""));
    assert_false(mg_cdc__rev_name_valid("x' (proto_version '9"));
    assert_false(mg_cdc__rev_name_valid("Upper"));
    assert_false(
        mg_cdc__rev_name_valid("a234567890123456789012345678901234567890123456789012345678901234"));
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_insert_upserts_the_doc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_name_table_and_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_by_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_of_digest_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_with_changed_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unchanged_toast_is_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate_and_drop_front, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dollar_top_level_key, setup, teardown),
        cmocka_unit_test(test_name_is_a_slot_name),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
