/*
 * tests/unit/cdc/test_split.c - events cut by $changeStreamSplitLargeEvent
 * put back together (cdc/src/cdc_split.c): in order, resumed in the middle
 * (libmongoc's resume continues at the next fragment), read again from
 * before the event (fragment 1 starts over), a fragment out of order.
 */
#include "cdc_internal.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* fragment builds fragment k of n with token "T<k>" and the given field. */
static bson_t *
fragment(int k, int n, const char *field, const char *value)
{
    char token[16];
    bson_t *b = bson_new();
    bson_t id, se;

    snprintf(token, sizeof(token), "T%d", k);
    bson_append_document_begin(b, "_id", 3, &id);
    BSON_APPEND_UTF8(&id, "_data", token);
    bson_append_document_end(b, &id);
    BSON_APPEND_UTF8(b, field, value);
    bson_append_document_begin(b, "splitEvent", -1, &se);
    BSON_APPEND_INT32(&se, "fragment", k);
    BSON_APPEND_INT32(&se, "of", n);
    bson_append_document_end(b, &se);
    return b;
}

static void
expect_whole(const bson_t *ev, const char *token)
{
    bson_iter_t it;
    char *j = bson_as_relaxed_extended_json(ev, NULL);

    assert_true(bson_iter_init_find(&it, ev, "_id"));
    assert_true(bson_iter_init(&it, ev) && bson_iter_find_descendant(&it, "_id._data", &it));
    assert_string_equal(bson_iter_utf8(&it, NULL), token);
    assert_non_null(strstr(j, "\"operationType\" : \"update\""));
    assert_non_null(strstr(j, "\"fullDocument\" : \"big\""));
    assert_null(strstr(j, "splitEvent"));
    bson_free(j);
}

static void
test_in_order_and_resumed_in_the_middle(void **state)
{
    mg_cdc__split_t s;
    const bson_t *ev = NULL;
    bson_t *f1 = fragment(1, 3, "operationType", "update");
    bson_t *f2 = fragment(2, 3, "fullDocument", "big");
    bson_t *f3 = fragment(3, 3, "updateDescription", "also big");
    mg_error_t e;
    int32_t k, n;

    (void)state;
    mg_cdc__split_init(&s);
    assert_true(mg_cdc__split_of(f2, &k, &n) && k == 2 && n == 3);
    assert_int_equal(mg_cdc__split_add(&s, f1, &ev, &e), 0);
    assert_int_equal(mg_cdc__split_add(&s, f2, &ev, &e), 0);
    assert_int_equal(mg_cdc__split_add(&s, f3, &ev, &e), 1);
    expect_whole(ev, "T3");
    /* read again from before the event: fragment 1 starts it over */
    assert_int_equal(mg_cdc__split_add(&s, f1, &ev, &e), 0);
    assert_int_equal(mg_cdc__split_add(&s, f1, &ev, &e), 0);
    assert_int_equal(mg_cdc__split_add(&s, f2, &ev, &e), 0);
    assert_int_equal(mg_cdc__split_add(&s, f3, &ev, &e), 1);
    expect_whole(ev, "T3");
    mg_cdc__split_cleanup(&s);
    bson_destroy(f1);
    bson_destroy(f2);
    bson_destroy(f3);
}

static void
test_a_fragment_out_of_order_is_refused(void **state)
{
    mg_cdc__split_t s;
    const bson_t *ev = NULL;
    bson_t *f1 = fragment(1, 3, "operationType", "update");
    bson_t *f3 = fragment(3, 3, "fullDocument", "big");
    bson_t *other = fragment(2, 4, "fullDocument", "big");
    bson_t plain = BSON_INITIALIZER;
    mg_error_t e;
    int32_t k, n;

    (void)state;
    mg_cdc__split_init(&s);
    assert_false(mg_cdc__split_of(&plain, &k, &n));
    /* resumed after a fragment this reader never saw (e.g. a checkpoint inside an event) */
    assert_int_equal(mg_cdc__split_add(&s, f3, &ev, &e), -1);
    assert_non_null(strstr(e.message, "fragment 3 of 3 arrived after fragment"));
    assert_int_equal(mg_cdc__split_add(&s, f1, &ev, &e), 0);
    assert_int_equal(mg_cdc__split_add(&s, other, &ev, &e), -1); /* another event's count */
    assert_int_equal(s.next, 0);                                 /* starts over */
    mg_cdc__split_cleanup(&s);
    bson_destroy(f1);
    bson_destroy(f3);
    bson_destroy(other);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_and_resumed_in_the_middle),
        cmocka_unit_test(test_a_fragment_out_of_order_is_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
