import type { ContainerSpec } from '../../proto/types.js';

/**
 * The agent's only view of a container engine, kept as narrow as Nomad's task drivers:
 * everything the reconcile steps and health checks need, nothing they don't. The real
 * implementation is {@link DockerDriver} (./docker.ts); unit tests use an in-memory fake.
 *
 * Guarantees every implementation gives:
 *  - It only ever reports, changes or removes containers carrying the label
 *    `kb.managed=true` (see {@link LABELS}); containers created by anyone else are invisible
 *    to `list`/`inspect`/`events` and are never stopped or removed. `create` refuses to take
 *    a name such a container holds.
 *  - Methods are safe to call concurrently; the engine serializes conflicting operations.
 *  - Failures of the engine are thrown as `DriverError` (./errors.ts) whose message says what
 *    failed and on which node: `pull <ref> on <node>: <engine message>`. Policy refusals
 *    (unpinned image, name taken by a foreign container) are thrown as `ApplyError`.
 */
export interface ContainerDriver {
  /** Checks that the engine answers; returns its version (e.g. "20.10.24+dfsg1"). */
  ping(): Promise<{ version: string }>;

  /**
   * Makes the image `ref` present locally. `ref` must be pinned by digest
   * (`repo:tag@sha256:<hex>` or `repo@sha256:<hex>`), otherwise `ApplyError`
   * "image <ref> is not pinned by digest" is thrown before the engine is contacted.
   * The image is looked up as `repo@sha256:<hex>` and pulled by that digest only when
   * missing, so a moved tag can never change what runs. Idempotent; `pulled` says whether a
   * pull happened. `onProgress` receives one line per layer status change while pulling.
   */
  ensureImage(ref: string, onProgress?: (msg: string) => void): Promise<{ imageId: string; pulled: boolean }>;

  /** Every kb-managed container of `node` (labels kb.managed=true and kb.node=<node>), in any state. */
  list(node: string): Promise<ManagedContainer[]>;

  /**
   * Creates (does not start) a kb-managed container named `dockerName` from `spec`, with the
   * kb labels (see {@link LABELS}; kb.spec-hash = containerSpecHash(spec)). Host directories
   * of volumes (`mapHostPath(hostPath)`) are created (mode 0755) when missing. The image must
   * already be present (see ensureImage). Throws `ApplyError` naming the holder when
   * `dockerName` is taken by any container (it never removes it: callers remove their own
   * container first).
   */
  create(params: CreateParams): Promise<string>;

  /** Starts a container; a no-op when it already runs. */
  start(id: string): Promise<void>;
  /** Stops a container (SIGTERM, then SIGKILL after `timeoutS`); a no-op when it is not running. */
  stop(id: string, timeoutS: number): Promise<void>;
  /**
   * Sends `signal` (e.g. "SIGKILL") to the container's main process. Through the engine API,
   * so Docker records the container as stopped by hand: its restart policy does not restart
   * it (Docker 20.10). Throws `DriverError` when it is not running.
   */
  kill(id: string, signal: string): Promise<void>;
  /** Freezes every process of the container (cgroup freezer); a no-op when already paused. */
  pause(id: string): Promise<void>;
  /** Thaws a paused container; a no-op when it is not paused. */
  unpause(id: string): Promise<void>;
  /** Removes a container and its anonymous volumes, running or not; a no-op when it is already gone. */
  remove(id: string): Promise<void>;
  /** The container if it exists and is kb-managed, otherwise undefined. */
  inspect(id: string): Promise<ManagedContainer | undefined>;
  /** The last `tail` lines of the container's stdout and stderr, interleaved as written. */
  logs(id: string, tail: number): Promise<string>;
  /**
   * Runs `cmd` in a running container and returns its exit code and combined stdout+stderr
   * (last 64 KiB at most). Throws `DriverError` when it has not exited after `timeoutMs`
   * (the process may keep running inside the container: the engine cannot kill an exec).
   */
  exec(id: string, cmd: string[], timeoutMs: number): Promise<ExecResult>;
  /**
   * Subscribes to die/stop/start/destroy events of kb-managed containers (only those of
   * `node` when given). The subscription survives engine restarts and dropped streams: it
   * reconnects (with `since` = last event seen, so delivery is at-least-once) until the
   * returned function is called. `onEvent` must not throw.
   */
  events(onEvent: (e: DriverEvent) => void, node?: string): () => void;
}

/**
 * Engine-reported state of a container (Docker's `State.Status`):
 *
 *   created --start--> running --die/stop--> exited --start--> running
 *                        |  ^                   |
 *                 pause  v  | unpause           +--remove--> (gone)
 *                      paused
 *   restarting: between a die and the restart its restart policy asked for.
 *   removing: being removed.  dead: removal failed half-way; it can only be removed.
 */
export type ContainerState = 'running' | 'exited' | 'created' | 'restarting' | 'paused' | 'dead' | 'removing';

/** A kb-managed container as the engine reports it; everything kb-specific comes from its labels. */
export interface ManagedContainer {
  id: string;
  /** Engine name without the leading slash. */
  dockerName: string;
  node: string;
  module: string;
  /** `ContainerSpec.name` (label kb.container). */
  logicalName: string;
  /** containerSpecHash of the spec it was created from (label kb.spec-hash). */
  specHash: string;
  /** Module revision it was created for (label kb.revision; 0 when unreadable). */
  revision: number;
  state: ContainerState;
  /** The pinned ref it was created from (label kb.image). */
  image: string;
  /** Engine image id (`sha256:...`). */
  imageId: string;
  /** Engine StartedAt (RFC 3339) of the last start; set by `inspect` only (`list` leaves it undefined). */
  startedAt?: string;
}

export interface CreateParams {
  dockerName: string;
  node: string;
  module: string;
  revision: number;
  spec: ContainerSpec;
  /** Maps a volume's host path to the real path to bind (identity in production, a temp root in tests). */
  mapHostPath: (p: string) => string;
}

export interface ExecResult { exitCode: number; output: string }

export interface DriverEvent {
  id: string;
  /** Engine action: 'die' | 'stop' | 'start' | 'destroy'. */
  action: string;
  node?: string;
  module?: string;
  /** Logical container name (label kb.container). */
  container?: string;
}

/** Labels kb puts on every container it creates. */
export const LABELS = {
  managed: 'kb.managed',
  node: 'kb.node',
  module: 'kb.module',
  container: 'kb.container',
  revision: 'kb.revision',
  specHash: 'kb.spec-hash',
  image: 'kb.image',
} as const;

const STATES: readonly ContainerState[] = ['running', 'exited', 'created', 'restarting', 'paused', 'dead', 'removing'];

/** Narrows an engine state string; unknown values map to 'dead' (unusable, only removable). */
export function toContainerState(s: string | undefined): ContainerState {
  return STATES.includes(s as ContainerState) ? (s as ContainerState) : 'dead';
}
