#!/usr/bin/env bash
# Builds, from Debian's packages alone, stand-ins for the base images compose.yaml pulls by
# default (python:3.11-slim, redis:7), for a machine that reaches Debian's archive and PyPI but
# no image registry, as this project's CI does. Cached: an image that exists is kept.
#   bash scripts/docker_local_bases.sh        then use the env it prints (PYTHON_IMAGE, REDIS_IMAGE)
# Needs root, a running Docker engine, and debootstrap.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=ranking-gateway-local
debian="$prefix/debian:bookworm"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

have() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have "$debian"; then
    root=$(mktemp -d)
    echo "debootstrap bookworm (minbase) -> $debian" >&2
    debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
    tar -C "$root" -c . | docker import - "$debian" >/dev/null
    rm -rf "$root"
fi
# the host pip's CA bundle (else the system's): the python stand-in's pip trusts the same
ca_bundle="${HOST_CA_BUNDLE:-$(python3 -m pip config get global.cert 2>/dev/null || echo /etc/ssl/certs/ca-certificates.crt)}"
context=$(mktemp -d)
trap 'rm -rf "$context" "${root:-}"' EXIT
cp docker/local-base/*.Dockerfile "$context/"
cp "$ca_bundle" "$context/host-ca-bundle.crt"
for base in python:3.11 redis:7; do
    name="${base%%:*}"
    if ! have "$prefix/$base"; then
        echo "building $prefix/$base from Debian packages" >&2
        docker build -q --network host --build-arg DEBIAN_IMAGE="$debian" \
            -t "$prefix/$base" -f "$context/$name.Dockerfile" "$context" >/dev/null
    fi
done
echo "PYTHON_IMAGE=$prefix/python:3.11"
echo "REDIS_IMAGE=$prefix/redis:7"
