/*
 * validate/include/mg/validate.h - verification of the target against the
 * source: segment checksums that name every differing _id and field, and
 * the validation report (JSON and self-contained HTML).
 *
 * Checksums (docs/validate.md): every document is reduced to ONE canonical
 * form on both sides - jsonb's own text output: the target's `doc` text as
 * it arrives, the source's BSON through the schema renderer and a
 * normaliser that writes jsonb's key order, spacing and escapes - hashed
 * to 64 bits, and the hashes are combined per segment (count, wrapping
 * sum, xor: order-independent). Before a difference is named, the two
 * documents are compared again through mg_schema_doc_canonicalize. Segments are hash
 * buckets of the canonical _id. A segment whose digests differ is split
 * into its single _ids by a second scan that keeps only that segment's
 * documents, and each differing _id is named: missing in the target, extra
 * in the target, or different with a field-level diff.
 *
 * The functions here open their own connections (one MongoDB client and one
 * PostgreSQL connection per scan thread) from the URIs in the options.
 */
#ifndef MG_VALIDATE_H
#define MG_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mg/core.h"
#include "mg/schema.h"
#include "mg/state.h"

#include <stdatomic.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Hashing and the canonical form (exposed for tests and benchmarks)
 * ------------------------------------------------------------------------ */

/* mg_validate_hash64 returns the 64-bit hash of len bytes (seeded, stable across builds). */
uint64_t mg_validate_hash64(const void *data, size_t len, uint64_t seed);

/*
 * mg_validate_doc_hash renders doc (borrowed) under fidelity with the schema
 * renderer, rewrites the JSON into jsonb's canonical text form (keys
 * sorted and deduplicated as jsonb does, jsonb's spacing and escapes) and
 * stores the hash of that text in *doc_hash and the hash of its "_id"
 * value text in *id_hash (either may be NULL). This is the value the
 * target's `doc` column prints, so the target side hashes its text as it
 * arrives. Fails on a document the renderer refuses or without _id.
 */
bool mg_validate_doc_hash(const bson_t *doc, mg_schema_fidelity_t fidelity, uint64_t *doc_hash,
                          uint64_t *id_hash, mg_error_t *error);

/*
 * mg_validate_json_hash is mg_validate_doc_hash for JSON text (len bytes):
 * the renderer's output or jsonb's, normalised the same way.
 */
bool mg_validate_json_hash(const char *json, size_t len, mg_schema_fidelity_t fidelity,
                           uint64_t *doc_hash, uint64_t *id_hash, mg_error_t *error);

/* ------------------------------------------------------------------------
 * Field-level diff
 * ------------------------------------------------------------------------ */

/* One differing field: path ("a.b.3"), and each side's value as relaxed JSON. */
typedef struct {
    char *path;
    char *source_value; /* NULL: the field is absent in the source */
    char *target_value; /* NULL: the field is absent in the target */
    char source_type[24];
    char target_type[24];
} mg_validate_field_diff_t;

/*
 * mg_validate_doc_diff compares the canonical forms of source and target
 * (borrowed) and appends at most max_diffs differences to *diffs (malloc'd
 * array, grown; caller frees with mg_validate_field_diffs_free), counting
 * them in *ndiffs. *more is set when differences beyond max_diffs exist.
 */
bool mg_validate_doc_diff(const bson_t *source, const bson_t *target, mg_schema_fidelity_t fidelity,
                          size_t max_diffs, mg_validate_field_diff_t **diffs, size_t *ndiffs,
                          bool *more, mg_error_t *error);

/* mg_validate_field_diffs_free frees n diffs and the array (NULL ok). */
void mg_validate_field_diffs_free(mg_validate_field_diff_t *diffs, size_t n);

/* ------------------------------------------------------------------------
 * Checking a collection
 * ------------------------------------------------------------------------ */

/* One collection and its table (strings borrowed for the call). */
typedef struct {
    const char *db;
    const char *coll;
    const char *schema; /* PostgreSQL schema of the table */
    const char *table;
    mg_schema_key_type_t key_type;
} mg_validate_coll_t;

/* Settings of a check; strings borrowed for the call. */
typedef struct {
    const char *source_uri;
    const char *target; /* libpq URI or conninfo */
    mg_schema_fidelity_t fidelity;
    uint32_t segments;       /* hash buckets per collection (>= 1) */
    size_t max_named;        /* differing _ids named per collection */
    size_t max_diffs;        /* field differences kept per _id */
    int64_t batch_docs;      /* source cursor batch size */
    int64_t drilldown_bytes; /* memory for the documents of mismatching segments */
    /* the source is read as these filters (together: every document exactly once,
       e.g. the copy's partitions), by source_threads workers; none: one {} */
    const bson_t *const *source_filters;
    size_t nsource_filters;
    int source_threads;
} mg_validate_check_options_t;

/* mg_validate_check_options_init fills the defaults (docs/validate.md). */
void mg_validate_check_options_init(mg_validate_check_options_t *options);

typedef enum {
    MG_VALIDATE_MISSING = 0, /* in the source, not in the target */
    MG_VALIDATE_EXTRA,       /* in the target, not in the source */
    MG_VALIDATE_DIFFERENT,   /* on both sides, different data */
} mg_validate_mismatch_kind_t;

/* mg_validate_mismatch_kind_name returns "missing", "extra" or "different". */
const char *mg_validate_mismatch_kind_name(mg_validate_mismatch_kind_t kind);

/* One named difference; strings malloc'd, owned by the result. */
typedef struct {
    mg_validate_mismatch_kind_t kind;
    char *id_json; /* the canonical _id as relaxed Extended JSON: the identity */
    char *doc_id;  /* the key column's text form (as in _migrate.changed_docs) */
    mg_validate_field_diff_t *diffs;
    size_t ndiffs;
    bool more_diffs;
    /* filled by the caller that records results (migrate validate) */
    bool persisted;         /* also seen by the previous run that checked this _id */
    char first_seen_at[40]; /* RFC 3339, "" when unknown */
} mg_validate_mismatch_t;

/* The outcome of checking one collection; free with mg_validate_result_cleanup. */
typedef struct {
    int64_t source_docs;
    int64_t target_docs;
    uint32_t segments;
    uint32_t segments_mismatched;
    uint32_t segments_drilled; /* < segments_mismatched when memory ran out */
    int64_t missing;           /* counts of every difference found, named or not */
    int64_t extra;
    int64_t different;
    mg_validate_mismatch_t *mismatches; /* the first max_named, sorted by id_json */
    size_t nmismatches;
    bool truncated;  /* more differences exist than are named */
    double source_s; /* wall time of the source scans */
    double target_s; /* wall time of the target scans */
    double elapsed_s;
} mg_validate_result_t;

/* mg_validate_result_cleanup frees what result owns (NULL ok) and zeroes it. */
void mg_validate_result_cleanup(mg_validate_result_t *result);

/*
 * mg_validate_check_collection checksums coll on both sides in parallel
 * (one thread per side) and drills mismatching segments down to named
 * _ids. Fills *result (zeroed first; caller cleans up). Errors: domain
 * mongo or pg for the sides' failures, parse for a row that does not read
 * back (naming the row's key).
 */
bool mg_validate_check_collection(const mg_validate_check_options_t *options,
                                  const mg_validate_coll_t *coll, mg_validate_result_t *result,
                                  mg_error_t *error);

/*
 * mg_validate_check_ids re-checks the documents whose key column text form
 * is in doc_ids (n strings, borrowed) by reading each on both sides; the
 * result counts them as source/target docs and names the differences.
 * Used by `migrate validate --changed`.
 */
bool mg_validate_check_ids(const mg_validate_check_options_t *options,
                           const mg_validate_coll_t *coll, const char *const *doc_ids, size_t n,
                           mg_validate_result_t *result, mg_error_t *error);

/* ------------------------------------------------------------------------
 * Shadow reads: MongoDB find -> SQL over the jsonb column
 * (operator coverage: docs/shadow-reads.md)
 * ------------------------------------------------------------------------ */

/* Error code (domain CORE) of a query that is not translated exactly. */
#define MG_VALIDATE_ERR_NOT_TRANSLATED 100

/* One find: every part borrowed; NULL means absent. */
typedef struct {
    const bson_t *filter;
    const bson_t *projection;
    const bson_t *sort;
    int64_t skip;
    int64_t limit; /* 0: none; a negative limit counts as its absolute value */
} mg_validate_find_t;

/*
 * The translation; everything malloc'd, freed by mg_validate_sql_cleanup.
 * Values are parameters: run sql with params[0..nparams) (text format),
 * guard_sql with the first guard_nparams of them.
 */
typedef struct {
    char *jsonpath; /* the filter ("$ ? (...)"), also params[0]; NULL without filter */
    char *sql;      /* SELECT doc::text ... */
    char **params;  /* the parameters of sql, in order */
    int nparams;
    char *guard_sql; /* NULL, or SELECT returning one boolean: true = the sort meets a value
                        it cannot order exactly (array, document, ...) on this data */
    int guard_nparams;
    bool ordered;    /* a sort was given: compare as ordered lists */
    bool count_only; /* skip/limit without sort: which documents is unspecified */
} mg_validate_sql_t;

/*
 * mg_validate_shadow_translate translates find for table schema.table
 * holding documents under fidelity into out (zeroed first; caller cleans
 * up). A query that cannot be translated exactly fails with code
 * MG_VALIDATE_ERR_NOT_TRANSLATED and the message "not translated: <reason>";
 * out is then empty.
 */
bool mg_validate_shadow_translate(const mg_validate_find_t *find, const char *schema,
                                  const char *table, mg_schema_fidelity_t fidelity,
                                  mg_validate_sql_t *out, mg_error_t *error);

/* mg_validate_sql_cleanup frees what sql owns (NULL ok). */
void mg_validate_sql_cleanup(mg_validate_sql_t *sql);

/*
 * One query in the shadow-file form: {"ns": "db.coll", "filter": {...},
 * "sort": {...}, "projection": {...}, "skip": n, "limit": n} (relaxed or
 * canonical Extended JSON; the query operator "$type" is read as such).
 * find's parts and ns are borrowed from doc.
 */
typedef struct {
    bson_t doc;
    bson_t filter, projection, sort;
    mg_validate_find_t find;
    const char *ns; /* NULL when the line has no "ns" string */
} mg_validate_shadow_line_t;

/* mg_validate_shadow_line_parse parses text (len bytes); clean up with ..._line_cleanup. */
bool mg_validate_shadow_line_parse(const char *text, size_t len, mg_validate_shadow_line_t *line,
                                   mg_error_t *error);
void mg_validate_shadow_line_cleanup(mg_validate_shadow_line_t *line);

typedef enum {
    MG_VALIDATE_SHADOW_MATCH = 0,
    MG_VALIDATE_SHADOW_MISMATCH,
    MG_VALIDATE_SHADOW_NOT_TRANSLATED,
    MG_VALIDATE_SHADOW_ERROR,
} mg_validate_shadow_status_t;

/* mg_validate_shadow_status_name returns "match", "mismatch", "not_translated", "error". */
const char *mg_validate_shadow_status_name(mg_validate_shadow_status_t status);

/* One shadow query's outcome; strings malloc'd, freed by mg_validate_shadow_results_free. */
typedef struct {
    char *name;  /* the line's "name", or "#<line>" */
    char *ns;    /* db.coll */
    char *query; /* the input line as relaxed Extended JSON */
    char *sql;
    char *jsonpath;
    mg_validate_shadow_status_t status;
    char *reason; /* not_translated / error: why; mismatch: what differs */
    bool ordered;
    bool count_only;
    bool tie_sensitive; /* ordered: some documents tie on the sort keys (compared as sets) */
    int64_t mongo_count;
    int64_t pg_count;
    char **diff_ids; /* _ids (relaxed Extended JSON) in one result and not the other */
    size_t ndiff_ids;
    char **pg_ids; /* the _ids PostgreSQL returned, in its order (at most 1000) */
    size_t npg_ids;
    double mongo_p50_ms, mongo_p95_ms;
    double pg_p50_ms, pg_p95_ms;
} mg_validate_shadow_result_t;

/* A collection mapping for shadow reads (borrowed). */
typedef struct {
    const char *db;
    const char *coll;
    const char *schema;
    const char *table;
} mg_validate_shadow_ns_t;

/* Settings of a shadow-read run; strings borrowed. */
typedef struct {
    const char *source_uri;
    const char *target;
    mg_schema_fidelity_t fidelity;
    const mg_validate_shadow_ns_t *namespaces;
    size_t nnamespaces;
    int repeat; /* runs per side and query (latency samples), >= 1 */
} mg_validate_shadow_options_t;

/*
 * mg_validate_shadow_run_lines runs every query of text (JSON lines: ns,
 * filter, projection, sort, limit, skip, name; blank lines and lines
 * starting with '#' skipped) on both sides and compares the results
 * through the canonical form. *results (malloc'd; caller frees with
 * mg_validate_shadow_results_free) gets one entry per query; a query's own
 * failure is its status, not an error. Fails on a connection failure.
 */
bool mg_validate_shadow_run_lines(const mg_validate_shadow_options_t *options, const char *text,
                                  mg_validate_shadow_result_t **results, size_t *nresults,
                                  mg_error_t *error);

/*
 * mg_validate_shadow_profiler_lines appends, as JSON lines for
 * mg_validate_shadow_run_lines, the find commands recorded in
 * system.profile of every database of namespaces (at most max per
 * database, newest first).
 */
bool mg_validate_shadow_profiler_lines(const mg_validate_shadow_options_t *options, size_t max,
                                       mg_buf_t *out, mg_error_t *error);

void mg_validate_shadow_results_free(mg_validate_shadow_result_t *results, size_t n);

/* ------------------------------------------------------------------------
 * Reports
 * ------------------------------------------------------------------------ */

/* One collection of a validation run (everything borrowed). */
typedef struct {
    const char *db;
    const char *coll;
    const char *schema;
    const char *table;
    const char *status; /* "clean", "mismatch" or "failed" */
    const char *error;  /* the failure, NULL unless failed */
    const mg_validate_result_t *result;
} mg_validate_report_coll_t;

/* A validation run (everything borrowed). */
typedef struct {
    int64_t run_id;
    const char *mode;        /* "full" or "changed" */
    const char *started_at;  /* RFC 3339 */
    const char *finished_at; /* RFC 3339 */
    const char *status;      /* "clean", "mismatch", "persistent_mismatch" or "failed" */
    double elapsed_s;
    int64_t persistent; /* mismatches that persisted across runs */
    const mg_validate_report_coll_t *colls;
    size_t ncolls;
    bool has_shadow; /* shadow reads ran (shadow may still be NULL: no queries) */
    const mg_validate_shadow_result_t *shadow;
    size_t nshadow;
} mg_validate_report_t;

/*
 * mg_validate_report_json appends the report as one JSON object (schema in
 * docs/validate.md) to out. Fails only when out's cap is reached.
 */
bool mg_validate_report_json(const mg_validate_report_t *report, mg_buf_t *out, mg_error_t *error);

/*
 * mg_validate_report_html appends the report as one self-contained HTML
 * page (inline CSS and SVG, no script, no external asset) to out.
 */
bool mg_validate_report_html(const mg_validate_report_t *report, mg_buf_t *out, mg_error_t *error);

/* ------------------------------------------------------------------------
 * Scope: is every source collection the migration takes in migrated?
 * ------------------------------------------------------------------------ */

struct _mongoc_client_t;

/*
 * mg_validate_scope_wants tells whether the migration's scope takes in the
 * source collection db.name of listCollections type `type` (NULL:
 * "collection") the way init plans: an ordinary collection outside admin,
 * local and config, not system.*, matching an include pattern (or there is
 * none) and no exclude pattern.
 */
bool mg_validate_scope_wants(const mg_state_scope_t *scope, const char *db, const char *name,
                             const char *type);

/*
 * mg_validate_scope_unmigrated lists (listDatabases, listCollections on
 * client, borrowed) the source collections the scope takes in that the
 * plan in st lacks, as "db.coll" in *missing (caller frees with
 * mg_validate_strlist_cleanup); only (NULL or empty: all) restricts them to
 * namespaces matching its patterns. *known is false, and nothing is
 * listed, when the state does not record the scope (an older init).
 */
bool mg_validate_scope_unmigrated(struct _mongoc_client_t *client, mg_state_t *st,
                                  const mg_strlist_t *only, mg_strlist_t *missing, bool *known,
                                  mg_error_t *error);

/* mg_validate_scope_describe writes "a.b, c.d and 3 more" into out; false when empty. */
bool mg_validate_scope_describe(const mg_strlist_t *missing, char *out, size_t outsz);

/* mg_validate_strlist_cleanup frees the items of list and empties it (NULL ok). */
void mg_validate_strlist_cleanup(mg_strlist_t *list);

/* ------------------------------------------------------------------------
 * A validation run: the engine behind `migrate validate` and the cutover's
 * verify step (docs/validate.md)
 * ------------------------------------------------------------------------ */

/* What to check and how; strings and state borrowed for the call. */
typedef struct {
    const char *source;              /* MongoDB URI: the scans open their own clients */
    const char *target;              /* libpq conninfo: the scans open their own connections */
    mg_state_t *state;               /* the state schema (required) on a target connection */
    const mg_strlist_t *collections; /* db.coll / db.* patterns; NULL or none: all */
    bool full;                       /* checksum every document */
    bool changed; /* re-check what changed up to the checkpoint, and open mismatches */
    int64_t segments;
    int64_t max_named;
    int64_t max_fields;
    int64_t batch_docs;
    int64_t drilldown_bytes;
    int64_t source_threads;
    bool fail_on_any;        /* a mismatch that did not persist counts too */
    const char *report_json; /* file to write the JSON report to; NULL: none */
    const char *report_html; /* file to write the HTML report to; NULL: none */
    FILE *out;               /* the summary (or, with json, the JSON report); NULL: none */
    bool json;
    const char *shadow; /* shadow queries (JSON lines file); NULL: none */
    bool shadow_from_profiler;
    int64_t shadow_repeat;
    int64_t profiler_max;
    int64_t every_ms; /* > 0 with changed: run again after this pause (recheck rounds) */
    int64_t max_runs; /* with every_ms: at most this many runs (0: until stopped) */
    atomic_int *stop; /* > 0: no further round (NULL: never) */
} mg_validate_settings_t;

/*
 * mg_validate_settings_init zeroes settings and fills the defaults of
 * `migrate validate` (segments 1024, 1000 _ids and 20 fields named, source
 * batches of 2000, 256 MB for drill-down, 2 source threads, 5 shadow runs,
 * 1000 profiler finds).
 */
void mg_validate_settings_init(mg_validate_settings_t *settings);

/*
 * mg_validate_run runs one validation (full, changed, shadow reads, or
 * both), or with every_ms rounds of them: results, named differences
 * (first seen, persisted, resolved) and shadow outcomes recorded through
 * state/ in one transaction per run, reports written atomically, the
 * summary on settings->out. Returns MG_EXIT_OK (clean), MG_EXIT_MISMATCH (a
 * mismatch that persisted, or any with fail_on_any), or another exit code
 * with error set (a failed collection names its error; the run is marked
 * failed). With rounds, the last run's code.
 */
int mg_validate_run(const mg_validate_settings_t *settings, mg_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MG_VALIDATE_H */
