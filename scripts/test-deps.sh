#!/usr/bin/env bash
# Installs what Sluice's end-to-end tests need when it is missing and this machine can:
# Debian's prometheus (real Prometheus server), chromium (headless web-view test),
# systemd (systemd-analyze checks the unit in deploy/systemd), etcd-server (real etcd for
# the replicated control plane and the Kubernetes discovery tests), dnsmasq-base (DNS
# discovery), and a kube-apiserver built from the Go module proxy
# (scripts/kube-apiserver.sh, kept between runs).
# Where it can't, it says so loudly; the affected tests then skip with a message, except
# under CI (CI=true), where they fail instead.
set -u
need=()
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || need+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)   # deploy: systemd-analyze verify/security
command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || need+=(etcd-server)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
if [ -z "${SLUICE_KUBE_APISERVER:-}" ] && command -v go >/dev/null 2>&1; then
  bash "$(dirname "$0")/kube-apiserver.sh" >/dev/null || echo "test-deps: COULD NOT BUILD kube-apiserver: the Kubernetes discovery e2e test will SKIP (fail under CI)" >&2
fi
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
echo "test-deps: installing ${need[*]} (Debian packages) for the end-to-end tests" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else SUDO="false"; fi
fi
if command -v apt-get >/dev/null 2>&1 && \
   $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1 && \
   $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
  echo "test-deps: installed ${need[*]}" >&2
  exit 0
fi
echo "##########################################################################" >&2
echo "test-deps: COULD NOT INSTALL ${need[*]}: the tests that need them will SKIP" >&2
echo "##########################################################################" >&2
exit 0
