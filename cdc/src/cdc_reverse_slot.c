/*
 * cdc/src/cdc_reverse_slot.c - the reverse capture on the target: its
 * name, the replication connection (replication=database), the logical
 * slot (made through CREATE_REPLICATION_SLOT, dropped with
 * pg_drop_replication_slot), the publication over the migrated tables,
 * and the replica identity of tables whose key cannot give its _id back.
 */
#include "cdc_reverse_internal.h"

#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void
mg_cdc_reverse_name(const char *state_schema, char out[MG_CDC_REVERSE_NAME_SIZE])
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a, 64 bits */

    for (const unsigned char *p = (const unsigned char *)state_schema; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    snprintf(out, MG_CDC_REVERSE_NAME_SIZE, "migrate_reverse_%016" PRIx64, h);
}

bool
mg_cdc__rev_name_valid(const char *name)
{
    size_t n = strlen(name);

    return n > 0 && n < MG_CDC_REVERSE_NAME_SIZE &&
           strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") == n;
}

PGconn *
mg_cdc__rep_connect(const char *target, mg_error_t *error)
{
    /* later keywords override earlier ones: our defaults first, then target, then replication */
    const char *const keys[] = {"fallback_application_name", "connect_timeout", "dbname",
                                "replication", NULL};
    const char *const values[] = {"migrate-reverse", "10", target, "database", NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);

    if (conn == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                     "could not open a replication connection to target \"%s\": out of memory",
                     target);
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        mg_error_set_pgconn(error, conn, "could not open a replication connection to target \"%s\"",
                            target);
        PQfinish(conn);
        return NULL;
    }
    mg_log_attach_pgconn(conn);
    return conn;
}

PGresult *
mg_cdc__rep_command(PGconn *conn, const char *command, double timeout_s, mg_error_t *error)
{
    double deadline = mg_now_s() + timeout_s;
    PGresult *res = NULL, *r;

    if (!PQsendQuery(conn, command)) {
        mg_error_set_pgconn(error, conn, "could not send \"%s\" to the target", command);
        return NULL;
    }
    while (PQisBusy(conn)) {
        struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};
        int wait_ms = (int)((deadline - mg_now_s()) * 1000);

        if (wait_ms <= 0) {
            PGcancel *cancel = PQgetCancel(conn);
            char buf[256];
            if (cancel != NULL) {
                PQcancel(cancel, buf, sizeof(buf));
                PQfreeCancel(cancel);
            }
            while ((r = PQgetResult(conn)) != NULL)
                PQclear(r);
            mg_error_set(error, MG_ERROR_DOMAIN_PG, MG_ERROR_CODE_LIMIT,
                         "could not run \"%s\" on the target within %.0f s (a transaction "
                         "running on the target holds it back)",
                         command, timeout_s);
            return NULL;
        }
        if (poll(&pfd, 1, wait_ms > 1000 ? 1000 : wait_ms) < 0 && errno != EINTR) {
            mg_error_set_errno(error, errno, "could not wait for the target");
            return NULL;
        }
        if (!PQconsumeInput(conn)) {
            mg_error_set_pgconn(error, conn, "could not run \"%s\" on the target", command);
            return NULL;
        }
    }
    while ((r = PQgetResult(conn)) != NULL) {
        if (res == NULL)
            res = r;
        else
            PQclear(r);
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
        mg_error_set_pgresult(error, res, "could not run \"%s\" on the target", command);
        PQclear(res);
        return NULL;
    }
    return res;
}

bool
mg_cdc__rep_identify(PGconn *conn, uint32_t *timeline, char system_id[32], uint64_t *xlogpos,
                     mg_error_t *error)
{
    PGresult *res = mg_cdc__rep_command(conn, "IDENTIFY_SYSTEM", 30, error);
    bool ok = res != NULL && PQntuples(res) == 1 && PQnfields(res) >= 3;

    if (res != NULL && !ok)
        mg_error_set(error, MG_ERROR_DOMAIN_PG, MG_ERROR_CODE_PARSE,
                     "could not read the target's answer to IDENTIFY_SYSTEM");
    if (ok) {
        snprintf(system_id, 32, "%s", PQgetvalue(res, 0, 0));
        *timeline = (uint32_t)strtoul(PQgetvalue(res, 0, 1), NULL, 10);
        ok = mg_pgo_lsn_parse(PQgetvalue(res, 0, 2), xlogpos) ||
             mg_error_set(error, MG_ERROR_DOMAIN_PG, MG_ERROR_CODE_PARSE,
                          "could not read the target's WAL position \"%s\"", PQgetvalue(res, 0, 2));
    }
    PQclear(res);
    return ok;
}

/* drop_slot ends the walsender streaming from slot (if any) and drops it (if it exists). */
static bool
drop_slot(PGconn *conn, const char *slot, mg_error_t *error)
{
    const char *p[1] = {slot};
    double deadline = mg_now_s() + 10;
    PGresult *res;

    res = mg_pg_query(conn,
                      "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE "
                      "slot_name = $1 AND active_pid IS NOT NULL",
                      1, p, error);
    if (res == NULL)
        return false;
    PQclear(res);
    for (;;) {
        mg_error_t e;
        res = mg_pg_query(conn,
                          "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                          "WHERE slot_name = $1",
                          1, p, &e);
        if (res != NULL) {
            PQclear(res);
            return true;
        }
        /* 55006: still active while its walsender exits */
        if (strcmp(e.sqlstate, "55006") != 0 || mg_now_s() > deadline) {
            *error = e;
            mg_error_prefix(error, "could not drop replication slot \"%s\"", slot);
            return false;
        }
        usleep(100 * 1000);
    }
}

/* table_sql appends "schema"."table". */
static bool
table_sql(mg_buf_t *sql, const mg_cdc_table_t *t, mg_error_t *error)
{
    return mg_schema_quote_ident(t->schema, sql, error) && mg_buf_append_str(sql, ".", error) &&
           mg_schema_quote_ident(t->table, sql, error);
}

/* needs_full tells whether a table's deletes must carry the whole row (its key may not give
 * the _id back: a digest key, or the legacy jsonb key whose object keys jsonb reordered). */
static bool
needs_full(const mg_cdc_table_t *t)
{
    return t->key == MG_SCHEMA_KEY_CANONICAL || t->key == MG_SCHEMA_KEY_JSONB;
}

/* set_identity sets the replica identity of the tables that need it (full) or back (default). */
static bool
set_identity(PGconn *conn, const mg_cdc_table_t *tables, size_t n, bool full, mg_error_t *error)
{
    mg_buf_t sql;
    bool ok = true;

    mg_buf_init(&sql, 1u << 20);
    for (size_t k = 0; ok && k < n; k++) {
        if (!needs_full(&tables[k]))
            continue;
        mg_buf_reset(&sql);
        ok = mg_buf_append_str(&sql, "ALTER TABLE ", error) && table_sql(&sql, &tables[k], error) &&
             mg_buf_append_str(&sql, full ? " REPLICA IDENTITY FULL" : " REPLICA IDENTITY DEFAULT",
                               error) &&
             mg_pg_exec(conn, sql.data, error);
    }
    mg_buf_cleanup(&sql);
    return ok;
}

/* publication_sql runs DROP PUBLICATION IF EXISTS name and, with tables, CREATE PUBLICATION. */
static bool
publication_sql(PGconn *conn, const char *name, const mg_cdc_table_t *tables, size_t n, bool create,
                mg_error_t *error)
{
    mg_buf_t sql;
    bool ok;

    mg_buf_init(&sql, 64u << 20);
    ok = mg_buf_append_str(&sql, "DROP PUBLICATION IF EXISTS ", error) &&
         mg_schema_quote_ident(name, &sql, error) && mg_pg_exec(conn, sql.data, error);
    if (ok && create) {
        mg_buf_reset(&sql);
        ok = mg_buf_append_str(&sql, "CREATE PUBLICATION ", error) &&
             mg_schema_quote_ident(name, &sql, error) &&
             mg_buf_append_str(&sql, n > 0 ? " FOR TABLE " : "", error);
        for (size_t k = 0; ok && k < n; k++)
            ok = (k == 0 || mg_buf_append_str(&sql, ", ", error)) &&
                 table_sql(&sql, &tables[k], error);
        ok = ok && mg_pg_exec(conn, sql.data, error);
    }
    mg_buf_cleanup(&sql);
    if (!ok)
        mg_error_prefix(error, "could not %s publication \"%s\"", create ? "create" : "drop", name);
    return ok;
}

bool
mg_cdc_reverse_slot_make(PGconn *conn, const char *target, const char *name, double timeout_s,
                         mg_cdc_slot_made_t *out, mg_error_t *error)
{
    PGconn *rep = NULL;
    PGresult *res = NULL;
    mg_buf_t cmd;
    uint64_t pos;
    bool ok;

    mg_buf_init(&cmd, 1024);
    ok = drop_slot(conn, name, error) && (rep = mg_cdc__rep_connect(target, error)) != NULL &&
         mg_cdc__rep_identify(rep, &out->timeline, out->system_id, &pos, error) &&
         mg_buf_printf(&cmd, error,
                       "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput "
                       "NOEXPORT_SNAPSHOT",
                       name) &&
         (res = mg_cdc__rep_command(rep, cmd.data, timeout_s, error)) != NULL;
    if (ok && (PQntuples(res) != 1 || PQnfields(res) < 2 ||
               !mg_pgo_lsn_parse(PQgetvalue(res, 0, 1), &out->consistent_lsn)))
        ok = mg_error_set(error, MG_ERROR_DOMAIN_PG, MG_ERROR_CODE_PARSE,
                          "could not read the consistent point of replication slot \"%s\"", name);
    if (!ok)
        mg_error_prefix(error, "could not create replication slot \"%s\"", name);
    PQclear(res);
    if (rep != NULL)
        PQfinish(rep);
    mg_buf_cleanup(&cmd);
    return ok;
}

bool
mg_cdc_reverse_capture_create(PGconn *conn, const char *target, const char *name,
                              const mg_cdc_table_t *tables, size_t n, double timeout_s,
                              mg_cdc_slot_made_t *out, mg_error_t *error)
{
    char lsn[32];

    if (!set_identity(conn, tables, n, true, error) ||
        !publication_sql(conn, name, tables, n, true, error) ||
        !mg_cdc_reverse_slot_make(conn, target, name, timeout_s, out, error))
        return false;
    MG_LOG_EVENT(
        MG_LOG_NOTICE, "cdc", "reverse.capture",
        MG_LOG_FIELDS(MG_LOG_STR("slot", name), MG_LOG_UINT("tables", n),
                      MG_LOG_STR("lsn", mg_pgo_lsn_format(out->consistent_lsn, lsn, sizeof(lsn))),
                      MG_LOG_UINT("timeline", out->timeline)),
        "reverse capture ready: slot and publication \"%s\" over %zu tables from %s", name, n, lsn);
    return true;
}

bool
mg_cdc_reverse_capture_drop(PGconn *conn, const char *name, const mg_cdc_table_t *tables, size_t n,
                            mg_error_t *error)
{
    if (!drop_slot(conn, name, error) || !publication_sql(conn, name, NULL, 0, false, error) ||
        !set_identity(conn, tables, n, false, error))
        return false;
    MG_LOG_EVENT(MG_LOG_NOTICE, "cdc", "reverse.capture", MG_LOG_FIELDS(MG_LOG_STR("slot", name)),
                 "reverse capture \"%s\" dropped (slot and publication)", name);
    return true;
}
