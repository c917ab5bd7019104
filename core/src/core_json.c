/*
 * core/src/core_json.c - the yajl generator helpers every JSON writer of
 * the project shares: NULL-safe strings, key/value pairs, and the handover
 * of a generator's text into an mg_buf_t.
 */
#include "mg/core.h"

#include <string.h>
#include <yajl/yajl_gen.h>

void
mg_json_str(yajl_gen g, const char *s)
{
    if (s == NULL)
        yajl_gen_null(g);
    else
        yajl_gen_string(g, (const unsigned char *)s, strlen(s));
}

void
mg_json_kstr(yajl_gen g, const char *key, const char *value)
{
    mg_json_str(g, key);
    mg_json_str(g, value);
}

void
mg_json_kint(yajl_gen g, const char *key, int64_t value)
{
    mg_json_str(g, key);
    yajl_gen_integer(g, (long long)value);
}

void
mg_json_kdouble(yajl_gen g, const char *key, double value)
{
    mg_json_str(g, key);
    yajl_gen_double(g, value);
}

void
mg_json_kbool(yajl_gen g, const char *key, bool value)
{
    mg_json_str(g, key);
    yajl_gen_bool(g, value);
}

void
mg_json_knumber(yajl_gen g, const char *key, const char *text)
{
    mg_json_str(g, key);
    if (text == NULL || *text == '\0')
        yajl_gen_null(g);
    else
        yajl_gen_number(g, text, strlen(text));
}

bool
mg_json_take(yajl_gen g, mg_buf_t *out, mg_error_t *error)
{
    const unsigned char *text;
    size_t len;
    bool ok;

    if (yajl_gen_get_buf(g, &text, &len) != yajl_gen_status_ok)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_GENERIC,
                            "could not render JSON: the document is incomplete");
    ok = mg_buf_append(out, text, len, error);
    yajl_gen_clear(g);
    return ok;
}

char *
mg_json_dup(yajl_gen g)
{
    const unsigned char *text;
    size_t len;

    if (yajl_gen_get_buf(g, &text, &len) != yajl_gen_status_ok)
        return NULL;
    return strndup((const char *)text, len);
}
