#!/usr/bin/env bash
# The compose stack on a machine that has Docker's packages but no image registry (this
# project's CI): what tests/deploy/test_compose_stack.py runs, and what a person runs there.
#
#   bash scripts/compose_stack.sh up [--profile P ...]   engine, base images, image builds, `up -d`
#   bash scripts/compose_stack.sh down                   `down -v`: containers and volumes
#   bash scripts/compose_stack.sh engine                 only install and start the engine (exit 3: it cannot run)
#   bash scripts/compose_stack.sh env                    the base images' variables, for your own compose calls
#   bash scripts/compose_stack.sh engine-stop            stop the Docker engine this script started
#
# With a registry, plain `docker compose up -d` does the same from the default base images.
# What it does beyond that:
#   - starts dockerd (as root) if no engine answers, installing docker.io, docker-compose and
#     debootstrap with apt where they are missing;
#   - builds stand-ins for python:3.11-slim and redis:7 from Debian packages
#     (scripts/docker_local_bases.sh) unless PYTHON_IMAGE and REDIS_IMAGE are set;
#   - serves the host pip's configured find-links folders (where a CPU build of torch may lie) on
#     a loopback port while the images build, as PIP_FIND_LINKS.
# Environment: COMPOSE_PROJECT_NAME (default ranking-gateway), GATEWAY_PORT, REPLICA_PORT,
# TRITON_GRPC_PORT, TRITON_METRICS_PORT, and compose.yaml's own variables.
set -euo pipefail
cd "$(dirname "$0")/.."

engine_pid_file=/tmp/ranking-gateway-dockerd.pid
export COMPOSE_PROJECT_NAME="${COMPOSE_PROJECT_NAME:-ranking-gateway}"

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

compose() {
    if docker compose version >/dev/null 2>&1; then docker compose "$@"; else docker-compose "$@"; fi
}

ensure_tools() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    { docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null; } || missing+=(docker-compose)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]} with apt" >&2
        as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

ensure_engine() {
    if docker info >/dev/null 2>&1; then return; fi
    if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
        echo "no Docker engine answers, and starting one needs root" >&2
        exit 3
    fi
    echo "starting dockerd" >&2
    as_root sh -c "nohup dockerd >/tmp/ranking-gateway-dockerd.log 2>&1 & echo \$! > $engine_pid_file"
    for _ in $(seq 60); do
        if docker info >/dev/null 2>&1; then return; fi
        sleep 1
    done
    echo "dockerd did not answer in 60 s: $(tail -3 /tmp/ranking-gateway-dockerd.log)" >&2
    exit 3
}

# PIP_FIND_LINKS for the image builds: the find-links folders of the host's pip (its
# PIP_FIND_LINKS, else its configuration), each served over loopback HTTP, since a host path means
# nothing inside a build; URLs pass through
file_servers=()
serve_find_links() {
    local entries entry folder port links=() preferred=39917
    entries="${PIP_FIND_LINKS:-$(python3 -m pip config get global.find-links 2>/dev/null || true)}"
    for entry in $entries; do
        folder="${entry#file://}"
        if [ -d "$folder" ]; then
            # a fixed port where it is free: the URL is a build argument, part of the layer cache's key
            port=$(python3 -c 'import socket, sys
s = socket.socket()
try: s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError: s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])' "$preferred")
            preferred=$((preferred + 1))
            python3 -m http.server --bind 127.0.0.1 --directory "$folder" "$port" >/dev/null 2>&1 &
            file_servers+=($!)
            links+=("http://127.0.0.1:$port/")
        elif [[ "$entry" == http://* || "$entry" == https://* ]]; then
            links+=("$entry")
        fi
    done
    if [ ${#file_servers[@]} -gt 0 ]; then
        trap 'kill "${file_servers[@]}" 2>/dev/null || true' EXIT
    fi
    export PIP_FIND_LINKS="${links[*]}"
    echo "image builds get PIP_FIND_LINKS=${PIP_FIND_LINKS:-(none)} (from the host's: ${entries:-none})" >&2
}

# PYTHON_IMAGE and REDIS_IMAGE: as set, else stand-ins built from Debian packages
base_images() {
    if [ -z "${PYTHON_IMAGE:-}" ] || [ -z "${REDIS_IMAGE:-}" ]; then
        local line
        while read -r line; do export "${line?}"; done < <(bash scripts/docker_local_bases.sh)
    fi
}

up() {
    ensure_tools
    ensure_engine
    base_images
    serve_find_links
    local started=$SECONDS
    compose "$@" build
    echo "images built in $((SECONDS - started)) s" >&2
    started=$SECONDS
    compose "$@" up -d
    echo "stack up in $((SECONDS - started)) s" >&2
}

case "${1:-}" in
    up) shift; up "$@" ;;
    engine) ensure_tools; ensure_engine ;;
    env) ensure_tools; ensure_engine; base_images; echo "PYTHON_IMAGE=$PYTHON_IMAGE"; echo "REDIS_IMAGE=$REDIS_IMAGE" ;;
    down) shift; compose --profile cpu --profile replica --profile gpu "$@" down -v --remove-orphans ;;
    engine-stop)
        if [ -f "$engine_pid_file" ]; then
            as_root kill "$(cat "$engine_pid_file")" 2>/dev/null || true
            rm -f "$engine_pid_file"
        fi ;;
    *) echo "usage: bash scripts/compose_stack.sh up [--profile P ...] | down | engine | env | engine-stop" >&2; exit 2 ;;
esac
