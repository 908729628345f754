/**
 * ioredis, loaded on first use. A process that never talks to Redis (an agent on a node
 * without a Redis health check or master follower) never loads or initializes the library:
 * that keeps the agent's memory down (docs/benchmarks.md, agent footprint).
 */
import type * as IORedis from 'ioredis';

let loaded: typeof IORedis | undefined;
let loading: Promise<typeof IORedis> | undefined;

/** Loads ioredis (once) and returns it. */
export async function loadIoredis(): Promise<typeof IORedis> {
  if (loaded) return loaded;
  loading ??= import('ioredis').then((m) => (loaded = m));
  return loading;
}

/** True once loadIoredis() has resolved. */
export function ioredisLoaded(): boolean {
  return loaded !== undefined;
}

/** The Redis client class; loadIoredis() must have resolved first (a programming error otherwise). */
export function redisClass(): typeof IORedis.Redis {
  if (!loaded) throw new Error('ioredis is not loaded yet: await loadIoredis() before creating a Redis client');
  return loaded.Redis;
}
