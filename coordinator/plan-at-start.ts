import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import { kbV1 } from '../proto/index.js';
import { InputError, errorMessage } from '../shared/errors/index.js';
import type { ImageResolver } from './images/resolve.js';
import { findCredential } from '../shared/credentials/index.js';
import type { CoordinatorMessage, ModuleState } from '../proto/types.js';
import { MODULES } from './modules/index.js';
import type { PlanInputs, SecretVersions } from './modules/types.js';
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
 *    first rollout. With `secrets` (the secret store's versions: the embedded store, filled
 *    before this runs), the module's credentials are checked too, as a rollout checks them;
 *    without (etcd, where another replica may still be filling the store), they are not.
 *  - The first rollout after a start runs on compiled code: planning, hashing and encoding
 *    thousands of states (for the wire and for the store) in a cold process cost about a
 *    second more at 5,000 nodes (docs/benchmarks.md). With the credentials, the states have
 *    the shape a rollout's have (their references, and the values beside them on the wire,
 *    placeholders here: no secret is unsealed).
 */
export async function planAtStart(
  inputs: PlanInputs, log: Pick<Logger, 'info' | 'warn'>, secrets?: () => Promise<Readonly<Record<string, SecretVersions>>>,
): Promise<PlanAtStartResult[]> {
  const t0 = performance.now();
  const encode = kbV1().AgentService.service.Session!.responseSerialize;
  let versions: Readonly<Record<string, SecretVersions>> | undefined;
  try {
    versions = await secrets?.();
  } catch (err) {
    log.warn({ err: errorMessage(err) }, 'credentials not checked at start: the secret store could not be read');
  }
  const out: PlanAtStartResult[] = [];
  for (const def of MODULES) {
    if (def.hosts(inputs.inventory).length === 0) continue;
    try {
      const desired = await computeDesired(def, inputs, NO_REGISTRY, versions);
      for (const state of Object.values(desired.states)) encode(asSent(state));
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

/** The message a rollout sends with `state`: the values of the credentials it references beside it (placeholders). */
function asSent(state: ModuleState): CoordinatorMessage {
  const refs = state.secrets ?? [];
  if (!refs.length) return { desired: state };
  return {
    desired: state,
    secretValues: refs.map((r) => ({ name: r.name, version: r.version, vars: Object.fromEntries((findCredential(r.name)?.vars ?? []).map((v) => [v.name, 'x'.repeat(32)])) })),
  };
}
