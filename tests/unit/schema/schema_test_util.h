/*
 * tests/unit/schema/schema_test_util.h - helpers shared by the schema unit
 * tests: hex decoding and render/parse round trips.
 */
#ifndef MG_TEST_SCHEMA_UTIL_H
#define MG_TEST_SCHEMA_UTIL_H

#include "mg/schema.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* hex_decode returns malloc'd bytes of hex (caller frees); *len receives the size. */
static inline uint8_t *
hex_decode(const char *hex, size_t *len)
{
    size_t n = strlen(hex) / 2, i;
    uint8_t *out = malloc(n + 1);

    for (i = 0; i < n; i++) {
        unsigned v;

        sscanf(hex + 2 * i, "%2x", &v);
        out[i] = (uint8_t)v;
    }
    *len = n;
    return out;
}

/* hex_dump returns a malloc'd lower-case hex string of n bytes. */
static inline char *
hex_dump(const uint8_t *data, size_t n)
{
    char *out = malloc(2 * n + 1);
    size_t i;

    for (i = 0; i < n; i++)
        sprintf(out + 2 * i, "%02x", data[i]);
    out[2 * n] = '\0';
    return out;
}

/* bson_same returns true when a and b are byte-identical. */
static inline bool
bson_same(const bson_t *a, const bson_t *b)
{
    return a->len == b->len && memcmp(bson_get_data(a), bson_get_data(b), a->len) == 0;
}

/*
 * render_text renders doc under fidelity and returns a malloc'd copy of the
 * JSON (caller frees), or NULL with error set.
 */
static inline char *
render_text(const bson_t *doc, mg_schema_fidelity_t fidelity, uint32_t *facts, mg_error_t *error)
{
    mg_buf_t buf;
    char *out = NULL;

    mg_buf_init(&buf, 64u << 20);
    if (mg_schema_doc_render(doc, fidelity, &buf, facts, error))
        out = strdup(buf.data != NULL ? buf.data : "");
    mg_buf_cleanup(&buf);
    return out;
}

/* round_trip renders doc and parses it back; NULL with error set on failure. */
static inline bson_t *
round_trip(const bson_t *doc, mg_schema_fidelity_t fidelity, mg_error_t *error)
{
    char *json = render_text(doc, fidelity, NULL, error);
    bson_t *back;

    if (json == NULL)
        return NULL;
    back = mg_schema_json_parse(json, strlen(json), error);
    free(json);
    return back;
}

#endif /* MG_TEST_SCHEMA_UTIL_H */
