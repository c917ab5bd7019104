/*
 * tests/mongosim/msim_match.c - the query matcher: a filter document is
 * compiled once into a tree of nodes, then evaluated against raw BSON with
 * MongoDB's path and array semantics (a predicate on a path holds when it
 * holds for any value reached through arrays, or for the array itself).
 */
#include "msim.h"

#include <regex.h>
#include <stdlib.h>
#include <string.h>

enum { N_AND, N_OR, N_NOR, N_PATH };

enum {
    OP_EQ,
    OP_NE,
    OP_GT,
    OP_GTE,
    OP_LT,
    OP_LTE,
    OP_IN,
    OP_NIN,
    OP_EXISTS,
    OP_TYPE,
    OP_SIZE,
    OP_REGEX,
    OP_ELEM_OBJ,
    OP_ELEM_VAL,
    OP_NOT,
    OP_ALL,
    OP_MOD,
};

typedef struct node {
    int kind;
    struct node **kids;
    size_t nkids;
    char **comps;
    size_t ncomps;
    int op;
    bson_iter_t arg;
    regex_t *re;
    regex_t **in_res; /* per $in element, NULL unless a regex */
    size_t nin;
    bson_type_t types[32];
    size_t ntypes;
    bool type_number;
    int64_t size;
    int64_t mod_d, mod_r;
    bool exists;
    struct node *sub;
} node_t;

struct msim_matcher {
    bson_t *filter;
    node_t *root;
    bool empty;
};

static void
node_free(node_t *n)
{
    if (n == NULL)
        return;
    for (size_t i = 0; i < n->nkids; i++)
        node_free(n->kids[i]);
    free(n->kids);
    for (size_t i = 0; i < n->ncomps; i++)
        free(n->comps[i]);
    free(n->comps);
    if (n->re != NULL) {
        regfree(n->re);
        free(n->re);
    }
    for (size_t i = 0; i < n->nin; i++) {
        if (n->in_res[i] != NULL) {
            regfree(n->in_res[i]);
            free(n->in_res[i]);
        }
    }
    free(n->in_res);
    node_free(n->sub);
    free(n);
}

static node_t *
node_new(int kind)
{
    node_t *n = msim_zalloc(sizeof *n);
    n->kind = kind;
    return n;
}

static void
node_add(node_t *parent, node_t *kid)
{
    parent->kids = realloc(parent->kids, (parent->nkids + 1) * sizeof(node_t *));
    if (parent->kids == NULL)
        abort();
    parent->kids[parent->nkids++] = kid;
}

static void
set_path(node_t *n, const char *path)
{
    const char *p = path;
    n->ncomps = 0;
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        n->comps = realloc(n->comps, (n->ncomps + 1) * sizeof(char *));
        if (n->comps == NULL)
            abort();
        n->comps[n->ncomps++] = strndup(p, len);
        if (dot == NULL)
            break;
        p = dot + 1;
    }
}

/* ------------------------------------------------------------------------
 * Regular expressions: PCRE patterns mapped onto POSIX ERE.
 * ------------------------------------------------------------------------ */

static char *
pcre_to_ere(const char *pat)
{
    size_t n = strlen(pat);
    char *out = malloc(n * 12 + 1), *o = out;
    bool in_class = false;
    if (out == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        char c = pat[i];
        if (c == '\\' && i + 1 < n) {
            char e = pat[++i];
            const char *rep = NULL, *crep = NULL;
            switch (e) {
            case 'd':
                rep = "[0-9]";
                crep = "0-9";
                break;
            case 'D':
                rep = "[^0-9]";
                break;
            case 'w':
                rep = "[A-Za-z0-9_]";
                crep = "A-Za-z0-9_";
                break;
            case 'W':
                rep = "[^A-Za-z0-9_]";
                break;
            case 's':
                rep = "[[:space:]]";
                crep = "[:space:]";
                break;
            case 'S':
                rep = "[^[:space:]]";
                break;
            case 'n':
                rep = "\n";
                crep = "\n";
                break;
            case 't':
                rep = "\t";
                crep = "\t";
                break;
            default:
                break;
            }
            if (in_class) {
                if (crep != NULL) {
                    o = stpcpy(o, crep);
                } else if (e == ']' || e == '\\' || e == '-' || e == '^') {
                    /* POSIX classes have no escapes: move such chars where literal */
                    *o++ = e;
                } else {
                    *o++ = e;
                }
            } else if (rep != NULL) {
                o = stpcpy(o, rep);
            } else {
                *o++ = '\\';
                *o++ = e;
            }
            continue;
        }
        if (in_class) {
            if (c == ']')
                in_class = false;
            *o++ = c;
            continue;
        }
        if (c == '[') {
            in_class = true;
            *o++ = c;
            if (i + 1 < n && pat[i + 1] == '^')
                *o++ = pat[++i];
            if (i + 1 < n && pat[i + 1] == ']')
                *o++ = pat[++i];
            continue;
        }
        /* lazy quantifiers: only matching matters here, so drop the '?' */
        if (c == '?' && o > out && (o[-1] == '*' || o[-1] == '+' || o[-1] == '?' || o[-1] == '}'))
            continue;
        *o++ = c;
    }
    *o = '\0';
    return out;
}

static regex_t *
compile_regex(const char *pattern, const char *options, mg_error_t *error)
{
    int flags = REG_EXTENDED | REG_NOSUB;
    regex_t *re;
    char *ere;
    int rc;
    for (const char *o = options; o && *o; o++) {
        switch (*o) {
        case 'i':
            flags |= REG_ICASE;
            break;
        case 'm':
            flags |= REG_NEWLINE;
            break;
        case 's':
        case 'x':
        case 'u':
        case 'l':
            break;
        default:
            msim_fail(error, 51108, "invalid flag in regex options: %c", *o);
            return NULL;
        }
    }
    re = malloc(sizeof *re);
    if (re == NULL)
        abort();
    ere = pcre_to_ere(pattern);
    rc = regcomp(re, ere, flags);
    free(ere);
    if (rc != 0) {
        char buf[128];
        regerror(rc, re, buf, sizeof buf);
        free(re);
        msim_fail(error, 51091, "Regular expression is invalid: %s", buf);
        return NULL;
    }
    return re;
}

static bool
regex_test(const regex_t *re, const bson_iter_t *v)
{
    uint32_t len;
    const char *s;
    char *copy;
    bool ok;
    if (BSON_ITER_HOLDS_UTF8(v))
        s = bson_iter_utf8(v, &len);
    else if (bson_iter_type(v) == BSON_TYPE_SYMBOL)
        s = bson_iter_symbol(v, &len);
    else
        return false;
    if (strlen(s) == len)
        return regexec(re, s, 0, NULL, 0) == 0;
    copy = strndup(s, len); /* embedded NUL: match the prefix */
    ok = regexec(re, copy, 0, NULL, 0) == 0;
    free(copy);
    return ok;
}

/* ------------------------------------------------------------------------
 * Compilation
 * ------------------------------------------------------------------------ */

static node_t *parse_filter(const bson_iter_t *doc, mg_error_t *error);
static bool parse_ops(node_t *parent, const char *path, const bson_iter_t *ops, bool in_elem,
                      mg_error_t *error);

static bool
is_op_doc(const bson_iter_t *v)
{
    bson_iter_t c;
    if (!BSON_ITER_HOLDS_DOCUMENT(v) || !bson_iter_recurse(v, &c) || !bson_iter_next(&c))
        return false;
    return bson_iter_key(&c)[0] == '$';
}

static node_t *
path_node(const char *path, int op, const bson_iter_t *arg)
{
    node_t *n = node_new(N_PATH);
    if (path != NULL)
        set_path(n, path);
    n->op = op;
    if (arg != NULL)
        n->arg = *arg;
    return n;
}

static bool
parse_type_arg(node_t *n, const bson_iter_t *arg, mg_error_t *error)
{
    bson_iter_t one = *arg, c;
    bool list = BSON_ITER_HOLDS_ARRAY(arg);
    if (list && !bson_iter_recurse(arg, &c))
        return msim_fail(error, MSIM_E_BAD_VALUE, "invalid $type array");
    for (;;) {
        const bson_iter_t *v;
        if (list) {
            if (!bson_iter_next(&c))
                break;
            v = &c;
        } else {
            v = &one;
        }
        if (n->ntypes >= 32)
            return msim_fail(error, MSIM_E_BAD_VALUE, "too many types in $type");
        if (BSON_ITER_HOLDS_UTF8(v)) {
            bson_type_t t;
            bool number;
            if (!msim_type_from_name(bson_iter_utf8(v, NULL), &t, &number))
                return msim_fail(error, MSIM_E_BAD_VALUE, "Unknown type name alias: %s",
                                 bson_iter_utf8(v, NULL));
            if (number)
                n->type_number = true;
            else
                n->types[n->ntypes++] = t;
        } else if (msim_is_number(bson_iter_type(v))) {
            int64_t code = 0;
            msim_iter_int64(v, &code);
            if (code == -1)
                n->types[n->ntypes++] = BSON_TYPE_MINKEY;
            else if (code == 127)
                n->types[n->ntypes++] = BSON_TYPE_MAXKEY;
            else if (code >= 1 && code <= 19)
                n->types[n->ntypes++] = (bson_type_t)code;
            else
                return msim_fail(error, MSIM_E_BAD_VALUE, "Invalid numerical type code: %lld",
                                 (long long)code);
        } else {
            return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                             "type must be represented as a number or a string");
        }
        if (!list)
            break;
    }
    return true;
}

static bool
parse_one_op(node_t *parent, const char *path, const char *op, const bson_iter_t *arg,
             const bson_iter_t *ops, mg_error_t *error)
{
    node_t *n = NULL;
    if (strcmp(op, "$eq") == 0) {
        n = path_node(path, OP_EQ, arg);
    } else if (strcmp(op, "$ne") == 0) {
        n = path_node(path, OP_NE, arg);
    } else if (strcmp(op, "$gt") == 0) {
        n = path_node(path, OP_GT, arg);
    } else if (strcmp(op, "$gte") == 0) {
        n = path_node(path, OP_GTE, arg);
    } else if (strcmp(op, "$lt") == 0) {
        n = path_node(path, OP_LT, arg);
    } else if (strcmp(op, "$lte") == 0) {
        n = path_node(path, OP_LTE, arg);
    } else if (strcmp(op, "$in") == 0 || strcmp(op, "$nin") == 0 || strcmp(op, "$all") == 0) {
        bson_iter_t c;
        size_t i = 0;
        if (!BSON_ITER_HOLDS_ARRAY(arg))
            return msim_fail(error, MSIM_E_BAD_VALUE, "%s needs an array", op);
        n = path_node(path, op[1] == 'i' ? OP_IN : op[1] == 'n' ? OP_NIN : OP_ALL, arg);
        bson_iter_recurse(arg, &c);
        while (bson_iter_next(&c))
            n->nin++;
        n->in_res = calloc(n->nin ? n->nin : 1, sizeof(regex_t *));
        bson_iter_recurse(arg, &c);
        while (bson_iter_next(&c)) {
            if (BSON_ITER_HOLDS_REGEX(&c)) {
                const char *opts;
                const char *pat = bson_iter_regex(&c, &opts);
                n->in_res[i] = compile_regex(pat, opts, error);
                if (n->in_res[i] == NULL) {
                    node_free(n);
                    return false;
                }
            } else if (is_op_doc(&c)) {
                node_free(n);
                return msim_fail(error, MSIM_E_BAD_VALUE, "cannot nest $ under %s", op);
            }
            i++;
        }
    } else if (strcmp(op, "$exists") == 0) {
        n = path_node(path, OP_EXISTS, arg);
        n->exists = msim_truthy(arg);
    } else if (strcmp(op, "$type") == 0) {
        n = path_node(path, OP_TYPE, arg);
        if (!parse_type_arg(n, arg, error)) {
            node_free(n);
            return false;
        }
    } else if (strcmp(op, "$size") == 0) {
        n = path_node(path, OP_SIZE, arg);
        if (!msim_iter_int64(arg, &n->size) ||
            (BSON_ITER_HOLDS_DOUBLE(arg) && (double)n->size != bson_iter_double(arg)) ||
            n->size < 0) {
            node_free(n);
            return msim_fail(error, MSIM_E_BAD_VALUE,
                             "Failed to parse $size. Expected a non-negative number in: $size");
        }
    } else if (strcmp(op, "$mod") == 0) {
        bson_iter_t c;
        n = path_node(path, OP_MOD, arg);
        if (!BSON_ITER_HOLDS_ARRAY(arg) || !bson_iter_recurse(arg, &c) || !bson_iter_next(&c) ||
            !msim_iter_int64(&c, &n->mod_d) || !bson_iter_next(&c) ||
            !msim_iter_int64(&c, &n->mod_r) || bson_iter_next(&c) || n->mod_d == 0) {
            node_free(n);
            return msim_fail(error, MSIM_E_BAD_VALUE,
                             "malformed mod, needs to be an array of [divisor, remainder]");
        }
    } else if (strcmp(op, "$regex") == 0) {
        const char *pat, *opts = "";
        bson_iter_t o;
        if (BSON_ITER_HOLDS_REGEX(arg)) {
            pat = bson_iter_regex(arg, &opts);
        } else if (BSON_ITER_HOLDS_UTF8(arg)) {
            pat = bson_iter_utf8(arg, NULL);
        } else {
            return msim_fail(error, MSIM_E_BAD_VALUE, "$regex has to be a string");
        }
        o = *ops;
        if (bson_iter_find(&o, "$options") && BSON_ITER_HOLDS_UTF8(&o))
            opts = bson_iter_utf8(&o, NULL);
        n = path_node(path, OP_REGEX, arg);
        n->re = compile_regex(pat, opts, error);
        if (n->re == NULL) {
            node_free(n);
            return false;
        }
    } else if (strcmp(op, "$options") == 0) {
        return true; /* consumed by $regex */
    } else if (strcmp(op, "$not") == 0) {
        n = path_node(path, OP_NOT, arg);
        n->sub = node_new(N_AND);
        if (BSON_ITER_HOLDS_REGEX(arg)) {
            const char *opts;
            const char *pat = bson_iter_regex(arg, &opts);
            node_t *r = path_node(path, OP_REGEX, arg);
            r->re = compile_regex(pat, opts, error);
            if (r->re == NULL) {
                node_free(r);
                node_free(n);
                return false;
            }
            node_add(n->sub, r);
        } else if (is_op_doc(arg)) {
            if (!parse_ops(n->sub, path, arg, false, error)) {
                node_free(n);
                return false;
            }
        } else {
            node_free(n);
            return msim_fail(error, MSIM_E_BAD_VALUE, "$not needs a regex or a document");
        }
    } else if (strcmp(op, "$elemMatch") == 0) {
        bson_iter_t c;
        if (!BSON_ITER_HOLDS_DOCUMENT(arg))
            return msim_fail(error, MSIM_E_BAD_VALUE, "$elemMatch needs an Object");
        bson_iter_recurse(arg, &c);
        if (bson_iter_next(&c) && bson_iter_key(&c)[0] == '$' &&
            strcmp(bson_iter_key(&c), "$and") != 0 && strcmp(bson_iter_key(&c), "$or") != 0 &&
            strcmp(bson_iter_key(&c), "$nor") != 0) {
            n = path_node(path, OP_ELEM_VAL, arg);
            n->sub = node_new(N_AND);
            if (!parse_ops(n->sub, NULL, arg, true, error)) {
                node_free(n);
                return false;
            }
        } else {
            n = path_node(path, OP_ELEM_OBJ, arg);
            n->sub = parse_filter(arg, error);
            if (n->sub == NULL) {
                node_free(n);
                return false;
            }
        }
    } else if (strcmp(op, "$comment") == 0) {
        return true;
    } else {
        return msim_fail(error, MSIM_E_BAD_VALUE, "unknown operator: %s", op);
    }
    node_add(parent, n);
    return true;
}

static bool
parse_ops(node_t *parent, const char *path, const bson_iter_t *ops, bool in_elem, mg_error_t *error)
{
    bson_iter_t c, start;
    if (!bson_iter_recurse(ops, &c))
        return msim_fail(error, MSIM_E_BAD_VALUE, "invalid operator document");
    start = c;
    while (bson_iter_next(&c)) {
        const char *k = bson_iter_key(&c);
        if (k[0] != '$')
            return msim_fail(error, MSIM_E_BAD_VALUE, "unknown operator: %s", k);
        if (!parse_one_op(parent, path, k, &c, &start, error))
            return false;
    }
    return true;
}

static node_t *
parse_filter(const bson_iter_t *doc, mg_error_t *error)
{
    node_t *and = node_new(N_AND);
    bson_iter_t it;
    if (!bson_iter_recurse(doc, &it)) {
        node_free(and);
        msim_fail(error, MSIM_E_BAD_VALUE, "filter must be an object");
        return NULL;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (k[0] == '$') {
            int kind;
            bson_iter_t c;
            node_t *grp;
            if (strcmp(k, "$and") == 0)
                kind = N_AND;
            else if (strcmp(k, "$or") == 0)
                kind = N_OR;
            else if (strcmp(k, "$nor") == 0)
                kind = N_NOR;
            else if (strcmp(k, "$comment") == 0)
                continue;
            else {
                node_free(and);
                msim_fail(error, MSIM_E_BAD_VALUE,
                          "unknown top level operator: %s. If you have a field name that starts "
                          "with a '$' symbol, consider using $getField or $setField.",
                          k);
                return NULL;
            }
            if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &c)) {
                node_free(and);
                msim_fail(error, MSIM_E_BAD_VALUE, "%s must be an array", k);
                return NULL;
            }
            grp = node_new(kind);
            while (bson_iter_next(&c)) {
                node_t *sub;
                if (!BSON_ITER_HOLDS_DOCUMENT(&c)) {
                    node_free(grp);
                    node_free(and);
                    msim_fail(error, MSIM_E_BAD_VALUE,
                              "$or/$and/$nor entries need to be full objects");
                    return NULL;
                }
                sub = parse_filter(&c, error);
                if (sub == NULL) {
                    node_free(grp);
                    node_free(and);
                    return NULL;
                }
                node_add(grp, sub);
            }
            if (grp->nkids == 0) {
                node_free(grp);
                node_free(and);
                msim_fail(error, MSIM_E_BAD_VALUE, "%s must be a nonempty array", k);
                return NULL;
            }
            node_add(and, grp);
        } else if (is_op_doc(&it)) {
            if (!parse_ops(and, k, &it, false, error)) {
                node_free(and);
                return NULL;
            }
        } else if (BSON_ITER_HOLDS_REGEX(&it)) {
            const char *opts;
            const char *pat = bson_iter_regex(&it, &opts);
            node_t *r = path_node(k, OP_REGEX, &it);
            r->re = compile_regex(pat, opts, error);
            if (r->re == NULL) {
                node_free(r);
                node_free(and);
                return NULL;
            }
            node_add(and, r);
        } else {
            node_add(and, path_node(k, OP_EQ, &it));
        }
    }
    return and;
}

msim_matcher_t *
msim_matcher_new(const bson_t *filter, mg_error_t *error)
{
    msim_matcher_t *m = msim_zalloc(sizeof *m);
    bson_iter_t root;
    bson_t wrap = BSON_INITIALIZER;
    BSON_APPEND_DOCUMENT(&wrap, "f", filter ? filter : &wrap);
    m->filter = bson_copy(&wrap);
    bson_destroy(&wrap);
    bson_iter_init_find(&root, m->filter, "f");
    m->root = parse_filter(&root, error);
    if (m->root == NULL) {
        bson_destroy(m->filter);
        free(m);
        return NULL;
    }
    m->empty = m->root->nkids == 0;
    return m;
}

void
msim_matcher_destroy(msim_matcher_t *m)
{
    if (m == NULL)
        return;
    node_free(m->root);
    bson_destroy(m->filter);
    free(m);
}

bool
msim_matcher_is_empty(const msim_matcher_t *m)
{
    return m->empty;
}

bool
msim_matcher_id_eq(const msim_matcher_t *m, bson_iter_t *eq)
{
    for (size_t i = 0; i < m->root->nkids; i++) {
        node_t *n = m->root->kids[i];
        if (n->kind == N_PATH && n->op == OP_EQ && n->ncomps == 1 &&
            strcmp(n->comps[0], "_id") == 0 && !BSON_ITER_HOLDS_ARRAY(&n->arg) &&
            !BSON_ITER_HOLDS_NULL(&n->arg) && !BSON_ITER_HOLDS_REGEX(&n->arg)) {
            *eq = n->arg;
            return true;
        }
    }
    return false;
}

bool
msim_matcher_id_bounds(const msim_matcher_t *m, bson_iter_t *lo, bool *has_lo, bson_iter_t *hi,
                       bool *has_hi)
{
    *has_lo = *has_hi = false;
    if (m == NULL)
        return false;
    for (size_t i = 0; i < m->root->nkids; i++) {
        const node_t *n = m->root->kids[i];
        bson_type_t t;
        if (n->kind != N_PATH || n->ncomps != 1 || strcmp(n->comps[0], "_id") != 0)
            continue;
        t = bson_iter_type(&n->arg);
        if (t == BSON_TYPE_ARRAY || t == BSON_TYPE_REGEX || t == BSON_TYPE_NULL ||
            t == BSON_TYPE_MINKEY || t == BSON_TYPE_MAXKEY || t == BSON_TYPE_UNDEFINED)
            continue;
        if (n->op == OP_GT || n->op == OP_GTE || n->op == OP_EQ) {
            if (!*has_lo || msim_cmp(&n->arg, lo) > 0)
                *lo = n->arg;
            *has_lo = true;
        }
        if (n->op == OP_LT || n->op == OP_LTE || n->op == OP_EQ) {
            if (!*has_hi || msim_cmp(&n->arg, hi) < 0)
                *hi = n->arg;
            *has_hi = true;
        }
    }
    return *has_lo || *has_hi;
}

/* ------------------------------------------------------------------------
 * Evaluation
 * ------------------------------------------------------------------------ */

static bool eval(const node_t *n, const bson_iter_t *root);

typedef bool (*leaf_fn)(const node_t *n, const bson_iter_t *leaf);

/*
 * Match details for the positional $ update operator (mongod's
 * MatchDetails::elemMatchKey): the position, in the first array a path
 * traverses, of the element through which a predicate matched. md_on is
 * set while a caller wants it; md_arrays counts the arrays entered along
 * the current path; md_key is the candidate of the outermost one; a path
 * predicate that holds copies it to md_result (so, as in mongod, the last
 * matching predicate of an $and wins). $elemMatch objects evaluate their
 * inner filter without details, as mongod does.
 */
static __thread bool md_on;
static __thread int md_arrays;
static __thread const char *md_key;
static __thread char md_result[24];

/* md_enter notes that el, an element of an array, is being tried. */
static const char *
md_enter(const bson_iter_t *el)
{
    const char *saved = md_key;
    if (md_arrays++ == 0)
        md_key = bson_iter_key(el);
    return saved;
}

static void
md_leave(const char *saved, bool hit)
{
    md_arrays--;
    if (!hit && md_arrays == 0)
        md_key = saved;
}

/* md_leaf: the leaf value el of an array matched (a leaf's own array expansion). */
static bool
md_leaf(const bson_iter_t *el)
{
    if (md_arrays == 0)
        md_key = bson_iter_key(el);
    return true;
}

/* walk calls fn for values at comps[i..] within the document container. */
static bool
walk(const node_t *n, const bson_iter_t *container, size_t i, leaf_fn fn)
{
    bson_iter_t it = *container, sub;
    if (!bson_iter_find(&it, n->comps[i]))
        return fn(n, NULL);
    if (i + 1 == n->ncomps)
        return fn(n, &it);
    if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_recurse(&it, &sub);
        return walk(n, &sub, i + 1, fn);
    }
    if (BSON_ITER_HOLDS_ARRAY(&it)) {
        const char *next = n->comps[i + 1];
        bool numeric = next[0] != '\0' && strspn(next, "0123456789") == strlen(next);
        bson_iter_t el;
        if (numeric) {
            bson_iter_recurse(&it, &el);
            if (bson_iter_find(&el, next)) {
                if (i + 2 == n->ncomps) {
                    if (fn(n, &el))
                        return true;
                } else if (BSON_ITER_HOLDS_DOCUMENT(&el)) {
                    bson_iter_recurse(&el, &sub);
                    if (walk(n, &sub, i + 2, fn))
                        return true;
                }
            }
        }
        bson_iter_recurse(&it, &el);
        while (bson_iter_next(&el)) {
            if (BSON_ITER_HOLDS_DOCUMENT(&el)) {
                const char *saved = md_enter(&el);
                bool hit;
                bson_iter_recurse(&el, &sub);
                hit = walk(n, &sub, i + 1, fn);
                md_leave(saved, hit);
                if (hit)
                    return true;
            }
        }
        return false;
    }
    return fn(n, NULL);
}

static bool
is_nullish(const bson_iter_t *v)
{
    return v == NULL || BSON_ITER_HOLDS_NULL(v) || bson_iter_type(v) == BSON_TYPE_UNDEFINED;
}

static bool
val_eq(const bson_iter_t *v, const bson_iter_t *arg)
{
    if (BSON_ITER_HOLDS_NULL(arg))
        return is_nullish(v);
    return v != NULL && msim_cmp(v, arg) == 0;
}

static bool
test_eq(const node_t *n, const bson_iter_t *leaf)
{
    bson_iter_t el;
    if (val_eq(leaf, &n->arg))
        return true;
    if (leaf != NULL && BSON_ITER_HOLDS_ARRAY(leaf) && bson_iter_recurse(leaf, &el)) {
        while (bson_iter_next(&el)) {
            if (!BSON_ITER_HOLDS_NULL(&n->arg) && val_eq(&el, &n->arg))
                return md_leaf(&el);
            if (BSON_ITER_HOLDS_NULL(&n->arg) && BSON_ITER_HOLDS_NULL(&el))
                return md_leaf(&el);
        }
    }
    return false;
}

static bool
cmp_ok(int op, const bson_iter_t *v, const bson_iter_t *arg)
{
    int c;
    bson_type_t ta = bson_iter_type(arg);
    if (msim_type_rank(bson_iter_type(v)) != msim_type_rank(ta) && ta != BSON_TYPE_MINKEY &&
        ta != BSON_TYPE_MAXKEY)
        return false;
    c = msim_cmp(v, arg);
    switch (op) {
    case OP_GT:
        return c > 0;
    case OP_GTE:
        return c >= 0;
    case OP_LT:
        return c < 0;
    default:
        return c <= 0;
    }
}

static bool
test_cmp(const node_t *n, const bson_iter_t *leaf)
{
    bson_iter_t el;
    if (leaf == NULL || is_nullish(leaf))
        return BSON_ITER_HOLDS_NULL(&n->arg) && (n->op == OP_GTE || n->op == OP_LTE);
    if (cmp_ok(n->op, leaf, &n->arg))
        return true;
    if (BSON_ITER_HOLDS_ARRAY(leaf) && bson_iter_recurse(leaf, &el))
        while (bson_iter_next(&el))
            if (cmp_ok(n->op, &el, &n->arg))
                return md_leaf(&el);
    return false;
}

static bool
in_one(const node_t *n, const bson_iter_t *v)
{
    bson_iter_t c;
    size_t i = 0;
    bson_iter_recurse(&n->arg, &c);
    while (bson_iter_next(&c)) {
        if (n->in_res[i] != NULL) {
            if (v != NULL &&
                (regex_test(n->in_res[i], v) || (BSON_ITER_HOLDS_REGEX(v) && msim_cmp(v, &c) == 0)))
                return true;
        } else if (val_eq(v, &c)) {
            return true;
        }
        i++;
    }
    return false;
}

static bool
test_in(const node_t *n, const bson_iter_t *leaf)
{
    bson_iter_t el;
    if (in_one(n, leaf))
        return true;
    if (leaf != NULL && BSON_ITER_HOLDS_ARRAY(leaf) && bson_iter_recurse(leaf, &el))
        while (bson_iter_next(&el))
            if (in_one(n, &el))
                return md_leaf(&el);
    return false;
}

static bool
type_one(const node_t *n, const bson_iter_t *v)
{
    bson_type_t t = bson_iter_type(v);
    if (n->type_number && msim_is_number(t))
        return true;
    for (size_t i = 0; i < n->ntypes; i++)
        if (n->types[i] == t)
            return true;
    return false;
}

static bool
test_type(const node_t *n, const bson_iter_t *leaf)
{
    bson_iter_t el;
    if (leaf == NULL)
        return false;
    if (type_one(n, leaf))
        return true;
    if (BSON_ITER_HOLDS_ARRAY(leaf) && bson_iter_recurse(leaf, &el))
        while (bson_iter_next(&el))
            if (type_one(n, &el))
                return md_leaf(&el);
    return false;
}

static bool
test_size(const node_t *n, const bson_iter_t *leaf)
{
    bson_iter_t el;
    int64_t count = 0;
    if (leaf == NULL || !BSON_ITER_HOLDS_ARRAY(leaf) || !bson_iter_recurse(leaf, &el))
        return false;
    while (bson_iter_next(&el))
        count++;
    return count == n->size;
}

static bool
regex_one(const node_t *n, const bson_iter_t *v)
{
    if (BSON_ITER_HOLDS_REGEX(v) && BSON_ITER_HOLDS_REGEX(&n->arg))
        return msim_cmp(v, &n->arg) == 0;
    return regex_test(n->re, v);
}

static bool
test_regex(const node_t *n, const bson_iter_t *leaf)
{
    bson_iter_t el;
    if (leaf == NULL)
        return false;
    if (regex_one(n, leaf))
        return true;
    if (BSON_ITER_HOLDS_ARRAY(leaf) && bson_iter_recurse(leaf, &el))
        while (bson_iter_next(&el))
            if (regex_one(n, &el))
                return md_leaf(&el);
    return false;
}

static bool
mod_one(const node_t *n, const bson_iter_t *v)
{
    int64_t x;
    if (!msim_is_number(bson_iter_type(v)) || !msim_iter_int64(v, &x))
        return false;
    return x % n->mod_d == n->mod_r;
}

static bool
test_mod(const node_t *n, const bson_iter_t *leaf)
{
    bson_iter_t el;
    if (leaf == NULL)
        return false;
    if (mod_one(n, leaf))
        return true;
    if (BSON_ITER_HOLDS_ARRAY(leaf) && bson_iter_recurse(leaf, &el))
        while (bson_iter_next(&el))
            if (mod_one(n, &el))
                return md_leaf(&el);
    return false;
}

static bool
test_exists(const node_t *n, const bson_iter_t *leaf)
{
    return leaf != NULL;
}

/* elem_val_test applies each operator of an $elemMatch to one element, no array expansion. */
static bool
elem_val_test(const node_t *and, const bson_iter_t *el)
{
    for (size_t i = 0; i < and->nkids; i++) {
        const node_t *k = and->kids[i];
        bool r;
        switch (k->op) {
        case OP_EQ:
            r = val_eq(el, &k->arg);
            break;
        case OP_NE:
            r = !val_eq(el, &k->arg);
            break;
        case OP_GT:
        case OP_GTE:
        case OP_LT:
        case OP_LTE:
            r = cmp_ok(k->op, el, &k->arg);
            break;
        case OP_IN:
            r = in_one(k, el);
            break;
        case OP_NIN:
            r = !in_one(k, el);
            break;
        case OP_EXISTS:
            r = k->exists;
            break;
        case OP_TYPE:
            r = type_one(k, el);
            break;
        case OP_SIZE:
            r = test_size(k, el);
            break;
        case OP_REGEX:
            r = regex_one(k, el);
            break;
        case OP_MOD:
            r = mod_one(k, el);
            break;
        case OP_NOT:
            r = !elem_val_test(k->sub, el);
            break;
        case OP_ELEM_OBJ:
        case OP_ELEM_VAL: {
            bson_iter_t e2;
            r = false;
            if (BSON_ITER_HOLDS_ARRAY(el) && bson_iter_recurse(el, &e2))
                while (!r && bson_iter_next(&e2)) {
                    if (k->op == OP_ELEM_VAL)
                        r = elem_val_test(k->sub, &e2);
                    else if (BSON_ITER_HOLDS_DOCUMENT(&e2)) {
                        bson_iter_t d;
                        bson_iter_recurse(&e2, &d);
                        r = eval(k->sub, &d);
                    }
                }
            break;
        }
        default:
            r = false;
        }
        if (!r)
            return false;
    }
    return true;
}

static bool
test_elem(const node_t *n, const bson_iter_t *leaf)
{
    bson_iter_t el;
    if (leaf == NULL || !BSON_ITER_HOLDS_ARRAY(leaf) || !bson_iter_recurse(leaf, &el))
        return false;
    while (bson_iter_next(&el)) {
        bool hit = false, on = md_on;
        md_on = false; /* the inner filter runs without match details */
        if (n->op == OP_ELEM_VAL) {
            hit = elem_val_test(n->sub, &el);
        } else if (BSON_ITER_HOLDS_DOCUMENT(&el)) {
            bson_iter_t d;
            bson_iter_recurse(&el, &d);
            hit = eval(n->sub, &d);
        }
        md_on = on;
        if (hit)
            return md_leaf(&el);
    }
    return false;
}

static bool eval_path_ops(const node_t *n, const bson_iter_t *root);

static bool
eval_path(const node_t *n, const bson_iter_t *root)
{
    const char *saved_key = md_key;
    int saved_arrays = md_arrays;
    bool r;
    md_key = NULL;
    md_arrays = 0;
    r = eval_path_ops(n, root);
    if (r && md_on && md_key != NULL && n->op != OP_NE && n->op != OP_NIN && n->op != OP_NOT &&
        n->op != OP_EXISTS)
        snprintf(md_result, sizeof md_result, "%s", md_key);
    md_key = saved_key;
    md_arrays = saved_arrays;
    return r;
}

static bool
eval_path_ops(const node_t *n, const bson_iter_t *root)
{
    switch (n->op) {
    case OP_EQ:
        return walk(n, root, 0, test_eq);
    case OP_NE:
        return !walk(n, root, 0, test_eq);
    case OP_GT:
    case OP_GTE:
    case OP_LT:
    case OP_LTE:
        return walk(n, root, 0, test_cmp);
    case OP_IN:
        return walk(n, root, 0, test_in);
    case OP_NIN:
        return !walk(n, root, 0, test_in);
    case OP_EXISTS:
        return walk(n, root, 0, test_exists) == n->exists;
    case OP_TYPE:
        return walk(n, root, 0, test_type);
    case OP_SIZE:
        return walk(n, root, 0, test_size);
    case OP_REGEX:
        return walk(n, root, 0, test_regex);
    case OP_MOD:
        return walk(n, root, 0, test_mod);
    case OP_ELEM_OBJ:
    case OP_ELEM_VAL:
        return walk(n, root, 0, test_elem);
    case OP_NOT:
        return !eval(n->sub, root);
    case OP_ALL: {
        bson_iter_t c;
        size_t i = 0;
        node_t tmp = *n;
        bool any = false;
        bson_iter_recurse(&n->arg, &c);
        while (bson_iter_next(&c)) {
            bool r;
            any = true;
            if (n->in_res[i] != NULL) {
                tmp.op = OP_REGEX;
                tmp.re = n->in_res[i];
                tmp.arg = c;
                r = walk(&tmp, root, 0, test_regex);
            } else {
                tmp.op = OP_EQ;
                tmp.arg = c;
                r = walk(&tmp, root, 0, test_eq);
            }
            if (!r)
                return false;
            i++;
        }
        return any;
    }
    default:
        return false;
    }
}

static bool
eval(const node_t *n, const bson_iter_t *root)
{
    switch (n->kind) {
    case N_AND:
        for (size_t i = 0; i < n->nkids; i++)
            if (!eval(n->kids[i], root))
                return false;
        return true;
    case N_OR:
        for (size_t i = 0; i < n->nkids; i++)
            if (eval(n->kids[i], root))
                return true;
        return false;
    case N_NOR:
        for (size_t i = 0; i < n->nkids; i++)
            if (eval(n->kids[i], root))
                return false;
        return true;
    default:
        return eval_path(n, root);
    }
}

bool
msim_matcher_match_pos(const msim_matcher_t *m, const uint8_t *data, uint32_t len, char *pos,
                       size_t possz)
{
    bool r;
    md_on = true;
    md_result[0] = '\0';
    r = msim_matcher_match(m, data, len);
    md_on = false;
    snprintf(pos, possz, "%s", r ? md_result : "");
    return r;
}

/* add_equalities collects the equality predicates of n and its $and children. */
static bool
add_equalities(const node_t *n, msim_equality_fn fn, void *arg)
{
    if (n->kind == N_AND) {
        for (size_t i = 0; i < n->nkids; i++)
            if (!add_equalities(n->kids[i], fn, arg))
                return false;
        return true;
    }
    if (n->kind == N_OR && n->nkids == 1) /* a one-clause $or is its clause */
        return add_equalities(n->kids[0], fn, arg);
    if (n->kind == N_PATH) {
        char path[1024];
        size_t off = 0;
        bson_iter_t v;
        bool single_in = false;
        for (size_t i = 0; i < n->ncomps; i++)
            off += (size_t)snprintf(path + off, off < sizeof path ? sizeof path - off : 0, "%s%s",
                                    i ? "." : "", n->comps[i]);
        if (off >= sizeof path)
            return true;
        if (n->op == OP_IN && n->nin == 1 && n->in_res[0] == NULL) {
            /* mongod rewrites a one-element $in into an equality */
            bson_iter_recurse(&n->arg, &v);
            single_in = bson_iter_next(&v);
        }
        if (n->op == OP_EQ)
            return fn(arg, path, &n->arg);
        if (single_in)
            return fn(arg, path, &v);
    }
    return true;
}

bool
msim_matcher_equalities(const msim_matcher_t *m, msim_equality_fn fn, void *arg)
{
    return m == NULL || add_equalities(m->root, fn, arg);
}

bool
msim_matcher_match(const msim_matcher_t *m, const uint8_t *data, uint32_t len)
{
    bson_iter_t root;
    if (m == NULL || m->empty)
        return true;
    if (!bson_iter_init_from_data(&root, data, len))
        return false;
    return eval(m->root, &root);
}
