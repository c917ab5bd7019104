/*
 * tests/mongosim/msim_mnode.c - a mutable document tree, the update
 * engine's working copy of a document. Scalars keep their BSON value bytes
 * exactly as stored, so a value the update does not touch is written back
 * byte for byte (mongod's mutable BSON does the same).
 */
#include "msim.h"

#include <stdlib.h>
#include <string.h>

msim_mnode_t *
msim_mnode_new(const char *key, uint8_t type)
{
    msim_mnode_t *m = calloc(1, sizeof *m);
    if (m == NULL)
        abort();
    m->key = key ? strdup(key) : NULL;
    if (key != NULL && m->key == NULL)
        abort();
    m->type = type;
    return m;
}

bool
msim_mnode_is_container(const msim_mnode_t *m)
{
    return m->type == BSON_TYPE_DOCUMENT || m->type == BSON_TYPE_ARRAY;
}

void
msim_mnode_free(msim_mnode_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->n; i++)
        msim_mnode_free(m->kids[i]);
    free(m->kids);
    free(m->key);
    free(m->raw);
    free(m);
}

void
msim_mnode_set_raw(msim_mnode_t *m, uint8_t type, const uint8_t *raw, uint32_t len)
{
    for (size_t i = 0; i < m->n; i++)
        msim_mnode_free(m->kids[i]);
    m->n = 0;
    free(m->raw);
    m->raw = NULL;
    m->rawlen = 0;
    m->type = type;
    if (len > 0) {
        m->raw = malloc(len);
        if (m->raw == NULL)
            abort();
        memcpy(m->raw, raw, len);
        m->rawlen = len;
    }
}

void
msim_mnode_set_value(msim_mnode_t *m, const bson_value_t *v)
{
    /* only for values libbson encodes losslessly (numbers, dates, timestamps,
     * booleans, null): the bytes come from bson_append_value */
    bson_t tmp = BSON_INITIALIZER;
    bson_iter_t it;
    bson_append_value(&tmp, "v", 1, v);
    if (bson_iter_init_find(&it, &tmp, "v"))
        msim_mnode_set_raw(m, (uint8_t)bson_iter_type(&it), it.raw + it.d1, it.next_off - it.d1);
    bson_destroy(&tmp);
}

void
msim_mnode_insert(msim_mnode_t *p, size_t at, msim_mnode_t *kid)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 8;
        p->kids = realloc(p->kids, p->cap * sizeof *p->kids);
        if (p->kids == NULL)
            abort();
    }
    memmove(&p->kids[at + 1], &p->kids[at], (p->n - at) * sizeof *p->kids);
    p->kids[at] = kid;
    p->n++;
}

void
msim_mnode_append(msim_mnode_t *p, msim_mnode_t *kid)
{
    msim_mnode_insert(p, p->n, kid);
}

msim_mnode_t *
msim_mnode_detach(msim_mnode_t *p, size_t at)
{
    msim_mnode_t *kid = p->kids[at];
    memmove(&p->kids[at], &p->kids[at + 1], (p->n - at - 1) * sizeof *p->kids);
    p->n--;
    return kid;
}

msim_mnode_t *
msim_mnode_from_iter(const char *key, const bson_iter_t *it)
{
    bson_type_t t = bson_iter_type(it);
    msim_mnode_t *m = msim_mnode_new(key, (uint8_t)t);
    if (t == BSON_TYPE_DOCUMENT || t == BSON_TYPE_ARRAY) {
        bson_iter_t c;
        if (bson_iter_recurse(it, &c))
            while (bson_iter_next(&c))
                msim_mnode_append(
                    m, msim_mnode_from_iter(t == BSON_TYPE_ARRAY ? NULL : bson_iter_key(&c), &c));
    } else {
        msim_mnode_set_raw(m, (uint8_t)t, it->raw + it->d1, it->next_off - it->d1);
    }
    return m;
}

msim_mnode_t *
msim_mnode_from_bson(const bson_t *doc)
{
    msim_mnode_t *m = msim_mnode_new(NULL, BSON_TYPE_DOCUMENT);
    bson_iter_t c;
    if (doc != NULL && bson_iter_init(&c, doc))
        while (bson_iter_next(&c))
            msim_mnode_append(m, msim_mnode_from_iter(bson_iter_key(&c), &c));
    return m;
}

msim_mnode_t *
msim_mnode_clone(const msim_mnode_t *m, const char *key)
{
    msim_mnode_t *c = msim_mnode_new(key, m->type);
    msim_mnode_set_raw(c, m->type, m->raw, m->rawlen);
    for (size_t i = 0; i < m->n; i++)
        msim_mnode_append(c, msim_mnode_clone(m->kids[i], m->kids[i]->key));
    return c;
}

void
msim_mnode_append_to(const msim_mnode_t *m, bson_t *out, const char *key)
{
    if (m->type == BSON_TYPE_DOCUMENT || m->type == BSON_TYPE_ARRAY) {
        bson_t sub;
        if (m->type == BSON_TYPE_DOCUMENT)
            bson_append_document_begin(out, key, -1, &sub);
        else
            bson_append_array_begin(out, key, -1, &sub);
        msim_mnode_to_bson(m, &sub);
        if (m->type == BSON_TYPE_DOCUMENT)
            bson_append_document_end(out, &sub);
        else
            bson_append_array_end(out, &sub);
    } else {
        msim_append_raw(out, key, -1, m->type, m->raw, m->rawlen);
    }
}

void
msim_mnode_to_bson(const msim_mnode_t *m, bson_t *out)
{
    for (size_t i = 0; i < m->n; i++) {
        char idx[16];
        const char *key = m->kids[i]->key;
        if (m->type == BSON_TYPE_ARRAY)
            bson_uint32_to_string((uint32_t)i, &key, idx, sizeof idx);
        msim_mnode_append_to(m->kids[i], out, key);
    }
}

void
msim_mnode_value(const msim_mnode_t *m, bson_t *tmp, bson_iter_t *v)
{
    bson_init(tmp);
    msim_mnode_append_to(m, tmp, "v");
    bson_iter_init_find(v, tmp, "v");
}

bool
msim_mnode_index(const char *s, size_t *out)
{
    /* a decimal array index without sign or leading zeros (mongod's
     * parseUnsignedBase10Integer) */
    size_t v = 0;
    if (s[0] == '\0' || (s[0] == '0' && s[1] != '\0'))
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > (SIZE_MAX - 9) / 10)
            return false;
        v = v * 10 + (size_t)(*p - '0');
    }
    *out = v;
    return true;
}

msim_mnode_t *
msim_mnode_child(const msim_mnode_t *m, const char *key, size_t *pos)
{
    if (m->type == BSON_TYPE_ARRAY) {
        size_t i;
        if (!msim_mnode_index(key, &i) || i >= m->n)
            return NULL;
        if (pos)
            *pos = i;
        return m->kids[i];
    }
    if (m->type != BSON_TYPE_DOCUMENT)
        return NULL;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->kids[i]->key, key) == 0) {
            if (pos)
                *pos = i;
            return m->kids[i];
        }
    return NULL;
}

bool
msim_mnode_binary_equal(const msim_mnode_t *a, const msim_mnode_t *b)
{
    if (a->type != b->type || a->n != b->n || a->rawlen != b->rawlen)
        return false;
    if (a->rawlen > 0 && memcmp(a->raw, b->raw, a->rawlen) != 0)
        return false;
    for (size_t i = 0; i < a->n; i++) {
        if (a->type == BSON_TYPE_DOCUMENT && strcmp(a->kids[i]->key, b->kids[i]->key) != 0)
            return false;
        if (!msim_mnode_binary_equal(a->kids[i], b->kids[i]))
            return false;
    }
    return true;
}

int
msim_mnode_cmp_iter(const msim_mnode_t *m, const bson_iter_t *v)
{
    bson_t tmp;
    bson_iter_t mv;
    int c;
    msim_mnode_value(m, &tmp, &mv);
    c = msim_cmp(&mv, v);
    bson_destroy(&tmp);
    return c;
}

int
msim_mnode_cmp(const msim_mnode_t *a, const msim_mnode_t *b)
{
    bson_t tb;
    bson_iter_t vb;
    int c;
    msim_mnode_value(b, &tb, &vb);
    c = msim_mnode_cmp_iter(a, &vb);
    bson_destroy(&tb);
    return c;
}
