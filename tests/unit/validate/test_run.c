/*
 * tests/unit/validate/test_run.c - the validate engine's rules without a
 * server: a run's status and exit code (docs/validate.md), how the source
 * scan is split like the copy (the partitions' filters, then one for the
 * _id types the plan did not see), and the defaults the cutover's in-process
 * verification runs with.
 */
#include "validate_internal.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void
test_status_and_exit_code(void **state)
{
    static const struct {
        mg_validate__outcome_t o;
        const char *status;
        int rc, rc_any; /* persistent only / --fail-on any */
    } cases[] = {
        {{false, 0, 0, 0}, "clean", MG_EXIT_OK, MG_EXIT_OK},
        {{false, 0, 3, 0}, "mismatch", MG_EXIT_OK, MG_EXIT_MISMATCH},
        {{false, 0, 0, 2}, "mismatch", MG_EXIT_OK, MG_EXIT_MISMATCH}, /* shadow reads */
        {{false, 1, 3, 0}, "persistent_mismatch", MG_EXIT_MISMATCH, MG_EXIT_MISMATCH},
        {{true, 1, 3, 0}, "failed", MG_EXIT_MISMATCH, MG_EXIT_MISMATCH},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_string_equal(mg_validate__status(&cases[i].o), cases[i].status);
        assert_int_equal(mg_validate__exit_code(&cases[i].o, false), cases[i].rc);
        assert_int_equal(mg_validate__exit_code(&cases[i].o, true), cases[i].rc_any);
    }
}

/* blobs_of packs n BSON documents as the state layer returns partition filters. */
static void
blobs_of(mg_state_blobs_t *b, bson_t **docs, size_t n)
{
    b->data = calloc(n + 1, sizeof(uint8_t *));
    b->len = calloc(n + 1, sizeof(size_t));
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        b->data[i] = (uint8_t *)bson_get_data(docs[i]);
        b->len[i] = docs[i]->len;
    }
}

static char *
json(const bson_t *b)
{
    return bson_as_relaxed_extended_json(b, NULL);
}

static void
test_scan_filters_cover_the_types_the_plan_missed(void **state)
{
    bson_t *parts[3] = {
        BCON_NEW("_id", "{", "$type", "[", "int", "long", "]", "$lt", BCON_INT32(100), "}"),
        BCON_NEW("_id", "{", "$type", "[", "int", "long", "]", "$gte", BCON_INT32(100), "}"),
        BCON_NEW("_id", "{", "$type", BCON_UTF8("objectId"), "}"),
    };
    mg_state_blobs_t blobs = {0};
    bson_t **filters = NULL;
    size_t n = 0;
    mg_error_t e;
    char *text;

    blobs_of(&blobs, parts, 3);
    assert_true(mg_validate__scan_filters(&blobs, "db.c", &filters, &n, &e));
    assert_int_equal(n, 4);
    for (size_t i = 0; i < 3; i++)
        assert_true(bson_equal(filters[i], parts[i]));
    text = json(filters[3]);
    assert_string_equal(text, "{ \"_id\" : { \"$not\" : { \"$type\" : [ \"int\", \"long\", "
                              "\"objectId\" ] } } }");
    bson_free(text);
    for (size_t i = 0; i < n; i++)
        bson_destroy(filters[i]);
    free(filters);
    free(blobs.data);
    free(blobs.len);
    for (size_t i = 0; i < 3; i++)
        bson_destroy(parts[i]);
}

static void
test_scan_filters_edge_cases(void **state)
{
    mg_state_blobs_t none = {0}, bad = {0};
    bson_t **filters = (bson_t **)&none; /* must be reset */
    bson_t *plain = BCON_NEW("x", BCON_INT32(1));
    uint8_t junk[5] = {5, 0, 0, 0, 1}; /* not a BSON document */
    uint8_t *data[2] = {(uint8_t *)bson_get_data(plain), junk};
    size_t len[2] = {plain->len, sizeof(junk)};
    size_t n = 7;
    mg_error_t e;

    /* no partitions: one scan of {} (no filters at all) */
    assert_true(mg_validate__scan_filters(&none, "db.c", &filters, &n, &e));
    assert_null(filters);
    assert_int_equal(n, 0);
    /* a filter without $type adds no "rest" scan; a corrupt one is named */
    bad.data = data;
    bad.len = len;
    bad.n = 1;
    assert_true(mg_validate__scan_filters(&bad, "db.c", &filters, &n, &e));
    assert_int_equal(n, 1);
    bson_destroy(filters[0]);
    free(filters);
    bad.n = 2;
    assert_false(mg_validate__scan_filters(&bad, "db.c", &filters, &n, &e));
    assert_string_equal(e.message, "partition 1 of db.c: the stored filter is not BSON");
    assert_int_equal(n, 1); /* what was made is the caller's to free */
    bson_destroy(filters[0]);
    free(filters);
    bson_destroy(plain);
}

static void
test_settings_defaults(void **state)
{
    mg_validate_settings_t s;

    memset(&s, 0x5a, sizeof(s));
    mg_validate_settings_init(&s);
    assert_int_equal(s.segments, 1024);
    assert_int_equal(s.max_named, 1000);
    assert_int_equal(s.max_fields, 20);
    assert_int_equal(s.batch_docs, 2000);
    assert_int_equal(s.drilldown_bytes, 256 * 1024 * 1024);
    assert_int_equal(s.source_threads, 2);
    assert_int_equal(s.shadow_repeat, 5);
    assert_int_equal(s.profiler_max, 1000);
    assert_false(s.full || s.changed || s.fail_on_any || s.json);
    assert_null(s.state);
    assert_null(s.out);
    assert_null(s.stop);
    assert_int_equal(s.every_ms, 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_and_exit_code),
        cmocka_unit_test(test_scan_filters_cover_the_types_the_plan_missed),
        cmocka_unit_test(test_scan_filters_edge_cases),
        cmocka_unit_test(test_settings_defaults),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
