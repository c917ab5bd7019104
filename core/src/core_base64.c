/*
 * core/src/core_base64.c - the one base64 codec (RFC 4648, standard
 * alphabet, padded) of the core library, and hexadecimal digits.
 */
#include "mg/core.h"

static const char alphabet[65] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int
mg_hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t
mg_base64_encoded_len(size_t n)
{
    return (n + 2) / 3 * 4;
}

size_t
mg_base64_encode_to(const void *data, size_t n, char *out)
{
    const uint8_t *in = data;
    char *p = out;
    size_t i = 0;

    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *p++ = alphabet[v >> 18];
        *p++ = alphabet[(v >> 12) & 63];
        *p++ = alphabet[(v >> 6) & 63];
        *p++ = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        *p++ = alphabet[v >> 18];
        *p++ = alphabet[(v >> 12) & 63];
        *p++ = '=';
        *p++ = '=';
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        *p++ = alphabet[v >> 18];
        *p++ = alphabet[(v >> 12) & 63];
        *p++ = alphabet[(v >> 6) & 63];
        *p++ = '=';
    }
    return (size_t)(p - out);
}

bool
mg_base64_encode(const void *data, size_t n, mg_buf_t *out, mg_error_t *error)
{
    if (n > (SIZE_MAX - 3) / 4 * 3)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                            "could not encode %zu bytes as base64: too large", n);
    if (!mg_buf_reserve(out, mg_base64_encoded_len(n), error))
        return false;
    out->len += mg_base64_encode_to(data, n, out->data + out->len);
    out->data[out->len] = '\0';
    return true;
}

/* sextet returns the 6-bit value of c, or -1 when c is not in the alphabet. */
static int
sextet(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* decode is mg_base64_decode; canonical also refuses pad bits that are not zero. */
static bool
decode(const char *text, size_t len, bool canonical, mg_buf_t *out, mg_error_t *error)
{
    size_t start = out->len;

    if (len % 4 != 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "could not decode base64: length %zu is not a multiple of 4", len);
    if (!mg_buf_reserve(out, len / 4 * 3, error))
        return false;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            if (text[i + j] == '=' && i + 4 == len && j >= 2) {
                v[j] = 0;
                pad++;
                continue;
            }
            v[j] = pad > 0 ? -1 : sextet(text[i + j]);
            if (v[j] < 0) {
                out->len = start;
                out->data[start] = '\0';
                return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                                    "could not decode base64: invalid character at offset %zu",
                                    i + (size_t)j);
            }
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        if (canonical && ((pad == 1 && (w & 0xff) != 0) || (pad == 2 && (w & 0xffff) != 0))) {
            out->len = start;
            out->data[start] = '\0';
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                                "could not decode base64: the pad bits of the last group are "
                                "not zero");
        }
        out->data[out->len++] = (char)(w >> 16);
        if (pad < 2)
            out->data[out->len++] = (char)((w >> 8) & 0xff);
        if (pad < 1)
            out->data[out->len++] = (char)(w & 0xff);
    }
    out->data[out->len] = '\0';
    return true;
}

bool
mg_base64_decode(const char *text, size_t len, mg_buf_t *out, mg_error_t *error)
{
    return decode(text, len, false, out, error);
}

bool
mg_base64_decode_canonical(const char *text, size_t len, mg_buf_t *out, mg_error_t *error)
{
    return decode(text, len, true, out, error);
}
