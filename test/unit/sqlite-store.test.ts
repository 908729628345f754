import { encodeRecord } from '../../coordinator/store/codec.js';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { SqliteStore } from '../../coordinator/store/sqlite.js';
import type { RolloutRecord } from '../../coordinator/store/types.js';

describe('SqliteStore', () => {
  it('keeps nodes, revisions (with file contents), rollouts and ordered events across a reopen', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'kb-store-')), 'kb.db');
    const a = new SqliteStore(file);
    await a.upsertNode({ name: 'redis-01', agentVersion: '0.1.0', firstSeenMs: 1, lastSeenMs: 2, facts: null });
    await a.putRevision({
      module: 'redis', revision: 1, createdMs: 5, images: { redis: 'r@sha256:1' }, healthyMs: null, sourceRevision: null,
      states: { 'redis-01': { module: 'redis', revision: 1, specHash: 'h', containers: [], files: [{ path: '/etc/x', mode: 0o600, content: Buffer.from('bytes\u0000') }], healthChecks: [] } },
    });
    const r: RolloutRecord = {
      id: 'redis-1-x', module: 'redis', revision: 1, fromRevision: 0, state: 'running', maxParallel: 1, healthyDeadlineMs: 1, minHealthyTimeMs: 1,
      nodes: [{ node: 'redis-01', phase: 'applying', error: '' }], error: '', failedNode: '', failedCheck: '', observed: '', createdMs: 1, updatedMs: 1,
    };
    await a.putRollout(r);
    const e1 = await a.appendEvent({ rolloutId: r.id, atMs: 1, node: 'redis-01', kind: 'node-apply', message: 'm', check: '', observed: '', revision: 1 });
    const e2 = await a.appendEvent({ rolloutId: r.id, atMs: 2, node: 'redis-01', kind: 'node-healthy', message: 'm', check: '', observed: '', revision: 1 });
    expect(e2.id).toBeGreaterThan(e1.id);
    await a.close();

    const b = new SqliteStore(file);
    expect((await b.getNode('redis-01'))?.agentVersion).toBe('0.1.0');
    const rev = await b.getRevision('redis', 1);
    expect(Buffer.isBuffer(rev!.states['redis-01']!.files[0]!.content)).toBe(true);
    expect(rev!.states['redis-01']!.files[0]!.content.toString()).toBe('bytes\u0000');
    expect((await b.listRollouts({ state: 'running' })).map((x) => x.id)).toEqual(['redis-1-x']);
    expect((await b.listEvents(r.id)).map((e) => e.kind)).toEqual(['node-apply', 'node-healthy']);
    await b.markRevisionHealthy('redis', 1, 9);
    expect((await b.latestRevision('redis'))!.healthyMs).toBe(9);
    await b.close();
  });

  it('group commit: the writes of one turn commit together, a failing write fails alone, and a resolved write is on disk', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'kb-store-')), 'kb.db');
    const a = new SqliteStore(file);
    const rev = { module: 'm', revision: 1, createdMs: 1, images: {}, healthyMs: null, sourceRevision: null, states: {} };
    await a.putRevision(rev);
    // Same turn: 200 node writes, a duplicate revision (refused), and events.
    const nodes = Array.from({ length: 200 }, (_, i) => a.upsertNode({ name: `n-${i}`, agentVersion: 'v', firstSeenMs: i, lastSeenMs: i, facts: null }));
    const dup = a.putRevision(rev);
    const events = [1, 2, 3].map((atMs) => a.appendEvent({ rolloutId: 'r', atMs, node: '', kind: 'rollout-start', message: '', check: '', observed: '', revision: 1 }));
    await expect(dup).rejects.toThrow(/already exists/);
    await Promise.all(nodes);
    const ids = (await Promise.all(events)).map((e) => e.id);
    expect(ids).toEqual([...ids].sort((x, y) => x - y));
    // Another connection (a restarted coordinator) sees every resolved write.
    const b = new SqliteStore(file);
    expect(await b.listNodes()).toHaveLength(200);
    expect((await b.listEvents('r')).map((e) => e.atMs)).toEqual([1, 2, 3]);
    expect(await b.listRevisions('m')).toHaveLength(1);
    await b.close();
    await a.close();
  });
  it('group commit: when a failure rolls the whole transaction back, the writes of its turn fail with it (none resolves unwritten)', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'kb-store-')), 'kb.db');
    const a = new SqliteStore(file);
    await a.upsertNode({ name: 'before', agentVersion: 'v', firstSeenMs: 1, lastSeenMs: 1, facts: null });
    // A full disk, made small: SQLite answers SQLITE_FULL.
    const db = (a as unknown as { db: { pragma(s: string, o?: { simple: boolean }): unknown } }).db;
    const pages = Number(db.pragma('page_count', { simple: true }));
    db.pragma(`max_page_count = ${pages + 2}`);
    const small = Array.from({ length: 5 }, (_, i) => a.upsertNode({ name: `small-${i}`, agentVersion: 'v', firstSeenMs: i, lastSeenMs: i, facts: null }));
    const big = a.putRevision({ module: 'm', revision: 1, createdMs: 1, images: {}, healthyMs: null, sourceRevision: null, states: { n: { big: randomBytes(1 << 20).toString('base64') } as never } }); // incompressible: stays over the limit gzipped
    const outcomes = await Promise.allSettled([...small, big]);
    expect(outcomes.at(-1)!.status).toBe('rejected');
    const b = new SqliteStore(file);
    const stored = (await b.listNodes()).map((n) => n.name);
    // Each small write either landed or failed: none resolved while lost.
    for (const [i, o] of outcomes.slice(0, 5).entries()) expect(stored.includes(`small-${i}`)).toBe(o.status === 'fulfilled');
    expect(stored).toContain('before');
    await b.close();
    await a.close();
  });
});

describe('SQLite store, a damaged revision', () => {
  it('fails to read with an error naming the database file, the module and the revision', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'kb-store-')), 'kb.db');
    const a = new SqliteStore(file);
    const states = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [`lb-${i}`, { module: 'haproxy', revision: 3, specHash: `h${i}`, containers: [], files: [], healthChecks: [], note: randomBytes(600).toString('base64') }]));
    await a.putRevision({ module: 'haproxy', revision: 3, createdMs: 1, images: {}, healthyMs: null, sourceRevision: null, states: states as never });
    const db = (a as unknown as { db: { prepare(s: string): { run(...p: unknown[]): unknown } } }).db;
    db.prepare("UPDATE revisions SET doc = substr(doc, 1, 100) WHERE module = 'haproxy'").run();
    await expect(a.getRevision('haproxy', 3)).rejects.toThrow(`${file}: haproxy revision 3: stored revision unreadable`);
    await expect(a.listRevisions('haproxy')).rejects.toThrow(`${file}: haproxy revision 3: stored revision unreadable`);
    await a.close();
  });
});

describe('SQLite store, the healthy mark of a revision', () => {
  it('is set on a revision stored by an earlier version of kb (states before healthyMs) too', async () => {
    const file = path.join(mkdtempSync(path.join(os.tmpdir(), 'kb-store-')), 'kb.db');
    const a = new SqliteStore(file);
    const states = { 'lb-0': { module: 'haproxy', revision: 2, specHash: 'h0', containers: [], files: [{ path: '/x', mode: 420, content: Buffer.from('x') }], healthChecks: [] } };
    await a.putRevision({ module: 'haproxy', revision: 2, createdMs: 1, images: {}, healthyMs: null, sourceRevision: null, states: states as never });
    // As an earlier version wrote it: encodeRecord of the record literal, `states` before `healthyMs`.
    const db = (a as unknown as { db: { prepare(s: string): { run(...p: unknown[]): unknown } } }).db;
    const old = encodeRecord({ module: 'haproxy', revision: 2, createdMs: 1, images: {}, states, healthyMs: null, sourceRevision: null });
    db.prepare("UPDATE revisions SET doc = ? WHERE module = 'haproxy'").run(old);
    await a.markRevisionHealthy('haproxy', 2, 4321);
    const back = (await a.getRevision('haproxy', 2))!;
    expect(back.healthyMs).toBe(4321);
    expect(back.states['lb-0']!.files[0]!.content).toEqual(Buffer.from('x'));
    await a.close();
  });
});

