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
    char *freeze_check;
    int64_t freeze_timeout_ms;
    mg_strlist_t allow_invalid;
    mg_strlist_t allow_bypass_users;
    int verify;
    char *endpoint;
    char *endpoint_file;
    char *endpoint_etcd;
    char *endpoint_etcd_key;
    char *endpoint_etcd_user;
    char *endpoint_etcd_password;
    char *endpoint_etcd_password_file;
    char *endpoint_etcd_ca;
    char *endpoint_etcd_client_cert;
    char *endpoint_etcd_client_key;
    char *flip_hook;
    int64_t timeout_ms;
    int64_t validation_age_ms;
    int64_t follower_window_ms;
    int64_t lease_ms;
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
     .help = "refuse when the change stream is further behind the source's latest write than "
             "this"},
    {.name = "freeze",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, freeze),
     .default_value = "write-block",
     .metavar = "MODE",
     .help = "write-block (setUserWriteBlockMode), hook:CMD (run CMD with MIGRATE_FREEZE="
             "freeze|unfreeze), or none"},
    {.name = "freeze_check",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, freeze_check),
     .metavar = "CMD",
     .help = "with --freeze hook:CMD: run this (sh -c, MIGRATE_FREEZE=check) right before the "
             "flip; it must exit 0 only while the application's writes are still stopped"},
    {.name = "freeze_timeout",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(cutover_opts_t, freeze_timeout_ms),
     .default_value = "5s",
     .min = 100,
     .max = 3600000,
     .metavar = "DURATION",
     .help = "write-block: longest wait of the freeze for MongoDB's global lock behind open "
             "transactions (every operation on the source queues meanwhile); then it aborts"},
    {.name = "allow_invalid",
     .type = MG_CONFIG_LIST,
     .offset = offsetof(cutover_opts_t, allow_invalid),
     .metavar = "DB.COLL",
     .help = "accept the documents of these collections (patterns) skipped as invalid "
             "(_migrate.invalid_docs): they are not in PostgreSQL"},
    {.name = "allow_bypass_users",
     .type = MG_CONFIG_LIST,
     .offset = offsetof(cutover_opts_t, allow_bypass_users),
     .metavar = "USER@DB",
     .help = "write-block: source users that may write through the freeze "
             "(bypassWriteBlockingMode) and that you made sure no application uses; '*': any"},
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
    {.name = "endpoint_etcd_user",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint_etcd_user),
     .metavar = "USER",
     .help = "etcd user of --endpoint-etcd (etcd authentication)"},
    {.name = "endpoint_etcd_password",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint_etcd_password),
     .secret = true,
     .metavar = "PASSWORD",
     .help = "its password (config file or environment only, never the command line)"},
    {.name = "endpoint_etcd_password_file",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint_etcd_password_file),
     .metavar = "PATH",
     .help = "read the etcd password from this file (its first line)"},
    {.name = "endpoint_etcd_ca",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint_etcd_ca),
     .metavar = "PATH",
     .help = "CA bundle that signed the etcd server's certificate (https:// URL)"},
    {.name = "endpoint_etcd_client_cert",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint_etcd_client_cert),
     .metavar = "PATH",
     .help = "client certificate for etcd (TLS client authentication)"},
    {.name = "endpoint_etcd_client_key",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(cutover_opts_t, endpoint_etcd_client_key),
     .metavar = "PATH",
     .help = "its private key"},
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
     .help = "refuse without a clean validation run finished within this age and a full "
             "one since every copy (0: neither check)"},
    {.name = "follower_window",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(cutover_opts_t, follower_window_ms),
     .default_value = "5s",
     .min = 100,
     .max = 3600000,
     .metavar = "DURATION",
     .help = "a follower whose heartbeat is this recent (or whose session holds the lease) is "
             "running: the drain waits for it"},
    {.name = "lease",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(cutover_opts_t, lease_ms),
     .default_value = "15s",
     .min = 500,
     .max = 600000,
     .metavar = "DURATION",
     .help = "ownership lease, renewed every third of it: a second cutover takes over only "
             "after the owner failed to renew it for this long"},
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

    if (!mg_cutover_freeze_check(o->freeze, error))
        return false;
    if (o->endpoint_etcd_password != NULL && o->endpoint_etcd_password_file != NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "give --endpoint-etcd-password or --endpoint-etcd-password-file, not "
                            "both");
    if (o->freeze_check != NULL && strncmp(o->freeze, "hook:", 5) != 0)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "--freeze-check goes with --freeze hook:CMD (write-block is checked "
                            "on the source itself)");
    return true;
}

/*
 * etcd_password reads the etcd password of --endpoint-etcd-password-file
 * (its first line) into *out (malloc'd), or takes --endpoint-etcd-password,
 * which may come from the config file or the environment, never a flag.
 */
static bool
etcd_password(mg_cmd_ctx_t *ctx, char **out, mg_error_t *error)
{
    const cutover_opts_t *o = ctx->opts;
    mg_buf_t text;

    *out = NULL;
    if (o->endpoint_etcd_password != NULL) {
        if (mg_config_source(ctx->config, "endpoint_etcd_password") == MG_CONFIG_SOURCE_FLAG)
            return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                                "option \"endpoint_etcd_password\" may not be given on the "
                                "command line (other users can read it there): use "
                                "--endpoint-etcd-password-file, the config file or "
                                "MIGRATE_ENDPOINT_ETCD_PASSWORD");
        *out = strdup(o->endpoint_etcd_password);
        return *out != NULL ||
               mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT, "out of memory");
    }
    if (o->endpoint_etcd_password_file == NULL)
        return true;
    mg_buf_init(&text, 64 * 1024);
    if (!mg_file_read(o->endpoint_etcd_password_file, &text, error)) {
        mg_buf_cleanup(&text);
        error->domain = MG_ERROR_DOMAIN_CONFIG;
        return false;
    }
    text.data[strcspn(text.data, "\r\n")] = '\0';
    *out = text.data; /* steal */
    return true;
}

static int
cutover_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const cutover_opts_t *o = ctx->opts;
    char *etcd_pw = NULL;
    int rc;
    mg_cutover_settings_t s = {
        .source = o->source,
        .target = o->target,
        .src = &mg_migrator__res(ctx)->src,
        .state = mg_migrator__res(ctx)->st,
        .max_lag_ms = o->max_lag_ms,
        .freeze = o->freeze,
        .freeze_check = o->freeze_check,
        .freeze_timeout_ms = o->freeze_timeout_ms,
        .allow_invalid = &o->allow_invalid,
        .allow_bypass_users = &o->allow_bypass_users,
        .verify = (mg_cutover_verify_t)o->verify,
        .endpoint = o->endpoint,
        .endpoint_secret =
            mg_config_source_describe(ctx->config, o->endpoint != NULL ? "endpoint" : "target"),
        .endpoint_file = o->endpoint_file,
        .endpoint_etcd = o->endpoint_etcd,
        .endpoint_etcd_key = o->endpoint_etcd_key,
        .endpoint_etcd_user = o->endpoint_etcd_user,
        .endpoint_etcd_ca = o->endpoint_etcd_ca,
        .endpoint_etcd_cert = o->endpoint_etcd_client_cert,
        .endpoint_etcd_key_file = o->endpoint_etcd_client_key,
        .flip_hook = o->flip_hook,
        .timeout_ms = o->timeout_ms,
        .validation_age_ms = o->validation_age_ms,
        .follower_window_ms = o->follower_window_ms,
        .lease_ms = o->lease_ms,
        .no_fallback = o->no_fallback,
        .dry_run = o->dry_run,
        .abort_cutover = o->abort_cutover,
        .json = o->json,
        .out = stdout,
        .stop = &ctx->stop,
    };

    if (!etcd_password(ctx, &etcd_pw, error))
        return MG_EXIT_USAGE;
    s.endpoint_etcd_password = etcd_pw;
    rc = mg_cutover_run(&s, error);
    if (etcd_pw != NULL)
        memset(etcd_pw, 0, strlen(etcd_pw));
    free(etcd_pw);
    return rc;
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
