#!/usr/bin/env bash
# Starts a single-node Kubernetes cluster on this machine, all on loopback, from binaries the user
# provides (this script never builds Kubernetes). See docs/kubernetes-test-cluster.md.
#
#   scripts/kube-single-node/start.sh [KUBE_BIN [STATE_DIR]]
#
# KUBE_BIN (argument or env): a directory holding kube-apiserver, kube-controller-manager,
#   kube-scheduler, kubelet and kubectl.
# STATE_DIR (argument or env KUBE_STATE, default /var/lib/kube-single-node): certificates,
#   configuration, etcd data, containerd's root and state, the kubelet's root, logs and pids.
# KUBE_KUBECONFIG: where the admin kubeconfig is written (default STATE_DIR/kubeconfig).
# KUBE_PAUSE_IMAGE: the CRI sandbox image name (default localhost/kube-single-node/pause:1).
# KUBE_POD_CIDR (default 10.88.0.0/16), KUBE_SERVICE_CIDR (default 10.96.0.0/16),
# KUBE_API_PORT (6443), KUBE_ETCD_PORT (2379), KUBE_ETCD_PEER_PORT (2380): loopback ports.
# KUBE_READY_TIMEOUT: seconds to wait for the node to be Ready (default 180).
# KUBE_POD_EGRESS: `drop` (default) drops every packet a pod sends (to the host, to other pods),
#   as a CNI that enforces a deny-all NetworkPolicy would; `open` lets them through, as a CNI
#   that ignores NetworkPolicy does. pod-egress.sh switches it on a running cluster.
#
# Needs root, and from the host: etcd, containerd (with containerd-shim-runc-v2), runc, ctr,
# the CNI plugins (bridge, host-local, loopback; Debian puts them in /usr/lib/cni, override with
# KUBE_CNI_BIN_DIR), openssl, a C compiler (for pause.c) and a Docker engine (to make the pause
# image). Every process it starts is recorded in STATE_DIR/pids; stop.sh stops them by those pids.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KUBE_BIN="${1:-${KUBE_BIN:-}}"
STATE="${2:-${KUBE_STATE:-/var/lib/kube-single-node}}"
KUBECONFIG_OUT="${KUBE_KUBECONFIG:-$STATE/kubeconfig}"
PAUSE_IMAGE="${KUBE_PAUSE_IMAGE:-localhost/kube-single-node/pause:1}"
POD_CIDR="${KUBE_POD_CIDR:-10.88.0.0/16}"
SERVICE_CIDR="${KUBE_SERVICE_CIDR:-10.96.0.0/16}"
API_PORT="${KUBE_API_PORT:-6443}"
ETCD_PORT="${KUBE_ETCD_PORT:-2379}"
ETCD_PEER_PORT="${KUBE_ETCD_PEER_PORT:-2380}"
CNI_BIN_DIR="${KUBE_CNI_BIN_DIR:-/usr/lib/cni}"
READY_TIMEOUT="${KUBE_READY_TIMEOUT:-180}"
BRIDGE=ksn0
POD_EGRESS="${KUBE_POD_EGRESS:-drop}"

log() { echo "kube-single-node: $*" >&2; }
die() { log "$*"; exit 1; }

[ -n "$KUBE_BIN" ] || die "usage: start.sh KUBE_BIN [STATE_DIR] (or set KUBE_BIN, KUBE_STATE)"
KUBE_BIN="$(cd "$KUBE_BIN" && pwd)"
[ "$(id -u)" -eq 0 ] || die "needs root (containerd, the kubelet, mounts, iptables)"
for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do
  [ -x "$KUBE_BIN/$b" ] || die "$KUBE_BIN/$b is missing or not executable"
done
for b in etcd containerd containerd-shim-runc-v2 runc ctr openssl cc docker iptables-save sysctl; do
  command -v "$b" >/dev/null 2>&1 || die "$b is not on PATH (see docs/kubernetes-test-cluster.md)"
done
for p in bridge host-local loopback; do
  [ -x "$CNI_BIN_DIR/$p" ] || die "CNI plugin $CNI_BIN_DIR/$p is missing (Debian: containernetworking-plugins)"
done

mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
PIDS="$STATE/pids"
LOGS="$STATE/logs"
PKI="$STATE/pki"
CONF="$STATE/conf"
HOST="$STATE/host"
SOCK="$STATE/containerd/containerd.sock"
KUBECTL="$KUBE_BIN/kubectl"

if [ -s "$PIDS" ]; then
  while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then
      die "$name (pid $pid) from an earlier start still runs; run stop.sh $STATE first"
    fi
  done <"$PIDS"
  rm -f "$PIDS"
fi
for port in "$API_PORT" "$ETCD_PORT" "$ETCD_PEER_PORT" 10250 10248 10257 10259; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    die "127.0.0.1:$port is already in use"
  fi
done
mkdir -p "$LOGS" "$PKI" "$CONF" "$HOST" "$STATE/containerd" "$STATE/kubelet" "$STATE/etcd" \
  "$STATE/cni/net.d" "$STATE/pause"
chmod 700 "$PKI" "$STATE/etcd"
echo "$KUBECTL" >"$STATE/kubectl.path"

# ---------------------------------------------------------------------------------------------
# Host state the kubelet and the CNI bridge change: saved once, restored by stop.sh. A saved copy
# left by a start whose stop never ran is kept (it holds the values from before that start).
SYSCTLS="vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
kernel.keys.root_maxkeys kernel.keys.root_maxbytes net.ipv4.ip_forward
net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables"
if [ ! -s "$HOST/sysctl.saved" ]; then
  : >"$HOST/sysctl.saved.tmp"
  for k in $SYSCTLS; do
    if v="$(sysctl -n "$k" 2>/dev/null)"; then
      printf '%s=%s\n' "$k" "$v" >>"$HOST/sysctl.saved.tmp"
    fi
  done
  mv "$HOST/sysctl.saved.tmp" "$HOST/sysctl.saved"
  for t in filter nat mangle raw; do
    iptables -t "$t" -S >"$HOST/iptables.$t.saved" 2>/dev/null || :
    if command -v ip6tables >/dev/null 2>&1; then
      ip6tables -t "$t" -S >"$HOST/ip6tables.$t.saved" 2>/dev/null || :
    fi
  done
  iptables-save >"$HOST/iptables-save.saved" 2>/dev/null || :
  if command -v ip6tables-save >/dev/null 2>&1; then
    ip6tables-save >"$HOST/ip6tables-save.saved" 2>/dev/null || :
  fi
  log "saved host sysctls and iptables rules in $HOST"
else
  log "keeping the host state saved earlier in $HOST (a stop did not restore it)"
fi

# ---------------------------------------------------------------------------------------------
# Certificates: one CA signs everything. Kept across restarts.
b64() { base64 -w0 <"$1"; }
sign() { # name subject ext-file-or-empty
  local name=$1 subj=$2 ext=${3:-}
  [ -s "$PKI/$name.crt" ] && return 0
  openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
  openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
  if [ -n "$ext" ]; then
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
      -CAcreateserial -days 365 -sha256 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
  else
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
      -CAcreateserial -days 365 -sha256 -out "$PKI/$name.crt" 2>/dev/null
  fi
  rm -f "$PKI/$name.csr"
}
if [ ! -s "$PKI/ca.crt" ]; then
  openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=kube-single-node-ca" -days 3650 -sha256 \
    -out "$PKI/ca.crt" 2>/dev/null
fi
SVC_IP="$(echo "$SERVICE_CIDR" | awk -F'[./]' '{print $1"."$2"."$3"."$4+1}')"
cat >"$PKI/client.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
EOF
cat >"$PKI/apiserver.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:$SVC_IP
EOF
cat >"$PKI/kubelet.ext" <<EOF
basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
EOF
sign apiserver "/CN=kube-apiserver" "$PKI/apiserver.ext"
sign kubelet-serving "/CN=localhost" "$PKI/kubelet.ext"
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$PKI/client.ext"
sign admin "/O=system:masters/CN=kube-single-node-admin" "$PKI/client.ext"
sign kubelet "/O=system:nodes/CN=system:node:localhost" "$PKI/client.ext"
sign scheduler "/CN=system:kube-scheduler" "$PKI/client.ext"
sign controller-manager "/CN=system:kube-controller-manager" "$PKI/client.ext"
if [ ! -s "$PKI/sa.key" ]; then
  openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
  openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
fi
chmod 600 "$PKI"/*.key

kubeconfig() { # file user-cert-name
  local file=$1 who=$2
  cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kube-single-node
  cluster:
    server: https://127.0.0.1:$API_PORT
    certificate-authority-data: $(b64 "$PKI/ca.crt")
users:
- name: $who
  user:
    client-certificate-data: $(b64 "$PKI/$who.crt")
    client-key-data: $(b64 "$PKI/$who.key")
contexts:
- name: kube-single-node
  context:
    cluster: kube-single-node
    user: $who
    namespace: default
current-context: kube-single-node
EOF
  chmod 600 "$file"
}
kubeconfig "$CONF/admin.kubeconfig" admin
kubeconfig "$CONF/kubelet.kubeconfig" kubelet
kubeconfig "$CONF/scheduler.kubeconfig" scheduler
kubeconfig "$CONF/controller-manager.kubeconfig" controller-manager
mkdir -p "$(dirname "$KUBECONFIG_OUT")"
cp "$CONF/admin.kubeconfig" "$KUBECONFIG_OUT"
chmod 600 "$KUBECONFIG_OUT"

# ---------------------------------------------------------------------------------------------
# Starting and recording processes. Each runs in its own session (setsid) so that it outlives
# this script; its pid goes to $PIDS.
start_proc() { # name command...
  local name=$1
  shift
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  local pid=$!
  echo "$name $pid" >>"$PIDS"
  log "started $name (pid $pid, log $LOGS/$name.log)"
}
alive() { # name
  local pid
  pid="$(awk -v n="$1" '$1 == n {print $2}' "$PIDS")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}
wait_for() { # name seconds command...
  local name=$1 secs=$2
  shift 2
  local i
  for ((i = 0; i < secs * 2; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! alive "$name"; then
      log "$name exited; last lines of $LOGS/$name.log:"
      tail -n 30 "$LOGS/$name.log" >&2
      die "$name did not start (stop.sh $STATE cleans up what did)"
    fi
    sleep 0.5
  done
  tail -n 30 "$LOGS/$name.log" >&2
  die "$name not ready after ${secs}s (stop.sh $STATE cleans up)"
}

# ---------------------------------------------------------------------------------------------
# containerd: its own config, root, state and socket, so it never meets Docker's containerd.
cat >"$STATE/cni/net.d/10-kube-single-node.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "kube-single-node",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "dataDir": "$STATE/cni/ipam"
      }
    }
  ]
}
EOF
cat >"$CONF/containerd.toml" <<EOF
version = 2
root = "$STATE/containerd/root"
state = "$STATE/containerd/state"
plugin_dir = ""
disabled_plugins = ["io.containerd.grpc.v1.cri.v1alpha2", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
oom_score = 0

[grpc]
  address = "$SOCK"

[ttrpc]
  address = ""

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$STATE/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_tls_streaming = false
  max_container_log_line_size = 16384

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    discard_unpacked_layers = false

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false

  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$STATE/cni/net.d"
    max_conf_num = 1

  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
EOF
# Pod-to-pod traffic crosses the bridge, and with br_netfilter it meets the host's FORWARD chain,
# whose policy Docker sets to DROP: let traffic between two pods of this bridge through (stop.sh
# removes the rule with the kubelet's).
if ! iptables -C FORWARD -i "$BRIDGE" -o "$BRIDGE" -m comment --comment kube-single-node -j ACCEPT \
  2>/dev/null; then
  iptables -I FORWARD 1 -i "$BRIDGE" -o "$BRIDGE" -m comment --comment kube-single-node -j ACCEPT
fi

HERE_EGRESS="$HERE/pod-egress.sh"
"$HERE_EGRESS" "$POD_EGRESS"

start_proc containerd containerd --config "$CONF/containerd.toml"
wait_for containerd 60 ctr --address "$SOCK" version

# The pause image: our own pause.c, static, in an image FROM scratch, imported into k8s.io under
# exactly the sandbox_image name above.
if ! ctr --address "$SOCK" -n k8s.io images ls -q | grep -qxF "$PAUSE_IMAGE"; then
  cc -static -O2 -o "$STATE/pause/pause" "$HERE/pause.c"
  printf 'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n' \
    >"$STATE/pause/Dockerfile"
  if ! docker build -q -t "$PAUSE_IMAGE" "$STATE/pause" >"$LOGS/pause-image.log" 2>&1; then
    cat "$LOGS/pause-image.log" >&2
    die "could not build the pause image with Docker"
  fi
  CONTAINERD_ADDRESS="$SOCK" "$HERE/import-image.sh" "$PAUSE_IMAGE"
fi

# ---------------------------------------------------------------------------------------------
# etcd, on loopback, plain HTTP (a throwaway test cluster on one machine).
start_proc etcd etcd --name kube-single-node --data-dir "$STATE/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "kube-single-node=http://127.0.0.1:$ETCD_PEER_PORT"
etcd_health_ok() {
  local body
  body="$( (exec 3<>"/dev/tcp/127.0.0.1/$ETCD_PORT" && printf 'GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && cat <&3) 2>/dev/null)"
  case "$body" in *'"health":"true"'*) return 0 ;; *) return 1 ;; esac
}
wait_for etcd 60 etcd_health_ok

# ---------------------------------------------------------------------------------------------
# The API server: advertises 127.0.0.1, so the endpoint reconciler is off (no Services work).
start_proc kube-apiserver "$KUBE_BIN/kube-apiserver" \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$API_PORT" \
  --endpoint-reconciler-type=none \
  --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --service-cluster-ip-range="$SERVICE_CIDR" \
  --authorization-mode=Node,RBAC \
  --enable-admission-plugins=NodeRestriction \
  --client-ca-file="$PKI/ca.crt" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
  --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
  --kubelet-certificate-authority="$PKI/ca.crt" \
  --kubelet-preferred-address-types=Hostname,InternalIP \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$PKI/sa.pub" \
  --service-account-signing-key-file="$PKI/sa.key" \
  --allow-privileged=false \
  --profiling=false \
  --v=1
KC=("$KUBECTL" --kubeconfig "$CONF/admin.kubeconfig")
wait_for kube-apiserver 120 "${KC[@]}" get --raw /readyz

start_proc kube-controller-manager "$KUBE_BIN/kube-controller-manager" \
  --kubeconfig="$CONF/controller-manager.kubeconfig" \
  --authentication-kubeconfig="$CONF/controller-manager.kubeconfig" \
  --authorization-kubeconfig="$CONF/controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10257 \
  --cert-dir="$STATE/controller-manager" \
  --leader-elect=false \
  --use-service-account-credentials=true \
  --service-account-private-key-file="$PKI/sa.key" \
  --root-ca-file="$PKI/ca.crt" \
  --cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
  --allocate-node-cidrs=false \
  --v=1
start_proc kube-scheduler "$KUBE_BIN/kube-scheduler" \
  --kubeconfig="$CONF/scheduler.kubeconfig" \
  --authentication-kubeconfig="$CONF/scheduler.kubeconfig" \
  --authorization-kubeconfig="$CONF/scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port=10259 \
  --leader-elect=false \
  --v=1

# ---------------------------------------------------------------------------------------------
# The kubelet: node "localhost" on 127.0.0.1, cgroupfs, allowed on cgroup v1.
cat >"$CONF/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$SOCK
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: $PKI/ca.crt
authorization:
  mode: Webhook
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
  imagefs.inodesFree: 1%
serializeImagePulls: false
registerNode: true
EOF
KUBELET_STARTED="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
start_proc kubelet "$KUBE_BIN/kubelet" \
  --config="$CONF/kubelet.yaml" \
  --kubeconfig="$CONF/kubelet.kubeconfig" \
  --root-dir="$STATE/kubelet" \
  --cert-dir="$STATE/kubelet/pki" \
  --hostname-override=localhost \
  --v=1
kubelet_healthy() {
  local body
  body="$( (exec 3<>/dev/tcp/127.0.0.1/10248 && printf 'GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3 && cat <&3) 2>/dev/null)"
  case "$body" in *$'\r\n\r\nok'*) return 0 ;; *) return 1 ;; esac
}
wait_for kubelet 60 kubelet_healthy
# Ready as posted by this kubelet (the node object may still say Ready from an earlier run).
node_ready() {
  local status
  status="$("${KC[@]}" get node localhost -o 'jsonpath={range .status.conditions[?(@.type=="Ready")]}{.status} {.lastHeartbeatTime}{end}')"
  [ "${status%% *}" = True ] && [[ ! "${status#* }" < "$KUBELET_STARTED" ]]
}
wait_for kubelet "$READY_TIMEOUT" node_ready
default_sa() { "${KC[@]}" -n default get serviceaccount default; }
wait_for kube-controller-manager 60 default_sa

log "node localhost is Ready; kubeconfig: $KUBECONFIG_OUT"
log "stop with: $HERE/stop.sh $STATE"
