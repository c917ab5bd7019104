/*
 * migrator/src/migrator_target.c - the PostgreSQL target through libpq.
 */
#include "migrator_internal.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

PGconn *
mg_migrator__target_connect(const char *conninfo, mg_error_t *error)
{
    /* expand_dbname lets conninfo be a URI or key=value string. Later
     * keywords override earlier ones, so conninfo comes last: our
     * connect_timeout default yields to one it sets. */
    const char *const keys[] = {"fallback_application_name", "connect_timeout", "dbname", NULL};
    const char *const values[] = {"migrate", "10", conninfo, NULL};
    PGconn *conn = PQconnectdbParams(keys, values, 1);

    if (conn == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                     "could not connect to target \"%s\": out of memory", conninfo);
        return NULL;
    }
    if (PQstatus(conn) != CONNECTION_OK) {
        mg_error_set_pgconn(error, conn, "could not connect to target \"%s\"", conninfo);
        PQfinish(conn);
        return NULL;
    }
    mg_log_attach_pgconn(conn);
    return conn;
}

bool
mg_migrator__target_exec(PGconn *conn, const char *sql, mg_error_t *error)
{
    PGresult *res = PQexec(conn, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

    if (!ok) {
        char head[120];
        /* name the statement by its first words, never its whole text */
        snprintf(head, sizeof(head), "%.100s", sql);
        for (char *p = head; *p; p++)
            if (*p == '\n')
                *p = ' ';
        mg_error_set_pgresult(error, res, "could not run \"%s%s\" on the target", head,
                              strlen(sql) > 100 ? "..." : "");
    }
    PQclear(res);
    return ok;
}

PGresult *
mg_migrator__target_query(PGconn *conn, const char *sql, int nparams, const char *const *params,
                          mg_error_t *error)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);

    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
        char head[120];
        snprintf(head, sizeof(head), "%.100s", sql);
        for (char *p = head; *p; p++)
            if (*p == '\n')
                *p = ' ';
        mg_error_set_pgresult(error, res, "could not run \"%s%s\" on the target", head,
                              strlen(sql) > 100 ? "..." : "");
        PQclear(res);
        return NULL;
    }
    return res;
}

bool
mg_migrator__target_lost(PGconn *conn, const mg_error_t *error)
{
    const char *st = error != NULL ? error->sqlstate : "";

    return conn == NULL || PQstatus(conn) != CONNECTION_OK || strncmp(st, "08", 2) == 0 ||
           strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0 ||
           strcmp(st, "25006") == 0;
}

bool
mg_migrator__target_writable(PGconn *conn, mg_error_t *error)
{
    PGresult *res = mg_migrator__target_query(
        conn, "SELECT pg_is_in_recovery() OR current_setting('transaction_read_only')::bool", 0,
        NULL, error);
    bool ok = res != NULL && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "f") == 0;

    if (res != NULL && !ok)
        mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                     "the target answers but is read-only (a standby, or a primary being "
                     "demoted): waiting for a writable primary");
    PQclear(res);
    return ok;
}

bool
mg_migrator__target_reconnect(PGconn **conn, const char *conninfo, const char *setup,
                              const char *module, const char *why, double budget_s,
                              const atomic_int *stop, int stop_at, mg_error_t *error)
{
    double started = mg_migrator__now_s(), wait = 0.5;
    char ev[64];
    mg_error_t last;

    mg_error_clear(&last);
    snprintf(ev, sizeof(ev), "%s.target_lost", module);
    MG_LOG_EVENT(MG_LOG_WARNING, module, ev, NULL, 0, "lost the target: %s; reconnecting", why);
    if (*conn != NULL)
        PQfinish(*conn);
    *conn = NULL;
    for (;;) {
        if (stop != NULL && atomic_load(stop) >= stop_at) {
            mg_error_set(error, MG_ERROR_DOMAIN_PG, 0,
                         "stopped while waiting for the target to come back (%s)", why);
            return false;
        }
        *conn = mg_migrator__target_connect(conninfo, &last);
        if (*conn != NULL && mg_migrator__target_writable(*conn, &last) &&
            (setup == NULL || mg_migrator__target_exec(*conn, setup, &last)))
            break;
        if (*conn != NULL)
            PQfinish(*conn);
        *conn = NULL;
        if (mg_migrator__now_s() - started + wait > budget_s) {
            *error = last;
            mg_error_prefix(error, "target did not come back within %.0f s", budget_s);
            return false;
        }
        usleep((useconds_t)(wait * 1e6));
        wait = wait * 2 > 10 ? 10 : wait * 2;
    }
    snprintf(ev, sizeof(ev), "%s.target_back", module);
    MG_LOG_EVENT(MG_LOG_NOTICE, module, ev,
                 MG_LOG_FIELDS(MG_LOG_DOUBLE("seconds", mg_migrator__now_s() - started)),
                 "target back after %.1f s", mg_migrator__now_s() - started);
    return true;
}

const char *
mg_migrator__human_bytes(int64_t n, char *buf, size_t bufsz)
{
    static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB"};
    double v = (double)n;
    int u = 0;

    while (v >= 1024.0 && u < 5) {
        v /= 1024.0;
        u++;
    }
    if (u == 0)
        snprintf(buf, bufsz, "%lld B", (long long)n);
    else
        snprintf(buf, bufsz, "%.1f %s", v, units[u]);
    return buf;
}

const char *
mg_migrator__human_count(int64_t n, char *buf, size_t bufsz)
{
    if (n >= 1000000000)
        snprintf(buf, bufsz, "%.1fG", (double)n / 1e9);
    else if (n >= 1000000)
        snprintf(buf, bufsz, "%.1fM", (double)n / 1e6);
    else if (n >= 10000)
        snprintf(buf, bufsz, "%.1fk", (double)n / 1e3);
    else
        snprintf(buf, bufsz, "%lld", (long long)n);
    return buf;
}
