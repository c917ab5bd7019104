/*
 * cutover/src/cutover_internal.h - what the cutover's protocol
 * (cutover_run.c) and its steps (cutover_steps.c) share.
 */
#ifndef MG_CUTOVER_INTERNAL_H
#define MG_CUTOVER_INTERNAL_H

#include "mg/cutover.h"

#include <stdint.h>

typedef enum { FREEZE_WRITE_BLOCK, FREEZE_HOOK, FREEZE_NONE } freeze_kind_t;

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

/* A cutover in progress. */
typedef struct {
    const mg_cutover_settings_t *s;
    mg_state_t *st;
    freeze_kind_t freeze;
    const char *freeze_cmd; /* hook:CMD */
    const char *endpoint;
    uint32_t fence_t, fence_i;
    double deadline; /* monotonic; 0 = none yet */
    double step_started;
    const char *applier; /* the drain: "sync --follow" or "own applier" */
    bool flip_started;   /* part of the flip happened: no undo any more */
    double lag_s;        /* what the preflight measured */
    bool refused;        /* the preflight said no: reason in the error */
    bool resumed;        /* a crashed cutover resumed: the source may be frozen already */
} cutover_t;

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
bool mg_cutover__freeze(cutover_t *c, mg_error_t *error);
bool mg_cutover__unfreeze(cutover_t *c, mg_error_t *error);
bool mg_cutover__fence(cutover_t *c, mg_error_t *error);
bool mg_cutover__drain(cutover_t *c, mg_error_t *error);
bool mg_cutover__verify(cutover_t *c, mg_error_t *error);
bool mg_cutover__flip(cutover_t *c, mg_error_t *error);

#endif /* MG_CUTOVER_INTERNAL_H */
