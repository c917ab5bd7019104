/*
 * migrator/src/cli_validate.c - `migrate validate`: its options; the run is
 * the validate engine's (mg_validate_run, validate/), the same one the
 * cutover's verify step runs in-process. The rule for the exit code is in
 * docs/validate.md.
 */
#include "migrator_internal.h"
#include "mg/validate.h"

#include <string.h>

typedef struct {
    char *source;
    char *target;
    char *state_schema;
    mg_strlist_t collections;
    bool full;
    bool changed;
    int64_t segments;
    int64_t max_named;
    int64_t max_fields;
    int64_t batch_docs;
    int64_t drilldown_bytes;
    int64_t source_threads;
    int fail_on;
    char *report_json;
    char *report_html;
    bool json;
    char *shadow;
    bool shadow_from_profiler;
    int64_t shadow_repeat;
    int64_t profiler_max;
    int64_t every_ms;
    int64_t max_runs;
} validate_opts_t;

static const char *const fail_on_choices[] = {"persistent", "any", NULL};

static const mg_config_option_t validate_options[] = {
    MG_MIGRATOR_OPTION_SOURCE(validate_opts_t, source),
    MG_MIGRATOR_OPTION_TARGET(validate_opts_t, target),
    MG_MIGRATOR_OPTION_STATE_SCHEMA(validate_opts_t, state_schema),
    {.name = "collections",
     .type = MG_CONFIG_LIST,
     .offset = offsetof(validate_opts_t, collections),
     .metavar = "DB.COLL",
     .help = "collections to check: db.coll or db.* (default: all migrated)"},
    {.name = "full",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(validate_opts_t, full),
     .default_value = "false",
     .help =
         "checksum every document (what runs when neither --changed nor --shadow alone is given)"},
    {.name = "changed",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(validate_opts_t, changed),
     .default_value = "false",
     .help = "re-check only documents changed up to the change-stream checkpoint, and open "
             "mismatches"},
    {.name = "segments",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, segments),
     .default_value = "1024",
     .min = 1,
     .max = 16777216,
     .metavar = "N",
     .help = "checksum segments (hash buckets of _id) per collection"},
    {.name = "max_named",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, max_named),
     .default_value = "1000",
     .min = 1,
     .max = 10000000,
     .metavar = "N",
     .help = "differing _ids named per collection (all are counted)"},
    {.name = "max_fields",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, max_fields),
     .default_value = "20",
     .min = 1,
     .max = 100000,
     .metavar = "N",
     .help = "differing fields named per _id"},
    {.name = "batch_docs",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, batch_docs),
     .default_value = "2000",
     .min = 1,
     .max = 1000000,
     .metavar = "N",
     .help = "source cursor batch size"},
    {.name = "drilldown_memory",
     .type = MG_CONFIG_SIZE,
     .offset = offsetof(validate_opts_t, drilldown_bytes),
     .default_value = "256MB",
     .min = 1024 * 1024,
     .max = INT64_C(1) << 40,
     .metavar = "SIZE",
     .help = "memory for the documents of mismatching segments"},
    {.name = "source_threads",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, source_threads),
     .default_value = "2",
     .min = 1,
     .max = 64,
     .metavar = "N",
     .help = "source reader threads per collection (over the copy's partitions)"},
    {.name = "every",
     .type = MG_CONFIG_DURATION,
     .offset = offsetof(validate_opts_t, every_ms),
     .default_value = "0",
     .min = 0,
     .max = INT64_C(86400000),
     .metavar = "DURATION",
     .help = "with --changed: run again after this pause, until SIGINT/SIGTERM (while sync "
             "--follow runs)"},
    {.name = "max_runs",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, max_runs),
     .default_value = "0",
     .min = 0,
     .max = INT64_C(1000000000),
     .metavar = "N",
     .help = "with --every: stop after N runs (0: until stopped)"},
    {.name = "fail_on",
     .type = MG_CONFIG_ENUM,
     .offset = offsetof(validate_opts_t, fail_on),
     .default_value = "persistent",
     .choices = fail_on_choices,
     .metavar = "WHEN",
     .help = "exit 5 on a mismatch that persisted across runs, or on any mismatch"},
    {.name = "report_json",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(validate_opts_t, report_json),
     .metavar = "FILE",
     .help = "write the report as JSON to FILE"},
    {.name = "report_html",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(validate_opts_t, report_html),
     .metavar = "FILE",
     .help = "write the report as one self-contained HTML file"},
    MG_MIGRATOR_OPTION_JSON(validate_opts_t, json,
                            "print the report as JSON on stdout instead of the summary"),
    {.name = "shadow",
     .type = MG_CONFIG_STRING,
     .offset = offsetof(validate_opts_t, shadow),
     .metavar = "QUERIES.jsonl",
     .help = "run these finds on both sides and compare (docs/shadow-reads.md); alone, without "
             "--full or --changed, no checksums run"},
    {.name = "shadow_from_profiler",
     .type = MG_CONFIG_BOOL,
     .offset = offsetof(validate_opts_t, shadow_from_profiler),
     .default_value = "false",
     .help = "shadow-read the find commands recorded in the source's system.profile"},
    {.name = "shadow_repeat",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, shadow_repeat),
     .default_value = "5",
     .min = 1,
     .max = 1000,
     .metavar = "N",
     .help = "runs per side and shadow query (latency samples)"},
    {.name = "profiler_max",
     .type = MG_CONFIG_INT,
     .offset = offsetof(validate_opts_t, profiler_max),
     .default_value = "1000",
     .min = 1,
     .max = 1000000,
     .metavar = "N",
     .help = "newest system.profile finds read per database"},
};
#define N_VALIDATE_OPTIONS (sizeof(validate_options) / sizeof(validate_options[0]))

static bool
validate_check(const void *vo, mg_error_t *error)
{
    const validate_opts_t *o = vo;

    if (o->full && o->changed)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "--full and --changed exclude each other");
    if (o->every_ms > 0 && !o->changed)
        return mg_error_set(error, MG_ERROR_DOMAIN_CONFIG, MG_ERROR_CODE_INVALID_ARGUMENT,
                            "--every repeats --changed runs; add --changed");
    return true;
}

static int
validate_main(mg_cmd_ctx_t *ctx, mg_error_t *error)
{
    const validate_opts_t *o = ctx->opts;
    mg_validate_settings_t s = {
        .source = o->source,
        .target = o->target,
        .state = mg_migrator__res(ctx)->st,
        .collections = &o->collections,
        .full = o->full,
        .changed = o->changed,
        .segments = o->segments,
        .max_named = o->max_named,
        .max_fields = o->max_fields,
        .batch_docs = o->batch_docs,
        .drilldown_bytes = o->drilldown_bytes,
        .source_threads = o->source_threads,
        .fail_on_any = o->fail_on == 1,
        .report_json = o->report_json,
        .report_html = o->report_html,
        .out = stdout,
        .json = o->json,
        .shadow = o->shadow,
        .shadow_from_profiler = o->shadow_from_profiler,
        .shadow_repeat = o->shadow_repeat,
        .profiler_max = o->profiler_max,
        .every_ms = o->every_ms,
        .max_runs = o->max_runs,
        .stop = &ctx->stop,
    };

    return mg_validate_run(&s, error);
}

const mg_cmd_t mg_migrator_cmd_validate = {
    .name = "validate",
    .summary = "checksum both sides, name every difference, record and report it",
    .usage = "--source URI --target URI [--full | --changed] [options]",
    .description =
        "Checksum every migrated collection on both sides, name every differing _id\n"
        "(missing, extra, different, with the differing fields) and record the results\n"
        "in the state schema (docs/validate.md). Exit 5 when a mismatch persisted across\n"
        "runs.",
    .main = validate_main,
    .options = validate_options,
    .noptions = sizeof(validate_options) / sizeof(validate_options[0]),
    .opts_size = sizeof(validate_opts_t),
    .needs = MG_CMD_NEEDS_TARGET | MG_CMD_NEEDS_STATE | MG_CMD_SIGNALS,
    .check = validate_check,
};
