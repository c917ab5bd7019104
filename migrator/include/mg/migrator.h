/*
 * migrator/include/mg/migrator.h - the `migrate` commands. Each command
 * takes its own argv (argv[0] is the command name) and returns an exit code
 * from docs/exit-codes.md.
 */
#ifndef MG_MIGRATOR_H
#define MG_MIGRATOR_H

#include "mg/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * mg_migrator_cmd_init runs `migrate init`: census of the source, target
 * tables and state schema, the plan on stdout. See docs/init.md.
 */
int mg_migrator_cmd_init(const mg_cli_command_t *command, int argc, char **argv);

/*
 * mg_migrator_cmd_sync runs `migrate sync`: T0, partition plan, parallel
 * resumable copy, index build. See docs/sync.md.
 */
int mg_migrator_cmd_sync(const mg_cli_command_t *command, int argc, char **argv);

/* mg_migrator_cmd_status runs `migrate status`: phase and progress from the state schema. */
int mg_migrator_cmd_status(const mg_cli_command_t *command, int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif /* MG_MIGRATOR_H */
