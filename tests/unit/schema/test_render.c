/*
 * tests/unit/schema/test_render.c - the renderer's edge cases as specified in
 * docs/type-mapping.md: doubles (NaN, +/-Infinity, -0.0, integral, huge,
 * tiny, shortest digits), strings needing escapes, NUL and invalid UTF-8,
 * wrapper-like documents, dates on both sides of the ISO range, facts, the
 * buffer cap, corrupt BSON and error paths.
 */
#include "schema_test_util.h"

#include <math.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

/* expect_render renders doc and compares the text. */
static void
expect_render(const bson_t *doc, mg_schema_fidelity_t fidelity, const char *want)
{
    mg_error_t error;
    char *got = render_text(doc, fidelity, NULL, &error);

    if (got == NULL)
        fail_msg("render failed: %s", error.message);
    if (strcmp(got, want) != 0)
        fail_msg("render:\n want %s\n got  %s", want, got);
    free(got);
}

/* render_double renders {"d": v} in relaxed mode into out. */
static void
render_double(double v, char *out, size_t outsz)
{
    bson_t doc = BSON_INITIALIZER;
    mg_error_t error;
    char *got;

    bson_append_double(&doc, "d", 1, v);
    got = render_text(&doc, MG_SCHEMA_FIDELITY_RELAXED, NULL, &error);
    assert_non_null(got);
    snprintf(out, outsz, "%s", got);
    free(got);
    bson_destroy(&doc);
}

static void
test_double_forms(void **state)
{
    static const struct {
        double v;
        const char *want;
    } cases[] = {
        {1.0, "{\"d\":1.0}"},
        {-2.0, "{\"d\":-2.0}"},
        {0.0, "{\"d\":0.0}"},
        {0.1, "{\"d\":0.1}"},
        {3.14, "{\"d\":3.14}"},
        {-1234.5678, "{\"d\":-1234.5678}"},
        {0.30000000000000004, "{\"d\":0.30000000000000004}"},
        {1e21, "{\"d\":1000000000000000000000.0}"},
        {1.5e-7, "{\"d\":0.00000015}"},
        {9007199254740993.0, "{\"d\":9007199254740992.0}"}, /* the double nearest */
        {123456789012.25, "{\"d\":123456789012.25}"},
    };
    char got[512];
    size_t i;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        render_double(cases[i].v, got, sizeof(got));
        assert_string_equal(got, cases[i].want);
    }
}

static void
test_double_special_wrapped(void **state)
{
    bson_t doc = BSON_INITIALIZER;
    uint64_t payload_bits = UINT64_C(0x7ff8000000000012);
    double payload;
    mg_error_t error;
    uint32_t facts = 0;
    char *got;

    memcpy(&payload, &payload_bits, sizeof(payload));
    bson_append_double(&doc, "n", 1, NAN);
    bson_append_double(&doc, "p", 1, INFINITY);
    bson_append_double(&doc, "m", 1, -INFINITY);
    bson_append_double(&doc, "z", 1, -0.0);
    bson_append_double(&doc, "q", 1, payload);
    expect_render(&doc, MG_SCHEMA_FIDELITY_RELAXED,
                  "{\"n\":{\"$numberDouble\":\"NaN\"},\"p\":{\"$numberDouble\":\"Infinity\"},"
                  "\"m\":{\"$numberDouble\":\"-Infinity\"},\"z\":{\"$numberDouble\":\"-0.0\"},"
                  "\"q\":{\"$numberDouble\":\"NaN\"}}");
    /* exact mode keeps the payload */
    expect_render(&doc, MG_SCHEMA_FIDELITY_EXACT,
                  "{\"n\":{\"$numberDouble\":\"NaN\"},\"p\":{\"$numberDouble\":\"Infinity\"},"
                  "\"m\":{\"$numberDouble\":\"-Infinity\"},\"z\":{\"$numberDouble\":\"-0.0\"},"
                  "\"q\":{\"$numberDouble\":\"bits:7ff8000000000012\"}}");
    got = render_text(&doc, MG_SCHEMA_FIDELITY_RELAXED, &facts, &error);
    assert_non_null(got);
    assert_true(facts & MG_SCHEMA_FACT_NAN_INF);
    assert_true(facts & MG_SCHEMA_FACT_NEGATIVE_ZERO);
    free(got);
    bson_destroy(&doc);
}

/* Random doubles: plain notation, a '.', no exponent, read back exactly. */
static void
test_double_random_round_trip(void **state)
{
    uint64_t s = 12345;
    char got[512];
    int i;

    for (i = 0; i < 200000; i++) {
        uint64_t bits;
        double v, back;
        char *num, *end;

        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        bits = s;
        if (i % 3 == 0) /* also plenty of "human" values */
            v = (double)(int64_t)(s % 2000000) / (double)(1 + s % 1000);
        else
            memcpy(&v, &bits, sizeof(v));
        if (!isfinite(v) || (v == 0.0 && signbit(v)))
            continue;
        render_double(v, got, sizeof(got));
        num = got + 5; /* after {"d": */
        got[strlen(got) - 1] = '\0';
        if (strchr(num, '.') == NULL || strpbrk(num, "eE") != NULL)
            fail_msg("%.17g rendered as %s", v, num);
        back = strtod(num, &end);
        if (back != v || *end != '\0')
            fail_msg("%.17g rendered as %s reads back as %.17g", v, num, back);
    }
}

static void
test_integers_and_exact(void **state)
{
    bson_t doc = BSON_INITIALIZER;

    bson_append_int32(&doc, "i", 1, -2147483647 - 1);
    bson_append_int64(&doc, "l", 1, INT64_MAX);
    bson_append_int64(&doc, "s", 1, 7);
    expect_render(&doc, MG_SCHEMA_FIDELITY_RELAXED,
                  "{\"i\":-2147483648,\"l\":9223372036854775807,\"s\":7}");
    expect_render(&doc, MG_SCHEMA_FIDELITY_EXACT,
                  "{\"i\":{\"$numberInt\":\"-2147483648\"},\"l\":{\"$numberLong\":"
                  "\"9223372036854775807\"},\"s\":{\"$numberLong\":\"7\"}}");
    bson_destroy(&doc);
}

/* dec_parts builds the Decimal128 sign x coefficient (high 49 bits, low 64) x 10^exp. */
static bson_decimal128_t
dec_parts(bool neg, uint64_t coeff_hi, uint64_t coeff_lo, int exp)
{
    bson_decimal128_t d;

    d.high = (neg ? UINT64_C(1) << 63 : 0) | (uint64_t)(exp + 6176) << 49 | coeff_hi;
    d.low = coeff_lo;
    return d;
}

/*
 * test_decimal_noncanonical: a coefficient above 10^34 - 1 is zero (IEEE
 * 754-2008, the BSON Decimal128 spec, docs/type-mapping.md), whatever
 * libbson's printer makes of it: relaxed writes the zero's text (never the
 * 35 digits, which read back as 1E+34, and never bits:), exact the bits, and
 * the relaxed trip ends where the relaxed canonical form says.
 */
static void
test_decimal_noncanonical(void **state)
{
    static const struct {
        bool neg;
        uint64_t hi, lo; /* coefficient */
        int exp;
        const char *relaxed;
    } cases[] = {
        /* 10^34: the randomized test's decimal-noncanonical */
        {false, UINT64_C(0x1ed09bead87c0), UINT64_C(0x378d8e6400000000), 0, "0"},
        /* 2^113 - 1, the largest coefficient of the usual form */
        {true, UINT64_C(0x1ffffffffffff), UINT64_MAX, -20, "-0E-20"},
        {false, UINT64_C(0x1ed09bead87c0), UINT64_C(0x378d8e6400000001), 3, "0E+3"},
        /* 10^34 - 1 is canonical and stays */
        {false, UINT64_C(0x1ed09bead87c0), UINT64_C(0x378d8e63ffffffff), 0,
         "9999999999999999999999999999999999"},
    };
    char want[256], text[BSON_DECIMAL128_STRING];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bson_decimal128_t d = dec_parts(cases[i].neg, cases[i].hi, cases[i].lo, cases[i].exp);
        bson_t doc = BSON_INITIALIZER;
        mg_error_t error;
        bson_t *back, *canon;

        bson_append_decimal128(&doc, "d", 1, &d);
        snprintf(want, sizeof(want), "{\"d\":{\"$numberDecimal\":\"%s\"}}", cases[i].relaxed);
        expect_render(&doc, MG_SCHEMA_FIDELITY_RELAXED, want);
        if (i < 3) {
            snprintf(want, sizeof(want), "{\"d\":{\"$numberDecimal\":\"bits:%016llx%016llx\"}}",
                     (unsigned long long)d.high, (unsigned long long)d.low);
            expect_render(&doc, MG_SCHEMA_FIDELITY_EXACT, want);
        }
        back = round_trip(&doc, MG_SCHEMA_FIDELITY_RELAXED, &error);
        assert_non_null(back);
        canon = mg_schema_doc_canonicalize(&doc, MG_SCHEMA_FIDELITY_RELAXED, &error);
        assert_non_null(canon);
        assert_true(bson_same(back, canon));
        bson_destroy(back);
        bson_destroy(canon);
        bson_destroy(&doc);
    }
    /* the "11" form: coefficient 2^113 and up, zero with the exponent of bits 60..47 */
    {
        bson_decimal128_t d = {.high = UINT64_C(0x6c10000000000000) | UINT64_C(1) << 63, .low = 5};
        bson_t doc = BSON_INITIALIZER;

        bson_append_decimal128(&doc, "d", 1, &d);
        expect_render(&doc, MG_SCHEMA_FIDELITY_RELAXED, "{\"d\":{\"$numberDecimal\":\"-0\"}}");
        bson_destroy(&doc);
    }
    /* relaxed never needs bits: the text of the smallest and largest coefficient reads back
     * to the same encoding at every exponent */
    for (int e = -6176; e <= 6111; e++) {
        bson_decimal128_t forms[3] = {
            dec_parts(e & 1, 0, 0, e), dec_parts(false, 0, 1, e),
            dec_parts(true, UINT64_C(0x1ed09bead87c0), UINT64_C(0x378d8e63ffffffff), e)};
        for (int k = 0; k < 3; k++) {
            bson_decimal128_t back;
            bson_t doc = BSON_INITIALIZER;
            char *json;
            mg_error_t error;

            bson_decimal128_to_string(&forms[k], text);
            if (!bson_decimal128_from_string(text, &back) || back.high != forms[k].high ||
                back.low != forms[k].low)
                fail_msg("decimal %s (exponent %d) does not read back", text, e);
            bson_append_decimal128(&doc, "d", 1, &forms[k]);
            json = render_text(&doc, MG_SCHEMA_FIDELITY_RELAXED, NULL, &error);
            assert_non_null(json);
            assert_null(strstr(json, "bits:"));
            free(json);
            bson_destroy(&doc);
        }
    }
}

static void
test_string_escapes(void **state)
{
    bson_t doc = BSON_INITIALIZER;
    /* long enough to take the eight-byte path, with escapes at odd offsets */
    const char *s =
        "abcdefgh\"ijklmnop\\qrstuvw\nxyz\x01\x1f\x7f/caf\xc3\xa9 \xe6\x9d\xb1\xf0\x9f\x98\x80";

    bson_append_utf8(&doc, "k\"ey", -1, s, -1);
    expect_render(&doc, MG_SCHEMA_FIDELITY_RELAXED,
                  "{\"k\\\"ey\":\"abcdefgh\\\"ijklmnop\\\\qrstuvw\\nxyz\\u0001\\u001f\x7f/"
                  "caf\xc3\xa9 \xe6\x9d\xb1\xf0\x9f\x98\x80\"}");
    bson_destroy(&doc);
}

static void
test_string_nul_and_invalid_utf8(void **state)
{
    bson_t doc = BSON_INITIALIZER;
    mg_error_t error;
    uint32_t facts = 0;
    char *got;

    bson_append_utf8(&doc, "n", 1, "a\0b", 3);
    bson_append_utf8(&doc, "u", 1, "\xff\xfe", 2);
    bson_append_utf8(&doc, "s", 1, "\xed\xa0\x80", 3); /* a surrogate: PostgreSQL refuses it */
    bson_append_utf8(&doc, "o", 1, "\xc0\xaf", 2);     /* overlong */
    got = render_text(&doc, MG_SCHEMA_FIDELITY_RELAXED, &facts, &error);
    assert_non_null(got);
    assert_string_equal(got,
                        "{\"n\":{\"$stringBase64\":\"YQBi\"},\"u\":{\"$stringBase64\":\"//4=\"},"
                        "\"s\":{\"$stringBase64\":\"7aCA\"},\"o\":{\"$stringBase64\":\"wK8=\"}}");
    assert_true(facts & MG_SCHEMA_FACT_NUL_STRING);
    assert_true(facts & MG_SCHEMA_FACT_INVALID_UTF8);
    free(got);
    bson_destroy(&doc);
}

static void
test_wrapper_like_documents_escaped(void **state)
{
    bson_t *doc = BCON_NEW("a", "{", "$oid", BCON_UTF8("not-hex"), "}", /* wrapper keys */
                           "b", "{", "$ref", BCON_UTF8("c"), "$id", BCON_INT32(1), "}", /* DBRef */
                           "c", "{", "$scope", BCON_INT32(1), "$code", BCON_UTF8("x"), "}", "d",
                           "{", "$literal", "{", "x", BCON_INT32(1), "}", "}", "e", "{", "$oid",
                           BCON_INT32(1), "x", BCON_INT32(2), "}");
    mg_error_t error;
    uint32_t facts = 0;
    char *got = render_text(doc, MG_SCHEMA_FIDELITY_RELAXED, &facts, &error);
    bson_t *back;

    assert_non_null(got);
    assert_string_equal(
        got, "{\"a\":{\"$literal\":{\"$oid\":\"not-hex\"}},\"b\":{\"$ref\":\"c\",\"$id\":1},"
             "\"c\":{\"$literal\":{\"$scope\":1,\"$code\":\"x\"}},"
             "\"d\":{\"$literal\":{\"$literal\":{\"x\":1}}},\"e\":{\"$oid\":1,\"x\":2}}");
    assert_true(facts & MG_SCHEMA_FACT_LITERAL);
    assert_true(facts & MG_SCHEMA_FACT_DOLLAR_KEY);
    back = mg_schema_json_parse(got, strlen(got), &error);
    assert_non_null(back);
    assert_true(bson_same(doc, back));
    bson_destroy(back);
    free(got);
    bson_destroy(doc);
}

static void
test_duplicate_wrapper_keys_escaped(void **state)
{
    bson_t doc = BSON_INITIALIZER, sub;
    mg_error_t error;
    char *got;

    /* distinct key set {$oid} twice: the pairs form escapes it and keeps both values */
    bson_append_document_begin(&doc, "a", 1, &sub);
    bson_append_utf8(&sub, "$oid", -1, "x", -1);
    bson_append_utf8(&sub, "$oid", -1, "y", -1);
    bson_append_document_end(&doc, &sub);
    got = render_text(&doc, MG_SCHEMA_FIDELITY_RELAXED, NULL, &error);
    assert_string_equal(got, "{\"a\":{\"$fieldPairs\":[[\"$oid\",\"x\"],[\"$oid\",\"y\"]]}}");
    free(got);
    bson_destroy(&doc);
}

static void
test_dates(void **state)
{
    bson_t doc = BSON_INITIALIZER;

    bson_append_date_time(&doc, "e", 1, 0);
    bson_append_date_time(&doc, "l", 1, 951782400123); /* 2000-02-29 (leap day) */
    bson_append_date_time(&doc, "m", 1, INT64_C(253402300799999));
    bson_append_date_time(&doc, "b", 1, -1);
    bson_append_date_time(&doc, "y", 1, INT64_C(253402300800000));
    bson_append_date_time(&doc, "x", 1, INT64_MIN);
    expect_render(&doc, MG_SCHEMA_FIDELITY_RELAXED,
                  "{\"e\":{\"$date\":\"1970-01-01T00:00:00.000Z\"},"
                  "\"l\":{\"$date\":\"2000-02-29T00:00:00.123Z\"},"
                  "\"m\":{\"$date\":\"9999-12-31T23:59:59.999Z\"},"
                  "\"b\":{\"$date\":{\"$numberLong\":\"-1\"}},"
                  "\"y\":{\"$date\":{\"$numberLong\":\"253402300800000\"}},"
                  "\"x\":{\"$date\":{\"$numberLong\":\"-9223372036854775808\"}}}");
    bson_destroy(&doc);
}

static void
test_regex_options_kept(void **state)
{
    /* degenerate BSON (options unsorted and unknown) survives both ways */
    static const uint8_t raw[] = {0x0f, 0, 0, 0, 0x0b, 'r', 0, 'a', 'b', 0, 'x', 'g', 'i', 0, 0};
    bson_t doc, *back;
    mg_error_t error;

    assert_true(bson_init_static(&doc, raw, sizeof(raw)));
    expect_render(&doc, MG_SCHEMA_FIDELITY_RELAXED,
                  "{\"r\":{\"$regularExpression\":{\"pattern\":\"ab\",\"options\":\"xgi\"}}}");
    back = round_trip(&doc, MG_SCHEMA_FIDELITY_RELAXED, &error);
    assert_non_null(back);
    assert_true(bson_same(&doc, back));
    bson_destroy(back);
}

static void
test_value_render(void **state)
{
    bson_t *doc = BCON_NEW("_id", "{", "$oid", BCON_UTF8("x"), "}");
    bson_iter_t it;
    mg_buf_t buf;
    mg_error_t error;
    bson_t dst = BSON_INITIALIZER;

    mg_buf_init(&buf, 1024);
    assert_true(bson_iter_init_find(&it, doc, "_id"));
    assert_true(mg_schema_value_render(&it, MG_SCHEMA_FIDELITY_RELAXED, &buf, NULL, &error));
    assert_string_equal(buf.data, "{\"$literal\":{\"$oid\":\"x\"}}");
    assert_true(mg_schema_json_append_value(&dst, "_id", -1, buf.data, buf.len, &error));
    assert_true(bson_same(doc, &dst));
    bson_destroy(&dst);
    mg_buf_cleanup(&buf);
    bson_destroy(doc);
}

static void
test_cap_exceeded_restores_buffer(void **state)
{
    bson_t doc = BSON_INITIALIZER, sub;
    char big[3000];
    mg_buf_t buf;
    mg_error_t error;
    uint32_t facts = 0;

    memset(big, 'x', sizeof(big));
    bson_append_document_begin(&doc, "outer", -1, &sub);
    bson_append_double(&sub, "n", -1, NAN);
    bson_append_utf8(&sub, "text", -1, big, sizeof(big));
    bson_append_document_end(&doc, &sub);
    mg_buf_init(&buf, 2048);
    assert_true(mg_buf_append_str(&buf, "prefix", NULL));
    assert_false(mg_schema_doc_render(&doc, MG_SCHEMA_FIDELITY_RELAXED, &buf, &facts, &error));
    assert_int_equal(error.code, MG_ERROR_CODE_LIMIT);
    assert_non_null(strstr(error.message, "outer.text"));
    assert_int_equal(buf.len, 6); /* what was there before stays */
    assert_string_equal(buf.data, "prefix");
    assert_int_equal(facts, 0); /* facts untouched on failure */
    /* with room it works and appends */
    buf.limit = 1u << 20;
    assert_true(mg_schema_doc_render(&doc, MG_SCHEMA_FIDELITY_RELAXED, &buf, &facts, &error));
    assert_int_equal(strncmp(buf.data, "prefix{\"outer\":", 15), 0);
    assert_true(facts & MG_SCHEMA_FACT_NAN_INF);
    mg_buf_cleanup(&buf);
    bson_destroy(&doc);
}

static void
test_corrupt_bson(void **state)
{
    /* {"a": "xyz"} with the string length claiming more than the document */
    static const uint8_t bad_len[] = {0x12, 0, 0,   0,   0x02, 'a', 0, 0x40, 0,
                                      0,    0, 'x', 'y', 'z',  0,   0, 0,    0};
    /* nested document whose length runs past its parent */
    static const uint8_t bad_sub[] = {0x10, 0, 0, 0,    0x03, 'd', 0, 0x20,
                                      0,    0, 0, 0x08, 'b',  0,   1, 0};
    /* an unknown element type */
    static const uint8_t bad_type[] = {0x0c, 0, 0, 0, 0x42, 'z', 0, 1, 2, 3, 4, 0};
    const uint8_t *inputs[] = {bad_len, bad_sub, bad_type};
    size_t sizes[] = {sizeof(bad_len), sizeof(bad_sub), sizeof(bad_type)};
    mg_buf_t buf;
    mg_error_t error;
    size_t i;

    mg_buf_init(&buf, 1 << 20);
    for (i = 0; i < 3; i++) {
        assert_false(mg_schema_doc_render_raw(inputs[i], sizes[i], MG_SCHEMA_FIDELITY_RELAXED, &buf,
                                              NULL, &error));
        assert_int_equal(error.code, MG_ERROR_CODE_PARSE);
        assert_int_equal(buf.len, 0);
    }
    assert_false(
        mg_schema_doc_render_raw(bad_len, 3, MG_SCHEMA_FIDELITY_RELAXED, &buf, NULL, &error));
    assert_false(mg_schema_doc_render_raw(NULL, 0, MG_SCHEMA_FIDELITY_RELAXED, &buf, NULL, &error));
    mg_buf_cleanup(&buf);
}

static void
test_invalid_utf8_key_refused(void **state)
{
    bson_t doc = BSON_INITIALIZER, sub;
    mg_buf_t buf;
    mg_error_t error;

    bson_append_document_begin(&doc, "parent", -1, &sub);
    bson_append_int32(&sub, "bad\xff", -1, 1);
    bson_append_document_end(&doc, &sub);
    mg_buf_init(&buf, 1 << 20);
    assert_false(mg_schema_doc_render(&doc, MG_SCHEMA_FIDELITY_RELAXED, &buf, NULL, &error));
    assert_int_equal(error.code, MG_ERROR_CODE_PARSE);
    assert_non_null(strstr(error.message, "key is not valid UTF-8"));
    assert_non_null(strstr(error.message, "parent.bad"));
    mg_buf_cleanup(&buf);
    bson_destroy(&doc);
}

static void
test_depth_limit(void **state)
{
    bson_t *levels[MG_SCHEMA_MAX_DEPTH + 2];
    mg_buf_t buf;
    mg_error_t error;
    int depth, i;

    mg_buf_init(&buf, 1 << 20);
    for (depth = MG_SCHEMA_MAX_DEPTH; depth <= MG_SCHEMA_MAX_DEPTH + 1; depth++) {
        /* depth levels in total: the top document plus depth-1 nested ones */
        levels[0] = bson_new();
        for (i = 1; i < depth; i++) {
            levels[i] = bson_new();
        }
        for (i = depth - 1; i > 0; i--) {
            bson_append_document(levels[i - 1], "d", 1, levels[i]);
            bson_destroy(levels[i]);
        }
        mg_buf_reset(&buf);
        if (depth == MG_SCHEMA_MAX_DEPTH) {
            bson_t *back;

            assert_true(
                mg_schema_doc_render(levels[0], MG_SCHEMA_FIDELITY_RELAXED, &buf, NULL, &error));
            back = mg_schema_json_parse(buf.data, buf.len, &error);
            assert_non_null(back);
            assert_true(bson_same(levels[0], back));
            bson_destroy(back);
        } else {
            assert_false(
                mg_schema_doc_render(levels[0], MG_SCHEMA_FIDELITY_RELAXED, &buf, NULL, &error));
            assert_int_equal(error.code, MG_ERROR_CODE_LIMIT);
        }
        bson_destroy(levels[0]);
    }
    mg_buf_cleanup(&buf);
}

static void
test_names(void **state)
{
    mg_schema_fidelity_t f;

    assert_true(mg_schema_fidelity_parse("exact", &f));
    assert_int_equal(f, MG_SCHEMA_FIDELITY_EXACT);
    assert_true(mg_schema_fidelity_parse("relaxed", &f));
    assert_int_equal(f, MG_SCHEMA_FIDELITY_RELAXED);
    assert_false(mg_schema_fidelity_parse("canonical", &f));
    assert_string_equal(mg_schema_fidelity_name(MG_SCHEMA_FIDELITY_EXACT), "exact");
    assert_string_equal(mg_schema_fact_name(MG_SCHEMA_FACT_DUPLICATE_KEY), "duplicate_key");
    assert_string_equal(mg_schema_fact_name(1u << 30), "unknown");
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_double_forms),
        cmocka_unit_test(test_double_special_wrapped),
        cmocka_unit_test(test_double_random_round_trip),
        cmocka_unit_test(test_integers_and_exact),
        cmocka_unit_test(test_decimal_noncanonical),
        cmocka_unit_test(test_string_escapes),
        cmocka_unit_test(test_string_nul_and_invalid_utf8),
        cmocka_unit_test(test_wrapper_like_documents_escaped),
        cmocka_unit_test(test_duplicate_wrapper_keys_escaped),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_regex_options_kept),
        cmocka_unit_test(test_value_render),
        cmocka_unit_test(test_cap_exceeded_restores_buffer),
        cmocka_unit_test(test_corrupt_bson),
        cmocka_unit_test(test_invalid_utf8_key_refused),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
