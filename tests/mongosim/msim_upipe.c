/*
 * tests/mongosim/msim_upipe.c - pipeline-style updates (update with an
 * aggregation pipeline): the stages an update may run ($addFields / $set,
 * $project, $unset, $replaceRoot / $replaceWith), each over the document
 * the previous one produced, and the updateDescription mongod derives
 * from the document before and after (its delta diff), so the change is an
 * update event unless the diff is no smaller than the new document.
 */
#include "msim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct msim_upipe {
    bson_t *stages; /* {"0": {stage}, ...} as given */
};

static const char *const allowed[] = {"$addFields", "$set",         "$project",
                                      "$unset",     "$replaceRoot", "$replaceWith"};
static const char *const other_stages[] = {"$match",          "$sort",
                                           "$limit",          "$skip",
                                           "$group",          "$unwind",
                                           "$lookup",         "$graphLookup",
                                           "$facet",          "$bucket",
                                           "$bucketAuto",     "$count",
                                           "$sample",         "$out",
                                           "$merge",          "$sortByCount",
                                           "$redact",         "$geoNear",
                                           "$unionWith",      "$densify",
                                           "$fill",           "$setWindowFields",
                                           "$documents",      "$collStats",
                                           "$indexStats",     "$changeStream",
                                           "$currentOp",      "$listSessions",
                                           "$planCacheStats", "$search",
                                           "$searchMeta"};

static bool
known(const char *name, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], name) == 0)
            return true;
    return false;
}

static bool
check_stage(const bson_iter_t *st, mg_error_t *error)
{
    bson_iter_t c;
    const char *name;
    if (!BSON_ITER_HOLDS_DOCUMENT(st) || !bson_iter_recurse(st, &c) || !bson_iter_next(&c))
        return msim_fail(error, 40323,
                         "A pipeline stage specification object must contain exactly one field.");
    name = bson_iter_key(&c);
    if (bson_iter_next(&c))
        return msim_fail(error, 40323,
                         "A pipeline stage specification object must contain exactly one field.");
    if (known(name, allowed, sizeof allowed / sizeof allowed[0]))
        return true;
    if (known(name, other_stages, sizeof other_stages / sizeof other_stages[0]))
        return msim_fail(error, MSIM_E_INVALID_OPTIONS,
                         "%s is not allowed to be used within an update", name);
    return msim_fail(error, MSIM_E_UNRECOGNIZED_STAGE, "Unrecognized pipeline stage name: '%s'",
                     name);
}

msim_upipe_t *
msim_upipe_new(const bson_iter_t *pipeline, mg_error_t *error)
{
    msim_upipe_t *p;
    bson_iter_t st;
    const uint8_t *d;
    uint32_t l;
    bson_iter_recurse(pipeline, &st);
    while (bson_iter_next(&st))
        if (!check_stage(&st, error))
            return NULL;
    p = calloc(1, sizeof *p);
    if (p == NULL)
        abort();
    bson_iter_array(pipeline, &l, &d);
    p->stages = bson_new_from_data(d, l);
    return p;
}

void
msim_upipe_destroy(msim_upipe_t *p)
{
    if (p == NULL)
        return;
    bson_destroy(p->stages);
    free(p);
}

/* ------------------------------------------------------------------------
 * $addFields / $set
 * ------------------------------------------------------------------------ */

/* set_path sets value (NULL: removes) at the dotted path in m, mapping over arrays as
 * $addFields does; a scalar on the way becomes a document. */
static void
set_path(msim_mnode_t *m, const char *path, const msim_mnode_t *value)
{
    const char *dot = strchr(path, '.');
    size_t len = dot ? (size_t)(dot - path) : strlen(path), pos;
    char *name = strndup(path, len);
    msim_mnode_t *kid;
    if (name == NULL)
        abort();
    kid = msim_mnode_child(m, name, &pos);
    if (dot == NULL) {
        if (value == NULL) {
            if (kid != NULL)
                msim_mnode_free(msim_mnode_detach(m, pos));
        } else if (kid != NULL) {
            msim_mnode_t *v = msim_mnode_clone(value, name);
            msim_mnode_free(m->kids[pos]);
            m->kids[pos] = v;
        } else {
            msim_mnode_append(m, msim_mnode_clone(value, name));
        }
        free(name);
        return;
    }
    if (kid == NULL) {
        if (value == NULL) {
            free(name);
            return;
        }
        kid = msim_mnode_new(name, BSON_TYPE_DOCUMENT);
        msim_mnode_append(m, kid);
    }
    if (kid->type == BSON_TYPE_ARRAY) {
        for (size_t i = 0; i < kid->n; i++)
            if (kid->kids[i]->type == BSON_TYPE_DOCUMENT)
                set_path(kid->kids[i], dot + 1, value);
    } else {
        if (kid->type != BSON_TYPE_DOCUMENT)
            msim_mnode_set_raw(kid, BSON_TYPE_DOCUMENT, NULL, 0);
        set_path(kid, dot + 1, value);
    }
    free(name);
}

static bool
is_literal_doc(const bson_iter_t *v)
{
    bson_iter_t c;
    return BSON_ITER_HOLDS_DOCUMENT(v) && bson_iter_recurse(v, &c) && bson_iter_next(&c) &&
           bson_iter_key(&c)[0] != '$';
}

/* add_fields evaluates spec's fields against root (the stage's input) into m at prefix. */
static bool
add_fields(msim_mnode_t *m, const bson_iter_t *root, const bson_iter_t *spec, const char *prefix,
           mg_error_t *error)
{
    bson_iter_t s;
    bson_iter_recurse(spec, &s);
    while (bson_iter_next(&s)) {
        char *path = prefix[0] ? bson_strdup_printf("%s.%s", prefix, bson_iter_key(&s))
                               : bson_strdup(bson_iter_key(&s));
        bool ok = true;
        if (is_literal_doc(&s)) {
            /* {a: {b: 1}} adds a.b, keeping a's other fields */
            ok = add_fields(m, root, &s, path, error);
        } else {
            bson_t tmp = BSON_INITIALIZER;
            bson_iter_t v;
            ok = msim_expr_eval(&s, root, &tmp, "v", error);
            if (ok) {
                msim_mnode_t *val =
                    bson_iter_init_find(&v, &tmp, "v") ? msim_mnode_from_iter(NULL, &v) : NULL;
                set_path(m, path, val);
                msim_mnode_free(val);
            }
            bson_destroy(&tmp);
        }
        bson_free(path);
        if (!ok)
            return false;
    }
    return true;
}

static bool
stage_add_fields(const bson_iter_t *spec, const bson_t *in, bson_t *out, mg_error_t *error)
{
    msim_mnode_t *m = msim_mnode_from_bson(in);
    bson_iter_t root;
    bool ok;
    if (!BSON_ITER_HOLDS_DOCUMENT(spec)) {
        msim_mnode_free(m);
        return msim_fail(error, 40272, "$addFields specification stage must be an object, got %s",
                         msim_type_name(bson_iter_type(spec)));
    }
    bson_iter_init(&root, in);
    ok = add_fields(m, &root, spec, "", error);
    if (ok)
        msim_mnode_to_bson(m, out);
    msim_mnode_free(m);
    return ok;
}

/* ------------------------------------------------------------------------
 * $unset, $project, $replaceRoot / $replaceWith
 * ------------------------------------------------------------------------ */

static bool
stage_unset(const bson_iter_t *spec, const bson_t *in, bson_t *out, mg_error_t *error)
{
    msim_mnode_t *m = msim_mnode_from_bson(in);
    bson_iter_t f;
    if (BSON_ITER_HOLDS_UTF8(spec)) {
        set_path(m, bson_iter_utf8(spec, NULL), NULL);
    } else if (BSON_ITER_HOLDS_ARRAY(spec) && bson_iter_recurse(spec, &f)) {
        while (bson_iter_next(&f)) {
            if (!BSON_ITER_HOLDS_UTF8(&f)) {
                msim_mnode_free(m);
                return msim_fail(error, 31120,
                                 "$unset specification must be a string or an array containing "
                                 "only string values");
            }
            set_path(m, bson_iter_utf8(&f, NULL), NULL);
        }
    } else {
        msim_mnode_free(m);
        return msim_fail(error, 31002,
                         "$unset specification must be a string or an array with at least one "
                         "field");
    }
    msim_mnode_to_bson(m, out);
    msim_mnode_free(m);
    return true;
}

static bool
stage_project(const bson_iter_t *spec, const bson_t *in, bson_t *out, mg_error_t *error)
{
    const uint8_t *d;
    uint32_t l;
    bson_t s;
    msim_proj_t *p;
    if (!BSON_ITER_HOLDS_DOCUMENT(spec))
        return msim_fail(error, 15969, "$project specification must be an object");
    bson_iter_document(spec, &l, &d);
    bson_init_static(&s, d, l);
    if (bson_empty(&s))
        return msim_fail(error, 51272, "$project specification must have at least one field");
    p = msim_proj_new(&s, error);
    if (p == NULL)
        return false;
    msim_proj_apply(p, bson_get_data(in), in->len, out);
    msim_proj_destroy(p);
    return true;
}

static bool
stage_replace_root(const char *name, const bson_iter_t *spec, const bson_t *in, bson_t *out,
                   mg_error_t *error)
{
    bson_iter_t expr = *spec, root, v;
    bson_t tmp = BSON_INITIALIZER;
    bool ok;
    if (strcmp(name, "$replaceRoot") == 0) {
        bson_iter_t c;
        if (!BSON_ITER_HOLDS_DOCUMENT(spec) || !bson_iter_recurse(spec, &c) ||
            !bson_iter_find(&c, "newRoot"))
            return msim_fail(error, 40231, "no newRoot specified for the $replaceRoot stage");
        expr = c;
    }
    bson_iter_init(&root, in);
    ok = msim_expr_eval(&expr, &root, &tmp, "v", error);
    if (ok && (!bson_iter_init_find(&v, &tmp, "v") || !BSON_ITER_HOLDS_DOCUMENT(&v))) {
        char *j = msim_json_of(in);
        bool missing = !bson_iter_init_find(&v, &tmp, "v");
        ok = msim_fail(error, 40228,
                       "'newRoot' expression must evaluate to an object, but resulting value "
                       "was: %s. Type of resulting value: '%s'. Input document: %s",
                       missing ? "MISSING" : "...",
                       missing ? "missing" : msim_type_name(bson_iter_type(&v)), j ? j : "{}");
        bson_free(j);
    } else if (ok) {
        const uint8_t *d;
        uint32_t l;
        bson_t sub;
        bson_iter_document(&v, &l, &d);
        bson_init_static(&sub, d, l);
        bson_concat(out, &sub);
    }
    bson_destroy(&tmp);
    return ok;
}

bool
msim_upipe_run(const msim_upipe_t *p, const bson_t *doc, bson_t *out, mg_error_t *error)
{
    bson_t cur;
    bson_iter_t st;
    bool ok = true;
    bson_copy_to(doc, &cur);
    bson_iter_init(&st, p->stages);
    while (ok && bson_iter_next(&st)) {
        bson_iter_t c;
        const char *name;
        bson_t next = BSON_INITIALIZER;
        bson_iter_recurse(&st, &c);
        bson_iter_next(&c);
        name = bson_iter_key(&c);
        if (strcmp(name, "$addFields") == 0 || strcmp(name, "$set") == 0)
            ok = stage_add_fields(&c, &cur, &next, error);
        else if (strcmp(name, "$unset") == 0)
            ok = stage_unset(&c, &cur, &next, error);
        else if (strcmp(name, "$project") == 0)
            ok = stage_project(&c, &cur, &next, error);
        else
            ok = stage_replace_root(name, &c, &cur, &next, error);
        bson_destroy(&cur);
        cur = next;
    }
    if (ok)
        bson_concat(out, &cur);
    bson_destroy(&cur);
    return ok;
}

/* ------------------------------------------------------------------------
 * The delta: updateDescription of pre -> post
 * ------------------------------------------------------------------------ */

typedef struct {
    bson_t upd, rem, trunc;
    uint32_t nrem, ntrunc;
} diff_t;

static bool
same_bytes(const bson_iter_t *a, const bson_iter_t *b)
{
    return bson_iter_type(a) == bson_iter_type(b) && a->next_off - a->d1 == b->next_off - b->d1 &&
           memcmp(a->raw + a->d1, b->raw + b->d1, a->next_off - a->d1) == 0;
}

static void diff_obj(diff_t *df, const bson_iter_t *pre, const bson_iter_t *post,
                     const char *prefix);

static void
diff_value(diff_t *df, const bson_iter_t *a, const bson_iter_t *b, const char *path)
{
    bson_iter_t ca, cb;
    if (same_bytes(a, b))
        return;
    if (BSON_ITER_HOLDS_DOCUMENT(a) && BSON_ITER_HOLDS_DOCUMENT(b)) {
        bson_iter_recurse(a, &ca);
        bson_iter_recurse(b, &cb);
        diff_obj(df, &ca, &cb, path);
    } else if (BSON_ITER_HOLDS_ARRAY(a) && BSON_ITER_HOLDS_ARRAY(b)) {
        uint32_t i = 0;
        bool na, nb;
        bson_iter_recurse(a, &ca);
        bson_iter_recurse(b, &cb);
        for (;; i++) {
            char *sub = bson_strdup_printf("%s.%u", path, i);
            na = bson_iter_next(&ca);
            nb = bson_iter_next(&cb);
            if (na && nb)
                diff_value(df, &ca, &cb, sub);
            else if (nb)
                msim_append_iter(&df->upd, sub, -1, &cb);
            bson_free(sub);
            if (!nb)
                break;
        }
        if (na) {
            bson_t t;
            char k[16];
            const char *ks;
            bson_uint32_to_string(df->ntrunc++, &ks, k, sizeof k);
            bson_append_document_begin(&df->trunc, ks, -1, &t);
            BSON_APPEND_UTF8(&t, "field", path);
            BSON_APPEND_INT32(&t, "newSize", (int32_t)i);
            bson_append_document_end(&df->trunc, &t);
        }
    } else {
        msim_append_iter(&df->upd, path, -1, b);
    }
}

static void
diff_obj(diff_t *df, const bson_iter_t *pre, const bson_iter_t *post, const char *prefix)
{
    bson_iter_t a = *pre, b = *post;
    while (bson_iter_next(&a)) {
        bson_iter_t f = *post;
        if (!bson_iter_find(&f, bson_iter_key(&a))) {
            char *path = prefix[0] ? bson_strdup_printf("%s.%s", prefix, bson_iter_key(&a))
                                   : bson_strdup(bson_iter_key(&a));
            char k[16];
            const char *ks;
            bson_uint32_to_string(df->nrem++, &ks, k, sizeof k);
            bson_append_utf8(&df->rem, ks, -1, path, -1);
            bson_free(path);
        }
    }
    while (bson_iter_next(&b)) {
        bson_iter_t f = *pre;
        char *path = prefix[0] ? bson_strdup_printf("%s.%s", prefix, bson_iter_key(&b))
                               : bson_strdup(bson_iter_key(&b));
        if (bson_iter_find(&f, bson_iter_key(&b)))
            diff_value(df, &f, &b, path);
        else
            msim_append_iter(&df->upd, path, -1, &b);
        bson_free(path);
    }
}

bool
msim_update_diff(const bson_t *pre, const bson_t *post, bson_t *desc)
{
    diff_t df;
    bson_iter_t a, b;
    bool small;
    bson_init(&df.upd);
    bson_init(&df.rem);
    bson_init(&df.trunc);
    df.nrem = df.ntrunc = 0;
    bson_iter_init(&a, pre);
    bson_iter_init(&b, post);
    diff_obj(&df, &a, &b, "");
    small = df.upd.len + df.rem.len + df.trunc.len < post->len;
    if (small) {
        BSON_APPEND_DOCUMENT(desc, "updatedFields", &df.upd);
        BSON_APPEND_ARRAY(desc, "removedFields", &df.rem);
        BSON_APPEND_ARRAY(desc, "truncatedArrays", &df.trunc);
    }
    bson_destroy(&df.upd);
    bson_destroy(&df.rem);
    bson_destroy(&df.trunc);
    return small;
}
