import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { kbV1 } from '../proto/index.js';
import { InputError, errorMessage } from '../shared/errors/index.js';
import type { ImageResolver } from './images/resolve.js';
import { MODULES } from './modules/index.js';
import type { PlanInputs } from './modules/types.js';
import { computeDesired } from './planner.js';
import { encodeRevision } from './store/codec.js';

/** Pins every image to a placeholder digest: planning at start asks no registry. */
const NO_REGISTRY: ImageResolver = { resolve: async (ref) => `${ref}@sha256:${'0'.repeat(64)}` };

export interface PlanAtStartResult {
  module: string;
  nodes: number;
  /** Size of the module's revision as the store would hold it (gzip-compressed when large). */
  revisionBytes?: number;
  error?: string;
}

/**
 * Plans every module that has hosts in the inventory once, as the coordinator starts, and
 * encodes each node's state as it would be sent and the revision as it would be stored;
 * nothing is stored or sent.
 *  - An operator learns at start, in the log, that a module cannot be planned from the
 *    current servers.tsv, versions.yaml and settings (with the file and line), not at the
 *    first rollout. Credentials are not looked at (the secret store may still be filling).
 *  - The first rollout after a start runs on compiled code: planning, hashing and encoding
 *    thousands of states (for the wire and for the store) in a cold process cost about a
 *    second more at 5,000 nodes (docs/benchmarks.md).
 */
export async function planAtStart(inputs: PlanInputs, log: Pick<Logger, 'info' | 'warn'>): Promise<PlanAtStartResult[]> {
  const t0 = performance.now();
  const encode = kbV1().AgentService.service.Session!.responseSerialize;
  const out: PlanAtStartResult[] = [];
  for (const def of MODULES) {
    if (def.hosts(inputs.inventory).length === 0) continue;
    try {
      const desired = await computeDesired(def, inputs, NO_REGISTRY);
      for (const state of Object.values(desired.states)) encode({ desired: state });
      const stored = encodeRevision({ module: def.name, revision: 0, createdMs: Date.now(), images: desired.images, states: desired.states, healthyMs: null, sourceRevision: null });
      out.push({ module: def.name, nodes: desired.order.length, revisionBytes: typeof stored === 'string' ? Buffer.byteLength(stored) : stored.length });
    } catch (err) {
      const error = err instanceof InputError ? err.message : errorMessage(err);
      out.push({ module: def.name, nodes: 0, error });
      log.warn({ module: def.name, err: error }, `module ${def.name} cannot be planned from the current inputs; a rollout of it will be refused until they are fixed`);
    }
  }
  const planned = out.filter((r) => !r.error);
  log.info({ modules: Object.fromEntries(planned.map((r) => [r.module, r.nodes])), revisionBytes: Object.fromEntries(planned.map((r) => [r.module, r.revisionBytes])), ms: Math.round(performance.now() - t0) },
    `inputs planned at start: ${planned.map((r) => `${r.module} on ${r.nodes} node${r.nodes === 1 ? '' : 's'}`).join(', ') || (out.length ? 'none' : 'no module has hosts in the inventory')}`);
  return out;
}
