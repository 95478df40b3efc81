#!/usr/bin/env bash
# Stops the single-node cluster that start.sh started, and puts the host back as it was.
#
#   scripts/kube-single-node/stop.sh [STATE_DIR] [--purge]
#
# STATE_DIR: argument, or env KUBE_STATE, default /var/lib/kube-single-node.
# In order: deletes the pods (so the kubelet tears their sandboxes and networks down), stops the
# kubelet, kills any container task left in containerd's k8s.io namespace, stops the control plane,
# etcd and containerd, every one by the pid recorded in STATE_DIR/pids (never by name); unmounts
# what the kubelet and containerd left mounted under STATE_DIR; removes the CNI bridge and the
# network namespaces of this containerd; restores the sysctls saved by start.sh and removes the
# iptables rules and chains the kubelet and the CNI plugins added (KUBE_RESTORE_IPTABLES=full
# restores the whole saved iptables-save dump instead, which also undoes any rule another program,
# such as Docker, added since start).
# --purge (or KUBE_PURGE=1) then deletes STATE_DIR (certificates, etcd data, images).
set -uo pipefail

STATE="${KUBE_STATE:-/var/lib/kube-single-node}"
PURGE="${KUBE_PURGE:-0}"
for a in "$@"; do
  case "$a" in
    --purge) PURGE=1 ;;
    -*) echo "usage: stop.sh [STATE_DIR] [--purge]" >&2; exit 2 ;;
    *) STATE="$a" ;;
  esac
done
[ -d "$STATE" ] || { echo "stop.sh: no state directory $STATE" >&2; exit 1; }
STATE="$(cd "$STATE" && pwd)"
PIDS="$STATE/pids"
HOST="$STATE/host"
SOCK="$STATE/containerd/containerd.sock"
BRIDGE=ksn0

log() { echo "kube-single-node: $*" >&2; }

pid_of() { [ -s "$PIDS" ] && awk -v n="$1" '$1 == n {print $2}' "$PIDS" | tail -n 1; }

# Stops a recorded process: SIGTERM, then SIGKILL after a grace period. The pid is only signalled
# while /proc says it still runs the program start.sh started (pids get reused).
stop_proc() { # name [grace-seconds]
  local name=$1 grace=${2:-20} pid exe i
  pid="$(pid_of "$name")"
  [ -n "$pid" ] || return 0
  if ! kill -0 "$pid" 2>/dev/null; then
    log "$name (pid $pid) is not running"
    return 0
  fi
  exe="$(readlink "/proc/$pid/exe" 2>/dev/null || :)"
  case "$name" in
    kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | etcd | containerd)
      case "${exe##*/}" in
        "$name" | "$name (deleted)") ;;
        *) log "pid $pid is now ${exe:-unknown}, not $name: left alone"; return 0 ;;
      esac
      ;;
  esac
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < grace * 4; i++)); do
    kill -0 "$pid" 2>/dev/null || { log "stopped $name (pid $pid)"; return 0; }
    sleep 0.25
  done
  kill -KILL "$pid" 2>/dev/null
  sleep 0.5
  log "killed $name (pid $pid) after ${grace}s"
}

KUBECTL=""
if [ -s "$STATE/kubectl.path" ]; then KUBECTL="$(cat "$STATE/kubectl.path")"; fi
api_pid="$(pid_of kube-apiserver)"
kubelet_pid="$(pid_of kubelet)"
if [ -n "$KUBECTL" ] && [ -x "$KUBECTL" ] && [ -n "$api_pid" ] && kill -0 "$api_pid" 2>/dev/null \
  && [ -n "$kubelet_pid" ] && kill -0 "$kubelet_pid" 2>/dev/null; then
  log "deleting all pods (up to 60 s)"
  timeout 60 "$KUBECTL" --kubeconfig "$STATE/conf/admin.kubeconfig" delete pods --all \
    --all-namespaces --grace-period=5 --wait=true >/dev/null 2>&1 || :
  # Give the kubelet a moment to stop the sandboxes (and so run CNI DEL) of the deleted pods.
  sleep 3
fi
stop_proc kubelet 30

# Whatever still runs in containerd's k8s.io namespace: kill the tasks, drop the containers.
ctr_pid="$(pid_of containerd)"
if [ -n "$ctr_pid" ] && kill -0 "$ctr_pid" 2>/dev/null && [ -S "$SOCK" ]; then
  CTR=(ctr --address "$SOCK" -n k8s.io)
  for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
    "${CTR[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || :
  done
  sleep 1
  for t in $("${CTR[@]}" tasks ls -q 2>/dev/null); do
    "${CTR[@]}" tasks delete -f "$t" >/dev/null 2>&1 || :
  done
  for c in $("${CTR[@]}" containers ls -q 2>/dev/null); do
    "${CTR[@]}" containers delete "$c" >/dev/null 2>&1 || :
  done
fi

stop_proc kube-scheduler
stop_proc kube-controller-manager
stop_proc kube-apiserver
stop_proc etcd
stop_proc containerd 30

# Mounts left under the state directory (pod volumes, container root file systems, shm, and the
# pods' network namespaces: containerd keeps them there, netns_mounts_under_state_dir), deepest
# first.
awk '{print $5}' /proc/self/mountinfo | grep -F "$STATE/" | awk '{print length, $0}' \
  | sort -rn | cut -d' ' -f2- | while read -r m; do
  m="$(printf '%b' "$m")" # mountinfo escapes spaces as \040
  umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
done

if ip link show "$BRIDGE" >/dev/null 2>&1; then
  ip link delete "$BRIDGE" && log "removed bridge $BRIDGE"
fi
rm -rf "$STATE/cni/ipam"

# Host state saved by start.sh.
if [ -s "$HOST/sysctl.saved" ]; then
  while IFS='=' read -r k v; do
    [ -n "$k" ] || continue
    cur="$(sysctl -n "$k" 2>/dev/null || :)"
    if [ "$cur" != "$v" ]; then
      if sysctl -q -w "$k=$v" >/dev/null 2>&1; then
        log "restored $k=$v (was $cur)"
      else
        log "could not restore $k=$v"
      fi
    fi
  done <"$HOST/sysctl.saved"
fi

restore_chains() { # iptables|ip6tables
  local cmd=$1 t line chain
  command -v "$cmd" >/dev/null 2>&1 || return 0
  for t in filter nat mangle raw; do
    [ -f "$HOST/$cmd.$t.saved" ] || continue
    # Rules added since start that belong to the kubelet or the CNI plugins.
    "$cmd" -t "$t" -S 2>/dev/null | grep '^-A ' | while read -r line; do
      grep -qxF -- "$line" "$HOST/$cmd.$t.saved" && continue
      case "$line" in
        *KUBE-* | *CNI-* | *"$BRIDGE"* | *kubernetes* | *kube-single-node*)
          eval "$cmd -t $t -D ${line#-A }" 2>/dev/null || log "could not delete ($cmd -t $t) $line"
          ;;
      esac
    done
    # Chains they created.
    "$cmd" -t "$t" -S 2>/dev/null | grep '^-N ' | while read -r line; do
      grep -qxF -- "$line" "$HOST/$cmd.$t.saved" && continue
      chain="${line#-N }"
      case "$chain" in
        KUBE-* | CNI-*) "$cmd" -t "$t" -F "$chain" 2>/dev/null ;;
        *) continue ;;
      esac
    done
    "$cmd" -t "$t" -S 2>/dev/null | grep '^-N ' | while read -r line; do
      grep -qxF -- "$line" "$HOST/$cmd.$t.saved" && continue
      chain="${line#-N }"
      case "$chain" in
        KUBE-* | CNI-*) "$cmd" -t "$t" -X "$chain" 2>/dev/null || log "could not delete chain $chain ($cmd -t $t)" ;;
      esac
    done
  done
}
if [ "${KUBE_RESTORE_IPTABLES:-}" = full ]; then
  [ -s "$HOST/iptables-save.saved" ] && iptables-restore <"$HOST/iptables-save.saved" \
    && log "restored the saved iptables dump"
  [ -s "$HOST/ip6tables-save.saved" ] && ip6tables-restore <"$HOST/ip6tables-save.saved" \
    && log "restored the saved ip6tables dump"
else
  restore_chains iptables
  restore_chains ip6tables
  log "removed the kubelet's and CNI's iptables rules and chains"
fi

# The host is back as it was: forget the saved state (the next start saves it afresh).
rm -f "$HOST"/*.saved "$PIDS"
if [ "$PURGE" = 1 ]; then
  if grep -qF "$STATE/" /proc/self/mountinfo; then
    log "mounts remain under $STATE: not purging it"
    exit 1
  fi
  rm -rf "$STATE"
  log "purged $STATE"
fi
log "stopped"
