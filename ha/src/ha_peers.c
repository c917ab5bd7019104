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
    return mg_ha__peer_find(d->peers, &d->npeers, name);
}

void
mg_ha__peers_learn(mg_ha_daemon_t *d)
{
    mg_ha__peers_seen(&d->view, d->peers, &d->npeers, mg_ha__now_ms());
    for (size_t i = 0; i < d->view.nnodes; i++) {
        const mg_ha_node_t *n = &d->view.nodes[i];
        mg_ha_peer_t *p;

        if (strcmp(n->name, d->conf->name) == 0 || n->udp_port <= 0 ||
            (p = peer_of(d, n->name)) == NULL)
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
    size_t nset = mg_ha__failsafe_set(&d->view, set);

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

/*
 * mg_ha__failsafe_grant returns until when the peers allow this primary to
 * keep writing without etcd: every node of the failsafe set must have acked
 * a failsafe heartbeat; the grant runs from the oldest such send time.
 */
int64_t
mg_ha__failsafe_grant(mg_ha_daemon_t *d)
{
    char set[MG_HA_MAX_NODES][MG_HA_NAME_SIZE];
    size_t nset = mg_ha__failsafe_set(&d->view, set);

    if (d->conf->cluster_secret == NULL || d->conf->cluster_secret[0] == '\0')
        return 0;
    return mg_ha__grant_until(set, nset, d->conf->name, d->peers, d->npeers, d->conf->ttl_ms,
                              d->conf->retry_ms);
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
        /* promise: no promotion for a ttl from now (decide sees failsafe_primary_heard) */
        mg_ha__promise_give(now, mg_ha__promise_ttl(&d->view, m.from, d->conf->ttl_ms),
                            &d->failsafe_heard_ms, &d->promise_ms);
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

bool
mg_ha__members_update(mg_ha_daemon_t *d, mg_ha_cluster_status_t *s)
{
    return mg_ha__members_update_at(s, &d->view, d->conf->name, d->peers, &d->npeers,
                                    mg_ha__now_ms(), d->conf->ttl_ms);
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
