#!/bin/sh
# scripts/setup-deps.sh - install every Debian package the build, tests and demo need.
#
# Idempotent; meant to run as root on a fresh Debian 12 machine. When not root
# it uses sudo if present. Set MG_SKIP_APT=1 to skip entirely (packages
# managed by other means).
set -eu

PACKAGES="
build-essential cmake pkg-config git ca-certificates
clang clang-format libclang-rt-14-dev
libmongoc-dev libbson-dev libpq-dev libyajl-dev libcmocka-dev
libcurl4-openssl-dev libmicrohttpd-dev libssl-dev
postgresql-15 postgresql-client-15 postgresql-contrib
etcd-server etcd-client haproxy pgbouncer
spin
python3 python3-pymongo python3-psycopg2 python3-pytest
procps iproute2 util-linux
chromium
"

if [ "${MG_SKIP_APT:-0}" = "1" ]; then
    echo "setup-deps: MG_SKIP_APT=1, not installing packages"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "setup-deps: not root and no sudo; install these packages by hand:" >&2
        echo "$PACKAGES" >&2
        exit 1
    fi
fi

# Skip the network round-trip when everything is already installed.
missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -z "$missing" ]; then
    echo "setup-deps: all packages present"
    exit 0
fi

echo "setup-deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
# The Debian packages of postgresql and etcd start system-wide services by
# default; the tests start their own instances on free ports, so keep the
# package scripts from starting anything.
policy_created=0
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    policy_created=1
fi
# shellcheck disable=SC2086
if ! $SUDO apt-get install -y -q --no-install-recommends $missing; then
    [ "$policy_created" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
    echo "setup-deps: apt-get install failed" >&2
    exit 1
fi
[ "$policy_created" = 1 ] && $SUDO rm -f /usr/sbin/policy-rc.d
echo "setup-deps: done"
