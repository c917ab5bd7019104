/*
 * cdc/src/cdc_internal.h - what the follower exposes to its unit tests.
 */
#ifndef MG_CDC_INTERNAL_H
#define MG_CDC_INTERNAL_H

#include "mg/cdc.h"

/*
 * mg_cdc__stream_args builds the change stream's pipeline and options
 * (both initialised here; the caller destroys them): $match on the
 * databases of tables (each once), fullDocument updateLookup or, slim, a
 * $project that drops it (for an event over 16 MB), batches of 5000,
 * maxAwaitTimeMS 500, and startAfter token or startAtOperationTime T0.
 */
void mg_cdc__stream_args(const mg_cdc_table_t *tables, size_t ntables, bool slim,
                         const bson_t *token, uint32_t t0_t, uint32_t t0_i, bson_t *pipeline,
                         bson_t *opts);

/*
 * mg_cdc__exit_code maps the error that ended a follower to its exit code:
 * by domain, MG_EXIT_FAILURE at least, MG_EXIT_INTERNAL for a violated
 * invariant (the checkpoint moving backwards).
 */
int mg_cdc__exit_code(const mg_error_t *error);

#endif /* MG_CDC_INTERNAL_H */
