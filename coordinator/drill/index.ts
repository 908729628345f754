import type { DrillEvent, DrillReport, DrillRequest } from '../../proto/types.js';
import { DrillRefusedError, runRedisFailoverDrill, type DrillDeps } from './redis-failover.js';

export { DrillRefusedError } from './redis-failover.js';

/** Known drills. */
export const DRILLS = ['redis-failover'] as const;

/**
 * Runs drills, one at a time per coordinator (a second one is refused while one runs:
 * two failures caused at once would measure nothing).
 */
export class Drills {
  private active: string | undefined;

  constructor(private readonly deps: DrillDeps) {}

  async run(req: DrillRequest, emit: (e: DrillEvent) => void): Promise<DrillReport> {
    if (!(DRILLS as readonly string[]).includes(req.drill)) throw new DrillRefusedError(`unknown drill "${req.drill}" (known: ${DRILLS.join(', ')})`);
    if (this.active) throw new DrillRefusedError(`drill ${this.active} is running: one drill at a time`);
    this.active = req.drill;
    try {
      return await runRedisFailoverDrill(this.deps, req, emit);
    } finally {
      this.active = undefined;
    }
  }
}
