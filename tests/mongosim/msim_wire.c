/*
 * tests/mongosim/msim_wire.c - parsing of OP_MSG / OP_QUERY requests and
 * framing of replies. Pure functions: no server state, so the fuzz target
 * can drive them directly.
 */
#include "msim.h"

#include <string.h>

static int32_t
rd32(const uint8_t *p)
{
    uint32_t v =
        (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
    return (int32_t)v;
}

static void
wr32(uint8_t *p, int32_t v)
{
    uint32_t u = (uint32_t)v;
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

/* BSONDepth::kDefaultMaxAllowableDepth: what mongod accepts in a message (documents it
 * stores are held to 180 levels, MSIM_MAX_USER_DEPTH) */
#define MAX_DEPTH 200

/*
 * validate_raw checks the structure of the BSON document p[0..len): element
 * sizes, terminators, known types, booleans and nesting depth (iteratively,
 * so hostile nesting cannot exhaust the stack). UTF-8 is not checked, as
 * mongod does not check it either on the hot path.
 */
static bool
validate_raw(const uint8_t *p, size_t len, mg_error_t *error)
{
    size_t stack[MAX_DEPTH + 2];
    int depth = 0;
    size_t off = 4;
    stack[0] = len;
    for (;;) {
        size_t end = stack[depth], need = 0, l;
        const uint8_t *nul;
        uint8_t type;
        if (off + 1 == end) {
            if (p[off] != 0)
                return msim_fail(error, MSIM_E_INVALID_BSON, "BSON document not terminated");
            off = end;
            if (depth == 0)
                return true;
            depth--;
            continue;
        }
        if (off + 1 > end)
            return msim_fail(error, MSIM_E_INVALID_BSON, "BSON element overruns its document");
        type = p[off++];
        nul = memchr(p + off, 0, end - 1 - off);
        if (type == 0 || nul == NULL)
            return msim_fail(error, MSIM_E_INVALID_BSON, "invalid BSON element at offset %zu",
                             off - 1);
        off = (size_t)(nul - p) + 1;
#define AVAIL (end - 1 - off)
#define NEED(n)                                                                                \
    do {                                                                                       \
        if ((size_t)(n) > AVAIL)                                                               \
            return msim_fail(error, MSIM_E_INVALID_BSON, "truncated BSON value at offset %zu", \
                             off);                                                             \
    } while (0)
        switch (type) {
        case 0x01:
        case 0x09:
        case 0x11:
        case 0x12:
            need = 8;
            break;
        case 0x02:
        case 0x0D:
        case 0x0E:
        case 0x0C:
            NEED(4);
            l = (uint32_t)rd32(p + off);
            if (l < 1 || l > AVAIL - 4 || p[off + 4 + l - 1] != 0)
                return msim_fail(error, MSIM_E_INVALID_BSON, "invalid BSON string at offset %zu",
                                 off);
            need = 4 + l + (type == 0x0C ? 12 : 0);
            break;
        case 0x03:
        case 0x04:
            NEED(5);
            l = (uint32_t)rd32(p + off);
            if (l < 5 || l > AVAIL)
                return msim_fail(error, MSIM_E_INVALID_BSON,
                                 "invalid embedded document length at offset %zu", off);
            if (depth + 1 > MAX_DEPTH)
                return msim_fail(error, MSIM_E_INVALID_BSON,
                                 "BSONObj exceeds maximum nested object depth: %d", MAX_DEPTH);
            stack[++depth] = off + l;
            off += 4;
            continue;
        case 0x05:
            NEED(5);
            l = (uint32_t)rd32(p + off);
            if (l > AVAIL - 5)
                return msim_fail(error, MSIM_E_INVALID_BSON, "invalid binary length at offset %zu",
                                 off);
            /* the old binary subtype holds its own length, which must agree
             * (libbson, and so every reader built on it, refuses the value) */
            if (p[off + 4] == 0x02 && (l < 4 || (uint32_t)rd32(p + off + 5) != l - 4))
                return msim_fail(error, MSIM_E_INVALID_BSON,
                                 "invalid BSON binary subtype 2 at offset %zu: inner length "
                                 "disagrees with the value's size",
                                 off);
            need = 5 + l;
            break;
        case 0x06:
        case 0x0A:
        case 0xFF:
        case 0x7F:
            need = 0;
            break;
        case 0x07:
            need = 12;
            break;
        case 0x08:
            NEED(1);
            if (p[off] > 1)
                return msim_fail(error, MSIM_E_INVALID_BSON, "invalid boolean at offset %zu", off);
            need = 1;
            break;
        case 0x0B: {
            const uint8_t *n1 = memchr(p + off, 0, AVAIL), *n2;
            if (n1 == NULL)
                return msim_fail(error, MSIM_E_INVALID_BSON, "invalid regex at offset %zu", off);
            n2 = memchr(n1 + 1, 0, (size_t)(p + end - 1 - (n1 + 1)));
            if (n2 == NULL)
                return msim_fail(error, MSIM_E_INVALID_BSON, "invalid regex at offset %zu", off);
            need = (size_t)(n2 - (p + off)) + 1;
            break;
        }
        case 0x0F: {
            size_t sl, dl;
            NEED(4);
            l = (uint32_t)rd32(p + off);
            if (l < 14 || l > AVAIL)
                return msim_fail(error, MSIM_E_INVALID_BSON, "invalid code_w_scope at %zu", off);
            sl = (uint32_t)rd32(p + off + 4);
            if (sl < 1 || sl > l - 13 || p[off + 8 + sl - 1] != 0)
                return msim_fail(error, MSIM_E_INVALID_BSON, "invalid code_w_scope at %zu", off);
            dl = (uint32_t)rd32(p + off + 8 + sl);
            if (8 + sl + dl != l || dl < 5)
                return msim_fail(error, MSIM_E_INVALID_BSON, "invalid code_w_scope at %zu", off);
            if (depth + 1 > MAX_DEPTH)
                return msim_fail(error, MSIM_E_INVALID_BSON,
                                 "BSONObj exceeds maximum nested object depth: %d", MAX_DEPTH);
            /* the scope document ends exactly where the element ends */
            stack[++depth] = off + l;
            off += 8 + sl + 4;
            continue;
        }
        case 0x10:
            need = 4;
            break;
        case 0x13:
            need = 16;
            break;
        default:
            return msim_fail(error, MSIM_E_INVALID_BSON, "unknown BSON type %u at offset %zu", type,
                             off);
        }
        NEED(need);
        off += need;
#undef NEED
#undef AVAIL
    }
}

/* bson_at validates one BSON document at p (at most avail bytes). */
static bool
bson_at(const uint8_t *p, size_t avail, bson_t *b, size_t *doclen, mg_error_t *error)
{
    int32_t len;

    if (avail < 5)
        return msim_fail(error, MSIM_E_INVALID_BSON, "incomplete BSON document in message");
    len = rd32(p);
    if (len < 5 || (size_t)len > avail || len > MSIM_MAX_MESSAGE_SIZE)
        return msim_fail(error, MSIM_E_INVALID_BSON,
                         "invalid BSON document length %d (%zu bytes available)", len, avail);
    if (!validate_raw(p, (size_t)len, error))
        return false;
    if (!bson_init_static(b, p, (size_t)len))
        return msim_fail(error, MSIM_E_INVALID_BSON, "invalid BSON document");
    *doclen = (size_t)len;
    return true;
}

static bool
parse_op_msg(const uint8_t *buf, size_t len, msim_msg_t *out, mg_error_t *error)
{
    const uint8_t *p = buf + 16, *end = buf + len;
    bson_t body, seqs;
    const uint8_t *body_data = NULL;
    size_t body_len = 0;
    bool have_body = false;
    size_t n;

    if (len < 21)
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "OP_MSG message of %zu bytes is too short",
                         len);
    out->flags = (uint32_t)rd32(p);
    p += 4;
    /* Required bits 2..15 unknown to us must be rejected (OP_MSG spec). */
    if (out->flags & 0xfffcu)
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                         "OP_MSG flags 0x%x contain unknown required bits", out->flags);
    if (out->flags & 1u) {
        if (end - p < 4)
            return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "OP_MSG checksum missing");
        end -= 4; /* CRC-32C accepted, not verified */
    }
    out->more_to_come = (out->flags & 2u) != 0;
    out->exhaust = (out->flags & (1u << 16)) != 0;
    bson_init(&seqs);
    while (p < end) {
        uint8_t kind = *p++;
        if (kind == 0) {
            bson_t b;
            if (have_body) {
                bson_destroy(&seqs);
                return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                                 "OP_MSG contains more than one kind 0 section");
            }
            if (!bson_at(p, (size_t)(end - p), &b, &n, error)) {
                bson_destroy(&seqs);
                return false;
            }
            body_data = p;
            body_len = n;
            have_body = true;
            p += n;
        } else if (kind == 1) {
            int32_t slen;
            const uint8_t *send, *q;
            const char *ident;
            size_t idlen;
            bson_t arr;
            uint32_t idx = 0;

            if (end - p < 4) {
                bson_destroy(&seqs);
                return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "truncated document sequence");
            }
            slen = rd32(p);
            if (slen < 5 || slen > end - p) {
                bson_destroy(&seqs);
                return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "invalid document sequence size %d",
                                 slen);
            }
            send = p + slen;
            q = p + 4;
            ident = (const char *)q;
            idlen = strnlen(ident, (size_t)(send - q));
            if (idlen == (size_t)(send - q) || idlen == 0) {
                bson_destroy(&seqs);
                return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                                 "invalid document sequence identifier");
            }
            q += idlen + 1;
            if (bson_has_field(&seqs, ident)) {
                bson_destroy(&seqs);
                return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "duplicate document sequence '%s'",
                                 ident);
            }
            bson_append_array_begin(&seqs, ident, (int)idlen, &arr);
            while (q < send) {
                bson_t d;
                char key[16];
                const char *k;
                if (!bson_at(q, (size_t)(send - q), &d, &n, error)) {
                    bson_append_array_end(&seqs, &arr);
                    bson_destroy(&seqs);
                    return false;
                }
                bson_uint32_to_string(idx++, &k, key, sizeof key);
                bson_append_document(&arr, k, -1, &d);
                q += n;
            }
            bson_append_array_end(&seqs, &arr);
            p = send;
        } else {
            bson_destroy(&seqs);
            return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "unknown OP_MSG section kind %u", kind);
        }
    }
    if (!have_body) {
        bson_destroy(&seqs);
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "OP_MSG has no kind 0 section");
    }
    /* a bson_t made by bson_init_static must not be copied by value */
    bson_init_static(&body, body_data, body_len);
    bson_init(&out->cmd);
    bson_concat(&out->cmd, &body);
    if (!bson_empty(&seqs)) {
        bson_iter_t it;
        bson_iter_init(&it, &seqs);
        while (bson_iter_next(&it)) {
            if (bson_has_field(&body, bson_iter_key(&it))) {
                msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                          "field '%s' appears in the body and as a document sequence",
                          bson_iter_key(&it));
                bson_destroy(&seqs); /* the key above pointed into seqs */
                bson_destroy(&out->cmd);
                return false;
            }
        }
        bson_concat(&out->cmd, &seqs);
    }
    bson_destroy(&seqs);
    return true;
}

static bool
parse_op_query(const uint8_t *buf, size_t len, msim_msg_t *out, mg_error_t *error)
{
    const uint8_t *p = buf + 16, *end = buf + len;
    const char *ns;
    size_t nslen, n;
    bson_t q;
    char db[128];
    const char *dot;
    bson_iter_t it;
    const bson_t *src;
    bson_t inner;

    if (len < 16 + 4 + 2 + 8 + 5)
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "OP_QUERY message too short");
    out->flags = (uint32_t)rd32(p);
    p += 4;
    ns = (const char *)p;
    nslen = strnlen(ns, (size_t)(end - p));
    if (nslen == (size_t)(end - p))
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "OP_QUERY namespace not terminated");
    p += nslen + 1;
    if (end - p < 8)
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "OP_QUERY message too short");
    p += 8; /* numberToSkip, numberToReturn */
    if (!bson_at(p, (size_t)(end - p), &q, &n, error))
        return false;
    dot = strchr(ns, '.');
    if (dot == NULL || strcmp(dot, ".$cmd") != 0 || (size_t)(dot - ns) >= sizeof db || dot == ns)
        return msim_fail(error, MSIM_E_COMMAND_NOT_SUPPORTED,
                         "OP_QUERY is only supported for commands on <db>.$cmd, not '%s'", ns);
    memcpy(db, ns, (size_t)(dot - ns));
    db[dot - ns] = '\0';
    src = &q;
    if (bson_iter_init_find(&it, &q, "$query") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        const uint8_t *d;
        uint32_t dl;
        bson_iter_document(&it, &dl, &d);
        if (!bson_init_static(&inner, d, dl))
            return msim_fail(error, MSIM_E_INVALID_BSON, "invalid $query document");
        src = &inner;
    }
    bson_init(&out->cmd);
    bson_iter_init(&it, src);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "$db") == 0)
            continue;
        msim_append_iter(&out->cmd, NULL, 0, &it);
    }
    BSON_APPEND_UTF8(&out->cmd, "$db", db);
    out->legacy = true;
    return true;
}

bool
msim_wire_parse(const uint8_t *buf, size_t len, msim_msg_t *out, mg_error_t *error)
{
    memset(out, 0, sizeof *out);
    if (len < 16)
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "message of %zu bytes is too short", len);
    out->length = rd32(buf);
    out->request_id = rd32(buf + 4);
    out->response_to = rd32(buf + 8);
    out->opcode = rd32(buf + 12);
    if (out->length < 16 || (size_t)out->length != len)
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "message length %d does not match %zu",
                         out->length, len);
    if (out->length > MSIM_MAX_MESSAGE_SIZE)
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                         "message length %d exceeds maxMessageSizeBytes %d", out->length,
                         MSIM_MAX_MESSAGE_SIZE);
    switch (out->opcode) {
    case MSIM_OP_MSG:
        return parse_op_msg(buf, len, out, error);
    case MSIM_OP_QUERY:
        return parse_op_query(buf, len, out, error);
    case MSIM_OP_COMPRESSED:
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                         "OP_COMPRESSED is not supported (no compressors were negotiated)");
    default:
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE, "unsupported opcode %d", out->opcode);
    }
}

size_t
msim_wire_reply_prefix(uint8_t *prefix, bool legacy, int32_t request_id, int32_t response_to,
                       uint32_t body_len)
{
    size_t n;
    if (legacy) {
        n = 16 + 4 + 8 + 4 + 4;
        wr32(prefix, (int32_t)(n + body_len));
        wr32(prefix + 4, request_id);
        wr32(prefix + 8, response_to);
        wr32(prefix + 12, MSIM_OP_REPLY);
        wr32(prefix + 16, 8); /* AwaitCapable */
        memset(prefix + 20, 0, 8);
        wr32(prefix + 28, 0);
        wr32(prefix + 32, 1);
        return n;
    }
    n = 16 + 4 + 1;
    wr32(prefix, (int32_t)(n + body_len));
    wr32(prefix + 4, request_id);
    wr32(prefix + 8, response_to);
    wr32(prefix + 12, MSIM_OP_MSG);
    wr32(prefix + 16, 0);
    prefix[20] = 0;
    return n;
}
