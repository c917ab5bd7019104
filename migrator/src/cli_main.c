/*
 * migrator/src/cli_main.c - main() of `migrate`.
 */
#include "mg/core.h"
#include "mg/migrator.h"

#include <mongoc/mongoc.h>

int
main(int argc, char **argv)
{
    int rc;

    mg_log_init("migrate", MG_LOG_INFO, MG_LOG_FORMAT_AUTO);
    mongoc_init();
    mg_log_install_mongoc_handler();
    rc = mg_migrator_main(argc, argv);
    mongoc_cleanup();
    return rc;
}
