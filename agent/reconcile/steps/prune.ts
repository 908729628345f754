import { inStep } from '../errors.js';
import { dockerNameFor, ofModule, selectCurrent } from '../names.js';
import { record } from '../record.js';
import type { ManagedContainer } from '../../driver/types.js';
import type { ReconcileContext, ReconcileStep, StepRun } from '../types.js';
import type { ModuleState } from '../../../proto/types.js';

/** Seconds a container gets to stop gracefully before SIGKILL, on prune, replace and remove. */
export const STOP_TIMEOUT_S = 10;

/**
 * Containers of this node and `state.module` that are not wanted: their logical name is no
 * longer desired, or they duplicate the container chosen for a desired name (see
 * selectCurrent). Only kb-managed containers of `ctx.node` are ever candidates.
 */
export function unwanted(
  ctx: Pick<ReconcileContext, 'node' | 'sharedEngine'>, state: ModuleState, observed: readonly ManagedContainer[],
): { container: ManagedContainer; reason: string }[] {
  const mine = ofModule(observed, state.module).filter((c) => c.node === ctx.node);
  const keep = new Set<string>();
  for (const spec of state.containers) {
    const cur = selectCurrent(mine, spec.name, dockerNameFor(ctx, spec.name));
    if (cur) keep.add(cur.id);
  }
  const desired = new Set(state.containers.map((c) => c.name));
  return mine
    .filter((c) => !keep.has(c.id))
    .map((c) => ({ container: c, reason: desired.has(c.logicalName) ? ` (duplicate ${c.dockerName})` : '' }));
}

/** Stops (gracefully) and removes one container; records `remove <logicalName>`. */
export async function stopAndRemove(r: StepRun, step: string, c: ManagedContainer, reason = ''): Promise<void> {
  await inStep(step, `container ${c.logicalName || c.dockerName}`, r.state.module, r.ctx.node, async () => {
    await r.ctx.driver.stop(c.id, STOP_TIMEOUT_S);
    await r.ctx.driver.remove(c.id);
  });
  record(r, step, `remove ${c.logicalName || c.dockerName}${reason}`);
}

/**
 * Step 3: prune. Removes this module's containers that are no longer desired, before the
 * containers step creates new ones: with host networking a renamed container would
 * otherwise fight its predecessor for the same ports. Runs after the images step so that a
 * failed pull never leaves the node with fewer containers.
 */
export const pruneStep: ReconcileStep = {
  name: 'prune',
  async run(r: StepRun): Promise<void> {
    const { ctx, state } = r;
    const observed = await inStep('prune', '', state.module, ctx.node, () => ctx.driver.list(ctx.node));
    for (const { container, reason } of unwanted(ctx, state, observed)) {
      await stopAndRemove(r, 'prune', container, reason);
    }
  },
};
