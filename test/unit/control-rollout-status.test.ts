import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { controlHandlers, type ControlDeps } from '../../coordinator/server/control-service.js';
import { SqliteStore } from '../../coordinator/store/sqlite.js';
import type { RolloutRecord } from '../../coordinator/store/types.js';
import type { RolloutStatusResponse } from '../../proto/index.js';

const dirs: string[] = [];
afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

const rollout = (revision: number, createdMs: number, nodes: number): RolloutRecord => ({
  id: `redis-${revision}-0000000${revision}`, module: 'redis', revision, fromRevision: revision - 1, state: revision === 3 ? 'running' : 'succeeded',
  maxParallel: nodes, healthyDeadlineMs: 1000, minHealthyTimeMs: 0,
  nodes: Array.from({ length: nodes }, (_, i) => ({ node: `redis-${i}`, phase: 'healthy', error: '' })),
  error: '', failedNode: '', failedCheck: '', observed: '', createdMs, updatedMs: createdMs,
});

describe('RolloutStatus', () => {
  it('answers with the module\'s latest rollout and its events, reading no other rollout (kbctl polls it every 500 ms)', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-status-'));
    dirs.push(dir);
    const store = new SqliteStore(path.join(dir, 'kb.db'));
    for (const [rev, at] of [[1, 100], [2, 200], [3, 300]] as const) await store.putRollout(rollout(rev, at, 2000));
    await store.appendEvent({ rolloutId: 'redis-3-00000003', atMs: 301, node: '', kind: 'rollout-start', message: 'revision 3', check: '', observed: '', revision: 3 });
    // Listing every rollout of the module (each hundreds of kilobytes at fleet scale) is what the status must not do.
    store.listRollouts = () => Promise.reject(new Error('RolloutStatus listed every rollout'));
    const handlers = controlHandlers({ store, authorize: () => undefined, log: { warn: () => undefined } } as unknown as ControlDeps);
    const call = (module: string) => new Promise<RolloutStatusResponse>((resolve, reject) => {
      (handlers.RolloutStatus as grpc.handleUnaryCall<unknown, RolloutStatusResponse>)(
        { request: { module, events: true } } as grpc.ServerUnaryCall<unknown, RolloutStatusResponse>,
        (err, res) => (err ? reject(new Error(String(err.details))) : resolve(res!)),
      );
    });
    const res = await call('redis');
    expect(res.rollout).toEqual(expect.objectContaining({ id: 'redis-3-00000003', revision: 3, state: 'running' }));
    expect(res.rollout!.nodes).toHaveLength(2000);
    expect(res.events.map((e) => e.kind)).toEqual(['rollout-start']);
    expect(await call('haproxy')).toEqual({ rollout: null, events: [] });
    await store.close();
  });
});
