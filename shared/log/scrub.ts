/**
 * Process-wide set of secret values this process holds, and a scrubber that replaces them
 * in text. Defence in depth behind pino's path redaction: a value that reaches a log line or
 * kbctl output by any path (an error message quoting a config line, a value in an unexpected
 * field) is printed as "[redacted]". Only values of at least MIN_LENGTH characters are
 * registered: short, non-secret values (a quorum "2", a user "kb_app") are not secrets.
 */
const values = new Set<string>();
const MIN_LENGTH = 8;
let pattern: RegExp | undefined;

export const REDACTED = '[redacted]';

/** Registers values to scrub. Safe to call many times with the same values. */
export function registerSecretValues(list: Iterable<string>): void {
  let changed = false;
  for (const v of list) {
    if (v.length >= MIN_LENGTH && !values.has(v)) {
      values.add(v);
      changed = true;
    }
  }
  if (changed) pattern = undefined;
}

/** Forgets values (the agent drops them once an apply is done). */
export function unregisterSecretValues(list: Iterable<string>): void {
  for (const v of list) if (values.delete(v)) pattern = undefined;
}

/** `text` with every registered value replaced by "[redacted]". */
export function scrub(text: string): string {
  if (values.size === 0) return text;
  pattern ??= new RegExp([...values].sort((a, b) => b.length - a.length).map(escapeRe).join('|'), 'g');
  return text.replace(pattern, REDACTED);
}

/** Deep copy of `value` (up to `depth` levels) with strings scrubbed; other leaves kept. */
export function scrubDeep(value: unknown, depth = 4): unknown {
  if (values.size === 0) return value;
  if (typeof value === 'string') return scrub(value);
  if (depth <= 0 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    const e = new Error(scrub(value.message));
    e.name = value.name;
    if (value.stack) e.stack = scrub(value.stack);
    return e;
  }
  if (Array.isArray(value)) return value.map((v) => scrubDeep(v, depth - 1));
  if (Buffer.isBuffer(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = scrubDeep(v, depth - 1);
  return out;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
