/*
 * validate/src/validate_hash.c - the 64-bit document hash over the canonical
 * form, and the hash of a document's _id that picks its segment.
 *
 * The hash reads 16 bytes per round in two lanes (multiply, rotate,
 * multiply) and ends with a 64-bit avalanche finaliser; it is not
 * cryptographic: it only has to make an accidental collision between a
 * document and its changed copy negligible (2^-64 per pair). Words are
 * read little-endian as stored, so a digest is comparable only between
 * runs on machines of the same byte order (both sides are always hashed
 * by the same process).
 */
#include "validate_internal.h"

#include <string.h>
#include <time.h>

#define K1 0x9E3779B97F4A7C15ull
#define K2 0xC2B2AE3D27D4EB4Full
#define K3 0x165667B19E3779F9ull

static inline uint64_t
rotl64(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t
read64(const uint8_t *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

uint64_t
mg_validate_hash64(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t h1 = seed ^ ((uint64_t)len * K1);
    uint64_t h2 = ~seed ^ K3;
    uint64_t h;

    while (len >= 16) {
        h1 = rotl64(h1 ^ (read64(p) * K2), 29) * K1;
        h2 = rotl64(h2 ^ (read64(p + 8) * K2), 31) * K3;
        p += 16;
        len -= 16;
    }
    if (len >= 8) {
        h1 = rotl64(h1 ^ (read64(p) * K2), 27) * K1;
        p += 8;
        len -= 8;
    }
    if (len > 0) {
        uint64_t t = 0;
        memcpy(&t, p, len);
        h2 = rotl64(h2 ^ (t * K2), 33) * K1;
    }
    h = h1 ^ rotl64(h2, 17);
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 33;
    return h;
}

void
mg_validate__value_bytes(const bson_iter_t *iter, const uint8_t **data, size_t *len)
{
    *data = iter->raw + iter->d1;
    *len = iter->next_off > iter->d1 ? iter->next_off - iter->d1 : 0;
}

/* text_hashes hashes canonical text and its _id value. */
static bool
text_hashes(const char *text, size_t len, uint64_t *doc_hash, uint64_t *id_hash, mg_error_t *error)
{
    const char *v;
    size_t vlen;

    if (!mg_validate__jsonb_id_span(text, len, &v, &vlen))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "document has no _id");
    if (doc_hash != NULL)
        *doc_hash = mg_validate_hash64(text, len, 0);
    if (id_hash != NULL)
        *id_hash = mg_validate_hash64(v, vlen, 1);
    return true;
}

bool
mg_validate_doc_hash(const bson_t *doc, mg_schema_fidelity_t fidelity, uint64_t *doc_hash,
                     uint64_t *id_hash, mg_error_t *error)
{
    mg_buf_t render, canon, scratch;
    bool ok;

    mg_buf_init(&render, 256u * 1024 * 1024);
    mg_buf_init(&canon, 256u * 1024 * 1024);
    mg_buf_init(&scratch, 256u * 1024 * 1024);
    ok = mg_schema_doc_render(doc, fidelity, &render, NULL, error) &&
         mg_validate__jsonb_normalize(render.data, render.len, &canon, &scratch, error) &&
         text_hashes(canon.data, canon.len, doc_hash, id_hash, error);
    mg_buf_cleanup(&render);
    mg_buf_cleanup(&canon);
    mg_buf_cleanup(&scratch);
    return ok;
}

bool
mg_validate_json_hash(const char *json, size_t len, mg_schema_fidelity_t fidelity,
                      uint64_t *doc_hash, uint64_t *id_hash, mg_error_t *error)
{
    mg_buf_t canon, scratch;
    bool ok;

    (void)fidelity; /* the text already says which wrappers it uses */
    mg_buf_init(&canon, 256u * 1024 * 1024);
    mg_buf_init(&scratch, 256u * 1024 * 1024);
    ok = mg_validate__jsonb_normalize(json, len, &canon, &scratch, error) &&
         text_hashes(canon.data, canon.len, doc_hash, id_hash, error);
    mg_buf_cleanup(&canon);
    mg_buf_cleanup(&scratch);
    return ok;
}
