/*
 * core/src/core_redact.c - replace passwords in URIs, conninfo strings and
 * JSON with a fixed marker before any text reaches a log, error or status.
 */
#include "mg/core.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Keys whose value is a secret, in key=value and JSON form. */
static const char *const secret_keys[] = {"password", "passwd", "secret", NULL};

/* A bounded writer that keeps counting past its capacity. */
typedef struct {
    char *out;
    size_t cap;
    size_t len; /* bytes that the full output needs (without NUL) */
} writer_t;

static void
put(writer_t *w, const char *s, size_t n)
{
    if (w->out != NULL && w->len < w->cap) {
        size_t room = w->cap - w->len;
        memcpy(w->out + w->len, s, n < room ? n : room);
    }
    w->len += n;
}

static bool
token_end(char c)
{
    return c == '\0' || isspace((unsigned char)c) || c == '"' || c == '\'' || c == '<' ||
           c == '>' || c == '`';
}

/*
 * match_key returns the length of a secret key at p (case-insensitive) when
 * p starts a word, else 0.
 */
static size_t
match_key(const char *text, const char *p)
{
    if (p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_'))
        return 0;
    for (int k = 0; secret_keys[k] != NULL; k++) {
        size_t n = strlen(secret_keys[k]);
        if (strncasecmp(p, secret_keys[k], n) == 0 && !isalnum((unsigned char)p[n]) && p[n] != '_')
            return n;
    }
    return 0;
}

/*
 * redact_uri_userinfo handles p pointing at "://": returns the number of
 * input bytes consumed (0 when there is no password to hide).
 */
static size_t
redact_uri_userinfo(const char *p, writer_t *w)
{
    const char *start = p + 3;
    const char *end = start;
    const char *at = NULL;
    const char *colon;

    while (!token_end(*end))
        end++;
    /* The last '@' before the path wins: a password may hold an unescaped '@'. */
    for (const char *q = start; q < end; q++) {
        if (*q == '@')
            at = q;
    }
    if (at == NULL)
        return 0;
    colon = memchr(start, ':', (size_t)(at - start));
    if (colon == NULL)
        return 0;
    put(w, p, (size_t)(colon + 1 - p));
    put(w, MG_REDACTED, strlen(MG_REDACTED));
    put(w, "@", 1);
    return (size_t)(at + 1 - p);
}

/*
 * redact_key_value handles p at a secret key followed by '=' (conninfo or
 * URI query): returns bytes consumed, 0 when it is not such a pair.
 */
static size_t
redact_key_value(const char *p, size_t keylen, writer_t *w)
{
    const char *q = p + keylen;
    const char *v;

    while (*q == ' ' || *q == '\t')
        q++;
    if (*q != '=')
        return 0;
    q++;
    while (*q == ' ' || *q == '\t')
        q++;
    put(w, p, (size_t)(q - p));
    v = q;
    if (*v == '\'') {
        /* libpq quoting: backslash escapes, closing single quote */
        v++;
        while (*v != '\0' && *v != '\'') {
            if (*v == '\\' && v[1] != '\0')
                v++;
            v++;
        }
        if (*v == '\'')
            v++;
    } else {
        while (!token_end(*v) && *v != '&' && *v != ';' && *v != ',')
            v++;
    }
    put(w, MG_REDACTED, strlen(MG_REDACTED));
    return (size_t)(v - p);
}

/*
 * redact_json_member handles p at '"' starting a JSON key: when the key is
 * a secret and its value a string, the value is replaced. Returns bytes
 * consumed or 0.
 */
static size_t
redact_json_member(const char *p, writer_t *w)
{
    const char *q;
    size_t keylen = 0;

    for (int k = 0; secret_keys[k] != NULL; k++) {
        size_t n = strlen(secret_keys[k]);
        if (strncasecmp(p + 1, secret_keys[k], n) == 0 && p[1 + n] == '"') {
            keylen = n;
            break;
        }
    }
    if (keylen == 0)
        return 0;
    q = p + 2 + keylen;
    while (isspace((unsigned char)*q))
        q++;
    if (*q != ':')
        return 0;
    q++;
    while (isspace((unsigned char)*q))
        q++;
    if (*q != '"')
        return 0;
    q++;
    put(w, p, (size_t)(q - p));
    while (*q != '\0' && *q != '"') {
        if (*q == '\\' && q[1] != '\0')
            q++;
        q++;
    }
    put(w, MG_REDACTED, strlen(MG_REDACTED));
    return (size_t)(q - p); /* the closing quote is copied by the caller */
}

/* redact runs the scanner; returns the number of secrets replaced. */
static size_t
redact(const char *text, writer_t *w)
{
    size_t count = 0;
    const char *p = text;

    while (*p != '\0') {
        size_t used = 0;
        size_t keylen;

        if (p[0] == ':' && p[1] == '/' && p[2] == '/')
            used = redact_uri_userinfo(p, w);
        else if (*p == '"')
            used = redact_json_member(p, w);
        else if ((keylen = match_key(text, p)) > 0)
            used = redact_key_value(p, keylen, w);
        if (used > 0) {
            count++;
            p += used;
            continue;
        }
        put(w, p, 1);
        p++;
    }
    return count;
}

size_t
mg_redact_copy(const char *text, char *out, size_t outsz)
{
    writer_t w = {out, outsz > 0 ? outsz - 1 : 0, 0};
    size_t count;

    if (out == NULL || outsz == 0)
        return 0;
    if (text == NULL) {
        out[0] = '\0';
        return 0;
    }
    count = redact(text, &w);
    out[w.len < w.cap ? w.len : w.cap] = '\0';
    return count;
}

char *
mg_redact_dup(const char *text)
{
    writer_t measure = {NULL, 0, 0};
    char *out;

    if (text == NULL)
        return NULL;
    redact(text, &measure);
    out = malloc(measure.len + 1);
    if (out == NULL)
        return NULL;
    mg_redact_copy(text, out, measure.len + 1);
    return out;
}
