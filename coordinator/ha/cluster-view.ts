import { EventEmitter } from 'node:events';
import type { ContainerStatus, ModuleHealth } from '../../proto/types.js';
import type { DirectoryEvents, NodeSessionView, SessionDirectory, SessionRegistry } from '../sessions.js';
import type { NodeModuleRecord, NodeRecord } from '../store/types.js';
import type { AgentEventRecord, LiveSessionRecord } from './records.js';

/**
 * Every replica's agent sessions, as one replica sees them: its own sessions straight
 * from its SessionRegistry, the others' from etcd (live session records, durable node
 * and node-module records, agent events), fed by the runtime's watch in revision order.
 *
 * For a node connected to this replica, `get` returns the local session and events come
 * from it directly; for a node held elsewhere it returns a read-only view (send does
 * nothing: the leader reaches such nodes through their stored assignment). When a node
 * has session records from two replicas (it moved, and the old holder's lease has not
 * expired yet), the newest session wins. Calls are synchronous; no locking needed.
 */
export class ClusterView extends EventEmitter<DirectoryEvents> implements SessionDirectory {
  private readonly sessions = new Map<string, Map<string, LiveSessionRecord>>();
  private readonly health = new Map<string, Map<string, ModuleHealth>>();
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly unsubscribe: () => void;

  constructor(private readonly local: SessionRegistry, private readonly selfId: () => string) {
    super();
    this.setMaxListeners(0);
    const onConnected = (x: NodeSessionView) => this.emit('connected', x);
    const onHealth = (node: string, report: { modules: ModuleHealth[] }) => this.emit('health', node, report);
    const onResult = (...a: DirectoryEvents['result']) => this.emit('result', ...a);
    const onProgress = (...a: DirectoryEvents['progress']) => this.emit('progress', ...a);
    local.on('connected', onConnected);
    local.on('health', onHealth);
    local.on('result', onResult);
    local.on('progress', onProgress);
    this.unsubscribe = () => {
      local.off('connected', onConnected);
      local.off('health', onHealth);
      local.off('result', onResult);
      local.off('progress', onProgress);
    };
  }

  /** Forgets everything learnt from etcd (before a fresh snapshot). */
  clear(): void {
    this.sessions.clear();
    this.health.clear();
    this.nodes.clear();
  }

  close(): void {
    this.unsubscribe();
    this.clear();
  }

  get(node: string): NodeSessionView | undefined {
    return this.local.get(node) ?? this.remote(node);
  }

  all(): NodeSessionView[] {
    const names = new Set([...this.local.all().map((s) => s.node), ...this.sessions.keys()]);
    return [...names].map((n) => this.get(n)).filter((s): s is NodeSessionView => Boolean(s));
  }

  /** The newest live session record of a node, from any replica. */
  holder(node: string): LiveSessionRecord | undefined {
    let best: LiveSessionRecord | undefined;
    for (const r of this.sessions.get(node)?.values() ?? []) if (!best || r.connectedMs > best.connectedMs) best = r;
    return best;
  }

  private remote(node: string): NodeSessionView | undefined {
    const rec = this.holder(node);
    if (!rec || rec.replicaId === this.selfId()) return undefined;
    const n = this.nodes.get(node);
    return {
      node,
      agentVersion: rec.agentVersion,
      connectedMs: rec.connectedMs,
      lastSeenMs: Math.max(rec.lastSeenMs, n?.lastSeenMs ?? 0),
      facts: n?.facts ?? null,
      health: new Map(this.health.get(node) ?? []),
      containers: n?.containers ?? ([] as ContainerStatus[]),
      coordinator: `${rec.replicaName} ${rec.replicaAddress}`,
      ready: rec.ready,
    };
  }

  // ---- fed by the runtime's snapshot and watch -------------------------------------------

  putSession(rec: LiveSessionRecord): void {
    let m = this.sessions.get(rec.node);
    if (!m) this.sessions.set(rec.node, (m = new Map()));
    const before = this.holder(rec.node);
    m.set(rec.replicaId, rec);
    const isNew = !before || before.connectedMs !== rec.connectedMs || before.replicaId !== rec.replicaId;
    if (isNew && rec.replicaId !== this.selfId() && !this.local.get(rec.node) && this.holder(rec.node) === rec) {
      const view = this.remote(rec.node);
      if (view) this.emit('connected', view);
    }
  }

  deleteSession(node: string, replicaId: string): void {
    const m = this.sessions.get(node);
    m?.delete(replicaId);
    if (m && m.size === 0) this.sessions.delete(node);
  }

  putNodeModule(r: NodeModuleRecord): void {
    let m = this.health.get(r.node);
    if (!m) this.health.set(r.node, (m = new Map()));
    const h: ModuleHealth = { module: r.module, revision: r.revision, specHash: r.specHash, healthy: r.healthy, converged: r.converged, checks: r.checks };
    m.set(r.module, h);
    // A node connected here reports through its own session (fresher, already emitted).
    if (!this.local.get(r.node)) this.emit('health', r.node, { modules: [h] });
  }

  deleteNodeModule(node: string, module: string): void {
    this.health.get(node)?.delete(module);
  }

  putNode(n: NodeRecord): void {
    this.nodes.set(n.name, n);
  }

  agentEvent(e: AgentEventRecord): void {
    if (e.replicaId === this.selfId() || this.local.get(e.node)) return;
    if (e.result) this.emit('result', e.node, e.result);
    if (e.progress) this.emit('progress', e.node, e.progress);
  }
}
