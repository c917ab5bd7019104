/*
 * migrator/src/migrator_internal.h - helpers shared by the migrator's
 * commands: source (libmongoc) and target (libpq) connections, and the
 * _migrate state schema.
 */
#ifndef MG_MIGRATOR_INTERNAL_H
#define MG_MIGRATOR_INTERNAL_H

#include "mg/migrator.h"
#include "mg/schema.h"

#include <libpq-fe.h>
#include <mongoc/mongoc.h>

/* ---- source ---- */

typedef struct {
    mongoc_client_t *client;
    char *uri_shown;    /* the URI with its password redacted */
    char set_name[128]; /* replica set name, "" when not a replica set */
    char version[64];   /* server version from buildInfo */
    bool is_primary;    /* isWritablePrimary (or ismaster) */
    int32_t max_wire;
} mg_source_t;

/*
 * mg_migrator__source_open connects to uri, checks it answers (hello,
 * buildInfo) within the server selection timeout (10 s unless the URI says
 * otherwise) and fills src. Errors: domain mongo (exit code "source").
 */
bool mg_migrator__source_open(const char *uri, mg_source_t *src, mg_error_t *error);

/* mg_migrator__source_close releases src (safe on a zeroed or closed src). */
void mg_migrator__source_close(mg_source_t *src);

/*
 * mg_migrator__source_command runs cmd on db and stores the server reply in
 * *reply (caller destroys; initialised even on failure).
 */
bool mg_migrator__source_command(mg_source_t *src, const char *db, const bson_t *cmd, bson_t *reply,
                                 mg_error_t *error);

/*
 * mg_migrator__source_aggregate runs pipeline on db.coll and calls fn for
 * each result document (borrowed); fn returns false to stop with an error.
 */
typedef bool (*mg_source_doc_fn)(void *ctx, const bson_t *doc, mg_error_t *error);
bool mg_migrator__source_aggregate(mg_source_t *src, const char *db, const char *coll,
                                   const bson_t *pipeline, mg_source_doc_fn fn, void *ctx,
                                   mg_error_t *error);

/* ---- target ---- */

/*
 * mg_migrator__target_connect opens a libpq connection (URI or conninfo),
 * with application_name "migrate" unless the string sets one, notices
 * routed into the logger. Errors: domain pg (exit code "target").
 */
PGconn *mg_migrator__target_connect(const char *conninfo, mg_error_t *error);

/* mg_migrator__target_exec runs sql (no parameters, no rows expected). */
bool mg_migrator__target_exec(PGconn *conn, const char *sql, mg_error_t *error);

/*
 * mg_migrator__target_query runs sql with text parameters and returns the
 * result (caller PQclear), or NULL with error set.
 */
PGresult *mg_migrator__target_query(PGconn *conn, const char *sql, int nparams,
                                    const char *const *params, mg_error_t *error);

/* ---- state schema ---- */

/*
 * mg_migrator__state_probe tells whether the state schema exists and, when
 * it does, its recorded version (0 when the schema exists without our
 * meta table: not ours).
 */
bool mg_migrator__state_probe(PGconn *conn, const char *state_schema, bool *exists, int *version,
                              mg_error_t *error);

/* mg_migrator__state_ddl appends the statements that create the state schema. */
bool mg_migrator__state_ddl(const char *state_schema, mg_buf_t *out, mg_error_t *error);

/* mg_migrator__state_event inserts an event row (inside the caller's transaction). */
bool mg_migrator__state_event(PGconn *conn, const char *state_schema, const char *kind,
                              const char *data_json, mg_error_t *error);

/* ---- output ---- */

/* mg_migrator__human_bytes formats n as "1.2 GB" into buf. */
const char *mg_migrator__human_bytes(int64_t n, char *buf, size_t bufsz);

/* mg_migrator__human_count formats n as "3.4M" into buf. */
const char *mg_migrator__human_count(int64_t n, char *buf, size_t bufsz);

#endif /* MG_MIGRATOR_INTERNAL_H */
