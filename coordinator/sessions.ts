import { EventEmitter } from 'node:events';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type {
  AgentMessage, ApplyResult, ContainerActionResult, ContainerStatus, CoordinatorMessage, HealthReport, ModuleHealth, NodeFacts, ProgressEvent,
} from '../proto/types.js';

/** What the coordinator knows of one node's agent session, wherever it is held. */
export interface NodeSessionView {
  readonly node: string;
  readonly agentVersion: string;
  readonly connectedMs: number;
  lastSeenMs: number;
  facts: NodeFacts | null;
  /** Latest health per module from this session. */
  health: Map<string, ModuleHealth>;
  /** Managed containers as last reported. */
  containers: ContainerStatus[];
  /** The replica holding the session ("name address"), for sessions held by another replica. */
  readonly coordinator?: string;
  /** The holding replica's Ready verdict, for sessions held by another replica. */
  readonly ready?: boolean;
}

/** Events of a SessionDirectory: what the rollout engine waits on. */
export interface DirectoryEvents {
  connected: [session: NodeSessionView];
  health: [node: string, report: { modules: ModuleHealth[] }];
  result: [node: string, result: ApplyResult];
  progress: [node: string, event: ProgressEvent];
}

/**
 * The nodes' sessions as one coordinator sees them: this process's own sessions
 * (SessionRegistry) or, with several replicas, every replica's (coordinator/ha/cluster-view.ts).
 */
export interface SessionDirectory {
  get(node: string): NodeSessionView | undefined;
  all(): NodeSessionView[];
  on(event: 'connected', listener: (...args: DirectoryEvents['connected']) => void): unknown;
  on(event: 'health', listener: (...args: DirectoryEvents['health']) => void): unknown;
  on(event: 'result', listener: (...args: DirectoryEvents['result']) => void): unknown;
  on(event: 'progress', listener: (...args: DirectoryEvents['progress']) => void): unknown;
  off(event: 'connected', listener: (...args: DirectoryEvents['connected']) => void): unknown;
  off(event: 'health', listener: (...args: DirectoryEvents['health']) => void): unknown;
  off(event: 'result', listener: (...args: DirectoryEvents['result']) => void): unknown;
  off(event: 'progress', listener: (...args: DirectoryEvents['progress']) => void): unknown;
}

/**
 * One agent connected to this process.
 *
 *   (stream opens) ──hello──> connected ──(stream ends / replaced)──> closed
 */
export interface AgentSession extends NodeSessionView {
  closed: boolean;
  /** Expiry of the certificate that authenticates this session (mTLS); the session is closed past it. */
  certNotAfterMs?: number;
  send(msg: CoordinatorMessage): void;
  close(reason: string): void;
}

export interface SessionEvents {
  connected: [session: AgentSession];
  disconnected: [session: AgentSession];
  health: [node: string, report: HealthReport];
  result: [node: string, result: ApplyResult];
  progress: [node: string, event: ProgressEvent];
  actionResult: [node: string, result: ContainerActionResult];
}

/**
 * Live agent sessions, at most one per node: a new session for a node replaces (and
 * closes) the old one. Emits typed events that the rollout engine waits on.
 * All methods are synchronous and run on the event loop, so no locking is needed.
 */
export class SessionRegistry extends EventEmitter<SessionEvents> implements SessionDirectory {
  private readonly sessions = new Map<string, AgentSession>();

  constructor() {
    super();
    this.setMaxListeners(0);
  }

  get(node: string): AgentSession | undefined {
    const s = this.sessions.get(node);
    return s && !s.closed ? s : undefined;
  }

  all(): AgentSession[] {
    return [...this.sessions.values()].filter((s) => !s.closed);
  }

  /** Registers a session that has sent its hello. Returns it. */
  open(call: ServerDuplexStream<AgentMessage, CoordinatorMessage>, node: string, agentVersion: string): AgentSession {
    const previous = this.sessions.get(node);
    const now = Date.now();
    const session: AgentSession = {
      node,
      agentVersion,
      connectedMs: now,
      lastSeenMs: now,
      facts: null,
      health: new Map(),
      containers: [],
      closed: false,
      send: (msg) => {
        if (!session.closed) call.write(msg);
      },
      close: (reason) => {
        if (session.closed) return;
        session.closed = true;
        if (this.sessions.get(node) === session) this.sessions.delete(node);
        this.emit('disconnected', session);
        try {
          call.end();
        } catch { /* stream already gone */ }
        void reason;
      },
    };
    this.sessions.set(node, session);
    if (previous && !previous.closed) previous.close('replaced by a new session');
    this.emit('connected', session);
    return session;
  }

  /** Closes sessions whose certificate has expired (the agent reconnects with its renewed one). Returns their nodes. */
  closeExpired(now = Date.now()): string[] {
    const gone = this.all().filter((s) => s.certNotAfterMs !== undefined && s.certNotAfterMs <= now);
    for (const s of gone) s.close('certificate expired');
    return gone.map((s) => s.node);
  }

  /** Routes one agent message (after hello) to listeners. */
  handle(session: AgentSession, msg: AgentMessage): void {
    session.lastSeenMs = Date.now();
    if (msg.health) {
      if (msg.health.facts) session.facts = msg.health.facts;
      session.containers = msg.health.containers;
      for (const m of msg.health.modules) session.health.set(m.module, m);
      this.emit('health', session.node, msg.health);
    } else if (msg.result) {
      this.emit('result', session.node, msg.result);
    } else if (msg.progress) {
      this.emit('progress', session.node, msg.progress);
    } else if (msg.containerActionResult) {
      this.emit('actionResult', session.node, msg.containerActionResult);
    }
  }
}
