/*
 * tests/unit/cdc/test_batch.c - coalescing per (table, _id): last state
 * wins, deletes replace upserts and back, caps, and _ids that do not fit.
 * (Applying a batch needs PostgreSQL: tests/integration/migrator/test_cdc.py.)
 */
#include "mg/cdc.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static const mg_cdc_table_t tables[] = {
    {"d", "ints", "d", "ints", MG_SCHEMA_KEY_BIGINT},
    {"d", "oids", "d", "oids", MG_SCHEMA_KEY_TEXT_OID},
};

static void
test_last_state_wins(void **state)
{
    mg_cdc_batch_t *b =
        mg_cdc_batch_new(tables, 2, MG_SCHEMA_FIDELITY_RELAXED, 100, 1 << 20, 200, 1 << 22);
    bson_t *v1 = BCON_NEW("_id", BCON_INT32(1), "v", BCON_INT32(1));
    bson_t *v2 = BCON_NEW("_id", BCON_INT32(1), "v", BCON_INT32(2));
    bson_t *other = BCON_NEW("_id", BCON_INT64(2), "v", BCON_INT32(9));
    bson_iter_t id;
    mg_cdc_batch_stats_t st;
    mg_error_t e;

    assert_true(mg_cdc_batch_upsert(b, 0, v1, 1, 0, &e));
    assert_true(mg_cdc_batch_upsert(b, 0, v2, 1, 1, &e));
    assert_true(mg_cdc_batch_upsert(b, 0, other, 1, 2, &e));
    bson_iter_init_find(&id, other, "_id");
    assert_true(mg_cdc_batch_delete(b, 0, &id, 1, 3, &e));
    /* the same _id in another table is another document */
    bson_iter_init_find(&id, v1, "_id");
    mg_cdc_batch_stats(b, &st);
    assert_int_equal(st.events, 4);
    assert_int_equal(st.entries, 2); /* _id 1 and _id 2 */
    assert_int_equal(st.upserts, 1);
    assert_int_equal(st.deletes, 1);
    /* int32 1 and int64 2 share one key space: bigint */
    assert_true(mg_cdc_batch_delete(b, 0, &id, 1, 4, &e));
    mg_cdc_batch_stats(b, &st);
    assert_int_equal(st.entries, 2);
    assert_int_equal(st.upserts, 0);
    assert_int_equal(st.deletes, 2);
    assert_true(mg_cdc_batch_upsert(b, 0, v2, 1, 5, &e)); /* back to present */
    mg_cdc_batch_stats(b, &st);
    assert_int_equal(st.upserts, 1);
    mg_cdc_batch_reset(b);
    mg_cdc_batch_stats(b, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.events, 0);
    bson_destroy(v1);
    bson_destroy(v2);
    bson_destroy(other);
    mg_cdc_batch_destroy(b);
}

static void
test_caps(void **state)
{
    mg_cdc_batch_t *b =
        mg_cdc_batch_new(tables, 2, MG_SCHEMA_FIDELITY_RELAXED, 2, 1 << 20, 3, 1 << 22);
    mg_error_t e;

    for (int i = 0; i < 3; i++) {
        bson_t *d = BCON_NEW("_id", BCON_INT32(i));
        assert_true(mg_cdc_batch_upsert(b, 0, d, 1, (uint32_t)i, &e));
        bson_destroy(d);
        assert_true(mg_cdc_batch_full(b) == (i >= 1));
    }
    bson_t *d = BCON_NEW("_id", BCON_INT32(99));
    assert_false(mg_cdc_batch_upsert(b, 0, d, 1, 9, &e)); /* hard cap */
    assert_int_equal(e.code, MG_ERROR_CODE_LIMIT);
    assert_non_null(strstr(e.message, "change batch is full (3 documents)"));
    bson_destroy(d);
    mg_cdc_batch_destroy(b);
}

static void
test_id_that_does_not_fit(void **state)
{
    mg_cdc_batch_t *b =
        mg_cdc_batch_new(tables, 2, MG_SCHEMA_FIDELITY_RELAXED, 10, 1 << 20, 20, 1 << 22);
    bson_t *d = BCON_NEW("_id", BCON_UTF8("507f1f77bcf86cd799439011"), "v", BCON_INT32(1));
    mg_cdc_batch_stats_t st;
    mg_error_t e;

    assert_false(mg_cdc_batch_upsert(b, 1, d, 1, 0, &e));
    assert_non_null(strstr(e.message, "collection \"d.oids\""));
    assert_non_null(strstr(e.message, "_id does not fit key type text_objectid"));
    assert_non_null(strstr(e.message, "--key-type d.oids=canonical"));
    assert_non_null(strstr(e.message, "the _id: \"507f1f77bcf86cd799439011\""));
    mg_cdc_batch_stats(b, &st);
    assert_int_equal(st.entries, 0);
    bson_destroy(d);
    mg_cdc_batch_destroy(b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_last_state_wins),
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_id_that_does_not_fit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
