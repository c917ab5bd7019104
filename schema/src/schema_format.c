/*
 * schema/src/schema_format.c - number (shortest round-trip doubles),
 * Decimal128 and date helpers of the type mapping, and the table of wrapper
 * key sets. (Base64 and UTF-8 are core's: mg_base64_*, mg_utf8_*.)
 */
#include "schema_internal.h"
#include "schema_double.h"
#include "schema_pow10.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char mg_schema__hex[16] = "0123456789abcdef";

/* ------------------------------------------------------------------------
 * Wrapper key sets
 * ------------------------------------------------------------------------ */

typedef struct {
    const char *k1;
    const char *k2; /* NULL: single-key wrapper */
    mg_schema_wrap_t kind;
} wrap_entry_t;

static const wrap_entry_t wrap_table[] = {
    {"$oid", NULL, MG_SCHEMA_WRAP_OID},
    {"$symbol", NULL, MG_SCHEMA_WRAP_SYMBOL},
    {"$numberInt", NULL, MG_SCHEMA_WRAP_INT32},
    {"$numberLong", NULL, MG_SCHEMA_WRAP_INT64},
    {"$numberDouble", NULL, MG_SCHEMA_WRAP_DOUBLE},
    {"$numberDecimal", NULL, MG_SCHEMA_WRAP_DECIMAL},
    {"$binary", NULL, MG_SCHEMA_WRAP_BINARY},
    {"$code", NULL, MG_SCHEMA_WRAP_CODE},
    {"$code", "$scope", MG_SCHEMA_WRAP_CODE_SCOPE},
    {"$timestamp", NULL, MG_SCHEMA_WRAP_TIMESTAMP},
    {"$regularExpression", NULL, MG_SCHEMA_WRAP_REGEX},
    {"$dbPointer", NULL, MG_SCHEMA_WRAP_DBPOINTER},
    {"$date", NULL, MG_SCHEMA_WRAP_DATE},
    {"$minKey", NULL, MG_SCHEMA_WRAP_MINKEY},
    {"$maxKey", NULL, MG_SCHEMA_WRAP_MAXKEY},
    {"$undefined", NULL, MG_SCHEMA_WRAP_UNDEFINED},
    {"$stringBase64", NULL, MG_SCHEMA_WRAP_STRING_BASE64},
    {"$literal", NULL, MG_SCHEMA_WRAP_LITERAL},
    {MG_SCHEMA_FIELD_PAIRS, NULL, MG_SCHEMA_WRAP_FIELD_PAIRS},
};

/* key_is returns true when the key of length len equals the literal lit. */
static bool
key_is(const char *key, size_t len, const char *lit)
{
    return strlen(lit) == len && memcmp(key, lit, len) == 0;
}

mg_schema_wrap_t
mg_schema__wrap_kind(const char *k1, size_t l1, const char *k2, size_t l2)
{
    size_t i;

    if (l1 < 2 || k1[0] != '$')
        return MG_SCHEMA_WRAP_NONE;
    if (k2 != NULL && (l2 < 2 || k2[0] != '$'))
        return MG_SCHEMA_WRAP_NONE;
    for (i = 0; i < sizeof(wrap_table) / sizeof(wrap_table[0]); i++) {
        const wrap_entry_t *w = &wrap_table[i];

        if (k2 == NULL) {
            if (w->k2 == NULL && key_is(k1, l1, w->k1))
                return w->kind;
        } else if (w->k2 != NULL) {
            if ((key_is(k1, l1, w->k1) && key_is(k2, l2, w->k2)) ||
                (key_is(k1, l1, w->k2) && key_is(k2, l2, w->k1)))
                return w->kind;
        }
    }
    return MG_SCHEMA_WRAP_NONE;
}

bool
mg_schema__doc_is_reserved(const bson_iter_t *doc_iter)
{
    bson_iter_t it = *doc_iter;
    const char *k1 = NULL, *k2 = NULL;
    size_t l1 = 0, l2 = 0;

    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        size_t len = strlen(key);

        if (key[0] != '$')
            return false;
        if (k1 == NULL) {
            k1 = key;
            l1 = len;
        } else if (len == l1 && memcmp(key, k1, len) == 0) {
            continue;
        } else if (k2 == NULL) {
            k2 = key;
            l2 = len;
        } else if (len == l2 && memcmp(key, k2, len) == 0) {
            continue;
        } else {
            return false; /* three distinct keys: no wrapper has that many */
        }
    }
    if (k1 == NULL)
        return false;
    return mg_schema__wrap_kind(k1, l1, k2, l2) != MG_SCHEMA_WRAP_NONE;
}

/* ------------------------------------------------------------------------
 * Integers
 * ------------------------------------------------------------------------ */

static const char digit_pairs[201] = "00010203040506070809"
                                     "10111213141516171819"
                                     "20212223242526272829"
                                     "30313233343536373839"
                                     "40414243444546474849"
                                     "50515253545556575859"
                                     "60616263646566676869"
                                     "70717273747576777879"
                                     "80818283848586878889"
                                     "90919293949596979899";

size_t
mg_schema__u64_format(uint64_t v, char *out)
{
    char tmp[24];
    char *p = tmp + sizeof(tmp);
    size_t n;

    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);

        v /= 100;
        p -= 2;
        p[0] = digit_pairs[2 * r];
        p[1] = digit_pairs[2 * r + 1];
    }
    if (v >= 10) {
        p -= 2;
        p[0] = digit_pairs[2 * v];
        p[1] = digit_pairs[2 * v + 1];
    } else {
        *--p = (char)('0' + v);
    }
    n = (size_t)(tmp + sizeof(tmp) - p);
    memcpy(out, p, n);
    return n;
}

size_t
mg_schema__i64_format(int64_t v, char *out)
{
    if (v < 0) {
        out[0] = '-';
        /* unsigned negation is defined for INT64_MIN too */
        return 1 + mg_schema__u64_format(0u - (uint64_t)v, out + 1);
    }
    return mg_schema__u64_format((uint64_t)v, out);
}

/* ------------------------------------------------------------------------
 * Doubles
 *
 * mg_schema__double_format finds the shortest decimal that reads back with
 * the Schubfach method (R. Giulietti, "The Schubfach way to render
 * doubles", 2020), written here from the paper. For v = c * 2^q (c the
 * 53-bit significand) it picks k = floor(log10(2^q)), so that the interval
 * of the decimals that read back as v, [v - 2^(q-1), v + 2^(q-1)], is at
 * least 10^k wide (it holds one or two multiples of 10^k) and narrower
 * than 10^(k+1) (it holds at most one multiple of 10^(k+1)). The bounds and
 * v, times 4 * 10^-k, are computed with a 128-bit power of ten rounded to
 * odd (the integer part, its lowest bit set when a fraction is left): that
 * keeps every comparison with an even integer (4 * a multiple of 10^k)
 * exact. The result is the multiple of 10^(k+1) in the interval if there is
 * one, else the multiple of 10^k in it nearest to v (ties to even).
 *
 * That is the text the reference below prints, digit for digit: a decimal
 * of at most 15 significant digits that reads back is the only one (DBL_DIG
 * is 15), so "%.15e" prints it; a longer one is the nearest of its length,
 * which is what "%.16e"/"%.17e" print. Two cases are left to the reference
 * to keep its digits: subnormals (their precision is below 15 digits, and
 * the reference prints 15 anyway) and significands that are powers of two
 * (the lower neighbour is twice as close, the interval is lopsided and the
 * nearest 16 digits may not read back where other 16 digits would). The
 * reference's fast path (m / 10^k for up to 22 fraction digits) gives the
 * same digits too: its m is the nearest whenever it reads back (checked by
 * test_double_format). x must be finite; -0.0 is written "-0.0" (the
 * reference wrote "0.0"; the renderer wraps -0.0 before calling either).
 * ------------------------------------------------------------------------ */

static const double pow10_table[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#define TWO_POW_53 9007199254740992.0

/* Digits of a double: at most 17 significant ones, exponents within +-350. */
#define EXP10_LIMIT 350

/*
 * place_point writes the digit string digits[0..nd) times 10^-frac (frac >=
 * 1) as "int.frac" into out; returns the length.
 */
static size_t
place_point(const char *digits, size_t nd, size_t frac, char *out)
{
    char *p = out;

    if (nd <= frac) {
        *p++ = '0';
        *p++ = '.';
        memset(p, '0', frac - nd);
        p += frac - nd;
        memcpy(p, digits, nd);
        p += nd;
    } else {
        memcpy(p, digits, nd - frac);
        p += nd - frac;
        *p++ = '.';
        memcpy(p, digits + nd - frac, frac);
        p += frac;
    }
    *p = '\0';
    return (size_t)(p - out);
}

/* Bytes place_digits may read from its digits. */
#define DIGITS_ROOM 48

/*
 * place_digits writes d.ddd * 10^exp10 (digits[0..nd), 1 <= nd <= 17, no
 * trailing zero unless nd is 1; |exp10| <= EXP10_LIMIT) in plain notation
 * into out: "ddd000.0", "dd.ddd" or "0.000ddd". Returns the length (out is
 * NUL-terminated). It copies the digits 17 at a time (fixed sizes the
 * compiler inlines): digits must have DIGITS_ROOM readable bytes and out
 * room for the text plus 17 bytes (MG_SCHEMA_DOUBLE_MAX has it).
 */
static size_t
place_digits(const char *digits, size_t nd, int exp10, char *out)
{
    char *p = out;

    /* out of range is unreachable; the clamps bound the writes for the compiler */
    if (exp10 < -EXP10_LIMIT)
        exp10 = -EXP10_LIMIT;
    if (exp10 > EXP10_LIMIT)
        exp10 = EXP10_LIMIT;
    if (nd > 17)
        nd = 17;
    if (exp10 < 0) {
        size_t zeros = (size_t)(-exp10 - 1);

        *p++ = '0';
        *p++ = '.';
        memset(p, '0', zeros);
        p += zeros;
        memcpy(p, digits, 17);
        p += nd;
    } else if ((size_t)exp10 + 1 >= nd) {
        size_t int_digits = (size_t)exp10 + 1;

        memcpy(p, digits, 17);
        memset(p + nd, '0', int_digits - nd);
        p += int_digits;
        *p++ = '.';
        *p++ = '0';
    } else {
        size_t int_digits = (size_t)exp10 + 1; /* < nd <= 17 */

        memcpy(p, digits, 17);
        p[int_digits] = '.';
        memcpy(p + int_digits + 1, digits + int_digits, 17);
        p += nd + 1;
    }
    *p = '\0';
    return (size_t)(p - out);
}

/*
 * format_slow finds the shortest of 15, 16 or 17 significant digits that
 * reads back as a (> 0) and writes it in plain notation into out.
 */
static size_t
format_slow(double a, char *out)
{
    char sci[40];
    char digits[DIGITS_ROOM] = {0};
    size_t nd = 0;
    int prec;
    char *e;

    for (prec = 15; prec <= 17; prec++) {
        snprintf(sci, sizeof(sci), "%.*e", prec - 1, a);
        if (prec == 17 || strtod(sci, NULL) == a)
            break;
    }
    /* sci is "d.ddddde[+-]XX": collect the digits, then the exponent */
    for (e = sci; *e != 'e'; e++)
        if (*e >= '0' && *e <= '9')
            digits[nd++] = *e;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    return place_digits(digits, nd, atoi(e + 1), out);
}

size_t
mg_schema__double_format_reference(double x, char *out)
{
    char digits[24];
    size_t n = 0, nd, k;
    double a = fabs(x);

    if (x < 0)
        out[n++] = '-';
    if (a < TWO_POW_53 && a == floor(a)) {
        n += mg_schema__u64_format((uint64_t)a, out + n);
        memcpy(out + n, ".0", 3);
        return n + 2;
    }
    /* Fewest fraction digits k such that m / 10^k reads back as a: m and
     * 10^k are exact doubles, so the division rounds exactly like strtod
     * reading the decimal text. */
    for (k = 1; k <= 22; k++) {
        double scaled = a * pow10_table[k];
        double m;

        if (scaled >= TWO_POW_53)
            break;
        m = nearbyint(scaled);
        if (m / pow10_table[k] == a) {
            nd = mg_schema__u64_format((uint64_t)m, digits);
            return n + place_point(digits, nd, k, out + n);
        }
    }
    return n + format_slow(a, out + n);
}

__extension__ typedef unsigned __int128 u128_t;

/*
 * scale_odd computes (x << shift) * g / 2^128 rounded to odd into *out,
 * where g is a table entry for 10^-k (exact: g is 10^-k * 2^-r exactly,
 * else rounded up by less than 1). x < 2^55 and shift <= 4, so the rounding
 * of g adds less than 2^-69 to the quotient: a fraction of 2^-64 or more
 * is really there. Below that the quotient may be an exact integer, which
 * happens only for k in 1..23 when 5^k divides x (x * 2^q with q >= k is a
 * multiple of 2^k); otherwise it returns false and the caller asks the
 * reference (none of test_double_format's values takes that path).
 */
static bool
scale_odd(uint64_t x, unsigned shift, const uint64_t g[2], bool exact, int k, uint64_t *out)
{
    u128_t lo = (u128_t)(x << shift) * g[1];
    u128_t top = (u128_t)(x << shift) * g[0] + (uint64_t)(lo >> 64);
    uint64_t ip = (uint64_t)(top >> 64), f1 = (uint64_t)top, f0 = (uint64_t)lo;

    if (!exact && f1 == 0) {
        uint64_t p5 = 1;
        int i;

        if (k < 1 || k > 23)
            return false;
        for (i = 0; i < k; i++)
            p5 *= 5;
        if (x % p5 != 0)
            return false;
        *out = ip; /* an integer: g's excess is all the fraction there is */
        return true;
    }
    *out = ip | ((f1 | f0) != 0);
    return true;
}

/* put8 writes v (< 10^8) as exactly 8 digits. */
static void
put8(uint32_t v, char *out)
{
    uint32_t hi = v / 10000, lo = v % 10000;

    memcpy(out, digit_pairs + 2 * (hi / 100), 2);
    memcpy(out + 2, digit_pairs + 2 * (hi % 100), 2);
    memcpy(out + 4, digit_pairs + 2 * (lo / 100), 2);
    memcpy(out + 6, digit_pairs + 2 * (lo % 100), 2);
}

/*
 * put_digits writes f (1 <= f < 10^17, nd digits) in decimal into buf
 * (DIGITS_ROOM bytes) and returns where its digits start. Three
 * independent groups of 8 are quicker than one division chain.
 */
static const char *
put_digits(uint64_t f, size_t nd, char *buf)
{
    uint64_t hi = f / 100000000;

    buf[0] = (char)('0' + hi / 100000000);
    put8((uint32_t)(hi % 100000000), buf + 1);
    put8((uint32_t)(f % 100000000), buf + 9);
    memset(buf + 17, '0', DIGITS_ROOM - 17); /* what place_digits copies along */
    return buf + 17 - nd;
}

/*
 * zeros8 returns the number of trailing decimal zeros of v (0 < v < 10^8):
 * seven independent tests, quicker than a chain of divisions.
 */
static size_t
zeros8(uint32_t v)
{
    return (size_t)(v % 10 == 0) + (v % 100 == 0) + (v % 1000 == 0) + (v % 10000 == 0) +
           (v % 100000 == 0) + (v % 1000000 == 0) + (v % 10000000 == 0);
}

/* trailing_zeros returns the number of trailing decimal zeros of f (0 < f < 10^16). */
static size_t
trailing_zeros(uint64_t f)
{
    uint32_t lo = (uint32_t)(f % 100000000);

    if (lo != 0)
        return zeros8(lo);
    return 8 + zeros8((uint32_t)(f / 100000000 % 100000000));
}

size_t
mg_schema__double_format(double x, char *out)
{
    char digits[DIGITS_ROOM];
    const char *p;
    const uint64_t *g;
    uint64_t bits, c, vb, vbl, vbr, s, sp, f, excl;
    int q, k, e;
    unsigned h;
    bool exact;
    size_t n = 0, nd, zeros;
    bool lo_in, hi_in;

    memcpy(&bits, &x, sizeof(bits));
    if (bits >> 63)
        out[n++] = '-';
    c = bits & ((UINT64_C(1) << 52) - 1);
    q = (int)(bits >> 52 & 0x7ff);
    if (q >= 1023 && q <= 1075) {
        unsigned frac_bits = (unsigned)(1075 - q); /* 1 <= |x| < 2^53: an integer? */

        c |= UINT64_C(1) << 52;
        if ((c & ((UINT64_C(1) << frac_bits) - 1)) == 0) {
            n += mg_schema__u64_format(c >> frac_bits, out + n);
            memcpy(out + n, ".0", 3);
            return n + 2;
        }
    } else if (q == 0 && c == 0) {
        memcpy(out + n, "0.0", 4);
        return n + 3;
    } else if (q == 0 || c == 0) {
        /* subnormal, or a power of two (see above) */
        return n + mg_schema__double_format_reference(fabs(x), out + n);
    }
    c |= UINT64_C(1) << 52;
    q -= 1075;                                     /* |x| = c * 2^q, q in -1074..971 */
    k = (q * 78913) >> 18;                         /* floor(q * log10(2)), -324..292 */
    e = -k;                                        /* scale by 10^e, -292..324 */
    h = (unsigned)(q + ((e * 1741647) >> 19) + 1); /* + floor(e * log2(10)): 1..4 */
    g = MG_SCHEMA_POW10[e - MG_SCHEMA_POW10_MIN];
    exact = e >= 0 && e <= 55;
    /* |x|, its lower and its upper bound, times 4 * 10^-k */
    if (!scale_odd(4 * c, h, g, exact, k, &vb) || !scale_odd(4 * c - 2, h, g, exact, k, &vbl) ||
        !scale_odd(4 * c + 2, h, g, exact, k, &vbr))
        return n + mg_schema__double_format_reference(fabs(x), out + n);
    excl = c & 1; /* strtod rounds a tie to even: the bounds belong to an even c */
    s = vb >> 2;  /* floor(|x| * 10^-k) */
    sp = s / 10;
    lo_in = vbl + excl <= 40 * sp;
    hi_in = 40 * sp + 40 + excl <= vbr;
    if (lo_in || hi_in) {
        /* a multiple of 10^(k+1) just below or just above |x| reads back
         * (not both: they are 10^(k+1) apart); the multiples of 10^k that
         * do (below) never end in 0 */
        f = lo_in ? sp : sp + 1;
        k++;
        nd = f >= UINT64_C(1000000000000000) ? 16 : 15;
        zeros = trailing_zeros(f);
        p = put_digits(f, nd, digits);
        k += (int)zeros;
        nd -= zeros;
    } else {
        lo_in = vbl + excl <= 4 * s;
        hi_in = 4 * s + 4 + excl <= vbr;
        if (lo_in && (!hi_in || vb < 4 * s + 2 || (vb == 4 * s + 2 && s % 2 == 0)))
            f = s; /* the one that reads back, or the nearer, or the even of a tie */
        else if (hi_in)
            f = s + 1;
        else /* unreachable: the interval holds a multiple of 10^k */
            return n + mg_schema__double_format_reference(fabs(x), out + n);
        nd = f >= UINT64_C(10000000000000000) ? 17 : 16;
        p = put_digits(f, nd, digits);
    }
    return n + place_digits(p, nd, k + (int)nd - 1, out + n);
}

/* ------------------------------------------------------------------------
 * Decimal128
 * ------------------------------------------------------------------------ */

/* 10^34 - 1, the largest canonical coefficient: its high 49 bits and low 64 bits. */
#define DEC_MAX_HIGH UINT64_C(0x1ed09bead87c0)
#define DEC_MAX_LOW  UINT64_C(0x378d8e63ffffffff)

bson_decimal128_t
mg_schema__decimal_value(const bson_decimal128_t *dec)
{
    bson_decimal128_t zero;
    uint64_t hi = dec->high, coeff_hi;
    uint64_t exp;

    if (((hi >> 59) & 0xf) == 0xf)
        return *dec; /* NaN (11111) or Infinity (11110) */
    if (((hi >> 61) & 3) == 3) {
        /* the "11" form: the coefficient is 2^113 or more, always non-canonical */
        exp = (hi >> 47) & 0x3fff;
    } else {
        coeff_hi = hi & UINT64_C(0x1ffffffffffff);
        if (coeff_hi < DEC_MAX_HIGH || (coeff_hi == DEC_MAX_HIGH && dec->low <= DEC_MAX_LOW))
            return *dec;
        exp = (hi >> 49) & 0x3fff;
    }
    /* a coefficient above 10^34 - 1 is zero (IEEE 754-2008 3.5.2): keep sign and exponent */
    zero.high = (hi & (UINT64_C(1) << 63)) | exp << 49;
    zero.low = 0;
    return zero;
}

void
mg_schema__decimal_text(const bson_decimal128_t *dec, char text[BSON_DECIMAL128_STRING])
{
    bson_decimal128_t value = mg_schema__decimal_value(dec);

    bson_decimal128_to_string(&value, text);
}

/* ------------------------------------------------------------------------
 * Dates: proleptic Gregorian calendar, days relative to 1970-01-01.
 * ------------------------------------------------------------------------ */

/* civil_from_days converts days since the epoch to year, month, day. */
static void
civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    int64_t era, yoe, doe, doy, mp;

    z += 719468;
    era = (z >= 0 ? z : z - 146096) / 146097;
    doe = z - era * 146097;
    yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    mp = (5 * doy + 2) / 153;
    *d = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *m = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

/* days_from_civil converts year, month (1..12), day to days since the epoch. */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* put2 writes v (0..99) as two digits. */
static void
put2(char *out, unsigned v)
{
    out[0] = digit_pairs[2 * v];
    out[1] = digit_pairs[2 * v + 1];
}

void
mg_schema__date_format(int64_t ms, char *out)
{
    int64_t days = ms / 86400000, y;
    unsigned rem = (unsigned)(ms % 86400000), m, d;

    civil_from_days(days, &y, &m, &d);
    put2(out, (unsigned)(y / 100));
    put2(out + 2, (unsigned)(y % 100));
    out[4] = '-';
    put2(out + 5, m);
    out[7] = '-';
    put2(out + 8, d);
    out[10] = 'T';
    put2(out + 11, rem / 3600000);
    out[13] = ':';
    put2(out + 14, rem / 60000 % 60);
    out[16] = ':';
    put2(out + 17, rem / 1000 % 60);
    out[19] = '.';
    out[20] = (char)('0' + rem % 1000 / 100);
    put2(out + 21, rem % 100);
    out[23] = 'Z';
}

/* digits_at reads n decimal digits at s into *v; false on a non-digit. */
static bool
digits_at(const char *s, size_t n, unsigned *v)
{
    size_t i;

    *v = 0;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        *v = *v * 10 + (unsigned)(s[i] - '0');
    }
    return true;
}

bool
mg_schema__date_parse(const char *s, size_t len, int64_t *ms)
{
    static const unsigned mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned y, mo, d, h, mi, sec, frac = 0, dim;
    size_t fl = 0;

    if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[len - 1] != 'Z')
        return false;
    if (!digits_at(s, 4, &y) || !digits_at(s + 5, 2, &mo) || !digits_at(s + 8, 2, &d) ||
        !digits_at(s + 11, 2, &h) || !digits_at(s + 14, 2, &mi) || !digits_at(s + 17, 2, &sec))
        return false;
    if (len > 20) {
        fl = len - 21; /* digits between '.' and 'Z' */
        if (s[19] != '.' || fl < 1 || fl > 3 || !digits_at(s + 20, fl, &frac))
            return false;
        while (fl++ < 3)
            frac *= 10;
    }
    if (mo < 1 || mo > 12 || h > 23 || mi > 59 || sec > 59)
        return false;
    dim = mdays[mo - 1] + (mo == 2 && (y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
    if (d < 1 || d > dim)
        return false;
    *ms = days_from_civil(y, mo, d) * 86400000 + (int64_t)h * 3600000 + (int64_t)mi * 60000 +
          (int64_t)sec * 1000 + frac;
    return true;
}

/* ------------------------------------------------------------------------
 * Raw elements
 * ------------------------------------------------------------------------ */

bool
mg_schema__append_raw(bson_t *dst, bson_type_t type, const char *key, size_t klen,
                      const uint8_t *payload, size_t plen)
{
    size_t total = 4 + 1 + klen + 1 + plen + 1;
    uint8_t *buf;
    uint32_t le;
    bson_t tmp;
    bool ok;

    if (total > INT32_MAX)
        return false;
    buf = malloc(total);
    if (buf == NULL)
        return false;
    le = BSON_UINT32_TO_LE((uint32_t)total);
    memcpy(buf, &le, 4);
    buf[4] = (uint8_t)type;
    memcpy(buf + 5, key, klen);
    buf[5 + klen] = 0;
    if (plen > 0)
        memcpy(buf + 6 + klen, payload, plen);
    buf[total - 1] = 0;
    ok = bson_init_static(&tmp, buf, total) && bson_concat(dst, &tmp);
    free(buf);
    return ok;
}
