#!/usr/bin/env bash
# Builds warren's offline Debian base image for the Docker provider, with no image registry:
#   debootstrap (bookworm, minbase + git, ca-certificates, bash, coreutils, procps) -> docker import.
#
# Usage: scripts/build-base-image.sh [--force] [TAG]     (TAG defaults to warren-base:bookworm)
#
# Idempotent: if TAG already exists its image id is printed and nothing is built (unless --force).
# The root filesystem tarball is cached under ${WARREN_CACHE_DIR:-$HOME/.cache/warren}, so a
# rebuild after 'docker rmi' only re-imports it (seconds) instead of re-running debootstrap (~40 s).
# --force rebuilds the tarball too. Needs root (debootstrap creates device nodes and chowns).
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), WARREN_CACHE_DIR.
# Prints the image id on its last line.
set -euo pipefail

log() { echo "build-base-image: $*" >&2; }
die() { log "error: $*"; exit 1; }

force=0
tag=""
for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $arg (usage: $0 [--force] [TAG])" ;;
    *) [ -z "$tag" ] || die "only one TAG may be given"; tag="$arg" ;;
  esac
done
tag="${tag:-warren-base:bookworm}"
suite="bookworm"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
packages="git,ca-certificates,bash,coreutils,procps"

command -v docker >/dev/null 2>&1 || die "the docker client is not installed (apt-get install docker.io)"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "no Docker engine answers: start dockerd (sudo systemctl start docker) or set DOCKER_HOST"

if [ "$force" -eq 0 ] && id="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null)"; then
  log "$tag already exists (use --force to rebuild)"
  echo "$id"
  exit 0
fi

cache_dir="${WARREN_CACHE_DIR:-${HOME:-/root}/.cache/warren}"
# The package set is part of the name so a changed list never reuses a stale tarball.
key="$(printf '%s\n' "$suite" "$packages" | sha256sum | cut -c1-8)"
tarball="$cache_dir/base-$suite-minbase-$key.tar"

if [ "$force" -eq 1 ] || [ ! -s "$tarball" ]; then
  # Only here is root needed: importing a cached tarball works for any docker user.
  [ "$(id -u)" -eq 0 ] || die "debootstrap must run as root: re-run with sudo (the tarball is then cached in $cache_dir)"
  command -v debootstrap >/dev/null 2>&1 || die "debootstrap is not installed (apt-get install debootstrap)"
  mkdir -p "$cache_dir"
  rootfs="$(mktemp -d "${TMPDIR:-/tmp}/warren-rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs" "$tarball.partial"' EXIT
  log "debootstrap $suite (minbase + $packages) from $mirror"
  started=$SECONDS
  debootstrap --variant=minbase --include="$packages" "$suite" "$rootfs" "$mirror" >&2 \
    || die "debootstrap failed (see above); is $mirror reachable?"
  # Caches of the bootstrap itself are useless in the image and only make it bigger.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar --numeric-owner -C "$rootfs" -cf "$tarball.partial" .
  mv "$tarball.partial" "$tarball"
  log "rootfs cached at $tarball ($((SECONDS - started)) s)"
else
  log "using cached rootfs $tarball"
fi

docker import \
  --change 'CMD ["/bin/bash"]' \
  --change 'LABEL warren.image=base' \
  "$tarball" "$tag" >/dev/null
id="$(docker image inspect --format '{{.Id}}' "$tag")"
log "built $tag"
echo "$id"
