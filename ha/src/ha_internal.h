/*
 * ha/src/ha_internal.h - declarations shared by ha/src files only:
 * Postgres control (ha_pg.c), process helpers (ha_proc.c), the daemon
 * (ha_loop.c and the files of ha_daemon.h) and the HTTP endpoints (ha_http.c).
 */
#ifndef MG_HA_INTERNAL_H
#define MG_HA_INTERNAL_H

#include "mg/ha.h"

#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <yajl/yajl_tree.h>

struct pg_conn;

/* ---- processes (ha_proc.c) ---- */

typedef struct {
    bool switch_user; /* running as root: drop to uid/gid for Postgres programs */
    uid_t uid;
    gid_t gid;
    char name[64];
} mg_ha_runas_t;

/* mg_ha__runas_resolve fills runas for user ("" = no switch). */
bool mg_ha__runas_resolve(const char *user, mg_ha_runas_t *runas, mg_error_t *error);

/*
 * mg_ha__spawn forks and execs argv (argv[0] a path) as runas with the
 * daemon's environment plus extra_env ("K=V", NULL-terminated; may be
 * NULL), stdout+stderr appended to log_path (NULL: /dev/null), in a new
 * session. Returns the pid or -1 with error.
 */
pid_t mg_ha__spawn(const mg_ha_runas_t *runas, char *const argv[], char *const extra_env[],
                   const char *log_path, mg_error_t *error);

/*
 * mg_ha__run runs argv like mg_ha__spawn and waits up to timeout_ms. When
 * out is not NULL, stdout goes there (capped) instead of the log. Returns
 * true on exit status 0; otherwise error names the program and status.
 */
bool mg_ha__run(const mg_ha_runas_t *runas, char *const argv[], char *const extra_env[],
                const char *log_path, int64_t timeout_ms, mg_buf_t *out, mg_error_t *error);

/* mg_ha__proc_starttime returns the start time of pid (clock ticks), or 0 when gone. */
uint64_t mg_ha__proc_starttime(pid_t pid);

/* mg_ha__proc_alive is true when pid exists with that starttime (0 = any) and is no zombie. */
bool mg_ha__proc_alive(pid_t pid, uint64_t starttime);

/*
 * mg_ha__now_ms: the boot clock (CLOCK_BOOTTIME: monotonic, and it counts
 * time spent suspended, so a lease deadline passes during a suspend; issue
 * 16, finding 8); mg_ha__wall_ms: wall clock (Unix ms).
 */
int64_t mg_ha__now_ms(void);
int64_t mg_ha__wall_ms(void);

/* mg_ha__postmaster_pid returns the pid in data_dir/postmaster.pid, or 0 (it may be stale). */
pid_t mg_ha__postmaster_pid(const char *data_dir);

/* mg_ha__rmtree removes path recursively (best effort); true when it is gone. */
bool mg_ha__rmtree(const char *path);

/* mg_ha__write_file writes text to path with mg_file_write_atomic, with mode, owned by runas. */
bool mg_ha__write_file(const char *path, const char *text, size_t len, int mode,
                       const mg_ha_runas_t *runas, mg_error_t *error);

/* ---- Postgres control (ha_pg.c) ---- */

typedef struct {
    const mg_ha_config_t *conf;
    mg_ha_runas_t runas;
    pid_t child; /* postmaster we started, or 0 */
    char log_path[PATH_MAX];
    char pgpass_path[PATH_MAX];
    char local_host[64];
    char sync_names[MG_HA_MAX_NODES * (MG_HA_NAME_SIZE + 4)]; /* "a, b" or "" */
    struct pg_conn *lsn_conn; /* kept open for mg_ha__pg_current_lsn (NULL = none) */
} mg_ha_pg_t;

bool mg_ha__pg_init(mg_ha_pg_t *pg, const mg_ha_config_t *conf, mg_error_t *error);
bool mg_ha__pg_have_data(const mg_ha_pg_t *pg);
bool mg_ha__pg_read_sysid(mg_ha_pg_t *pg, char *out, size_t outsz, mg_error_t *error);
bool mg_ha__pg_initdb(mg_ha_pg_t *pg, mg_error_t *error);
bool mg_ha__pg_configure(mg_ha_pg_t *pg, bool standby, const char *primary_host,
                         int64_t primary_port, mg_error_t *error);
bool mg_ha__pg_start(mg_ha_pg_t *pg, mg_error_t *error);
bool mg_ha__pg_stop(mg_ha_pg_t *pg, mg_error_t *error);
pid_t mg_ha__pg_running(mg_ha_pg_t *pg);
bool mg_ha__pg_check_slot(mg_ha_pg_t *pg, const char *host, int64_t port, const char *slot,
                          mg_error_t *error);
bool mg_ha__pg_basebackup(mg_ha_pg_t *pg, const char *host, int64_t port, const char *slot,
                          mg_error_t *error);
bool mg_ha__pg_ensure_roles(mg_ha_pg_t *pg, mg_error_t *error);
/*
 * mg_ha__pg_current_lsn reads pg_current_wal_lsn() of the local primary on a
 * connection kept open between calls (it is asked every 100 ms); an error
 * (in recovery, not reachable) closes it. mg_ha__pg_close closes it.
 */
bool mg_ha__pg_current_lsn(mg_ha_pg_t *pg, uint64_t *lsn, mg_error_t *error);
void mg_ha__pg_close(mg_ha_pg_t *pg);
/* mg_ha__pg_drop_slot drops slot name if inactive; *dropped says whether it did. */
bool mg_ha__pg_drop_slot(mg_ha_pg_t *pg, const char *name, bool *dropped, mg_error_t *error);
bool mg_ha__pg_ensure_slots(mg_ha_pg_t *pg, char names[][MG_HA_NAME_SIZE], size_t n,
                            mg_error_t *error);
/* mg_ha__pg_collect fills the pg_* fields, LSNs, timeline, slots and replication of node. */
void mg_ha__pg_collect(mg_ha_pg_t *pg, mg_ha_node_t *node, bool *in_recovery);
/* mg_ha__pg_write_sync writes pgdaemon.sync.conf: ANY 1 (names), or '' when names is "". */
bool mg_ha__pg_write_sync(mg_ha_pg_t *pg, const char *names, mg_error_t *error);
bool mg_ha__pg_reload(mg_ha_pg_t *pg, mg_error_t *error);
/*
 * mg_ha__pg_apply_sync writes pgdaemon.sync.conf and, when Postgres runs,
 * reloads it, so the setting is in force on return; pg->sync_names is what
 * Postgres runs with (unchanged when the reload failed).
 */
bool mg_ha__pg_apply_sync(mg_ha_pg_t *pg, const char *names, mg_error_t *error);
/* mg_ha__pg_promote runs pg_promote(wait => true) on the local standby. */
bool mg_ha__pg_promote(mg_ha_pg_t *pg, mg_error_t *error);
/* mg_ha__pg_stop_now stops Postgres: immediate (SIGQUIT) or fast (SIGINT), then harder. */
bool mg_ha__pg_stop_now(mg_ha_pg_t *pg, bool immediate, mg_error_t *error);
bool mg_ha__pg_is_standby_dir(const mg_ha_pg_t *pg);
/*
 * mg_ha__pg_final_lsn reads the last LSN of a cleanly stopped cluster (its
 * shutdown checkpoint) with pg_controldata. A cluster whose state is not
 * "shut down" (crashed, stopped by an immediate shutdown, in recovery) has
 * WAL after its last checkpoint: that is an error (domain pg, code
 * MG_ERROR_CODE_INVALID_ARGUMENT), never a stale LSN.
 */
bool mg_ha__pg_final_lsn(mg_ha_pg_t *pg, char *out, size_t outsz, mg_error_t *error);
/* mg_ha__controldata_final_lsn is its parser of pg_controldata's output (LC_ALL=C). */
bool mg_ha__controldata_final_lsn(const char *text, char *lsn, size_t lsnsz, mg_error_t *error);
/*
 * mg_ha__pg_checkpoint_remote runs CHECKPOINT on host:port: after a promotion
 * pg_control names the new timeline only from the next checkpoint on, and
 * pg_rewind reads the source's timeline from there.
 */
bool mg_ha__pg_checkpoint_remote(mg_ha_pg_t *pg, const char *host, int64_t port, mg_error_t *error);
/* mg_ha__pg_rewind runs pg_rewind against host:port (the target must be stopped). */
bool mg_ha__pg_rewind(mg_ha_pg_t *pg, const char *host, int64_t port, mg_error_t *error);
bool mg_ha__pg_run_init_script(mg_ha_pg_t *pg, const char *script, mg_error_t *error);

/*
 * mg_ha__conf_quote appends value as a postgresql.conf string literal ('...'
 * with ' and \ doubled); a control character (a newline would end the
 * setting) is an error naming what. mg_ha__conninfo_append appends
 * key='value' to a libpq connection string (\ and ' escaped by a
 * backslash). mg_ha__sync_setting appends the synchronous_standby_names
 * literal for names ("a, b": ANY 1 ("a", "b"); "": ''). Issue 17, item 2.
 */
bool mg_ha__conf_quote(mg_buf_t *b, const char *what, const char *value, mg_error_t *error);
bool mg_ha__conninfo_append(mg_buf_t *b, const char *key, const char *value, mg_error_t *error);
bool mg_ha__sync_setting(const char *names, mg_buf_t *out, mg_error_t *error);

/* ---- fencing watchdog (ha_fence.c) ---- */

/*
 * A child process that stops Postgres (SIGQUIT to the postmaster of
 * data_dir, then SIGKILL) when the armed deadline passes without a new
 * one: it fences a primary whose daemon is stopped, stuck or killed.
 */
typedef struct {
    pid_t pid;
    int fd; /* write end: int64 deadlines (monotonic ms; 0 = disarmed) */
} mg_ha_watchdog_t;

bool mg_ha__watchdog_start(mg_ha_watchdog_t *w, const char *data_dir, mg_error_t *error);
/*
 * mg_ha__watchdog_adopt takes over from the watchdog of an earlier daemon on
 * data_dir that outlived it (kill -9, then a fast restart): w is armed with
 * that watchdog's deadline, then that watchdog is ended, so it cannot kill
 * the Postgres the new daemon keeps. Returns the adopted deadline (boot
 * clock ms) or 0 when there was none.
 */
int64_t mg_ha__watchdog_adopt(mg_ha_watchdog_t *w, const char *data_dir);
void mg_ha__watchdog_arm(mg_ha_watchdog_t *w, int64_t deadline_ms);
/*
 * mg_ha__watchdog_deadline is what the watchdog is armed at: 0 (disarmed)
 * when Postgres cannot take writes; else half a margin after the write
 * deadline, whatever the node state (issue 16, finding 7: a promotion whose
 * status write failed left a writable Postgres with a disarmed watchdog);
 * without a deadline (no key) the last armed one, never a later one.
 */
int64_t mg_ha__watchdog_deadline(bool may_write, int64_t writable_until, int64_t armed,
                                 int64_t margin_ms);
/* mg_ha__watchdog_stop disarms and ends the child (clean daemon exit). */
void mg_ha__watchdog_stop(mg_ha_watchdog_t *w);

/* ---- UDP plane (ha_udp.c) ---- */

typedef enum {
    MG_HA_MSG_WAKEUP = 'W',
    MG_HA_MSG_HEARTBEAT = 'H',
    MG_HA_MSG_ACK = 'A',
} mg_ha_msg_type_t;

typedef struct {
    char type;
    char cluster[MG_HA_NAME_SIZE];
    char from[MG_HA_NAME_SIZE];
    char to[MG_HA_NAME_SIZE];
    int64_t seq;     /* sender's sequence (heartbeat: echoed by the ack) */
    int64_t wall_ms; /* sender's wall clock */
    bool failsafe;   /* heartbeat of a primary without etcd: ack = promise not to promote */
} mg_ha_msg_t;

/* mg_ha__msg_encode writes msg + HMAC-SHA256(secret) into out; returns its length or 0. */
size_t mg_ha__msg_encode(const mg_ha_msg_t *msg, const char *secret, char *out, size_t outsz);

/* datagram size bounds: the fixed fields and the hex HMAC, and a cap */
#define MG_HA_MSG_MIN (64 + 10)
#define MG_HA_MSG_MAX 1024

/*
 * mg_ha__msg_decode verifies the HMAC and parses; false for anything else
 * (wrong size, NUL bytes, unknown type or flag, signed or non-decimal
 * numbers, empty names). msg is untouched on failure.
 */
bool mg_ha__msg_decode(const char *buf, size_t len, const char *secret, mg_ha_msg_t *msg);

typedef enum {
    MG_HA_MSG_ACCEPTED = 0,
    MG_HA_MSG_INVALID,  /* size, HMAC (wrong key or tampered) or syntax */
    MG_HA_MSG_NOT_OURS, /* another cluster, another addressee, or from ourselves */
    MG_HA_MSG_STALE,    /* sender's wall clock more than window_ms from ours */
} mg_ha_msg_verdict_t;

/*
 * mg_ha__msg_receive decodes buf and checks it is addressed to node self
 * of cluster and fresh: its wall clock within window_ms of now_wall_ms.
 * Fills msg only when it returns MG_HA_MSG_ACCEPTED. Replays are checked
 * per sender afterwards with mg_ha__msg_seq_accept.
 */
mg_ha_msg_verdict_t mg_ha__msg_receive(const char *buf, size_t len, const char *secret,
                                       const char *cluster, const char *self, int64_t now_wall_ms,
                                       int64_t window_ms, mg_ha_msg_t *msg);

/*
 * mg_ha__msg_seq_accept is the replay check: a WAKEUP or HEARTBEAT passes
 * only with a sequence above *last_seq (the highest seen from its sender),
 * which it then raises; an ACK echoes our own sequence and always passes.
 */
bool mg_ha__msg_seq_accept(const mg_ha_msg_t *msg, int64_t *last_seq);

/* ---- LSNs ---- */

/* mg_ha__lsn_parse parses "X/Y"; false when text is empty or malformed. */
bool mg_ha__lsn_parse(const char *text, uint64_t *lsn);

/* ---- what the loop shares with the HTTP thread (ha_http.c) ---- */

typedef struct {
    pthread_mutex_t lock;
    const mg_ha_config_t *conf;
    mg_ha_node_t self; /* last report */
    bool in_recovery;
    bool holds_leader;         /* `leader` named this node at the last read */
    int64_t lease_ok_ms;       /* monotonic time the lease was last granted or renewed */
    int64_t writable_until_ms; /* mg_ha_fence_deadline: lease or failsafe grant */
    bool demoting;             /* switchover: writes stopped */
    int64_t loop_ok_ms;        /* monotonic time the last loop finished */
    char leader[MG_HA_NAME_SIZE];
    mg_ha_cluster_status_t status;
    mg_ha_view_t view; /* last etcd view */
    uint64_t transitions;
    uint64_t loops;
    uint64_t etcd_errors;
} mg_ha_shared_t;

struct mg_http_server;

/* mg_ha__http_start serves the endpoints for shared on address:port. */
struct mg_http_server *mg_ha__http_start(mg_ha_shared_t *shared, const char *address, uint16_t port,
                                         mg_error_t *error);

/* mg_ha__primary_ok says whether /primary may answer 200 now (lock held by caller). */
bool mg_ha__primary_ok(const mg_ha_shared_t *shared, int64_t now_ms, char *why, size_t whysz);

/* mg_ha__view_to_json renders a cluster view (status command, /status). */
bool mg_ha__view_to_json(const mg_ha_view_t *view, mg_buf_t *out, mg_error_t *error);

/* ---- synchronous mode (ha_actions.c) ---- */

/*
 * mg_ha__sync_narrow_ok says whether etcd's sync set may shrink to keep: a
 * member of keep must have flushed (rep: the primary's pg_stat_replication)
 * at least narrow_lsn, the primary's LSN once Postgres ran with keep alone;
 * before, a dropped member may hold commits nobody in keep has (issue 16,
 * finding 5). False when narrow_lsn is 0 (not known yet) or keep is empty.
 */
bool mg_ha__sync_narrow_ok(const mg_ha_replication_t *rep, size_t nrep,
                           char keep[][MG_HA_NAME_SIZE], size_t nkeep, uint64_t narrow_lsn);

/* ---- commands (the command tree is in ha_main.c) ---- */

extern const mg_cmd_t mg_ha_cmd_run;        /* ha_loop.c */
extern const mg_cmd_t mg_ha_cmd_status;     /* ha_cli.c */
extern const mg_cmd_t mg_ha_cmd_events;     /* ha_cli.c */
extern const mg_cmd_t mg_ha_cmd_switchover; /* ha_cli.c */
extern const mg_cmd_t mg_ha_cmd_override;   /* ha_cli.c */
extern const mg_cmd_t mg_ha_cmd_cluster;    /* ha_cluster.c */

/* What MG_CMD_NEEDS_STORE opens: the node config's etcd and key prefix. */
typedef struct {
    const mg_ha_config_t *conf; /* ctx->opts: every pgdaemon options struct starts with it */
    mg_etcd_t *etcd;
    char prefix[300]; /* "<etcd.prefix>/<cluster>/" */
} mg_ha_store_t;

/*
 * mg_ha__store_acquire is pgdaemon's acquire hook: it completes the node
 * config of ctx->opts (mg_ha__config_finish) and opens its etcd into
 * ctx->resources (an mg_ha_store_t). mg_ha__store_release closes it.
 */
bool mg_ha__store_acquire(mg_cmd_ctx_t *ctx, mg_error_t *error);
void mg_ha__store_release(mg_cmd_ctx_t *ctx);

/* ---- CLI helpers shared by ha_cli.c and ha_cluster.c ---- */

/* mg_ha__ystr is the text of a yajl string value, "" for anything else (borrowed). */
const char *mg_ha__ystr(yajl_val v);
/* mg_ha__load_view reads everything under prefix (range) into view. */
bool mg_ha__load_view(mg_etcd_t *etcd, const char *prefix, mg_ha_view_t *view, mg_error_t *error);
/* mg_ha__replication_of is the leader's pg_stat_replication row of name, or NULL (borrowed). */
const mg_ha_replication_t *mg_ha__replication_of(const mg_ha_view_t *v, const char *name);
/* mg_ha__has_slot_for says whether the leader lists the slot of node name. */
bool mg_ha__has_slot_for(const mg_ha_view_t *v, const char *name);

#endif /* MG_HA_INTERNAL_H */
