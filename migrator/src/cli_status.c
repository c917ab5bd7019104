/*
 * migrator/src/cli_status.c - `migrate status`: phase, per-collection copy
 * progress, live workers, failed partitions and invalid documents, all
 * read from the state schema, so it works from any host while another
 * process copies.
 */
#include "migrator_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *target;
    char *state_schema;
    bool json;
} status_opts_t;

static const mg_config_option_t status_options[] = {
    {.name = "target",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(status_opts_t, target),
     .required = true,
     .metavar = "URI",
     .help = "PostgreSQL connection string of the target"},
    {.name = "state_schema",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(status_opts_t, state_schema),
     .default_value = MG_STATE_SCHEMA_DEFAULT,
     .metavar = "NAME",
     .help = "schema holding the tool's state on the target"},
    {.name = "json",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(status_opts_t, json),
     .default_value = "false",
     .help = "print the status as one JSON object"},
};
#define N_STATUS_OPTIONS (sizeof(status_options) / sizeof(status_options[0]))

/* query runs sql with "%1$s" replaced by the quoted state schema. */
static PGresult *
query(PGconn *pg, const char *ss, const char *fmt, mg_error_t *error)
{
    mg_buf_t q, sql;
    PGresult *res = NULL;

    mg_buf_init(&q, 1024);
    mg_buf_init(&sql, 64 * 1024);
    if (mg_schema_quote_ident(ss, &q, error) && mg_buf_printf(&sql, error, fmt, q.data))
        res = mg_pg_query(pg, sql.data, 0, NULL, error);
    mg_buf_cleanup(&q);
    mg_buf_cleanup(&sql);
    return res;
}

static const char *const q_migration =
    "SELECT phase, t0_ts, t0_inc, source_uri, to_char(created_at, 'YYYY-MM-DD HH24:MI:SS') "
    "FROM %1$s.migration WHERE id = 1";

static const char *const q_checkpoint =
    "SELECT cluster_time_ts, cluster_time_inc, "
    "round((extract(epoch FROM now()) - cluster_time_ts)::numeric, 1), applied_events, "
    "coalesce(events_per_s, 0), to_char(updated_at, 'YYYY-MM-DD HH24:MI:SS'), "
    "history_lost_at IS NOT NULL, resume_token_json "
    "FROM %1$s.checkpoint WHERE id = 1 AND cluster_time_ts IS NOT NULL";

static const char *const q_collections =
    "SELECT c.db, c.coll, c.schema_name || '.' || c.table_name, c.status, "
    "coalesce(c.doc_count, 0), "
    "(SELECT count(*) FROM %1$s.partitions p WHERE p.db = c.db AND p.coll = c.coll), "
    "(SELECT count(*) FROM %1$s.partitions p WHERE p.db = c.db AND p.coll = c.coll "
    " AND p.status = 'done'), "
    "(SELECT count(*) FROM %1$s.partitions p WHERE p.db = c.db AND p.coll = c.coll "
    " AND p.status = 'failed'), "
    "(SELECT coalesce(sum(copied_docs), 0) FROM %1$s.partitions p WHERE p.db = c.db "
    " AND p.coll = c.coll AND p.status = 'done'), "
    "(SELECT coalesce(sum(copied_bytes), 0) FROM %1$s.partitions p WHERE p.db = c.db "
    " AND p.coll = c.coll AND p.status = 'done'), "
    "(SELECT count(*) FROM %1$s.indexes i WHERE i.db = c.db AND i.coll = c.coll "
    " AND i.build_status = 'built'), "
    "(SELECT count(*) FROM %1$s.indexes i WHERE i.db = c.db AND i.coll = c.coll "
    " AND i.build_status IN ('pending', 'built', 'failed')), "
    "coalesce(c.error, '') "
    "FROM %1$s.collections c ORDER BY c.db, c.coll";

static const char *const q_workers =
    "SELECT worker, docs, bytes, round(extract(epoch FROM now() - updated_at)) "
    "FROM %1$s.copy_progress WHERE updated_at > now() - interval '1 minute' ORDER BY worker";

static const char *const q_failed =
    "SELECT db || '.' || coll, seq, coalesce(error, '') FROM %1$s.partitions "
    "WHERE status = 'failed' ORDER BY db, coll, seq LIMIT 50";

static const char *const q_invalid =
    "SELECT db || '.' || coll, doc_id, reason, (SELECT count(*) FROM %1$s.invalid_docs) "
    "FROM %1$s.invalid_docs ORDER BY id LIMIT 50";

static void
json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

int
mg_migrator_cmd_status(const mg_cli_command_t *command, int argc, char **argv)
{
    status_opts_t o;
    mg_config_t *config;
    mg_error_t error;
    PGconn *pg = NULL;
    PGresult *mig = NULL, *colls = NULL, *workers = NULL, *failed = NULL, *invalid = NULL;
    PGresult *cp = NULL;
    int first = 0, rc = MG_EXIT_FAILURE;
    char a[32], b[32], c[32];

    memset(&o, 0, sizeof(o));
    mg_error_clear(&error);
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: migrate status --target URI [options]\n\nShow the migration's "
                   "phase and progress, from the state schema (docs/sync.md).\n\noptions:\n");
            mg_config_print_help(status_options, N_STATUS_OPTIONS, "MIGRATE_", stdout);
            return MG_EXIT_OK;
        }
    }
    config = mg_config_new(status_options, N_STATUS_OPTIONS, &o, "MIGRATE_");
    if (config == NULL)
        return MG_EXIT_FAILURE;
    if (!mg_config_load(config, argc, argv, NULL, &first, &error))
        goto fail;
    pg = mg_pg_connect(o.target, &error);
    if (pg == NULL)
        goto fail;
    {
        bool exists;
        int version;
        if (!mg_state_probe(pg, o.state_schema, &exists, &version, &error))
            goto fail;
        if (!exists || version == 0) {
            fprintf(stderr,
                    "migrate status: no state schema \"%s\" on the target: run migrate "
                    "init first\n",
                    o.state_schema);
            rc = MG_EXIT_STATE;
            goto done;
        }
    }
    if ((mig = query(pg, o.state_schema, q_migration, &error)) == NULL ||
        (colls = query(pg, o.state_schema, q_collections, &error)) == NULL ||
        (workers = query(pg, o.state_schema, q_workers, &error)) == NULL ||
        (failed = query(pg, o.state_schema, q_failed, &error)) == NULL ||
        (invalid = query(pg, o.state_schema, q_invalid, &error)) == NULL ||
        (cp = query(pg, o.state_schema, q_checkpoint, &error)) == NULL)
        goto fail;
    if (PQntuples(mig) != 1) {
        fprintf(stderr, "migrate status: the state schema has no migration row\n");
        rc = MG_EXIT_STATE;
        goto done;
    }
    if (o.json) {
        printf("{\"phase\":");
        json_str(PQgetvalue(mig, 0, 0));
        printf(",\"t0\":");
        if (PQgetisnull(mig, 0, 1))
            printf("null");
        else
            printf("{\"t\":%s,\"i\":%s}", PQgetvalue(mig, 0, 1), PQgetvalue(mig, 0, 2));
        printf(",\"change_stream\":");
        if (PQntuples(cp) == 1) {
            printf("{\"cluster_time\":{\"t\":%s,\"i\":%s},\"lag_s\":%s,\"applied_events\":%s,"
                   "\"events_per_s\":%s,\"updated_at\":",
                   PQgetvalue(cp, 0, 0), PQgetvalue(cp, 0, 1), PQgetvalue(cp, 0, 2),
                   PQgetvalue(cp, 0, 3), PQgetvalue(cp, 0, 4));
            json_str(PQgetvalue(cp, 0, 5));
            printf(",\"history_lost\":%s}",
                   strcmp(PQgetvalue(cp, 0, 6), "t") == 0 ? "true" : "false");
        } else {
            printf("null");
        }
        printf(",\"collections\":[");
        for (int r = 0; r < PQntuples(colls); r++) {
            printf("%s{\"namespace\":", r ? "," : "");
            json_str(PQgetvalue(colls, r, 0));
            printf(",\"collection\":");
            json_str(PQgetvalue(colls, r, 1));
            printf(",\"table\":");
            json_str(PQgetvalue(colls, r, 2));
            printf(",\"status\":");
            json_str(PQgetvalue(colls, r, 3));
            printf(",\"docs_estimated\":%s,\"partitions\":%s,\"partitions_done\":%s,"
                   "\"partitions_failed\":%s,\"docs_copied\":%s,\"bytes_copied\":%s,"
                   "\"indexes_built\":%s,\"indexes_planned\":%s,\"error\":",
                   PQgetvalue(colls, r, 4), PQgetvalue(colls, r, 5), PQgetvalue(colls, r, 6),
                   PQgetvalue(colls, r, 7), PQgetvalue(colls, r, 8), PQgetvalue(colls, r, 9),
                   PQgetvalue(colls, r, 10), PQgetvalue(colls, r, 11));
            json_str(PQgetvalue(colls, r, 12));
            printf("}");
        }
        printf("],\"workers\":[");
        for (int r = 0; r < PQntuples(workers); r++) {
            printf("%s{\"worker\":", r ? "," : "");
            json_str(PQgetvalue(workers, r, 0));
            printf(",\"docs\":%s,\"bytes\":%s}", PQgetvalue(workers, r, 1),
                   PQgetvalue(workers, r, 2));
        }
        printf("],\"failed_partitions\":[");
        for (int r = 0; r < PQntuples(failed); r++) {
            printf("%s{\"namespace\":", r ? "," : "");
            json_str(PQgetvalue(failed, r, 0));
            printf(",\"partition\":%s,\"error\":", PQgetvalue(failed, r, 1));
            json_str(PQgetvalue(failed, r, 2));
            printf("}");
        }
        printf("],\"invalid_docs\":[");
        for (int r = 0; r < PQntuples(invalid); r++) {
            printf("%s{\"namespace\":", r ? "," : "");
            json_str(PQgetvalue(invalid, r, 0));
            printf(",\"_id\":");
            json_str(PQgetvalue(invalid, r, 1));
            printf(",\"reason\":");
            json_str(PQgetvalue(invalid, r, 2));
            printf("}");
        }
        printf("],\"invalid_docs_total\":%s}\n",
               PQntuples(invalid) > 0 ? PQgetvalue(invalid, 0, 3) : "0");
        rc = MG_EXIT_OK;
        goto done;
    }

    printf("phase   %s (initialised %s UTC)\n", PQgetvalue(mig, 0, 0), PQgetvalue(mig, 0, 4));
    printf("source  %s\n", PQgetvalue(mig, 0, 3));
    if (!PQgetisnull(mig, 0, 1))
        printf("T0      Timestamp(%s, %s): the change stream replays from here\n",
               PQgetvalue(mig, 0, 1), PQgetvalue(mig, 0, 2));
    if (PQntuples(cp) == 1) {
        printf("stream  checkpoint Timestamp(%s, %s), lag %s s, %s events applied, %s events/s "
               "(updated %s UTC)%s\n",
               PQgetvalue(cp, 0, 0), PQgetvalue(cp, 0, 1), PQgetvalue(cp, 0, 2),
               PQgetvalue(cp, 0, 3), PQgetvalue(cp, 0, 4), PQgetvalue(cp, 0, 5),
               strcmp(PQgetvalue(cp, 0, 6), "t") == 0
                   ? "\n        HISTORY LOST: run migrate sync --resync '*'"
                   : "");
    }
    printf("\n  %-32s %-10s %12s %10s %12s %8s\n", "COLLECTION", "STATUS", "DOCS COPIED", "SIZE",
           "PARTITIONS", "INDEXES");
    for (int r = 0; r < PQntuples(colls); r++) {
        char ns[300], parts[64], idx[32];
        int64_t est = strtoll(PQgetvalue(colls, r, 4), NULL, 10);
        int64_t done = strtoll(PQgetvalue(colls, r, 8), NULL, 10);
        snprintf(ns, sizeof(ns), "%s.%s", PQgetvalue(colls, r, 0), PQgetvalue(colls, r, 1));
        snprintf(parts, sizeof(parts), "%s/%s%s%s", PQgetvalue(colls, r, 6),
                 PQgetvalue(colls, r, 5), strcmp(PQgetvalue(colls, r, 7), "0") != 0 ? " !" : "",
                 strcmp(PQgetvalue(colls, r, 7), "0") != 0 ? PQgetvalue(colls, r, 7) : "");
        snprintf(idx, sizeof(idx), "%s/%s", PQgetvalue(colls, r, 10), PQgetvalue(colls, r, 11));
        snprintf(c, sizeof(c), "%s", mg_format_count(done, a, sizeof(a)));
        printf("  %-32s %-10s %5s of ~%-4s %10s %12s %8s\n", ns, PQgetvalue(colls, r, 3), c,
               mg_format_count(est, b, sizeof(b)),
               mg_format_bytes(strtoll(PQgetvalue(colls, r, 9), NULL, 10), a, sizeof(a)), parts,
               idx);
        if (PQgetvalue(colls, r, 12)[0] != '\0')
            printf("      error: %s\n", PQgetvalue(colls, r, 12));
    }
    if (PQntuples(workers) > 0) {
        printf("\nlive copy processes (docs copied this run, incl. uncommitted):\n");
        for (int r = 0; r < PQntuples(workers); r++)
            printf("  %-40s %10s docs %10s  (updated %ss ago)\n", PQgetvalue(workers, r, 0),
                   mg_format_count(strtoll(PQgetvalue(workers, r, 1), NULL, 10), a, sizeof(a)),
                   mg_format_bytes(strtoll(PQgetvalue(workers, r, 2), NULL, 10), b, sizeof(b)),
                   PQgetvalue(workers, r, 3));
    }
    if (PQntuples(failed) > 0) {
        printf("\nfailed partitions:\n");
        for (int r = 0; r < PQntuples(failed); r++)
            printf("  %s #%s: %s\n", PQgetvalue(failed, r, 0), PQgetvalue(failed, r, 1),
                   PQgetvalue(failed, r, 2));
    }
    if (PQntuples(invalid) > 0) {
        printf("\ninvalid documents (%s, skipped with --skip-invalid):\n",
               PQgetvalue(invalid, 0, 3));
        for (int r = 0; r < PQntuples(invalid); r++)
            printf("  %s _id %s: %s\n", PQgetvalue(invalid, r, 0), PQgetvalue(invalid, r, 1),
                   PQgetvalue(invalid, r, 2));
    }
    rc = MG_EXIT_OK;
    goto done;
fail:
    mg_log_error(MG_LOG_ERROR, "status", &error);
    fprintf(stderr, "migrate status: %s\n", error.message);
    rc = mg_exit_code_for_error(&error);
done:
    PQclear(mig);
    PQclear(colls);
    PQclear(workers);
    PQclear(failed);
    PQclear(invalid);
    PQclear(cp);
    if (pg != NULL)
        PQfinish(pg);
    mg_config_destroy(config);
    (void)command;
    return rc;
}
