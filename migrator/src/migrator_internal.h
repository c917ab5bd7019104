/*
 * migrator/src/migrator_internal.h - helpers shared by the migrator's
 * commands: the _migrate state schema, the bulk copy, the change stream.
 */
#ifndef MG_MIGRATOR_INTERNAL_H
#define MG_MIGRATOR_INTERNAL_H

#include "mg/migrator.h"
#include "mg/cdc.h"
#include "mg/schema.h"
#include "mg/state.h"

#include <libpq-fe.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdatomic.h>

/* ---- bulk copy (copy_plan.c, copy_worker.c) ---- */

#include <stdatomic.h>

/* One collection of the copy, read from _migrate.collections. */
typedef struct {
    char *db;
    char *coll;
    char *schema;
    char *table;
    mg_schema_key_type_t key;
    int64_t est_docs;  /* from the census */
    int64_t est_bytes; /* from the census */
    /* progress, updated by workers */
    atomic_llong docs_done;
    atomic_llong bytes_done;
    atomic_llong parts_done;
    int64_t parts_total;
} mg_copy_coll_t;

/* Settings of a copy run. */
typedef struct {
    const char *source_uri;
    const char *target;
    const char *state_schema;
    const char *worker_name; /* prefix of worker names in _migrate */
    mg_schema_fidelity_t fidelity;
    int64_t batch_docs;    /* cursor batchSize */
    int64_t flush_bytes;   /* PQputCopyData chunk */
    int64_t doc_cap_bytes; /* largest rendered row */
    bool skip_invalid;
    atomic_int *stop; /* 0 run, 1 finish current partitions, 2 abort now */
} mg_copy_settings_t;

/* Where one worker's time went, and what it did. */
typedef struct {
    double mongo_s;  /* waiting on MongoDB (cursor) */
    double render_s; /* rendering rows */
    double pg_s;     /* waiting on PostgreSQL (COPY, commit) */
    double total_s;
    int64_t docs;
    int64_t bytes; /* BSON bytes read */
    int64_t partitions;
    int64_t failed;
    int64_t skipped_docs;
} mg_copy_timing_t;

/*
 * mg_migrator__copy_record_t0 stores the source's operationTime as T0 unless
 * one is recorded; t_out and i_out receive the recorded value.
 */
bool mg_migrator__copy_record_t0(mg_mongo_t *src, PGconn *pg, const char *state_schema,
                                 uint32_t *t_out, uint32_t *i_out, mg_error_t *error);

/*
 * mg_migrator__copy_plan plans partitions for every collection that has
 * none (by _id type class, $bucketAuto boundaries within a class) and
 * persists them. partition_docs bounds the documents per partition;
 * spread asks for at least that many partitions per collection (4 per
 * worker), none smaller than 10000 documents.
 */
bool mg_migrator__copy_plan(mg_mongo_t *src, PGconn *pg, const char *state_schema,
                            int64_t partition_docs, int64_t partition_bytes, int64_t spread,
                            mg_error_t *error);

/*
 * mg_migrator__copy_load_collections reads the collections and their
 * partition totals; *colls is malloc'd (free with _free_collections).
 */
bool mg_migrator__copy_load_collections(PGconn *pg, const char *state_schema,
                                        mg_copy_coll_t **colls, size_t *ncolls, mg_error_t *error);
void mg_migrator__copy_free_collections(mg_copy_coll_t *colls, size_t ncolls);

/*
 * mg_migrator__copy_worker_run claims and copies partitions until none is
 * left or a stop is requested. Returns false on a failure that should stop
 * the run (connection lost, source error); a partition that fails on its
 * own data is marked failed and counted in timing->failed.
 */
bool mg_migrator__copy_worker_run(const mg_copy_settings_t *settings, int worker_index,
                                  mg_copy_coll_t *colls, size_t ncolls, mg_copy_timing_t *timing,
                                  mg_error_t *error);

/* ---- re-sync (copy_plan.c) ---- */

/*
 * mg_migrator__resync prepares the collections matching patterns for a new
 * copy: tables emptied, partitions forgotten, status planned. After a lost
 * change-stream history it requires every collection and resets T0 and the
 * checkpoint. *count receives the number of collections.
 */
bool mg_migrator__resync(PGconn *pg, const char *state_schema, const mg_strlist_t *patterns,
                         size_t *count, mg_error_t *error);

#endif /* MG_MIGRATOR_INTERNAL_H */
