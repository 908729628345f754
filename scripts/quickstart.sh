#!/usr/bin/env bash
# kb quickstart: a local coordinator and three local agents (redis-01..03, each its own
# loopback address 127.0.1.1-3) roll out Redis on the local Docker engine, then
# `kbctl nodes` is printed. Secure by default, as in production: `kb-coordinator init`
# makes the CA and the admin credential ($qs/admin.kbconfig), each agent enrolls with a
# join token and talks mTLS. Everything stays running; `npm run quickstart -- down` stops
# the processes and removes the quickstart's containers.
#
# Usage: bash scripts/quickstart.sh [up|down]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
qs=${KB_QUICKSTART_DIR:-$root/.quickstart}
port=${KB_QUICKSTART_PORT:-7443}
bport=$((port + 1))
nodes=(redis-01 redis-02 redis-03)
cmd=${1:-up}

kbctl() { KB_CONFIG="$qs/admin.kbconfig" node "$root/dist/kbctl.cjs" "$@"; }

stop_procs() {
  for f in "$qs"/*.pid; do
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
    rm -f "$f"
  done
}

remove_containers() {
  local ids
  ids=$(docker ps -aq --filter label=kb.managed=true --filter label=kb.quickstart=1 2>/dev/null || true)
  for n in "${nodes[@]}"; do
    ids+=" $(docker ps -aq --filter label=kb.managed=true --filter "label=kb.node=$n" 2>/dev/null || true)"
  done
  # shellcheck disable=SC2086
  [ -n "${ids// /}" ] && docker rm -f $ids >/dev/null || true
}

if [ "$cmd" = down ]; then
  [ -f "$root/.testbed/env" ] && . "$root/.testbed/env"
  stop_procs
  remove_containers
  echo "quickstart: stopped (state kept in $qs)"
  exit 0
fi

bash "$root/scripts/testbed.sh" up
. "$root/.testbed/env"
if [ ! -x "$root/dist/kb-agent" ] || [ -n "$(find "$root/agent" "$root/coordinator" "$root/shared" "$root/proto" -newer "$root/dist/kb-agent" -name '*.ts' -print -quit)" ]; then
  (cd "$root" && npm run --silent build)
fi

stop_procs
remove_containers
mkdir -p "$qs"
cp "$root/test/fixtures/servers-local.tsv" "$qs/servers.tsv"
cp "$KB_TESTBED_DIR/versions.yaml" "$qs/versions.yaml"

# CA, serving certificate and admin credential (idempotent: kept when they exist).
node "$root/dist/kb-coordinator.cjs" init --data-dir "$qs/coordinator" --listen "127.0.0.1:$port" \
  --admin-config "$qs/admin.kbconfig"
node "$root/dist/kb-coordinator.cjs" run --inventory "$qs/servers.tsv" --versions "$qs/versions.yaml" \
  --data-dir "$qs/coordinator" --listen "127.0.0.1:$port" --bootstrap-listen "127.0.0.1:$bport" \
  --heartbeat-ms 2000 --health-interval-ms 2000 >"$qs/coordinator.log" 2>&1 &
echo $! >"$qs/coordinator.pid"
for i in $(seq 1 50); do
  grep -q 'kb-coordinator listening' "$qs/coordinator.log" && break
  kill -0 "$(cat "$qs/coordinator.pid")" 2>/dev/null || { cat "$qs/coordinator.log"; exit 1; }
  sleep 0.2
done

# One join token for the agents that have no certificate yet (a re-run reuses their certificates).
token=
for n in "${nodes[@]}"; do
  [ -f "$qs/nodes/$n/tls/node.crt" ] && continue
  token=$(kbctl -o json token create --uses ${#nodes[@]} --ttl 10m --description quickstart |
    node -e 'let s="";process.stdin.on("data",(d)=>s+=d).on("end",()=>process.stdout.write(JSON.parse(s).token))')
  break
done
for n in "${nodes[@]}"; do
  KB_TOKEN=$token "$root/dist/kb-agent" run --node "$n" --coordinator "127.0.0.1:$port" --shared-engine \
    --bootstrap "https://127.0.0.1:$bport" --tls-dir "$qs/nodes/$n/tls" \
    --state-dir "$qs/nodes/$n/state" --host-root "$qs/nodes/$n/root" >"$qs/agent-$n.log" 2>&1 &
  echo $! >"$qs/agent-$n.pid"
done

for i in $(seq 1 100); do
  ready=$(kbctl -o json nodes 2>/dev/null | grep -c '"status": "Ready"' || true)
  [ "$ready" -ge 3 ] && break
  sleep 0.2
done

kbctl rollout redis --min-healthy-time 2s --healthy-deadline 60s
echo
kbctl nodes
echo
echo "Redis master (password from the node's credentials file, as on a real host):"
echo "  (. $qs/nodes/redis-01/root/opt/keybuzz-installer/credentials/redis.env && REDISCLI_AUTH=\"\$REDIS_PASSWORD\" redis-cli -h 127.0.1.1 ping)"
echo "Credentials: KB_CONFIG=$qs/admin.kbconfig node dist/kbctl.cjs secrets list   (names, versions, nodes; never values)"
echo "Try: KB_CONFIG=$qs/admin.kbconfig node dist/kbctl.cjs plan redis"
echo "Add a server: KB_CONFIG=$qs/admin.kbconfig node dist/kbctl.cjs token create   (prints the line to paste)"
echo "Stop: npm run quickstart -- down    (logs in $qs)"
