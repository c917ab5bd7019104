/*
 * ha/include/mg/ha.h - pgdaemon: configuration, the node state machine and
 * its decision function, node status records, and the HAProxy template.
 *
 * The daemon itself (etcd I/O, Postgres control, HTTP) lives in ha/src;
 * what is public here is what tests and the CLI need: the decision is a
 * pure function of a view (what etcd holds + local facts + the clock), so
 * it can be tested with a fake KV and a fake clock.
 */
#ifndef MG_HA_H
#define MG_HA_H

#include "mg/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * Configuration: defaults < JSON file (--config) < PGDAEMON_* < flags.
 * ------------------------------------------------------------------------ */

typedef enum {
    MG_HA_ON_STOP_FAST = 0,  /* stop Postgres (fast shutdown) when the daemon stops */
    MG_HA_ON_STOP_LEAVE = 1, /* leave Postgres running */
} mg_ha_on_stop_t;

typedef struct {
    char *name;        /* node name, [a-z0-9_-], unique in the cluster */
    char *address;     /* address other nodes and HAProxy reach this node on */
    char *data_dir;    /* PGDATA */
    char *bin_dir;     /* directory of initdb, postgres, pg_basebackup */
    int64_t pg_port;   /* Postgres port */
    char *pg_user;     /* OS user Postgres runs as ("" = the daemon's user) */
    int64_t http_port; /* health/status endpoint */
    int64_t udp_port;  /* wake-up datagrams */
    mg_strlist_t etcd_endpoints;
    char *etcd_username;
    char *etcd_password;
    char *etcd_ca_file;
    char *etcd_cert_file;
    char *etcd_key_file;
    char *etcd_prefix; /* "/pgdaemon" */
    char *cluster;     /* cluster name */
    int64_t ttl_ms;    /* lease TTL */
    int64_t loop_ms;   /* reconcile interval */
    int64_t retry_ms;  /* etcd/Postgres retry timeout */
    char *superuser;   /* Postgres superuser name */
    char *superuser_password;
    char *replication_user;
    char *replication_password;
    mg_strlist_t replication_addresses; /* pg_hba.conf: replication allowed from */
    mg_strlist_t client_addresses;      /* pg_hba.conf: other connections allowed from */
    char *primary_init_script;          /* run once after the primary's initdb + start */
    char *replica_init_script;          /* run once after a replica's first start */
    mg_strlist_t pg_parameters;         /* "name=value" appended to postgresql.conf */
    int64_t max_nodes;
    int64_t join_timeout_ms;
    int64_t max_events;
    int on_stop;           /* mg_ha_on_stop_t */
    int64_t max_lag_bytes; /* default bound of /replica */
    int64_t slot_ttl_ms;   /* drop the slot of a node gone from etcd this long */
    /* failover (issue 10) */
    int64_t priority;              /* candidate priority; 0 = never promote (like nofailover) */
    bool nofailover;               /* never promote this node */
    bool synchronous_mode;         /* manage synchronous_standby_names = ANY 1 (...) */
    int64_t failover_max_lag;      /* most bytes a candidate may lag the last primary LSN */
    int64_t switchover_timeout_ms; /* catch-up bound of a switchover before it aborts */
    int64_t rewind_attempts;       /* pg_rewind runs before falling back to a fresh clone */
    int64_t start_timeout_ms; /* primary without a running Postgres this long: release leader */
    char *cluster_secret;     /* HMAC key of the UDP plane (PGDAEMON_CLUSTER_SECRET) */
    /* files the secrets above are read from (issue 17, item 7): never a flag's value */
    char *cluster_secret_file;
    char *etcd_password_file;
    char *superuser_password_file;
    char *replication_password_file;
} mg_ha_config_t;

/*
 * mg_ha_config_load fills config from argv (after the command name), the
 * environment (envp; NULL = process environment) and the --config file,
 * then checks it (mg_ha_config_check). On success *config_out owns the
 * strings (free with mg_ha_config_destroy) and *first_positional indexes
 * the first non-option argument. On error nothing is returned and error
 * (domain config) names the option and its source.
 */
bool mg_ha_config_load(int argc, char **argv, char **envp, mg_ha_config_t **config_out,
                       int *first_positional, mg_error_t *error);

/* mg_ha_config_destroy frees a loaded config; NULL ok. */
void mg_ha_config_destroy(mg_ha_config_t *config);

/*
 * mg_ha_config_check validates cross-option rules: loop + 2 x retry <= ttl,
 * a valid node name, distinct ports, passwords present. Returns false with
 * error naming the options.
 */
bool mg_ha_config_check(const mg_ha_config_t *config, mg_error_t *error);

/* mg_ha_config_print_help writes the option list (with PGDAEMON_* names). */
void mg_ha_config_print_help(FILE *stream);

/* ------------------------------------------------------------------------
 * States and the transition table
 * ------------------------------------------------------------------------ */

/* What this node is doing; canonical lower_snake names in logs and etcd. */
typedef enum {
    MG_HA_STATE_INIT = 0,     /* just started: nothing decided yet */
    MG_HA_STATE_BOOTSTRAP,    /* won `initialize`: initdb and first start */
    MG_HA_STATE_WAIT_PRIMARY, /* joining: waiting for a primary and our slot */
    MG_HA_STATE_CLONE,        /* pg_basebackup from the primary */
    MG_HA_STATE_PRIMARY,      /* Postgres runs as primary, we hold `leader` */
    MG_HA_STATE_REPLICA,      /* Postgres runs as a standby */
    MG_HA_STATE_REFUSED,      /* refused to join (terminal; the daemon exits) */
    MG_HA_STATE_DEMOTED,      /* was primary: Postgres stopped (fenced or switched over) */
    MG_HA_STATE_COUNT_
} mg_ha_state_t;

/* Cluster-wide failover progress (status key); issue 10 drives it. */
typedef enum {
    MG_HA_FAILOVER_STABLE = 0,
    MG_HA_FAILOVER_INITIATED,
    MG_HA_FAILOVER_WAITING_FOR_CATCHUP,
    MG_HA_FAILOVER_DEMOTING_OLD_PRIMARY,
    MG_HA_FAILOVER_PROMOTING_NEW_PRIMARY,
    MG_HA_FAILOVER_RECONFIGURING_REPLICAS,
    MG_HA_FAILOVER_COUNT_
} mg_ha_failover_t;

/* What the daemon does this round. */
typedef enum {
    MG_HA_ACTION_NONE = 0,         /* nothing to change */
    MG_HA_ACTION_WAIT,             /* wait (for a primary, a slot, initialize) */
    MG_HA_ACTION_CLAIM_INITIALIZE, /* create-only txn on `initialize` */
    MG_HA_ACTION_INITDB,           /* initdb --data-checksums, configure */
    MG_HA_ACTION_START_PRIMARY,    /* start Postgres as primary, take `leader` */
    MG_HA_ACTION_CLONE,            /* pg_basebackup -S slot */
    MG_HA_ACTION_START_REPLICA,    /* configure standby and start Postgres */
    MG_HA_ACTION_MAINTAIN_PRIMARY, /* keep `leader`, slots, status */
    MG_HA_ACTION_MAINTAIN_REPLICA, /* keep standby running */
    MG_HA_ACTION_REFUSE,           /* record an event and exit non-zero */
    MG_HA_ACTION_PROMOTE,          /* take `leader` (create-only txn), pg_promote, status */
    MG_HA_ACTION_FOLLOW,           /* point the standby at a new primary (reload) */
    MG_HA_ACTION_DEMOTE,           /* stop writes: shut Postgres down, record the final LSN */
    MG_HA_ACTION_REJOIN,           /* pg_rewind against the primary, start as standby */
    MG_HA_ACTION_RECLONE,          /* remove the data dir; join again with pg_basebackup */
    MG_HA_ACTION_SWITCHOVER_BEGIN, /* status: initiated, target chosen (peer; "" = refuse) */
    MG_HA_ACTION_HANDOFF,          /* target caught up: release `leader`, status promoting */
    MG_HA_ACTION_ABORT_SWITCHOVER, /* catch-up timed out: restart as primary, status stable */
    MG_HA_ACTION_FINISH_FAILOVER,  /* replicas follow: status stable */
    MG_HA_ACTION_RELEASE_LEADER, /* Postgres did not start within start_timeout: give up `leader` */
    MG_HA_ACTION_DROP_LEADER,    /* `leader` names this standby, not taken in this run: delete it */
    MG_HA_ACTION_COUNT_
} mg_ha_action_t;

/* One row of the action table: an action, the states it may be decided in, what it does. */
typedef struct {
    mg_ha_action_t action;
    const char *name;     /* canonical lower_snake name (logs, events) */
    unsigned from_states; /* MG_HA_STATE_BIT(state) of every state it may be decided in */
    const char *comment;  /* what the daemon does for it */
} mg_ha_action_row_t;

#define MG_HA_STATE_BIT(state) (1u << (unsigned)(state))

/* mg_ha_actions returns the static action table (one row per action, in enum order). */
const mg_ha_action_row_t *mg_ha_actions(size_t *count);

const char *mg_ha_state_name(mg_ha_state_t state);
bool mg_ha_state_parse(const char *name, mg_ha_state_t *state);
const char *mg_ha_failover_name(mg_ha_failover_t failover);
bool mg_ha_failover_parse(const char *name, mg_ha_failover_t *failover);
const char *mg_ha_action_name(mg_ha_action_t action);

/* One row of the transition table (pg_auto_failover style). */
typedef struct {
    mg_ha_state_t from;
    mg_ha_state_t to;
    const char *comment;
} mg_ha_transition_t;

/* mg_ha_transitions returns the static table; *count gets its length. */
const mg_ha_transition_t *mg_ha_transitions(size_t *count);

/* mg_ha_transition_find returns the table row for from -> to, or NULL. */
const mg_ha_transition_t *mg_ha_transition_find(mg_ha_state_t from, mg_ha_state_t to);

/* ------------------------------------------------------------------------
 * Node status (nodes/<name>, JSON) and the cluster view
 * ------------------------------------------------------------------------ */

#define MG_HA_NAME_SIZE    64
#define MG_HA_LSN_SIZE     32
#define MG_HA_SYSID_SIZE   32
#define MG_HA_MAX_NODES    32
#define MG_HA_MAX_SLOTS    32
#define MG_HA_MAX_BAD_KEYS 8
/* the view's leader when the key holds no valid node name: it matches no node */
#define MG_HA_LEADER_INVALID "!invalid"

/* A replica as the primary sees it in pg_stat_replication. */
typedef struct {
    char application_name[MG_HA_NAME_SIZE];
    char state[16]; /* "streaming", "catchup", ... */
    char sent_lsn[MG_HA_LSN_SIZE];
    char write_lsn[MG_HA_LSN_SIZE];
    char flush_lsn[MG_HA_LSN_SIZE];
    char replay_lsn[MG_HA_LSN_SIZE];
    double write_lag_s; /* -1 when NULL */
    double flush_lag_s;
    double replay_lag_s;
    char reply_time[40];
} mg_ha_replication_t;

/* What a node reports about itself every loop, under its lease. */
typedef struct {
    char name[MG_HA_NAME_SIZE];
    mg_ha_state_t state;
    char role[16]; /* "primary", "replica", "unknown" */
    char host[64];
    int64_t pg_port;
    int64_t http_port;
    int64_t udp_port;
    bool pg_running;    /* the postmaster process exists */
    bool pg_reachable;  /* a connection succeeded */
    bool pg_queries_ok; /* ... and the status queries worked */
    char pg_error[160]; /* last connection or query error */
    char system_identifier[MG_HA_SYSID_SIZE];
    int64_t timeline;
    char current_lsn[MG_HA_LSN_SIZE];             /* primary: pg_current_wal_lsn() */
    char receive_lsn[MG_HA_LSN_SIZE];             /* replica: last received */
    char replay_lsn[MG_HA_LSN_SIZE];              /* replica: last replayed */
    bool streaming;                               /* replica: wal receiver streaming */
    char slots[MG_HA_MAX_SLOTS][MG_HA_NAME_SIZE]; /* primary: physical slots */
    size_t nslots;
    mg_ha_replication_t replication[MG_HA_MAX_NODES]; /* primary: pg_stat_replication */
    size_t nreplication;
    int64_t updated_ms;             /* wall clock of the report */
    int64_t started_ms;             /* when this daemon started */
    int64_t priority;               /* candidate priority (0 = never) */
    bool nofailover;                /* never promote */
    char upstream[MG_HA_NAME_SIZE]; /* replica: the node its standby config follows */
    int64_t ttl_ms;                 /* the node's lease ttl: a promise to it lasts at least that */
    int64_t create_revision;        /* etcd: when the key was created (not in the JSON) */
    int64_t mod_revision;           /* etcd: its last change (not in the JSON) */
    /*
     * Monotonic time at which the deciding node saw this report last change
     * (not in the JSON): freshness by local observation, so clock skew
     * between nodes does not matter (issue 16, finding 13). 0 = not tracked
     * (the wall clocks decide, as updated_ms against the view's wall_ms);
     * -1 = tracked, but no change seen yet (not fresh).
     */
    int64_t seen_ms;
} mg_ha_node_t;

/* The cluster status key, changed only by compare-and-swap. */
typedef struct {
    bool exists;
    int64_t mod_revision;
    char primary[MG_HA_NAME_SIZE];
    int64_t term;
    mg_ha_failover_t failover;
    char target_primary[MG_HA_NAME_SIZE];
    char last_failover_reason[128];
    int64_t last_failover_ms;
    char final_lsn[MG_HA_LSN_SIZE]; /* switchover: last LSN of the old primary */
    int64_t switchover_id;          /* last spec switchover request handled */
    int64_t writes_stopped_ms;      /* wall clock: old primary stopped writes */
    int64_t writes_resumed_ms;      /* wall clock: new primary accepts writes */
    char sync_members[MG_HA_MAX_NODES][MG_HA_NAME_SIZE]; /* superset of sync standbys */
    size_t nsync_members;
    /*
     * The failsafe set: every node the primary saw as a replica (added before
     * it counts, removed only after it was gone from nodes/ for 2 x ttl). A
     * primary without etcd keeps writing only while every member acks its
     * heartbeats, and a node that is not a member never takes the leader key
     * by failover (issue 16, finding 2). Empty: not tracked (older status).
     */
    char members[MG_HA_MAX_NODES][MG_HA_NAME_SIZE];
    size_t nmembers;
    /*
     * The primary runs synchronous mode (its setting, recorded by it): every
     * node chooses failover candidates by it, whatever its own setting, so a
     * rolling change of synchronous_mode cannot make one node promote by
     * the lag rule a node the sync set excludes (issue 16, finding 17).
     */
    bool synchronous_mode;
} mg_ha_cluster_status_t;

/* The spec key: what the operator wants (written by the CLI). */
typedef struct {
    int64_t switchover_id;               /* > status.switchover_id: a new request */
    char switchover_to[MG_HA_NAME_SIZE]; /* "" = the best replica */
    bool allow_data_loss;                /* promote past the lag limit */
    int64_t mod_revision;
} mg_ha_spec_t;

/*
 * mg_ha_node_to_json renders node into out (appended). mg_ha_node_from_json
 * parses one; unknown keys are ignored, missing ones keep defaults.
 */
bool mg_ha_node_to_json(const mg_ha_node_t *node, mg_buf_t *out, mg_error_t *error);
bool mg_ha_node_from_json(const char *json, size_t len, mg_ha_node_t *node, mg_error_t *error);

bool mg_ha_status_to_json(const mg_ha_cluster_status_t *status, mg_buf_t *out, mg_error_t *error);
bool mg_ha_status_from_json(const char *json, size_t len, mg_ha_cluster_status_t *status,
                            mg_error_t *error);
bool mg_ha_spec_to_json(const mg_ha_spec_t *spec, mg_buf_t *out, mg_error_t *error);
bool mg_ha_spec_from_json(const char *json, size_t len, mg_ha_spec_t *spec, mg_error_t *error);

/* mg_ha_name_valid: a node or cluster name, 1-48 of a-z, 0-9, '_' and '-'. */
bool mg_ha_name_valid(const char *name);
/* mg_ha_host_valid: a host name or IP address (letters, digits, '.', '-', ':'; 1-63). */
bool mg_ha_host_valid(const char *host);
/*
 * mg_ha_node_check validates a node record read from etcd: names, host,
 * ports, role, LSNs, system identifier, slot names (issue 17, item 2);
 * false with error saying what is wrong. mg_ha_status_sanitize drops the
 * invalid fields of a status (names, LSN, negative numbers) and says so.
 */
bool mg_ha_node_check(const mg_ha_node_t *node, mg_error_t *error);
bool mg_ha_status_sanitize(mg_ha_cluster_status_t *status, mg_error_t *error);

/* The bounds of every JSON value pgdaemon parses from etcd (issue 17, item 9). */
#define MG_HA_JSON_MAX_BYTES (1024 * 1024)
#define MG_HA_JSON_MAX_DEPTH 16
/* mg_ha_json_shape_ok: at most max_len bytes and max_depth nested arrays/objects. */
bool mg_ha_json_shape_ok(const char *json, size_t len, size_t max_len, int max_depth);

/* mg_ha_status_is_member says whether name is in status's failsafe set (true when untracked). */
bool mg_ha_status_is_member(const mg_ha_cluster_status_t *status, const char *name);

/* mg_ha_lsn_parse parses "X/Y" into *lsn; false when empty or malformed. */
bool mg_ha_lsn_parse(const char *text, uint64_t *lsn);

/* mg_ha_slot_name writes the slot name of node name ("pgdaemon_" + sanitised). */
void mg_ha_slot_name(const char *node_name, char *out, size_t outsz);

/*
 * The view a decision is made from: what etcd holds under the cluster
 * prefix, the local facts, and the clock. Built by mg_ha_view_load from a
 * list of key-values (the real etcd range, or a fake KV in tests).
 */
typedef struct {
    /* etcd */
    bool have_initialize;
    char init_sysid[MG_HA_SYSID_SIZE]; /* "" while the winner runs initdb */
    char init_node[MG_HA_NAME_SIZE];
    int64_t init_mod_revision;
    char leader[MG_HA_NAME_SIZE]; /* "" = nobody holds it */
    int64_t leader_mod_revision;
    int64_t leader_lease;
    mg_ha_cluster_status_t status;
    mg_ha_spec_t spec;
    char optime[MG_HA_LSN_SIZE]; /* last LSN the primary published (key optime) */
    mg_ha_node_t nodes[MG_HA_MAX_NODES];
    size_t nnodes;
    int64_t revision; /* etcd revision of the read */
    /*
     * Keys under the prefix whose value was not valid (malformed, too large
     * or deep, hostile): each costs only itself (issue 16, finding 15; issue
     * 17, item 9). A bad node record is skipped; a bad status exists but
     * names nobody (the primary repairs it); a bad spec or optime is
     * ignored; a bad initialize is there but unknown (nodes wait); a bad
     * leader is held by nobody known (MG_HA_LEADER_INVALID).
     */
    struct {
        char key[208];
        int64_t mod_revision;
        char why[160];
    } bad[MG_HA_MAX_BAD_KEYS];
    size_t nbad;
    /* local facts */
    mg_ha_state_t state; /* this node's current state */
    bool have_data;      /* data dir holds a cluster (PG_VERSION) */
    char local_sysid[MG_HA_SYSID_SIZE];
    bool pg_running;
    bool pg_queries_ok;
    bool pg_in_recovery;
    char upstream[MG_HA_NAME_SIZE]; /* replica: the node our standby config follows */
    bool failsafe_primary_heard;    /* a failsafe heartbeat from a primary within ttl */
    int rewind_failures;            /* pg_rewind failures since the last success */
    bool data_is_primary;           /* data dir has no standby.signal (was a primary) */
    bool replica_stalled;           /* standby has not streamed for long while a primary is up */
    int64_t
        primary_down_since_ms;   /* monotonic: meant to be primary, no writable Postgres (0 = up) */
    int64_t start_hold_until_ms; /* monotonic: gave up starting as primary; no retake before */
    /*
     * `leader` names this node under a lease this run of the daemon did not
     * grant: left by an earlier run, or restored with etcd from a backup. A
     * standby then never promotes on it (that would skip the election's lag,
     * sync and failsafe checks): the key is dropped and the election runs.
     */
    bool leader_stale;
    /* clock (milliseconds; monotonic for timeouts, wall for reports of other nodes) */
    int64_t now_ms;
    int64_t join_started_ms;
    int64_t wall_ms;
} mg_ha_view_t;

/*
 * mg_ha_view_load parses kvs (keys with the full prefix "<prefix>/<cluster>/")
 * into view's etcd part; local facts and clock are left as they are. A
 * value that does not parse or validate costs only its key (view->bad).
 * Returns true (error is unused; kept for callers).
 */
bool mg_ha_view_load(mg_ha_view_t *view, const char *cluster_prefix, const mg_etcd_kv_t *kvs,
                     size_t nkvs, mg_error_t *error);

/* mg_ha_view_find_node returns the node named name in view, or NULL (borrowed). */
const mg_ha_node_t *mg_ha_view_find_node(const mg_ha_view_t *view, const char *name);

/* A decision: the action and the state the node is in once it succeeded. */
typedef struct {
    mg_ha_action_t action;
    mg_ha_state_t next_state;
    char reason[192];           /* one line: why */
    char peer[MG_HA_NAME_SIZE]; /* the primary to clone from / follow, when relevant */
} mg_ha_decision_t;

/* Node-local limits the decision needs. */
typedef struct {
    const char *name;
    int64_t max_nodes;
    int64_t join_timeout_ms;
    /* failover; zero values keep the issue 9 behaviour of a node that never promotes */
    int64_t max_lag_bytes;         /* failover lag limit against the optime key */
    bool synchronous_mode;         /* candidates: sync members only, no lag allowance */
    int64_t fresh_ms;              /* a node report older than this is not a candidate */
    int64_t switchover_timeout_ms; /* catch-up bound (wall clock of status) */
    int64_t rewind_attempts;       /* then re-clone */
    int64_t start_timeout_ms; /* primary_down_since_ms bound before RELEASE_LEADER (0 = none) */
    bool can_failover;        /* priority > 0 and not nofailover */
} mg_ha_self_t;

/*
 * mg_ha_primary_position returns the freshest position of the primary
 * status names that anyone published (0 = none): the highest of the optime
 * key, the primary's own last report (current_lsn) and what every replica
 * following it reported received or replayed; source (may be NULL) says
 * which. The lag limit of a failover is measured against it, not against
 * optime alone, which the primary publishes only now and then (issue 16,
 * finding 18). Pure.
 */
uint64_t mg_ha_primary_position(const mg_ha_view_t *view, char *source, size_t sourcesz);

/*
 * mg_ha_failover_candidate returns the node that should take over when the
 * leader key is free (NULL: nobody may, reason in why): fresh healthy
 * replicas, not nofailover, priority > 0; the most advanced by
 * max(receive, replay) LSN within the lag limit against
 * mg_ha_primary_position (in synchronous mode: only sync members, all of
 * which must have reported); ties by priority then name. Pure.
 */
const mg_ha_node_t *mg_ha_failover_candidate(const mg_ha_self_t *self, const mg_ha_view_t *view,
                                             char *why, size_t whysz);

/*
 * mg_ha_promotion_sync_names writes into out the synchronous standbys ("a,
 * b"; "" for none) a node being promoted in synchronous mode applies while
 * it is still a standby, so its first commit already waits for one of them:
 * every other node whose fresh report says its Postgres runs (it may stream
 * from the new primary soon). A node whose Postgres does not run or whose
 * report is stale (the lost old primary, a node that died with it) is left
 * out: etcd's sync set is made from this list, and every member of it must
 * report before a later failover may choose, so a dead member would make
 * the next failover need allow_data_loss (issue 16, finding 14). Only in a
 * switchover with no other node running, the old primary (stopped on
 * purpose, it rejoins) is taken, so commits wait for it rather than run
 * unreplicated; after a failover with none running the list is empty and
 * the new primary starts asynchronous. Pure.
 */
void mg_ha_promotion_sync_names(const mg_ha_self_t *self, const mg_ha_view_t *view, bool switchover,
                                char *out, size_t outsz);

/*
 * mg_ha_fence_deadline returns the monotonic time until which a primary
 * may take writes: its lease (renewal sent at lease_ok_ms) minus the
 * margin, or the failsafe grant of its peers when that is later (0 =
 * none). A primary answers 503 on /primary and stops Postgres from then.
 */
int64_t mg_ha_fence_deadline(int64_t lease_ok_ms, int64_t failsafe_until_ms, int64_t ttl_ms,
                             int64_t margin_ms);

/*
 * mg_ha_decide returns this node's next action for view. Pure: no I/O, no
 * clock reads. The decision's (state, next_state) pair is always a row of
 * the transition table, and its action's row in the action table allows the
 * current state (both checked; a violation is a bug and returns false with
 * MG_ERROR_CODE_GENERIC).
 */
bool mg_ha_decide(const mg_ha_self_t *self, const mg_ha_view_t *view, mg_ha_decision_t *decision,
                  mg_error_t *error);

/* ------------------------------------------------------------------------
 * HAProxy
 * ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    const char *host;
    int64_t pg_port;
    int64_t http_port;
} mg_ha_haproxy_server_t;

/* The health-check settings of the generated haproxy.cfg (its default-server line). */
#define MG_HA_HAPROXY_CHECK                                                                \
    "inter 1s fastinter 100ms downinter 100ms fall 2 rise 1 observe layer4 error-limit 1 " \
    "on-error fastinter on-marked-down shutdown-sessions"

/*
 * mg_ha_haproxy_render appends an haproxy.cfg to out: a write frontend on
 * write_port routed to the server whose GET /primary answers 200 and a read
 * frontend on read_port balanced over servers whose GET /replica answers
 * 200. stats_socket may be NULL.
 */
bool mg_ha_haproxy_render(const mg_ha_haproxy_server_t *servers, size_t nservers,
                          const char *bind_address, int64_t write_port, int64_t read_port,
                          const char *stats_socket, mg_buf_t *out, mg_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MG_HA_H */
