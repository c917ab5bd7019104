/*
 * core/src/core_error.c - the mg_error_t helpers that need no library.
 */
#include "mg/core.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/*
 * store redacts raw (NUL-terminated, cut by vsnprintf when cut is true) into
 * error->message as well-formed UTF-8: cut only between characters, a byte
 * that is not UTF-8 escaped as \xNN (mg_utf8_copy). The message is written
 * to PostgreSQL (events, reasons) and to logs, which refuse or mangle a
 * character cut in two.
 */
static void
store(mg_error_t *error, char *raw, bool cut)
{
    char redacted[2 * MG_ERROR_MESSAGE_SIZE];
    size_t n;

    if (cut)
        mg_utf8_trim(raw);
    mg_redact_copy(raw, redacted, sizeof(redacted));
    n = mg_utf8_copy(error->message, sizeof(error->message), redacted, strlen(redacted));
    if (cut && n + 3 < sizeof(error->message) && (n < 3 || strcmp(error->message + n - 3, "...")))
        memcpy(error->message + n, "...", 4);
}

/* set_message formats into error->message (store). */
static void
set_message(mg_error_t *error, const char *fmt, va_list ap)
{
    char raw[2 * MG_ERROR_MESSAGE_SIZE];
    int n = vsnprintf(raw, sizeof(raw), fmt, ap);

    store(error, raw, n >= (int)sizeof(raw));
}

void
mg_error_clear(mg_error_t *error)
{
    if (error == NULL)
        return;
    error->domain = MG_ERROR_DOMAIN_NONE;
    error->code = 0;
    error->sqlstate[0] = '\0';
    error->message[0] = '\0';
}

bool
mg_error_is_set(const mg_error_t *error)
{
    return error != NULL && error->domain != MG_ERROR_DOMAIN_NONE;
}

bool
mg_error_set(mg_error_t *error, mg_error_domain_t domain, int32_t code, const char *fmt, ...)
{
    va_list ap;

    if (error == NULL)
        return false;
    error->domain = domain;
    error->code = code;
    error->sqlstate[0] = '\0';
    va_start(ap, fmt);
    set_message(error, fmt, ap);
    va_end(ap);
    return false;
}

bool
mg_error_set_errno(mg_error_t *error, int errnum, const char *fmt, ...)
{
    char context[MG_ERROR_MESSAGE_SIZE];
    char reason[128];
    va_list ap;

    if (error == NULL)
        return false;
    va_start(ap, fmt);
    if (vsnprintf(context, sizeof(context), fmt, ap) >= (int)sizeof(context))
        mg_utf8_trim(context);
    va_end(ap);
    /* strerror_r is the GNU variant under _GNU_SOURCE: it may return a static string. */
    const char *text = strerror_r(errnum, reason, sizeof(reason));
    return mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, errnum, "%s: %s", context, text);
}

void
mg_error_prefix(mg_error_t *error, const char *fmt, ...)
{
    char prefix[MG_ERROR_MESSAGE_SIZE];
    char joined[2 * MG_ERROR_MESSAGE_SIZE];
    va_list ap;
    int n;

    if (!mg_error_is_set(error))
        return;
    va_start(ap, fmt);
    if (vsnprintf(prefix, sizeof(prefix), fmt, ap) >= (int)sizeof(prefix))
        mg_utf8_trim(prefix);
    va_end(ap);
    n = snprintf(joined, sizeof(joined), "%s: %s", prefix, error->message);
    store(error, joined, n >= (int)sizeof(joined));
}

const char *
mg_error_domain_name(mg_error_domain_t domain)
{
    switch (domain) {
    case MG_ERROR_DOMAIN_NONE:
        return "none";
    case MG_ERROR_DOMAIN_CORE:
        return "core";
    case MG_ERROR_DOMAIN_SYSTEM:
        return "system";
    case MG_ERROR_DOMAIN_CONFIG:
        return "config";
    case MG_ERROR_DOMAIN_MONGO:
        return "mongo";
    case MG_ERROR_DOMAIN_PG:
        return "pg";
    case MG_ERROR_DOMAIN_ETCD:
        return "etcd";
    case MG_ERROR_DOMAIN_HTTP:
        return "http";
    case MG_ERROR_DOMAIN_STATE:
        return "state";
    }
    return "unknown";
}
