/*
 * tests/mongosim/msim_update.c - modifier updates as mongod runs them: the
 * update document is parsed into a prefix tree of paths (object nodes,
 * array nodes for $[] and $[<identifier>], a positional $ child, leaves
 * holding one modifier each), path collisions are refused while parsing,
 * and the tree is applied to a mutable copy of the document with children
 * taken in mongod's field order (names compared as strings, decimal
 * positions as numbers). Leaves: $set $unset $inc $mul $min $max $push
 * ($each $position $slice $sort) $addToSet $pull $pullAll $pop $rename
 * $setOnInsert $currentDate $bit.
 */
#include "msim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "msim_update_internal.h"

static const struct {
    const char *name;
    int op;
} modifiers[] = {
    {"$set", OP_SET},
    {"$unset", OP_UNSET},
    {"$inc", OP_INC},
    {"$mul", OP_MUL},
    {"$min", OP_MIN},
    {"$max", OP_MAX},
    {"$push", OP_PUSH},
    {"$addToSet", OP_ADD_TO_SET},
    {"$pull", OP_PULL},
    {"$pullAll", OP_PULL_ALL},
    {"$pop", OP_POP},
    {"$rename", OP_RENAME_TO},
    {"$setOnInsert", OP_SET_ON_INSERT},
    {"$currentDate", OP_CURRENT_DATE},
    {"$bit", OP_BIT},
};

/* ------------------------------------------------------------------------
 * Nodes
 * ------------------------------------------------------------------------ */

unode_t *
msim_unode_new(int kind, const char *name)
{
    unode_t *u = msim_zalloc(sizeof *u); /* holds bson_iter_t: 128-byte aligned */
    u->kind = kind;
    u->name = strdup(name ? name : "");
    if (u->name == NULL)
        abort();
    return u;
}

void
msim_unode_free(unode_t *u)
{
    if (u == NULL)
        return;
    if (!u->borrowed) {
        for (size_t i = 0; i < u->n; i++)
            msim_unode_free(u->kids[i]);
        msim_unode_free(u->pos);
        msim_matcher_destroy(u->pull);
    }
    free(u->kids);
    free(u->name);
    free(u->path);
    free(u->from);
    free(u);
}

void
msim_unode_add(unode_t *p, unode_t *kid)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 4;
        p->kids = realloc(p->kids, p->cap * sizeof *p->kids);
        if (p->kids == NULL)
            abort();
    }
    p->kids[p->n++] = kid;
}

unode_t *
msim_unode_get(const unode_t *p, const char *name)
{
    if (p->kind == K_OBJ && strcmp(name, "$") == 0)
        return p->pos;
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->kids[i]->name, name) == 0)
            return p->kids[i];
    return NULL;
}

int
msim_field_order(const char *a, const char *b)
{
    /* mongod's cmpPathsAndArrayIndexes: names that start with a digit and
     * have no leading zero order by length, then as strings (so decimal
     * positions order as numbers); everything else as strings */
    size_t la = strlen(a), lb = strlen(b);
    bool na = la > 0 && a[0] >= '0' && a[0] <= '9' && !(a[0] == '0' && la > 1);
    bool nb = lb > 0 && b[0] >= '0' && b[0] <= '9' && !(b[0] == '0' && lb > 1);
    if (na && nb && la != lb)
        return la < lb ? -1 : 1;
    return strcmp(a, b);
}

static int
unode_order(const void *pa, const void *pb)
{
    const unode_t *a = *(const unode_t *const *)pa, *b = *(const unode_t *const *)pb;
    return msim_field_order(a->name, b->name);
}

void
msim_unode_sort(unode_t *u)
{
    if (u->n > 1)
        qsort(u->kids, u->n, sizeof *u->kids, unode_order);
    if (!u->borrowed) {
        for (size_t i = 0; i < u->n; i++)
            msim_unode_sort(u->kids[i]);
        if (u->pos != NULL)
            msim_unode_sort(u->pos);
    }
}

/* ------------------------------------------------------------------------
 * Paths (mongod's FieldRef rules)
 * ------------------------------------------------------------------------ */

bool
msim_is_filter_id(const char *part)
{
    size_t l = strlen(part);
    return l >= 3 && part[0] == '$' && part[1] == '[' && part[l - 1] == ']';
}

/* split_path cuts a dotted path into its parts (caller frees parts[0] and parts). */
static char **
split_path(const char *path, size_t *n)
{
    char *copy = strdup(path), **parts;
    size_t cnt = 1, i = 0;
    if (copy == NULL)
        abort();
    for (const char *p = path; *p; p++)
        cnt += *p == '.';
    parts = malloc(cnt * sizeof *parts);
    if (parts == NULL)
        abort();
    parts[i++] = copy;
    for (char *p = copy; *p; p++)
        if (*p == '.') {
            *p = '\0';
            parts[i++] = p + 1;
        }
    *n = cnt;
    return parts;
}

static void
free_parts(char **parts)
{
    if (parts != NULL)
        free(parts[0]);
    free(parts);
}

/* check_path applies mongod's fieldchecker and positional rules to a leaf path. */
static bool
check_path(const char *path, char **parts, size_t n, const msim_update_t *up, mg_error_t *error)
{
    size_t npos = 0, first_pos = 0;
    if (path[0] == '\0')
        return msim_fail(error, 56, "An empty update path is not valid.");
    for (size_t i = 0; i < n; i++) {
        if (parts[i][0] == '\0')
            return msim_fail(error, 56,
                             "The update path '%s' contains an empty field name, which is not "
                             "allowed.",
                             path);
        if (strcmp(parts[i], "$") == 0 && npos++ == 0)
            first_pos = i;
    }
    if (npos > 1)
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "Too many positional (i.e. '$') elements found in path '%s'", path);
    if (npos == 1 && first_pos == 0)
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "Cannot have positional (i.e. '$') element in the first position in "
                         "path '%s'",
                         path);
    for (size_t i = 0; i < n; i++) {
        char id[256];
        if (!msim_is_filter_id(parts[i]))
            continue;
        if (i == 0)
            return msim_fail(error, MSIM_E_BAD_VALUE,
                             "Cannot have array filter identifier (i.e. '$[<id>]') element in "
                             "the first position in path '%s'",
                             path);
        snprintf(id, sizeof id, "%.*s", (int)strlen(parts[i]) - 3, parts[i] + 2);
        if (id[0] != '\0' && msim_update_filter(up, id) == NULL)
            return msim_fail(error, MSIM_E_BAD_VALUE,
                             "No array filter found for identifier '%s' in path '%s'", id, path);
    }
    return true;
}

/* child_name is a part's name in the tree: an identifier without $[ ], else the part. */
static void
child_name(const char *part, char *out, size_t outsz)
{
    if (msim_is_filter_id(part))
        snprintf(out, outsz, "%.*s", (int)strlen(part) - 3, part + 2);
    else
        snprintf(out, outsz, "%s", part);
}

static bool
conflict(const char *path, char **parts, size_t upto, mg_error_t *error)
{
    char at[1024];
    size_t off = 0;
    for (size_t i = 0; i < upto && off < sizeof at; i++)
        off += (size_t)snprintf(at + off, sizeof at - off, "%s%s", i ? "." : "", parts[i]);
    return msim_fail(error, 40, "Updating the path '%s' would create a conflict at '%s'", path, at);
}

/* merge_leaf places leaf at path in the tree (mongod's UpdateObjectNode::parseAndMerge). */
static bool
merge_leaf(msim_update_t *up, const char *path, unode_t *leaf, mg_error_t *error)
{
    size_t n;
    char **parts = split_path(path, &n), name[1024];
    unode_t *cur = up->root;
    bool ok = check_path(path, parts, n, up, error);
    for (size_t i = 0; ok && i + 1 < n; i++) {
        bool want_arr = msim_is_filter_id(parts[i + 1]);
        unode_t *kid;
        child_name(parts[i], name, sizeof name);
        kid = msim_unode_get(cur, name);
        if (kid != NULL && kid->kind != (want_arr ? K_ARR : K_OBJ)) {
            ok = conflict(path, parts, i + 1, error);
        } else if (kid == NULL) {
            kid = msim_unode_new(want_arr ? K_ARR : K_OBJ, name);
            if (cur->kind == K_OBJ && strcmp(name, "$") == 0)
                cur->pos = kid;
            else
                msim_unode_add(cur, kid);
        }
        cur = kid;
    }
    if (ok) {
        child_name(parts[n - 1], name, sizeof name);
        if (msim_unode_get(cur, name) != NULL) {
            ok = conflict(path, parts, n, error);
        } else {
            free(leaf->name);
            leaf->name = strdup(name);
            if (cur->kind == K_OBJ && strcmp(name, "$") == 0)
                cur->pos = leaf;
            else
                msim_unode_add(cur, leaf);
            for (size_t i = 0; i < n; i++)
                up->positional |= strcmp(parts[i], "$") == 0;
        }
    }
    free_parts(parts);
    if (!ok)
        msim_unode_free(leaf);
    return ok;
}

/* ------------------------------------------------------------------------
 * Parsing modifiers
 * ------------------------------------------------------------------------ */

static bool
parse_rename(msim_update_t *up, const bson_iter_t *f, mg_error_t *error)
{
    const char *from = bson_iter_key(f), *to;
    unode_t *ph = msim_unode_new(K_LEAF, NULL), *leaf;
    size_t lf, lt;
    char *j;
    ph->op = OP_RENAME_FROM;
    ph->path = strdup(from);
    if (!merge_leaf(up, from, ph, error))
        return false;
    if (!BSON_ITER_HOLDS_UTF8(f)) {
        j = msim_value_json(f);
        msim_fail(error, MSIM_E_BAD_VALUE, "The 'to' field for $rename must be a string: %s: %s",
                  from, j);
        bson_free(j);
        return false;
    }
    to = bson_iter_utf8(f, NULL);
    lf = strlen(from);
    lt = strlen(to);
    if (strcmp(from, to) == 0)
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "The source and target field for $rename must differ: %s: \"%s\"", from,
                         to);
    if ((lf < lt && strncmp(from, to, lf) == 0 && to[lf] == '.') ||
        (lt < lf && strncmp(from, to, lt) == 0 && from[lt] == '.'))
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "The source and target field for $rename must not be on the same path: "
                         "%s: \"%s\"",
                         from, to);
    if (strstr(from, "$") != NULL && (strstr(from, ".$") != NULL))
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "The source field for $rename may not be dynamic: %s", from);
    if (strstr(to, ".$") != NULL || to[0] == '$')
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "The destination field for $rename may not be dynamic: %s", to);
    leaf = msim_unode_new(K_LEAF, NULL);
    leaf->op = OP_RENAME_TO;
    leaf->opname = "$rename";
    leaf->arg = *f;
    leaf->path = strdup(to);
    leaf->from = strdup(from);
    return merge_leaf(up, to, leaf, error);
}

static bool
parse_field(msim_update_t *up, int op, const char *opname, const bson_iter_t *f, mg_error_t *error)
{
    unode_t *leaf;
    if (op == OP_RENAME_TO)
        return parse_rename(up, f, error);
    leaf = msim_unode_new(K_LEAF, NULL);
    leaf->op = op;
    leaf->opname = opname;
    leaf->arg = *f;
    leaf->path = strdup(bson_iter_key(f));
    if (leaf->path == NULL)
        abort();
    if (!msim_leaf_init(leaf, error)) {
        msim_unode_free(leaf);
        return false;
    }
    return merge_leaf(up, bson_iter_key(f), leaf, error);
}

/* used_ids collects the identifiers the tree refers to. */
static bool
uses_id(const unode_t *u, const char *id)
{
    if (u == NULL)
        return false;
    for (size_t i = 0; i < u->n; i++) {
        if (u->kind == K_ARR && strcmp(u->kids[i]->name, id) == 0)
            return true;
        if (uses_id(u->kids[i], id))
            return true;
    }
    return uses_id(u->pos, id);
}

bool
msim_update_parse_ops(msim_update_t *up, mg_error_t *error)
{
    bson_iter_t ops, f;
    up->root = msim_unode_new(K_OBJ, NULL);
    bson_iter_recurse(&up->u, &ops);
    while (bson_iter_next(&ops)) {
        const char *op = bson_iter_key(&ops);
        int code = -1;
        for (size_t i = 0; i < sizeof modifiers / sizeof modifiers[0]; i++)
            if (strcmp(modifiers[i].name, op) == 0)
                code = modifiers[i].op;
        if (code < 0)
            return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                             "Unknown modifier: %s. Expected a valid update modifier or "
                             "pipeline-style update specified as an array",
                             op);
        if (!BSON_ITER_HOLDS_DOCUMENT(&ops)) {
            char *j = msim_value_json(&ops);
            msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                      "Modifiers operate on fields but we found type %s instead. For example: "
                      "{$mod: {<field>: ...}} not {%s: %s}",
                      msim_type_name(bson_iter_type(&ops)), op, j);
            bson_free(j);
            return false;
        }
        bson_iter_recurse(&ops, &f);
        while (bson_iter_next(&f))
            if (!parse_field(up, code, op, &f, error))
                return false;
    }
    for (size_t i = 0; i < up->nfilters; i++)
        if (!uses_id(up->root, up->filters[i].id)) {
            char *j = msim_value_json(&up->u);
            msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                      "The array filter for identifier '%s' was not used in the update %s",
                      up->filters[i].id, j);
            bson_free(j);
            return false;
        }
    msim_unode_sort(up->root);
    return true;
}
