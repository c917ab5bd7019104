/*
 * state/src/state_schema.c - the tool's state schema on the target
 * (default "_migrate"; docs/state-schema.md).
 *
 * Version 1 holds: meta (schema version), migration (one row: source,
 * options, phase), collections (mapping and status), indexes (the
 * translation plan, built after the load), census (reports) and events.
 * Later versions add tables; a build refuses a state schema newer than it.
 */
#include "mg/schema.h"
#include "mg/state.h"

#include <libpq-fe.h>

#include <stdlib.h>
#include <string.h>

/* Statements with %1$s standing for the quoted state schema name. */
static const char *const state_v1[] = {
    "CREATE SCHEMA %1$s",
    "CREATE TABLE %1$s.meta (\n"
    "    key text PRIMARY KEY,\n"
    "    value text NOT NULL\n"
    ")",
    "CREATE TABLE %1$s.migration (\n"
    "    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),\n"
    "    created_at timestamptz NOT NULL DEFAULT now(),\n"
    "    tool_version text NOT NULL,\n"
    "    source_uri text NOT NULL,\n"
    "    source_version text,\n"
    "    source_set_name text,\n"
    "    target_schema text,\n"
    "    type_fidelity text NOT NULL,\n"
    "    options jsonb NOT NULL,\n"
    "    phase text NOT NULL DEFAULT 'initialized',\n"
    "    t0_ts bigint,\n"
    "    t0_inc bigint,\n"
    "    t0_recorded_at timestamptz,\n"
    "    updated_at timestamptz NOT NULL DEFAULT now()\n"
    ")",
    "CREATE TABLE %1$s.collections (\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    schema_name text NOT NULL,\n"
    "    table_name text NOT NULL,\n"
    "    key_type text NOT NULL,\n"
    "    status text NOT NULL DEFAULT 'planned',\n"
    "    doc_count bigint,\n"
    "    size_bytes bigint,\n"
    "    error text,\n"
    "    updated_at timestamptz NOT NULL DEFAULT now(),\n"
    "    PRIMARY KEY (db, coll),\n"
    "    UNIQUE (schema_name, table_name)\n"
    ")",
    "CREATE TABLE %1$s.indexes (\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    mongo_name text NOT NULL,\n"
    "    pg_name text NOT NULL,\n"
    "    key_spec jsonb,\n"
    "    is_unique boolean NOT NULL DEFAULT false,\n"
    "    translation text NOT NULL,\n"
    "    build_status text NOT NULL,\n"
    "    sql text,\n"
    "    note text,\n"
    "    suggestion text,\n"
    "    PRIMARY KEY (db, coll, mongo_name),\n"
    "    FOREIGN KEY (db, coll) REFERENCES %1$s.collections ON DELETE CASCADE ON UPDATE CASCADE\n"
    ")",
    "CREATE TABLE %1$s.census (\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    taken_at timestamptz NOT NULL DEFAULT now(),\n"
    "    report jsonb NOT NULL,\n"
    "    PRIMARY KEY (db, coll),\n"
    "    FOREIGN KEY (db, coll) REFERENCES %1$s.collections ON DELETE CASCADE ON UPDATE CASCADE\n"
    ")",
    "CREATE TABLE %1$s.partitions (\n"
    "    id bigserial PRIMARY KEY,\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    seq int NOT NULL,\n"
    "    filter bytea NOT NULL,\n"
    "    filter_json text NOT NULL,\n"
    "    est_docs bigint NOT NULL DEFAULT 0,\n"
    "    status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),\n"
    "    worker text,\n"
    "    copied_docs bigint,\n"
    "    copied_bytes bigint,\n"
    "    skipped_docs bigint,\n"
    "    commits int NOT NULL DEFAULT 0,\n"
    "    started_at timestamptz,\n"
    "    finished_at timestamptz,\n"
    "    error text,\n"
    "    UNIQUE (db, coll, seq),\n"
    "    FOREIGN KEY (db, coll) REFERENCES %1$s.collections ON DELETE CASCADE ON UPDATE CASCADE\n"
    ")",
    "CREATE TABLE %1$s.invalid_docs (\n"
    "    id bigserial PRIMARY KEY,\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    partition_id bigint,\n"
    "    doc_id text NOT NULL,\n"
    "    reason text NOT NULL,\n"
    "    at timestamptz NOT NULL DEFAULT now(),\n"
    "    UNIQUE (db, coll, doc_id)\n"
    ")",
    "CREATE TABLE %1$s.copy_progress (\n"
    "    worker text PRIMARY KEY,\n"
    "    partition_id bigint,\n"
    "    db text,\n"
    "    coll text,\n"
    "    docs bigint NOT NULL DEFAULT 0,\n"
    "    bytes bigint NOT NULL DEFAULT 0,\n"
    "    updated_at timestamptz NOT NULL DEFAULT now()\n"
    ")",
    "CREATE TABLE %1$s.validation_runs (\n"
    "    id bigserial PRIMARY KEY,\n"
    "    mode text NOT NULL CHECK (mode IN ('full', 'changed', 'shadow')),\n"
    "    status text NOT NULL DEFAULT 'running',\n"
    "    started_at timestamptz NOT NULL DEFAULT now(),\n"
    "    finished_at timestamptz,\n"
    "    checkpoint_ts bigint,\n"
    "    checkpoint_inc bigint,\n"
    "    documents bigint NOT NULL DEFAULT 0,\n"
    "    mismatches bigint NOT NULL DEFAULT 0,\n"
    "    persistent bigint NOT NULL DEFAULT 0,\n"
    "    options jsonb NOT NULL DEFAULT '{}'\n"
    ")",
    "CREATE TABLE %1$s.validation_results (\n"
    "    run_id bigint NOT NULL REFERENCES %1$s.validation_runs ON DELETE CASCADE,\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    status text NOT NULL,\n"
    "    source_docs bigint,\n"
    "    target_docs bigint,\n"
    "    segments int,\n"
    "    segments_mismatched int,\n"
    "    missing bigint,\n"
    "    extra bigint,\n"
    "    different bigint,\n"
    "    elapsed_s double precision,\n"
    "    error text,\n"
    "    PRIMARY KEY (run_id, db, coll)\n"
    ")",
    "CREATE TABLE %1$s.validation_mismatches (\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    id_json text NOT NULL,\n"
    "    doc_id text NOT NULL,\n"
    "    kind text NOT NULL CHECK (kind IN ('missing', 'extra', 'different')),\n"
    "    fields jsonb NOT NULL DEFAULT '[]',\n"
    "    first_seen_run bigint NOT NULL,\n"
    "    first_seen_at timestamptz NOT NULL DEFAULT now(),\n"
    "    last_seen_run bigint NOT NULL,\n"
    "    last_seen_at timestamptz NOT NULL DEFAULT now(),\n"
    "    seen_runs int NOT NULL DEFAULT 1,\n"
    "    persisted boolean NOT NULL DEFAULT false,\n"
    "    resolved_run bigint,\n"
    "    resolved_at timestamptz,\n"
    "    PRIMARY KEY (db, coll, id_json)\n"
    ")",
    "CREATE TABLE %1$s.validation_shadow (\n"
    "    run_id bigint NOT NULL REFERENCES %1$s.validation_runs ON DELETE CASCADE,\n"
    "    seq int NOT NULL,\n"
    "    name text NOT NULL,\n"
    "    ns text,\n"
    "    status text NOT NULL,\n"
    "    reason text,\n"
    "    query jsonb,\n"
    "    sql text,\n"
    "    mongo_count bigint,\n"
    "    pg_count bigint,\n"
    "    diff_ids jsonb NOT NULL DEFAULT '[]',\n"
    "    mongo_p50_ms double precision,\n"
    "    mongo_p95_ms double precision,\n"
    "    pg_p50_ms double precision,\n"
    "    pg_p95_ms double precision,\n"
    "    PRIMARY KEY (run_id, seq)\n"
    ")",
    "CREATE TABLE %1$s.cutover (\n"
    "    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),\n"
    "    attempt int NOT NULL DEFAULT 1,\n"
    "    step text NOT NULL,\n"
    "    outcome text NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'done', "
    "'aborted')),\n"
    "    reason text,\n"
    "    freeze_mode text NOT NULL,\n"
    "    verify_mode text NOT NULL,\n"
    "    fence_ts bigint,\n"
    "    fence_inc bigint,\n"
    "    endpoint text,\n"
    "    started_at timestamptz NOT NULL DEFAULT now(),\n"
    "    frozen_at timestamptz,\n"
    "    flipped_at timestamptz,\n"
    "    finished_at timestamptz,\n"
    "    unavailable_s double precision,\n"
    "    steps jsonb NOT NULL DEFAULT '{}',\n"
    "    updated_at timestamptz NOT NULL DEFAULT now()\n"
    ")",
    "CREATE TABLE %1$s.checkpoint (\n"
    "    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),\n"
    "    resume_token bytea,\n"
    "    resume_token_json text,\n"
    "    cluster_time_ts bigint,\n"
    "    cluster_time_inc bigint,\n"
    "    wall_time timestamptz,\n"
    "    applied_events bigint NOT NULL DEFAULT 0,\n"
    "    applied_batches bigint NOT NULL DEFAULT 0,\n"
    "    events_per_s double precision,\n"
    "    history_lost_at timestamptz,\n"
    "    updated_at timestamptz NOT NULL DEFAULT now()\n"
    ")",
    /* an append-only log (no key to maintain in the apply's transaction);
     * readers take DISTINCT doc_id */
    "CREATE TABLE %1$s.changed_docs (\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    doc_id text NOT NULL,\n"
    "    cluster_time_ts bigint NOT NULL,\n"
    "    cluster_time_inc bigint NOT NULL\n"
    ")",
    "CREATE TABLE %1$s.events (\n"
    "    id bigserial PRIMARY KEY,\n"
    "    at timestamptz NOT NULL DEFAULT now(),\n"
    "    kind text NOT NULL,\n"
    "    data jsonb NOT NULL DEFAULT '{}'\n"
    ")",
    "INSERT INTO %1$s.checkpoint (id) VALUES (1)",
    "INSERT INTO %1$s.meta (key, value) VALUES ('schema_version', '1'), "
    "('created_by', 'migrate')",
    NULL,
};

bool
mg_state_ddl(const char *state_schema, mg_buf_t *out, mg_error_t *error)
{
    mg_buf_t quoted;
    bool ok = true;

    mg_buf_init(&quoted, 1024);
    if (!mg_schema_quote_ident(state_schema, &quoted, error)) {
        mg_buf_cleanup(&quoted);
        return false;
    }
    for (int i = 0; ok && state_v1[i] != NULL; i++) {
        /* %1$s is the only conversion in these statements */
        ok = mg_buf_printf(out, error, state_v1[i], quoted.data) &&
             mg_buf_append_str(out, ";\n", error);
    }
    mg_buf_cleanup(&quoted);
    return ok;
}

bool
mg_state_probe(PGconn *conn, const char *state_schema, bool *exists, int *version,
               mg_error_t *error)
{
    const char *params[1] = {state_schema};
    PGresult *res;

    res = mg_pg_query(conn, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, params, error);
    if (res == NULL)
        return false;
    *exists = PQntuples(res) > 0;
    PQclear(res);
    *version = 0;
    if (!*exists)
        return true;
    res = mg_pg_query(conn,
                      "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE n.nspname = $1 AND c.relname = 'meta'",
                      1, params, error);
    if (res == NULL)
        return false;
    bool has_meta = PQntuples(res) > 0;
    PQclear(res);
    if (!has_meta)
        return true;

    mg_buf_t sql;
    mg_buf_init(&sql, 4096);
    bool ok = mg_buf_append_str(&sql, "SELECT value FROM ", error) &&
              mg_schema_quote_ident(state_schema, &sql, error) &&
              mg_buf_append_str(&sql, ".meta WHERE key = 'schema_version'", error);
    if (ok && (res = mg_pg_query(conn, sql.data, 0, NULL, error)) != NULL) {
        if (PQntuples(res) == 1)
            *version = atoi(PQgetvalue(res, 0, 0));
        PQclear(res);
    } else {
        ok = false;
    }
    mg_buf_cleanup(&sql);
    return ok;
}

bool
mg_state_event_add(PGconn *conn, const char *state_schema, const char *kind, const char *data_json,
                   mg_error_t *error)
{
    const char *params[2] = {kind, data_json != NULL ? data_json : "{}"};
    mg_buf_t sql;
    PGresult *res = NULL;
    bool ok;

    mg_buf_init(&sql, 4096);
    ok = mg_buf_append_str(&sql, "INSERT INTO ", error) &&
         mg_schema_quote_ident(state_schema, &sql, error) &&
         mg_buf_append_str(&sql, ".events (kind, data) VALUES ($1, $2::jsonb)", error) &&
         (res = mg_pg_query(conn, sql.data, 2, params, error)) != NULL;
    PQclear(res);
    mg_buf_cleanup(&sql);
    return ok;
}
