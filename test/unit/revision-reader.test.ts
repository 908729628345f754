import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { RevisionReader } from '../../coordinator/store/revision-reader.js';
import { SqliteStore } from '../../coordinator/store/sqlite.js';
import type { RevisionRecord } from '../../coordinator/store/types.js';

/** A real store counting revision reads; `failNext` makes the next read fail. */
class CountingStore extends SqliteStore {
  reads = 0;
  failNext = false;
  override async getRevision(module: string, revision: number): Promise<RevisionRecord | undefined> {
    this.reads++;
    if (this.failNext) {
      this.failNext = false;
      throw new Error('store unavailable');
    }
    return super.getRevision(module, revision);
  }
}

const rev = (revision: number): RevisionRecord => ({
  module: 'haproxy', revision, createdMs: 1, images: {}, healthyMs: null, sourceRevision: null,
  states: Object.fromEntries(Array.from({ length: 50 }, (_, i) => [`lb-${i}`, { module: 'haproxy', revision, specHash: `h${i}`, containers: [], files: [], healthChecks: [] }])),
});

describe('revision reader', () => {
  it('serves thousands of concurrent and recent reads of a revision with one store read, keeps it only for a while, and never keeps a failure', async () => {
    const store = new CountingStore(path.join(mkdtempSync(path.join(os.tmpdir(), 'kb-revreader-')), 'kb.db'));
    await store.putRevision(rev(1));
    await store.putRevision(rev(2));
    const reader = new RevisionReader(store, 200);

    const got = await Promise.all(Array.from({ length: 5000 }, (_, i) => reader.get('haproxy', 1).then((r) => r?.states[`lb-${i % 50}`]?.specHash)));
    expect(got.every((h, i) => h === `h${i % 50}`)).toBe(true);
    expect(store.reads).toBe(1);
    expect((await reader.get('haproxy', 2))?.revision).toBe(2);
    expect(await reader.get('redis', 1)).toBeUndefined(); // another module's revision 1: its own read
    expect(store.reads).toBe(3);

    // Dropped once unused for keepMs; read again after.
    await new Promise((r) => setTimeout(r, 300));
    expect(reader.size).toBe(0);
    await reader.get('haproxy', 1);
    expect(store.reads).toBe(4);

    // A failed read is not kept: the next caller reads again.
    await new Promise((r) => setTimeout(r, 300));
    store.failNext = true;
    await expect(reader.get('haproxy', 1)).rejects.toThrow('store unavailable');
    expect((await reader.get('haproxy', 1))?.revision).toBe(1);
    expect(store.reads).toBe(6);
    await store.close();
  });
});
