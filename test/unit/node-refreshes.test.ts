import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { NodeRefreshes } from '../../coordinator/server/agent-service.js';
import { SqliteStore } from '../../coordinator/store/sqlite.js';
import type { NodeRecord, Store } from '../../coordinator/store/types.js';

// Periodic node-record refreshes wait up to the batch interval and are written together in
// one event-loop turn (one SQLite transaction); writes that must not wait cancel them.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rec = (name: string, lastSeenMs: number): NodeRecord => ({ name, agentVersion: 't', firstSeenMs: 1, lastSeenMs, facts: null, containers: [] });

function fakeStore(upsert: (n: NodeRecord) => Promise<void> = async () => undefined) {
  const written: NodeRecord[] = [];
  const store = { upsertNode: async (n: NodeRecord) => { await upsert(n); written.push(n); } } as unknown as Store;
  return { store, written };
}

describe('NodeRefreshes', () => {
  const dirs: string[] = [];
  afterEach(() => { for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true }); });

  it('waits the batch interval, then writes each node once, with its newest record', async () => {
    const { store, written } = fakeStore();
    const r = new NodeRefreshes(store, 50);
    const failed = vi.fn();
    r.queue(rec('a', 1), failed);
    r.queue(rec('b', 1), failed);
    r.queue(rec('a', 2), failed);
    await sleep(20);
    expect(written).toHaveLength(0);
    expect(r.size).toBe(2);
    await sleep(80);
    expect(written.map((n) => `${n.name}@${n.lastSeenMs}`).sort()).toEqual(['a@2', 'b@1']);
    expect(r.size).toBe(0);
    expect(failed).not.toHaveBeenCalled();
  });

  it('cancel drops a waiting refresh, and waits for one being written', async () => {
    let release!: () => void;
    const gate = new Promise<void>((res) => { release = res; });
    const { store, written } = fakeStore((n) => (n.name === 'slow' ? gate : Promise.resolve()));
    const r = new NodeRefreshes(store, 10_000);
    r.queue(rec('gone', 1), () => undefined);
    await r.cancel('gone');
    r.queue(rec('slow', 1), () => undefined);
    r.flush();
    let settled = false;
    const waited = r.cancel('slow').then(() => { settled = true; });
    await sleep(20);
    expect(settled).toBe(false);
    release();
    await waited;
    expect(written.map((n) => n.name)).toEqual(['slow']);
  });

  it('a failed write is reported to its queuer, and the others are still written', async () => {
    const { store, written } = fakeStore(async (n) => { if (n.name === 'bad') throw new Error('etcd unreachable'); });
    const r = new NodeRefreshes(store, 10);
    const failed = vi.fn();
    const fine = vi.fn();
    r.queue(rec('bad', 1), failed);
    r.queue(rec('good', 1), fine);
    await sleep(50);
    expect(failed).toHaveBeenCalledTimes(1);
    expect((failed.mock.calls[0]![0] as Error).message).toBe('etcd unreachable');
    expect(fine).not.toHaveBeenCalled();
    expect(written.map((n) => n.name)).toEqual(['good']);
  });

  it('on the SQLite store, 500 refreshes go out in one transaction (one COMMIT) and are all read back', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-refresh-'));
    dirs.push(dir);
    const store = new SqliteStore(path.join(dir, 'kb.db'));
    try {
      const db = (store as unknown as { db: { exec: (sql: string) => unknown } }).db;
      const exec = vi.spyOn(db, 'exec');
      const r = new NodeRefreshes(store, 20);
      for (let i = 0; i < 500; i++) r.queue(rec(`node-${String(i).padStart(3, '0')}`, 1000 + i), (err) => { throw err; });
      await sleep(100);
      expect(exec.mock.calls.filter(([sql]) => sql === 'COMMIT')).toHaveLength(1);
      const nodes = await store.listNodes();
      expect(nodes).toHaveLength(500);
      expect(nodes[499]).toMatchObject({ name: 'node-499', lastSeenMs: 1499 });
    } finally {
      await store.close();
    }
  });
});
