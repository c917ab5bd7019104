/*
 * tests/unit/schema/test_double_format.c - the shortest round-trip double
 * formatter (mg_schema__double_format, Schubfach) against the printf-based
 * reference it replaced (mg_schema__double_format_reference): random bit
 * patterns over every exponent, subnormals, powers of two and ten and their
 * neighbours, 10^k boundaries, DBL_MAX/DBL_MIN/DBL_TRUE_MIN, 2^53 +- 1,
 * short decimals. Every value must read back (strtod) as itself, be plain
 * JSON number text with a '.', and be byte-identical to the reference.
 * The table of 128-bit powers of ten and the floor-logarithm shortcut are
 * checked with exact big integers.
 *
 * By default 600 000 random bit patterns and 120 000 rounds of four values
 * of the kinds data holds are compared with the reference (each value also
 * negated), ~5 s in the ASan build: the reference's printf is what costs.
 * MG_TEST_DOUBLE_SCALE=N multiplies the random counts by N.
 */
#include "schema_internal.h"
#include "schema_double.h"
#include "schema_pow10.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* rng is splitmix64: a fixed seed gives a fixed sequence. */
static uint64_t
rng(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));

    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double
from_bits(uint64_t bits)
{
    double v;

    memcpy(&v, &bits, sizeof(v));
    return v;
}

static uint64_t
to_bits(double v)
{
    uint64_t bits;

    memcpy(&bits, &v, sizeof(bits));
    return bits;
}

/* scale returns MG_TEST_DOUBLE_SCALE (>= 1), default 1. */
static long
scale(void)
{
    const char *s = getenv("MG_TEST_DOUBLE_SCALE");
    long n = s != NULL ? strtol(s, NULL, 10) : 1;

    return n >= 1 ? n : 1;
}

/*
 * check_shape fails unless text is JSON number text in plain notation:
 * optional '-', digits without a leading zero (but "0"), '.', digits.
 */
static void
check_shape(double v, const char *text, size_t len)
{
    const char *p = text;

    if (len != strlen(text) || len >= MG_SCHEMA_DOUBLE_MAX)
        fail_msg("%a: length %zu for \"%s\"", v, len, text);
    if (*p == '-')
        p++;
    if (!(*p >= '0' && *p <= '9') || (p[0] == '0' && p[1] != '.'))
        fail_msg("%a: bad integer part in \"%s\"", v, text);
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p++ != '.' || !(*p >= '0' && *p <= '9'))
        fail_msg("%a: no fraction in \"%s\"", v, text);
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p != '\0')
        fail_msg("%a: trailing characters in \"%s\"", v, text);
}

/* checks counts how many values check_one has seen (reported by the tests). */
static unsigned long checks;

/*
 * check_one formats v (finite, not -0.0) with both functions: the text must
 * read back as exactly v, have a plain shape and equal the reference's.
 */
static void
check_one(double v)
{
    char got[MG_SCHEMA_DOUBLE_MAX], want[MG_SCHEMA_DOUBLE_MAX];
    size_t n = mg_schema__double_format(v, got);
    size_t m = mg_schema__double_format_reference(v, want);
    char *end;
    double back;

    checks++;
    check_shape(v, got, n);
    back = strtod(got, &end);
    if (*end != '\0' || to_bits(back) != to_bits(v))
        fail_msg("%a (%.17g) written as \"%s\" reads back as %a", v, v, got, back);
    if (n != m || memcmp(got, want, n) != 0)
        fail_msg("%a (%.17g): \"%s\", reference \"%s\"", v, v, got, want);
}

/*
 * check_both checks v and -v (skipping what the renderer never formats);
 * the reference writes -v as '-' and the text of v, so -v is compared with
 * that (saving the reference's printf).
 */
static void
check_both(double v)
{
    char pos[MG_SCHEMA_DOUBLE_MAX], neg[MG_SCHEMA_DOUBLE_MAX];
    size_t n, m;

    if (!isfinite(v) || v == 0.0) {
        if (v == 0.0)
            check_one(0.0);
        return;
    }
    v = fabs(v);
    check_one(v);
    n = mg_schema__double_format(v, pos);
    m = mg_schema__double_format(-v, neg);
    if (m != n + 1 || neg[0] != '-' || strcmp(neg + 1, pos) != 0)
        fail_msg("%a: \"%s\", negated \"%s\"", v, pos, neg);
    checks++;
}

/* check_around checks v and its n neighbours on each side. */
static void
check_around(double v, int n)
{
    double lo = v, hi = v;
    int i;

    check_both(v);
    for (i = 0; i < n; i++) {
        lo = nextafter(lo, 0.0);
        hi = nextafter(hi, INFINITY);
        check_both(lo);
        check_both(hi);
    }
}

/* ------------------------------------------------------------------------
 * The table of powers of ten, checked with exact big integers
 * ------------------------------------------------------------------------ */

#define BIG_LIMBS 72 /* 2304 bits: 10^324 * 2^128 and 2^1100 fit */

typedef struct {
    uint32_t limb[BIG_LIMBS]; /* little-endian */
} big_t;

static void
big_set(big_t *b, uint64_t hi, uint64_t lo)
{
    memset(b, 0, sizeof(*b));
    b->limb[0] = (uint32_t)lo;
    b->limb[1] = (uint32_t)(lo >> 32);
    b->limb[2] = (uint32_t)hi;
    b->limb[3] = (uint32_t)(hi >> 32);
}

/* big_mul_small multiplies b by m (< 2^32), n times; fails on overflow. */
static void
big_mul_small(big_t *b, uint32_t m, int n)
{
    int i, j;

    for (j = 0; j < n; j++) {
        uint64_t carry = 0;

        for (i = 0; i < BIG_LIMBS; i++) {
            uint64_t t = (uint64_t)b->limb[i] * m + carry;

            b->limb[i] = (uint32_t)t;
            carry = t >> 32;
        }
        assert_true(carry == 0);
    }
}

static int
big_cmp(const big_t *a, const big_t *b)
{
    int i;

    for (i = BIG_LIMBS - 1; i >= 0; i--)
        if (a->limb[i] != b->limb[i])
            return a->limb[i] < b->limb[i] ? -1 : 1;
    return 0;
}

/*
 * Every entry is ceil(10^e / 2^r) with r = floor(log2(10^e)) - 127, in
 * [2^127, 2^128), exact exactly for 0 <= e <= 55: compared as
 * G * 2^max(r,0) * 10^max(-e,0) against 10^max(e,0) * 2^max(-r,0).
 */
static void
test_pow10_table(void **state)
{
    int e;

    for (e = MG_SCHEMA_POW10_MIN; e <= MG_SCHEMA_POW10_MAX; e++) {
        const uint64_t *g = MG_SCHEMA_POW10[e - MG_SCHEMA_POW10_MIN];
        int r = ((e * 1741647) >> 19) - 127;
        big_t lhs, lhs1, rhs;
        int c;

        assert_true(g[0] >> 63 == 1); /* >= 2^127 */
        big_set(&lhs, g[0], g[1]);
        big_set(&lhs1, g[0] - (g[1] == 0), g[1] - 1); /* G - 1 */
        big_set(&rhs, 0, 1);
        big_mul_small(&lhs, 2, r > 0 ? r : 0);
        big_mul_small(&lhs1, 2, r > 0 ? r : 0);
        big_mul_small(&lhs, 10, e < 0 ? -e : 0);
        big_mul_small(&lhs1, 10, e < 0 ? -e : 0);
        big_mul_small(&rhs, 10, e > 0 ? e : 0);
        big_mul_small(&rhs, 2, r < 0 ? -r : 0);
        c = big_cmp(&lhs, &rhs);
        if (c < 0 || big_cmp(&lhs1, &rhs) >= 0)
            fail_msg("table entry for 10^%d is not ceil(10^e / 2^%d)", e, r);
        if ((c == 0) != (e >= 0 && e <= 55))
            fail_msg("table entry for 10^%d: exactness differs from 0 <= e <= 55", e);
    }
}

/* The formatter's floor(q * log10(2)) = (q * 78913) >> 18 for every binary exponent. */
static void
test_floor_log10_pow2(void **state)
{
    int q;

    for (q = -1074; q <= 971; q++) {
        int k = (q * 78913) >> 18;
        big_t p2, lo, hi;

        /* 10^k <= 2^q < 10^(k+1), multiplied by 10^-k or 2^-q to integers */
        big_set(&p2, 0, 1);
        big_set(&lo, 0, 1);
        big_set(&hi, 0, 1);
        if (q >= 0) {
            big_mul_small(&p2, 2, q);
            big_mul_small(&lo, 10, k);
            big_mul_small(&hi, 10, k + 1);
            if (!(big_cmp(&lo, &p2) <= 0 && big_cmp(&p2, &hi) < 0))
                fail_msg("floor(%d * log10(2)) is not %d", q, k);
        } else {
            /* 2^-q <= 10^-k and 10^(-k-1) < 2^-q */
            big_mul_small(&p2, 2, -q);
            big_mul_small(&lo, 10, -k);
            big_mul_small(&hi, 10, -k - 1);
            if (!(big_cmp(&p2, &lo) <= 0 && big_cmp(&hi, &p2) < 0))
                fail_msg("floor(%d * log10(2)) is not %d", q, k);
        }
    }
}

/* The text of the shapes at the ends of the range, built independently. */
static void
test_extreme_shapes(void **state)
{
    char got[MG_SCHEMA_DOUBLE_MAX], want[MG_SCHEMA_DOUBLE_MAX];
    size_t n;

    /* 1e300: "1", 300 zeros, ".0" */
    n = mg_schema__double_format(1e300, got);
    want[0] = '1';
    memset(want + 1, '0', 300);
    memcpy(want + 301, ".0", 3);
    assert_int_equal(n, 303);
    assert_string_equal(got, want);
    /* DBL_MAX: its 17 shortest digits, then 292 zeros */
    n = mg_schema__double_format(-DBL_MAX, got);
    memcpy(want, "-17976931348623157", 18);
    memset(want + 18, '0', 292);
    memcpy(want + 310, ".0", 3);
    assert_int_equal(n, 312);
    assert_string_equal(got, want);
    /* DBL_MIN = 2.2250738585072014e-308: "0.", 307 zeros, 17 digits */
    n = mg_schema__double_format(DBL_MIN, got);
    memcpy(want, "0.", 2);
    memset(want + 2, '0', 307);
    memcpy(want + 309, "22250738585072014", 18);
    assert_int_equal(n, 326);
    assert_string_equal(got, want);
    /* DBL_TRUE_MIN: the reference prints 15 digits, 4.94065645841247e-324 */
    n = mg_schema__double_format(DBL_TRUE_MIN, got);
    memcpy(want, "0.", 2);
    memset(want + 2, '0', 323);
    memcpy(want + 325, "494065645841247", 16);
    assert_int_equal(n, 340);
    assert_string_equal(got, want);
    /* -0.0 is outside the contract (the renderer wraps it); it reads back */
    n = mg_schema__double_format(-0.0, got);
    assert_string_equal(got, "-0.0");
    assert_true(signbit(strtod(got, NULL)));
    /* small and exact forms */
    mg_schema__double_format(0.30000000000000004, got);
    assert_string_equal(got, "0.30000000000000004");
    mg_schema__double_format(-1.5e-7, got);
    assert_string_equal(got, "-0.00000015");
    mg_schema__double_format(9007199254740994.0, got); /* 2^53 + 2 */
    assert_string_equal(got, "9007199254740994.0");
    mg_schema__double_format(1e23, got); /* 1e23 is 99999999999999991611392 */
    assert_string_equal(got, "100000000000000000000000.0");
    mg_schema__double_format(123456.78901234567, got);
    assert_string_equal(got, "123456.78901234567");
    /* subnormal 3 * 2^-1074 = 1.48219693752374e-323 (15 digits, as the reference) */
    n = mg_schema__double_format(DBL_TRUE_MIN * 3, got);
    memcpy(want, "0.", 2);
    memset(want + 2, '0', 322);
    memcpy(want + 324, "148219693752374", 16);
    assert_int_equal(n, 339);
    assert_string_equal(got, want);
}

/* Boundaries: DBL_MAX/MIN/TRUE_MIN, 2^53 +- 1, every power of two and ten. */
static void
test_boundaries(void **state)
{
    char text[64];
    int i;

    checks = 0;
    check_around(DBL_MAX, 64);
    check_around(DBL_MIN, 64);
    check_around(DBL_TRUE_MIN, 64);
    check_around(9007199254740992.0, 64); /* 2^53 and 2^53 +- 1 (rounded) */
    check_around(4503599627370496.0, 16); /* 2^52 */
    check_around(1.0, 64);
    check_around(0.1, 16);
    check_around(0.5, 16);
    for (i = -1074; i <= 1023; i++)
        check_around(ldexp(1.0, i), 4);
    for (i = -323; i <= 308; i++) {
        /* 10^i as strtod reads it, and the doubles around 10^i: the digit
         * count changes there */
        snprintf(text, sizeof(text), "1e%d", i);
        check_around(strtod(text, NULL), 8);
        snprintf(text, sizeof(text), "9.999999999999999e%d", i);
        check_around(strtod(text, NULL), 8);
        snprintf(text, sizeof(text), "5e%d", i);
        check_around(strtod(text, NULL), 2);
    }
    /* every exponent at its smallest and largest significand */
    for (i = 1; i < 2047; i++) {
        check_both(from_bits((uint64_t)i << 52 | 1));
        check_both(from_bits((uint64_t)i << 52 | ((UINT64_C(1) << 52) - 1)));
    }
    print_message("boundaries: %lu values\n", checks);
}

/* Random bit patterns: every exponent (and subnormals) about equally. */
static void
test_random_bits(void **state)
{
    uint64_t s = 20261126;
    long i, n = 600000 * scale();

    checks = 0;
    for (i = 0; i < n; i++)
        check_both(from_bits(rng(&s)));
    print_message("random bits: %lu values\n", checks);
}

/*
 * Random values like the data: full-precision fractions times powers of
 * ten (what tests/tools/datagen writes), subnormals, and short decimals
 * m / 10^k (the reference's fraction-digit path).
 */
static void
test_random_values(void **state)
{
    uint64_t s = 7;
    long i, n = 120000 * scale();

    checks = 0;
    for (i = 0; i < n; i++) {
        uint64_t r = rng(&s);
        double unit = (double)(r >> 11) / 9007199254740992.0;
        int k = (int)(rng(&s) % 23);
        uint64_t m = rng(&s) >> (rng(&s) % 64);

        check_both(unit * pow(10.0, (double)(int)(r % 40) - 20));
        check_both(from_bits(r & ((UINT64_C(1) << 52) - 1))); /* subnormal */
        if (m < (UINT64_C(1) << 53))
            check_both((double)m / pow(10.0, k));
        check_both((double)(m % 1000000000) / pow(10.0, k % 10));
    }
    print_message("random values: %lu values\n", checks);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pow10_table),    cmocka_unit_test(test_floor_log10_pow2),
        cmocka_unit_test(test_extreme_shapes), cmocka_unit_test(test_boundaries),
        cmocka_unit_test(test_random_bits),    cmocka_unit_test(test_random_values),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
