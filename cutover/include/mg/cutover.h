/*
 * cutover/include/mg/cutover.h - the cutover engine: preflight, freeze the
 * source, record the fence, drain the change stream to it, verify, flip the
 * application's endpoint exactly once (docs/cutover.md).
 *
 * The protocol is one table of steps {step, function, undo} (see
 * cutover/src/cutover_run.c). Each step is persisted in the state schema
 * before it runs and logged with "event":"cutover.step", so a crashed
 * cutover resumes from its step and --abort can unfreeze the source. A
 * failure before the flip runs the undo of every step done (the source is
 * unfrozen) and records the abort. Nothing here starts a process but the
 * user's own hooks, and no secret goes on a command line: a hook receives
 * the endpoint in its environment (MIGRATE_ENDPOINT).
 */
#ifndef MG_CUTOVER_H
#define MG_CUTOVER_H

#include <stdatomic.h>
#include <stdio.h>

#include "mg/core.h"
#include "mg/state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The final check before the flip (--verify). */
typedef enum {
    MG_CUTOVER_VERIFY_CHANGED = 0, /* validate what changed since the last check (in-process) */
    MG_CUTOVER_VERIFY_FULL,        /* validate every document (in-process) */
    MG_CUTOVER_VERIFY_COUNTS,      /* countDocuments against count(*) per collection */
    MG_CUTOVER_VERIFY_NONE,
} mg_cutover_verify_t;

/* mg_cutover_verify_name returns "changed", "full", "counts" or "none". */
const char *mg_cutover_verify_name(mg_cutover_verify_t verify);

/* What a cutover runs with; everything borrowed for the call. */
typedef struct {
    const char *source; /* MongoDB URI (the drain's follower and the verify open their own) */
    const char *target; /* libpq conninfo (likewise) */
    mg_mongo_t *src;    /* the source, connected: freeze, fence, privileges */
    mg_state_t *state;  /* the state schema (required); a lost target is reconnected in it */
    int64_t max_lag_ms;
    const char
        *freeze; /* "write-block", "hook:CMD" (CMD gets MIGRATE_FREEZE=freeze|unfreeze) or "none" */
    mg_cutover_verify_t verify;
    const char *freeze_check;  /* sh -c CMD right before the flip, MIGRATE_FREEZE=check: exit 0
                                  = writes are still stopped (NULL: none) */
    int64_t freeze_timeout_ms; /* write-block: how long the freeze may wait for the global lock
                                  (maxTimeMS) behind open transactions */
    const mg_strlist_t *allow_invalid;      /* ns patterns whose invalid_docs are accepted */
    const mg_strlist_t *allow_bypass_users; /* "user@db" that may bypass the block ("*": any) */
    const char *endpoint;                   /* what the application moves to; NULL: target */
    const char *endpoint_secret;        /* where the endpoint's password comes from (recorded) */
    const char *endpoint_file;          /* flip: atomic file write; NULL: none */
    const char *endpoint_etcd;          /* flip: etcd v3 gateway URL; NULL: none */
    const char *endpoint_etcd_key;      /* its key */
    const char *endpoint_etcd_user;     /* etcd authentication (NULL: none) */
    const char *endpoint_etcd_password; /* its password (from a file or the environment) */
    const char *endpoint_etcd_ca;       /* TLS: CA bundle (https:// URL) */
    const char *endpoint_etcd_cert;     /* TLS: client certificate and key (NULL: none) */
    const char *endpoint_etcd_key_file;
    const char *flip_hook;            /* flip: sh -c CMD, MIGRATE_ENDPOINT in its environment */
    int64_t timeout_ms;               /* freeze -> flip, at most */
    int64_t validation_age_ms;        /* a clean validation within this age (0: no check) */
    int64_t follower_window_ms;       /* a checkpoint this fresh means `sync --follow` runs */
    int64_t lease_ms;                 /* the ownership lease (renewed every third of it) */
    bool no_fallback;                 /* make no reverse capture (no way back) */
    const mg_strlist_t *freeze_roles; /* fallback --freeze revoke: the application's roles */
    bool dry_run;                     /* preflight only; nothing recorded */
    bool abort_cutover;               /* --abort: unfreeze, mark aborted */
    bool json;                        /* the final report as one JSON object */
    FILE *out;                        /* the report and what the cutover tells the operator */
    atomic_int *stop;                 /* > 0: abort before the flip */
} mg_cutover_settings_t;

/*
 * mg_cutover_run runs the cutover (or resumes a crashed one, or --abort).
 * It first takes the cutover's ownership (a lease in the state schema,
 * renewed in a thread of its own; docs/cutover.md) and gives it back at
 * the end. Returns MG_EXIT_OK (done, or already done), MG_EXIT_ABORTED (a
 * failure before the flip: the source was unfrozen; error says why),
 * MG_EXIT_STATE (refused by the preflight, another cutover owns it, the
 * ownership was lost to another run, nothing to abort), or another exit
 * code with error set (the flip partly done: run it again).
 */
int mg_cutover_run(const mg_cutover_settings_t *settings, mg_error_t *error);

/* mg_cutover_freeze_check checks a --freeze value (write-block, hook:CMD, none). */
bool mg_cutover_freeze_check(const char *freeze, mg_error_t *error);

/*
 * mg_cutover_fallback_run runs `migrate fallback` (docs/cutover.md
 * "Fallback"): the cutover's protocol in reverse with the same runner -
 * preflight (a cutover flipped, the reverse capture and its slot), freeze
 * PostgreSQL's writers (freeze "revoke": the write privileges of
 * s->freeze_roles on the migrated tables revoked and recorded, their
 * sessions ended; "none"), fence (pg_current_wal_lsn), drain (the reverse
 * sync's position in MongoDB at or past the fence), verify, flip (unfreeze
 * MongoDB, then the endpoint: s->endpoint, the MongoDB URI the application
 * goes back to), done (the capture dropped). Crash-safe and resumable;
 * abort before the flip gives the privileges back. Uses the fields of s
 * the cutover uses; freeze is "revoke" or "none".
 */
int mg_cutover_fallback_run(const mg_cutover_settings_t *s, mg_error_t *error);

#ifdef __cplusplus
}
#endif

#endif /* MG_CUTOVER_H */
