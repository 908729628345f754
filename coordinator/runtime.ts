import type { Logger } from 'pino';
import type { CoordinatorDrillRequest, CoordinatorDrillResponse, CoordinatorStatusResponse } from '../proto/types.js';
import { KbError } from '../shared/errors/index.js';
import { KB_VERSION } from '../shared/version.js';
import type { ImageResolver } from './images/resolve.js';
import type { PlanInputs } from './modules/types.js';
import { RolloutEngine, RolloutError, type EngineDeps } from './rollout/engine.js';
import type { SessionDirectory, SessionRegistry } from './sessions.js';
import type { Store } from './store/types.js';

/**
 * Thrown by a replica that is not the leader when asked to do what only the leader does
 * (start a rollout). Carries the leader's address when one is known, which the
 * ControlService returns as the `kb-leader` trailer for kbctl to follow.
 */
export class NotLeaderError extends KbError {
  override name = 'NotLeaderError';
  constructor(message: string, readonly leaderAddress: string | undefined) {
    super(message);
  }
}

/** Who this coordinator process is. */
export interface CoordinatorIdentity {
  name: string;
  /** HOST:PORT other replicas, agents and kbctl reach this process at. */
  address: string;
}

/** What the gRPC services need from the coordinator, whether it runs alone or as one replica of several. */
export interface CoordinatorRuntime {
  /** Reads, and the writes agent sessions cause (nodes, node health). */
  readonly store: Store;
  /** The nodes' sessions as this process sees them. */
  readonly directory: SessionDirectory;
  /** The rollout engine, if this process may drive rollouts now; else throws NotLeaderError or StoreUnavailableError. */
  engine(): RolloutEngine;
  /** Why agents must not open a session here now, or undefined when they may. */
  refuseAgents(): string | undefined;
  status(): Promise<CoordinatorStatusResponse>;
  drill(req: CoordinatorDrillRequest): Promise<CoordinatorDrillResponse>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

export interface RuntimeDeps {
  identity: CoordinatorIdentity;
  sessions: SessionRegistry;
  resolver: ImageResolver;
  inputs: () => PlanInputs;
  log: Logger;
  /** The secret store, for the engine (plans with credentials, states delivered with their values). */
  secrets?: EngineDeps['secrets'];
  /** Runs after the engine resumed its running rollouts (at start, or when a replica becomes leader): resumes rotations. */
  afterResume?: () => Promise<void>;
}

/**
 * One coordinator on the embedded SQLite store (the default): always the leader, the
 * engine resumes running rollouts at start-up and sends desired states on its own sessions.
 */
export class SingleRuntime implements CoordinatorRuntime {
  readonly directory: SessionDirectory;
  private readonly rollouts: RolloutEngine;
  private readonly startedMs = Date.now();

  constructor(readonly store: Store, private readonly deps: RuntimeDeps) {
    this.directory = deps.sessions;
    this.rollouts = new RolloutEngine({
      store, sessions: deps.sessions, resolver: deps.resolver, log: deps.log, inputs: deps.inputs, secrets: deps.secrets,
      deliver: (node, message) => deps.sessions.get(node)?.send(message),
    });
  }

  engine(): RolloutEngine {
    return this.rollouts;
  }

  refuseAgents(): string | undefined {
    return undefined;
  }

  async status(): Promise<CoordinatorStatusResponse> {
    const { name, address } = this.deps.identity;
    return {
      id: name, name, address, role: 'single', store: 'sqlite', storeOk: true, storeError: '',
      leaderId: name, leaderName: name, leaderAddress: address, term: 0, leaderSinceMs: this.startedMs, steppedDownMs: 0,
      lastLeaderWriteRevision: 0, refusedWrites: 0, leaseTtlMs: 0, pid: process.pid, version: KB_VERSION,
      replicas: [{ id: name, name, address, leader: true, startedMs: this.startedMs, pid: process.pid }],
      sessions: this.deps.sessions.all().length,
    };
  }

  async drill(): Promise<CoordinatorDrillResponse> {
    throw new RolloutError('a coordinator failover drill needs several coordinator replicas on etcd (kb-coordinator run --store etcd://...); this coordinator runs alone on SQLite');
  }

  async start(): Promise<void> {
    await this.rollouts.resumeAll();
    await this.deps.afterResume?.();
  }

  async stop(): Promise<void> {
    await this.rollouts.stop();
    await this.store.close();
  }
}
