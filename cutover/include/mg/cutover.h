/*
 * cutover/include/mg/cutover.h - the cutover engine: preflight, freeze the
 * source, record the fence, drain the change stream to it, verify, flip the
 * application's endpoint exactly once (docs/cutover.md).
 */
#ifndef MG_CUTOVER_H
#define MG_CUTOVER_H

#include "mg/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * mg_cutover_command runs `migrate cutover` (argv[0] is the command name)
 * and returns an exit code from docs/exit-codes.md.
 */
int mg_cutover_command(const mg_cli_command_t *command, int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif /* MG_CUTOVER_H */
