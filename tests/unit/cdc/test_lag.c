/*
 * tests/unit/cdc/test_lag.c - the follower's lag (cdc/src/cdc_lag.c): probes
 * of the source's last write against the committed position, on an idle
 * source, a busy one, one that is behind, and a full probe queue.
 */
#include "cdc_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void
test_unknown_until_a_probe_is_reached(void **state)
{
    mg_cdc__lag_t lag;

    (void)state;
    mg_cdc__lag_init(&lag);
    assert_true(mg_cdc__lag_seconds(&lag, 10.0) < 0);
    mg_cdc__lag_push(&lag, 10.0, 100, 1);
    mg_cdc__lag_applied(&lag, 99, 5); /* behind the probe */
    assert_true(mg_cdc__lag_seconds(&lag, 11.0) < 0);
    mg_cdc__lag_applied(&lag, 100, 1);
    assert_true(mg_cdc__lag_seconds(&lag, 11.0) == 0);
}

static void
test_an_idle_source_is_caught_up_however_old_its_last_write(void **state)
{
    mg_cdc__lag_t lag;

    (void)state;
    mg_cdc__lag_init(&lag);
    /* the last write (a no-op) was 10 s ago; the stream's resume token is past it */
    for (int k = 0; k < 40; k++) {
        mg_cdc__lag_push(&lag, 100.0 + 0.5 * k, 1000, 1);
        mg_cdc__lag_applied(&lag, 1000, 1);
        assert_true(mg_cdc__lag_seconds(&lag, 100.2 + 0.5 * k) == 0);
    }
}

static void
test_behind_counts_from_the_newest_probe_reached(void **state)
{
    mg_cdc__lag_t lag;

    (void)state;
    mg_cdc__lag_init(&lag);
    mg_cdc__lag_push(&lag, 1.0, 10, 0);
    mg_cdc__lag_push(&lag, 1.5, 11, 0);
    mg_cdc__lag_push(&lag, 2.0, 12, 0);
    mg_cdc__lag_applied(&lag, 11, 5); /* reached the first two */
    assert_int_equal(lag.n, 1);
    assert_true(mg_cdc__lag_seconds(&lag, 3.0) == 3.0 - 1.5);
    /* the committed position is a source Timestamp: the host's clock never enters */
    mg_cdc__lag_applied(&lag, 12, 0);
    assert_true(mg_cdc__lag_seconds(&lag, 50.0) == 0);
}

static void
test_a_full_queue_keeps_the_newest_probe(void **state)
{
    mg_cdc__lag_t lag;

    (void)state;
    mg_cdc__lag_init(&lag);
    mg_cdc__lag_push(&lag, 0.0, 1, 0);
    mg_cdc__lag_applied(&lag, 1, 0);
    for (int k = 1; k <= 3 * MG_CDC_LAG_PROBES; k++)
        mg_cdc__lag_push(&lag, (double)k, (uint32_t)k + 1, 0);
    assert_int_equal(lag.n, MG_CDC_LAG_PROBES);
    /* reaching everything but the newest write must not read as caught up */
    mg_cdc__lag_applied(&lag, 3 * MG_CDC_LAG_PROBES, 0);
    assert_true(mg_cdc__lag_seconds(&lag, 1000.0) > 0);
    mg_cdc__lag_applied(&lag, 3 * MG_CDC_LAG_PROBES + 1, 0);
    assert_true(mg_cdc__lag_seconds(&lag, 1000.0) == 0);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unknown_until_a_probe_is_reached),
        cmocka_unit_test(test_an_idle_source_is_caught_up_however_old_its_last_write),
        cmocka_unit_test(test_behind_counts_from_the_newest_probe_reached),
        cmocka_unit_test(test_a_full_queue_keeps_the_newest_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
