import { KbError, errorMessage } from '../../shared/errors/index.js';

/**
 * Thrown by the Docker driver when the engine refuses or fails an operation (or cannot be
 * reached). The message is `<op> <target> on <node>: <engine message>`, e.g.
 * `pull 127.0.0.1:5000/kb/redis@sha256:… on redis-01: manifest unknown`; `statusCode` is the
 * engine's HTTP status when there was one (404 = no such object, 409 = conflict).
 */
export class DriverError extends KbError {
  override name = 'DriverError';
  constructor(
    readonly op: string,
    readonly target: string,
    readonly node: string,
    cause: unknown,
    readonly statusCode?: number,
  ) {
    super(`${op} ${target} on ${node}: ${engineMessage(cause)}`, { cause });
  }
}

/** The engine's own message (`json.message`) when dockerode has it, otherwise the error's message. */
export function engineMessage(err: unknown): string {
  const e = err as { json?: { message?: unknown }; reason?: unknown } | undefined;
  const fromJson = e?.json && typeof e.json.message === 'string' ? e.json.message : undefined;
  return (fromJson ?? errorMessage(err)).trim();
}

/** HTTP status code of a dockerode error, if any. */
export function statusOf(err: unknown): number | undefined {
  const code = (err as { statusCode?: unknown } | undefined)?.statusCode;
  return typeof code === 'number' ? code : undefined;
}
