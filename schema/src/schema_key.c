/*
 * schema/src/schema_key.c - the key column value of an _id (DESIGN §3):
 * checks that the _id fits the collection's key type and encodes it for
 * COPY binary or as a text parameter.
 */
#include "mg/schema.h"

#include <string.h>

/* btree entries above ~2700 bytes are refused by PostgreSQL; stay below. */
#define MAX_KEY_BYTES 2600

static bool
is_oid_hex(const char *s, uint32_t len)
{
    if (len != 24)
        return false;
    for (uint32_t i = 0; i < len; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    return true;
}

void
mg_schema_id_describe(const bson_iter_t *id, char *out, size_t outsz)
{
    mg_buf_t b;
    mg_error_t e;

    mg_buf_init(&b, 64 * 1024);
    if (mg_schema_value_render(id, MG_SCHEMA_FIDELITY_RELAXED, &b, NULL, &e) &&
        mg_buf_append(&b, "", 0, &e)) {
        if (b.len + 1 > outsz && outsz > 4)
            snprintf(out, outsz, "%.*s...", (int)(outsz - 4), b.data);
        else
            snprintf(out, outsz, "%s", b.data);
    } else {
        snprintf(out, outsz, "(unprintable _id of BSON type 0x%02x)", (int)bson_iter_type(id));
    }
    mg_buf_cleanup(&b);
}

static bool
misfit(const bson_iter_t *id, mg_schema_key_type_t type, const char *why, mg_error_t *error)
{
    char shown[256];

    mg_schema_id_describe(id, shown, sizeof(shown));
    return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                        "_id %s does not fit key type %s: %s", shown, mg_schema_key_type_name(type),
                        why);
}

bool
mg_schema_key_encode(const bson_iter_t *id, mg_schema_key_type_t type,
                     mg_schema_fidelity_t fidelity, bool binary, mg_buf_t *out, mg_error_t *error)
{
    bson_type_t t = bson_iter_type(id);
    size_t start = out->len;

    switch (type) {
    case MG_SCHEMA_KEY_TEXT_OID:
    case MG_SCHEMA_KEY_TEXT_STRING:
        if (t == BSON_TYPE_OID && type == MG_SCHEMA_KEY_TEXT_OID) {
            char hex[25];
            bson_oid_to_string(bson_iter_oid(id), hex);
            return mg_buf_append(out, hex, 24, error);
        }
        if (t == BSON_TYPE_UTF8) {
            uint32_t len;
            const char *s = bson_iter_utf8(id, &len);
            if (type == MG_SCHEMA_KEY_TEXT_OID && is_oid_hex(s, len))
                return misfit(id, type, "a string that reads as ObjectId hex would collide", error);
            if (memchr(s, '\0', len) != NULL || !bson_utf8_validate(s, len, false))
                return misfit(id, type, "text cannot hold NUL or invalid UTF-8", error);
            if (len > MAX_KEY_BYTES)
                return misfit(id, type, "longer than the 2600 bytes a btree key can hold", error);
            return mg_buf_append(out, s, len, error);
        }
        return misfit(id, type,
                      type == MG_SCHEMA_KEY_TEXT_OID ? "only ObjectIds and strings fit"
                                                     : "only strings fit",
                      error);
    case MG_SCHEMA_KEY_BIGINT: {
        int64_t v;
        if (t == BSON_TYPE_INT32)
            v = bson_iter_int32(id);
        else if (t == BSON_TYPE_INT64)
            v = bson_iter_int64(id);
        else
            return misfit(id, type, "only int32 and int64 fit", error);
        if (!binary)
            return mg_buf_printf(out, error, "%lld", (long long)v);
        uint8_t be[8];
        uint64_t u = (uint64_t)v;
        for (int i = 7; i >= 0; i--) {
            be[i] = (uint8_t)(u & 0xff);
            u >>= 8;
        }
        return mg_buf_append(out, be, 8, error);
    }
    case MG_SCHEMA_KEY_JSONB:
        if (binary && !mg_buf_append(out, "\x01", 1, error))
            return false;
        if (!mg_schema_value_render(id, fidelity, out, NULL, error)) {
            out->len = start;
            return false;
        }
        if (out->len - start > MAX_KEY_BYTES) {
            out->len = start;
            return misfit(id, type, "longer than the 2600 bytes a btree key can hold", error);
        }
        return true;
    }
    return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                        "unknown key type %d", (int)type);
}
