#!/usr/bin/env bash
# Lay out a Kubernetes kit, as ../shared/k8s holds it, from official release binaries: for CI runners
# that have no ../shared (GitHub). The start scripts are the kit's own (tests/k8s-kit/reference);
# the binaries are Kubernetes v1.36.2's from dl.k8s.io, each checked against the SHA-256 published
# beside it, and crictl from cri-tools' release (checked the same way) behind a small `crilite`
# that answers the one call the kit's down.sh makes (`crilite -e ENDPOINT rmp-all`).
#   usage: assemble-from-release.sh DEST      then: CMB_K8S_KIT=DEST make test
set -euo pipefail
dest=${1:?usage: assemble-from-release.sh DEST}
version=${K8S_VERSION:-v1.36.2}
crictl_version=${CRICTL_VERSION:-v1.36.0}
arch=amd64
k8s_base=${K8S_RELEASE_URL:-https://dl.k8s.io/release}
crictl_base=${CRICTL_RELEASE_URL:-https://github.com/kubernetes-sigs/cri-tools/releases/download}
here=$(cd "$(dirname "$0")" && pwd)
for tool in curl sha256sum zstd tar; do
  command -v "$tool" >/dev/null || { echo "assemble-from-release: $tool is missing (apt-get install curl zstd)" >&2; exit 1; }
done
mkdir -p "$dest/bin"
rm -rf "$dest/reference" && cp -r "$here/reference" "$dest/reference"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fetch() { curl -fsSL --retry 3 -o "$2" "$1"; }
: > "$work/SHA256SUMS"
for name in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl; do
  url=$k8s_base/$version/bin/linux/$arch/$name
  fetch "$url" "$work/$name"
  fetch "$url.sha256" "$work/$name.sha256"
  echo "$(cat "$work/$name.sha256")  $work/$name" | sha256sum -c --quiet - || { echo "checksum mismatch: $name" >&2; exit 1; }
done
tarball=crictl-$crictl_version-linux-$arch.tar.gz
url=$crictl_base/$crictl_version/$tarball
fetch "$url" "$work/$tarball"
fetch "$url.sha256" "$work/$tarball.sha256"
echo "$(cut -d' ' -f1 "$work/$tarball.sha256")  $work/$tarball" | sha256sum -c --quiet - || { echo "checksum mismatch: crictl" >&2; exit 1; }
tar -xzf "$work/$tarball" -C "$work" crictl
cat > "$work/crilite" <<'SH'
#!/bin/sh
# crilite for a kit laid out from release binaries: down.sh's `crilite -e ENDPOINT rmp-all` through crictl
endpoint=unix://${CONTAINERD_ADDRESS:-}
if [ "${1:-}" = -e ]; then endpoint=$2; shift 2; fi
crictl="$(dirname "$0")/crictl"
case "${1:-}" in
  rmp-all) exec "$crictl" --runtime-endpoint "$endpoint" rmp --all --force ;;
  pods) exec "$crictl" --runtime-endpoint "$endpoint" pods ;;
  version) exec "$crictl" --runtime-endpoint "$endpoint" version ;;
  *) echo "crilite: only rmp-all, pods and version here" >&2; exit 2 ;;
esac
SH
for name in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl crictl crilite; do
  chmod 755 "$work/$name"
  zstd -q -f -3 "$work/$name" -o "$dest/bin/$name.zst"
  echo "$(sha256sum < "$work/$name" | cut -d' ' -f1)  $name" >> "$work/SHA256SUMS"
done
mv "$work/SHA256SUMS" "$dest/bin/SHA256SUMS"
echo "kit for Kubernetes $version (crictl $crictl_version) in $dest" >&2
