import type { ModuleState, RedisMasterFollower } from '../../proto/types.js';
import { errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { canonicalJson, sha256Hex } from '../../shared/plan/hash.js';
import { ioredisLoaded, loadIoredis } from '../../shared/redis/client.js';
import type { RedisAuth } from '../../shared/redis/endpoint.js';
import type { Outcome } from '../health/types.js';
import { MasterFollower, type FollowerDeps } from './follower.js';

interface Running { key: string; follower?: MasterFollower; error?: string }

export interface FollowerManagerDeps extends Omit<FollowerDeps, 'log'> {
  log: Logger;
  /**
   * Reads the Redis and Sentinel credentials of a spec's `credentialsFile` (REDIS_PASSWORD,
   * REDIS_SENTINEL_PASSWORD), or undefined when the file is missing.
   */
  readAuth?: (file: string) => { redis?: RedisAuth; sentinel?: RedisAuth } | undefined;
}

/**
 * Runs one MasterFollower per module whose desired state carries a `redisFollower` spec,
 * and only those. `sync` is called with the agent's desired states whenever they change
 * or an apply or reconcile finished (and at start, from the on-disk state: the follower
 * works without a coordinator). A changed spec, or changed passwords in its credentials
 * file (a rotation), restarts that module's follower; otherwise it is left running.
 */
export class FollowerManager {
  private readonly running = new Map<string, Running>();
  /** The states of the last sync, re-synced once ioredis has loaded (see sync). */
  private latest: readonly ModuleState[] = [];
  private loading: Promise<void> | undefined;
  private stopped = false;

  constructor(private readonly deps: FollowerManagerDeps) {}

  sync(states: readonly ModuleState[]): void {
    const wanted = new Map<string, { spec: RedisMasterFollower; key: string; auth?: { redis?: RedisAuth; sentinel?: RedisAuth }; error?: string }>();
    for (const s of states) {
      const spec = s.redisFollower;
      if (!spec?.masterName) continue;
      let auth: { redis?: RedisAuth; sentinel?: RedisAuth } | undefined;
      let error: string | undefined;
      if (spec.credentialsFile) {
        try {
          auth = this.deps.readAuth?.(spec.credentialsFile);
          if (!auth) error = `credentials ${spec.credentialsFile} missing`;
        } catch (err) {
          error = `credentials ${spec.credentialsFile}: ${errorMessage(err)}`;
        }
      }
      // The key covers the passwords (as a hash, in memory only): a rotation restarts the follower with the new ones.
      const key = `${canonicalJson(spec)}|${auth ? sha256Hex(canonicalJson(auth)) : error ?? ''}`;
      wanted.set(s.module, { spec, key, auth, error });
    }
    for (const [module, r] of this.running) {
      const spec = wanted.get(module);
      if (spec && spec.key === r.key) continue;
      this.running.delete(module);
      void r.follower?.stop();
      this.deps.log.info({ module }, spec ? 'follower spec changed: restarting the follower' : 'follower no longer wanted: stopped');
    }
    this.latest = states;
    // ioredis is loaded on the first follower only (nodes without one never load it); the
    // followers start on the re-sync that follows the load, with the latest states.
    const waitForIoredis = !ioredisLoaded();
    if (waitForIoredis && [...wanted].some(([m, w]) => !w.error && !this.running.has(m))) {
      this.loading ??= loadIoredis().then(() => {
        this.loading = undefined;
        if (!this.stopped) this.sync(this.latest);
      }, (err: unknown) => {
        this.loading = undefined;
        this.deps.log.error({ err: errorMessage(err) }, 'cannot load the Redis client library: no follower can start');
      });
    }
    for (const [module, { spec, key, auth, error }] of wanted) {
      if (this.running.has(module)) continue;
      if (!error && waitForIoredis) continue;
      if (error) {
        this.running.set(module, { key, error });
        this.deps.log.error({ module, err: error }, 'follower cannot start');
        continue;
      }
      try {
        const follower = new MasterFollower(spec, {
          ...this.deps, log: this.deps.log.child({ follower: module }),
          ...(auth ? { redisAuth: auth.redis, sentinelAuth: auth.sentinel } : {}),
        });
        follower.start();
        this.running.set(module, { key, follower });
        this.deps.log.info({ module, backend: spec.backend, server: spec.server, sentinels: spec.sentinels }, 'follower started');
      } catch (err) {
        this.running.set(module, { key, error: errorMessage(err) });
        this.deps.log.error({ module, err: errorMessage(err) }, 'follower cannot start');
      }
    }
  }

  /** The follower's state as a health outcome, or undefined when the module has none. */
  outcome(module: string): Outcome | undefined {
    const r = this.running.get(module);
    if (!r) return undefined;
    if (!r.follower) return { ok: false, observed: `follower cannot start: ${r.error ?? 'unknown error'}` };
    const st = r.follower.status();
    const sw = st.lastSwitch;
    const last = sw ? `; last switch ${new Date(sw.atMs).toISOString()} ${sw.from} -> ${sw.to} (${sw.reason}${sw.afterEventMs !== undefined ? `, ${sw.afterEventMs} ms after the event` : ''})` : '';
    return { ok: st.ok, observed: `${st.phase}: ${st.observed}${last}` };
  }

  async stopAll(): Promise<void> {
    this.stopped = true;
    const all = [...this.running.values()];
    this.running.clear();
    await Promise.all(all.map((r) => r.follower?.stop()));
  }
}
