import type { Logger } from 'pino';
import type { IKeyValue, IRequestOp } from 'etcd3';
import type { CoordinatorMessage, ModuleState } from '../../proto/types.js';
import { errorMessage } from '../../shared/errors/index.js';
import type { AgentSession, SessionRegistry } from '../sessions.js';
import { decodeRecord, encodeRecord } from '../store/codec.js';
import type { EtcdConnection, WriteGuard } from '../store/etcd.js';
import { RevisionReader } from '../store/revision-reader.js';
import type { AssignmentRecord, Store } from '../store/types.js';
import { KEYS, type AgentEventRecord, type LiveSessionRecord, type ReplicaRecord } from './records.js';

export interface RelayDeps {
  conn: EtcdConnection;
  local: SessionRegistry;
  /** Reads revisions (to turn an assignment into the desired state it names). */
  store: Store;
  /** Fences this replica's writes by its own lease (see runtime.ts). */
  guard: WriteGuard;
  leaseId: string;
  self: ReplicaRecord;
  log: Logger;
  notReadyAfterMs: number;
  /** Builds the message carrying a desired state (with its secret values). Default: the state alone. */
  message?: (state: ModuleState) => Promise<CoordinatorMessage>;
  /** Re-publish a session's last-seen time at least this often. Default 10 000 ms. */
  refreshMs?: number;
}

/**
 * Connects this replica's agent sessions to the rest of the cluster through etcd:
 *  - up: each session's presence (LiveSessionRecord, re-published when its Ready verdict
 *    changes and every `refreshMs`), and each apply result and progress step
 *    (AgentEventRecord), all bound to this replica's lease so they vanish with it;
 *    health and facts travel as the Store's node and node-module records (agent-service);
 *  - down: when a node's assignment changes, the desired state it names is sent on the
 *    node's session here, if it is here. An assignment re-written with the same revision
 *    and spec (a new leader resuming) is not re-sent.
 * Writes for one node are serialized, so a session's records never land out of order.
 * Failed writes are logged, never thrown: a replica that cannot write loses its lease
 * and then its sessions (runtime.ts).
 */
export class Relay {
  private readonly published = new Map<string, { ready: boolean; atMs: number; connectedMs: number }>();
  private readonly chains = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly offs: (() => void)[] = [];
  /** One rollout puts thousands of assignments naming the same revision within seconds. */
  private readonly revisions: RevisionReader;

  constructor(private readonly deps: RelayDeps) {
    this.revisions = new RevisionReader(deps.store);
  }

  start(): void {
    const { local } = this.deps;
    const onConnected = (s: AgentSession) => this.publish(s);
    const onDisconnected = (s: AgentSession) => this.onDisconnected(s);
    const onResult = (node: string, result: AgentEventRecord['result']) => this.agentEvent({ replicaId: this.deps.self.id, node, atMs: Date.now(), result });
    const onProgress = (node: string, progress: AgentEventRecord['progress']) => this.agentEvent({ replicaId: this.deps.self.id, node, atMs: Date.now(), progress });
    local.on('connected', onConnected);
    local.on('disconnected', onDisconnected);
    local.on('result', onResult);
    local.on('progress', onProgress);
    this.offs.push(() => local.off('connected', onConnected), () => local.off('disconnected', onDisconnected), () => local.off('result', onResult), () => local.off('progress', onProgress));
    for (const s of local.all()) this.publish(s);
    this.timer = setInterval(() => this.refresh(), 1000);
  }

  /** Stops publishing. Records already written vanish with the lease. Safe to call twice. */
  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    for (const off of this.offs.splice(0)) off();
  }

  /** Called by the runtime's watch for every put of an assignment key (with the previous value). */
  onAssignment(kv: IKeyValue, prev: IKeyValue | undefined): void {
    if (this.stopped) return;
    const a = decodeRecord<AssignmentRecord>(kv.value.toString('utf8'));
    const before = prev?.value?.length ? decodeRecord<AssignmentRecord>(prev.value.toString('utf8')) : undefined;
    if (before && before.revision === a.revision && before.specHash === a.specHash) return;
    const session = this.deps.local.get(a.node);
    if (!session) return;
    this.revisions.get(a.module, a.revision).then(async (rev) => {
      const state = rev?.states[a.node];
      if (!state) {
        this.deps.log.error({ node: a.node, module: a.module, revision: a.revision }, 'assignment names a revision the store does not have');
        return;
      }
      const message = this.deps.message ? await this.deps.message(state) : { desired: state };
      if (session.closed) return;
      this.deps.log.info({ node: a.node, module: a.module, revision: a.revision }, 'sending desired state (new assignment)');
      session.send(message);
    }, (err: unknown) => this.deps.log.warn({ node: a.node, module: a.module, err: errorMessage(err) }, 'assignment not delivered: revision unreadable; the agent gets it when it reconnects'));
  }

  private key(kind: readonly string[], ...parts: string[]): Buffer {
    return this.deps.conn.key(...kind, ...parts);
  }

  private serial(node: string, fn: () => Promise<unknown>): void {
    const prev = this.chains.get(node) ?? Promise.resolve();
    const next = prev.then(fn).then(() => undefined, (err: unknown) => {
      if (!this.stopped) this.deps.log.warn({ node, err: errorMessage(err) }, 'session record not written');
    });
    this.chains.set(node, next);
    void next.then(() => {
      if (this.chains.get(node) === next) this.chains.delete(node);
    });
  }

  private write(ops: IRequestOp[]): Promise<unknown> {
    return this.deps.conn.txn({ success: ops }, this.deps.guard);
  }

  private publish(s: AgentSession): void {
    if (this.stopped) return;
    const now = Date.now();
    const ready = now - s.lastSeenMs <= this.deps.notReadyAfterMs;
    this.published.set(s.node, { ready, atMs: now, connectedMs: s.connectedMs });
    const { self } = this.deps;
    const rec: LiveSessionRecord = {
      node: s.node, replicaId: self.id, replicaName: self.name, replicaAddress: self.address,
      agentVersion: s.agentVersion, connectedMs: s.connectedMs, lastSeenMs: s.lastSeenMs, ready,
    };
    this.serial(s.node, () => this.write([{ request_put: { key: this.key(KEYS.liveSessions, s.node, self.id), value: Buffer.from(encodeRecord(rec)), lease: this.deps.leaseId } }]));
  }

  private onDisconnected(s: AgentSession): void {
    if (this.stopped) return;
    const newer = this.deps.local.get(s.node);
    if (newer) return this.publish(newer as AgentSession);
    this.published.delete(s.node);
    this.serial(s.node, () => this.write([{ request_delete_range: { key: this.key(KEYS.liveSessions, s.node, this.deps.self.id) } }]));
  }

  private agentEvent(e: AgentEventRecord): void {
    if (this.stopped) return;
    this.serial(e.node, () => this.write([{ request_put: { key: this.key(KEYS.agentEvents, e.node), value: Buffer.from(encodeRecord(e)), lease: this.deps.leaseId } }]));
  }

  private refresh(): void {
    const now = Date.now();
    const refreshMs = this.deps.refreshMs ?? 10_000;
    for (const s of this.deps.local.all() as AgentSession[]) {
      const p = this.published.get(s.node);
      const ready = now - s.lastSeenMs <= this.deps.notReadyAfterMs;
      if (!p || p.ready !== ready || p.connectedMs !== s.connectedMs || now - p.atMs >= refreshMs) this.publish(s);
    }
  }
}
