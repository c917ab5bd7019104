/*
 * cutover/src/cutover_internal.h - what the cutover's protocol
 * (cutover_run.c) and its steps (cutover_steps.c) share.
 */
#ifndef MG_CUTOVER_INTERNAL_H
#define MG_CUTOVER_INTERNAL_H

#include "mg/cutover.h"

#include <stdint.h>

/* FREEZE_REVOKE: the fallback's freeze of PostgreSQL (its writers' privileges revoked). */
typedef enum { FREEZE_WRITE_BLOCK, FREEZE_HOOK, FREEZE_NONE, FREEZE_REVOKE } freeze_kind_t;

/* The steps, in order; the persisted `step` is the last one started. */
typedef enum {
    S_PREFLIGHT,
    S_FREEZE,
    S_FENCE,
    S_DRAIN,
    S_VERIFY,
    S_FLIP,
    S_DONE,
    N_STEPS,
} step_t;

typedef struct cutover cutover_t;
typedef struct cutover_owner cutover_owner_t;

/* A step's function: false with error set on failure. */
typedef bool (*step_fn)(cutover_t *c, mg_error_t *error);

/* One row of the protocol: the step, its function, its undo, why. */
typedef struct {
    step_t step;
    const char *name;
    step_fn run;  /* NULL: nothing to do but record it */
    step_fn undo; /* NULL: nothing to undo */
    const char *comment;
} cutover_step_t;

/*
 * Where the runner records what happens: the state schema (and the
 * terminal) for a real cutover, a recorder in the unit tests.
 */
typedef struct {
    bool (*step_begin)(cutover_t *c, const char *step, mg_error_t *error);
    bool (*step_end)(cutover_t *c, const char *step, double seconds, mg_error_t *error);
    bool (*done)(cutover_t *c, mg_error_t *error);
    void (*aborted)(cutover_t *c, const char *reason);
    void (*report)(cutover_t *c);
} cutover_io_t;

/* A cutover in progress. */
struct cutover {
    const mg_cutover_settings_t *s;
    const cutover_io_t *io;
    const char *command; /* "cutover" (NULL) or "fallback": in messages */
    mg_state_t *st;
    freeze_kind_t freeze;
    const char *freeze_cmd;      /* hook:CMD */
    const char *endpoint;        /* with its password: for the flip only */
    char *endpoint_shown;        /* without it: what the state records (malloc'd) */
    const char *endpoint_secret; /* where its password came from; NULL: it has none */
    uint32_t fence_t, fence_i;
    uint64_t fence_lsn; /* the fallback: its fence on PostgreSQL */
    int32_t fence_generation;
    double deadline; /* monotonic; 0 = none yet */
    double step_started;
    const char *applier;    /* the drain: "sync --follow" or "own applier" */
    bool flip_started;      /* part of the flip happened: no undo any more */
    double lag_s;           /* what the preflight measured */
    bool refused;           /* the preflight said no: reason in the error */
    bool resumed;           /* a crashed cutover resumed: the source may be frozen already */
    bool lost;              /* another run took the cutover over: touch nothing more */
    cutover_owner_t *owner; /* the ownership lease (NULL in the unit tests) */
    void *test;             /* the unit tests' recorder */
};

/* mg_cutover__protocol returns the table of steps (N_STEPS rows, in order). */
const cutover_step_t *mg_cutover__protocol(void);

/*
 * mg_cutover__run_steps runs table (N_STEPS rows) from step `from`: for
 * each step the stop and deadline check, begin, its function, end. Before
 * the flip a failure runs the undo of every step that may have taken effect
 * (newest first) and ends with MG_EXIT_ABORTED ("aborted: <why>"); a
 * refusal ends with MG_EXIT_STATE; once part of the flip happened nothing
 * is undone and the error says to run it again.
 */
int mg_cutover__run_steps(cutover_t *c, const cutover_step_t *table, int from, mg_error_t *error);

/* mg_cutover__parse_freeze reads --freeze (or the recorded freeze mode). */
bool mg_cutover__parse_freeze(const char *text, freeze_kind_t *kind, const char **cmd,
                              mg_error_t *error);

/*
 * The steps. Each returns false with error set on failure; preflight also
 * returns false with c->refused when it says no. Each may run again after a
 * crash: freeze is idempotent and the fence only moves forward, the drain
 * and verify read what is committed, the flip writes the same endpoint.
 */
bool mg_cutover__preflight(cutover_t *c, mg_error_t *error);

/*
 * mg_cutover__recheck runs right before anything is flipped, after the
 * flip step was recorded (which fences the follower): the source is still
 * frozen (the write block is still on, or --freeze-check passes), no change
 * in scope happened on the source after the fence, and the applied
 * checkpoint is still at or past the fence (a target failover can lose
 * it). Fails with error set otherwise (the runner then unfreezes).
 */
bool mg_cutover__recheck(cutover_t *c, mg_error_t *error);

/* ---- ownership (cutover_owner.c) ---- */

/*
 * mg_cutover__own takes the cutover's ownership for this run: at once when
 * nobody owns it; when another run owns it, it watches the owner's renewals
 * for longer than the owner's lease and refuses (c->refused, MG_EXIT_STATE)
 * as soon as one comes, or takes over (compare-and-set on the renewal it
 * watched) when none came: the owner is gone. Then a thread with its own
 * connection renews the lease every third of it.
 */
bool mg_cutover__own(cutover_t *c, mg_error_t *error);

/*
 * mg_cutover__owned tells (error set otherwise) whether this run still owns
 * the cutover: the lease was renewed within its term and nobody took it
 * over. confirm: renew it now on the cutover's own connection first (a
 * lost target is reconnected for up to 30 s), as before the flip and
 * before unfreezing. Sets c->lost when another run took it over.
 */
bool mg_cutover__owned(cutover_t *c, bool confirm, mg_error_t *error);

/* mg_cutover__disown stops the renewals and gives the ownership back (NULL owner ok). */
void mg_cutover__disown(cutover_t *c);

/* mg_cutover__run_shell runs sh -c cmd with name=value added to its environment. */
bool mg_cutover__run_shell(const char *cmd, const char *name, const char *value, mg_error_t *error);

/* mg_cutover__write_block sets the source's write block on or off (freeze mode write-block). */
bool mg_cutover__write_block(cutover_t *c, bool on, mg_error_t *error);

/* mg_cutover__source_op_time runs a ping on the source and returns its operationTime. */
bool mg_cutover__source_op_time(cutover_t *c, uint32_t *t, uint32_t *i, mg_error_t *error);
bool mg_cutover__freeze(cutover_t *c, mg_error_t *error);
bool mg_cutover__unfreeze(cutover_t *c, mg_error_t *error);
bool mg_cutover__fence(cutover_t *c, mg_error_t *error);
bool mg_cutover__drain(cutover_t *c, mg_error_t *error);
bool mg_cutover__verify(cutover_t *c, mg_error_t *error);
bool mg_cutover__flip(cutover_t *c, mg_error_t *error);

/*
 * mg_cutover__capture makes the reverse capture (unless --no-fallback) at
 * the start of the flip, before anything of the flip happens
 * (cutover_capture.c); a resumed flip keeps a ready one.
 */
bool mg_cutover__capture(cutover_t *c, mg_error_t *error);

/*
 * mg_cutover__print_report prints a cutover or fallback row (what: its
 * name): JSON with --json, else the steps, the write-unavailability
 * window, the reason and, once done, the endpoint - password masked.
 */
void mg_cutover__print_report(cutover_t *c, const char *what, const mg_state_cutover_report_t *r);

/* mg_cutover__wal_level reads the target's wal_level into out (size n). */
bool mg_cutover__wal_level(cutover_t *c, char *out, size_t n, mg_error_t *error);

/* mg_cutover__flip_endpoint runs the flip hook, the etcd put and the file write (those set). */
bool mg_cutover__flip_endpoint(cutover_t *c, mg_error_t *error);

#endif /* MG_CUTOVER_INTERNAL_H */
