import type { HealthCheck, ModuleState } from '../../proto/types.js';
import type { Logger } from '../../shared/log/index.js';
import type { Credentials } from '../credentials/index.js';
import type { ContainerDriver, ManagedContainer } from '../driver/types.js';

/** What health checks need from the agent. */
export interface HealthContext {
  node: string;
  driver: ContainerDriver;
  /** Same meaning as ReconcileContext.sharedEngine (engine names `${node}_${name}`). */
  sharedEngine: boolean;
  log: Logger;
  /** The master follower's state for a module (redis-follower checks); undefined when none runs. */
  follower?: (module: string) => Outcome | undefined;
  /** Read access to credentials files (checks whose password comes from one). */
  credentials?: Credentials;
}

/** Outcome of one check before it is named: `observed` says what was seen, in words an operator can act on. */
export interface Outcome { ok: boolean; observed: string }

/** Everything one check may look at; `containers` is this node's kb-managed containers of the module, listed once per run. */
export interface CheckInput {
  ctx: HealthContext;
  state: ModuleState;
  check: HealthCheck;
  containers: ManagedContainer[];
  /** Effective timeout (check.timeoutMs, or the default). */
  timeoutMs: number;
}

export type CheckFn = (input: CheckInput) => Promise<Outcome>;
