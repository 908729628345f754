import type { Inventory, Server } from '../../shared/inventory/index.js';
import { serversByRole } from '../../shared/inventory/index.js';
import type { Problem } from '../../shared/errors/index.js';
import { container, healthCheck } from '../../shared/plan/builders.js';
import { sha256Hex } from '../../shared/plan/hash.js';
import type { ModuleDefinition, NodeDesired, RawSettings, RenderInput } from './types.js';
import { checkSettings } from './settings.js';
import { redisAuth, sentinelAuthLines } from './redis-auth.js';

/** Settings of the redis module (settings file key `redis`). */
export interface RedisSettings {
  /** Redis port on every node. Default 6379. */
  port: number;
  /** `--maxmemory-policy`. Default allkeys-lru (KEYBUZZ design). */
  maxmemory_policy: string;
  /** Data directory on the host. Default /opt/keybuzz/redis/data. */
  data_dir: string;
  /** Extra redis-server arguments (per node overrides are typical). Default none. */
  extra_args: string[];
  /** The one Sentinel master name. Default kb-redis-master. */
  master_name: string;
  /** Sentinel port on every node. Default 26379. */
  sentinel_port: number;
  /** Sentinels that must agree the master is down. Default: a majority of the Redis nodes (2 of 3). */
  sentinel_quorum: number;
  /** `sentinel down-after-milliseconds`. Default 5000. */
  down_after_ms: number;
  /** `sentinel failover-timeout`. Default 60000. */
  failover_timeout_ms: number;
  /** `sentinel parallel-syncs`. Default 1. */
  parallel_syncs: number;
  /** Sentinel's directory on the host (kb's template + Sentinel's own, rewritten, sentinel.conf). Default /opt/keybuzz/redis/sentinel. */
  sentinel_dir: string;
}

export const REDIS_DEFAULTS: RedisSettings = {
  port: 6379,
  maxmemory_policy: 'allkeys-lru',
  data_dir: '/opt/keybuzz/redis/data',
  extra_args: [],
  master_name: 'kb-redis-master',
  sentinel_port: 26379,
  sentinel_quorum: 2,
  down_after_ms: 5000,
  failover_timeout_ms: 60000,
  parallel_syncs: 1,
  sentinel_dir: '/opt/keybuzz/redis/sentinel',
};

/** Settings that must be the same on every node (Sentinels and clients must agree on them). */
const MODULE_WIDE: readonly (keyof RedisSettings)[] = [
  'port', 'master_name', 'sentinel_port', 'sentinel_quorum', 'down_after_ms', 'failover_timeout_ms', 'parallel_syncs',
];

/** Where the Sentinel directory is mounted in the redis-sentinel container. */
const SENTINEL_MOUNT = '/sentinel';
/** kb's template in the Sentinel directory; Sentinel itself owns sentinel.conf next to it. */
export const SENTINEL_TEMPLATE = 'kb-template.conf';

/**
 * The redis-sentinel container's start script. Sentinel rewrites its configuration file
 * (known replicas and Sentinels, epochs, the current master), so kb never writes
 * sentinel.conf itself: it writes a template, and this script copies the template over
 * sentinel.conf only when sentinel.conf is missing or the template differs from the one
 * last copied. A restart with an unchanged template keeps everything Sentinel learned,
 * including a failover. See docs/adr/0013-redis-master-follower.md.
 *
 * Sentinel ids (docs/adr/0024-sentinel-ids.md): the template names this Sentinel (`sentinel
 * myid`, derived from the node's hostname) and the others (`sentinel known-sentinel`, with
 * their derived ids), so the Sentinels of a new fleet know each other from their first start
 * instead of after their hello messages (every 2 s). When copying, the script picks the id:
 *  - the id in sentinel.conf, if there is one (a restart, or a Sentinel made before kb named
 *    Sentinels, which keeps the id the others know it by);
 *  - else the id the other Sentinels know this address by (a rebuilt node takes its id back);
 *  - else the derived one.
 * Each other Sentinel is asked its id and what it knows (SENTINEL MYID and SENTINELS, in
 * parallel, 2 s at most): an answer replaces the derived id; without an answer the derived
 * id is written only if this Sentinel uses its derived id too (a new fleet), else that
 * Sentinel is left to be discovered by its hellos. A derived id that turns out wrong is
 * replaced by Sentinel at the first hello from that address (checked in
 * test/e2e/sentinel-ids.test.ts).
 *
 * With credentials, the template is the rendered credentials file KB_SENTINEL_TEMPLATE
 * (mounted read-only) and holds the Sentinel passwords; Sentinel persists them in its
 * sentinel.conf, so the script runs with umask 077 (sentinel.conf 0600) and remembers the
 * template by its SHA-256 only (never a second copy). KB_REDIS_ENV names the mounted
 * redis.env: the Sentinel password for asking the others is read from it in a subshell and
 * given to redis-cli as REDISCLI_AUTH.
 */
export const SENTINEL_START_SCRIPT = [
  'set -e',
  'umask 077',
  `cd ${SENTINEL_MOUNT}`,
  `tpl="\${KB_SENTINEL_TEMPLATE:-${SENTINEL_TEMPLATE}}"`,
  'sum="$(sha256sum < "$tpl" | cut -d" " -f1)"',
  'if [ ! -s sentinel.conf ] || [ "$sum" != "$(cat .kb-template.sha256 2>/dev/null)" ]; then',
  '  derived="$(sed -n "s/^sentinel myid //p" "$tpl" | tail -n 1)"',
  '  id="$(sed -n "s/^sentinel myid //p" sentinel.conf 2>/dev/null | tail -n 1)"; how="kept"',
  '  me="$(sed -n "s/^sentinel announce-ip //p" "$tpl" | tail -n 1) $(sed -n "s/^port //p" "$tpl" | tail -n 1)"',
  '  sp=""',
  '  if [ -n "${KB_REDIS_ENV:-}" ] && [ -r "$KB_REDIS_ENV" ]; then sp="$(. "$KB_REDIS_ENV"; printf %s "$REDIS_SENTINEL_PASSWORD")"; fi',
  '  tmp="$(mktemp -d)"',
  '  grep "^sentinel known-sentinel " "$tpl" > "$tmp/seeds" || true',
  '  i=0',
  '  while read -r _ _ name ip port _; do',
  '    i=$((i+1))',
  '    ( if [ -n "$sp" ]; then export REDISCLI_AUTH="$sp"; fi',
  '      printf "SENTINEL MYID\\nSENTINEL SENTINELS %s\\n" "$name" | timeout 2 redis-cli -h "$ip" -p "$port" --raw > "$tmp/$i.out" 2>/dev/null || true ) &',
  '  done < "$tmp/seeds"',
  '  wait',
  '  unset sp',
  '  if [ -z "$id" ]; then',
  '    how="known to the others by it"',
  '    id="$(for f in "$tmp"/*.out; do [ -f "$f" ] && awk -v me="$me" \'NR == 1 { next } NR % 2 == 0 { k = $0; next } k == "name" { ip = ""; port = "" } k == "ip" { ip = $0 } k == "port" { port = $0 } k == "runid" && ip " " port == me { print }\' "$f"; done | grep -Ex "[0-9a-f]{40}" | sort | uniq -c | sort -rn | head -n 1 | awk "{ print \\$2 }")"',
  '  fi',
  '  if [ -z "$id" ] || [ "$id" = "$derived" ]; then id="$derived"; how="derived from the hostname"; fi',
  '  grep -v -e "^sentinel myid " -e "^sentinel known-sentinel " "$tpl" > sentinel.conf.kb-tmp',
  '  if [ -n "$id" ]; then echo "sentinel myid $id" >> sentinel.conf.kb-tmp; fi',
  '  i=0; known=0; answered=0',
  '  while read -r _ _ name ip port seeded; do',
  '    i=$((i+1))',
  '    a="$(head -n 1 "$tmp/$i.out" 2>/dev/null || true)"',
  '    if printf %s "$a" | grep -Eqx "[0-9a-f]{40}"; then seeded="$a"; answered=$((answered+1)); elif [ "$id" != "$derived" ]; then continue; fi',
  '    echo "sentinel known-sentinel $name $ip $port $seeded" >> sentinel.conf.kb-tmp; known=$((known+1))',
  '  done < "$tmp/seeds"',
  '  echo "kb: Sentinel id $id ($how); $known of $i other Sentinels known from the start, $answered answered" >&2',
  '  rm -rf "$tmp"',
  '  mv sentinel.conf.kb-tmp sentinel.conf',
  '  echo "$sum" > .kb-template.sha256',
  'fi',
  'chmod 600 sentinel.conf',
  'rm -f .kb-template.applied',
  `exec redis-server ${SENTINEL_MOUNT}/sentinel.conf --sentinel`,
].join('\n');

/**
 * The redis container's start script (`/bin/sh -c SCRIPT redis-server ARGS...`). Before
 * starting redis-server with ARGS, it asks every Sentinel (in parallel, 2 s each at most)
 * which master they know: when a majority (KB_SENTINEL_MAJORITY) names another node, Redis
 * starts as its replica; when they name this node (KB_SELF), as a master; without a
 * majority (first install, every Sentinel down) as the inventory says (KB_DEFAULT_MASTER:
 * empty on the SUBROLE=master node, else its address). So a node restarted after a
 * failover rejoins as a replica at once, instead of coming back as a master with stale
 * data (demoted by Sentinel ~8 s later) or as a replica of a former master (fixed by
 * Sentinel only after failover-timeout). See docs/adr/0013-redis-master-follower.md.
 *
 * With credentials, KB_REDIS_ENV names the mounted redis.env: the Sentinel password is read
 * from it in a subshell and given to redis-cli as REDISCLI_AUTH (not on its command line),
 * and never exported to redis-server.
 */
export const REDIS_START_SCRIPT = [
  'sp=""',
  'if [ -n "${KB_REDIS_ENV:-}" ] && [ -r "$KB_REDIS_ENV" ]; then sp="$(. "$KB_REDIS_ENV"; printf %s "$REDIS_SENTINEL_PASSWORD")"; fi',
  'tmp="$(mktemp -d)"',
  'i=0',
  'for s in $KB_SENTINELS; do',
  '  i=$((i+1))',
  '  ( if [ -n "$sp" ]; then export REDISCLI_AUTH="$sp"; fi',
  '    timeout 2 redis-cli -h "${s%:*}" -p "${s##*:}" --raw SENTINEL get-master-addr-by-name "$KB_MASTER_NAME" 2>/dev/null | paste -sd: - > "$tmp/$i" ) &',
  'done',
  'wait',
  'best="$(cat "$tmp"/* 2>/dev/null | grep -E "^[^ :]+:[0-9]+\\$" | sort | uniq -c | sort -rn | head -n1)"',
  'rm -rf "$tmp"',
  'unset sp',
  'votes="$(echo $best | cut -d" " -f1)"',
  'master="$(echo $best | cut -d" " -f2)"',
  'if [ -n "$votes" ] && [ "$votes" -ge "$KB_SENTINEL_MAJORITY" ]; then',
  '  echo "kb: $votes Sentinels name $master master" >&2',
  'else',
  '  master="${KB_DEFAULT_MASTER:-$KB_SELF}"',
  '  echo "kb: no Sentinel majority; the inventory names ${master} master" >&2',
  'fi',
  'if [ "$master" = "$KB_SELF" ]; then exec "$0" "$@"; fi',
  'exec "$0" "$@" --replicaof "${master%:*}" "${master##*:}"',
].join('\n');

export function redisMasters(inv: Inventory): Server[] {
  return serversByRole(inv, 'redis', 'master');
}

/** Redis data nodes in rollout order: the SUBROLE=master row first, then the others in inventory order. */
export function redisHosts(inv: Inventory): Server[] {
  // Computed once per parsed inventory: every haproxy node's render asks for it, and a scan of
  // the whole inventory per node made planning thousands of nodes O(N^2).
  let hosts = REDIS_HOSTS.get(inv.servers);
  if (!hosts) {
    const all = serversByRole(inv, 'redis');
    hosts = [...all.filter((s) => s.subrole === 'master'), ...all.filter((s) => s.subrole !== 'master')];
    REDIS_HOSTS.set(inv.servers, hosts);
  }
  return [...hosts];
}
const REDIS_HOSTS = new WeakMap<readonly Server[], Server[]>();

/** What clients of the redis module need to know: the master name, every Redis and every Sentinel. */
export interface RedisTopology {
  masterName: string;
  redis: { node: string; host: string; port: number }[];
  sentinels: { node: string; host: string; port: number }[];
}

export function redisTopology(inv: Inventory, s: RedisSettings): RedisTopology {
  const hosts = redisHosts(inv);
  return {
    masterName: s.master_name,
    redis: hosts.map((h) => ({ node: h.hostname, host: h.privateIp, port: s.port })),
    sentinels: hosts.map((h) => ({ node: h.hostname, host: h.privateIp, port: s.sentinel_port })),
  };
}

/**
 * A Sentinel's id (`sentinel myid`): 40 hex digits derived from the node's hostname, so every
 * Sentinel's template can name the others before any of them started (see
 * SENTINEL_START_SCRIPT). The address is not in it: Sentinel follows a known id to a new
 * address (+sentinel-address-switch).
 */
export function sentinelId(hostname: string): string {
  return sha256Hex(`kb-sentinel\n${hostname}`).slice(0, 40);
}

/** The Sentinel template for one node; `peers` are every Redis node (this one included or not). */
export function sentinelTemplate(node: Server, master: Server, s: RedisSettings, peers: readonly Server[]): string {
  const n = s.master_name;
  return [
    `# Rendered by kb (module redis) for ${node.hostname}. kb rewrites this template; the`,
    '# redis-sentinel container copies it over sentinel.conf only when it changes, because',
    '# Sentinel rewrites sentinel.conf itself (see docs/adr/0013-redis-master-follower.md).',
    `port ${s.sentinel_port}`,
    `bind ${node.privateIp}`,
    `sentinel announce-ip ${node.privateIp}`,
    'sentinel resolve-hostnames no',
    `sentinel myid ${sentinelId(node.hostname)}`,
    `sentinel monitor ${n} ${master.privateIp} ${s.port} ${s.sentinel_quorum}`,
    `sentinel down-after-milliseconds ${n} ${s.down_after_ms}`,
    `sentinel failover-timeout ${n} ${s.failover_timeout_ms}`,
    `sentinel parallel-syncs ${n} ${s.parallel_syncs}`,
    // The other Sentinels, known from the first start (checked against their answers by the start script).
    ...peers.filter((p) => p.hostname !== node.hostname).map((p) => `sentinel known-sentinel ${n} ${p.privateIp} ${s.sentinel_port} ${sentinelId(p.hostname)}`),
    '',
  ].join('\n');
}

/**
 * Redis HA (ROLE=redis): on every node a `redis` container and a `redis-sentinel`
 * container, both bound to the node's private address. The SUBROLE=master row is the
 * initial master; the others start as replicas with `--replicaof`. After a failover the
 * containers keep their arguments: Sentinel reconfigures replicas at run time, and an old
 * master that restarts as a master is demoted by Sentinel (HAProxy never follows it: the
 * follower obeys the Sentinel majority, not a node's own role).
 *
 * Health (per node): ports, the node's role matches what its Sentinel says (master, or a
 * replica of that master with the link up), every reachable Sentinel names the same
 * master, and the local Sentinel knows the others (three in KeyBuzz), and no more. SET/GET through the
 * proxy is checked by the haproxy module.
 *
 * Rollout order: master first, then replicas in inventory order.
 */
export const redisModule: ModuleDefinition<RedisSettings> = {
  name: 'redis',
  description: 'Redis master + replicas + Sentinel (ROLE=redis), bound to each node private address',
  imageKeys: { redis: 'redis_image' },
  credentials: ['redis'],
  verifies: ['redis'],

  hosts: redisHosts,

  checkInventory(inv) {
    const problems: Problem[] = [];
    const m = redisMasters(inv);
    if (serversByRole(inv, 'redis').length > 0 && m.length !== 1) {
      problems.push({
        file: inv.file,
        line: m[1]?.line ?? 1,
        message: m.length === 0 ? 'redis: no ROLE=redis row has SUBROLE=master' : `redis: more than one master: ${m.map((s) => `${s.hostname} (line ${s.line})`).join(', ')}`,
      });
    }
    return problems;
  },

  settings(raw: RawSettings, inv: Inventory) {
    const out = checkSettings(raw, inv, REDIS_DEFAULTS, {
      port: 'port', maxmemory_policy: 'string', data_dir: 'abspath', extra_args: 'string[]',
      master_name: 'string', sentinel_port: 'port', sentinel_quorum: 'int', down_after_ms: 'int',
      failover_timeout_ms: 'int', parallel_syncs: 'int', sentinel_dir: 'abspath',
    });
    const s = out.settings;
    const bad = (field: string, message: string) => out.problems.push({ file: raw.file, line: 1, field, message });
    for (const [node, values] of Object.entries(out.nodes)) {
      for (const key of MODULE_WIDE) if (key in values) bad(`nodes.${node}.${key}`, 'must be the same on every node: set it at module level');
    }
    if (!/^[A-Za-z0-9._-]{1,64}$/.test(s.master_name)) bad('master_name', 'must be 1-64 characters among A-Z a-z 0-9 . _ -');
    const nodes = serversByRole(inv, 'redis').length;
    // Unset: a majority of the Redis nodes (2 of 3, the design's value; 1 for a single test node).
    if (!('sentinel_quorum' in raw.values) && nodes > 0) s.sentinel_quorum = Math.floor(nodes / 2) + 1;
    if (s.sentinel_quorum < 1 || (nodes > 0 && s.sentinel_quorum > nodes)) bad('sentinel_quorum', `must be between 1 and the number of redis nodes (${nodes})`);
    if (s.down_after_ms < 100) bad('down_after_ms', 'must be at least 100');
    if (s.failover_timeout_ms < 1000) bad('failover_timeout_ms', 'must be at least 1000');
    if (s.parallel_syncs < 1) bad('parallel_syncs', 'must be at least 1');
    if (s.sentinel_port === s.port) bad('sentinel_port', `must differ from port (${s.port})`);
    return out;
  },

  render({ inventory, node, images, settings, nodeSettings, secrets }: RenderInput<RedisSettings>): NodeDesired {
    const s = { ...settings, ...nodeSettings };
    const master = redisMasters(inventory)[0];
    if (!master) throw new Error('redis: no master in inventory');
    const isMaster = master.hostname === node.hostname;
    const auth = redisAuth(secrets?.redis);
    const args = [
      ...auth.argsPrefix,
      '--bind', node.privateIp,
      '--port', String(s.port),
      // Replicas are known to the master (and so to Sentinel) by this address, whatever
      // source address their connection has.
      '--replica-announce-ip', node.privateIp,
      '--appendonly', 'yes',
      '--maxmemory-policy', s.maxmemory_policy,
      ...s.extra_args,
    ];
    const template = sentinelTemplate(node, master, s, redisHosts(inventory)) + (secrets?.redis ? `${sentinelAuthLines(secrets.redis, s.master_name).join('\n')}\n` : '');
    const secretFiles = auth.secretFiles(template);
    const topo = redisTopology(inventory, settings);
    const majority = Math.floor(topo.sentinels.length / 2) + 1;
    const localSentinel = `${node.privateIp}:${s.sentinel_port}`;
    return {
      module: 'redis',
      containers: [
        container({
          name: 'redis',
          image: images.redis!,
          entrypoint: '/bin/sh',
          // $0 = redis-server, "$@" = its arguments; the script adds --replicaof (see REDIS_START_SCRIPT).
          args: ['-c', REDIS_START_SCRIPT, 'redis-server', ...args],
          env: {
            KB_SELF: `${node.privateIp}:${s.port}`,
            KB_DEFAULT_MASTER: isMaster ? '' : `${master.privateIp}:${settings.port}`,
            KB_SENTINELS: topo.sentinels.map((x) => `${x.host}:${x.port}`).join(' '),
            KB_MASTER_NAME: s.master_name,
            KB_SENTINEL_MAJORITY: String(majority),
            ...auth.redisEnv,
          },
          volumes: [{ hostPath: s.data_dir, containerPath: '/data', readOnly: false }, ...auth.redisVolumes],
          restartPolicy: 'unless-stopped',
          order: 1,
        }),
        container({
          name: 'redis-sentinel',
          image: images.redis!,
          entrypoint: '/bin/sh',
          args: ['-c', SENTINEL_START_SCRIPT],
          // The template's hash: a changed template replaces the container, whose start script then copies it.
          env: { KB_SENTINEL_TEMPLATE_SHA256: sha256Hex(template), ...auth.sentinelEnv },
          volumes: [{ hostPath: s.sentinel_dir, containerPath: SENTINEL_MOUNT, readOnly: false }, ...auth.sentinelVolumes],
          restartPolicy: 'unless-stopped',
          order: 2,
        }),
      ],
      // With credentials the template holds passwords: it is a rendered credentials file, not a plain file.
      files: secretFiles.length ? [] : [{ path: `${s.sentinel_dir}/${SENTINEL_TEMPLATE}`, mode: 0o644, content: Buffer.from(template) }],
      secretFiles,
      healthChecks: [
        healthCheck({ name: 'redis-port', kind: 'tcp', host: node.privateIp, port: s.port }),
        healthCheck({ name: 'sentinel-port', kind: 'tcp', host: node.privateIp, port: s.sentinel_port }),
        healthCheck({
          name: 'redis-replication', kind: 'redis-replication', host: node.privateIp, port: s.port,
          sentinels: [localSentinel], masterName: s.master_name, container: 'redis', ...auth.check,
        }),
        healthCheck({
          name: 'sentinels-agree', kind: 'redis-sentinel', host: node.privateIp, port: s.sentinel_port,
          sentinels: topo.sentinels.map((x) => `${x.host}:${x.port}`), masterName: s.master_name, minSentinels: topo.sentinels.length,
          container: 'redis-sentinel', ...auth.check,
        }),
      ],
    };
  },
};
