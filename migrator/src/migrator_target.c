/*
 * migrator/src/migrator_target.c - the PostgreSQL target through libpq.
 */
#include "migrator_internal.h"

#include <stdio.h>
#include <string.h>

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
