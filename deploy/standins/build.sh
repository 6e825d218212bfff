#!/bin/bash
# Builds local stand-ins for the public base images that Dockerfile and docker-compose.yaml name
# (apache/airflow:3.3.2-python3.11, postgres:15-bookworm, redis:7.0-bookworm), for machines that
# reach Debian's package mirror but no image registry. See README.md beside this script.
#
# 1. A Debian bookworm root file system from debootstrap (minbase), through the mirror apt is
#    configured with here, plus the CA certificates this machine trusts beyond Debian's (a TLS
#    inspecting proxy's, for one), imported as the image dms-standin/debian:bookworm. Kept in
#    $STANDIN_CACHE so the next run skips it.
# 2. One small Dockerfile per stand-in on top of it, built with host networking (no bridge here).
# Docker's layer cache makes a second run take seconds. Needs root (debootstrap, chroot).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
project=$(cd "$here/../.." && pwd)
cache=${STANDIN_CACHE:-/var/cache/dynamics-marketo-sync/standins}
base=dms-standin/debian:bookworm
build=(nice docker build --quiet --network host --build-arg "BASE_IMAGE=$base")

debian_mirror() {
    # The first Debian archive apt uses here, from deb822 sources or a classic sources.list.
    local sources=(/etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list)
    cat "${sources[@]}" 2>/dev/null | awk '
        /^URIs:/ && $2 ~ /\/debian\/?$/ { print $2; exit }
        /^deb / { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\/.*\/debian\/?$/) { print $i; exit } }'
}

if ! docker image inspect "$base" >/dev/null 2>&1; then
    rootfs=$cache/rootfs
    if [[ ! -e $cache/rootfs.done ]]; then
        mirror=$(debian_mirror)
        [[ -n $mirror ]] || { echo "no Debian mirror found in apt's sources" >&2; exit 1; }
        rm -rf "$rootfs" && mkdir -p "$cache"
        echo "debootstrap bookworm (minbase) from apt's configured mirror"
        nice debootstrap --variant=minbase --include=ca-certificates bookworm "$rootfs" "$mirror" \
            >"$cache/debootstrap.log"
        touch "$cache/rootfs.done"
    fi
    if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
        cp /usr/local/share/ca-certificates/*.crt "$rootfs/usr/local/share/ca-certificates/"
        chroot "$rootfs" update-ca-certificates >/dev/null
    fi
    rm -rf "$rootfs/var/cache/apt/archives/"*.deb "$rootfs/var/lib/apt/lists/"*
    tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
    echo "imported $base"
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp -r "$here/airflow/." "$context/"
# The stand-in installs Airflow pinned as the project pins it, so the project's own
# `pip install -r requirements.txt` finds it already there.
cp "$project/requirements.txt" "$context/constraints.txt"
"${build[@]}" -t apache/airflow:3.3.2-python3.11 "$context" >/dev/null
echo "built apache/airflow:3.3.2-python3.11 (stand-in)"
"${build[@]}" -t postgres:15-bookworm "$here/postgres" >/dev/null
echo "built postgres:15-bookworm (stand-in)"
"${build[@]}" -t redis:7.0-bookworm "$here/redis" >/dev/null
echo "built redis:7.0-bookworm (stand-in)"
