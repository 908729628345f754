import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { AgentMessage, CoordinatorMessage, HealthReport } from '../../proto/types.js';
import { errorMessage } from '../../shared/errors/index.js';
import type { Inventory } from '../../shared/inventory/index.js';
import type { SessionRegistry, AgentSession } from '../sessions.js';
import type { Store } from '../store/types.js';

export interface AgentServiceDeps {
  store: Store;
  sessions: SessionRegistry;
  log: Logger;
  inventory: () => Inventory;
  heartbeatIntervalMs: number;
  healthIntervalMs: number;
  /** Why this coordinator must not take agents now (a replica cut off from etcd), or undefined. */
  refuse?: () => string | undefined;
  /**
   * Who is calling. With mTLS this comes from the peer certificate; the hello's node name
   * must match it. Returns undefined when the transport carries no identity (plaintext dev mode).
   */
  peerIdentity: (call: grpc.ServerDuplexStream<AgentMessage, CoordinatorMessage>) => string | undefined;
}

/** Minimum spacing of node-record writes caused by health reports (facts, last seen). */
const NODE_PERSIST_INTERVAL_MS = 30_000;

/**
 * The agent session handler. Protocol:
 *  1. the agent sends Hello (node name, version, what it holds on disk);
 *  2. the coordinator checks the node against the inventory (and the peer identity),
 *     answers with SessionSettings, then re-sends every assignment the agent lacks;
 *  3. then heartbeats, health reports, acks, progress and apply results flow up, and
 *     desired states flow down, until either side ends the stream.
 */
export function agentSessionHandler(deps: AgentServiceDeps) {
  return (call: grpc.ServerDuplexStream<AgentMessage, CoordinatorMessage>): void => {
    let session: AgentSession | undefined;
    let lastPersist = 0;
    let containersSig = '';
    const persisted = new Map<string, string>();
    const fail = (code: grpc.status, details: string) => {
      deps.log.warn({ peer: call.getPeer(), details }, 'agent session refused');
      call.emit('error', { code, details });
    };
    call.on('data', (msg: AgentMessage) => {
      if (!session) {
        if (!msg.hello) return fail(grpc.status.FAILED_PRECONDITION, 'the first message of a session must be hello');
        void onHello(msg.hello).catch((err: unknown) => {
          deps.log.error({ err }, 'agent hello failed');
          fail(grpc.status.INTERNAL, 'coordinator failed to open the session');
        });
        return;
      }
      deps.sessions.handle(session, msg);
      if (msg.health) {
        void persistHealth(session, msg.health).catch((err: unknown) => deps.log.warn({ err: errorMessage(err), node: session?.node }, 'persist health failed'));
      }
    });
    call.on('end', () => {
      session?.close('agent ended the stream');
      call.end();
    });
    call.on('error', () => session?.close('stream error'));
    call.on('cancelled', () => session?.close('cancelled'));

    async function onHello(hello: NonNullable<AgentMessage['hello']>): Promise<void> {
      const node = hello.nodeName;
      const refused = deps.refuse?.();
      if (refused) return fail(grpc.status.UNAVAILABLE, refused);
      const peer = deps.peerIdentity(call);
      if (peer !== undefined && peer !== node) return fail(grpc.status.PERMISSION_DENIED, `certificate is for node "${peer}", not "${node}"`);
      const inv = deps.inventory();
      if (!inv.servers.some((s) => s.hostname === node)) return fail(grpc.status.PERMISSION_DENIED, `node "${node}" is not in the inventory ${inv.file}`);
      const now = Date.now();
      const existing = await deps.store.getNode(node);
      await deps.store.upsertNode({ name: node, agentVersion: hello.agentVersion, firstSeenMs: existing?.firstSeenMs ?? now, lastSeenMs: now, facts: existing?.facts ?? null, containers: existing?.containers ?? [] });
      session = deps.sessions.open(call, node, hello.agentVersion);
      deps.log.info({ node, agentVersion: hello.agentVersion, peer: call.getPeer() }, 'agent connected');
      session.send({ settings: { heartbeatIntervalMs: deps.heartbeatIntervalMs, healthIntervalMs: deps.healthIntervalMs } });
      const held = new Map(hello.desired.map((d) => [d.module, d]));
      for (const a of await deps.store.listAssignments({ node })) {
        const h = held.get(a.module);
        if (h && h.revision === a.revision && h.specHash === a.specHash) continue;
        const rev = await deps.store.getRevision(a.module, a.revision);
        const state = rev?.states[node];
        if (state) session.send({ desired: state });
      }
    }

    async function persistHealth(s: AgentSession, report: HealthReport): Promise<void> {
      const now = Date.now();
      for (const m of report.modules) {
        // Only changes are written: a fleet reporting every few seconds must not turn into a write storm.
        const sig = `${m.revision}|${m.specHash}|${m.healthy}|${m.converged}|${m.checks.map((c) => `${c.name}=${c.ok}`).join(',')}`;
        if (persisted.get(m.module) === sig) continue;
        persisted.set(m.module, sig);
        await deps.store.putNodeModule({
          node: s.node, module: m.module, revision: m.revision, specHash: m.specHash, healthy: m.healthy, converged: m.converged, checks: m.checks, updatedMs: now,
        });
      }
      // Containers are written when they change (a replaced or restarted container), so every replica sees them.
      const sig = report.containers.map((c) => `${c.module}/${c.name}=${c.id}|${c.state}|${c.startedAt}`).join(',');
      if (now - lastPersist >= NODE_PERSIST_INTERVAL_MS || sig !== containersSig) {
        lastPersist = now;
        containersSig = sig;
        const existing = await deps.store.getNode(s.node);
        await deps.store.upsertNode({ name: s.node, agentVersion: s.agentVersion, firstSeenMs: existing?.firstSeenMs ?? now, lastSeenMs: now, facts: s.facts, containers: report.containers });
      }
    }
  };
}
