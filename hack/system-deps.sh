#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need when they are missing: MariaDB
# (mariadb-server), openssl, promtool (prometheus) to check the metrics exposition, Chromium for
# the dashboard's browser tests, and as
# root, containerd, runc, the CNI plugins and iptables for the real node. Go is expected on the machine; etcd and Kubernetes are built
# from the Go module proxy by hack/build-k8s.sh.
set -euo pipefail

missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v promtool >/dev/null || missing+=(prometheus)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
command -v chromium >/dev/null || missing+=(chromium)  # the dashboard's browser tests (Playwright drives it)
# The real node of the real-pod tests (testenv/realnode.py), which run as root only.
if [ "$(id -u)" -eq 0 ]; then
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v iptables-save >/dev/null || missing+=(iptables)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
