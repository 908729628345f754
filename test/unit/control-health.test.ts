import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { controlHandlers, type ControlDeps } from '../../coordinator/server/control-service.js';
import type { NodeSessionView } from '../../coordinator/sessions.js';
import { SqliteStore } from '../../coordinator/store/sqlite.js';
import type { HealthResponse } from '../../proto/types.js';

describe('kbctl health', () => {
  it('shows connected nodes from their live reports and disconnected ones from the store, each with its own records only', async () => {
    const store = new SqliteStore(path.join(mkdtempSync(path.join(os.tmpdir(), 'kb-health-')), 'kb.db'));
    const rec = (node: string, module: string, updatedMs: number, converged: boolean) => store.putNodeModule({
      node, module, revision: 3, specHash: `${node}/${module}`, healthy: true, converged, checks: [{ name: 'c', ok: converged, observed: `${node}` }], updatedMs,
    });
    // 300 disconnected nodes with two modules each, and redis-01, connected, reporting live.
    for (let i = 0; i < 300; i++) {
      await rec(`lb-${i}`, 'haproxy', 1000 + i, true);
      await rec(`lb-${i}`, 'redis', 2000 + i, i % 2 === 0);
    }
    await rec('redis-01', 'redis', 5, false);
    const live: NodeSessionView = {
      node: 'redis-01', agentVersion: 't', connectedMs: 1, lastSeenMs: 9999, facts: null, containers: [],
      health: new Map([['redis', { module: 'redis', revision: 4, specHash: 'live', healthy: true, converged: true, checks: [] }]]),
    };
    const sessions = { all: () => [live], get: (n: string) => (n === 'redis-01' ? live : undefined), on: () => undefined, off: () => undefined };
    const handlers = controlHandlers({ store, sessions, log: pino({ level: 'silent' }), authorize: () => undefined } as unknown as ControlDeps);
    const call = (module: string) => new Promise<HealthResponse>((resolve, reject) => {
      (handlers.Health as (c: unknown, cb: (err: unknown, res?: HealthResponse) => void) => void)({ request: { module } }, (err, res) => (err ? reject(err) : resolve(res!)));
    });

    const all = await call('');
    expect(all.nodes).toHaveLength(301);
    const lb7 = all.nodes.find((n) => n.node === 'lb-7')!;
    expect(lb7.connected).toBe(false);
    expect(lb7.modules.map((m) => [m.module, m.healthy, m.converged, m.checks[0]!.observed])).toEqual([['haproxy', false, true, 'lb-7'], ['redis', false, false, 'lb-7']]);
    expect(lb7.observedAtMs).toBe(2007);
    const r1 = all.nodes.find((n) => n.node === 'redis-01')!;
    expect([r1.connected, r1.observedAtMs, r1.modules.map((m) => m.specHash)]).toEqual([true, 9999, ['live']]);

    const haproxy = await call('haproxy');
    expect(haproxy.nodes).toHaveLength(300); // redis-01 runs no haproxy
    expect(haproxy.nodes.find((n) => n.node === 'lb-7')!.observedAtMs).toBe(1007);
    await store.close();
  });
});
