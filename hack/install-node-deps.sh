#!/usr/bin/env bash
# Install the local node's parts (porter_dev.node, porter_dev.images) from package registries only: containerd + runc,
# the CNI bridge plugins, iptables for kube-proxy, debootstrap + buildah (Debian), and kubelet, kube-scheduler and
# kube-proxy built from the Kubernetes Go modules. hack/install-deps.sh (make deps, make test) calls it for the packages.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

node_packages=()
for pair in containerd:containerd runc:runc /usr/lib/cni/bridge:containernetworking-plugins iptables:iptables \
            buildah:buildah debootstrap:debootstrap; do
  probe=${pair%%:*} package=${pair#*:}
  if [ "${probe#/}" != "$probe" ]; then [ -x "$probe" ] && continue; else command -v "$probe" >/dev/null 2>&1 && continue; fi
  node_packages+=("$package")
done
if [ ${#node_packages[@]} -gt 0 ]; then
  echo "installing ${node_packages[*]} from Debian"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${node_packages[@]}" >/dev/null \
    || { as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${node_packages[@]}" >/dev/null; }
  # Debian's containerd service is not ours: the node runs its own containerd with its own socket and state.
  as_root systemctl disable --now containerd >/dev/null 2>&1 || true
fi
# `install-node-deps.sh packages` stops here: hack/install-deps.sh builds the binaries beside its other work.
[ "${1:-}" = packages ] && exit 0
bash hack/build-k8s.sh node >/dev/null
echo "node dependencies ready"
