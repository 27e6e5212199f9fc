#!/usr/bin/env bash
# Builds a stand-in for python:3.11-slim-bookworm where no image registry is reachable: Debian bookworm
# (debootstrap, minbase) with Debian's Python 3.11 and venv, imported into podman as IMAGE.
#   docker/local-base.sh [IMAGE]      (default localhost/trainlab-base:bookworm; root, podman, debootstrap)
# The mirror is the one apt uses on this machine. Nothing is rebuilt when IMAGE exists already.
set -euo pipefail
image=${1:-localhost/trainlab-base:bookworm}
podman=(podman --runtime /usr/sbin/runc)

if "${podman[@]}" image exists "$image"; then
  echo "base image $image exists already"
  exit 0
fi
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT

debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$rootfs" "$mirror" >/dev/null
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | "${podman[@]}" import --quiet --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
echo "base image $image built from $mirror"
