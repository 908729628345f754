import type { CheckResult, ContainerStatus, ModuleState, NodeFacts } from '../../proto/types.js';

/**
 * The coordinator's durable state. Two backends implement it: SqliteStore (embedded, the
 * default for one coordinator, ADR 0003) and EtcdStore (several coordinator replicas,
 * ADR 0010). Every method is async so both fit. Guarantees every backend gives (the
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
  /** The number of the module's latest revision, without reading the revision itself (megabytes at thousands of nodes). */
  latestRevisionNumber(module: string): Promise<number | undefined>;
  listRevisions(module: string): Promise<RevisionRecord[]>;
  markRevisionHealthy(module: string, revision: number, atMs: number): Promise<void>;

  putRollout(r: RolloutRecord): Promise<void>;
  getRollout(id: string): Promise<RolloutRecord | undefined>;
  listRollouts(filter?: { module?: string; state?: RolloutState }): Promise<RolloutRecord[]>;
  /**
   * The module's latest rollout (greatest createdMs, then id), reading no other rollout's
   * document: a fleet keeps every rollout, and at thousands of nodes each is hundreds of
   * kilobytes (`kbctl rollout status`, polled every 500 ms while a rollout is followed).
   */
  latestRollout(module: string): Promise<RolloutRecord | undefined>;

  appendEvent(e: Omit<EventRecord, 'id'>): Promise<EventRecord>;
  listEvents(rolloutId: string): Promise<EventRecord[]>;

  /** Join tokens (secrets stored hashed). A revoked token is kept, marked, so refusals can say so. */
  putToken(t: TokenRecord): Promise<void>;
  getToken(id: string): Promise<TokenRecord | undefined>;
  listTokens(): Promise<TokenRecord[]>;

  /** The certificate each node may use now (one current serial per node). */
  putNodeIdentity(r: NodeIdentityRecord): Promise<void>;
  getNodeIdentity(node: string): Promise<NodeIdentityRecord | undefined>;
  listNodeIdentities(): Promise<NodeIdentityRecord[]>;

  /**
   * Secret versions are immutable and hold values only in sealed (encrypted) form; writing
   * an existing (name, version) throws. See coordinator/secrets.
   */
  putSecretVersion(r: SecretVersionRecord): Promise<void>;
  listSecretVersions(name?: string): Promise<SecretVersionRecord[]>;
  /** The mutable per-secret state (active version, accepted versions, rotation). */
  putSecretState(r: SecretStateRecord): Promise<void>;
  getSecretState(name: string): Promise<SecretStateRecord | undefined>;
  listSecretStates(): Promise<SecretStateRecord[]>;

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
 *  batch-apply (desired state sent to every node of a batch wider than the engine's WIDE_BATCH,
 *  instead of one node-apply each), node-apply (desired state sent), node-applied (agent applied it: message says changed or not),
 *  node-progress (agent step), node-verifying, node-healthy, node-unhealthy (a gate check failed,
 *  still within deadline), node-failed.
 */
export type EventKind =
  | 'rollout-start' | 'rollout-resume' | 'rollout-succeeded' | 'rollout-failed' | 'rollout-noop'
  | 'batch-apply' | 'node-apply' | 'node-applied' | 'node-progress' | 'node-verifying' | 'node-healthy' | 'node-unhealthy' | 'node-failed';

/** A join token. `secretHash` is sha256 of the secret; the secret itself is never stored. */
export interface TokenRecord {
  id: string;
  secretHash: string;
  createdMs: number;
  expiresMs: number;
  /** How many enrollments it allows, and how many it was used for. */
  uses: number;
  used: number;
  /** When set, only this node may enroll with it. */
  node: string;
  description: string;
  revokedMs: number | null;
  /** Nodes that enrolled with it, in order. */
  usedBy: string[];
}

/**
 * A node's current certificate. Sessions are accepted only from `serial`, or from
 * `renewedFrom` (the certificate this one renewed, until it expires: a renewal whose answer
 * was lost must not lock the node out). Enrolling again (re-provisioning) replaces both, so
 * the old certificate is revoked.
 */
export interface NodeIdentityRecord {
  node: string;
  serial: string;
  notAfterMs: number;
  issuedMs: number;
  renewedFrom: { serial: string; notAfterMs: number } | null;
  /** How the current line of certificates started: token id and source address of the enrollment. */
  enrolledMs: number;
  tokenId: string;
  source: string;
}

/** How a secret version came to be. */
export type SecretSource = 'generated' | 'imported' | 'rotated';

/** One version of one credentials file. Never holds a value in plain form. */
export interface SecretVersionRecord {
  name: string;
  version: number;
  createdMs: number;
  source: SecretSource;
  /** Variable names, in file order (names are not secret). */
  varNames: string[];
  /** AES-256-GCM sealed JSON of the variables (see coordinator/secrets/crypto.ts). */
  sealed: string;
  /** Identifies the key that sealed it (first bytes of SHA-256 of the key). */
  keyId: string;
}

/**
 * Rotation of one secret from version `from` to `to`, driven phase by phase through the
 * rollout engine:
 *
 *   accept ──> switch ──> retire ──> (done: state succeeded)
 *      └──────────┴──────────┴─────> failed (paused in that phase; `kbctl secrets rotate` resumes it)
 *
 *  - accept: servers accept both versions, consumers still use `from`;
 *  - switch: every consumer moves to `to` (servers still accept both);
 *  - retire: servers accept only `to`.
 */
export type RotationPhase = 'accept' | 'switch' | 'retire';

export interface RotationRecord {
  from: number;
  to: number;
  phase: RotationPhase;
  state: 'running' | 'succeeded' | 'failed';
  error: string;
  /** Rollout ids started by this rotation, in order. */
  rollouts: string[];
  /** Gates of its rollouts (kept so that a resume after a coordinator restart uses the same). */
  options?: { maxParallel?: number; healthyDeadlineMs?: number; minHealthyTimeMs?: number };
  startedMs: number;
  updatedMs: number;
}

export interface SecretStateRecord {
  name: string;
  /** The version consumers use (written to <name>.env). */
  active: number;
  /** Versions servers accept (one, or two during a rotation). */
  accepted: number[];
  /** The latest rotation, if any. */
  rotation: RotationRecord | null;
  updatedMs: number;
}
