/*
 * tests/mongosim/msim_auth.c - SCRAM-SHA-256 (RFC 5802 / RFC 7677) as the
 * server side of saslStart / saslContinue, and the users given with --auth
 * (each with its built-in roles). Passwords are used as given (no SASLprep
 * mapping; ASCII passwords are unaffected).
 */
#include "msim.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>

#define SCRAM_ITERATIONS 15000

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void
b64_encode(const uint8_t *in, size_t len, char *out)
{
    size_t i, o = 0;
    for (i = 0; i + 2 < len; i += 3) {
        uint32_t v = ((uint32_t)in[i] << 16) | ((uint32_t)in[i + 1] << 8) | in[i + 2];
        out[o++] = b64chars[(v >> 18) & 63];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = b64chars[(v >> 6) & 63];
        out[o++] = b64chars[v & 63];
    }
    if (i < len) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)in[i + 1] << 8;
        out[o++] = b64chars[(v >> 18) & 63];
        out[o++] = b64chars[(v >> 12) & 63];
        out[o++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
}

/* b64_decode returns the decoded length or -1. */
static int
b64_decode(const char *in, uint8_t *out, size_t outsz)
{
    uint32_t v = 0;
    int bits = 0;
    size_t o = 0;
    for (; *in && *in != '='; in++) {
        const char *p = strchr(b64chars, *in);
        if (p == NULL || *in == '\0')
            return -1;
        v = (v << 6) | (uint32_t)(p - b64chars);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= outsz)
                return -1;
            out[o++] = (uint8_t)(v >> bits);
        }
    }
    return (int)o;
}

static void
hmac(const uint8_t *key, size_t keylen, const void *msg, size_t len, uint8_t out[32])
{
    unsigned int olen = 32;
    HMAC(EVP_sha256(), key, (int)keylen, msg, len, out, &olen);
}

/* derive computes the SCRAM-SHA-256 keys of u for password (fresh random salt). */
static bool
derive(msim_user_t *u, const char *password, mg_error_t *error)
{
    uint8_t salted[32], client_key[32];
    u->iterations = SCRAM_ITERATIONS;
    if (RAND_bytes(u->salt, sizeof u->salt) != 1)
        return msim_fail(error, MSIM_E_INTERNAL, "could not generate a SCRAM salt");
    if (PKCS5_PBKDF2_HMAC(password, (int)strlen(password), u->salt, sizeof u->salt, u->iterations,
                          EVP_sha256(), 32, salted) != 1)
        return msim_fail(error, MSIM_E_INTERNAL, "could not derive the SCRAM key");
    hmac(salted, 32, "Client Key", 10, client_key);
    SHA256(client_key, 32, u->stored_key);
    hmac(salted, 32, "Server Key", 10, u->server_key);
    OPENSSL_cleanse(salted, sizeof salted);
    OPENSSL_cleanse(client_key, sizeof client_key);
    return true;
}

/* role_name_known: name (up to n bytes) is a built-in role's name. */
static bool
role_name_known(const char *name, size_t n)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, name, n);
    buf[n] = '\0';
    return msim_role_exists(buf, "admin", NULL);
}

/*
 * parse_roles fills u's roles from "role[@db],role[@db]..." (a role without
 * @db is on the user's database). Returns 1 on success, 0 when an item does
 * not name a built-in role (the text then belongs to the password), -1 with
 * error when the list names roles but cannot be granted (an admin-only role
 * on another database, a bad database).
 */
static int
parse_roles(msim_user_t *u, const char *list, mg_error_t *error)
{
    const char *s = list;
    /* first pass: is every item a built-in role's name? */
    while (*s != '\0') {
        size_t n = strcspn(s, ","), rn;
        const char *at = memchr(s, '@', n);
        rn = at ? (size_t)(at - s) : n;
        if (!role_name_known(s, rn))
            return 0;
        s += n;
        if (*s == ',')
            s++;
    }
    s = list;
    u->nroles = 0;
    while (*s != '\0') {
        size_t n = strcspn(s, ","), rn;
        const char *at = memchr(s, '@', n);
        msim_role_ref_t *r;
        if (u->nroles == MSIM_MAX_USER_ROLES) {
            msim_fail(error, MSIM_E_BAD_VALUE, "could not parse roles \"%s\": too many", list);
            return -1;
        }
        r = &u->roles[u->nroles];
        rn = at ? (size_t)(at - s) : n;
        if (at && (s + n - at - 1 == 0 || (size_t)(s + n - at - 1) >= sizeof r->db)) {
            msim_fail(error, MSIM_E_BAD_VALUE, "could not parse roles \"%s\": bad database", list);
            return -1;
        }
        memcpy(r->role, s, rn);
        r->role[rn] = '\0';
        if (at)
            snprintf(r->db, sizeof r->db, "%.*s", (int)(s + n - at - 1), at + 1);
        else
            snprintf(r->db, sizeof r->db, "%s", u->db);
        if (!msim_role_exists(r->role, r->db, error))
            return -1;
        u->nroles++;
        s += n;
        if (*s == ',')
            s++;
    }
    if (u->nroles == 0) {
        msim_fail(error, MSIM_E_BAD_VALUE, "could not parse roles \"%s\"", list);
        return -1;
    }
    return 1;
}

bool
msim_user_add(const char *spec, mg_error_t *error)
{
    msim_server_t *srv = msim_srv;
    msim_user_t u;
    const char *colon = strchr(spec, ':'), *last, *at;
    char password[512];
    size_t ulen;
    int roles = 0;
    bool ok;

    memset(&u, 0, sizeof u);
    if (colon == NULL || colon == spec || colon[1] == '\0')
        return msim_fail(error, MSIM_E_BAD_VALUE,
                         "could not parse --auth \"%.40s...\": USER:PASSWORD[:ROLES] expected",
                         spec);
    ulen = (size_t)(colon - spec);
    at = memchr(spec, '@', ulen);
    if (at != NULL) {
        if (at == spec || (size_t)(colon - at - 1) == 0 || (size_t)(colon - at - 1) >= sizeof u.db)
            return msim_fail(error, MSIM_E_BAD_VALUE, "could not parse the --auth user");
        snprintf(u.db, sizeof u.db, "%.*s", (int)(colon - at - 1), at + 1);
        ulen = (size_t)(at - spec);
    } else {
        snprintf(u.db, sizeof u.db, "admin");
    }
    if (ulen >= sizeof u.name)
        return msim_fail(error, MSIM_E_BAD_VALUE, "could not parse --auth: user name too long");
    memcpy(u.name, spec, ulen);
    u.name[ulen] = '\0';
    snprintf(password, sizeof password, "%s", colon + 1);
    last = strrchr(password, ':');
    if (last != NULL && (roles = parse_roles(&u, last + 1, error)) < 0) {
        OPENSSL_cleanse(password, sizeof password);
        return false;
    }
    if (last != NULL && roles > 0) {
        password[last - password] = '\0';
    } else {
        /* no role list (or the last part is not one): the whole rest is the
         * password and the user is root, as before roles could be named */
        if (strcmp(u.db, "admin") != 0) {
            OPENSSL_cleanse(password, sizeof password);
            return msim_fail(error, MSIM_E_BAD_VALUE,
                             "could not add user \"%s@%s\": name its roles (root exists only "
                             "on admin)",
                             u.name, u.db);
        }
        snprintf(u.roles[0].role, sizeof u.roles[0].role, "root");
        snprintf(u.roles[0].db, sizeof u.roles[0].db, "admin");
        u.nroles = 1;
    }
    if (password[0] == '\0') {
        OPENSSL_cleanse(password, sizeof password);
        return msim_fail(error, MSIM_E_BAD_VALUE, "could not add user \"%s\": empty password",
                         u.name);
    }
    if (msim_user_find(u.name, u.db) != NULL) {
        OPENSSL_cleanse(password, sizeof password);
        return msim_fail(error, 51003, "could not add user \"%s@%s\": it already exists", u.name,
                         u.db);
    }
    ok = derive(&u, password, error);
    OPENSSL_cleanse(password, sizeof password);
    if (!ok || RAND_bytes(u.uuid, sizeof u.uuid) != 1)
        return ok ? msim_fail(error, MSIM_E_INTERNAL, "could not generate a user id") : false;
    u.uuid[6] = (uint8_t)((u.uuid[6] & 0x0f) | 0x40);
    u.uuid[8] = (uint8_t)((u.uuid[8] & 0x3f) | 0x80);
    msim_privset_of_user(&u, &u.privs);
    u.bypass_write_block = msim_privset_allows(&u.privs, NULL, NULL, "bypassWriteBlockingMode");
    {
        msim_user_t *nu = realloc(srv->users, (srv->nusers + 1) * sizeof *nu);
        if (nu == NULL)
            return msim_fail(error, MSIM_E_INTERNAL, "out of memory");
        srv->users = nu;
        srv->users[srv->nusers++] = u;
    }
    if (RAND_bytes(srv->decoy_salt, sizeof srv->decoy_salt) != 1)
        return msim_fail(error, MSIM_E_INTERNAL, "could not generate a SCRAM salt");
    srv->auth = true;
    return true;
}

const msim_user_t *
msim_user_find(const char *name, const char *db)
{
    for (size_t i = 0; i < msim_srv->nusers; i++)
        if (strcmp(msim_srv->users[i].name, name) == 0 && strcmp(msim_srv->users[i].db, db) == 0)
            return &msim_srv->users[i];
    return NULL;
}

/* saslname_decode undoes SCRAM's "=2C" / "=3D" escaping in place; false on a bad escape. */
static bool
saslname_decode(char *s)
{
    char *w = s;
    for (const char *r = s; *r != '\0'; r++) {
        if (*r == '=') {
            if (strncmp(r, "=2C", 3) == 0)
                *w++ = ',';
            else if (strncmp(r, "=3D", 3) == 0)
                *w++ = '=';
            else
                return false;
            r += 2;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    return true;
}

static bool
payload_arg(const bson_t *cmd, char *out, size_t outsz, mg_error_t *error)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, cmd, "payload"))
        return msim_fail(error, MSIM_E_BAD_VALUE, "payload is required");
    if (BSON_ITER_HOLDS_BINARY(&it)) {
        bson_subtype_t st;
        uint32_t len;
        const uint8_t *data;
        bson_iter_binary(&it, &st, &len, &data);
        if (len >= outsz)
            return msim_fail(error, MSIM_E_BAD_VALUE, "SASL payload too large");
        memcpy(out, data, len);
        out[len] = '\0';
        return true;
    }
    if (BSON_ITER_HOLDS_UTF8(&it)) {
        /* legacy clients send base64 text */
        int n = b64_decode(bson_iter_utf8(&it, NULL), (uint8_t *)out, outsz - 1);
        if (n < 0)
            return msim_fail(error, MSIM_E_BAD_VALUE, "invalid base64 SASL payload");
        out[n] = '\0';
        return true;
    }
    return msim_fail(error, MSIM_E_TYPE_MISMATCH, "payload must be binary");
}

static void
reply_payload(bson_t *reply, const char *payload, bool done)
{
    BSON_APPEND_INT32(reply, "conversationId", 1);
    BSON_APPEND_BOOL(reply, "done", done);
    bson_append_binary(reply, "payload", -1, BSON_SUBTYPE_BINARY, (const uint8_t *)payload,
                       (uint32_t)strlen(payload));
}

/* login makes the conversation's user the connection's user. */
static void
login(msim_conn_t *c)
{
    c->user = c->sasl_user;
    c->authenticated = true;
    MG_LOG(MG_LOG_INFO, "mongosim", "connection %lld authenticated as %s@%s", (long long)c->id,
           c->user->name, c->user->db);
}

bool
msim_cmd_sasl_start(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_conn_t *c = ctx->conn;
    bson_iter_t it;
    char msg[512], *bare, *user, *cnonce, *comma;
    uint8_t rnd[18];
    char snonce[32], salt[64];

    c->sasl_step = 0;
    if (!msim_srv->auth)
        return msim_fail(error, 334, "authentication is not enabled on this mongosim");
    if (!bson_iter_init_find(&it, ctx->cmd, "mechanism") || !BSON_ITER_HOLDS_UTF8(&it) ||
        strcmp(bson_iter_utf8(&it, NULL), "SCRAM-SHA-256") != 0)
        return msim_fail(
            error, 334, "Received authentication for mechanism %s which is not enabled",
            bson_iter_init_find(&it, ctx->cmd, "mechanism") && BSON_ITER_HOLDS_UTF8(&it)
                ? bson_iter_utf8(&it, NULL)
                : "?");
    if (!payload_arg(ctx->cmd, msg, sizeof msg, error))
        return false;
    c->sasl_skip_empty = false;
    if (bson_iter_init_find(&it, ctx->cmd, "options") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        bson_iter_t o;
        bson_iter_recurse(&it, &o);
        if (bson_iter_find(&o, "skipEmptyExchange"))
            c->sasl_skip_empty = msim_truthy(&o);
    }
    /* gs2 header "n,," (no channel binding, no authzid) */
    if (strncmp(msg, "n,", 2) != 0 || (bare = strchr(msg + 2, ',')) == NULL)
        return msim_fail(error, MSIM_E_BAD_VALUE, "invalid SCRAM client-first message");
    bare++;
    snprintf(c->sasl_client_first_bare, sizeof c->sasl_client_first_bare, "%s", bare);
    if (strncmp(bare, "n=", 2) != 0 || (comma = strstr(bare, ",r=")) == NULL)
        return msim_fail(error, MSIM_E_BAD_VALUE, "invalid SCRAM client-first message");
    user = bare + 2;
    *comma = '\0';
    cnonce = comma + 3;
    if ((comma = strchr(cnonce, ',')) != NULL)
        *comma = '\0';
    if (!saslname_decode(user))
        return msim_fail(error, MSIM_E_BAD_VALUE, "invalid SCRAM user name");
    c->sasl_user = msim_user_find(user, ctx->db);
    if (c->user != NULL && c->sasl_user != c->user)
        return msim_fail(error, 5626701,
                         "Each client connection may only be authenticated once. Previously "
                         "authenticated as: %s@%s",
                         c->user->name, c->user->db);
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return msim_fail(error, MSIM_E_INTERNAL, "could not generate a nonce");
    b64_encode(rnd, sizeof rnd, snonce);
    snprintf(c->sasl_nonce, sizeof c->sasl_nonce, "%s%s", cnonce, snonce);
    /* an unknown user gets a decoy salt: failure comes at the proof, as on mongod */
    b64_encode(c->sasl_user ? c->sasl_user->salt : msim_srv->decoy_salt,
               sizeof msim_srv->decoy_salt, salt);
    snprintf(c->sasl_server_first, sizeof c->sasl_server_first, "r=%s,s=%s,i=%d", c->sasl_nonce,
             salt, SCRAM_ITERATIONS);
    c->sasl_step = 1;
    reply_payload(ctx->reply, c->sasl_server_first, false);
    return true;
}

bool
msim_cmd_sasl_continue(msim_ctx_t *ctx, mg_error_t *error)
{
    msim_conn_t *c = ctx->conn;
    char msg[1024], authmsg[2048], without_proof[1024], sig64[64], final[80];
    const char *p, *r;
    uint8_t proof[64], client_sig[32], client_key[32], stored[32], server_sig[32];
    int plen;

    if (c->sasl_step == 2) {
        /* the empty exchange after the server-final message */
        c->sasl_step = 0;
        login(c);
        reply_payload(ctx->reply, "", true);
        return true;
    }
    if (c->sasl_step != 1)
        return msim_fail(error, MSIM_E_AUTH_FAILED, "No SASL session state found");
    c->sasl_step = 0;
    if (!payload_arg(ctx->cmd, msg, sizeof msg, error))
        return false;
    p = strstr(msg, ",p=");
    r = strstr(msg, "r=");
    if (p == NULL || r == NULL || (size_t)(p - msg) >= sizeof without_proof)
        return msim_fail(error, MSIM_E_BAD_VALUE, "invalid SCRAM client-final message");
    memcpy(without_proof, msg, (size_t)(p - msg));
    without_proof[p - msg] = '\0';
    if (strncmp(r + 2, c->sasl_nonce, strlen(c->sasl_nonce)) != 0)
        return msim_fail(error, MSIM_E_AUTH_FAILED, "Authentication failed.");
    plen = b64_decode(p + 3, proof, sizeof proof);
    snprintf(authmsg, sizeof authmsg, "%s,%s,%s", c->sasl_client_first_bare, c->sasl_server_first,
             without_proof);
    if (plen != 32 || c->sasl_user == NULL) {
        MG_LOG(MG_LOG_NOTICE, "mongosim", "authentication failed on connection %lld",
               (long long)c->id);
        return msim_fail(error, MSIM_E_AUTH_FAILED, "Authentication failed.");
    }
    hmac(c->sasl_user->stored_key, 32, authmsg, strlen(authmsg), client_sig);
    for (int i = 0; i < 32; i++)
        client_key[i] = proof[i] ^ client_sig[i];
    SHA256(client_key, 32, stored);
    if (CRYPTO_memcmp(stored, c->sasl_user->stored_key, 32) != 0) {
        MG_LOG(MG_LOG_NOTICE, "mongosim", "authentication failed on connection %lld",
               (long long)c->id);
        return msim_fail(error, MSIM_E_AUTH_FAILED, "Authentication failed.");
    }
    hmac(c->sasl_user->server_key, 32, authmsg, strlen(authmsg), server_sig);
    b64_encode(server_sig, 32, sig64);
    snprintf(final, sizeof final, "v=%s", sig64);
    if (c->sasl_skip_empty) {
        login(c);
        reply_payload(ctx->reply, final, true);
    } else {
        c->sasl_step = 2;
        reply_payload(ctx->reply, final, false);
    }
    return true;
}
