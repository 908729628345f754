import type { Redis } from 'ioredis';
import { errorMessage } from '../errors/index.js';
import { loadIoredis } from './client.js';
import { authOptions, formatEndpoint, type Endpoint, type RedisAuth } from './endpoint.js';

export interface OneShotOptions {
  /** Connect and command timeout. */
  timeoutMs: number;
  auth?: RedisAuth;
}

/**
 * Opens one connection to `e` (one attempt, no retries, no offline queue), runs `fn`, and
 * disconnects. Errors are rethrown as `Error("<host:port>: <why>")`, where `why` is the socket
 * error (ECONNREFUSED, ETIMEDOUT...) rather than ioredis' generic "Connection is closed".
 * Works for Redis servers and Sentinels alike. The password never appears in an error.
 */
export async function withRedis<T>(e: Endpoint, opts: OneShotOptions, fn: (r: Redis) => Promise<T>): Promise<T> {
  const { Redis } = await loadIoredis();
  const client = new Redis({
    host: e.host, port: e.port, lazyConnect: true, connectTimeout: opts.timeoutMs, commandTimeout: opts.timeoutMs,
    maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, enableReadyCheck: false,
    ...authOptions(opts.auth),
  });
  let socketError: Error | undefined;
  client.on('error', (err: Error) => { socketError ??= err; });
  try {
    await client.connect();
    return await fn(client);
  } catch (err) {
    const why = socketError && /connection is closed|stream isn't writeable/i.test(errorMessage(err)) ? errorMessage(socketError) : errorMessage(err);
    throw new Error(`${formatEndpoint(e)}: ${why}`, { cause: err });
  } finally {
    client.disconnect();
  }
}

/** The first element of `ROLE`: "master", "slave" or "sentinel". */
export async function redisRole(e: Endpoint, opts: OneShotOptions): Promise<string> {
  return withRedis(e, opts, async (r) => {
    const reply = (await r.call('ROLE')) as unknown[];
    return String(reply[0] ?? '');
  });
}
