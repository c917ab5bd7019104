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

/*
 * mg_validate__fields_json writes a mismatch's field diffs as one JSON array
 * (path, source, source_type, target, target_type): the report's and the
 * state's form.
 */
void mg_validate__fields_json(struct yajl_gen_t *g, const mg_validate_mismatch_t *m);

/* What a validation run found, for its status and exit code. */
typedef struct {
    bool failed; /* a collection could not be checked */
    int64_t persistent;
    int64_t mismatches;
    int64_t shadow_mismatches;
} mg_validate__outcome_t;

/* mg_validate__status returns "failed", "persistent_mismatch", "mismatch" or "clean". */
const char *mg_validate__status(const mg_validate__outcome_t *outcome);

/*
 * mg_validate__exit_code is the rule of docs/validate.md for a run that did
 * not fail: MG_EXIT_MISMATCH for a mismatch that persisted across runs (or
 * any mismatch, shadow reads included, with fail_on_any), else MG_EXIT_OK.
 */
int mg_validate__exit_code(const mg_validate__outcome_t *outcome, bool fail_on_any);

/*
 * mg_validate__scan_filters splits a source scan like the copy did: one
 * filter per stored partition filter (blobs, BSON), then
 * {_id: {$not: {$type: [every type named]}}} for documents of a type the
 * plan did not see. No partitions: no filters (one scan of {}). *filters is
 * malloc'd, each bson_t destroyed by the caller. ns names the collection
 * in errors.
 */
bool mg_validate__scan_filters(const mg_state_blobs_t *blobs, const char *ns, bson_t ***filters,
                               size_t *nfilters, mg_error_t *error);

/*
 * mg_validate__jsonpath_filter appends the SQL/JSON path predicate of a
 * MongoDB filter ("$ ? (...)", lax mode; validate_shadow.c). A filter with
 * no exact translation fails with MG_VALIDATE_ERR_NOT_TRANSLATED.
 */
bool mg_validate__jsonpath_filter(const bson_t *filter, mg_buf_t *out, mg_error_t *error);

#endif /* MG_VALIDATE_INTERNAL_H */
