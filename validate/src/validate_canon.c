/*
 * validate/src/validate_canon.c - the canonical text the checksums hash:
 * jsonb's own text output.
 *
 * PostgreSQL prints a jsonb value in one canonical way: object keys sorted
 * (shorter first, then bytewise on the unescaped UTF-8), a duplicate key
 * reduced to its last value, ", " between members and elements, ": " after
 * keys, strings escaped only for '"', '\\', \b \f \n \r \t and other
 * control characters (\u00xx, lower-case hex), numbers as numeric_out
 * prints them (the digits the renderer wrote: it never writes exponents).
 * So the target's `doc` text is hashed as it arrives, and the source's
 * BSON goes through the schema renderer and then this normaliser, which
 * rewrites the renderer's JSON into that form. A divergence could only
 * make a document look different; the drill-down compares the canonical
 * BSON forms before naming anything (validate_check.c).
 */
#include "validate_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 256

typedef struct {
    const char *p;
    const char *end;
    mg_buf_t *out;
    mg_buf_t *keys; /* unescaped keys of the objects being written */
    mg_error_t *error;
    int depth;
} norm_t;

/* One member of an object being normalised. */
typedef struct {
    const char *key; /* unescaped: in the input, or in keys (which never moves) */
    size_t key_len;
    size_t text_off; /* the member's text ("key": value) in out */
    size_t text_len;
    size_t index; /* position in the input: the last duplicate wins */
} member_t;

/* put appends n bytes: memcpy when they fit, mg_buf_append (growth, cap) otherwise. */
static inline bool
put(mg_buf_t *out, const char *p, size_t n, mg_error_t *error)
{
    if (out->data != NULL && out->len + n <= out->cap) {
        memcpy(out->data + out->len, p, n);
        out->len += n;
        out->data[out->len] = '\0';
        return true;
    }
    return mg_buf_append(out, p, n, error);
}

static bool
fail(norm_t *n, const char *what)
{
    return mg_error_set(n->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                        "cannot normalise JSON: %s at offset %zu", what, (size_t)(n->end - n->p));
}

static void
skip_ws(norm_t *n)
{
    while (n->p < n->end && (*n->p == ' ' || *n->p == '\t' || *n->p == '\n' || *n->p == '\r'))
        n->p++;
}

static bool
read_hex4(norm_t *n, const char *p, unsigned *v)
{
    unsigned r = 0;

    if (n->end - p < 4)
        return false;
    for (int i = 0; i < 4; i++) {
        int h = mg_hex_digit(p[i]);
        if (h < 0)
            return false;
        r = (r << 4) | (unsigned)h;
    }
    *v = r;
    return true;
}

/* unescape appends the unescaped bytes of the string at n->p (after its '"') to dst. */
static bool
unescape(norm_t *n, mg_buf_t *dst)
{
    const char *run = n->p;

    for (;;) {
        if (n->p >= n->end)
            return fail(n, "unterminated string");
        char c = *n->p;
        if (c == '"') {
            if (!put(dst, run, (size_t)(n->p - run), n->error))
                return false;
            n->p++;
            return true;
        }
        if (c != '\\') {
            n->p++;
            continue;
        }
        if (!put(dst, run, (size_t)(n->p - run), n->error))
            return false;
        if (n->end - n->p < 2)
            return fail(n, "bad escape");
        char e = n->p[1];
        char one;
        n->p += 2;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            one = e;
            break;
        case 'b':
            one = '\b';
            break;
        case 'f':
            one = '\f';
            break;
        case 'n':
            one = '\n';
            break;
        case 'r':
            one = '\r';
            break;
        case 't':
            one = '\t';
            break;
        case 'u': {
            unsigned cp, lo;
            char u8[4];
            size_t k = 0;
            if (!read_hex4(n, n->p, &cp))
                return fail(n, "bad \\u escape");
            n->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (n->end - n->p < 6 || n->p[0] != '\\' || n->p[1] != 'u' ||
                    !read_hex4(n, n->p + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                    return fail(n, "lone surrogate");
                n->p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            }
            if (cp < 0x80) {
                u8[k++] = (char)cp;
            } else if (cp < 0x800) {
                u8[k++] = (char)(0xC0 | (cp >> 6));
                u8[k++] = (char)(0x80 | (cp & 0x3F));
            } else if (cp < 0x10000) {
                u8[k++] = (char)(0xE0 | (cp >> 12));
                u8[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u8[k++] = (char)(0x80 | (cp & 0x3F));
            } else {
                u8[k++] = (char)(0xF0 | (cp >> 18));
                u8[k++] = (char)(0x80 | ((cp >> 12) & 0x3F));
                u8[k++] = (char)(0x80 | ((cp >> 6) & 0x3F));
                u8[k++] = (char)(0x80 | (cp & 0x3F));
            }
            if (!put(dst, u8, k, n->error))
                return false;
            run = n->p;
            continue;
        }
        default:
            return fail(n, "bad escape");
        }
        if (!put(dst, &one, 1, n->error))
            return false;
        run = n->p;
    }
}

/* escape_jsonb appends bytes as a JSON string the way jsonb prints it. */
static bool
escape_jsonb(mg_buf_t *out, const char *s, size_t len, mg_error_t *error)
{
    size_t run = 0;

    if (!put(out, "\"", 1, error))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *rep = NULL;
        char u[8];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        switch (c) {
        case '\b':
            rep = "\\b";
            break;
        case '\f':
            rep = "\\f";
            break;
        case '\n':
            rep = "\\n";
            break;
        case '\r':
            rep = "\\r";
            break;
        case '\t':
            rep = "\\t";
            break;
        case '"':
            rep = "\\\"";
            break;
        case '\\':
            rep = "\\\\";
            break;
        default:
            snprintf(u, sizeof(u), "\\u%04x", c);
            rep = u;
        }
        if (!put(out, s + run, i - run, error) || !put(out, rep, strlen(rep), error))
            return false;
        run = i + 1;
    }
    return put(out, s + run, len - run, error) && put(out, "\"", 1, error);
}

static bool value(norm_t *n);

static int
member_cmp(const member_t *x, const member_t *y)
{
    int c;

    if (x->key_len != y->key_len)
        return x->key_len < y->key_len ? -1 : 1;
    c = memcmp(x->key, y->key, x->key_len);
    if (c != 0)
        return c;
    return x->index < y->index ? -1 : (x->index > y->index ? 1 : 0);
}

/* Small insertion sort: objects are short; qsort_r is not portable enough. */
static void
sort_members(member_t *m, size_t count)
{
    for (size_t i = 1; i < count; i++) {
        member_t t = m[i];
        size_t j = i;
        while (j > 0 && member_cmp(&m[j - 1], &t) > 0) {
            m[j] = m[j - 1];
            j--;
        }
        m[j] = t;
    }
}

/*
 * write_sorted rewrites the object written at out[start..] with its members
 * m (count, sorted) in jsonb's order, the last of equal keys kept: the
 * sorted members go after the scratch text, then move down; the room is
 * reserved first so the member texts do not move.
 */
static bool
write_sorted(norm_t *n, const member_t *m, size_t count, size_t start)
{
    size_t need = 2 + 2 * count, scratch_end, len;
    bool first = true;

    for (size_t i = 0; i < count; i++)
        need += m[i].text_len;
    if (!mg_buf_reserve(n->out, need, n->error))
        return false;
    scratch_end = n->out->len;
    if (!put(n->out, "{", 1, n->error))
        return false;
    for (size_t i = 0; i < count; i++) {
        /* of equal keys only the last (highest index, sorted last) is kept */
        if (i + 1 < count && m[i].key_len == m[i + 1].key_len &&
            memcmp(m[i].key, m[i + 1].key, m[i].key_len) == 0)
            continue;
        if (!first && !put(n->out, ", ", 2, n->error))
            return false;
        first = false;
        if (!put(n->out, n->out->data + m[i].text_off, m[i].text_len, n->error))
            return false;
    }
    if (!put(n->out, "}", 1, n->error))
        return false;
    len = n->out->len - scratch_end;
    memmove(n->out->data + start, n->out->data + scratch_end, len);
    n->out->len = start + len;
    n->out->data[n->out->len] = '\0';
    return true;
}

static bool
object(norm_t *n)
{
    size_t start = n->out->len, keys_start = n->keys->len;
    member_t local[32], *m = local;
    size_t count = 0, cap = 32;
    bool ok = false;

    bool in_order = true;

    n->p++; /* { */
    skip_ws(n);
    if (n->p < n->end && *n->p == '}') {
        n->p++;
        return put(n->out, "{}", 2, n->error);
    }
    if (!put(n->out, "{", 1, n->error))
        goto done;
    for (;;) {
        skip_ws(n);
        if (n->p >= n->end || *n->p != '"') {
            fail(n, "expected a key");
            goto done;
        }
        if (count == cap) {
            member_t *grown = malloc(cap * 2 * sizeof(*grown));
            if (grown == NULL) {
                mg_error_set(n->error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
                goto done;
            }
            memcpy(grown, m, count * sizeof(*m));
            if (m != local)
                free(m);
            m = grown;
            cap *= 2;
        }
        member_t *mm = &m[count];
        const char *q = n->p + 1;
        bool plain;
        mm->index = count;
        /* fast path: a key with nothing escaped is its own unescaped form */
        while (q < n->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
            q++;
        plain = q < n->end && *q == '"';
        if (plain) {
            mm->key = n->p + 1;
            mm->key_len = (size_t)(q - mm->key);
            n->p = q + 1;
        } else {
            size_t off = n->keys->len;
            n->p++;
            if (!unescape(n, n->keys))
                goto done;
            mm->key = n->keys->data + off;
            mm->key_len = n->keys->len - off;
        }
        skip_ws(n);
        if (n->p >= n->end || *n->p != ':') {
            fail(n, "expected ':'");
            goto done;
        }
        n->p++;
        if (count > 0 && !put(n->out, ", ", 2, n->error))
            goto done;
        mm->text_off = n->out->len;
        if (count > 0 && in_order && member_cmp(&m[count - 1], mm) >= 0)
            in_order = false;
        if (count > 0 && in_order && m[count - 1].key_len == mm->key_len &&
            memcmp(m[count - 1].key, mm->key, mm->key_len) == 0)
            in_order = false; /* a duplicate: same key, later index sorts after */
        if (plain ? !put(n->out, mm->key - 1, mm->key_len + 2, n->error)
                  : !escape_jsonb(n->out, mm->key, mm->key_len, n->error))
            goto done;
        if (!put(n->out, ": ", 2, n->error) || !value(n))
            goto done;
        mm->text_len = n->out->len - mm->text_off;
        count++;
        skip_ws(n);
        if (n->p < n->end && *n->p == ',') {
            n->p++;
            continue;
        }
        if (n->p < n->end && *n->p == '}') {
            n->p++;
            break;
        }
        fail(n, "expected ',' or '}'");
        goto done;
    }
    if (in_order) { /* already jsonb's order, no duplicate: the text is final */
        ok = put(n->out, "}", 1, n->error);
        goto done;
    }
    sort_members(m, count);
    if (!write_sorted(n, m, count, start))
        goto done;
    ok = true;
done:
    n->keys->len = keys_start;
    if (m != local)
        free(m);
    return ok;
}

static bool
array(norm_t *n)
{
    bool first = true;

    n->p++; /* [ */
    if (!put(n->out, "[", 1, n->error))
        return false;
    skip_ws(n);
    if (n->p < n->end && *n->p == ']') {
        n->p++;
        return put(n->out, "]", 1, n->error);
    }
    for (;;) {
        if (!first && !put(n->out, ", ", 2, n->error))
            return false;
        first = false;
        if (!value(n))
            return false;
        skip_ws(n);
        if (n->p < n->end && *n->p == ',') {
            n->p++;
            continue;
        }
        if (n->p < n->end && *n->p == ']') {
            n->p++;
            return put(n->out, "]", 1, n->error);
        }
        return fail(n, "expected ',' or ']'");
    }
}

static bool
value(norm_t *n)
{
    bool ok;

    skip_ws(n);
    if (n->p >= n->end)
        return fail(n, "unexpected end");
    if (++n->depth > MAX_DEPTH)
        return fail(n, "nesting too deep");
    switch (*n->p) {
    case '{':
        ok = object(n);
        break;
    case '[':
        ok = array(n);
        break;
    case '"': {
        /* fast path: nothing to unescape or escape differently */
        const char *q = n->p + 1;
        while (q < n->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20)
            q++;
        if (q < n->end && *q == '"') {
            ok = put(n->out, n->p, (size_t)(q + 1 - n->p), n->error);
            n->p = q + 1;
            break;
        }
        size_t mark = n->keys->len;
        n->p++;
        ok = unescape(n, n->keys) &&
             escape_jsonb(n->out, n->keys->data + mark, n->keys->len - mark, n->error);
        n->keys->len = mark;
        break;
    }
    default: {
        /* number, true, false, null: copied as written */
        const char *s = n->p;
        while (n->p < n->end && *n->p != ',' && *n->p != '}' && *n->p != ']' && *n->p != ' ' &&
               *n->p != '\n' && *n->p != '\t' && *n->p != '\r')
            n->p++;
        if (n->p == s)
            return fail(n, "empty value");
        ok = put(n->out, s, (size_t)(n->p - s), n->error);
    }
    }
    n->depth--;
    return ok;
}

bool
mg_validate__jsonb_normalize(const char *json, size_t len, mg_buf_t *out, mg_buf_t *scratch,
                             mg_error_t *error)
{
    norm_t n = {json, json + len, out, scratch, error, 0};
    size_t out_len = out->len;

    /* unescaped keys and strings never outgrow the input: reserving it keeps
     * pointers into scratch valid while an object is sorted */
    mg_buf_reset(scratch);
    if (!mg_buf_reserve(scratch, len + 16, error))
        return false;
    if (!value(&n)) {
        out->len = out_len;
        return false;
    }
    skip_ws(&n);
    if (n.p != n.end) {
        out->len = out_len;
        return fail(&n, "trailing bytes");
    }
    return true;
}

/* skip_value moves p past one JSON value (jsonb text: no escapes beyond \"). */
static const char *
skip_value(const char *p, const char *end)
{
    int depth = 0;
    bool in_str = false;

    for (; p < end; p++) {
        char c = *p;
        if (in_str) {
            if (c == '\\')
                p++;
            else if (c == '"') {
                in_str = false;
                if (depth == 0)
                    return p + 1;
            }
            continue;
        }
        if (c == '"')
            in_str = true;
        else if (c == '{' || c == '[')
            depth++;
        else if (c == '}' || c == ']') {
            if (depth == 0)
                return p;
            if (--depth == 0)
                return p + 1;
        } else if (depth == 0 && c == ',')
            return p;
    }
    return end;
}

bool
mg_validate__jsonb_id_span(const char *text, size_t len, const char **v, size_t *vlen)
{
    const char *p = text, *end = text + len;

    if (p >= end || *p != '{')
        return false;
    p++;
    while (p < end) {
        while (p < end && (*p == ' ' || *p == ','))
            p++;
        if (p >= end || *p != '"')
            return false;
        const char *k = p + 1;
        const char *kend = k;
        size_t klen = 0; /* unescaped length (jsonb escapes only control characters) */
        while (kend < end && *kend != '"') {
            if (*kend == '\\')
                kend += kend + 1 < end && kend[1] == 'u' ? 5 : 1;
            kend++;
            klen++;
        }
        if (kend >= end)
            return false;
        bool is_id = kend - k == 3 && memcmp(k, "_id", 3) == 0;
        p = kend + 1;
        if (end - p < 2 || p[0] != ':' || p[1] != ' ')
            return false;
        p += 2;
        const char *vend = skip_value(p, end);
        if (is_id) {
            *v = p;
            *vlen = (size_t)(vend - p);
            return true;
        }
        /* keys are sorted shorter first: past length 3, no _id */
        if (klen > 3)
            return false;
        p = vend;
    }
    return false;
}
