/*
 * validate/src/validate_diff.c - field-level diff of two documents through
 * their canonical forms: the paths where they differ and both values.
 *
 * Both documents are canonicalised first (keys in jsonb order, shorter
 * first then bytewise), so a merge walk over the two key lists finds the
 * fields present on one side only; documents recurse by key, arrays by
 * index; any other pair differs when its type or its value bytes differ.
 */
#include "validate_internal.h"

#include <stdlib.h>
#include <string.h>

#define VALUE_TEXT_MAX 4096
#define PATH_MAX_LEN   2048

typedef struct {
    mg_schema_fidelity_t fidelity;
    size_t max;
    mg_validate_field_diff_t *diffs;
    size_t n;
    size_t cap;
    bool more;
    char path[PATH_MAX_LEN];
} diff_ctx_t;

void
mg_validate_field_diffs_free(mg_validate_field_diff_t *diffs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(diffs[i].path);
        free(diffs[i].source_value);
        free(diffs[i].target_value);
    }
    free(diffs);
}

/*
 * render_value returns a malloc'd relaxed JSON text of the value, cut
 * between characters at VALUE_TEXT_MAX bytes ("..." ends a cut text): it
 * goes to PostgreSQL (validation_mismatches.fields) and to reports.
 */
static char *
render_value(const bson_iter_t *it)
{
    mg_buf_t buf;
    mg_error_t e;
    char *out;

    mg_buf_init(&buf, 64 * 1024 * 1024);
    if (!mg_schema_value_render(it, MG_SCHEMA_FIDELITY_RELAXED, &buf, NULL, &e)) {
        mg_buf_cleanup(&buf);
        return strdup("(unrenderable)");
    }
    out = malloc(VALUE_TEXT_MAX + 1);
    if (out != NULL)
        mg_utf8_copy(out, VALUE_TEXT_MAX + 1, buf.data != NULL ? buf.data : "", buf.len);
    mg_buf_cleanup(&buf);
    return out;
}

static void
type_name(const bson_iter_t *it, char *out, size_t outsz)
{
    const char *alias = it != NULL ? mg_schema_bson_type_alias(bson_iter_type(it)) : NULL;

    snprintf(out, outsz, "%s", alias != NULL ? alias : (it != NULL ? "unknown" : "absent"));
}

static bool
add_diff(diff_ctx_t *d, const bson_iter_t *s, const bson_iter_t *t, mg_error_t *error)
{
    mg_validate_field_diff_t *fd;

    if (d->n >= d->max) {
        d->more = true;
        return true;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        mg_validate_field_diff_t *grown = realloc(d->diffs, cap * sizeof(*grown));
        if (grown == NULL)
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
        d->diffs = grown;
        d->cap = cap;
    }
    fd = &d->diffs[d->n];
    memset(fd, 0, sizeof(*fd));
    fd->path = strdup(d->path);
    fd->source_value = s != NULL ? render_value(s) : NULL;
    fd->target_value = t != NULL ? render_value(t) : NULL;
    type_name(s, fd->source_type, sizeof(fd->source_type));
    type_name(t, fd->target_type, sizeof(fd->target_type));
    if (fd->path == NULL || (s != NULL && fd->source_value == NULL) ||
        (t != NULL && fd->target_value == NULL)) {
        free(fd->path);
        free(fd->source_value);
        free(fd->target_value);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    d->n++;
    return true;
}

/* key_cmp orders keys like jsonb: shorter first, then bytewise. */
static int
key_cmp(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    if (alen != blen)
        return alen < blen ? -1 : 1;
    return memcmp(a, b, alen);
}

static bool diff_container(diff_ctx_t *d, bson_iter_t *s, bson_iter_t *t, bool array,
                           mg_error_t *error);

/*
 * push_path appends ".key" (or "key" at the top) to the path, cut between
 * characters when it does not fit (the path goes to PostgreSQL); returns
 * the old length.
 */
static size_t
push_path(diff_ctx_t *d, const char *key, uint32_t len)
{
    size_t old = strlen(d->path);
    size_t room = sizeof(d->path) - old - 1;

    if (old > 0 && room > 0) {
        d->path[old] = '.';
        d->path[old + 1] = '\0';
        room--;
    }
    strncat(d->path, key, len < room ? len : room);
    if (len > room)
        mg_utf8_trim(d->path);
    return old;
}

static bool
diff_values(diff_ctx_t *d, bson_iter_t *s, bson_iter_t *t, mg_error_t *error)
{
    bson_type_t st = bson_iter_type(s), tt = bson_iter_type(t);
    const uint8_t *sb, *tb;
    size_t sl, tl;

    if (st == tt && (st == BSON_TYPE_DOCUMENT || st == BSON_TYPE_ARRAY)) {
        bson_iter_t sc, tc;
        if (!bson_iter_recurse(s, &sc) || !bson_iter_recurse(t, &tc))
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                                "corrupt document at \"%s\"", d->path);
        return diff_container(d, &sc, &tc, st == BSON_TYPE_ARRAY, error);
    }
    mg_validate__value_bytes(s, &sb, &sl);
    mg_validate__value_bytes(t, &tb, &tl);
    if (st != tt || sl != tl || memcmp(sb, tb, sl) != 0)
        return add_diff(d, s, t, error);
    return true;
}

static bool
diff_container(diff_ctx_t *d, bson_iter_t *s, bson_iter_t *t, bool array, mg_error_t *error)
{
    bool sh = bson_iter_next(s), th = bson_iter_next(t);

    while (sh || th) {
        int c;
        if (sh && th) {
            if (array)
                c = 0; /* canonical arrays are numbered 0..n-1 on both sides */
            else
                c = key_cmp(bson_iter_key(s), bson_iter_key_len(s), bson_iter_key(t),
                            bson_iter_key_len(t));
        } else {
            c = sh ? -1 : 1;
        }
        const bson_iter_t *at = c <= 0 ? s : t;
        size_t old = push_path(d, bson_iter_key(at), bson_iter_key_len(at));
        bool ok;
        if (c < 0)
            ok = add_diff(d, s, NULL, error);
        else if (c > 0)
            ok = add_diff(d, NULL, t, error);
        else
            ok = diff_values(d, s, t, error);
        d->path[old] = '\0';
        if (!ok)
            return false;
        if (c <= 0)
            sh = bson_iter_next(s);
        if (c >= 0)
            th = bson_iter_next(t);
    }
    return true;
}

bool
mg_validate_doc_diff(const bson_t *source, const bson_t *target, mg_schema_fidelity_t fidelity,
                     size_t max_diffs, mg_validate_field_diff_t **diffs, size_t *ndiffs, bool *more,
                     mg_error_t *error)
{
    diff_ctx_t d;
    bson_t *cs = NULL, *ct = NULL;
    bson_iter_t si, ti;
    bool ok = false;

    memset(&d, 0, sizeof(d));
    d.fidelity = fidelity;
    d.max = max_diffs;
    d.diffs = *diffs;
    d.n = d.cap = *ndiffs;
    cs = mg_schema_doc_canonicalize(source, fidelity, error);
    if (cs == NULL)
        goto done;
    ct = mg_schema_doc_canonicalize(target, fidelity, error);
    if (ct == NULL)
        goto done;
    if (!bson_iter_init(&si, cs) || !bson_iter_init(&ti, ct)) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE, "corrupt document");
        goto done;
    }
    ok = diff_container(&d, &si, &ti, false, error);
done:
    bson_destroy(cs);
    bson_destroy(ct);
    *diffs = d.diffs;
    *ndiffs = d.n;
    if (more != NULL)
        *more = *more || d.more;
    return ok;
}
