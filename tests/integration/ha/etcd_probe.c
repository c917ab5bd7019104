/*
 * tests/integration/ha/etcd_probe.c - drives core's etcd client from the
 * command line so test_etcd_client.py can check it against a real etcd
 * (and cross-check through the harness's own gateway client).
 *
 *   etcd_probe ENDPOINT version
 *   etcd_probe ENDPOINT put KEY VALUE [LEASE]          -> revision
 *   etcd_probe ENDPOINT get KEY [prefix] [LIMIT]       -> JSON lines, then "count N more B"
 *   etcd_probe ENDPOINT get-twice KEY                  -> two ranges with one client
 *   etcd_probe ENDPOINT delete KEY [prefix]            -> deleted count
 *   etcd_probe ENDPOINT create KEY VALUE               -> txn create-only: "succeeded true|false"
 *   etcd_probe ENDPOINT cas-mod KEY MODREV VALUE       -> txn on mod_revision
 *   etcd_probe ENDPOINT cas-value KEY EXPECTED VALUE   -> txn on value, failure branch reads KEY
 *   etcd_probe ENDPOINT lease-grant TTL                -> "ID TTL"
 *   etcd_probe ENDPOINT lease-keepalive ID             -> TTL
 *   etcd_probe ENDPOINT lease-revoke ID
 *   etcd_probe ENDPOINT watch KEY prefix|single START TIMEOUT_MS MAX_EVENTS
 *        -> one line per event ("PUT key value rev" / "DELETE key rev") or
 *           "COMPACTED rev"; stops after MAX_EVENTS events or the timeout
 *
 * ENDPOINT may be a comma-separated list. ETCD_PROBE_DEADLINE_MS bounds every
 * request by one deadline that many ms from the start. ETCD_PROBE_USERNAME and
 * ETCD_PROBE_PASSWORD authenticate; ETCD_PROBE_CA_FILE, _CERT_FILE and
 * _KEY_FILE set up TLS.
 * Errors print "error <domain> <code> <message>" and exit 1.
 */
#include "mg/core.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static int
fail(const mg_error_t *e)
{
    printf("error %s %d %s\n", mg_error_domain_name(e->domain), e->code, e->message);
    return 1;
}

typedef struct {
    int seen;
    int max;
} watch_ctx_t;

static bool
on_events(void *userdata, const mg_etcd_event_t *events, size_t n, int64_t compact_revision)
{
    watch_ctx_t *w = userdata;

    if (compact_revision > 0) {
        printf("COMPACTED %" PRId64 "\n", compact_revision);
        fflush(stdout);
        return true;
    }
    for (size_t i = 0; i < n; i++) {
        if (events[i].type == MG_ETCD_EVENT_PUT)
            printf("PUT %s %s %" PRId64 "\n", events[i].kv.key, events[i].kv.value,
                   events[i].kv.mod_revision);
        else
            printf("DELETE %s %" PRId64 "\n", events[i].kv.key, events[i].kv.mod_revision);
        w->seen++;
    }
    fflush(stdout);
    return w->seen < w->max;
}

int
main(int argc, char **argv)
{
    const char *endpoints[8];
    char *list, *save = NULL, *tok;
    mg_etcd_options_t opts = {0};
    mg_etcd_t *etcd;
    mg_error_t e;
    const char *cmd;
    int rc = 0;

    if (argc < 3) {
        fprintf(stderr, "usage: etcd_probe ENDPOINT COMMAND ...\n");
        return 2;
    }
    list = strdup(argv[1]); /* ENDPOINT may be a comma-separated list */
    for (tok = strtok_r(list, ",", &save); tok != NULL && opts.nendpoints < 8;
         tok = strtok_r(NULL, ",", &save))
        endpoints[opts.nendpoints++] = tok;
    opts.endpoints = endpoints;
    opts.timeout_ms = 3000;
    opts.username = getenv("ETCD_PROBE_USERNAME"); /* credentials never on the command line */
    opts.password = getenv("ETCD_PROBE_PASSWORD");
    opts.ca_file = getenv("ETCD_PROBE_CA_FILE"); /* TLS */
    opts.cert_file = getenv("ETCD_PROBE_CERT_FILE");
    opts.key_file = getenv("ETCD_PROBE_KEY_FILE");
    etcd = mg_etcd_new(&opts, &e);
    if (etcd == NULL)
        return fail(&e);
    if (getenv("ETCD_PROBE_DEADLINE_MS") != NULL) /* mg_etcd_deadline_set, from now */
        mg_etcd_deadline_set(etcd, atoll(getenv("ETCD_PROBE_DEADLINE_MS")));
    cmd = argv[2];
    if (strcmp(cmd, "version") == 0) {
        char v[64];

        rc = mg_etcd_version(etcd, v, sizeof(v), &e) ? (printf("%s\n", v), 0) : fail(&e);
    } else if (strcmp(cmd, "put") == 0 && argc >= 5) {
        int64_t rev;

        rc = mg_etcd_put(etcd, argv[3], argv[4], strlen(argv[4]),
                         argc > 5 ? strtoll(argv[5], NULL, 10) : 0, &rev, &e)
                 ? (printf("%" PRId64 "\n", rev), 0)
                 : fail(&e);
    } else if (strcmp(cmd, "get") == 0 && argc >= 4) {
        mg_etcd_range_t r;
        bool prefix = argc > 4 && strcmp(argv[4], "prefix") == 0;

        if (!mg_etcd_range(etcd, argv[3], prefix, argc > 5 ? strtoll(argv[5], NULL, 10) : 0, false,
                           &r, &e)) {
            rc = fail(&e);
        } else {
            for (size_t i = 0; i < r.nkvs; i++)
                printf("{\"key\":\"%s\",\"value\":\"%s\",\"create_revision\":%" PRId64
                       ",\"mod_revision\":%" PRId64 ",\"version\":%" PRId64 ",\"lease\":%" PRId64
                       "}\n",
                       r.kvs[i].key, r.kvs[i].value, r.kvs[i].create_revision,
                       r.kvs[i].mod_revision, r.kvs[i].version, r.kvs[i].lease);
            printf("count %" PRId64 " more %d revision %" PRId64 "\n", r.count, r.more ? 1 : 0,
                   r.header.revision);
            mg_etcd_range_cleanup(&r);
        }
    } else if (strcmp(cmd, "get-twice") == 0 && argc >= 4) {
        for (int i = 0; i < 2 && rc == 0; i++) {
            mg_etcd_range_t r;

            if (!mg_etcd_range(etcd, argv[3], false, 0, false, &r, &e)) {
                rc = fail(&e);
            } else {
                int64_t from, to;

                printf("count %" PRId64 " raft_term %" PRId64 "\n", r.count, r.header.raft_term);
                if (mg_etcd_replaced(etcd, &from, &to))
                    printf("replaced %" PRId64 " %" PRId64 "\n", from, to);
                mg_etcd_range_cleanup(&r);
            }
        }
    } else if (strcmp(cmd, "delete") == 0 && argc >= 4) {
        int64_t d;

        rc = mg_etcd_delete(etcd, argv[3], argc > 4 && strcmp(argv[4], "prefix") == 0, &d, &e)
                 ? (printf("%" PRId64 "\n", d), 0)
                 : fail(&e);
    } else if ((strcmp(cmd, "create") == 0 && argc >= 5) ||
               (strcmp(cmd, "cas-mod") == 0 && argc >= 6) ||
               (strcmp(cmd, "cas-value") == 0 && argc >= 6)) {
        mg_etcd_txn_t *txn = mg_etcd_txn_new();
        mg_etcd_txn_result_t res;
        const char *value = argv[strcmp(cmd, "create") == 0 ? 4 : 5];
        bool ok;

        if (strcmp(cmd, "create") == 0)
            ok = mg_etcd_txn_compare_int(txn, argv[3], MG_ETCD_TARGET_CREATE, MG_ETCD_CMP_EQUAL, 0,
                                         &e);
        else if (strcmp(cmd, "cas-mod") == 0)
            ok = mg_etcd_txn_compare_int(txn, argv[3], MG_ETCD_TARGET_MOD, MG_ETCD_CMP_EQUAL,
                                         strtoll(argv[4], NULL, 10), &e);
        else
            ok = mg_etcd_txn_compare_value(txn, argv[3], MG_ETCD_CMP_EQUAL, argv[4],
                                           strlen(argv[4]), &e);
        ok = ok && mg_etcd_txn_put(txn, true, argv[3], value, strlen(value), 0, &e) &&
             mg_etcd_txn_get(txn, false, argv[3], false, &e) &&
             mg_etcd_txn_commit(etcd, txn, &res, &e);
        if (!ok) {
            rc = fail(&e);
        } else {
            printf("succeeded %s", res.succeeded ? "true" : "false");
            if (res.nranges == 1 && res.ranges[0].nkvs == 1)
                printf(" current %s", res.ranges[0].kvs[0].value);
            printf("\n");
            mg_etcd_txn_result_cleanup(&res);
        }
        mg_etcd_txn_destroy(txn);
    } else if (strcmp(cmd, "lease-grant") == 0 && argc >= 4) {
        int64_t id, ttl;

        rc = mg_etcd_lease_grant(etcd, strtoll(argv[3], NULL, 10), &id, &ttl, &e)
                 ? (printf("%" PRId64 " %" PRId64 "\n", id, ttl), 0)
                 : fail(&e);
    } else if (strcmp(cmd, "lease-keepalive") == 0 && argc >= 4) {
        int64_t ttl;

        rc = mg_etcd_lease_keepalive(etcd, strtoll(argv[3], NULL, 10), &ttl, &e)
                 ? (printf("%" PRId64 "\n", ttl), 0)
                 : fail(&e);
    } else if (strcmp(cmd, "lease-revoke") == 0 && argc >= 4) {
        rc = mg_etcd_lease_revoke(etcd, strtoll(argv[3], NULL, 10), &e) ? (printf("ok\n"), 0)
                                                                        : fail(&e);
    } else if (strcmp(cmd, "watch") == 0 && argc >= 8) {
        watch_ctx_t w = {0, atoi(argv[7])};

        printf("watching\n");
        fflush(stdout);
        rc =
            mg_etcd_watch(etcd, argv[3], strcmp(argv[4], "prefix") == 0, strtoll(argv[5], NULL, 10),
                          strtoll(argv[6], NULL, 10), on_events, &w, &e)
                ? 0
                : fail(&e);
        printf("done %d\n", w.seen);
    } else {
        fprintf(stderr, "etcd_probe: unknown command or missing arguments\n");
        rc = 2;
    }
    mg_etcd_destroy(etcd);
    free(list);
    return rc;
}
