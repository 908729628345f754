import type { ContainerAction, ContainerActionResult } from '../proto/types.js';
import { errorMessage } from '../shared/errors/index.js';
import type { Logger } from '../shared/log/index.js';
import { withLock } from './reconcile/lock.js';
import { dockerNameFor, ofModule, selectCurrent } from './reconcile/names.js';
import { STOP_TIMEOUT_S } from './reconcile/steps/prune.js';
import type { ReconcileContext } from './reconcile/types.js';

/** How long a hold lasts when the coordinator does not say. */
export const DEFAULT_HOLD_MS = 300_000;

export interface ContainerActionsDeps {
  ctx: Pick<ReconcileContext, 'node' | 'driver' | 'sharedEngine'>;
  log: Logger;
  /** Called after a container was restored (start action or hold expiry): the agent reconciles. */
  onRestored: () => void;
}

/**
 * Acts on one managed container when the coordinator asks (failover drills):
 *
 *   stop  -> graceful stop (SIGTERM, 10 s), then held
 *   kill  -> SIGKILL through the engine (no restart by policy), then held
 *   pause -> frozen (cgroup freezer), then held
 *   start -> hold released; unpaused or started
 *
 * While a container is held, the reconcile loop leaves it as it is (ReconcileContext.isHeld),
 * so the failure lasts until the drill ends it. A hold ends with a `start`, or by itself after
 * `holdMs` (the agent then restores the container: a drill whose coordinator died never
 * leaves a service down). Holds live in memory only: a restarted agent holds nothing and
 * reconciles everything back, the safe direction.
 *
 * Actions on a module are serialized with its reconciles (same lock). Never throws: a
 * failure is a result with ok=false and the engine's message.
 */
export class ContainerActions {
  private readonly holds = new Map<string, NodeJS.Timeout>();

  constructor(private readonly deps: ContainerActionsDeps) {}

  isHeld(module: string, container: string): boolean {
    return this.holds.has(`${module}\u0000${container}`);
  }

  /** Drops every hold (agent stopping). */
  clear(): void {
    for (const t of this.holds.values()) clearTimeout(t);
    this.holds.clear();
  }

  async handle(a: ContainerAction): Promise<ContainerActionResult> {
    const { ctx, log } = this.deps;
    const key = `${a.module}\u0000${a.container}`;
    const fail = (error: string): ContainerActionResult => ({ id: a.id, ok: false, error, doneAtMs: Date.now(), state: '' });
    if (!['stop', 'kill', 'pause', 'start'].includes(a.action)) return fail(`unknown container action "${a.action}" (stop, kill, pause, start)`);
    try {
      const res = await withLock(`${ctx.node}\u0000${a.module}`, async () => {
        const observed = ofModule(await ctx.driver.list(ctx.node), a.module);
        const cur = selectCurrent(observed, a.container, dockerNameFor(ctx, a.container));
        if (a.action === 'start') this.release(key);
        if (!cur) {
          if (a.action === 'start') return { state: 'missing' };
          throw new Error(`container ${a.container} of module ${a.module} does not exist on ${ctx.node}`);
        }
        if (a.action !== 'start') this.hold(key, a);
        switch (a.action) {
          case 'stop':
            await ctx.driver.stop(cur.id, STOP_TIMEOUT_S);
            break;
          case 'kill':
            if (cur.state === 'paused') await ctx.driver.unpause(cur.id);
            if (cur.state === 'running' || cur.state === 'paused' || cur.state === 'restarting') await ctx.driver.kill(cur.id, 'SIGKILL');
            break;
          case 'pause':
            if (cur.state === 'running') await ctx.driver.pause(cur.id);
            else throw new Error(`container ${a.container} is ${cur.state}, not running: nothing to pause`);
            break;
          case 'start':
            if (cur.state === 'paused') await ctx.driver.unpause(cur.id);
            else if (cur.state !== 'running') await ctx.driver.start(cur.id);
            break;
        }
        return { state: (await ctx.driver.inspect(cur.id))?.state ?? 'missing' };
      });
      const doneAtMs = Date.now();
      log.info({ module: a.module, container: a.container, action: a.action, state: res.state, holdMs: a.action === 'start' ? 0 : a.holdMs || DEFAULT_HOLD_MS }, 'container action done');
      if (a.action === 'start') this.deps.onRestored();
      return { id: a.id, ok: true, error: '', doneAtMs, state: res.state };
    } catch (err) {
      if (a.action !== 'start') this.release(key);
      log.error({ module: a.module, container: a.container, action: a.action, err: errorMessage(err) }, 'container action failed');
      return fail(errorMessage(err));
    }
  }

  private hold(key: string, a: ContainerAction): void {
    this.release(key);
    const ms = a.holdMs > 0 ? a.holdMs : DEFAULT_HOLD_MS;
    const timer = setTimeout(() => {
      this.holds.delete(key);
      this.deps.log.warn({ module: a.module, container: a.container, afterMs: ms }, 'hold expired: restoring the container');
      void this.handle({ id: `${a.id}-expired`, module: a.module, container: a.container, action: 'start', holdMs: 0 });
    }, ms);
    timer.unref();
    this.holds.set(key, timer);
  }

  private release(key: string): void {
    const t = this.holds.get(key);
    if (t) clearTimeout(t);
    this.holds.delete(key);
  }
}
