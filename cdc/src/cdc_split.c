/*
 * cdc/src/cdc_split.c - change events that $changeStreamSplitLargeEvent
 * cut into fragments (MongoDB 7.0 and 6.0.9+): each fragment carries its own
 * resume token, `splitEvent: {fragment, of}` and some of the event's
 * top-level fields. They are put back together into one event whose `_id`
 * is the last fragment's token (the position after the whole event).
 *
 * A stream may resume in the middle of an event: libmongoc's own resume
 * uses the last fragment's token, and the server then sends the next
 * fragment, which continues the event; the follower's own reopen goes back
 * to the token before the event, and the server sends fragment 1 again,
 * which starts it over. Any other order is an error (the caller reopens
 * from before the event).
 */
#include "cdc_internal.h"

#include <string.h>

/* an event is at most a few 16 MB documents (full document, images, update description) */
#define SPLIT_MAX_BYTES (256u * 1024 * 1024)

void
mg_cdc__split_init(mg_cdc__split_t *s)
{
    memset(s, 0, sizeof(*s));
    bson_init(&s->rest);
    bson_init(&s->merged);
}

void
mg_cdc__split_reset(mg_cdc__split_t *s)
{
    bson_reinit(&s->rest);
    s->next = 0;
    s->of = 0;
}

void
mg_cdc__split_cleanup(mg_cdc__split_t *s)
{
    bson_destroy(&s->rest);
    bson_destroy(&s->merged);
}

bool
mg_cdc__split_of(const bson_t *raw, int32_t *fragment, int32_t *of)
{
    bson_iter_t it, se;

    if (!bson_iter_init_find(&it, raw, "splitEvent") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &se))
        return false;
    *fragment = *of = 0;
    while (bson_iter_next(&se)) {
        if (strcmp(bson_iter_key(&se), "fragment") == 0 && BSON_ITER_HOLDS_NUMBER(&se))
            *fragment = (int32_t)bson_iter_as_int64(&se);
        else if (strcmp(bson_iter_key(&se), "of") == 0 && BSON_ITER_HOLDS_NUMBER(&se))
            *of = (int32_t)bson_iter_as_int64(&se);
    }
    return true;
}

/* add_fields appends raw's fields but _id and splitEvent to s->rest. */
static bool
add_fields(mg_cdc__split_t *s, const bson_t *raw, mg_error_t *error)
{
    bson_iter_t it;

    if (s->rest.len + raw->len > SPLIT_MAX_BYTES)
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                            "a split change event is over %u MB put together",
                            SPLIT_MAX_BYTES >> 20);
    if (!bson_iter_init(&it, raw))
        return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                            "malformed change event fragment: not a valid BSON document");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "_id") == 0 || strcmp(k, "splitEvent") == 0)
            continue;
        if (!bson_append_iter(&s->rest, k, -1, &it))
            return mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_LIMIT,
                                "could not put a split change event together (field \"%s\")", k);
    }
    return true;
}

int
mg_cdc__split_add(mg_cdc__split_t *s, const bson_t *raw, const bson_t **event, mg_error_t *error)
{
    int32_t fragment, of;
    bson_iter_t id;

    if (!mg_cdc__split_of(raw, &fragment, &of) || fragment < 1 || of < fragment) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                     "malformed change event fragment: splitEvent {fragment, of} is missing or "
                     "out of range");
        return -1;
    }
    if (fragment == 1) {
        mg_cdc__split_reset(s); /* a new event, or the same one read again from before it */
        s->of = of;
    } else if (fragment != s->next || of != s->of) {
        mg_error_set(error, MG_ERROR_DOMAIN_MONGO, 0,
                     "change event fragment %d of %d arrived after fragment %d of %d: part of "
                     "an event is missing; reading it again from before it",
                     fragment, of, s->next - 1, s->of);
        mg_cdc__split_reset(s);
        return -1;
    }
    if (!add_fields(s, raw, error)) {
        mg_cdc__split_reset(s);
        return -1;
    }
    s->next = fragment + 1;
    if (fragment < of)
        return 0;
    /* whole: the last fragment's token, then every other field */
    bson_reinit(&s->merged);
    if (!bson_iter_init_find(&id, raw, "_id") || !bson_append_iter(&s->merged, "_id", 3, &id) ||
        !bson_concat(&s->merged, &s->rest)) {
        mg_error_set(error, MG_ERROR_DOMAIN_CORE, MG_ERROR_CODE_PARSE,
                     "malformed change event fragment: no resume token (_id)");
        mg_cdc__split_reset(s);
        return -1;
    }
    mg_cdc__split_reset(s);
    *event = &s->merged;
    return 1;
}
