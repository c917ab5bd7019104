/*
 * ha/src/ha_daemon.h - the daemon of one node (`pgdaemon run`), shared by
 * the files that make it up, each with one role:
 *
 *   ha_loop.c     the reconcile loop: look, decide (mg_ha_decide), act, report
 *   ha_actions.c  the action table: what each decided action does
 *   ha_store.c    etcd I/O: lease, the view, leader/status/initialize, events
 *   ha_peers.c    the UDP plane: wake-ups, heartbeats, the failsafe grant
 *   ha_fence.c    the write deadline and the watchdog that enforces it
 */
#ifndef MG_HA_DAEMON_H
#define MG_HA_DAEMON_H

#include "ha_internal.h"

#include <signal.h>
#include <stdatomic.h>

#define MODULE "ha"

/* initdb failures in a row before the node gives up bootstrapping */
#define MAX_INITDB_FAILURES 3

/* loop interval while a failover is under way or the leader went silent on UDP */
#define FAST_LOOP_MS 100
#define PG_WATCH_MS  100 /* a primary looks for its postmaster this often between loops */

/* a standby that has not streamed this long while a primary is up is re-joined */
#define STALL_MS(conf) ((conf)->ttl_ms * 3 > 20000 ? (conf)->ttl_ms * 3 : 20000)

/* a slot of ours whose node is missing from nodes/ */
typedef struct {
    char slot[MG_HA_NAME_SIZE];
    int64_t since_ms; /* monotonic: first loop its node was missing */
} mg_ha_absent_slot_t;

/* what this node knows of a peer over UDP */
typedef struct {
    char name[MG_HA_NAME_SIZE];
    int64_t last_seq;      /* highest sequence seen from it (replays are dropped) */
    int64_t heard_ms;      /* monotonic: last valid datagram from it */
    int64_t acked_sent_ms; /* monotonic: send time of our newest failsafe heartbeat it acked */
    char host[64];         /* its address as last seen in nodes/ */
    int64_t udp_port;
    int64_t gone_since_ms; /* primary: since when this member is missing from nodes/ (0 = there) */
    int64_t seen_revision; /* mod_revision of its nodes/ key at the last read */
    int64_t seen_changed_ms; /* monotonic: when that last changed (-1 = not seen to change) */
} mg_ha_peer_t;

#define HB_RING 32 /* failsafe heartbeats remembered for their acks */

/* the lease keeper (ha_keeper.c): renews the lease while an action runs */
typedef struct {
    pthread_t thread;
    pthread_mutex_t lock; /* guards the fields below and the daemon's lease_ok_ms / key_ok_ms */
    pthread_cond_t cond;
    mg_etcd_t *etcd; /* its own client: a curl handle is not shared between threads */
    bool running;
    bool active;   /* an action runs */
    bool key_held; /* the lease holds `leader` for us: renewing it moves the write deadline */
    bool stop;
} mg_ha_keeper_t;

/* the daemon of one node: everything the loop, its actions and its peers share */
typedef struct {
    const mg_ha_config_t *conf;
    atomic_int *stop; /* > 0 once SIGTERM/SIGINT arrived (the command framework's counter) */
    mg_etcd_t *etcd;
    mg_ha_watchdog_t watchdog;
    mg_ha_keeper_t keeper;
    mg_ha_peer_t peers[MG_HA_MAX_NODES];
    size_t npeers;
    int64_t hb_seq;               /* our datagram sequence (strictly increasing) */
    int64_t hb_sent_seq[HB_RING]; /* failsafe heartbeats sent: seq -> send time */
    int64_t hb_sent_ms[HB_RING];
    int64_t failsafe_until_ms; /* peers' grant while etcd is lost (0 = none) */
    int64_t failsafe_heard_ms; /* monotonic: last failsafe heartbeat of a primary */
    int64_t promise_ms;        /* how long that promise lasts: max(our ttl, the sender's) */
    char failsafe_from[MG_HA_NAME_SIZE];
    bool woken;
    int rewind_failures;            /* reset once the standby streams again */
    int64_t not_streaming_since_ms; /* replica: monotonic, 0 = streaming */
    bool stalled;                   /* not streaming for too long: rejoin, then re-clone */
    char upstream[MG_HA_NAME_SIZE]; /* replica: who our standby config follows */
    mg_ha_pg_t pg;
    mg_ha_shared_t shared;
    struct mg_http_server *http;
    int udp_fd;
    char prefix[256]; /* "<etcd_prefix>/<cluster>/" */
    char key_init[320], key_leader[320], key_status[320], key_node[320], key_events[320];
    char key_optime[320];
    int64_t lease;
    int64_t lease_ok_ms;
    int64_t key_ok_ms; /* send time of the last renewal of the lease holding `leader` for us */
    int64_t write_deadline_ms; /* the write deadline Postgres was last allowed writes under */
    int64_t wd_deadline_ms;    /* what the watchdog is armed at (0 = disarmed) */
    mg_ha_state_t state;
    int64_t started_wall_ms;
    int64_t join_started_ms;
    mg_ha_view_t view;
    mg_ha_node_t self;
    bool in_recovery;
    char local_sysid[MG_HA_SYSID_SIZE];
    uint64_t event_seq;
    mg_ha_absent_slot_t absent[MG_HA_MAX_SLOTS];
    size_t nabsent;
    uint64_t loops;
    int initdb_failures;
    bool etcd_ok;
    mg_ha_action_t last_action;    /* the previous loop's decision */
    int64_t primary_down_since_ms; /* monotonic: meant to be primary, Postgres not writable */
    int64_t start_hold_until_ms;   /* monotonic: released `leader` (start_timeout); no retake */
    char last_start_error[MG_ERROR_MESSAGE_SIZE]; /* why the last start as primary failed */
    bool exiting;                                 /* an action ends the daemon with exit_code */
    struct {
        char key[208];
        int64_t mod_revision;
    } bad_seen[MG_HA_MAX_BAD_KEYS]; /* bad values already reported (ha.bad_key) */
    size_t nbad_seen;
    int64_t max_revision;       /* highest etcd revision seen (it never goes down, but a restore) */
    uint64_t sync_changed_loop; /* the round Postgres' synchronous set last changed */
    uint64_t sync_narrow_lsn;   /* our LSN a round after it: a narrower etcd set waits for it */
    uint64_t optime_published;  /* the last LSN we published as optime */
    int64_t optime_published_ms; /* boot clock: when */
    int64_t optime_checked_ms;   /* boot clock: the last look at the WAL position between loops */
    int exit_code;
} mg_ha_daemon_t;

/* the context of an event record (NULL fields are left out) */
typedef struct {
    const char *from;
    const char *to;
    const char *action;
    const char *peer;
} mg_ha_event_ctx_t;

/* ---- store: etcd I/O (ha_store.c) ---- */

/*
 * mg_ha__event writes an event under events/ (best effort: etcd may be the
 * thing that is down), trims the oldest beyond max_events, and logs it: the
 * log line is the one place it is logged.
 */
void mg_ha__event(mg_ha_daemon_t *d, mg_log_level_t level, const char *event,
                  const mg_ha_event_ctx_t *ctx, const char *message);
/* mg_ha__status_event records a failover-state change with its inputs (every node's LSNs). */
void mg_ha__status_event(mg_ha_daemon_t *d, const char *action, const char *peer, const char *fmt,
                         ...) MG_PRINTF(4, 5);
/* mg_ha__etcd_error logs an etcd failure (NOSPACE is its own event) and counts it. */
void mg_ha__etcd_error(mg_ha_daemon_t *d, const char *what, const mg_error_t *error);
/*
 * mg_ha__etcd_budget bounds the etcd calls that follow (until the next
 * call of it) by one deadline (issue 16, finding 12): one retry_timeout in
 * all, whatever the number of endpoints and calls, and for a primary the
 * time left before its write deadline, less what it needs to hear the acks
 * of its failsafe heartbeats. With a black-holed etcd and several
 * endpoints, one renewal blocked for endpoints x retry_timeout, so a
 * primary fenced itself before its first failsafe heartbeat, and its
 * peers, blocked the same way, could not ack in time. Called at the start
 * of a round and after every local step that may take long (Postgres).
 */
void mg_ha__etcd_budget(mg_ha_daemon_t *d);
/* mg_ha__renew_lease keeps the node lease alive (a new one when it expired); false = etcd lost. */
bool mg_ha__renew_lease(mg_ha_daemon_t *d);
/* mg_ha__read_view reads initialize, leader, status, spec, optime and nodes/ in one txn. */
bool mg_ha__read_view(mg_ha_daemon_t *d, mg_error_t *error);
/* mg_ha__publish_self puts nodes/<name> under the lease. */
void mg_ha__publish_self(mg_ha_daemon_t *d);
/* mg_ha__put_initialize writes initialize (create-only when expect_mod is 0); *won = applied. */
bool mg_ha__put_initialize(mg_ha_daemon_t *d, int64_t expect_mod, const char *sysid, bool *won,
                           mg_error_t *error);
/* mg_ha__release_initialize deletes initialize while it names this node without a sysid. */
void mg_ha__release_initialize(mg_ha_daemon_t *d);
/* mg_ha__take_leader puts leader = me under our lease if it is free or already ours. */
bool mg_ha__take_leader(mg_ha_daemon_t *d, bool *got, mg_error_t *error);
/* mg_ha__delete_leader deletes leader while it still names this node (else leaves it). */
bool mg_ha__delete_leader(mg_ha_daemon_t *d, mg_error_t *error);
/* mg_ha__handoff_leader deletes leader and writes status s in one txn (both compared). */
bool mg_ha__handoff_leader(mg_ha_daemon_t *d, const mg_ha_cluster_status_t *s, mg_error_t *error);
/* mg_ha__ensure_status makes the status key name this node primary (CAS on mod_revision). */
bool mg_ha__ensure_status(mg_ha_daemon_t *d, mg_error_t *error);
/* mg_ha__cas_status writes s if status still has the view's mod_revision (the view follows). */
bool mg_ha__cas_status(mg_ha_daemon_t *d, const mg_ha_cluster_status_t *s, mg_error_t *error);
/*
 * mg_ha__put_optime publishes the primary's current LSN (key optime) in a
 * txn that compares the leader key's value with this node (a deposed
 * primary never moves it) and remembers what it published.
 */
bool mg_ha__put_optime(mg_ha_daemon_t *d, const char *lsn, mg_error_t *error);

/* ---- peers: the UDP plane (ha_peers.c) ---- */

/* mg_ha__udp_open binds the node's UDP socket (non-blocking); -1 with error. */
int mg_ha__udp_open(const mg_ha_config_t *c, mg_error_t *error);
/* mg_ha__wake_node asks node n to run its loop now. */
void mg_ha__wake_node(mg_ha_daemon_t *d, const mg_ha_node_t *n);
/* mg_ha__wake_all asks every other node of the view to run its loop now (a status change). */
void mg_ha__wake_all(mg_ha_daemon_t *d);
/* mg_ha__send_heartbeats sends HEARTBEAT to every node of the view; failsafe asks for a promise. */
void mg_ha__send_heartbeats(mg_ha_daemon_t *d, bool failsafe);
/* mg_ha__failsafe_grant returns until when the peers let a primary write without etcd (0 = no). */
int64_t mg_ha__failsafe_grant(mg_ha_daemon_t *d);
/*
 * mg_ha__members_update keeps a primary's failsafe set in s
 * (mg_ha__members_update_at with the daemon's peers and clock). Returns
 * whether s changed (the caller writes it by CAS).
 */
bool mg_ha__members_update(mg_ha_daemon_t *d, mg_ha_cluster_status_t *s);
/*
 * mg_ha__peers_learn remembers the address of every node of the view (for
 * heartbeats) and fills each node's seen_ms (mg_ha__peers_seen).
 */
void mg_ha__peers_learn(mg_ha_daemon_t *d);
/* mg_ha__handle_datagram checks and acts on one datagram; true when it asks for a loop now. */
bool mg_ha__handle_datagram(mg_ha_daemon_t *d, const char *buf, size_t len);
/* mg_ha__peers_drain handles every datagram waiting on the socket; true when one asks for a loop.
 */
bool mg_ha__peers_drain(mg_ha_daemon_t *d);
/* mg_ha__peer_silent says whether name was heard over UDP, but not for longer than ms. */
bool mg_ha__peer_silent(const mg_ha_daemon_t *d, const char *name, int64_t ms);

/* ---- pure rules (ha_rules.c) ----
 *
 * The daemon's decisions that mg_ha_decide does not make, as functions of
 * their inputs (no I/O, no clock): the property test
 * (tests/unit/ha/test_election.c) drives them with a simulated cluster.
 * mg_ha__sync_narrow_ok and mg_ha__watchdog_deadline (ha_internal.h) are
 * rules of the same kind.
 */

/* mg_ha__peer_find is peers' entry of name (*npeers in use), added zeroed; NULL when full. */
mg_ha_peer_t *mg_ha__peer_find(mg_ha_peer_t *peers, size_t *npeers, const char *name);
/*
 * mg_ha__peers_seen fills each view node's seen_ms: when this node saw its
 * report (mod_revision) change, -1 when not yet (freshness without comparing
 * clocks across nodes, finding 13); peers remember the revisions.
 */
void mg_ha__peers_seen(mg_ha_view_t *view, mg_ha_peer_t *peers, size_t *npeers, int64_t now_ms);
/*
 * mg_ha__failsafe_set lists the nodes whose promise a primary without etcd
 * needs: the status's failsafe set (members). Untracked (empty), it lists
 * nobody, so there is no grant. Returns how many names it wrote into out.
 */
size_t mg_ha__failsafe_set(const mg_ha_view_t *view, char out[][MG_HA_NAME_SIZE]);
/*
 * mg_ha__grant_until is the primary's failsafe grant: every node of set
 * other than self must have acked (peers[].acked_sent_ms); the grant runs
 * ttl - margin from the oldest ack's send time. 0 = no grant (one missing,
 * or nobody else).
 */
int64_t mg_ha__grant_until(char set[][MG_HA_NAME_SIZE], size_t nset, const char *self,
                           const mg_ha_peer_t *peers, size_t npeers, int64_t ttl_ms,
                           int64_t margin_ms);
/*
 * mg_ha__promise_ok says whether a node in state with view may promise
 * sender (a failsafe heartbeat) not to take the leader key: only a node that
 * does not write and believes sender is the primary (the leader key, or with
 * the key free the status, names it). A node that sees another leader must
 * not vouch for the sender (issue 16, finding 2).
 */
bool mg_ha__promise_ok(mg_ha_state_t state, const mg_ha_view_t *view, const char *self,
                       const char *sender);
/*
 * mg_ha__promise_ttl is how long a promise to sender lasts: the longer of
 * our ttl and the sender's, so a rolling change of ttl cannot leave a
 * promise shorter than the grant the sender counts on (finding 17).
 */
int64_t mg_ha__promise_ttl(const mg_ha_view_t *view, const char *sender, int64_t own_ttl_ms);
/* mg_ha__promise_give records a promise of ttl_ms made at now_ms (a longer one in force stays). */
void mg_ha__promise_give(int64_t now_ms, int64_t ttl_ms, int64_t *heard_ms, int64_t *promise_ms);
/*
 * mg_ha__promise_at_start: a daemon that starts may have promised, in its
 * last ttl, not to take the leader key; with the failsafe on it keeps that
 * promise for a ttl from its start (the promise outlives the process,
 * finding 2).
 */
void mg_ha__promise_at_start(bool failsafe_on, int64_t now_ms, int64_t ttl_ms, int64_t *heard_ms,
                             int64_t *promise_ms);
/* mg_ha__promise_holds says whether a promise is in force (decide's failsafe_primary_heard). */
bool mg_ha__promise_holds(int64_t heard_ms, int64_t promise_ms, int64_t now_ms);
/*
 * mg_ha__members_update_at keeps a primary's failsafe set in s: self and
 * every node of the view in state replica are added; a member missing from
 * the view for 2 x ttl (peers[].gone_since_ms, from now_ms) is removed.
 * Returns whether s changed.
 */
bool mg_ha__members_update_at(mg_ha_cluster_status_t *s, const mg_ha_view_t *view, const char *self,
                              mg_ha_peer_t *peers, size_t *npeers, int64_t now_ms, int64_t ttl_ms);

/* which other nodes mg_ha__sync_candidates lists */
typedef enum {
    MG_HA_SYNC_STREAMING, /* streaming from this primary (its pg_stat_replication rows) */
    MG_HA_SYNC_ALIVE,     /* reporting a running Postgres: may stream from us soon */
    MG_HA_SYNC_ALL,       /* every other node */
} mg_ha_sync_pick_t;

/* mg_ha__sync_candidates joins the names of the other nodes pick selects ("a, b") into out. */
void mg_ha__sync_candidates(const mg_ha_view_t *view, const char *self,
                            const mg_ha_replication_t *rep, size_t nrep, mg_ha_sync_pick_t pick,
                            char *out, size_t outsz);
/* mg_ha__names_to_status parses "a, b" into the status's sync member list. */
void mg_ha__names_to_status(const char *names, mg_ha_cluster_status_t *s);

/* what a primary in synchronous mode knows when it manages its sync set */
typedef struct {
    const mg_ha_view_t *view;
    const char *self;
    const mg_ha_replication_t *rep; /* its pg_stat_replication */
    size_t nrep;
    const char *pg_names;    /* the set Postgres runs with ("a, b") */
    const char *current_lsn; /* its LSN */
    bool changed_this_round; /* Postgres' set changed in this round */
    uint64_t narrow_lsn;     /* the LSN a narrower etcd set waits for (0 = not taken yet) */
} mg_ha_sync_in_t;

typedef enum {
    MG_HA_SYNC_KEEP,   /* nothing to do */
    MG_HA_SYNC_WIDEN,  /* write the status *s (etcd's set grows before Postgres' does) */
    MG_HA_SYNC_APPLY,  /* Postgres runs with want from now on */
    MG_HA_SYNC_MARK,   /* remember *narrow_lsn: etcd's set narrows once a member has it */
    MG_HA_SYNC_NARROW, /* write the status *s (etcd's set shrinks to Postgres') */
} mg_ha_sync_step_t;

/*
 * mg_ha__sync_plan is manage_sync's rule: synchronous_standby_names = ANY 1
 * (streaming standbys), with the status key's sync_members a superset of
 * every set Postgres may have used: widen etcd first, then Postgres; narrow
 * Postgres first, then etcd, once a remaining member flushed the LSN of a
 * round after the change (finding 5). Never degrades to '' while another
 * node runs Postgres. Fills want, *s (the status to write) and *narrow_lsn.
 */
mg_ha_sync_step_t mg_ha__sync_plan(const mg_ha_sync_in_t *in, char *want, size_t wantsz,
                                   mg_ha_cluster_status_t *s, uint64_t *narrow_lsn);
/*
 * mg_ha__status_sync_names joins s's sync members other than self into out:
 * a primary that starts again (its Postgres had stopped) waits for the
 * standbys etcd says may hold commits.
 */
void mg_ha__status_sync_names(const mg_ha_cluster_status_t *s, const char *self, char *out,
                              size_t outsz);
/*
 * mg_ha__promote_plan is what a promotion of self writes: the sync set
 * Postgres runs with from its first commit on (names; "" without
 * synchronous_mode) and the status after it (*s: term + 1, primary self,
 * reconfiguring_replicas; the caller adds the failsafe set,
 * mg_ha__members_update, and the times last_failover_ms and
 * writes_resumed_ms once Postgres takes writes). Returns whether it
 * finishes a switchover.
 */
bool mg_ha__promote_plan(const mg_ha_view_t *view, const mg_ha_self_t *me, bool synchronous_mode,
                         char *names, size_t namesz, mg_ha_cluster_status_t *s);
/*
 * mg_ha__fence_due says whether a Postgres that may take writes (state
 * primary, or a running Postgres whose data directory is no standby's) must
 * be stopped now: past its write deadline, or, without one, past the one it
 * was last allowed writes under (finding 7).
 */
bool mg_ha__fence_due(bool may_write, int64_t writable_until, int64_t write_deadline,
                      int64_t now_ms);
/* mg_ha__write_deadline is the deadline a Postgres that may write was last allowed writes under. */
int64_t mg_ha__write_deadline(bool may_write, int64_t writable_until, int64_t last);
/*
 * mg_ha__stop_stops_pg says whether a stopping daemon in state stops the
 * running Postgres of its data directory: one it runs (its state runs one,
 * pg_child: it started it, watchdog_armed: it holds its fence, also one
 * adopted from a killed daemon before the first loop), on_stop fast, and
 * always one that is not a standby (on_stop leave applies to a standby
 * only, finding 1).
 */
bool mg_ha__stop_stops_pg(int on_stop, mg_ha_state_t state, bool pg_child, bool watchdog_armed,
                          bool running, bool standby_dir);
/*
 * mg_ha__handoff_refusal is why a switchover may not hand over (NULL: it
 * may): the old primary's data directory must still end at the status's
 * final LSN, stopped cleanly and not started since (finding 6b).
 */
const char *mg_ha__handoff_refusal(bool pg_running, bool have_final_lsn, const char *dir_lsn,
                                   const char *status_final_lsn);

/* ---- fencing: the write deadline (ha_fence.c) ---- */

/* mg_ha__writable_until is the primary's write deadline: lease or failsafe grant (0 = none). */
int64_t mg_ha__writable_until(const mg_ha_daemon_t *d);
/*
 * mg_ha__may_become_primary is checked right before Postgres is started as
 * or promoted to a primary: the lease must be inside its write window, and
 * the watchdog is armed first, so a pause after this check still ends in a
 * fence, not in a second primary.
 */
bool mg_ha__may_become_primary(mg_ha_daemon_t *d, mg_error_t *error);
/*
 * mg_ha__arm_watchdog moves the watchdog's deadline: half a margin after
 * the write deadline while Postgres may take writes (state primary, or a
 * running Postgres whose data directory is no standby's), whatever the node
 * state; disarmed once it cannot.
 */
void mg_ha__arm_watchdog(mg_ha_daemon_t *d);
/* mg_ha__fence_if_due stops a Postgres that may write once its write deadline passed. */
void mg_ha__fence_if_due(mg_ha_daemon_t *d);
/* mg_ha__stop_writes makes /primary answer 503 from now on (a demotion or a fence). */
void mg_ha__stop_writes(mg_ha_daemon_t *d);

/* ---- actions (ha_actions.c) ---- */

typedef enum {
    MG_HA_ACT_DONE = 0, /* done: the node moves to the decision's next state */
    MG_HA_ACT_FAILED,   /* not done (error set, or nothing to report): decide again next loop */
    MG_HA_ACT_EXIT,     /* the daemon exits with *exit_code */
} mg_ha_act_result_t;

/*
 * mg_ha__act runs the function the action table (ha_actions.c) binds to
 * dec->action. On MG_HA_ACT_FAILED error may be set (not set: nothing to
 * report, e.g. another node won a race); on MG_HA_ACT_EXIT *exit_code is set.
 */
mg_ha_act_result_t mg_ha__act(mg_ha_daemon_t *d, const mg_ha_decision_t *dec, int *exit_code,
                              mg_error_t *error);

/* ---- the lease keeper (ha_keeper.c) ---- */

/* mg_ha__keeper_start starts the keeper thread with its own etcd client (options as the loop's). */
bool mg_ha__keeper_start(mg_ha_daemon_t *d, const mg_etcd_options_t *options, mg_error_t *error);
/* mg_ha__keeper_begin: an action starts; renew the lease every loop_wait until _end. */
void mg_ha__keeper_begin(mg_ha_daemon_t *d);
void mg_ha__keeper_end(mg_ha_daemon_t *d);
/*
 * mg_ha__keeper_key sets key_ok_ms and whether the lease holds `leader` for
 * us, under the keeper's lock (an action took, handed off or released the
 * key while the keeper may be renewing).
 */
void mg_ha__keeper_key(mg_ha_daemon_t *d, bool held, int64_t key_ok_ms);
/* mg_ha__keeper_lock/unlock guard lease_ok_ms, key_ok_ms and the watchdog deadline in actions. */
void mg_ha__keeper_lock(mg_ha_daemon_t *d);
void mg_ha__keeper_unlock(mg_ha_daemon_t *d);
/* mg_ha__keeper_stop ends the thread (NULL-safe when never started). */
void mg_ha__keeper_stop(mg_ha_daemon_t *d);

/* ---- the loop (ha_loop.c) ---- */

/* mg_ha__self_limits fills the node-local limits mg_ha_decide needs from the config. */
void mg_ha__self_limits(const mg_ha_daemon_t *d, mg_ha_self_t *me);
/* mg_ha__collect_local fills the view's local facts and the node report from Postgres. */
void mg_ha__collect_local(mg_ha_daemon_t *d);

#endif /* MG_HA_DAEMON_H */
