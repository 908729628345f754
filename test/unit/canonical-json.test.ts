import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ImageResolver } from '../../coordinator/images/resolve.js';
import { getModule } from '../../coordinator/modules/index.js';
import { computeDesired } from '../../coordinator/planner.js';
import { loadInventory } from '../../shared/inventory/index.js';
import { decodeRecord, decodeRevision, encodeRecord, encodeRevision, stateJson } from '../../coordinator/store/codec.js';
import type { RevisionRecord } from '../../coordinator/store/types.js';
import type { ModuleState } from '../../proto/types.js';
import { canonicalJson, keepSpecText, moduleSpecHash, sha256Hex, specTextOf } from '../../shared/plan/hash.js';
import { parseVersions } from '../../shared/versions/index.js';
import { sharedFixture } from '../helpers/shared-fixtures.js';

// The definition canonicalJson is written out from: a sorted copy (Buffers as {$b64}) handed
// to JSON.stringify. Spec hashes already stored (revisions, agents' state files) were made
// this way, so the direct writer must give the very same string for every value.
function reference(value: unknown): string {
  const normalize = (v: unknown): unknown => {
    if (Buffer.isBuffer(v)) return { $b64: v.toString('base64') };
    if (v instanceof Uint8Array) return { $b64: Buffer.from(v).toString('base64') };
    if (Array.isArray(v)) return v.map(normalize);
    if (v && typeof v === 'object') {
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(v).sort()) {
        const x = (v as Record<string, unknown>)[key];
        if (x !== undefined) out[key] = normalize(x);
      }
      return out;
    }
    return v;
  };
  return JSON.stringify(normalize(value));
}

const resolver: ImageResolver = { resolve: async (ref) => `${ref}@sha256:${'a'.repeat(64)}` };
const versions = parseVersions('redis_image: "127.0.0.1:5000/kb/redis:7.0-kb1"\nhaproxy_image: "127.0.0.1:5000/kb/haproxy:2.6-kb1"\n', 'versions.yaml');

describe('canonicalJson', () => {
  it('gives what JSON.stringify gives for the sorted value, for odd values', () => {
    const values: unknown[] = [
      null, true, false, 0, -0, 1.5, 1e21, -3e-7, NaN, Infinity, '', 'é "quoted" \\ \n\t\u2028 \ud83d\ude00', '\ud800',
      [], {}, [undefined, null, () => 1, Symbol('s'), 2], { b: 1, a: undefined, c: () => 1, d: Symbol('x'), e: null },
      { z: { y: [{ b: 2, a: 1 }, []], x: {} }, 'key "q"': 'v', 'é': 1, '10': 'ten', '9': 'nine', A: 'upper', a: 'lower' },
      // Integer-like keys: a JavaScript object lists array indexes first, in numeric order.
      { '01': 1, '4294967295': 2, '4294967294': 3, '-1': 4, '0': 5, '1.5': 6, b: 7, '2': 8 },
      Buffer.from('binary \x00\xff', 'latin1'), new Uint8Array([1, 2, 250]), { content: Buffer.alloc(3000, 7), list: [Buffer.from('x')] },
      new Date(0), new Map([['a', 1]]),
    ];
    for (const v of values) expect(canonicalJson(v), String(JSON.stringify(v))).toBe(reference(v));
    expect(() => canonicalJson({ n: 1n })).toThrow(/BigInt/);
  });

  it('gives the same string and spec hash as the reference for every desired state of the real inventory', async () => {
    const inventory = loadInventory(sharedFixture('servers.tsv'));
    let checked = 0;
    for (const module of ['redis', 'haproxy']) {
      const d = await computeDesired(getModule(module), { inventory, versions, settings: {} }, resolver, { redis: { active: 2, accepted: [1, 2] } });
      for (const state of Object.values(d.states)) {
        expect(canonicalJson(state)).toBe(reference(state));
        const { specHash, revision: _r, ...rest } = state;
        expect(moduleSpecHash(rest)).toBe(specHash);
        expect(specHash).toBe(sha256Hex(reference({
          module: state.module, containers: state.containers, files: state.files, healthChecks: state.healthChecks,
          ...(state.redisFollower ? { redisFollower: state.redisFollower } : {}),
          ...(state.secrets?.length ? { secrets: state.secrets } : {}),
          ...(state.secretFiles?.length ? { secretFiles: state.secretFiles } : {}),
        })));
        checked++;
      }
    }
    expect(checked).toBe(5);
  });

  it('a planned revision, stored plain or gzipped, reads back as the very states', async () => {
    const inventory = loadInventory(sharedFixture('servers.tsv'));
    for (const module of ['redis', 'haproxy']) {
      const d = await computeDesired(getModule(module), { inventory, versions, settings: {} }, resolver, { redis: { active: 2, accepted: [1, 2] } });
      const states = Object.fromEntries(Object.entries(d.states).map(([n, st]) => [n, { ...st, revision: 7 }]));
      for (const st of Object.values(states)) expect(decodeRecord(encodeRecord(st))).toEqual(st);
      const rev: RevisionRecord = { module, revision: 7, createdMs: 1, images: d.images, states, healthyMs: null, sourceRevision: 3 };
      expect(decodeRevision(encodeRevision(rev), 'test')).toEqual(rev);
      // Large enough to be compressed: the same through gzip.
      const many: RevisionRecord = { ...rev, states: Object.fromEntries(Array.from({ length: 400 }, (_, i) => [`n${i}`, Object.values(states)[i % 2]!])) };
      const big = encodeRevision(many);
      expect(Buffer.isBuffer(big)).toBe(true);
      expect(decodeRevision(big, 'test')).toEqual(many);
    }
  });
});

describe('planned states stored from their spec text', () => {
  it('encode to the same value as encodeRecord, with and without credentials, one by one and as a revision', async () => {
    const inventory = loadInventory(sharedFixture('servers.tsv'));
    let checked = 0;
    for (const module of ['redis', 'haproxy']) {
      for (const secrets of [undefined, { redis: { active: 2, accepted: [1, 2] } }]) {
        const d = await computeDesired(getModule(module), { inventory, versions, settings: {} }, resolver, secrets);
        const states: Record<string, ModuleState> = {};
        for (const [node, st] of Object.entries(d.states)) {
          // The planned state keeps the text its hash was computed from; a copy with another
          // revision number (what a new revision stores) shares it.
          expect(sha256Hex(specTextOf(st)!.text)).toBe(st.specHash);
          const copy = { ...st, revision: 7 };
          keepSpecText(st, copy);
          expect(specTextOf(copy)!.text).toBe(specTextOf(st)!.text);
          expect(JSON.parse(stateJson(copy))).toEqual(JSON.parse(encodeRecord(copy)));
          expect(decodeRecord(stateJson(copy))).toEqual(copy);
          states[node] = copy;
          checked++;
        }
        const rev: RevisionRecord = { module, revision: 7, createdMs: 1, images: d.images, states, healthyMs: null, sourceRevision: null };
        expect(JSON.parse(encodeRevision(rev) as string)).toEqual(JSON.parse(encodeRecord(rev)));
        expect(decodeRevision(encodeRevision(rev), 'test')).toEqual(rev);
      }
    }
    expect(checked).toBe(10);
  });

  it('a state with a field the spec text does not cover, or with changed spec fields, is encoded whole', async () => {
    const d = await computeDesired(getModule('haproxy'), { inventory: loadInventory(sharedFixture('servers.tsv')), versions, settings: {} }, resolver);
    const st = Object.values(d.states)[0]!;
    const odd = { ...st, extra: 'not a ModuleState field' } as ModuleState;
    keepSpecText(st, odd);
    expect(JSON.parse(stateJson(odd))).toEqual(JSON.parse(encodeRecord(odd)));
    expect(JSON.parse(stateJson(odd)).extra).toBe('not a ModuleState field');
    // A state read back from the store has no spec text: encodeRecord itself.
    const back = decodeRecord<ModuleState>(encodeRecord(st));
    expect(specTextOf(back)).toBeUndefined();
    expect(stateJson(back)).toBe(encodeRecord(back));
  });
});

describe('sha256Hex', () => {
  it('gives the standard SHA-256 digests for strings (UTF-8) and Buffers, as createHash does', () => {
    expect(sha256Hex('abc')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(sha256Hex('')).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    for (const v of ['abc', 'é ü 日本', Buffer.from([0, 255, 1, 128]), Buffer.alloc(0), 'x'.repeat(100_000)]) {
      expect(sha256Hex(v)).toBe(createHash('sha256').update(v).digest('hex'));
    }
  });
});
