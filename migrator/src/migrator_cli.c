/*
 * migrator/src/migrator_cli.c - the command tree of `migrate` and what its
 * commands need opened: the source (connected and checked), the target
 * with its state handle, the state schema (version checked). Each command
 * entry lives in its own cli_*.c.
 */
#include "migrator_internal.h"

#include <stdlib.h>
#include <string.h>

static void
print_versions(FILE *stream)
{
    int pq = PQlibVersion();

    fprintf(stream, "libmongoc %s, libbson %s, libpq %d.%d\n", mongoc_get_version(),
            bson_get_version(), pq / 10000, pq % 10000);
}

/*
 * acquire opens what ctx->command->needs names (see mg_migrator_res_t), in
 * the order the commands always did: source, then target, then state.
 */
static bool
acquire(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    mg_migrator_res_t *res = calloc(1, sizeof(*res));
    unsigned needs = ctx->command->needs;
    PGconn *pg;

    if (res == NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    ctx->resources = res;
    if ((needs & MG_CMD_NEEDS_SOURCE) != 0) {
        if (!mg_mongo_open(mg_cmd_option_string(ctx, "source"), "migrate", &res->src, error))
            return false;
        MG_LOG_EVENT(MG_LOG_INFO, ctx->command->name, NULL,
                     MG_LOG_FIELDS(MG_LOG_STR("source_version", res->src.version),
                                   MG_LOG_STR("set_name", res->src.set_name)),
                     "connected to source %s", res->src.uri_shown);
    }
    if ((needs & (MG_CMD_NEEDS_TARGET | MG_CMD_NEEDS_STATE)) == 0)
        return true;
    pg = mg_pg_connect(mg_cmd_option_string(ctx, "target"), error);
    if (pg == NULL)
        return false;
    res->st = mg_state_new(pg, mg_cmd_option_string(ctx, "state_schema"), error);
    if (res->st == NULL) {
        PQfinish(pg);
        return false;
    }
    return (needs & MG_CMD_NEEDS_STATE) == 0 || mg_state_require(res->st, error);
}

static void
release(mg_cmd_ctx_t *ctx)
{
    mg_migrator_res_t *res = ctx->resources;

    if (res == NULL)
        return;
    if (res->st != NULL) {
        PGconn *pg = mg_state_conn(res->st);
        if (pg != NULL)
            PQfinish(pg);
        mg_state_destroy(res->st);
    }
    mg_mongo_close(&res->src);
    free(res);
    ctx->resources = NULL;
}

static const mg_cmd_t *const commands[] = {
    &mg_migrator_cmd_init,      &mg_migrator_cmd_sync,    &mg_migrator_cmd_status,
    &mg_migrator_cmd_validate,  &mg_migrator_cmd_cutover, &mg_migrator_cmd_fallback,
    &mg_migrator_cmd_translate,
};

static const mg_cli_t migrate_cli = {
    .program = "migrate",
    .env_prefix = "MIGRATE_",
    .description = "Move a live application from MongoDB to PostgreSQL.",
    .cmds = commands,
    .ncmds = sizeof(commands) / sizeof(commands[0]),
    .print_version_details = print_versions,
    .acquire = acquire,
    .release = release,
};

const mg_cli_t *
mg_migrator_cli(void)
{
    return &migrate_cli;
}

int
mg_migrator_main(int argc, char **argv)
{
    return mg_cli_main(&migrate_cli, argc, argv);
}
