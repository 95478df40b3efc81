#!/usr/bin/env bash
# Whether the single-node cluster's pods can send anything: `drop` (every packet a pod sends is
# dropped, as under an enforced deny-all NetworkPolicy) or `open` (as on a cluster whose network
# plugin ignores NetworkPolicy). warren checks this in every pod before it uses it and refuses
# an open one, so `open` is how that refusal is seen.
#
#   scripts/kube-single-node/pod-egress.sh drop|open
#
# The rules carry the comment kube-single-node-egress; stop.sh removes them with the others.
set -euo pipefail

BRIDGE=ksn0
MODE="${1:-}"
TAG=kube-single-node-egress
case "$MODE" in
  drop)
    for chain in INPUT FORWARD; do
      iptables -C "$chain" -i "$BRIDGE" -m comment --comment "$TAG" -j DROP 2>/dev/null \
        || iptables -I "$chain" 1 -i "$BRIDGE" -m comment --comment "$TAG" -j DROP
    done
    ;;
  open)
    for chain in INPUT FORWARD; do
      while iptables -D "$chain" -i "$BRIDGE" -m comment --comment "$TAG" -j DROP 2>/dev/null; do :; done
    done
    ;;
  *)
    echo "usage: pod-egress.sh drop|open" >&2
    exit 2
    ;;
esac
echo "kube-single-node: pod egress $MODE" >&2
