/*
 * tests/mongosim/msim_decimal.c - exact numbers where Decimal128 is
 * involved: comparison of a Decimal128 with any number in decimal, as
 * mongod's compareDecimals / compareDecimalToDouble do (an integer exactly,
 * a double rounded to 34 significant digits; never through a binary type,
 * so values that differ in the 34th digit differ), and Decimal128 addition
 * and multiplication ($inc, $mul) with IEEE 754-2008 rounding to 34
 * digits, half to even. Values are held as decimal digit strings: a
 * Decimal128 as libbson prints it exactly, a double from the exact value
 * glibc prints.
 */
#include "msim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XMAXDIG 13000 /* aligned sums: 34 digits spread over the whole exponent range */

typedef struct {
    int kind; /* 0 finite, 1 infinity, 2 NaN */
    bool neg;
    char *d; /* coefficient digits, most significant first, no leading zeros ("" is 0) */
    size_t n;
    int exp; /* value = coefficient x 10^exp */
} xnum_t;

static void
xfree(xnum_t *x)
{
    free(x->d);
    x->d = NULL;
}

/* xparse reads "[-]digits[.digits][e|E[+-]digits]", "NaN", "[-]Inf[inity]". */
static void
xparse(const char *s, xnum_t *x)
{
    size_t len = strlen(s);
    const char *p = s;
    long e = 0;
    memset(x, 0, sizeof *x);
    x->d = malloc(len + 1);
    if (x->d == NULL)
        abort();
    if (*p == '-' || *p == '+')
        x->neg = *p++ == '-';
    if (strncasecmp(p, "nan", 3) == 0) {
        x->kind = 2;
        return;
    }
    if (strncasecmp(p, "inf", 3) == 0) {
        x->kind = 1;
        return;
    }
    for (; *p; p++) {
        if (*p >= '0' && *p <= '9') {
            if (x->n > 0 || *p != '0')
                x->d[x->n++] = *p;
        } else if (*p == '.') {
            const char *q = p + 1;
            while (*q >= '0' && *q <= '9')
                q++;
            e -= (long)(q - p - 1);
        } else if (*p == 'e' || *p == 'E') {
            e += strtol(p + 1, NULL, 10);
            break;
        }
    }
    x->d[x->n] = '\0';
    x->exp = (int)e;
}

static void xround(xnum_t *r);

/* xof_iter reads a number; a double becomes Decimal128(d, kRoundTo34Digits), as in mongod. */
static void
xof_iter(const bson_iter_t *it, xnum_t *x)
{
    char buf[1100];
    switch (bson_iter_type(it)) {
    case BSON_TYPE_DECIMAL128: {
        bson_decimal128_t d;
        bson_iter_decimal128(it, &d);
        bson_decimal128_to_string(&d, buf);
        break;
    }
    case BSON_TYPE_DOUBLE: {
        double v = bson_iter_double(it);
        if (isnan(v))
            snprintf(buf, sizeof buf, "NaN");
        else if (isinf(v))
            snprintf(buf, sizeof buf, "%sInf", v < 0 ? "-" : "");
        else
            snprintf(buf, sizeof buf, "%.800e", v); /* glibc prints the exact value */
        break;
    }
    case BSON_TYPE_INT32:
        snprintf(buf, sizeof buf, "%d", bson_iter_int32(it));
        break;
    case BSON_TYPE_INT64:
        snprintf(buf, sizeof buf, "%lld", (long long)bson_iter_int64(it));
        break;
    default:
        snprintf(buf, sizeof buf, "0");
    }
    xparse(buf, x);
    if (BSON_ITER_HOLDS_DOUBLE(it))
        xround(x);
}

/* xmag compares |a| and |b| of finite values. */
static int
xmag(const xnum_t *a, const xnum_t *b)
{
    size_t an = a->n, bn = b->n;
    long ta, tb;
    /* ignore trailing zeros: compare the position of the leading digit, then digits */
    while (an > 0 && a->d[an - 1] == '0')
        an--;
    while (bn > 0 && b->d[bn - 1] == '0')
        bn--;
    if (an == 0 || bn == 0)
        return an == bn ? 0 : an == 0 ? -1 : 1;
    ta = (long)a->n + a->exp;
    tb = (long)b->n + b->exp;
    if (ta != tb)
        return ta < tb ? -1 : 1;
    for (size_t i = 0; i < an || i < bn; i++) {
        char ca = i < an ? a->d[i] : '0', cb = i < bn ? b->d[i] : '0';
        if (ca != cb)
            return ca < cb ? -1 : 1;
    }
    return 0;
}

static int
xcmp(const xnum_t *a, const xnum_t *b)
{
    int m;
    bool za, zb;
    if (a->kind == 2 || b->kind == 2) /* NaN below every number, equal to NaN */
        return a->kind == b->kind ? 0 : a->kind == 2 ? -1 : 1;
    if (a->kind == 1 || b->kind == 1) {
        /* -infinity < every finite number (0 here) < +infinity */
        int va = a->kind == 1 ? (a->neg ? -1 : 1) : 0, vb = b->kind == 1 ? (b->neg ? -1 : 1) : 0;
        return va == vb ? 0 : va < vb ? -1 : 1;
    }
    za = strspn(a->d, "0") == a->n;
    zb = strspn(b->d, "0") == b->n;
    if (za && zb)
        return 0;
    if ((za ? false : a->neg) != (zb ? false : b->neg))
        return (za ? false : a->neg) ? -1 : 1;
    m = xmag(a, b);
    return (!za ? a->neg : b->neg) ? -m : m;
}

int
msim_decimal_cmp(const bson_iter_t *a, const bson_iter_t *b)
{
    xnum_t x, y;
    int c;
    xof_iter(a, &x);
    xof_iter(b, &y);
    c = xcmp(&x, &y);
    xfree(&x);
    xfree(&y);
    return c < 0 ? -1 : c > 0;
}

/* ------------------------------------------------------------------------
 * Arithmetic
 * ------------------------------------------------------------------------ */

/* operand converts an operand as mongod's SafeNum does: a double to 15 significant digits. */
static void
operand(const bson_iter_t *it, xnum_t *x)
{
    if (BSON_ITER_HOLDS_DOUBLE(it) && isfinite(bson_iter_double(it))) {
        char buf[64];
        snprintf(buf, sizeof buf, "%.14e", bson_iter_double(it));
        xparse(buf, x);
        return;
    }
    xof_iter(it, x);
}

/* digits_add / digits_sub work on equal-length digit strings (a >= b for sub). */
static void
digits_add(const char *a, const char *b, size_t n, char *out /* n + 1 */)
{
    int carry = 0;
    for (size_t i = n; i-- > 0;) {
        int s = (a[i] - '0') + (b[i] - '0') + carry;
        out[i + 1] = (char)('0' + s % 10);
        carry = s / 10;
    }
    out[0] = (char)('0' + carry);
}

static void
digits_sub(const char *a, const char *b, size_t n, char *out)
{
    int borrow = 0;
    for (size_t i = n; i-- > 0;) {
        int s = (a[i] - '0') - (b[i] - '0') - borrow;
        borrow = s < 0;
        out[i] = (char)('0' + (s + 10) % 10);
    }
}

/* padded writes x's coefficient with (x->exp - e) zeros appended, left-padded to width. */
static char *
padded(const xnum_t *x, int e, size_t width)
{
    size_t z = (size_t)(x->exp - e), len = x->n + z;
    char *s = malloc(width + 1);
    if (s == NULL)
        abort();
    memset(s, '0', width);
    memcpy(s + (width - len), x->d, x->n);
    s[width] = '\0';
    return s;
}

static void
set_digits(xnum_t *r, const char *s, size_t len)
{
    size_t lead = 0;
    while (lead < len && s[lead] == '0')
        lead++;
    free(r->d);
    r->d = malloc(len - lead + 1);
    if (r->d == NULL)
        abort();
    memcpy(r->d, s + lead, len - lead);
    r->n = len - lead;
    r->d[r->n] = '\0';
}

static void
xadd(const xnum_t *a, const xnum_t *b, xnum_t *r)
{
    int e = a->exp < b->exp ? a->exp : b->exp;
    size_t la = a->n + (size_t)(a->exp - e), lb = b->n + (size_t)(b->exp - e);
    size_t w = (la > lb ? la : lb) + 1;
    char *pa = padded(a, e, w), *pb = padded(b, e, w), *out = malloc(w + 2);
    if (out == NULL)
        abort();
    r->kind = 0;
    r->exp = e;
    if (a->neg == b->neg) {
        digits_add(pa, pb, w, out);
        set_digits(r, out, w + 1);
        r->neg = a->neg;
    } else {
        int c = strcmp(pa, pb);
        if (c >= 0)
            digits_sub(pa, pb, w, out);
        else
            digits_sub(pb, pa, w, out);
        set_digits(r, out, w);
        r->neg = c == 0 ? false : c > 0 ? a->neg : b->neg; /* x + -x is +0 */
    }
    free(pa);
    free(pb);
    free(out);
}

static void
xmul(const xnum_t *a, const xnum_t *b, xnum_t *r)
{
    size_t n = a->n + b->n;
    int *acc = calloc(n + 1, sizeof *acc);
    char *out = malloc(n + 1);
    if (acc == NULL || out == NULL)
        abort();
    for (size_t i = 0; i < a->n; i++)
        for (size_t j = 0; j < b->n; j++)
            acc[i + j + 1] += (a->d[i] - '0') * (b->d[j] - '0');
    for (size_t k = n; k > 0; k--) {
        acc[k - 1] += acc[k] / 10;
        acc[k] %= 10;
    }
    for (size_t k = 0; k < n; k++)
        out[k] = (char)('0' + acc[k]);
    r->kind = 0;
    set_digits(r, out, n);
    r->exp = a->exp + b->exp;
    r->neg = a->neg != b->neg;
    free(acc);
    free(out);
}

/* drop removes k low digits, rounding half to even; returns whether a carry added a digit. */
static void
drop(xnum_t *r, size_t k)
{
    bool up = false;
    if (k == 0)
        return;
    if (k > r->n) {
        r->n = 0;
        r->d[0] = '\0';
        r->exp += (int)k;
        return;
    }
    {
        size_t keep = r->n - k;
        char first = r->d[keep];
        bool rest = strspn(r->d + keep + 1, "0") != k - 1;
        bool odd = keep > 0 && ((r->d[keep - 1] - '0') & 1);
        up = first > '5' || (first == '5' && (rest || odd));
        r->n = keep;
        r->d[keep] = '\0';
        r->exp += (int)k;
    }
    if (up) {
        size_t i = r->n;
        while (i > 0 && r->d[i - 1] == '9')
            r->d[--i] = '0';
        if (i > 0) {
            r->d[i - 1]++;
        } else {
            char *nd = malloc(r->n + 2);
            if (nd == NULL)
                abort();
            nd[0] = '1';
            memcpy(nd + 1, r->d, r->n + 1);
            free(r->d);
            r->d = nd;
            r->n++;
        }
    }
}

/* xround fits r into Decimal128: 34 digits, exponents -6176..6111. */
static void
xround(xnum_t *r)
{
    if (r->kind != 0)
        return;
    if (r->n > 34)
        drop(r, r->n - 34);
    if (r->n > 34)
        drop(r, 1);
    if (r->exp < -6176)
        drop(r, (size_t)(-6176 - r->exp));
    while (r->exp > 6111 && r->n < 34 && r->n > 0) { /* clamp: pad the coefficient */
        char *nd = realloc(r->d, r->n + 2);
        if (nd == NULL)
            abort();
        r->d = nd;
        r->d[r->n++] = '0';
        r->d[r->n] = '\0';
        r->exp--;
    }
    if (r->n == 0 && r->exp > 6111)
        r->exp = 6111;
    if (r->exp > 6111)
        r->kind = 1;
}

void
msim_decimal_arith(char op, const bson_iter_t *a, const bson_iter_t *b, bson_decimal128_t *out)
{
    xnum_t x, y, r = {0};
    char *s;
    operand(a, &x);
    operand(b, &y);
    r.d = calloc(1, 1);
    if (r.d == NULL)
        abort();
    if (x.kind == 2 || y.kind == 2) {
        r.kind = 2;
    } else if (x.kind == 1 || y.kind == 1) {
        bool xz = x.kind == 0 && x.n == 0, yz = y.kind == 0 && y.n == 0;
        if (op == '*') {
            r.kind = xz || yz ? 2 : 1; /* infinity times zero is NaN */
            r.neg = x.neg != y.neg;
        } else if (x.kind == 1 && y.kind == 1 && x.neg != y.neg) {
            r.kind = 2;
        } else {
            r.kind = 1;
            r.neg = x.kind == 1 ? x.neg : y.neg;
        }
    } else if (op == '*') {
        xmul(&x, &y, &r);
    } else {
        xadd(&x, &y, &r);
    }
    xround(&r);
    if (r.kind == 2)
        s = bson_strdup("NaN");
    else if (r.kind == 1)
        s = bson_strdup(r.neg ? "-Infinity" : "Infinity");
    else
        s = bson_strdup_printf("%s%sE%d", r.neg ? "-" : "", r.n ? r.d : "0", r.exp);
    if (!bson_decimal128_from_string(s, out))
        bson_decimal128_from_string("NaN", out);
    bson_free(s);
    xfree(&x);
    xfree(&y);
    xfree(&r);
}
