/*
 * docs/model/ha.pml - Promela model of pgdaemon's election, failover and
 * fencing (ha/src/ha_fsm.c, ha/src/ha_daemon.c, ha/src/ha_fence.c).
 * How to check it and how it maps to the code: docs/model/README.md.
 *
 * Time is a shared tick. A node's lease lives in etcd (lease_left) and in
 * the node's reckoning of the lease that holds the leader key (key_age:
 * ticks since it renewed that lease). A primary takes writes while
 * key_age < FENCE (ttl - margin) or while its peers' failsafe
 * grant lasts (fs_left); its watchdog (a separate process, not stopped with
 * the daemon) stops Postgres when key_age reaches WDOG (ttl - margin/2); etcd
 * drops the leader key when the holder's lease runs out at TTL. A daemon
 * that is paused simply takes no steps (every interleaving is explored).
 */

#define N     3
#define NONE  255
#ifndef TTL
#define TTL   4
#define FENCE 2   /* ttl - margin: the daemon's fence and /primary's 503 */
#define WDOG  3   /* ttl - margin/2: the watchdog */
#endif
#define MAXAGE TTL /* ages saturate: beyond TTL nothing changes */
#ifndef FAULTS
#define FAULTS 3  /* crashes, restarts and partitions before everything heals */
#endif

mtype = { replica, primary, demoted };

byte leader = NONE;        /* etcd: the leader key (create-only txn, under the holder's lease) */
byte lease_left[N];        /* etcd: ticks until each node's lease expires (0 = none) */
bool has_lease[N];         /* node: holds a lease it renewed (false after a restart) */
byte key_age[N];           /* node: ticks since it renewed the lease that holds the leader key */
bool alive[N];             /* the daemon process runs */
bool connected[N];         /* the node reaches etcd */
bool writable[N];          /* its Postgres runs as a primary and takes writes */
mtype role[N];
byte promise_left[N];      /* failsafe: ticks this node promised not to promote */
byte fs_left[N];           /* failsafe: ticks the peers granted this primary */
byte faults = 0;
bool healed = false;
bool looped[N];            /* after healing: the node finished a loop since the last tick */
bool midloop[N];           /* between its renewal and its decision */
byte since_healed = 0;     /* ticks since everything healed (saturating) */

#define WRITERS (writable[0] + writable[1] + writable[2])
#ifndef BOUND
#define BOUND (3 * TTL)    /* bounded liveness: a primary within this many ticks of healing */
#endif

/* the clock: leases and ages move on; the watchdog and etcd's lessor act */
active proctype clock()
{
    byte i;
    do
    :: d_step {
        /* after healing the system is timely (partial synchrony): a tick only once
           every daemon has run a whole loop since the last one */
        (!healed || (looped[0] && looped[1] && looped[2] && since_healed < BOUND &&
                     !midloop[0] && !midloop[1] && !midloop[2]));
        if
        :: healed -> since_healed++
        :: else -> skip
        fi;
        for (i : 0 .. N - 1) {
            looped[i] = false;
            if
            :: key_age[i] < MAXAGE -> key_age[i]++
            :: else -> skip
            fi;
            if
            :: promise_left[i] > 0 -> promise_left[i]--
            :: else -> skip
            fi;
            if
            :: fs_left[i] > 0 -> fs_left[i]--
            :: else -> skip
            fi;
            /* watchdog (ha_fence.c): past its deadline and no failsafe grant */
            if
            :: writable[i] && key_age[i] >= WDOG && fs_left[i] == 0 -> writable[i] = false
            :: else -> skip
            fi;
            if
            :: lease_left[i] > 0 ->
                lease_left[i]--;
                if
                :: lease_left[i] == 0 && leader == i -> leader = NONE
                :: else -> skip
                fi
            :: else -> skip
            fi
        }
       };
       i = 0;
       assert(WRITERS <= 1)
    :: d_step {
        /* bounded liveness (the CI check; the ltl formula below is the unbounded one):
           BOUND timely ticks after healing some node takes writes; time stops here */
        healed && since_healed >= BOUND && looped[0] && looped[1] && looped[2] &&
        !midloop[0] && !midloop[1] && !midloop[2];
        assert(WRITERS == 1)
       };
       break
    od
}

proctype node(byte me)
{
    byte j;
    bool all;
end:
    do
    :: alive[me] ->
        /* renew_lease: keepalive, or a new lease when the old one expired; only a
           keepalive of the lease that holds the leader key moves the write deadline */
        d_step {
            if
            :: connected[me] ->
                if
                :: lease_left[me] > 0 && leader == me -> key_age[me] = 0
                :: else -> skip
                fi;
                lease_left[me] = TTL; has_lease[me] = true
            :: else -> skip
            fi;
            midloop[me] = true
        }
        /* a pause may fall here: the decision runs on what was read */
        d_step {
            /* fence_if_due: the daemon stops its own primary at ttl - margin */
            if
            :: role[me] == primary && key_age[me] >= FENCE && fs_left[me] == 0 ->
                writable[me] = false; role[me] = demoted
            :: else -> skip
            fi;
            if
            :: !connected[me] && role[me] == primary ->
                /* failsafe round: every peer's daemon answers and promises not to
                   promote for TTL; none of them is primary or holds the key */
                all = true;
                for (j : 0 .. N - 1) {
                    if
                    :: j != me && (!alive[j] || role[j] == primary || leader == j) -> all = false
                    :: else -> skip
                    fi
                }
                if
                :: all ->
                    for (j : 0 .. N - 1) {
                        if
                        :: j != me -> promise_left[j] = TTL
                        :: else -> skip
                        fi
                    }
                    fs_left[me] = FENCE
                :: else -> skip
                fi
            :: !connected[me] && role[me] != primary -> skip
            :: connected[me] && role[me] == primary && leader != me ->
                /* decide_primary: the key names another node, or nobody: step down */
                writable[me] = false; role[me] = demoted
            :: connected[me] && role[me] == primary && leader == me ->
                /* Postgres was stopped (watchdog, crash): start it if the key is fresh */
                if
                :: !writable[me] && key_age[me] < FENCE -> writable[me] = true
                :: else -> skip
                fi
            :: connected[me] && role[me] == replica && leader == NONE && promise_left[me] == 0 &&
               has_lease[me] && lease_left[me] > TTL - FENCE ->
                /* decide_replica + do_promote: create-only txn, may_become_primary */
                leader = me; key_age[me] = TTL - lease_left[me];
                role[me] = primary; writable[me] = true
            :: connected[me] && role[me] == replica &&
               !(leader == NONE && promise_left[me] == 0 && has_lease[me] &&
                 lease_left[me] > TTL - FENCE) -> skip
            :: connected[me] && role[me] == demoted && leader == me && lease_left[me] > 0 &&
               key_age[me] < FENCE ->
                /* decide_demoted: the key is still ours: start again */
                role[me] = primary; writable[me] = true
            :: connected[me] && role[me] == demoted && leader != NONE && leader != me ->
                /* rejoin (pg_rewind) and follow */
                role[me] = replica
            :: connected[me] && role[me] == demoted && leader == NONE ->
                /* decide_demoted: key free: the old primary retakes it like a candidate */
                if
                :: promise_left[me] == 0 && has_lease[me] && lease_left[me] > TTL - FENCE ->
                    leader = me; key_age[me] = TTL - lease_left[me];
                    role[me] = primary; writable[me] = true
                :: else -> skip
                fi
            :: connected[me] && role[me] == demoted && leader == me &&
               !(lease_left[me] > 0 && key_age[me] < FENCE) -> skip
            fi;
            looped[me] = true;
            midloop[me] = false;
            assert(WRITERS <= 1)
        }
    od
}

/* faults: crash or restart a daemon, cut or heal etcd, a primary whose Postgres
   cannot start gives up the key; then everything heals */
active proctype faults_proc()
{
    byte i;
    do
    :: faults < FAULTS ->
        select(i : 0 .. N - 1);
        atomic {
            if
            :: alive[i] -> alive[i] = false; midloop[i] = false /* kill -9 / SIGSTOP: Postgres and watchdog live on */
            :: !alive[i] -> alive[i] = true; has_lease[i] = false; key_age[i] = MAXAGE; /* restart: no lease yet */
                if
                :: role[i] == primary -> role[i] = demoted   /* a restart begins in init */
                :: else -> skip
                fi
            :: connected[i] = !connected[i]
            :: alive[i] && connected[i] && role[i] == primary && leader == i ->
                /* Postgres cannot start (start_timeout): release_leader stops it and
                   deletes the key by a txn comparing its value with this node */
                writable[i] = false; role[i] = demoted; leader = NONE
            fi;
            faults++
        }
    :: faults >= FAULTS -> break
    od;
    atomic {
        for (i : 0 .. N - 1) {
            alive[i] = true; connected[i] = true
        }
        healed = true
    }
}

init {
    byte i;
    atomic {
        for (i : 0 .. N - 1) {
            alive[i] = true; connected[i] = true; role[i] = replica; lease_left[i] = TTL;
            has_lease[i] = true
        }
        leader = 0; role[0] = primary; writable[0] = true;
        for (i : 0 .. N - 1) {
            run node(i)
        }
    }
}

/* safety: at most one writable primary, at every step */
ltl safety { [] (WRITERS <= 1) }

/* liveness: once every node runs and reaches etcd (a connected majority and more),
   some node eventually takes writes */
ltl liveness { [] (healed -> <> (writable[0] || writable[1] || writable[2])) }
