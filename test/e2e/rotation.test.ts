import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, REDIS_NODES, SUBNET } from '../helpers/cluster.js';
import { credentialsDirOf, filesUnder, findIn, readSources, redisPasswordOn, secretValuesOf, sourceWithShell, storeValues } from '../helpers/credentials.js';
import { Proc, sleep, waitFor } from '../helpers/proc.js';

// `kbctl secrets rotate redis` on the real engine, with a client writing through a real
// HAProxy (TCP, in front of the master) the whole time: the old password keeps working
// until every consumer runs with the new one, the client (which reads redis.env on
// reconnect, as applications do) keeps working at the end, and the old password is rejected
// once the rotation completes.

const GATE = ['--min-healthy-time', '1s', '--healthy-deadline', '60s'];
const PROXY = `${SUBNET}.10`;
let cluster: Cluster;
let haproxy: Proc;

beforeAll(async () => {
  cluster = new Cluster();
  await cluster.start();
  const r = await cluster.kbctl(['rollout', 'redis', ...GATE]);
  if (r.code !== 0) throw new Error(`initial rollout failed: ${r.stdout}\n${r.stderr}\n${cluster.dumpLogs()}`);
  const cfg = path.join(cluster.dir, 'haproxy.cfg');
  writeFileSync(cfg, [
    'global', '  maxconn 256',
    'defaults', '  mode tcp', '  timeout connect 1s', '  timeout client 30s', '  timeout server 30s',
    'frontend fe_redis', `  bind ${PROXY}:6379`, '  default_backend be_redis_master',
    'backend be_redis_master', `  server redis-master ${REDIS_NODES[0]!.ip}:6379`, '',
  ].join('\n'));
  haproxy = new Proc('haproxy', '/usr/sbin/haproxy', ['-db', '-f', cfg], path.join(cluster.dir, 'haproxy.log'));
  await waitFor('haproxy listening', async () => (await tryAuth(PROXY, await redisPasswordOn(cluster, 'redis-01'))) === 'ok', 10_000, 100);
});

afterAll(async () => {
  await haproxy?.kill('SIGKILL');
  await cluster?.stop();
});

/** 'ok' when AUTH with `password` and PING succeed on host:6379, else the error. */
async function tryAuth(host: string, password: string): Promise<string> {
  const r = new Redis({ host, port: 6379, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, password, connectTimeout: 1000 });
  let first: Error | undefined;
  r.on('error', (err: Error) => { first ??= err; });
  try {
    await r.connect();
    await r.ping();
    return 'ok';
  } catch (err) {
    // ioredis rejects with "Connection is closed." after a failed AUTH; the reply it emitted first says why.
    return first && /closed/i.test((err as Error).message) ? first.message : (err as Error).message;
  } finally {
    r.disconnect();
  }
}

/**
 * A client writing through the proxy every 50 ms. With `fixed`, it always uses that password;
 * otherwise it reads REDIS_PASSWORD from redis-01's redis.env (with a real shell) whenever it
 * (re)connects, as an application started from `source redis.env` would after a restart.
 */
class Writer {
  ok = 0;
  failed = 0;
  lastOkMs = 0;
  lastError = '';
  results: { atMs: number; ok: boolean }[] = [];
  private client: Redis | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;

  constructor(private readonly fixed?: string) {}

  start(): void {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    let i = 0;
    while (!this.stopped) {
      i++;
      try {
        if (!this.client) {
          const password = this.fixed ?? await redisPasswordOn(cluster, 'redis-01');
          const c = new Redis({ host: PROXY, port: 6379, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, password, connectTimeout: 1000, commandTimeout: 1000 });
          c.on('error', () => undefined);
          this.client = c;
          await c.connect();
        }
        await this.client.set(`kb:rotation:${this.fixed ? 'old' : 'app'}`, String(i));
        this.ok++;
        this.lastOkMs = Date.now();
        this.results.push({ atMs: Date.now(), ok: true });
      } catch (err) {
        this.failed++;
        this.lastError = (err as Error).message;
        this.results.push({ atMs: Date.now(), ok: false });
        this.client?.disconnect();
        this.client = undefined;
      }
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.loop;
    this.client?.disconnect();
  }
}

describe('rotation of the Redis password', () => {
  it('moves every node to a new password through health-gated phases; old valid until all consumers switched, then rejected; clients through the proxy keep working', async () => {
    const before = storeValues(cluster).get('redis@1')!;
    const oldPassword = before.REDIS_PASSWORD!;
    expect(await redisPasswordOn(cluster, 'redis-03')).toBe(oldPassword);
    expect(await tryAuth(REDIS_NODES[1]!.ip, 'not-the-password')).toMatch(/WRONGPASS/);
    const app = new Writer();
    const old = new Writer(oldPassword);
    app.start();
    old.start();
    await waitFor('writers running', () => app.ok > 5 && old.ok > 5, 10_000);

    const r = await cluster.kbctl(['-o', 'json', 'secrets', 'rotate', 'redis', ...GATE]);
    if (r.code !== 0) console.log(r.stdout, r.stderr, cluster.dumpLogs());
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { rotation: { state: string; fromVersion: number; toVersion: number; rollouts: string[] }; events: { rolloutId: string; node: string; kind: string; atMs: number }[] };
    expect(out.rotation).toMatchObject({ state: 'succeeded', fromVersion: 1, toVersion: 2 });
    expect(out.rotation.rollouts).toHaveLength(3); // accept, switch, retire: one redis rollout each

    // Let the app writer see the end state for a moment, then stop both.
    await sleep(1500);
    await app.stop();
    await old.stop();

    const after = storeValues(cluster).get('redis@2')!;
    const newPassword = after.REDIS_PASSWORD!;
    expect(newPassword).not.toBe(oldPassword);
    expect(after.REDIS_MASTER_NAME).toBe(before.REDIS_MASTER_NAME);
    // Every node's redis.env is the new version, exactly.
    for (const n of REDIS_NODES) {
      expect(await sourceWithShell(path.join(credentialsDirOf(cluster, n.name), 'redis.env'), Object.keys(after)), n.name).toEqual(after);
    }

    // The old password stayed valid until every consumer had the new one: it still worked
    // after the last node of the switch phase applied the new redis.env.
    const switchId = out.rotation.rollouts[1]!;
    const switched = Math.max(...out.events.filter((e) => e.rolloutId === switchId && e.kind === 'node-applied').map((e) => e.atMs));
    expect(out.events.filter((e) => e.rolloutId === switchId && e.kind === 'node-applied').map((e) => e.node).sort()).toEqual(REDIS_NODES.map((n) => n.name));
    expect(old.results.some((x) => x.ok && x.atMs > switched), 'old password still accepted after every consumer switched').toBe(true);

    // At the end: the old password is rejected everywhere, the new one accepted everywhere.
    for (const n of REDIS_NODES) {
      expect(await tryAuth(n.ip, oldPassword), n.name).toMatch(/WRONGPASS/);
      expect(await tryAuth(n.ip, newPassword), n.name).toBe('ok');
    }
    expect(await tryAuth(PROXY, oldPassword)).toMatch(/WRONGPASS/);
    expect(old.lastError).toMatch(/WRONGPASS|closed|ECONN/);

    // The application kept working at the end: its last writes through the proxy succeeded.
    const tail = app.results.slice(-10);
    expect(tail.every((x) => x.ok), `last writes: ${JSON.stringify(tail)} (${app.lastError})`).toBe(true);
    console.log(`rotation: ${r.ms} ms; app writes ok=${app.ok} failed=${app.failed} (each node restarts once per phase); old-password writes ok=${old.ok}`);

    // Replication works with the new masterauth.
    const m = new Redis({ host: PROXY, port: 6379, lazyConnect: true, password: newPassword, maxRetriesPerRequest: 0, retryStrategy: () => null });
    await m.connect();
    await m.set('kb:rotation:check', 'v2');
    m.disconnect();
    for (const n of REDIS_NODES.slice(1)) {
      await waitFor(`${n.name} replicates`, async () => {
        const c = new Redis({ host: n.ip, port: 6379, lazyConnect: true, password: newPassword, maxRetriesPerRequest: 0, retryStrategy: () => null });
        try {
          await c.connect();
          return (await c.get('kb:rotation:check')) === 'v2';
        } finally {
          c.disconnect();
        }
      }, 10_000);
    }

    const list = JSON.parse((await cluster.kbctl(['-o', 'json', 'secrets', 'list'])).stdout) as { versions: { name: string; version: number; state: string; source: string; nodes: string[] }[]; rotations: { name: string; state: string }[] };
    expect(list.versions.filter((v) => v.name === 'redis').map((v) => [v.version, v.state, v.source, v.nodes.join(',')])).toEqual([
      [1, 'retired', 'generated', ''], [2, 'active', 'rotated', 'redis-01,redis-02,redis-03'],
    ]);
    expect(list.rotations).toEqual([expect.objectContaining({ name: 'redis', state: 'succeeded' })]);
  });

  it('docker inspect of the redis containers shows no password: a read-only mounted config file and a version marker', async () => {
    const values = secretValuesOf(storeValues(cluster));
    for (const n of REDIS_NODES) {
      const c = (await cluster.container(n.name, 'redis'))!;
      expect(c.Args[0]).toBe('/run/secrets/redis-server.conf');
      expect(c.Mounts.find((x) => x.Destination === '/run/secrets/redis-server.conf')).toMatchObject({ RW: false });
      expect(c.Config.Env).toContain('KB_REDIS_AUTH=accepts redis@2; masterauth redis@2');
      expect(findIn(values, [{ name: `docker inspect ${n.name}`, data: Buffer.from(JSON.stringify(c)) }])).toEqual([]);
      const conf = readFileSync(path.join(credentialsDirOf(cluster, n.name), 'redis-server.conf'), 'utf8');
      expect(conf).toMatch(/^user default on #[0-9a-f]{64} ~\* &\* \+@all$/m);
    }
  });

  it('kill -9 of the coordinator in the middle of a rotation: after a restart it resumes from its phase and completes', async () => {
    const start = await cluster.kbctl(['secrets', 'rotate', 'redis', '--detach', ...GATE]);
    expect(start.code).toBe(0);
    expect(start.stdout).toContain('rotation of redis: version 2 -> 3: phase accept, running');
    const rotation = async () => (JSON.parse((await cluster.kbctl(['-o', 'json', 'secrets', 'list'])).stdout) as { rotations: { name: string; phase: string; state: string; rollouts: string[] }[] }).rotations[0]!;
    await waitFor('rotation in its switch phase', async () => (await rotation()).phase === 'switch', 60_000, 100);
    await cluster.coordinator!.kill('SIGKILL');
    await sleep(300);
    await cluster.startCoordinator();
    const done = await waitFor('rotation finished after the restart', async () => {
      const r = await rotation();
      return r.state !== 'running' && r;
    }, 120_000, 250);
    if (done.state !== 'succeeded') console.log(JSON.stringify(done), cluster.dumpLogs());
    expect(done).toMatchObject({ state: 'succeeded', phase: 'retire' });
    expect(readFileSync(path.join(cluster.dir, 'coordinator.log'), 'utf8')).toContain('resuming');
    const v2 = storeValues(cluster).get('redis@2')!.REDIS_PASSWORD!;
    const v3 = storeValues(cluster).get('redis@3')!.REDIS_PASSWORD!;
    for (const n of REDIS_NODES) {
      expect(await redisPasswordOn(cluster, n.name)).toBe(v3);
      expect(await tryAuth(n.ip, v3)).toBe('ok');
      expect(await tryAuth(n.ip, v2)).toMatch(/WRONGPASS/);
    }
  });

  it('no secret value of either version is in any log, kbctl output or store file', async () => {
    const needles = secretValuesOf(storeValues(cluster));
    const logs = readSources(filesUnder(cluster.dir).filter((p) => p.endsWith('.log')));
    const store = readSources(filesUnder(cluster.dataDir));
    const kbctl = cluster.kbctlOutput.map((t, i) => ({ name: `kbctl output #${i}`, data: Buffer.from(t) }));
    expect(findIn(needles, [...logs, ...store, ...kbctl])).toEqual([]);
  });
});
