/*
 * tests/mongosim/msim_stream.c - the in-memory oplog (bounded by
 * --oplog-size-mb) and change streams over it: collection, database and
 * deployment scope, resume tokens, startAtOperationTime / resumeAfter /
 * startAfter, fullDocument and fullDocumentBeforeChange modes, invalidate,
 * postBatchResumeToken and ChangeStreamHistoryLost.
 *
 * Resume token: {_data: "82" TTTTTTTT IIIIIIII KK NNNNNNNN [FFFFFFFF]} in
 * upper-case hex: cluster time (t, i), kind (01 event, 02 invalidate, 03
 * high-water mark), the event's index within its transaction and, for a
 * fragment of an event split by $changeStreamSplitLargeEvent, the fragment's
 * index. Tokens order as strings in the order of events (a fragment after
 * its event's own token), and are strictly increasing in a stream.
 *
 * Event size: an event larger than BSONObjMaxInternalSize (16 MiB + 16 KiB)
 * cannot be serialized and fails the stream with BSONObjectTooLarge (10334),
 * as on mongod; with $changeStreamSplitLargeEvent (claimed version 7.0) an
 * event over 16 MiB + 8 KiB is returned as fragments instead.
 */
#include "msim.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { KIND_EVENT = 1, KIND_INVALIDATE = 2, KIND_HWM = 3 };
enum { SCOPE_COLL, SCOPE_DB, SCOPE_CLUSTER };
enum { FD_DEFAULT, FD_UPDATE_LOOKUP, FD_WHEN_AVAILABLE, FD_REQUIRED };
enum { FDB_OFF, FDB_WHEN_AVAILABLE, FDB_REQUIRED };

#define SPLIT_EVENT_LIMIT MSIM_SPLIT_EVENT_LIMIT

typedef struct {
    msim_ts_t ts;
    uint8_t kind;
    uint32_t index;
    int64_t frag; /* fragment index of a split event, -1 for none */
} token_t;

static int
tok_cmp(token_t a, token_t b)
{
    int c = msim_ts_cmp(a.ts, b.ts);
    if (c != 0)
        return c;
    if (a.kind != b.kind)
        return a.kind < b.kind ? -1 : 1;
    if (a.index != b.index)
        return a.index < b.index ? -1 : 1;
    return a.frag < b.frag ? -1 : a.frag > b.frag;
}

static void
tok_hex(token_t t, char *hex, size_t n)
{
    if (t.frag >= 0)
        snprintf(hex, n, "82%08X%08X%02X%08X%08X", t.ts.t, t.ts.i, t.kind, t.index,
                 (unsigned)t.frag);
    else
        snprintf(hex, n, "82%08X%08X%02X%08X", t.ts.t, t.ts.i, t.kind, t.index);
}

static void
tok_append(bson_t *b, const char *key, token_t t)
{
    char hex[64];
    bson_t d;
    tok_hex(t, hex, sizeof hex);
    bson_append_document_begin(b, key, -1, &d);
    BSON_APPEND_UTF8(&d, "_data", hex);
    bson_append_document_end(b, &d);
}

static bool
tok_parse(const bson_iter_t *it, token_t *t, mg_error_t *error)
{
    bson_iter_t d;
    const char *s;
    unsigned int tt, ii, kk, nn, ff = 0;
    size_t len;
    char tail;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &d) || !bson_iter_find(&d, "_data"))
        return msim_fail(error, MSIM_E_INVALID_RESUME_TOKEN,
                         "Invalid resume token: the token must be a document with a _data "
                         "field");
    if (!BSON_ITER_HOLDS_UTF8(&d))
        return msim_fail(error, MSIM_E_INVALID_RESUME_TOKEN,
                         "Invalid resume token: _data must be a string");
    s = bson_iter_utf8(&d, NULL);
    len = strlen(s);
    if ((len != 28 && len != 36) || strncmp(s, "82", 2) != 0 ||
        strspn(s, "0123456789ABCDEF") != len ||
        sscanf(s + 2, "%8X%8X%2X%8X", &tt, &ii, &kk, &nn) != 4 || kk < 1 || kk > 3 ||
        (len == 36 && (sscanf(s + 28, "%8X%c", &ff, &tail) != 1 || kk != KIND_EVENT)))
        return msim_fail(error, MSIM_E_FAILED_TO_PARSE,
                         "Failed to decode resume token '%.64s': not a token issued by this "
                         "server",
                         s);
    t->ts.t = tt;
    t->ts.i = ii;
    t->kind = (uint8_t)kk;
    t->index = nn;
    t->frag = len == 36 ? (int64_t)ff : -1;
    return true;
}

static token_t
entry_token(const msim_oplog_entry_t *e)
{
    token_t t = {e->ts, KIND_EVENT, e->txn_index, -1};
    return t;
}

/* ------------------------------------------------------------------------
 * Oplog
 * ------------------------------------------------------------------------ */

msim_oplog_entry_t *
msim_oplog_entry_new(const char *op, const char *db, const char *coll)
{
    msim_oplog_entry_t *e = calloc(1, sizeof *e);
    if (e == NULL)
        abort();
    snprintf(e->op, sizeof e->op, "%s", op);
    e->db = strdup(db);
    e->coll = coll ? strdup(coll) : NULL;
    return e;
}

void
msim_oplog_entry_free(msim_oplog_entry_t *e)
{
    if (e == NULL)
        return;
    free(e->db);
    free(e->coll);
    free(e->to_db);
    free(e->to_coll);
    if (e->doc_key)
        bson_destroy(e->doc_key);
    msim_doc_unref(e->post);
    msim_doc_unref(e->pre);
    if (e->update_desc)
        bson_destroy(e->update_desc);
    if (e->lsid)
        bson_destroy(e->lsid);
    free(e);
}

void
msim_oplog_append(msim_oplog_entry_t *e)
{
    msim_server_t *s = msim_srv;
    if (e->ts.t == 0) {
        e->ts = msim_clock_tick();
        e->txn_index = 0;
    }
    e->seq = s->oplog_next_seq++;
    e->wall_ms = msim_now_ms();
    msim_note_op(e->ts);
    atomic_store(&s->last_op, ((uint64_t)e->ts.t << 32) | e->ts.i);
    e->size = 128 + (e->post ? e->post->len : 0) + (e->pre ? e->pre->len : 0) +
              (e->update_desc ? e->update_desc->len : 0) + (e->doc_key ? e->doc_key->len : 0);
    if (s->oplog_tail)
        s->oplog_tail->next = e;
    else
        s->oplog_head = e;
    s->oplog_tail = e;
    s->oplog_bytes += e->size;
    while (s->oplog_bytes > (size_t)s->oplog_max_bytes && s->oplog_head != s->oplog_tail) {
        msim_oplog_entry_t *h = s->oplog_head;
        s->oplog_head = h->next;
        s->oplog_bytes -= h->size;
        s->oplog_trimmed = true;
        s->oplog_trim_ts = h->ts;
        s->oplog_trim_index = h->txn_index;
        msim_oplog_entry_free(h);
    }
}

void
msim_oplog_publish(void)
{
    pthread_mutex_lock(&msim_srv->oplog_mu);
    msim_srv->oplog_generation++;
    pthread_cond_broadcast(&msim_srv->oplog_cv);
    pthread_mutex_unlock(&msim_srv->oplog_mu);
    if (msim_srv->cluster != NULL)
        msim_cluster_wake(msim_srv->cluster);
}

/* ------------------------------------------------------------------------
 * Streams
 * ------------------------------------------------------------------------ */

typedef struct {
    int scope;
    char db[128];
    char coll[256];
    int full_document;
    int full_document_before;
    bool show_expanded;
    bson_t *stages; /* array of later stages ($match / $project / $addFields ...) */
    msim_matcher_t **matchers;
    msim_proj_t **projs;
    size_t nstages;
    uint64_t last_seq; /* last oplog entry considered */
    /* that entry, valid while oplog_head->seq <= last_seq (entries are freed from the head) */
    msim_oplog_entry_t *last_entry;
    token_t pos; /* resume point to report */
    bool invalidate_pending;
    token_t invalidate_token;
    bool closed;
    /* $changeStreamSplitLargeEvent */
    bool split;           /* the stage ends the pipeline */
    bool resume_split;    /* resuming from a fragment of the event at resume_base */
    token_t resume_base;  /* that event's own token */
    int64_t resume_frag;  /* the fragment resumed after */
    bson_t **frags;       /* fragments of a split event still to return */
    token_t *frag_tokens; /* their resume tokens */
    size_t nfrags, next_frag;
} stream_t;

static void
free_frags(stream_t *s)
{
    for (size_t i = 0; i < s->nfrags; i++)
        if (s->frags[i] != NULL)
            bson_destroy(s->frags[i]);
    free(s->frags);
    free(s->frag_tokens);
    s->frags = NULL;
    s->frag_tokens = NULL;
    s->nfrags = s->next_frag = 0;
}

void
msim_stream_free(void *p)
{
    stream_t *s = p;
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nstages; i++) {
        msim_matcher_destroy(s->matchers[i]);
        msim_proj_destroy(s->projs[i]);
    }
    free(s->matchers);
    free(s->projs);
    if (s->stages)
        bson_destroy(s->stages);
    free_frags(s);
    free(s);
}

static bool
is_internal_db(const char *db)
{
    return strcmp(db, "admin") == 0 || strcmp(db, "config") == 0 || strcmp(db, "local") == 0;
}

/* relevant: 0 = skip, 1 = emit event, 2 = emit event then invalidate. */
static int
relevant(const stream_t *s, const msim_oplog_entry_t *e)
{
    bool expanded_only = strcmp(e->op, "create") == 0;
    if (strcmp(e->op, "noop") == 0 || e->from_migrate)
        return 0; /* no-ops only move the high-water mark; migrations are not user events */
    if (expanded_only && !s->show_expanded)
        return 0;
    switch (s->scope) {
    case SCOPE_CLUSTER:
        return is_internal_db(e->db) ? 0 : 1;
    case SCOPE_DB:
        if (strcmp(e->db, s->db) != 0)
            return 0;
        if (e->coll && strncmp(e->coll, "system.", 7) == 0)
            return 0;
        return strcmp(e->op, "dropDatabase") == 0 ? 2 : 1;
    default:
        if (strcmp(e->db, s->db) != 0)
            return 0;
        if (strcmp(e->op, "dropDatabase") == 0)
            return 0; /* the collection's own drop event came first */
        if (strcmp(e->op, "rename") == 0 && e->to_db != NULL && strcmp(e->to_db, s->db) == 0 &&
            strcmp(e->to_coll, s->coll) == 0)
            return 2; /* a rename onto the watched collection invalidates it too */
        if (e->coll == NULL || strcmp(e->coll, s->coll) != 0)
            return 0;
        if (strcmp(e->op, "drop") == 0 || strcmp(e->op, "rename") == 0)
            return 2;
        return 1;
    }
}

static bool
build_event(const stream_t *s, const msim_oplog_entry_t *e, bson_t *ev, mg_error_t *error)
{
    bson_t ns;
    bool is_update = strcmp(e->op, "update") == 0;
    bool has_doc = strcmp(e->op, "insert") == 0 || strcmp(e->op, "replace") == 0;
    tok_append(ev, "_id", entry_token(e));
    BSON_APPEND_UTF8(ev, "operationType", e->op);
    bson_append_timestamp(ev, "clusterTime", -1, e->ts.t, e->ts.i);
    BSON_APPEND_DATE_TIME(ev, "wallTime", e->wall_ms);
    if (has_doc && e->post != NULL) {
        bson_t d;
        bson_init_static(&d, e->post->data, e->post->len);
        BSON_APPEND_DOCUMENT(ev, "fullDocument", &d);
    } else if (is_update && s->full_document != FD_DEFAULT) {
        if (s->full_document == FD_UPDATE_LOOKUP) {
            msim_coll_t *c = msim_catalog_get(e->db, e->coll);
            bson_iter_t id;
            msim_doc_t *cur = NULL;
            if (c != NULL && bson_iter_init_find(&id, e->doc_key, "_id"))
                cur = msim_coll_find(c, &id);
            if (cur != NULL) {
                bson_t d;
                bson_init_static(&d, cur->data, cur->len);
                BSON_APPEND_DOCUMENT(ev, "fullDocument", &d);
            } else {
                BSON_APPEND_NULL(ev, "fullDocument");
            }
        } else if (e->images && e->post != NULL) {
            bson_t d;
            bson_init_static(&d, e->post->data, e->post->len);
            BSON_APPEND_DOCUMENT(ev, "fullDocument", &d);
        } else if (s->full_document == FD_REQUIRED) {
            return msim_fail(error, MSIM_E_NO_MATCHING_DOCUMENT,
                             "Change stream was configured to require a post-image for all "
                             "update, delete and replace events, but the post-image was not "
                             "found for event: %s.%s",
                             e->db, e->coll);
        } else {
            BSON_APPEND_NULL(ev, "fullDocument");
        }
    }
    bson_append_document_begin(ev, "ns", -1, &ns);
    BSON_APPEND_UTF8(&ns, "db", e->db);
    if (e->coll)
        BSON_APPEND_UTF8(&ns, "coll", e->coll);
    bson_append_document_end(ev, &ns);
    if (e->to_db != NULL) {
        bson_t to;
        bson_append_document_begin(ev, "to", -1, &to);
        BSON_APPEND_UTF8(&to, "db", e->to_db);
        BSON_APPEND_UTF8(&to, "coll", e->to_coll);
        bson_append_document_end(ev, &to);
    }
    if (e->doc_key != NULL)
        BSON_APPEND_DOCUMENT(ev, "documentKey", e->doc_key);
    if (is_update && e->update_desc != NULL)
        BSON_APPEND_DOCUMENT(ev, "updateDescription", e->update_desc);
    if (s->full_document_before != FDB_OFF &&
        (is_update || strcmp(e->op, "replace") == 0 || strcmp(e->op, "delete") == 0)) {
        if (e->images && e->pre != NULL) {
            bson_t d;
            bson_init_static(&d, e->pre->data, e->pre->len);
            BSON_APPEND_DOCUMENT(ev, "fullDocumentBeforeChange", &d);
        } else if (s->full_document_before == FDB_REQUIRED) {
            return msim_fail(error, MSIM_E_NO_MATCHING_DOCUMENT,
                             "Change stream was configured to require a pre-image for all "
                             "update, delete and replace events, but the pre-image was not "
                             "found for event: %s.%s",
                             e->db, e->coll);
        } else {
            BSON_APPEND_NULL(ev, "fullDocumentBeforeChange");
        }
    }
    if (e->in_txn) {
        BSON_APPEND_INT64(ev, "txnNumber", e->txn_number);
        BSON_APPEND_DOCUMENT(ev, "lsid", e->lsid);
    }
    return true;
}

/* run_stages applies $match/$project; returns false to drop, error via *err_out. */
static bool
run_stages(const stream_t *s, bson_t *ev, bool *failed, mg_error_t *error)
{
    for (size_t i = 0; i < s->nstages; i++) {
        if (s->matchers[i] != NULL) {
            if (!msim_matcher_match(s->matchers[i], bson_get_data(ev), ev->len))
                return false;
        } else if (s->projs[i] != NULL) {
            bson_t out = BSON_INITIALIZER;
            bson_iter_t a, b;
            msim_proj_apply(s->projs[i], bson_get_data(ev), ev->len, &out);
            if (!bson_iter_init_find(&a, &out, "_id") || !bson_iter_init_find(&b, ev, "_id") ||
                msim_cmp(&a, &b) != 0) {
                bson_destroy(&out);
                *failed = true;
                msim_fail(error, MSIM_E_CHANGE_STREAM_FATAL,
                          "Encountered an event whose _id field, which contains the resume "
                          "token, was modified by the pipeline. Modifying the _id field of an "
                          "event makes it impossible to resume the stream from that point. Only "
                          "transformations that retain the unmodified _id field are allowed.");
                return false;
            }
            bson_reinit(ev);
            bson_concat(ev, &out);
            bson_destroy(&out);
        }
    }
    return true;
}

static void
append_invalidate(bson_t *arr, uint32_t idx, token_t t)
{
    bson_t ev;
    char key[16];
    const char *k;
    bson_uint32_to_string(idx, &k, key, sizeof key);
    bson_append_document_begin(arr, k, -1, &ev);
    tok_append(&ev, "_id", t);
    BSON_APPEND_UTF8(&ev, "operationType", "invalidate");
    bson_append_timestamp(&ev, "clusterTime", -1, t.ts.t, t.ts.i);
    BSON_APPEND_DATE_TIME(&ev, "wallTime", msim_now_ms());
    bson_append_document_end(arr, &ev);
}

/* field_t: one top-level field of an event to split, with its BSON size. */
typedef struct {
    const char *key;
    uint32_t size;
    bson_iter_t it;
} field_t;

static int
field_cmp(const void *pa, const void *pb)
{
    const field_t *a = pa, *b = pb;
    if (a->size != b->size)
        return a->size < b->size ? -1 : 1;
    return strcmp(a->key, b->key);
}

/* fragment_head starts a fragment document: its _id and splitEvent. */
static void
fragment_head(bson_t *f, const char *base_hex, size_t g, size_t of)
{
    bson_t se, id;
    char hex[80];
    snprintf(hex, sizeof hex, "%s%08X", base_hex, (unsigned)g);
    bson_append_document_begin(f, "_id", -1, &id);
    BSON_APPEND_UTF8(&id, "_data", hex);
    bson_append_document_end(f, &id);
    bson_append_document_begin(f, "splitEvent", -1, &se);
    BSON_APPEND_INT32(&se, "fragment", (int32_t)g + 1);
    BSON_APPEND_INT32(&se, "of", (int32_t)of);
    bson_append_document_end(f, &se);
}

bool
msim_split_event(const bson_t *ev, const char *base_hex, bson_t ***out, size_t *nout,
                 mg_error_t *error)
{
    bson_iter_t it;
    field_t *fields;
    size_t nf = 0, cap = bson_count_keys(ev) + 1, *start, ngroups = 0, i;
    uint32_t head, max;
    bson_t probe = BSON_INITIALIZER;

    /* room for the postBatchResumeToken, as mongod leaves */
    max = (uint32_t)(SPLIT_EVENT_LIMIT - (4 + 1 + 6 + 4 + strlen(base_hex) + 1 + 1));
    fragment_head(&probe, base_hex, 0, 1);
    head = probe.len;
    bson_destroy(&probe);
    fields = calloc(cap, sizeof *fields);
    start = calloc(cap + 1, sizeof *start);
    if (fields == NULL || start == NULL)
        abort();
    bson_iter_init(&it, ev);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "_id") == 0)
            continue;
        fields[nf].key = bson_iter_key(&it);
        fields[nf].size = it.next_off - it.off;
        fields[nf].it = it;
        nf++;
    }
    qsort(fields, nf, sizeof *fields, field_cmp);
    for (i = 0; i < nf;) {
        uint32_t size = head;
        start[ngroups++] = i;
        do {
            size += fields[i].size;
            i++;
        } while (i < nf && size + fields[i].size <= max);
        if (size > max) {
            free(fields);
            free(start);
            return msim_fail(error, 7182500,
                             "Splitting change event failed: fragment size %u is greater than "
                             "maximum allowed fragment size %u",
                             size, max);
        }
    }
    start[ngroups] = nf;
    *out = calloc(ngroups + 1, sizeof **out);
    if (*out == NULL)
        abort();
    for (size_t g = 0; g < ngroups; g++) {
        bson_t *f = bson_new();
        fragment_head(f, base_hex, g, ngroups);
        for (size_t k = start[g]; k < start[g + 1]; k++)
            msim_append_iter(f, fields[k].key, -1, &fields[k].it);
        (*out)[g] = f;
    }
    *nout = ngroups;
    free(fields);
    free(start);
    return true;
}

/*
 * split_event queues ev (over SPLIT_EVENT_LIMIT) as its fragments
 * (msim_split_event), dropping the first skip (resume from a fragment).
 * Errors: those of msim_split_event, a resume point past the last fragment
 * (ChangeStreamFatalError).
 */
static bool
split_event(stream_t *s, token_t base, const bson_t *ev, int64_t skip, mg_error_t *error)
{
    char hex[64];
    bson_t **frags;
    size_t n;
    tok_hex(base, hex, sizeof hex);
    if (!msim_split_event(ev, hex, &frags, &n, error))
        return false;
    if ((size_t)skip > n) {
        for (size_t g = 0; g < n; g++)
            bson_destroy(frags[g]);
        free(frags);
        return msim_fail(error, MSIM_E_CHANGE_STREAM_FATAL,
                         "Attempted to resume from a split event, but the resumed stream "
                         "produced a different split. Ensure that the pipeline used to resume "
                         "is the same as the original");
    }
    free_frags(s);
    s->frags = calloc(n + 1, sizeof *s->frags);
    s->frag_tokens = calloc(n + 1, sizeof *s->frag_tokens);
    if (s->frags == NULL || s->frag_tokens == NULL)
        abort();
    for (size_t g = 0; g < n; g++) {
        if (g < (size_t)skip) {
            bson_destroy(frags[g]);
            continue;
        }
        s->frags[s->nfrags] = frags[g];
        s->frag_tokens[s->nfrags] = base;
        s->frag_tokens[s->nfrags].frag = (int64_t)g;
        s->nfrags++;
    }
    free(frags);
    return true;
}

/*
 * emit_frags appends queued fragments while the batch has room (mongod:
 * the first document always, later ones while the batch stays within
 * 16 MiB). Returns false when the batch is full.
 */
static bool
emit_frags(stream_t *s, bson_t *arr, int64_t batch_size, uint32_t *count, size_t *bytes)
{
    while (s->next_frag < s->nfrags) {
        bson_t *f = s->frags[s->next_frag];
        char key[16];
        const char *k;
        if (batch_size > 0 && *count >= (uint32_t)batch_size)
            return false;
        if (*count > 0 && *bytes + f->len > MSIM_MAX_BSON_SIZE)
            return false;
        bson_uint32_to_string((*count)++, &k, key, sizeof key);
        bson_append_document(arr, k, -1, f);
        *bytes += f->len;
        s->pos = s->frag_tokens[s->next_frag];
        bson_destroy(f);
        s->frags[s->next_frag++] = NULL;
    }
    free_frags(s);
    return true;
}

static bool
too_large(const bson_t *ev, token_t t, mg_error_t *error)
{
    char hex[64];
    tok_hex(t, hex, sizeof hex);
    return msim_fail(error, MSIM_E_OBJECT_TOO_LARGE,
                     "BSONObj size: %u (0x%X) is invalid. Size must be between 0 and %d(16MB) "
                     "First element: _id: { _data: \"%s\" }",
                     ev->len, ev->len, MSIM_MAX_INTERNAL_BSON_SIZE, hex);
}

/* scan_state: where scan() was before an entry, to put back an event that did not fit. */
typedef struct {
    uint64_t last_seq;
    msim_oplog_entry_t *last_entry;
    token_t pos;
} scan_state_t;

/*
 * add_event puts one built event (after the user's stages) into the batch,
 * splits it, or fails as mongod does for its size. *full is set (and the
 * stream put back before the entry) when it must wait for the next batch.
 */
static bool
add_event(stream_t *s, const msim_oplog_entry_t *e, bson_t *ev, const scan_state_t *before,
          bson_t *arr, int64_t batch_size, uint32_t *count, size_t *bytes, bool *full,
          mg_error_t *error)
{
    token_t t = entry_token(e);
    bool resuming = s->resume_split && tok_cmp(t, s->resume_base) == 0;
    *full = false;
    if (s->split && ev->len > SPLIT_EVENT_LIMIT) {
        if (!split_event(s, t, ev, resuming ? s->resume_frag + 1 : 0, error))
            return false;
        s->resume_split = false;
        *full = !emit_frags(s, arr, batch_size, count, bytes);
        return true;
    }
    if (resuming)
        return msim_fail(error, MSIM_E_CHANGE_STREAM_FATAL,
                         "Attempted to resume from a split event fragment, but the event in "
                         "the resumed stream was not large enough to be split");
    if (ev->len > MSIM_MAX_INTERNAL_BSON_SIZE)
        return too_large(ev, t, error);
    if (*count > 0 && *bytes + ev->len > MSIM_MAX_BSON_SIZE) {
        s->last_seq = before->last_seq;
        s->last_entry = before->last_entry;
        s->pos = before->pos;
        *full = true;
        return true;
    }
    {
        char key[16];
        const char *k;
        bson_uint32_to_string((*count)++, &k, key, sizeof key);
        bson_append_document(arr, k, -1, ev);
        *bytes += ev->len;
    }
    return true;
}

/*
 * scan appends events after the stream's position to arr (store lock held
 * for reading): queued fragments first, then oplog entries. *count gets
 * the number appended; *at_end is set when the oplog was read to its end.
 */
static bool
scan(stream_t *s, bson_t *arr, int64_t batch_size, uint32_t *count, bool *at_end, mg_error_t *error)
{
    msim_oplog_entry_t *e;
    size_t bytes = 0;
    *count = 0;
    *at_end = false;
    if (!emit_frags(s, arr, batch_size, count, &bytes))
        return true;
    if (s->invalidate_pending) {
        if (batch_size > 0 && *count >= (uint32_t)batch_size)
            return true;
        append_invalidate(arr, (*count)++, s->invalidate_token);
        s->pos = s->invalidate_token;
        s->invalidate_pending = false;
        s->closed = true;
        return true;
    }
    if (msim_srv->oplog_head != NULL && msim_srv->oplog_head->seq > s->last_seq + 1)
        return msim_fail(error, MSIM_E_HISTORY_LOST,
                         "Resume of change stream was not possible, as the resume point may no "
                         "longer be in the oplog.");
    if (s->last_entry != NULL && msim_srv->oplog_head != NULL &&
        msim_srv->oplog_head->seq <= s->last_seq && s->last_entry->seq == s->last_seq)
        e = s->last_entry->next; /* resume the walk without rescanning the oplog */
    else
        for (e = msim_srv->oplog_head; e != NULL && e->seq <= s->last_seq; e = e->next)
            ;
    for (; e != NULL; e = e->next) {
        int rel;
        bson_t ev = BSON_INITIALIZER;
        bool failed = false, full = false, ok = true;
        scan_state_t before = {s->last_seq, s->last_entry, s->pos};
        if (batch_size > 0 && *count >= (uint32_t)batch_size)
            return true;
        if (s->resume_split && tok_cmp(entry_token(e), s->resume_base) > 0)
            return msim_fail(error, MSIM_E_CHANGE_STREAM_FATAL,
                             "cannot resume stream; the resume token was not found");
        rel = relevant(s, e);
        s->last_seq = e->seq;
        s->last_entry = e;
        if (rel == 0) {
            bson_destroy(&ev);
            continue;
        }
        s->pos = entry_token(e);
        if (!build_event(s, e, &ev, error)) {
            bson_destroy(&ev);
            return false;
        }
        if (run_stages(s, &ev, &failed, error))
            ok = add_event(s, e, &ev, &before, arr, batch_size, count, &bytes, &full, error);
        else if (failed)
            ok = false;
        bson_destroy(&ev);
        if (!ok)
            return false;
        if (full && s->last_seq == before.last_seq)
            return true; /* the event waits for the next batch */
        if (rel == 2) {
            token_t inv = {e->ts, KIND_INVALIDATE, e->txn_index, -1};
            s->invalidate_token = inv;
            if (full || (batch_size > 0 && *count >= (uint32_t)batch_size)) {
                s->invalidate_pending = true;
                return true;
            }
            append_invalidate(arr, (*count)++, inv);
            s->pos = inv;
            s->closed = true;
            return true;
        }
        if (full)
            return true; /* fragments wait for the next batch */
    }
    *at_end = true;
    return true;
}

/* reply writes the cursor document with postBatchResumeToken. */
static bool
fill_batch(stream_t *s, bson_t *cursor, const char *batch_key, int64_t batch_size, uint32_t *n,
           mg_error_t *error)
{
    bson_t arr;
    bool at_end, ok;
    bson_append_array_begin(cursor, batch_key, -1, &arr);
    pthread_rwlock_rdlock(&msim_srv->lock);
    ok = scan(s, &arr, batch_size, n, &at_end, error);
    if (ok && at_end && !s->closed && msim_srv->oplog_tail != NULL) {
        /* everything up to the newest oplog entry has been seen: as mongod,
         * the high-water mark moves only when the oplog does (writes
         * anywhere, or the periodic no-op of an idle primary) */
        token_t hwm = {msim_srv->oplog_tail->ts, KIND_HWM, 0, -1};
        if (tok_cmp(hwm, s->pos) > 0)
            s->pos = hwm;
    }
    pthread_rwlock_unlock(&msim_srv->lock);
    bson_append_array_end(cursor, &arr);
    if (ok)
        tok_append(cursor, "postBatchResumeToken", s->pos);
    return ok;
}

static bool
parse_stages(stream_t *s, const bson_t *rest, mg_error_t *error)
{
    bson_iter_t it;
    size_t n = 0;
    if (rest == NULL)
        return true;
    s->stages = bson_copy(rest);
    n = bson_count_keys(s->stages);
    s->matchers = calloc(n + 1, sizeof *s->matchers);
    s->projs = calloc(n + 1, sizeof *s->projs);
    bson_iter_init(&it, s->stages);
    while (bson_iter_next(&it)) {
        bson_iter_t st;
        const uint8_t *d;
        uint32_t l;
        bson_t spec;
        const char *name;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &st) || !bson_iter_next(&st))
            return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                             "Each element of the 'pipeline' array "
                             "must be an object");
        name = bson_iter_key(&st);
        if (strcmp(name, "$changeStreamSplitLargeEvent") == 0) {
            bson_iter_t next = it;
            if (msim_srv->server_version < MSIM_VERSION_70)
                return msim_fail(error, MSIM_E_UNRECOGNIZED_STAGE,
                                 "Unrecognized pipeline stage name: '%s'", name);
            l = 0;
            if (BSON_ITER_HOLDS_DOCUMENT(&st))
                bson_iter_document(&st, &l, &d);
            if (l != 5)
                return msim_fail(error, 7182800,
                                 "$changeStreamSplitLargeEvent spec should be an empty object");
            if (s->split || bson_iter_next(&next))
                return msim_fail(error, 7182802,
                                 "$changeStreamSplitLargeEvent must be the last stage in the "
                                 "pipeline");
            s->split = true;
            continue;
        }
        if (!BSON_ITER_HOLDS_DOCUMENT(&st))
            return msim_fail(error, MSIM_E_TYPE_MISMATCH, "%s must be an object", name);
        bson_iter_document(&st, &l, &d);
        bson_init_static(&spec, d, l);
        if (strcmp(name, "$match") == 0) {
            s->matchers[s->nstages] = msim_matcher_new(&spec, error);
            if (s->matchers[s->nstages] == NULL)
                return false;
        } else if (strcmp(name, "$project") == 0 || strcmp(name, "$addFields") == 0 ||
                   strcmp(name, "$set") == 0) {
            if (strcmp(name, "$project") != 0)
                return msim_fail(error, MSIM_E_COMMAND_NOT_SUPPORTED,
                                 "mongosim supports $match and $project after $changeStream, "
                                 "not %s",
                                 name);
            s->projs[s->nstages] = msim_proj_new(&spec, error);
            if (s->projs[s->nstages] == NULL)
                return false;
        } else if (strcmp(name, "$changeStream") == 0) {
            return msim_fail(error, 40602,
                             "$changeStream is only valid as the first stage in a "
                             "pipeline");
        } else {
            return msim_fail(error, MSIM_E_COMMAND_NOT_SUPPORTED,
                             "Stage not supported in a $changeStream pipeline: %s", name);
        }
        s->nstages++;
    }
    return true;
}

bool
msim_stream_open(msim_ctx_t *ctx, const bson_iter_t *spec, const bson_t *pipeline_rest,
                 const char *coll, int64_t batch_size, mg_error_t *error)
{
    stream_t *s = calloc(1, sizeof *s);
    bson_iter_t it;
    bool have_start = false, all_for_cluster = false, start_after = false;
    token_t start = {{0, 0}, 0, 0, -1};
    msim_ts_t at = {0, 0};
    bool have_at = false;
    msim_cursor_t *cur;
    bson_t cursor;
    uint32_t n = 0;
    char ns[512];

    if (s == NULL)
        abort();
    if (!BSON_ITER_HOLDS_DOCUMENT(spec) || !bson_iter_recurse(spec, &it)) {
        free(s);
        return msim_fail(error, MSIM_E_TYPE_MISMATCH,
                         "the $changeStream stage specification "
                         "must be an object");
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "fullDocument") == 0) {
            const char *v = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : "";
            if (strcmp(v, "default") == 0)
                s->full_document = FD_DEFAULT;
            else if (strcmp(v, "updateLookup") == 0)
                s->full_document = FD_UPDATE_LOOKUP;
            else if (strcmp(v, "whenAvailable") == 0)
                s->full_document = FD_WHEN_AVAILABLE;
            else if (strcmp(v, "required") == 0)
                s->full_document = FD_REQUIRED;
            else
                goto bad_value;
        } else if (strcmp(k, "fullDocumentBeforeChange") == 0) {
            const char *v = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : "";
            if (strcmp(v, "off") == 0)
                s->full_document_before = FDB_OFF;
            else if (strcmp(v, "whenAvailable") == 0)
                s->full_document_before = FDB_WHEN_AVAILABLE;
            else if (strcmp(v, "required") == 0)
                s->full_document_before = FDB_REQUIRED;
            else
                goto bad_value;
        } else if (strcmp(k, "resumeAfter") == 0 || strcmp(k, "startAfter") == 0) {
            if (have_start || have_at) {
                msim_stream_free(s);
                return msim_fail(error, 50865,
                                 "Do not specify more than one of resumeAfter, "
                                 "startAfter and startAtOperationTime");
            }
            if (!tok_parse(&it, &start, error)) {
                msim_stream_free(s);
                return false;
            }
            have_start = true;
            start_after = k[0] == 's';
            if (start.kind == KIND_INVALIDATE && !start_after) {
                msim_stream_free(s);
                return msim_fail(error, MSIM_E_INVALID_RESUME_TOKEN,
                                 "Attempting to resume a change stream using 'resumeAfter' is "
                                 "not allowed from an invalidate notification.");
            }
        } else if (strcmp(k, "startAtOperationTime") == 0) {
            if (!BSON_ITER_HOLDS_TIMESTAMP(&it))
                goto bad_value;
            if (have_start) {
                msim_stream_free(s);
                return msim_fail(error, 40674,
                                 "Only one type of resume option is allowed, but "
                                 "multiple were found.");
            }
            bson_iter_timestamp(&it, &at.t, &at.i);
            have_at = true;
        } else if (strcmp(k, "allChangesForCluster") == 0) {
            all_for_cluster = msim_truthy(&it);
        } else if (strcmp(k, "showExpandedEvents") == 0) {
            s->show_expanded = msim_truthy(&it);
        } else if (strcmp(k, "allowToRunOnConfigDB") == 0 ||
                   strcmp(k, "allowToRunOnSystemNS") == 0) {
            continue;
        } else {
            msim_stream_free(s);
            return msim_fail(error, 40415, "BSON field '$changeStream.%s' is an unknown field.", k);
        }
    }
    if (coll == NULL) {
        if (all_for_cluster) {
            if (strcmp(ctx->db, "admin") != 0) {
                msim_stream_free(s);
                return msim_fail(error, 31037,
                                 "A change stream with 'allChangesForCluster: "
                                 "true' must be opened against the 'admin' "
                                 "database");
            }
            s->scope = SCOPE_CLUSTER;
        } else {
            if (strcmp(ctx->db, "admin") == 0) {
                msim_stream_free(s);
                return msim_fail(error, 73,
                                 "$changeStream may not be opened on the internal "
                                 "admin database");
            }
            s->scope = SCOPE_DB;
        }
        snprintf(ns, sizeof ns, "%s.$cmd.aggregate", ctx->db);
    } else {
        if (all_for_cluster) {
            msim_stream_free(s);
            return msim_fail(error, 40415,
                             "allChangesForCluster is only valid for aggregate: 1 on admin");
        }
        s->scope = SCOPE_COLL;
        snprintf(s->coll, sizeof s->coll, "%s", coll);
        snprintf(ns, sizeof ns, "%s.%s", ctx->db, coll);
    }
    snprintf(s->db, sizeof s->db, "%s", ctx->db);
    if (!parse_stages(s, pipeline_rest, error)) {
        msim_stream_free(s);
        return false;
    }
    if (have_start && start.frag >= 0) {
        if (!s->split) {
            msim_stream_free(s);
            return msim_fail(error, MSIM_E_CHANGE_STREAM_FATAL,
                             "To resume from a split event, the $changeStream pipeline must "
                             "include a $changeStreamSplitLargeEvent stage");
        }
        /* read the split event again and skip the fragments already returned */
        s->resume_split = true;
        s->resume_frag = start.frag;
        s->resume_base = start;
        s->resume_base.frag = -1;
    }

    /* position the stream */
    pthread_rwlock_rdlock(&msim_srv->lock);
    if (have_start || have_at) {
        msim_oplog_entry_t *e;
        bool lost;
        if (have_at) {
            lost = msim_srv->oplog_trimmed && msim_ts_cmp(at, msim_srv->oplog_trim_ts) <= 0;
            start.ts = at;
            start.kind = 0; /* before any event at this time */
            start.index = 0;
        } else {
            token_t trim = {msim_srv->oplog_trim_ts, KIND_EVENT, msim_srv->oplog_trim_index, -1};
            lost = msim_srv->oplog_trimmed && tok_cmp(start, trim) < 0;
        }
        if (lost) {
            pthread_rwlock_unlock(&msim_srv->lock);
            msim_stream_free(s);
            return msim_fail(error, MSIM_E_HISTORY_LOST,
                             "Resume of change stream was not possible, as the resume point may "
                             "no longer be in the oplog.");
        }
        s->last_seq = 0;
        s->last_entry = NULL;
        for (e = msim_srv->oplog_head; e != NULL; e = e->next) {
            token_t et = entry_token(e);
            if (start.kind == KIND_INVALIDATE) {
                /* startAfter an invalidate: skip the entry that caused it too */
                if (msim_ts_cmp(et.ts, start.ts) > 0 ||
                    (msim_ts_cmp(et.ts, start.ts) == 0 && et.index > start.index))
                    break;
            } else if (s->resume_split ? tok_cmp(et, s->resume_base) >= 0
                                       : tok_cmp(et, start) > 0) {
                break;
            }
            s->last_seq = e->seq;
            s->last_entry = e;
        }
        if (e == NULL && msim_srv->oplog_tail != NULL) {
            s->last_seq = msim_srv->oplog_tail->seq;
            s->last_entry = msim_srv->oplog_tail;
        } else if (s->last_entry == NULL && msim_srv->oplog_head != NULL) {
            s->last_seq = msim_srv->oplog_head->seq - 1; /* just before the oldest entry */
        }
        s->pos = start;
        if (have_at) {
            /* report a token just before the requested time */
            s->pos.kind = KIND_HWM;
            if (s->pos.ts.i > 0)
                s->pos.ts.i--;
            else if (s->pos.ts.t > 0) {
                s->pos.ts.t--;
                s->pos.ts.i = UINT32_MAX;
            }
        }
    } else {
        token_t now = {msim_srv->oplog_tail ? msim_srv->oplog_tail->ts : msim_clock_now(), KIND_HWM,
                       0, -1};
        s->last_seq = msim_srv->oplog_next_seq - 1;
        s->last_entry = msim_srv->oplog_tail;
        s->pos = now;
    }
    pthread_rwlock_unlock(&msim_srv->lock);

    cur = calloc(1, sizeof *cur);
    if (cur == NULL)
        abort();
    snprintf(cur->ns, sizeof cur->ns, "%s", ns);
    cur->kind = MSIM_CURSOR_STREAM;
    cur->stream = s;
    bson_append_document_begin(ctx->reply, "cursor", -1, &cursor);
    if (!fill_batch(s, &cursor, "firstBatch", batch_size < 0 ? 101 : batch_size, &n, error)) {
        bson_append_document_end(ctx->reply, &cursor);
        msim_cursor_free(cur);
        return false;
    }
    if (batch_size == 0) {
        /* batchSize 0: an empty first batch, position unchanged */
    }
    if (s->closed) {
        BSON_APPEND_INT64(&cursor, "id", 0);
        BSON_APPEND_UTF8(&cursor, "ns", ns);
        bson_append_document_end(ctx->reply, &cursor);
        msim_cursor_free(cur);
        return true;
    }
    msim_cursor_register(cur);
    BSON_APPEND_INT64(&cursor, "id", cur->id);
    BSON_APPEND_UTF8(&cursor, "ns", ns);
    bson_append_document_end(ctx->reply, &cursor);
    return true;

bad_value:
    msim_stream_free(s);
    return msim_fail(error, MSIM_E_BAD_VALUE, "invalid value for $changeStream option");
}

bool
msim_stream_get_more(msim_ctx_t *ctx, msim_cursor_t *cur, int64_t batch_size, int64_t max_await_ms,
                     mg_error_t *error)
{
    stream_t *s = cur->stream;
    int64_t deadline;
    bson_t batch = BSON_INITIALIZER, cursor;
    uint32_t n = 0;

    if (msim_srv->wait_cap_ms >= 0 && max_await_ms > msim_srv->wait_cap_ms)
        max_await_ms = msim_srv->wait_cap_ms;
    deadline = msim_now_ms() + max_await_ms;
    for (;;) {
        uint64_t gen;
        bool more;
        pthread_mutex_lock(&msim_srv->oplog_mu);
        gen = msim_srv->oplog_generation;
        pthread_mutex_unlock(&msim_srv->oplog_mu);
        /* cheap check for new entries before building a batch */
        pthread_rwlock_rdlock(&msim_srv->lock);
        more = s->invalidate_pending || s->next_frag < s->nfrags ||
               (msim_srv->oplog_tail != NULL && msim_srv->oplog_tail->seq > s->last_seq);
        pthread_rwlock_unlock(&msim_srv->lock);
        if (more) {
            bson_reinit(&batch);
            if (!fill_batch(s, &batch, "nextBatch", batch_size, &n, error)) {
                bson_destroy(&batch);
                return false;
            }
            if (n > 0 || s->closed)
                break; /* else only irrelevant entries: their position stands */
        }
        if (msim_now_ms() >= deadline || atomic_load(&msim_srv->stopping)) {
            bson_reinit(&batch);
            if (!fill_batch(s, &batch, "nextBatch", batch_size, &n, error)) {
                bson_destroy(&batch);
                return false;
            }
            break;
        }
        {
            /* the wait for new entries holds no lock, as an awaitData getMore */
            bool held = msim_glock_yield();
            pthread_mutex_lock(&msim_srv->oplog_mu);
            if (msim_srv->oplog_generation == gen) {
                struct timespec ts;
                ts.tv_sec = deadline / 1000;
                ts.tv_nsec = (deadline % 1000) * 1000000;
                pthread_cond_timedwait(&msim_srv->oplog_cv, &msim_srv->oplog_mu, &ts);
            }
            pthread_mutex_unlock(&msim_srv->oplog_mu);
            msim_glock_resume(held);
        }
    }
    bson_append_document_begin(ctx->reply, "cursor", -1, &cursor);
    bson_concat(&cursor, &batch);
    bson_destroy(&batch);
    if (s->closed)
        cur->id = 0;
    BSON_APPEND_INT64(&cursor, "id", s->closed ? 0 : cur->id);
    BSON_APPEND_UTF8(&cursor, "ns", cur->ns);
    bson_append_document_end(ctx->reply, &cursor);
    return true;
}
