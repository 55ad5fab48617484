#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kubelet (and the
# pause program of pod sandboxes, from the same source) and the etcd those
# pin (3.6; Debian's 3.4 makes every consistent list wait ~3 s for a progress notification) at a
# pinned Kubernetes version from the Go module proxy, plus kwok and helm, into a cache directory keyed
# by version, SeaweedFS's weed (an S3-compatible object store for testenv/objectstore.py) and
# Jaeger (the tracing backend of testenv/jaeger.py). A
# second run with the binaries present does nothing. Progress goes to stderr; stdout ends with
# kube_bin_dir=, kwok=, helm=, kstatus=, weed= and jaeger= lines.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.34.4}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
HELM_VERSION=${HELM_VERSION:-v3.20.2}
KSTATUS_VERSION=${KSTATUS_VERSION:-v0.37.2}
JAEGER_VERSION=${JAEGER_VERSION:-v1.75.0}
# SeaweedFS tags releases as "4.53", not semver, so the proxy serves pseudo-versions only (4.53 here)
SEAWEEDFS_VERSION=${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}
CACHE=${SEQFLOW_CACHE:-$HOME/.cache/seqflow}
BIN=$CACHE/k8s/$K8S_VERSION/bin
TOOLS=$CACHE/tools

export GOWORK=off GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false

build_kubernetes() {
  local k8s_bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)
  local missing=0
  for b in "${k8s_bins[@]}"; do [ -x "$BIN/$b" ] || missing=1; done
  [ $missing = 1 ] || return 0

  echo "building Kubernetes $K8S_VERSION into $BIN (first run only; takes a while)" >&2
  local work=$CACHE/k8s/$K8S_VERSION/module
  mkdir -p "$work" "$BIN"
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  local staging_version=v0.${K8S_VERSION#v1.}
  {
    echo "module seqflow.local/k8s-test-binaries"
    echo
    echo "go 1.24.0"
    echo
    echo "godebug default=go1.24"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    echo "replace ("
    grep '=> ./staging' "$gomod" | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } > "$work/go.mod"
  cat > "$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "go.etcd.io/etcd/server/v3"
)
GO
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  (cd "$work"
   go mod tidy
   go build -trimpath -tags selinux,notest,grpcnotrace \
     -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION" \
     -o "$BIN/" k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
       k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
   go build -trimpath -ldflags "-s -w" -o "$BIN/etcd" go.etcd.io/etcd/server/v3)
}

build_kubelet() {  # for the real node of testenv/realnode.py; the control plane does not need it
  [ -x "$BIN/kubelet" ] && [ -x "$BIN/pause" ] && return 0
  local work=$CACHE/k8s/$K8S_VERSION/module
  grep -q cmd/kubelet "$work/tools.go" || sed -i 's|\t_ "go.etcd.io|\t_ "k8s.io/kubernetes/cmd/kubelet"\n\t_ "go.etcd.io|' "$work/tools.go"
  echo "building kubelet $K8S_VERSION and pause into $BIN" >&2
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  (cd "$work"
   go mod tidy
   go build -trimpath -tags selinux,notest,grpcnotrace \
     -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor" \
     -o "$BIN/" k8s.io/kubernetes/cmd/kubelet)
  local source
  source=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
  gcc -static -Os -o "$BIN/pause" "$source/build/pause/linux/pause.c"
}

install_tool() {  # name version package
  local dest=$TOOLS/$1-$2
  [ -x "$dest/$1" ] && return 0
  echo "installing $1 $2" >&2
  mkdir -p "$dest"
  GOBIN=$dest go install -ldflags "-s -w" "$3@$2"
}

KSTATUS_SOURCE=$(dirname "$0")/kstatus/main.go
KSTATUS_DIR=$TOOLS/kstatus-$KSTATUS_VERSION-$(sha256sum "$KSTATUS_SOURCE" | cut -c1-8)

build_kstatus() {  # the kstatus library (Flux health checks) behind a small CLI: hack/kstatus
  local dest=$KSTATUS_DIR
  [ -x "$dest/kstatus" ] && return 0
  echo "building kstatus (cli-utils $KSTATUS_VERSION)" >&2
  local work=$dest/module
  mkdir -p "$work"
  cp "$KSTATUS_SOURCE" "$work/"
  printf 'module seqflow.local/kstatus\n\ngo 1.24.0\n\nrequire sigs.k8s.io/cli-utils %s\n' "$KSTATUS_VERSION" > "$work/go.mod"
  (cd "$work" && go mod tidy && go build -trimpath -ldflags "-s -w" -o "$dest/kstatus" .)
}

# `go install seaweedfs/weed@V` is refused (its go.mod has replace directives), so build it like
# Kubernetes: a wrapper module requiring it with its own replace directives copied in.
build_seaweedfs() {
  local dest=$TOOLS/weed-$SEAWEEDFS_VERSION
  [ -x "$dest/weed" ] && return 0
  echo "building SeaweedFS weed $SEAWEEDFS_VERSION into $dest (first run only)" >&2
  local work=$dest/module
  mkdir -p "$work"
  local gomod
  gomod=$(go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
  local go_version replaces
  go_version=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$gomod")
  # both `replace a => b v` and `replace ( ... )` forms; comments dropped
  replaces=$(sed 's|//.*||' "$gomod" | awk '
    /^replace[ \t]*\($/ { block = 1; next }
    block && /^\)/ { block = 0; next }
    block && NF { sub(/^[ \t]+/, ""); print "\t" $0; next }
    /^replace[ \t]/ { sub(/^replace[ \t]+/, ""); print "\t" $0 }')
  if grep -Eq '=>[[:space:]]*(\.|/)' <<<"$replaces"; then
    echo "seaweedfs $SEAWEEDFS_VERSION replaces modules with local paths, which a wrapper cannot copy:" >&2
    echo "$replaces" >&2
    return 1
  fi
  {
    echo "module seqflow.local/seaweedfs"
    echo
    echo "go $go_version"
    echo
    echo "require github.com/seaweedfs/seaweedfs $SEAWEEDFS_VERSION"
    if [ -n "$replaces" ]; then
      echo
      echo "replace ("
      echo "$replaces"
      echo ")"
    fi
  } > "$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/seaweedfs/seaweedfs/weed"\n' > "$work/tools.go"
  local commit=${SEAWEEDFS_VERSION##*-}
  (cd "$work"
   go mod tidy
   go build -trimpath -ldflags "-s -w -X github.com/seaweedfs/seaweedfs/weed/util/version.COMMIT=${commit:0:8}" \
     -o "$dest/weed" github.com/seaweedfs/seaweedfs/weed)
}

# Jaeger (v2, the OpenTelemetry Collector based all-in-one): the tracing backend of
# testenv/jaeger.py. A tool of a wrapper module, so that its own go.mod's directives apply.
build_jaeger() {
  local dest=$TOOLS/jaeger-$JAEGER_VERSION
  [ -x "$dest/jaeger" ] && return 0
  echo "building Jaeger $JAEGER_VERSION into $dest (first run only)" >&2
  local work=$dest/module
  mkdir -p "$work"
  (cd "$work"
   [ -f go.mod ] || go mod init seqflow.local/jaeger
   go get -tool "github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION"
   go build -trimpath -ldflags "-s -w" -o "$dest/jaeger" github.com/jaegertracing/jaeger/cmd/jaeger)
}

build_kubernetes
build_kubelet
install_tool kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok
install_tool helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm
build_kstatus
build_seaweedfs
build_jaeger
echo "kube_bin_dir=$BIN"
echo "kwok=$TOOLS/kwok-$KWOK_VERSION/kwok"
echo "helm=$TOOLS/helm-$HELM_VERSION/helm"
echo "kstatus=$KSTATUS_DIR/kstatus"
echo "weed=$TOOLS/weed-$SEAWEEDFS_VERSION/weed"
echo "jaeger=$TOOLS/jaeger-$JAEGER_VERSION/jaeger"
