/*
 * core/src/core_exit.c - the one exit-code table (docs/exit-codes.md).
 */
#include "mg/core.h"

static const mg_exit_code_info_t exit_codes[] = {
    {MG_EXIT_OK, "ok", "the command did what it was asked"},
    {MG_EXIT_FAILURE, "failure", "the command failed for a reason not listed below"},
    {MG_EXIT_USAGE, "usage", "bad command line, config file or environment; nothing was changed"},
    {MG_EXIT_SOURCE, "source", "the MongoDB source failed or refused (connection, auth, command)"},
    {MG_EXIT_TARGET, "target",
     "the PostgreSQL target failed or refused (connection, auth, statement)"},
    {MG_EXIT_MISMATCH, "mismatch", "validation found differences that persisted"},
    {MG_EXIT_INTERRUPTED, "interrupted",
     "stopped by SIGINT/SIGTERM at a safe point; run the same command to resume"},
    {MG_EXIT_ABORTED, "aborted", "cutover aborted before the flip; the source was unfrozen"},
    {MG_EXIT_STATE, "state", "the recorded _migrate state does not allow this command now"},
    {MG_EXIT_INTERNAL, "internal", "an internal invariant did not hold (a bug: please report)"},
};

const mg_exit_code_info_t *
mg_exit_code_table(size_t *count)
{
    if (count != NULL)
        *count = sizeof(exit_codes) / sizeof(exit_codes[0]);
    return exit_codes;
}

const char *
mg_exit_code_name(int code)
{
    for (size_t i = 0; i < sizeof(exit_codes) / sizeof(exit_codes[0]); i++)
        if ((int)exit_codes[i].code == code)
            return exit_codes[i].name;
    return "unknown";
}

mg_exit_code_t
mg_exit_code_for_error(const mg_error_t *error)
{
    if (!mg_error_is_set(error))
        return MG_EXIT_OK;
    switch (error->domain) {
    case MG_ERROR_DOMAIN_CONFIG:
        return MG_EXIT_USAGE;
    case MG_ERROR_DOMAIN_MONGO:
        return MG_EXIT_SOURCE;
    case MG_ERROR_DOMAIN_PG:
        return MG_EXIT_TARGET;
    case MG_ERROR_DOMAIN_STATE:
        return MG_EXIT_STATE;
    default:
        return MG_EXIT_FAILURE;
    }
}
