import { describe, expect, it } from 'vitest';
import { decodeRecord, encodeRecord } from '../../coordinator/store/codec.js';

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
