/*
 * tests/unit/core/test_base64.c - the base64 codec: the RFC 4648 test
 * vectors, round trips of every length and byte value, refusals.
 */
#include "mg/core.h"

#include <stdlib.h>
#include <string.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void
test_rfc4648_vectors(void **state)
{
    static const char *const v[][2] = {{"", ""},
                                       {"f", "Zg=="},
                                       {"fo", "Zm8="},
                                       {"foo", "Zm9v"},
                                       {"foob", "Zm9vYg=="},
                                       {"fooba", "Zm9vYmE="},
                                       {"foobar", "Zm9vYmFy"}};
    mg_error_t e;

    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        mg_buf_t enc, dec;
        mg_buf_init(&enc, 1024);
        mg_buf_init(&dec, 1024);
        assert_true(mg_base64_encode(v[i][0], strlen(v[i][0]), &enc, &e));
        assert_int_equal(enc.len, mg_base64_encoded_len(strlen(v[i][0])));
        assert_memory_equal(enc.len ? enc.data : "", v[i][1], strlen(v[i][1]));
        assert_true(mg_base64_decode(v[i][1], strlen(v[i][1]), &dec, &e));
        assert_int_equal(dec.len, strlen(v[i][0]));
        assert_memory_equal(dec.len ? dec.data : "", v[i][0], dec.len);
        mg_buf_cleanup(&enc);
        mg_buf_cleanup(&dec);
    }
}

static void
test_round_trip_every_byte(void **state)
{
    unsigned char data[600];
    mg_error_t e;

    srand(7);
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i < 256 ? (int)i : rand());
    for (size_t n = 0; n <= sizeof(data); n += (n < 16 ? 1 : 37)) {
        mg_buf_t enc, dec;
        mg_buf_init(&enc, 4096);
        mg_buf_init(&dec, 4096);
        assert_true(mg_base64_encode(data, n, &enc, &e));
        assert_true(mg_base64_decode(enc.data, enc.len, &dec, &e));
        assert_int_equal(dec.len, n);
        if (n > 0)
            assert_memory_equal(dec.data, data, n);
        mg_buf_cleanup(&enc);
        mg_buf_cleanup(&dec);
    }
}

static void
test_refusals_leave_output_as_it_was(void **state)
{
    static const char *const bad[] = {
        "Zg=", "Zg===", "Z===", "=Zg=", "Zm9v!A==", "Zm=v", "Zm9\n", "A", "Zg==Zg=="};
    mg_error_t e;
    mg_buf_t out;

    mg_buf_init(&out, 1024);
    assert_true(mg_buf_append_str(&out, "kept", &e));
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_false(mg_base64_decode(bad[i], strlen(bad[i]), &out, &e));
        assert_int_equal(e.code, MG_ERROR_CODE_PARSE);
        assert_string_equal(out.data, "kept");
    }
    mg_buf_cleanup(&out);
    /* the output cap is honoured */
    mg_buf_init(&out, 3);
    assert_false(mg_base64_encode("ab", 2, &out, &e));
    assert_int_equal(e.code, MG_ERROR_CODE_LIMIT);
    mg_buf_cleanup(&out);
}

/*
 * A padded last group whose unused low bits are not zero decodes (RFC 4648
 * lets a decoder accept it), but is not the text mg_base64_encode writes:
 * the canonical decoder refuses it, so one byte string has exactly one text.
 */
static void
test_canonical_refuses_pad_bits(void **state)
{
    static const char *const lax[][2] = {{"Zh==", "f"}, {"Zm9=", "fo"}, {"Zm9vYf==", "fooa"}};
    mg_error_t e;
    mg_buf_t out;

    mg_buf_init(&out, 1024);
    for (size_t i = 0; i < sizeof(lax) / sizeof(lax[0]); i++) {
        mg_buf_reset(&out);
        assert_true(mg_base64_decode(lax[i][0], strlen(lax[i][0]), &out, &e));
        assert_string_equal(out.data, lax[i][1]);
        assert_true(mg_buf_append_str(&out, "|", &e));
        assert_false(mg_base64_decode_canonical(lax[i][0], strlen(lax[i][0]), &out, &e));
        assert_int_equal(e.code, MG_ERROR_CODE_PARSE);
        assert_non_null(strstr(e.message, "pad bits"));
        assert_int_equal(out.len, strlen(lax[i][1]) + 1); /* output left as it was */
    }
    /* what the encoder writes, the canonical decoder reads, for every length */
    for (size_t n = 0; n < 40; n++) {
        char raw[40], text[64];
        size_t len;

        for (size_t i = 0; i < n; i++)
            raw[i] = (char)(0xA5 ^ (i * 37));
        len = mg_base64_encode_to(raw, n, text);
        assert_int_equal(len, mg_base64_encoded_len(n));
        mg_buf_reset(&out);
        assert_true(mg_base64_decode_canonical(text, len, &out, &e));
        assert_int_equal(out.len, n);
        assert_memory_equal(out.data, raw, n);
    }
    mg_buf_cleanup(&out);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc4648_vectors),
        cmocka_unit_test(test_round_trip_every_byte),
        cmocka_unit_test(test_refusals_leave_output_as_it_was),
        cmocka_unit_test(test_canonical_refuses_pad_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
