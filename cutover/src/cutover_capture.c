/*
 * cutover/src/cutover_capture.c - the way back, prepared by the flip
 * before anything of it happens (docs/cutover.md "The way back"): the
 * reverse capture (a publication over the migrated tables and a logical
 * replication slot, mg_cdc_reverse_capture_create) is made while the
 * source is still frozen and before the application is told about
 * PostgreSQL, so every write the application makes there is after the
 * slot's consistent point. Recorded in the state's `reverse` row.
 */
#include "cutover_internal.h"
#include "mg/cdc_reverse.h"
#include "mg/state_fallback.h"

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long making the slot may wait for transactions running on the target. */
#define SLOT_WAIT_S 30.0

bool
mg_cutover__wal_level(cutover_t *c, char *out, size_t n, mg_error_t *error)
{
    PGresult *res =
        mg_pg_query(mg_state_conn(c->st), "SELECT current_setting('wal_level')", 0, NULL, error);

    if (res == NULL)
        return false;
    snprintf(out, n, "%s", PQgetvalue(res, 0, 0));
    PQclear(res);
    return true;
}

bool
mg_cutover__capture(cutover_t *c, mg_error_t *error)
{
    char name[MG_CDC_REVERSE_NAME_SIZE];
    mg_state_colls_t colls = {0};
    mg_state_reverse_t cap;
    mg_cdc_table_t *tables = NULL;
    mg_cdc_slot_made_t made;
    int32_t generation = 0;
    bool ok;

    if (c->s->no_fallback)
        return true;
    ok = mg_state_reverse_ensure(c->st, error) && mg_state_reverse_get(c->st, &cap, error);
    /* a resumed flip keeps the capture of its first attempt: the application may be writing */
    if (ok && c->resumed && cap.exists && strcmp(cap.status, "ready") == 0)
        return true;
    ok = ok && mg_state_collections_load(c->st, false, &colls, error);
    if (ok && (tables = calloc(colls.n + 1, sizeof(*tables))) == NULL)
        ok = mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    for (size_t k = 0; ok && k < colls.n; k++) {
        const mg_state_coll_t *sc = &colls.items[k];
        tables[k] = (mg_cdc_table_t){sc->db, sc->coll, sc->schema, sc->table, sc->key};
    }
    mg_cdc_reverse_name(mg_state_schema(c->st), name);
    ok = ok &&
         mg_cdc_reverse_capture_create(mg_state_conn(c->st), c->s->target, name, tables, colls.n,
                                       SLOT_WAIT_S, &made, error) &&
         mg_state_reverse_created(c->st, name, name, made.consistent_lsn, made.timeline,
                                  made.system_id, &generation, error);
    if (!ok)
        mg_error_prefix(error, "could not prepare the way back (--no-fallback skips it)");
    free(tables);
    mg_state_colls_cleanup(&colls);
    return ok;
}
