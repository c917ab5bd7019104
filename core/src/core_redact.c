/*
 * core/src/core_redact.c - replace passwords in URIs, conninfo strings and
 * JSON with a fixed marker before any text reaches a log, error or status.
 *
 * Two layers. The secrets the process was given (the passwords of every
 * URI and conninfo string among its options, read with the drivers' own
 * parsers - mongoc_uri_t and PQconninfoParse - and every option declared
 * secret) are learnt once and replaced wherever they appear, in every form
 * they can take in a text (as given, percent-encoded, JSON-escaped,
 * conninfo-escaped), whatever bytes they hold. Then a scanner masks what
 * looks like a password in text it was never told about: a URI's userinfo,
 * key=value pairs and JSON members with a secret key.
 */
#include "mg/core.h"

#include <ctype.h>
#include <libpq-fe.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Secrets shorter than this are only masked where they stand in a URI or conninfo string. */
#define SECRET_MIN_LEN 4
#define SECRET_MAX     2048 /* learnt forms, process-wide */

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

/*
 * token_end: a URI or an unquoted value ends at whitespace, never at a quote
 * or bracket (a password may hold them: masking too much is safe).
 */
static bool
token_end(char c)
{
    return c == '\0' || isspace((unsigned char)c);
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
    if (at == NULL && memchr(start, ':', (size_t)(end - start)) != NULL) {
        /* user:pass with a raw space in the password: the '@' later on the line */
        for (const char *q = end; *q != '\0' && *q != '\n' && at == NULL; q++) {
            if (q[0] == ':' && q[1] == '/' && q[2] == '/')
                break;
            if (*q == '@')
                at = q;
        }
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
redact_key_value(const char *p, size_t keylen, bool in_query, writer_t *w)
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
        /* a URI query value ends at '&' or '#' (it is percent-encoded); a libpq value
         * at whitespace, a backslash escaping the next byte */
        while (!token_end(*v) && !(in_query && (*v == '&' || *v == '#'))) {
            if (!in_query && *v == '\\' && v[1] != '\0')
                v++;
            v++;
        }
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

/* ---- the secrets the process was given ---- */

static pthread_mutex_t secrets_lock = PTHREAD_MUTEX_INITIALIZER;
static char *secrets[SECRET_MAX];
static size_t nsecrets;

/* learn_form adds one form of a secret (copied) unless known or too short. */
static void
learn_form(const char *form, size_t n)
{
    char *copy;

    if (n < SECRET_MIN_LEN)
        return;
    pthread_mutex_lock(&secrets_lock);
    for (size_t i = 0; i < nsecrets; i++) {
        if (strlen(secrets[i]) == n && memcmp(secrets[i], form, n) == 0) {
            pthread_mutex_unlock(&secrets_lock);
            return;
        }
    }
    if (nsecrets < SECRET_MAX && (copy = malloc(n + 1)) != NULL) {
        memcpy(copy, form, n);
        copy[n] = '\0';
        secrets[nsecrets++] = copy;
    }
    pthread_mutex_unlock(&secrets_lock);
}

/* The forms a secret takes in a text besides itself. */
typedef enum {
    FORM_PCT_UPPER,    /* percent-encoded, all but RFC 3986 unreserved, %2F */
    FORM_PCT_LOWER,    /* the same, %2f */
    FORM_JSON,         /* JSON string as yajl writes it: \" \\ \n ... \u001F */
    FORM_JSON_LOWER,   /* \u001f (Python, jq) */
    FORM_JSON_SOLIDUS, /* with \/ */
    FORM_CONNINFO,     /* a libpq value in single quotes: \' and \\ */
    FORM_COUNT,
} form_t;

/* encode writes the form of s (n bytes) into buf (room for 6n); returns its length. */
static size_t
encode(form_t form, const char *s, size_t n, char *buf)
{
    const char *hex =
        form == FORM_PCT_LOWER || form == FORM_JSON_LOWER ? "0123456789abcdef" : "0123456789ABCDEF";
    size_t k = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        if (form == FORM_PCT_UPPER || form == FORM_PCT_LOWER) {
            if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
                buf[k++] = (char)c;
            } else {
                buf[k++] = '%';
                buf[k++] = hex[c >> 4];
                buf[k++] = hex[c & 15];
            }
            continue;
        }
        if (form == FORM_CONNINFO) {
            if (c == '\'' || c == '\\')
                buf[k++] = '\\';
            buf[k++] = (char)c;
            continue;
        }
        switch (c) { /* JSON */
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '/':
            esc = form == FORM_JSON_SOLIDUS ? "\\/" : NULL;
            break;
        default:
            break;
        }
        if (esc != NULL) {
            memcpy(buf + k, esc, 2);
            k += 2;
        } else if (c < 0x20) {
            memcpy(buf + k, "\\u00", 4);
            buf[k + 4] = hex[c >> 4];
            buf[k + 5] = hex[c & 15];
            k += 6;
        } else {
            buf[k++] = (char)c;
        }
    }
    return k;
}

/* learn_secret adds s and the forms it takes percent-encoded, JSON- and conninfo-escaped. */
static void
learn_secret(const char *s)
{
    size_t n = strlen(s);
    char *buf = malloc(n * 6 + 1);

    if (buf == NULL)
        return;
    learn_form(s, n);
    for (int f = 0; f < FORM_COUNT; f++)
        learn_form(buf, encode((form_t)f, s, n, buf));
    free(buf);
}

/* userinfo_password learns the password of scheme://user:PASSWORD@host as it is written. */
static void
userinfo_password(const char *text)
{
    const char *start = strstr(text, "://"), *colon, *at = NULL;

    if (start == NULL)
        return;
    start += 3;
    for (const char *q = start; *q != '\0'; q++) {
        if (*q == '@')
            at = q;
    }
    if (at == NULL || (colon = memchr(start, ':', (size_t)(at - start))) == NULL)
        return;
    learn_form(colon + 1, (size_t)(at - colon - 1));
    /* and decoded, whether or not the driver accepts it (it may refuse bad UTF-8) */
    char *raw = malloc((size_t)(at - colon));
    size_t k = 0;
    if (raw == NULL)
        return;
    for (const char *q = colon + 1; q < at; q++) {
        int hi, lo;
        if (*q == '%' && q + 2 < at && (hi = mg_hex_digit(q[1])) >= 0 &&
            (lo = mg_hex_digit(q[2])) >= 0 && (hi | lo) != 0) {
            raw[k++] = (char)(hi << 4 | lo);
            q += 2;
        } else {
            raw[k++] = *q;
        }
    }
    raw[k] = '\0';
    learn_secret(raw);
    free(raw);
}

void
mg_redact_learn(const char *text, bool secret)
{
    if (text == NULL || text[0] == '\0')
        return;
    if (secret)
        learn_secret(text);
    if (strncmp(text, "mongodb://", 10) == 0 || strncmp(text, "mongodb+srv://", 14) == 0) {
        bson_error_t be;
        /* first: a warning libmongoc logs while parsing is redacted with it */
        userinfo_password(text);
        mongoc_uri_t *uri = mongoc_uri_new_with_error(text, &be);
        const char *pw = uri != NULL ? mongoc_uri_get_password(uri) : NULL;
        if (pw != NULL)
            learn_secret(pw);
        mongoc_uri_destroy(uri);
        return;
    }
    char *why = NULL;
    PQconninfoOption *opts = PQconninfoParse(text, &why);
    for (PQconninfoOption *o = opts; o != NULL && o->keyword != NULL; o++) {
        if (o->val != NULL && strcmp(o->keyword, "password") == 0)
            learn_secret(o->val);
    }
    PQconninfoFree(opts);
    PQfreemem(why);
    if (strstr(text, "://") != NULL)
        userinfo_password(text);
}

/*
 * known_at returns the length of the longest learnt secret starting at p
 * (0 when none): the caller writes MG_REDACTED in its place.
 */
static size_t
known_at(const char *p, char *const *known, size_t nknown)
{
    size_t best = 0;

    for (size_t i = 0; i < nknown; i++) {
        size_t n = strlen(known[i]);
        if (n > best && known[i][0] == *p && strncmp(p, known[i], n) == 0)
            best = n;
    }
    return best;
}

/* replace_known writes text with every learnt secret replaced; returns how many. */
static size_t
replace_known(const char *text, char *const *known, size_t nknown, writer_t *w)
{
    size_t count = 0;

    for (const char *p = text; *p != '\0';) {
        size_t n = known_at(p, known, nknown);
        if (n > 0) {
            put(w, MG_REDACTED, strlen(MG_REDACTED));
            p += n;
            count++;
        } else {
            put(w, p++, 1);
        }
    }
    return count;
}

/* scan runs the scanner; returns the number of secrets replaced. */
static size_t
scan(const char *text, writer_t *w)
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
            used = redact_key_value(p, keylen, p > text && (p[-1] == '?' || p[-1] == '&'), w);
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

/* redact replaces the learnt secrets, then runs the scanner; returns the count. */
static size_t
redact(const char *text, writer_t *w)
{
    char *known[SECRET_MAX];
    size_t nknown, count;
    writer_t measure = {NULL, 0, 0};
    char *mid;

    pthread_mutex_lock(&secrets_lock);
    nknown = nsecrets; /* entries are never changed or freed once learnt */
    memcpy(known, secrets, nknown * sizeof(char *));
    pthread_mutex_unlock(&secrets_lock);
    if (nknown == 0 || (count = replace_known(text, known, nknown, &measure)) == 0)
        return scan(text, w);
    if ((mid = malloc(measure.len + 1)) == NULL) {
        put(w, MG_REDACTED, strlen(MG_REDACTED)); /* fail closed */
        return 1;
    }
    writer_t mw = {mid, measure.len, 0};
    replace_known(text, known, nknown, &mw);
    mid[measure.len] = '\0';
    count += scan(mid, w);
    free(mid);
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
