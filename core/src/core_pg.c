/*
 * core/src/core_pg.c - the PostgreSQL target through libpq: connect,
 * statements with their errors translated, and the one reconnect loop
 * (backoff, writable-node check) that every long-running part uses to
 * ride out a restart or a failover behind HAProxy.
 */
#include "mg/core.h"

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

PGconn *
mg_pg_connect(const char *conninfo, mg_error_t *error)
{
    /* expand_dbname lets conninfo be a URI or key=value string. Later
     * keywords override earlier ones: our connect_timeout default yields to
     * one conninfo sets, and client_encoding comes after it, so neither the
     * URI nor PGCLIENTENCODING can make the server read our UTF-8 text (every
     * string we send) as another encoding and convert it into mojibake. */
    const char *const keys[] = {"fallback_application_name", "connect_timeout", "dbname",
                                "client_encoding", NULL};
    const char *const values[] = {mg_log_program(), "10", conninfo, "UTF8", NULL};
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

/* statement_failed fills error from res, naming the statement by its first words only. */
static bool
statement_failed(const PGresult *res, const char *sql, mg_error_t *error)
{
    char head[120];

    snprintf(head, sizeof(head), "%.100s", sql);
    for (char *p = head; *p; p++)
        if (*p == '\n')
            *p = ' ';
    return mg_error_set_pgresult(error, res, "could not run \"%s%s\" on the target", head,
                                 strlen(sql) > 100 ? "..." : "");
}

bool
mg_pg_exec(PGconn *conn, const char *sql, mg_error_t *error)
{
    PGresult *res = PQexec(conn, sql);
    bool ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

    if (!ok)
        statement_failed(res, sql, error);
    PQclear(res);
    return ok;
}

PGresult *
mg_pg_query_params(PGconn *conn, const char *sql, int nparams, const char *const *values,
                   const int *lengths, const int *formats, int result_format, mg_error_t *error)
{
    PGresult *res = PQexecParams(conn, sql, nparams, NULL, values, lengths, formats, result_format);

    if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
        statement_failed(res, sql, error);
        PQclear(res);
        return NULL;
    }
    return res;
}

PGresult *
mg_pg_query(PGconn *conn, const char *sql, int nparams, const char *const *params,
            mg_error_t *error)
{
    return mg_pg_query_params(conn, sql, nparams, params, NULL, NULL, 0, error);
}

bool
mg_pg_text_array(const char *const *items, size_t n, mg_buf_t *out, mg_error_t *error)
{
    bool ok = mg_buf_append_str(out, "{", error);

    for (size_t i = 0; ok && i < n; i++) {
        ok = mg_buf_append_str(out, i ? ",\"" : "\"", error);
        for (const char *p = items[i]; ok && *p; p++) {
            if (*p == '"' || *p == '\\')
                ok = mg_buf_append(out, "\\", 1, error);
            ok = ok && mg_buf_append(out, p, 1, error);
        }
        ok = ok && mg_buf_append_str(out, "\"", error);
    }
    return ok && mg_buf_append_str(out, "}", error);
}

void
mg_pg_rollback(PGconn *conn)
{
    if (conn != NULL && PQstatus(conn) == CONNECTION_OK &&
        PQtransactionStatus(conn) != PQTRANS_IDLE)
        PQclear(PQexec(conn, "ROLLBACK"));
}

bool
mg_pg_lost(PGconn *conn, const mg_error_t *error)
{
    const char *st = error != NULL ? error->sqlstate : "";

    return conn == NULL || PQstatus(conn) != CONNECTION_OK || strncmp(st, "08", 2) == 0 ||
           strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 || strcmp(st, "57P03") == 0 ||
           strcmp(st, "25006") == 0;
}

bool
mg_pg_writable(PGconn *conn, mg_error_t *error)
{
    PGresult *res = mg_pg_query(
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
mg_pg_reconnect(PGconn **conn, const char *conninfo, const char *setup, const char *module,
                const char *why, double budget_s, const atomic_int *stop, int stop_at,
                mg_error_t *error)
{
    double started = mg_now_s(), wait = 0.5;
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
        *conn = mg_pg_connect(conninfo, &last);
        if (*conn != NULL && mg_pg_writable(*conn, &last) &&
            (setup == NULL || mg_pg_exec(*conn, setup, &last)))
            break;
        if (*conn != NULL)
            PQfinish(*conn);
        *conn = NULL;
        if (mg_now_s() - started + wait > budget_s) {
            *error = last;
            mg_error_prefix(error, "target did not come back within %.0f s", budget_s);
            return false;
        }
        usleep((useconds_t)(wait * 1e6));
        wait = wait * 2 > 10 ? 10 : wait * 2;
    }
    snprintf(ev, sizeof(ev), "%s.target_back", module);
    MG_LOG_EVENT(MG_LOG_NOTICE, module, ev,
                 MG_LOG_FIELDS(MG_LOG_DOUBLE("seconds", mg_now_s() - started)),
                 "target back after %.1f s", mg_now_s() - started);
    return true;
}

/* conninfo_append appends " key='value'" (quoted as libpq reads it) to out. */
static bool
conninfo_append(mg_buf_t *out, const char *key, const char *value, mg_error_t *error)
{
    if ((out->len > 0 && !mg_buf_append_str(out, " ", error)) ||
        !mg_buf_printf(out, error, "%s='", key))
        return false;
    for (const char *p = value; *p; p++) {
        bool escape = *p == '\'' || *p == '\\';
        if ((escape && !mg_buf_append(out, "\\", 1, error)) || !mg_buf_append(out, p, 1, error))
            return false;
    }
    return mg_buf_append_str(out, "'", error);
}

/*
 * uri_strip strips the password of a postgres:// URI's userinfo and any
 * password= parameter, keeping the URI's form; NULL when it is no URI.
 */
static char *
uri_strip(const char *uri)
{
    const char *auth, *hosts_end, *end = uri + strlen(uri), *at = NULL, *colon, *q;
    char sep = '?', *result = NULL;
    mg_buf_t out;
    bool ok;

    if (strncmp(uri, "postgresql://", 13) != 0 && strncmp(uri, "postgres://", 11) != 0)
        return NULL;
    auth = strstr(uri, "://") + 3;
    hosts_end = auth + strcspn(auth, "/?");
    for (const char *p = auth; p < hosts_end; p++)
        if (*p == '@')
            at = p;
    colon = at != NULL ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    q = strchr(hosts_end, '?');
    if (q == NULL)
        q = end;
    mg_buf_init(&out, strlen(uri) + 2);
    ok = mg_buf_append(&out, uri, (size_t)((colon != NULL ? colon : q) - uri), NULL) &&
         (colon == NULL || mg_buf_append(&out, at, (size_t)(q - at), NULL));
    for (const char *p = *q == '?' ? q + 1 : q; ok && *p;) { /* every parameter but password */
        size_t n = strcspn(p, "&");
        if (strncmp(p, "password=", 9) != 0) {
            ok = mg_buf_append(&out, &sep, 1, NULL) && mg_buf_append(&out, p, n, NULL);
            sep = '&';
        }
        p += n + (p[n] == '&');
    }
    if (ok && mg_buf_append(&out, "", 0, NULL))
        result = strdup(out.data);
    mg_buf_cleanup(&out);
    return result;
}

char *
mg_pg_conninfo_strip_password(const char *conninfo, bool *had_password)
{
    PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
    mg_buf_t out;
    bool ok = opts != NULL;
    char *result = NULL;

    if (had_password != NULL)
        *had_password = false;
    mg_buf_init(&out, 64 * 1024);
    for (PQconninfoOption *o = opts; ok && o->keyword != NULL; o++) {
        if (o->val == NULL)
            continue;
        if (strcmp(o->keyword, "password") == 0) {
            if (had_password != NULL)
                *had_password = true;
            continue;
        }
        ok = conninfo_append(&out, o->keyword, o->val, NULL);
    }
    if (ok && mg_buf_append(&out, "", 0, NULL))
        result = strdup(out.data);
    mg_buf_cleanup(&out);
    PQconninfoFree(opts);
    if (ok) {
        /* a URI keeps its form when stripping it textually leaves libpq no password */
        char *uri = uri_strip(conninfo);
        PQconninfoOption *check = uri != NULL ? PQconninfoParse(uri, NULL) : NULL;
        bool clean = check != NULL;
        for (PQconninfoOption *o = check; clean && o->keyword != NULL; o++)
            clean = strcmp(o->keyword, "password") != 0 || o->val == NULL;
        PQconninfoFree(check);
        if (clean) {
            free(result);
            result = uri;
        } else {
            free(uri);
        }
    }
    return result;
}
