/*
 * tests/mongosim/msim_update_internal.h - what the update engine's files
 * (msim_update.c parsing, msim_update_leaf.c modifiers, msim_update_apply.c
 * applying the tree, msim_update_exec.c statements) share.
 */
#ifndef MSIM_UPDATE_INTERNAL_H
#define MSIM_UPDATE_INTERNAL_H

#include "msim.h"

enum { K_OBJ, K_ARR, K_LEAF };

enum {
    OP_SET,
    OP_UNSET,
    OP_INC,
    OP_MUL,
    OP_MIN,
    OP_MAX,
    OP_PUSH,
    OP_ADD_TO_SET,
    OP_PULL,
    OP_PULL_ALL,
    OP_POP,
    OP_RENAME_FROM, /* the placeholder at a $rename's source */
    OP_RENAME_TO,
    OP_SET_ON_INSERT,
    OP_CURRENT_DATE,
    OP_BIT,
};

enum { PULL_EQ, PULL_WRAP, PULL_OBJ };

#define MSIM_MAX_BIT_OPS 16

/* A node of the update's prefix tree. */
typedef struct unode {
    int kind;
    char *name;          /* field or position; an array node's child: the identifier ("" for $[]) */
    struct unode **kids; /* sorted in mongod's field order */
    size_t n, cap;
    struct unode *pos; /* the positional $ child of an object node */
    bool borrowed;     /* a merged node: its children belong to other nodes */
    /* leaves */
    int op;
    const char *opname;
    bson_iter_t arg; /* into the update's own copy */
    char *path;      /* as written, for messages */
    char *from;      /* $rename: the source path */
    bson_iter_t each;
    bool has_each;
    int64_t position, slice;
    bool has_position, has_slice;
    int sort; /* 0 none, 1 whole values, 2 a pattern */
    double sort_dir;
    bson_iter_t sort_pattern;
    msim_matcher_t *pull;
    int pull_kind;
    struct {
        char op; /* 'a' and, 'o' or, 'x' xor */
        int64_t v;
        bool is64;
    } bits[MSIM_MAX_BIT_OPS];
    size_t nbits;
    bool ts; /* $currentDate {$type: "timestamp"} */
} unode_t;

typedef struct {
    char *id;
    msim_matcher_t *m;
} afilter_t;

struct msim_update {
    int kind;
    bson_t *copy; /* {u, f}: the statement's own copy, iterators point into it */
    bson_iter_t u;
    unode_t *root;
    bool positional;
    afilter_t *filters;
    size_t nfilters;
    msim_upipe_t *pipe;
};

/* An application of the tree to one document. */
typedef struct {
    char **parts;
    size_t n, cap;
} upath_t;

typedef struct {
    char **paths;
    bool *removed;
    size_t n;
} touched_t;

typedef struct {
    const msim_update_t *up;
    msim_mnode_t *root;
    const char *matched; /* the query's positional match, "" for none */
    bool insert;         /* building an upsert's document: $setOnInsert applies */
    touched_t *t;        /* updateDescription paths, or NULL */
    mg_error_t *error;
    upath_t taken;   /* the path to the element at hand, as it exists */
    upath_t create;  /* the rest of the path, to be created */
    unode_t **arena; /* merged nodes made while applying */
    size_t narena, carena;
} actx_t;

unode_t *msim_unode_new(int kind, const char *name);
void msim_unode_free(unode_t *u);
void msim_unode_add(unode_t *p, unode_t *kid);
unode_t *msim_unode_get(const unode_t *p, const char *name);
void msim_unode_sort(unode_t *u);
int msim_field_order(const char *a, const char *b);
bool msim_is_filter_id(const char *part);
const afilter_t *msim_update_filter(const msim_update_t *up, const char *id);
bool msim_update_parse_ops(msim_update_t *up, mg_error_t *error);

/* msim_update_leaf.c */
bool msim_leaf_init(unode_t *leaf, mg_error_t *error);
/* msim_leaf_existing applies leaf to the existing element e (at a->taken). */
bool msim_leaf_existing(actx_t *a, const unode_t *leaf, msim_mnode_t *e, mg_error_t *error);
/* msim_leaf_new_value makes the value a leaf creates at a missing path, or NULL for none. */
msim_mnode_t *msim_leaf_new_value(actx_t *a, const unode_t *leaf, mg_error_t *error);
/* msim_elem_string renders e as mongod's Element::toString ("key: value"). */
char *msim_elem_string(const msim_mnode_t *e);
char *msim_id_string(const msim_mnode_t *root);

/* msim_update_apply.c */
bool msim_apply_tree(actx_t *a, const unode_t *root);
void msim_actx_cleanup(actx_t *a);
void msim_touch(touched_t *t, const char *path, bool removed);
void msim_touched_free(touched_t *t);
/* msim_path_join renders parts[0..n) dotted (caller frees). */
char *msim_path_join(const upath_t *p, const upath_t *more);
/* msim_check_depth: e, at level (top-level fields are 1), keeps the document within the limit. */
bool msim_check_depth(const msim_mnode_t *e, size_t level, mg_error_t *error);

#endif
