/*
 * tests/unit/cdc/test_event.c - change event decoding and resume tokens:
 * every operation type, transactions, and malformed events naming the field.
 */
#include "mg/cdc.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static bson_t *
event(const char *json)
{
    bson_error_t be;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &be);

    if (b == NULL)
        fail_msg("bad test json: %s", be.message);
    return b;
}

static void
test_insert_update_delete(void **state)
{
    bson_t *ins = event("{\"_id\": {\"_data\": \"82000000010000000200\"}, \"operationType\": "
                        "\"insert\", \"clusterTime\": {\"$timestamp\": {\"t\": 10, \"i\": 3}}, "
                        "\"wallTime\": {\"$date\": 1000}, \"ns\": {\"db\": \"shop\", \"coll\": "
                        "\"orders\"}, \"documentKey\": {\"_id\": 7}, \"fullDocument\": {\"_id\": "
                        "7, \"a\": 1}}");
    bson_t *upd = event("{\"operationType\": \"update\", \"clusterTime\": {\"$timestamp\": {\"t\": "
                        "11, \"i\": 0}}, \"ns\": {\"db\": \"shop\", \"coll\": \"orders\"}, "
                        "\"documentKey\": {\"_id\": 7}, \"fullDocument\": null}");
    bson_t *del = event("{\"operationType\": \"delete\", \"clusterTime\": {\"$timestamp\": {\"t\": "
                        "12, \"i\": 0}}, \"ns\": {\"db\": \"shop\", \"coll\": \"orders\"}, "
                        "\"documentKey\": {\"_id\": \"x\"}}");
    mg_cdc_event_t ev;
    mg_error_t e;

    assert_true(mg_cdc_event_decode(ins, &ev, &e));
    assert_int_equal(ev.op, MG_CDC_OP_INSERT);
    assert_string_equal(ev.db, "shop");
    assert_string_equal(ev.coll, "orders");
    assert_true(ev.has_id);
    assert_int_equal(bson_iter_int32(&ev.id), 7);
    assert_true(ev.has_full_document);
    assert_int_equal(ev.ct_t, 10);
    assert_int_equal(ev.ct_i, 3);
    assert_int_equal(ev.wall_ms, 1000);
    assert_false(ev.in_txn);

    assert_true(mg_cdc_event_decode(upd, &ev, &e));
    assert_int_equal(ev.op, MG_CDC_OP_UPDATE);
    assert_false(ev.has_full_document); /* null: the document was deleted since */

    assert_true(mg_cdc_event_decode(del, &ev, &e));
    assert_int_equal(ev.op, MG_CDC_OP_DELETE);
    assert_string_equal(bson_iter_utf8(&ev.id, NULL), "x");
    bson_destroy(ins);
    bson_destroy(upd);
    bson_destroy(del);
}

static void
test_ddl_events(void **state)
{
    bson_t *ren = event("{\"operationType\": \"rename\", \"clusterTime\": {\"$timestamp\": {\"t\": "
                        "1, \"i\": 1}}, \"ns\": {\"db\": \"a\", \"coll\": \"old\"}, \"to\": "
                        "{\"db\": \"a\", \"coll\": \"new\"}}");
    bson_t *dropdb = event("{\"operationType\": \"dropDatabase\", \"clusterTime\": {\"$timestamp\":"
                           " {\"t\": 1, \"i\": 2}}, \"ns\": {\"db\": \"a\"}}");
    bson_t *other = event("{\"operationType\": \"createIndexes\", \"clusterTime\": {\"$timestamp\":"
                          " {\"t\": 1, \"i\": 3}}, \"ns\": {\"db\": \"a\", \"coll\": \"c\"}}");
    mg_cdc_event_t ev;
    mg_error_t e;

    assert_true(mg_cdc_event_decode(ren, &ev, &e));
    assert_int_equal(ev.op, MG_CDC_OP_RENAME);
    assert_string_equal(ev.to_coll, "new");
    assert_true(mg_cdc_event_decode(dropdb, &ev, &e));
    assert_int_equal(ev.op, MG_CDC_OP_DROP_DATABASE);
    assert_string_equal(ev.coll, "");
    assert_true(mg_cdc_event_decode(other, &ev, &e));
    assert_int_equal(ev.op, MG_CDC_OP_OTHER);
    assert_string_equal(ev.op_name, "createIndexes");
    bson_destroy(ren);
    bson_destroy(dropdb);
    bson_destroy(other);
}

static void
test_transactions(void **state)
{
    const char *fmt = "{\"operationType\": \"insert\", \"clusterTime\": {\"$timestamp\": {\"t\": "
                      "5, \"i\": 1}}, \"ns\": {\"db\": \"d\", \"coll\": \"c\"}, \"documentKey\": "
                      "{\"_id\": 1}, \"fullDocument\": {\"_id\": 1}, \"lsid\": {\"id\": "
                      "{\"$binary\": {\"base64\": \"%s\", \"subType\": \"04\"}}}, "
                      "\"txnNumber\": {\"$numberLong\": \"%d\"}}";
    char j1[600], j2[600], j3[600];
    mg_cdc_event_t a, b, c;
    mg_error_t e;

    snprintf(j1, sizeof(j1), fmt, "AAAAAAAAAAAAAAAAAAAAAA==", 4);
    snprintf(j2, sizeof(j2), fmt, "AAAAAAAAAAAAAAAAAAAAAA==", 4);
    snprintf(j3, sizeof(j3), fmt, "AQAAAAAAAAAAAAAAAAAAAA==", 4);
    bson_t *b1 = event(j1), *b2 = event(j2), *b3 = event(j3);
    assert_true(mg_cdc_event_decode(b1, &a, &e));
    assert_true(mg_cdc_event_decode(b2, &b, &e));
    assert_true(mg_cdc_event_decode(b3, &c, &e));
    assert_true(a.in_txn);
    assert_int_equal(a.txn_number, 4);
    assert_true(mg_cdc_same_txn(&a, &b));
    assert_false(mg_cdc_same_txn(&a, &c)); /* another session */
    bson_destroy(b1);
    bson_destroy(b2);
    bson_destroy(b3);
}

static void
test_malformed(void **state)
{
    static const struct {
        const char *json;
        const char *needle;
    } cases[] = {
        {"{\"clusterTime\": {\"$timestamp\": {\"t\": 1, \"i\": 1}}}", "no operationType"},
        {"{\"operationType\": \"insert\"}", "no clusterTime"},
        {"{\"operationType\": \"insert\", \"clusterTime\": {\"$timestamp\": {\"t\": 1, \"i\": 1}},"
         " \"ns\": {\"db\": \"d\", \"coll\": \"c\"}, \"fullDocument\": {}}",
         "no documentKey._id"},
        {"{\"operationType\": \"insert\", \"clusterTime\": {\"$timestamp\": {\"t\": 1, \"i\": 1}},"
         " \"ns\": {\"db\": \"d\", \"coll\": \"c\"}, \"documentKey\": {\"_id\": 1}}",
         "no fullDocument"},
        {"{\"operationType\": \"rename\", \"clusterTime\": {\"$timestamp\": {\"t\": 1, \"i\": 1}},"
         " \"ns\": {\"db\": \"d\", \"coll\": \"c\"}}",
         "no to.coll"},
    };
    mg_cdc_event_t ev;
    mg_error_t e;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bson_t *b = event(cases[i].json);
        assert_false(mg_cdc_event_decode(b, &ev, &e));
        if (strstr(e.message, cases[i].needle) == NULL)
            fail_msg("\"%s\" lacks \"%s\"", e.message, cases[i].needle);
        bson_destroy(b);
    }
}

static void
test_token_time(void **state)
{
    bson_t *tok = event("{\"_data\": \"8265A1B2C3000000070100000000\"}");
    bson_t *other = event("{\"_data\": \"0102\"}");
    bson_t *none = event("{\"x\": 1}");
    uint32_t t = 0, i = 0;

    assert_true(mg_cdc_token_time(tok, &t, &i));
    assert_int_equal(t, 0x65A1B2C3);
    assert_int_equal(i, 7);
    assert_false(mg_cdc_token_time(other, &t, &i));
    assert_false(mg_cdc_token_time(none, &t, &i));
    assert_false(mg_cdc_token_time(NULL, &t, &i));
    bson_destroy(tok);
    bson_destroy(other);
    bson_destroy(none);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_insert_update_delete), cmocka_unit_test(test_ddl_events),
        cmocka_unit_test(test_transactions),         cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_token_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
