#!/bin/sh
# docs/model/check.sh - check the Promela model of pgdaemon's election, failover
# and fencing with spin: at most one writable primary (every step) and a
# primary within BOUND timely ticks once the faults have healed.
#
#   check.sh [WORKDIR] [spin -D options...]
#
# Without options it runs the CI configuration (1 fault, ttl 3 ticks; about
# 12M states, ~30 s on the CI machine). docs/model/README.md lists bigger runs.
set -eu
MODEL="$(cd "$(dirname "$0")" && pwd)/ha.pml"
WORK="${1:-$(mktemp -d)}"
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- -DFAULTS=1 -DTTL=3 -DFENCE=1 -DWDOG=2
command -v spin >/dev/null || { echo "check.sh: spin is not installed (Debian package spin)" >&2; exit 2; }
mkdir -p "$WORK"
cd "$WORK"
cp "$MODEL" ha.pml
spin "$@" -a ha.pml >spin.out
cc -O2 -DSAFETY -DNOCLAIM -o pan pan.c
./pan -m2000000 >pan.out 2>&1 || true
cat pan.out
# pan exits 0 even on a violation: read its verdict
grep -q "errors: 0" pan.out || { echo "check.sh: the model has a counterexample: spin -t -p -g $* ha.pml in $WORK" >&2; exit 1; }
if grep -q "max search depth too small" pan.out; then
    echo "check.sh: the search was truncated (raise -m)" >&2
    exit 1
fi
echo "check.sh: no assertion violated (safety and bounded liveness)"
