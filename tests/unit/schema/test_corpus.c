/*
 * tests/unit/schema/test_corpus.c - every valid case of the BSON corpus
 * renders in both fidelities and maps back: byte-identical in exact mode,
 * the documented equivalent in relaxed mode; the corpus's own canonical
 * Extended JSON reads back as its canonical BSON; every decode-error case
 * fails cleanly.
 */
#include "schema_test_util.h"

#include "bson_corpus_valid.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define NVALID  (sizeof(corpus_valid) / sizeof(corpus_valid[0]))
#define NDECODE (sizeof(corpus_decode_errors) / sizeof(corpus_decode_errors[0]))

/* load returns the canonical BSON of case c in *doc (static over *bytes). */
static void
load(const corpus_valid_t *c, bson_t *doc, uint8_t **bytes)
{
    size_t len;

    *bytes = hex_decode(c->canonical_bson_hex, &len);
    if (!bson_init_static(doc, *bytes, len))
        fail_msg("%s / %s: corpus BSON does not load", c->file, c->description);
}

static void
test_corpus_count(void **state)
{
    /* every type file contributes: a shrunken table would hide coverage */
    assert_true(NVALID >= 700);
    assert_true(NDECODE >= 70);
}

static void
test_corpus_exact_identical(void **state)
{
    size_t i;

    for (i = 0; i < NVALID; i++) {
        const corpus_valid_t *c = &corpus_valid[i];
        mg_error_t error;
        uint8_t *bytes;
        bson_t doc, *back;

        load(c, &doc, &bytes);
        back = round_trip(&doc, MG_SCHEMA_FIDELITY_EXACT, &error);
        if (back == NULL)
            fail_msg("%s / %s: %s", c->file, c->description, error.message);
        if (!bson_same(&doc, back)) {
            char *got = hex_dump(bson_get_data(back), back->len);

            fail_msg("%s / %s: exact round trip differs:\n want %s\n got  %s", c->file,
                     c->description, c->canonical_bson_hex, got);
        }
        bson_destroy(back);
        free(bytes);
    }
}

static void
test_corpus_relaxed_equivalent(void **state)
{
    size_t i, changed = 0;

    for (i = 0; i < NVALID; i++) {
        const corpus_valid_t *c = &corpus_valid[i];
        mg_error_t error;
        uint8_t *bytes;
        bson_t doc, *back;
        bool equal = false;

        load(c, &doc, &bytes);
        back = round_trip(&doc, MG_SCHEMA_FIDELITY_RELAXED, &error);
        if (back == NULL)
            fail_msg("%s / %s: %s", c->file, c->description, error.message);
        if (c->relaxed == CORPUS_RELAXED_SAME) {
            if (!bson_same(&doc, back)) {
                char *got = hex_dump(bson_get_data(back), back->len);

                fail_msg("%s / %s: relaxed round trip differs:\n want %s\n got  %s", c->file,
                         c->description, c->canonical_bson_hex, got);
            }
        } else {
            /* the documented equivalent: same under the relaxed canonical form */
            assert_true(
                mg_schema_doc_equal(&doc, back, MG_SCHEMA_FIDELITY_RELAXED, &equal, &error));
            if (!equal)
                fail_msg("%s / %s: relaxed round trip is not the documented equivalent", c->file,
                         c->description);
            if (c->relaxed & CORPUS_RELAXED_INT64_AS_INT32) {
                /* the change is real: exact comparison tells them apart */
                assert_true(
                    mg_schema_doc_equal(&doc, back, MG_SCHEMA_FIDELITY_EXACT, &equal, &error));
                assert_false(equal);
                changed++;
            }
        }
        bson_destroy(back);
        free(bytes);
    }
    assert_true(changed >= 3);
}

static void
test_corpus_reads_canonical_extjson(void **state)
{
    size_t i;

    for (i = 0; i < NVALID; i++) {
        const corpus_valid_t *c = &corpus_valid[i];
        mg_error_t error;
        uint8_t *bytes;
        bson_t doc, *back;
        bool equal = false;

        load(c, &doc, &bytes);
        back = mg_schema_json_parse(c->canonical_extjson, strlen(c->canonical_extjson), &error);
        if (back == NULL)
            fail_msg("%s / %s: %s", c->file, c->description, error.message);
        if (c->relaxed & CORPUS_RELAXED_LOSSY) {
            /* Extended JSON cannot carry these bits: same data, canonical encoding */
            assert_true(
                mg_schema_doc_equal(&doc, back, MG_SCHEMA_FIDELITY_RELAXED, &equal, &error));
            assert_true(equal);
        } else if (!bson_same(&doc, back)) {
            char *got = hex_dump(bson_get_data(back), back->len);

            fail_msg("%s / %s: canonical extjson reads back differently:\n want %s\n got  %s",
                     c->file, c->description, c->canonical_bson_hex, got);
        }
        bson_destroy(back);
        free(bytes);
    }
}

static void
test_corpus_reads_relaxed_extjson(void **state)
{
    size_t i, n = 0;

    for (i = 0; i < NVALID; i++) {
        const corpus_valid_t *c = &corpus_valid[i];
        mg_error_t error;
        uint8_t *bytes;
        bson_t doc, *back;
        bool equal = false;

        if (c->relaxed_extjson[0] == '\0')
            continue;
        load(c, &doc, &bytes);
        back = mg_schema_json_parse(c->relaxed_extjson, strlen(c->relaxed_extjson), &error);
        if (back == NULL)
            fail_msg("%s / %s: %s", c->file, c->description, error.message);
        assert_true(mg_schema_doc_equal(&doc, back, MG_SCHEMA_FIDELITY_RELAXED, &equal, &error));
        if (!equal)
            fail_msg("%s / %s: relaxed extjson is not the relaxed equivalent", c->file,
                     c->description);
        n++;
        bson_destroy(back);
        free(bytes);
    }
    assert_true(n >= 25);
}

/*
 * Degenerate BSON (array keys out of order, regex flags unsorted) renders and
 * comes back with arrays renumbered and regex options as stored.
 */
static void
test_corpus_degenerate(void **state)
{
    size_t i, n = 0;

    for (i = 0; i < NVALID; i++) {
        const corpus_valid_t *c = &corpus_valid[i];
        mg_error_t error;
        uint8_t *bytes, *want_bytes;
        size_t len, want_len;
        bson_t doc, want, *back;

        if (c->degenerate_bson_hex[0] == '\0')
            continue;
        bytes = hex_decode(c->degenerate_bson_hex, &len);
        assert_true(bson_init_static(&doc, bytes, len));
        want_bytes = hex_decode(strcmp(c->file, "regex.json") == 0 ? c->degenerate_bson_hex
                                                                   : c->canonical_bson_hex,
                                &want_len);
        assert_true(bson_init_static(&want, want_bytes, want_len));
        back = round_trip(&doc, MG_SCHEMA_FIDELITY_EXACT, &error);
        if (back == NULL)
            fail_msg("%s / %s: %s", c->file, c->description, error.message);
        if (!bson_same(&want, back))
            fail_msg("%s / %s: degenerate BSON did not come back as documented", c->file,
                     c->description);
        n++;
        bson_destroy(back);
        free(want_bytes);
        free(bytes);
    }
    assert_true(n >= 4);
}

static void
test_corpus_decode_errors(void **state)
{
    size_t i;

    for (i = 0; i < NDECODE; i++) {
        const corpus_decode_error_t *c = &corpus_decode_errors[i];
        size_t len;
        uint8_t *bytes = hex_decode(c->bson_hex, &len);
        mg_buf_t buf;
        mg_error_t error;
        uint32_t facts = 0;
        bool ok;

        mg_buf_init(&buf, 1u << 20);
        mg_error_clear(&error);
        ok = mg_schema_doc_render_raw(bytes, len, MG_SCHEMA_FIDELITY_EXACT, &buf, &facts, &error);
        if (strstr(c->description, "UTF-8") != NULL && ok) {
            /* structurally valid, only the text is not UTF-8: escaped, not refused */
            assert_true(facts & MG_SCHEMA_FACT_INVALID_UTF8);
            assert_non_null(strstr(buf.data, "$stringBase64"));
        } else if (ok) {
            fail_msg("%s / %s: corrupt BSON rendered as %s", c->file, c->description, buf.data);
        } else {
            assert_int_equal(error.code, MG_ERROR_CODE_PARSE);
            assert_int_equal(buf.len, 0); /* output untouched */
        }
        mg_buf_cleanup(&buf);
        free(bytes);
    }
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_corpus_count),
        cmocka_unit_test(test_corpus_exact_identical),
        cmocka_unit_test(test_corpus_relaxed_equivalent),
        cmocka_unit_test(test_corpus_reads_canonical_extjson),
        cmocka_unit_test(test_corpus_reads_relaxed_extjson),
        cmocka_unit_test(test_corpus_degenerate),
        cmocka_unit_test(test_corpus_decode_errors),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
