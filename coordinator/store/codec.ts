import { gunzipSync, gzipSync } from 'node:zlib';
import type { ModuleState } from '../../proto/types.js';
import { KbError, errorMessage } from '../../shared/errors/index.js';
import { specTextOf } from '../../shared/plan/hash.js';
import type { RevisionRecord } from './types.js';

/**
 * JSON encoding of store records, shared by every backend so a record reads back the
 * same from SQLite and etcd. Buffers (file contents in module states) are stored as
 * `{"$b64": "..."}` and restored on read; everything else is plain JSON.
 */
export function encodeRecord(value: unknown): string {
  // Buffers are swapped for their base64 form before stringifying: a JSON replacer would
  // only see them after Buffer#toJSON made an array of one number per byte.
  return JSON.stringify(withBase64(value));
}

/** `T` with no bytes (Buffer, Uint8Array) anywhere in it; a type that has some maps to one with `never` there. */
export type NoBytes<T> = T extends Uint8Array ? never : T extends readonly (infer U)[] ? readonly NoBytes<U>[] : T extends object ? { [K in keyof T]: NoBytes<T[K]> } : T;

/**
 * encodeRecord for a record whose type holds no bytes (every record but a revision): plain
 * JSON.stringify, the same text, without looking for Buffers in every value first. The
 * compiler refuses a type with bytes. During a 5,000-node fan-out, that look through the
 * node records refreshed meanwhile took 100 ms of the coordinator's main thread.
 */
export function encodePlain<T>(value: T & NoBytes<T>): string {
  return JSON.stringify(value);
}

/** Decodes a record written by encodeRecord. */
export function decodeRecord<T>(text: string): T {
  // The reviver runs for every value: only records that hold bytes pay for it.
  return (text.includes('"$b64"') ? JSON.parse(text, bufferReviver) : JSON.parse(text)) as T;
}

/**
 * Revisions at least this large (encoded) are stored gzip-compressed. A revision holds every
 * node's state: at 5,000 HAProxy nodes it is 16 MB of JSON that compresses to under 1 MB,
 * which SQLite writes (and checkpoints) in a fraction of the time and which fits etcd's
 * default 1.5 MiB request limit. Smaller revisions stay plain JSON, readable with sqlite3
 * or etcdctl. ADR 0019.
 */
export const REVISION_GZIP_MIN_BYTES = 256 * 1024;

/** Encodes a revision: JSON text, or gzip-compressed JSON bytes when large (see REVISION_GZIP_MIN_BYTES). */
export function encodeRevision(r: RevisionRecord): string | Buffer {
  const pieces = revisionPieces(r);
  let chars = 0;
  for (const p of pieces) chars += p.length;
  if (chars < REVISION_GZIP_MIN_BYTES) return pieces.join('');
  return gzipPieces(pieces);
}

/**
 * gzip of the pieces' text joined. The pieces are written one by one into one buffer: joined
 * first, the text of a 5,000-node revision was a 16 MB string made flat (copied) again before
 * its UTF-8 encoding, 60 ms of a fan-out's main thread and a large object for the collector.
 */
function gzipPieces(pieces: string[]): Buffer {
  let bytes = 0;
  for (const p of pieces) bytes += Buffer.byteLength(p, 'utf8');
  const buf = Buffer.allocUnsafe(bytes);
  let at = 0;
  for (const p of pieces) at += buf.write(p, at, 'utf8');
  // Level 1: 16 MB in ~25 ms; higher levels gain a few percent of size for twice the time.
  return gzipSync(buf, { level: 1 });
}

/**
 * Decodes a revision written by encodeRevision (or by earlier versions of kb: plain JSON).
 * A document that does not decode (damaged, truncated) throws a KbError naming `where`
 * (the revision's place in the store).
 */
export function decodeRevision(doc: string | Uint8Array, where: string): RevisionRecord {
  try {
    return decodeRecord<RevisionRecord>(docText(doc));
  } catch (err) {
    throw unreadable(where, err);
  }
}

/**
 * The JSON of a revision, in pieces to be joined: what encodeRecord gives (the same value once
 * parsed; `states` comes last), with each planned state's text built from the canonical JSON
 * its spec hash was computed from (shared/plan/hash.ts) rather than encoded again.
 */
function revisionPieces(r: RevisionRecord): string[] {
  const { states, ...rest } = r;
  const head = encodeRecord(rest);
  const out = [`${head === '{}' ? '{' : `${head.slice(0, -1)},`}"states":{`];
  let first = true;
  for (const node of Object.keys(states)) {
    out.push(`${first ? '' : ','}${JSON.stringify(node)}:`);
    statePieces(states[node]!, out);
    first = false;
  }
  out.push('}}');
  return out;
}

/** Keys of a state that its spec text does not hold but the state may have. */
const STATE_KEYS = new Set(['module', 'revision', 'specHash', 'containers', 'files', 'healthChecks', 'redisFollower', 'secrets', 'secretFiles']);

/** encodeRecord(state), from the state's spec text when it has one. */
export function stateJson(state: ModuleState): string {
  const out: string[] = [];
  statePieces(state, out);
  return out.join('');
}

/** stateJson(state) as pieces appended to `out`. */
function statePieces(state: ModuleState, out: string[]): void {
  const spec = specTextOf(state);
  if (!spec) {
    out.push(encodeRecord(state));
    return;
  }
  let extra = '';
  for (const key of Object.keys(state)) {
    const v = (state as unknown as Record<string, unknown>)[key];
    if (v === undefined || spec.has(key)) continue;
    // A field this code does not know may not be in the text: encode the state whole.
    if (!STATE_KEYS.has(key)) {
      out.push(encodeRecord(state));
      return;
    }
    extra += `,${JSON.stringify(key)}:${encodeRecord(v)}`;
  }
  out.push(spec.text.slice(0, -1), `${extra}}`);
}

/**
 * A stored revision document with `healthyMs` set to `atMs`, to be stored in its place.
 * A document kb wrote (`states` last) is not decoded: only the head before `"states"`
 * (module, revision, times, images) is parsed and written again, and the states' text is kept
 * as it is. At 5,000 nodes, decoding every state and encoding it again took ~300 ms of the main
 * thread when a rollout ended healthy. A document in another layout (earlier versions wrote
 * `states` before `healthyMs`) is decoded and encoded whole. Throws like decodeRevision for a
 * damaged one.
 */
export function withHealthyMark(doc: string | Uint8Array, atMs: number, where: string): string | Buffer {
  let text: string;
  try {
    text = docText(doc);
  } catch (err) {
    throw unreadable(where, err);
  }
  const at = text.indexOf(',"states":{');
  const head = at > 0 && text.endsWith('}}') ? parseHead(text.slice(0, at)) : undefined;
  if (!head) {
    const r = decodeRevision(text, where);
    r.healthyMs = atMs;
    return encodeRevision(r);
  }
  head.healthyMs = atMs;
  const pieces = [encodeRecord(head).slice(0, -1), text.slice(at)];
  return pieces[0]!.length + pieces[1]!.length >= REVISION_GZIP_MIN_BYTES ? gzipPieces(pieces) : pieces.join('');
}

/** The fields of a revision before its states (`{...` without the closing brace), if that is what `open` holds. */
function parseHead(open: string): Record<string, unknown> | undefined {
  try {
    const head = JSON.parse(`${open}}`) as unknown;
    return head && typeof head === 'object' && 'healthyMs' in head && !('states' in head) ? head as Record<string, unknown> : undefined;
  } catch {
    return undefined;
  }
}

function unreadable(where: string, err: unknown): KbError {
  return new KbError(`${where}: stored revision unreadable (${errorMessage(err)}); the store's file or etcd data is damaged`, { cause: err });
}

/** The JSON text of a stored revision document (plain text, or its bytes, gzipped or not). */
function docText(doc: string | Uint8Array): string {
  if (typeof doc === 'string') return doc;
  const bytes = Buffer.isBuffer(doc) ? doc : Buffer.from(doc.buffer, doc.byteOffset, doc.byteLength);
  // gzip's magic number: JSON text never starts with byte 0x1f.
  return bytes[0] === 0x1f && bytes[1] === 0x8b ? gunzipSync(bytes).toString('utf8') : bytes.toString('utf8');
}

function bufferReviver(_key: string, value: unknown): unknown {
  return value && typeof value === 'object' && typeof (value as { $b64?: unknown }).$b64 === 'string'
    ? Buffer.from((value as { $b64: string }).$b64, 'base64')
    : value;
}

/** `value` with every Buffer replaced by `{$b64}`; objects and arrays are copied only on the path to a Buffer. */
function withBase64(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return { $b64: value.toString('base64') };
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const w = withBase64(value[i]);
      if (w !== value[i]) (out ??= value.slice())[i] = w;
    }
    return out ?? value;
  }
  if (value && typeof value === 'object') {
    let out: Record<string, unknown> | undefined;
    for (const k of Object.keys(value)) {
      const v = (value as Record<string, unknown>)[k];
      const w = withBase64(v);
      if (w !== v) (out ??= { ...(value as Record<string, unknown>) })[k] = w;
    }
    return out ?? value;
  }
  return value;
}
