#!/usr/bin/env bash
# Builds a real kube-apiserver for the Kubernetes discovery end-to-end test
# (discovery/kube_e2e_test.go), from k8s.io/kubernetes on the Go module proxy: no
# prebuilt download. It takes several CPU-minutes cold (12 on this project's 2-core
# machine), so the binary is kept and reused:
#   ${SLUICE_TOOLS:-$HOME/.cache/sluice}/kube-apiserver-VERSION
# It prints the binary's path. kube-apiserver v1.37 runs on Debian's etcd 3.4.
set -euo pipefail
VERSION=${KUBE_VERSION:-v1.37.2}
STAGING=v0.${VERSION#v1.} # the k8s.io/* staging modules: v1.37.2 → v0.37.2
dir=${SLUICE_TOOLS:-$HOME/.cache/sluice}
bin=$dir/kube-apiserver-$VERSION
if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$dir"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
printf 'module sluice-kube-apiserver\n\ngo 1.26.0\n\nrequire k8s.io/kubernetes %s\n' "$VERSION" > go.mod
# k8s.io/kubernetes replaces its staging modules with local directories that its module
# zip leaves out: point them at the published versions instead.
gomod=$(go mod download -json "k8s.io/kubernetes@$VERSION" | sed -n 's/.*"GoMod": "\(.*\)",*/\1/p')
for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod"); do
  echo "replace $m => $m $STAGING" >> go.mod
done
printf 'package main\n\nimport _ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n\nfunc main() {}\n' > main.go
go mod tidy >&2
echo "kube-apiserver.sh: building kube-apiserver $VERSION (several minutes)" >&2
go build -trimpath -o "$bin.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$bin.tmp" "$bin"
echo "$bin"
