import { pino, type Logger, type LoggerOptions } from 'pino';
import { SECRET_VAR_NAMES } from '../credentials/catalog.js';
import { scrub, scrubDeep } from './scrub.js';

export { registerSecretValues, unregisterSecretValues, scrub, scrubDeep, REDACTED } from './scrub.js';

/** Keys under which a secret may travel; `name` at the top level and one or two levels down. */
function anyDepth(names: readonly string[]): string[] {
  return names.flatMap((n) => [n, `*.${n}`, `*.*.${n}`]);
}

/**
 * Paths pino censors in every kb log line. Secrets travel in env maps, file contents,
 * credential values (`secretValues`, `vars`), tokens and passwords, and under the variable
 * names of the credentials catalog; anything under these keys is logged as "[redacted]".
 * Behind this, a hook scrubs the secret values the process holds (see ./scrub.ts) from
 * messages and fields whatever their key.
 */
export const REDACT_PATHS = [
  ...anyDepth(['password', 'token', 'secret', 'secretValues', 'vars', 'authorization', 'masterauth', 'requirepass']),
  'env', '*.env', '*.*.env', '*.containers[*].env', '*.*.containers[*].env',
  'content', '*.content', '*.files[*].content', '*.*.files[*].content',
  'headers.authorization',
  ...anyDepth(SECRET_VAR_NAMES),
];

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
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
    hooks: {
      logMethod(args, method) {
        method.apply(this, args.map((a) => (typeof a === 'string' ? scrub(a) : scrubDeep(a))) as Parameters<typeof method>);
      },
    },
  };
  return pino(options, pino.destination({ fd: opts.fd ?? 2, sync: false }));
}

export type { Logger };
