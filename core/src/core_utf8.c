/*
 * core/src/core_utf8.c - UTF-8 as PostgreSQL accepts it: one checker of a
 * character, and the copy that every shortened or outside-supplied text
 * (error messages, _id descriptions) goes through, so that nothing written
 * to Postgres, a log or a report is cut inside a character or carries a
 * byte that is not UTF-8.
 */
#include "mg/core.h"

#include <string.h>

size_t
mg_utf8_char_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];

    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return n >= 2 && (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        /* no overlong form (e0 a0..), no surrogate (ed ..9f) */
        uint8_t lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;

        return n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        /* no overlong form (f0 90..), nothing above U+10FFFF (f4 ..8f) */
        uint8_t lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;

        return n >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80
                   ? 4
                   : 0;
    }
    return 0;
}

bool
mg_utf8_valid(const void *data, size_t n)
{
    const uint8_t *s = data;
    size_t i = 0;

    while (i < n) {
        size_t l;

        if (s[i] < 0x80) {
            i++;
            continue;
        }
        l = mg_utf8_char_len(s + i, n - i);
        if (l == 0)
            return false;
        i += l;
    }
    return true;
}

size_t
mg_utf8_copy(char *out, size_t outsz, const char *text, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const uint8_t *s = (const uint8_t *)text;
    size_t cap, o = 0, mark = 0, i = 0;

    if (out == NULL || outsz == 0)
        return 0;
    cap = outsz - 1;
    while (i < len) {
        size_t l = s[i] == 0 ? 0 : mg_utf8_char_len(s + i, len - i);
        size_t w = l > 0 ? l : 4; /* a byte that is no character: \xNN */

        if (o + w > cap) {
            /* cut at the last boundary that leaves room for "..." */
            o = mark;
            if (cap - o >= 3) {
                memcpy(out + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (l > 0) {
            memcpy(out + o, s + i, l);
            i += l;
        } else {
            out[o] = '\\';
            out[o + 1] = 'x';
            out[o + 2] = hex[s[i] >> 4];
            out[o + 3] = hex[s[i] & 15];
            i++;
        }
        o += w;
        if (o + 3 <= cap || cap < 3) /* where a cut ends, with room for "..." if there can be */
            mark = o;
    }
    out[o] = '\0';
    return o;
}

size_t
mg_utf8_trim(char *s)
{
    size_t n = strlen(s), k = 0, start;
    uint8_t c;
    size_t want;

    /* the byte before the trailing continuation bytes (at most 3) */
    while (k < 3 && k < n && ((uint8_t)s[n - 1 - k] & 0xc0) == 0x80)
        k++;
    if (k == n)
        return n;
    start = n - 1 - k;
    c = (uint8_t)s[start];
    want = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
    if (c >= 0xc0 && want > n - start) {
        /* a lead byte whose character does not end before the string does: cut there */
        s[start] = '\0';
        return start;
    }
    return n;
}
