import type { Inventory, Server } from '../../shared/inventory/index.js';
import { serversByRole } from '../../shared/inventory/index.js';
import type { Problem } from '../../shared/errors/index.js';
import { container, healthCheck } from '../../shared/plan/builders.js';
import type { ModuleDefinition, NodeDesired, RawSettings, RenderInput } from './types.js';
import { checkSettings } from './settings.js';
import { redisAuth } from './redis-auth.js';

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
}

const DEFAULTS: RedisSettings = {
  port: 6379,
  maxmemory_policy: 'allkeys-lru',
  data_dir: '/opt/keybuzz/redis/data',
  extra_args: [],
};

function masters(inv: Inventory): Server[] {
  return serversByRole(inv, 'redis', 'master');
}

/**
 * Redis data nodes (ROLE=redis). The SUBROLE=master row is the initial master; the
 * others start as replicas with `--replicaof`. Every instance binds to its node's
 * private address. Rollout order: master first, then replicas in inventory order, so a
 * fresh install has a master for the replicas to follow.
 */
export const redisModule: ModuleDefinition<RedisSettings> = {
  name: 'redis',
  description: 'Redis master + replicas (ROLE=redis), bound to each node private address',
  imageKeys: { redis: 'redis_image' },
  credentials: ['redis'],
  verifies: ['redis'],

  hosts(inv) {
    const all = serversByRole(inv, 'redis');
    return [...all.filter((s) => s.subrole === 'master'), ...all.filter((s) => s.subrole !== 'master')];
  },

  checkInventory(inv) {
    const problems: Problem[] = [];
    const m = masters(inv);
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
    return checkSettings(raw, inv, DEFAULTS, {
      port: 'port', maxmemory_policy: 'string', data_dir: 'abspath', extra_args: 'string[]',
    });
  },

  render({ inventory, node, images, settings, nodeSettings, secrets }: RenderInput<RedisSettings>): NodeDesired {
    const s = { ...settings, ...nodeSettings };
    const master = masters(inventory)[0];
    if (!master) throw new Error('redis: no master in inventory');
    const isMaster = master.hostname === node.hostname;
    const auth = redisAuth(secrets?.redis);
    const args = [
      ...auth.argsPrefix,
      '--bind', node.privateIp,
      '--port', String(s.port),
      '--appendonly', 'yes',
      '--maxmemory-policy', s.maxmemory_policy,
      ...(isMaster ? [] : ['--replicaof', master.privateIp, String(settings.port)]),
      ...s.extra_args,
    ];
    return {
      module: 'redis',
      containers: [container({
        name: 'redis',
        image: images.redis!,
        args,
        env: auth.env,
        volumes: [{ hostPath: s.data_dir, containerPath: '/data', readOnly: false }, ...auth.volumes],
        restartPolicy: 'unless-stopped',
        order: 1,
      })],
      files: [],
      secretFiles: auth.secretFiles,
      healthChecks: [
        healthCheck({ name: 'redis-port', kind: 'tcp', host: node.privateIp, port: s.port }),
        healthCheck({ name: 'redis-role', kind: 'redis-role', host: node.privateIp, port: s.port, expectRole: isMaster ? 'master' : 'slave', ...auth.check }),
      ],
    };
  },
};
