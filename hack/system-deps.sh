#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need when they are missing: MariaDB
# (mariadb-server), openssl, and promtool (prometheus) to check the metrics exposition. Go is expected on the machine; etcd and Kubernetes are built
# from the Go module proxy by hack/build-k8s.sh.
set -euo pipefail

missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v promtool >/dev/null || missing+=(prometheus)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
