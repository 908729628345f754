import { EventEmitter } from 'node:events';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import type {
  AgentMessage, ApplyResult, ContainerActionResult, CoordinatorMessage, HealthReport, ModuleHealth, NodeFacts, ProgressEvent,
} from '../proto/types.js';

/**
 * One connected agent.
 *
 *   (stream opens) ──hello──> connected ──(stream ends / replaced)──> closed
 */
export interface AgentSession {
  readonly node: string;
  readonly agentVersion: string;
  readonly connectedMs: number;
  lastSeenMs: number;
  facts: NodeFacts | null;
  /** Latest health per module from this session. */
  health: Map<string, ModuleHealth>;
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
export class SessionRegistry extends EventEmitter<SessionEvents> {
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
