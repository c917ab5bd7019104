/*
 * migrator/src/cli_status.c - `migrate status`: phase, per-collection copy
 * progress, live workers, failed partitions and invalid documents, all
 * read from the state schema (through state/), so it works from any host
 * while another process copies.
 */
#include "migrator_internal.h"
#include "mg/cdc_reverse.h"
#include "mg/state_fallback.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>

typedef struct {
    char *target;
    char *state_schema;
    bool json;
} status_opts_t;

static const mg_config_option_t status_options[] = {
    MG_MIGRATOR_OPTION_TARGET(status_opts_t, target),
    MG_MIGRATOR_OPTION_STATE_SCHEMA(status_opts_t, state_schema),
    MG_MIGRATOR_OPTION_JSON(status_opts_t, json, "print the status as one JSON object"),
};

/* A follower is taken to be running while its heartbeat is this recent (docs/cdc.md). */
#define FOLLOWER_WINDOW_MS 5000

/* Everything status shows, read in one go. */
typedef struct {
    mg_state_migration_t mig;
    mg_state_checkpoint_t cp;
    mg_state_follower_t fo;
    mg_state_colls_t colls;
    mg_state_rows_t workers, failed, invalid;
    mg_state_reverse_t rev; /* the way back (rev.exists false: none) */
    mg_state_slot_t slot;
    mg_state_rows_t after; /* source writes seen after the cutover, never applied */
} status_t;

static void
status_cleanup(status_t *s)
{
    mg_state_checkpoint_cleanup(&s->cp);
    mg_state_colls_cleanup(&s->colls);
    mg_state_rows_cleanup(&s->workers);
    mg_state_rows_cleanup(&s->failed);
    mg_state_rows_cleanup(&s->invalid);
    mg_state_rows_cleanup(&s->after);
}

/* reverse_read reads the reverse capture and its slot (none before a cutover made one). */
static bool
reverse_read(mg_state_t *st, status_t *s, mg_error_t *error)
{
    if (!mg_state_reverse_get(st, &s->rev, error)) {
        if (strcmp(error->sqlstate, "42P01") != 0) /* the table: made by the first cutover */
            return false;
        mg_error_clear(error);
        s->rev.exists = false;
    }
    return !s->rev.exists || mg_state_slot_get(st, s->rev.slot, &s->slot, error);
}

static bool
status_read(mg_state_t *st, status_t *s, mg_error_t *error)
{
    return mg_state_migration_get(st, &s->mig, error) &&
           mg_state_collections_load(st, true, &s->colls, error) &&
           mg_state_live_workers(st, &s->workers, error) &&
           mg_state_failed_partitions(st, 50, &s->failed, error) &&
           mg_state_invalid_docs(st, 50, &s->invalid, error) &&
           mg_state_checkpoint_get(st, 0, &s->cp, error) &&
           mg_state_follower_get(st, FOLLOWER_WINDOW_MS, &s->fo, error) &&
           mg_state_after_cutover_list(st, 50, &s->after, error) && reverse_read(st, s, error);
}

/* json_follower writes who applies the stream: alive, name, heartbeat, lag when known. */
static void
json_follower(yajl_gen g, const mg_state_follower_t *fo)
{
    mg_json_str(g, "lag_s");
    if (fo->alive && fo->lag_s >= 0)
        yajl_gen_double(g, round(fo->lag_s * 10) / 10);
    else
        yajl_gen_null(g); /* no follower running: the lag is not known without the source */
    mg_json_str(g, "follower");
    if (!fo->exists) {
        yajl_gen_null(g);
        return;
    }
    yajl_gen_map_open(g);
    mg_json_kstr(g, "name", fo->name);
    mg_json_kbool(g, "alive", fo->alive);
    mg_json_kdouble(g, "heartbeat_age_s", round(fo->beat_age_s * 10) / 10);
    mg_json_kstr(g, "started_at", fo->started_at);
    mg_json_kstr(g, "stop_reason", fo->stop_reason);
    yajl_gen_map_close(g);
}

static void
json_stream(yajl_gen g, const mg_state_checkpoint_t *cp, const mg_state_follower_t *fo)
{
    mg_json_str(g, "change_stream");
    if (!cp->applied) {
        yajl_gen_null(g);
        return;
    }
    yajl_gen_map_open(g);
    mg_json_str(g, "cluster_time");
    yajl_gen_map_open(g);
    mg_json_kint(g, "t", cp->t);
    mg_json_kint(g, "i", cp->i);
    yajl_gen_map_close(g);
    json_follower(g, fo);
    mg_json_kint(g, "applied_events", cp->applied_events);
    mg_json_kdouble(g, "events_per_s", cp->events_per_s);
    mg_json_kstr(g, "updated_at", cp->updated_at);
    mg_json_kbool(g, "history_lost", cp->history_lost);
    yajl_gen_map_close(g);
}

static void
json_reverse(yajl_gen g, const status_t *s)
{
    char lsn[32];

    mg_json_str(g, "reverse");
    if (!s->rev.exists) {
        yajl_gen_null(g);
        return;
    }
    yajl_gen_map_open(g);
    mg_json_kstr(g, "slot", s->rev.slot);
    mg_json_kint(g, "generation", s->rev.generation);
    mg_json_kstr(g, "status", s->rev.status);
    mg_json_kbool(g, "slot_exists", s->slot.exists);
    mg_json_kbool(g, "slot_active", s->slot.active);
    mg_json_kstr(g, "wal_status", s->slot.wal_status);
    mg_json_kint(g, "retained_bytes", s->slot.retained_bytes);
    mg_json_kint(g, "max_slot_wal_keep_size", s->slot.max_keep_bytes);
    mg_json_kstr(g, "applied_lsn",
                 s->rev.has_applied ? mg_cdc_lsn_text(s->rev.applied_lsn, lsn, sizeof(lsn)) : "");
    mg_json_kint(g, "applied_txns", s->rev.applied_txns);
    mg_json_kint(g, "applied_changes", s->rev.applied_changes);
    mg_json_kdouble(g, "events_per_s", s->rev.events_per_s);
    mg_json_kdouble(g, "caught_up_age_s", s->rev.lag_s);
    yajl_gen_map_close(g);
}

/* print_reverse prints the way back: the slot, what MongoDB has, the WAL it keeps. */
static void
print_reverse(const status_t *s)
{
    char lsn[32], a[32], b[32];

    if (!s->rev.exists)
        return;
    printf("reverse slot %s (generation %d, %s)", s->rev.slot, (int)s->rev.generation,
           s->rev.status);
    if (s->rev.has_applied)
        printf(": MongoDB at %s, %lld transactions applied, %.1f events/s",
               mg_cdc_lsn_text(s->rev.applied_lsn, lsn, sizeof(lsn)),
               (long long)s->rev.applied_txns, s->rev.events_per_s);
    printf("\n");
    if (!s->slot.exists) {
        if (strcmp(s->rev.status, "dropped") != 0)
            printf("        SLOT MISSING (a failover of the target?): writes to PostgreSQL since "
                   "are not carried back\n");
        return;
    }
    printf("        %s of WAL kept by the slot (%s, %s), max_slot_wal_keep_size %s\n",
           mg_format_bytes(s->slot.retained_bytes, a, sizeof(a)),
           s->slot.active ? "a reverse sync reads it" : "no reverse sync reads it",
           s->slot.wal_status,
           s->slot.max_keep_bytes < 0 ? "unbounded"
                                      : mg_format_bytes(s->slot.max_keep_bytes, b, sizeof(b)));
    if (s->slot.max_keep_bytes < 0 && strcmp(s->rev.status, "ready") == 0)
        printf("        warning: a slot no one reads keeps WAL until the disk fills: run migrate "
               "sync --reverse --follow, and set max_slot_wal_keep_size\n");
}

static void
json_collections(yajl_gen g, const mg_state_colls_t *colls)
{
    mg_json_str(g, "collections");
    yajl_gen_array_open(g);
    for (size_t r = 0; r < colls->n; r++) {
        const mg_state_coll_t *c = &colls->items[r];
        char table[600];
        snprintf(table, sizeof(table), "%s.%s", c->schema, c->table);
        yajl_gen_map_open(g);
        mg_json_kstr(g, "namespace", c->db);
        mg_json_kstr(g, "collection", c->coll);
        mg_json_kstr(g, "table", table);
        mg_json_kstr(g, "status", c->status);
        mg_json_kint(g, "docs_estimated", c->doc_count);
        mg_json_kint(g, "partitions", c->parts_total);
        mg_json_kint(g, "partitions_done", c->parts_done);
        mg_json_kint(g, "partitions_failed", c->parts_failed);
        mg_json_kint(g, "docs_copied", c->docs_copied);
        mg_json_kint(g, "bytes_copied", c->bytes_copied);
        mg_json_kint(g, "indexes_built", c->indexes_built);
        mg_json_kint(g, "indexes_planned", c->indexes_planned);
        mg_json_kstr(g, "error", c->error != NULL ? c->error : "");
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
}

static void
json_lists(yajl_gen g, const status_t *s)
{
    mg_json_str(g, "workers");
    yajl_gen_array_open(g);
    for (size_t r = 0; r < s->workers.n; r++) {
        yajl_gen_map_open(g);
        mg_json_kstr(g, "worker", s->workers.items[r].a);
        mg_json_kint(g, "docs", s->workers.items[r].n1);
        mg_json_kint(g, "bytes", s->workers.items[r].n2);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    mg_json_str(g, "failed_partitions");
    yajl_gen_array_open(g);
    for (size_t r = 0; r < s->failed.n; r++) {
        yajl_gen_map_open(g);
        mg_json_kstr(g, "namespace", s->failed.items[r].a);
        mg_json_kint(g, "partition", s->failed.items[r].n1);
        mg_json_kstr(g, "error", s->failed.items[r].c);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    mg_json_str(g, "invalid_docs");
    yajl_gen_array_open(g);
    for (size_t r = 0; r < s->invalid.n; r++) {
        yajl_gen_map_open(g);
        mg_json_kstr(g, "namespace", s->invalid.items[r].a);
        mg_json_kstr(g, "_id", s->invalid.items[r].b);
        mg_json_kstr(g, "reason", s->invalid.items[r].c);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    mg_json_kint(g, "invalid_docs_total", s->invalid.total);
    mg_json_str(g, "after_cutover");
    yajl_gen_array_open(g);
    for (size_t r = 0; r < s->after.n; r++) {
        yajl_gen_map_open(g);
        mg_json_kstr(g, "namespace", s->after.items[r].a);
        mg_json_kstr(g, "_id", s->after.items[r].b);
        mg_json_kstr(g, "op", s->after.items[r].c);
        mg_json_kint(g, "t", s->after.items[r].n1);
        mg_json_kint(g, "i", s->after.items[r].n2);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    mg_json_kint(g, "after_cutover_total", s->after.total);
}

static bool
print_json(const status_t *s, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);
    mg_buf_t out;
    bool ok;

    if (g == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    yajl_gen_map_open(g);
    mg_json_kstr(g, "phase", s->mig.phase);
    mg_json_str(g, "t0");
    if (s->mig.has_t0) {
        yajl_gen_map_open(g);
        mg_json_kint(g, "t", s->mig.t0_t);
        mg_json_kint(g, "i", s->mig.t0_i);
        yajl_gen_map_close(g);
    } else {
        yajl_gen_null(g);
    }
    json_stream(g, &s->cp, &s->fo);
    json_reverse(g, s);
    json_collections(g, &s->colls);
    json_lists(g, s);
    yajl_gen_map_close(g);
    mg_buf_init(&out, 1u << 30);
    ok = mg_json_take(g, &out, error);
    if (ok)
        printf("%s\n", out.data);
    mg_buf_cleanup(&out);
    yajl_gen_free(g);
    return ok;
}

static void
print_collections(const mg_state_colls_t *colls)
{
    char a[32], b[32], c[32];

    printf("\n  %-32s %-10s %12s %10s %12s %8s\n", "COLLECTION", "STATUS", "DOCS COPIED", "SIZE",
           "PARTITIONS", "INDEXES");
    for (size_t r = 0; r < colls->n; r++) {
        const mg_state_coll_t *x = &colls->items[r];
        char ns[300], parts[64], failed[32] = "", idx[64];
        snprintf(ns, sizeof(ns), "%s.%s", x->db, x->coll);
        if (x->parts_failed > 0)
            snprintf(failed, sizeof(failed), " !%lld", (long long)x->parts_failed);
        snprintf(parts, sizeof(parts), "%lld/%lld%s", (long long)x->parts_done,
                 (long long)x->parts_total, failed);
        snprintf(idx, sizeof(idx), "%lld/%lld", (long long)x->indexes_built,
                 (long long)x->indexes_planned);
        snprintf(c, sizeof(c), "%s", mg_format_count(x->docs_copied, a, sizeof(a)));
        printf("  %-32s %-10s %5s of ~%-4s %10s %12s %8s\n", ns, x->status, c,
               mg_format_count(x->doc_count, b, sizeof(b)),
               mg_format_bytes(x->bytes_copied, a, sizeof(a)), parts, idx);
        if (x->error != NULL)
            printf("      error: %s\n", x->error);
    }
}

/* print_follower says who applies the stream and how far behind the source it is. */
static void
print_follower(const mg_state_follower_t *fo)
{
    if (!fo->exists)
        return;
    if (fo->alive && fo->lag_s >= 0)
        printf("        follower %s, alive (heartbeat %.1f s ago), lag %.1f s behind the "
               "source's latest write\n",
               fo->name, fo->beat_age_s, fo->lag_s);
    else if (fo->alive)
        printf("        follower %s, alive (heartbeat %.1f s ago), lag not known yet\n", fo->name,
               fo->beat_age_s);
    else
        printf("        no follower running (the last one, %s, %s %.0f s ago): the lag is not "
               "known until one runs\n",
               fo->name, fo->running ? "was last heard from" : "stopped", fo->beat_age_s);
}

static void
print_text(const status_t *s)
{
    char a[32], b[32];

    printf("phase   %s (initialised %s UTC)\n", s->mig.phase, s->mig.created_at);
    printf("source  %s\n", s->mig.source_uri);
    if (s->mig.has_t0)
        printf("T0      Timestamp(%u, %u): the change stream replays from here\n", s->mig.t0_t,
               s->mig.t0_i);
    if (s->cp.applied)
        printf("stream  checkpoint Timestamp(%u, %u), %lld events applied, %.1f events/s "
               "(updated %s UTC)%s\n",
               s->cp.t, s->cp.i, (long long)s->cp.applied_events, s->cp.events_per_s,
               s->cp.updated_at,
               s->cp.history_lost ? "\n        HISTORY LOST: run migrate sync --resync '*'" : "");
    print_follower(&s->fo);
    print_reverse(s);
    print_collections(&s->colls);
    if (s->workers.n > 0) {
        printf("\nlive copy processes (docs copied this run, incl. uncommitted):\n");
        for (size_t r = 0; r < s->workers.n; r++)
            printf("  %-40s %10s docs %10s  (updated %llds ago)\n", s->workers.items[r].a,
                   mg_format_count(s->workers.items[r].n1, a, sizeof(a)),
                   mg_format_bytes(s->workers.items[r].n2, b, sizeof(b)),
                   (long long)s->workers.items[r].n3);
    }
    if (s->failed.n > 0) {
        printf("\nfailed partitions:\n");
        for (size_t r = 0; r < s->failed.n; r++)
            printf("  %s #%lld: %s\n", s->failed.items[r].a, (long long)s->failed.items[r].n1,
                   s->failed.items[r].c);
    }
    if (s->invalid.n > 0) {
        printf("\ninvalid documents (%lld, skipped with --skip-invalid):\n",
               (long long)s->invalid.total);
        for (size_t r = 0; r < s->invalid.n; r++)
            printf("  %s _id %s: %s\n", s->invalid.items[r].a, s->invalid.items[r].b,
                   s->invalid.items[r].c);
    }
    if (s->after.n > 0) {
        printf("\nsource writes after the cutover, NOT applied (%lld; the application owns the "
               "tables now):\n",
               (long long)s->after.total);
        for (size_t r = 0; r < s->after.n; r++)
            printf("  %s _id %s: %s at Timestamp(%lld, %lld)\n", s->after.items[r].a,
                   s->after.items[r].b, s->after.items[r].c, (long long)s->after.items[r].n1,
                   (long long)s->after.items[r].n2);
    }
}

static int
status_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const status_opts_t *o = ctx->opts;
    status_t s;
    int rc = MG_EXIT_OK;

    memset(&s, 0, sizeof(s));
    if (!status_read(mg_migrator__res(ctx)->st, &s, error))
        rc = mg_exit_code_for_error(error);
    else if (o->json && !print_json(&s, error))
        rc = MG_EXIT_FAILURE;
    else if (!o->json)
        print_text(&s);
    status_cleanup(&s);
    return rc;
}

const mg_cmd_t mg_migrator_cmd_status = {
    .name = "status",
    .summary = "show the phase and progress recorded on the target",
    .usage = "--target URI [options]",
    .description = "Show the migration's phase and progress, from the state schema "
                   "(docs/sync.md).",
    .main = status_main,
    .options = status_options,
    .noptions = sizeof(status_options) / sizeof(status_options[0]),
    .opts_size = sizeof(status_opts_t),
    .needs = MG_CMD_NEEDS_TARGET | MG_CMD_NEEDS_STATE,
};
