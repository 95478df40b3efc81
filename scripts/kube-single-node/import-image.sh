#!/usr/bin/env bash
# Copies images from the local Docker engine into the single-node cluster's containerd, in the
# k8s.io namespace the kubelet uses (pods then run them with imagePullPolicy: Never).
#
#   scripts/kube-single-node/import-image.sh IMAGE [IMAGE...]
#
# The containerd socket: CONTAINERD_ADDRESS, or STATE_DIR/containerd/containerd.sock with
# STATE_DIR from KUBE_STATE (default /var/lib/kube-single-node).
# A name without a registry (warren-sandbox:e2e) lands as docker.io/library/warren-sandbox:e2e,
# which is the name the kubelet asks for when a pod says image: warren-sandbox:e2e.
# KUBE_IMAGE_AS=NAME also tags the (single) imported image under NAME, e.g. to serve a pod that
# asks for warren-sandbox:latest from warren-sandbox:e2e.
set -euo pipefail

STATE="${KUBE_STATE:-/var/lib/kube-single-node}"
ADDRESS="${CONTAINERD_ADDRESS:-$STATE/containerd/containerd.sock}"
[ "$#" -ge 1 ] || { echo "usage: import-image.sh IMAGE [IMAGE...]" >&2; exit 2; }
[ -S "$ADDRESS" ] || { echo "import-image: no containerd socket at $ADDRESS" >&2; exit 1; }

# containerd's reference for a Docker short name.
normalize() {
  local name=$1 first=${1%%/*}
  case "$name" in
    */*)
      case "$first" in
        *.* | *:* | localhost) ;;
        *) name="docker.io/$name" ;;
      esac
      ;;
    *) name="docker.io/library/$name" ;;
  esac
  case "${name##*/}" in
    *:* | *@*) ;;
    *) name="$name:latest" ;;
  esac
  echo "$name"
}

for image in "$@"; do
  docker image inspect "$image" >/dev/null
  echo "import-image: $image -> $(normalize "$image")" >&2
  docker save "$image" | ctr --address "$ADDRESS" -n k8s.io images import -
done
if [ -n "${KUBE_IMAGE_AS:-}" ]; then
  [ "$#" -eq 1 ] || { echo "import-image: KUBE_IMAGE_AS needs exactly one image" >&2; exit 2; }
  target="$(normalize "$KUBE_IMAGE_AS")"
  ctr --address "$ADDRESS" -n k8s.io images rm "$target" >/dev/null 2>&1 || :
  ctr --address "$ADDRESS" -n k8s.io images tag "$(normalize "$1")" "$target"
  echo "import-image: tagged $target" >&2
fi
