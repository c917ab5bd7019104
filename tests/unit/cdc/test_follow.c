/*
 * tests/unit/cdc/test_follow.c - the follower without a server: the change
 * stream it opens (databases matched once, full documents or the slim form
 * for an oversize event, resuming after the token or from T0), the exit
 * code an error maps to, and a follower that cannot be made cleans up and
 * says why.
 */
#include "cdc_internal.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static const char *const dbs[] = {"shop", "crm"};

static char *
json(const bson_t *b)
{
    return bson_as_relaxed_extended_json(b, NULL);
}

static void
test_the_stream_from_t0_with_full_documents(void **state)
{
    bson_t pipeline, opts;
    char *p, *o;
    mg_cdc__stream_spec_t spec = {.dbs = dbs, .ndbs = 2, .t0_t = 1700000000, .t0_i = 7};

    mg_cdc__stream_args(&spec, &pipeline, &opts);
    p = json(&pipeline);
    o = json(&opts);
    assert_string_equal(p, "{ \"pipeline\" : [ { \"$match\" : { \"ns.db\" : { \"$in\" : [ "
                           "\"shop\", \"crm\" ] } } } ] }");
    assert_string_equal(o, "{ \"fullDocument\" : \"updateLookup\", \"batchSize\" : 5000, "
                           "\"maxAwaitTimeMS\" : 500, \"startAtOperationTime\" : { "
                           "\"$timestamp\" : { \"t\" : 1700000000, \"i\" : 7 } } }");
    bson_free(p);
    bson_free(o);
    bson_destroy(&pipeline);
    bson_destroy(&opts);
}

static void
test_the_slim_stream_after_a_token(void **state)
{
    bson_t *token = BCON_NEW("_data", BCON_UTF8("8265A0B1C2000000012B"));
    bson_t pipeline, opts;
    char *p, *o;

    mg_cdc__stream_spec_t spec = {.dbs = dbs, .ndbs = 1, .slim = true, .token = token};

    mg_cdc__stream_args(&spec, &pipeline, &opts);
    p = json(&pipeline);
    o = json(&opts);
    assert_string_equal(p, "{ \"pipeline\" : [ { \"$match\" : { \"ns.db\" : { \"$in\" : [ "
                           "\"shop\" ] } } }, { \"$project\" : { \"fullDocument\" : 0, "
                           "\"fullDocumentBeforeChange\" : 0, \"updateDescription\" : 0 } } ] }");
    assert_string_equal(o, "{ \"batchSize\" : 5000, \"maxAwaitTimeMS\" : 500, \"startAfter\" : "
                           "{ \"_data\" : \"8265A0B1C2000000012B\" } }");
    bson_free(p);
    bson_free(o);
    bson_destroy(&pipeline);
    bson_destroy(&opts);
    bson_destroy(token);
}

static void
test_the_split_stage_is_last_and_every_database_when_none_is_named(void **state)
{
    bson_t pipeline, opts;
    char *p;
    mg_cdc__stream_spec_t spec = {.split = true, .t0_t = 1, .t0_i = 1};

    mg_cdc__stream_args(&spec, &pipeline, &opts);
    p = json(&pipeline);
    assert_string_equal(p, "{ \"pipeline\" : [ { \"$match\" : { \"ns.db\" : { \"$nin\" : [ "
                           "\"admin\", \"config\", \"local\" ] } } }, { "
                           "\"$changeStreamSplitLargeEvent\" : {  } } ] }");
    bson_free(p);
    bson_destroy(&pipeline);
    bson_destroy(&opts);
    /* which servers have the stage: 7.0, and 6.0 from 6.0.9 */
    assert_true(mg_cdc__splits_large_events("7.0.12"));
    assert_true(mg_cdc__splits_large_events("8.0.0"));
    assert_true(mg_cdc__splits_large_events("6.0.9"));
    assert_false(mg_cdc__splits_large_events("6.0.8"));
    assert_false(mg_cdc__splits_large_events("5.0.30"));
    assert_false(mg_cdc__splits_large_events("junk"));
    assert_false(mg_cdc__splits_large_events(NULL));
}

static void
test_exit_codes(void **state)
{
    mg_error_t e;

    mg_error_set(&e, MG_ERROR_DOMAIN_MONGO, 286, "history lost");
    assert_int_equal(mg_cdc__exit_code(&e), MG_EXIT_SOURCE);
    mg_error_set(&e, MG_ERROR_DOMAIN_PG, 0, "gone");
    assert_int_equal(mg_cdc__exit_code(&e), MG_EXIT_TARGET);
    mg_error_set(&e, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                 "invariant violated: the checkpoint would move backwards to Timestamp(1, 1)");
    assert_int_equal(mg_cdc__exit_code(&e), MG_EXIT_INTERNAL);
    mg_error_set(&e, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "too big");
    assert_int_equal(mg_cdc__exit_code(&e), MG_EXIT_FAILURE);
    mg_error_clear(&e);
    assert_int_equal(mg_cdc__exit_code(&e), MG_EXIT_FAILURE); /* never 0 for a failure */
}

static void
test_a_follower_that_cannot_connect(void **state)
{
    atomic_int stop;
    mg_cdc_follow_settings_t s = {
        .source_uri = "mongodb://127.0.0.1:1/?replicaSet=rs",
        .target = "nosuchoption=1",
        .state_schema = "_migrate",
        .batch_events = 10,
        .batch_bytes = 1024,
        .batch_delay_ms = 10,
        .stop = &stop,
    };
    mg_error_t e;

    atomic_init(&stop, 0);
    assert_null(mg_cdc_follow_new(&s, &e));
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_PG);
    assert_non_null(strstr(e.message, "could not connect to target \"nosuchoption=1\""));
    s.state_schema = "x\"y"; /* any name is quoted, never refused */
    assert_null(mg_cdc_follow_new(&s, &e));
    assert_non_null(strstr(e.message, "could not connect to target"));
    mg_cdc_follow_destroy(NULL);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_stream_from_t0_with_full_documents),
        cmocka_unit_test(test_the_slim_stream_after_a_token),
        cmocka_unit_test(test_the_split_stage_is_last_and_every_database_when_none_is_named),
        cmocka_unit_test(test_exit_codes),
        cmocka_unit_test(test_a_follower_that_cannot_connect),
    };

    mg_log_init("test", MG_LOG_FATAL, MG_LOG_FORMAT_JSON);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
