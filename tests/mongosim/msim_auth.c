/*
 * tests/mongosim/msim_auth.c - SCRAM-SHA-256 (RFC 5802 / RFC 7677) as the
 * server side of saslStart / saslContinue, for the single user given with
 * --auth USER:PASSWORD. Passwords are used as given (no SASLprep mapping;
 * ASCII passwords are unaffected).
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

bool
msim_auth_init(mg_error_t *error)
{
    uint8_t salted[32], client_key[32];
    msim_srv->scram_iterations = SCRAM_ITERATIONS;
    if (RAND_bytes(msim_srv->scram_salt, sizeof msim_srv->scram_salt) != 1)
        return msim_fail(error, MSIM_E_INTERNAL, "could not generate a SCRAM salt");
    if (PKCS5_PBKDF2_HMAC(msim_srv->auth_password, (int)strlen(msim_srv->auth_password),
                          msim_srv->scram_salt, sizeof msim_srv->scram_salt,
                          msim_srv->scram_iterations, EVP_sha256(), 32, salted) != 1)
        return msim_fail(error, MSIM_E_INTERNAL, "could not derive the SCRAM key");
    hmac(salted, 32, "Client Key", 10, client_key);
    SHA256(client_key, 32, msim_srv->scram_stored_key);
    hmac(salted, 32, "Server Key", 10, msim_srv->scram_server_key);
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
    c->sasl_user_ok = strcmp(user, msim_srv->auth_user) == 0;
    if (RAND_bytes(rnd, sizeof rnd) != 1)
        return msim_fail(error, MSIM_E_INTERNAL, "could not generate a nonce");
    b64_encode(rnd, sizeof rnd, snonce);
    snprintf(c->sasl_nonce, sizeof c->sasl_nonce, "%s%s", cnonce, snonce);
    b64_encode(msim_srv->scram_salt, sizeof msim_srv->scram_salt, salt);
    snprintf(c->sasl_server_first, sizeof c->sasl_server_first, "r=%s,s=%s,i=%d", c->sasl_nonce,
             salt, msim_srv->scram_iterations);
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
        c->authenticated = true;
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
    if (plen != 32 || !c->sasl_user_ok) {
        MG_LOG(MG_LOG_NOTICE, "mongosim", "authentication failed on connection %lld",
               (long long)c->id);
        return msim_fail(error, MSIM_E_AUTH_FAILED, "Authentication failed.");
    }
    hmac(msim_srv->scram_stored_key, 32, authmsg, strlen(authmsg), client_sig);
    for (int i = 0; i < 32; i++)
        client_key[i] = proof[i] ^ client_sig[i];
    SHA256(client_key, 32, stored);
    if (CRYPTO_memcmp(stored, msim_srv->scram_stored_key, 32) != 0) {
        MG_LOG(MG_LOG_NOTICE, "mongosim", "authentication failed on connection %lld",
               (long long)c->id);
        return msim_fail(error, MSIM_E_AUTH_FAILED, "Authentication failed.");
    }
    hmac(msim_srv->scram_server_key, 32, authmsg, strlen(authmsg), server_sig);
    b64_encode(server_sig, 32, sig64);
    snprintf(final, sizeof final, "v=%s", sig64);
    if (c->sasl_skip_empty) {
        c->authenticated = true;
        reply_payload(ctx->reply, final, true);
    } else {
        c->sasl_step = 2;
        reply_payload(ctx->reply, final, false);
    }
    return true;
}
