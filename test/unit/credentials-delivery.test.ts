import { describe, expect, it } from 'vitest';
import type { ImageResolver } from '../../coordinator/images/resolve.js';
import { getModule } from '../../coordinator/modules/index.js';
import type { ModuleDefinition } from '../../coordinator/modules/types.js';
import { computeDesired, diffNode } from '../../coordinator/planner.js';
import { CREDENTIALS, mayReceive } from '../../shared/credentials/index.js';
import { InputError } from '../../shared/errors/index.js';
import { loadInventory, parseInventory } from '../../shared/inventory/index.js';
import { parseVersions } from '../../shared/versions/index.js';
import { sharedFixture } from '../helpers/shared-fixtures.js';

const resolver: ImageResolver = { resolve: async (ref) => `${ref}@sha256:${'a'.repeat(64)}` };
const versions = parseVersions('redis_image: "127.0.0.1:5000/kb/redis:7.0-kb1"\n', 'versions.yaml');
const HEADER = 'ENV\tIP_PUBLIQUE\tHOSTNAME\tIP_PRIVEE\tFQDN\tUSER_SSH\tPOOL\tROLE\tSUBROLE\tDOCKER_STACK\tCORE\tNOTES';
const row = (name: string, ip: string, role: string, subrole: string) => `prod\t-\t${name}\t${ip}\t${name}.t\troot\tp\t${role}\t${subrole}\tx\tyes\tn`;
const redis = getModule('redis');

describe('delivery by role (the real 48-row inventory)', () => {
  it('gives each host only the credentials files its role needs', () => {
    const inv = loadInventory(sharedFixture('servers.tsv'));
    const files = (host: string) => CREDENTIALS.filter((c) => mayReceive(c, inv.servers.find((s) => s.hostname === host)!)).map((c) => c.file);
    expect(files('redis-01')).toEqual(['redis.env']);
    expect(files('haproxy-01')).toEqual(['postgres.env', 'redis.env']);
    expect(files('minio-01')).toEqual(['minio.env']);
    expect(files('db-master-01')).toEqual(['postgres.env']);
    expect(files('maria-02')).toEqual(['mariadb.env']);
    expect(files('proxysql-01')).toEqual(['mariadb.env', 'proxysql.env']);
    expect(files('queue-03')).toEqual(['rabbitmq.env']);
    expect(files('k8s-worker-05')).toEqual(['k3s.env']);
    expect(files('api-gateway-01')).toEqual([]);
    expect(files('vault-01')).toEqual([]);
    // redis.env reaches exactly the Redis and internal HAProxy hosts.
    const redisEnv = CREDENTIALS.find((c) => c.name === 'redis')!;
    expect(inv.servers.filter((s) => mayReceive(redisEnv, s)).map((s) => s.hostname)).toEqual(['redis-01', 'redis-02', 'redis-03', 'haproxy-01', 'haproxy-02']);
  });

  it('a module that would bring a file to a host whose role does not need it is refused by the planner, naming the host', async () => {
    const inv = parseInventory([HEADER, row('redis-01', '10.0.0.1', 'redis', 'master'), row('minio-01', '10.0.0.2', 'storage', 'minio'), row('redis-02', '10.0.0.3', 'redis', 'replica'), row('redis-03', '10.0.0.4', 'redis', 'replica')].join('\n') + '\n', 'servers.tsv');
    const greedy: ModuleDefinition<unknown> = { ...(redis as ModuleDefinition<unknown>), name: 'greedy', credentials: ['redis'], hosts: (i) => i.servers };
    const err = await computeDesired(greedy, { inventory: inv, versions, settings: {} }, resolver, { redis: { active: 1, accepted: [1] } }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).message).toBe('servers.tsv:3: ROLE: module greedy would deliver redis.env to minio-01 (ROLE=storage/minio), which the credentials policy does not allow');
  });
});

describe('plans refer to secrets by name and version', () => {
  const inv = parseInventory([HEADER, row('redis-01', '10.0.0.1', 'redis', 'master'), row('redis-02', '10.0.0.2', 'redis', 'replica')].join('\n') + '\n', 'servers.tsv');

  it('adds redis.env at the active version; a new version changes the spec hash; no value is in the state', async () => {
    const v1 = await computeDesired(redis, { inventory: inv, versions, settings: {} }, resolver, { redis: { active: 1, accepted: [1] } });
    const v2 = await computeDesired(redis, { inventory: inv, versions, settings: {} }, resolver, { redis: { active: 2, accepted: [2] } });
    const s1 = v1.states['redis-02']!;
    expect(s1.secrets?.filter((r) => r.file)).toEqual([{ name: 'redis', version: 1, file: 'redis.env' }]);
    expect(v2.states['redis-02']!.specHash).not.toBe(s1.specHash);
    expect(diffNode('redis-02', s1, v2.states['redis-02']!, true).credentials).toContain('redis.env version 1 -> 2');
    const again = await computeDesired(redis, { inventory: inv, versions, settings: {} }, resolver, { redis: { active: 1, accepted: [1] } });
    expect(again.states['redis-02']!.specHash).toBe(s1.specHash);
  });

  it('without a secret store the states carry no credentials and hash as before credentials existed', async () => {
    const d = await computeDesired(redis, { inventory: inv, versions, settings: {} }, resolver);
    expect(d.states['redis-01']!.secrets ?? []).toEqual([]);
  });
});

describe('Redis HA wiring of redis.env', () => {
  const ha = parseInventory([
    HEADER, row('redis-01', '10.0.0.1', 'redis', 'master'), row('redis-02', '10.0.0.2', 'redis', 'replica'), row('redis-03', '10.0.0.3', 'redis', 'replica'),
    row('haproxy-01', '10.0.0.11', 'lb', 'internal-haproxy'), row('minio-01', '10.0.0.134', 'storage', 'minio'),
  ].join('\n') + '\n', 'servers.tsv');
  const v = parseVersions('redis_image: "127.0.0.1:5000/kb/redis:7.0-kb1"\nhaproxy_image: "127.0.0.1:5000/kb/haproxy:2.6-kb1"\n', 'versions.yaml');
  const rotating = { redis: { active: 1, accepted: [1, 2] } };

  it('redis: password files mounted read-only, no value or password flag in args or env, checks read redis.env', async () => {
    const d = await computeDesired(redis, { inventory: ha, versions: v, settings: {} }, resolver, rotating);
    const st = d.states['redis-02']!;
    const [server, sentinel] = st.containers;
    expect(server!.args.slice(0, 4)).toEqual(['-c', expect.any(String), 'redis-server', '/run/secrets/redis-server.conf']);
    expect(server!.args.join(' ')).not.toMatch(/requirepass|masterauth/);
    expect(server!.volumes).toContainEqual({ hostPath: '/opt/keybuzz-installer/credentials/redis-server.conf', containerPath: '/run/secrets/redis-server.conf', readOnly: true });
    expect(server!.env.KB_REDIS_AUTH).toBe('accepts redis@1,redis@2; uses redis@1');
    expect(sentinel!.volumes).toContainEqual({ hostPath: '/opt/keybuzz-installer/credentials/redis-sentinel.conf', containerPath: '/run/secrets/redis-sentinel.conf', readOnly: true });
    expect(st.files).toEqual([]); // the Sentinel template holds passwords: only as a rendered credentials file
    const files = Object.fromEntries((st.secretFiles ?? []).map((f) => [f.file, f]));
    expect(files['redis-server.conf']!.template).toContain('user default on #{{sha256 redis@1 REDIS_PASSWORD}} #{{sha256 redis@2 REDIS_PASSWORD}} ~* &* +@all');
    expect(files['redis-server.conf']!.template).toContain('masterauth {{redis redis@1 REDIS_PASSWORD}}');
    expect(files['redis-sentinel.conf']!.template).toMatch(/sentinel monitor kb-redis-master 10\.0\.0\.1 6379 2\n[\s\S]*sentinel auth-pass kb-redis-master \{\{redis redis@1 REDIS_PASSWORD\}\}/);
    expect(files['redis-sentinel.conf']!.template).toContain('sentinel sentinel-pass {{redis redis@1 REDIS_SENTINEL_PASSWORD}}');
    expect([files['redis-server.conf']!.mode, files['redis-server.conf']!.uid]).toEqual([0o600, 0]);
    expect(st.secrets).toEqual([{ name: 'redis', version: 1, file: 'redis.env' }, { name: 'redis', version: 2, file: '' }]);
    for (const c of st.healthChecks.filter((h) => h.kind.startsWith('redis-'))) expect(c.credentialsFile, c.name).toBe('redis.env');
  });

  it('haproxy: redis.env delivered, the follower and the SET/GET check use it; minio gets nothing', async () => {
    const d = await computeDesired(getModule('haproxy'), { inventory: ha, versions: v, settings: {} }, resolver, rotating);
    const st = d.states['haproxy-01']!;
    expect(st.secrets).toEqual([{ name: 'redis', version: 1, file: 'redis.env' }]);
    expect(st.redisFollower?.credentialsFile).toBe('redis.env');
    expect(st.healthChecks.find((h) => h.kind === 'redis-setget')?.credentialsFile).toBe('redis.env');
    expect(Object.keys(d.states)).toEqual(['haproxy-01']);
  });
});
