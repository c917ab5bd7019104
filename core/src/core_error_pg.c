/*
 * core/src/core_error_pg.c - translate libpq failures into mg_error_t,
 * keeping the SQLSTATE.
 */
#include "mg/core.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <string.h>

/* chomp copies src without trailing newlines and spaces into dst. */
static void
chomp(const char *src, char *dst, size_t dstsz)
{
    size_t len;

    if (snprintf(dst, dstsz, "%s", src ? src : "") >= (int)dstsz)
        mg_utf8_trim(dst);
    len = strlen(dst);
    while (len > 0 && (dst[len - 1] == '\n' || dst[len - 1] == ' '))
        dst[--len] = '\0';
}

bool
mg_error_set_pgresult(mg_error_t *error, const PGresult *result, const char *fmt, ...)
{
    char context[MG_ERROR_MESSAGE_SIZE];
    char primary[MG_ERROR_MESSAGE_SIZE];
    const char *sqlstate;
    const char *detail;
    va_list ap;

    if (error == NULL)
        return false;
    va_start(ap, fmt);
    if (vsnprintf(context, sizeof(context), fmt, ap) >= (int)sizeof(context))
        mg_utf8_trim(context);
    va_end(ap);

    if (result == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "%s: no result (out of memory?)", context);
        snprintf(error->sqlstate, sizeof(error->sqlstate), "%s", "53200");
        return false;
    }
    const char *msg = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
    if (msg == NULL)
        msg = PQresultErrorMessage(result);
    chomp(msg, primary, sizeof(primary));
    if (primary[0] == '\0')
        snprintf(primary, sizeof(primary), "%s", "no error message from libpq");
    detail = PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL);
    if (detail != NULL)
        mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "%s: %s (%s)", context, primary, detail);
    else
        mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "%s: %s", context, primary);
    sqlstate = PQresultErrorField(result, PG_DIAG_SQLSTATE);
    snprintf(error->sqlstate, sizeof(error->sqlstate), "%s", sqlstate ? sqlstate : "");
    return false;
}

bool
mg_error_set_pgconn(mg_error_t *error, const PGconn *conn, const char *fmt, ...)
{
    char context[MG_ERROR_MESSAGE_SIZE];
    char reason[MG_ERROR_MESSAGE_SIZE];
    va_list ap;

    if (error == NULL)
        return false;
    va_start(ap, fmt);
    if (vsnprintf(context, sizeof(context), fmt, ap) >= (int)sizeof(context))
        mg_utf8_trim(context);
    va_end(ap);
    chomp(conn ? PQerrorMessage(conn) : "no connection", reason, sizeof(reason));
    mg_error_set(error, MG_ERROR_DOMAIN_PG, 0, "%s: %s", context, reason);
    /* 08006 connection_failure: libpq gives no SQLSTATE for connection errors. */
    snprintf(error->sqlstate, sizeof(error->sqlstate), "%s", "08006");
    return false;
}
