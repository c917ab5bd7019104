/*
 * core/src/core_error_mongo.c - translate bson_error_t into mg_error_t.
 */
#include "mg/core.h"

#include <bson/bson.h>
#include <stdio.h>

bool
mg_error_set_bson(mg_error_t *error, const bson_error_t *bson_error, const char *fmt, ...)
{
    char context[MG_ERROR_MESSAGE_SIZE];
    va_list ap;

    if (error == NULL)
        return false;
    va_start(ap, fmt);
    if (vsnprintf(context, sizeof(context), fmt, ap) >= (int)sizeof(context))
        mg_utf8_trim(context);
    va_end(ap);
    if (bson_error == NULL || bson_error->message[0] == '\0')
        return mg_error_set(error, MG_ERROR_DOMAIN_MONGO,
                            bson_error ? (int32_t)bson_error->code : 0, "%s", context);
    return mg_error_set(error, MG_ERROR_DOMAIN_MONGO, (int32_t)bson_error->code, "%s: %s", context,
                        bson_error->message);
}
