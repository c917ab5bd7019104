/*
 * tests/mongosim/msim_roles.c - MongoDB's built-in roles as data: the action
 * names, the privileges each role grants (resource pattern + actions) and
 * the roles it includes. The lists follow the server's published built-in
 * role definitions (docs: "Built-In Roles"); the match types are those of
 * its resource patterns: a database, any normal namespace ({db: "",
 * collection: ""}), the cluster, a collection name in any database, an exact
 * namespace, any resource, any system.buckets namespace.
 */
#include "msim.h"

#include <string.h>

/* The action names, indexed by bit. */
static const char *const action_names[] = {
    "addShard",
    "allCollectionStats",
    "analyze",
    "analyzeShardKey",
    "appendOplogNote",
    "applicationMessage",
    "applyOps",
    "auditConfigure",
    "authSchemaUpgrade",
    "bypassDocumentValidation",
    "bypassWriteBlockingMode",
    "changeCustomData",
    "changePassword",
    "changeStream",
    "checkMetadataConsistency",
    "cleanupOrphaned",
    "cleanupStructuredEncryptionData",
    "clearJumboFlag",
    "collMod",
    "collStats",
    "compact",
    "compactStructuredEncryptionData",
    "configureQueryAnalyzer",
    "connPoolStats",
    "connPoolSync",
    "convertToCapped",
    "createCollection",
    "createIndex",
    "createRole",
    "createSearchIndexes",
    "createUser",
    "dbCheck",
    "dbHash",
    "dbStats",
    "dropCollection",
    "dropConnections",
    "dropDatabase",
    "dropIndex",
    "dropRole",
    "dropSearchIndex",
    "dropUser",
    "enableProfiler",
    "enableSharding",
    "exportCollection",
    "find",
    "flushRouterConfig",
    "forceUUID",
    "fsync",
    "getChangeStreamState",
    "getClusterParameter",
    "getCmdLineOpts",
    "getDatabaseVersion",
    "getDefaultRWConcern",
    "getLog",
    "getParameter",
    "getShardMap",
    "getShardVersion",
    "grantRole",
    "hostInfo",
    "importCollection",
    "indexStats",
    "inprog",
    "insert",
    "invalidateUserCache",
    "issueDirectShardOperations",
    "killAnyCursor",
    "killAnySession",
    "killCursors",
    "killop",
    "listCachedAndActiveUsers",
    "listCollections",
    "listDatabases",
    "listIndexes",
    "listSampledQueries",
    "listSearchIndexes",
    "listSessions",
    "listShards",
    "logRotate",
    "moveChunk",
    "netstat",
    "oidReset",
    "operationMetrics",
    "planCacheIndexFilter",
    "planCacheRead",
    "planCacheWrite",
    "reIndex",
    "refineCollectionShardKey",
    "remove",
    "removeShard",
    "renameCollectionSameDB",
    "replSetConfigure",
    "replSetGetConfig",
    "replSetGetStatus",
    "replSetResizeOplog",
    "replSetStateChange",
    "reshardCollection",
    "resync",
    "revokeRole",
    "rotateCertificates",
    "serverStatus",
    "setAuthenticationRestriction",
    "setChangeStreamState",
    "setClusterParameter",
    "setDefaultRWConcern",
    "setFeatureCompatibilityVersion",
    "setParameter",
    "setUserWriteBlockMode",
    "shardedDataDistribution",
    "shardingState",
    "shutdown",
    "splitChunk",
    "splitVector",
    "storageDetails",
    "top",
    "touch",
    "trafficRecord",
    "unlock",
    "update",
    "updateSearchIndex",
    "useUUID",
    "validate",
    "viewRole",
    "viewUser",
    NULL,
};

int
msim_action_count(void)
{
    return (int)(sizeof action_names / sizeof action_names[0]) - 1;
}

const char *
msim_action_name(int bit)
{
    return bit >= 0 && bit < msim_action_count() ? action_names[bit] : NULL;
}

int
msim_action_bit(const char *name)
{
    /* the table is sorted (byte order), so a binary search finds the bit */
    int lo = 0, hi = msim_action_count() - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, c = strcmp(name, action_names[mid]);
        if (c == 0)
            return mid;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return -1;
}

void
msim_actions_add(msim_actions_t *set, const char *name)
{
    int bit = msim_action_bit(name);
    if (bit >= 0)
        set->w[bit / 64] |= (uint64_t)1 << (bit % 64);
}

bool
msim_actions_has(const msim_actions_t *set, int bit)
{
    return bit >= 0 && (set->w[bit / 64] >> (bit % 64)) & 1;
}

/* ------------------------------------------------------------------------
 * Action lists shared by several roles (space separated)
 * ------------------------------------------------------------------------ */

#define READ_ACTIONS                                                                      \
    "changeStream collStats dbHash dbStats find killCursors listCollections listIndexes " \
    "listSearchIndexes planCacheRead "
#define READ_WRITE_ACTIONS                                                           \
    READ_ACTIONS "cleanupStructuredEncryptionData compactStructuredEncryptionData "  \
                 "convertToCapped createCollection createIndex createSearchIndexes " \
                 "dropCollection dropIndex dropSearchIndex insert remove "           \
                 "renameCollectionSameDB update updateSearchIndex "
#define USER_ADMIN_ACTIONS                                                               \
    "changeCustomData changePassword createUser createRole dropUser dropRole grantRole " \
    "revokeRole setAuthenticationRestriction viewUser viewRole "
#define DB_ADMIN_ACTIONS                                                                     \
    "analyze bypassDocumentValidation collMod collStats compact convertToCapped "            \
    "createCollection dbStats dropCollection dropDatabase dropIndex dropSearchIndex "        \
    "createIndex createSearchIndexes enableProfiler listCollections listIndexes "            \
    "listSearchIndexes updateSearchIndex planCacheIndexFilter planCacheRead planCacheWrite " \
    "reIndex renameCollectionSameDB storageDetails validate "
#define CLUSTER_MONITOR_CLUSTER_ACTIONS                                                   \
    "connPoolStats getCmdLineOpts getDefaultRWConcern getLog getParameter getShardMap "   \
    "hostInfo listDatabases listSampledQueries listSessions listShards netstat "          \
    "operationMetrics replSetGetConfig replSetGetStatus serverStatus top useUUID inprog " \
    "shardingState allCollectionStats shardedDataDistribution "
#define CLUSTER_MONITOR_DB_ACTIONS \
    "collStats dbStats getDatabaseVersion getShardVersion indexStats "
#define HOST_MANAGER_CLUSTER_ACTIONS                                                     \
    "applicationMessage auditConfigure connPoolSync dropConnections logRotate oidReset " \
    "setParameter shutdown touch unlock flushRouterConfig fsync invalidateUserCache "    \
    "killAnyCursor killAnySession killop replSetResizeOplog resync trafficRecord "       \
    "rotateCertificates "
#define CLUSTER_MANAGER_CLUSTER_ACTIONS                                                         \
    "appendOplogNote applicationMessage replSetConfigure replSetGetConfig replSetGetStatus "    \
    "replSetStateChange resync addShard removeShard listSessions listShards flushRouterConfig " \
    "cleanupOrphaned getDefaultRWConcern setDefaultRWConcern setFeatureCompatibilityVersion "   \
    "setClusterParameter getClusterParameter setChangeStreamState getChangeStreamState "        \
    "checkMetadataConsistency "
#define CLUSTER_MANAGER_DB_ACTIONS                                                    \
    "analyzeShardKey clearJumboFlag splitChunk moveChunk enableSharding splitVector " \
    "refineCollectionShardKey reshardCollection "
#define RESTORE_WRITE_ACTIONS                                                        \
    "bypassDocumentValidation collMod convertToCapped createCollection createIndex " \
    "createSearchIndexes dropCollection insert updateSearchIndex "

/* One privilege of a role: pattern, database (NULL: the role's database),
 * collection, actions. */
typedef struct {
    msim_rp_kind_t kind;
    const char *db;
    const char *coll;
    const char *actions;
} role_priv_t;

typedef struct {
    const char *name;
    bool admin_only;
    const char *includes[8]; /* "role" (same database) or "role@db" */
    role_priv_t privs[24];
} builtin_role_t;

static const builtin_role_t roles[] = {
    {"read",
     false,
     {NULL},
     {{MSIM_RP_DB, NULL, NULL, READ_ACTIONS},
      {MSIM_RP_EXACT, NULL, "system.js", READ_ACTIONS},
      {0}}},
    {"readWrite",
     false,
     {NULL},
     {{MSIM_RP_DB, NULL, NULL, READ_WRITE_ACTIONS},
      {MSIM_RP_EXACT, NULL, "system.js", READ_WRITE_ACTIONS},
      {0}}},
    {"userAdmin", false, {NULL}, {{MSIM_RP_DB, NULL, NULL, USER_ADMIN_ACTIONS}, {0}}},
    {"dbAdmin",
     false,
     {NULL},
     {{MSIM_RP_DB, NULL, NULL, DB_ADMIN_ACTIONS "configureQueryAnalyzer "},
      {MSIM_RP_EXACT, NULL, "system.profile",
       READ_ACTIONS "convertToCapped createCollection dropCollection "},
      {0}}},
    {"dbOwner", false, {"readWrite", "dbAdmin", "userAdmin", NULL}, {{0}}},
    {"enableSharding",
     false,
     {NULL},
     {{MSIM_RP_ANY_NORMAL, NULL, NULL,
       "analyzeShardKey enableSharding refineCollectionShardKey reshardCollection "},
      {0}}},
    {"readAnyDatabase",
     true,
     {NULL},
     {{MSIM_RP_ANY_NORMAL, NULL, NULL, READ_ACTIONS},
      {MSIM_RP_CLUSTER, NULL, NULL, "listDatabases "},
      {MSIM_RP_COLL, NULL, "system.js", READ_ACTIONS},
      {MSIM_RP_SYSTEM_BUCKETS, NULL, NULL, READ_ACTIONS},
      {0}}},
    {"readWriteAnyDatabase",
     true,
     {"readAnyDatabase", NULL},
     {{MSIM_RP_ANY_NORMAL, NULL, NULL, READ_WRITE_ACTIONS},
      {MSIM_RP_COLL, NULL, "system.js", READ_WRITE_ACTIONS},
      {MSIM_RP_SYSTEM_BUCKETS, NULL, NULL, READ_WRITE_ACTIONS},
      {0}}},
    {"userAdminAnyDatabase",
     true,
     {NULL},
     {{MSIM_RP_ANY_NORMAL, NULL, NULL, USER_ADMIN_ACTIONS "listCachedAndActiveUsers "},
      {MSIM_RP_DB, "local", NULL, USER_ADMIN_ACTIONS},
      {MSIM_RP_DB, "config", NULL, USER_ADMIN_ACTIONS},
      {MSIM_RP_CLUSTER, NULL, NULL,
       "listDatabases authSchemaUpgrade invalidateUserCache viewUser "},
      {MSIM_RP_EXACT, "admin", "system.users",
       READ_ACTIONS "createIndex createSearchIndexes dropIndex dropSearchIndex "},
      {MSIM_RP_EXACT, "admin", "system.roles",
       READ_ACTIONS "createIndex createSearchIndexes dropIndex dropSearchIndex "},
      {MSIM_RP_COLL, NULL, "system.users", READ_ACTIONS},
      {MSIM_RP_EXACT, "admin", "system.version", READ_ACTIONS},
      {MSIM_RP_EXACT, "admin", "system.backup_users", READ_ACTIONS},
      {0}}},
    {"dbAdminAnyDatabase",
     true,
     {NULL},
     {{MSIM_RP_CLUSTER, NULL, NULL, "listDatabases applyOps "},
      {MSIM_RP_ANY_NORMAL, NULL, NULL, DB_ADMIN_ACTIONS "configureQueryAnalyzer "},
      {MSIM_RP_COLL, NULL, "system.profile",
       READ_ACTIONS "convertToCapped createCollection dropCollection "},
      {MSIM_RP_SYSTEM_BUCKETS, NULL, NULL, DB_ADMIN_ACTIONS},
      {0}}},
    {"clusterMonitor",
     true,
     {"read@config", "read@local", NULL},
     {{MSIM_RP_CLUSTER, NULL, NULL, CLUSTER_MONITOR_CLUSTER_ACTIONS},
      {MSIM_RP_ANY_NORMAL, NULL, NULL, CLUSTER_MONITOR_DB_ACTIONS},
      {MSIM_RP_DB, "config", NULL, CLUSTER_MONITOR_DB_ACTIONS},
      {MSIM_RP_EXACT, "config", "system.sessions", CLUSTER_MONITOR_DB_ACTIONS},
      {MSIM_RP_DB, "local", NULL, CLUSTER_MONITOR_DB_ACTIONS},
      {MSIM_RP_EXACT, "local", "system.replset", "find "},
      {MSIM_RP_EXACT, "local", "replset.election", "find "},
      {MSIM_RP_EXACT, "local", "replset.minvalid", "find "},
      {MSIM_RP_COLL, NULL, "system.profile", "find "},
      {0}}},
    {"hostManager",
     true,
     {NULL},
     {{MSIM_RP_CLUSTER, NULL, NULL, HOST_MANAGER_CLUSTER_ACTIONS},
      {MSIM_RP_ANY_NORMAL, NULL, NULL, "killCursors "},
      {0}}},
    {"clusterManager",
     true,
     {"read@config", NULL},
     {{MSIM_RP_CLUSTER, NULL, NULL, CLUSTER_MANAGER_CLUSTER_ACTIONS},
      {MSIM_RP_ANY_NORMAL, NULL, NULL, CLUSTER_MANAGER_DB_ACTIONS "configureQueryAnalyzer "},
      {MSIM_RP_SYSTEM_BUCKETS, NULL, NULL, CLUSTER_MANAGER_DB_ACTIONS "configureQueryAnalyzer "},
      {MSIM_RP_DB, "config", NULL, CLUSTER_MANAGER_DB_ACTIONS "configureQueryAnalyzer "},
      {MSIM_RP_DB, "local", NULL, CLUSTER_MANAGER_DB_ACTIONS "configureQueryAnalyzer "},
      {MSIM_RP_EXACT, "local", "system.replset", READ_ACTIONS},
      {MSIM_RP_ANY, NULL, NULL, "dbCheck "},
      {MSIM_RP_EXACT, "local", "system.healthlog", READ_ACTIONS},
      {MSIM_RP_DB, "config", NULL, "insert update remove "},
      {MSIM_RP_DB, "local", NULL, "insert update remove "},
      {MSIM_RP_EXACT, "local", "replset.election", "insert update remove "},
      {MSIM_RP_EXACT, "local", "replset.minvalid", "insert update remove "},
      {0}}},
    {"clusterAdmin",
     true,
     {"clusterMonitor", "hostManager", "clusterManager", NULL},
     {{MSIM_RP_ANY_NORMAL, NULL, NULL, "dropDatabase "},
      {MSIM_RP_ANY, NULL, NULL, "importCollection exportCollection "},
      {0}}},
    {"__queryableBackup",
     true,
     {NULL},
     {{MSIM_RP_ANY, NULL, NULL, "collStats listCollections listIndexes listSearchIndexes "},
      {MSIM_RP_ANY_NORMAL, NULL, NULL, "find "},
      {MSIM_RP_SYSTEM_BUCKETS, NULL, NULL, "find "},
      {MSIM_RP_CLUSTER, NULL, NULL, "getParameter listDatabases useUUID "},
      {MSIM_RP_DB, "config", NULL, "find "},
      {MSIM_RP_DB, "local", NULL, "find "},
      {MSIM_RP_EXACT, "local", "replset.election", "find "},
      {MSIM_RP_EXACT, "local", "replset.minvalid", "find "},
      {MSIM_RP_COLL, NULL, "system.js", "find "},
      {MSIM_RP_COLL, NULL, "system.users", "find "},
      {MSIM_RP_COLL, NULL, "system.profile", "find "},
      {MSIM_RP_EXACT, "admin", "system.backup_users", "find "},
      {MSIM_RP_EXACT, "admin", "system.roles", "find "},
      {MSIM_RP_EXACT, "admin", "system.version", "find "},
      {MSIM_RP_EXACT, "config", "settings", "find "},
      {0}}},
    {"backup",
     true,
     {"__queryableBackup", NULL},
     {{MSIM_RP_CLUSTER, NULL, NULL, "appendOplogNote serverStatus setUserWriteBlockMode "},
      {MSIM_RP_EXACT, "config", "settings", "insert update "},
      {0}}},
    {"restore",
     true,
     {NULL},
     {{MSIM_RP_CLUSTER, NULL, NULL,
       "getParameter forceUUID useUUID bypassWriteBlockingMode setUserWriteBlockMode applyOps "},
      {MSIM_RP_DB, "local", NULL, RESTORE_WRITE_ACTIONS},
      {MSIM_RP_DB, "config", NULL, RESTORE_WRITE_ACTIONS},
      {MSIM_RP_SYSTEM_BUCKETS, NULL, NULL, RESTORE_WRITE_ACTIONS},
      {MSIM_RP_EXACT, "local", "system.replset", RESTORE_WRITE_ACTIONS},
      {MSIM_RP_EXACT, "local", "replset.election", RESTORE_WRITE_ACTIONS},
      {MSIM_RP_EXACT, "local", "replset.minvalid", RESTORE_WRITE_ACTIONS},
      {MSIM_RP_ANY, NULL, NULL, "listCollections "},
      {MSIM_RP_ANY_NORMAL, NULL, NULL, RESTORE_WRITE_ACTIONS USER_ADMIN_ACTIONS},
      {MSIM_RP_COLL, NULL, "system.js", RESTORE_WRITE_ACTIONS},
      {MSIM_RP_EXACT, "admin", "tempusers", "find "},
      {MSIM_RP_EXACT, "admin", "temproles", "find "},
      {MSIM_RP_EXACT, "admin", "system.backup_users", RESTORE_WRITE_ACTIONS},
      {MSIM_RP_EXACT, "admin", "system.version", RESTORE_WRITE_ACTIONS "find "},
      {MSIM_RP_COLL, NULL, "system.users", RESTORE_WRITE_ACTIONS "find update remove "},
      {MSIM_RP_EXACT, "admin", "system.roles", "createIndex "},
      {0}}},
    {"directShardOperations",
     true,
     {NULL},
     {{MSIM_RP_CLUSTER, NULL, NULL, "issueDirectShardOperations "}, {0}}},
    {"root",
     true,
     {"clusterAdmin", "userAdminAnyDatabase", "dbAdminAnyDatabase", "readWriteAnyDatabase",
      "backup", "restore", "directShardOperations", NULL},
     {{MSIM_RP_ANY, NULL, NULL, "validate "},
      {MSIM_RP_EXACT, "config", "system.preimages", "find remove "},
      {0}}},
};

static const builtin_role_t *
find_role(const char *name)
{
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(roles[i].name, name) == 0)
            return &roles[i];
    return NULL;
}

bool
msim_role_exists(const char *name, const char *db, mg_error_t *error)
{
    const builtin_role_t *r = find_role(name);
    if (r == NULL || name[0] == '_')
        return msim_fail(error, 31, "Could not find role: %s@%s", name, db);
    if (r->admin_only && strcmp(db, "admin") != 0)
        return msim_fail(error, 31, "Could not find role: %s@%s (it exists only on admin)", name,
                         db);
    return true;
}

/* add_priv merges one privilege into the set (same resource: actions united). */
static void
add_priv(msim_privset_t *set, msim_rp_kind_t kind, const char *db, const char *coll,
         const char *actions)
{
    msim_priv_t *p = NULL;
    char word[64];
    const char *s = actions;
    for (size_t i = 0; i < set->n; i++) {
        msim_priv_t *q = &set->privs[i];
        if (q->kind == kind && strcmp(q->db, db) == 0 && strcmp(q->coll, coll) == 0)
            p = q;
    }
    if (p == NULL) {
        if (set->n == MSIM_MAX_PRIVS)
            return; /* cannot happen: 16 built-in roles name fewer resources */
        p = &set->privs[set->n++];
        memset(p, 0, sizeof *p);
        p->kind = kind;
        snprintf(p->db, sizeof p->db, "%s", db);
        snprintf(p->coll, sizeof p->coll, "%s", coll);
    }
    while (*s != '\0') {
        size_t n = strcspn(s, " ");
        if (n > 0 && n < sizeof word) {
            memcpy(word, s, n);
            word[n] = '\0';
            msim_actions_add(&p->actions, word);
        }
        s += n;
        s += strspn(s, " ");
    }
}

/* grant_role adds the privileges of name@db and of the roles it includes. */
static void
grant_role(msim_privset_t *set, const char *name, const char *db, int depth)
{
    const builtin_role_t *r = find_role(name);
    if (r == NULL || depth > 4)
        return;
    for (size_t i = 0; r->privs[i].actions != NULL; i++) {
        const role_priv_t *p = &r->privs[i];
        const char *pdb = "", *pcoll = "";
        switch (p->kind) {
        case MSIM_RP_DB:
            pdb = p->db ? p->db : db;
            break;
        case MSIM_RP_EXACT:
            pdb = p->db ? p->db : db;
            pcoll = p->coll;
            break;
        case MSIM_RP_COLL:
            pcoll = p->coll;
            break;
        default:
            break;
        }
        add_priv(set, p->kind, pdb, pcoll, p->actions);
    }
    for (size_t i = 0; r->includes[i] != NULL; i++) {
        char sub[64];
        const char *at = strchr(r->includes[i], '@');
        if (at == NULL) {
            grant_role(set, r->includes[i], db, depth + 1);
        } else {
            snprintf(sub, sizeof sub, "%.*s", (int)(at - r->includes[i]), r->includes[i]);
            grant_role(set, sub, at + 1, depth + 1);
        }
    }
}

void
msim_privset_of_user(const msim_user_t *u, msim_privset_t *set)
{
    memset(set, 0, sizeof *set);
    for (size_t i = 0; i < u->nroles; i++)
        grant_role(set, u->roles[i].role, u->roles[i].db, 0);
}

/* ------------------------------------------------------------------------
 * Checks
 * ------------------------------------------------------------------------ */

static bool
is_system_coll(const char *coll)
{
    return strncmp(coll, "system.", 7) == 0;
}

/*
 * pattern_covers tells whether privilege pattern p is in the resource
 * search list of the target (db, coll): cluster when db is NULL, a
 * database when coll is NULL, the pattern "any normal resource" when db is
 * "" (deployment-wide change streams), else a namespace.
 */
static bool
pattern_covers(const msim_priv_t *p, const char *db, const char *coll)
{
    bool normal_db;
    if (p->kind == MSIM_RP_ANY)
        return true;
    if (db == NULL)
        return p->kind == MSIM_RP_CLUSTER;
    if (db[0] == '\0')
        return p->kind == MSIM_RP_ANY_NORMAL;
    normal_db = strcmp(db, "local") != 0 && strcmp(db, "config") != 0;
    if (coll == NULL)
        return (p->kind == MSIM_RP_ANY_NORMAL && normal_db) ||
               (p->kind == MSIM_RP_DB && strcmp(p->db, db) == 0);
    if (!is_system_coll(coll)) {
        if (p->kind == MSIM_RP_ANY_NORMAL && normal_db)
            return true;
        if (p->kind == MSIM_RP_DB && strcmp(p->db, db) == 0)
            return true;
    }
    if (p->kind == MSIM_RP_COLL && strcmp(p->coll, coll) == 0)
        return true;
    return p->kind == MSIM_RP_EXACT && strcmp(p->db, db) == 0 && strcmp(p->coll, coll) == 0;
}

bool
msim_privset_allows(const msim_privset_t *set, const char *db, const char *coll,
                    const char *actions)
{
    msim_actions_t have = {{0}}, need = {{0}};
    char word[64];
    const char *s = actions;
    if (set == NULL)
        return false;
    for (size_t i = 0; i < set->n; i++)
        if (pattern_covers(&set->privs[i], db, coll))
            for (int w = 0; w < MSIM_ACTION_WORDS; w++)
                have.w[w] |= set->privs[i].actions.w[w];
    while (*s != '\0') {
        size_t n = strcspn(s, " ");
        if (n > 0 && n < sizeof word) {
            memcpy(word, s, n);
            word[n] = '\0';
            msim_actions_add(&need, word);
        }
        s += n;
        s += strspn(s, " ");
    }
    for (int w = 0; w < MSIM_ACTION_WORDS; w++)
        if ((need.w[w] & have.w[w]) != need.w[w])
            return false;
    return true;
}

bool
msim_privset_any_on(const msim_privset_t *set, const char *db, const char *coll)
{
    if (set == NULL)
        return false;
    for (size_t i = 0; i < set->n; i++) {
        const msim_priv_t *p = &set->privs[i];
        if (p->kind == MSIM_RP_CLUSTER || p->kind == MSIM_RP_SYSTEM_BUCKETS)
            continue;
        if (coll == NULL && (p->kind == MSIM_RP_DB || p->kind == MSIM_RP_EXACT) &&
            strcmp(p->db, db) == 0)
            return true; /* a privilege on the database or one of its collections */
        if (pattern_covers(p, db, coll))
            return true;
    }
    return false;
}

void
msim_privset_append(const msim_privset_t *set, bson_t *arr)
{
    for (size_t i = 0; i < set->n; i++) {
        const msim_priv_t *p = &set->privs[i];
        bson_t doc, res, acts;
        char key[16];
        const char *k;
        uint32_t na = 0;
        bson_uint32_to_string((uint32_t)i, &k, key, sizeof key);
        bson_append_document_begin(arr, k, -1, &doc);
        bson_append_document_begin(&doc, "resource", -1, &res);
        switch (p->kind) {
        case MSIM_RP_ANY:
            BSON_APPEND_BOOL(&res, "anyResource", true);
            break;
        case MSIM_RP_CLUSTER:
            BSON_APPEND_BOOL(&res, "cluster", true);
            break;
        case MSIM_RP_SYSTEM_BUCKETS:
            BSON_APPEND_UTF8(&res, "db", "");
            BSON_APPEND_UTF8(&res, "system_buckets", "");
            break;
        default:
            BSON_APPEND_UTF8(&res, "db", p->db);
            BSON_APPEND_UTF8(&res, "collection", p->coll);
            break;
        }
        bson_append_document_end(&doc, &res);
        bson_append_array_begin(&doc, "actions", -1, &acts);
        for (int b = 0; b < msim_action_count(); b++) {
            if (!msim_actions_has(&p->actions, b))
                continue;
            bson_uint32_to_string(na++, &k, key, sizeof key);
            bson_append_utf8(&acts, k, -1, action_names[b], -1);
        }
        bson_append_array_end(&doc, &acts);
        bson_append_document_end(arr, &doc);
    }
}
