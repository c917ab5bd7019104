/*
 * tests/mongosim/msim_store.c - collections (a skip list of raw documents
 * ordered by _id in MongoDB's cross-type order), the catalog and the
 * cluster clock.
 */
#include "msim.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SKIP_MAX_LEVEL 24

__thread msim_server_t *msim_srv;

typedef struct skipnode {
    msim_doc_t *doc;
    int level;
    struct skipnode *next[];
} skipnode_t;

struct msim_skip {
    skipnode_t *head;
    int level;
    size_t count;
    uint64_t rng;
};

static skipnode_t *
node_new(msim_doc_t *doc, int level)
{
    skipnode_t *n = calloc(1, sizeof *n + (size_t)level * sizeof(skipnode_t *));
    if (n == NULL)
        abort(); /* out of memory in a test server: nothing sensible to do */
    n->doc = doc;
    n->level = level;
    return n;
}

static int
random_level(msim_skip_t *s)
{
    int lvl = 1;
    /* xorshift64, p = 1/4 */
    for (;;) {
        s->rng ^= s->rng << 13;
        s->rng ^= s->rng >> 7;
        s->rng ^= s->rng << 17;
        if ((s->rng & 3) != 0 || lvl >= SKIP_MAX_LEVEL)
            return lvl;
        lvl++;
    }
}

static int
cmp_doc_id(const msim_doc_t *d, const bson_iter_t *id)
{
    bson_iter_t it;
    if (!msim_doc_id(d, &it))
        return -1;
    return msim_cmp(&it, id);
}

/* find_prev fills update[] with the last node < id at each level. */
static skipnode_t *
find_ge(const msim_skip_t *s, const bson_iter_t *id, skipnode_t **update)
{
    skipnode_t *x = s->head;
    for (int l = s->level - 1; l >= 0; l--) {
        while (x->next[l] != NULL && cmp_doc_id(x->next[l]->doc, id) < 0)
            x = x->next[l];
        if (update != NULL)
            update[l] = x;
    }
    return x->next[0];
}

msim_coll_t *
msim_coll_new(const char *db, const char *name)
{
    msim_coll_t *c = msim_zalloc(sizeof *c);
    bson_t idx, key;
    c->db = strdup(db);
    c->name = strdup(name);
    c->ns = bson_strdup_printf("%s.%s", db, name);
    c->docs = calloc(1, sizeof *c->docs);
    c->docs->head = node_new(NULL, SKIP_MAX_LEVEL);
    c->docs->level = 1;
    c->docs->rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)(uintptr_t)c;
    for (int i = 0; i < 16; i++)
        c->uuid[i] = (uint8_t)(rand() & 0xff);
    c->uuid[6] = (uint8_t)((c->uuid[6] & 0x0f) | 0x40);
    c->uuid[8] = (uint8_t)((c->uuid[8] & 0x3f) | 0x80);
    bson_init(&c->indexes);
    BSON_APPEND_DOCUMENT_BEGIN(&c->indexes, "0", &idx);
    BSON_APPEND_INT32(&idx, "v", 2);
    BSON_APPEND_DOCUMENT_BEGIN(&idx, "key", &key);
    BSON_APPEND_INT32(&key, "_id", 1);
    bson_append_document_end(&idx, &key);
    BSON_APPEND_UTF8(&idx, "name", "_id_");
    bson_append_document_end(&c->indexes, &idx);
    bson_init(&c->options);
    c->created_ms = msim_now_ms();
    return c;
}

void
msim_coll_destroy(msim_coll_t *c)
{
    skipnode_t *n, *nx;
    if (c == NULL)
        return;
    for (n = c->docs->head; n != NULL; n = nx) {
        nx = n->next[0];
        msim_doc_unref(n->doc);
        free(n);
    }
    free(c->docs);
    free(c->db);
    free(c->name);
    bson_free(c->ns);
    bson_destroy(&c->indexes);
    bson_destroy(&c->options);
    if (c->shard_key != NULL)
        bson_destroy(c->shard_key);
    msim_owned_free(c->owned);
    free(c);
}

size_t
msim_coll_count(const msim_coll_t *c)
{
    return c->docs->count;
}

msim_doc_t *
msim_coll_find(const msim_coll_t *c, const bson_iter_t *id)
{
    skipnode_t *n = find_ge(c->docs, id, NULL);
    if (n != NULL && cmp_doc_id(n->doc, id) == 0)
        return n->doc;
    return NULL;
}

bool
msim_coll_insert(msim_coll_t *c, msim_doc_t *doc, mg_error_t *error)
{
    skipnode_t *update[SKIP_MAX_LEVEL], *n;
    bson_iter_t id;
    msim_skip_t *s = c->docs;
    int lvl;

    if (!msim_doc_id(doc, &id)) {
        msim_doc_unref(doc);
        return msim_fail(error, MSIM_E_INTERNAL, "document without _id");
    }
    /* Fast path: appending in increasing _id order (ObjectIds, counters). */
    n = find_ge(s, &id, update);
    if (n != NULL && cmp_doc_id(n->doc, &id) == 0) {
        char *j = msim_value_json(&id);
        msim_fail(error, MSIM_E_DUPLICATE_KEY,
                  "E11000 duplicate key error collection: %s index: _id_ dup key: { _id: %s }",
                  c->ns, j);
        bson_free(j);
        msim_doc_unref(doc);
        return false;
    }
    lvl = random_level(s);
    if (lvl > s->level) {
        for (int l = s->level; l < lvl; l++)
            update[l] = s->head;
        s->level = lvl;
    }
    n = node_new(doc, lvl);
    for (int l = 0; l < lvl; l++) {
        n->next[l] = update[l]->next[l];
        update[l]->next[l] = n;
    }
    s->count++;
    c->bytes += doc->len;
    return true;
}

msim_doc_t *
msim_coll_replace(msim_coll_t *c, msim_doc_t *doc)
{
    bson_iter_t id;
    skipnode_t *n;
    msim_doc_t *old;
    if (!msim_doc_id(doc, &id))
        return NULL;
    n = find_ge(c->docs, &id, NULL);
    if (n == NULL || cmp_doc_id(n->doc, &id) != 0)
        return NULL;
    old = n->doc;
    n->doc = doc;
    c->bytes = c->bytes - old->len + doc->len;
    return old;
}

msim_doc_t *
msim_coll_remove(msim_coll_t *c, const bson_iter_t *id)
{
    skipnode_t *update[SKIP_MAX_LEVEL], *n;
    msim_skip_t *s = c->docs;
    msim_doc_t *doc;
    n = find_ge(s, id, update);
    if (n == NULL || cmp_doc_id(n->doc, id) != 0)
        return NULL;
    for (int l = 0; l < s->level; l++) {
        if (update[l]->next[l] != n)
            break;
        update[l]->next[l] = n->next[l];
    }
    while (s->level > 1 && s->head->next[s->level - 1] == NULL)
        s->level--;
    doc = n->doc;
    free(n);
    s->count--;
    c->bytes -= doc->len;
    return doc;
}

void
msim_coll_iter_first(const msim_coll_t *c, msim_coll_iter_t *it)
{
    it->node = c->docs->head->next[0];
}

void
msim_coll_iter_seek(const msim_coll_t *c, const bson_iter_t *id, msim_coll_iter_t *it)
{
    it->node = find_ge(c->docs, id, NULL);
}

msim_doc_t *
msim_coll_iter_next(msim_coll_iter_t *it)
{
    skipnode_t *n = it->node;
    if (n == NULL)
        return NULL;
    it->node = n->next[0];
    return n->doc;
}

msim_doc_t *
msim_coll_last(const msim_coll_t *c)
{
    skipnode_t *x = c->docs->head;
    for (int l = c->docs->level - 1; l >= 0; l--)
        while (x->next[l] != NULL)
            x = x->next[l];
    return x == c->docs->head ? NULL : x->doc;
}

/* ------------------------------------------------------------------------
 * Catalog
 * ------------------------------------------------------------------------ */

msim_coll_t *
msim_catalog_get(const char *db, const char *coll)
{
    for (size_t i = 0; i < msim_srv->ncolls; i++) {
        msim_coll_t *c = msim_srv->colls[i];
        if (strcmp(c->db, db) == 0 && strcmp(c->name, coll) == 0)
            return c;
    }
    return NULL;
}

msim_coll_t *
msim_catalog_ensure(const char *db, const char *coll, bool *created)
{
    msim_coll_t *c = msim_catalog_get(db, coll);
    if (created != NULL)
        *created = false;
    if (c != NULL)
        return c;
    if (msim_srv->ncolls == msim_srv->capcolls) {
        msim_srv->capcolls = msim_srv->capcolls ? msim_srv->capcolls * 2 : 16;
        msim_srv->colls = realloc(msim_srv->colls, msim_srv->capcolls * sizeof(msim_coll_t *));
        if (msim_srv->colls == NULL)
            abort();
    }
    c = msim_coll_new(db, coll);
    msim_srv->colls[msim_srv->ncolls++] = c;
    if (created != NULL)
        *created = true;
    return c;
}

void
msim_catalog_drop(msim_coll_t *c)
{
    for (size_t i = 0; i < msim_srv->ncolls; i++) {
        if (msim_srv->colls[i] == c) {
            memmove(&msim_srv->colls[i], &msim_srv->colls[i + 1],
                    (msim_srv->ncolls - i - 1) * sizeof(msim_coll_t *));
            msim_srv->ncolls--;
            break;
        }
    }
    msim_coll_destroy(c);
}

bool
msim_valid_coll_name(const char *db, const char *coll, mg_error_t *error)
{
    if (db == NULL || *db == '\0' || strpbrk(db, "/\\. \"$") != NULL || strlen(db) >= 64)
        return msim_fail(error, MSIM_E_INVALID_NAMESPACE, "Invalid database name: '%s'",
                         db ? db : "");
    if (coll == NULL || *coll == '\0' || strchr(coll, '$') != NULL || coll[0] == '.' ||
        strlen(db) + strlen(coll) + 1 > 255)
        return msim_fail(error, MSIM_E_INVALID_NAMESPACE, "Invalid namespace specified '%s.%s'", db,
                         coll ? coll : "");
    return true;
}

/* ------------------------------------------------------------------------
 * Clock
 * ------------------------------------------------------------------------ */

int64_t
msim_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int
msim_ts_cmp(msim_ts_t a, msim_ts_t b)
{
    if (a.t != b.t)
        return a.t < b.t ? -1 : 1;
    return a.i < b.i ? -1 : a.i > b.i;
}

msim_ts_t
msim_clock_tick(void)
{
    msim_clock_t *c = msim_srv->clock;
    msim_ts_t r;
    uint32_t now = (uint32_t)(msim_now_ms() / 1000);
    pthread_mutex_lock(&c->mu);
    if (now > c->now.t) {
        c->now.t = now;
        c->now.i = 1;
    } else {
        c->now.i++;
    }
    r = c->now;
    pthread_mutex_unlock(&c->mu);
    return r;
}

msim_ts_t
msim_clock_now(void)
{
    /* the clock moves only when something is written to the oplog (as on a
     * replica set primary, where the no-op writer moves it when idle) */
    msim_clock_t *c = msim_srv->clock;
    msim_ts_t r;
    pthread_mutex_lock(&c->mu);
    r = c->now;
    pthread_mutex_unlock(&c->mu);
    return r;
}

msim_ts_t
msim_last_op(void)
{
    uint64_t v = atomic_load(&msim_srv->last_op);
    msim_ts_t t = {(uint32_t)(v >> 32), (uint32_t)v};
    return t;
}

/* ------------------------------------------------------------------------
 * Server state
 * ------------------------------------------------------------------------ */

void
msim_server_init(msim_server_t *s)
{
    memset(s, 0, sizeof *s);
    msim_srv = s;
    snprintf(s->bind, sizeof s->bind, "127.0.0.1");
    s->port = 27017;
    s->oplog_max_bytes = 512ll << 20;
    s->cursor_timeout_ms = 600000;
    s->noop_interval_secs = 10;
    s->txn_lifetime_ms = 60000;
    s->server_version = MSIM_VERSION_70;
    s->wait_cap_ms = -1;
    pthread_rwlock_init(&s->lock, NULL);
    pthread_mutex_init(&s->own_clock.mu, NULL);
    s->clock = &s->own_clock;
    s->shard_index = -1;
    snprintf(s->name, sizeof s->name, "mongosim");
    pthread_mutex_init(&s->oplog_mu, NULL);
    pthread_cond_init(&s->oplog_cv, NULL);
    pthread_mutex_init(&s->cursor_mu, NULL);
    pthread_mutex_init(&s->txn_mu, NULL);
    pthread_mutex_init(&s->fp_mu, NULL);
    pthread_mutex_init(&s->glock_mu, NULL);
    pthread_cond_init(&s->glock_cv, NULL);
    pthread_mutex_init(&s->block_mu, NULL);
    bson_init(&s->fp.error_labels);
    bson_init(&s->fp.write_concern_error);
    bson_init(&s->fp_getmore.error_labels);
    bson_init(&s->fp_getmore.write_concern_error);
    bson_oid_init(&s->process_id, NULL);
    bson_oid_init_from_string(&s->election_id, "7fffffff0000000000000001");
    s->start_ms = msim_now_ms();
    s->next_cursor_id = ((int64_t)(s->start_ms & 0xffffff) << 20) + 1;
    s->oplog_next_seq = 1;
    srand((unsigned)s->start_ms ^ (unsigned)getpid());
    /* the oplog of a new replica set starts with a no-op ("initiating set") */
    msim_oplog_append(msim_oplog_entry_new("noop", "", NULL));
    s->noop_last_seq = s->oplog_next_seq - 1;
    s->noop_last_ms = s->start_ms;
}
