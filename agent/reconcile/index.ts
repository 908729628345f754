import type { ContainerStatus, ModuleState } from '../../proto/types.js';
import { desiredCredentialFiles } from '../credentials/index.js';
import { inStep } from './errors.js';
import type { ManagedContainer } from '../driver/types.js';
import { withLock } from './lock.js';
import { byOrder, dockerNameFor, ofModule, selectCurrent } from './names.js';
import { containersStep, decide } from './steps/containers.js';
import { credentialsStep } from './steps/credentials.js';
import { fileDrift, filesStep } from './steps/files.js';
import { imagesStep } from './steps/images.js';
import { pruneStep, stopAndRemove, unwanted } from './steps/prune.js';
import type { ReconcileContext, ReconcileResult, ReconcileStep, StepRun } from './types.js';

export type { ReconcileContext, ReconcileResult, ReconcileStep, StepRun } from './types.js';
export { StepError } from './errors.js';
export { dockerNameFor, hostPathFor } from './names.js';

/**
 * The steps of applying one module, in the order they run:
 *
 *   credentials -> files -> images -> prune -> containers
 *
 * Credentials and files come first because containers read them at start; images are all present before
 * anything is stopped; undesired containers go before new ones take their ports.
 */
export const STEPS: readonly ReconcileStep[] = [credentialsStep, filesStep, imagesStep, pruneStep, containersStep];

/**
 * Brings this node's files and containers of `state.module` to `state`.
 *
 * - Idempotent: a second call with the same state does nothing and returns changed=false
 *   (running, up-to-date containers keep their id and are not restarted).
 * - Containers are handled in ascending `order`.
 * - Only kb-managed containers of `ctx.node` and this module are ever stopped or removed.
 * - Calls for the same node and module are serialized (a second call waits for the first);
 *   different modules proceed concurrently.
 * - On failure it throws `StepError` (an `ApplyError`) naming the step, the container or
 *   file, the module and the node; work done by earlier steps stays done, and calling again
 *   resumes from there.
 */
export function reconcileModule(ctx: ReconcileContext, state: ModuleState): Promise<ReconcileResult> {
  return withLock(`${ctx.node}\u0000${state.module}`, async () => {
    const run: StepRun = { ctx, state, actions: [] };
    const started = Date.now();
    for (const step of STEPS) await step.run(run);
    ctx.log.debug({ node: ctx.node, module: state.module, revision: state.revision, ms: Date.now() - started, actions: run.actions.length }, 'reconciled');
    return { changed: run.actions.length > 0, actions: run.actions };
  });
}

/**
 * Stops (10 s grace) and removes every kb-managed container of `module` on this node, in
 * any state. Files and volume data are left in place. Idempotent; serialized with
 * reconcileModule calls for the same module.
 */
export function removeModule(ctx: ReconcileContext, module: string): Promise<ReconcileResult> {
  return withLock(`${ctx.node}\u0000${module}`, async () => {
    const run: StepRun = { ctx, state: { module, revision: 0, specHash: '', containers: [], files: [], healthChecks: [] }, actions: [] };
    const observed = await inStep('remove', '', module, ctx.node, () => ctx.driver.list(ctx.node));
    for (const c of ofModule(observed, module).filter((x) => x.node === ctx.node)) {
      await stopAndRemove(run, 'remove', c);
    }
    return { changed: run.actions.length > 0, actions: run.actions };
  });
}

/**
 * One status per desired container of `states` (in module order, then container order):
 * what the engine reports for it now, or state 'missing' (id, image and imageId empty)
 * when it does not exist. `image` is the pinned ref the container was created from;
 * `startedAt` (engine StartedAt) changes whenever the container restarts, which is how a
 * stop that was repaired in between is still seen. Reads only: one list call, one inspect
 * per existing container.
 */
export async function containerStatuses(ctx: ReconcileContext, states: ModuleState[], listed?: readonly ManagedContainer[]): Promise<ContainerStatus[]> {
  const observed = listed ?? await ctx.driver.list(ctx.node);
  const out: ContainerStatus[] = [];
  for (const state of states) {
    const mine = ofModule(observed, state.module);
    for (const spec of byOrder(state.containers)) {
      const cur = selectCurrent(mine, spec.name, dockerNameFor(ctx, spec.name));
      const startedAt = cur ? ((await ctx.driver.inspect(cur.id).catch(() => undefined))?.startedAt ?? '') : '';
      out.push(cur
        ? { module: state.module, name: spec.name, id: cur.id, state: cur.state, image: cur.image, imageId: cur.imageId, startedAt }
        : { module: state.module, name: spec.name, id: '', state: 'missing', image: '', imageId: '', startedAt: '' });
    }
  }
  return out;
}

/**
 * True when the node matches `state` and every container of it runs: every file has its
 * content and mode, every desired container exists with its spec hash and engine name in
 * state 'running', no undesired or duplicate container of the module is left, and every
 * credentials file is at its wanted version, mode and owner. Reads only.
 * (A reconcileModule call would then do nothing, apart from re-checking images.)
 */
export async function isConverged(ctx: ReconcileContext, state: ModuleState, listed?: readonly ManagedContainer[]): Promise<boolean> {
  const wanted = desiredCredentialFiles(state);
  if (wanted.length) {
    if (!ctx.credentials) return false;
    for (const f of wanted) if ((await ctx.credentials.drift(f)).drift !== 'none') return false;
  }
  for (const f of state.files) {
    if ((await fileDrift(ctx, f)) !== 'none') return false;
  }
  const observed = listed ?? await ctx.driver.list(ctx.node);
  const mine = ofModule(observed, state.module);
  if (unwanted(ctx, state, mine).length > 0) return false;
  return state.containers.every((spec) => {
    const cur = selectCurrent(mine, spec.name, dockerNameFor(ctx, spec.name));
    return cur?.state === 'running' && decide(ctx, spec, cur).kind === 'keep';
  });
}
