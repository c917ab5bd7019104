/*
 * tests/mongosim/msim_update_apply.c - applying an update's prefix tree to
 * a document, as mongod's UpdateObjectNode / UpdateArrayNode / leaf nodes
 * do: the path is followed as far as it exists ("taken"), the rest is
 * created by the leaves that create ("create"); the positional $ child is
 * applied at the query's match position, merged with a child of the same
 * name; $[] and $[<identifier>] apply to every element / to the elements
 * their array filter matches, merging the updates that meet on one
 * element. _id is immutable: a change to it (not a byte-identical no-op) is
 * ImmutableField, with mongod's messages.
 */
#include "msim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msim_update_internal.h"

/* ------------------------------------------------------------------------
 * Paths and touched fields
 * ------------------------------------------------------------------------ */

static void
path_push(upath_t *p, const char *part)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        p->parts = realloc(p->parts, p->cap * sizeof *p->parts);
        if (p->parts == NULL)
            abort();
    }
    p->parts[p->n] = strdup(part);
    if (p->parts[p->n] == NULL)
        abort();
    p->n++;
}

static void
path_pop(upath_t *p)
{
    free(p->parts[--p->n]);
}

static void
path_clear(upath_t *p)
{
    while (p->n > 0)
        path_pop(p);
}

char *
msim_path_join(const upath_t *p, const upath_t *more)
{
    size_t len = 1;
    char *s, *o;
    for (size_t i = 0; i < p->n; i++)
        len += strlen(p->parts[i]) + 1;
    for (size_t i = 0; more != NULL && i < more->n; i++)
        len += strlen(more->parts[i]) + 1;
    s = o = bson_malloc(len);
    *o = '\0';
    for (size_t i = 0; i < p->n; i++)
        o += sprintf(o, "%s%s", o == s ? "" : ".", p->parts[i]);
    for (size_t i = 0; more != NULL && i < more->n; i++)
        o += sprintf(o, "%s%s", o == s ? "" : ".", more->parts[i]);
    return s;
}

void
msim_touch(touched_t *t, const char *path, bool removed)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->paths[i], path) == 0) {
            t->removed[i] = removed;
            return;
        }
    t->paths = realloc(t->paths, (t->n + 1) * sizeof *t->paths);
    t->removed = realloc(t->removed, (t->n + 1) * sizeof *t->removed);
    if (t->paths == NULL || t->removed == NULL)
        abort();
    t->paths[t->n] = strdup(path);
    t->removed[t->n] = removed;
    t->n++;
}

void
msim_touched_free(touched_t *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->paths[i]);
    free(t->paths);
    free(t->removed);
    memset(t, 0, sizeof *t);
}

void
msim_actx_cleanup(actx_t *a)
{
    path_clear(&a->taken);
    path_clear(&a->create);
    free(a->taken.parts);
    free(a->create.parts);
    for (size_t i = 0; i < a->narena; i++)
        msim_unode_free(a->arena[i]);
    free(a->arena);
}

/* depth_of is the nesting of e's non-empty containers below it. */
static size_t
depth_of(const msim_mnode_t *e)
{
    size_t d = 0;
    for (size_t i = 0; i < e->n; i++) {
        size_t k =
            msim_mnode_is_container(e->kids[i]) && e->kids[i]->n > 0 ? 1 + depth_of(e->kids[i]) : 0;
        d = k > d ? k : d;
    }
    return d;
}

bool
msim_check_depth(const msim_mnode_t *e, size_t level, mg_error_t *error)
{
    /* mongod's storageValid: an element deeper than the limit (top-level
     * fields are level 1) is refused; empty documents add no level */
    if (msim_mnode_is_container(e) && e->n > 0 && level + 1 + depth_of(e) > MSIM_MAX_USER_DEPTH)
        return msim_fail(error, 15, "Document exceeds maximum nesting depth of %d",
                         MSIM_MAX_USER_DEPTH);
    return true;
}

/* ------------------------------------------------------------------------
 * Merging nodes that apply to one element (mongod's createUpdateNodeByMerging)
 * ------------------------------------------------------------------------ */

static unode_t *merge(actx_t *a, const unode_t *l, const unode_t *r, const char *at);

static void
arena_add(actx_t *a, unode_t *u)
{
    if (a->narena == a->carena) {
        a->carena = a->carena ? a->carena * 2 : 8;
        a->arena = realloc(a->arena, a->carena * sizeof *a->arena);
        if (a->arena == NULL)
            abort();
    }
    a->arena[a->narena++] = u;
}

static unode_t *
merge(actx_t *a, const unode_t *l, const unode_t *r, const char *at)
{
    unode_t *m;
    if (l->kind == K_LEAF || r->kind == K_LEAF || l->kind != r->kind) {
        msim_fail(a->error, 40, "Update created a conflict at '%s'", at);
        return NULL;
    }
    m = msim_unode_new(l->kind, l->name);
    m->borrowed = true;
    arena_add(a, m);
    for (size_t i = 0; i < l->n; i++) {
        const unode_t *other = msim_unode_get(r, l->kids[i]->name);
        unode_t *k = l->kids[i];
        if (other != NULL && !(r->kind == K_OBJ && strcmp(l->kids[i]->name, "$") == 0)) {
            char *sub = l->kind == K_ARR ? bson_strdup_printf("%s.$[%s]", at, k->name)
                                         : bson_strdup_printf("%s.%s", at, k->name);
            k = merge(a, l->kids[i], other, sub);
            bson_free(sub);
            if (k == NULL)
                return NULL;
        }
        msim_unode_add(m, k);
    }
    for (size_t i = 0; i < r->n; i++)
        if (msim_unode_get(l, r->kids[i]->name) == NULL)
            msim_unode_add(m, r->kids[i]);
    if (l->pos != NULL && r->pos != NULL) {
        char *sub = bson_strdup_printf("%s.$", at);
        m->pos = merge(a, l->pos, r->pos, sub);
        bson_free(sub);
        if (m->pos == NULL)
            return NULL;
    } else {
        m->pos = l->pos ? l->pos : r->pos;
    }
    msim_unode_sort(m);
    return m;
}

/* ------------------------------------------------------------------------
 * Applying the tree
 * ------------------------------------------------------------------------ */

static bool apply_node(actx_t *a, const unode_t *u, msim_mnode_t *e);

/* lookup is the child named part of e, as the update path sees it. */
static msim_mnode_t *
lookup(msim_mnode_t *e, const char *part)
{
    if (e->type == BSON_TYPE_DOCUMENT || e->type == BSON_TYPE_ARRAY)
        return msim_mnode_child(e, part, NULL);
    return NULL;
}

/* apply_child applies child at field of *e, then follows what it created. */
static bool
apply_child(actx_t *a, const unode_t *child, const char *field, msim_mnode_t **e)
{
    size_t taken_before = a->taken.n;
    msim_mnode_t *ce = a->create.n == 0 ? lookup(*e, field) : NULL;
    bool ok;
    if (ce != NULL) {
        path_push(&a->taken, field);
    } else {
        ce = *e;
        path_push(&a->create, field);
    }
    ok = apply_node(a, child, ce);
    if (a->create.n > 0)
        path_pop(&a->create);
    else
        path_pop(&a->taken);
    if (a->taken.n > taken_before) {
        for (size_t i = taken_before; i < a->taken.n && *e != NULL; i++)
            *e = lookup(*e, a->taken.parts[i]);
    } else if (a->create.n > 0 && lookup(*e, a->create.parts[0]) != NULL) {
        /* a leaf created the rest of the path: later children see it */
        for (size_t i = 0; i < a->create.n; i++) {
            *e = lookup(*e, a->create.parts[i]);
            path_push(&a->taken, a->create.parts[i]);
        }
        path_clear(&a->create);
    }
    return ok;
}

static bool
apply_obj(actx_t *a, const unode_t *u, msim_mnode_t *e)
{
    bool positional = u->pos != NULL, ok = true;
    const char *m = a->matched;
    if (positional && m[0] == '\0')
        return msim_fail(a->error, MSIM_E_BAD_VALUE,
                         "The positional operator did not find the match needed from the query.");
    for (size_t i = 0; ok && i < u->n; i++) {
        const unode_t *k = u->kids[i];
        if (positional && strcmp(k->name, m) == 0) {
            char *at = msim_path_join(&a->taken, &a->create);
            char *full = bson_strdup_printf("%s%s%s", at, at[0] ? "." : "", m);
            const unode_t *merged = merge(a, u->pos, k, full);
            bson_free(at);
            bson_free(full);
            ok = merged != NULL && apply_child(a, merged, m, &e);
            positional = false;
            continue;
        }
        if (positional && msim_field_order(m, k->name) < 0) {
            ok = apply_child(a, u->pos, m, &e);
            positional = false;
            if (!ok)
                break;
        }
        ok = apply_child(a, k, k->name, &e);
    }
    if (ok && positional)
        ok = apply_child(a, u->pos, m, &e);
    return ok;
}

/* filter_hit: the array filter of identifier id matches element v. */
static bool
filter_hit(actx_t *a, const char *id, const msim_mnode_t *v)
{
    const afilter_t *f = msim_update_filter(a->up, id);
    bson_t wrap = BSON_INITIALIZER;
    bool hit;
    msim_mnode_append_to(v, &wrap, id);
    hit = f != NULL && msim_matcher_match(f->m, bson_get_data(&wrap), wrap.len);
    bson_destroy(&wrap);
    return hit;
}

static bool
apply_arr(actx_t *a, const unode_t *u, msim_mnode_t *e)
{
    size_t n;
    if (a->create.n > 0) {
        char *p = msim_path_join(&a->taken, &a->create);
        msim_fail(a->error, MSIM_E_BAD_VALUE,
                  "The path '%s' must exist in the document in order to apply array updates.", p);
        bson_free(p);
        return false;
    }
    if (e->type != BSON_TYPE_ARRAY) {
        char *s = msim_elem_string(e);
        msim_fail(a->error, MSIM_E_BAD_VALUE, "Cannot apply array updates to non-array element %s",
                  s);
        bson_free(s);
        return false;
    }
    n = e->n;
    for (size_t i = 0; i < n && i < e->n; i++) {
        const unode_t *merged = NULL;
        char idx[24];
        bool ok = true;
        snprintf(idx, sizeof idx, "%zu", i);
        path_push(&a->taken, idx);
        for (size_t k = 0; ok && k < u->n; k++) {
            const unode_t *c = u->kids[k];
            if (c->name[0] != '\0' && !filter_hit(a, c->name, e->kids[i]))
                continue;
            if (merged == NULL) {
                merged = c;
            } else {
                char *at = msim_path_join(&a->taken, NULL);
                merged = merge(a, merged, c, at);
                bson_free(at);
                ok = merged != NULL;
            }
        }
        if (ok && merged != NULL)
            ok = apply_node(a, merged, e->kids[i]);
        path_pop(&a->taken);
        if (!ok)
            return false;
    }
    return true;
}

/* ------------------------------------------------------------------------
 * Leaves at existing and missing paths
 * ------------------------------------------------------------------------ */

static bool
is_id_path(const upath_t *p)
{
    return p->n > 0 && strcmp(p->parts[0], "_id") == 0;
}

/* parent_of finds the parent of the element at a->taken. */
static msim_mnode_t *
parent_of(actx_t *a, size_t *pos)
{
    msim_mnode_t *p = a->root;
    for (size_t i = 0; p != NULL && i + 1 < a->taken.n; i++)
        p = lookup(p, a->taken.parts[i]);
    if (p == NULL || msim_mnode_child(p, a->taken.parts[a->taken.n - 1], pos) == NULL)
        return NULL;
    return p;
}

static bool
immutable_changed(actx_t *a, const unode_t *leaf, const msim_mnode_t *now)
{
    char *path = msim_path_join(&a->taken, NULL);
    bool sets = leaf->op == OP_SET || leaf->op == OP_SET_ON_INSERT || leaf->op == OP_RENAME_TO;
    if (sets && a->taken.n == 1) {
        char *s = msim_elem_string(now);
        msim_fail(a->error, MSIM_E_IMMUTABLE_FIELD,
                  "Updating the path '%s' to %s would modify the immutable field '_id'", path, s);
        bson_free(s);
    } else {
        msim_fail(a->error, MSIM_E_IMMUTABLE_FIELD,
                  "Performing an update on the path '%s' would modify the immutable field '_id'",
                  path);
    }
    bson_free(path);
    return false;
}

static bool
leaf_existing(actx_t *a, const unode_t *leaf, msim_mnode_t *e)
{
    msim_mnode_t *before;
    char *path;
    bool ok;
    if (leaf->op == OP_UNSET) {
        size_t pos;
        msim_mnode_t *p = parent_of(a, &pos);
        if (is_id_path(&a->taken))
            return immutable_changed(a, leaf, e);
        path = msim_path_join(&a->taken, NULL);
        if (p != NULL && p->type == BSON_TYPE_ARRAY)
            msim_mnode_set_raw(e, BSON_TYPE_NULL, NULL, 0); /* an array keeps its length */
        else if (p != NULL)
            msim_mnode_free(msim_mnode_detach(p, pos));
        msim_touch(a->t, path, p == NULL || p->type != BSON_TYPE_ARRAY);
        bson_free(path);
        return true;
    }
    before = msim_mnode_clone(e, e->key);
    ok = msim_leaf_existing(a, leaf, e, a->error);
    if (ok && !msim_mnode_binary_equal(before, e)) {
        if (is_id_path(&a->taken))
            ok = immutable_changed(a, leaf, e);
        else
            ok = msim_check_depth(e, a->taken.n, a->error);
        if (ok) {
            path = msim_path_join(&a->taken, NULL);
            msim_touch(a->t, path, false);
            bson_free(path);
        }
    }
    msim_mnode_free(before);
    return ok;
}

/* create_at adds v at the path a->create below e (mongod's createPathAt). */
static bool
create_at(actx_t *a, msim_mnode_t *e, msim_mnode_t *v)
{
    const char *first = a->create.parts[0];
    msim_mnode_t *top = v, *parent = e;
    size_t idx;
    for (size_t i = a->create.n - 1; i > 0; i--) {
        msim_mnode_t *d = msim_mnode_new(a->create.parts[i - 1], BSON_TYPE_DOCUMENT);
        free(top->key);
        top->key = strdup(a->create.parts[i]);
        msim_mnode_append(d, top);
        top = d;
    }
    if (e->type == BSON_TYPE_ARRAY) {
        if (!msim_mnode_index(first, &idx)) {
            char *s = msim_elem_string(e);
            msim_fail(a->error, 28, "Cannot create field '%s' in element {%s}", first, s);
            bson_free(s);
            msim_mnode_free(top);
            return false;
        }
        if (idx > e->n + 1500000) {
            msim_mnode_free(top);
            return msim_fail(a->error, 34, "can't backfill more than 1500000 elements");
        }
        while (parent->n < idx)
            msim_mnode_append(parent, msim_mnode_new(NULL, BSON_TYPE_NULL));
        free(top->key);
        top->key = NULL;
        msim_mnode_append(parent, top);
        return true;
    }
    if (e->type != BSON_TYPE_DOCUMENT) {
        char *s = msim_elem_string(e);
        msim_fail(a->error, 28, "Cannot create field '%s' in element {%s}", first, s);
        bson_free(s);
        msim_mnode_free(top);
        return false;
    }
    free(top->key);
    top->key = strdup(first);
    msim_mnode_append(parent, top);
    return true;
}

static bool
leaf_missing(actx_t *a, const unode_t *leaf, msim_mnode_t *e)
{
    msim_mnode_t *v = msim_leaf_new_value(a, leaf, a->error);
    char *path;
    if (v == NULL)
        return true; /* nothing to create: a no-op */
    if (!create_at(a, e, v))
        return false;
    if (is_id_path(&a->taken)) {
        char *p = msim_path_join(&a->taken, NULL), *s = msim_elem_string(e);
        msim_fail(a->error, MSIM_E_IMMUTABLE_FIELD,
                  "Updating the path '%s' to %s would modify the immutable field '_id'", p, s);
        bson_free(p);
        bson_free(s);
        return false;
    }
    {
        msim_mnode_t *created = lookup(e, a->create.parts[0]);
        if (created != NULL && !msim_check_depth(created, a->taken.n + 1, a->error))
            return false;
    }
    path = msim_path_join(&a->taken, &a->create);
    msim_touch(a->t, path, false);
    bson_free(path);
    return true;
}

/* source_of finds a $rename's source element through documents only. */
static bool
source_of(actx_t *a, const char *from, msim_mnode_t **src, msim_mnode_t **parent, size_t *pos)
{
    char *copy = strdup(from), *save = NULL, *part;
    msim_mnode_t *cur = a->root;
    bool ok = true;
    *src = NULL;
    for (part = strtok_r(copy, ".", &save); part != NULL && cur != NULL;
         part = strtok_r(NULL, ".", &save)) {
        if (cur->type == BSON_TYPE_ARRAY) {
            char *id = msim_id_string(a->root);
            ok = msim_fail(a->error, MSIM_E_BAD_VALUE,
                           "The source field cannot be an array element, '%s' in doc with %s has "
                           "an array field called '%s'",
                           from, id, cur->key ? cur->key : "");
            bson_free(id);
            break;
        }
        *parent = cur;
        cur = cur->type == BSON_TYPE_DOCUMENT ? msim_mnode_child(cur, part, pos) : NULL;
    }
    if (ok)
        *src = cur;
    free(copy);
    return ok;
}

static bool
leaf_rename(actx_t *a, const unode_t *leaf, msim_mnode_t *e)
{
    msim_mnode_t *src, *sp = NULL, *v, *walk = a->root;
    size_t spos = 0;
    bool ok;
    if (!source_of(a, leaf->from, &src, &sp, &spos))
        return false;
    if (src == NULL)
        return true;
    for (size_t i = 0; i < a->taken.n && walk != NULL; i++) {
        if (walk->type == BSON_TYPE_ARRAY || (a->create.n > 0 && e->type == BSON_TYPE_ARRAY)) {
            char *id = msim_id_string(a->root);
            msim_fail(a->error, MSIM_E_BAD_VALUE,
                      "The destination field cannot be an array element, '%s' in doc with %s has "
                      "an array field called '%s'",
                      leaf->path, id, walk->key ? walk->key : "");
            bson_free(id);
            return false;
        }
        walk = lookup(walk, a->taken.parts[i]);
    }
    if (strncmp(leaf->from, "_id", 3) == 0 && (leaf->from[3] == '\0' || leaf->from[3] == '.'))
        return msim_fail(a->error, MSIM_E_IMMUTABLE_FIELD,
                         "Performing an update on the path '%s' would modify the immutable field "
                         "'_id'",
                         leaf->from);
    v = msim_mnode_clone(src, NULL);
    if (a->create.n == 0) {
        msim_mnode_t *before = msim_mnode_clone(e, e->key);
        msim_mnode_set_raw(e, v->type, v->raw, v->rawlen);
        for (size_t i = 0; i < v->n; i++)
            msim_mnode_append(e, msim_mnode_clone(v->kids[i], v->kids[i]->key));
        ok = msim_mnode_binary_equal(before, e) || !is_id_path(&a->taken) ||
             immutable_changed(a, leaf, e);
        msim_mnode_free(before);
        msim_mnode_free(v);
        if (ok) {
            char *p = msim_path_join(&a->taken, NULL);
            msim_touch(a->t, p, false);
            bson_free(p);
        }
    } else {
        ok = create_at(a, e, v);
        if (ok) {
            char *p = msim_path_join(&a->taken, &a->create);
            msim_touch(a->t, p, false);
            bson_free(p);
        }
    }
    if (!ok)
        return false;
    /* the source may have moved if the destination was created before it */
    if (!source_of(a, leaf->from, &src, &sp, &spos) || src == NULL)
        return true;
    msim_mnode_free(msim_mnode_detach(sp, spos));
    msim_touch(a->t, leaf->from, true);
    return true;
}

static bool
apply_node(actx_t *a, const unode_t *u, msim_mnode_t *e)
{
    if (u->kind == K_OBJ)
        return apply_obj(a, u, e);
    if (u->kind == K_ARR)
        return apply_arr(a, u, e);
    if (u->op == OP_RENAME_FROM || (u->op == OP_SET_ON_INSERT && !a->insert))
        return true;
    if (u->op == OP_RENAME_TO)
        return leaf_rename(a, u, e);
    if (a->create.n == 0)
        return leaf_existing(a, u, e);
    return leaf_missing(a, u, e);
}

bool
msim_apply_tree(actx_t *a, const unode_t *root)
{
    return apply_node(a, root, a->root);
}
