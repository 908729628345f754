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
