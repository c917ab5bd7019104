/*
 * migrator/src/migrator_internal.h - what the migrate command files share:
 * the resources the framework opens for them, the options every command
 * spells the same way, and the bulk copy (partition plan, workers, the
 * copy run).
 */
#ifndef MG_MIGRATOR_INTERNAL_H
#define MG_MIGRATOR_INTERNAL_H

#include "mg/cdc.h"
#include "mg/migrator.h"
#include "mg/schema.h"
#include "mg/state.h"

#include <libpq-fe.h>
#include <mongoc/mongoc.h>
#include <pthread.h>
#include <stdatomic.h>

/* ---- the command framework's resources (cli_main.c) ---- */

/*
 * What migrate's acquire hook opens for a command (ctx->resources):
 * MG_CMD_NEEDS_SOURCE connects and checks src; MG_CMD_NEEDS_TARGET makes st,
 * the state handle over the target connection (mg_state_conn; st owns it
 * for the command: an engine that reconnects replaces it in st);
 * MG_CMD_NEEDS_STATE also requires the state schema (mg_state_require).
 */
typedef struct {
    mg_mongo_t src;
    mg_state_t *st;
} mg_migrator_res_t;

/* mg_migrator__res returns the command's resources. */
#define mg_migrator__res(ctx) ((mg_migrator_res_t *)(ctx)->resources)

/* The options that every command spells the same way: name, type, help. */
#define MG_MIGRATOR_OPTION_SOURCE(T, member)                                                  \
    {                                                                                         \
        .name = "source", .type = MG_CONFIG_STRING, .offset = offsetof(T, member),            \
        .required = true, .metavar = "URI", .help = "MongoDB connection string of the source" \
    }
#define MG_MIGRATOR_OPTION_TARGET(T, member)                                       \
    {                                                                              \
        .name = "target", .type = MG_CONFIG_STRING, .offset = offsetof(T, member), \
        .required = true, .metavar = "URI",                                        \
        .help = "PostgreSQL connection string of the target (URI or key=value)"    \
    }
#define MG_MIGRATOR_OPTION_STATE_SCHEMA(T, member)                                       \
    {                                                                                    \
        .name = "state_schema", .type = MG_CONFIG_STRING, .offset = offsetof(T, member), \
        .default_value = MG_STATE_SCHEMA_DEFAULT, .metavar = "NAME",                     \
        .help = "schema holding the tool's state on the target"                          \
    }
#define MG_MIGRATOR_OPTION_JSON(T, member, what)                               \
    {                                                                          \
        .name = "json", .type = MG_CONFIG_BOOL, .offset = offsetof(T, member), \
        .default_value = "false", .help = what                                 \
    }

/* The command entries (one per cli_*.c). */
extern const mg_cmd_t mg_migrator_cmd_init;
extern const mg_cmd_t mg_migrator_cmd_sync;
extern const mg_cmd_t mg_migrator_cmd_status;
extern const mg_cmd_t mg_migrator_cmd_validate;
extern const mg_cmd_t mg_migrator_cmd_cutover;
extern const mg_cmd_t mg_migrator_cmd_fallback;
extern const mg_cmd_t mg_migrator_cmd_translate;

/* ---- bulk copy (copy_plan.c, copy_worker.c, copy_run.c) ---- */

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
    bool worker_only; /* only copy partitions of an existing plan (scale-out) */
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

/* A namespace of the plan (borrowed strings). */
typedef struct {
    const char *db, *coll;
} mg_migrator_ns_t;

/*
 * mg_migrator__check_privileges fails, naming every one that is missing,
 * unless the source user may do what the whole migration does with the n
 * planned namespaces (source_privileges.c). Without authentication, or a
 * server that does not list privileges, everything passes.
 */
bool mg_migrator__check_privileges(mg_mongo_t *src, const mg_migrator_ns_t *ns, size_t n,
                                   mg_error_t *error);

/*
 * mg_migrator__copy_record_t0 stores the source's operationTime as T0 unless
 * one is recorded; t_out and i_out receive the recorded value.
 */
bool mg_migrator__copy_record_t0(mg_mongo_t *src, mg_state_t *st, uint32_t *t_out, uint32_t *i_out,
                                 mg_error_t *error);

/*
 * mg_migrator__copy_plan plans partitions for every collection that has
 * none (by _id type class, $bucketAuto boundaries within a class) and
 * persists them. partition_docs bounds the documents per partition;
 * spread asks for at least that many partitions per collection (4 per
 * worker), none smaller than 10000 documents.
 */
bool mg_migrator__copy_plan(mg_mongo_t *src, mg_state_t *st, int64_t partition_docs,
                            int64_t partition_bytes, int64_t spread, mg_error_t *error);

/*
 * mg_migrator__copy_load_collections reads the collections and their
 * partition totals; *colls is malloc'd (free with _free_collections).
 */
bool mg_migrator__copy_load_collections(mg_state_t *st, mg_copy_coll_t **colls, size_t *ncolls,
                                        mg_error_t *error);
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

/* What a copy run did, for its report. */
typedef struct {
    mg_copy_timing_t *timing; /* one per worker, over every round */
    size_t nworkers;
    double seconds;
    bool worker_failed; /* the run stopped on a worker's error */
    size_t indexes_built, indexes_failed;
    int64_t failed_partitions;
} mg_copy_result_t;

/*
 * mg_migrator__copy_run copies the planned partitions with `workers`
 * threads (progress every progress_s seconds, bars on a terminal), copies
 * again partitions a failover made pending, then (unless worker_only) marks
 * finished collections, builds their indexes and records the phase. st's
 * connection records progress and is reconnected when the target is lost.
 * Returns MG_EXIT_OK, MG_EXIT_INTERRUPTED on a stop request, or a failure
 * with error set. r is filled either way (free with
 * mg_migrator__copy_result_cleanup).
 */
int mg_migrator__copy_run(mg_state_t *st, const mg_copy_settings_t *settings, int64_t workers,
                          double progress_s, mg_copy_coll_t *colls, size_t ncolls,
                          mg_copy_result_t *r, mg_error_t *error);
void mg_migrator__copy_result_cleanup(mg_copy_result_t *r);

#endif /* MG_MIGRATOR_INTERNAL_H */
