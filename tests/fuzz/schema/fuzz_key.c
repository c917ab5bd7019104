/*
 * tests/fuzz/schema/fuzz_key.c - libFuzzer target for the key column: the
 * key reader (mg_schema_key_append_id, fed by _migrate.changed_docs) and
 * the canonical encoder. Arbitrary bytes are read as a key of every key
 * type: never a crash, and a key that reads back to an _id encodes to a
 * key that reads back to an _id with that same key again. The same bytes
 * as BSON: the first element's value is encoded as a canonical key, which
 * must be text-safe (UTF-8, no NUL, at most MG_SCHEMA_KEY_MAX_BYTES) and
 * read back to an _id with the same key (or be a digest).
 */
#include "mg/schema.h"

#include <stdlib.h>
#include <string.h>

static void
check(bool cond, const char *what, const mg_error_t *error)
{
    if (!cond) {
        fprintf(stderr, "fuzz_key: %s: %s\n", what, error != NULL ? error->message : "");
        abort();
    }
}

/* key_text encodes doc's "_id" (or first element) under type into buf; false when it does not fit.
 */
static bool
key_text(const bson_t *doc, mg_schema_key_type_t type, mg_buf_t *buf, mg_error_t *error)
{
    bson_iter_t it;

    mg_buf_reset(buf);
    if (!bson_iter_init(&it, doc) || !bson_iter_next(&it))
        return false;
    return mg_schema_key_encode(&it, type, MG_SCHEMA_FIDELITY_EXACT, false, buf, error);
}

/* stable checks that the key in text reads back to an _id whose key is text again. */
static void
stable(mg_schema_key_type_t type, const char *text, size_t len)
{
    bson_t back = BSON_INITIALIZER;
    mg_buf_t again;
    mg_error_t error;

    mg_buf_init(&again, 1u << 24);
    if (mg_schema_key_append_id(type, text, len, &back, "_id", 3, &error)) {
        check(key_text(&back, type, &again, &error), "a key's _id does not encode", &error);
        check(again.len == len && memcmp(again.data, text, len) == 0,
              "a key's _id encodes to another key", NULL);
    } else {
        check(mg_schema_key_is_digest(type, text, len), "an encoded key does not read back",
              &error);
    }
    bson_destroy(&back);
    mg_buf_cleanup(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const mg_schema_key_type_t types[] = {MG_SCHEMA_KEY_TEXT_OID, MG_SCHEMA_KEY_TEXT_STRING,
                                                 MG_SCHEMA_KEY_BIGINT, MG_SCHEMA_KEY_CANONICAL};
    mg_buf_t buf;
    mg_error_t error;
    bson_t doc;

    mg_buf_init(&buf, 1u << 24);
    /* as key text */
    for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
        bson_t back = BSON_INITIALIZER;

        if (mg_schema_key_append_id(types[t], (const char *)data, size, &back, "_id", 3, &error) &&
            key_text(&back, types[t], &buf, &error))
            stable(types[t], buf.data, buf.len);
        bson_destroy(&back);
    }
    /* as BSON: the canonical key of its first value */
    if (size >= 5 && bson_init_static(&doc, data, size) &&
        bson_validate(&doc, BSON_VALIDATE_NONE, NULL)) {
        if (key_text(&doc, MG_SCHEMA_KEY_CANONICAL, &buf, &error)) {
            check(buf.len <= MG_SCHEMA_KEY_MAX_BYTES, "key longer than the maximum", NULL);
            check(memchr(buf.data, '\0', buf.len) == NULL &&
                      bson_utf8_validate(buf.data, buf.len, false),
                  "key is not text", NULL);
            stable(MG_SCHEMA_KEY_CANONICAL, buf.data, buf.len);
        }
    }
    mg_buf_cleanup(&buf);
    return 0;
}
