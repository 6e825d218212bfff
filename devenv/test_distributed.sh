#!/usr/bin/env bash
# `make test-distributed`: the end-to-end scenario on CeleryExecutor + PostgreSQL + Redis, no Docker.
#
# Installs Debian's `postgresql`, `redis-server` (and `chromium`, for the browser tests) when missing (needs root),
# without letting the packages start their system services; then runs `pytest tests/distributed`,
# whose fixtures start both servers as our own processes on free loopback ports and stop them again.
# Extra arguments go to pytest. With `--install-only` (what `make test` runs first) it only installs,
# and without root it only warns: the distributed tests then skip and say why.
set -euo pipefail
cd "$(dirname "$0")/.."

install_only=false
if [[ ${1:-} == --install-only ]]; then
    install_only=true
    shift
fi

missing=()
# Debian keeps the server binaries in /usr/lib/postgresql/<major>/bin, out of PATH.
if ! command -v postgres >/dev/null && ! compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null; then
    missing+=(postgresql)
fi
command -v redis-server >/dev/null || missing+=(redis-server)
# The browser tests' Chromium (driven by Playwright; see devenv/browser.py).
[[ -x /usr/bin/chromium ]] || missing+=(chromium)

if ((${#missing[@]})); then
    if ((EUID != 0)); then
        echo "missing: ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root" >&2
        $install_only && exit 0
        exit 1
    fi
    echo "installing ${missing[*]} from Debian's packages"
    # Exit code 101 from policy-rc.d tells the packages' maintainer scripts not to start their
    # services: our tests run their own servers, and nothing may keep running afterwards.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

$install_only && exit 0

# Only the distributed tests (`make test` runs them with everything else). pytest's exit code is the
# script's: no `exec`, so the EXIT trap above still runs.
.venv/bin/python -m pytest tests/distributed -m distributed -p no:cacheprovider "$@"
