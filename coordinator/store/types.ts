import type { CheckResult, ContainerStatus, ModuleState, NodeFacts } from '../../proto/types.js';

/**
 * The coordinator's durable state. Two backends implement it: SqliteStore (embedded, the
 * default for one coordinator, ADR 0003) and EtcdStore (several coordinator replicas,
 * ADR 0006). Every method is async so both fit. Guarantees every backend gives (the
 * conformance suite in test/helpers/store-conformance.ts checks each one):
 *  - a write that resolved is durable (survives kill -9 of the coordinator);
 *  - `appendEvent` ids are strictly increasing per store, and listEvents returns a
 *    rollout's events in id order;
 *  - records come back as they were written (deep copies, never shared objects);
 *  - `putRevision` of an existing (module, revision) throws RevisionExistsError and
 *    changes nothing;
 *  - a store that cannot be reached throws StoreUnavailableError; a guarded write whose
 *    writer lost its right to write throws FencedWriteError (./errors.ts).
 */
export interface Store {
  upsertNode(n: NodeRecord): Promise<void>;
  getNode(name: string): Promise<NodeRecord | undefined>;
  listNodes(): Promise<NodeRecord[]>;

  /** What a node reported for a module (applied revision, health). */
  putNodeModule(r: NodeModuleRecord): Promise<void>;
  listNodeModules(filter?: { node?: string; module?: string }): Promise<NodeModuleRecord[]>;

  /** What the coordinator assigned to a node for a module (sent or about to be sent). */
  putAssignment(a: AssignmentRecord): Promise<void>;
  listAssignments(filter?: { node?: string; module?: string }): Promise<AssignmentRecord[]>;
  deleteAssignment(node: string, module: string): Promise<void>;

  /** Revisions are immutable once written; numbers increase by one per module. */
  putRevision(r: RevisionRecord): Promise<void>;
  getRevision(module: string, revision: number): Promise<RevisionRecord | undefined>;
  latestRevision(module: string): Promise<RevisionRecord | undefined>;
  listRevisions(module: string): Promise<RevisionRecord[]>;
  markRevisionHealthy(module: string, revision: number, atMs: number): Promise<void>;

  putRollout(r: RolloutRecord): Promise<void>;
  getRollout(id: string): Promise<RolloutRecord | undefined>;
  listRollouts(filter?: { module?: string; state?: RolloutState }): Promise<RolloutRecord[]>;

  appendEvent(e: Omit<EventRecord, 'id'>): Promise<EventRecord>;
  listEvents(rolloutId: string): Promise<EventRecord[]>;

  close(): Promise<void>;
}

export interface NodeRecord {
  name: string;
  agentVersion: string;
  firstSeenMs: number;
  lastSeenMs: number;
  facts: NodeFacts | null;
  /** The node's managed containers as last reported (written when they change). */
  containers?: ContainerStatus[];
}

export interface NodeModuleRecord {
  node: string;
  module: string;
  revision: number;
  specHash: string;
  healthy: boolean;
  converged: boolean;
  checks: CheckResult[];
  updatedMs: number;
}

export interface AssignmentRecord {
  node: string;
  module: string;
  revision: number;
  specHash: string;
  assignedMs: number;
}

export interface RevisionRecord {
  module: string;
  revision: number;
  createdMs: number;
  /** Logical image -> pinned reference (repo:tag@sha256:...). Same for every node. */
  images: Record<string, string>;
  /** Per-node desired state at this revision. */
  states: Record<string, ModuleState>;
  /** Set when a rollout of this revision ended with every node healthy. */
  healthyMs: number | null;
  /** For `rollout undo`: the revision whose states this one copies. */
  sourceRevision: number | null;
}

/**
 *   running ──> succeeded
 *      │
 *      └──────> failed      (paused: remaining nodes untouched; a new rollout supersedes it)
 */
export type RolloutState = 'running' | 'succeeded' | 'failed';

/**
 *   pending ──> applying ──> verifying ──> healthy
 *                  │             │
 *                  └─────────────┴──────> failed
 */
export type RolloutNodePhase = 'pending' | 'applying' | 'verifying' | 'healthy' | 'failed';

export interface RolloutNodeRecord {
  node: string;
  phase: RolloutNodePhase;
  error: string;
}

export interface RolloutRecord {
  id: string;
  module: string;
  revision: number;
  fromRevision: number;
  state: RolloutState;
  maxParallel: number;
  healthyDeadlineMs: number;
  minHealthyTimeMs: number;
  nodes: RolloutNodeRecord[];
  error: string;
  failedNode: string;
  failedCheck: string;
  observed: string;
  createdMs: number;
  updatedMs: number;
}

export interface EventRecord {
  id: number;
  rolloutId: string;
  atMs: number;
  node: string;
  kind: EventKind;
  message: string;
  check: string;
  observed: string;
  revision: number;
}

/**
 * Event kinds in a rollout's log:
 *  rollout-start, rollout-resume, rollout-succeeded, rollout-failed, rollout-noop,
 *  node-apply (desired state sent), node-applied (agent applied it: message says changed or not),
 *  node-progress (agent step), node-verifying, node-healthy, node-unhealthy (a gate check failed,
 *  still within deadline), node-failed.
 */
export type EventKind =
  | 'rollout-start' | 'rollout-resume' | 'rollout-succeeded' | 'rollout-failed' | 'rollout-noop'
  | 'node-apply' | 'node-applied' | 'node-progress' | 'node-verifying' | 'node-healthy' | 'node-unhealthy' | 'node-failed';
