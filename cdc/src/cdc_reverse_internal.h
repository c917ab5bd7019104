/*
 * cdc/src/cdc_reverse_internal.h - what the reverse sync's files share
 * (cdc_reverse_slot.c: the capture and the replication connection;
 * cdc_reverse_map.c: rows back to MongoDB operations; cdc_reverse_apply.c:
 * MongoDB transactions with the position; cdc_reverse.c: the engine) and
 * what the unit tests reach.
 */
#ifndef MG_CDC_REVERSE_INTERNAL_H
#define MG_CDC_REVERSE_INTERNAL_H

#include "cdc_pgoutput.h"
#include "mg/cdc_reverse.h"

#include <libpq-fe.h>
#include <mongoc/mongoc.h>

/* ---- the replication connection (cdc_reverse_slot.c) ---- */

/*
 * mg_cdc__rev_name_valid tells whether name (read back from the state) is
 * one mg_cdc_reverse_name could have made: 1-63 bytes of [a-z0-9_], safe
 * inside a replication command.
 */
bool mg_cdc__rev_name_valid(const char *name);

/* mg_cdc__rep_connect opens a logical replication connection (replication=database). */
PGconn *mg_cdc__rep_connect(const char *target, mg_error_t *error);

/*
 * mg_cdc__rep_command runs a replication command (or a query) on conn and
 * returns its result (caller PQclear), cancelling it after timeout_s.
 */
PGresult *mg_cdc__rep_command(PGconn *conn, const char *command, double timeout_s,
                              mg_error_t *error);

/* mg_cdc__rep_identify runs IDENTIFY_SYSTEM. */
bool mg_cdc__rep_identify(PGconn *conn, uint32_t *timeline, char system_id[32], uint64_t *xlogpos,
                          mg_error_t *error);

/* ---- rows back to MongoDB operations (cdc_reverse_map.c) ---- */

typedef enum {
    MG_CDC__REV_UPSERT = 0, /* the document as PostgreSQL holds it now */
    MG_CDC__REV_DELETE,     /* no document with this _id */
    MG_CDC__REV_TRUNCATE,   /* the collection emptied */
} mg_cdc__rev_kind_t;

/* One MongoDB operation, everything owned. */
typedef struct {
    mg_cdc__rev_kind_t kind;
    size_t table;    /* index into the tables */
    bson_t *doc;     /* upsert: the document */
    bson_t *id;      /* upsert and delete: {"_id": <the _id>} */
    char *doc_id;    /* upsert and delete: the key column's text (NULL for truncate) */
    bool dollar_top; /* upsert of a document with a top-level $-key: delete + insert */
    size_t bytes;
} mg_cdc__rev_op_t;

/* A list of operations, in order, bounded by the caller. */
typedef struct {
    mg_cdc__rev_op_t *ops;
    size_t n, cap;
    size_t bytes;
} mg_cdc__rev_ops_t;

void mg_cdc__rev_ops_cleanup(mg_cdc__rev_ops_t *ops);

/* mg_cdc__rev_ops_drop_front frees the first k operations and moves the rest to the front. */
void mg_cdc__rev_ops_drop_front(mg_cdc__rev_ops_t *ops, size_t k);

/* What a Relation message said about a table of the stream. */
typedef struct {
    uint32_t relid;
    char *nspname, *relname;
    int id_col, doc_col; /* column positions; -1 when absent */
    long table;          /* index into the tables, -1 when not a migrated table */
} mg_cdc__rev_rel_t;

typedef struct {
    mg_cdc__rev_rel_t *items;
    size_t n, cap;
} mg_cdc__rev_rels_t;

void mg_cdc__rev_rels_cleanup(mg_cdc__rev_rels_t *rels);

/*
 * mg_cdc__rev_relation records (or replaces) the relation of a Relation
 * message, matched by schema and table name against tables (n). A table
 * that is not a migrated one, or lacks the _id or doc column, is recorded
 * too: using it fails with an error naming it.
 */
bool mg_cdc__rev_relation(mg_cdc__rev_rels_t *rels, const mg_cdc_table_t *tables, size_t n,
                          const mg_pgo_msg_t *m, mg_error_t *error);

/*
 * A row's current document read by key (an update that left the TOASTed
 * doc unchanged sends no value for it): appends doc's text to out, *found
 * false when the row is gone (a delete follows in the stream).
 */
typedef bool (*mg_cdc__rev_lookup_fn)(void *ctx, const mg_cdc_table_t *table, const char *key,
                                      size_t key_len, mg_buf_t *out, bool *found,
                                      mg_error_t *error);

/*
 * mg_cdc__rev_map appends to out the MongoDB operations of one Insert,
 * Update, Delete or Truncate message: upsert of the row's doc mapped back
 * to BSON (mg_schema_json_parse), delete by the _id (from the old row's
 * doc when the stream logged it, else from the key), delete + upsert when
 * the key changed, a truncate per table. A row that has no BSON form, a
 * doc whose _id does not give the row's key, a document over MongoDB's 16
 * MB, a NULL doc, a table that is not migrated: error naming the table
 * (schema.table) and the key. Nothing is appended on failure.
 */
bool mg_cdc__rev_map(const mg_cdc__rev_rels_t *rels, const mg_cdc_table_t *tables, size_t ntables,
                     const mg_pgo_msg_t *m, mg_cdc__rev_lookup_fn lookup, void *ctx,
                     mg_cdc__rev_ops_t *out, mg_error_t *error);

/*
 * mg_cdc__rev_doc_op makes the upsert of the document text json (len) of
 * key (key_len) in tables[table] and appends it to out: the check and the
 * errors of mg_cdc__rev_map. Used by the repair too.
 */
bool mg_cdc__rev_doc_op(const mg_cdc_table_t *tables, size_t table, const char *key, size_t key_len,
                        const char *json, size_t len, mg_cdc__rev_ops_t *out, mg_error_t *error);

/* mg_cdc__rev_delete_op appends the delete of the _id of key in tables[table]. */
bool mg_cdc__rev_delete_op(const mg_cdc_table_t *tables, size_t table, const char *key,
                           size_t key_len, mg_cdc__rev_ops_t *out, mg_error_t *error);

/* ---- MongoDB: transactions with the position (cdc_reverse_apply.c) ---- */

typedef struct {
    mongoc_client_t *client;
    mongoc_client_session_t *session;
    mongoc_collection_t *positions;
    const char *key;             /* the position document's _id: the state schema's name */
    mongoc_collection_t **colls; /* per table, made when first used */
    const mg_cdc_table_t *tables;
    size_t ntables;
} mg_cdc__rev_mongo_t;

/* mg_cdc__rev_mongo_init makes the client's session and collections (tables borrowed). */
bool mg_cdc__rev_mongo_init(mg_cdc__rev_mongo_t *m, mongoc_client_t *client, const char *key,
                            const mg_cdc_table_t *tables, size_t ntables, mg_error_t *error);
void mg_cdc__rev_mongo_cleanup(mg_cdc__rev_mongo_t *m);

/* mg_cdc__rev_position_read reads the position document (exists false when none). */
bool mg_cdc__rev_position_read(mg_cdc__rev_mongo_t *m, mg_cdc_reverse_pos_t *out,
                               mg_error_t *error);

/*
 * mg_cdc__rev_position_move moves the position from *from (exactly: a
 * compare-and-set on generation, lsn, part_lsn, part_done) to *to, alone
 * (no transaction): the idle advance to a keepalive's WAL end. from NULL:
 * set it whatever it was (a new generation after a repair, or the first).
 * *moved is false when the position was not *from.
 */
bool mg_cdc__rev_position_move(mg_cdc__rev_mongo_t *m, const mg_cdc_reverse_pos_t *from,
                               const mg_cdc_reverse_pos_t *to, bool *moved, mg_error_t *error);

/*
 * mg_cdc__rev_apply writes ops (n) and moves the position from *from to
 * *to in ONE MongoDB transaction (retried on TransientTransactionError,
 * its commit on UnknownTransactionCommitResult). Fails when the position
 * is not *from (another process moved it: reload and go on from it), or a
 * write fails (error names the collection and _id).
 */
bool mg_cdc__rev_apply(mg_cdc__rev_mongo_t *m, const mg_cdc__rev_op_t *ops, size_t n,
                       const mg_cdc_reverse_pos_t *from, const mg_cdc_reverse_pos_t *to,
                       mg_error_t *error);

#endif /* MG_CDC_REVERSE_INTERNAL_H */
