/*
 * cdc/src/cdc_internal.h - what the follower exposes to its unit tests.
 */
#ifndef MG_CDC_INTERNAL_H
#define MG_CDC_INTERNAL_H

#include "mg/cdc.h"

/* What the change stream is opened with (cdc_stream.c). */
typedef struct {
    const char *const *dbs; /* the watched databases ($match ns.db $in) */
    size_t ndbs;            /* 0: every database but admin, config and local */
    bool slim;              /* fullDocument, images and updateDescription projected out */
    bool split;             /* $changeStreamSplitLargeEvent as the last stage */
    const bson_t *token;    /* startAfter it; NULL: startAtOperationTime T0 */
    uint32_t t0_t, t0_i;
} mg_cdc__stream_spec_t;

/*
 * mg_cdc__stream_args builds the change stream's pipeline and options
 * (both initialised here; the caller destroys them): $match on the
 * databases, fullDocument updateLookup or, slim, a $project that drops the
 * document (for an event over 16 MB), the split stage, batches of 5000,
 * maxAwaitTimeMS 500, and startAfter token or startAtOperationTime T0.
 */
void mg_cdc__stream_args(const mg_cdc__stream_spec_t *spec, bson_t *pipeline, bson_t *opts);

/* mg_cdc__splits_large_events tells whether a server version has $changeStreamSplitLargeEvent. */
bool mg_cdc__splits_large_events(const char *version);

/*
 * mg_cdc__exit_code maps the error that ended a follower to its exit code:
 * by domain, MG_EXIT_FAILURE at least, MG_EXIT_INTERNAL for a violated
 * invariant (the checkpoint moving backwards).
 */
int mg_cdc__exit_code(const mg_error_t *error);

/* ---- events cut by $changeStreamSplitLargeEvent (cdc_split.c) ---- */

typedef struct {
    bson_t rest;   /* the fields of the fragments so far, but _id and splitEvent */
    bson_t merged; /* the last event put together (borrowed by the caller) */
    int32_t next;  /* the fragment expected next; 0: none */
    int32_t of;
} mg_cdc__split_t;

void mg_cdc__split_init(mg_cdc__split_t *s);
void mg_cdc__split_reset(mg_cdc__split_t *s);
void mg_cdc__split_cleanup(mg_cdc__split_t *s);

/* mg_cdc__split_of tells whether raw is a fragment, and which (splitEvent {fragment, of}). */
bool mg_cdc__split_of(const bson_t *raw, int32_t *fragment, int32_t *of);

/*
 * mg_cdc__split_add adds fragment raw: 1 when the event is whole (*event,
 * borrowed until the next call: its _id is the last fragment's token), 0
 * when more fragments are needed, -1 on a fragment out of order or
 * malformed (error set; the caller reads the stream again from before the
 * event). Fragment 1 always starts the event over.
 */
int mg_cdc__split_add(mg_cdc__split_t *s, const bson_t *raw, const bson_t **event,
                      mg_error_t *error);

/* ---- lag (cdc_lag.c) ---- */

#define MG_CDC_LAG_PROBES 64

/*
 * mg_cdc__lag_t - the probes of the source's last write not yet reached by
 * the committed position, oldest first, and the newest moment (monotonic)
 * whose writes are all applied.
 */
typedef struct {
    struct {
        double at;     /* mg_now_s() when hello was read */
        uint32_t t, i; /* the source's last write then */
    } probes[MG_CDC_LAG_PROBES];
    size_t n;
    bool known; /* some probe was reached */
    double caught_up_at;
    double last_probe;
    bool has_write; /* the newest probe's Timestamp */
    uint32_t write_t, write_i;
} mg_cdc__lag_t;

void mg_cdc__lag_init(mg_cdc__lag_t *lag);

/* mg_cdc__lag_push records a probe: at (monotonic) the source's last write was (t, i). */
void mg_cdc__lag_push(mg_cdc__lag_t *lag, double at, uint32_t t, uint32_t i);

/* mg_cdc__lag_applied tells the probes that everything up to (t, i) is committed. */
void mg_cdc__lag_applied(mg_cdc__lag_t *lag, uint32_t t, uint32_t i);

/*
 * mg_cdc__lag_seconds returns the lag at now (monotonic): 0 when every
 * probe is reached, else the time since the newest reached one; -1 while
 * none was reached (not known yet).
 */
double mg_cdc__lag_seconds(const mg_cdc__lag_t *lag, double now);

/* mg_cdc__lag_probe reads the source's last write (hello) and records it at now. */
struct _mongoc_client_t;
bool mg_cdc__lag_probe(mg_cdc__lag_t *lag, struct _mongoc_client_t *client, double now,
                       mg_error_t *error);

#endif /* MG_CDC_INTERNAL_H */
