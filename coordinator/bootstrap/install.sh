#!/bin/sh
# kb-agent installer, served by kb-coordinator @@VERSION@@ with its address baked in.
# Usage (the line `kbctl token create` prints; run as root on the new server):
#   curl -fsSL -k --pinnedpubkey sha256//... https://COORDINATOR:PORT/install.sh | KB_TOKEN=K10... sh -
# Environment:
#   KB_TOKEN          join token (needed unless this host is already enrolled)
#   KB_NODE           this server's inventory HOSTNAME (default: `hostname`)
#   KB_INSTALL_ROOT   install under this prefix instead of / (tests); implies no systemd
#   KB_NO_SYSTEMD=1   start the agent directly (pid file) instead of as a systemd service
#   DOCKER_HOST       the Docker engine (default unix:///var/run/docker.sock)
#   KB_SHARED_ENGINE  set when several agents share one engine (tests)
# Nothing is installed or changed unless every check passes: the token's CA pin (checked
# before the token is sent anywhere), the agent's sha256, and the enrollment. Re-running it
# with the same agent binary changes nothing and does not restart the agent.
set -eu
umask 077

BOOTSTRAP='@@BOOTSTRAP@@'
COORDINATOR='@@COORDINATOR@@'
PINNED='@@PINNED@@'
AGENT_SHA256='@@AGENT_SHA256@@'

say() { printf 'kb install: %s\n' "$*"; }
die() { printf 'kb install: ERROR: %s\n' "$*" >&2; exit 1; }

root=${KB_INSTALL_ROOT:-/}
case $root in /*) ;; *) die "KB_INSTALL_ROOT must be an absolute path, not '$root'" ;; esac
root=${root%/}
node=${KB_NODE:-$(hostname)}
case $node in '' | -* | *[!A-Za-z0-9.-]*) die "node name '$node' is not a valid hostname (set KB_NODE)" ;; esac

bin=$root/usr/local/bin/kb-agent
uninstall=$root/usr/local/bin/kb-agent-uninstall.sh
etc=$root/etc/kb-agent
envfile=$etc/kb-agent.env
unit=$root/etc/systemd/system/kb-agent.service
state=$root/var/lib/kb-agent
pidfile=$root/run/kb-agent.pid
logfile=$root/var/log/kb-agent.log

use_systemd=0
if [ -z "${KB_NO_SYSTEMD:-}" ] && [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  use_systemd=1
fi
[ -n "$root" ] || [ "$(id -u)" = 0 ] || die "run as root (| sudo KB_TOKEN=... sh -)"
command -v curl >/dev/null 2>&1 || die "curl is required"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum is required"
if [ -n "${KB_TOKEN:-}" ]; then
  case $KB_TOKEN in K10*::*.*) ;; *) die "KB_TOKEN is not a join token (expected K10<hash>::<id>.<secret> from 'kbctl token create')" ;; esac
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kb-install.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM

# 1. The agent binary: the installed one when it is this exact build, else a download whose
#    sha256 is checked BEFORE it goes anywhere.
if [ -f "$bin" ] && [ "$(sha256sum "$bin" | cut -d' ' -f1)" = "$AGENT_SHA256" ]; then
  agent=$bin
else
  say "downloading kb-agent from $BOOTSTRAP"
  curl -fsS -k --pinnedpubkey "$PINNED" -o "$tmp/kb-agent" "$BOOTSTRAP/kb-agent" || die "download of $BOOTSTRAP/kb-agent failed; nothing was installed"
  got=$(sha256sum "$tmp/kb-agent" | cut -d' ' -f1)
  [ "$got" = "$AGENT_SHA256" ] || die "sha256 mismatch for kb-agent: expected $AGENT_SHA256, got $got; nothing was installed"
  chmod 0755 "$tmp/kb-agent"
  agent=$tmp/kb-agent
fi

# 2. The node's identity: a valid certificate for this node is kept; otherwise the agent makes
#    a key here (it never leaves), checks the token's CA pin against the coordinator's CA, and
#    only then sends the token with a CSR.
enrolled=0
if "$agent" enroll --check --node "$node" --tls-dir "$etc" >/dev/null 2>&1; then
  say "$node is already enrolled"
else
  [ -n "${KB_TOKEN:-}" ] || die "KB_TOKEN is required to enroll $node (kbctl token create on the coordinator)"
  "$agent" enroll --node "$node" --bootstrap "$BOOTSTRAP" --tls-dir "$tmp/tls" || die "enrollment of $node failed; nothing was installed"
  enrolled=1
fi
unset KB_TOKEN

# 3. Files, each replaced only when its content changes.
changed=0
put() { # put SRC DEST MODE
  if [ -f "$2" ] && cmp -s "$1" "$2"; then return 0; fi
  (umask 022; mkdir -p "$(dirname "$2")")
  cp "$1" "$2.kb-new" && chmod "$3" "$2.kb-new" && mv -f "$2.kb-new" "$2"
  changed=1
}

{
  echo "# kb-agent environment, written by the kb installer. Mode 0600."
  echo "KB_NODE=$node"
  echo "KB_COORDINATOR=$COORDINATOR"
  echo "KB_TLS_DIR=$etc"
  echo "KB_STATE_DIR=$state"
  echo "KB_HOST_ROOT=${root:-/}"
  echo "DOCKER_HOST=${DOCKER_HOST:-unix:///var/run/docker.sock}"
  if [ -n "${KB_SHARED_ENGINE:-}" ]; then echo "KB_SHARED_ENGINE=1"; fi
  # Runtime of the agent process (lines marked "# runtime" are also what the tests and
  # bench/agent-footprint run the agent with). --jitless: V8 interprets only, no JIT code
  # and none of the compilers' pages: ~6 MB less RSS, no CPU cost measured for an idle agent
  # (docs/benchmarks.md, agent footprint; ADR 0017). It removes WebAssembly (Node prints
  # "disabling flag --expose_wasm" once at start): the agent uses none (no fetch).
  echo "NODE_OPTIONS=--jitless"  # runtime
} >"$tmp/kb-agent.env"

cat >"$tmp/kb-agent.service" <<UNIT
[Unit]
Description=kb agent: keeps this node at its desired state
After=network-online.target docker.service
Wants=network-online.target

[Service]
Type=simple
EnvironmentFile=$envfile
ExecStart=$bin run
Restart=always
RestartSec=5
# Only the agent process is stopped on restart: containers and their processes survive it.
KillMode=process

[Install]
WantedBy=multi-user.target
UNIT

{
  echo '#!/bin/sh'
  echo '# Removes what the kb installer added. Containers, data and credentials stay unless --purge is given.'
  echo "root='$root' bin='$bin' etc='$etc' envfile='$envfile' unit='$unit' state='$state'"
  echo "pidfile='$pidfile' logfile='$logfile' node='$node' use_systemd=$use_systemd"
  cat <<'UNINSTALL'
set -eu
purge=0
case ${1:-} in --purge) purge=1 ;; '') ;; *) echo "usage: $0 [--purge]" >&2; exit 2 ;; esac
say() { printf 'kb uninstall: %s\n' "$*"; }
if [ "$use_systemd" = 1 ]; then systemctl disable --now kb-agent >/dev/null 2>&1 || true; fi
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  fi
  rm -f "$pidfile"
fi
if [ $purge = 1 ]; then
  if [ -x "$bin" ] && [ -f "$envfile" ]; then (set -a; . "$envfile"; set +a; "$bin" remove-containers) || say "could not remove containers"; fi
  # Credentials kb wrote go with the containers that used them (the directory too, if nothing else is in it).
  rm -rf "$state" "$root/opt/keybuzz" "$root/opt/keybuzz-installer/credentials"
  rmdir "$root/opt/keybuzz-installer" 2>/dev/null || true
fi
rm -f "$unit" "$envfile" "$logfile" "$bin"
rm -rf "$etc"
if [ "$use_systemd" = 1 ]; then systemctl daemon-reload || true; fi
rm -f "$0"
if [ $purge = 1 ]; then say "removed kb-agent of $node, its containers and data"; else say "removed kb-agent of $node (containers and data kept; --purge removes them)"; fi
UNINSTALL
} >"$tmp/uninstall.sh"

[ "$agent" = "$bin" ] || put "$agent" "$bin" 0755
if [ $enrolled = 1 ]; then
  mkdir -p "$etc" && chmod 0700 "$etc"
  put "$tmp/tls/node.key" "$etc/node.key" 0600
  put "$tmp/tls/node.crt" "$etc/node.crt" 0644
  put "$tmp/tls/ca.crt" "$etc/ca.crt" 0644
fi
put "$tmp/kb-agent.env" "$envfile" 0600
restart=$changed
changed=0
put "$tmp/kb-agent.service" "$unit" 0644
unit_changed=$changed
if [ $unit_changed = 1 ]; then restart=1; fi
put "$tmp/uninstall.sh" "$uninstall" 0700   # a new uninstall script alone restarts nothing
mkdir -p "$state" && chmod 0700 "$state"

# 4. Start (or leave running).
if [ $use_systemd = 1 ]; then
  if [ "$unit_changed" = 1 ]; then systemctl daemon-reload; fi
  systemctl enable kb-agent >/dev/null 2>&1
  if [ $restart = 1 ]; then
    systemctl restart kb-agent
    say "kb-agent service (re)started for $node"
  elif systemctl is-active --quiet kb-agent; then
    say "kb-agent already running; nothing changed"
  else
    systemctl start kb-agent
    say "kb-agent service started for $node"
  fi
else
  pid=
  if [ -f "$pidfile" ]; then
    pid=$(cat "$pidfile")
    if ! kill -0 "$pid" 2>/dev/null || ! grep -q kb-agent "/proc/$pid/cmdline" 2>/dev/null; then pid=; fi
  fi
  if [ -n "$pid" ] && [ $restart = 0 ]; then
    say "kb-agent already running (pid $pid); nothing changed"
  else
    if [ -n "$pid" ]; then
      kill "$pid" 2>/dev/null || true
      i=0; while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    fi
    mkdir -p "$(dirname "$pidfile")" "$(dirname "$logfile")"
    (
      set -a; . "$envfile"; set +a
      if command -v setsid >/dev/null 2>&1; then exec setsid "$bin" run </dev/null >>"$logfile" 2>&1; fi
      exec nohup "$bin" run </dev/null >>"$logfile" 2>&1
    ) &
    echo $! >"$pidfile"
    say "kb-agent started for $node (pid $!, log $logfile)"
  fi
fi
say "done: $node joins $COORDINATOR; uninstall with $uninstall [--purge]"
