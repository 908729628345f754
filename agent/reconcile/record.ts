import type { StepRun } from './types.js';

/** Records an action taken by `step`: appended to the result, logged, reported as progress. */
export function record(r: StepRun, step: string, action: string): void {
  r.actions.push(action);
  r.ctx.log.info({ node: r.ctx.node, module: r.state.module, step, action }, 'reconcile action');
  r.ctx.onProgress?.(step, action);
}
