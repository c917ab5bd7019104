/*
 * docs/model/ha.pml - Promela model of pgdaemon's election, failover, fencing,
 * failsafe, synchronous replication and switchover (ha/src/ha_fsm.c,
 * ha/src/ha_daemon.c, ha/src/ha_fence.c, ha/src/ha_pg.c).
 * How to check it, the configurations and how it maps to the code:
 * docs/model/README.md.
 *
 * Without -D options the model is the code as it is today (issue 16 lists
 * what that code gets wrong); each FIX_* switch (or -DFIXED for all of them)
 * turns one repaired rule on, so the fixed protocol is checked by the same
 * model. Feature switches (SYNC, WRITES, SWITCHOVER, SLOW, ON_STOP_LEAVE) and
 * fault kinds (K_*) select what a run explores; FAULTS bounds how many faults
 * happen before everything heals.
 *
 * Time is a shared tick. A node's lease lives in etcd (lease_left, its node
 * key exists while it is > 0); the leader key lives on the lease it was put
 * under (leader_left). key_age counts ticks since the node renewed the lease
 * that holds the leader key for it. A primary takes writes while
 * key_age < FENCE (ttl - margin) or while its peers' failsafe grant lasts
 * (fs_left); the watchdog (a separate process: wd, and wdo for one orphaned
 * by a killed daemon) stops Postgres when its armed deadline passes. A
 * daemon that is paused or killed simply takes no steps.
 *
 * Properties (assertions, checked after every step):
 *   - at most one writer: at most one Postgres runs as a primary;
 *   - no acknowledged write lost (SYNC): a write acknowledged while the etcd
 *     status promised synchronous replication (PROMISED: a non-empty sync
 *     set, with the fixes one in force) is on every node that becomes a
 *     writable primary afterwards;
 *   - bounded liveness: BOUND timely ticks after the faults healed, exactly
 *     one node takes writes (with PERMADEAD: only when a live standby the
 *     sync set names holds every acknowledged write and no lost node was a
 *     standby at the last promotion or followed that primary since).
 */

#define N    3
#define NONE 3 /* no node (fits the byte arrays' index checks: always guard) */
#define OFF  255

#ifndef TTL
#define TTL   4
#define FENCE 2 /* ttl - margin: the daemon's fence and /primary's 503 */
#define WDOG  3 /* ttl - margin/2: the watchdog */
#endif
#define MAXAGE TTL /* ages saturate: beyond TTL nothing changes */
#ifndef FAULTS
#define FAULTS 2
#endif
#ifndef BOUND
#define BOUND (3 * TTL) /* bounded liveness: a primary within this many timely ticks of healing */
#endif

/* ---- features ---- */
#ifndef SYNC
#define SYNC 0 /* synchronous_mode: true */
#endif
#ifndef WRITES
#define WRITES 0 /* acknowledged writes the clients may make */
#endif
#ifndef SWITCHOVER
#define SWITCHOVER 0 /* operator switchovers (K_SWITCH) and the hand-off states */
#endif
#ifndef SO_TIMEOUT
#define SO_TIMEOUT 2 /* switchover_timeout in ticks */
#endif
#ifndef FAILSAFE
#define FAILSAFE 1 /* cluster_secret set: the UDP failsafe while etcd is lost */
#endif
#ifndef SLOW
#define SLOW 0 /* start/promote take time: take key | start Postgres | write status */
#endif
#ifndef ON_STOP_LEAVE
#define ON_STOP_LEAVE 0 /* on_stop: leave (default fast) */
#endif
#ifndef FREEPAUSE
#define FREEPAUSE 0 /* 1: before the heal any daemon may stall any time (pauses are free) */
#endif
#ifndef PERMADEAD
#define PERMADEAD 0 /* a node lost by K_NODE stays lost after the heal */
#endif

/* ---- fault kinds ---- */
#ifndef K_KILL
#define K_KILL 1 /* kill -9 of a daemon (Postgres and watchdog live on), and its start again */
#endif
#ifndef K_PAUSE
#define K_PAUSE 0 /* SIGSTOP of a daemon, or SIGCONT (it resumes where it stopped) */
#endif
#ifndef K_CUT
#define K_CUT 1 /* cut a node from etcd, or heal that cut */
#endif
#ifndef K_RELEASE
#define K_RELEASE 1 /* start_timeout: a primary whose Postgres cannot start releases the key */
#endif
#ifndef K_RESTART
#define K_RESTART 0 /* a daemon crashes and is started again at once */
#endif
#ifndef K_STOP
#define K_STOP 0 /* SIGTERM: graceful stop (on_stop, lease revoke) */
#endif
#ifndef K_NODE
#define K_NODE 0 /* node loss: daemon, Postgres and watchdog gone */
#endif
#ifndef K_PGKILL
#define K_PGKILL 0 /* kill -9 of the postmaster */
#endif
#ifndef K_PCUT
#define K_PCUT 0 /* cut a node from its peers (UDP and replication), or heal that cut */
#endif
#ifndef K_SWITCH
#define K_SWITCH 0 /* operator: pgdaemon switchover [--to NODE] */
#endif
#ifndef K_UNCLEAN
#define K_UNCLEAN 0 /* a switchover's fast shutdown ends in an immediate one */
#endif

/*
 * ---- fixes (issue 16): -DFIXED turns them all on, -DFIXED -DFIX_X=0 all but one ----
 * A fix the code has is on by default ("in the code"), so the model without
 * options stays the code; the others default to FIX_ALL (docs/model/README.md).
 */
#ifdef FIXED
#define FIX_ALL 1
#else
#define FIX_ALL 0
#endif
#ifndef FIX_STOP
#define FIX_STOP 1 /* in the code */ /* 1: a graceful stop never leaves a writable primary */
#endif
#ifndef FIX_FS_PEERS
#define FIX_FS_PEERS 1 /* in the code */ /* 2: the failsafe grant needs every member, not the last view */
#endif
#ifndef FIX_FS_PROMISE
#define FIX_FS_PROMISE FIX_ALL /* 2: the promise survives restarts and guards every way to primary */
#endif
#ifndef FIX_SYNC_RELOAD
#define FIX_SYNC_RELOAD 1 /* in the code */ /* 4: a promotion makes synchronous_standby_names effective */
#endif
#ifndef FIX_SYNC_NARROW
#define FIX_SYNC_NARROW 1 /* in the code */ /* 5: narrow only once the remaining members have the flush LSN */
#endif
#ifndef FIX_SYNC_PLSN
#define FIX_SYNC_PLSN FIX_ALL /* 5: a promotion (and an async -> sync change) moves the set:
                                  candidates must reach the LSN from which Postgres waits */
#endif
#ifndef FIX_SO_CKPT
#define FIX_SO_CKPT 1 /* in the code */ /* 6a: the final LSN only from a clean shutdown */
#endif
#ifndef FIX_SO_RESTART
#define FIX_SO_RESTART FIX_ALL /* 6b: a start during a hand-off aborts it before taking writes */
#endif
#ifndef FIX_WATCHDOG
#define FIX_WATCHDOG 1 /* in the code */ /* 7: the watchdog fences any writable Postgres, not only state primary */
#endif
#ifndef FIX_SYNC_BEST
#define FIX_SYNC_BEST FIX_ALL /* new: a candidate must be as advanced as every reported member */
#endif
#ifndef FIX_SO_WEDGE
#define FIX_SO_WEDGE 1 /* in the code */ /* 11: promoting_new_primary binds the election only for a while */
#endif
#ifndef FIX_SYNC_OLD
#define FIX_SYNC_OLD 1 /* in the code */ /* 14: a new primary's first sync set holds only streaming-capable standbys */
#endif

/* node states (the daemon's; init covers init/wait_primary after a restart) */
#define R_INIT    0
#define R_REPLICA 1
#define R_PRIMARY 2
#define R_DEMOTED 3
/* Postgres */
#define PG_OFF     0
#define PG_STANDBY 1
#define PG_PRIMARY 2 /* runs out of recovery: takes writes */
#define PG_STARTING 3 /* becoming a primary (crash recovery, promotion): a postmaster, no writes yet */
/* status.failover_state (initiated and demoting_old_primary are one value) */
#define FO_STABLE    0
#define FO_INIT      1
#define FO_WAIT      2 /* waiting_for_catchup */
#define FO_PROMOTING 3
#define FO_RECONF    4
/* promoting_new_primary still binds the election (fixed 11: only for SO_TIMEOUT ticks) */
#define HANDING (fo == FO_PROMOTING && (!FIX_SO_WEDGE || so_age < SO_TIMEOUT))
/* where a node's loop is */
#define PC_RENEW  0 /* next: fence check + renew the lease */
#define PC_DECIDE 1 /* next: read the view, decide, act (a pause may fall before) */
#define PC_PG     2 /* SLOW: next: start / promote Postgres */
#define PC_STATUS 3 /* SLOW: next: write the status key, then the state */
#define ACT_START   1
#define ACT_PROMOTE 2
#define ACT_ISSUED  4 /* | ACT_*: Postgres was started or asked to promote */
#define ACT(me) (act[me] & 3)

#define BIT(j)    (1 << (j))
#define HAS(m, j) ((((m) >> (j)) & 1) == 1)

/* ---- etcd ---- */
byte leader = NONE;   /* the leader key (create-only txn) */
byte leader_left = 0; /* ticks until the lease holding it expires */
bool kcur = false;    /* it is under its holder's current lease (not one lost by a restart) */
byte lease_left[N];   /* each node's current lease (its node key lives as long) */
byte st_primary = 0;  /* status.primary */
byte st_sync = 0;     /* status.sync_members (bit mask) */
byte fo = FO_STABLE;  /* status.failover_state */
byte target = NONE;   /* status.target_primary */
byte final_lsn = 0;   /* status.final_lsn */
byte st_plsn = 0;     /* fixed (5): the WAL end from which the sync set holds every commit */
bool so_req = false;  /* spec.switchover_id > status.switchover_id */
byte so_age = 0;      /* ticks in waiting_for_catchup (switchover_timeout) */
byte so_to = NONE;    /* spec.switchover_to (NONE: any) */

/* ---- daemons ---- */
bool alive[N];        /* the daemon process exists */
bool paused[N];       /* SIGSTOP: it takes no steps, its memory is kept */
bool connected[N];    /* reaches etcd */
bool pcut[N];         /* cut from its peers: no UDP, no replication */
byte role[N];         /* R_* */
bool has_lease[N];    /* holds a lease it granted (false after a restart until it renews) */
byte key_age[N];      /* ticks since it renewed the lease holding the leader key */
byte promise_left[N]; /* failsafe: ticks it promised not to promote */
byte fs_left[N];      /* failsafe: ticks its peers granted it as a primary */
byte inview[N];       /* other nodes whose node key it saw at its last read (bit mask) */
byte d_sync[N];       /* the daemon's pg.sync_names (bit mask; lost on restart) */
byte pc[N];           /* PC_* */
byte act[N];          /* SLOW: the action being carried out */
byte wd[N];           /* watchdog: ticks to its deadline (OFF: disarmed) */
byte wdo[N];          /* watchdog orphaned by a killed daemon */

/* ---- Postgres ---- */
byte pg[N];      /* PG_* */
bool datap[N];   /* data dir was a primary's (no standby.signal) */
bool cleanst[N]; /* it stopped with a shutdown checkpoint (pg_controldata: "shut down") */
byte pg_sync[N]; /* synchronous_standby_names Postgres actually uses (bit mask) */
byte up[N];      /* the node a standby streams from */
byte lsn[N];     /* end of its WAL (acknowledged writes only) */
bool complete[N]; /* ghost: it holds every protected acknowledged write */
bool followed[N]; /* ghost: a standby at the last promotion, or set to stream from that primary since */

/* ---- the run ---- */
byte faults = 0;
byte writes = 0;
bool healed = false;
bool lost[N];        /* PERMADEAD: lost for good */
bool looped[N];      /* after healing: finished a loop since the last tick */
byte since_healed = 0;
/* Scratch variables, not part of the state. d_steps (which pan undoes by a
   copy of the state vector) write them before reading them; an atomic sequence
   of several transitions uses variables of its own process only. */
hidden byte j, t, best, want, ok; /* the nodes' and the clock's d_steps */
hidden byte fx, fk;               /* faults_proc and init */
hidden byte cp, cs, ct;           /* client */
hidden byte lt[N];                /* a node's switchover demotion */

/* the status promises synchronous durability: a non-empty sync set (fixed: in force, i.e.
   Postgres waits for it; until then the cluster is asynchronous, as before the change) */
#define PROMISED (SYNC && st_sync != 0 && st_plsn != 255)
#define ANSWERS(j) (pg[j] == PG_STANDBY || pg[j] == PG_PRIMARY) /* pg_queries_ok */
#define WRITERS ((pg[0] == PG_PRIMARY) + (pg[1] == PG_PRIMARY) + (pg[2] == PG_PRIMARY))
#define STREAMS(s, p) (pg[s] == PG_STANDBY && up[s] == (p) && pg[p] == PG_PRIMARY && !pcut[s] && !pcut[p])
#define HEALTHY_PRIMARY (leader != NONE && lease_left[leader] > 0 && role[leader] == R_PRIMARY && pg[leader] == PG_PRIMARY)
#define LIVE_HOLDER(i) (alive[i] && complete[i] && pg[i] == PG_STANDBY && (!PROMISED || HAS(st_sync, i)))
#define TIMELY(i) (!alive[i] || (looped[i] && pc[i] == PC_RENEW))
/* before the heal a tick waits until every running daemon finished a whole loop since
   the last tick (loop_wait + retries < ttl - margin), unless it is paused: an action
   that takes longer (SLOW) is a daemon paused in the middle of it (K_PAUSE) */
#define READY(i) (!alive[i] || paused[i] || (looped[i] && pc[i] == PC_RENEW))
#define RUNS(i) (alive[i] && !paused[i])

/* the watchdog or an immediate shutdown stops Postgres */
inline pg_kill(i)
{
    pg[i] = PG_OFF;
    cleanst[i] = false
}

/* arm_watchdog (ha_daemon.c): deadline + margin/2 while primary, else disarmed */
inline arm(me)
{
    if
    :: role[me] == R_PRIMARY || (FIX_WATCHDOG && pg[me] == PG_PRIMARY) ->
        t = (key_age[me] < WDOG -> WDOG - key_age[me] : 0);
        if
        :: fs_left[me] > 0 && fs_left[me] + WDOG - FENCE > t -> t = fs_left[me] + WDOG - FENCE
        :: else -> skip
        fi;
        wd[me] = t
    :: else -> wd[me] = OFF
    fi
}

/* fence_if_due: a primary past its write deadline stops Postgres and demotes */
inline fence_if_due(me)
{
    if
    :: role[me] == R_PRIMARY && key_age[me] >= FENCE && fs_left[me] == 0 ->
        printf("@ node %d fences itself (write deadline passed)\n", me);
        pg_kill(me);
        role[me] = R_DEMOTED
    :: else -> skip
    fi
}

inline end_loop(me)
{
    arm(me);
    looped[me] = (healed || !FREEPAUSE);
    pc[me] = PC_RENEW
}

/* take_leader: create-only txn, or re-put when it already names us; under our lease */
inline take_leader(me)
{
    if
    :: connected[me] && has_lease[me] && lease_left[me] > 0 && (leader == NONE || leader == me) ->
        if
        :: leader != me -> printf("@ node %d takes the leader key\n", me)
        :: else -> skip
        fi;
        leader = me;
        leader_left = lease_left[me];
        kcur = true;
        key_age[me] = TTL - lease_left[me]; /* key_ok = when this lease was last renewed */
        ok = true
    :: else -> ok = false
    fi
}

/* may_become_primary: inside the write window (and, fixed, no failsafe promise); arms the watchdog */
inline may_become(me)
{
    if
    :: (key_age[me] < FENCE || fs_left[me] > 0) && (!FIX_FS_PROMISE || promise_left[me] == 0) ->
        t = (key_age[me] < WDOG -> WDOG - key_age[me] : 0);
        if
        :: fs_left[me] > 0 && fs_left[me] + WDOG - FENCE > t -> t = fs_left[me] + WDOG - FENCE
        :: else -> skip
        fi;
        wd[me] = t
    :: else -> ok = false
    fi
}

/* the new writable primary must hold every protected acknowledged write */
inline became_writer(me)
{
    printf("@ node %d: Postgres takes writes (lsn %d, holds every acknowledged write: %d)\n", me,
           lsn[me], complete[me]);
    assert(WRITERS <= 1);
    assert(!SYNC || complete[me])
}

/* start / promote, issued in step 1: the postmaster starts (or the standby promotes);
   it takes writes once that ends (the environment step become_primary) */
inline act_pg(me)
{
    if
    :: ACT(me) == ACT_PROMOTE && pg[me] == PG_STANDBY ->
        /* pg_promote; do_promote wrote pgdaemon.sync.conf but did not reload it */
        pg[me] = PG_STARTING;
        act[me] = act[me] | ACT_ISSUED;
        pg_sync[me] = (FIX_SYNC_RELOAD -> d_sync[me] : pg_sync[me])
    :: ACT(me) == ACT_START && pg[me] == PG_OFF ->
        /* pg_configure (the sync file from pg.sync_names) + pg_start */
        pg[me] = PG_STARTING;
        act[me] = act[me] | ACT_ISSUED;
        datap[me] = true;
        pg_sync[me] = d_sync[me]
    :: else -> skip /* already running: pg_start does nothing (no reload) */
    fi
}

/* a postmaster that was starting (or promoting) now takes writes; with or without its daemon */
inline become_primary(i)
{
    pg[i] = PG_PRIMARY;
    datap[i] = true;
    became_writer(i)
}

/* start / promote, step 3: the status key (CAS), then the state changes */
inline act_status(me)
{
    if
    :: ACT(me) == ACT_PROMOTE && connected[me] ->
        printf("@ node %d: status primary, sync_members %d\n", me, d_sync[me]);
        st_primary = me;
        fo = (SWITCHOVER -> FO_RECONF : FO_STABLE);
        target = NONE;
        st_sync = (SYNC -> d_sync[me] : 0);
        /* ghost: who may stream from (and acknowledge for) the new primary: the running
           standbys of now, and whoever follows it later */
        for (j : 0 .. N - 1) {
            followed[j] = (j != me && role[j] == R_REPLICA && pg[j] == PG_STANDBY)
        }
        st_plsn = lsn[me];
        role[me] = R_PRIMARY
    :: ACT(me) == ACT_START && (st_primary == me || connected[me]) ->
        /* ensure_status: no etcd call when status already names us */
        if
        :: st_primary != me -> st_primary = me; fo = FO_STABLE
        :: else -> skip
        fi;
        role[me] = R_PRIMARY
    :: else -> printf("@ node %d: status write failed, state stays %d\n", me, role[me])
    fi
}

/* start / promote, step 1 (in the decide step): key, sync names, may_become_primary */
inline act_begin(me, a)
{
    act[me] = a;
    take_leader(me);
    if
    :: ok && FIX_SO_RESTART && a == ACT_START && (fo == FO_INIT || fo == FO_WAIT) ->
        fo = FO_STABLE; target = NONE /* abort the hand-off before taking writes */
    :: else -> skip
    fi;
    if
    :: ok && a == ACT_PROMOTE && SYNC ->
        /* do_promote: every other node of the view may be a sync standby */
        d_sync[me] = inview[me];
        if
        :: FIX_SYNC_OLD ->
            for (j : 0 .. N - 1) {
                if
                :: HAS(d_sync[me], j) && !(role[j] == R_REPLICA && pg[j] == PG_STANDBY) ->
                    d_sync[me] = d_sync[me] & ~BIT(j)
                :: else -> skip
                fi
            }
        :: else -> skip
        fi
    :: ok && a == ACT_START && SYNC && d_sync[me] == 0 && st_primary == me ->
        d_sync[me] = st_sync & ~BIT(me) /* restart: keep waiting for the etcd members */
    :: else -> skip
    fi;
    if
    :: ok -> may_become(me)
    :: else -> skip
    fi;
    if
    :: ok && SLOW -> act_pg(me); pc[me] = PC_PG
    :: ok && !SLOW ->
        act_pg(me);
        if
        :: pg[me] == PG_STARTING -> become_primary(me)
        :: else -> skip
        fi;
        act_status(me)
    :: else -> skip
    fi
}

inline start_replica(me, peer)
{
    if
    :: pg[me] == PG_OFF -> pg[me] = PG_STANDBY; pg_sync[me] = 0
    :: else -> skip
    fi;
    up[me] = peer;
    followed[me] = followed[me] || (peer == st_primary);
    datap[me] = false;
    d_sync[me] = 0;
    role[me] = R_REPLICA
}

/* failover candidate (mg_ha_failover_candidate): best = NONE when none or blocked */
inline candidate(me)
{
    best = NONE;
    ok = true;
    if
    :: PROMISED ->
        /* every sync member must have reported: one of them holds every acknowledged commit */
        for (j : 0 .. N - 1) {
            if
            :: HAS(st_sync, j) && j != st_primary && !(lease_left[j] > 0 && ANSWERS(j)) -> ok = false
            :: else -> skip
            fi
        }
    :: else -> skip
    fi;
    if
    :: ok ->
        for (j : 0 .. N - 1) {
            if
            :: role[j] == R_REPLICA && pg[j] == PG_STANDBY && lease_left[j] > 0 &&
               (!PROMISED || (HAS(st_sync, j) && (!FIX_SYNC_PLSN || lsn[j] >= st_plsn))) &&
               (best == NONE || lsn[j] > lsn[best]) ->
                best = j
            :: else -> skip
            fi
        }
        if
        :: PROMISED && FIX_SYNC_BEST && best != NONE ->
            /* a member that reported more WAL than the best candidate (it restarts, or may
               not be promoted) may hold commits the candidate lacks: wait for it */
            for (j : 0 .. N - 1) {
                if
                :: HAS(st_sync, j) && j != st_primary && lsn[j] > lsn[best] -> best = NONE; break
                :: else -> skip
                fi
            }
        :: else -> skip
        fi
    :: else -> skip
    fi
}

/* manage_sync: ANY 1 (streaming standbys); etcd's set a superset of Postgres' */
inline manage_sync(me)
{
    want = 0;
    for (j : 0 .. N - 1) {
        if
        :: j != me && STREAMS(j, me) -> want = want | BIT(j)
        :: else -> skip
        fi
    }
    if
    :: (want & ~st_sync) != 0 ->
        printf("@ node %d: status sync_members %d\n", me, st_sync | want);
        if
        :: FIX_SYNC_PLSN && st_sync == 0 -> st_plsn = 255 /* no candidate until Postgres waits */
        :: else -> skip
        fi;
        st_sync = st_sync | want /* widen etcd first */
    :: else ->
        if
        :: want != d_sync[me] ->
            ok = true;
            if
            :: want == 0 && d_sync[me] != 0 ->
                /* keep waiting while a standby may come back */
                for (j : 0 .. N - 1) {
                    if
                    :: j != me && lease_left[j] > 0 && pg[j] != PG_OFF -> ok = false
                    :: else -> skip
                    fi
                }
            :: else -> skip
            fi;
            if
            :: ok && FIX_SYNC_NARROW && (d_sync[me] & ~want) != 0 ->
                for (j : 0 .. N - 1) {
                    if
                    :: HAS(want, j) && lsn[j] < lsn[me] -> ok = false
                    :: else -> skip
                    fi
                }
            :: else -> skip
            fi;
            if
            :: ok ->
                printf("@ node %d: synchronous_standby_names = ANY 1 (%d)\n", me, want);
                d_sync[me] = want; pg_sync[me] = want; /* write + reload */
                if
                :: FIX_SYNC_PLSN && st_plsn == 255 && want != 0 -> st_plsn = lsn[me] /* waits from here */
                :: else -> skip
                fi
            :: else -> skip
            fi
        :: else -> skip
        fi;
        if
        :: want == d_sync[me] && st_sync != want ->
            printf("@ node %d: status sync_members %d\n", me, want);
            st_sync = want; /* narrow etcd after Postgres */
            if
            :: want == 0 ->
                /* the documented degrade to asynchronous: no standby runs; writes
                   acknowledged before are from here on on this node only */
                complete[0] = true; complete[1] = true; complete[2] = true
            :: else -> skip
            fi
        :: else -> skip
        fi
    fi
}

/* decide_with_data: a (re)started daemon with its data dir */
inline decide_init(me)
{
    if
    :: leader == me -> act_begin(me, ACT_START)
    :: leader == NONE && st_primary == me && !HANDING -> act_begin(me, ACT_START)
    :: else ->
        if
        :: datap[me] && leader != NONE -> pg_kill(me); role[me] = R_DEMOTED
        :: else ->
            if
            :: HEALTHY_PRIMARY -> start_replica(me, leader)
            :: else ->
                if
                :: leader == NONE && datap[me] -> pg_kill(me); role[me] = R_DEMOTED
                :: leader == NONE && !datap[me] -> start_replica(me, st_primary)
                :: else -> skip /* wait_primary */
                fi
            fi
        fi
    fi
}

inline decide_replica(me)
{
    if
    :: leader == me -> act_begin(me, ACT_PROMOTE) /* finish the promotion */
    :: leader != NONE && leader != me ->
        if
        :: pg[me] == PG_OFF -> start_replica(me, leader)
        :: pg[me] != PG_OFF && up[me] != leader && HEALTHY_PRIMARY ->
            up[me] = leader; followed[me] = followed[me] || (leader == st_primary) /* follow */
        :: else -> skip
        fi
    :: leader == NONE && SWITCHOVER && HANDING && target == me ->
        act_begin(me, ACT_PROMOTE) /* the old primary handed over to us */
    :: leader == NONE && SWITCHOVER && HANDING && target != me && target != NONE &&
       lease_left[target] > 0 -> skip
    :: leader == NONE && !(SWITCHOVER && HANDING && target != NONE &&
                           (target == me || lease_left[target] > 0)) ->
        if
        :: promise_left[me] > 0 -> skip /* failsafe: the primary writes without etcd */
        :: promise_left[me] == 0 && st_primary != me && lease_left[st_primary] > 0 &&
           (role[st_primary] == R_PRIMARY || role[st_primary] == R_DEMOTED) &&
           pg[st_primary] != PG_OFF -> skip /* the old primary reports: let it retake the key */
        :: else ->
            if
            :: pg[me] == PG_OFF -> start_replica(me, st_primary)
            :: pg[me] == PG_PRIMARY -> skip
            :: pg[me] == PG_STANDBY ->
                candidate(me);
                if
                :: best == me -> act_begin(me, ACT_PROMOTE)
                :: else -> skip
                fi
            fi
        fi
    fi
}

/* the switchover demotion applies (do_demote's switchover branch) */
#define SO_DEMOTE(me) (SWITCHOVER && connected[me] && fo == FO_INIT && leader == me && \
                       st_primary == me && target != me && \
                       (role[me] == R_PRIMARY || role[me] == R_DEMOTED))

inline decide_primary(me)
{
    if
    :: leader != NONE && leader != me -> pg_kill(me); role[me] = R_DEMOTED
    :: (leader == NONE || leader == me) && SWITCHOVER && (fo == FO_INIT || fo == FO_WAIT) &&
       st_primary == me && target != me ->
        /* switchover under way; waiting_for_catchup or no key: an immediate stop */
        pg_kill(me); role[me] = R_DEMOTED
    :: else ->
        if
        :: pg[me] == PG_OFF -> act_begin(me, ACT_START) /* restart in place */
        :: pg[me] != PG_OFF && SWITCHOVER && so_req && fo == FO_STABLE && leader == me ->
            /* switchover_begin */
            best = NONE;
            if
            :: so_to != NONE && so_to != me && role[so_to] == R_REPLICA && pg[so_to] == PG_STANDBY ->
                best = so_to
            :: so_to == NONE -> candidate(me)
            :: else -> skip
            fi;
            so_req = false;
            if
            :: best != NONE && best != me ->
                printf("@ node %d: switchover to %d\n", me, best);
                fo = FO_INIT; target = best
            :: else -> skip
            fi
        :: pg[me] != PG_OFF && SWITCHOVER && !(so_req && fo == FO_STABLE && leader == me) &&
           (fo == FO_PROMOTING || fo == FO_RECONF) && (leader == me || leader == NONE) ->
            fo = FO_STABLE; target = NONE /* finish_failover */
        :: else ->
            /* maintain_primary: keep (or retake) the key, ensure status, manage sync */
            if
            :: leader == NONE -> take_leader(me)
            :: else -> skip
            fi;
            if
            :: leader == me && st_primary != me -> st_primary = me; fo = FO_STABLE
            :: else -> skip
            fi;
            if
            :: SYNC && leader == me -> manage_sync(me)
            :: else -> skip
            fi
        fi
    fi
}

inline decide_demoted(me)
{
    if
    :: leader == me ->
        if
        :: SWITCHOVER && fo == FO_WAIT ->
            if
            :: target != NONE && pg[target] == PG_STANDBY && lease_left[target] > 0 &&
               lsn[target] >= final_lsn ->
                /* handoff: one txn deletes the key and sets promoting_new_primary */
                printf("@ node %d hands off to %d (it replayed %d, final LSN %d)\n", me, target,
                       lsn[target], final_lsn);
                leader = NONE; kcur = false; leader_left = 0;
                key_age[me] = MAXAGE;
                fo = FO_PROMOTING; so_age = 0
            :: else ->
                if
                :: so_age >= SO_TIMEOUT ->
                    fo = FO_STABLE; target = NONE; /* abort_switchover, then start as primary */
                    act_begin(me, ACT_START)
                :: else -> skip
                fi
            fi
        :: else -> act_begin(me, ACT_START) /* (FO_INIT is the so_demote step) */
        fi
    :: leader == NONE ->
        if
        :: !HANDING && st_primary == me -> act_begin(me, ACT_START) /* retake */
        :: else -> skip
        fi
    :: leader != NONE && leader != me ->
        if
        :: HEALTHY_PRIMARY && !pcut[me] && !pcut[leader] ->
            /* rejoin: pg_rewind against the new primary, then a standby of it */
            printf("@ node %d rejoins %d\n", me, leader);
            pg[me] = PG_STANDBY; pg_sync[me] = 0; d_sync[me] = 0;
            up[me] = leader; lsn[me] = lsn[leader]; complete[me] = complete[leader];
            followed[me] = followed[me] || (leader == st_primary);
            datap[me] = false; role[me] = R_REPLICA
        :: else -> skip
        fi
    fi
}

/* the failsafe round of a primary that cannot reach etcd */
inline failsafe(me)
{
    ok = true;
    want = 0;
    for (j : 0 .. N - 1) {
        if
        :: j != me && (FIX_FS_PEERS || HAS(inview[me], j)) ->
            want = want | BIT(j);
            if
            :: RUNS(j) && !pcut[j] && !pcut[me] && role[j] != R_PRIMARY &&
               (!FIX_FS_PROMISE || (leader != j && pg[j] != PG_PRIMARY)) ->
                promise_left[j] = TTL /* ACK: a promise not to take the key for ttl */
            :: else -> ok = false
            fi
        :: else -> skip
        fi
    }
    if
    :: ok && want != 0 ->
        printf("@ node %d: failsafe grant from peers %d\n", me, want);
        fs_left[me] = FENCE
    :: else -> skip
    fi
}

proctype node(byte me)
{
end:
    do
    :: d_step {
        RUNS(me) && pc[me] == PC_RENEW ->
        fence_if_due(me);
        /* renew_lease: only a keepalive of the lease holding the key moves the deadline */
        if
        :: connected[me] ->
            if
            :: has_lease[me] && lease_left[me] > 0 && leader == me && kcur ->
                key_age[me] = 0; leader_left = TTL
            :: else -> skip
            fi;
            lease_left[me] = TTL; has_lease[me] = true
        :: else -> skip
        fi;
        pc[me] = PC_DECIDE
       }
    :: d_step {
        RUNS(me) && pc[me] == PC_DECIDE && !SO_DEMOTE(me) ->
        fence_if_due(me);
        if
        :: !connected[me] ->
            if
            :: role[me] == R_PRIMARY && FAILSAFE -> failsafe(me); fence_if_due(me)
            :: else -> skip
            fi;
            end_loop(me)
        :: connected[me] ->
            inview[me] = 0;
            for (j : 0 .. N - 1) {
                if
                :: j != me && lease_left[j] > 0 -> inview[me] = inview[me] | BIT(j)
                :: else -> skip
                fi
            }
            if
            :: role[me] == R_INIT -> decide_init(me)
            :: role[me] == R_REPLICA -> decide_replica(me)
            :: role[me] == R_PRIMARY -> decide_primary(me)
            :: role[me] == R_DEMOTED -> decide_demoted(me)
            fi;
            if
            :: pc[me] == PC_DECIDE -> end_loop(me)
            :: else -> skip
            fi
        fi
       }
    :: atomic {
        /* the switchover demotion (do_demote): a fast shutdown whose checkpoint reaches
           the streaming standbys, final LSN from pg_controldata, waiting_for_catchup */
        RUNS(me) && pc[me] == PC_DECIDE && SO_DEMOTE(me) ->
        if
        :: pg[me] != PG_OFF ->
            for (j : 0 .. N - 1) {
                if
                :: j != me && STREAMS(j, me) -> lsn[j] = lsn[me]; complete[j] = complete[me]
                :: else -> skip
                fi
            }
            pg[me] = PG_OFF; cleanst[me] = true
        :: pg[me] != PG_OFF && K_UNCLEAN && faults < FAULTS ->
            pg_kill(me); faults++ /* the fast shutdown timed out: SIGQUIT */
        :: pg[me] == PG_OFF -> skip
        fi;
        if
        :: cleanst[me] ->
            printf("@ node %d: clean shutdown, final LSN %d\n", me, lsn[me]);
            final_lsn = lsn[me]; fo = FO_WAIT; so_age = 0
        :: !cleanst[me] && FIX_SO_CKPT -> fo = FO_STABLE; target = NONE /* no trusted LSN: abort */
        :: !cleanst[me] && !FIX_SO_CKPT ->
            /* "Latest checkpoint location" of a crashed cluster: an older checkpoint */
            lt[me] = 0;
            do
            :: lt[me] < lsn[me] -> lt[me]++
            :: break
            od;
            printf("@ node %d: crashed shutdown, final LSN read as %d (WAL ends at %d)\n", me, lt[me],
                   lsn[me]);
            final_lsn = lt[me]; lt[me] = 0; fo = FO_WAIT; so_age = 0
        fi;
        role[me] = R_DEMOTED;
        end_loop(me)
       }
#if SLOW
    :: d_step {
        /* pg_start / pg_promote return: Postgres takes writes, or it was stopped meanwhile */
        RUNS(me) && pc[me] == PC_PG && pg[me] != PG_STARTING ->
        if
        :: (act[me] & ACT_ISSUED) && pg[me] == PG_OFF ->
            printf("@ node %d: the start or promotion failed (Postgres stopped)\n", me); end_loop(me)
        :: else -> pc[me] = PC_STATUS
        fi
       }
    :: d_step {
        RUNS(me) && pc[me] == PC_STATUS -> act_status(me); end_loop(me)
       }
#endif
    od
}

/* ---- clients: writes and replication ---- */
proctype client()
{
end:
    do
    :: writes < WRITES ->
        atomic {
            select(cp : 0 .. N - 1);
            if
            :: pg[cp] == PG_PRIMARY ->
                if
                :: pg_sync[cp] == 0 ->
                    /* asynchronous commit: acknowledged by the primary alone */
                    lsn[cp]++; writes++;
                    printf("@ write %d acknowledged by node %d alone (lsn %d)\n", writes, cp, lsn[cp]);
                    if
                    :: PROMISED ->
                        for (cs : 0 .. N - 1) {
                            if
                            :: cs != cp -> complete[cs] = false
                            :: else -> skip
                            fi
                        }
                    :: else -> skip
                    fi
                :: pg_sync[cp] != 0 ->
                    /* ANY 1 (pg_sync): one streaming member has flushed it */
                    select(cs : 0 .. N - 1);
                    if
                    :: cs != cp && HAS(pg_sync[cp], cs) && STREAMS(cs, cp) ->
                        lsn[cp]++; writes++;
                        lsn[cs] = lsn[cp]; complete[cs] = complete[cp];
                        printf("@ write %d acknowledged by node %d and standby %d (lsn %d)\n", writes, cp, cs,
                               lsn[cp]);
                        if
                        :: PROMISED ->
                            for (ct : 0 .. N - 1) {
                                if
                                :: ct != cp && ct != cs -> complete[ct] = false
                                :: else -> skip
                                fi
                            }
                        :: else -> skip
                        fi
                    :: else -> skip /* the commit waits: not acknowledged */
                    fi
                fi
            :: else -> skip
            fi
        }
    :: atomic {
        /* a starting or promoting postmaster finishes: from now on it takes writes */
        select(cs : 0 .. N - 1);
        if
        :: pg[cs] == PG_STARTING -> become_primary(cs)
        :: else -> skip
        fi
       }
    :: atomic {
        /* a standby catches up with the primary it streams from */
        select(cs : 0 .. N - 1);
        if
        :: up[cs] != NONE && STREAMS(cs, up[cs]) && (lsn[cs] != lsn[up[cs]] || complete[cs] != complete[up[cs]]) ->
            lsn[cs] = lsn[up[cs]]; complete[cs] = complete[up[cs]];
            printf("@ standby %d catches up with node %d (lsn %d)\n", cs, up[cs], lsn[cs])
        :: else -> skip
        fi
       }
    od
}

/* ---- the clock: leases, ages, grants, promises and the watchdogs ---- */
proctype clock()
{
    do
    :: d_step {
        ((!healed && (FREEPAUSE || (READY(0) && READY(1) && READY(2)))) ||
         (healed && TIMELY(0) && TIMELY(1) && TIMELY(2) && since_healed < BOUND));
        if
        :: healed -> since_healed++
        :: else -> skip
        fi;
        for (j : 0 .. N - 1) {
            looped[j] = false;
            if
            :: key_age[j] < MAXAGE -> key_age[j]++
            :: else -> skip
            fi;
            if
            :: promise_left[j] > 0 -> promise_left[j]--
            :: else -> skip
            fi;
            if
            :: fs_left[j] > 0 -> fs_left[j]--
            :: else -> skip
            fi;
            /* the watchdogs (ha_fence.c): a separate process, also when the daemon is stopped */
            if
            :: wd[j] != OFF && wd[j] > 0 -> wd[j]--
            :: else -> skip
            fi;
            if
            :: wd[j] == 0 ->
                printf("@ watchdog of node %d stops Postgres\n", j); pg_kill(j); wd[j] = OFF
            :: else -> skip
            fi;
            if
            :: wdo[j] != OFF && wdo[j] > 0 -> wdo[j]--
            :: else -> skip
            fi;
            if
            :: wdo[j] == 0 ->
                printf("@ orphaned watchdog of node %d stops Postgres\n", j); pg_kill(j); wdo[j] = OFF
            :: else -> skip
            fi;
            if
            :: lease_left[j] > 0 -> lease_left[j]--
            :: else -> skip
            fi
        }
        if
        :: (fo == FO_WAIT || fo == FO_PROMOTING) && so_age < SO_TIMEOUT -> so_age++
        :: else -> skip
        fi;
        /* etcd's lessor drops the leader key with the lease it lives on */
        if
        :: leader != NONE && leader_left > 0 -> leader_left--
        :: else -> skip
        fi;
        if
        :: leader != NONE && leader_left == 0 ->
            printf("@ etcd: the leader key of node %d expires\n", leader); leader = NONE; kcur = false
        :: else -> skip
        fi;
        assert(WRITERS <= 1)
       }
    :: d_step {
        /* bounded liveness: BOUND timely ticks after healing, some node takes writes */
        healed && since_healed >= BOUND && TIMELY(0) && TIMELY(1) && TIMELY(2);
        printf("@ %d ticks after the heal: %d writer(s)\n", BOUND, WRITERS);
#if PERMADEAD
        /* required only if a live standby that the sync set names holds every acknowledged
           write, and no lost node was a standby at the last promotion or followed that
           primary since (it could have acknowledged something the live one lacks: then
           waiting is the safe answer) */
        assert(WRITERS == 1 || !((LIVE_HOLDER(0) || LIVE_HOLDER(1) || LIVE_HOLDER(2)) &&
                                 !(lost[0] && followed[0]) && !(lost[1] && followed[1]) &&
                                 !(lost[2] && followed[2])))
#else
        assert(WRITERS == 1)
#endif
       };
       break
    od
}

/* ---- faults ---- */
inline restart(i)
{
    alive[i] = true;
    paused[i] = false;
    role[i] = R_INIT;
    has_lease[i] = false;
    key_age[i] = MAXAGE;
    fs_left[i] = 0;
    d_sync[i] = 0;
    inview[i] = 0;
    pc[i] = PC_RENEW;
    wd[i] = OFF;
    if
    :: leader == i -> kcur = false /* the key stays on the old lease until re-put */
    :: else -> skip
    fi;
    promise_left[i] = (FIX_FS_PROMISE -> promise_left[i] : 0)
}

inline kill(i)
{
    alive[i] = false;
    pc[i] = PC_RENEW;
    if
    :: wd[i] != OFF && (wdo[i] == OFF || wd[i] < wdo[i]) -> wdo[i] = wd[i] /* the earliest fences first */
    :: else -> skip
    fi;
    wd[i] = OFF
}

proctype faults_proc()
{
    do
    :: faults < FAULTS ->
        atomic {
            select(fx : 0 .. N - 1);
            if
            :: K_KILL && alive[fx] -> printf("@ FAULT kill -9 daemon %d\n", fx); kill(fx); faults++
            :: K_KILL && !alive[fx] && !lost[fx] -> printf("@ FAULT start daemon %d\n", fx); restart(fx); faults++
            :: K_PAUSE && alive[fx] ->
                paused[fx] = !paused[fx]; faults++;
                printf("@ FAULT daemon %d paused (SIGSTOP 1, SIGCONT 0): %d\n", fx, paused[fx])
            :: K_CUT ->
                connected[fx] = !connected[fx]; faults++;
                printf("@ FAULT node %d reaches etcd: %d\n", fx, connected[fx])
            :: K_PCUT ->
                pcut[fx] = !pcut[fx]; faults++;
                printf("@ FAULT node %d cut from its peers: %d\n", fx, pcut[fx])
            :: K_RESTART && alive[fx] ->
                printf("@ FAULT restart daemon %d\n", fx); kill(fx); restart(fx); faults++
            :: K_STOP && alive[fx] && pc[fx] == PC_RENEW ->
                /* SIGTERM (shutdown_daemon, after the loop it is in): stop the watchdog,
                   on_stop, revoke the lease */
                printf("@ FAULT SIGTERM daemon %d (on_stop leave: %d)\n", fx, ON_STOP_LEAVE);
                alive[fx] = false; pc[fx] = PC_RENEW; wd[fx] = OFF;
                if
                :: !ON_STOP_LEAVE || (FIX_STOP && (pg[fx] == PG_PRIMARY || pg[fx] == PG_STARTING)) ->
                    if
                    :: pg[fx] != PG_OFF -> pg[fx] = PG_OFF; cleanst[fx] = true /* fast shutdown */
                    :: else -> skip
                    fi
                :: else -> skip
                fi;
                if
                :: connected[fx] && has_lease[fx] ->
                    lease_left[fx] = 0;
                    if
                    :: leader == fx && kcur -> leader = NONE; kcur = false; leader_left = 0
                    :: else -> skip
                    fi
                :: else -> skip
                fi;
                faults++
            :: K_NODE && alive[fx] ->
                printf("@ FAULT node %d lost\n", fx);
                kill(fx); pg_kill(fx); wdo[fx] = OFF; lost[fx] = PERMADEAD; faults++
            :: K_PGKILL && pg[fx] != PG_OFF -> printf("@ FAULT kill -9 postmaster %d\n", fx); pg_kill(fx); faults++
            :: K_RELEASE && alive[fx] && connected[fx] && role[fx] == R_PRIMARY && leader == fx ->
                /* start_timeout: release_leader stops Postgres, deletes the key (value compare) */
                printf("@ FAULT node %d: start_timeout, releases the key\n", fx);
                pg_kill(fx); role[fx] = R_DEMOTED; leader = NONE; kcur = false; leader_left = 0;
                key_age[fx] = MAXAGE; faults++
            :: K_SWITCH && !so_req && fo == FO_STABLE ->
                select(fk : 0 .. N);
                printf("@ FAULT operator: switchover to %d (3: any)\n", fk);
                so_req = true; so_to = fk; faults++
            :: else -> skip
            fi
        }
    :: faults >= FAULTS -> break
    od;
    atomic {
        for (fx : 0 .. N - 1) {
            if
            :: !lost[fx] ->
                if
                :: !alive[fx] -> restart(fx)
                :: else -> skip
                fi;
                connected[fx] = true;
                paused[fx] = false;
                pcut[fx] = false
            :: else -> skip
            fi
        }
        healed = true;
        printf("@ everything heals\n")
    }
}

init {
    atomic {
        for (fx : 0 .. N - 1) {
            alive[fx] = true; connected[fx] = true; role[fx] = R_REPLICA; lease_left[fx] = TTL;
            has_lease[fx] = true; key_age[fx] = MAXAGE; wd[fx] = OFF; wdo[fx] = OFF;
            pg[fx] = PG_STANDBY; up[fx] = 0; followed[fx] = true; complete[fx] = true;
            inview[fx] = 7 & ~BIT(fx)
        }
        leader = 0; leader_left = TTL; kcur = true; key_age[0] = 0;
        role[0] = R_PRIMARY; pg[0] = PG_PRIMARY; datap[0] = true; up[0] = NONE; followed[0] = false;
        wd[0] = WDOG;
        st_primary = 0;
        if
        :: SYNC -> st_sync = 6; d_sync[0] = 6; pg_sync[0] = 6
        :: else -> skip
        fi;
        for (fx : 0 .. N - 1) {
            run node(fx)
        }
        run clock();
        run faults_proc();
        run client()
    }
}

/* safety as LTL (the assertions check it after every step; this is the full product) */
ltl safety { [] (WRITERS <= 1) }

/* liveness: once every node runs and reaches etcd, some node eventually takes writes */
ltl liveness { [] (healed -> <> (pg[0] == PG_PRIMARY || pg[1] == PG_PRIMARY || pg[2] == PG_PRIMARY)) }
