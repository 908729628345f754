#!/usr/bin/env bash
# Local test bed for kb's end-to-end tests (Debian 12, root, no Docker Hub).
#
#   bash scripts/testbed.sh [up]   install/start everything, build+push images (idempotent, fast when up)
#   bash scripts/testbed.sh down   stop the registry and the dockerd this script started (data kept)
#   bash scripts/testbed.sh env    print the env file (source it: eval "$(bash scripts/testbed.sh env)")
#
# State lives in $KB_TESTBED_DIR (default <repo>/.testbed):
#   env, versions.yaml, versions-bump.yaml, registry.yml, registry/, registry.pid, registry.log,
#   docker.sock, docker-data/, docker-exec/, dockerd.pid, dockerd.log, build/, lock
# Environment: KB_TESTBED_DIR, KB_REGISTRY_PORT (default 5000), DOCKER_HOST (used if it answers).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${KB_TESTBED_DIR:-$REPO/.testbed}"
REG_PORT="${KB_REGISTRY_PORT:-5000}"
REGISTRY="127.0.0.1:${REG_PORT}"
CMD="${1:-up}"

REDIS1="$REGISTRY/kb/redis:7.0-kb1"
REDIS2="$REGISTRY/kb/redis:7.0-kb2"
HAPROXY="$REGISTRY/kb/haproxy:2.6-kb1"
BUSYBOX="$REGISTRY/kb/busybox:1-kb1"

PACKAGES=(docker.io docker-registry redis-server redis-sentinel redis-tools haproxy busybox-static
  iproute2 etcd-server etcd-client curl
  ansible openssh-server openssh-client python3-docker)

log() { echo "testbed: $*" >&2; }
die() { echo "testbed: ERROR: $*" >&2; exit 1; }

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"

# Unix socket paths are limited to 107 bytes; dockerd's managed containerd puts its socket at
# <exec-root>/containerd/containerd.sock. Fall back to a short path under /run for deep DIRs.
PRIVATE_SOCK="$DIR/docker.sock"
EXEC_ROOT="$DIR/docker-exec"
if (( ${#DIR} > 60 )); then
  short="/run/kb-testbed-$(printf '%s' "$DIR" | cksum | cut -d' ' -f1)"
  PRIVATE_SOCK="$short/docker.sock"
  EXEC_ROOT="$short/exec"
fi
PRIVATE_HOST="unix://$PRIVATE_SOCK"

pid_alive() { # pidfile [comm]: the pid in the file is alive (and, if given, runs that command)
  local pid
  [[ -s "$1" ]] || return 1
  pid="$(head -n1 "$1" 2>/dev/null | tr -dc '0-9')"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  [[ -z "${2:-}" || "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$2" ]]
}

docker_answers() { # host
  DOCKER_HOST="$1" timeout 10 docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

registry_answers() {
  curl -fsS -m 3 -o /dev/null "http://$REGISTRY/v2/" 2>/dev/null
}

# ---------------------------------------------------------------------------------------------
ensure_packages() {
  local missing=() p st
  for p in "${PACKAGES[@]}"; do
    st="$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)"
    [[ "$st" == "install ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  log "installing Debian packages: ${missing[*]}"
  # Keep package maintainer scripts from starting services on default ports.
  local added_policy=0
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  local ok=0
  if compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
    apt-get install -y -q --no-install-recommends "${missing[@]}" >"$DIR/apt.log" 2>&1 && ok=1
  fi
  if ((ok == 0)); then
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$DIR/apt.log" 2>&1 && ok=1
  fi
  ((added_policy)) && rm -f /usr/sbin/policy-rc.d
  ((ok)) || { tail -n 30 "$DIR/apt.log" >&2; die "apt-get install failed (log: $DIR/apt.log)"; }
}

# Stop daemons that Debian's init scripts may have started on default ports (6379, 26379, 2379,
# 5000, ...). Only processes recorded in the packages' own pid files are touched.
stop_default_services() {
  local svc pf
  for svc in redis-server:/run/redis/redis-server.pid redis-sentinel:/run/redis/redis-sentinel.pid \
    haproxy:/run/haproxy.pid etcd:/run/etcd.pid docker-registry:/run/docker-registry.pid; do
    pf="${svc#*:}"; svc="${svc%%:*}"
    if pid_alive "$pf"; then
      log "stopping package-started $svc (pid $(head -n1 "$pf"))"
      if [[ -x "/etc/init.d/$svc" ]]; then
        "/etc/init.d/$svc" stop >/dev/null 2>&1 || true
      fi
      if pid_alive "$pf"; then kill "$(head -n1 "$pf" | tr -dc '0-9')" 2>/dev/null || true; fi
    fi
  done
}

# ---------------------------------------------------------------------------------------------
DOCKER_URI=""
ensure_docker() {
  if [[ -n "${DOCKER_HOST:-}" && "${DOCKER_HOST}" != "$PRIVATE_HOST" ]]; then
    if docker_answers "$DOCKER_HOST"; then DOCKER_URI="$DOCKER_HOST"; return 0; fi
    log "DOCKER_HOST=$DOCKER_HOST does not answer; trying others"
  fi
  if [[ -S /var/run/docker.sock ]] && docker_answers unix:///var/run/docker.sock; then
    DOCKER_URI=unix:///var/run/docker.sock; return 0
  fi
  DOCKER_URI="$PRIVATE_HOST"
  if [[ -S "$PRIVATE_SOCK" ]] && docker_answers "$PRIVATE_HOST"; then return 0; fi

  local dpid=""
  if pid_alive "$DIR/dockerd.pid" dockerd; then
    dpid="$(head -n1 "$DIR/dockerd.pid" | tr -dc '0-9')"
    log "dockerd (pid $(head -n1 "$DIR/dockerd.pid")) is running but not answering yet; waiting"
  else
    command -v dockerd >/dev/null || die "dockerd not found (package docker.io)"
    mkdir -p "$DIR/docker-data" "$EXEC_ROOT" "$(dirname "$PRIVATE_SOCK")"
    rm -f "$PRIVATE_SOCK" "$DIR/dockerd.pid"
    log "starting dockerd on $PRIVATE_HOST"
    setsid nohup dockerd \
      --host "$PRIVATE_HOST" \
      --data-root "$DIR/docker-data" \
      --exec-root "$EXEC_ROOT" \
      --pidfile "$DIR/dockerd.pid" \
      --storage-driver overlay2 \
      --bridge=none --iptables=false \
      --log-level warn \
      >>"$DIR/dockerd.log" 2>&1 </dev/null 9>&- &
    dpid=$!
  fi
  local i
  for ((i = 0; i < 120; i++)); do
    if [[ -S "$PRIVATE_SOCK" ]] && docker_answers "$PRIVATE_HOST"; then return 0; fi
    kill -0 "$dpid" 2>/dev/null || { tail -n 30 "$DIR/dockerd.log" >&2 || true; die "dockerd exited (log: $DIR/dockerd.log)"; }
    sleep 0.5
  done
  tail -n 30 "$DIR/dockerd.log" >&2 || true
  die "dockerd did not answer on $PRIVATE_HOST within 60 s (log: $DIR/dockerd.log)"
}

# ---------------------------------------------------------------------------------------------
ensure_registry() {
  registry_answers && return 0
  command -v docker-registry >/dev/null || die "docker-registry not found (package docker-registry)"
  mkdir -p "$DIR/registry"
  cat >"$DIR/registry.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/registry
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
  if pid_alive "$DIR/registry.pid" docker-registry; then
    log "registry (pid $(head -n1 "$DIR/registry.pid")) running but not answering; restarting it"
    kill "$(head -n1 "$DIR/registry.pid" | tr -dc '0-9')" 2>/dev/null || true
    sleep 0.5
  fi
  log "starting docker-registry on $REGISTRY"
  setsid nohup docker-registry serve "$DIR/registry.yml" >>"$DIR/registry.log" 2>&1 </dev/null 9>&- &
  echo $! >"$DIR/registry.pid"
  local i
  for ((i = 0; i < 60; i++)); do
    registry_answers && return 0
    pid_alive "$DIR/registry.pid" docker-registry || break
    sleep 0.25
  done
  tail -n 20 "$DIR/registry.log" >&2 || true
  die "registry did not answer on http://$REGISTRY/v2/ (log: $DIR/registry.log)"
}

# ---------------------------------------------------------------------------------------------
# Image building: busybox-static + binaries + their ldd libraries, imported with `docker import`.
in_registry() { # image ref REGISTRY/name:tag
  local ref="${1#"$REGISTRY"/}"
  local name="${ref%:*}" tag="${ref##*:}"
  curl -fsS -m 5 -o /dev/null -I \
    -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
    -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "http://$REGISTRY/v2/$name/manifests/$tag" 2>/dev/null
}

# copy a host file (following symlinks) to the same path inside the rootfs, plus its libraries
add_binary() { # rootfs src [dest]
  local root="$1" src="$2" dest="${3:-$2}" lib
  install -D -m 755 "$(readlink -f "$src")" "$root$dest"
  while read -r lib; do
    [[ -n "$lib" && -e "$lib" ]] || continue
    [[ -e "$root$lib" ]] || install -D -m 755 "$(readlink -f "$lib")" "$root$lib"
  done < <(ldd "$src" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
}

new_rootfs() { # name -> prints rootfs dir
  local root="$DIR/build/$1"
  rm -rf "$root"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,tmp,run,var/lib,var/log,data,root,dev,proc,sys}
  ln -s ../run "$root/var/run"
  chmod 1777 "$root/tmp"
  install -m 755 "$(readlink -f "$(command -v busybox)")" "$root/bin/busybox"
  local p
  while read -r p; do
    [[ -n "$p" && ! -e "$root/$p" && ! -L "$root/$p" ]] || continue
    mkdir -p "$(dirname "$root/$p")"
    ln -s /bin/busybox "$root/$p"
  done < <("$root/bin/busybox" --list-full)
  cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
redis:x:999:999:redis:/data:/bin/false
haproxy:x:99:99:haproxy:/var/lib/haproxy:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
  cat >"$root/etc/group" <<'EOF'
root:x:0:
redis:x:999:
haproxy:x:99:
nogroup:x:65534:
EOF
  printf 'hosts: files dns\npasswd: files\ngroup: files\n' >"$root/etc/nsswitch.conf"
  echo "$root"
}

import_image() { # rootfs ref change...
  local root="$1" ref="$2"; shift 2
  local args=() c
  for c in "$@"; do args+=(-c "$c"); done
  tar --numeric-owner -C "$root" -cf - . | docker import "${args[@]}" - "$ref" >/dev/null
  rm -rf "$root"
  docker push "$ref" >"$DIR/push.log" 2>&1 || { cat "$DIR/push.log" >&2; die "docker push $ref failed"; }
}

ENV_PATH='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

build_redis() { # ref build-id
  local ref="$1" id="$2" root
  log "building $ref"
  root="$(new_rootfs "redis-$id")"
  add_binary "$root" /usr/bin/redis-server /usr/bin/redis-server
  add_binary "$root" /usr/bin/redis-cli
  ln -s redis-server "$root/usr/bin/redis-sentinel"
  ln -s redis-server "$root/usr/bin/redis-check-aof"
  ln -s redis-server "$root/usr/bin/redis-check-rdb"
  mkdir -p "$root/etc/redis"
  chmod 777 "$root/data" "$root/etc/redis"
  printf 'image=%s\nbuild=%s\nredis=%s\n' "$ref" "$id" "$(redis-server --version)" >"$root/etc/kb-build"
  import_image "$root" "$ref" "$ENV_PATH" 'WORKDIR /data' 'ENTRYPOINT ["redis-server"]'
  docker run --rm --network host "$ref" --version >/dev/null || die "verification of $ref failed"
  docker run --rm --network host --entrypoint redis-cli "$ref" --version >/dev/null || die "redis-cli in $ref failed"
}

build_haproxy() {
  local ref="$1" root
  log "building $ref"
  root="$(new_rootfs haproxy)"
  add_binary "$root" /usr/sbin/haproxy
  mkdir -p "$root/usr/local/etc/haproxy" "$root/var/lib/haproxy" "$root/run/haproxy"
  printf 'image=%s\nhaproxy=%s\n' "$ref" "$(haproxy -v | head -n1)" >"$root/etc/kb-build"
  import_image "$root" "$ref" "$ENV_PATH" 'ENTRYPOINT ["haproxy"]' 'CMD ["-f", "/usr/local/etc/haproxy/haproxy.cfg"]'
  docker run --rm --network host "$ref" -v >/dev/null || die "verification of $ref failed"
}

build_busybox() {
  local ref="$1" root
  log "building $ref"
  root="$(new_rootfs busybox)"
  printf 'image=%s\n' "$ref" >"$root/etc/kb-build"
  import_image "$root" "$ref" "$ENV_PATH" 'ENTRYPOINT ["/bin/busybox"]' 'CMD ["sh"]'
  docker run --rm --network host "$ref" true || die "verification of $ref failed"
}

ensure_images() {
  in_registry "$REDIS1" || build_redis "$REDIS1" kb1
  in_registry "$REDIS2" || build_redis "$REDIS2" kb2
  in_registry "$HAPROXY" || build_haproxy "$HAPROXY"
  in_registry "$BUSYBOX" || build_busybox "$BUSYBOX"
  # An engine that did not build the images itself (a second checkout sharing the registry)
  # pulls the tags, so tests that create containers by tag find them locally.
  local ref
  for ref in "$REDIS1" "$REDIS2" "$HAPROXY" "$BUSYBOX"; do
    docker -H "$DOCKER_URI" image inspect "$ref" >/dev/null 2>&1 || docker -H "$DOCKER_URI" pull -q "$ref" >/dev/null
  done
}

# write a file only when its content changes
write_if_changed() { # file content
  if [[ ! -f "$1" || "$(cat "$1")" != "$2" ]]; then printf '%s\n' "$2" >"$1.tmp" && mv "$1.tmp" "$1"; fi
}

write_files() {
  write_if_changed "$DIR/versions.yaml" "redis_image: \"$REDIS1\"
haproxy_image: \"$HAPROXY\""
  write_if_changed "$DIR/versions-bump.yaml" "redis_image: \"$REDIS2\"
haproxy_image: \"$HAPROXY\""
  write_if_changed "$DIR/env" "export DOCKER_HOST=$DOCKER_URI
export KB_REGISTRY=$REGISTRY
export KB_TESTBED_DIR=$DIR"
}

cmd_up() {
  exec 9>"$DIR/lock"
  flock -w 900 9 || die "could not lock $DIR/lock within 900 s"
  ensure_packages
  stop_default_services
  ensure_docker
  export DOCKER_HOST="$DOCKER_URI"
  ensure_registry
  ensure_images
  write_files
  echo "testbed: up (docker=$DOCKER_URI, registry=$REGISTRY)"
}

stop_pidfile() { # name pidfile comm
  local pid i
  if ! pid_alive "$2" "$3"; then rm -f "$2"; return 0; fi
  pid="$(head -n1 "$2" | tr -dc '0-9')"
  log "stopping $1 (pid $pid)"
  kill "$pid" 2>/dev/null || true
  for ((i = 0; i < 60; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$2"; return 0; }
    sleep 0.5
  done
  log "$1 (pid $pid) did not stop in 30 s; sending SIGKILL"
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$2"
}

cmd_down() {
  exec 9>"$DIR/lock"
  flock -w 900 9 || die "could not lock $DIR/lock within 900 s"
  stop_pidfile docker-registry "$DIR/registry.pid" docker-registry
  stop_pidfile dockerd "$DIR/dockerd.pid" dockerd
  # dockerd leaves its network namespace bind mount behind; drop it so `rm -rf $DIR` works
  local m
  for m in "$EXEC_ROOT/netns/default" "$DIR/docker-data"; do
    if mountpoint -q "$m" 2>/dev/null && ! [[ -S "$PRIVATE_SOCK" ]]; then umount "$m" 2>/dev/null || true; fi
  done
  echo "testbed: down"
}

cmd_env() {
  [[ -f "$DIR/env" ]] || die "no $DIR/env: run 'bash scripts/testbed.sh up' first"
  cat "$DIR/env"
}

case "$CMD" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  *) die "usage: $0 [up|down|env]" ;;
esac
