/*
 * tests/mongosim/msim.h - internal interfaces of mongosim, the in-memory
 * MongoDB wire-protocol server used by tests, benchmarks and the demo.
 *
 * Errors are mg_error_t with domain MG_ERROR_DOMAIN_MONGO and the server
 * error code MongoDB would return (msim_code_name gives its codeName).
 */
#ifndef MSIM_H
#define MSIM_H

#include <bson/bson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mg/core.h"

/* Server error codes (MongoDB's error_codes.yml numbers). */
enum {
    MSIM_OK = 0,
    MSIM_E_INTERNAL = 1,
    MSIM_E_BAD_VALUE = 2,
    MSIM_E_NO_SUCH_KEY = 4,
    MSIM_E_FAILED_TO_PARSE = 9,
    MSIM_E_UNAUTHORIZED = 13,
    MSIM_E_TYPE_MISMATCH = 14,
    MSIM_E_AUTH_FAILED = 18,
    MSIM_E_ILLEGAL_OPERATION = 20,
    MSIM_E_INVALID_BSON = 22,
    MSIM_E_NAMESPACE_NOT_FOUND = 26,
    MSIM_E_INDEX_NOT_FOUND = 27,
    MSIM_E_CURSOR_NOT_FOUND = 43,
    MSIM_E_NAMESPACE_EXISTS = 48,
    MSIM_E_MAX_TIME_EXPIRED = 50,
    MSIM_E_COMMAND_NOT_FOUND = 59,
    MSIM_E_IMMUTABLE_FIELD = 66,
    MSIM_E_INVALID_OPTIONS = 72,
    MSIM_E_INVALID_NAMESPACE = 73,
    MSIM_E_INDEX_OPTIONS_CONFLICT = 85,
    MSIM_E_OPERATION_FAILED = 96,
    MSIM_E_WRITE_CONFLICT = 112,
    MSIM_E_COMMAND_NOT_SUPPORTED = 115,
    MSIM_E_CONFLICTING_OPERATION_IN_PROGRESS = 117,
    MSIM_E_INVALID_RESUME_TOKEN = 260,
    MSIM_E_NO_SUCH_TRANSACTION = 251,
    MSIM_E_TRANSACTION_COMMITTED = 256,
    MSIM_E_OP_NOT_IN_TXN = 263,
    MSIM_E_CHANGE_STREAM_FATAL = 280,
    MSIM_E_HISTORY_LOST = 286,
    MSIM_E_NO_MATCHING_DOCUMENT = 47,
    MSIM_E_USER_WRITES_BLOCKED = 371,
    MSIM_E_DUPLICATE_KEY = 11000,
    MSIM_E_UNRECOGNIZED_STAGE = 40324,
    MSIM_E_OBJECT_TOO_LARGE = 10334,
    MSIM_E_USER_NOT_FOUND = 11,
    MSIM_E_LOCK_TIMEOUT = 24,
    MSIM_E_ROLE_NOT_FOUND = 31,
    MSIM_E_INDEX_BUILD_ABORTED = 276,
};

#define MSIM_MAX_BSON_SIZE    (16 * 1024 * 1024)
#define MSIM_MAX_MESSAGE_SIZE 48000000
#define MSIM_MAX_WRITE_BATCH  100000
/* BSONObjMaxInternalSize: larger documents cannot be serialized at all */
#define MSIM_MAX_INTERNAL_BSON_SIZE (MSIM_MAX_BSON_SIZE + 16 * 1024)

/* msim_code_name returns MongoDB's static codeName for code ("Location<N>" style otherwise). */
const char *msim_code_name(int32_t code);

/*
 * msim_zalloc returns zeroed memory aligned for bson_t / bson_iter_t members
 * (libbson declares them 128-byte aligned; calloc gives 16). Aborts when
 * memory is exhausted. Free with free().
 */
void *msim_zalloc(size_t size);
/* msim_utf8_sanitize replaces bytes of an invalid UTF-8 string by '?' in place. */
void msim_utf8_sanitize(char *s);
/* msim_fail sets error to domain MONGO, code, message; returns false. */
bool msim_fail(mg_error_t *error, int32_t code, const char *fmt, ...) MG_PRINTF(3, 4);

/* ------------------------------------------------------------------------
 * Documents: immutable, reference-counted raw BSON.
 * ------------------------------------------------------------------------ */

typedef struct msim_doc {
    atomic_int refs;
    uint32_t len;
    uint8_t data[];
} msim_doc_t;

/* msim_doc_new copies len bytes of BSON; the result holds one reference. NULL on OOM. */
msim_doc_t *msim_doc_new(const uint8_t *data, uint32_t len);
msim_doc_t *msim_doc_from_bson(const bson_t *b);
msim_doc_t *msim_doc_ref(msim_doc_t *doc);
void msim_doc_unref(msim_doc_t *doc);
/* msim_doc_id points iter at the document's _id; false when it has none. */
bool msim_doc_id(const msim_doc_t *doc, bson_iter_t *iter);

/* ------------------------------------------------------------------------
 * BSON helpers (msim_bson.c)
 * ------------------------------------------------------------------------ */

/* msim_type_rank returns the canonical sort class of a BSON type. */
int msim_type_rank(bson_type_t t);
/* msim_cmp compares two values in MongoDB's cross-type order (<0, 0, >0). */
int msim_cmp(const bson_iter_t *a, const bson_iter_t *b);
/*
 * msim_decimal_cmp compares two numbers, one of them a Decimal128, by exact
 * value (msim_decimal.c); NaN is below every number and equal to NaN.
 */
int msim_decimal_cmp(const bson_iter_t *a, const bson_iter_t *b);
/*
 * msim_decimal_arith computes a + b (op '+') or a * b (op '*') as Decimal128
 * the way mongod's SafeNum does when one operand is a Decimal128: a double
 * operand converted to 15 significant digits, the exact result rounded to 34
 * digits half to even.
 */
void msim_decimal_arith(char op, const bson_iter_t *a, const bson_iter_t *b,
                        bson_decimal128_t *out);
/* msim_is_number is true for double, int32, int64, decimal128. */
bool msim_is_number(bson_type_t t);
/* msim_as_double converts a numeric iter; 0 for non-numbers. */
double msim_as_double(const bson_iter_t *it);
/* msim_type_name returns the $type alias of a type ("double", "string"...). */
const char *msim_type_name(bson_type_t t);
/* msim_type_from_name maps an alias to a type; "number" gives 0 and *number = true. */
bool msim_type_from_name(const char *name, bson_type_t *t, bool *number);
/*
 * msim_append_iter appends iter's value under key (NULL: the iterator's own
 * key) byte for byte, as mongod copies elements: Code, DBPointer and
 * CodeWScope strings keep their bytes after a NUL, regex options keep their
 * order. Use it (never bson_append_value/bson_append_iter) for user data.
 */
void msim_append_iter(bson_t *dst, const char *key, int keylen, const bson_iter_t *it);
/* msim_append_raw appends an element of BSON type type whose value bytes are value[0..vlen). */
bool msim_append_raw(bson_t *dst, const char *key, int keylen, uint8_t type, const uint8_t *value,
                     uint32_t vlen);
/* msim_json_of returns a short malloc'd relaxed JSON rendering of doc (for messages). */
char *msim_json_of(const bson_t *doc);
/* msim_value_json renders one value (for error messages); caller frees. */
char *msim_value_json(const bson_iter_t *it);
/* msim_get_path finds a dotted path through documents only (no arrays). */
bool msim_get_path(const bson_t *doc, const char *path, bson_iter_t *out);
/* msim_iter_bool returns the truthiness of a value as MongoDB sees it. */
bool msim_truthy(const bson_iter_t *it);
/* msim_iter_int64 reads an integral number; false when it is not a number. */
bool msim_iter_int64(const bson_iter_t *it, int64_t *out);

/* ------------------------------------------------------------------------
 * Query matching (msim_match.c)
 * ------------------------------------------------------------------------ */

typedef struct msim_matcher msim_matcher_t;

/*
 * msim_matcher_new compiles filter (copied) into a matcher; NULL with error
 * (BadValue naming the operator) for an unknown or malformed operator.
 */
msim_matcher_t *msim_matcher_new(const bson_t *filter, mg_error_t *error);
void msim_matcher_destroy(msim_matcher_t *m);
/* msim_matcher_match reports whether the raw document matches. */
bool msim_matcher_match(const msim_matcher_t *m, const uint8_t *data, uint32_t len);
/* msim_matcher_id_eq finds a top-level {_id: value} equality (borrowed iter into the matcher). */
bool msim_matcher_id_eq(const msim_matcher_t *m, bson_iter_t *eq);
bool msim_matcher_is_empty(const msim_matcher_t *m);
/*
 * msim_matcher_match_pos is msim_matcher_match that also gives, in pos, the
 * position of the array element the match went through (mongod's
 * elemMatchKey, what the positional $ update operator uses), "" when none.
 */
bool msim_matcher_match_pos(const msim_matcher_t *m, const uint8_t *data, uint32_t len, char *pos,
                            size_t possz);
/* msim_equality_fn receives one equality predicate (path, value); false stops. */
typedef bool (*msim_equality_fn)(void *arg, const char *path, const bson_iter_t *value);
/*
 * msim_matcher_equalities calls fn for each equality of the filter that an
 * upsert copies into the new document (top level and $and, as mongod's
 * extractEqualityMatches over the canonical query); false when fn did.
 */
bool msim_matcher_equalities(const msim_matcher_t *m, msim_equality_fn fn, void *arg);
/*
 * msim_matcher_id_bounds gives the tightest _id bounds among the filter's
 * top-level _id comparisons (borrowed iters into the matcher): every match
 * has lo <= _id <= hi in MongoDB's total order. Used to seek, never to
 * decide a match.
 */
bool msim_matcher_id_bounds(const msim_matcher_t *m, bson_iter_t *lo, bool *has_lo, bson_iter_t *hi,
                            bool *has_hi);

/* ------------------------------------------------------------------------
 * Sort, projection, update (msim_docops.c, msim_update.c)
 * ------------------------------------------------------------------------ */

typedef struct msim_sort msim_sort_t;
msim_sort_t *msim_sort_new(const bson_t *spec, mg_error_t *error);
void msim_sort_destroy(msim_sort_t *s);
/* msim_sort_docs sorts an array of docs in place (stable). */
void msim_sort_docs(const msim_sort_t *s, msim_doc_t **docs, size_t n);
bool msim_sort_is_id_asc(const msim_sort_t *s);

typedef struct msim_proj msim_proj_t;
msim_proj_t *msim_proj_new(const bson_t *spec, mg_error_t *error);
void msim_proj_destroy(msim_proj_t *p);
/* msim_proj_apply writes the projected doc into out (initialized by caller). */
void msim_proj_apply(const msim_proj_t *p, const uint8_t *data, uint32_t len, bson_t *out);

/* ------------------------------------------------------------------------
 * A mutable document tree (msim_mnode.c): the update engine's working copy.
 * Scalars keep their BSON value bytes as stored; array elements have no key.
 * ------------------------------------------------------------------------ */

typedef struct msim_mnode {
    char *key;
    uint8_t type;
    uint8_t *raw; /* scalar value bytes */
    uint32_t rawlen;
    struct msim_mnode **kids;
    size_t n, cap;
} msim_mnode_t;

msim_mnode_t *msim_mnode_new(const char *key, uint8_t type);
void msim_mnode_free(msim_mnode_t *m);
bool msim_mnode_is_container(const msim_mnode_t *m);
/* msim_mnode_set_raw makes m a scalar of type with value bytes raw[0..len) (children freed). */
void msim_mnode_set_raw(msim_mnode_t *m, uint8_t type, const uint8_t *raw, uint32_t len);
/* msim_mnode_set_value: a number, date, timestamp, boolean or null from v. */
void msim_mnode_set_value(msim_mnode_t *m, const bson_value_t *v);
void msim_mnode_insert(msim_mnode_t *p, size_t at, msim_mnode_t *kid);
void msim_mnode_append(msim_mnode_t *p, msim_mnode_t *kid);
/* msim_mnode_detach unlinks child at (the caller owns it). */
msim_mnode_t *msim_mnode_detach(msim_mnode_t *p, size_t at);
msim_mnode_t *msim_mnode_from_iter(const char *key, const bson_iter_t *it);
/* msim_mnode_from_bson: a document node holding doc's fields (doc may be NULL). */
msim_mnode_t *msim_mnode_from_bson(const bson_t *doc);
msim_mnode_t *msim_mnode_clone(const msim_mnode_t *m, const char *key);
/* msim_mnode_to_bson appends m's children to out; msim_mnode_append_to appends m as key. */
void msim_mnode_to_bson(const msim_mnode_t *m, bson_t *out);
void msim_mnode_append_to(const msim_mnode_t *m, bson_t *out, const char *key);
/* msim_mnode_value writes {v: m} into tmp (caller destroys) and points v at it. */
void msim_mnode_value(const msim_mnode_t *m, bson_t *tmp, bson_iter_t *v);
/* msim_mnode_child: a document's field or an array's element by decimal index. */
msim_mnode_t *msim_mnode_child(const msim_mnode_t *m, const char *key, size_t *pos);
/* msim_mnode_index parses an array index as mongod does (digits, no leading zero). */
bool msim_mnode_index(const char *s, size_t *out);
bool msim_mnode_binary_equal(const msim_mnode_t *a, const msim_mnode_t *b);
/* msim_mnode_cmp / _cmp_iter compare values in MongoDB's order (field names included). */
int msim_mnode_cmp(const msim_mnode_t *a, const msim_mnode_t *b);
int msim_mnode_cmp_iter(const msim_mnode_t *m, const bson_iter_t *v);

/* ------------------------------------------------------------------------
 * Updates (msim_update.c: modifiers; msim_update_exec.c: replacement,
 * upserts, storage rules; msim_upipe.c: pipeline-style updates)
 * ------------------------------------------------------------------------ */

/* BSONDepth::getMaxDepthForUserStorage(): maxBSONDepth 200 less 20 levels for the system. */
#define MSIM_MAX_USER_DEPTH 180

enum { MSIM_UPD_OPS, MSIM_UPD_REPLACE, MSIM_UPD_PIPELINE };

typedef struct msim_update msim_update_t;

/*
 * msim_update_new parses one update statement's u (a modifier document, a
 * replacement or a pipeline) with its arrayFilters (NULL when absent), as
 * mongod parses them: FailedToParse for unknown modifiers, unused array
 * filters or a multi replacement, ConflictingUpdateOperators (40) for
 * paths that collide, BadValue for bad positional paths and modifier
 * arguments, InvalidOptions for pipeline stages an update cannot run.
 */
msim_update_t *msim_update_new(const bson_iter_t *u, const bson_iter_t *array_filters, bool multi,
                               mg_error_t *error);
void msim_update_destroy(msim_update_t *up);
int msim_update_kind(const msim_update_t *up);
/*
 * msim_update_run applies up to the stored document doc; pos is the
 * positional match of the query (msim_matcher_match_pos, "" for none).
 * out (initialized by the caller) receives the new document; desc, when
 * not NULL, an update event's updateDescription; *replace_event tells that
 * the change is logged as a replace. Errors as mongod: ImmutableField for
 * _id changes, Overflow (15) beyond 180 levels, TypeMismatch, BadValue...
 */
bool msim_update_run(const msim_update_t *up, const bson_t *doc, const char *pos, bson_t *out,
                     bson_t *desc, bool *replace_event, mg_error_t *error);
/*
 * msim_update_upsert builds the document an upsert inserts: the query's
 * equalities (only _id for a replacement), the update applied as an insert
 * ($setOnInsert), _id first (an ObjectId when none), storage rules.
 */
bool msim_update_upsert(const msim_update_t *up, const msim_matcher_t *query, bson_t *out,
                        mg_error_t *error);
/*
 * msim_check_storage checks a document about to be stored (insert or
 * replacement): nesting within MSIM_MAX_USER_DEPTH non-empty levels
 * (Overflow, 15, message as mongod's insert or update path), the _id's
 * type. The document must already be valid BSON.
 */
bool msim_check_storage(const bson_t *doc, bool insert, mg_error_t *error);
/*
 * msim_fix_timestamps replaces each top-level Timestamp(0, 0) but _id by
 * a new cluster time, as mongod does on insert and replacement; out gets
 * the result, *changed whether there was one.
 */
void msim_fix_timestamps(const bson_t *doc, bson_t *out, bool *changed);
/* msim_upipe_* (msim_upipe.c): a pipeline-style update. */
typedef struct msim_upipe msim_upipe_t;
msim_upipe_t *msim_upipe_new(const bson_iter_t *pipeline, mg_error_t *error);
void msim_upipe_destroy(msim_upipe_t *p);
/* msim_upipe_run transforms doc into out (caller inits). */
bool msim_upipe_run(const msim_upipe_t *p, const bson_t *doc, bson_t *out, mg_error_t *error);
/*
 * msim_update_diff fills desc with the updateDescription mongod's delta
 * (computeOplogDiff) would give for pre -> post; false when the diff is
 * not smaller than post (mongod then logs a replacement).
 */
bool msim_update_diff(const bson_t *pre, const bson_t *post, bson_t *desc);
/*
 * msim_expr_eval evaluates an aggregation expression against the document
 * whose fields root iterates, appending the result under key (nothing when
 * the result is missing). Errors name the operator.
 */
bool msim_expr_eval(const bson_iter_t *expr, const bson_iter_t *root, bson_t *out, const char *key,
                    mg_error_t *error);

/* ------------------------------------------------------------------------
 * Storage (msim_store.c). All catalog and document access happens under
 * the server's store lock (read for reads, write for writes).
 * ------------------------------------------------------------------------ */

typedef struct msim_skip msim_skip_t;
typedef struct msim_coll msim_coll_t;

/* The key ranges [min[i], max[i]) of a sharded collection a shard owns. */
typedef struct {
    bson_t *pattern; /* the shard key pattern */
    bson_t **min, **max;
    size_t n;
} msim_owned_t;

struct msim_coll {
    char *db;
    char *name;
    char *ns;
    uint8_t uuid[16];
    msim_skip_t *docs;
    uint64_t bytes;
    bson_t indexes; /* array of index specs (key, name, unique...) */
    bool pre_post_images;
    bson_t options;
    int64_t created_ms;
    bson_t *shard_key;   /* shard key pattern of a sharded collection (documentKey), or NULL */
    msim_owned_t *owned; /* the ranges this shard owns (routed operations skip orphans) */
};

msim_coll_t *msim_coll_new(const char *db, const char *name);
void msim_coll_destroy(msim_coll_t *c);
size_t msim_coll_count(const msim_coll_t *c);
/* msim_coll_find returns the borrowed doc with this _id or NULL. */
msim_doc_t *msim_coll_find(const msim_coll_t *c, const bson_iter_t *id);
/* msim_coll_insert takes the caller's reference; false (DuplicateKey) when _id exists. */
bool msim_coll_insert(msim_coll_t *c, msim_doc_t *doc, mg_error_t *error);
/* msim_coll_replace swaps the doc with the same _id; returns the old one (caller unrefs). */
msim_doc_t *msim_coll_replace(msim_coll_t *c, msim_doc_t *doc);
/* msim_coll_remove unlinks the doc with this _id; returns it (caller unrefs) or NULL. */
msim_doc_t *msim_coll_remove(msim_coll_t *c, const bson_iter_t *id);

/* Iteration in _id order; the iterator is invalid after any write. */
typedef struct {
    void *node;
} msim_coll_iter_t;
void msim_coll_iter_first(const msim_coll_t *c, msim_coll_iter_t *it);
/* msim_coll_iter_seek positions at the first doc with _id >= id. */
void msim_coll_iter_seek(const msim_coll_t *c, const bson_iter_t *id, msim_coll_iter_t *it);
msim_doc_t *msim_coll_iter_next(msim_coll_iter_t *it);
/* msim_coll_last returns the doc with the greatest _id (borrowed) or NULL. */
msim_doc_t *msim_coll_last(const msim_coll_t *c);

/* ------------------------------------------------------------------------
 * Users, built-in roles and privileges (msim_roles.c, msim_authz.c)
 * ------------------------------------------------------------------------ */

/* Resource patterns of privileges, as MongoDB's match types. */
typedef enum {
    MSIM_RP_NONE = 0,
    MSIM_RP_ANY,            /* {anyResource: true} */
    MSIM_RP_ANY_NORMAL,     /* {db: "", collection: ""}: every non-system namespace */
    MSIM_RP_CLUSTER,        /* {cluster: true} */
    MSIM_RP_DB,             /* {db: X, collection: ""} */
    MSIM_RP_COLL,           /* {db: "", collection: C}: C in any database */
    MSIM_RP_EXACT,          /* {db: X, collection: C} */
    MSIM_RP_SYSTEM_BUCKETS, /* {db: "", system_buckets: ""} (never matches here) */
} msim_rp_kind_t;

#define MSIM_ACTION_WORDS 2
typedef struct {
    uint64_t w[MSIM_ACTION_WORDS];
} msim_actions_t;

typedef struct {
    msim_rp_kind_t kind;
    char db[64];
    char coll[128];
    msim_actions_t actions;
} msim_priv_t;

#define MSIM_MAX_PRIVS 128
typedef struct {
    msim_priv_t privs[MSIM_MAX_PRIVS];
    size_t n;
} msim_privset_t;

typedef struct {
    char role[64];
    char db[64];
} msim_role_ref_t;

#define MSIM_MAX_USER_ROLES 16
typedef struct {
    char name[128];
    char db[64];
    uint8_t uuid[16];
    msim_role_ref_t roles[MSIM_MAX_USER_ROLES];
    size_t nroles;
    /* SCRAM-SHA-256 credentials */
    uint8_t salt[28];
    uint8_t stored_key[32];
    uint8_t server_key[32];
    int iterations;
    msim_privset_t privs; /* flattened from the roles at start-up */
    bool bypass_write_block;
} msim_user_t;

int msim_action_count(void);
const char *msim_action_name(int bit);
/* msim_action_bit returns the bit of an action name, -1 when unknown. */
int msim_action_bit(const char *name);
void msim_actions_add(msim_actions_t *set, const char *name);
bool msim_actions_has(const msim_actions_t *set, int bit);
/* msim_role_exists checks name@db is a built-in role (error RoleNotFound otherwise). */
bool msim_role_exists(const char *name, const char *db, mg_error_t *error);
/* msim_privset_of_user flattens the privileges of u's roles into set. */
void msim_privset_of_user(const msim_user_t *u, msim_privset_t *set);
/*
 * msim_privset_allows tells whether set grants every action of the
 * space-separated list on the resource: the cluster (db NULL), the pattern
 * "any normal resource" (db ""), a database (coll NULL) or a namespace.
 */
bool msim_privset_allows(const msim_privset_t *set, const char *db, const char *coll,
                         const char *actions);
/* msim_privset_any_on: set grants some action on the database (coll NULL) or namespace. */
bool msim_privset_any_on(const msim_privset_t *set, const char *db, const char *coll);
/* msim_privset_append appends set as connectionStatus's privilege documents to arr. */
void msim_privset_append(const msim_privset_t *set, bson_t *arr);

/*
 * msim_user_add parses one --auth value USER[@DB]:PASSWORD[:ROLE[@DB][,ROLE...]]
 * (ROLE defaults to root; a role without @DB is on the user's database, as
 * createUser does) and registers the user with SCRAM-SHA-256 credentials.
 */
bool msim_user_add(const char *spec, mg_error_t *error);
const msim_user_t *msim_user_find(const char *name, const char *db);

/* ------------------------------------------------------------------------
 * Shard keys (msim_shardkey.c)
 * ------------------------------------------------------------------------ */

/* msim_hash64 is MongoDB's hashed-index hash of one value (seed 0). */
int64_t msim_hash64(const bson_iter_t *it);
/* msim_shardkey_pattern_valid: ascending fields, or one hashed field (*hashed). */
bool msim_shardkey_pattern_valid(const bson_t *pattern, bool *hashed, mg_error_t *error);
/*
 * msim_shardkey_of appends the shard key of a document to out (caller
 * inits): each pattern field's value (hashed: its hash as int64), null when
 * missing. Fails (ShardKeyNotFound) for arrays, regexes, undefined.
 */
bool msim_shardkey_of(const bson_t *pattern, const uint8_t *data, uint32_t len, bson_t *out,
                      mg_error_t *error);
/* msim_document_key appends a change event's documentKey: shard key fields (as stored), _id. */
void msim_document_key(const bson_t *pattern, const uint8_t *data, uint32_t len,
                       const bson_iter_t *id, bson_t *out);
/* msim_shardkey_cmp compares two keys field by field in MongoDB's order. */
int msim_shardkey_cmp(const bson_t *a, const bson_t *b);
/* msim_range_contains: min <= key < max. */
bool msim_range_contains(const bson_t *min, const bson_t *max, const bson_t *key);
/* msim_owned_contains: the document's key is in one of the ranges (true for NULL). */
bool msim_owned_contains(const msim_owned_t *o, const uint8_t *data, uint32_t len);
void msim_owned_free(msim_owned_t *o);

/* ------------------------------------------------------------------------
 * Server state
 * ------------------------------------------------------------------------ */

typedef struct {
    uint32_t t, i;
} msim_ts_t;

typedef struct {
    pthread_mutex_t mu;
    msim_ts_t now;
} msim_clock_t;

/* One oplog entry = one change event source. */
typedef struct msim_oplog_entry {
    struct msim_oplog_entry *next;
    uint64_t seq;
    msim_ts_t ts;
    uint32_t txn_index; /* position within a transaction's commit */
    int64_t wall_ms;
    char op[16];           /* insert update replace delete drop rename dropDatabase create ... */
    char *db, *coll;       /* coll NULL for dropDatabase */
    char *to_db, *to_coll; /* rename */
    bson_t *doc_key;       /* {_id: ...} */
    msim_doc_t *post;      /* after image (insert/replace/update) */
    msim_doc_t *pre;       /* before image when the collection records them */
    bson_t *update_desc;   /* update only */
    bson_t *lsid;          /* transaction events */
    int64_t txn_number;
    bool in_txn;
    bool images;       /* collection had changeStreamPreAndPostImages */
    bool drop_target;  /* rename: an existing target was dropped by it */
    bool from_migrate; /* a chunk migration's (or a DDL's secondary) write: no event */
    size_t size;
} msim_oplog_entry_t;

typedef struct {
    bool active;
    int64_t times; /* -1 = always */
    char **commands;
    size_t ncommands;
    int32_t error_code;
    bool has_error_code;
    bson_t error_labels; /* array */
    bool close_connection;
    bool block_connection;
    int64_t block_ms;
    char app_name[128];
    bson_t write_concern_error;
    bool has_wce;
} msim_failpoint_t;

typedef struct msim_cursor msim_cursor_t;
typedef struct msim_txn msim_txn_t;

typedef struct {
    /* options */
    char bind[64];
    int port;
    int64_t oplog_max_bytes;
    int64_t cursor_timeout_ms;
    int noop_interval_secs;  /* periodicNoopIntervalSecs (1..10, MongoDB's default 10) */
    int64_t txn_lifetime_ms; /* transactionLifetimeLimitSeconds (default 60) */
    int server_version;      /* MSIM_VERSION_60 or MSIM_VERSION_70: what mongosim claims */
    bool auth;
    bool quiet;

    /* users (--auth), fixed after start-up */
    msim_user_t *users;
    size_t nusers;
    uint8_t decoy_salt[28]; /* answers saslStart for unknown users */

    /* store */
    pthread_rwlock_t lock;
    msim_coll_t **colls;
    size_t ncolls, capcolls;

    /* the logical clock: own_clock, or in a sharded cluster the one all
     * members share (cluster time is one clock across shards here) */
    msim_clock_t own_clock;
    msim_clock_t *clock;
    atomic_uint_fast64_t last_op; /* newest oplog entry of this member, (t << 32) | i */

    /* sharded cluster (msim_router.c): NULL for a replica set */
    struct msim_cluster *cluster;
    bool is_router;
    int shard_index; /* -1 for the router */
    char name[32];   /* "mongosim", "shard0", ..., "router" */

    /* oplog, appended under lock (write), waited on with oplog_mu/oplog_cv */
    msim_oplog_entry_t *oplog_head, *oplog_tail;
    uint64_t oplog_next_seq;
    size_t oplog_bytes;
    bool oplog_trimmed;
    msim_ts_t oplog_trim_ts; /* last dropped entry */
    uint32_t oplog_trim_index;
    pthread_mutex_t oplog_mu;
    pthread_cond_t oplog_cv;
    uint64_t oplog_generation; /* bumped by msim_oplog_publish (oplog_mu) */
    atomic_uint_fast64_t oplog_seq_pub;
    uint64_t noop_last_seq; /* periodic no-op writer: oplog end at its last check */
    int64_t noop_last_ms;

    /* the global lock (msim_lock.c): shared holders are operations and open
     * transactions; setUserWriteBlockMode takes it exclusively */
    pthread_mutex_t glock_mu;
    pthread_cond_t glock_cv;
    int glock_shared;
    int glock_x_waiting;
    bool glock_x_held;
    pthread_mutex_t block_mu; /* one setUserWriteBlockMode at a time */

    /* user index builds held by the hangAfterStartingIndexBuild fail point */
    int index_builds_active;
    uint64_t index_build_abort_gen;
    atomic_bool index_builds_blocked;
    atomic_bool fp_hang_index_build;

    /* cursors */
    pthread_mutex_t cursor_mu;
    msim_cursor_t *cursors;
    int64_t next_cursor_id;

    /* transactions */
    pthread_mutex_t txn_mu;
    msim_txn_t *txns;

    /* fail point */
    pthread_mutex_t fp_mu;
    msim_failpoint_t fp;         /* failCommand */
    msim_failpoint_t fp_getmore; /* failGetMoreAfterCursorCheckout */

    atomic_bool write_blocked;
    bson_oid_t process_id;
    bson_oid_t election_id;
    int64_t start_ms;
    atomic_int_fast64_t connections;
    atomic_int_fast64_t total_connections;
    atomic_int_fast64_t op_counts[6]; /* insert query update delete getmore command */

    atomic_bool stopping;
    int64_t wait_cap_ms; /* caps server-side waits (fuzzing); -1 = none */
} msim_server_t;

enum { MSIM_VERSION_60 = 60, MSIM_VERSION_70 = 70 };

/* The server (replica-set member, shard or router) this thread works for. */
extern __thread msim_server_t *msim_srv;

/*
 * msim_server_init sets defaults and initializes the locks of s, and makes
 * it the process's server (msim_srv). Options may be changed afterwards.
 */
void msim_server_init(msim_server_t *s);

/* Per-connection state. */
typedef struct {
    int fd;
    int64_t id;
    bool authenticated;           /* may run commands: no --auth, or a user logged in */
    const msim_user_t *user;      /* the authenticated user (NULL without --auth) */
    const msim_user_t *sasl_user; /* the user of the SCRAM conversation, NULL if unknown */
    char app_name[128];
    /* SCRAM conversation */
    int sasl_step;
    bool sasl_skip_empty;
    char sasl_client_first_bare[512];
    char sasl_server_first[512];
    char sasl_nonce[128];
    msim_server_t *server; /* the member this connection talks to */
    bool close_after_reply;
    bool exhaust;  /* unused */
    bool internal; /* a router's call into a shard: privileges were checked */
} msim_conn_t;

/* Command context handed to handlers. */
typedef struct {
    msim_conn_t *conn;
    const bson_t *cmd; /* body with document sequences merged in */
    const char *db;
    const char *name;
    bson_t *reply;   /* handler appends fields; ok/operationTime added later */
    msim_txn_t *txn; /* the transaction this command runs in, or NULL */
    const bson_t *lsid;
    bool has_txn_number;
    int64_t txn_number;
    bool resumable_error; /* label the error ResumableChangeStreamError */
    bson_t lsid_storage;  /* backs lsid */
} msim_ctx_t;

/* The connection whose command this thread runs (write-block bypass, cursor owners). */
extern __thread msim_conn_t *msim_tls_conn;
/* msim_note_op records ts as the latest oplog write of the running command. */
void msim_note_op(msim_ts_t ts);

/* msim_clock_tick returns a new, strictly greater cluster time. */
msim_ts_t msim_clock_tick(void);
/* msim_clock_now returns the current cluster time: the time of the latest oplog entry
 * (of any shard, in a sharded cluster). */
msim_ts_t msim_clock_now(void);
/* msim_last_op returns the time of this member's newest oplog entry. */
msim_ts_t msim_last_op(void);
int64_t msim_now_ms(void);
int msim_ts_cmp(msim_ts_t a, msim_ts_t b);

/* Catalog (store lock held). */
msim_coll_t *msim_catalog_get(const char *db, const char *coll);
/* msim_catalog_create creates the collection; *created says whether it is new. */
msim_coll_t *msim_catalog_ensure(const char *db, const char *coll, bool *created);
void msim_catalog_drop(msim_coll_t *c);
bool msim_valid_coll_name(const char *db, const char *coll, mg_error_t *error);

/* Oplog (store lock held for writing). Takes ownership of e's fields. */
void msim_oplog_append(msim_oplog_entry_t *e);
/* msim_oplog_publish wakes change-stream waiters; call after unlocking. */
void msim_oplog_publish(void);
msim_oplog_entry_t *msim_oplog_entry_new(const char *op, const char *db, const char *coll);
void msim_oplog_entry_free(msim_oplog_entry_t *e);

/* Commands (msim_cmd.c). */
typedef bool (*msim_cmd_fn)(msim_ctx_t *ctx, mg_error_t *error);

typedef struct {
    const char *name;
    msim_cmd_fn fn;
    bool no_auth; /* allowed before authentication */
    int counter;  /* index into op_counts */
    bool locks;   /* holds the global lock while it runs (data and catalog access) */
} msim_cmd_entry_t;

/* Handlers the router shares with replica-set members. */
/* msim_hello_common appends the hello fields a member and a router share (limits,
 * wire versions, saslSupportedMechs). */
void msim_hello_common(msim_ctx_t *ctx);
bool msim_cmd_ping(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_build_info(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_whatsmyuri(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_get_parameter(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_configure_fail_point(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_server_status(msim_ctx_t *ctx, mg_error_t *error);
/* msim_version_string returns the claimed version ("7.0.12"), parts[3] its numbers. */
const char *msim_version_string(int parts[3]);

/*
 * msim_dispatch_internal runs cmd on another member of this process (a
 * router's call into a shard) as the current connection's user, with its
 * privileges already checked; the thread's server, connection and last
 * operation time are restored afterwards (the latter to the later of both).
 */
void msim_dispatch_internal(msim_server_t *target, const bson_t *cmd, bson_t *reply);
/* Internal (fromMigrate) catalog changes a router makes on its non-primary shards. */
void msim_drop_quiet(const char *db, const char *coll);
void msim_drop_database_quiet(const char *db);
void msim_rename_quiet(const char *db, const char *from, const char *to);
/* msim_tls_filter_orphans: the running command came from a router (shardVersion). */
extern __thread bool msim_tls_filter_orphans;
/*
 * msim_dispatch runs one command document against the server and builds the
 * full reply (ok, errmsg/code/codeName, operationTime, $clusterTime) into
 * reply (initialized by the caller).
 */
void msim_dispatch(msim_conn_t *conn, const bson_t *cmd, bson_t *reply);
/* msim_write_allowed fails with UserWritesBlocked for user databases while blocking is on. */
bool msim_write_allowed(const char *db, mg_error_t *error);

/*
 * msim_write_lock takes the server's write lock and checks msim_write_allowed
 * under it (unlocking again on failure), so no write slips past a freeze.
 */
bool msim_write_lock(const char *db, mg_error_t *error);

/* CRUD (msim_crud.c) */
bool msim_cmd_insert(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_update(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_delete(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_find(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_find_and_modify(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_count(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_distinct(msim_ctx_t *ctx, mg_error_t *error);
/* msim_write_error appends {index, code, codeName, errmsg} as writeErrors element *nerr (counted
 * up). */
void msim_write_error(bson_t *errs, uint32_t *nerr, int32_t index, const mg_error_t *e);
/* msim_ordered_arg is a write command's "ordered" (default true). */
bool msim_ordered_arg(const bson_t *cmd);
/*
 * msim_snapshot returns references to the documents of db.coll matching m
 * (NULL = all), in _id order, at most stop_after (0 = all), as transaction
 * txn (NULL = none) sees them; caller unrefs each and frees the array.
 */
msim_doc_t **msim_snapshot(msim_txn_t *txn, const char *db, const char *coll,
                           const msim_matcher_t *m, size_t stop_after, size_t *n);
/*
 * A router sets msim_tls_snapshot_hook around find/count/distinct/aggregate:
 * msim_snapshot then takes its documents from hook(arg, db, coll, &n) (an
 * array of references in _id order, caller's) instead of the local store.
 */
typedef msim_doc_t **(*msim_snapshot_hook_t)(void *arg, const char *db, const char *coll,
                                             size_t *n);
extern __thread msim_snapshot_hook_t msim_tls_snapshot_hook;
extern __thread void *msim_tls_snapshot_arg;

/* Cursors (msim_cursor.c) */
enum {
    MSIM_CURSOR_SNAPSHOT, /* documents collected when the query ran */
    MSIM_CURSOR_STREAM,   /* a change stream on this member */
    MSIM_CURSOR_REMOTE,   /* router: a cursor of one shard, passed through */
    MSIM_CURSOR_MERGED,   /* router: a change stream merged across shards */
};
struct msim_cursor {
    msim_cursor_t *next;
    int64_t id;
    int kind;
    char ns[256];
    msim_doc_t **docs; /* snapshot */
    size_t ndocs, pos;
    bool busy;
    int64_t last_use_ms;
    void *stream;     /* change stream state (STREAM, MERGED), or NULL */
    int remote_shard; /* REMOTE: the shard and its cursor */
    int64_t remote_id;
    char remote_db[128];
    char remote_coll[256];
    const msim_user_t *owner; /* the user that opened it (NULL without --auth) */
    msim_proj_t *proj;        /* applied as documents are returned, or NULL */
};
/*
 * msim_cursor_first_batch takes ownership of docs (an array of references,
 * malloc'd) and proj, writes {cursor: {firstBatch, id, ns}} into the reply,
 * and registers a cursor when documents remain.
 */
void msim_cursor_first_batch(msim_ctx_t *ctx, const char *ns, msim_doc_t **docs, size_t ndocs,
                             msim_proj_t *proj, int64_t batch_size, bool single_batch);
/* msim_log_write appends a change event for one document write (store lock held). */
void msim_log_write(const char *op, const msim_coll_t *c, msim_doc_t *post, msim_doc_t *pre,
                    const bson_iter_t *id, bson_t *desc, const bson_t *lsid, int64_t txn_number,
                    bool has_ts, msim_ts_t ts, uint32_t txn_index);
/* msim_coll_stats appends collStats-style fields for c to b (lock held). */
void msim_coll_stats(const msim_coll_t *c, bson_t *b, int64_t scale);
bool msim_cmd_get_more(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_kill_cursors(msim_ctx_t *ctx, mg_error_t *error);
msim_cursor_t *msim_cursor_register(msim_cursor_t *c);
void msim_cursor_free(msim_cursor_t *c);
void msim_cursor_reap(int64_t now_ms);
void msim_cursors_kill_ns(const char *ns);
size_t msim_cursor_open_count(void);

/* Aggregation (msim_agg.c) */
bool msim_cmd_aggregate(msim_ctx_t *ctx, mg_error_t *error);

/* Change streams (msim_stream.c) */
bool msim_stream_open(msim_ctx_t *ctx, const bson_iter_t *spec, const bson_t *pipeline_rest,
                      const char *coll, int64_t batch_size, mg_error_t *error);
/*
 * msim_split_event cuts ev (whose _id token is base_hex) into the fragments
 * of $changeStreamSplitLargeEvent, as mongod cuts them: the top-level
 * fields but _id ordered by (size, name) and packed greedily so the first
 * fragment holds as many as fit; each fragment {_id: base_hex + index,
 * splitEvent: {fragment, of}, fields...}. *out (array) and its documents
 * are the caller's. Error 7182500 when a field fits no fragment.
 */
bool msim_split_event(const bson_t *ev, const char *base_hex, bson_t ***out, size_t *nout,
                      mg_error_t *error);
/* The largest event $changeStreamSplitLargeEvent returns whole (kBSONObjMaxChangeEventSize). */
#define MSIM_SPLIT_EVENT_LIMIT (MSIM_MAX_INTERNAL_BSON_SIZE - 8 * 1024)
bool msim_stream_get_more(msim_ctx_t *ctx, msim_cursor_t *cur, int64_t batch_size,
                          int64_t max_await_ms, mg_error_t *error);
void msim_stream_free(void *stream);

/* Transactions (msim_txn.c) */
/*
 * msim_txn_begin_command looks at lsid/txnNumber/autocommit/startTransaction
 * and sets ctx->txn to the transaction the command joins (NULL for none).
 * Errors: NoSuchTransaction, TransactionCommitted, TransactionTooOld,
 * OperationNotSupportedInTransaction, InvalidOptions.
 */
bool msim_txn_begin_command(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_commit_txn(msim_ctx_t *ctx, mg_error_t *error);
/*
 * msim_txn_commit_shards commits the transaction (lsid, txn_number) open on
 * each of the n members as one: their store locks taken in order, every
 * participant checked for conflicts, then all writes applied with one
 * commit timestamp (a router's two-phase commit, in one process). Errors:
 * NoSuchTransaction, WriteConflict, UserWritesBlocked (all aborted).
 */
bool msim_txn_commit_shards(msim_server_t **members, int n, const bson_t *lsid, int64_t txn_number,
                            mg_error_t *error);
/* msim_txn_abort_session aborts an open transaction of lsid on this member (any number). */
void msim_txn_abort_session(const bson_t *lsid);
bool msim_cmd_abort_txn(msim_ctx_t *ctx, mg_error_t *error);
/* A staged write: applied at commit. */
typedef struct {
    char op; /* 'i' insert, 'u' update (replace doc), 'r' replace, 'd' delete */
    char db[128];
    char coll[128];
    msim_doc_t *doc; /* new doc (i/u/r); the removed doc for d */
    bson_t *desc;    /* update description for 'u' */
} msim_txn_op_t;
void msim_txn_stage(msim_txn_t *txn, const msim_txn_op_t *op);
/* msim_txn_state_of: -1 no staged write on that _id, 0 staged delete, 1 staged version. */
int msim_txn_state_of(msim_txn_t *t, const char *db, const char *coll, const bson_iter_t *id);
/* msim_txn_fail aborts an active transaction after a failed statement, as mongod does. */
void msim_txn_fail(msim_txn_t *t);
/* msim_txn_touches reports whether the transaction staged writes on db.coll. */
bool msim_txn_touches(msim_txn_t *t, const char *db, const char *coll);
/*
 * msim_txn_merge returns db.coll as transaction t sees it: docs (committed,
 * in _id order; the references and the array are taken over) with t's
 * staged versions applied, deletions removed and inserts added, in _id
 * order. The caller owns the result's references and array.
 */
msim_doc_t **msim_txn_merge(msim_txn_t *t, const char *db, const char *coll, msim_doc_t **docs,
                            size_t n, size_t *nout);
void msim_txn_end_sessions(const bson_t *cmd);
/* msim_txn_expire aborts transactions open longer than the lifetime limit. */
void msim_txn_expire(int64_t now_ms);

/* ------------------------------------------------------------------------
 * Sharded cluster (msim_cluster.c, msim_router.c, msim_route_stream.c)
 * ------------------------------------------------------------------------ */

typedef struct {
    bson_t *min, *max; /* in shard-key space (hashed fields: int64) */
    int shard;
    uint32_t major, minor;
    bson_oid_t id;
    msim_ts_t since;
} msim_chunk_t;

/* A sharded collection in the router's catalog. Never freed (a dropped one
 * is marked), so a pointer taken under the catalog mutex stays valid. */
typedef struct {
    char db[128], coll[128], ns[256];
    bson_t *key;
    bool hashed, unique, dropped, no_balance;
    uint8_t uuid[16];
    bson_oid_t epoch;
    msim_ts_t timestamp;
    int64_t updated_ms;
    msim_chunk_t *chunks; /* sorted by min, covering MinKey..MaxKey */
    size_t nchunks;
    uint32_t major;
    pthread_rwlock_t route; /* operations hold it shared, splits and migrations exclusive */
} msim_scoll_t;

typedef struct {
    char name[128];
    int primary;
    uint8_t uuid[16];
    msim_ts_t ts;
} msim_sdb_t;

typedef struct msim_rdel msim_rdel_t;
typedef struct msim_rtxn msim_rtxn_t;

typedef struct msim_cluster {
    int nshards;
    msim_server_t **shards;
    msim_server_t *router;
    msim_clock_t clock;
    pthread_mutex_t mu; /* catalog, range deletions, router transactions */
    msim_sdb_t *dbs;
    size_t ndbs;
    msim_scoll_t **colls;
    size_t ncolls;
    bool balancer_on;
    int64_t balancer_rounds;
    int balancer_interval_secs;
    int64_t balancer_last_ms;
    int64_t orphan_delay_ms;
    msim_rdel_t *rdel;
    msim_rtxn_t *txns;
    pthread_mutex_t migrate_mu; /* one migration at a time */
    /* wakes merged change streams when any shard writes */
    pthread_mutex_t wake_mu;
    pthread_cond_t wake_cv;
    uint64_t wake_gen;
} msim_cluster_t;

/*
 * msim_cluster_new makes router (already initialized, with the users) the
 * router of nshards new shard members sharing its users and one cluster
 * clock. Returns the cluster (lives until exit).
 */
msim_cluster_t *msim_cluster_new(msim_server_t *router, int nshards);
/* msim_cluster_tick runs the balancer round and range deletions that are due. */
void msim_cluster_tick(msim_cluster_t *cl, int64_t now_ms);
/* msim_router_command returns the router's handler entry for name, or NULL. */
const msim_cmd_entry_t *msim_router_command(const char *name);
/* msim_cluster_wake wakes merged change streams (a shard published oplog entries). */
void msim_cluster_wake(msim_cluster_t *cl);

/* Catalog helpers (msim_cluster.c; cl->mu held unless noted). */
msim_sdb_t *msim_cluster_db(msim_cluster_t *cl, const char *db, bool create);
/* msim_cluster_scoll returns the live sharded collection db.coll or NULL (takes cl->mu). */
msim_scoll_t *msim_cluster_scoll(msim_cluster_t *cl, const char *db, const char *coll);
/* msim_cluster_primary returns the primary shard of db, creating the database entry. */
int msim_cluster_primary(msim_cluster_t *cl, const char *db);
/* msim_scoll_chunk_of returns the chunk index owning key (route lock held). */
size_t msim_scoll_chunk_of(const msim_scoll_t *sc, const bson_t *key);
/* msim_scoll_shards marks in mask[] the shards owning chunks (route lock held). */
void msim_scoll_shards(const msim_scoll_t *sc, bool *mask);
/* msim_scoll_owned builds the ranges shard owns (route lock held); caller frees. */
msim_owned_t *msim_scoll_owned(const msim_scoll_t *sc, int shard);
/* msim_cluster_config_docs returns the documents of a config collection (routing view). */
msim_doc_t **msim_cluster_config_docs(msim_cluster_t *cl, const char *coll, size_t *n);

/* Sharding commands (msim_cluster.c) */
bool msim_cmd_list_shards(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_enable_sharding(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_shard_collection(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_split(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_move_chunk(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_balancer_status(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_balancer_start(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_balancer_stop(msim_ctx_t *ctx, mg_error_t *error);

/* Merged change streams (msim_route_stream.c) */
bool msim_route_stream_open(msim_ctx_t *ctx, const bson_t *cmd, const char *coll,
                            mg_error_t *error);
bool msim_route_stream_get_more(msim_ctx_t *ctx, msim_cursor_t *cur, int64_t batch_size,
                                int64_t max_await_ms, mg_error_t *error);
void msim_route_stream_free(void *stream);
/* msim_router_cursor_done frees a router cursor's shard-side resources. */
void msim_router_remote_kill(msim_cursor_t *cur);
bool msim_router_remote_get_more(msim_ctx_t *ctx, msim_cursor_t *cur, mg_error_t *error);

/* Auth (msim_auth.c) */
bool msim_cmd_sasl_start(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_sasl_continue(msim_ctx_t *ctx, mg_error_t *error);

/* Authorization (msim_authz.c) */
/* msim_authz_command fails with Unauthorized when the user lacks what the command needs. */
bool msim_authz_command(msim_ctx_t *ctx, mg_error_t *error);
/* msim_authz_may_list_db: the user has some privilege on db (listDatabases filtering). */
bool msim_authz_may_list_db(const msim_conn_t *conn, const char *db);
/* msim_authz_may_see_coll: the user has some privilege on db.coll. */
bool msim_authz_may_see_coll(const msim_conn_t *conn, const char *db, const char *coll);
/* msim_authz_has: the user has every listed action (see msim_privset_allows); true without --auth.
 */
bool msim_authz_has(const msim_conn_t *conn, const char *db, const char *coll, const char *actions);
bool msim_cmd_connection_status(msim_ctx_t *ctx, mg_error_t *error);
bool msim_cmd_users_info(msim_ctx_t *ctx, mg_error_t *error);

/* The global lock, write blocking, the no-op writer (msim_lock.c) */
/* msim_glock_acquire_shared waits for the lock (timeout_ms < 0: forever); false on timeout. */
bool msim_glock_acquire_shared(int64_t timeout_ms);
void msim_glock_release_shared(void);
/* msim_glock_enter / leave: the running command holds the lock (thread-local). */
void msim_glock_enter(void);
void msim_glock_leave(void);
/* msim_glock_yield releases the command's hold for a wait; msim_glock_resume takes it back. */
bool msim_glock_yield(void);
void msim_glock_resume(bool held);
/*
 * msim_index_build_begin: a user index build on db starts. Fails with
 * UserWritesBlocked while write blocking is being enabled; with the
 * hangAfterStartingIndexBuild fail point it waits (the build is "in
 * progress") and fails with IndexBuildAborted when write blocking aborts it.
 */
bool msim_index_build_begin(const char *db, mg_error_t *error);
bool msim_cmd_set_user_write_block_mode(msim_ctx_t *ctx, mg_error_t *error);
/* msim_noop_writer_tick writes a no-op when the oplog did not move for an interval. */
void msim_noop_writer_tick(int64_t now_ms);

/* Loading (msim_load.c) */
bool msim_load_files(const char *list, const char *target_ns, mg_error_t *error);

/* Wire protocol (msim_wire.c) */
#define MSIM_OP_REPLY      1
#define MSIM_OP_QUERY      2004
#define MSIM_OP_MSG        2013
#define MSIM_OP_COMPRESSED 2012

typedef struct {
    int32_t length, request_id, response_to, opcode;
    uint32_t flags;
    bool legacy; /* OP_QUERY */
    bson_t cmd;  /* body with sequences merged (owned) */
    bool exhaust;
    bool more_to_come;
} msim_msg_t;

/*
 * msim_wire_parse parses one complete message (buf, len = header length).
 * On success out->cmd is initialized (caller bson_destroy). On failure
 * error carries code and message and out->cmd is not initialized.
 */
bool msim_wire_parse(const uint8_t *buf, size_t len, msim_msg_t *out, mg_error_t *error);
/* msim_wire_reply_header fills the header+prefix of an OP_MSG or OP_REPLY reply. */
size_t msim_wire_reply_prefix(uint8_t *prefix, bool legacy, int32_t request_id, int32_t response_to,
                              uint32_t body_len);

#endif /* MSIM_H */
