import { mkdtemp, readFile, rm, stat, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ContainerSpec, ModuleState } from '../../proto/types.js';
import { ApplyError } from '../../shared/errors/index.js';
import { container } from '../../shared/plan/builders.js';
import { containerSpecHash } from '../../shared/plan/hash.js';
import { LABELS } from '../../agent/driver/types.js';
import { FakeEngine } from '../helpers/fake-engine.js';
import {
  STEPS, StepError, containerStatuses, hostPathFor, isConverged, reconcileModule, removeModule, type ReconcileContext,
} from '../../agent/reconcile/index.js';

// ---------------------------------------------------------------------------------------------

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
const IMG1 = `127.0.0.1:5000/kb/redis:7.0-kb1@${D1}`;
const IMG2 = `127.0.0.1:5000/kb/redis:7.0-kb2@${D2}`;

function redisState(over: Partial<ModuleState> = {}, containers?: ContainerSpec[]): ModuleState {
  return {
    module: 'redis', revision: 1, specHash: 'h',
    containers: containers ?? [
      container({ name: 'redis-sentinel', image: IMG1, args: ['--sentinel'], order: 2 }),
      container({
        name: 'redis', image: IMG1, args: ['--port', '6379'], order: 1,
        volumes: [{ hostPath: '/opt/keybuzz/redis/data', containerPath: '/data', readOnly: false }],
      }),
    ],
    files: [{ path: '/opt/keybuzz-installer/credentials/redis.env', mode: 0o600, content: Buffer.from('export REDIS_PASSWORD="x"\n') }],
    healthChecks: [],
    ...over,
  };
}

let root: string;
let engine: FakeEngine;
let progress: string[];

function ctxFor(node = 'redis-01', sharedEngine = false): ReconcileContext {
  return {
    node, driver: engine, hostRoot: root, sharedEngine, log: pino({ level: 'silent' }),
    onProgress: (step, msg) => progress.push(`${step}: ${msg}`),
  };
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'kb-reconcile-'));
  engine = new FakeEngine();
  progress = [];
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('reconcileModule', () => {
  it('lists its steps in order: credentials, files, images, prune, containers', () => {
    expect(STEPS.map((s) => s.name)).toEqual(['credentials', 'files', 'images', 'prune', 'containers']);
  });

  it('writes files, pulls once, creates and starts containers in ascending order', async () => {
    const res = await reconcileModule(ctxFor(), redisState());
    expect(res.changed).toBe(true);
    expect(res.actions).toEqual([
      'write /opt/keybuzz-installer/credentials/redis.env',
      `pull 127.0.0.1:5000/kb/redis@${D1}`,
      'create redis',
      'create redis-sentinel',
    ]);
    expect(engine.byName('redis')?.state).toBe('running');
    expect(engine.byName('redis-sentinel')?.state).toBe('running');
    expect(engine.byName('redis')!.startedAt).toBeLessThan(engine.byName('redis-sentinel')!.startedAt);
    expect(engine.madeDirs).toEqual([join(root, 'opt/keybuzz/redis/data')]);
    const file = join(root, 'opt/keybuzz-installer/credentials/redis.env');
    expect(await readFile(file, 'utf8')).toBe('export REDIS_PASSWORD="x"\n');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    expect((await stat(join(root, 'opt/keybuzz-installer/credentials'))).mode & 0o777).toBe(0o700);
    expect((await stat(join(root, 'opt/keybuzz-installer'))).mode & 0o777).toBe(0o755);
    expect(progress).toContain(`images: 127.0.0.1:5000/kb/redis@${D1}: Pulling fs layer`);
  });

  it('is idempotent: a second call changes nothing and keeps the same containers', async () => {
    const ctx = ctxFor();
    await reconcileModule(ctx, redisState());
    const ids = [...engine.containers.keys()];
    const file = join(root, 'opt/keybuzz-installer/credentials/redis.env');
    const mtime = (await stat(file)).mtimeMs;
    const again = await reconcileModule(ctx, redisState({ revision: 2 }));
    expect(again).toEqual({ changed: false, actions: [] });
    expect([...engine.containers.keys()]).toEqual(ids);
    expect((await stat(file)).mtimeMs).toBe(mtime);
    expect(await isConverged(ctx, redisState())).toBe(true);
  });

  it('replaces a container whose spec changed and leaves the others alone', async () => {
    const ctx = ctxFor();
    await reconcileModule(ctx, redisState());
    const oldRedis = engine.byName('redis')!;
    const sentinel = engine.byName('redis-sentinel')!;
    const next = redisState({ revision: 2 });
    next.containers = next.containers.map((c) => (c.name === 'redis' ? { ...c, image: IMG2 } : c));
    const res = await reconcileModule(ctx, next);
    expect(res.actions).toEqual([`pull 127.0.0.1:5000/kb/redis@${D2}`, 'replace redis (spec changed)']);
    const newRedis = engine.byName('redis')!;
    expect(newRedis.id).not.toBe(oldRedis.id);
    expect(engine.containers.has(oldRedis.id)).toBe(false);
    expect(newRedis.state).toBe('running');
    expect(newRedis.labels[LABELS.image]).toBe(IMG2);
    expect(newRedis.labels[LABELS.revision]).toBe('2');
    expect(engine.byName('redis-sentinel')).toBe(sentinel);
    expect((await reconcileModule(ctx, next)).changed).toBe(false);
  });

  it('starts a stopped container in place (same id)', async () => {
    const ctx = ctxFor();
    await reconcileModule(ctx, redisState());
    const redis = engine.byName('redis')!;
    redis.state = 'exited';
    expect(await isConverged(ctx, redisState())).toBe(false);
    const res = await reconcileModule(ctx, redisState());
    expect(res.actions).toEqual(['start redis']);
    expect(engine.byName('redis')).toBe(redis);
    expect(redis.state).toBe('running');
  });

  it('recreates a container that was removed behind its back, and one that is dead', async () => {
    const ctx = ctxFor();
    await reconcileModule(ctx, redisState());
    engine.containers.delete(engine.byName('redis')!.id);
    engine.byName('redis-sentinel')!.state = 'dead';
    const res = await reconcileModule(ctx, redisState());
    expect(res.actions).toEqual(['create redis', 'replace redis-sentinel (dead)']);
  });

  it('prunes containers of the same node and module whose logical name is no longer desired', async () => {
    const ctx = ctxFor();
    await reconcileModule(ctx, redisState());
    const otherModule = engine.addManaged('redis-01', 'haproxy', 'haproxy', 'haproxy');
    const otherNode = engine.addManaged('redis-02', 'redis', 'redis-old', 'redis-02_redis-old');
    const leftover = engine.addManaged('redis-01', 'redis', 'redis-old', 'redis-old');
    const onlyRedis = redisState({}, [redisState().containers[1]!]);
    const res = await reconcileModule(ctx, onlyRedis);
    expect(res.actions.sort()).toEqual(['remove redis-old', 'remove redis-sentinel']);
    expect(engine.containers.has(leftover.id)).toBe(false);
    expect(engine.byName('redis-sentinel')).toBeUndefined();
    expect(engine.byName('redis')?.state).toBe('running');
    expect(engine.containers.get(otherModule.id)?.state).toBe('running');
    expect(engine.containers.get(otherNode.id)?.state).toBe('running');
  });

  it('removes a duplicate of a desired container (e.g. left by a sharedEngine change)', async () => {
    const ctx = ctxFor('redis-01', true);
    await reconcileModule(ctx, redisState());
    const dup = engine.addManaged('redis-01', 'redis', 'redis', 'redis');
    const res = await reconcileModule(ctx, redisState());
    expect(res.actions).toEqual(['remove redis (duplicate redis)']);
    expect(engine.containers.has(dup.id)).toBe(false);
    expect(engine.byName('redis-01_redis')?.state).toBe('running');
  });

  it('never touches containers without kb labels, even one holding the wanted name', async () => {
    const bystander = engine.addForeign('bystander');
    const squatter = engine.addForeign('redis');
    const ctx = ctxFor();
    const err = await reconcileModule(ctx, redisState()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplyError);
    expect(err).toBeInstanceOf(StepError);
    expect((err as StepError).message).toMatch(/^apply redis on redis-01: step containers, container redis: container name redis is taken by container f\d/);
    expect((err as StepError).step).toBe('containers');
    expect(engine.containers.get(squatter.id)).toMatchObject({ state: 'running', name: 'redis' });
    expect(engine.containers.get(bystander.id)).toMatchObject({ state: 'running', startedAt: bystander.startedAt });
    await removeModule(ctx, 'redis');
    expect(engine.containers.has(squatter.id)).toBe(true);
    expect(engine.containers.has(bystander.id)).toBe(true);
  });

  it('uses `${node}_${name}` engine names on a shared engine, so two nodes coexist', async () => {
    await reconcileModule(ctxFor('redis-01', true), redisState());
    await reconcileModule(ctxFor('redis-02', true), redisState());
    expect([...engine.containers.values()].map((c) => c.name).sort()).toEqual([
      'redis-01_redis', 'redis-01_redis-sentinel', 'redis-02_redis', 'redis-02_redis-sentinel',
    ]);
    const res = await removeModule(ctxFor('redis-01', true), 'redis');
    expect(res.actions.sort()).toEqual(['remove redis', 'remove redis-sentinel']);
    expect([...engine.containers.values()].map((c) => c.name).sort()).toEqual(['redis-02_redis', 'redis-02_redis-sentinel']);
    expect(await removeModule(ctxFor('redis-01', true), 'redis')).toEqual({ changed: false, actions: [] });
  });

  it('refuses an image not pinned by digest before changing any container', async () => {
    const ctx = ctxFor();
    const bad = redisState({}, [container({ name: 'redis', image: 'redis:7.2.5-alpine' })]);
    await expect(reconcileModule(ctx, bad)).rejects.toThrow(
      'apply redis on redis-01: step images, container redis: image redis:7.2.5-alpine is not pinned by digest',
    );
    expect(engine.containers.size).toBe(0);
  });

  it('wraps an engine failure with step, container and node, and resumes on the next call', async () => {
    const ctx = ctxFor();
    engine.failCreate = 'redis-sentinel';
    const err = (await reconcileModule(ctx, redisState()).catch((e: unknown) => e)) as StepError;
    expect(err.name).toBe('ApplyError');
    expect(err.message).toBe('apply redis on redis-01: step containers, container redis-sentinel: engine said no');
    expect([err.step, err.subject, err.node, err.module]).toEqual(['containers', 'container redis-sentinel', 'redis-01', 'redis']);
    engine.failCreate = undefined;
    const res = await reconcileModule(ctx, redisState());
    expect(res.actions).toEqual(['create redis-sentinel']);
  });

  it('serializes concurrent calls for the same module', async () => {
    const ctx = ctxFor();
    const [a, b] = await Promise.all([reconcileModule(ctx, redisState()), reconcileModule(ctx, redisState())]);
    expect(a.changed).toBe(true);
    expect(b).toEqual({ changed: false, actions: [] });
    expect(engine.containers.size).toBe(2);
  });
});

describe('files step', () => {
  it('fixes a mode-only drift with chmod and rewrites changed content atomically', async () => {
    const ctx = ctxFor();
    const state = redisState({}, []);
    await reconcileModule(ctx, state);
    const file = join(root, 'opt/keybuzz-installer/credentials/redis.env');
    await chmod(file, 0o644);
    expect((await reconcileModule(ctx, state)).actions).toEqual(['chmod 0600 /opt/keybuzz-installer/credentials/redis.env']);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    await writeFile(file, 'tampered');
    expect((await reconcileModule(ctx, state)).actions).toEqual(['write /opt/keybuzz-installer/credentials/redis.env']);
    expect(await readFile(file, 'utf8')).toBe('export REDIS_PASSWORD="x"\n');
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it('refuses a path that could escape hostRoot', async () => {
    const state = redisState({ files: [{ path: '/opt/../etc/passwd', mode: 0o644, content: Buffer.from('x') }] }, []);
    await expect(reconcileModule(ctxFor(), state)).rejects.toThrow(/step files, file \/opt\/\.\.\/etc\/passwd: host path .* must not contain "\.\."/);
    expect(() => hostPathFor({ hostRoot: '/r' }, 'relative/x')).toThrow(ApplyError);
    expect(hostPathFor({ hostRoot: '/r' }, '/opt/keybuzz/x')).toBe('/r/opt/keybuzz/x');
  });
});

describe('containerStatuses / isConverged', () => {
  it('reports one status per desired container, missing ones included', async () => {
    const ctx = ctxFor();
    const state = redisState();
    expect(await isConverged(ctx, state)).toBe(false);
    await reconcileModule(ctx, redisState({}, [state.containers[1]!]));
    const st = await containerStatuses(ctx, [state]);
    expect(st).toEqual([
      { module: 'redis', name: 'redis', id: engine.byName('redis')!.id, state: 'running', image: IMG1, imageId: `id-${D1}`, startedAt: `t${engine.byName('redis')!.startedAt}` },
      { module: 'redis', name: 'redis-sentinel', id: '', state: 'missing', image: '', imageId: '', startedAt: '' },
    ]);
    expect(await isConverged(ctx, state)).toBe(false);
    await reconcileModule(ctx, state);
    expect(await isConverged(ctx, state)).toBe(true);
    engine.addManaged('redis-01', 'redis', 'stray', 'stray');
    expect(await isConverged(ctx, state)).toBe(false);
  });
});
