/*
 * state/src/state_schema.c - the tool's state schema on the target
 * (default "_migrate"; docs/state-schema.md): the handle, the one way of
 * running a statement on the schema, the DDL, version checks,
 * transactions, events, and the migration row.
 *
 * Version 1 holds: meta (schema version), migration (one row: source,
 * options, phase), collections (mapping and status), indexes (the
 * translation plan, built after the load), census (reports) and events.
 * Later versions add tables; a build refuses a state schema newer than it.
 */
#include "state_internal.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* The statements of version 1 ("@" is the quoted state schema, as everywhere here). */
static const char *const state_v1[] = {
    "CREATE SCHEMA @",
    "CREATE TABLE @.meta (\n"
    "    key text PRIMARY KEY,\n"
    "    value text NOT NULL\n"
    ")",
    "CREATE TABLE @.migration (\n"
    "    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),\n"
    "    created_at timestamptz NOT NULL DEFAULT now(),\n"
    "    tool_version text NOT NULL,\n"
    "    source_uri text NOT NULL,\n"
    "    source_secret text,\n"
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
    "CREATE TABLE @.collections (\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    schema_name text NOT NULL,\n"
    "    table_name text NOT NULL,\n"
    "    key_type text NOT NULL,\n"
    "    status text NOT NULL DEFAULT 'planned',\n"
    "    doc_count bigint,\n"
    "    size_bytes bigint,\n"
    "    error text,\n"
    "    copied_at timestamptz,\n"
    "    updated_at timestamptz NOT NULL DEFAULT now(),\n"
    "    PRIMARY KEY (db, coll),\n"
    "    UNIQUE (schema_name, table_name)\n"
    ")",
    "CREATE TABLE @.indexes (\n"
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
    "    FOREIGN KEY (db, coll) REFERENCES @.collections ON DELETE CASCADE ON UPDATE CASCADE\n"
    ")",
    "CREATE TABLE @.census (\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    taken_at timestamptz NOT NULL DEFAULT now(),\n"
    "    report jsonb NOT NULL,\n"
    "    PRIMARY KEY (db, coll),\n"
    "    FOREIGN KEY (db, coll) REFERENCES @.collections ON DELETE CASCADE ON UPDATE CASCADE\n"
    ")",
    "CREATE TABLE @.partitions (\n"
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
    "    FOREIGN KEY (db, coll) REFERENCES @.collections ON DELETE CASCADE ON UPDATE CASCADE\n"
    ")",
    "CREATE TABLE @.invalid_docs (\n"
    "    id bigserial PRIMARY KEY,\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    partition_id bigint,\n"
    "    doc_id text NOT NULL,\n"
    "    reason text NOT NULL,\n"
    "    at timestamptz NOT NULL DEFAULT now(),\n"
    "    UNIQUE (db, coll, doc_id)\n"
    ")",
    "CREATE TABLE @.copy_progress (\n"
    "    worker text PRIMARY KEY,\n"
    "    partition_id bigint,\n"
    "    db text,\n"
    "    coll text,\n"
    "    docs bigint NOT NULL DEFAULT 0,\n"
    "    bytes bigint NOT NULL DEFAULT 0,\n"
    "    updated_at timestamptz NOT NULL DEFAULT now()\n"
    ")",
    "CREATE TABLE @.validation_runs (\n"
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
    "CREATE TABLE @.validation_results (\n"
    "    run_id bigint NOT NULL REFERENCES @.validation_runs ON DELETE CASCADE,\n"
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
    "CREATE TABLE @.validation_mismatches (\n"
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
    "CREATE TABLE @.validation_shadow (\n"
    "    run_id bigint NOT NULL REFERENCES @.validation_runs ON DELETE CASCADE,\n"
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
    "CREATE TABLE @.cutover (\n"
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
    "    endpoint_secret text,\n"
    "    started_at timestamptz NOT NULL DEFAULT now(),\n"
    "    frozen_at timestamptz,\n"
    "    flipped_at timestamptz,\n"
    "    finished_at timestamptz,\n"
    "    unavailable_s double precision,\n"
    "    steps jsonb NOT NULL DEFAULT '{}',\n"
    "    updated_at timestamptz NOT NULL DEFAULT now()\n"
    ")",
    /* who runs the cutover: taken and renewed by compare-and-set (state_cutover.c) */
    "CREATE TABLE @.cutover_owner (\n"
    "    id int PRIMARY KEY DEFAULT 1 CHECK (id = 1),\n"
    "    owner text,\n"
    "    token text,\n"
    "    renewal text,\n"
    "    ttl_ms bigint NOT NULL DEFAULT 0,\n"
    "    taken_at timestamptz,\n"
    "    renewed_at timestamptz,\n"
    "    takeovers int NOT NULL DEFAULT 0\n"
    ")",
    "CREATE TABLE @.checkpoint (\n"
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
    "CREATE TABLE @.changed_docs (\n"
    "    db text NOT NULL,\n"
    "    coll text NOT NULL,\n"
    "    doc_id text NOT NULL,\n"
    "    cluster_time_ts bigint NOT NULL,\n"
    "    cluster_time_inc bigint NOT NULL\n"
    ")",
    "CREATE TABLE @.events (\n"
    "    id bigserial PRIMARY KEY,\n"
    "    at timestamptz NOT NULL DEFAULT now(),\n"
    "    kind text NOT NULL,\n"
    "    data jsonb NOT NULL DEFAULT '{}'\n"
    ")",
    "INSERT INTO @.checkpoint (id) VALUES (1)",
    "INSERT INTO @.cutover_owner (id) VALUES (1)",
    "INSERT INTO @.meta (key, value) VALUES ('schema_version', '1'), "
    "('created_by', 'migrate')",
    NULL,
};

/* ---- the handle and the one way of running SQL ---- */

mg_state_t *
mg_state_new(PGconn *conn, const char *schema, mg_error_t *error)
{
    mg_state_t *st = calloc(1, sizeof(*st));
    mg_buf_t q;

    if (st == NULL) {
        mg_state__oom(error);
        return NULL;
    }
    mg_buf_init(&q, 1024);
    mg_buf_init(&st->sql, 1u << 20);
    st->conn = conn;
    st->name = strdup(schema != NULL ? schema : "");
    if (st->name == NULL || !mg_schema_quote_ident(st->name, &q, error)) {
        if (st->name == NULL)
            mg_state__oom(error);
        mg_buf_cleanup(&q);
        mg_state_destroy(st);
        return NULL;
    }
    st->quoted = q.data; /* steal */
    return st;
}

void
mg_state_destroy(mg_state_t *st)
{
    if (st == NULL)
        return;
    free(st->name);
    free(st->quoted);
    free(st->cutover_token);
    mg_buf_cleanup(&st->sql);
    free(st);
}

PGconn *
mg_state_conn(const mg_state_t *st)
{
    return st->conn;
}

void
mg_state_set_conn(mg_state_t *st, PGconn *conn)
{
    st->conn = conn;
}

const char *
mg_state_schema(const mg_state_t *st)
{
    return st->name;
}

/*
 * expand appends tmpl to out with every "@" replaced by the quoted schema:
 * the one place where the state schema's name enters a statement.
 */
static bool
expand(const mg_state_t *st, const char *tmpl, mg_buf_t *out, mg_error_t *error)
{
    for (const char *p = tmpl; *p; p++) {
        const char *at = strchr(p, '@');
        size_t n = at != NULL ? (size_t)(at - p) : strlen(p);
        if (!mg_buf_append(out, p, n, error))
            return false;
        if (at == NULL)
            break;
        if (!mg_buf_append_str(out, st->quoted, error))
            return false;
        p = at;
    }
    return mg_buf_append(out, "", 0, error);
}

PGresult *
mg_state__query_bin(mg_state_t *st, const char *tmpl, int n, const char *const *values,
                    const int *lengths, const int *formats, int result_format, mg_error_t *error)
{
    mg_buf_reset(&st->sql);
    if (!expand(st, tmpl, &st->sql, error))
        return NULL;
    return mg_pg_query_params(st->conn, st->sql.data, n, values, lengths, formats, result_format,
                              error);
}

PGresult *
mg_state__query(mg_state_t *st, const char *tmpl, int n, const char *const *values,
                mg_error_t *error)
{
    return mg_state__query_bin(st, tmpl, n, values, NULL, NULL, 0, error);
}

bool
mg_state__exec(mg_state_t *st, const char *tmpl, int n, const char *const *values,
               mg_error_t *error)
{
    PGresult *res = mg_state__query(st, tmpl, n, values, error);

    PQclear(res);
    return res != NULL;
}

const char *
mg_state__i64(char *buf, int64_t v)
{
    snprintf(buf, 32, "%" PRId64, v);
    return buf;
}

const char *
mg_state__u32(char *buf, uint32_t v)
{
    snprintf(buf, 32, "%" PRIu32, v);
    return buf;
}

char *
mg_state__dup(const char *s, bool *failed)
{
    char *d;

    if (s == NULL)
        return NULL;
    d = strdup(s);
    if (d == NULL)
        *failed = true;
    return d;
}

bool
mg_state__oom(mg_error_t *error)
{
    return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
}

void
mg_state__copy(const PGresult *res, int r, int c, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s", PQgetisnull(res, r, c) ? "" : PQgetvalue(res, r, c));
}

int64_t
mg_state__int64(const PGresult *res, int r, int c)
{
    return PQgetisnull(res, r, c) ? 0 : strtoll(PQgetvalue(res, r, c), NULL, 10);
}

bool
mg_state__each_row(PGresult *res, mg_state_doc_fn fn, void *ctx, mg_error_t *error)
{
    bool ok = res != NULL;

    for (int r = 0; ok && r < PQntuples(res); r++)
        ok = fn(ctx, PQgetvalue(res, r, 0), PQgetvalue(res, r, 1), PQgetvalue(res, r, 2), error);
    PQclear(res);
    return ok;
}

/* ---- the schema ---- */

bool
mg_state_ddl(const mg_state_t *st, mg_buf_t *out, mg_error_t *error)
{
    bool ok = true;

    for (int i = 0; ok && state_v1[i] != NULL; i++)
        ok = expand(st, state_v1[i], out, error) && mg_buf_append_str(out, ";\n", error);
    /* tables kept beside the files that own their statements */
    const char *const *const more[] = {mg_state__follow_ddl, mg_state__fence_ddl};
    for (size_t m = 0; m < sizeof(more) / sizeof(more[0]); m++)
        for (int i = 0; ok && more[m][i] != NULL; i++)
            ok = expand(st, more[m][i], out, error) && mg_buf_append_str(out, ";\n", error);
    return ok;
}

bool
mg_state_drop_ddl(mg_state_t *st, mg_buf_t *out, mg_error_t *error)
{
    PGresult *res = mg_state__query(
        st, "SELECT DISTINCT schema_name, table_name FROM @.collections ORDER BY 1, 2", 0, NULL,
        error);
    bool ok = res != NULL;

    for (int r = 0; ok && r < PQntuples(res); r++)
        ok = mg_buf_append_str(out, "DROP TABLE IF EXISTS ", error) &&
             mg_schema_quote_ident(PQgetvalue(res, r, 0), out, error) &&
             mg_buf_append_str(out, ".", error) &&
             mg_schema_quote_ident(PQgetvalue(res, r, 1), out, error) &&
             mg_buf_append_str(out, ";\n", error);
    PQclear(res);
    return ok && expand(st, "DROP SCHEMA @ CASCADE;\n", out, error);
}

bool
mg_state_probe(mg_state_t *st, bool *exists, int *version, mg_error_t *error)
{
    const char *params[1] = {st->name};
    PGresult *res;
    bool has_meta;

    res = mg_pg_query(st->conn, "SELECT 1 FROM pg_namespace WHERE nspname = $1", 1, params, error);
    if (res == NULL)
        return false;
    *exists = PQntuples(res) > 0;
    PQclear(res);
    *version = 0;
    if (!*exists)
        return true;
    res = mg_pg_query(st->conn,
                      "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                      "WHERE n.nspname = $1 AND c.relname = 'meta'",
                      1, params, error);
    if (res == NULL)
        return false;
    has_meta = PQntuples(res) > 0;
    PQclear(res);
    if (!has_meta)
        return true;
    res = mg_state__query(st, "SELECT value FROM @.meta WHERE key = 'schema_version'", 0, NULL,
                          error);
    if (res == NULL)
        return false;
    if (PQntuples(res) == 1)
        *version = atoi(PQgetvalue(res, 0, 0));
    PQclear(res);
    return true;
}

bool
mg_state_require(mg_state_t *st, mg_error_t *error)
{
    bool exists;
    int version;

    if (!mg_state_probe(st, &exists, &version, error))
        return false;
    if (!exists || version == 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_MISSING,
                            "the target has no state schema \"%s\" of migrate: run migrate init "
                            "first",
                            st->name);
    if (version != MG_STATE_VERSION)
        return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_VERSION,
                            "state schema \"%s\" has version %d; this migrate understands %d",
                            st->name, version, MG_STATE_VERSION);
    return true;
}

bool
mg_state_begin(mg_state_t *st, mg_error_t *error)
{
    return mg_pg_exec(st->conn, "BEGIN", error);
}

bool
mg_state_commit(mg_state_t *st, mg_error_t *error)
{
    return mg_pg_exec(st->conn, "COMMIT", error);
}

void
mg_state_rollback(mg_state_t *st)
{
    mg_pg_rollback(st->conn);
}

bool
mg_state_event_add(mg_state_t *st, const char *kind, const char *data_json, mg_error_t *error)
{
    const char *p[2] = {kind, data_json != NULL ? data_json : "{}"};

    return mg_state__exec(st, "INSERT INTO @.events (kind, data) VALUES ($1, $2::jsonb)", 2, p,
                          error);
}

/* ---- the migration row ---- */

static bool
no_migration_row(const mg_state_t *st, mg_error_t *error)
{
    return mg_error_set(error, MG_ERROR_DOMAIN_STATE, MG_STATE_ERR_EMPTY,
                        "state schema \"%s\" has no migration row: run migrate init first",
                        st->name);
}

bool
mg_state_migration_get(mg_state_t *st, mg_state_migration_t *out, mg_error_t *error)
{
    PGresult *res = mg_state__query(
        st,
        "SELECT phase, t0_ts, t0_inc, type_fidelity, source_uri, to_char(created_at AT TIME ZONE "
        "'UTC', 'YYYY-MM-DD HH24:MI:SS') FROM @.migration WHERE id = 1",
        0, NULL, error);

    if (res == NULL)
        return false;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return no_migration_row(st, error);
    }
    memset(out, 0, sizeof(*out));
    mg_state__copy(res, 0, 0, out->phase, sizeof(out->phase));
    out->has_t0 = !PQgetisnull(res, 0, 1);
    out->t0_t = (uint32_t)mg_state__int64(res, 0, 1);
    out->t0_i = (uint32_t)mg_state__int64(res, 0, 2);
    mg_schema_fidelity_parse(PQgetvalue(res, 0, 3), &out->fidelity);
    mg_state__copy(res, 0, 4, out->source_uri, sizeof(out->source_uri));
    mg_state__copy(res, 0, 5, out->created_at, sizeof(out->created_at));
    PQclear(res);
    return true;
}

bool
mg_state_migration_insert(mg_state_t *st, const mg_state_migration_new_t *m, mg_error_t *error)
{
    const char *p[8] = {m->tool_version,  m->source_uri,    m->source_version, m->source_set_name,
                        m->target_schema, m->type_fidelity, m->options_json,   m->source_secret};

    return mg_state__exec(st,
                          "INSERT INTO @.migration (tool_version, source_uri, source_version, "
                          "source_set_name, target_schema, type_fidelity, options, "
                          "source_secret) VALUES ($1, $2, $3, NULLIF($4, ''), $5, $6, $7::jsonb, "
                          "$8)",
                          8, p, error);
}

bool
mg_state_t0_lock(mg_state_t *st, bool *has_t0, uint32_t *t, uint32_t *i, mg_error_t *error)
{
    PGresult *res = mg_state__query(
        st, "SELECT t0_ts, t0_inc FROM @.migration WHERE id = 1 FOR UPDATE", 0, NULL, error);

    if (res == NULL)
        return false;
    if (PQntuples(res) != 1) {
        PQclear(res);
        return no_migration_row(st, error);
    }
    *has_t0 = !PQgetisnull(res, 0, 0);
    *t = (uint32_t)mg_state__int64(res, 0, 0);
    *i = (uint32_t)mg_state__int64(res, 0, 1);
    PQclear(res);
    return true;
}

bool
mg_state_t0_set(mg_state_t *st, uint32_t t, uint32_t i, mg_error_t *error)
{
    char ts[32], inc[32];
    const char *p[2] = {mg_state__u32(ts, t), mg_state__u32(inc, i)};

    return mg_state__exec(st,
                          "UPDATE @.migration SET t0_ts = $1, t0_inc = $2, t0_recorded_at = now(), "
                          "updated_at = now() WHERE id = 1",
                          2, p, error);
}

bool
mg_state_phase_advance(mg_state_t *st, const char *to, const char *from, const char *from2,
                       mg_error_t *error)
{
    const char *p[3] = {to, from, from2 != NULL ? from2 : from};

    return mg_state__exec(st,
                          "UPDATE @.migration SET phase = $1, updated_at = now() WHERE phase IN "
                          "($2, $3)",
                          3, p, error);
}
