/*
 * cdc/include/mg/cdc.h - change data capture: decoding change events,
 * batching and coalescing them per (collection, _id), applying a batch to
 * PostgreSQL in one transaction together with the checkpoint, and the
 * follower that reads the change stream (resume, reconnect, DDL-event
 * policies) and drives all of it (DESIGN §6, docs/cdc.md).
 */
#ifndef MG_CDC_H
#define MG_CDC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>
#include <stdatomic.h>

#include "mg/core.h"
#include "mg/schema.h"
#include "mg/state.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pg_conn;

typedef enum {
    MG_CDC_OP_INSERT = 0,
    MG_CDC_OP_UPDATE,
    MG_CDC_OP_REPLACE,
    MG_CDC_OP_DELETE,
    MG_CDC_OP_DROP,
    MG_CDC_OP_RENAME,
    MG_CDC_OP_DROP_DATABASE,
    MG_CDC_OP_INVALIDATE,
    MG_CDC_OP_OTHER, /* createIndexes, create, modify, ... (showExpandedEvents) */
} mg_cdc_op_t;

#define MG_CDC_NAME_MAX 256

/*
 * mg_cdc_event_t - one decoded change event. Pointers borrow from the raw
 * event document given to mg_cdc_event_decode and live as long as it does.
 */
typedef struct {
    mg_cdc_op_t op;
    const char *op_name;
    char db[MG_CDC_NAME_MAX];
    char coll[MG_CDC_NAME_MAX]; /* "" for dropDatabase and invalidate */
    char to_db[MG_CDC_NAME_MAX];
    char to_coll[MG_CDC_NAME_MAX]; /* rename target */
    bool has_id;
    bson_iter_t id;         /* documentKey._id, valid when has_id */
    bool has_full_document; /* false when absent or null */
    bson_t full_document;   /* static view into the raw event */
    uint32_t ct_t, ct_i;    /* clusterTime */
    int64_t wall_ms;        /* wallTime, 0 when absent */
    bool in_txn;            /* lsid + txnNumber present */
    uint8_t lsid_hash[8];   /* identifies the session of a transaction */
    int64_t txn_number;
    uint32_t size; /* bytes of the raw event */
} mg_cdc_event_t;

/*
 * mg_cdc_event_decode decodes raw (borrowed). Fails with MG_ERROR_CODE_PARSE,
 * naming the field, on an event that lacks what its operationType needs.
 */
bool mg_cdc_event_decode(const bson_t *raw, mg_cdc_event_t *event, mg_error_t *error);

/* Flags of mg_cdc_event_decode_ex. */
#define MG_CDC_DECODE_NO_DOCUMENT 1u /* the stream projected fullDocument out: not required */

/*
 * mg_cdc_event_decode_ex is mg_cdc_event_decode with flags: with
 * MG_CDC_DECODE_NO_DOCUMENT an insert or replace without fullDocument is
 * accepted (has_full_document false): the caller reads the document by
 * _id (the route for an event too large with its document, docs/cdc.md).
 */
bool mg_cdc_event_decode_ex(const bson_t *raw, unsigned flags, mg_cdc_event_t *event,
                            mg_error_t *error);

/* mg_cdc_op_name returns the operationType string of op. */
const char *mg_cdc_op_name(mg_cdc_op_t op);

/*
 * mg_cdc_token_time reads the cluster time encoded in a resume token
 * ({_data: "82" + 16 hex digits of the timestamp, ...}, the format of
 * MongoDB 4.2+ and of mongosim). Returns false for another format.
 */
bool mg_cdc_token_time(const bson_t *token, uint32_t *t, uint32_t *i);

/* mg_cdc_same_txn tells whether two events belong to one source transaction. */
bool mg_cdc_same_txn(const mg_cdc_event_t *a, const mg_cdc_event_t *b);

/* ------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------ */

/* One target table of the stream (strings borrowed; must outlive the batch). */
typedef struct {
    const char *db;
    const char *coll;
    const char *schema;
    const char *table;
    mg_schema_key_type_t key;
} mg_cdc_table_t;

typedef struct mg_cdc_batch mg_cdc_batch_t;

/*
 * mg_cdc_batch_new creates an empty batch over tables (borrowed, ntables).
 * It is "full" (time to apply) at soft_entries distinct documents or
 * soft_bytes of rendered JSON; the hard caps max_entries / max_bytes bound
 * it while a source transaction, which is never split, is still open.
 * Destroy with mg_cdc_batch_destroy (NULL allowed).
 */
mg_cdc_batch_t *mg_cdc_batch_new(const mg_cdc_table_t *tables, size_t ntables,
                                 mg_schema_fidelity_t fidelity, size_t soft_entries,
                                 size_t soft_bytes, size_t max_entries, size_t max_bytes);
void mg_cdc_batch_destroy(mg_cdc_batch_t *batch);

/* mg_cdc_batch_reset empties the batch (keeps its memory). */
void mg_cdc_batch_reset(mg_cdc_batch_t *batch);

/*
 * mg_cdc_batch_upsert records that document doc (borrowed; its _id is read
 * from it) of table index `table` must be in the target as doc; a later
 * upsert or delete of the same _id replaces this one (last state wins).
 * Fails when the _id does not fit the key type or the document cannot be
 * rendered (error names the _id): the caller decides (stop the collection,
 * or --skip-invalid).
 */
bool mg_cdc_batch_upsert(mg_cdc_batch_t *batch, size_t table, const bson_t *doc, uint32_t ct_t,
                         uint32_t ct_i, mg_error_t *error);

/* mg_cdc_batch_delete records that the document with _id id must be absent. */
bool mg_cdc_batch_delete(mg_cdc_batch_t *batch, size_t table, const bson_iter_t *id, uint32_t ct_t,
                         uint32_t ct_i, mg_error_t *error);

/* Counters of a batch. */
typedef struct {
    size_t events;  /* events added */
    size_t entries; /* distinct documents after coalescing */
    size_t upserts;
    size_t deletes;
    size_t bytes; /* rendered JSON */
} mg_cdc_batch_stats_t;

void mg_cdc_batch_stats(const mg_cdc_batch_t *batch, mg_cdc_batch_stats_t *stats);

/*
 * mg_cdc_batch_full tells whether the batch reached a soft cap: time to
 * apply, unless a source transaction is still open (it may use the rest).
 */
bool mg_cdc_batch_full(const mg_cdc_batch_t *batch);

/* Where the stream stands after a batch: its resume token and cluster time. */
typedef struct {
    const bson_t *token; /* borrowed */
    uint32_t ct_t, ct_i;
    int64_t wall_ms; /* 0 when unknown */
} mg_cdc_position_t;

/* What an apply is fenced by (docs/cdc.md, "After the cutover"). */
typedef struct {
    const char *follower; /* the lease holder applying (host:pid) */
    bool fenced;          /* out: a cutover flipped: nothing was applied, apply nothing more */
    bool lost;            /* out: another follower holds the lease: nothing was applied */
} mg_cdc_guard_t;

/*
 * mg_cdc_batch_apply writes the batch in ONE transaction on the state
 * handle's connection: first the guard (when not NULL) — the cutover's
 * state read FOR SHARE and the lease — then deletes, multi-row upserts
 * (INSERT ... ON CONFLICT (_id) DO UPDATE), the changed_docs rows, and the
 * checkpoint moved to pos. A flipped cutover or a lost lease fails with
 * domain state (MG_STATE_ERR_REFUSED, MG_STATE_ERR_BUSY) and guard->fenced
 * or guard->lost set. The checkpoint never moves backwards: a position
 * older than the recorded one fails with MG_ERROR_CODE_INVALID_ARGUMENT (an
 * invariant, checked always). On any failure nothing is written; on
 * success the batch is reset.
 */
bool mg_cdc_batch_apply(mg_cdc_batch_t *batch, mg_state_t *state, const mg_cdc_position_t *pos,
                        mg_cdc_guard_t *guard, mg_error_t *error);

/* ------------------------------------------------------------------------
 * The follower: the change stream applied to the target (cdc_follow.c)
 * ------------------------------------------------------------------------ */

typedef enum {
    MG_CDC_DROP_STOP = 0, /* stop that collection with an error (default) */
    MG_CDC_DROP_TRUNCATE, /* empty the table and keep following */
    MG_CDC_DROP_KEEP,     /* keep the table as it was and keep following */
} mg_cdc_drop_policy_t;

typedef enum {
    MG_CDC_RENAME_STOP = 0, /* stop that collection with an error (default) */
    MG_CDC_RENAME_FOLLOW,   /* the table now mirrors the new name */
} mg_cdc_rename_policy_t;

typedef struct {
    const char *source_uri;
    const char *target;
    const char *state_schema;
    bool follow; /* run until stopped; else until lag <= max_lag */
    int64_t max_lag_ms;
    int64_t batch_events; /* distinct documents per batch (soft) */
    int64_t batch_bytes;  /* rendered JSON per batch (soft) */
    int64_t batch_delay_ms;
    mg_cdc_drop_policy_t on_drop;
    mg_cdc_rename_policy_t on_rename;
    bool skip_invalid;
    int64_t metrics_port; /* 0 = none */
    atomic_int *stop;     /* 1: finish the batch and stop */
} mg_cdc_follow_settings_t;

typedef struct mg_cdc_follow mg_cdc_follow_t;

/*
 * mg_cdc_follow_new prepares a follower (settings borrowed: they must
 * outlive it): two target connections (the reader's, the applier's), the
 * state (collections, T0, fidelity, committed checkpoint) and a source
 * client. Returns NULL with error set when any of it fails. Destroy with
 * mg_cdc_follow_destroy (NULL ok).
 */
mg_cdc_follow_t *mg_cdc_follow_new(const mg_cdc_follow_settings_t *settings, mg_error_t *error);

/*
 * mg_cdc_follow_run applies the change stream from T0 or the checkpoint
 * (docs/cdc.md): until the lag is under max_lag_ms, or with follow until
 * *stop > 0 (the batch in hand is committed first). A lost target is
 * reconnected (mg_pg_reconnect) and the stream resumes from the committed
 * checkpoint; retryable source errors resume from the last event read.
 * Returns an exit code; error is set when it is not 0 (MG_EXIT_SOURCE with
 * a ChangeStreamHistoryLost that names the collections to re-sync). Run it
 * once per follower.
 */
int mg_cdc_follow_run(mg_cdc_follow_t *follower, mg_error_t *error);

/* What a follower did so far (safe to read from another thread). */
typedef struct {
    int64_t applied_events;
    double events_per_s; /* smoothed */
    double lag_s;        /* seconds behind the source's latest write; < 0: not known yet */
} mg_cdc_follow_stats_t;

void mg_cdc_follow_stats(mg_cdc_follow_t *follower, mg_cdc_follow_stats_t *stats);

void mg_cdc_follow_destroy(mg_cdc_follow_t *follower);

/* ------------------------------------------------------------------------
 * Lag and the follower's liveness, for the cutover (cdc_lag.c)
 * ------------------------------------------------------------------------ */

typedef struct {
    bool follower_alive; /* a follower holds the lease (docs/cdc.md, "Who applies") */
    char follower[128];  /* its host:pid, "" when none ever ran */
    bool applied;        /* a position was ever committed */
    bool caught_up;      /* the committed position is at or past the source's last write */
    double lag_s;        /* seconds behind the source's latest write; < 0: not known */
    uint32_t last_write_t, last_write_i; /* the source's last write (hello) */
    uint32_t applied_t, applied_i;       /* the committed position */
} mg_cdc_lag_t;

/*
 * mg_cdc_lag_measure reads the source's last write, then the committed
 * checkpoint and the follower's heartbeat: lag 0 when the checkpoint is at
 * or past that write (the stream has seen everything), else the
 * follower's last figure aged by its heartbeat's age (target clock); a
 * follower is alive while its session holds the lease, or its heartbeat is
 * within window_ms. No host's wall clock is compared with another's.
 */
bool mg_cdc_lag_measure(mg_mongo_t *src, mg_state_t *st, int64_t window_ms, mg_cdc_lag_t *out,
                        mg_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MG_CDC_H */
