import type { Inventory, Server } from '../../shared/inventory/index.js';
import { serversByRole } from '../../shared/inventory/index.js';
import { container, healthCheck } from '../../shared/plan/builders.js';
import { sha256Hex } from '../../shared/plan/hash.js';
import { REDIS_DEFAULTS, redisTopology, type RedisSettings } from './redis.js';
import { REDIS_CREDENTIALS_CHECK } from './redis-auth.js';
import { checkSettings } from './settings.js';
import type { ModuleDefinition, NodeDesired, RawSettings, RenderInput } from './types.js';

/** Settings of the haproxy module (settings file key `haproxy`). */
export interface HaproxySettings {
  /**
   * What the frontends listen on: `any` = 0.0.0.0 (production: HAProxy sits behind the
   * Hetzner LB and must never bind the LB's own address), `private` = the node's private
   * address (tests and demos on loopback). Default any.
   */
  bind: string;
  /** Frontend port of Redis. Default 6379. */
  redis_port: number;
  /** HTTP stats page port; 0 disables it. Default 8404. */
  stats_port: number;
  /** global maxconn. Default 4096. */
  maxconn: number;
  /**
   * `timeout connect` of be_redis_master. Short on purpose: with `option redispatch 1`, a
   * connection accepted while the master is dead is retried every this-many ms (HAProxy's
   * turn-around is min(timeout connect, 1 s)), and the retry takes the follower's new address;
   * so a client waits at most about this long after the switch. 200 ms gave a 0.18 s worst
   * case on this machine (KEYBUZZ.md); 100 ms keeps p99 under the 200 ms target, and is
   * still far above a connect on a private network. Default 100.
   */
  redis_connect_timeout_ms: number;
  /** `timeout client` / `timeout server` for Redis connections. Default 1800000 (30 min). */
  redis_idle_timeout_ms: number;
  /** The master follower's full check against a Sentinel majority. Default 2000. */
  follower_interval_ms: number;
  /** The follower's per-call timeout (Sentinel, Redis ROLE, Runtime API). Default 500. */
  follower_timeout_ms: number;
  /** Host directory of haproxy.cfg. Default /opt/keybuzz/haproxy/conf. */
  config_dir: string;
  /** Host directory of the Runtime API socket and the server-state file. Default /opt/keybuzz/haproxy/run. */
  runtime_dir: string;
}

export const HAPROXY_DEFAULTS: HaproxySettings = {
  bind: 'any',
  redis_port: 6379,
  stats_port: 8404,
  maxconn: 4096,
  redis_connect_timeout_ms: 100,
  redis_idle_timeout_ms: 1_800_000,
  follower_interval_ms: 2000,
  follower_timeout_ms: 500,
  config_dir: '/opt/keybuzz/haproxy/conf',
  runtime_dir: '/opt/keybuzz/haproxy/run',
};

export const REDIS_BACKEND = 'be_redis_master';
export const REDIS_SERVER = 'redis-master';
/** Where runtime_dir is mounted in the container. */
const RUNTIME_MOUNT = '/run/kb-haproxy';
const CONFIG_MOUNT = '/usr/local/etc/haproxy';

export function haproxyHosts(inv: Inventory): Server[] {
  return serversByRole(inv, 'lb', 'internal-haproxy');
}

/** The address HAProxy's frontends listen on for `node`. */
export function bindAddress(node: Server, s: HaproxySettings): string {
  return s.bind === 'private' ? node.privateIp : '0.0.0.0';
}

/** Where a client on the private network reaches the Redis frontend of each HAProxy node. */
export function redisFrontends(inv: Inventory, s: HaproxySettings): { node: string; host: string; port: number }[] {
  return haproxyHosts(inv).map((h) => ({ node: h.hostname, host: h.privateIp, port: s.redis_port }));
}

/**
 * haproxy.cfg for one node. `be_redis_master` has exactly one server, which starts with no
 * usable address and disabled: it only receives traffic once kb's master follower has set
 * the address the Sentinel majority agrees on (or once the server-state file the follower
 * writes restores it at a restart). Its name in the configuration is a placeholder under
 * .invalid on purpose: HAProxy applies an address from the state file only to servers
 * configured by name (`init-addr last`), and never resolves it.
 */
export function haproxyConfig(node: Server, s: HaproxySettings, redis: RedisSettings): string {
  const bind = bindAddress(node, s);
  const lines = [
    `# Rendered by kb (module haproxy) for ${node.hostname}. Do not edit: kb rewrites it.`,
    'global',
    `    maxconn ${s.maxconn}`,
    '    # Runtime API: a local unix socket only, admin level (kb\'s master follower).',
    `    stats socket ${RUNTIME_MOUNT}/admin.sock mode 600 level admin`,
    '    # Written by the master follower after every change; loaded at every start.',
    `    server-state-file ${RUNTIME_MOUNT}/server-state`,
    '',
    'defaults',
    '    mode tcp',
    '    timeout connect 5s',
    `    timeout client ${s.redis_idle_timeout_ms}ms`,
    `    timeout server ${s.redis_idle_timeout_ms}ms`,
    '    load-server-state-from-file global',
    '',
    `frontend fe_redis_${s.redis_port}`,
    `    bind ${bind}:${s.redis_port}`,
    `    default_backend ${REDIS_BACKEND}`,
    '',
    `# Always the master the Sentinel majority of "${redis.master_name}" agrees on, set by kb's follower.`,
    `backend ${REDIS_BACKEND}`,
    '    option redispatch 1',
    '    retries 3',
    `    timeout connect ${s.redis_connect_timeout_ms}ms`,
    `    server ${REDIS_SERVER} redis-master.kb.invalid:${redis.port} init-addr last,192.0.2.1 disabled`,
  ];
  if (s.stats_port) {
    lines.push('', 'listen stats', `    bind ${bind}:${s.stats_port}`, '    mode http', '    timeout client 30s', '    stats enable', '    stats uri /', '    stats refresh 10s');
  }
  return `${lines.join('\n')}\n`;
}

/**
 * Internal HAProxy (ROLE=lb, SUBROLE=internal-haproxy): one `haproxy` container with a
 * configuration rendered by kb, a Redis frontend whose single backend server follows the
 * Sentinel master through kb's master follower (run by the agent on the node), and the
 * Runtime API on a local unix socket.
 *
 * Health: the container runs, the frontend accepts connections, the follower has HAProxy
 * on the master a Sentinel majority agrees on, and a SET/GET through the frontend works.
 */
export const haproxyModule: ModuleDefinition<HaproxySettings> = {
  name: 'haproxy',
  description: 'Internal HAProxy (ROLE=lb, SUBROLE=internal-haproxy): be_redis_master follows the Sentinel master',
  imageKeys: { haproxy: 'haproxy_image' },
  uses: ['redis'],
  // Clients of Redis on these nodes, the master follower and the SET/GET check use redis.env.
  credentials: ['redis'],

  hosts: haproxyHosts,

  checkInventory() {
    return [];
  },

  settings(raw: RawSettings, inv: Inventory) {
    const out = checkSettings(raw, inv, HAPROXY_DEFAULTS, {
      bind: 'string', redis_port: 'port', stats_port: 'int', maxconn: 'int', redis_connect_timeout_ms: 'int',
      redis_idle_timeout_ms: 'int', follower_interval_ms: 'int', follower_timeout_ms: 'int', config_dir: 'abspath', runtime_dir: 'abspath',
    });
    const bad = (field: string, message: string) => out.problems.push({ file: raw.file, line: 1, field, message });
    for (const [where, v] of [['', out.settings], ...Object.entries(out.nodes).map(([n, x]) => [`nodes.${n}.`, x] as const)] as const) {
      if (v.bind !== undefined && v.bind !== 'any' && v.bind !== 'private') {
        bad(`${where}bind`, `must be "any" (0.0.0.0) or "private" (the node's private address), not "${v.bind}": HAProxy never binds a load-balancer address`);
      }
    }
    const s = out.settings;
    if (s.stats_port < 0 || s.stats_port > 65535) bad('stats_port', 'must be 0 (off) or a port number');
    if (s.stats_port === s.redis_port) bad('stats_port', `must differ from redis_port (${s.redis_port})`);
    if (s.maxconn < 1) bad('maxconn', 'must be at least 1');
    if (s.redis_connect_timeout_ms < 10) bad('redis_connect_timeout_ms', 'must be at least 10');
    if (s.redis_idle_timeout_ms < 1000) bad('redis_idle_timeout_ms', 'must be at least 1000');
    if (s.follower_interval_ms < 100) bad('follower_interval_ms', 'must be at least 100');
    if (s.follower_timeout_ms < 10) bad('follower_timeout_ms', 'must be at least 10');
    return out;
  },

  render({ inventory, node, images, settings, nodeSettings, peers, secrets }: RenderInput<HaproxySettings>): NodeDesired {
    const s = { ...settings, ...nodeSettings };
    const redis = (peers.redis as RedisSettings | undefined) ?? REDIS_DEFAULTS;
    const config = haproxyConfig(node, s, redis);
    const topo = redisTopology(inventory, redis);
    const checkHost = s.bind === 'private' ? node.privateIp : '127.0.0.1';
    return {
      module: 'haproxy',
      containers: [container({
        name: 'haproxy',
        image: images.haproxy!,
        args: ['-f', `${CONFIG_MOUNT}/haproxy.cfg`],
        // The configuration's hash: a changed configuration restarts HAProxy, which reloads the server state.
        env: { KB_CONFIG_SHA256: sha256Hex(config) },
        volumes: [
          { hostPath: s.config_dir, containerPath: CONFIG_MOUNT, readOnly: true },
          { hostPath: s.runtime_dir, containerPath: RUNTIME_MOUNT, readOnly: false },
        ],
        restartPolicy: 'unless-stopped',
        order: 1,
      })],
      files: [{ path: `${s.config_dir}/haproxy.cfg`, mode: 0o644, content: Buffer.from(config) }],
      healthChecks: [
        healthCheck({ name: 'redis-frontend', kind: 'tcp', host: checkHost, port: s.redis_port }),
        healthCheck({ name: 'follower', kind: 'redis-follower' }),
        healthCheck({ name: 'redis-set-get', kind: 'redis-setget', host: checkHost, port: s.redis_port, timeoutMs: 2000, ...(secrets?.redis ? REDIS_CREDENTIALS_CHECK : {}) }),
      ],
      redisFollower: {
        masterName: redis.master_name,
        sentinels: topo.sentinels.map((x) => `${x.host}:${x.port}`),
        runtimeSocket: `${s.runtime_dir}/admin.sock`,
        backend: REDIS_BACKEND,
        server: REDIS_SERVER,
        serverStateFile: `${s.runtime_dir}/server-state`,
        reconcileIntervalMs: s.follower_interval_ms,
        timeoutMs: s.follower_timeout_ms,
        ...(secrets?.redis ? { credentialsFile: REDIS_CREDENTIALS_CHECK.credentialsFile } : {}),
      },
    };
  },
};
