/*
 * cdc/include/mg/cdc_reverse.h - the way back: PostgreSQL's changes to the
 * migrated tables, decoded from a logical replication slot (pgoutput over
 * libpq's replication protocol), mapped back to BSON with the schema's
 * lossless reverse mapping and written to MongoDB, each PostgreSQL
 * transaction as one MongoDB transaction together with its position
 * (docs/cdc.md "The way back", docs/cutover.md "Fallback").
 *
 * Part of the cdc module; kept in its own header while the forward
 * follower's work on mg/cdc.h lands (it belongs there).
 *
 * The capture: a publication over the migrated tables and a logical slot,
 * both named mg_cdc_reverse_name(state schema), made by the cutover while
 * the source is frozen and before the endpoint flips (so no write the
 * application makes on PostgreSQL precedes the slot), recorded in the
 * state's `reverse` row with a generation (1, and + 1 each time the slot is
 * made again after a loss).
 *
 * The position: in MongoDB, database MG_CDC_REVERSE_DB, collection
 * MG_CDC_REVERSE_COLL, one document per state schema ({_id: <state
 * schema>, generation, lsn, part_lsn, part_done, ...}), written in the same
 * MongoDB transaction as the changes it covers: after kill -9 the stream
 * restarts from it and applies nothing twice. The slot is told (flush LSN)
 * only after the MongoDB commit.
 */
#ifndef MG_CDC_REVERSE_H
#define MG_CDC_REVERSE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mg/cdc.h"

#ifdef __cplusplus
extern "C" {
#endif

struct pg_conn;
struct _mongoc_client_t;

/* Where the reverse sync keeps its position in MongoDB. */
#define MG_CDC_REVERSE_DB   "_migrate"
#define MG_CDC_REVERSE_COLL "reverse_position"

/* Longest slot and publication name (PostgreSQL's NAMEDATALEN - 1). */
#define MG_CDC_REVERSE_NAME_SIZE 64

/*
 * mg_cdc_reverse_name writes the name of the slot and the publication of
 * state schema (any name) into out: "migrate_reverse_" + 16 hex digits of
 * a hash of it ([a-z0-9_], as slot names must be).
 */
void mg_cdc_reverse_name(const char *state_schema, char out[MG_CDC_REVERSE_NAME_SIZE]);

/* What making a slot returned. */
typedef struct {
    uint64_t consistent_lsn; /* changes committed after it are decoded */
    uint32_t timeline;
    char system_id[32];
} mg_cdc_slot_made_t;

/*
 * mg_cdc_reverse_capture_create makes the capture: the tables (n, borrowed)
 * of canonical key type get REPLICA IDENTITY FULL (a delete must carry the
 * document: a digest key does not give its _id back), the publication
 * `name` over the tables, and the logical slot `name` (pgoutput) through a
 * replication connection to target (IDENTIFY_SYSTEM, then
 * CREATE_REPLICATION_SLOT, waiting at most timeout_s for the transactions
 * running on the target to end). An earlier slot or publication of that
 * name is dropped first. conn is a plain connection to the target.
 */
bool mg_cdc_reverse_capture_create(struct pg_conn *conn, const char *target, const char *name,
                                   const mg_cdc_table_t *tables, size_t n, double timeout_s,
                                   mg_cdc_slot_made_t *out, mg_error_t *error);

/*
 * mg_cdc_reverse_slot_make makes the slot alone again (after a loss),
 * dropping a leftover of that name first.
 */
bool mg_cdc_reverse_slot_make(struct pg_conn *conn, const char *target, const char *name,
                              double timeout_s, mg_cdc_slot_made_t *out, mg_error_t *error);

/*
 * mg_cdc_reverse_capture_drop drops the slot (ending the walsender that
 * streams from it, if any) and the publication `name`, and gives the
 * canonical tables of tables (n, may be 0) their default replica identity
 * back. Missing ones are fine.
 */
bool mg_cdc_reverse_capture_drop(struct pg_conn *conn, const char *name,
                                 const mg_cdc_table_t *tables, size_t n, mg_error_t *error);

/* The reverse sync's position as MongoDB holds it. */
typedef struct {
    bool exists;
    int32_t generation;
    uint64_t lsn;      /* every transaction that committed before it is applied */
    uint64_t part_lsn; /* a split transaction in progress: its end LSN (0: none) */
    int64_t part_done; /* its changes already applied */
    int64_t txns, changes;
} mg_cdc_reverse_pos_t;

/* mg_cdc_reverse_position_get reads the position of state_schema from MongoDB. */
bool mg_cdc_reverse_position_get(struct _mongoc_client_t *client, const char *state_schema,
                                 mg_cdc_reverse_pos_t *out, mg_error_t *error);

typedef struct {
    const char *source_uri; /* MongoDB: a user holding bypassWriteBlockingMode */
    const char *target;     /* PostgreSQL (HAProxy's write address) */
    const char *state_schema;
    bool follow;              /* run until stopped; else until caught up */
    uint64_t until_lsn;       /* > 0: stop once the position reaches it (fallback drain) */
    int32_t until_generation; /* ... in this generation (another one fails) */
    int64_t batch_changes;    /* changes per MongoDB transaction (PostgreSQL txns grouped) */
    int64_t batch_bytes;      /* BSON bytes per MongoDB transaction */
    int64_t batch_delay_ms;   /* longest wait before a group is applied */
    bool skip_invalid;        /* a row with no BSON form: record it, go on */
    bool no_repair;           /* a lost slot stops the sync instead of being repaired */
    atomic_int *stop;         /* > 0: commit what is in hand and stop */
} mg_cdc_reverse_settings_t;

typedef struct mg_cdc_reverse mg_cdc_reverse_t;

/*
 * mg_cdc_reverse_new prepares a reverse sync (settings borrowed): the
 * state (collections, fidelity, the capture row), a MongoDB client.
 * Refuses (domain state) without a capture (cutover --no-fallback, or a
 * dropped one) or before the cutover flipped. Destroy with
 * mg_cdc_reverse_destroy (NULL ok).
 */
mg_cdc_reverse_t *mg_cdc_reverse_new(const mg_cdc_reverse_settings_t *settings, mg_error_t *error);

/*
 * mg_cdc_reverse_run streams from the slot and applies to MongoDB until
 * stopped, caught up (without follow) or past until_lsn. A lost target is
 * reconnected through HAProxy and the stream resumes from MongoDB's
 * position; a lost slot (missing, lost WAL, a new timeline, or a confirmed
 * position past MongoDB's) is made again and the gap repaired by a
 * verification pass that copies every differing document from PostgreSQL
 * to MongoDB (each named in the log). Returns an exit code; error set
 * when not 0.
 */
int mg_cdc_reverse_run(mg_cdc_reverse_t *r, mg_error_t *error);

typedef struct {
    int64_t txns, changes; /* applied by this process */
    double events_per_s;
    uint64_t lsn;
    int32_t generation;
    int64_t repairs, repaired_docs;
} mg_cdc_reverse_stats_t;

void mg_cdc_reverse_stats(mg_cdc_reverse_t *r, mg_cdc_reverse_stats_t *out);

void mg_cdc_reverse_destroy(mg_cdc_reverse_t *r);

/* mg_cdc_lsn_text writes lsn as PostgreSQL prints it ("16/B374D848") into buf and returns buf. */
const char *mg_cdc_lsn_text(uint64_t lsn, char *buf, size_t bufsz);

#ifdef __cplusplus
}
#endif

#endif /* MG_CDC_REVERSE_H */
