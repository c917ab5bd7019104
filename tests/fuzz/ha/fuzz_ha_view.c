/*
 * tests/fuzz/ha/fuzz_ha_view.c - libFuzzer target for what pgdaemon reads
 * from etcd, which anyone who can write to etcd controls (issue 17 items
 * 2 and 9). The first byte picks the mode:
 *
 *   even: the rest is an etcd v3 JSON answer, parsed as a range, a txn, a
 *         lease grant, a delete and a watch stream message (core_etcd.c);
 *         a range answer's key-values then go through mg_ha_view_load;
 *   odd:  the rest is key NUL value NUL key NUL value ... (keys relative
 *         to the cluster prefix, e.g. "nodes/n1", "status", "leader"),
 *         loaded with mg_ha_view_load - the values reach the node, status,
 *         spec and initialize parsers without base64 in the way.
 *
 * Checked after every load: each node kept has a valid name equal to its
 * key and passes mg_ha_node_check (so its host can go into a conninfo
 * string); the status passes mg_ha_status_sanitize unchanged; leader,
 * initialize's node, the switchover target and the optime are empty or
 * valid; every value kept re-encodes and parses back to the same JSON.
 */
#include "mg/ha.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "/pgd/c1/"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
finding(const char *what, const char *detail)
{
    fprintf(stderr, "fuzz_ha_view: %s: %s\n", what, detail != NULL ? detail : "");
    abort();
}

/* round_trip: node -> JSON -> node -> JSON gives the same JSON */
static void
node_round_trip(const mg_ha_node_t *n)
{
    mg_buf_t a, b;
    mg_ha_node_t again;
    mg_error_t error;

    mg_buf_init(&a, 1 << 20);
    mg_buf_init(&b, 1 << 20);
    if (!mg_ha_node_to_json(n, &a, &error))
        finding("a node kept does not encode", error.message);
    if (!mg_ha_node_from_json(a.data, a.len, &again, &error))
        finding("a node kept does not parse back", a.data);
    if (!mg_ha_node_to_json(&again, &b, &error) || a.len != b.len ||
        memcmp(a.data, b.data, a.len) != 0)
        finding("a node kept changes on a round trip", a.data);
    mg_buf_cleanup(&a);
    mg_buf_cleanup(&b);
}

static void
check_view(const mg_ha_view_t *v)
{
    mg_error_t error;
    mg_ha_cluster_status_t s = v->status;
    uint64_t lsn;

    for (size_t i = 0; i < v->nnodes; i++) {
        if (!mg_ha_name_valid(v->nodes[i].name) || !mg_ha_node_check(&v->nodes[i], &error))
            finding("a node kept is not valid", v->nodes[i].name);
        node_round_trip(&v->nodes[i]);
    }
    if (!mg_ha_status_sanitize(&s, &error) || memcmp(&s, &v->status, sizeof(s)) != 0)
        finding("the status kept is not sanitized", error.message);
    if (v->leader[0] != '\0' && strcmp(v->leader, MG_HA_LEADER_INVALID) != 0 &&
        !mg_ha_name_valid(v->leader))
        finding("the leader kept is not a node name", v->leader);
    if (v->init_node[0] != '\0' && !mg_ha_name_valid(v->init_node))
        finding("initialize's node is not a node name", v->init_node);
    if (v->spec.switchover_to[0] != '\0' && !mg_ha_name_valid(v->spec.switchover_to))
        finding("the switchover target is not a node name", v->spec.switchover_to);
    if (v->optime[0] != '\0' && !mg_ha_lsn_parse(v->optime, &lsn))
        finding("the optime kept is not an LSN", v->optime);
}

static void
load(const mg_etcd_kv_t *kvs, size_t n)
{
    static mg_ha_view_t view; /* large: not on the stack */
    mg_error_t error;

    memset(&view, 0, sizeof(view));
    mg_ha_view_load(&view, PREFIX, kvs, n, &error);
    check_view(&view);
}

/* etcd_answers parses text as every kind of etcd answer, then loads a range's key-values. */
static void
etcd_answers(const char *text, size_t len)
{
    mg_etcd_range_t range = {0};
    mg_etcd_txn_result_t txn = {0};
    mg_etcd_watch_response_t watch = {0};
    mg_etcd_header_t header;
    mg_error_t error;
    int64_t id, ttl, deleted;

    if (mg_etcd_parse_range(text, len, &range, &error))
        load(range.kvs, range.nkvs);
    mg_etcd_range_cleanup(&range);
    mg_etcd_parse_txn(text, len, &txn, &error);
    mg_etcd_txn_result_cleanup(&txn);
    mg_etcd_parse_lease(text, len, &header, &id, &ttl, &error);
    mg_etcd_parse_header_only(text, len, &header, &deleted, &error);
    mg_etcd_parse_watch(text, len, &watch, &error);
    mg_etcd_watch_response_cleanup(&watch);
}

/* key_values splits text into NUL-separated key and value records and loads them. */
static void
key_values(const char *text, size_t len)
{
    mg_etcd_kv_t kvs[16] = {{0}};
    size_t n = 0, at = 0;

    while (at < len && n < 16) {
        const char *k = text + at, *end = memchr(k, '\0', len - at);
        size_t klen = end != NULL ? (size_t)(end - k) : len - at;
        const char *v = k + klen + (end != NULL ? 1 : 0);
        size_t vmax = (size_t)(text + len - v), vlen;
        end = memchr(v, '\0', vmax);
        vlen = end != NULL ? (size_t)(end - v) : vmax;
        kvs[n].key = malloc(sizeof(PREFIX) + klen);
        kvs[n].value = malloc(vlen + 1);
        if (kvs[n].key == NULL || kvs[n].value == NULL)
            abort();
        memcpy(kvs[n].key, PREFIX, sizeof(PREFIX) - 1);
        memcpy(kvs[n].key + sizeof(PREFIX) - 1, k, klen);
        kvs[n].key_len = sizeof(PREFIX) - 1 + klen;
        kvs[n].key[kvs[n].key_len] = '\0';
        memcpy(kvs[n].value, v, vlen);
        kvs[n].value[vlen] = '\0';
        kvs[n].value_len = vlen;
        kvs[n].create_revision = kvs[n].mod_revision = (int64_t)n + 1;
        kvs[n].version = 1;
        kvs[n].lease = 0;
        n++;
        at = (size_t)(v - text) + vlen + 1;
    }
    load(kvs, n);
    for (size_t i = 0; i < n; i++) {
        free(kvs[i].key);
        free(kvs[i].value);
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text;

    if (size == 0 || size > 256 * 1024)
        return 0;
    text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if (data[0] & 1)
        key_values(text, size - 1);
    else
        etcd_answers(text, size - 1);
    free(text);
    return 0;
}
