/*
 * schema/include/mg/schema.h - the BSON <-> JSONB type mapping: the fast
 * BSON -> JSON renderer (the copier's hot path), the reverse JSON -> BSON
 * mapping, a census scan of per-document facts and a canonical form for
 * comparisons. The mapping itself is specified in docs/type-mapping.md.
 *
 * Numbers are formatted and parsed with '.' as the decimal point: callers
 * must not switch LC_NUMERIC away from "C".
 */
#ifndef MG_SCHEMA_H
#define MG_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "mg/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * mg_schema_fidelity_t - how numbers are stored. RELAXED (the default) keeps
 * int32, int64 and double as JSON numbers so they stay queryable; an int64
 * whose value fits int32 comes back as int32. EXACT stores them in their
 * canonical Extended JSON wrappers ($numberInt, $numberLong, $numberDouble)
 * so the reverse mapping gives byte-identical BSON.
 */
typedef enum {
    MG_SCHEMA_FIDELITY_RELAXED = 0,
    MG_SCHEMA_FIDELITY_EXACT,
} mg_schema_fidelity_t;

/* mg_schema_fidelity_parse maps "relaxed" / "exact" to a fidelity. */
bool mg_schema_fidelity_parse(const char *text, mg_schema_fidelity_t *fidelity);

/* mg_schema_fidelity_name returns the static name of fidelity. */
const char *mg_schema_fidelity_name(mg_schema_fidelity_t fidelity);

/*
 * Deepest nesting of documents and arrays (a code-with-scope's scope counts
 * as a level) that the renderer accepts. MongoDB itself stops at 100 (180
 * for its internal limit); deeper documents fail with MG_ERROR_CODE_LIMIT.
 */
#define MG_SCHEMA_MAX_DEPTH 200

/*
 * Per-document facts, OR-ed into a caller's uint32_t. The renderer reports
 * the cheap ones as a by-product; mg_schema_doc_scan reports all of them.
 */
enum {
    MG_SCHEMA_FACT_NAN_INF = 1u << 0,       /* a double NaN or +/-Infinity (wrapped) */
    MG_SCHEMA_FACT_NEGATIVE_ZERO = 1u << 1, /* a double -0.0 (wrapped) */
    MG_SCHEMA_FACT_NUL_STRING = 1u << 2,    /* a string holding U+0000 (escaped) */
    MG_SCHEMA_FACT_INVALID_UTF8 = 1u << 3,  /* a string that is not UTF-8 (escaped) */
    MG_SCHEMA_FACT_DOLLAR_KEY = 1u << 4,    /* a key starting with '$' */
    MG_SCHEMA_FACT_DOTTED_KEY = 1u << 5,    /* a key containing '.' */
    MG_SCHEMA_FACT_LITERAL = 1u << 6,       /* a document wrapped in $literal */
    MG_SCHEMA_FACT_DEPRECATED = 1u << 7,    /* undefined, DBPointer, symbol, code w/ scope */
    MG_SCHEMA_FACT_DUPLICATE_KEY = 1u << 8, /* a key repeated in one document ($fieldPairs) */
    MG_SCHEMA_FACT_EMPTY_KEY = 1u << 9,     /* scan only: a key "" */
    MG_SCHEMA_FACT_NAN_DECIMAL = 1u << 10,  /* a Decimal128 NaN or +/-Infinity */
    MG_SCHEMA_FACT_UNRENDERABLE = 1u << 11, /* scan only: a key or regex not UTF-8 */
};

/* mg_schema_fact_name returns the static snake_case name of one fact bit. */
const char *mg_schema_fact_name(uint32_t fact);

/* ------------------------------------------------------------------------
 * BSON -> JSON (the renderer)
 * ------------------------------------------------------------------------ */

/*
 * mg_schema_doc_render appends the JSON text of doc (borrowed) to out
 * (caller-owned; its cap bounds the output) and ORs the facts it saw into
 * *facts (NULL allowed). The text is accepted by PostgreSQL as jsonb and is
 * what COPY binary sends after the jsonb version byte. Keys keep their
 * order; a document with a duplicate key is written as {"$fieldPairs": [[key,
 * value], ...]} (docs/type-mapping.md), since jsonb would keep the last.
 *
 * Fails with MG_ERROR_CODE_PARSE on corrupt BSON, a key that is not UTF-8 or
 * a regex that is not UTF-8, MG_ERROR_CODE_LIMIT when out's cap is reached
 * or the document is nested deeper than MG_SCHEMA_MAX_DEPTH; the message
 * names the path of the value ("a.b.3"). On failure out->len is restored
 * and *facts is untouched. The cap is checked against a worst-case estimate
 * per value, so a render may fail up to ~25 KB before the cap is really
 * reached: flush and retry in an empty buffer.
 */
bool mg_schema_doc_render(const bson_t *doc, mg_schema_fidelity_t fidelity, mg_buf_t *out,
                          uint32_t *facts, mg_error_t *error);

/*
 * mg_schema_doc_render_raw is mg_schema_doc_render over len bytes of raw
 * BSON (borrowed; a whole document, length prefix included).
 */
bool mg_schema_doc_render_raw(const uint8_t *data, size_t len, mg_schema_fidelity_t fidelity,
                              mg_buf_t *out, uint32_t *facts, mg_error_t *error);

/*
 * mg_schema_value_render appends the JSON of the single value iter points at
 * (borrowed), as it would appear inside a document: e.g. the jsonb key column
 * for an _id that is neither an ObjectId, a string nor an integer. Fails like
 * mg_schema_doc_render.
 */
bool mg_schema_value_render(const bson_iter_t *iter, mg_schema_fidelity_t fidelity, mg_buf_t *out,
                            uint32_t *facts, mg_error_t *error);

/* ------------------------------------------------------------------------
 * JSON -> BSON (the reverse mapping)
 * ------------------------------------------------------------------------ */

/*
 * mg_schema_json_parse maps the JSON text of one document (len bytes, need
 * not be NUL-terminated) back to BSON: our renderer's output, or the same
 * after a trip through jsonb (keys reordered, numbers normalised, spacing
 * changed). Both fidelities are read; the text says which wrappers it uses.
 * Returns a new bson_t the caller frees with bson_destroy, or NULL with
 * error set (MG_ERROR_CODE_PARSE naming the path, MG_ERROR_CODE_LIMIT for
 * nesting deeper than the renderer writes).
 */
bson_t *mg_schema_json_parse(const char *json, size_t len, mg_error_t *error);

/*
 * mg_schema_json_append_value parses the JSON of one value (any JSON value:
 * the counterpart of mg_schema_value_render) and appends it to dst under key
 * (key_len bytes, or -1 for NUL-terminated). dst is untouched on failure.
 */
bool mg_schema_json_append_value(bson_t *dst, const char *key, int key_len, const char *json,
                                 size_t len, mg_error_t *error);

/* ------------------------------------------------------------------------
 * Census and comparison
 * ------------------------------------------------------------------------ */

/*
 * mg_schema_doc_scan walks doc (borrowed) without rendering it and ORs every
 * fact into *facts, empty keys and keys or regexes that are not UTF-8
 * included (the renderer does not report those). *max_depth (NULL allowed) receives the deepest
 * nesting seen (a flat document is 1). Fails on corrupt BSON (naming the key or depth) or nesting
 * deeper than MG_SCHEMA_MAX_DEPTH; outputs are untouched then.
 */
bool mg_schema_doc_scan(const bson_t *doc, uint32_t *facts, uint32_t *max_depth, mg_error_t *error);

/*
 * mg_schema_doc_canonicalize returns a new bson_t (caller destroys) holding
 * the canonical form of doc under fidelity: keys of every document (a
 * scope's too) sorted the way jsonb orders them (shorter first, then
 * bytewise) except in a document with a duplicate key, which keeps all its
 * members in order (as its $fieldPairs form does), array keys renumbered,
 * and in RELAXED also the distinctions that mode does not keep (an int64
 * that fits int32 becomes int32, NaN payloads and non-canonical Decimal128
 * encodings are normalised). Two documents are the same data after the
 * trip through jsonb exactly when their canonical forms are byte-identical.
 * Returns NULL with error set on corrupt BSON.
 */
bson_t *mg_schema_doc_canonicalize(const bson_t *doc, mg_schema_fidelity_t fidelity,
                                   mg_error_t *error);

/*
 * mg_schema_doc_equal compares the canonical forms of a and b (borrowed).
 * Returns false with error set when either cannot be read; *equal receives
 * the answer.
 */
bool mg_schema_doc_equal(const bson_t *a, const bson_t *b, mg_schema_fidelity_t fidelity,
                         bool *equal, mg_error_t *error);

/* ------------------------------------------------------------------------
 * Naming: PostgreSQL schemas and tables for databases and collections
 * ------------------------------------------------------------------------ */

#define MG_SCHEMA_IDENT_MAX 63

/*
 * mg_schema_ident_sanitize writes a PostgreSQL identifier for name into out:
 * name itself when it is a plain lower-case identifier ([a-z_][a-z0-9_]*, at
 * most 63 bytes), else lower-cased with other bytes as '_', "c_" in front of
 * a leading digit, and cut with "_<8 hex of its hash>" when too long.
 * Returns true when the result differs from name. Rules: docs/naming.md.
 */
bool mg_schema_ident_sanitize(const char *name, char out[MG_SCHEMA_IDENT_MAX + 1]);

/* One collection's names; strings owned by the naming object. */
typedef struct {
    char *db;
    char *coll;
    char schema[MG_SCHEMA_IDENT_MAX + 1];
    char table[MG_SCHEMA_IDENT_MAX + 1];
    char pkey[MG_SCHEMA_IDENT_MAX + 1]; /* the primary key's index: "<table>_pkey" unless taken */
    bool schema_renamed;                /* schema differs from db */
    bool table_renamed;                 /* table differs from coll */
} mg_schema_naming_entry_t;

typedef struct mg_schema_naming mg_schema_naming_t;

/*
 * mg_schema_naming_new starts a name plan: one schema per database, or every
 * table in single_schema (copied; NULL for per-database schemas). Destroy
 * with mg_schema_naming_destroy (NULL allowed).
 */
mg_schema_naming_t *mg_schema_naming_new(const char *single_schema);
void mg_schema_naming_destroy(mg_schema_naming_t *naming);

/* mg_schema_naming_add registers db.coll (copied). */
bool mg_schema_naming_add(mg_schema_naming_t *naming, const char *db, const char *coll,
                          mg_error_t *error);

/*
 * mg_schema_naming_reserve keeps a schema name (copied; e.g. the state
 * schema) from being given to a database: a database that would get it is
 * renamed with a hash instead. Call before mg_schema_naming_resolve.
 */
bool mg_schema_naming_reserve(mg_schema_naming_t *naming, const char *schema, mg_error_t *error);

/*
 * mg_schema_naming_resolve names every registered collection: schema,
 * table and primary-key index, each a valid PostgreSQL identifier, unique
 * where PostgreSQL needs it (schemas; relations within a schema), never a
 * reserved schema name (pg_*, information_schema, mg_schema_naming_reserve).
 * Names that would clash after sanitising all get "_<8 hex of the
 * original's hash>" (and again with a salt while any final name still
 * clashes), so the result does not depend on the order of
 * mg_schema_naming_add. Fails naming the option when the single schema is
 * reserved. Rules: docs/naming.md.
 */
bool mg_schema_naming_resolve(mg_schema_naming_t *naming, mg_error_t *error);

/* mg_schema_naming_entries returns the resolved entries (borrowed). */
const mg_schema_naming_entry_t *mg_schema_naming_entries(const mg_schema_naming_t *naming,
                                                         size_t *count);

/* mg_schema_naming_find returns db.coll's entry (borrowed) or NULL. */
const mg_schema_naming_entry_t *mg_schema_naming_find(const mg_schema_naming_t *naming,
                                                      const char *db, const char *coll);

/*
 * mg_schema_quote_ident appends "ident" with embedded quotes doubled: the
 * one quoting of identifiers. Refuses (MG_ERROR_CODE_INVALID_ARGUMENT) an
 * empty name and one over 63 bytes, which PostgreSQL would cut silently.
 */
bool mg_schema_quote_ident(const char *ident, mg_buf_t *out, mg_error_t *error);

/*
 * mg_schema_quote_literal appends 'text' with embedded single quotes
 * doubled, or E'text' with backslashes doubled too when text holds one, so
 * the literal reads the same whatever standard_conforming_strings is.
 */
bool mg_schema_quote_literal(const char *text, mg_buf_t *out, mg_error_t *error);

/* ------------------------------------------------------------------------
 * Census: what init learns about each collection
 * ------------------------------------------------------------------------ */

/*
 * The key column: its SQL type and which _id values fit it (DESIGN §3,
 * docs/type-mapping.md "The key column"). Two _ids get the same key exactly
 * when MongoDB's _id index holds them as one _id, for every key type.
 */
typedef enum {
    MG_SCHEMA_KEY_TEXT_OID = 0, /* text: ObjectId as 24 lower-case hex, or a string that is not */
    MG_SCHEMA_KEY_TEXT_STRING,  /* text: strings (and symbols) only */
    MG_SCHEMA_KEY_BIGINT,       /* bigint: any number whose value is an int64 (1, 1.0, "1"^^dec) */
    MG_SCHEMA_KEY_JSONB,        /* legacy jsonb (the mapped value): read, never chosen; it merges
                                   embedded documents that differ only in key order */
    MG_SCHEMA_KEY_CANONICAL,    /* text COLLATE "C": the canonical encoding; every _id fits */
} mg_schema_key_type_t;

const char *mg_schema_key_type_name(mg_schema_key_type_t type);
bool mg_schema_key_type_parse(const char *text, mg_schema_key_type_t *type);
/* mg_schema_key_type_sql returns "text", "bigint" or "jsonb" (for casts: $1::text). */
const char *mg_schema_key_type_sql(mg_schema_key_type_t type);

/* mg_schema_bson_type_alias returns MongoDB's $type alias ("objectId") or NULL. */
const char *mg_schema_bson_type_alias(bson_type_t type);
bool mg_schema_bson_type_from_alias(const char *alias, bson_type_t *type);

#define MG_SCHEMA_CENSUS_MAX_FIELDS 1000

typedef struct mg_schema_census mg_schema_census_t;

/* mg_schema_census_new starts an empty census of db.coll; destroy (NULL ok). */
mg_schema_census_t *mg_schema_census_new(const char *db, const char *coll);
void mg_schema_census_destroy(mg_schema_census_t *census);

/* Server statistics ($collStats storageStats or count). */
void mg_schema_census_set_stats(mg_schema_census_t *census, int64_t count, int64_t size_bytes,
                                int64_t storage_bytes);

/*
 * mg_schema_census_add_id_type adds n documents whose _id has the $type
 * alias (from a server-side $group by {$type: "$_id"}); once called, the key
 * decision uses this exact distribution instead of the sample's.
 */
bool mg_schema_census_add_id_type(mg_schema_census_t *census, const char *alias, int64_t n,
                                  mg_error_t *error);

/* Number of string _ids that read as an ObjectId's 24 lower-case hex digits. */
void mg_schema_census_set_oid_like_strings(mg_schema_census_t *census, int64_t n);

/* Whether the documents fed are the whole collection (else a sample). */
void mg_schema_census_set_full_scan(mg_schema_census_t *census, bool full);

/*
 * mg_schema_census_add_sample counts one document (borrowed): size, facts
 * (mg_schema_doc_scan), top-level field types. A document the scan cannot
 * read is counted as a finding, not an error.
 */
bool mg_schema_census_add_sample(mg_schema_census_t *census, const bson_t *doc, mg_error_t *error);

/*
 * mg_schema_census_key_type returns the key type chosen with
 * mg_schema_census_choose_key, or else DESIGN §3's rule: text_objectid /
 * text_string when every _id is an ObjectId or a string that fits text,
 * bigint when every _id is an int32 or int64, otherwise (and for an empty
 * collection) canonical.
 */
mg_schema_key_type_t mg_schema_census_key_type(const mg_schema_census_t *census);

/*
 * mg_schema_key_choice_check validates the items of `migrate init
 * --key-type` (borrowed): "TYPE" (every collection) or "DB.COLL=TYPE" where
 * DB.COLL is an fnmatch pattern (db.*), TYPE one of text_objectid,
 * text_string, bigint, canonical. Fails naming the item.
 */
bool mg_schema_key_choice_check(const char *const *items, size_t n, mg_error_t *error);

/*
 * mg_schema_census_choose_key fixes the census's key type: the last item of
 * items (as for mg_schema_key_choice_check) that matches the collection, or
 * the rule of mg_schema_census_key_type. A chosen type that an _id the
 * census counted cannot fit (a string in a bigint table, say) fails naming
 * the collection, the _id type and the key type that fits.
 */
bool mg_schema_census_choose_key(mg_schema_census_t *census, const char *const *items, size_t n,
                                 mg_error_t *error);

int64_t mg_schema_census_count(const mg_schema_census_t *census);
int64_t mg_schema_census_size_bytes(const mg_schema_census_t *census);

/* true when the sample saw an array in top-level field `field`. */
bool mg_schema_census_field_is_array(const mg_schema_census_t *census, const char *field);

/*
 * mg_schema_census_warnings appends one line per warning to out (NULL to
 * only count) and stores their number in *count (NULL allowed).
 */
bool mg_schema_census_warnings(const mg_schema_census_t *census, mg_buf_t *out, size_t *count,
                               mg_error_t *error);

/* mg_schema_census_to_json appends the census report as one JSON object. */
bool mg_schema_census_to_json(const mg_schema_census_t *census, mg_buf_t *out, mg_error_t *error);

/* ------------------------------------------------------------------------
 * DDL and index translation
 * ------------------------------------------------------------------------ */

/*
 * mg_schema_sql_helpers_ddl appends the statements that create (or
 * replace) the SQL helper functions in schema: bson_oid, bson_new_oid,
 * bson_date, bson_date_value, bson_long, bson_double, bson_decimal,
 * bson_binary, and the check bson_valid with its parts bson_valid_*
 * (docs/application.md).
 */
bool mg_schema_sql_helpers_ddl(const char *schema, mg_buf_t *out, mg_error_t *error);

/*
 * mg_schema_table_ddl appends CREATE TABLE for a collection table; its
 * primary key index is named by PostgreSQL. mg_schema_table_ddl_named names
 * it entry->pkey, as resolved with every other relation of the schema.
 */
bool mg_schema_table_ddl(const char *schema, const char *table, mg_schema_key_type_t key_type,
                         mg_buf_t *out, mg_error_t *error);
bool mg_schema_table_ddl_named(const mg_schema_naming_entry_t *entry, mg_schema_key_type_t key_type,
                               mg_buf_t *out, mg_error_t *error);

typedef enum {
    MG_SCHEMA_INDEX_PRIMARY = 0,    /* the _id index: the table's primary key */
    MG_SCHEMA_INDEX_TRANSLATED,     /* same semantics on the JSONB column */
    MG_SCHEMA_INDEX_CAVEAT,         /* built, with a difference stated in note */
    MG_SCHEMA_INDEX_NOT_TRANSLATED, /* not built: note says why, suggestion what instead */
} mg_schema_index_status_t;

const char *mg_schema_index_status_name(mg_schema_index_status_t status);

/* One index's plan; strings malloc'd, freed by mg_schema_index_plan_cleanup. */
typedef struct {
    char *mongo_name;
    char *key_json; /* the key document as relaxed Extended JSON */
    char pg_name[MG_SCHEMA_IDENT_MAX + 1];
    mg_schema_index_status_t status;
    bool unique;
    char *statement;  /* CREATE [UNIQUE] INDEX "pg_name" ON ..., NULL unless built */
    char *sql;        /* what builds it (a DO block: the statement, or a check that the index of
                         that name is this one; docs/index-translation.md), NULL unless built */
    char *note;       /* caveat or reason, NULL when none */
    char *suggestion; /* what to do instead, NULL when none */
    char *schema;     /* internal: the statement's parts, for renaming */
    char *tail;
} mg_schema_index_plan_t;

/*
 * mg_schema_index_translate turns one listIndexes entry (spec, borrowed)
 * into a plan for schema.table. census (NULL allowed) lets it warn about
 * array fields. Fails only on a malformed spec or out of memory; an index
 * it cannot translate is a plan with status NOT_TRANSLATED.
 */
bool mg_schema_index_translate(const bson_t *spec, const char *schema, const char *table,
                               const mg_schema_census_t *census, mg_schema_index_plan_t *plan,
                               mg_error_t *error);
void mg_schema_index_plan_cleanup(mg_schema_index_plan_t *plan);

/*
 * mg_schema_index_plan_rename gives a translated index the name pg_name
 * (a valid identifier) and writes its statement and build SQL again.
 */
bool mg_schema_index_plan_rename(mg_schema_index_plan_t *plan, const char *pg_name,
                                 mg_error_t *error);

/*
 * mg_schema_naming_add_indexes registers the n index plans of db.coll
 * (borrowed until mg_schema_naming_resolve_indexes returns) after
 * mg_schema_naming_resolve. mg_schema_naming_resolve_indexes then names
 * them all at once: "<table>_<index>" as mg_schema_index_translate chose it
 * unless another relation of the schema (a table, a primary key, another
 * index) has or wants that name, in which case every index involved gets a
 * hash; the primary-key plan takes the table's pkey name. Unique by
 * construction and independent of the order of registration.
 */
bool mg_schema_naming_add_indexes(mg_schema_naming_t *naming, const char *db, const char *coll,
                                  mg_schema_index_plan_t *plans, size_t n, mg_error_t *error);
bool mg_schema_naming_resolve_indexes(mg_schema_naming_t *naming, mg_error_t *error);

/* ------------------------------------------------------------------------
 * The key column value
 * ------------------------------------------------------------------------ */

/*
 * Longest key written: PostgreSQL refuses btree entries over ~2700 bytes.
 * A canonical key that would be longer is written as "#" + the 64 hex
 * digits of the SHA-256 of its canonical text (docs/type-mapping.md).
 */
#define MG_SCHEMA_KEY_MAX_BYTES 2600

/*
 * mg_schema_key_encode appends the key column value of the _id that id
 * points at (borrowed) for a collection of key type `type`: for COPY
 * binary (binary=true: text bytes, 8-byte big-endian bigint, or jsonb's
 * version byte + JSON) or as a text parameter (NUL-free UTF-8). Fails with
 * MG_ERROR_CODE_INVALID_ARGUMENT, naming the _id and the key type every _id
 * fits (canonical), when it does not fit (DESIGN §3: a string reading as
 * ObjectId hex in a text_objectid table, a non-integer in a bigint table,
 * NUL or invalid UTF-8 in text, a key over MG_SCHEMA_KEY_MAX_BYTES, an
 * array as _id). out->len is restored on failure.
 */
bool mg_schema_key_encode(const bson_iter_t *id, mg_schema_key_type_t type,
                          mg_schema_fidelity_t fidelity, bool binary, mg_buf_t *out,
                          mg_error_t *error);

/*
 * mg_schema_key_encode_for is mg_schema_key_encode for a key of collection
 * db.coll (borrowed; NULL when unknown): a misfit error's way out names
 * it, as the --key-type item to give (--key-type shop.orders=canonical,
 * quoted for the shell and escaped as a pattern when the name needs it).
 */
bool mg_schema_key_encode_for(const char *db, const char *coll, const bson_iter_t *id,
                              mg_schema_key_type_t type, mg_schema_fidelity_t fidelity, bool binary,
                              mg_buf_t *out, mg_error_t *error);

/*
 * mg_schema_key_append_id reads a key column's text form (len bytes, as
 * mg_schema_key_encode writes it with binary=false) back to an _id and
 * appends it to dst under key (key_len bytes or -1): a value MongoDB holds
 * equal to every _id with that key (canonical 1 comes back as int32 1,
 * which matches 1.0 and NumberLong(1) in a query). Fails with
 * MG_ERROR_CODE_PARSE on malformed text and MG_ERROR_CODE_NOT_FOUND for a
 * digest key (mg_schema_key_is_digest), whose _id cannot be recovered from
 * the key. dst is untouched on failure.
 */
bool mg_schema_key_append_id(mg_schema_key_type_t type, const char *text, size_t len, bson_t *dst,
                             const char *key, int key_len, mg_error_t *error);

/* mg_schema_key_is_digest returns true for a canonical key written as its digest. */
bool mg_schema_key_is_digest(mg_schema_key_type_t type, const char *text, size_t len);

/*
 * mg_schema_key_any_digest returns true when one of the n NUL-terminated
 * key texts (borrowed) is a digest: a re-check by key cannot read those
 * documents from the source, so the caller checks the collection in full.
 */
bool mg_schema_key_any_digest(mg_schema_key_type_t type, const char *const *texts, size_t n);

/*
 * mg_schema_id_describe writes the _id as relaxed Extended JSON into out
 * (outsz bytes, NUL-terminated): well-formed UTF-8, cut between characters
 * with "..." when it does not fit (mg_utf8_copy), so it can go to
 * PostgreSQL as text.
 */
void mg_schema_id_describe(const bson_iter_t *id, char *out, size_t outsz);

/* ------------------------------------------------------------------------
 * Typed keys of a field path (schema_index_expr.c): the expressions that
 * order jsonb values as MongoDB orders BSON values, shared by the query
 * indexes and the translated queries so the planner matches them
 * ------------------------------------------------------------------------ */

/* Ranks of MongoDB's type order, as the rank expression computes them. */
enum {
    MG_SCHEMA_RANK_MINKEY = 1,
    MG_SCHEMA_RANK_NULL = 2, /* null or missing */
    MG_SCHEMA_RANK_NAN = 3,
    MG_SCHEMA_RANK_NUMBER = 4,
    MG_SCHEMA_RANK_STRING = 5,
    MG_SCHEMA_RANK_OID = 8,
    MG_SCHEMA_RANK_BOOL = 9,
    MG_SCHEMA_RANK_DATE = 10,
    MG_SCHEMA_RANK_MAXKEY = 13,
    MG_SCHEMA_RANK_ARRAY = 98, /* an array at the value or on the way to it */
    MG_SCHEMA_RANK_OTHER = 99, /* documents and every other type */
};

/* The first date stored as {"$numberLong"} after 9999: 10000-01-01T00:00:00Z in ms. */
#define MG_SCHEMA_DATE_MAX_MS INT64_C(253402300800000)

/* A Decimal128 text the key casts to numeric (no backslash: literal-safe). */
#define MG_SCHEMA_DECIMAL_RE "^-?[0-9]+([.][0-9]+)?(E[-+]?[0-9]+)?$"

typedef enum {
    MG_SCHEMA_KEY_PART_RANK = 0, /* integer: MongoDB's type order */
    MG_SCHEMA_KEY_PART_NUM,      /* numeric: numbers, booleans, dates */
    MG_SCHEMA_KEY_PART_TEXT,     /* text COLLATE "C": strings, ObjectId hex */
} mg_schema_key_part_t;

/*
 * mg_schema_path_expr appends "(doc -> 'a' -> 'b')" for the dotted path
 * (components quoted as literals). Fails with MG_ERROR_CODE_INVALID_ARGUMENT
 * on an empty or $-prefixed component.
 */
bool mg_schema_path_expr(const char *path, mg_buf_t *out, mg_error_t *error);

/*
 * mg_schema_key_expr appends one part of the typed key of path (an
 * immutable expression over the column doc that never raises). Fails like
 * mg_schema_path_expr.
 */
bool mg_schema_key_expr(const char *path, mg_schema_key_part_t part, mg_buf_t *out,
                        mg_error_t *error);

/* mg_schema_date_key appends the num part of a date of ms milliseconds since 1970. */
bool mg_schema_date_key(int64_t ms, mg_buf_t *out, mg_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MG_SCHEMA_H */
