#!/bin/bash
# Builds a real kube-apiserver, kube-controller-manager (v1.20.2) and etcd for local tests of the EKS path,
# from Debian bookworm's `kubernetes` source package with Debian's Go 1.19 and etcd 3.4.
# Nothing is installed system-wide: everything lands under WORKDIR (binaries in WORKDIR/bin).
# Copied from the workplace's shared tools (shared/tools/k8s-local/build.sh) so a fresh
# clone can build it; scripts/setup.sh runs it once.
# Usage: k8s-local.sh WORKDIR   (about 3 GiB of disk, 8-11 min on 2 cores; skips work already done)
set -euo pipefail
W=${1:?usage: build.sh WORKDIR}
mkdir -p "$W"/{apt/lists/partial,apt/cache/archives/partial,debs,root,bin}
W=$(cd "$W" && pwd); cd "$W"
if [ -x bin/kube-apiserver ] && [ -x bin/kube-controller-manager ] && [ -x bin/etcd ]; then echo "already built: $W/bin"; exit 0; fi
# Source entries: the machine's own Debian sources, as deb-src.
sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > apt/src.sources
APTO="-o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=$W/apt/srcparts -o Dir::State::Lists=$W/apt/lists -o Dir::Cache=$W/apt/cache"
mkdir -p apt/srcparts && cp apt/src.sources apt/srcparts/debian.sources
apt-get $APTO update -qq
(cd apt && apt-get $APTO source --download-only kubernetes)      # full upstream tree incl. vendor/
(cd debs && apt-get download golang-1.19-go golang-1.19-src etcd-server golang-github-modern-go-reflect2-dev)
for f in debs/*.deb; do dpkg -x "$f" root; done
[ -d kubernetes-1.20.2 ] || tar xzf apt/kubernetes_*.orig.tar.gz
K=$W/kubernetes-1.20.2
# The vendored reflect2 1.0.1 crashes at run time under Go >= 1.18: use Debian's 1.0.2.
V=$K/vendor/github.com/modern-go/reflect2
if [ ! -f "$V/.patched" ]; then
  cp "$V/LICENSE" "$W/reflect2.LICENSE"; rm -rf "$V"; mkdir -p "$V"
  cp -r root/usr/share/gocode/src/github.com/modern-go/reflect2/* "$V/"; rm -f "$V/go.mod"
  mv "$W/reflect2.LICENSE" "$V/LICENSE"; touch "$V/.patched"
fi
mkdir -p "$K/.go/src/k8s.io" && ln -sfn ../../.. "$K/.go/src/k8s.io/kubernetes"   # 1.20 builds in GOPATH mode
export GOROOT=$W/root/usr/lib/go-1.19 PATH=$W/root/usr/lib/go-1.19/bin:$PATH GOPATH=$K/.go GOCACHE=$W/gocache \
       GOPROXY=off GO111MODULE=off CGO_ENABLED=0 HOME=$W
cd "$K/.go/src/k8s.io/kubernetes"
# pkg/generated/openapi/zz_generated.openapi.go is not shipped in the source package: generate it.
go build -o "$W/bin/openapi-gen" ./vendor/k8s.io/kube-openapi/cmd/openapi-gen
DIRS=$(find -H . -not \( \( -path './_*' -o -path './.*' -o -path ./vendor \) -prune \) -type f -name '*.go' \
  | xargs grep -l '+k8s:openapi-gen=' | xargs -n1 dirname | sed 's|^./staging/src/|vendor/|; s|^\./||' \
  | grep -v -E '^vendor/k8s.io/(code-generator|sample-apiserver)/' | sort -u | sed 's|^|k8s.io/kubernetes/|' | paste -sd,)
"$W/bin/openapi-gen" --logtostderr -i "$DIRS" -p k8s.io/kubernetes/pkg/generated/openapi -O zz_generated.openapi \
  -h hack/boilerplate/boilerplate.generatego.txt -r "$W/openapi-violations.report"
P=k8s.io/kubernetes/vendor/k8s.io
LDF="-s -w -X $P/component-base/version.gitVersion=v1.20.2 -X $P/component-base/version.gitMajor=1 -X $P/component-base/version.gitMinor=20 -X $P/client-go/pkg/version.gitVersion=v1.20.2"
go build -ldflags "$LDF" -o "$W/bin/kube-apiserver" ./cmd/kube-apiserver
go build -ldflags "$LDF" -o "$W/bin/kube-controller-manager" ./cmd/kube-controller-manager
cp "$W/root/usr/bin/etcd" "$W/bin/etcd"
ls -la "$W/bin"
