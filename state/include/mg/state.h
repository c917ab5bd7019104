/*
 * state/include/mg/state.h - the tool's state on the target: the `_migrate`
 * schema (name configurable), its DDL, and every statement that reads or
 * writes it (docs/state-schema.md).
 *
 * No other module writes SQL on the state schema: cdc/, validate/,
 * cutover/ and migrator/ call the typed functions here. Inside, every
 * statement is one constant text in which "@" stands for the state
 * schema's name, quoted by mg_schema_quote_ident; every value travels as a
 * bound parameter.
 *
 * A handle (mg_state_t) borrows one libpq connection and is used by one
 * thread at a time; a thread with its own connection makes its own
 * handle. Functions that change several rows take the caller's transaction
 * when one is open (mg_state_begin) and run alone otherwise.
 */
#ifndef MG_STATE_H
#define MG_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mg/core.h"
#include "mg/schema.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default name of the schema holding the tool's state on the target. */
#define MG_STATE_SCHEMA_DEFAULT "_migrate"

/* Version of the state schema this build writes and understands. */
#define MG_STATE_VERSION 1

/* Error codes of MG_ERROR_DOMAIN_STATE. */
enum {
    MG_STATE_ERR_MISSING = 1, /* no state schema (or not ours): run migrate init */
    MG_STATE_ERR_VERSION,     /* a version this build does not understand */
    MG_STATE_ERR_EMPTY,       /* a row that init writes is missing */
    MG_STATE_ERR_BUSY,        /* another process holds the state (a cutover) */
    MG_STATE_ERR_REFUSED,     /* the recorded state forbids the command now */
};

typedef struct mg_state mg_state_t;

/*
 * mg_state_new makes a handle on the state schema named schema (copied)
 * over conn (borrowed: it must outlive the handle, or be replaced with
 * mg_state_set_conn). Fails only on a name that cannot be an identifier or
 * on memory. Destroy with mg_state_destroy (NULL ok).
 */
mg_state_t *mg_state_new(struct pg_conn *conn, const char *schema, mg_error_t *error);
void mg_state_destroy(mg_state_t *st);

/* mg_state_conn returns the borrowed connection. */
struct pg_conn *mg_state_conn(const mg_state_t *st);

/* mg_state_set_conn points the handle at another connection (after a reconnect). */
void mg_state_set_conn(mg_state_t *st, struct pg_conn *conn);

/* mg_state_schema returns the schema's name (borrowed from the handle). */
const char *mg_state_schema(const mg_state_t *st);

/* ------------------------------------------------------------------------
 * The schema itself
 * ------------------------------------------------------------------------ */

/* mg_state_ddl appends the statements that create the state schema (version 1). */
bool mg_state_ddl(const mg_state_t *st, mg_buf_t *out, mg_error_t *error);

/*
 * mg_state_drop_ddl appends the statements that undo an init: DROP TABLE
 * of every recorded collection's table, then DROP SCHEMA ... CASCADE.
 */
bool mg_state_drop_ddl(mg_state_t *st, mg_buf_t *out, mg_error_t *error);

/*
 * mg_state_probe tells whether the state schema exists and, when it does,
 * its recorded version (0 when the schema exists without our meta table:
 * not ours).
 */
bool mg_state_probe(mg_state_t *st, bool *exists, int *version, mg_error_t *error);

/*
 * mg_state_require checks that the state schema exists, is ours and has
 * the version this build understands. Errors: domain state
 * (MG_STATE_ERR_MISSING: "... run migrate init first",
 * MG_STATE_ERR_VERSION), or pg.
 */
bool mg_state_require(mg_state_t *st, mg_error_t *error);

/* Transactions on the handle's connection; mg_state_rollback ignores errors. */
bool mg_state_begin(mg_state_t *st, mg_error_t *error);
bool mg_state_commit(mg_state_t *st, mg_error_t *error);
void mg_state_rollback(mg_state_t *st);

/* mg_state_event_add inserts an event (kind, data as JSON text; NULL = {}). */
bool mg_state_event_add(mg_state_t *st, const char *kind, const char *data_json, mg_error_t *error);

/* ------------------------------------------------------------------------
 * The migration row (one; written by init)
 * ------------------------------------------------------------------------ */

typedef struct {
    char phase[32];
    bool has_t0;
    uint32_t t0_t, t0_i;
    mg_schema_fidelity_t fidelity;
    char source_uri[2048]; /* as recorded: its password redacted */
    char created_at[32];   /* "YYYY-MM-DD HH:MM:SS" (UTC) */
} mg_state_migration_t;

/* mg_state_migration_get reads the row; MG_STATE_ERR_EMPTY when init has not run. */
bool mg_state_migration_get(mg_state_t *st, mg_state_migration_t *out, mg_error_t *error);

/* What init records (strings borrowed; NULL = SQL NULL). */
typedef struct {
    const char *tool_version;
    const char *source_uri;
    const char *source_version;
    const char *source_set_name; /* "" is stored as NULL */
    const char *target_schema;
    const char *type_fidelity;
    const char *options_json;  /* {"include": [...], "exclude": [...], ...}: the scope */
    const char *source_secret; /* where the source URI's password comes from ("env
                                  MIGRATE_SOURCE"); NULL: it has none. source_uri is
                                  recorded without it */
} mg_state_migration_new_t;

bool mg_state_migration_insert(mg_state_t *st, const mg_state_migration_new_t *m,
                               mg_error_t *error);

/*
 * mg_state_t0_lock reads T0 and locks the row until the caller's
 * transaction ends (two `migrate sync` starting together record one T0).
 */
bool mg_state_t0_lock(mg_state_t *st, bool *has_t0, uint32_t *t, uint32_t *i, mg_error_t *error);

/* mg_state_t0_set records T0 (the source's cluster time before the copy). */
bool mg_state_t0_set(mg_state_t *st, uint32_t t, uint32_t i, mg_error_t *error);

/* mg_state_phase_advance sets the phase to `to` when it is `from` or `from2` (may be NULL). */
bool mg_state_phase_advance(mg_state_t *st, const char *to, const char *from, const char *from2,
                            mg_error_t *error);

/*
 * The migration's scope: the include and exclude patterns (fnmatch on
 * "db.coll") init was given. No include pattern: every namespace. known is
 * false when init recorded only how many patterns there were (an older
 * init): the scope cannot be compared then.
 */
typedef struct {
    bool known;
    mg_strlist_t include;
    mg_strlist_t exclude;
} mg_state_scope_t;

/* mg_state_scope_get reads the scope; free with mg_state_scope_cleanup. */
bool mg_state_scope_get(mg_state_t *st, mg_state_scope_t *out, mg_error_t *error);
void mg_state_scope_cleanup(mg_state_scope_t *scope);

/* ------------------------------------------------------------------------
 * Collections (their mapping and status), census, indexes
 * ------------------------------------------------------------------------ */

typedef struct {
    char *db, *coll, *schema, *table;
    char key_type[16];
    mg_schema_key_type_t key; /* valid when key_known */
    bool key_known;
    char status[32];               /* planned, copying, copied, following, failed */
    int64_t doc_count, size_bytes; /* from the census */
    char *error;                   /* NULL when none */
    /* with_progress: what the copy did */
    int64_t parts_total, parts_done, parts_failed;
    int64_t docs_copied, bytes_copied;
    int64_t indexes_built, indexes_planned;
} mg_state_coll_t;

typedef struct {
    mg_state_coll_t *items;
    size_t n;
} mg_state_colls_t;

/*
 * mg_state_collections_load reads every collection ordered by db, coll
 * (with_progress: and the copy's counters). out is filled on success;
 * free with mg_state_colls_cleanup.
 */
bool mg_state_collections_load(mg_state_t *st, bool with_progress, mg_state_colls_t *out,
                               mg_error_t *error);

/* mg_state_collections_unplanned reads the planned collections that have no partitions yet. */
bool mg_state_collections_unplanned(mg_state_t *st, mg_state_colls_t *out, mg_error_t *error);

void mg_state_colls_cleanup(mg_state_colls_t *colls);

/* A collection as init records it, with its census report (strings borrowed). */
typedef struct {
    const char *db, *coll, *schema, *table, *key_type;
    int64_t doc_count, size_bytes;
    const char *census_json;
} mg_state_coll_new_t;

bool mg_state_collection_insert(mg_state_t *st, const mg_state_coll_new_t *c, mg_error_t *error);

/* mg_state_collection_set_status records a collection's status and error (NULL: none). */
bool mg_state_collection_set_status(mg_state_t *st, const char *db, const char *coll,
                                    const char *status, const char *err, mg_error_t *error);

/*
 * mg_state_collection_rename records that db.coll is now to_db.to_coll, in
 * one transaction: a collection already planned as to_db.to_coll was
 * replaced by the rename (MongoDB's dropTarget: one rename event, no drop)
 * and its rows go (indexes, census and partitions with it; its table is
 * left alone); db.coll's changed documents follow the new name.
 */
bool mg_state_collection_rename(mg_state_t *st, const char *db, const char *coll, const char *to_db,
                                const char *to_coll, mg_error_t *error);

/*
 * mg_state_collections_copy_start marks as copying the planned
 * collections and the failed ones whose copy has a pending partition (a
 * collection the change stream stopped stays failed: only --resync revives
 * it).
 */
bool mg_state_collections_copy_start(mg_state_t *st, mg_error_t *error);

/*
 * mg_state_collections_copy_finish marks copying collections without a
 * pending partition copied (and when: copied_at), or failed (with their
 * partitions' errors).
 */
bool mg_state_collections_copy_finish(mg_state_t *st, mg_error_t *error);

/* mg_state_collection_first_failed names a failed collection (db.coll) and its error, if any. */
bool mg_state_collection_first_failed(mg_state_t *st, bool *found, char *ns, size_t nssz, char *why,
                                      size_t whysz, mg_error_t *error);

/*
 * mg_state_resync prepares the collections matching patterns (fnmatch on
 * db.coll; "*" is all) for a new copy in one transaction: tables emptied,
 * partitions forgotten, status planned. After a lost change-stream history
 * it requires every collection and resets T0 and the checkpoint. *count
 * receives the number of collections. A pattern that matches nothing is a
 * config error.
 */
bool mg_state_resync(mg_state_t *st, const mg_strlist_t *patterns, size_t *count,
                     mg_error_t *error);

/* One index of the translation plan (strings borrowed; NULL = SQL NULL). */
typedef struct {
    const char *db, *coll, *mongo_name, *pg_name, *key_json;
    bool unique;
    const char *translation, *build_status, *sql, *note, *suggestion;
} mg_state_index_t;

bool mg_state_index_insert(mg_state_t *st, const mg_state_index_t *index, mg_error_t *error);

/* An index to build: strings malloc'd, freed by mg_state_index_jobs_free. */
typedef struct {
    char *db, *coll, *name, *sql;
} mg_state_index_job_t;

/*
 * mg_state_indexes_to_build lists the pending or failed indexes of
 * collections whose partitions are all done.
 */
bool mg_state_indexes_to_build(mg_state_t *st, mg_state_index_job_t **jobs, size_t *n,
                               mg_error_t *error);
void mg_state_index_jobs_free(mg_state_index_job_t *jobs, size_t n);

/* mg_state_index_mark records an index's build status and a note (NULL keeps the note). */
bool mg_state_index_mark(mg_state_t *st, const char *db, const char *coll, const char *name,
                         const char *status, const char *note, mg_error_t *error);

/* ------------------------------------------------------------------------
 * The copy: partitions, invalid documents, live progress
 * ------------------------------------------------------------------------ */

/* mg_state_partition_insert records partition seq of db.coll (filter as BSON bytes and JSON). */
bool mg_state_partition_insert(mg_state_t *st, const char *db, const char *coll, int seq,
                               const uint8_t *filter, size_t filter_len, const char *filter_json,
                               int64_t est_docs, mg_error_t *error);

/* mg_state_partitions_retry_failed makes failed partitions pending again. */
bool mg_state_partitions_retry_failed(mg_state_t *st, mg_error_t *error);

/* A claimed partition; db, coll and filter malloc'd, freed by mg_state_partition_cleanup. */
typedef struct {
    int64_t id;
    char *db, *coll;
    int seq;
    uint8_t *filter; /* BSON */
    size_t filter_len;
} mg_state_partition_t;

void mg_state_partition_cleanup(mg_state_partition_t *p);

/*
 * mg_state_partition_claim opens a transaction and locks the largest
 * pending partition (FOR UPDATE SKIP LOCKED): the lock lasts until the
 * caller commits the partition's rows with its done mark, or rolls back.
 * *got is false when none is free (the transaction is then closed);
 * *others_pending tells whether some are pending but locked by others.
 */
bool mg_state_partition_claim(mg_state_t *st, mg_state_partition_t *p, bool *got,
                              bool *others_pending, mg_error_t *error);

/* mg_state_partition_reclaim locks partition id again (a new transaction) if still pending. */
bool mg_state_partition_reclaim(mg_state_t *st, int64_t id, bool *got, mg_error_t *error);

/* mg_state_partition_done marks a partition done (in the copy's transaction). */
bool mg_state_partition_done(mg_state_t *st, int64_t id, int64_t docs, int64_t bytes,
                             int64_t skipped, const char *worker, mg_error_t *error);

/* mg_state_partition_failed marks a partition failed with its reason. */
bool mg_state_partition_failed(mg_state_t *st, int64_t id, const char *reason, const char *worker,
                               mg_error_t *error);

/* mg_state_partitions_count counts the partitions with status (pending, done, failed). */
bool mg_state_partitions_count(mg_state_t *st, const char *status, int64_t *n, mg_error_t *error);

/* The filters of a collection's partitions in plan order (BSON bytes, malloc'd). */
typedef struct {
    uint8_t **data;
    size_t *len;
    size_t n;
} mg_state_blobs_t;

bool mg_state_partition_filters(mg_state_t *st, const char *db, const char *coll,
                                mg_state_blobs_t *out, mg_error_t *error);
void mg_state_blobs_cleanup(mg_state_blobs_t *blobs);

/*
 * mg_state_invalid_doc_add records a document that cannot be written
 * (partition_id <= 0: found by the change stream); the last reason wins.
 */
bool mg_state_invalid_doc_add(mg_state_t *st, const char *db, const char *coll,
                              int64_t partition_id, const char *doc_id, const char *reason,
                              mg_error_t *error);

/* mg_state_progress_save records a copy process's live counters (for migrate status). */
bool mg_state_progress_save(mg_state_t *st, const char *worker, int64_t docs, int64_t bytes,
                            mg_error_t *error);
bool mg_state_progress_remove(mg_state_t *st, const char *worker, mg_error_t *error);

/* ------------------------------------------------------------------------
 * The change stream: checkpoint and changed documents
 * ------------------------------------------------------------------------ */

typedef struct {
    bool applied; /* a position was committed (cluster time known) */
    uint32_t t, i;
    double lag_s; /* now - cluster time (whole seconds of the timestamp) */
    bool fresh;   /* updated within the window asked for */
    int64_t applied_events;
    double events_per_s;
    char updated_at[32]; /* "YYYY-MM-DD HH:MM:SS" */
    bool history_lost;
    uint8_t *token; /* the resume token (BSON), malloc'd; NULL before the first apply */
    size_t token_len;
    char *token_json; /* malloc'd, NULL when none */
} mg_state_checkpoint_t;

/*
 * mg_state_checkpoint_get reads the checkpoint; fresh tells whether it was
 * updated within window_ms. mg_state_checkpoint_cleanup frees the token
 * (the numbers stay readable).
 */
bool mg_state_checkpoint_get(mg_state_t *st, int64_t window_ms, mg_state_checkpoint_t *out,
                             mg_error_t *error);
void mg_state_checkpoint_cleanup(mg_state_checkpoint_t *cp);

/* Where the stream stands after a batch. */
typedef struct {
    const uint8_t *token; /* resume token as BSON bytes */
    size_t token_len;
    const char *token_json;
    uint32_t t, i;
    int64_t wall_ms; /* 0: unknown */
    int64_t events;  /* events the batch applied */
} mg_state_position_t;

/*
 * mg_state_checkpoint_move records pos in the caller's transaction. The
 * checkpoint never moves backwards: an older position fails with
 * MG_ERROR_CODE_INVALID_ARGUMENT (domain core, "invariant violated: ...")
 * and nothing is written.
 */
bool mg_state_checkpoint_move(mg_state_t *st, const mg_state_position_t *pos, mg_error_t *error);

bool mg_state_checkpoint_set_rate(mg_state_t *st, double events_per_s, mg_error_t *error);

/* mg_state_checkpoint_history_lost records that the source lost the stream's history. */
bool mg_state_checkpoint_history_lost(mg_state_t *st, mg_error_t *error);

/* A document the stream changed (strings borrowed). */
typedef struct {
    const char *db, *coll, *doc_id;
    uint32_t t, i;
} mg_state_changed_t;

/* mg_state_changed_add appends n rows in one statement (the caller's transaction). */
bool mg_state_changed_add(mg_state_t *st, const mg_state_changed_t *rows, size_t n,
                          mg_error_t *error);

/* mg_state_doc_fn receives one (db, coll, doc_id), borrowed for the call. */
typedef bool (*mg_state_doc_fn)(void *ctx, const char *db, const char *coll, const char *doc_id,
                                mg_error_t *error);

/* mg_state_changed_list calls fn for each distinct document changed up to (t, i). */
bool mg_state_changed_list(mg_state_t *st, uint32_t t, uint32_t i, mg_state_doc_fn fn, void *ctx,
                           mg_error_t *error);

/* mg_state_changed_forget deletes db.coll's changed rows up to (t, i): a check covered them. */
bool mg_state_changed_forget(mg_state_t *st, const char *db, const char *coll, uint32_t t,
                             uint32_t i, mg_error_t *error);

/* ------------------------------------------------------------------------
 * The follower: its lease, heartbeat and lag (state_follow.c)
 * ------------------------------------------------------------------------ */

/*
 * mg_state_follower_claim makes the caller (name "host:pid") the one
 * follower: it takes the follower's session advisory lock on the handle's
 * connection (held until mg_state_follower_release or the session ends)
 * and records itself in the follower row. *claimed is false when another
 * session holds the lock; holder then describes it ("host:pid (last
 * heartbeat N s ago)").
 */
bool mg_state_follower_claim(mg_state_t *st, const char *name, const char *host, int pid,
                             bool *claimed, char *holder, size_t holdersz, mg_error_t *error);

/* What a follower reports with each heartbeat. */
typedef struct {
    double lag_s; /* seconds behind the source's latest write; < 0: not known yet */
    bool has_source_write;
    uint32_t source_write_t, source_write_i; /* the source's last write seen (hello) */
    bool has_applied;
    uint32_t applied_t, applied_i; /* the committed position */
} mg_state_beat_t;

/*
 * mg_state_follower_beat records a heartbeat of follower name (target
 * clock). *owner is false when the row names another holder (the lease
 * was taken over): the caller must stop applying.
 */
bool mg_state_follower_beat(mg_state_t *st, const char *name, const mg_state_beat_t *b, bool *owner,
                            mg_error_t *error);

/* mg_state_follower_release records that follower name stopped (reason) and drops its lock. */
bool mg_state_follower_release(mg_state_t *st, const char *name, const char *reason,
                               mg_error_t *error);

/* The follower as others see it. */
typedef struct {
    bool exists; /* a follower ever ran */
    char name[128];
    bool running; /* it did not stop cleanly */
    bool session; /* its session still holds the follower lock */
    bool fresh;   /* its last heartbeat is within the window asked for */
    bool alive;   /* running, and its session holds the lock or its heartbeat is fresh */
    double beat_age_s;
    /*
     * seconds behind the source's latest write, as of now: the follower's
     * figure at its last heartbeat plus the heartbeat's age (all on the
     * target's clock); < 0 when the follower never knew it
     */
    double lag_s;
    bool has_source_write;
    uint32_t source_write_t, source_write_i;
    bool has_applied;
    uint32_t applied_t, applied_i;
    char stop_reason[256];
    char started_at[32];
} mg_state_follower_t;

/*
 * mg_state_follower_get reads the follower row and whether its holder is
 * alive (its lock is held by a session, or it beat within window_ms).
 * Call it on a connection that is not the follower's own.
 */
bool mg_state_follower_get(mg_state_t *st, int64_t window_ms, mg_state_follower_t *out,
                           mg_error_t *error);

/* ------------------------------------------------------------------------
 * Validation runs
 * ------------------------------------------------------------------------ */

/*
 * mg_state_validation_start records a run (mode full, changed or shadow;
 * the checkpoint it covers when has_ckpt) and returns its id and start
 * time (RFC 3339, UTC, ms).
 */
bool mg_state_validation_start(mg_state_t *st, const char *mode, bool has_ckpt, uint32_t t,
                               uint32_t i, const char *options_json, int64_t *run_id,
                               char started_at[40], mg_error_t *error);

/* One collection's result (strings borrowed). */
typedef struct {
    const char *db, *coll, *status;
    int64_t source_docs, target_docs;
    uint32_t segments, segments_mismatched;
    int64_t missing, extra, different;
    double elapsed_s;
    const char *error; /* NULL unless failed */
} mg_state_validation_result_t;

bool mg_state_validation_result_add(mg_state_t *st, int64_t run_id,
                                    const mg_state_validation_result_t *r, mg_error_t *error);

/* A named difference (strings borrowed). */
typedef struct {
    const char *db, *coll, *id_json, *doc_id, *kind, *fields_json;
} mg_state_mismatch_t;

/*
 * mg_state_mismatch_record upserts a difference seen by run_id; *persisted
 * tells whether it was open before (seen by an earlier run and not
 * resolved), first_seen_at when it was first seen (RFC 3339).
 */
bool mg_state_mismatch_record(mg_state_t *st, int64_t run_id, const mg_state_mismatch_t *m,
                              bool *persisted, char first_seen_at[40], mg_error_t *error);

/*
 * mg_state_mismatches_resolve closes db.coll's open mismatches that run_id
 * covered and did not see again: all of them (doc_ids NULL), or those
 * whose doc_id is one of doc_ids (n).
 */
bool mg_state_mismatches_resolve(mg_state_t *st, int64_t run_id, const char *db, const char *coll,
                                 const char *const *doc_ids, size_t n, mg_error_t *error);

/* mg_state_mismatches_open calls fn for each open mismatch (db, coll, doc_id). */
bool mg_state_mismatches_open(mg_state_t *st, mg_state_doc_fn fn, void *ctx, mg_error_t *error);

/* One shadow-read outcome (strings borrowed; the JSON ones are JSON text). */
typedef struct {
    int seq;
    const char *name, *ns, *status, *reason, *query_json, *sql;
    int64_t mongo_count, pg_count;
    const char *diff_ids_json;
    double mongo_p50_ms, mongo_p95_ms, pg_p50_ms, pg_p95_ms;
} mg_state_shadow_t;

bool mg_state_validation_shadow_add(mg_state_t *st, int64_t run_id, const mg_state_shadow_t *s,
                                    mg_error_t *error);

/* mg_state_validation_finish closes a run; finished_at receives its end (RFC 3339). */
bool mg_state_validation_finish(mg_state_t *st, int64_t run_id, const char *status,
                                int64_t documents, int64_t mismatches, int64_t persistent,
                                char finished_at[40], mg_error_t *error);

/* mg_state_validation_fail marks a run failed with why (best effort for the caller). */
bool mg_state_validation_fail(mg_state_t *st, int64_t run_id, const char *why, mg_error_t *error);

/* mg_state_validation_recent_clean tells whether a full or changed run ended clean within age_ms.
 */
bool mg_state_validation_recent_clean(mg_state_t *st, int64_t age_ms, bool *found,
                                      mg_error_t *error);

/* ------------------------------------------------------------------------
 * The cutover row (one), its owner, and the follower's fence
 * ------------------------------------------------------------------------ */

typedef struct {
    bool exists;
    char step[32];
    char outcome[16]; /* running, done, aborted */
    char freeze_mode[4096];
    bool has_fence;
    uint32_t fence_t, fence_i;
    char endpoint[4096];        /* as recorded: without its password */
    char endpoint_secret[1024]; /* where the endpoint's password came from ("" none) */
} mg_state_cutover_t;

bool mg_state_cutover_get(mg_state_t *st, mg_state_cutover_t *out, mg_error_t *error);

/*
 * Who owns the cutover (`cutover_owner`, one row). A cutover takes it
 * before it reads or writes the cutover row and renews it (a new random
 * `renewal`) every ttl/3; another run refuses while it sees the renewal
 * change and takes over only after watching it unchanged for longer than
 * the ttl on its own clock, by compare-and-set on (token, renewal). The
 * owner stops acting once its own clock says the ttl passed since its last
 * acknowledged renewal began, so the two never act together; nothing
 * depends on the hosts' clocks agreeing, or on a session surviving a
 * failover.
 */
typedef struct {
    bool held;           /* someone owns it (token set) */
    char owner[256];     /* "host:pid" of the owner */
    char token[64];      /* the owner's random token */
    char renewal[64];    /* changes with every renewal */
    int64_t ttl_ms;      /* the owner's lease */
    char renewed_at[40]; /* RFC 3339, by the target's clock (for people) */
    int takeovers;
} mg_state_cutover_owner_t;

bool mg_state_cutover_owner_get(mg_state_t *st, mg_state_cutover_owner_t *out, mg_error_t *error);

/* A claim (strings borrowed): take it when the row still shows expect_token and
 * expect_renewal (expect_token NULL: nobody owns it). */
typedef struct {
    const char *owner, *token, *renewal;
    int64_t ttl_ms;
    const char *expect_token, *expect_renewal;
} mg_state_cutover_claim_t;

/*
 * mg_state_cutover_owner_take takes the ownership by compare-and-set;
 * *taken false when the row changed (someone else took it, or its owner
 * renewed). Once taken, the handle writes the cutover row with the token:
 * every write below fails with MG_STATE_ERR_BUSY when the handle does not
 * own the cutover (any more).
 */
bool mg_state_cutover_owner_take(mg_state_t *st, const mg_state_cutover_claim_t *claim, bool *taken,
                                 mg_error_t *error);

/* mg_state_cutover_owner_renew sets a new renewal if token still owns it; *held says so. */
bool mg_state_cutover_owner_renew(mg_state_t *st, const char *token, const char *renewal,
                                  bool *held, mg_error_t *error);

/* mg_state_cutover_owner_release gives up the handle's ownership (if it has it). */
bool mg_state_cutover_owner_release(mg_state_t *st, mg_error_t *error);

/*
 * What the change-stream follower reads in every batch, inside its apply
 * transaction: fenced is true once a cutover's flip has started (step flip
 * or done, outcome running) or the cutover is done; from then on the
 * application may write to PostgreSQL, and the follower must apply nothing
 * more (every change up to the fence (t, i) was drained before). The
 * cutover row is read FOR SHARE, so the cutover's record of the flip waits
 * for a batch in flight to commit, and a batch that starts after it sees
 * it: no batch commits after the flip started. A cutover that aborts
 * before anything was flipped clears it (outcome aborted).
 */
typedef struct {
    bool fenced;
    bool has_fence; /* (t, i) is the fence: the freeze's operationTime */
    uint32_t t, i;
    char step[32];    /* "" without a cutover */
    char outcome[16]; /* running, done, aborted; "" without a cutover */
} mg_state_cutover_fence_t;

bool mg_state_cutover_fence_get(mg_state_t *st, mg_state_cutover_fence_t *out, mg_error_t *error);

/*
 * mg_state_cutover_start records a new attempt at step preflight (attempt
 * + 1 on a re-run). endpoint is recorded without its password, and
 * endpoint_secret says where the password came from (NULL: none), so a
 * resumed cutover can name where to find it again.
 */
bool mg_state_cutover_start(mg_state_t *st, const char *freeze_mode, const char *verify_mode,
                            const char *endpoint, const char *endpoint_secret, mg_error_t *error);

/* mg_state_cutover_step records that step started. */
bool mg_state_cutover_step(mg_state_t *st, const char *step, mg_error_t *error);

/* mg_state_cutover_step_done records how long step took, in the row and as an event. */
bool mg_state_cutover_step_done(mg_state_t *st, const char *step, double seconds,
                                mg_error_t *error);

/* mg_state_cutover_resumed notes in the steps that a crashed cutover resumed. */
bool mg_state_cutover_resumed(mg_state_t *st, mg_error_t *error);

/* mg_state_cutover_frozen records when the source was first frozen. */
bool mg_state_cutover_frozen(mg_state_t *st, mg_error_t *error);

bool mg_state_cutover_fence(mg_state_t *st, uint32_t t, uint32_t i, mg_error_t *error);

/* mg_state_cutover_flipped records the flip and the write-unavailability window. */
bool mg_state_cutover_flipped(mg_state_t *st, mg_error_t *error);

bool mg_state_cutover_done(mg_state_t *st, mg_error_t *error);

/* mg_state_cutover_aborted records the abort, its reason and an event. */
bool mg_state_cutover_aborted(mg_state_t *st, const char *reason, mg_error_t *error);

/* The cutover's outcome for the report; free with mg_state_cutover_report_cleanup. */
typedef struct {
    bool exists;
    char outcome[16];
    char *reason;   /* NULL: none */
    char *endpoint; /* as recorded (without its password) */
    bool has_unavailable;
    double unavailable_s;
    size_t nsteps;
    struct {
        char name[32];
        double seconds;
    } steps[16]; /* finished steps in the order they finished */
    char *json;  /* the whole row as one JSON object (endpoint without its password) */
} mg_state_cutover_report_t;

bool mg_state_cutover_report(mg_state_t *st, mg_state_cutover_report_t *out, mg_error_t *error);
void mg_state_cutover_report_cleanup(mg_state_cutover_report_t *r);

/* ------------------------------------------------------------------------
 * What migrate status shows besides the above
 * ------------------------------------------------------------------------ */

/* One row of a status list; strings malloc'd (freed by mg_state_rows_cleanup). */
typedef struct {
    char *a, *b, *c; /* workers: name; failed partitions: ns, -, error; invalid: ns, _id, reason */
    int64_t n1, n2, n3; /* workers: docs, bytes, age_s; failed partitions: seq */
} mg_state_row_t;

typedef struct {
    mg_state_row_t *items;
    size_t n;
    int64_t total; /* how many there are in all (the lists that say so) */
} mg_state_rows_t;

/* mg_state_live_workers lists copy processes that reported within a minute. */
bool mg_state_live_workers(mg_state_t *st, mg_state_rows_t *out, mg_error_t *error);

/* mg_state_failed_partitions lists up to limit failed partitions (ns, seq, error). */
bool mg_state_failed_partitions(mg_state_t *st, int limit, mg_state_rows_t *out, mg_error_t *error);

/* mg_state_invalid_docs lists up to limit invalid documents (ns, _id, reason) and the total. */
bool mg_state_invalid_docs(mg_state_t *st, int limit, mg_state_rows_t *out, mg_error_t *error);

void mg_state_rows_cleanup(mg_state_rows_t *rows);

/* ------------------------------------------------------------------------
 * What fences the follower after a cutover (state_fence.c)
 * ------------------------------------------------------------------------ */

typedef struct {
    bool owner;   /* the follower asked about holds the lease (true when none was named) */
    bool flipped; /* a cutover reached its flip (running at flip, or done): apply nothing */
    bool has_fence;
    uint32_t fence_t, fence_i; /* the cutover's fence T */
    char flipped_at[32];       /* "YYYY-MM-DD HH:MM:SS" (UTC) */
} mg_state_fence_t;

/*
 * mg_state_follow_fence reads the cutover's state FOR SHARE (in the
 * caller's transaction: the cutover's move to the flip waits for it) and,
 * when follower is not NULL, whether that follower still holds the lease.
 */
bool mg_state_follow_fence(mg_state_t *st, const char *follower, mg_state_fence_t *out,
                           mg_error_t *error);

/* A source write seen after the cutover (strings borrowed). */
typedef struct {
    const char *db, *coll, *doc_id, *op;
    uint32_t t, i;
} mg_state_after_cutover_t;

/* mg_state_after_cutover_add records a write seen after the cutover (never applied). */
bool mg_state_after_cutover_add(mg_state_t *st, const mg_state_after_cutover_t *w,
                                mg_error_t *error);

/*
 * mg_state_after_cutover_list lists up to limit writes seen after the
 * cutover (a: ns, b: _id, c: operation, n1/n2: cluster time) and the total.
 */
bool mg_state_after_cutover_list(mg_state_t *st, int limit, mg_state_rows_t *out,
                                 mg_error_t *error);

/* ------------------------------------------------------------------------
 * What the cutover's preflight refuses (each lists up to limit rows and
 * sets total to how many there are)
 * ------------------------------------------------------------------------ */

/*
 * mg_state_collections_incomplete lists the collections that are not fully
 * copied: status planned or copying (an interrupted copy or --resync), or
 * a partition that is not done (a, b: ns, why). Failed ones are not listed
 * (mg_state_collection_first_failed names them).
 */
bool mg_state_collections_incomplete(mg_state_t *st, int limit, mg_state_rows_t *out,
                                     mg_error_t *error);

/* mg_state_indexes_unbuilt lists planned indexes neither built nor skipped ("ns index name",
 * status and note). */
bool mg_state_indexes_unbuilt(mg_state_t *st, int limit, mg_state_rows_t *out, mg_error_t *error);

/*
 * mg_state_invalid_namespaces lists every collection with documents in
 * invalid_docs (ns, "N, first _id X", n1: N); total: all documents.
 */
bool mg_state_invalid_namespaces(mg_state_t *st, mg_state_rows_t *out, mg_error_t *error);

/*
 * mg_state_collections_unvalidated lists the collections that no clean full
 * validation covered since their copy finished: no validation run of mode
 * full that started after the collection's copied_at and found it clean
 * (ns, copied_at). A --changed run is never proof of the whole collection.
 */
bool mg_state_collections_unvalidated(mg_state_t *st, int limit, mg_state_rows_t *out,
                                      mg_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MG_STATE_H */
