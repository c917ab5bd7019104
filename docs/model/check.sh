#!/bin/sh
# docs/model/check.sh - check the Promela model of pgdaemon (ha.pml) with spin.
#
#   check.sh [WORKDIR]                      every run of docs/model/configs (the CI check)
#   check.sh [WORKDIR] NAME...              only those runs of docs/model/configs
#   check.sh WORKDIR -DOPTION...            one run with these spin -D options (must pass)
#
# A configs row expects "pass" (no assertion fails: at most one writer, no
# acknowledged write lost, bounded liveness) or "finding N" (the model must
# find a counterexample: today's rule of issue 16's finding N). A found
# counterexample is kept in WORKDIR/<name>/: the spin trail (replay with
# "spin -t -p -g <options> ha.pml" there) and trail.txt, the events of the
# trail in words. Environment: PAN_MEMLIM (MB, default 3000), PAN_TIMEOUT
# (seconds per run, default 900), PAN_DEPTH (default 3000000), PAN_CFLAGS
# (more cc options for pan, e.g. -DBITSTATE), PAN_FLAGS (more pan options,
# e.g. -w34).
# docs/model/README.md has the long runs.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
MODEL="$HERE/ha.pml"
CONFIGS="$HERE/configs"
TIMING="-DTTL=3 -DFENCE=2 -DWDOG=2"
MEMLIM="${PAN_MEMLIM:-3000}"
TIMEOUT="${PAN_TIMEOUT:-900}"
DEPTH="${PAN_DEPTH:-3000000}"
CFLAGS_PAN="${PAN_CFLAGS:-}"
FLAGS_PAN="${PAN_FLAGS:-}"

command -v spin >/dev/null || { echo "check.sh: spin is not installed (Debian package spin)" >&2; exit 2; }
command -v cc >/dev/null || { echo "check.sh: no C compiler (cc)" >&2; exit 2; }

WORK=""
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ] && ! grep -q "^$1 *|" "$CONFIGS"; then
    WORK="$1"
    shift
fi
[ -n "$WORK" ] || WORK="$(mktemp -d)"
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"

# run NAME EXPECT OPTIONS...: one verification; prints a verdict line, returns 0 when as expected
run() {
    name="$1"; expect="$2"; shift 2
    dir="$WORK/$name"
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$MODEL" "$dir/ha.pml"
    echo "$*" >"$dir/options"
    start=$(date +%s)
    if ! (cd "$dir" && spin "$@" -a ha.pml >spin.out 2>&1); then
        echo "check.sh: $name: spin failed:" >&2
        cat "$dir/spin.out" >&2
        return 1
    fi
    (cd "$dir" && cc -O2 -DSAFETY -DNOCLAIM -DCOLLAPSE -DMEMLIM="$MEMLIM" $CFLAGS_PAN -o pan pan.c 2>cc.out) || {
        echo "check.sh: $name: cc failed:" >&2
        cat "$dir/cc.out" >&2
        return 1
    }
    rc=0
    (cd "$dir" && timeout "$TIMEOUT" ./pan -m"$DEPTH" $FLAGS_PAN >pan.out 2>&1) || rc=$?
    secs=$(($(date +%s) - start))
    states=$(sed -n 's/^ *\([0-9.e+]*\) states, stored.*/\1/p' "$dir/pan.out" | head -1)
    if [ "$rc" -eq 124 ]; then
        echo "FAIL $name: no verdict within ${TIMEOUT}s (PAN_TIMEOUT)"
        return 1
    fi
    if grep -q "max search depth too small" "$dir/pan.out"; then
        echo "FAIL $name: the search was truncated at depth $DEPTH (PAN_DEPTH)"
        return 1
    fi
    if grep -q "out of memory\|memory limit" "$dir/pan.out"; then
        echo "FAIL $name: out of memory at ${MEMLIM} MB (PAN_MEMLIM)"
        return 1
    fi
    found=0
    grep -q "errors: 0" "$dir/pan.out" || found=1
    if [ "$found" -eq 1 ]; then
        # the trail in words: the model's "@ ..." events up to the failed assertion
        (cd "$dir" && spin "$@" -t ha.pml 2>&1 |
            sed -n 's/^ *\(@ .*\)$/\1/p; s/^spin: text of failed assertion: \(.*\)$/VIOLATED: \1/p' |
            uniq >trail.txt) || true
    fi
    case "$expect" in
    pass)
        if [ "$found" -eq 0 ]; then
            echo "ok   $name: no violation ($states states, ${secs}s)"
            return 0
        fi
        echo "FAIL $name: counterexample (trail in $dir, $dir/trail.txt):"
        sed 's/^/    /' "$dir/trail.txt"
        return 1
        ;;
    *)
        if [ "$found" -eq 1 ]; then
            echo "ok   $name: $expect found ($states states, ${secs}s; $dir/trail.txt)"
            return 0
        fi
        echo "FAIL $name: $expect expected a counterexample, the model found none ($states states)"
        return 1
        ;;
    esac
}

failed=0
if [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; then
    # one custom run (the CI timing unless the options set TTL)
    case " $* " in
    *" -DTTL="*) run custom pass "$@" || failed=1 ;;
    *) run custom pass $TIMING "$@" || failed=1 ;;
    esac
else
    want="$*"
    while IFS='|' read -r name expect opts; do
        name=$(echo "$name" | tr -d ' ')
        case "$name" in ''|'#'*) continue ;; esac
        if [ -n "$want" ] && ! echo " $want " | grep -q " $name "; then
            continue
        fi
        expect=$(echo "$expect" | sed 's/^ *//; s/ *$//')
        # shellcheck disable=SC2086
        run "$name" "$expect" $TIMING $opts || failed=1
    done <"$CONFIGS"
fi
if [ "$failed" -ne 0 ]; then
    echo "check.sh: the model check failed (work directory $WORK)" >&2
    exit 1
fi
echo "check.sh: every run as expected (work directory $WORK)"
