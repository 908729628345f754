import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, HA_NODES, HA_SETTINGS, REDIS_NODES } from '../helpers/cluster.js';
import { credentialsDirOf, filesUnder, findIn, readSources, redisPasswordOn, secretValuesOf, sourceWithShell, storeValues } from '../helpers/credentials.js';
import { sleep, waitFor } from '../helpers/proc.js';
import { allHealthy, failing, useCredentials } from '../helpers/redis-ha.js';

// `kbctl secrets rotate redis` on the real engine and the real Redis HA layout (three Redis
// nodes with Sentinel, kb's HAProxy with its master follower), with an application writing
// through HAProxy the whole time: the old passwords keep working until every consumer runs
// with the new ones, the application (which reads redis.env on its own node when it
// reconnects) keeps working at the end, and the old passwords are rejected once the rotation
// completes.

const GATE = ['--min-healthy-time', '1s', '--healthy-deadline', '90s'];
const LB = HA_NODES.find((n) => n.role === 'lb')!;
let cluster: Cluster;

beforeAll(async () => {
  cluster = new Cluster({ nodes: HA_NODES, settings: HA_SETTINGS });
  useCredentials(cluster);
  await cluster.start();
  for (const module of ['redis', 'haproxy']) {
    const r = await cluster.kbctl(['rollout', module, ...GATE]);
    if (r.code !== 0) throw new Error(`rollout ${module} failed: ${r.stdout}\n${r.stderr}\n${cluster.dumpLogs()}`);
  }
});

afterAll(async () => {
  await cluster?.stop();
});

/** 'ok' when AUTH with `password` and PING succeed on host:port, else the error. */
async function tryAuth(host: string, password: string, port = 6379): Promise<string> {
  const r = new Redis({ host, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, password, connectTimeout: 1000 });
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
 * An application writing through kb's HAProxy every 50 ms. With `fixed`, it always uses that
 * password; otherwise it reads REDIS_PASSWORD from haproxy-01's redis.env (with a real shell)
 * whenever it (re)connects, as an application started from `source redis.env` would.
 */
class Writer {
  ok = 0;
  failed = 0;
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
          const password = this.fixed ?? await redisPasswordOn(cluster, LB.name);
          const c = new Redis({ host: LB.ip, port: 6379, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, password, connectTimeout: 1000, commandTimeout: 1000 });
          c.on('error', () => undefined);
          this.client = c;
          await c.connect();
        }
        await this.client.set(`kb:rotation:${this.fixed ? 'old' : 'app'}`, String(i));
        this.ok++;
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

async function expectHealthy(what: string): Promise<void> {
  try {
    await waitFor(what, () => allHealthy(cluster), 60_000, 250);
  } catch (err) {
    console.log((await failing(cluster)).join('\n'), cluster.dumpLogs(20));
    throw err;
  }
}

describe('rotation of the Redis password', () => {
  it('redis.env reaches the Redis and HAProxy nodes only; Redis and Sentinel require its passwords', async () => {
    const v1 = storeValues(cluster).get('redis@1')!;
    for (const n of HA_NODES) {
      expect(await sourceWithShell(path.join(credentialsDirOf(cluster, n.name), 'redis.env'), Object.keys(v1)), n.name).toEqual(v1);
    }
    for (const n of REDIS_NODES) {
      expect(await tryAuth(n.ip, 'wrong-password'), n.name).toMatch(/WRONGPASS/);
      expect(await tryAuth(n.ip, 'wrong-password', 26379), `${n.name} sentinel`).toMatch(/WRONGPASS/);
      expect(await tryAuth(n.ip, v1.REDIS_SENTINEL_PASSWORD!, 26379), `${n.name} sentinel`).toBe('ok');
      // Sentinel keeps its own rewritten configuration (with auth-pass): kb makes it 0600.
      const conf = statSync(path.join(cluster.hostRoot(n.name), 'opt/keybuzz/redis/sentinel/sentinel.conf'));
      expect((conf.mode & 0o777).toString(8), `${n.name} sentinel.conf`).toBe('600');
    }
    await expectHealthy('every node healthy with passwords');
  });

  it('moves every consumer to new passwords through health-gated phases; old valid until all switched, then rejected; the application through HAProxy keeps working', async () => {
    const v1 = storeValues(cluster).get('redis@1')!;
    const app = new Writer();
    const old = new Writer(v1.REDIS_PASSWORD);
    app.start();
    old.start();
    await waitFor('writers running', () => app.ok > 5 && old.ok > 5, 10_000);

    const r = await cluster.kbctl(['-o', 'json', 'secrets', 'rotate', 'redis', ...GATE]);
    if (r.code !== 0) console.log(r.stdout, r.stderr, cluster.dumpLogs());
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { rotation: { state: string; fromVersion: number; toVersion: number; rollouts: string[] }; events: { rolloutId: string; node: string; kind: string; atMs: number }[] };
    expect(out.rotation).toMatchObject({ state: 'succeeded', fromVersion: 1, toVersion: 2 });
    // accept (redis), switch (redis, then haproxy), retire (redis)
    expect(out.rotation.rollouts.map((id) => id.split('-')[0])).toEqual(['redis', 'redis', 'haproxy', 'redis']);

    await sleep(1500); // let the application see the end state
    await app.stop();
    await old.stop();

    const v2 = storeValues(cluster).get('redis@2')!;
    expect(v2.REDIS_PASSWORD).not.toBe(v1.REDIS_PASSWORD);
    expect(v2.REDIS_SENTINEL_PASSWORD).not.toBe(v1.REDIS_SENTINEL_PASSWORD);
    for (const n of HA_NODES) {
      expect(await sourceWithShell(path.join(credentialsDirOf(cluster, n.name), 'redis.env'), Object.keys(v2)), n.name).toEqual(v2);
    }

    // The old password stayed valid until every consumer had the new one: it still worked
    // after the last node of the switch phase (Redis nodes and the HAProxy node) applied it.
    const switchIds = new Set(out.rotation.rollouts.slice(1, 3));
    const applied = out.events.filter((e) => switchIds.has(e.rolloutId) && e.kind === 'node-applied');
    expect(applied.map((e) => e.node).sort()).toEqual(HA_NODES.map((n) => n.name).sort());
    const switched = Math.max(...applied.map((e) => e.atMs));
    expect(old.results.some((x) => x.ok && x.atMs > switched), 'old password still accepted after every consumer switched').toBe(true);

    // At the end: old passwords rejected everywhere, new ones accepted.
    for (const n of REDIS_NODES) {
      expect(await tryAuth(n.ip, v1.REDIS_PASSWORD!), n.name).toMatch(/WRONGPASS/);
      expect(await tryAuth(n.ip, v2.REDIS_PASSWORD!), n.name).toBe('ok');
      expect(await tryAuth(n.ip, v1.REDIS_SENTINEL_PASSWORD!, 26379), `${n.name} sentinel`).toMatch(/WRONGPASS/);
      expect(await tryAuth(n.ip, v2.REDIS_SENTINEL_PASSWORD!, 26379), `${n.name} sentinel`).toBe('ok');
    }
    expect(await tryAuth(LB.ip, v1.REDIS_PASSWORD!)).toMatch(/WRONGPASS/);
    expect(old.lastError).toMatch(/WRONGPASS|closed|ECONN/);

    // The application kept working at the end: its last writes through HAProxy succeeded.
    const tail = app.results.slice(-10);
    expect(tail.every((x) => x.ok), `last writes: ${JSON.stringify(tail)} (${app.lastError})`).toBe(true);
    console.log(`rotation: ${r.ms} ms; app writes through HAProxy ok=${app.ok} failed=${app.failed} (Redis nodes restart once per phase); old-password writes ok=${old.ok}`);

    // The whole module is healthy with the new passwords: replication, Sentinels, the follower.
    await expectHealthy('healthy after the rotation');
    const list = JSON.parse((await cluster.kbctl(['-o', 'json', 'secrets', 'list'])).stdout) as { versions: { name: string; version: number; state: string; source: string; nodes: string[] }[] };
    expect(list.versions.filter((v) => v.name === 'redis').map((v) => [v.version, v.state, v.source, v.nodes.join(',')])).toEqual([
      [1, 'retired', 'generated', ''], [2, 'active', 'rotated', 'haproxy-01,redis-01,redis-02,redis-03'],
    ]);
  });

  it('a drill after the rotation works with the new passwords', async () => {
    const r = await cluster.kbctl(['-o', 'json', 'drill', 'redis-failover']);
    if (r.code !== 0) console.log(r.stdout, r.stderr);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ drill: 'redis-failover', ok: true, healthyAfter: true });
  });

  it('docker inspect of the Redis and Sentinel containers shows no password: read-only mounted files and a version marker', async () => {
    const values = secretValuesOf(storeValues(cluster));
    for (const n of REDIS_NODES) {
      for (const name of ['redis', 'redis-sentinel']) {
        const c = (await cluster.container(n.name, name))!;
        expect(c.Config.Env, `${n.name} ${name}`).toContain('KB_REDIS_AUTH=accepts redis@2; uses redis@2');
        for (const m of c.Mounts.filter((x) => x.Destination.startsWith('/run/secrets/'))) expect(m.RW, m.Destination).toBe(false);
        expect(findIn(values, [{ name: `docker inspect ${n.name} ${name}`, data: Buffer.from(JSON.stringify(c)) }])).toEqual([]);
      }
      const redis = (await cluster.container(n.name, 'redis'))!;
      expect(redis.Args).toContain('/run/secrets/redis-server.conf');
      const conf = readFileSync(path.join(credentialsDirOf(cluster, n.name), 'redis-server.conf'), 'utf8');
      expect(conf).toMatch(/^user default on #[0-9a-f]{64} ~\* &\* \+@all$/m);
    }
  });

  it('kill -9 of the coordinator in the middle of a rotation: after a restart it resumes from its phase and completes', async () => {
    const start = await cluster.kbctl(['secrets', 'rotate', 'redis', '--detach', ...GATE]);
    expect(start.code).toBe(0);
    expect(start.stdout).toContain('rotation of redis: version 2 -> 3: phase accept, running');
    const rotation = async () => (JSON.parse((await cluster.kbctl(['-o', 'json', 'secrets', 'list'])).stdout) as { rotations: { name: string; phase: string; state: string }[] }).rotations[0]!;
    await waitFor('rotation in its switch phase', async () => (await rotation()).phase === 'switch', 90_000, 100);
    await cluster.coordinator!.kill('SIGKILL');
    await sleep(300);
    await cluster.startCoordinator();
    const done = await waitFor('rotation finished after the restart', async () => {
      const r = await rotation();
      return r.state !== 'running' && r;
    }, 180_000, 250);
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
    expect(await redisPasswordOn(cluster, LB.name)).toBe(v3);
    await expectHealthy('healthy after the resumed rotation');
  });

  it('no secret value of any version is in any log, kbctl output or store file', async () => {
    const needles = secretValuesOf(storeValues(cluster));
    const logs = readSources(filesUnder(cluster.dir).filter((p) => p.endsWith('.log')));
    const store = readSources(filesUnder(cluster.dataDir));
    const kbctl = cluster.kbctlOutput.map((t, i) => ({ name: `kbctl output #${i}`, data: Buffer.from(t) }));
    expect(findIn(needles, [...logs, ...store, ...kbctl])).toEqual([]);
  });
});
