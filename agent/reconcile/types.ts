import type { ModuleState } from '../../proto/types.js';
import type { Logger } from '../../shared/log/index.js';
import type { Credentials, SecretValues } from '../credentials/index.js';
import type { ContainerDriver } from '../driver/types.js';

/** What the reconcile functions need; built once by the agent, shared by every call. */
export interface ReconcileContext {
  /** This node's name (label kb.node of every container it owns). */
  node: string;
  driver: ContainerDriver;
  /**
   * Directory every host path (FileSpec.path, VolumeMount.hostPath) is joined under:
   * '/' in production, a temp dir in tests. Paths must be absolute and free of '..'.
   */
  hostRoot: string;
  /**
   * True when several agents share one engine (tests, demos): the engine name of a container
   * is `${node}_${logicalName}` instead of `logicalName`, so that nodes never collide.
   */
  sharedEngine: boolean;
  log: Logger;
  /** Called for every action taken and every image pull progress line. Must not throw. */
  onProgress?: (step: string, message: string) => void;
  /**
   * True while a drill holds a container stopped, killed or paused (agent/actions.ts): the
   * containers step then neither starts, creates nor replaces it. Undefined: nothing is held.
   */
  isHeld?: (module: string, container: string) => boolean;
  /** Test-only pause points (see agent/testing/pause.ts); undefined in production paths. */
  pause?: (point: string) => Promise<void>;
  /** The credentials directory (absent: a state with credentials fails to apply). */
  credentials?: Credentials;
  /**
   * Secret values delivered with the state being applied, by `name@version`. Only set for
   * that one call: the agent never keeps values anywhere but in the credentials files.
   */
  secretValues?: SecretValues;
  /** Called when a credentials file must be (re)written but its values are not held. Must not throw. */
  onSecretsMissing?: (state: ModuleState, reason: string) => void;
}

export interface ReconcileResult {
  /** False when the call found everything as desired and did nothing. */
  changed: boolean;
  /**
   * What was done, in order, one short line each:
   * 'write /opt/keybuzz/x.conf', 'chmod 0600 /opt/…', 'pull <repo>@sha256:…', 'create redis',
   * 'replace redis (spec changed)', 'start redis', 'remove redis-old'.
   */
  actions: string[];
}

/** The state one reconcile call threads through its steps. */
export interface StepRun {
  readonly ctx: ReconcileContext;
  readonly state: ModuleState;
  /** Appended to by steps, in order; see {@link ReconcileResult.actions}. */
  readonly actions: string[];
}

/**
 * One ordered step of applying a module (Nomad task-runner hook style). A step is
 * idempotent: run against a node already in the desired state it changes nothing and adds
 * no action. It throws `StepError` (an `ApplyError`) naming itself, the container or file,
 * and the node; steps after a failing one do not run.
 */
export interface ReconcileStep {
  readonly name: string;
  run(r: StepRun): Promise<void>;
}
