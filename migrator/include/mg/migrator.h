/*
 * migrator/include/mg/migrator.h - the `migrate` program: its command tree
 * (init, sync, status, validate, cutover) on the command framework of core,
 * and the bulk copy behind `migrate sync`.
 */
#ifndef MG_MIGRATOR_H
#define MG_MIGRATOR_H

#include "mg/core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* mg_migrator_cli returns the static command tree of `migrate` (docs/core.md). */
const mg_cli_t *mg_migrator_cli(void);

/*
 * mg_migrator_main runs `migrate` on argv (argv[0] is the program) and
 * returns the exit code (docs/exit-codes.md). The caller has initialised
 * libmongoc.
 */
int mg_migrator_main(int argc, char **argv);

#ifdef __cplusplus
}
#endif

#endif /* MG_MIGRATOR_H */
