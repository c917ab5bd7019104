/*
 * migrator/src/cli_fallback.c - `migrate fallback`: its options; the
 * fallback is the cutover engine's (mg_cutover_fallback_run, cutover/):
 * the cutover in reverse, after `migrate sync --reverse` carried
 * PostgreSQL's writes back to MongoDB (docs/cutover.md "Fallback").
 */
#include "migrator_internal.h"
#include "mg/cutover.h"

#include <string.h>

typedef struct {
    char *source;
    char *target;
    char *state_schema;
    char *freeze;
    mg_strlist_t freeze_roles;
    int verify;
    char *endpoint;
    char *endpoint_file;
    char *endpoint_etcd;
    char *endpoint_etcd_key;
    char *flip_hook;
    int64_t timeout_ms;
    bool dry_run;
    bool json;
} fallback_opts_t;

/* the order of mg_cutover_verify_t from FULL on ("changed" is the forward stream's) */
static const char *const verify_choices[] = {"full", "counts", "none", NULL};

static const mg_config_option_t fallback_options[] = {
    MG_MIGRATOR_OPTION_SOURCE(fallback_opts_t, source),
    MG_MIGRATOR_OPTION_TARGET(fallback_opts_t, target),
    MG_MIGRATOR_OPTION_STATE_SCHEMA(fallback_opts_t, state_schema),
    {.name = "freeze",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(fallback_opts_t, freeze),
     .default_value = "revoke",
     .metavar = "MODE",
     .help = "revoke (the write privileges of --freeze-role on the migrated tables, their "
             "sessions ended) or none"},
    {.name = "freeze_role",
     .type = MG_CONFIG_LIST,
     .offset = offsetof(fallback_opts_t, freeze_roles),
     .metavar = "ROLE",
     .help = "a PostgreSQL role the application writes as (repeatable)"},
    {.name = "verify",
     .type = MG_CONFIG_ENUM,
     .offset = offsetof(fallback_opts_t, verify),
     .default_value = "full",
     .choices = verify_choices,
     .metavar = "MODE",
     .help = "final check after the drain: full (validate every document), counts, or none"},
    {.name = "endpoint",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(fallback_opts_t, endpoint),
     .metavar = "URI",
     .help = "the MongoDB connection string the application goes back to [default: --source]"},
    {.name = "endpoint_file",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(fallback_opts_t, endpoint_file),
     .metavar = "PATH",
     .help = "flip: write the endpoint to this file atomically"},
    {.name = "endpoint_etcd",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(fallback_opts_t, endpoint_etcd),
     .metavar = "URL",
     .help = "flip: put the endpoint to etcd at this URL (v3 JSON gateway)"},
    {.name = "endpoint_etcd_key",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(fallback_opts_t, endpoint_etcd_key),
     .default_value = "/migrate/endpoint",
     .metavar = "KEY",
     .help = "the etcd key of --endpoint-etcd"},
    {.name = "flip_hook",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(fallback_opts_t, flip_hook),
     .metavar = "CMD",
     .help = "flip: run CMD (sh -c) with the endpoint in its environment (MIGRATE_ENDPOINT)"},
    {.name = "timeout",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(fallback_opts_t, timeout_ms),
     .default_value = "60s",
     .min = 100,
     .max = 86400000,
     .metavar = "DURATION",
     .help = "longest time from the drain's start to the flip; beyond it the fallback aborts"},
    {.name = "dry_run",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(fallback_opts_t, dry_run),
     .default_value = "false",
     .help = "run the preflight checks only; change nothing"},
    MG_MIGRATOR_OPTION_JSON(fallback_opts_t, json, "print the final report as one JSON object"),
};

static int
fallback_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const fallback_opts_t *o = ctx->opts;
    mg_cutover_settings_t s = {
        .source = o->source,
        .target = o->target,
        .src = &mg_migrator__res(ctx)->src,
        .state = mg_migrator__res(ctx)->st,
        .freeze = o->freeze,
        .freeze_roles = &o->freeze_roles,
        .verify = (mg_cutover_verify_t)(MG_CUTOVER_VERIFY_FULL + o->verify),
        .endpoint = o->endpoint,
        .endpoint_file = o->endpoint_file,
        .endpoint_etcd = o->endpoint_etcd,
        .endpoint_etcd_key = o->endpoint_etcd_key,
        .flip_hook = o->flip_hook,
        .timeout_ms = o->timeout_ms,
        .dry_run = o->dry_run,
        .json = o->json,
        .out = stdout,
        .stop = &ctx->stop,
    };

    return mg_cutover_fallback_run(&s, error);
}

const mg_cmd_t mg_migrator_cmd_fallback = {
    .name = "fallback",
    .summary = "after a cutover: freeze PostgreSQL, drain the reverse sync, flip back to MongoDB",
    .usage = "--source URI --target URI --freeze-role ROLE [options]",
    .description = "The cutover in reverse: freeze the application's writes on PostgreSQL, drain "
                   "the reverse\nsync to the fence, verify, unfreeze MongoDB and flip the "
                   "endpoint back (docs/cutover.md).",
    .main = fallback_main,
    .options = fallback_options,
    .noptions = sizeof(fallback_options) / sizeof(fallback_options[0]),
    .opts_size = sizeof(fallback_opts_t),
    .needs = MG_CMD_NEEDS_SOURCE | MG_CMD_NEEDS_STATE | MG_CMD_SIGNALS,
};
