/*
 * ha/src/ha_status.c - the records pgdaemon keeps in etcd (nodes/<name>,
 * status) as JSON, the view a decision is made from, slot names, and the
 * HAProxy configuration template.
 */
#include "mg/ha.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

/* ------------------------------------------------------------------------
 * JSON output: core's mg_json_* helpers
 * ------------------------------------------------------------------------ */

/* lag_seconds writes "k": v, or null when v is negative (not known). */
static void
lag_seconds(yajl_gen g, const char *k, double v)
{
    if (v < 0)
        mg_json_kstr(g, k, NULL);
    else
        mg_json_kdouble(g, k, v);
}

/* render appends what g generated to out and frees g. */
static bool
render(yajl_gen g, mg_buf_t *out, mg_error_t *error)
{
    bool ok = mg_json_take(g, out, error);

    yajl_gen_free(g);
    return ok;
}

static yajl_val
j_field(yajl_val obj, const char *name)
{
    if (!YAJL_IS_OBJECT(obj))
        return NULL;
    for (size_t i = 0; i < obj->u.object.len; i++)
        if (strcmp(obj->u.object.keys[i], name) == 0)
            return obj->u.object.values[i];
    return NULL;
}

static void
j_str(yajl_val obj, const char *name, char *out, size_t outsz)
{
    yajl_val v = j_field(obj, name);
    const char *s = (v != NULL && YAJL_IS_STRING(v)) ? YAJL_GET_STRING(v) : NULL;

    if (s != NULL)
        snprintf(out, outsz, "%s", s);
}

static int64_t
j_int(yajl_val obj, const char *name, int64_t dflt)
{
    yajl_val v = j_field(obj, name);

    if (v != NULL && YAJL_IS_INTEGER(v))
        return YAJL_GET_INTEGER(v);
    if (v != NULL && YAJL_IS_STRING(v)) {
        const char *s = YAJL_GET_STRING(v);

        return s != NULL ? strtoll(s, NULL, 10) : dflt;
    }
    return dflt;
}

static double
j_dbl(yajl_val obj, const char *name)
{
    yajl_val v = j_field(obj, name);

    if (v != NULL && YAJL_IS_NUMBER(v))
        return YAJL_GET_DOUBLE(v);
    return -1;
}

static bool
j_bool(yajl_val obj, const char *name)
{
    yajl_val v = j_field(obj, name);

    return v != NULL && YAJL_IS_TRUE(v);
}

/* j_names copies the strings of array arr (at most MG_HA_MAX_NODES) into out; returns how many. */
static size_t
j_names(yajl_val arr, char out[][MG_HA_NAME_SIZE])
{
    size_t n = 0;

    if (arr == NULL || !YAJL_IS_ARRAY(arr))
        return 0;
    for (size_t i = 0; i < arr->u.array.len && n < MG_HA_MAX_NODES; i++)
        if (YAJL_IS_STRING(arr->u.array.values[i]))
            snprintf(out[n++], MG_HA_NAME_SIZE, "%s", YAJL_GET_STRING(arr->u.array.values[i]));
    return n;
}

bool
mg_ha_json_shape_ok(const char *json, size_t len, size_t max_len, int max_depth)
{
    int depth = 0;
    bool in_string = false;

    if (len > max_len)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = json[i];

        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max_depth)
                return false;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return true;
}

static yajl_val
j_parse(const char *json, size_t len, const char *what, mg_error_t *error)
{
    char errbuf[128] = "";
    char *copy;
    yajl_val tree;

    /* yajl's tree parser recurses: bound depth and size before it runs (issue 17, item 9) */
    if (!mg_ha_json_shape_ok(json, len, MG_HA_JSON_MAX_BYTES, MG_HA_JSON_MAX_DEPTH)) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                     "could not parse %s: larger than %d bytes or nested deeper than %d", what,
                     MG_HA_JSON_MAX_BYTES, MG_HA_JSON_MAX_DEPTH);
        return NULL;
    }
    copy = malloc(len + 1);
    if (copy == NULL) {
        mg_error_set(error, MG_ERROR_DOMAIN_SYSTEM, ENOMEM, "out of memory");
        return NULL;
    }
    memcpy(copy, json, len);
    copy[len] = '\0';
    tree = yajl_tree_parse(copy, errbuf, sizeof(errbuf));
    free(copy);
    if (tree == NULL || !YAJL_IS_OBJECT(tree)) {
        char *nl = strchr(errbuf, '\n');

        if (nl)
            *nl = '\0';
        if (tree != NULL)
            yajl_tree_free(tree);
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE, "could not parse %s: %s",
                     what, errbuf[0] ? errbuf : "not a JSON object");
        return NULL;
    }
    return tree;
}

/* ------------------------------------------------------------------------
 * Node status
 * ------------------------------------------------------------------------ */

bool
mg_ha_node_to_json(const mg_ha_node_t *n, mg_buf_t *out, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);

    yajl_gen_map_open(g);
    mg_json_kstr(g, "name", n->name);
    mg_json_kstr(g, "state", mg_ha_state_name(n->state));
    mg_json_kstr(g, "role", n->role);
    mg_json_kstr(g, "host", n->host);
    mg_json_kint(g, "pg_port", n->pg_port);
    mg_json_kint(g, "http_port", n->http_port);
    mg_json_kint(g, "udp_port", n->udp_port);
    mg_json_kbool(g, "pg_running", n->pg_running);
    mg_json_kbool(g, "pg_reachable", n->pg_reachable);
    mg_json_kbool(g, "pg_queries_ok", n->pg_queries_ok);
    mg_json_kstr(g, "pg_error", n->pg_error);
    mg_json_kstr(g, "system_identifier", n->system_identifier);
    mg_json_kint(g, "timeline", n->timeline);
    mg_json_kstr(g, "current_lsn", n->current_lsn);
    mg_json_kstr(g, "receive_lsn", n->receive_lsn);
    mg_json_kstr(g, "replay_lsn", n->replay_lsn);
    mg_json_kbool(g, "streaming", n->streaming);
    mg_json_str(g, "slots");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < n->nslots; i++)
        mg_json_str(g, n->slots[i]);
    yajl_gen_array_close(g);
    mg_json_str(g, "replication");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < n->nreplication; i++) {
        const mg_ha_replication_t *r = &n->replication[i];

        yajl_gen_map_open(g);
        mg_json_kstr(g, "application_name", r->application_name);
        mg_json_kstr(g, "state", r->state);
        mg_json_kstr(g, "sent_lsn", r->sent_lsn);
        mg_json_kstr(g, "write_lsn", r->write_lsn);
        mg_json_kstr(g, "flush_lsn", r->flush_lsn);
        mg_json_kstr(g, "replay_lsn", r->replay_lsn);
        lag_seconds(g, "write_lag_s", r->write_lag_s);
        lag_seconds(g, "flush_lag_s", r->flush_lag_s);
        lag_seconds(g, "replay_lag_s", r->replay_lag_s);
        mg_json_kstr(g, "reply_time", r->reply_time);
        yajl_gen_map_close(g);
    }
    yajl_gen_array_close(g);
    mg_json_kint(g, "updated_ms", n->updated_ms);
    mg_json_kint(g, "started_ms", n->started_ms);
    mg_json_kint(g, "priority", n->priority);
    mg_json_kbool(g, "nofailover", n->nofailover);
    mg_json_kstr(g, "upstream", n->upstream);
    mg_json_kint(g, "ttl_ms", n->ttl_ms);
    yajl_gen_map_close(g);
    return render(g, out, error);
}

static void
node_from_tree(yajl_val t, mg_ha_node_t *n)
{
    char state[32] = "";
    yajl_val arr;

    memset(n, 0, sizeof(*n));
    j_str(t, "name", n->name, sizeof(n->name));
    j_str(t, "state", state, sizeof(state));
    if (!mg_ha_state_parse(state, &n->state))
        n->state = MG_HA_STATE_INIT;
    snprintf(n->role, sizeof(n->role), "unknown");
    j_str(t, "role", n->role, sizeof(n->role));
    j_str(t, "host", n->host, sizeof(n->host));
    n->pg_port = j_int(t, "pg_port", 0);
    n->http_port = j_int(t, "http_port", 0);
    n->udp_port = j_int(t, "udp_port", 0);
    n->pg_running = j_bool(t, "pg_running");
    n->pg_reachable = j_bool(t, "pg_reachable");
    n->pg_queries_ok = j_bool(t, "pg_queries_ok");
    j_str(t, "pg_error", n->pg_error, sizeof(n->pg_error));
    j_str(t, "system_identifier", n->system_identifier, sizeof(n->system_identifier));
    n->timeline = j_int(t, "timeline", 0);
    j_str(t, "current_lsn", n->current_lsn, sizeof(n->current_lsn));
    j_str(t, "receive_lsn", n->receive_lsn, sizeof(n->receive_lsn));
    j_str(t, "replay_lsn", n->replay_lsn, sizeof(n->replay_lsn));
    n->streaming = j_bool(t, "streaming");
    arr = j_field(t, "slots");
    if (arr != NULL && YAJL_IS_ARRAY(arr))
        for (size_t i = 0; i < arr->u.array.len && n->nslots < MG_HA_MAX_SLOTS; i++) {
            yajl_val v = arr->u.array.values[i];

            const char *s = YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : NULL;

            if (s != NULL)
                snprintf(n->slots[n->nslots++], MG_HA_NAME_SIZE, "%s", s);
        }
    arr = j_field(t, "replication");
    if (arr != NULL && YAJL_IS_ARRAY(arr))
        for (size_t i = 0; i < arr->u.array.len && n->nreplication < MG_HA_MAX_NODES; i++) {
            yajl_val v = arr->u.array.values[i];
            mg_ha_replication_t *r = &n->replication[n->nreplication++];

            j_str(v, "application_name", r->application_name, sizeof(r->application_name));
            j_str(v, "state", r->state, sizeof(r->state));
            j_str(v, "sent_lsn", r->sent_lsn, sizeof(r->sent_lsn));
            j_str(v, "write_lsn", r->write_lsn, sizeof(r->write_lsn));
            j_str(v, "flush_lsn", r->flush_lsn, sizeof(r->flush_lsn));
            j_str(v, "replay_lsn", r->replay_lsn, sizeof(r->replay_lsn));
            r->write_lag_s = j_dbl(v, "write_lag_s");
            r->flush_lag_s = j_dbl(v, "flush_lag_s");
            r->replay_lag_s = j_dbl(v, "replay_lag_s");
            j_str(v, "reply_time", r->reply_time, sizeof(r->reply_time));
        }
    n->updated_ms = j_int(t, "updated_ms", 0);
    n->started_ms = j_int(t, "started_ms", 0);
    n->priority = j_int(t, "priority", 0);
    n->nofailover = j_bool(t, "nofailover");
    j_str(t, "upstream", n->upstream, sizeof(n->upstream));
    n->ttl_ms = j_int(t, "ttl_ms", 0);
}

bool
mg_ha_node_from_json(const char *json, size_t len, mg_ha_node_t *node, mg_error_t *error)
{
    yajl_val t = j_parse(json, len, "node status", error);

    if (t == NULL)
        return false;
    node_from_tree(t, node);
    yajl_tree_free(t);
    if (node->name[0] == '\0')
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "could not parse node status: no \"name\"");
    return true;
}

bool
mg_ha_status_to_json(const mg_ha_cluster_status_t *s, mg_buf_t *out, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);

    yajl_gen_map_open(g);
    mg_json_kstr(g, "primary", s->primary);
    mg_json_kint(g, "term", s->term);
    mg_json_kstr(g, "failover_state", mg_ha_failover_name(s->failover));
    mg_json_kstr(g, "target_primary", s->target_primary);
    mg_json_kstr(g, "last_failover_reason", s->last_failover_reason);
    mg_json_kint(g, "last_failover_ms", s->last_failover_ms);
    mg_json_kstr(g, "final_lsn", s->final_lsn);
    mg_json_kint(g, "switchover_id", s->switchover_id);
    mg_json_kint(g, "writes_stopped_ms", s->writes_stopped_ms);
    mg_json_kint(g, "writes_resumed_ms", s->writes_resumed_ms);
    mg_json_str(g, "sync_members");
    yajl_gen_array_open(g);
    for (size_t i = 0; i < s->nsync_members; i++)
        mg_json_str(g, s->sync_members[i]);
    yajl_gen_array_close(g);
    mg_json_kbool(g, "synchronous_mode", s->synchronous_mode);
    if (s->nmembers > 0) {
        mg_json_str(g, "members");
        yajl_gen_array_open(g);
        for (size_t i = 0; i < s->nmembers; i++)
            mg_json_str(g, s->members[i]);
        yajl_gen_array_close(g);
    }
    yajl_gen_map_close(g);
    return render(g, out, error);
}

bool
mg_ha_spec_to_json(const mg_ha_spec_t *s, mg_buf_t *out, mg_error_t *error)
{
    yajl_gen g = yajl_gen_alloc(NULL);

    yajl_gen_map_open(g);
    mg_json_kint(g, "switchover_id", s->switchover_id);
    mg_json_kstr(g, "switchover_to", s->switchover_to);
    mg_json_kbool(g, "allow_data_loss", s->allow_data_loss);
    yajl_gen_map_close(g);
    return render(g, out, error);
}

bool
mg_ha_spec_from_json(const char *json, size_t len, mg_ha_spec_t *s, mg_error_t *error)
{
    yajl_val t = j_parse(json, len, "spec", error);

    if (t == NULL)
        return false;
    memset(s, 0, sizeof(*s));
    s->switchover_id = j_int(t, "switchover_id", 0);
    j_str(t, "switchover_to", s->switchover_to, sizeof(s->switchover_to));
    s->allow_data_loss = j_bool(t, "allow_data_loss");
    yajl_tree_free(t);
    return true;
}

bool
mg_ha_status_from_json(const char *json, size_t len, mg_ha_cluster_status_t *s, mg_error_t *error)
{
    yajl_val t = j_parse(json, len, "cluster status", error);
    char fo[40] = "";

    if (t == NULL)
        return false;
    memset(s, 0, sizeof(*s));
    s->exists = true;
    j_str(t, "primary", s->primary, sizeof(s->primary));
    s->term = j_int(t, "term", 0);
    j_str(t, "failover_state", fo, sizeof(fo));
    if (fo[0] != '\0' && !mg_ha_failover_parse(fo, &s->failover)) {
        yajl_tree_free(t);
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "could not parse cluster status: unknown failover_state \"%s\"", fo);
    }
    j_str(t, "target_primary", s->target_primary, sizeof(s->target_primary));
    j_str(t, "last_failover_reason", s->last_failover_reason, sizeof(s->last_failover_reason));
    s->last_failover_ms = j_int(t, "last_failover_ms", 0);
    j_str(t, "final_lsn", s->final_lsn, sizeof(s->final_lsn));
    s->switchover_id = j_int(t, "switchover_id", 0);
    s->writes_stopped_ms = j_int(t, "writes_stopped_ms", 0);
    s->writes_resumed_ms = j_int(t, "writes_resumed_ms", 0);
    s->nsync_members = j_names(j_field(t, "sync_members"), s->sync_members);
    s->nmembers = j_names(j_field(t, "members"), s->members);
    s->synchronous_mode = j_bool(t, "synchronous_mode");
    yajl_tree_free(t);
    return true;
}

bool
mg_ha_status_is_member(const mg_ha_cluster_status_t *status, const char *name)
{
    if (status->nmembers == 0)
        return true;
    for (size_t i = 0; i < status->nmembers; i++)
        if (strcmp(status->members[i], name) == 0)
            return true;
    return false;
}

bool
mg_ha_name_valid(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > 48)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool
mg_ha_host_valid(const char *host)
{
    size_t n = strlen(host);

    if (n == 0 || n > 63 || host[0] == '-' || host[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = host[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == ':'))
            return false;
    }
    return true;
}

/* lsn_or_empty: text is "" or an LSN. */
static bool
lsn_or_empty(const char *text)
{
    uint64_t lsn;

    return text[0] == '\0' || mg_ha_lsn_parse(text, &lsn);
}

bool
mg_ha_node_check(const mg_ha_node_t *n, mg_error_t *error)
{
    const char *why = NULL;

    if (!mg_ha_name_valid(n->name))
        why = "\"name\" is not a node name";
    else if (n->host[0] != '\0' && !mg_ha_host_valid(n->host))
        why = "\"host\" is not a host name or address";
    else if (n->pg_port < 0 || n->pg_port > 65535 || n->http_port < 0 || n->http_port > 65535 ||
             n->udp_port < 0 || n->udp_port > 65535)
        why = "a port is out of range";
    else if (strcmp(n->role, "primary") != 0 && strcmp(n->role, "replica") != 0 &&
             strcmp(n->role, "unknown") != 0)
        why = "\"role\" is not primary, replica or unknown";
    else if (!lsn_or_empty(n->current_lsn) || !lsn_or_empty(n->receive_lsn) ||
             !lsn_or_empty(n->replay_lsn))
        why = "an LSN does not parse";
    else if (n->system_identifier[strspn(n->system_identifier, "0123456789")] != '\0')
        why = "\"system_identifier\" is not a number";
    else if (n->upstream[0] != '\0' && !mg_ha_name_valid(n->upstream))
        why = "\"upstream\" is not a node name";
    else if (n->ttl_ms < 0 || n->ttl_ms > 24LL * 3600 * 1000)
        why = "\"ttl_ms\" is out of range";
    for (size_t i = 0; why == NULL && i < n->nslots; i++)
        if (n->slots[i][strspn(n->slots[i], "abcdefghijklmnopqrstuvwxyz0123456789_")] != '\0')
            why = "a slot name is not one of pgdaemon's";
    if (why != NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "invalid node status: %s", why);
    return true;
}

/* keep_valid_names drops the names of list that are not node names; returns how many it dropped. */
static size_t
keep_valid_names(char list[][MG_HA_NAME_SIZE], size_t *n)
{
    size_t kept = 0, dropped = 0;

    for (size_t i = 0; i < *n; i++) {
        if (!mg_ha_name_valid(list[i])) {
            dropped++;
            continue;
        }
        if (kept != i)
            memcpy(list[kept], list[i], MG_HA_NAME_SIZE);
        kept++;
    }
    *n = kept;
    return dropped;
}

bool
mg_ha_status_sanitize(mg_ha_cluster_status_t *s, mg_error_t *error)
{
    const char *why = NULL;

    if (s->primary[0] != '\0' && !mg_ha_name_valid(s->primary)) {
        s->primary[0] = '\0';
        why = "\"primary\" is not a node name";
    }
    if (s->target_primary[0] != '\0' && !mg_ha_name_valid(s->target_primary)) {
        s->target_primary[0] = '\0';
        why = "\"target_primary\" is not a node name";
    }
    if (!lsn_or_empty(s->final_lsn)) {
        s->final_lsn[0] = '\0';
        why = "\"final_lsn\" does not parse";
    }
    if (s->term < 0 || s->switchover_id < 0) {
        s->term = s->term < 0 ? 0 : s->term;
        s->switchover_id = s->switchover_id < 0 ? 0 : s->switchover_id;
        why = "\"term\" or \"switchover_id\" is negative";
    }
    if (keep_valid_names(s->sync_members, &s->nsync_members) > 0)
        why = "a sync member is not a node name";
    if (keep_valid_names(s->members, &s->nmembers) > 0)
        why = "a member is not a node name";
    if (why != NULL)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "invalid cluster status: %s (dropped)", why);
    return true;
}

void
mg_ha_slot_name(const char *node_name, char *out, size_t outsz)
{
    size_t n = 0;
    const char *p;

    n = (size_t)snprintf(out, outsz, "pgdaemon_");
    for (p = node_name; *p != '\0' && n + 1 < outsz; p++) {
        char c = *p;

        out[n++] = ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) ? c : '_';
    }
    out[n < outsz ? n : outsz - 1] = '\0';
}

/* ------------------------------------------------------------------------
 * The view
 * ------------------------------------------------------------------------ */

/* note_bad records that key held no valid value (it is skipped; the daemon records an event). */
static void
note_bad(mg_ha_view_t *view, const mg_etcd_kv_t *kv, const char *why)
{
    if (view->nbad >= MG_HA_MAX_BAD_KEYS)
        return;
    snprintf(view->bad[view->nbad].key, sizeof(view->bad[view->nbad].key), "%.*s",
             (int)(kv->key_len < 200 ? kv->key_len : 200), kv->key);
    view->bad[view->nbad].mod_revision = kv->mod_revision;
    snprintf(view->bad[view->nbad].why, sizeof(view->bad[view->nbad].why), "%s", why);
    view->nbad++;
}

/* load_initialize: a bad one is there but unknown (no node decides on it: they wait). */
static void
load_initialize(mg_ha_view_t *view, const mg_etcd_kv_t *kv)
{
    mg_error_t error;
    yajl_val t = j_parse(kv->value, kv->value_len, "key initialize", &error);

    view->have_initialize = true;
    view->init_mod_revision = kv->mod_revision;
    if (t == NULL) {
        note_bad(view, kv, error.message);
        return;
    }
    j_str(t, "system_identifier", view->init_sysid, sizeof(view->init_sysid));
    j_str(t, "node", view->init_node, sizeof(view->init_node));
    yajl_tree_free(t);
    if (view->init_sysid[strspn(view->init_sysid, "0123456789")] != '\0' ||
        (view->init_node[0] != '\0' && !mg_ha_name_valid(view->init_node))) {
        view->init_sysid[0] = view->init_node[0] = '\0';
        note_bad(view, kv, "invalid node name or system identifier");
    }
}

/*
 * load_status: invalid fields are dropped (the rest stays); one that does
 * not parse exists (so the primary can repair it by CAS) but names nobody.
 */
static void
load_status(mg_ha_view_t *view, const mg_etcd_kv_t *kv)
{
    mg_error_t error;

    if (!mg_ha_status_from_json(kv->value, kv->value_len, &view->status, &error)) {
        memset(&view->status, 0, sizeof(view->status));
        view->status.exists = true;
        note_bad(view, kv, error.message);
    } else if (!mg_ha_status_sanitize(&view->status, &error)) {
        note_bad(view, kv, error.message); /* what is valid stays */
    }
    view->status.mod_revision = kv->mod_revision;
}

/* load_node adds a valid node record; a bad one (or one too many) is skipped. */
static void
load_node(mg_ha_view_t *view, const mg_etcd_kv_t *kv, const char *name)
{
    mg_ha_node_t *n = &view->nodes[view->nnodes];
    mg_error_t error;

    if (view->nnodes >= MG_HA_MAX_NODES) {
        note_bad(view, kv, "more nodes than pgdaemon keeps track of");
        return;
    }
    if (!mg_ha_node_from_json(kv->value, kv->value_len, n, &error) ||
        !mg_ha_node_check(n, &error)) {
        note_bad(view, kv, error.message);
        return;
    }
    if (strcmp(n->name, name) != 0) {
        note_bad(view, kv, "the record names another node than its key");
        return;
    }
    n->create_revision = kv->create_revision;
    n->mod_revision = kv->mod_revision;
    view->nnodes++;
}

/*
 * load_request reads an operator request, a key under the CLI's lease that
 * expires by itself (issue 16, finding 17): "switchover" (id and target)
 * or "override" (allow_data_loss). The legacy "spec" key is not read: an
 * allow_data_loss or switchover left there would never expire.
 */
static void
load_request(mg_ha_view_t *view, const mg_etcd_kv_t *kv, bool switchover)
{
    mg_ha_spec_t r;
    mg_error_t error;

    if (!mg_ha_spec_from_json(kv->value, kv->value_len, &r, &error)) {
        note_bad(view, kv, error.message);
        return;
    }
    if (switchover) {
        if (r.switchover_id <= 0 ||
            (r.switchover_to[0] != '\0' && !mg_ha_name_valid(r.switchover_to))) {
            note_bad(view, kv, "invalid switchover_id or switchover_to");
            return;
        }
        view->spec.switchover_id = r.switchover_id;
        snprintf(view->spec.switchover_to, sizeof(view->spec.switchover_to), "%s", r.switchover_to);
        view->spec.mod_revision = kv->mod_revision;
    } else {
        view->spec.allow_data_loss = r.allow_data_loss;
    }
}

bool
mg_ha_view_load(mg_ha_view_t *view, const char *prefix, const mg_etcd_kv_t *kvs, size_t nkvs,
                mg_error_t *error)
{
    size_t plen = strlen(prefix);
    uint64_t lsn;

    (void)error;
    view->have_initialize = false;
    view->init_sysid[0] = view->init_node[0] = view->leader[0] = '\0';
    view->init_mod_revision = view->leader_mod_revision = view->leader_lease = 0;
    memset(&view->status, 0, sizeof(view->status));
    memset(&view->spec, 0, sizeof(view->spec));
    view->optime[0] = '\0';
    view->nnodes = 0;
    view->nbad = 0;
    for (size_t i = 0; i < nkvs; i++) {
        const mg_etcd_kv_t *kv = &kvs[i];
        const char *rel;

        if (kv->key_len < plen || strncmp(kv->key, prefix, plen) != 0)
            continue;
        rel = kv->key + plen;
        if (strcmp(rel, "initialize") == 0) {
            load_initialize(view, kv);
        } else if (strcmp(rel, "leader") == 0) {
            view->leader_mod_revision = kv->mod_revision;
            view->leader_lease = kv->lease;
            snprintf(view->leader, sizeof(view->leader), "%.*s", (int)kv->value_len, kv->value);
            if (kv->value_len >= sizeof(view->leader) || !mg_ha_name_valid(view->leader)) {
                /* held, by nobody we know: nobody may take it, nobody follows it */
                snprintf(view->leader, sizeof(view->leader), "%s", MG_HA_LEADER_INVALID);
                note_bad(view, kv, "not a node name");
            }
        } else if (strcmp(rel, "status") == 0) {
            load_status(view, kv);
        } else if (strcmp(rel, "switchover") == 0 || strcmp(rel, "override") == 0) {
            load_request(view, kv, rel[0] == 's');
        } else if (strcmp(rel, "optime") == 0) {
            snprintf(view->optime, sizeof(view->optime), "%.*s", (int)kv->value_len, kv->value);
            if (kv->value_len >= sizeof(view->optime) || !mg_ha_lsn_parse(view->optime, &lsn)) {
                view->optime[0] = '\0';
                note_bad(view, kv, "not an LSN");
            }
        } else if (strncmp(rel, "nodes/", 6) == 0) {
            load_node(view, kv, rel + 6);
        }
    }
    return true;
}

/* ------------------------------------------------------------------------
 * HAProxy
 * ------------------------------------------------------------------------ */

/*
 * Checks: a node that is DOWN for a backend (a replica for be_primary) is
 * checked every 100 ms, so a new primary takes writes within 100 ms of
 * /primary turning 200 (rise 1); a node that is UP every 1 s, confirmed
 * down 200 ms after a failed check (fall 2). "option redispatch" sends a
 * connection that the old primary refuses (its Postgres already stopped)
 * to another UP server at once instead of retrying it after a 1 s
 * turn-around. None of this can route writes to two primaries: /primary
 * answers 200 on one node at most and a node stops Postgres before another
 * can be promoted; HAProxy only decides how soon it notices.
 */

bool
mg_ha_haproxy_render(const mg_ha_haproxy_server_t *servers, size_t nservers,
                     const char *bind_address, int64_t write_port, int64_t read_port,
                     const char *stats_socket, mg_buf_t *out, mg_error_t *error)
{
    static const char *const roles[2] = {"primary", "replica"};
    bool ok = true;

    ok = ok && mg_buf_printf(out, error,
                             "# haproxy.cfg - generated by pgdaemon: writes go to the node whose\n"
                             "# GET /primary answers 200, reads to nodes whose GET /replica does.\n"
                             "global\n"
                             "    maxconn 1024\n");
    if (stats_socket != NULL)
        ok = ok &&
             mg_buf_printf(out, error, "    stats socket %s mode 600 level admin\n", stats_socket);
    ok = ok && mg_buf_printf(out, error,
                             "\ndefaults\n"
                             "    mode tcp\n"
                             "    timeout connect 200ms\n"
                             "    timeout client 30m\n"
                             "    timeout server 30m\n"
                             "    timeout check 2s\n"
                             "    option redispatch\n"
                             "    default-server " MG_HA_HAPROXY_CHECK "\n");
    for (int r = 0; r < 2 && ok; r++) {
        ok = mg_buf_printf(out, error,
                           "\nfrontend fe_%s\n"
                           "    bind %s:%lld\n"
                           "    default_backend be_%s\n"
                           "\nbackend be_%s\n"
                           "%s"
                           "    option httpchk GET /%s\n"
                           "    http-check expect status 200\n",
                           roles[r], bind_address, (long long)(r == 0 ? write_port : read_port),
                           roles[r], roles[r], r == 1 ? "    balance roundrobin\n" : "", roles[r]);
        for (size_t i = 0; i < nservers && ok; i++)
            ok = mg_buf_printf(out, error, "    server %s %s:%lld check port %lld\n",
                               servers[i].name, servers[i].host, (long long)servers[i].pg_port,
                               (long long)servers[i].http_port);
    }
    return ok;
}
