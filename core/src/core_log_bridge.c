/*
 * core/src/core_log_bridge.c - route libmongoc's log handler and libpq's
 * notices into the JSON-lines logger.
 */
#include "mg/core.h"

#include <libpq-fe.h>
#include <mongoc/mongoc.h>
#include <string.h>

/* mongoc_handler maps libmongoc levels onto ours; trace becomes debug. */
static void
mongoc_handler(mongoc_log_level_t mlevel, const char *domain, const char *message, void *data)
{
    mg_log_level_t level;

    switch (mlevel) {
    case MONGOC_LOG_LEVEL_ERROR:
    case MONGOC_LOG_LEVEL_CRITICAL:
        level = MG_LOG_ERROR;
        break;
    case MONGOC_LOG_LEVEL_WARNING:
        level = MG_LOG_WARNING;
        break;
    case MONGOC_LOG_LEVEL_MESSAGE:
        level = MG_LOG_NOTICE;
        break;
    case MONGOC_LOG_LEVEL_INFO:
        level = MG_LOG_INFO;
        break;
    default:
        level = MG_LOG_DEBUG;
        break;
    }
    if (!mg_log_enabled(level))
        return;
    mg_log_write(level, "mongoc", NULL, MG_LOG_FIELDS(MG_LOG_STR("log_domain", domain)), "%s",
                 message);
}

void
mg_log_install_mongoc_handler(void)
{
    mongoc_log_set_handler(mongoc_handler, NULL);
    /* Without this libmongoc prints trace lines itself in tracing builds. */
    mongoc_log_trace_disable();
}

/* pg_notice_receiver logs a NOTICE/WARNING result with its SQLSTATE. */
static void
pg_notice_receiver(void *arg, const PGresult *res)
{
    const char *sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
    mg_log_level_t level = MG_LOG_NOTICE;

    if (sev != NULL) {
        if (strcmp(sev, "WARNING") == 0)
            level = MG_LOG_WARNING;
        else if (strcmp(sev, "DEBUG") == 0)
            level = MG_LOG_DEBUG;
        else if (strcmp(sev, "INFO") == 0 || strcmp(sev, "LOG") == 0)
            level = MG_LOG_INFO;
    }
    if (!mg_log_enabled(level))
        return;
    mg_log_write(level, "libpq", NULL,
                 MG_LOG_FIELDS(MG_LOG_STR("sqlstate", state ? state : ""),
                               MG_LOG_STR("pg_severity", sev ? sev : "")),
                 "%s", msg != NULL ? msg : PQresultErrorMessage(res));
}

void
mg_log_attach_pgconn(PGconn *conn)
{
    if (conn != NULL)
        PQsetNoticeReceiver(conn, pg_notice_receiver, NULL);
}
