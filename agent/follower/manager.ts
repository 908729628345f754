import type { ModuleState, RedisMasterFollower } from '../../proto/types.js';
import { errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { canonicalJson } from '../../shared/plan/hash.js';
import type { Outcome } from '../health/types.js';
import { MasterFollower, type FollowerDeps } from './follower.js';

interface Running { key: string; follower?: MasterFollower; error?: string }

/**
 * Runs one MasterFollower per module whose desired state carries a `redisFollower` spec,
 * and only those. `sync` is called with the agent's desired states whenever they change
 * (and at start, from the on-disk state: the follower works without a coordinator).
 * A changed spec restarts that module's follower; an unchanged one is left running.
 */
export class FollowerManager {
  private readonly running = new Map<string, Running>();

  constructor(private readonly deps: Omit<FollowerDeps, 'log'> & { log: Logger }) {}

  sync(states: readonly ModuleState[]): void {
    const wanted = new Map<string, RedisMasterFollower>();
    for (const s of states) if (s.redisFollower?.masterName) wanted.set(s.module, s.redisFollower);
    for (const [module, r] of this.running) {
      const spec = wanted.get(module);
      if (spec && canonicalJson(spec) === r.key) continue;
      this.running.delete(module);
      void r.follower?.stop();
      this.deps.log.info({ module }, spec ? 'follower spec changed: restarting the follower' : 'follower no longer wanted: stopped');
    }
    for (const [module, spec] of wanted) {
      if (this.running.has(module)) continue;
      const key = canonicalJson(spec);
      try {
        const follower = new MasterFollower(spec, { ...this.deps, log: this.deps.log.child({ follower: module }) });
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
    const all = [...this.running.values()];
    this.running.clear();
    await Promise.all(all.map((r) => r.follower?.stop()));
  }
}
