import type { RevisionRecord } from './types.js';

/**
 * JSON encoding of store records, shared by every backend so a record reads back the
 * same from SQLite and etcd. Buffers (file contents in module states) are stored as
 * `{"$b64": "..."}` and restored on read; everything else is plain JSON.
 */
export function encodeRecord(value: unknown): string {
  return JSON.stringify(value, bufferReplacer);
}

/** Decodes a record written by encodeRecord. */
export function decodeRecord<T>(text: string): T {
  // The reviver runs for every value: only records that hold bytes pay for it.
  return (text.includes('"$b64"') ? JSON.parse(text, bufferReviver) : JSON.parse(text)) as T;
}

/** Decodes a revision (the only record that carries Buffers). */
export function decodeRevision(text: string): RevisionRecord {
  return decodeRecord<RevisionRecord>(text);
}

function bufferReviver(_key: string, value: unknown): unknown {
  return value && typeof value === 'object' && typeof (value as { $b64?: unknown }).$b64 === 'string'
    ? Buffer.from((value as { $b64: string }).$b64, 'base64')
    : value;
}

function bufferReplacer(this: unknown, _key: string, value: unknown): unknown {
  if (value && typeof value === 'object' && (value as { type?: string }).type === 'Buffer' && Array.isArray((value as { data?: unknown }).data)) {
    return { $b64: Buffer.from((value as { data: number[] }).data).toString('base64') };
  }
  return value;
}
