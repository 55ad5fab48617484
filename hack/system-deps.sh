#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo run for real when they are missing:
# etcd (etcd-server) and MariaDB (mariadb-server). Go is expected on the machine.
set -euo pipefail

missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
