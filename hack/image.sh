#!/usr/bin/env bash
# Builds the seqflow image from the Dockerfile with podman (`make image`), on a machine with no
# Docker daemon and, if need be, no container registry reachable.
#
#   hack/image.sh        localhost/seqflow:TAG and localhost/seqflow:dev
#   hack/image.sh all    also localhost/seqflow-handlers:TAG and :dev, the test image of
#                        tests/realpods/Dockerfile.handlers (FROM the seqflow image)
#
# With PAUSE=FILE (the pause program of pod sandboxes, built by hack/build-k8s.sh) it also
# makes localhost/pause:3.10-local of that one file, for the real node of testenv/realnode.py.
#
# TAG is the version in pyproject.toml, or $IMAGE_TAG. With SAVE_DIR=DIR, each image is also
# saved to DIR as an OCI archive naming both of its tags (seqflow.oci.tar,
# seqflow-handlers.oci.tar), for `ctr -n k8s.io images import --all-platforms FILE`; archives are
# cached by image ID and tag, so an unchanged image is not written again.
# Progress goes to stderr; stdout gets `image=REF` lines, and `seqflow_archive=PATH` and
# `handlers_archive=PATH` lines with SAVE_DIR.
#
# The base: docker.io/library/python:3.11-slim when it is present or can be pulled (20 s at
# most); otherwise a Debian bookworm rootfs with Python in a venv at /opt/venv, made with
# mmdebstrap once (cached as a tar keyed by BASE_VERSION) and imported as
# localhost/seqflow-base:bookworm-python. Once that local base exists, the registry is not tried
# again (`podman rmi` it to try again). SEQFLOW_IMAGE_BASE=REF builds FROM REF instead.
# SEQFLOW_DEBIAN_MIRROR (default http://deb.debian.org) is the mirror of the local base.
#
# Missing Debian packages (podman, runc, mmdebstrap...) are installed with apt-get. podman runs
# with its own containers.conf and storage.conf under $SEQFLOW_CACHE/podman (default
# ~/.cache/seqflow/podman); the only file it writes elsewhere is the blob digest cache that
# podman as root keeps in /var/lib/containers/cache. To use the images by hand:
#   export CONTAINERS_CONF=~/.cache/seqflow/podman/containers.conf
#   export CONTAINERS_STORAGE_CONF=~/.cache/seqflow/podman/storage.conf
# pip inside the build trusts the host's CA bundle (SEQFLOW_CA_BUNDLE, default
# /etc/ssl/certs/ca-certificates.crt; package traffic may go through a TLS-intercepting proxy);
# it is mounted for the build only, the image keeps its own.
set -euo pipefail

cd "$(dirname "$0")/.."
export HOME=${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}
CACHE=${SEQFLOW_CACHE:-$HOME/.cache/seqflow}
STATE=$CACHE/podman
PUBLIC_BASE=docker.io/library/python:3.11-slim
LOCAL_BASE=localhost/seqflow-base:bookworm-python
BASE_VERSION=bookworm-python3-venv-1 # change it when the mmdebstrap command below changes
VERSION=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n1)
TAG=${IMAGE_TAG:-$VERSION}
IMAGE=localhost/seqflow
HANDLERS_IMAGE=localhost/seqflow-handlers

say() { echo "image.sh: $*" >&2; }

case ${1:-} in
    "") handlers=false ;;
    all) handlers=true ;;
    *) say "unknown argument: $1 (see the top of $0)"; exit 2 ;;
esac

install_missing() {
    local missing=()
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    [ -d /usr/lib/cni ] || missing+=(containernetworking-plugins)
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    say "installing ${missing[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

# podman's own configuration. The cgroup and runtime settings suit a cgroup v1 (hybrid) host
# without CAP_SYS_RESOURCE (crun refuses hybrid mode; nofile is capped at 20000); containers use
# the host's network, so no CNI network or iptables rule is made.
configure_podman() {
    mkdir -p "$STATE/cni" "$STATE/build-home/.config/pip"
    cat >"$STATE/containers.conf" <<EOF
# Written by hack/image.sh: podman's configuration for building seqflow images.
[containers]
cgroupns = "private"
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "host"

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
tmp_dir = "$STATE/tmp"

[network]
network_backend = "cni"
network_config_dir = "$STATE/cni"
EOF
    cat >"$STATE/storage.conf" <<EOF
# Written by hack/image.sh: image storage of the seqflow builds.
[storage]
driver = "overlay"
graphroot = "$STATE/storage"
runroot = "$STATE/run"
EOF
    # Mounted over /root during the build (see build below).
    printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' \
        >"$STATE/build-home/.config/pip/pip.conf"
    export CONTAINERS_CONF=$STATE/containers.conf CONTAINERS_STORAGE_CONF=$STATE/storage.conf
}

build_local_base() {
    local tar=$CACHE/base-$BASE_VERSION.tar
    local mirror=${SEQFLOW_DEBIAN_MIRROR:-http://deb.debian.org}
    if [ ! -s "$tar" ]; then
        say "making a Debian base with mmdebstrap ($tar)"
        # shellcheck disable=SC2016 # the hook's "$1" (the rootfs) is for mmdebstrap to expand
        mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates,passwd \
            --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
            --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            --customize-hook='chroot "$1" python3 -m venv /opt/venv' \
            --format=tar --quiet bookworm "$tar.part" \
            "deb $mirror/debian bookworm main" \
            "deb $mirror/debian bookworm-updates main" \
            "deb $mirror/debian-security bookworm-security main" >&2
        mv "$tar.part" "$tar"
    fi
    say "importing $tar as $LOCAL_BASE"
    podman import --quiet \
        --change 'ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change "LABEL io.seqflow.base-version=$BASE_VERSION" \
        "$tar" "$LOCAL_BASE" >/dev/null
}

choose_base() { # sets base
    local local_version
    local_version=$(podman image inspect --format '{{index .Labels "io.seqflow.base-version"}}' \
        "$LOCAL_BASE" 2>/dev/null || true)
    if [ -n "${SEQFLOW_IMAGE_BASE:-}" ]; then
        base=$SEQFLOW_IMAGE_BASE
    elif podman image exists "$PUBLIC_BASE"; then
        base=$PUBLIC_BASE
    elif [ "$local_version" = "$BASE_VERSION" ]; then
        base=$LOCAL_BASE
    elif say "pulling $PUBLIC_BASE" && timeout -k 5 20 podman pull --quiet "$PUBLIC_BASE" >/dev/null; then
        base=$PUBLIC_BASE
    else
        say "cannot pull $PUBLIC_BASE: using a local Debian base"
        build_local_base
        base=$LOCAL_BASE
    fi
}

# podman build with the host's CA bundle over the image's and a home directory whose pip.conf
# names it over /root, for the RUN steps only. Both mount over paths that exist in the base: a
# mount point podman had to create would stay in the image as an empty file.
build() {
    local volumes=()
    local ca=${SEQFLOW_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
    if [ -f "$ca" ]; then
        volumes=(-v "$ca:/etc/ssl/certs/ca-certificates.crt:ro" -v "$STATE/build-home:/root:ro")
    fi
    podman build --network=host --layers "${volumes[@]}" "$@" >&2
}

# save KEY NAME REF... : an OCI archive SAVE_DIR/NAME.oci.tar of the image, naming every REF;
# prints KEY_archive=PATH. Made once per image ID and tag under $STATE/archives, then linked.
save() {
    local key=$1 name=$2 ref=$3 id
    shift 2
    id=$(podman image inspect --format '{{.Id}}' "$ref")
    local cached=$STATE/archives/$name/$TAG-${id:0:12}.oci.tar out=$SAVE_DIR/$name.oci.tar
    if [ ! -s "$cached" ]; then
        say "saving $* to $cached"
        local layout=$STATE/archives/$name/layout
        rm -rf "$STATE/archives/$name" && mkdir -p "$layout" # older archives of this name too
        podman push --quiet "$ref" "oci:$layout:$ref"
        # The other names: more entries for the same manifest in the layout's index.
        python3 - "$layout/index.json" "${@:2}" <<'EOF'
import json, sys
path, names = sys.argv[1], sys.argv[2:]
index = json.load(open(path))
first = index["manifests"][0]
for name in dict.fromkeys(names):
    if name == first["annotations"]["org.opencontainers.image.ref.name"]:
        continue
    annotations = {**first.get("annotations", {}), "org.opencontainers.image.ref.name": name}
    index["manifests"].append({**first, "annotations": annotations})
json.dump(index, open(path, "w"))
EOF
        tar -C "$layout" -cf "$cached.part" oci-layout index.json blobs
        mv "$cached.part" "$cached"
        rm -rf "$layout"
    fi
    mkdir -p "$SAVE_DIR"
    rm -f "$out"
    ln "$cached" "$out" 2>/dev/null || cp "$cached" "$out"
    echo "${key}_archive=$out"
}

# pause_image FILE: localhost/pause:3.10-local, a rootfs of one static program.
pause_image() {
    local root=$STATE/pause-root
    rm -rf "$root" && mkdir -p "$root"
    cp "$1" "$root/pause"
    tar -C "$root" -cf "$root.tar" pause
    podman import --quiet --change 'ENTRYPOINT ["/pause"]' "$root.tar" localhost/pause:3.10-local >/dev/null
    rm -rf "$root" "$root.tar"
    echo "image=localhost/pause:3.10-local"
    [ -z "${SAVE_DIR:-}" ] || save pause pause localhost/pause:3.10-local
}

install_missing
configure_podman
[ -z "${PAUSE:-}" ] || pause_image "$PAUSE"
choose_base
say "building $IMAGE:$TAG FROM $base"
build --build-arg "BASE=$base" -t "$IMAGE:$TAG" -t "$IMAGE:dev" -f Dockerfile .
echo "image=$IMAGE:$TAG"
echo "image=$IMAGE:dev"
[ -z "${SAVE_DIR:-}" ] || save seqflow seqflow "$IMAGE:$TAG" "$IMAGE:dev"

if $handlers; then
    say "building $HANDLERS_IMAGE:$TAG FROM $IMAGE:$TAG"
    build --build-arg "BASE=$IMAGE:$TAG" -t "$HANDLERS_IMAGE:$TAG" -t "$HANDLERS_IMAGE:dev" \
        -f tests/realpods/Dockerfile.handlers tests/realpods
    echo "image=$HANDLERS_IMAGE:$TAG"
    echo "image=$HANDLERS_IMAGE:dev"
    [ -z "${SAVE_DIR:-}" ] || save handlers seqflow-handlers "$HANDLERS_IMAGE:$TAG" "$HANDLERS_IMAGE:dev"
fi
