/*
 * tests/integration/ha/haproxy_cfg.c - prints the haproxy.cfg pgdaemon
 * generates (mg_ha_haproxy_render) for servers the test names, so a
 * cluster the tests start by hand (nscluster.py: nodes in network
 * namespaces) is routed exactly like `pgdaemon cluster up` routes its own.
 *
 *   mg_ha_haproxy_cfg BIND_ADDRESS WRITE_PORT READ_PORT STATS_SOCKET NAME=HOST:PG_PORT:HTTP_PORT...
 *
 * Errors print one line on stderr and exit 1.
 */
#include "mg/ha.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
main(int argc, char **argv)
{
    mg_ha_haproxy_server_t servers[MG_HA_MAX_NODES];
    char names[MG_HA_MAX_NODES][MG_HA_NAME_SIZE], hosts[MG_HA_MAX_NODES][64];
    size_t n = 0;
    mg_buf_t out;
    mg_error_t error;
    int code = 0;

    if (argc < 6 || argc - 5 > MG_HA_MAX_NODES) {
        fprintf(stderr, "usage: mg_ha_haproxy_cfg BIND WRITE_PORT READ_PORT STATS_SOCKET "
                        "NAME=HOST:PG_PORT:HTTP_PORT...\n");
        return 1;
    }
    for (int i = 5; i < argc; i++, n++) {
        long long pg_port, http_port;
        char rest[64];

        if (sscanf(argv[i], "%47[^=]=%63[^:]:%lld:%lld%63s", names[n], hosts[n], &pg_port,
                   &http_port, rest) != 4) {
            fprintf(stderr, "mg_ha_haproxy_cfg: could not parse server \"%s\"\n", argv[i]);
            return 1;
        }
        servers[n].name = names[n];
        servers[n].host = hosts[n];
        servers[n].pg_port = pg_port;
        servers[n].http_port = http_port;
    }
    mg_buf_init(&out, 1024 * 1024);
    if (mg_ha_haproxy_render(servers, n, argv[1], strtoll(argv[2], NULL, 10),
                             strtoll(argv[3], NULL, 10), argv[4], &out, &error))
        fwrite(out.data, 1, out.len, stdout);
    else {
        fprintf(stderr, "mg_ha_haproxy_cfg: %s\n", error.message);
        code = 1;
    }
    mg_buf_cleanup(&out);
    return code;
}
