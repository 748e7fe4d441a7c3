#!/usr/bin/env bash
# Build a Debian image that boots systemd as PID 1, for the molecule
# scenarios and `make demo`, from the Debian mirror this machine uses.
#
#   scripts/build-image.sh 12|13 [IMAGE]
#
# Skipped when IMAGE already exists (FORCE=1 rebuilds). Where a registry is
# reachable, point CHANNELS_STACK_IMAGE_12/13 at a pulled systemd image instead.
set -euo pipefail

version=${1:?usage: build-image.sh 12|13 [IMAGE]}
case "$version" in
  12) suite=bookworm ;;
  13) suite=trixie ;;
  *) echo "build-image.sh: unknown Debian version '$version' (use 12 or 13)" >&2; exit 2 ;;
esac
image=${2:-channels-stack/debian-systemd:$version}

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$image" >/dev/null 2>&1; then
  echo "==> $image exists (FORCE=1 rebuilds it)"
  exit 0
fi

command -v debootstrap >/dev/null 2>&1 || {
  echo "==> installing debootstrap"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap
}

# The mirror: DEBIAN_MIRROR, else the first Debian archive in apt's sources.
mirror=${DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
    | grep -oE 'https?://[^ ]+/debian/?( |$)' | grep -v security | head -n 1 | tr -d ' ' || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}
mirror=${mirror%/}
security=${DEBIAN_SECURITY_MIRROR:-${mirror%/debian}/debian-security}

cache=${CHANNELS_STACK_CACHE:-$HOME/.cache/channels-stack}
mkdir -p "$cache/debootstrap-$suite"
work=$(mktemp -d /tmp/channels-stack-rootfs.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

packages=systemd,systemd-sysv,dbus,python3,python3-apt,ca-certificates,iproute2,procps
echo "==> debootstrap $suite from $mirror"
start=$(date +%s)
debootstrap --variant=minbase --include="$packages" --cache-dir="$cache/debootstrap-$suite" \
  "$suite" "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log" >&2
  exit 1
}

cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb $security $suite-security main
EOF
# Keep downloaded packages so a host directory mounted on the archive cache
# is shared between containers.
echo 'Binary::apt::APT::Keep-Downloaded-Packages "true";' >"$rootfs/etc/apt/apt.conf.d/10keep-downloads"
rm -f "$rootfs/etc/apt/apt.conf.d/docker-clean"
# Units that make no sense in a container.
for unit in getty.target systemd-remount-fs.service dev-hugepages.mount sys-fs-fuse-connections.mount \
  systemd-logind.service console-getty.service; do
  ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
rm -f "$rootfs"/etc/machine-id && : >"$rootfs/etc/machine-id"
apt_clean() { rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*; }
apt_clean
# Stale on purpose: the first apt run in a container refreshes the lists.
touch -d @0 "$rootfs/var/lib/apt/lists"

echo "==> importing $image"
tar -C "$rootfs" -c . | docker import \
  --change 'ENV container=docker' \
  --change 'CMD ["/lib/systemd/systemd"]' \
  - "$image" >/dev/null
echo "==> built $image in $(( $(date +%s) - start )) s"
