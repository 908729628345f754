import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { getModule } from '../../coordinator/modules/index.js';
import type { ModuleDefinition, PlanInputs, SecretVersions } from '../../coordinator/modules/types.js';
import type { RolloutEngine } from '../../coordinator/rollout/engine.js';
import { ensureSecretKey } from '../../coordinator/secrets/keyfile.js';
import { RotationDriver } from '../../coordinator/secrets/rotation.js';
import { SecretService } from '../../coordinator/secrets/service.js';
import { SqliteStore } from '../../coordinator/store/sqlite.js';
import type { RolloutRecord } from '../../coordinator/store/types.js';
import { parseInventory } from '../../shared/inventory/index.js';

const log = pino({ level: 'silent' });
const HEADER = 'ENV\tIP_PUBLIQUE\tHOSTNAME\tIP_PRIVEE\tFQDN\tUSER_SSH\tPOOL\tROLE\tSUBROLE\tDOCKER_STACK\tCORE\tNOTES';
const inventory = parseInventory(`${HEADER}\nprod\t-\tredis-01\t10.0.0.1\tr.t\troot\tp\tredis\tmaster\tx\tyes\tn\nprod\t-\thaproxy-01\t10.0.0.2\th.t\troot\tp\tlb\tinternal-haproxy\tx\tyes\tn\n`, 'servers.tsv');
const inputs = (): PlanInputs => ({ inventory, versions: { file: 'v', entries: new Map() }, settings: {} });

/**
 * A stand-in for the rollout engine (pure logic test of the rotation driver; the real engine is
 * exercised by test/e2e/rotation.test.ts): each start() records which secret versions a plan
 * would see, and ends as `outcome` says.
 */
function fakeEngine(store: SqliteStore, secrets: SecretService, outcome: (module: string, n: number) => 'succeeded' | 'failed') {
  const calls: { module: string; versions: SecretVersions }[] = [];
  let n = 0;
  const engine = {
    async start(module: string): Promise<RolloutRecord> {
      calls.push({ module, versions: (await secrets.versions()).redis! });
      const state = outcome(module, n++);
      const r: RolloutRecord = {
        id: `${module}-${n}`, module, revision: n, fromRevision: n - 1, state, maxParallel: 1, healthyDeadlineMs: 1, minHealthyTimeMs: 0,
        nodes: [], error: state === 'failed' ? 'redis-01: check redis-role failing' : '', failedNode: '', failedCheck: '', observed: '', createdMs: n, updatedMs: n,
      };
      await store.putRollout(r);
      return r;
    },
    async wait(): Promise<void> {},
    subscribe: () => () => undefined,
  };
  return { engine: engine as unknown as RolloutEngine, calls };
}

async function setup(outcome: (module: string, n: number) => 'succeeded' | 'failed') {
  const dir = mkdtempSync(path.join(tmpdir(), 'kb-rotation-'));
  const store = new SqliteStore(path.join(dir, 'kb.db'));
  const secrets = new SecretService(store, ensureSecretKey(dir), log);
  await secrets.ensureAll();
  const redis = getModule('redis') as ModuleDefinition<any>;
  // A consumer that only uses redis.env (as the haproxy module does).
  const consumer: ModuleDefinition<any> = { ...redis, name: 'consumer', verifies: [], hosts: (inv) => inv.servers.filter((s) => s.role === 'lb') };
  for (const m of ['redis', 'consumer']) {
    await store.putRevision({ module: m, revision: 1, createdMs: 0, images: {}, states: {}, healthyMs: 0, sourceRevision: null });
  }
  const { engine, calls } = fakeEngine(store, secrets, outcome);
  const driver = new RotationDriver({ store, secrets, engine, log, inputs, modules: [redis, consumer] });
  return { store, secrets, driver, calls };
}

describe('rotation phases', () => {
  it('accept (servers take both), switch (every user moves), retire (servers drop the old one), in that order', async () => {
    const { secrets, driver, calls } = await setup(() => 'succeeded');
    await driver.start('redis');
    await driver.wait('redis');
    expect(calls.map((c) => [c.module, c.versions.active, c.versions.accepted])).toEqual([
      ['redis', 1, [1, 2]],
      ['redis', 2, [1, 2]], ['consumer', 2, [1, 2]],
      ['redis', 2, [2]],
    ]);
    expect(await secrets.getState('redis')).toMatchObject({ active: 2, accepted: [2], rotation: { state: 'succeeded', from: 1, to: 2, rollouts: ['redis-1', 'redis-2', 'consumer-3', 'redis-4'] } });
    const list = await secrets.list();
    expect(list.filter((v) => v.name === 'redis').map((v) => [v.version, v.state, v.source])).toEqual([[1, 'retired', 'generated'], [2, 'active', 'rotated']]);
  });

  it('a failed rollout pauses the rotation in its phase, touching nothing later; rotate again resumes there', async () => {
    let fail = true;
    const { secrets, driver, calls } = await setup((module) => (module === 'consumer' && fail ? 'failed' : 'succeeded'));
    await driver.start('redis', { minHealthyTimeMs: 1234 });
    await driver.wait('redis');
    const paused = await secrets.getState('redis');
    expect(paused).toMatchObject({ active: 2, accepted: [1, 2], rotation: { state: 'failed', phase: 'switch', options: { minHealthyTimeMs: 1234 } } });
    expect(paused!.rotation!.error).toBe('phase switch: rollout consumer-3 of consumer failed: redis-01: check redis-role failing');
    expect(calls).toHaveLength(3);
    fail = false;
    await driver.start('redis');
    await driver.wait('redis');
    expect(calls.slice(3).map((c) => [c.module, c.versions.accepted])).toEqual([['redis', [1, 2]], ['consumer', [1, 2]], ['redis', [2]]]);
    expect(await secrets.getState('redis')).toMatchObject({ active: 2, accepted: [2], rotation: { state: 'succeeded', to: 2 } });
  });

  it('refuses a secret no module uses', async () => {
    const { driver } = await setup(() => 'succeeded');
    await expect(driver.start('k3s')).rejects.toThrow('no module kb runs uses k3s.env yet');
  });
});
