/*
 * migrator/src/cli_cutover.c - `migrate cutover`: its options; the cutover
 * is the cutover engine's (mg_cutover_run, cutover/), which verifies with
 * the validate engine in-process: no child process, no secret on a command
 * line (docs/cutover.md).
 */
#include "migrator_internal.h"
#include "mg/cutover.h"

#include <string.h>

typedef struct {
    char *source;
    char *target;
    char *state_schema;
    int64_t max_lag_ms;
    char *freeze;
    int verify;
    char *endpoint;
    char *endpoint_file;
    char *endpoint_etcd;
    char *endpoint_etcd_key;
    char *flip_hook;
    int64_t timeout_ms;
    int64_t validation_age_ms;
    int64_t follower_window_ms;
    bool no_fallback;
    bool dry_run;
    bool abort_cutover;
    bool json;
} cutover_opts_t;

/* the order of mg_cutover_verify_t */
static const char *const verify_choices[] = {"changed", "full", "counts", "none", NULL};

static const mg_config_option_t cutover_options[] = {
    MG_MIGRATOR_OPTION_SOURCE(cutover_opts_t, source),
    MG_MIGRATOR_OPTION_TARGET(cutover_opts_t, target),
    MG_MIGRATOR_OPTION_STATE_SCHEMA(cutover_opts_t, state_schema),
    {.name = "max_lag",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(cutover_opts_t, max_lag_ms),
     .default_value = "1s",
     .min = 0,
     .max = 86400000,
     .metavar = "DURATION",
     .help = "refuse when the change stream's lag (now - checkpoint cluster time) is above this"},
    {.name = "freeze",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, freeze),
     .default_value = "write-block",
     .metavar = "MODE",
     .help = "write-block (setUserWriteBlockMode), hook:CMD (run CMD with MIGRATE_FREEZE="
             "freeze|unfreeze), or none"},
    {.name = "verify",
     .type = MG_CONFIG_ENUM,
     .offset = offsetof(cutover_opts_t, verify),
     .default_value = "changed",
     .choices = verify_choices,
     .metavar = "MODE",
     .help = "final check: changed (validate --changed), full, counts, or none"},
    {.name = "endpoint",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint),
     .metavar = "CONNINFO",
     .help = "the PostgreSQL connection string the application moves to [default: --target]"},
    {.name = "endpoint_file",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint_file),
     .metavar = "PATH",
     .help = "flip: write the endpoint to this file atomically"},
    {.name = "endpoint_etcd",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint_etcd),
     .metavar = "URL",
     .help = "flip: put the endpoint to etcd at this URL (v3 JSON gateway)"},
    {.name = "endpoint_etcd_key",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint_etcd_key),
     .default_value = "/migrate/endpoint",
     .metavar = "KEY",
     .help = "the etcd key of --endpoint-etcd"},
    {.name = "flip_hook",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, flip_hook),
     .metavar = "CMD",
     .help = "flip: run CMD (sh -c) with the endpoint in its environment (MIGRATE_ENDPOINT), "
             "never on a command line"},
    {.name = "timeout",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(cutover_opts_t, timeout_ms),
     .default_value = "60s",
     .min = 100,
     .max = 86400000,
     .metavar = "DURATION",
     .help = "longest time from the freeze to the flip; beyond it the cutover aborts"},
    {.name = "validation_age",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(cutover_opts_t, validation_age_ms),
     .default_value = "1h",
     .min = 0,
     .max = 86400000LL * 365,
     .metavar = "DURATION",
     .help = "refuse without a clean validation run finished within this age (0: no check)"},
    {.name = "follower_window",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(cutover_opts_t, follower_window_ms),
     .default_value = "5s",
     .min = 100,
     .max = 3600000,
     .metavar = "DURATION",
     .help = "a checkpoint updated within this window means `sync --follow` is running"},
    {.name = "no_fallback",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(cutover_opts_t, no_fallback),
     .default_value = "false",
     .help = "make no reverse capture before the flip: no `sync --reverse`, no `fallback`"},
    {.name = "dry_run",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(cutover_opts_t, dry_run),
     .default_value = "false",
     .help = "run the preflight checks only; change nothing"},
    {.name = "abort",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(cutover_opts_t, abort_cutover),
     .default_value = "false",
     .help = "abort an unfinished cutover: unfreeze the source and mark it aborted"},
    MG_MIGRATOR_OPTION_JSON(cutover_opts_t, json, "print the final report as one JSON object"),
};
#define N_CUTOVER_OPTIONS (sizeof(cutover_options) / sizeof(cutover_options[0]))

static bool
cutover_check(const void *vo, mg_error_t *error)
{
    const cutover_opts_t *o = vo;

    return mg_cutover_freeze_check(o->freeze, error);
}

static int
cutover_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const cutover_opts_t *o = ctx->opts;
    mg_cutover_settings_t s = {
        .source = o->source,
        .target = o->target,
        .src = &mg_migrator__res(ctx)->src,
        .state = mg_migrator__res(ctx)->st,
        .max_lag_ms = o->max_lag_ms,
        .freeze = o->freeze,
        .verify = (mg_cutover_verify_t)o->verify,
        .endpoint = o->endpoint,
        .endpoint_file = o->endpoint_file,
        .endpoint_etcd = o->endpoint_etcd,
        .endpoint_etcd_key = o->endpoint_etcd_key,
        .flip_hook = o->flip_hook,
        .timeout_ms = o->timeout_ms,
        .validation_age_ms = o->validation_age_ms,
        .follower_window_ms = o->follower_window_ms,
        .no_fallback = o->no_fallback,
        .dry_run = o->dry_run,
        .abort_cutover = o->abort_cutover,
        .json = o->json,
        .out = stdout,
        .stop = &ctx->stop,
    };

    return mg_cutover_run(&s, error);
}

const mg_cmd_t mg_migrator_cmd_cutover = {
    .name = "cutover",
    .summary = "freeze the source, drain to the fence, verify, flip the endpoint once",
    .usage = "--source URI --target URI [options]",
    .description = "Freeze the source's writes, drain the change stream to the freeze's fence, "
                   "verify,\nand flip the application's endpoint exactly once (docs/cutover.md).",
    .main = cutover_main,
    .options = cutover_options,
    .noptions = sizeof(cutover_options) / sizeof(cutover_options[0]),
    .opts_size = sizeof(cutover_opts_t),
    .needs = MG_CMD_NEEDS_SOURCE | MG_CMD_NEEDS_STATE | MG_CMD_SIGNALS,
    .check = cutover_check,
};
