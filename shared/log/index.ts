import { pino, type Logger, type LoggerOptions } from 'pino';
import { SECRET_VAR_NAMES } from '../credentials/catalog.js';
import { scrub } from './scrub.js';

export { registerSecretValues, unregisterSecretValues, scrub, scrubDeep, REDACTED } from './scrub.js';

/**
 * Keys kb censors in every log line, at any depth. Secrets travel in env maps, file contents,
 * credential values (`secretValues`, `vars`), tokens and passwords, and under the variable
 * names of the credentials catalog; anything under these keys is logged as "[redacted]".
 * The same walk scrubs the secret values the process holds (see ./scrub.ts) from messages
 * and fields whatever their key.
 *
 * One walk over the logged object, in the logMethod hook, instead of pino's path redaction:
 * with ~150 wildcard paths that cost more than the rest of a log line (a 5,000-node rollout
 * logs ~15,000 event lines: half a second of CPU in redaction alone, bench/fleet), and keys
 * are censored at any depth, not only the first three levels.
 */
export const REDACT_KEYS: ReadonlySet<string> = new Set([
  'password', 'token', 'secret', 'secretValues', 'vars', 'authorization', 'masterauth', 'requirepass',
  'env', 'content', ...SECRET_VAR_NAMES,
]);

/** Copy of `value` with every REDACT_KEYS key censored and every string scrubbed. Errors keep their type. */
export function sanitize(value: unknown, seen = new WeakSet<object>()): unknown {
  if (typeof value === 'string') return scrub(value);
  if (value === null || typeof value !== 'object') return value;
  if (seen.has(value)) return '[circular]';
  seen.add(value);
  if (value instanceof Error) {
    // A new Error (same name, scrubbed message and stack) with its own fields sanitized too.
    const e = new Error(scrub(value.message));
    e.name = value.name;
    if (value.stack) e.stack = scrub(value.stack);
    for (const [k, v] of Object.entries(value)) (e as unknown as Record<string, unknown>)[k] = REDACT_KEYS.has(k) ? REDACTED_TEXT : sanitize(v, seen);
    return e;
  }
  if (Buffer.isBuffer(value)) return value;
  if (Array.isArray(value)) return value.map((v) => sanitize(v, seen));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = REDACT_KEYS.has(k) ? REDACTED_TEXT : sanitize(v, seen);
  return out;
}

const REDACTED_TEXT = '[redacted]';

export interface LogOptions {
  /** Component name, e.g. "coordinator" or "agent". */
  name: string;
  /** pino level; default from KB_LOG_LEVEL or "info". */
  level?: string;
  /** Write to this file descriptor (default 2, stderr: stdout is for command output). */
  fd?: number;
}

/** Creates the pino logger of a kb process, with secret redaction and scrubbing always on. */
export function createLogger(opts: LogOptions): Logger {
  const options: LoggerOptions = {
    name: opts.name,
    level: opts.level ?? process.env.KB_LOG_LEVEL ?? 'info',
    base: { pid: process.pid },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((a) => sanitize(a)) as Parameters<typeof method>);
      },
    },
  };
  return pino(options, pino.destination({ fd: opts.fd ?? 2, sync: false }));
}

export type { Logger };
