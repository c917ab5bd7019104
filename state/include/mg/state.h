/*
 * state/include/mg/state.h - the tool's state on the target: the `_migrate`
 * schema (name configurable), its DDL, and every statement that reads or
 * writes it (docs/state-schema.md).
 *
 * No other module writes SQL on the state schema: cdc/, validate/,
 * cutover/ and migrator/ call the typed functions here.
 */
#ifndef MG_STATE_H
#define MG_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mg/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default name of the schema holding the tool's state on the target. */
#define MG_STATE_SCHEMA_DEFAULT "_migrate"

/* Version of the state schema this build writes and understands. */
#define MG_STATE_VERSION 1

/*
 * mg_state_probe tells whether the state schema exists and, when it does,
 * its recorded version (0 when the schema exists without our meta table:
 * not ours).
 */
bool mg_state_probe(struct pg_conn *conn, const char *state_schema, bool *exists, int *version,
                    mg_error_t *error);

/* mg_state_ddl appends the statements that create the state schema. */
bool mg_state_ddl(const char *state_schema, mg_buf_t *out, mg_error_t *error);

/* mg_state_event_add inserts an event row (inside the caller's transaction). */
bool mg_state_event_add(struct pg_conn *conn, const char *state_schema, const char *kind,
                        const char *data_json, mg_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MG_STATE_H */
