import { describe, expect, it } from 'vitest';
import { gunzipSync } from 'node:zlib';
import { decodeRecord, decodeRevision, encodePlain, encodeRecord, encodeRevision, REVISION_GZIP_MIN_BYTES, withHealthyMark } from '../../coordinator/store/codec.js';
import type { AssignmentRecord, EventRecord, NodeModuleRecord, NodeRecord, RevisionRecord, RolloutRecord } from '../../coordinator/store/types.js';

describe('store record codec', () => {
  it('stores Buffers as {$b64} at any depth and reads them back as Buffers', () => {
    const big = Buffer.from('0123456789abcdef');
    const rec = {
      files: [{ path: '/a', content: Buffer.from('line 1\nline 2\n') }, { path: '/b', content: big.subarray(4, 8) }],
      raw: Buffer.from([0, 255, 7]),
      nested: { deeper: [[Buffer.from([1, 2])]] },
      text: 'no bytes', n: 3, flag: false, none: null, gone: undefined, at: new Date(0),
    };
    const text = encodeRecord(rec);
    expect(text).not.toContain('"type":"Buffer"');
    expect(JSON.parse(text).files[1].content).toEqual({ $b64: Buffer.from('4567').toString('base64') });
    const back = decodeRecord<typeof rec>(text);
    expect(Buffer.isBuffer(back.files[0]!.content)).toBe(true);
    expect(back.files[0]!.content.toString()).toBe('line 1\nline 2\n');
    expect(back.files[1]!.content.toString()).toBe('4567');
    expect([...back.raw]).toEqual([0, 255, 7]);
    expect([...back.nested.deeper[0]![0]!]).toEqual([1, 2]);
    expect(back).toMatchObject({ text: 'no bytes', n: 3, flag: false, none: null, at: '1970-01-01T00:00:00.000Z' });
    expect('gone' in back).toBe(false);
  });

  it('reads records without bytes as plain JSON', () => {
    const rec = { id: 'r', nodes: [{ node: 'a', phase: 'pending', error: '' }], note: 'says $b64 in a value' };
    expect(decodeRecord(encodeRecord(rec))).toEqual(rec);
    // A value that is exactly "$b64" takes the reviving path and stays a string.
    const tricky = { key: '$b64', list: ['$b64'] };
    expect(decodeRecord(encodeRecord(tricky))).toEqual(tricky);
  });
});

describe('records without bytes (encodePlain)', () => {
  it('gives the text encodeRecord gives, for every kind of record the fan-out writes', () => {
    const node: NodeRecord = {
      name: 'lb-01', agentVersion: '0.1.0', firstSeenMs: 1, lastSeenMs: 2,
      facts: { cpuPercent: 1.5, memTotalBytes: 8, memUsedBytes: 4, diskTotalBytes: 0, diskUsedBytes: 0, dockerVersion: '26.1', uptimeS: 9, os: 'Linux é' },
      containers: [{ module: 'haproxy', name: 'haproxy', id: 'c1', state: 'running', image: 'h@sha256:1', imageId: 'sha256:2', startedAt: '2026-11-29T07:00:00Z' }],
    };
    const nm: NodeModuleRecord = { node: 'lb-01', module: 'haproxy', revision: 3, specHash: 's', healthy: false, converged: true, checks: [{ name: 'tcp', ok: false, observed: 'refused' }], updatedMs: 5 };
    const a: AssignmentRecord = { node: 'lb-01', module: 'haproxy', revision: 3, specHash: 's', assignedMs: 6 };
    const r: RolloutRecord = {
      id: 'haproxy-3-x', module: 'haproxy', revision: 3, fromRevision: 2, state: 'running', maxParallel: 1, healthyDeadlineMs: 1, minHealthyTimeMs: 0,
      nodes: [{ node: 'lb-01', phase: 'applying', error: '' }], error: '', failedNode: '', failedCheck: '', observed: '', createdMs: 1, updatedMs: 2,
    };
    const e: Omit<EventRecord, 'id'> = { rolloutId: 'haproxy-3-x', atMs: 1, node: 'lb-01', kind: 'node-apply', message: 'sending "revision" 3', check: '', observed: '', revision: 3 };
    for (const rec of [node, nm, a, r, e]) {
      expect(encodePlain(rec)).toBe(encodeRecord(rec));
      expect(decodeRecord(encodePlain(rec))).toEqual(rec);
    }
  });

  it('is refused by the compiler for a record with bytes', () => {
    const withBytes = { path: '/etc/x', content: Buffer.from('x') };
    // @ts-expect-error a Buffer would be encoded as {"type":"Buffer","data":[...]}: encodeRecord is for records with bytes
    expect(encodePlain(withBytes)).toContain('"type":"Buffer"');
    expect(encodeRecord(withBytes)).toContain('"$b64"');
  });
});

describe('revision codec', () => {
  const rev = (nodes: number): RevisionRecord => ({
    module: 'haproxy', revision: 3, createdMs: 1, images: { haproxy: 'h@sha256:1' }, healthyMs: null, sourceRevision: null,
    states: Object.fromEntries(Array.from({ length: nodes }, (_, i) => [`lb-${i}`, {
      module: 'haproxy', revision: 3, specHash: `s${i}`, containers: [], healthChecks: [],
      files: [{ path: '/etc/haproxy/haproxy.cfg', mode: 0o644, content: Buffer.from(`frontend fe_redis\n    bind 10.0.${i >> 8}.${i & 255}:6379\n`.repeat(20)) }],
    }])),
  });

  it('keeps a small revision as plain JSON text', () => {
    const doc = encodeRevision(rev(2));
    expect(typeof doc).toBe('string');
    expect(decodeRevision(doc, 'test')).toEqual(rev(2));
  });

  it(`gzips a revision of ${REVISION_GZIP_MIN_BYTES} bytes or more and reads it back, Buffers included`, () => {
    const r = rev(500);
    expect(encodeRecord(r).length).toBeGreaterThanOrEqual(REVISION_GZIP_MIN_BYTES);
    const doc = encodeRevision(r) as Buffer;
    expect(Buffer.isBuffer(doc)).toBe(true);
    expect([doc[0], doc[1]]).toEqual([0x1f, 0x8b]);
    expect(doc.length).toBeLessThan(encodeRecord(r).length / 10);
    const back = decodeRevision(doc, 'test');
    expect(back).toEqual(r);
    expect(Buffer.isBuffer(back.states['lb-499']!.files[0]!.content)).toBe(true);
    // A Uint8Array view (what some drivers hand back) decodes the same.
    expect(decodeRevision(new Uint8Array(doc.buffer, doc.byteOffset, doc.byteLength), 'test')).toEqual(r);
  });

  it('compresses the same JSON text it keeps for a small revision, multi-byte characters included', () => {
    const r = rev(500);
    r.states['lb-7']!.files[0]!.path = '/etc/haproxy/h\u00e9\u4e2d\u{1f600}.cfg';
    r.images.haproxy = 'h\u00e9@sha256:1';
    const text = gunzipSync(encodeRevision(r) as Buffer).toString('utf8');
    expect(JSON.parse(text)).toEqual(JSON.parse(encodeRecord(r)));
    expect(decodeRevision(encodeRevision(r), 'test').states['lb-7']!.files[0]!.path).toBe('/etc/haproxy/h\u00e9\u4e2d\u{1f600}.cfg');
  });

  it('reads revisions stored by earlier versions: JSON text, as a string or as bytes', () => {
    const text = encodeRecord(rev(3));
    expect(decodeRevision(text, 'test')).toEqual(rev(3));
    expect(decodeRevision(Buffer.from(text), 'test')).toEqual(rev(3));
  });

  it('names where a damaged revision is stored instead of failing with a bare zlib or JSON error', () => {
    const doc = encodeRevision(rev(500)) as Buffer;
    const truncated = doc.subarray(0, doc.length >> 1);
    expect(() => decodeRevision(truncated, 'kb.db: haproxy revision 3')).toThrow(/^kb\.db: haproxy revision 3: stored revision unreadable \(.*\); the store's file or etcd data is damaged$/);
    expect(() => decodeRevision('{"module": "haproxy", ', 'kb.db: haproxy revision 4')).toThrow(/^kb\.db: haproxy revision 4: stored revision unreadable/);
  });

  it('marks a stored revision healthy without decoding its states: the same document as decoding, setting and encoding it', () => {
    for (const nodes of [2, 500]) {
      const r = rev(nodes);
      r.states['lb-1']!.files[0]!.path = '/etc/haproxy/h\u00e9\u4e2d\u{1f600}.cfg';
      const doc = encodeRevision(r);
      const marked = withHealthyMark(doc, 1234, 'test');
            expect(typeof marked).toBe(typeof doc);
      const expected = decodeRevision(doc, 'test');
      expected.healthyMs = 1234;
      expect(decodeRevision(marked, 'test')).toEqual(expected);
      // Byte for byte what the decode-and-encode path stores.
      expect(Buffer.from(marked).equals(Buffer.from(encodeRevision(expected)))).toBe(true);
      // A Uint8Array view of the stored bytes (what some drivers hand back) is read the same.
      if (Buffer.isBuffer(doc)) expect(decodeRevision(withHealthyMark(new Uint8Array(doc.buffer, doc.byteOffset, doc.byteLength), 1234, 'test'), 'test')).toEqual(expected);
    }
  });

  it('marks a revision stored by an earlier version (states not last) by decoding it whole, and names a damaged one', () => {
    const r = rev(3);
    // Earlier versions stored encodeRecord of the record, `states` before `healthyMs`.
    const old = encodeRecord({ module: r.module, revision: r.revision, createdMs: r.createdMs, images: r.images, states: r.states, healthyMs: null, sourceRevision: null });
    const expected = { ...r, healthyMs: 1234 };
    for (const doc of [old, Buffer.from(old)]) {
      const marked = withHealthyMark(doc, 1234, 'test');
      expect(decodeRevision(marked, 'test')).toEqual(expected);
      // Encoded again whole: in kb's layout now, states last.
      expect(marked).toBe(encodeRevision(expected));
    }
    const doc = encodeRevision(rev(500)) as Buffer;
    expect(() => withHealthyMark(doc.subarray(0, doc.length >> 1), 1, 'kb.db: haproxy revision 3')).toThrow(/^kb\.db: haproxy revision 3: stored revision unreadable/);
  });
});

