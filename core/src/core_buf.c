/*
 * core/src/core_buf.c - growable byte buffer with a hard cap.
 */
#include "mg/core.h"

#include <stdlib.h>
#include <string.h>

void
mg_buf_init(mg_buf_t *buf, size_t limit)
{
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
    buf->limit = limit;
}

void
mg_buf_cleanup(mg_buf_t *buf)
{
    if (buf == NULL)
        return;
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
    buf->cap = 0;
}

void
mg_buf_reset(mg_buf_t *buf)
{
    buf->len = 0;
    if (buf->data != NULL)
        buf->data[0] = '\0';
}

bool
mg_buf_reserve(mg_buf_t *buf, size_t more, mg_error_t *error)
{
    size_t need, cap;
    char *grown;

    if (more > buf->limit || buf->len > buf->limit - more)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                            "buffer limit of %zu bytes exceeded (%zu more requested, %zu used)",
                            buf->limit, more, buf->len);
    need = buf->len + more;
    if (need <= buf->cap && buf->data != NULL)
        return true;
    cap = buf->cap > 0 ? buf->cap : 256;
    while (cap < need)
        cap = cap > buf->limit / 2 ? buf->limit : cap * 2;
    grown = realloc(buf->data, cap + 1);
    if (grown == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                            "out of memory growing a buffer to %zu bytes", cap);
    buf->data = grown;
    buf->cap = cap;
    buf->data[buf->len] = '\0';
    return true;
}

bool
mg_buf_append(mg_buf_t *buf, const void *bytes, size_t n, mg_error_t *error)
{
    if (!mg_buf_reserve(buf, n, error))
        return false;
    if (n > 0)
        memcpy(buf->data + buf->len, bytes, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
    return true;
}

bool
mg_buf_append_str(mg_buf_t *buf, const char *s, mg_error_t *error)
{
    return mg_buf_append(buf, s, strlen(s), error);
}

bool
mg_buf_printf(mg_buf_t *buf, mg_error_t *error, const char *fmt, ...)
{
    va_list ap, ap2;
    int n;

    va_start(ap, fmt);
    va_copy(ap2, ap);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        va_end(ap2);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "could not format text");
    }
    /* the NUL slot after cap is always allocated, so n bytes of room suffice */
    if (!mg_buf_reserve(buf, (size_t)n, error)) {
        va_end(ap2);
        return false;
    }
    vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    buf->len += (size_t)n;
    return true;
}
