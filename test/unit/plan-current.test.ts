import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { currentStates } from '../../coordinator/server/control-service.js';
import type { NodeSessionView } from '../../coordinator/sessions.js';
import { SqliteStore } from '../../coordinator/store/sqlite.js';
import type { RevisionRecord } from '../../coordinator/store/types.js';
import type { ModuleState } from '../../proto/types.js';

/** A real store that counts revision reads. */
class CountingStore extends SqliteStore {
  revisionReads = 0;
  override async getRevision(module: string, revision: number): Promise<RevisionRecord | undefined> {
    this.revisionReads++;
    return super.getRevision(module, revision);
  }
}

const state = (node: string, revision: number): ModuleState => ({
  module: 'haproxy', revision, specHash: `${node}@${revision}`, containers: [], healthChecks: [],
  files: [{ path: '/etc/haproxy/haproxy.cfg', mode: 0o644, content: Buffer.from(`bind ${node}\n`) }],
});

describe('kbctl plan: what each node runs now', () => {
  it('reads each revision once however many nodes run it, and takes live reports over stored ones over assignments', async () => {
    const n = 2000;
    const nodes = Array.from({ length: n }, (_, i) => `lb-${i}`);
    const store = new CountingStore(path.join(mkdtempSync(path.join(os.tmpdir(), 'kb-plan-')), 'kb.db'));
    for (const revision of [1, 2]) {
      await store.putRevision({ module: 'haproxy', revision, createdMs: revision, images: {}, healthyMs: null, sourceRevision: null, states: Object.fromEntries(nodes.map((x) => [x, state(x, revision)])) });
    }
    // Every node was assigned revision 1; nodes 0-999 reported revision 2 (stored); lb-5 reports revision 1 live.
    for (const node of nodes) await store.putAssignment({ node, module: 'haproxy', revision: 1, specHash: `${node}@1`, assignedMs: 1 });
    for (const node of nodes.slice(0, 1000)) {
      await store.putNodeModule({ node, module: 'haproxy', revision: 2, specHash: `${node}@2`, healthy: true, converged: true, checks: [], updatedMs: 2 });
    }
    const live: NodeSessionView = { node: 'lb-5', agentVersion: 't', connectedMs: 0, lastSeenMs: 0, facts: null, containers: [], health: new Map([['haproxy', { module: 'haproxy', revision: 1, specHash: 'lb-5@1', healthy: true, converged: true, checks: [] }]]) };
    const sessions = { get: (node: string) => (node === 'lb-5' ? live : undefined) };
    const current = await currentStates(store, sessions, 'haproxy', [...nodes, 'lb-new']);
    expect(store.revisionReads).toBe(2);
    expect(current.get('lb-0')?.specHash).toBe('lb-0@2');
    expect(current.get('lb-5')?.specHash).toBe('lb-5@1');
    expect(current.get('lb-1999')?.specHash).toBe('lb-1999@1');
    expect(current.get('lb-1999')?.files[0]?.content.toString()).toBe('bind lb-1999\n');
    expect(current.has('lb-new')).toBe(true);
    expect(current.get('lb-new')).toBeUndefined();
    await store.close();
  });
});
