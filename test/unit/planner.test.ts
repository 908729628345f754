import { describe, expect, it } from 'vitest';
import { checkInventory, parseInventory } from '../../shared/inventory/index.js';
import { parseVersions } from '../../shared/versions/index.js';
import { InputError } from '../../shared/errors/index.js';
import { getModule } from '../../coordinator/modules/index.js';
import { parseSettings } from '../../coordinator/modules/settings-file.js';
import { checkNodeFilter, computeDesired, diffNode } from '../../coordinator/planner.js';
import type { ImageResolver } from '../../coordinator/images/resolve.js';

const HEADER = 'ENV\tIP_PUBLIQUE\tHOSTNAME\tIP_PRIVEE\tFQDN\tUSER_SSH\tPOOL\tROLE\tSUBROLE\tDOCKER_STACK\tCORE\tNOTES';
const row = (name: string, ip: string, role: string, subrole: string) => `prod\t-\t${name}\t${ip}\t${name}.t\troot\tp\t${role}\t${subrole}\tx\tyes\tn`;
const inv = (...rows: string[]) => parseInventory([HEADER, ...rows].join('\n') + '\n', 'servers.tsv');
const versions = parseVersions('redis_image: "127.0.0.1:5000/kb/redis:7.0-kb1"  # pinned\n', 'versions.yaml');
const DIGEST = `sha256:${'a'.repeat(64)}`;
const resolver: ImageResolver = { resolve: async (ref) => `${ref}@${DIGEST}` };
const redis = getModule('redis');
const three = inv(row('redis-02', '127.0.1.2', 'redis', 'replica'), row('redis-01', '127.0.1.1', 'redis', 'master'), row('redis-03', '127.0.1.3', 'redis', 'replica'), row('lb-1', '127.0.1.11', 'lb', 'internal-haproxy'));

describe('redis module plan', () => {
  it('numbers its states with the revision asked for (0 by default), which no spec hash covers', async () => {
    const inputs = { inventory: three, versions, settings: {} };
    const plain = await computeDesired(redis, inputs, resolver);
    const next = await computeDesired(redis, inputs, resolver, undefined, 7);
    expect(Object.values(plain.states).map((s) => s.revision)).toEqual([0, 0, 0]);
    expect(Object.values(next.states).map((s) => s.revision)).toEqual([7, 7, 7]);
    for (const [node, s] of Object.entries(next.states)) {
      expect(s.specHash).toBe(plain.states[node]!.specHash);
      expect({ ...s, revision: 0 }).toEqual(plain.states[node]);
    }
  });

  it('puts the master first, pins one digest for every node, binds each node, replicas follow the master', async () => {
    const d = await computeDesired(redis, { inventory: three, versions, settings: {} }, resolver);
    expect(d.order).toEqual(['redis-01', 'redis-02', 'redis-03']);
    expect(d.images).toEqual({ redis: `127.0.0.1:5000/kb/redis:7.0-kb1@${DIGEST}` });
    const m = d.states['redis-01']!.containers.find((c) => c.name === 'redis')!;
    expect(m.image).toBe(d.images.redis);
    const after = (args: string[], flag: string) => args[args.indexOf(flag) + 1];
    expect(after(m.args, '--bind')).toBe('127.0.1.1');
    expect(after(m.args, '--port')).toBe('6379');
    expect(after(m.args, '--appendonly')).toBe('yes');
    expect(after(m.args, '--maxmemory-policy')).toBe('allkeys-lru');
    expect(m.networkMode).toBe('host');
    expect(m.restartPolicy).toBe('unless-stopped');
    expect(m.volumes).toContainEqual({ hostPath: '/opt/keybuzz/redis/data', containerPath: '/data', readOnly: false });
    // Replicas follow the inventory's master unless a Sentinel majority names another one.
    expect(m.env.KB_DEFAULT_MASTER).toBe('');
    const r = d.states['redis-03']!.containers.find((c) => c.name === 'redis')!;
    expect(r.env.KB_DEFAULT_MASTER).toBe('127.0.1.1:6379');
    expect(r.env.KB_SELF).toBe('127.0.1.3:6379');
    expect(d.states['redis-03']!.containers.map((c) => c.name).sort()).toEqual(['redis', 'redis-sentinel']);
    for (const s of Object.values(d.states)) for (const c of s.containers) expect(c.image).toBe(d.images.redis);
    expect(d.states['redis-02']!.healthChecks.map((c) => c.kind)).toEqual(expect.arrayContaining(['tcp', 'redis-replication', 'redis-sentinel']));
    expect(d.states['lb-1']).toBeUndefined();
  });

  it('gives the same hash for the same inputs and another when a setting changes', async () => {
    const a = await computeDesired(redis, { inventory: three, versions, settings: {} }, resolver);
    const b = await computeDesired(redis, { inventory: three, versions, settings: {} }, resolver);
    expect(a.states['redis-02']!.specHash).toBe(b.states['redis-02']!.specHash);
    const settings = parseSettings('redis:\n  nodes:\n    redis-02: { extra_args: ["--save", ""] }\n', 'modules.yaml', ['redis']);
    const c = await computeDesired(redis, { inventory: three, versions, settings }, resolver);
    expect(c.states['redis-02']!.specHash).not.toBe(a.states['redis-02']!.specHash);
    expect(c.states['redis-01']!.specHash).toBe(a.states['redis-01']!.specHash);
  });

  it('refuses two masters, a missing image key and bad settings, with every problem at once', async () => {
    // The inventory parser refuses two masters too; the module checks on its own as well.
    const twoMasters = checkInventory([HEADER, row('redis-01', '127.0.1.1', 'redis', 'master'), row('redis-02', '127.0.1.2', 'redis', 'master')].join('\n'), 'servers.tsv').inventory;
    const settings = parseSettings('redis:\n  port: 99999\n  colour: blue\n', 'modules.yaml', ['redis']);
    const noKey = parseVersions('haproxy_image: "h:1"\n', 'versions.yaml');
    const err = await computeDesired(redis, { inventory: twoMasters, versions: noKey, settings }, resolver).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    const text = (err as InputError).message;
    expect(text).toContain('servers.tsv:3: redis: more than one master: redis-01 (line 2), redis-02 (line 3)');
    expect(text).toContain('modules.yaml:1: port: must be a port number (1-65535)');
    expect(text).toContain('modules.yaml:1: colour: unknown setting');
    expect(text).toContain('redis_image');
  });

  it('refuses a node filter naming a node outside the inventory or the module', () => {
    expect(() => checkNodeFilter(redis, three, ['redis-09'])).toThrow('node "redis-09" is not in the inventory');
    expect(() => checkNodeFilter(redis, three, ['lb-1'])).toThrow('node "lb-1" does not run module redis');
    expect(() => checkNodeFilter(redis, three, ['redis-02'])).not.toThrow();
  });

  it('settings file: unknown module and YAML errors name the file and line', () => {
    expect(() => parseSettings('redis: {}\nmongo:\n  x: 1\n', 'modules.yaml', ['redis'])).toThrow('modules.yaml:2: mongo: unknown module (known modules: redis)');
    expect(() => parseSettings('redis: [\n', 'modules.yaml', ['redis'])).toThrow(/^modules\.yaml:\d+: /);
  });
});

describe('diffNode', () => {
  it('says create, unchanged, or replace with the reasons', async () => {
    const a = await computeDesired(redis, { inventory: three, versions, settings: {} }, resolver);
    const s = a.states['redis-02']!;
    const created = diffNode('redis-02', undefined, s, true);
    expect(created.action).toBe('create');
    expect(created.containers.map((c) => c.action)).toEqual(s.containers.map(() => 'create'));
    const same = diffNode('redis-02', s, s, true);
    expect(same.action).toBe('unchanged');
    expect(same.containers.every((c) => c.action === 'unchanged')).toBe(true);
    const bumped = { ...s, specHash: 'other', containers: [{ ...s.containers[0]!, image: 'x@sha256:b' }] };
    const d = diffNode('redis-02', s, bumped, false);
    expect(d.action).toBe('update');
    expect(d.connected).toBe(false);
    expect(d.containers[0]!.action).toBe('replace');
    expect(d.containers[0]!.reasons[0]).toMatch(/^image .* -> x@sha256:b$/);
    expect(d.containers.slice(1).map((c) => c.action)).toEqual(s.containers.slice(1).map(() => 'remove'));
  });
});
