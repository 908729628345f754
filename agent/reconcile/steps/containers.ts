import type { ContainerSpec } from '../../../proto/types.js';
import { containerSpecHash } from '../../../shared/plan/hash.js';
import type { ManagedContainer } from '../../driver/types.js';
import { inStep } from '../errors.js';
import { byOrder, dockerNameFor, hostPathFor, ofModule, selectCurrent } from '../names.js';
import { record } from '../record.js';
import type { ReconcileContext, ReconcileStep, StepRun } from '../types.js';
import { STOP_TIMEOUT_S } from './prune.js';

/**
 * What one desired container needs:
 *  - keep: it exists with the same spec hash and engine name and is running (or
 *    restarting / paused: the restart policy or an operator is acting on it);
 *  - start: it exists and is up to date but is `created` or `exited`;
 *  - create: it does not exist;
 *  - replace: it exists but its spec hash or engine name differs, or it is dead/removing.
 */
export type ContainerAction =
  | { kind: 'keep'; current: ManagedContainer }
  | { kind: 'start'; current: ManagedContainer }
  | { kind: 'create' }
  | { kind: 'replace'; current: ManagedContainer; reason: string };

/** Pure decision for one desired container given the one that stands for it (if any). */
export function decide(
  ctx: Pick<ReconcileContext, 'node' | 'sharedEngine'>, spec: ContainerSpec, current: ManagedContainer | undefined,
): ContainerAction {
  if (!current) return { kind: 'create' };
  if (current.specHash !== containerSpecHash(spec)) return { kind: 'replace', current, reason: 'spec changed' };
  if (current.dockerName !== dockerNameFor(ctx, spec.name)) return { kind: 'replace', current, reason: 'name changed' };
  if (current.state === 'dead' || current.state === 'removing') return { kind: 'replace', current, reason: current.state };
  if (current.state === 'created' || current.state === 'exited') return { kind: 'start', current };
  return { kind: 'keep', current };
}

/**
 * Step 4: containers. Handles the desired containers one at a time in ascending `order`
 * (a later container may depend on an earlier one): create+start a missing one; stop
 * (10 s grace), remove, create and start one whose spec changed; start one that is
 * stopped. Leaves up-to-date running containers alone (same id, no restart), and leaves a
 * container held by a drill (ctx.isHeld) exactly as it is.
 */
export const containersStep: ReconcileStep = {
  name: 'containers',
  async run(r: StepRun): Promise<void> {
    const { ctx, state } = r;
    const observed = ofModule(
      await inStep('containers', '', state.module, ctx.node, () => ctx.driver.list(ctx.node)),
      state.module,
    );
    for (const spec of byOrder(state.containers)) {
      const dockerName = dockerNameFor(ctx, spec.name);
      const action = decide(ctx, spec, selectCurrent(observed, spec.name, dockerName));
      if (action.kind === 'keep') continue;
      if (ctx.isHeld?.(state.module, spec.name)) {
        ctx.log.debug({ node: ctx.node, module: state.module, container: spec.name, action: action.kind }, 'container held by a drill: left as it is');
        continue;
      }
      await inStep('containers', `container ${spec.name}`, state.module, ctx.node, async () => {
        const create = async (): Promise<void> => {
          const id = await ctx.driver.create({
            dockerName, node: ctx.node, module: state.module, revision: state.revision, spec,
            mapHostPath: (p) => hostPathFor(ctx, p),
          });
          await ctx.driver.start(id);
        };
        switch (action.kind) {
          case 'start':
            await ctx.driver.start(action.current.id);
            record(r, 'containers', `start ${spec.name}`);
            break;
          case 'create':
            await create();
            record(r, 'containers', `create ${spec.name}`);
            break;
          case 'replace':
            await ctx.driver.stop(action.current.id, STOP_TIMEOUT_S);
            await ctx.driver.remove(action.current.id);
            await ctx.pause?.('container-removed');
            await create();
            record(r, 'containers', `replace ${spec.name} (${action.reason})`);
            break;
        }
      });
    }
  },
};
