/*
 * tests/fuzz/schema/fuzz_render.c - libFuzzer target for the renderer and the
 * reverse mapping: arbitrary bytes as BSON -> validate -> render (both
 * fidelities) -> parse back. Must never crash, and every rendering must parse
 * back to a document with the same canonical form (duplicate keys included:
 * the $fieldPairs form keeps them). The parser is also
 * fed the raw bytes as JSON text.
 */
#include "mg/schema.h"

#include <stdlib.h>
#include <string.h>

/* check aborts with a message: libFuzzer reports it as a crash. */
static void
check(bool cond, const char *what, const mg_error_t *error)
{
    if (!cond) {
        fprintf(stderr, "fuzz_render: %s: %s\n", what, error != NULL ? error->message : "");
        abort();
    }
}

/* one_fidelity renders doc, parses it back and compares canonical forms. */
static void
one_fidelity(const bson_t *doc, mg_schema_fidelity_t fidelity)
{
    mg_buf_t buf;
    mg_error_t error;
    uint32_t facts = 0;
    bson_t *back;
    bool equal = false;

    mg_buf_init(&buf, 64u << 20);
    if (mg_schema_doc_render(doc, fidelity, &buf, &facts, &error)) {
        back = mg_schema_json_parse(buf.data, buf.len, &error);
        check(back != NULL, "rendering does not parse back", &error);
        check(mg_schema_doc_equal(doc, back, fidelity, &equal, &error), "canonical form", &error);
        check(equal, "round trip changed the document", NULL);
        bson_destroy(back);
    } else {
        /* refusals are for keys/regexes that are not UTF-8 or nesting: never the cap here */
        check(error.code == MG_ERROR_CODE_PARSE || error.code == MG_ERROR_CODE_LIMIT,
              "unexpected error code", &error);
    }
    mg_buf_cleanup(&buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bson_t doc;
    mg_error_t error;
    bson_t *parsed;

    /* as JSON text: must not crash; whatever parses renders again */
    parsed = mg_schema_json_parse((const char *)data, size, &error);
    if (parsed != NULL) {
        one_fidelity(parsed, MG_SCHEMA_FIDELITY_EXACT);
        bson_destroy(parsed);
    }
    /* as BSON */
    if (size < 5 || !bson_init_static(&doc, data, size))
        return 0;
    if (!bson_validate(&doc, BSON_VALIDATE_NONE, NULL)) {
        /* corrupt input: the renderer must fail cleanly or not crash */
        mg_buf_t buf;

        mg_buf_init(&buf, 1u << 20);
        (void)mg_schema_doc_render(&doc, MG_SCHEMA_FIDELITY_EXACT, &buf, NULL, &error);
        mg_buf_cleanup(&buf);
        return 0;
    }
    one_fidelity(&doc, MG_SCHEMA_FIDELITY_EXACT);
    one_fidelity(&doc, MG_SCHEMA_FIDELITY_RELAXED);
    return 0;
}
