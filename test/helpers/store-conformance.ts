import { beforeEach, afterEach, describe, expect, it } from 'vitest';
import type { ModuleState } from '../../proto/types.js';
import { RevisionExistsError } from '../../coordinator/store/errors.js';
import { encodeRecord } from '../../coordinator/store/codec.js';
import type { EventRecord, RevisionRecord, RolloutRecord, Store } from '../../coordinator/store/types.js';

/**
 * One backing store per test: `open()` may be called several times and every store it
 * returns sees the same data (that is how durability across a restart is checked).
 */
export interface Backing {
  open(): Store;
  destroy(): Promise<void>;
}

/**
 * The Store contract (coordinator/store/types.ts), run unchanged against every backend:
 * test/unit/store-sqlite.test.ts (SQLite) and test/e2e/store-etcd.test.ts (a real
 * three-member etcd cluster).
 */
export function storeConformance(backend: string, makeBacking: () => Promise<Backing>): void {
  describe(`Store contract: ${backend}`, () => {
    let backing: Backing;
    let store: Store;
    const opened: Store[] = [];
    const open = () => {
      const s = backing.open();
      opened.push(s);
      return s;
    };

    beforeEach(async () => {
      backing = await makeBacking();
      store = open();
    });
    afterEach(async () => {
      for (const s of opened.splice(0)) await s.close();
      await backing.destroy();
    });

    it('nodes: upsert replaces, get returns a copy, list is ordered by name', async () => {
      const facts = { cpuPercent: 1.5, memTotalBytes: 10, memUsedBytes: 5, diskTotalBytes: 100, diskUsedBytes: 50, dockerVersion: '20.10', uptimeS: 7, os: 'Debian 12' };
      await store.upsertNode({ name: 'redis-02', agentVersion: '0.1.0', firstSeenMs: 1, lastSeenMs: 2, facts: null });
      await store.upsertNode({ name: 'redis-01-b', agentVersion: '0.1.0', firstSeenMs: 1, lastSeenMs: 2, facts: null });
      await store.upsertNode({ name: 'redis-01', agentVersion: '0.1.0', firstSeenMs: 1, lastSeenMs: 2, facts: null });
      await store.upsertNode({
        name: 'redis-02', agentVersion: '0.2.0', firstSeenMs: 1, lastSeenMs: 9, facts,
        containers: [{ module: 'redis', name: 'redis', id: 'abc', state: 'running', image: 'r@sha256:1', imageId: 'sha256:2', startedAt: '2024-01-01T00:00:00Z' }],
      });
      const got = await store.getNode('redis-02');
      expect(got).toEqual({
        name: 'redis-02', agentVersion: '0.2.0', firstSeenMs: 1, lastSeenMs: 9, facts,
        containers: [{ module: 'redis', name: 'redis', id: 'abc', state: 'running', image: 'r@sha256:1', imageId: 'sha256:2', startedAt: '2024-01-01T00:00:00Z' }],
      });
      got!.facts!.cpuPercent = 99;
      expect((await store.getNode('redis-02'))!.facts!.cpuPercent).toBe(1.5);
      expect(await store.getNode('nope')).toBeUndefined();
      expect((await store.listNodes()).map((n) => n.name)).toEqual(['redis-01', 'redis-01-b', 'redis-02']);
    });

    it('node modules and assignments: upsert per (node, module), filters, (node, module) order, delete', async () => {
      const nm = (node: string, module: string, revision: number) => ({ node, module, revision, specHash: `h${revision}`, healthy: true, converged: true, checks: [{ name: 'c', ok: true, observed: 'ok' }], updatedMs: revision });
      await store.putNodeModule(nm('redis-02', 'redis', 1));
      await store.putNodeModule(nm('redis-01-b', 'redis', 1));
      await store.putNodeModule(nm('redis-01', 'redis', 1));
      await store.putNodeModule(nm('redis-01', 'haproxy', 3));
      await store.putNodeModule(nm('redis-01', 'redis', 2));
      expect((await store.listNodeModules()).map((r) => `${r.node}/${r.module}@${r.revision}`)).toEqual(['redis-01/haproxy@3', 'redis-01/redis@2', 'redis-01-b/redis@1', 'redis-02/redis@1']);
      expect((await store.listNodeModules({ node: 'redis-01' })).map((r) => r.module)).toEqual(['haproxy', 'redis']);
      expect((await store.listNodeModules({ module: 'redis' })).map((r) => r.node)).toEqual(['redis-01', 'redis-01-b', 'redis-02']);
      expect(await store.listNodeModules({ node: 'redis-01', module: 'redis' })).toEqual([nm('redis-01', 'redis', 2)]);

      const a = (node: string, module: string, revision: number) => ({ node, module, revision, specHash: `h${revision}`, assignedMs: revision });
      await store.putAssignment(a('redis-02', 'redis', 1));
      await store.putAssignment(a('redis-01', 'redis', 1));
      await store.putAssignment(a('redis-01', 'redis', 4));
      await store.putAssignment(a('redis-01', 'haproxy', 2));
      expect(await store.listAssignments({ node: 'redis-01' })).toEqual([a('redis-01', 'haproxy', 2), a('redis-01', 'redis', 4)]);
      expect((await store.listAssignments({ module: 'redis' })).map((x) => `${x.node}@${x.revision}`)).toEqual(['redis-01@4', 'redis-02@1']);
      await store.deleteAssignment('redis-01', 'redis');
      await store.deleteAssignment('redis-01', 'not-there');
      expect((await store.listAssignments()).map((x) => `${x.node}/${x.module}`)).toEqual(['redis-01/haproxy', 'redis-02/redis']);
    });

    it('revisions: immutable, numeric order, latest, file contents survive, healthy mark', async () => {
      const rev = (revision: number, content = 'x'): RevisionRecord => ({
        module: 'redis', revision, createdMs: revision, images: { redis: `r:7@sha256:${revision}` }, healthyMs: null, sourceRevision: null,
        states: { 'redis-01': state(revision, content) },
      });
      await store.putRevision(rev(2));
      await store.putRevision(rev(10, 'binary\u0000\u00ff'));
      await store.putRevision(rev(1));
      await store.putRevision({ ...rev(5), module: 'haproxy' });
      expect((await store.listRevisions('redis')).map((r) => r.revision)).toEqual([1, 2, 10]);
      expect((await store.latestRevision('redis'))!.revision).toBe(10);
      expect(await store.latestRevision('postgres')).toBeUndefined();
      // The number alone, by number and not by text order (revision 10 after 2 and 9).
      expect(await store.latestRevisionNumber('redis')).toBe(10);
      expect(await store.latestRevisionNumber('postgres')).toBeUndefined();
      const ten = (await store.getRevision('redis', 10))!;
      expect(Buffer.isBuffer(ten.states['redis-01']!.files[0]!.content)).toBe(true);
      expect(ten.states['redis-01']!.files[0]!.content).toEqual(Buffer.from('binary\u0000\u00ff'));
      expect(ten).toEqual(rev(10, 'binary\u0000\u00ff'));

      await expect(store.putRevision(rev(2, 'changed'))).rejects.toBeInstanceOf(RevisionExistsError);
      expect((await store.getRevision('redis', 2))!.states['redis-01']!.files[0]!.content).toEqual(Buffer.from('x'));

      await store.markRevisionHealthy('redis', 2, 1234);
      await store.markRevisionHealthy('redis', 99, 1234);
      expect((await store.getRevision('redis', 2))!.healthyMs).toBe(1234);
      expect(await store.getRevision('redis', 99)).toBeUndefined();
    });

    it('a revision of thousands of nodes (megabytes of JSON, stored compressed) reads back whole, stays immutable and takes the healthy mark', async () => {
      // 3,000 nodes with a 2 KB configuration each: ~9 MB of JSON, over etcd's 1.5 MiB request limit uncompressed.
      const states: Record<string, ModuleState> = {};
      for (let i = 0; i < 3000; i++) {
        const conf = Array.from({ length: 40 }, (_, l) => `line ${l} of node-${i}: bind 10.${i >> 8}.${i & 255}.${l}:6379 maxconn ${1000 + l}`).join('\n');
        states[`node-${i}`] = { ...state(7, conf), specHash: `hash-${i}` };
      }
      const big: RevisionRecord = { module: 'haproxy', revision: 7, createdMs: 7, images: { haproxy: 'h@sha256:7' }, healthyMs: null, sourceRevision: null, states };
      expect(encodeRecord(big).length).toBeGreaterThan(8 * 2 ** 20);
      await store.putRevision(big);
      // Compared as encoded text (a deep toEqual of 3,000 states takes most of this test's
      // time budget on a loaded machine); the Buffers are checked to come back as Buffers.
      const got = (await store.getRevision('haproxy', 7))!;
      expect(encodeRecord(got)).toBe(encodeRecord(big));
      expect(Object.values(got.states).every((st) => Buffer.isBuffer(st.files[0]!.content))).toBe(true);
      await expect(store.putRevision({ ...big, createdMs: 8 })).rejects.toBeInstanceOf(RevisionExistsError);
      await store.markRevisionHealthy('haproxy', 7, 99);
      const back = (await store.latestRevision('haproxy'))!;
      expect(back.healthyMs).toBe(99);
      expect(back.states['node-2999']!.files[0]!.content.toString()).toContain('node-2999: bind 10.11.183.39:6379');
    });

    it('rollouts: upsert by id, filters, ordered by creation then id', async () => {
      await store.putRollout(rollout('b', 'redis', 'running', 20));
      await store.putRollout(rollout('a', 'redis', 'failed', 20));
      await store.putRollout(rollout('c', 'haproxy', 'running', 10));
      await store.putRollout({ ...rollout('b', 'redis', 'succeeded', 20), updatedMs: 99 });
      expect((await store.listRollouts()).map((r) => r.id)).toEqual(['c', 'a', 'b']);
      expect((await store.listRollouts({ module: 'redis' })).map((r) => r.id)).toEqual(['a', 'b']);
      expect((await store.listRollouts({ state: 'running' })).map((r) => r.id)).toEqual(['c']);
      expect(await store.getRollout('b')).toEqual({ ...rollout('b', 'redis', 'succeeded', 20), updatedMs: 99 });
      expect(await store.getRollout('zz')).toBeUndefined();
    });

    it('latest rollout of a module: greatest creation time then id, among ids the engine makes and others; none for a module never rolled out', async () => {
      expect(await store.latestRollout('redis')).toBeUndefined();
      // The engine's ids (<module>-<revision>-<8 hex>): a re-run of revision 2 after its first run, an undo as revision 3.
      const engine = (module: string, revision: number, hex: string, createdMs: number) => ({ ...rollout(`${module}-${revision}-${hex}`, module, 'succeeded', createdMs), revision });
      await store.putRollout(engine('redis', 1, '0a0b0c0d', 100));
      await store.putRollout(engine('redis', 2, 'ffffffff', 200));
      await store.putRollout(engine('redis', 2, '00000001', 300));
      await store.putRollout(engine('redis-sentinel', 9, '12345678', 900)); // another module whose name extends this one's
      await store.putRollout(engine('haproxy', 7, '12345678', 1000));
      expect((await store.latestRollout('redis'))?.id).toBe('redis-2-00000001');
      await store.putRollout(engine('redis', 3, 'abcdef01', 400));
      expect((await store.latestRollout('redis'))?.id).toBe('redis-3-abcdef01');
      expect((await store.latestRollout('redis-sentinel'))?.id).toBe('redis-sentinel-9-12345678');
      // Ids of another form are judged by their documents.
      await store.putRollout(rollout('zz-manual', 'redis', 'running', 500));
      expect(await store.latestRollout('redis')).toEqual(rollout('zz-manual', 'redis', 'running', 500));
      await store.putRollout(rollout('aa-manual', 'redis', 'failed', 500)); // same time: the greater id wins
      expect((await store.latestRollout('redis'))?.id).toBe('zz-manual');
      // The same answer as the full listing's last.
      expect((await store.latestRollout('redis'))?.id).toBe((await store.listRollouts({ module: 'redis' })).at(-1)!.id);
    });

    it('events: ids strictly increase across rollouts, even when appended concurrently; listed in id order', async () => {
      const ev = (rolloutId: string, i: number): Omit<EventRecord, 'id'> => ({ rolloutId, atMs: 1000 - i, node: `n${i}`, kind: 'node-apply', message: `m${i}`, check: '', observed: '', revision: 1 });
      const first = await store.appendEvent(ev('r1', 0));
      const second = await store.appendEvent(ev('r2', 1));
      expect(second.id).toBeGreaterThan(first.id);
      const many = await Promise.all(Array.from({ length: 20 }, (_, i) => store.appendEvent(ev('r1', i + 2))));
      const ids = many.map((e) => e.id);
      expect(new Set(ids).size).toBe(20);
      for (const id of ids) expect(id).toBeGreaterThan(second.id);
      const listed = await store.listEvents('r1');
      expect(listed.map((e) => e.id)).toEqual([first.id, ...[...ids].sort((a, b) => a - b)]);
      expect(listed[0]).toEqual({ ...ev('r1', 0), id: first.id });
      expect(await store.listEvents('r2')).toEqual([second]);
      expect(await store.listEvents('none')).toEqual([]);
    });

    it('a store opened later (a restarted coordinator) sees every resolved write', async () => {
      await store.upsertNode({ name: 'redis-01', agentVersion: '1', firstSeenMs: 1, lastSeenMs: 1, facts: null });
      await store.putRollout(rollout('r', 'redis', 'running', 1));
      const e = await store.appendEvent({ rolloutId: 'r', atMs: 1, node: '', kind: 'rollout-start', message: 'go', check: '', observed: '', revision: 1 });
      await store.close();
      opened.splice(opened.indexOf(store), 1);
      const again = open();
      expect((await again.getNode('redis-01'))!.agentVersion).toBe('1');
      expect((await again.getRollout('r'))!.state).toBe('running');
      expect(await again.listEvents('r')).toEqual([e]);
      const next = await again.appendEvent({ rolloutId: 'r', atMs: 2, node: '', kind: 'rollout-resume', message: 'again', check: '', observed: '', revision: 1 });
      expect(next.id).toBeGreaterThan(e.id);
    });
  });
}

function state(revision: number, content: string): ModuleState {
  return {
    module: 'redis', revision, specHash: `spec${revision}`,
    containers: [{ name: 'redis', image: 'r:7@sha256:1', args: ['--port', '6379'], env: { A: 'b' }, volumes: [], networkMode: 'host', restartPolicy: 'unless-stopped', order: 0, entrypoint: '' }],
    files: [{ path: '/etc/x.conf', mode: 0o644, content: Buffer.from(content) }],
    healthChecks: [],
  };
}

function rollout(id: string, module: string, st: RolloutRecord['state'], createdMs: number): RolloutRecord {
  return {
    id, module, revision: 1, fromRevision: 0, state: st, maxParallel: 1, healthyDeadlineMs: 1000, minHealthyTimeMs: 10,
    nodes: [{ node: 'redis-01', phase: 'pending', error: '' }], error: '', failedNode: '', failedCheck: '', observed: '', createdMs, updatedMs: createdMs,
  };
}
