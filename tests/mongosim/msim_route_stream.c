/*
 * tests/mongosim/msim_route_stream.c - change streams through the router:
 * one stream per shard, merged in cluster-time order as mongos merges them.
 * An event is returned only once every shard without a buffered event has
 * reported (its postBatchResumeToken) that nothing earlier can come: so an
 * idle shard holds the merged stream back until its periodic no-op moves
 * its high-water mark, as on MongoDB. Tokens of the shards are unique
 * cluster-wide (one cluster clock; a transaction's events are numbered
 * across its participants), so a token resumes on every shard.
 * fullDocument: "updateLookup" is done here, by routing the documentKey
 * (shard key and _id) to the document's current shard; the pipeline's
 * later stages then run here too.
 */
#include "msim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    int64_t cid;  /* the shard's cursor, 0 when closed */
    bson_t **buf; /* events not returned yet, in order */
    size_t head, n, cap;
    char pbrt[64]; /* the shard's postBatchResumeToken (_data) */
} shard_side_t;

typedef struct {
    int nshards;
    shard_side_t *side;
    char db[128], coll[256]; /* coll: the shards' cursor namespace collection */
    bool lookup;             /* updateLookup done by the router */
    bson_t *stages;          /* later stages run here when lookup (array) */
    msim_matcher_t **matchers;
    msim_proj_t **projs;
    size_t nstages;
    bool split;           /* $changeStreamSplitLargeEvent (done here when lookup) */
    char resume[64];      /* events and fragments up to this token were returned */
    char resume_base[64]; /* resuming from a fragment: its event's own token */
    bson_t **ready;       /* finished events and fragments waiting for a batch */
    size_t rhead, rn, rcap;
    char last[64]; /* the resume point reported to the client */
    bool closed;
} mstream_t;

void
msim_route_stream_free(void *p)
{
    mstream_t *m = p;
    msim_cluster_t *cl = msim_srv->cluster;
    if (m == NULL)
        return;
    for (int s = 0; s < m->nshards; s++) {
        shard_side_t *sd = &m->side[s];
        for (size_t i = sd->head; i < sd->n; i++)
            bson_destroy(sd->buf[i]);
        free(sd->buf);
        if (sd->cid != 0 && cl != NULL) {
            bson_t cmd = BSON_INITIALIZER, ids, reply = BSON_INITIALIZER;
            BSON_APPEND_UTF8(&cmd, "killCursors", m->coll);
            bson_append_array_begin(&cmd, "cursors", -1, &ids);
            BSON_APPEND_INT64(&ids, "0", sd->cid);
            bson_append_array_end(&cmd, &ids);
            BSON_APPEND_UTF8(&cmd, "$db", m->db);
            msim_dispatch_internal(cl->shards[s], &cmd, &reply);
            bson_destroy(&cmd);
            bson_destroy(&reply);
        }
    }
    for (size_t i = 0; i < m->nstages; i++) {
        msim_matcher_destroy(m->matchers[i]);
        msim_proj_destroy(m->projs[i]);
    }
    free(m->matchers);
    free(m->projs);
    if (m->stages)
        bson_destroy(m->stages);
    for (size_t i = m->rhead; i < m->rn; i++)
        bson_destroy(m->ready[i]);
    free(m->ready);
    free(m->side);
    free(m);
}

static void
ready_push(mstream_t *m, bson_t *d)
{
    if (m->rhead > 0 && m->rhead == m->rn)
        m->rhead = m->rn = 0;
    if (m->rn == m->rcap) {
        m->rcap = m->rcap ? m->rcap * 2 : 8;
        m->ready = realloc(m->ready, m->rcap * sizeof *m->ready);
        if (m->ready == NULL)
            abort();
    }
    m->ready[m->rn++] = d;
}

static bool
reply_error(const bson_t *reply, mg_error_t *error)
{
    bson_iter_t it;
    int64_t code = MSIM_E_INTERNAL;
    const char *msg = "shard error";
    if (bson_iter_init_find(&it, reply, "ok") && msim_as_double(&it) == 1)
        return true;
    if (bson_iter_init_find(&it, reply, "code"))
        msim_iter_int64(&it, &code);
    if (bson_iter_init_find(&it, reply, "errmsg") && BSON_ITER_HOLDS_UTF8(&it))
        msg = bson_iter_utf8(&it, NULL);
    return msim_fail(error, (int32_t)code, "%s", msg);
}

static const char *
token_of(const bson_t *doc, const char *key)
{
    bson_iter_t it, d;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_DOCUMENT(&it) &&
        bson_iter_recurse(&it, &d) && bson_iter_find(&d, "_data") && BSON_ITER_HOLDS_UTF8(&d))
        return bson_iter_utf8(&d, NULL);
    return "";
}

/* take fills a shard's buffer from a cursor reply (batch key firstBatch/nextBatch). */
static void
take(shard_side_t *sd, const bson_t *reply, const char *key)
{
    bson_iter_t it, c, b;
    if (!bson_iter_init_find(&it, reply, "cursor") || !bson_iter_recurse(&it, &c))
        return;
    while (bson_iter_next(&c)) {
        const char *k = bson_iter_key(&c);
        if (strcmp(k, "id") == 0) {
            msim_iter_int64(&c, &sd->cid);
        } else if (strcmp(k, "postBatchResumeToken") == 0) {
            bson_iter_t d;
            if (bson_iter_recurse(&c, &d) && bson_iter_find(&d, "_data") &&
                BSON_ITER_HOLDS_UTF8(&d))
                snprintf(sd->pbrt, sizeof sd->pbrt, "%s", bson_iter_utf8(&d, NULL));
        } else if (strcmp(k, key) == 0 && bson_iter_recurse(&c, &b)) {
            while (bson_iter_next(&b)) {
                const uint8_t *d;
                uint32_t l;
                if (!BSON_ITER_HOLDS_DOCUMENT(&b))
                    continue;
                bson_iter_document(&b, &l, &d);
                if (sd->n == sd->cap) {
                    sd->cap = sd->cap ? sd->cap * 2 : 16;
                    sd->buf = realloc(sd->buf, sd->cap * sizeof *sd->buf);
                    if (sd->buf == NULL)
                        abort();
                }
                sd->buf[sd->n++] = bson_new_from_data(d, l);
            }
        }
    }
}

/* poll runs a non-blocking getMore on every open shard whose buffer is empty. */
static bool
poll_shards(mstream_t *m, mg_error_t *error)
{
    msim_cluster_t *cl = msim_srv->cluster;
    for (int s = 0; s < m->nshards; s++) {
        shard_side_t *sd = &m->side[s];
        bson_t cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER;
        bool ok;
        if (sd->cid == 0 || sd->head < sd->n)
            continue;
        BSON_APPEND_INT64(&cmd, "getMore", sd->cid);
        BSON_APPEND_UTF8(&cmd, "collection", m->coll);
        BSON_APPEND_INT64(&cmd, "maxTimeMS", 0);
        BSON_APPEND_UTF8(&cmd, "$db", m->db);
        msim_dispatch_internal(cl->shards[s], &cmd, &reply);
        ok = reply_error(&reply, error);
        if (ok) {
            sd->head = sd->n = 0;
            take(sd, &reply, "nextBatch");
        }
        bson_destroy(&cmd);
        bson_destroy(&reply);
        if (!ok)
            return false;
    }
    return true;
}

/* next_ready returns the shard whose first buffered event may be returned now, or -1. */
static int
next_ready(const mstream_t *m)
{
    int best = -1;
    const char *best_tok = NULL, *floor = NULL;
    for (int s = 0; s < m->nshards; s++) {
        const shard_side_t *sd = &m->side[s];
        if (sd->head < sd->n) {
            const char *t = token_of(sd->buf[sd->head], "_id");
            if (best_tok == NULL || strcmp(t, best_tok) < 0) {
                best = s;
                best_tok = t;
            }
        } else if (sd->cid != 0 && (floor == NULL || strcmp(sd->pbrt, floor) < 0)) {
            floor = sd->pbrt; /* this shard has reported everything up to here */
        }
    }
    if (best >= 0 && floor != NULL && strcmp(best_tok, floor) > 0)
        return -1; /* an idle shard may still have something earlier */
    return best;
}

/* lookup_doc finds the current version of the event's document through the router's routing. */
static void
lookup_doc(const bson_t *ev, bson_t *out)
{
    msim_cluster_t *cl = msim_srv->cluster;
    bson_iter_t it, ns, key;
    const char *db = NULL, *coll = NULL;
    bson_t dk = BSON_INITIALIZER, cmd = BSON_INITIALIZER, reply = BSON_INITIALIZER, filter;
    msim_scoll_t *sc;
    int s = 0;
    bool found = false;
    if (bson_iter_init_find(&it, ev, "ns") && bson_iter_recurse(&it, &ns))
        while (bson_iter_next(&ns)) {
            if (strcmp(bson_iter_key(&ns), "db") == 0)
                db = bson_iter_utf8(&ns, NULL);
            else if (strcmp(bson_iter_key(&ns), "coll") == 0)
                coll = bson_iter_utf8(&ns, NULL);
        }
    if (db == NULL || coll == NULL || !bson_iter_init_find(&key, ev, "documentKey") ||
        !BSON_ITER_HOLDS_DOCUMENT(&key)) {
        BSON_APPEND_NULL(out, "fullDocument");
        bson_destroy(&dk);
        bson_destroy(&cmd);
        bson_destroy(&reply);
        return;
    }
    {
        const uint8_t *d;
        uint32_t l;
        bson_iter_document(&key, &l, &d);
        bson_init_static(&filter, d, l);
    }
    sc = msim_cluster_scoll(cl, db, coll);
    if (sc != NULL) {
        bson_t k = BSON_INITIALIZER;
        pthread_rwlock_rdlock(&sc->route);
        if (msim_shardkey_of(sc->key, bson_get_data(&filter), filter.len, &k, NULL))
            s = sc->chunks[msim_scoll_chunk_of(sc, &k)].shard;
        bson_destroy(&k);
    } else {
        pthread_mutex_lock(&cl->mu);
        {
            msim_sdb_t *sd = msim_cluster_db(cl, db, false);
            s = sd ? sd->primary : 0;
        }
        pthread_mutex_unlock(&cl->mu);
    }
    BSON_APPEND_UTF8(&cmd, "find", coll);
    BSON_APPEND_DOCUMENT(&cmd, "filter", &filter);
    BSON_APPEND_INT32(&cmd, "limit", 1);
    BSON_APPEND_UTF8(&cmd, "$db", db);
    if (sc != NULL) {
        bson_t v;
        bson_append_array_begin(&cmd, "shardVersion", -1, &v);
        bson_append_timestamp(&v, "0", -1, sc->major, 0);
        BSON_APPEND_OID(&v, "1", &sc->epoch);
        bson_append_array_end(&cmd, &v);
    }
    msim_dispatch_internal(cl->shards[s], &cmd, &reply);
    if (sc != NULL)
        pthread_rwlock_unlock(&sc->route);
    if (bson_iter_init_find(&it, &reply, "cursor") && bson_iter_recurse(&it, &ns) &&
        bson_iter_find(&ns, "firstBatch") && bson_iter_recurse(&ns, &key) && bson_iter_next(&key) &&
        BSON_ITER_HOLDS_DOCUMENT(&key)) {
        msim_append_iter(out, "fullDocument", -1, &key);
        found = true;
    }
    if (!found)
        BSON_APPEND_NULL(out, "fullDocument");
    bson_destroy(&dk);
    bson_destroy(&cmd);
    bson_destroy(&reply);
}

/* finish_event applies updateLookup and the later stages (lookup streams);
 * returns false to drop the event, sets *failed with error on a failure. */
static bool
finish_event(mstream_t *m, bson_t *ev, bool *failed, mg_error_t *error)
{
    bson_iter_t it;
    *failed = false;
    if (!m->lookup)
        return true;
    if (bson_iter_init_find(&it, ev, "operationType") && BSON_ITER_HOLDS_UTF8(&it) &&
        strcmp(bson_iter_utf8(&it, NULL), "update") == 0) {
        bson_t out = BSON_INITIALIZER;
        bson_iter_init(&it, ev);
        while (bson_iter_next(&it)) {
            if (strcmp(bson_iter_key(&it), "ns") == 0)
                lookup_doc(ev, &out);
            msim_append_iter(&out, NULL, 0, &it);
        }
        bson_reinit(ev);
        bson_concat(ev, &out);
        bson_destroy(&out);
    }
    for (size_t i = 0; i < m->nstages; i++) {
        if (m->matchers[i] != NULL) {
            if (!msim_matcher_match(m->matchers[i], bson_get_data(ev), ev->len))
                return false;
        } else if (m->projs[i] != NULL) {
            bson_t out = BSON_INITIALIZER;
            bson_iter_t a, b;
            msim_proj_apply(m->projs[i], bson_get_data(ev), ev->len, &out);
            if (!bson_iter_init_find(&a, &out, "_id") || !bson_iter_init_find(&b, ev, "_id") ||
                msim_cmp(&a, &b) != 0) {
                bson_destroy(&out);
                *failed = true;
                return msim_fail(error, MSIM_E_CHANGE_STREAM_FATAL,
                                 "Encountered an event whose _id field, which contains the "
                                 "resume token, was modified by the pipeline.");
            }
            bson_reinit(ev);
            bson_concat(ev, &out);
            bson_destroy(&out);
        }
    }
    return true;
}

/*
 * prepare turns one merged event into ready documents: dropped when at or
 * before the resume point, finished (lookup, stages), split into fragments
 * or refused for its size as mongod does. Takes ev.
 */
static bool
prepare(mstream_t *m, bson_t *ev, mg_error_t *error)
{
    char tok[64];
    bool failed;
    bool is_base;
    snprintf(tok, sizeof tok, "%s", token_of(ev, "_id"));
    /* resuming from a fragment: its event is read again to be split again */
    is_base = m->resume_base[0] != '\0' && strcmp(tok, m->resume_base) == 0;
    if (!is_base && m->resume[0] != '\0' && strcmp(tok, m->resume) <= 0) {
        bson_destroy(ev);
        return true; /* returned before the resume point */
    }
    if (!finish_event(m, ev, &failed, error)) {
        bson_destroy(ev);
        return !failed;
    }
    if (m->lookup && m->split && ev->len > MSIM_SPLIT_EVENT_LIMIT) {
        bson_t **frags;
        size_t n;
        bool ok = msim_split_event(ev, tok, &frags, &n, error);
        bson_destroy(ev);
        if (!ok)
            return false;
        for (size_t g = 0; g < n; g++) {
            if (m->resume[0] != '\0' && strcmp(token_of(frags[g], "_id"), m->resume) <= 0)
                bson_destroy(frags[g]);
            else
                ready_push(m, frags[g]);
        }
        free(frags);
        return true;
    }
    if (is_base) {
        bson_destroy(ev);
        return msim_fail(error, MSIM_E_CHANGE_STREAM_FATAL,
                         "Attempted to resume from a split event fragment, but the event in "
                         "the resumed stream was not large enough to be split");
    }
    if (ev->len > MSIM_MAX_INTERNAL_BSON_SIZE) {
        bool ok = msim_fail(error, MSIM_E_OBJECT_TOO_LARGE,
                            "BSONObj size: %u (0x%X) is invalid. Size must be between 0 and "
                            "%d(16MB) First element: _id: { _data: \"%s\" }",
                            ev->len, ev->len, MSIM_MAX_INTERNAL_BSON_SIZE, tok);
        bson_destroy(ev);
        return ok;
    }
    ready_push(m, ev);
    return true;
}

/* emit appends the documents that may be returned now to arr; *count their number. */
static bool
emit(mstream_t *m, bson_t *arr, int64_t batch_size, uint32_t *count, mg_error_t *error)
{
    size_t bytes = 0;
    while (!m->closed && (batch_size <= 0 || *count < (uint32_t)batch_size)) {
        bson_t *d;
        bson_iter_t it;
        char k[16];
        const char *ks;
        if (m->rhead == m->rn) {
            int s = next_ready(m);
            shard_side_t *sd;
            if (s < 0)
                break;
            sd = &m->side[s];
            if (!prepare(m, sd->buf[sd->head++], error))
                return false;
            continue;
        }
        d = m->ready[m->rhead];
        /* as mongod's getMore: the first document always, then while within 16 MiB */
        if (*count > 0 && bytes + d->len > MSIM_MAX_BSON_SIZE)
            break;
        m->rhead++;
        snprintf(m->last, sizeof m->last, "%s", token_of(d, "_id"));
        bson_uint32_to_string((*count)++, &ks, k, sizeof k);
        bson_append_document(arr, ks, -1, d);
        bytes += d->len;
        if (bson_iter_init_find(&it, d, "operationType") && BSON_ITER_HOLDS_UTF8(&it) &&
            strcmp(bson_iter_utf8(&it, NULL), "invalidate") == 0)
            m->closed = true;
        bson_destroy(d);
    }
    return true;
}

/* resume_point is what the client may resume from: the last event returned,
 * or, with nothing buffered anywhere, the lowest high-water mark of the shards. */
static void
resume_point(mstream_t *m, bson_t *cursor)
{
    bson_t d;
    const char *floor = NULL;
    bool buffered = false;
    if (m->rhead < m->rn)
        buffered = true;
    for (int s = 0; s < m->nshards; s++) {
        const shard_side_t *sd = &m->side[s];
        if (sd->head < sd->n)
            buffered = true;
        else if (sd->cid != 0 && (floor == NULL || strcmp(sd->pbrt, floor) < 0))
            floor = sd->pbrt;
    }
    if (!buffered && !m->closed && floor != NULL && strcmp(floor, m->last) > 0)
        snprintf(m->last, sizeof m->last, "%s", floor);
    bson_append_document_begin(cursor, "postBatchResumeToken", -1, &d);
    BSON_APPEND_UTF8(&d, "_data", m->last);
    bson_append_document_end(cursor, &d);
}

static bool
fill(mstream_t *m, bson_t *cursor, const char *key, int64_t batch_size, int64_t max_await_ms,
     mg_error_t *error)
{
    msim_cluster_t *cl = msim_srv->cluster;
    int64_t deadline = msim_now_ms() + max_await_ms;
    bson_t arr = BSON_INITIALIZER;
    uint32_t count = 0;
    for (;;) {
        uint64_t gen;
        pthread_mutex_lock(&cl->wake_mu);
        gen = cl->wake_gen;
        pthread_mutex_unlock(&cl->wake_mu);
        if (!poll_shards(m, error) || !emit(m, &arr, batch_size, &count, error)) {
            bson_destroy(&arr);
            return false;
        }
        if (count > 0 || m->closed || msim_now_ms() >= deadline || atomic_load(&msim_srv->stopping))
            break;
        pthread_mutex_lock(&cl->wake_mu);
        if (cl->wake_gen == gen) {
            struct timespec ts;
            int64_t until = msim_now_ms() + 100 < deadline ? msim_now_ms() + 100 : deadline;
            ts.tv_sec = until / 1000;
            ts.tv_nsec = (until % 1000) * 1000000;
            pthread_cond_timedwait(&cl->wake_cv, &cl->wake_mu, &ts);
        }
        pthread_mutex_unlock(&cl->wake_mu);
    }
    bson_append_array(cursor, key, -1, &arr);
    bson_destroy(&arr);
    resume_point(m, cursor);
    return true;
}

/* parse_later_stages keeps $match / $project for the router (lookup streams). */
static bool
parse_later_stages(mstream_t *m, const bson_t *rest, mg_error_t *error)
{
    bson_iter_t it;
    size_t n = bson_count_keys(rest);
    m->stages = bson_copy(rest);
    m->matchers = calloc(n + 1, sizeof *m->matchers);
    m->projs = calloc(n + 1, sizeof *m->projs);
    bson_iter_init(&it, m->stages);
    while (bson_iter_next(&it)) {
        bson_iter_t st;
        bson_t spec;
        const uint8_t *d;
        uint32_t l;
        const char *name;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &st) ||
            !bson_iter_next(&st) || !BSON_ITER_HOLDS_DOCUMENT(&st))
            return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                             "Each element of the 'pipeline' array must be an object");
        name = bson_iter_key(&st);
        bson_iter_document(&st, &l, &d);
        bson_init_static(&spec, d, l);
        if (strcmp(name, "$changeStreamSplitLargeEvent") == 0) {
            bson_iter_t next = it;
            if (msim_srv->server_version < MSIM_VERSION_70)
                return msim_fail(error, MSIM_E_UNRECOGNIZED_STAGE,
                                 "Unrecognized pipeline stage name: '%s'", name);
            if (l != 5)
                return msim_fail(error, 7182800,
                                 "$changeStreamSplitLargeEvent spec should be an empty object");
            if (bson_iter_next(&next))
                return msim_fail(error, 7182802,
                                 "$changeStreamSplitLargeEvent must be the last stage in the "
                                 "pipeline");
            m->split = true;
            continue;
        }
        if (strcmp(name, "$match") == 0)
            m->matchers[m->nstages] = msim_matcher_new(&spec, error);
        else if (strcmp(name, "$project") == 0)
            m->projs[m->nstages] = msim_proj_new(&spec, error);
        else
            return msim_fail(error, MSIM_E_COMMAND_NOT_SUPPORTED,
                             "mongosim's router runs $match and $project after a change "
                             "stream with fullDocument updateLookup, not %s",
                             name);
        if (m->matchers[m->nstages] == NULL && m->projs[m->nstages] == NULL)
            return false;
        m->nstages++;
    }
    return true;
}

/*
 * shard_pipeline builds the pipeline each shard runs: the $changeStream
 * spec (updateLookup left to the router) and, without lookup, the later
 * stages too (as mongos pushes them to the shards).
 */
static bool
shard_pipeline(mstream_t *m, const bson_t *cmd, bson_t *pipe, mg_error_t *error)
{
    bson_iter_t it, st, first, opt;
    bson_t rest = BSON_INITIALIZER, cs, spec;
    uint32_t i = 0;
    bool ok = true;
    bson_iter_init_find(&it, cmd, "pipeline");
    bson_iter_recurse(&it, &st);
    bson_iter_next(&st);
    bson_iter_recurse(&st, &first);
    bson_iter_next(&first);
    if (!BSON_ITER_HOLDS_DOCUMENT(&first)) {
        bson_destroy(&rest);
        return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                         "the $changeStream stage specification must be an object");
    }
    bson_append_document_begin(pipe, "0", -1, &cs);
    bson_append_document_begin(&cs, "$changeStream", -1, &spec);
    bson_iter_recurse(&first, &opt);
    while (bson_iter_next(&opt)) {
        const char *k = bson_iter_key(&opt);
        if (strcmp(k, "fullDocument") == 0 && BSON_ITER_HOLDS_UTF8(&opt) &&
            strcmp(bson_iter_utf8(&opt, NULL), "updateLookup") == 0) {
            m->lookup = true;
            continue;
        }
        if ((strcmp(k, "resumeAfter") == 0 || strcmp(k, "startAfter") == 0) &&
            BSON_ITER_HOLDS_DOCUMENT(&opt)) {
            bson_iter_t d;
            const char *tok = "";
            unsigned int tt = 0, ti = 0;
            if (bson_iter_recurse(&opt, &d) && bson_iter_find(&d, "_data") &&
                BSON_ITER_HOLDS_UTF8(&d))
                tok = bson_iter_utf8(&d, NULL);
            snprintf(m->resume, sizeof m->resume, "%s", tok);
            if (strlen(tok) == 36 && sscanf(tok + 2, "%8X%8X", &tt, &ti) == 2) {
                /* a fragment: the shards read its event again from its time,
                 * this router drops what was returned */
                snprintf(m->resume_base, sizeof m->resume_base, "%.28s", tok);
                bson_append_timestamp(&spec, "startAtOperationTime", -1, tt, ti);
                continue;
            }
        }
        msim_append_iter(&spec, NULL, 0, &opt);
    }
    bson_append_document_end(&cs, &spec);
    bson_append_document_end(pipe, &cs);
    while (bson_iter_next(&st)) {
        char k[16];
        const char *ks;
        bson_uint32_to_string(i++, &ks, k, sizeof k);
        msim_append_iter(&rest, ks, -1, &st);
    }
    {
        /* is the split stage the last stage? */
        bson_iter_t r, st2;
        bson_iter_init(&r, &rest);
        while (bson_iter_next(&r))
            if (BSON_ITER_HOLDS_DOCUMENT(&r) && bson_iter_recurse(&r, &st2) &&
                bson_iter_next(&st2) &&
                strcmp(bson_iter_key(&st2), "$changeStreamSplitLargeEvent") == 0)
                m->split = true;
    }
    if (m->resume_base[0] != '\0' && !m->split) {
        bson_destroy(&rest);
        return msim_fail(error, MSIM_E_CHANGE_STREAM_FATAL,
                         "To resume from a split event, the $changeStream pipeline must include "
                         "a $changeStreamSplitLargeEvent stage");
    }
    if (m->lookup) {
        ok = parse_later_stages(m, &rest, error);
    } else {
        bson_iter_t r;
        uint32_t j = 1;
        bson_iter_init(&r, &rest);
        while (bson_iter_next(&r)) {
            char k[16];
            const char *ks;
            bson_uint32_to_string(j++, &ks, k, sizeof k);
            msim_append_iter(pipe, ks, -1, &r);
        }
    }
    bson_destroy(&rest);
    return ok;
}

bool
msim_route_stream_open(msim_ctx_t *ctx, const bson_t *cmd, const char *coll, mg_error_t *error)
{
    msim_cluster_t *cl = msim_srv->cluster;
    mstream_t *m = calloc(1, sizeof *m);
    msim_cursor_t *cur;
    bson_t body = BSON_INITIALIZER, pipe, cursor, c;
    bson_iter_t it;
    bool ok = true;
    if (m == NULL)
        abort();
    if (bson_iter_init_find(&it, cmd, "lsid") && bson_has_field(cmd, "autocommit")) {
        free(m);
        return msim_fail(error, MSIM_E_OP_NOT_IN_TXN,
                         "Operation not permitted in transaction :: caused by :: $changeStream");
    }
    m->nshards = cl->nshards;
    m->side = calloc((size_t)cl->nshards, sizeof *m->side);
    snprintf(m->db, sizeof m->db, "%s", ctx->db);
    snprintf(m->coll, sizeof m->coll, "%s", coll ? coll : "$cmd.aggregate");
    if (coll != NULL)
        BSON_APPEND_UTF8(&body, "aggregate", coll);
    else
        BSON_APPEND_INT32(&body, "aggregate", 1);
    bson_append_array_begin(&body, "pipeline", -1, &pipe);
    ok = shard_pipeline(m, cmd, &pipe, error);
    bson_append_array_end(&body, &pipe);
    bson_append_document_begin(&body, "cursor", -1, &c);
    bson_append_document_end(&body, &c);
    BSON_APPEND_UTF8(&body, "$db", ctx->db);
    for (int s = 0; s < cl->nshards && ok; s++) {
        bson_t reply = BSON_INITIALIZER;
        msim_dispatch_internal(cl->shards[s], &body, &reply);
        ok = reply_error(&reply, error);
        if (ok)
            take(&m->side[s], &reply, "firstBatch");
        bson_destroy(&reply);
    }
    bson_destroy(&body);
    if (!ok) {
        msim_route_stream_free(m);
        return false;
    }
    /* the start: the lowest of the shards' first resume points */
    for (int s = 0; s < m->nshards; s++)
        if (m->last[0] == '\0' || strcmp(m->side[s].pbrt, m->last) < 0)
            snprintf(m->last, sizeof m->last, "%s", m->side[s].pbrt);
    cur = calloc(1, sizeof *cur);
    if (cur == NULL)
        abort();
    cur->kind = MSIM_CURSOR_MERGED;
    cur->stream = m;
    snprintf(cur->ns, sizeof cur->ns, "%s.%s", ctx->db, m->coll);
    bson_append_document_begin(ctx->reply, "cursor", -1, &cursor);
    if (!fill(m, &cursor, "firstBatch", 101, 0, error)) {
        bson_append_document_end(ctx->reply, &cursor);
        msim_cursor_free(cur);
        return false;
    }
    if (m->closed) {
        BSON_APPEND_INT64(&cursor, "id", 0);
        BSON_APPEND_UTF8(&cursor, "ns", cur->ns);
        bson_append_document_end(ctx->reply, &cursor);
        msim_cursor_free(cur);
        return true;
    }
    msim_cursor_register(cur);
    BSON_APPEND_INT64(&cursor, "id", cur->id);
    BSON_APPEND_UTF8(&cursor, "ns", cur->ns);
    bson_append_document_end(ctx->reply, &cursor);
    return true;
}

bool
msim_route_stream_get_more(msim_ctx_t *ctx, msim_cursor_t *cur, int64_t batch_size,
                           int64_t max_await_ms, mg_error_t *error)
{
    mstream_t *m = cur->stream;
    bson_t cursor;
    if (msim_srv->wait_cap_ms >= 0 && max_await_ms > msim_srv->wait_cap_ms)
        max_await_ms = msim_srv->wait_cap_ms;
    bson_append_document_begin(ctx->reply, "cursor", -1, &cursor);
    if (!fill(m, &cursor, "nextBatch", batch_size, max_await_ms, error)) {
        bson_append_document_end(ctx->reply, &cursor);
        return false;
    }
    if (m->closed)
        cur->id = 0;
    BSON_APPEND_INT64(&cursor, "id", m->closed ? 0 : cur->id);
    BSON_APPEND_UTF8(&cursor, "ns", cur->ns);
    bson_append_document_end(ctx->reply, &cursor);
    return true;
}
