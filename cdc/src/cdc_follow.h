/*
 * cdc/src/cdc_follow.h - the follower's insides, shared by its files:
 * cdc_follow.c (the engine: stream, reader loop, applier thread),
 * cdc_data.c (data events, documents read by _id), cdc_ddl.c (drop,
 * rename, dropDatabase policies), cdc_lease.c (who applies, heartbeat,
 * lag).
 */
#ifndef MG_CDC_FOLLOW_H
#define MG_CDC_FOLLOW_H

#include "cdc_internal.h"

#include <libpq-fe.h>
#include <mongoc/mongoc.h>
#include <pthread.h>

#define ERR_HISTORY_LOST    286
#define ERR_TOO_LARGE       10334
#define ERR_FIELD_TOO_LARGE 7182500 /* $changeStreamSplitLargeEvent: one field over the limit */
#define RECONNECT_BUDGET_S  MG_PG_RECONNECT_BUDGET_S
#define TXN_MAX_DOCS        100000

typedef struct {
    char *db, *coll, *schema, *table;
    mg_schema_key_type_t key;
    char status[32];
} follow_coll_t;

/*
 * The applier thread commits one batch while the reader fills the next, so
 * the source's and the target's round trips overlap instead of adding up.
 */
typedef struct {
    pthread_t thread;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool busy; /* a batch is handed over and not yet committed */
    bool quit;
    mg_cdc_batch_t *batch;
    bson_t *token;
    uint32_t t, i;
    int64_t wall_ms;
    bool failed;
    bool fenced; /* the failure was the cutover's fence */
    mg_error_t error;
    PGconn *pg;     /* the applier's own connection */
    mg_state_t *st; /* the state on it */
} applier_t;

struct mg_cdc_follow {
    const mg_cdc_follow_settings_t *s;
    PGconn *pg;     /* the reader's connection: state and DDL policies */
    mg_state_t *st; /* the state on it */
    mongoc_client_t *mongo;
    mongoc_change_stream_t *stream;
    follow_coll_t *colls;
    size_t ncolls;
    mg_cdc_table_t *tables;
    mg_cdc_batch_t *batch; /* being filled by the reader */
    mg_cdc_batch_t *spare; /* the other one: empty, or with the applier */
    applier_t ap;
    mg_schema_fidelity_t fidelity;
    uint32_t t0_t, t0_i;
    bson_t *committed;     /* checkpoint token, NULL before the first apply */
    bson_t *last_read;     /* token after the last event read */
    uint32_t pos_t, pos_i; /* cluster time of last_read */
    int64_t pos_wall_ms;
    bool slim;             /* reopen without fullDocument for one oversize event */
    bool split;            /* the source splits large events ($changeStreamSplitLargeEvent) */
    mg_cdc__split_t frags; /* the fragments of an event read so far */
    bool rewatch;          /* the watched databases changed: reopen after this event */
    char **dbs;            /* the watched databases */
    size_t ndbs;
    /* stats */
    int64_t applied_events;
    double rate; /* events/s, smoothed */
    double lag_s;
    double last_apply;
    double batch_started;
    mg_http_server_t *http;
    pthread_mutex_t stats_lock;
    /* where the reader's time went */
    double t_source; /* in mongoc_change_stream_next */
    double t_batch;  /* decoding, rendering into the batch */
    double t_wait;   /* waiting for the applier */
    double t_started;
    /* who applies (cdc_lease.c) and how far behind */
    char name[128]; /* host:pid */
    char host[64];
    bool claimed;
    double last_beat;
    mg_cdc__lag_t lag;
    bool has_committed_pos;
    uint32_t committed_t, committed_i; /* what the applier committed last */
    /* after the cutover (cdc_fence.c): reading only, to report what the source took */
    bool fenced;
    bool fence_seen;       /* the heartbeat saw the flip: enter the fenced mode at the next turn */
    int64_t after_cutover; /* source writes seen after the cutover */
    char flipped_at[32];
    /* the run loop */
    double last_log, last_rate_save, source_fail_since;
    mg_cdc_event_t prev; /* only its transaction identity is used */
    bool have_prev;
};

typedef struct mg_cdc_follow follow_t;

/* ---- cdc_follow.c ---- */

/* mg_cdc__find_table returns the index of db.coll among the followed collections, or -1. */
int mg_cdc__find_table(follow_t *f, const char *db, const char *coll);

/* mg_cdc__active tells whether a collection's changes are applied (copied or following). */
bool mg_cdc__active(const follow_coll_t *c);

/* mg_cdc__wait_idle waits until the applier has committed what it holds (false: its error). */
bool mg_cdc__wait_idle(follow_t *f, mg_error_t *error);

/* mg_cdc__apply commits everything read so far and waits for it. */
bool mg_cdc__apply(follow_t *f, mg_error_t *error);

/* mg_cdc__set_status records a collection's status and error (best effort). */
void mg_cdc__set_status(follow_t *f, size_t k, const char *status, const char *err);

/* mg_cdc__stop_collection stops collection k with the reason why (status failed). */
void mg_cdc__stop_collection(follow_t *f, size_t k, const char *why);

/* ---- cdc_stream.c ---- */

/* mg_cdc__open_stream (re)opens the change stream at token (T0 when NULL). */
bool mg_cdc__open_stream(follow_t *f, const bson_t *token, mg_error_t *error);

/* mg_cdc__too_large switches to reading events without their documents (logged). */
void mg_cdc__too_large(follow_t *f, int code);

/* mg_cdc__stream_probe asks the source's version: whether it splits large events. */
bool mg_cdc__stream_probe(follow_t *f, mg_error_t *error);

/* mg_cdc__watch_dbs sets the databases the stream watches from the followed collections. */
bool mg_cdc__watch_dbs(follow_t *f, mg_error_t *error);

/* ---- cdc_data.c ---- */

/* mg_cdc__on_data_event adds an insert/update/replace/delete of collection k to the batch. */
bool mg_cdc__on_data_event(follow_t *f, size_t k, const mg_cdc_event_t *ev, mg_error_t *error);

/* ---- cdc_ddl.c ---- */

/* mg_cdc__on_ddl_event applies the documented policy for drop, rename and dropDatabase. */
bool mg_cdc__on_ddl_event(follow_t *f, const mg_cdc_event_t *ev, mg_error_t *error);

/* ---- cdc_fence.c ---- */

/*
 * mg_cdc__fence_enter switches the follower to reading only: the cutover
 * flipped, so nothing more is applied; the stream is read again from the
 * committed checkpoint so that every source write after it is reported.
 */
bool mg_cdc__fence_enter(follow_t *f, mg_error_t *error);

/* mg_cdc__fence_event records an event seen after the cutover (never applied). */
bool mg_cdc__fence_event(follow_t *f, const mg_cdc_event_t *ev, mg_error_t *error);

/*
 * mg_cdc__fence_finish ends a fenced follower once the stream is idle: an
 * event and a log line, and the error it exits with (exit code state).
 */
void mg_cdc__fence_finish(follow_t *f, mg_error_t *error);

/* mg_cdc__fence_check reads the cutover's state: true in *flipped once it flipped. */
bool mg_cdc__fence_check(follow_t *f, bool *flipped, mg_error_t *error);

/* ---- cdc_lease.c ---- */

/* mg_cdc__lease_claim makes this process the follower, or fails naming the one that is. */
bool mg_cdc__lease_claim(follow_t *f, mg_error_t *error);

/*
 * mg_cdc__lease_tick updates the lag from the committed position, reads the
 * source's last write every half second and writes the heartbeat every
 * half second. Fails when the lease was taken over (the caller stops).
 */
bool mg_cdc__lease_tick(follow_t *f, mg_error_t *error);

/* mg_cdc__lease_release records that this follower stopped (best effort). */
void mg_cdc__lease_release(follow_t *f, const char *reason);

#endif /* MG_CDC_FOLLOW_H */
