/*
 * tests/mongosim/msim_update_exec.c - update statements as mongod runs
 * them: parsing a statement (modifiers, replacement or pipeline, with its
 * arrayFilters), applying it to a stored document (replacements keep the
 * old _id, must not alter it, get their empty timestamps filled in), the
 * document an upsert inserts (the query's equalities, then the update as an
 * insert), and the storage rules of inserts and updates (180 levels of
 * nesting, _id types, $-prefixed top-level names).
 */
#include "msim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msim_update_internal.h"

const afilter_t *
msim_update_filter(const msim_update_t *up, const char *id)
{
    for (size_t i = 0; i < up->nfilters; i++)
        if (strcmp(up->filters[i].id, id) == 0)
            return &up->filters[i];
    return NULL;
}

/* ------------------------------------------------------------------------
 * Array filters (mongod's parsedUpdateArrayFilters, ExpressionWithPlaceholder)
 * ------------------------------------------------------------------------ */

/* placeholder finds the top-level field name a filter is about ("" when none). */
static bool
placeholder(const bson_iter_t *filter, char *id, size_t idsz, mg_error_t *error)
{
    bson_iter_t it;
    bson_iter_recurse(filter, &it);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        char mine[256];
        if (k[0] == '$') {
            bson_iter_t sub;
            if ((strcmp(k, "$and") == 0 || strcmp(k, "$or") == 0 || strcmp(k, "$nor") == 0) &&
                BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &sub)) {
                while (bson_iter_next(&sub))
                    if (BSON_ITER_HOLDS_DOCUMENT(&sub) && !placeholder(&sub, id, idsz, error))
                        return false;
            }
            continue;
        }
        snprintf(mine, sizeof mine, "%.*s", (int)strcspn(k, "."), k);
        if (id[0] != '\0' && strcmp(id, mine) != 0)
            return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                             "Error parsing array filter :: caused by :: Expected a single "
                             "top-level field name, found '%s' and '%s'",
                             id, mine);
        snprintf(id, idsz, "%s", mine);
    }
    return true;
}

static bool
parse_filters(msim_update_t *up, const bson_iter_t *af, mg_error_t *error)
{
    bson_iter_t c;
    if (!BSON_ITER_HOLDS_ARRAY(af))
        return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                         "BSON field 'update.updates.arrayFilters' is the wrong type '%s', "
                         "expected type 'array'",
                         msim_type_name(bson_iter_type(af)));
    bson_iter_recurse(af, &c);
    while (bson_iter_next(&c)) {
        char id[256] = "";
        const uint8_t *d;
        uint32_t l;
        bson_t f;
        msim_matcher_t *m;
        bool good = true;
        if (!BSON_ITER_HOLDS_DOCUMENT(&c))
            return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                             "BSON field 'update.updates.arrayFilters.%s' is the wrong type '%s', "
                             "expected type 'object'",
                             bson_iter_key(&c), msim_type_name(bson_iter_type(&c)));
        bson_iter_document(&c, &l, &d);
        bson_init_static(&f, d, l);
        m = msim_matcher_new(&f, error);
        if (m == NULL) {
            char inner[sizeof error->message];
            snprintf(inner, sizeof inner, "%s", error->message);
            return msim_fail(error, error->code, "Error parsing array filter :: caused by :: %s",
                             inner);
        }
        if (!placeholder(&c, id, sizeof id, error)) {
            msim_matcher_destroy(m);
            return false;
        }
        for (const char *p = id; *p && good; p++)
            good = (p == id && *p >= 'a' && *p <= 'z') ||
                   (p != id && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                                (*p >= '0' && *p <= '9')));
        if (id[0] != '\0' && !good) {
            msim_matcher_destroy(m);
            return msim_fail(error, MSIM_E_BAD_VALUE,
                             "Error parsing array filter :: caused by :: The top-level field name "
                             "must be an alphanumeric string beginning with a lowercase letter, "
                             "found '%s'",
                             id);
        }
        if (id[0] == '\0' || msim_update_filter(up, id) != NULL) {
            msim_matcher_destroy(m);
            if (id[0] == '\0')
                return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                                 "Cannot use an expression without a top-level field name in "
                                 "arrayFilters");
            return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                             "Found multiple array filters with the same top-level field name %s",
                             id);
        }
        up->filters = realloc(up->filters, (up->nfilters + 1) * sizeof *up->filters);
        if (up->filters == NULL)
            abort();
        up->filters[up->nfilters].id = strdup(id);
        up->filters[up->nfilters++].m = m;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Statements
 * ------------------------------------------------------------------------ */

static bool
is_replacement(const bson_iter_t *u)
{
    bson_iter_t c;
    if (!bson_iter_recurse(u, &c) || !bson_iter_next(&c))
        return true; /* {} replaces with an empty document */
    return bson_iter_key(&c)[0] != '$';
}

msim_update_t *
msim_update_new(const bson_iter_t *u, const bson_iter_t *array_filters, bool multi,
                mg_error_t *error)
{
    msim_update_t *up = msim_zalloc(sizeof *up); /* holds bson_iter_t: 128-byte aligned */
    bson_iter_t af;
    bool ok = true, has_filters = array_filters != NULL;
    up->copy = bson_new();
    msim_append_iter(up->copy, "u", 1, u);
    if (has_filters)
        msim_append_iter(up->copy, "f", 1, array_filters);
    bson_iter_init_find(&up->u, up->copy, "u");
    if (has_filters)
        bson_iter_init_find(&af, up->copy, "f");
    if (BSON_ITER_HOLDS_ARRAY(&up->u)) {
        up->kind = MSIM_UPD_PIPELINE;
        if (has_filters)
            ok = msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                           "arrayFilters may not be specified for pipeline-style updates");
        else
            ok = (up->pipe = msim_upipe_new(&up->u, error)) != NULL;
    } else if (!BSON_ITER_HOLDS_DOCUMENT(&up->u)) {
        ok = msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                       "Update argument must be either an object or an array");
    } else {
        ok = !has_filters || parse_filters(up, &af, error);
        if (ok && is_replacement(&up->u)) {
            up->kind = MSIM_UPD_REPLACE;
            if (multi)
                ok = msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                               "multi update is not supported for replacement-style update");
        } else if (ok) {
            up->kind = MSIM_UPD_OPS;
            ok = msim_update_parse_ops(up, error);
        }
    }
    if (!ok) {
        msim_update_destroy(up);
        return NULL;
    }
    return up;
}

void
msim_update_destroy(msim_update_t *up)
{
    if (up == NULL)
        return;
    msim_unode_free(up->root);
    for (size_t i = 0; i < up->nfilters; i++) {
        free(up->filters[i].id);
        msim_matcher_destroy(up->filters[i].m);
    }
    free(up->filters);
    msim_upipe_destroy(up->pipe);
    bson_destroy(up->copy);
    free(up);
}

int
msim_update_kind(const msim_update_t *up)
{
    return up->kind;
}

/* ------------------------------------------------------------------------
 * Storage rules
 * ------------------------------------------------------------------------ */

static size_t
bson_depth(const bson_iter_t *container)
{
    bson_iter_t c = *container, sub;
    size_t d = 0;
    while (bson_iter_next(&c)) {
        if ((BSON_ITER_HOLDS_DOCUMENT(&c) || BSON_ITER_HOLDS_ARRAY(&c)) &&
            bson_iter_recurse(&c, &sub)) {
            bson_iter_t probe = sub;
            if (bson_iter_next(&probe)) {
                size_t k = 1 + bson_depth(&sub);
                d = k > d ? k : d;
            }
        }
    }
    return d;
}

static bool
is_dbref_name(const char *k)
{
    return strcmp(k, "$ref") == 0 || strcmp(k, "$id") == 0 || strcmp(k, "$db") == 0;
}

/* dollar_inside finds a $-prefixed name (not a DBRef's) anywhere in a document. */
static const char *
dollar_inside(const bson_iter_t *container)
{
    bson_iter_t c = *container, sub;
    while (bson_iter_next(&c)) {
        const char *k = bson_iter_key(&c), *deeper;
        if (k[0] == '$' && !is_dbref_name(k) && !BSON_ITER_HOLDS_ARRAY(container))
            return k;
        if ((BSON_ITER_HOLDS_DOCUMENT(&c) || BSON_ITER_HOLDS_ARRAY(&c)) &&
            bson_iter_recurse(&c, &sub) && (deeper = dollar_inside(&sub)) != NULL)
            return deeper;
    }
    return NULL;
}

/* id_type_ok: mongod's storageValidIdField (inserts and updates alike since 5.0). */
static bool
id_type_ok(const bson_iter_t *id, bool insert, mg_error_t *error)
{
    bson_type_t t = bson_iter_type(id);
    bson_iter_t sub;
    const char *k;
    (void)insert;
    if (t == BSON_TYPE_ARRAY || t == BSON_TYPE_REGEX || t == BSON_TYPE_UNDEFINED)
        return msim_fail(error, 53, "The '_id' value cannot be of type %s", msim_type_name(t));
    if (t == BSON_TYPE_DOCUMENT && bson_iter_recurse(id, &sub) && (k = dollar_inside(&sub)) != NULL)
        return msim_fail(error, 52,
                         "_id fields may not contain '$'-prefixed fields: %s is not valid for "
                         "storage.",
                         k);
    return true;
}

bool
msim_check_storage(const bson_t *doc, bool insert, mg_error_t *error)
{
    bson_iter_t it;
    bool had_id = false;
    if (!bson_iter_init(&it, doc))
        return msim_fail(error, MSIM_E_INVALID_BSON, "invalid BSON document");
    if (1 + bson_depth(&it) > MSIM_MAX_USER_DEPTH)
        return insert ? msim_fail(error, 15,
                                  "cannot insert document because it exceeds %d levels of "
                                  "nesting",
                                  MSIM_MAX_USER_DEPTH)
                      : msim_fail(error, 15, "Document exceeds maximum nesting depth of %d",
                                  MSIM_MAX_USER_DEPTH);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        /* top-level $-prefixed names: allowed in inserts since 5.0, not in a
         * replacement (but a DBRef's $ref, $id, $db) */
        if (k[0] == '$' && !insert && !is_dbref_name(k))
            return msim_fail(error, 52,
                             "The dollar ($) prefixed field '%s' in '%s' is not allowed in the "
                             "context of an update's replacement document. Consider using an "
                             "aggregation pipeline with $replaceWith.",
                             k, k);
        if (strcmp(k, "_id") != 0)
            continue;
        if (had_id && insert)
            return msim_fail(error, MSIM_E_BAD_VALUE,
                             "can't have multiple _id fields in one document");
        had_id = true;
        if (!id_type_ok(&it, insert, error))
            return false;
    }
    if (it.err_off != 0) /* bson_iter_next stopped at a value libbson cannot read */
        return msim_fail(error, MSIM_E_INVALID_BSON, "invalid BSON value at offset %u",
                         (unsigned)it.err_off);
    return true;
}

void
msim_fix_timestamps(const bson_t *doc, bson_t *out, bool *changed)
{
    bson_iter_t it;
    *changed = false;
    bson_iter_init(&it, doc);
    while (bson_iter_next(&it)) {
        uint32_t t, i;
        if (BSON_ITER_HOLDS_TIMESTAMP(&it) && strcmp(bson_iter_key(&it), "_id") != 0) {
            bson_iter_timestamp(&it, &t, &i);
            if (t == 0 && i == 0) {
                /* mongod: each empty top-level timestamp gets a new cluster time */
                msim_ts_t now = msim_clock_tick();
                bson_append_timestamp(out, bson_iter_key(&it), -1, now.t, now.i);
                *changed = true;
                continue;
            }
        }
        msim_append_iter(out, NULL, 0, &it);
    }
}

static bool upsert_checks(const bson_t *doc, mg_error_t *error);

/* id_first writes root with _id first (an ObjectId when generate and it has none). */
static void
id_first(msim_mnode_t *root, bool generate, bson_t *out)
{
    size_t pos;
    msim_mnode_t *id = msim_mnode_child(root, "_id", &pos);
    if (id != NULL && pos != 0)
        msim_mnode_insert(root, 0, msim_mnode_detach(root, pos));
    if (id == NULL && generate) {
        bson_oid_t oid;
        bson_oid_init(&oid, NULL);
        BSON_APPEND_OID(out, "_id", &oid);
    }
    msim_mnode_to_bson(root, out);
}

/*
 * replace builds a replacement's result: the new document with the old
 * _id when it has none; its _id must equal the old one by value (mongod
 * compares with compareWithBSONElement: 1 and NumberLong(1) are equal).
 */
static bool
replace(const bson_t *old, const bson_t *rep, bool allow_dollar, bool insert, bson_t *out,
        mg_error_t *error)
{
    bson_iter_t oid, nid;
    bool old_has = old != NULL && bson_iter_init_find(&oid, old, "_id");
    bool new_has = bson_iter_init_find(&nid, rep, "_id");
    bson_t tmp = BSON_INITIALIZER;
    msim_mnode_t *root;
    if (old_has && new_has && msim_cmp(&oid, &nid) != 0) {
        char *j = msim_value_json(&nid);
        msim_fail(error, MSIM_E_IMMUTABLE_FIELD,
                  "After applying the update, the (immutable) field '_id' was found to have been "
                  "altered to _id: %s",
                  j);
        bson_free(j);
        return false;
    }
    if (old_has && !new_has)
        msim_append_iter(&tmp, "_id", 3, &oid);
    bson_concat(&tmp, rep);
    if (!(allow_dollar ? upsert_checks(&tmp, error) : msim_check_storage(&tmp, false, error))) {
        bson_destroy(&tmp);
        return false;
    }
    root = msim_mnode_from_bson(&tmp);
    id_first(root, insert, out);
    msim_mnode_free(root);
    bson_destroy(&tmp);
    return true;
}

/* fill_desc writes an update event's updateDescription from the touched paths. */
static void
fill_desc(const bson_t *doc, const touched_t *t, bson_t *desc)
{
    bson_t upd, rem, trunc;
    uint32_t ri = 0;
    bson_append_document_begin(desc, "updatedFields", -1, &upd);
    for (size_t i = 0; i < t->n; i++) {
        bson_iter_t root, v;
        if (t->removed[i] || !bson_iter_init(&root, doc))
            continue;
        if (bson_iter_find_descendant(&root, t->paths[i], &v))
            msim_append_iter(&upd, t->paths[i], -1, &v);
    }
    bson_append_document_end(desc, &upd);
    bson_append_array_begin(desc, "removedFields", -1, &rem);
    for (size_t i = 0; i < t->n; i++) {
        char idx[16];
        const char *k;
        if (!t->removed[i])
            continue;
        bson_uint32_to_string(ri++, &k, idx, sizeof idx);
        bson_append_utf8(&rem, k, -1, t->paths[i], -1);
    }
    bson_append_array_end(desc, &rem);
    bson_append_array_begin(desc, "truncatedArrays", -1, &trunc);
    bson_append_array_end(desc, &trunc);
}

static bool
run_ops(const msim_update_t *up, msim_mnode_t *root, const char *pos, bool insert, touched_t *t,
        mg_error_t *error)
{
    actx_t a = {.up = up,
                .root = root,
                .matched = pos ? pos : "",
                .insert = insert,
                .t = t,
                .error = error};
    bool ok = msim_apply_tree(&a, up->root);
    msim_actx_cleanup(&a);
    return ok;
}

bool
msim_update_run(const msim_update_t *up, const bson_t *doc, const char *pos, bson_t *out,
                bson_t *desc, bool *replace_event, mg_error_t *error)
{
    bool ok, changed;
    *replace_event = up->kind == MSIM_UPD_REPLACE;
    if (up->kind == MSIM_UPD_OPS) {
        msim_mnode_t *root = msim_mnode_from_bson(doc);
        touched_t t = {0};
        ok = run_ops(up, root, pos, false, &t, error);
        if (ok) {
            id_first(root, false, out);
            if (desc != NULL)
                fill_desc(out, &t, desc);
        }
        msim_touched_free(&t);
        msim_mnode_free(root);
        return ok;
    }
    if (up->kind == MSIM_UPD_REPLACE) {
        const uint8_t *d;
        uint32_t l;
        bson_t rep, fixed = BSON_INITIALIZER;
        bson_iter_document(&up->u, &l, &d);
        bson_init_static(&rep, d, l);
        msim_fix_timestamps(&rep, &fixed, &changed);
        ok = replace(doc, &fixed, false, false, out, error);
        bson_destroy(&fixed);
        return ok;
    }
    {
        bson_t post = BSON_INITIALIZER;
        ok = msim_upipe_run(up->pipe, doc, &post, error) &&
             replace(doc, &post, true, false, out, error);
        bson_destroy(&post);
        if (ok && desc != NULL)
            *replace_event = !msim_update_diff(doc, out, desc);
        else if (ok)
            *replace_event = false;
        return ok;
    }
}

/* ------------------------------------------------------------------------
 * Upserts
 * ------------------------------------------------------------------------ */

typedef struct {
    bool replacement;
    char **paths;
    bson_t values; /* {"0": v0, "1": v1, ...} */
    size_t n;
    mg_error_t *error;
    bool failed;
} eqs_t;

static bool
prefix_of(const char *a, const char *b)
{
    size_t la = strlen(a);
    return strncmp(a, b, la) == 0 && (b[la] == '\0' || b[la] == '.');
}

static bool
collect_eq(void *arg, const char *path, const bson_iter_t *value)
{
    eqs_t *q = arg;
    char key[16];
    const char *k;
    if (q->replacement && strcmp(path, "_id") != 0) {
        /* a replacement takes only _id from the query, and only whole */
        if (!prefix_of("_id", path))
            return true;
        q->failed = true;
        return msim_fail(q->error, 111,
                         "field at '_id' must be exactly specified, field at sub-path '%s'found",
                         path);
    }
    for (size_t i = 0; i < q->n; i++) {
        if (strcmp(q->paths[i], path) == 0 || prefix_of(q->paths[i], path) ||
            prefix_of(path, q->paths[i])) {
            const char *longer = strlen(path) > strlen(q->paths[i]) ? path : q->paths[i];
            const char *shorter = longer == path ? q->paths[i] : path;
            q->failed = true;
            if (strcmp(path, q->paths[i]) == 0)
                return msim_fail(q->error, 54,
                                 "cannot infer query fields to set, path '%s' is matched twice",
                                 path);
            return msim_fail(q->error, 54,
                             "cannot infer query fields to set, both paths '%s' and '%s' are "
                             "matched",
                             longer, shorter);
        }
    }
    q->paths = realloc(q->paths, (q->n + 1) * sizeof *q->paths);
    if (q->paths == NULL)
        abort();
    q->paths[q->n] = strdup(path);
    bson_uint32_to_string((uint32_t)q->n++, &k, key, sizeof key);
    msim_append_iter(&q->values, k, -1, value);
    return true;
}

/* seed sets each equality's value at its path in root (documents are created along it). */
static void
seed(msim_mnode_t *root, const eqs_t *q)
{
    bson_iter_t v;
    bson_iter_init(&v, &q->values);
    for (size_t i = 0; i < q->n && bson_iter_next(&v); i++) {
        char *copy = strdup(q->paths[i]), *save = NULL, *part, *next;
        msim_mnode_t *cur = root;
        part = strtok_r(copy, ".", &save);
        while (part != NULL) {
            msim_mnode_t *kid = msim_mnode_child(cur, part, NULL);
            next = strtok_r(NULL, ".", &save);
            if (next == NULL) {
                if (kid == NULL)
                    msim_mnode_append(cur, msim_mnode_from_iter(part, &v));
                break;
            }
            if (kid == NULL) {
                kid = msim_mnode_new(part, BSON_TYPE_DOCUMENT);
                msim_mnode_append(cur, kid);
            }
            if (kid->type != BSON_TYPE_DOCUMENT)
                break;
            cur = kid;
            part = next;
        }
        free(copy);
    }
}

/* upsert_checks: mongod's storage validation of a produced document (upsert, pipeline). */
static bool
upsert_checks(const bson_t *doc, mg_error_t *error)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, doc))
        return msim_fail(error, MSIM_E_INVALID_BSON, "invalid BSON document");
    if (1 + bson_depth(&it) > MSIM_MAX_USER_DEPTH)
        return msim_fail(error, 15, "Document exceeds maximum nesting depth of %d",
                         MSIM_MAX_USER_DEPTH);
    if (bson_iter_init_find(&it, doc, "_id") && !id_type_ok(&it, false, error))
        return false;
    if (doc->len > MSIM_MAX_BSON_SIZE)
        return msim_fail(error, 17420, "Document to upsert is larger than %d", MSIM_MAX_BSON_SIZE);
    return true;
}

bool
msim_update_upsert(const msim_update_t *up, const msim_matcher_t *query, bson_t *out,
                   mg_error_t *error)
{
    eqs_t q = {.replacement = up->kind == MSIM_UPD_REPLACE, .error = error};
    msim_mnode_t *root = msim_mnode_new(NULL, BSON_TYPE_DOCUMENT);
    bson_t seeded = BSON_INITIALIZER, result = BSON_INITIALIZER;
    bool ok, changed;
    bson_init(&q.values);
    ok = msim_matcher_equalities(query, collect_eq, &q) && !q.failed;
    if (ok)
        seed(root, &q);
    if (ok && up->kind == MSIM_UPD_OPS) {
        ok = run_ops(up, root, "", true, NULL, error);
        if (ok)
            id_first(root, true, &result);
    } else if (ok) {
        bson_t rep = BSON_INITIALIZER, fixed = BSON_INITIALIZER;
        msim_mnode_to_bson(root, &seeded);
        if (up->kind == MSIM_UPD_REPLACE) {
            const uint8_t *d;
            uint32_t l;
            bson_t raw;
            bson_iter_document(&up->u, &l, &d);
            bson_init_static(&raw, d, l);
            bson_concat(&rep, &raw);
        } else {
            ok = msim_upipe_run(up->pipe, &seeded, &rep, error);
        }
        if (ok && up->kind == MSIM_UPD_REPLACE)
            msim_fix_timestamps(&rep, &fixed, &changed);
        ok = ok && replace(&seeded, up->kind == MSIM_UPD_REPLACE ? &fixed : &rep,
                           up->kind == MSIM_UPD_PIPELINE, true, &result, error);
        bson_destroy(&rep);
        bson_destroy(&fixed);
    }
    ok = ok && upsert_checks(&result, error);
    if (ok)
        bson_concat(out, &result);
    for (size_t i = 0; i < q.n; i++)
        free(q.paths[i]);
    free(q.paths);
    bson_destroy(&q.values);
    bson_destroy(&seeded);
    bson_destroy(&result);
    msim_mnode_free(root);
    return ok;
}
