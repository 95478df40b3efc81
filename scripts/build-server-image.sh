#!/usr/bin/env bash
# Builds the control plane's image, warren-server:TAG, offline: `docker build --network none`
# FROM the base image scripts/build-base-image.sh makes (warren-base:bookworm: Debian with git),
# with the `warren` and `warren-sandbox-init` binaries of this checkout copied in. Nothing is
# pulled or fetched: the base must exist locally, as for `warren image build`.
#
# Usage: scripts/build-server-image.sh [--debug] [--base IMAGE] [TAG]
#   TAG      defaults to warren-server:latest (a bare word is a tag of warren-server)
#   --debug  copies target/debug/ instead of target/release/ (build it first: cargo build -p
#            warren-cli -p warren-sandbox-init [--release]); CARGO_TARGET_DIR is honoured
#   --base   the image to build FROM (default warren-base:bookworm)
#
# The image runs as uid 10001 (no root, nothing setuid added), with `warren` as its entrypoint
# (deploy/kubernetes/server-deployment.yaml passes `serve ...`). Prints the image id last.
set -euo pipefail

log() { echo "build-server-image: $*" >&2; }
die() { log "error: $*"; exit 1; }

profile=release
base=warren-base:bookworm
tag=""
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --base) [ $# -ge 2 ] || die "--base needs an image"; base="$2"; shift ;;
    -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (usage: $0 [--debug] [--base IMAGE] [TAG])" ;;
    *) [ -z "$tag" ] || die "only one TAG may be given"; tag="$1" ;;
  esac
  shift
done
tag="${tag:-warren-server:latest}"
case "$tag" in *:*|*/*) ;; *) tag="warren-server:$tag" ;; esac

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin_dir="${CARGO_TARGET_DIR:-$root/target}/$profile"
for bin in warren warren-sandbox-init; do
  [ -x "$bin_dir/$bin" ] || die "$bin_dir/$bin is missing: run cargo build -p warren-cli -p warren-sandbox-init$([ "$profile" = release ] && echo ' --release') first"
done

command -v docker >/dev/null 2>&1 || die "the docker client is not installed (apt-get install docker.io)"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "no Docker engine answers: start dockerd or set DOCKER_HOST"
docker image inspect "$base" >/dev/null 2>&1 \
  || die "the base image $base does not exist: build it with scripts/build-base-image.sh (nothing is pulled)"

context="$(mktemp -d "${TMPDIR:-/tmp}/warren-server-image.XXXXXX")"
trap 'rm -rf "$context"' EXIT
cp "$bin_dir/warren" "$bin_dir/warren-sandbox-init" "$context/"
version="$("$bin_dir/warren" --version 2>/dev/null | awk '{print $2}' || true)"

# A passwd entry for the uid, so git and anything else that looks the user up finds one. The
# data and config directories are volumes in the Deployment; they exist here so a plain
# `docker run` works too.
cat >"$context/Dockerfile" <<EOF
FROM $base
RUN groupadd --gid 10001 warren \\
 && useradd --uid 10001 --gid 10001 --home-dir /var/lib/warren --no-create-home --shell /usr/sbin/nologin warren \\
 && mkdir -p /var/lib/warren /etc/warren \\
 && chown 10001:10001 /var/lib/warren
COPY warren warren-sandbox-init /usr/local/bin/
ENV WARREN_DATA_DIR=/var/lib/warren
LABEL warren.image=server warren.version="${version:-unknown}"
USER 10001:10001
WORKDIR /var/lib/warren
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/warren"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--insecure-bind"]
EOF

log "building $tag FROM $base with $profile binaries (network: none)"
# --network none: the build runs groupadd/useradd and copies files; nothing may be fetched.
# --pull=false: the base is the local image, never a registry's.
DOCKER_BUILDKIT=0 docker build --network none --pull=false --tag "$tag" "$context" >&2 \
  || die "docker build failed (see above)"
id="$(docker image inspect --format '{{.Id}}' "$tag")"
log "built $tag"
echo "$id"
