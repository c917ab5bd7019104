/*
 * ha/src/ha_peers.c - the daemon's UDP plane: WAKEUP (run the loop now),
 * HEARTBEAT (every loop; flagged failsafe by a primary that lost etcd) and
 * ACK (a peer's promise not to take the leader key for ttl), HMAC-signed
 * (ha_udp.c). Datagrams only make nodes act sooner or vouch for a primary;
 * etcd stays the authority for who leads.
 */
#include "ha_daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int
mg_ha__udp_open(const mg_ha_config_t *c, mg_error_t *error)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    struct sockaddr_in sa;

    if (fd < 0)
        return mg_error_set_errno(error, errno, "could not create a UDP socket"), -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)c->udp_port);
    if (inet_pton(AF_INET, c->address, &sa.sin_addr) != 1 ||
        bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;

        close(fd);
        return mg_error_set_errno(error, e, "could not bind UDP port %s:%lld", c->address,
                                  (long long)c->udp_port),
               -1;
    }
    return fd;
}

static int64_t
next_seq(mg_ha_daemon_t *d)
{
    int64_t now = mg_ha__wall_ms() * 1000; /* survives restarts: receivers drop older ones */

    d->hb_seq = now > d->hb_seq ? now : d->hb_seq + 1;
    return d->hb_seq;
}

static void
send_to(mg_ha_daemon_t *d, const char *name, const char *host, int64_t udp_port, char type,
        int64_t seq, bool failsafe)
{
    struct sockaddr_in sa;
    mg_ha_msg_t m;
    char buf[512];
    size_t len;

    if (d->udp_fd < 0 || udp_port <= 0 || udp_port > 65535 || strcmp(name, d->conf->name) == 0)
        return;
    memset(&m, 0, sizeof(m));
    m.type = type;
    snprintf(m.cluster, sizeof(m.cluster), "%s", d->conf->cluster);
    snprintf(m.from, sizeof(m.from), "%s", d->conf->name);
    snprintf(m.to, sizeof(m.to), "%s", name);
    m.seq = seq;
    m.wall_ms = mg_ha__wall_ms();
    m.failsafe = failsafe;
    len = mg_ha__msg_encode(&m, d->conf->cluster_secret, buf, sizeof(buf));
    if (len == 0)
        return;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)udp_port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
        return;
    (void)sendto(d->udp_fd, buf, len, MSG_DONTWAIT, (struct sockaddr *)&sa, sizeof(sa));
}

static void
send_msg(mg_ha_daemon_t *d, const mg_ha_node_t *n, char type, int64_t seq, bool failsafe)
{
    send_to(d, n->name, n->host, n->udp_port, type, seq, failsafe);
}

void
mg_ha__wake_node(mg_ha_daemon_t *d, const mg_ha_node_t *n)
{
    send_msg(d, n, MG_HA_MSG_WAKEUP, next_seq(d), false);
}

/* mg_ha__wake_all asks every other node to run its loop now (a status change). */
void
mg_ha__wake_all(mg_ha_daemon_t *d)
{
    for (size_t i = 0; i < d->view.nnodes; i++)
        mg_ha__wake_node(d, &d->view.nodes[i]);
}

static mg_ha_peer_t *
peer_of(mg_ha_daemon_t *d, const char *name)
{
    for (size_t i = 0; i < d->npeers; i++)
        if (strcmp(d->peers[i].name, name) == 0)
            return &d->peers[i];
    if (d->npeers >= MG_HA_MAX_NODES)
        return NULL;
    memset(&d->peers[d->npeers], 0, sizeof(mg_ha_peer_t));
    snprintf(d->peers[d->npeers].name, MG_HA_NAME_SIZE, "%s", name);
    return &d->peers[d->npeers++];
}

/*
 * failsafe_set lists the nodes whose promise a primary without etcd needs:
 * the status's failsafe set (members) when it is tracked, else the nodes of
 * the last view. Returns how many names it wrote into out.
 */
static size_t
failsafe_set(const mg_ha_daemon_t *d, char out[][MG_HA_NAME_SIZE])
{
    size_t n = 0;

    if (d->view.status.nmembers > 0) {
        for (size_t i = 0; i < d->view.status.nmembers; i++)
            snprintf(out[n++], MG_HA_NAME_SIZE, "%s", d->view.status.members[i]);
        return n;
    }
    for (size_t i = 0; i < d->view.nnodes && n < MG_HA_MAX_NODES; i++)
        snprintf(out[n++], MG_HA_NAME_SIZE, "%s", d->view.nodes[i].name);
    return n;
}

void
mg_ha__peers_learn(mg_ha_daemon_t *d)
{
    int64_t now = mg_ha__now_ms();

    for (size_t i = 0; i < d->view.nnodes; i++) {
        mg_ha_node_t *n = &d->view.nodes[i];
        mg_ha_peer_t *p = peer_of(d, n->name);

        if (p == NULL) {
            n->seen_ms = -1;
            continue;
        }
        /* freshness as this node sees it: when the report last changed (finding 13) */
        if (n->mod_revision != p->seen_revision) {
            p->seen_changed_ms = p->seen_revision == 0 ? -1 : now;
            p->seen_revision = n->mod_revision;
        }
        n->seen_ms = p->seen_changed_ms;
        if (strcmp(n->name, d->conf->name) == 0 || n->udp_port <= 0)
            continue;
        snprintf(p->host, sizeof(p->host), "%s", n->host);
        p->udp_port = n->udp_port;
    }
}

/*
 * mg_ha__send_heartbeats sends HEARTBEAT to every node of the last view and
 * of the failsafe set (at the addresses last seen). A primary that could not
 * reach etcd this loop flags them failsafe: an ACK is the peer's promise not
 * to take the leader key for ttl after it got it.
 */
void
mg_ha__send_heartbeats(mg_ha_daemon_t *d, bool failsafe)
{
    int64_t seq = next_seq(d);
    char set[MG_HA_MAX_NODES][MG_HA_NAME_SIZE];
    size_t nset = failsafe_set(d, set);

    if (failsafe) {
        d->hb_sent_seq[seq % HB_RING] = seq;
        d->hb_sent_ms[seq % HB_RING] = mg_ha__now_ms();
    }
    for (size_t i = 0; i < d->view.nnodes; i++)
        send_msg(d, &d->view.nodes[i], MG_HA_MSG_HEARTBEAT, seq, failsafe);
    for (size_t i = 0; i < nset; i++) {
        const mg_ha_peer_t *p = peer_of(d, set[i]);

        if (p != NULL && mg_ha_view_find_node(&d->view, set[i]) == NULL && p->udp_port > 0)
            send_to(d, p->name, p->host, p->udp_port, MG_HA_MSG_HEARTBEAT, seq, failsafe);
    }
}

int64_t
mg_ha__grant_until(char set[][MG_HA_NAME_SIZE], size_t nset, const char *self,
                   const mg_ha_peer_t *peers, size_t npeers, int64_t ttl_ms, int64_t margin_ms)
{
    int64_t oldest = INT64_MAX;
    size_t others = 0;

    for (size_t i = 0; i < nset; i++) {
        int64_t acked = 0;

        if (strcmp(set[i], self) == 0)
            continue;
        others++;
        for (size_t j = 0; j < npeers; j++)
            if (strcmp(peers[j].name, set[i]) == 0)
                acked = peers[j].acked_sent_ms;
        if (acked == 0)
            return 0;
        if (acked < oldest)
            oldest = acked;
    }
    if (others == 0)
        return 0; /* a lone node has nobody to vouch that no one else promoted */
    return oldest + ttl_ms - margin_ms;
}

/*
 * mg_ha__failsafe_grant returns until when the peers allow this primary to
 * keep writing without etcd: every node of the failsafe set must have acked
 * a failsafe heartbeat; the grant runs from the oldest such send time.
 */
int64_t
mg_ha__failsafe_grant(mg_ha_daemon_t *d)
{
    char set[MG_HA_MAX_NODES][MG_HA_NAME_SIZE];
    size_t nset = failsafe_set(d, set);

    if (d->conf->cluster_secret == NULL || d->conf->cluster_secret[0] == '\0')
        return 0;
    return mg_ha__grant_until(set, nset, d->conf->name, d->peers, d->npeers, d->conf->ttl_ms,
                              d->conf->retry_ms);
}

bool
mg_ha__promise_ok(mg_ha_state_t state, const mg_ha_view_t *view, const char *self,
                  const char *sender)
{
    if (state == MG_HA_STATE_PRIMARY || strcmp(view->leader, self) == 0)
        return false; /* we write, or are about to: no promise not to */
    if (view->leader[0] != '\0')
        return strcmp(view->leader, sender) == 0;
    return view->status.primary[0] == '\0' || strcmp(view->status.primary, sender) == 0;
}

/* mg_ha__handle_datagram checks and acts on one datagram; true when it asks for a loop now. */
bool
mg_ha__handle_datagram(mg_ha_daemon_t *d, const char *buf, size_t len)
{
    mg_ha_msg_t m;
    mg_ha_peer_t *p;
    int64_t now = mg_ha__now_ms(), wall = mg_ha__wall_ms();

    if (mg_ha__msg_receive(buf, len, d->conf->cluster_secret, d->conf->cluster, d->conf->name, wall,
                           d->conf->ttl_ms, &m) != MG_HA_MSG_ACCEPTED)
        return false;
    p = peer_of(d, m.from);
    if (p == NULL)
        return false;
    if (m.type == MG_HA_MSG_ACK) {
        /* an ack echoes our sequence: no replay check against the peer's own */
        const int64_t slot = m.seq % HB_RING;

        if (d->hb_sent_seq[slot] == m.seq && d->hb_sent_ms[slot] > p->acked_sent_ms)
            p->acked_sent_ms = d->hb_sent_ms[slot];
        p->heard_ms = now;
        return false;
    }
    if (!mg_ha__msg_seq_accept(&m, &p->last_seq))
        return false; /* replayed or reordered */
    p->heard_ms = now;
    if (m.type == MG_HA_MSG_WAKEUP)
        return true;
    if (m.failsafe && mg_ha__promise_ok(d->state, &d->view, d->conf->name, m.from)) {
        /*
         * promise: no promotion for ttl from now (decide sees
         * failsafe_primary_heard): the longer of our ttl and the sender's, so
         * a rolling change of ttl cannot leave a promise shorter than the
         * grant the sender counts on (issue 16, finding 17)
         */
        const mg_ha_node_t *sender = mg_ha_view_find_node(&d->view, m.from);
        int64_t ttl =
            sender != NULL && sender->ttl_ms > d->conf->ttl_ms ? sender->ttl_ms : d->conf->ttl_ms;

        /* an earlier, longer promise still in force is kept */
        if (d->failsafe_heard_ms == 0 || now - d->failsafe_heard_ms >= d->promise_ms ||
            ttl > d->promise_ms)
            d->promise_ms = ttl;
        d->failsafe_heard_ms = now;
        snprintf(d->failsafe_from, sizeof(d->failsafe_from), "%s", m.from);
        if (p->udp_port > 0)
            send_to(d, p->name, p->host, p->udp_port, MG_HA_MSG_ACK, m.seq, false);
        return false;
    }
    return false;
}

bool
mg_ha__peer_silent(const mg_ha_daemon_t *d, const char *name, int64_t ms)
{
    const mg_ha_peer_t *p = NULL;

    for (size_t i = 0; i < d->npeers; i++)
        if (strcmp(d->peers[i].name, name) == 0)
            p = &d->peers[i];
    return p != NULL && p->heard_ms > 0 && mg_ha__now_ms() - p->heard_ms > ms;
}

/* member_index is the index of name in s's failsafe set, or -1. */
static int
member_index(const mg_ha_cluster_status_t *s, const char *name)
{
    for (size_t i = 0; i < s->nmembers; i++)
        if (strcmp(s->members[i], name) == 0)
            return (int)i;
    return -1;
}

bool
mg_ha__members_update(mg_ha_daemon_t *d, mg_ha_cluster_status_t *s)
{
    int64_t now = mg_ha__now_ms();
    bool changed = false;

    /* this primary and every node it sees as a replica: added before they count */
    if (member_index(s, d->conf->name) < 0 && s->nmembers < MG_HA_MAX_NODES) {
        snprintf(s->members[s->nmembers++], MG_HA_NAME_SIZE, "%s", d->conf->name);
        changed = true;
    }
    for (size_t i = 0; i < d->view.nnodes; i++) {
        const mg_ha_node_t *n = &d->view.nodes[i];

        if (n->state == MG_HA_STATE_REPLICA && member_index(s, n->name) < 0 &&
            s->nmembers < MG_HA_MAX_NODES) {
            snprintf(s->members[s->nmembers++], MG_HA_NAME_SIZE, "%s", n->name);
            changed = true;
        }
    }
    /* a member gone from nodes/ for 2 x ttl leaves; back, it joins again before it counts */
    for (size_t i = 0; i < s->nmembers;) {
        mg_ha_peer_t *p =
            strcmp(s->members[i], d->conf->name) == 0 ? NULL : peer_of(d, s->members[i]);

        if (p == NULL || mg_ha_view_find_node(&d->view, p->name) != NULL) {
            if (p != NULL)
                p->gone_since_ms = 0;
            i++;
            continue;
        }
        if (p->gone_since_ms == 0)
            p->gone_since_ms = now;
        if (now - p->gone_since_ms < 2 * d->conf->ttl_ms) {
            i++;
            continue;
        }
        memmove(&s->members[i], &s->members[i + 1], (s->nmembers - i - 1) * sizeof(s->members[0]));
        s->nmembers--;
        changed = true;
    }
    return changed;
}

bool
mg_ha__peers_drain(mg_ha_daemon_t *d)
{
    char buf[MG_HA_MSG_MAX + 64];
    ssize_t n;
    bool wake = false;

    while (d->udp_fd >= 0 && (n = recv(d->udp_fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0)
        wake = mg_ha__handle_datagram(d, buf, (size_t)n) || wake;
    return wake;
}
