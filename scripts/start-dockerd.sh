#!/usr/bin/env bash
# Makes sure a Docker engine answers on this machine: installs Debian's docker.io if missing and
# starts dockerd in the background when none runs. Prints the pid of a dockerd it started (so the
# caller can stop it by pid), or nothing when one was already running.
set -euo pipefail

log() { echo "start-dockerd: $*" >&2; }

if ! command -v dockerd >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  log "installing docker.io"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker.io >&2
fi
if docker info >/dev/null 2>&1; then
  exit 0
fi
[ "$(id -u)" -eq 0 ] || { log "no Docker engine runs and starting one needs root"; exit 1; }
LOG="${WARREN_DOCKERD_LOG:-/tmp/warren-dockerd.log}"
dockerd --host unix:///var/run/docker.sock >"$LOG" 2>&1 &
PID=$!
for _ in $(seq 150); do
  if docker info >/dev/null 2>&1; then
    echo "$PID"
    exit 0
  fi
  kill -0 "$PID" 2>/dev/null || { log "dockerd exited; see $LOG"; tail -n 20 "$LOG" >&2; exit 1; }
  sleep 0.2
done
log "dockerd did not answer within 30 s; see $LOG"
exit 1
