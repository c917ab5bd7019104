/*
 * state/include/mg/state_fallback.h - the state of the way back
 * (docs/state-schema.md, docs/cutover.md "Fallback"): the reverse
 * capture (the logical replication slot and publication the cutover
 * prepares, and the position the reverse sync reached), the fallback row and its
 * lock, and what the catalog says about the slot.
 *
 * Part of the state module (state/): the same handle, the same rule (every
 * statement one constant text, "@" the quoted state schema, values bound).
 * Kept in its own header while the cutover and follower work on state.h
 * lands; it belongs in mg/state.h.
 *
 * The tables are created on first use (mg_state_reverse_ensure, CREATE
 * TABLE IF NOT EXISTS): they are additive to layout version 1, which an
 * older binary reads without knowing them.
 */
#ifndef MG_STATE_FALLBACK_H
#define MG_STATE_FALLBACK_H

#include "mg/state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* mg_state_reverse_ensure creates the reverse capture's and the fallback's tables if missing. */
bool mg_state_reverse_ensure(mg_state_t *st, mg_error_t *error);

/* ------------------------------------------------------------------------
 * The reverse capture (one row)
 * ------------------------------------------------------------------------ */

typedef struct {
    bool exists;
    char slot[64];        /* the logical replication slot */
    char publication[64]; /* the publication over the migrated tables */
    int32_t generation;   /* 1 for the cutover's slot, + 1 each time it is made again */
    uint64_t start_lsn;   /* the slot's consistent point: changes committed after it are sent */
    uint32_t timeline;    /* the timeline of the node it was made on */
    char system_id[32];   /* that cluster's system identifier */
    char status[16];      /* ready, repairing, dropped */
    int32_t repairs;
    bool has_applied;     /* the reverse sync reported a position */
    uint64_t applied_lsn; /* what it last reported (MongoDB holds the truth) */
    double applied_age_s; /* since it reported */
    int64_t applied_txns, applied_changes;
    double events_per_s;
    char created_at[32];
    double lag_s; /* since the reverse sync last had applied everything sent; < 0: never */
} mg_state_reverse_t;

bool mg_state_reverse_get(mg_state_t *st, mg_state_reverse_t *out, mg_error_t *error);

/*
 * mg_state_reverse_created records a new slot (the cutover's, or one made
 * again after a loss): the first row has generation 1, a later one the
 * next generation, status ready, no applied position.
 */
bool mg_state_reverse_created(mg_state_t *st, const char *slot, const char *publication,
                              uint64_t start_lsn, uint32_t timeline, const char *system_id,
                              int32_t *generation, mg_error_t *error);

/* mg_state_reverse_set_status records ready, repairing (why in note) or dropped. */
bool mg_state_reverse_set_status(mg_state_t *st, const char *status, const char *note,
                                 mg_error_t *error);

/*
 * mg_state_reverse_applied mirrors the position the reverse sync committed
 * in MongoDB (for migrate status and the fallback), in generation only,
 * never backwards; caught_up: it had applied everything the slot sent
 * (the reverse lag is measured from the last time it was).
 */
bool mg_state_reverse_applied(mg_state_t *st, int32_t generation, uint64_t lsn, int64_t txns,
                              int64_t changes, double events_per_s, bool caught_up,
                              mg_error_t *error);

/* mg_state_reverse_forget deletes the row (the slot and publication were dropped). */
bool mg_state_reverse_forget(mg_state_t *st, mg_error_t *error);

/* ------------------------------------------------------------------------
 * The slot as the catalog sees it (pg_replication_slots)
 * ------------------------------------------------------------------------ */

typedef struct {
    bool exists;
    bool logical; /* a logical slot of plugin pgoutput */
    char database[64];
    bool active; /* a walsender streams from it */
    int32_t active_pid;
    uint64_t restart_lsn;   /* the oldest WAL it keeps */
    uint64_t confirmed_lsn; /* what its consumer confirmed */
    uint64_t current_lsn;   /* pg_current_wal_lsn() */
    int64_t retained_bytes; /* current - restart: the WAL it holds back */
    char wal_status[16];    /* reserved, extended, unreserved, lost ("" when unknown) */
    bool has_safe_wal_size;
    int64_t safe_wal_size;  /* bytes that may still be written before it is lost */
    int64_t max_keep_bytes; /* max_slot_wal_keep_size in bytes; -1: unbounded */
    char wal_level[16];
} mg_state_slot_t;

/* mg_state_slot_get reads slot's row of pg_replication_slots and the settings around it. */
bool mg_state_slot_get(mg_state_t *st, const char *slot, mg_state_slot_t *out, mg_error_t *error);

/* ------------------------------------------------------------------------
 * The fallback row (one) and its lock
 * ------------------------------------------------------------------------ */

typedef struct {
    bool exists;
    char step[32];
    char outcome[16]; /* running, done, aborted */
    char freeze_mode[4096];
    bool has_fence;
    uint64_t fence_lsn;
    int32_t fence_generation;
    bool revoked_recorded; /* the grants taken by the freeze are recorded */
} mg_state_fallback_t;

bool mg_state_fallback_get(mg_state_t *st, mg_state_fallback_t *out, mg_error_t *error);

/* mg_state_fallback_lock takes the fallback's session advisory lock (*locked false: busy). */
bool mg_state_fallback_lock(mg_state_t *st, bool *locked, mg_error_t *error);

/* mg_state_fallback_start records a new attempt at step preflight. */
bool mg_state_fallback_start(mg_state_t *st, const char *freeze_mode, const mg_strlist_t *roles,
                             const char *verify_mode, const char *endpoint, mg_error_t *error);

bool mg_state_fallback_step(mg_state_t *st, const char *step, mg_error_t *error);
bool mg_state_fallback_step_done(mg_state_t *st, const char *step, double seconds,
                                 mg_error_t *error);
bool mg_state_fallback_resumed(mg_state_t *st, mg_error_t *error);
bool mg_state_fallback_frozen(mg_state_t *st, mg_error_t *error);

/*
 * mg_state_fallback_fence records the fence F = pg_current_wal_lsn() (with
 * the capture's generation) in a transaction committed with
 * synchronous_commit on, so the WAL up to F is flushed and a walsender
 * can send it; *lsn receives F.
 */
bool mg_state_fallback_fence(mg_state_t *st, int32_t generation, uint64_t *lsn, mg_error_t *error);

bool mg_state_fallback_unfrozen_source(mg_state_t *st, mg_error_t *error);
bool mg_state_fallback_flipped(mg_state_t *st, mg_error_t *error);
bool mg_state_fallback_done(mg_state_t *st, mg_error_t *error);
bool mg_state_fallback_aborted(mg_state_t *st, const char *reason, mg_error_t *error);

/*
 * mg_state_fallback_grants_record records, once per attempt, the write
 * privileges (INSERT, UPDATE, DELETE, TRUNCATE) roles hold directly on the
 * migrated tables: what the freeze revokes and its undo grants back. A
 * record already there is kept (a resumed freeze must not record the
 * already-revoked state).
 */
bool mg_state_fallback_grants_record(mg_state_t *st, const mg_strlist_t *roles, mg_error_t *error);

/* One recorded grant (borrowed for the call). */
typedef bool (*mg_state_grant_fn)(void *ctx, const char *schema, const char *table,
                                  const char *role, const char *privilege, bool grantable,
                                  mg_error_t *error);

/* mg_state_fallback_grants_each calls fn for each recorded grant. */
bool mg_state_fallback_grants_each(mg_state_t *st, mg_state_grant_fn fn, void *ctx,
                                   mg_error_t *error);

/*
 * mg_state_fallback_writers calls fn(ctx, role, schema.table, -) for each
 * role of roles that may still write a migrated table (has_table_privilege:
 * a superuser, the owner, a member of a role that may, PUBLIC).
 */
bool mg_state_fallback_writers(mg_state_t *st, const mg_strlist_t *roles, mg_state_doc_fn fn,
                               void *ctx, mg_error_t *error);

/* The fallback's outcome for the report (free with mg_state_cutover_report_cleanup). */
bool mg_state_fallback_report(mg_state_t *st, mg_state_cutover_report_t *out, mg_error_t *error);

/*
 * mg_state_cutover_flipped_at reads when the cutover flipped the endpoint
 * (*flipped false when it has not), as PostgreSQL prints a timestamptz.
 */
bool mg_state_cutover_flipped_at(mg_state_t *st, bool *flipped, char at[40], mg_error_t *error);

/*
 * mg_state_validation_clean_since tells whether a full validation run
 * started at or after since (a timestamptz text) ended clean within age_ms
 * (0: any age); started_at receives the newest such run's start.
 */
bool mg_state_validation_clean_since(mg_state_t *st, const char *since, int64_t age_ms, bool *found,
                                     char started_at[40], mg_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MG_STATE_FALLBACK_H */
