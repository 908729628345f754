/**
 * The Docker driver, the reconcile steps and the health checks against the REAL engine and
 * registry of the test bed (`bash scripts/testbed.sh up`). Every container, image reference,
 * registry manifest and directory this file creates is removed in afterAll, also after a
 * failure. Names are unique per run (node `t-<random>`), so a crashed earlier run never
 * collides with this one.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ContainerSpec, HealthCheck, ModuleState } from '../../proto/types.js';
import { ApplyError } from '../../shared/errors/index.js';
import { container, healthCheck } from '../../shared/plan/builders.js';
import { containerSpecHash } from '../../shared/plan/hash.js';
import { DockerDriver } from '../../agent/driver/docker.js';
import { DriverError } from '../../agent/driver/errors.js';
import type { DriverEvent } from '../../agent/driver/types.js';
import { runChecks } from '../../agent/health/index.js';
import {
  containerStatuses, isConverged, reconcileModule, removeModule, type ReconcileContext,
} from '../../agent/reconcile/index.js';
import { waitFor } from '../helpers/proc.js';
import { loadTestbed, type Testbed } from '../helpers/testbed.js';

const RUN = randomBytes(3).toString('hex');
const NODE = `t-${RUN}`; // the master's node
const NODE2 = `t-${RUN}-2`; // the replica's node (same engine: sharedEngine=true)
const NODE3 = `t-${RUN}-3`; // a node whose container name a foreign container holds
const SUBNET = process.env.KB_E2E_SUBNET ?? '127.0.1';
const MASTER_IP = `${SUBNET}.41`;
const REPLICA_IP = `${SUBNET}.42`;

let tb: Testbed;
let docker: Docker;
let driver: DockerDriver;
let hostRoot: string;
let pinned: { redis1: string; redis2: string; busybox: string };
/** Everything to clean up whatever happens. */
const cleanup = { containers: new Set<string>(), imageRefs: new Set<string>(), manifests: new Set<string>() };
const events: DriverEvent[] = [];
let unsubscribe: (() => void) | undefined;
const timings: Record<string, number> = {};

/** `127.0.0.1:5000/kb/redis:7.0-kb1` -> `127.0.0.1:5000/kb/redis:7.0-kb1@sha256:...` via the registry API. */
async function pin(tagRef: string): Promise<string> {
  const slash = tagRef.indexOf('/');
  const registry = tagRef.slice(0, slash);
  const rest = tagRef.slice(slash + 1);
  const colon = rest.lastIndexOf(':');
  const res = await fetch(`http://${registry}/v2/${rest.slice(0, colon)}/manifests/${rest.slice(colon + 1)}`, {
    method: 'HEAD',
    headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' },
  });
  const digest = res.headers.get('docker-content-digest');
  if (!res.ok || !digest) throw new Error(`registry has no manifest for ${tagRef} (HTTP ${res.status})`);
  return `${tagRef}@${digest}`;
}

function ctxFor(node: string): ReconcileContext {
  return { node, driver, hostRoot, sharedEngine: true, log: pino({ level: 'silent' }) };
}
const healthCtx = (node: string) => ({ node, driver, sharedEngine: true, log: pino({ level: 'silent' }) });

/**
 * The redis container of KEYBUZZ.md on a loopback address. The replica runs without
 * `--appendonly yes`: measured here, a Redis 7.0 replica with AOF sometimes ignores SIGTERM
 * for the AOF rewrite it starts right after its first sync, so its removal would wait out
 * the full 10 s stop grace before SIGKILL (harmless, but slow and noisy for this test).
 */
function redisSpec(image: string, ip: string, extra: string[] = [], dataDir = '/opt/keybuzz/redis/data', appendonly = true): ContainerSpec {
  return container({
    name: 'redis', image, order: 1,
    args: ['--bind', ip, '--port', '6379', ...(appendonly ? ['--appendonly', 'yes'] : []), '--repl-diskless-sync-delay', '0', ...extra],
    volumes: [{ hostPath: dataDir, containerPath: '/data', readOnly: false }],
  });
}

function redisState(node: string, containers: ContainerSpec[], healthChecks: HealthCheck[] = [], revision = 1): ModuleState {
  return {
    module: 'redis', revision, specHash: `h${revision}`, containers, healthChecks,
    files: [{ path: `/opt/keybuzz/redis/${node}.conf`, mode: 0o600, content: Buffer.from(`# ${node}\nmaxmemory-policy allkeys-lru\n`) }],
  };
}

async function startedAt(id: string): Promise<string> {
  return (await docker.getContainer(id).inspect()).State.StartedAt;
}

async function pushStream(stream: NodeJS.ReadableStream): Promise<void> {
  await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err: Error | null, out: { error?: string }[]) => {
    const failed = out?.find((o) => o.error);
    if (err || failed) reject(err ?? new Error(failed?.error)); else resolve();
  }));
}

async function pullImage(ref: string): Promise<void> {
  const stream = await docker.pull(ref);
  await new Promise<void>((resolve, reject) => docker.modem.followProgress(stream, (err: Error | null) => (err ? reject(err) : resolve())));
}

beforeAll(async () => {
  await waitFor('the test bed (.testbed/env)', () => existsSync(join(process.cwd(), '.testbed/env')), 170_000, 1000);
  tb = loadTestbed();
  docker = new Docker({ socketPath: tb.dockerHost.replace(/^unix:\/\//, '') });
  driver = new DockerDriver({ host: tb.dockerHost, node: NODE, eventsRetryMs: 200 });
  // The env file can exist while the engine or registry is (re)starting.
  await waitFor('the test bed engine and registry to answer', async () => {
    await driver.ping();
    return (await fetch(`http://${tb.registry}/v2/`)).ok;
  }, 170_000, 500);
  hostRoot = await mkdtemp(join(tmpdir(), `kb-e2e-driver-${RUN}-`));
  pinned = { redis1: await pin(tb.images.redis1), redis2: await pin(tb.images.redis2), busybox: await pin(tb.images.busybox) };
  // A fresh engine (CI) has no image yet: make the images these tests use by tag or by
  // digest present up front, so that their assertions do not depend on which test ran first.
  for (const ref of [tb.images.busybox, tb.images.redis1, tb.images.redis2]) await pullImage(ref);
  for (const ref of [pinned.redis1, pinned.redis2, pinned.busybox]) await pullImage(ref.replace(/:[^:/@]+@/, '@'));
  unsubscribe = driver.events((e) => events.push(e));
});

afterAll(async () => {
  unsubscribe?.();
  // Each cleanup runs even when an earlier one fails (e.g. the engine went away mid-run).
  const attempt = async (fn: () => Promise<unknown>): Promise<void> => { await fn().catch(() => undefined); };
  if (hostRoot) await attempt(() => rm(hostRoot, { recursive: true, force: true }));
  if (docker) {
    // Every container of this run: kb-managed ones of our nodes and the foreign ones we made.
    await attempt(async () => {
      for (const c of await docker.listContainers({ all: true })) {
        const mine = (c.Labels?.['kb.node'] ?? '').startsWith(`t-${RUN}`) || (c.Names ?? []).some((n) => n.startsWith(`/t-${RUN}`));
        if (mine) cleanup.containers.add(c.Id);
      }
    });
    for (const id of cleanup.containers) await attempt(() => docker.getContainer(id).remove({ force: true, v: true }));
    for (const ref of cleanup.imageRefs) await attempt(() => docker.getImage(ref).remove({ noprune: true }));
  }
  for (const url of cleanup.manifests) await attempt(() => fetch(url, { method: 'DELETE' }));
  // The registry API cannot delete a repository; its (now empty) directory goes by hand.
  if (tb) await attempt(() => rm(join(tb.dir, 'registry/docker/registry/v2/repositories/kb', `t-${RUN}-pull`), { recursive: true, force: true }));
  console.info(`agent-driver e2e timings (ms): ${JSON.stringify(timings)}`);
});

async function timed<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const t0 = Date.now();
  try {
    return await fn();
  } finally {
    timings[name] = Date.now() - t0;
  }
}

describe('DockerDriver on the real engine', () => {
  it('ping answers with the engine version', async () => {
    expect((await driver.ping()).version).toMatch(/^\d+\.\d+/);
  });

  it('ensureImage refuses a ref without a digest and reports a failed pull with the node and the engine message', async () => {
    await expect(driver.ensureImage(tb.images.redis1)).rejects.toThrow(new ApplyError(`image ${tb.images.redis1} is not pinned by digest`));
    const missing = `${tb.registry}/kb/redis@sha256:${'0'.repeat(64)}`;
    const err = (await driver.ensureImage(missing).catch((e: unknown) => e)) as DriverError;
    expect(err).toBeInstanceOf(DriverError);
    expect(err.message).toMatch(new RegExp(`^pull ${missing.replace(/[.]/g, '\\.')} on ${NODE}: .*manifest unknown`));
  });

  it('ensureImage pulls by digest only when the digest is missing locally, reporting progress', async () => {
    // A repository only this run uses: push the busybox image under it, then forget it locally.
    const repo = `${tb.registry}/kb/t-${RUN}-pull`;
    await docker.getImage(tb.images.busybox).tag({ repo, tag: 'x1' });
    cleanup.imageRefs.add(`${repo}:x1`);
    await pushStream(await docker.getImage(`${repo}:x1`).push({ authconfig: {} }));
    const ref = await pin(`${repo}:x1`);
    const digest = ref.slice(ref.indexOf('@') + 1);
    cleanup.manifests.add(`http://${tb.registry}/v2/kb/t-${RUN}-pull/manifests/${digest}`);
    cleanup.imageRefs.add(`${repo}@${digest}`);
    await docker.getImage(`${repo}:x1`).remove({ noprune: true });
    await docker.getImage(`${repo}@${digest}`).remove({ noprune: true }).catch(() => undefined);
    await expect(docker.getImage(`${repo}@${digest}`).inspect()).rejects.toMatchObject({ statusCode: 404 });

    const lines: string[] = [];
    const first = await timed('pull', () => driver.ensureImage(ref, (m) => lines.push(m)));
    expect(first.pulled).toBe(true);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines).toContain(`Digest: ${digest}`);
    expect(lines).toContain(`Status: Downloaded newer image for ${repo}@${digest}`);
    const info = await docker.getImage(`${repo}@${digest}`).inspect();
    expect(info.Id).toBe(first.imageId);
    expect(info.RepoDigests).toContain(`${repo}@${digest}`);
    // The tag was never pulled: only the digest reference exists.
    await expect(docker.getImage(`${repo}:x1`).inspect()).rejects.toMatchObject({ statusCode: 404 });

    const second = await driver.ensureImage(ref);
    expect(second).toEqual({ imageId: first.imageId, pulled: false });
  });
});

describe('reconcile + health on the real engine', () => {
  let bystanderId = '';
  let bystanderStartedAt = '';
  let masterId = '';

  it('starts a bystander container without kb labels', async () => {
    const c = await docker.createContainer({ name: `t-${RUN}-bystander`, Image: tb.images.busybox, Cmd: ['sleep', '3600'], HostConfig: { NetworkMode: 'host' } });
    cleanup.containers.add(c.id);
    await c.start();
    bystanderId = c.id;
    bystanderStartedAt = await startedAt(c.id);
    expect(bystanderStartedAt).not.toMatch(/^0001/);
  });

  it('reconcile creates the redis container from the pinned digest, with its file and volume', async () => {
    const ctx = ctxFor(NODE);
    const state = redisState(NODE, [redisSpec(pinned.redis1, MASTER_IP)]);
    const res = await timed('reconcile create', () => reconcileModule(ctx, state));
    expect(res.changed).toBe(true);
    expect(res.actions).toEqual([`write /opt/keybuzz/redis/${NODE}.conf`, 'create redis']);

    const [c] = await driver.list(NODE);
    expect(c).toMatchObject({ dockerName: `${NODE}_redis`, node: NODE, module: 'redis', logicalName: 'redis', state: 'running', image: pinned.redis1, revision: 1 });
    masterId = c!.id;
    cleanup.containers.add(masterId);
    const info = await docker.getContainer(masterId).inspect();
    const digest = pinned.redis1.slice(pinned.redis1.indexOf('@') + 1);
    const image = await docker.getImage(info.Image).inspect();
    expect(image.RepoDigests).toContain(`${tb.registry}/kb/redis@${digest}`);
    expect(info.Config.Image).toBe(`${tb.registry}/kb/redis@${digest}`);
    expect(info.Config.Labels).toMatchObject({
      'kb.managed': 'true', 'kb.node': NODE, 'kb.module': 'redis', 'kb.container': 'redis', 'kb.revision': '1',
      'kb.spec-hash': containerSpecHash(state.containers[0]!), 'kb.image': pinned.redis1,
    });
    expect(info.HostConfig.NetworkMode).toBe('host');
    expect(info.HostConfig.RestartPolicy?.Name).toBe('unless-stopped');
    expect(info.HostConfig.Binds).toEqual([`${join(hostRoot, 'opt/keybuzz/redis/data')}:/data`]);

    const conf = join(hostRoot, `opt/keybuzz/redis/${NODE}.conf`);
    expect((await stat(conf)).mode & 0o777).toBe(0o600);
    expect(await readFile(conf, 'utf8')).toContain('allkeys-lru');
    // --appendonly yes writes into the bound host directory: the volume really is that dir.
    await waitFor('appendonly files in the host data dir', async () => {
      const entries = await import('node:fs/promises').then((fs) => fs.readdir(join(hostRoot, 'opt/keybuzz/redis/data')));
      return entries.some((e) => e.startsWith('appendonly'));
    }, 15_000);
    await waitFor('redis to log that it is ready', async () => /Ready to accept connections/.test(await driver.logs(masterId, 50)), 15_000, 50);
    expect(await driver.logs(masterId, 50)).toMatch(/oO0OoO0OoO0Oo Redis is starting[\s\S]*Ready to accept connections/);
  });

  it('a second reconcile changes nothing and keeps the same container', async () => {
    const ctx = ctxFor(NODE);
    const state = redisState(NODE, [redisSpec(pinned.redis1, MASTER_IP)]);
    const before = await startedAt(masterId);
    const res = await timed('reconcile no-op', () => reconcileModule(ctx, state));
    expect(res).toEqual({ changed: false, actions: [] });
    expect((await driver.list(NODE)).map((c) => c.id)).toEqual([masterId]);
    expect(await startedAt(masterId)).toBe(before);
    expect(await isConverged(ctx, state)).toBe(true);
  });

  it('a spec change (new image digest) replaces the container', async () => {
    const ctx = ctxFor(NODE);
    const state = redisState(NODE, [redisSpec(pinned.redis2, MASTER_IP)], [], 2);
    const res = await timed('reconcile replace', () => reconcileModule(ctx, state));
    expect(res.actions).toEqual(['replace redis (spec changed)']);
    const [c] = await driver.list(NODE);
    expect(c!.id).not.toBe(masterId);
    expect(await driver.inspect(masterId)).toBeUndefined();
    masterId = c!.id;
    cleanup.containers.add(masterId);
    expect(c).toMatchObject({ state: 'running', image: pinned.redis2, revision: 2 });
    const digest2 = pinned.redis2.slice(pinned.redis2.indexOf('@') + 1);
    const image = await docker.getImage((await docker.getContainer(masterId).inspect()).Image).inspect();
    expect(image.RepoDigests).toContain(`${tb.registry}/kb/redis@${digest2}`);
    expect((await reconcileModule(ctx, state)).changed).toBe(false);
  });

  it('a stopped container is started again in place, and the event stream reports it', async () => {
    const ctx = ctxFor(NODE);
    const state = redisState(NODE, [redisSpec(pinned.redis2, MASTER_IP)], [], 2);
    // A SIGTERM that reaches redis (PID 1) before it installed its handler is ignored: wait until it serves.
    await waitFor('redis to accept connections', async () => /Ready to accept connections/.test(await driver.logs(masterId, 50)), 15_000, 50);
    await timed('stop', () => driver.stop(masterId, 5));
    expect((await driver.inspect(masterId))?.state).toBe('exited');
    expect(await isConverged(ctx, state)).toBe(false);
    await timed('die event', () => waitFor('a die event for the stopped container', () => events.some((e) => e.id === masterId && e.action === 'die'), 10_000, 20));
    const res = await timed('reconcile start', () => reconcileModule(ctx, state));
    expect(res.actions).toEqual(['start redis']);
    expect((await driver.inspect(masterId))?.state).toBe('running');
    await waitFor('a start event', () => events.filter((e) => e.id === masterId && e.action === 'start').length >= 2, 10_000);
    const ev = events.find((e) => e.id === masterId && e.action === 'die');
    expect(ev).toMatchObject({ node: NODE, module: 'redis', container: 'redis' });
    // The bystander never shows up: the stream only carries kb-managed containers.
    expect(events.some((e) => e.id === bystanderId)).toBe(false);
  });

  it('exec demuxes output and reports the exit code; a hung command times out', async () => {
    const ok = await driver.exec(masterId, ['redis-cli', '-h', MASTER_IP, 'ping'], 5000);
    expect(ok).toEqual({ exitCode: 0, output: 'PONG\n' });
    const bad = await driver.exec(masterId, ['sh', '-c', 'echo out; echo err >&2; exit 3'], 5000);
    expect(bad.exitCode).toBe(3);
    expect(bad.output).toContain('out\n');
    expect(bad.output).toContain('err\n');
    await expect(driver.exec(masterId, ['sleep', '5'], 300)).rejects.toThrow(/no exit after 300 ms/);
  });

  it('a replica on another node comes up, and the health checks see master, slave and a closed port', async () => {
    const ctx2 = ctxFor(NODE2);
    const replicaState = redisState(NODE2, [redisSpec(pinned.redis2, REPLICA_IP, ['--replicaof', MASTER_IP, '6379'], '/opt/keybuzz/redis/data-2', false)], [
      healthCheck({ name: 'redis role slave', kind: 'redis-role', host: REPLICA_IP, port: 6379, expectRole: 'slave', container: 'redis' }),
    ]);
    const res = await reconcileModule(ctx2, replicaState);
    expect(res.actions).toEqual([`write /opt/keybuzz/redis/${NODE2}.conf`, 'create redis']);
    for (const c of await driver.list(NODE2)) cleanup.containers.add(c.id);

    const masterState = redisState(NODE, [redisSpec(pinned.redis2, MASTER_IP)], [
      healthCheck({ name: 'redis role master', kind: 'redis-role', host: MASTER_IP, port: 6379, expectRole: 'master', minReplicas: 1, container: 'redis' }),
      healthCheck({ name: 'redis wants 2 replicas', kind: 'redis-role', host: MASTER_IP, port: 6379, expectRole: 'master', minReplicas: 2, container: 'redis' }),
      healthCheck({ name: 'redis port', kind: 'tcp', host: MASTER_IP, port: 6379 }),
      healthCheck({ name: 'closed port', kind: 'tcp', host: MASTER_IP, port: 6390, timeoutMs: 1000 }),
      healthCheck({ name: 'redis ping', kind: 'exec', container: 'redis', command: ['redis-cli', '-h', MASTER_IP, 'ping'] }),
    ], 2);

    const slave = await timed('replica in sync', () => waitFor('the replica link to come up', async () => {
      const r = await runChecks(healthCtx(NODE2), replicaState);
      return r.every((x) => x.ok) ? r : undefined;
    }, 30_000, 250));
    expect(slave).toEqual([
      { name: 'container redis running', ok: true, observed: 'running' },
      { name: 'redis role slave', ok: true, observed: `role:slave master_link_status:up master ${MASTER_IP}:6379` },
    ]);

    const checks = await timed('runChecks', () => runChecks(healthCtx(NODE), masterState));
    expect(checks).toEqual([
      { name: 'container redis running', ok: true, observed: 'running' },
      { name: 'redis role master', ok: true, observed: 'role:master connected_slaves:1' },
      { name: 'redis wants 2 replicas', ok: false, observed: 'role:master connected_slaves:1 (want >= 2)' },
      { name: 'redis port', ok: true, observed: `connected to ${MASTER_IP}:6379` },
      { name: 'closed port', ok: false, observed: `connect ${MASTER_IP}:6390: ECONNREFUSED` },
      { name: 'redis ping', ok: true, observed: 'exit 0: PONG' },
    ]);
    const statuses = await containerStatuses(ctxFor(NODE), [masterState]);
    expect(statuses).toEqual([{ module: 'redis', name: 'redis', id: masterId, state: 'running', image: pinned.redis2, imageId: expect.stringMatching(/^sha256:/), startedAt: await startedAt(masterId) }]);
  });

  it('refuses a container name held by a container kb does not manage, and leaves it alone', async () => {
    const squatter = await docker.createContainer({ name: `${NODE3}_redis`, Image: tb.images.busybox, Cmd: ['sleep', '3600'] });
    cleanup.containers.add(squatter.id);
    const state = redisState(NODE3, [container({ name: 'redis', image: pinned.busybox, args: ['sleep', '3600'] })]);
    const err = await reconcileModule(ctxFor(NODE3), state).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplyError);
    expect((err as Error).message).toContain(`apply redis on ${NODE3}: step containers, container redis: container name ${NODE3}_redis on ${NODE} is taken by container ${squatter.id.slice(0, 12)}`);
    expect((err as Error).message).toContain('kb does not manage');
    expect((await docker.getContainer(squatter.id).inspect()).Id).toBe(squatter.id);
    await expect(driver.remove(squatter.id)).rejects.toThrow(/not managed by kb/);
    expect((await docker.getContainer(squatter.id).inspect()).Id).toBe(squatter.id);
  });

  it('removeModule removes only the managed containers of its node; the bystander is untouched throughout', async () => {
    const r2 = await timed('removeModule', () => removeModule(ctxFor(NODE2), 'redis'));
    expect(r2.actions).toEqual(['remove redis']);
    expect(await driver.list(NODE2)).toEqual([]);
    expect((await driver.list(NODE)).map((c) => c.id)).toEqual([masterId]);

    const r1 = await removeModule(ctxFor(NODE), 'redis');
    expect(r1.actions).toEqual(['remove redis']);
    expect(await driver.list(NODE)).toEqual([]);
    expect(await removeModule(ctxFor(NODE), 'redis')).toEqual({ changed: false, actions: [] });

    const by = await docker.getContainer(bystanderId).inspect();
    expect(by.State.Running).toBe(true);
    expect(by.State.StartedAt).toBe(bystanderStartedAt);
    expect(by.Id).toBe(bystanderId);
  });
});
