/*
 * tests/unit/core/test_utf8.c - UTF-8 as PostgreSQL accepts it: the
 * character checker against a reference decoder written differently (code
 * points and their ranges), and the copy and trim that keep cut or outside
 * text well-formed (seeded random inputs: MG_TEST_SEED).
 */
#include "mg/core.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* ref_len decodes the code point at s and checks its range: the reference. */
static size_t
ref_len(const uint8_t *s, size_t n)
{
    uint32_t cp;
    size_t len;

    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0)
        len = 2, cp = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, cp = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[k] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return len;
}

static bool
ref_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        size_t l = ref_len((const uint8_t *)s + i, n - i);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

/* Every 1- to 3-byte prefix pattern, and 4-byte leads with every second byte. */
static void
test_char_len_matches_reference(void **state)
{
    uint8_t s[4];

    (void)state;
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            for (unsigned c = 0x70; c < 0xd0; c += 0x0f) {
                s[0] = (uint8_t)a, s[1] = (uint8_t)b, s[2] = (uint8_t)c, s[3] = 0x80;
                for (size_t n = 1; n <= 4; n++)
                    if (mg_utf8_char_len(s, n) != ref_len(s, n))
                        fail_msg("%02x %02x %02x 80 (n %zu): %zu, reference %zu", a, b, c, n,
                                 mg_utf8_char_len(s, n), ref_len(s, n));
            }
        }
    }
    assert_int_equal(mg_utf8_char_len((const uint8_t *)"\xed\xa0\x80", 3), 0); /* surrogate */
    assert_int_equal(mg_utf8_char_len((const uint8_t *)"\xc0\xaf", 2), 0);     /* overlong */
    assert_int_equal(mg_utf8_char_len((const uint8_t *)"\xf4\x90\x80\x80", 4), 0);
    assert_int_equal(mg_utf8_char_len((const uint8_t *)"\xf4\x8f\xbf\xbf", 4), 4);
    assert_true(mg_utf8_valid("caf\xc3\xa9", 5));
    assert_false(mg_utf8_valid("caf\xc3", 4));
}

static void
test_copy_examples(void **state)
{
    char out[16];

    (void)state;
    assert_int_equal(mg_utf8_copy(out, sizeof(out), "plain", 5), 5);
    assert_string_equal(out, "plain");
    /* "é" x 8 = 16 bytes: does not fit 15; cut between characters, "..." after */
    mg_utf8_copy(out, sizeof(out),
                 "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9", 16);
    assert_string_equal(out, "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9...");
    /* NUL and bytes that start no character are escaped */
    mg_utf8_copy(out, sizeof(out), "a\0b\xff", 4);
    assert_string_equal(out, "a\\x00b\\xff");
    /* tiny buffers */
    assert_int_equal(mg_utf8_copy(out, 1, "abc", 3), 0);
    assert_string_equal(out, "");
    assert_int_equal(mg_utf8_copy(out, 3, "abc", 3), 2);
    assert_string_equal(out, "ab");
    assert_int_equal(mg_utf8_copy(out, 4, "abcd", 4), 3);
    assert_string_equal(out, "...");
    assert_int_equal(mg_utf8_copy(NULL, 0, "abc", 3), 0);
}

static void
test_trim(void **state)
{
    static const struct {
        const char *in, *want;
    } cases[] = {
        {"abc", "abc"},
        {"ab\xc3", "ab"},
        {"ab\xc3\xa9", "ab\xc3\xa9"},
        {"ab\xe2\x82", "ab"},
        {"ab\xe2\x82\xac", "ab\xe2\x82\xac"},
        {"ab\xf0\x9f\x98", "ab"},
        {"ab\xf0\x9f\x98\x80", "ab\xf0\x9f\x98\x80"},
        {"ab\x80\x80", "ab\x80\x80"}, /* stray continuation bytes: left for the copy to escape */
        {"\x80\x80\x80", "\x80\x80\x80"},
        {"", ""},
    };
    char buf[32];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(buf, sizeof(buf), "%s", cases[i].in);
        assert_int_equal(mg_utf8_trim(buf), strlen(cases[i].want));
        assert_string_equal(buf, cases[i].want);
    }
}

/* Random texts of characters and junk, random buffer sizes: always well-formed, bounded. */
static void
test_copy_random(void **state)
{
    static const char *const pieces[] = {"a",    "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                         "\xff", "\xc3",     "\xed\xa0\x80", "\x80",
                                         "",     "z"};
    const char *env = getenv("MG_TEST_SEED");
    unsigned seed = env != NULL ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL);
    char in[256], full[1200], out[300];

    (void)state;
    printf("test_copy_random: seed %u (MG_TEST_SEED=%u to repeat)\n", seed, seed);
    srand(seed);
    for (int round = 0; round < 20000; round++) {
        size_t n = 0, outsz = (size_t)(rand() % 80), got, whole;
        int np = rand() % 40;

        for (int k = 0; k < np; k++) {
            const char *p = pieces[rand() % 10];
            size_t l = p[0] == '\0' ? 1 : strlen(p); /* "" stands for a NUL byte */

            if (n + l >= sizeof(in))
                break;
            memcpy(in + n, p, l);
            n += l;
        }
        whole = mg_utf8_copy(full, sizeof(full), in, n);
        got = mg_utf8_copy(out, outsz + 1, in, n);
        assert_true(got <= outsz);
        assert_int_equal(strlen(out), got);
        if (!ref_valid(out, got))
            fail_msg("round %d: not UTF-8", round);
        if (whole <= outsz) {
            assert_string_equal(out, full); /* it fits: all of it */
        } else {
            /* cut: a prefix of the whole copy at a unit boundary, then "..." when it fits */
            size_t keep = got >= 3 && outsz >= 3 ? got - 3 : got;
            if (outsz >= 3)
                assert_memory_equal(out + keep, "...", 3);
            assert_memory_equal(out, full, keep);
        }
        if (ref_valid(in, n) && memchr(in, '\0', n) == NULL)
            assert_memory_equal(full, in, n); /* valid text is copied as it is */
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_char_len_matches_reference),
        cmocka_unit_test(test_copy_examples),
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_copy_random),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
