/*
 * tests/unit/core/test_buf.c - mg_buf_t grows up to its cap and refuses to
 * go past it, leaving the buffer untouched.
 */
#include "mg/core.h"

#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void
test_append_and_nul(void **state)
{
    mg_buf_t b;
    mg_error_t e;

    mg_buf_init(&b, 1 << 20);
    assert_true(mg_buf_append_str(&b, "hello", &e));
    assert_true(mg_buf_append(&b, " world", 6, &e));
    assert_int_equal(b.len, 11);
    assert_string_equal(b.data, "hello world");
    assert_true(mg_buf_printf(&b, &e, " %d-%s", 42, "x"));
    assert_string_equal(b.data, "hello world 42-x");
    mg_buf_reset(&b);
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    for (int i = 0; i < 10000; i++)
        assert_true(mg_buf_append(&b, "0123456789", 10, &e));
    assert_int_equal(b.len, 100000);
    assert_true(b.cap >= b.len);
    mg_buf_cleanup(&b);
    mg_buf_cleanup(&b); /* twice is fine */
}

static void
test_limit_is_enforced(void **state)
{
    mg_buf_t b;
    mg_error_t e;

    mg_buf_init(&b, 16);
    assert_true(mg_buf_append(&b, "0123456789abcdef", 16, &e)); /* exactly the cap */
    assert_false(mg_buf_append(&b, "x", 1, &e));
    assert_int_equal(e.domain, MG_ERROR_DOMAIN_CORE);
    assert_int_equal(e.code, MG_ERROR_CODE_LIMIT);
    assert_non_null(strstr(e.message, "buffer limit of 16 bytes exceeded"));
    assert_int_equal(b.len, 16); /* untouched */
    assert_memory_equal(b.data, "0123456789abcdef", 17);
    assert_false(mg_buf_printf(&b, &e, "%s", "more"));
    assert_int_equal(b.len, 16);
    /* a huge request cannot overflow the size arithmetic */
    assert_false(mg_buf_reserve(&b, SIZE_MAX, &e));
    mg_buf_reset(&b);
    assert_true(mg_buf_printf(&b, &e, "%s", "0123456789abcdef"));
    assert_int_equal(b.len, 16);
    mg_buf_cleanup(&b);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_and_nul),
        cmocka_unit_test(test_limit_is_enforced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
