import { pino, type Logger, type LoggerOptions } from 'pino';

/**
 * Paths pino censors in every kb log line. Secrets travel in env maps, file contents,
 * tokens and passwords; anything under these keys is logged as "[redacted]".
 */
export const REDACT_PATHS = [
  'password', '*.password', '*.*.password',
  'token', '*.token', 'secret', '*.secret',
  'env', '*.env', '*.*.env', '*.containers[*].env',
  'content', '*.content', '*.files[*].content', '*.*.files[*].content',
  'authorization', '*.authorization', 'headers.authorization',
];

export interface LogOptions {
  /** Component name, e.g. "coordinator" or "agent". */
  name: string;
  /** pino level; default from KB_LOG_LEVEL or "info". */
  level?: string;
  /** Write to this file descriptor (default 2, stderr: stdout is for command output). */
  fd?: number;
}

/** Creates the pino logger of a kb process, with secret redaction always on. */
export function createLogger(opts: LogOptions): Logger {
  const options: LoggerOptions = {
    name: opts.name,
    level: opts.level ?? process.env.KB_LOG_LEVEL ?? 'info',
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
  };
  return pino(options, pino.destination({ fd: opts.fd ?? 2, sync: false }));
}

export type { Logger };
