/*
 * validate/src/validate_internal.h - helpers shared by the validate module's
 * files: the raw bytes of a BSON element's value, canonical documents.
 */
#ifndef MG_VALIDATE_INTERNAL_H
#define MG_VALIDATE_INTERNAL_H

#include "mg/validate.h"

/*
 * mg_validate__value_bytes points *data and *len at the value bytes of the
 * element iter is on (borrowed from the iterated document): from the first
 * data byte to the next element.
 */
void mg_validate__value_bytes(const bson_iter_t *iter, const uint8_t **data, size_t *len);

/*
 * The key the shadow-read reader gives the query operator $type (libbson's
 * JSON reader would take it for the legacy binary form).
 */
#define MG_VALIDATE_TYPE_KEY "$__mg_type"

/*
 * mg_validate__jsonb_normalize appends json (len bytes, the schema
 * renderer's output) rewritten in jsonb's canonical text form to out;
 * scratch is working memory. Fails on text it cannot read (out restored).
 */
bool mg_validate__jsonb_normalize(const char *json, size_t len, mg_buf_t *out, mg_buf_t *scratch,
                                  mg_error_t *error);

/*
 * mg_validate__jsonb_id_span finds the value text of the top-level "_id" in
 * jsonb-form text (borrowed); false when there is none.
 */
bool mg_validate__jsonb_id_span(const char *text, size_t len, const char **v, size_t *vlen);

#endif /* MG_VALIDATE_INTERNAL_H */
