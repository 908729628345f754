import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { AgentMessage, CoordinatorMessage, HealthReport, ModuleState, RenewRequest, RenewResponse, SecretsRequest } from '../../proto/types.js';
import { errorMessage } from '../../shared/errors/index.js';
import { EnrollError, type Enroller } from '../pki/enroll.js';
import type { PeerCert } from './auth.js';
import type { Inventory } from '../../shared/inventory/index.js';
import type { SessionRegistry, AgentSession } from '../sessions.js';
import { RevisionReader } from '../store/revision-reader.js';
import type { NodeRecord, Store } from '../store/types.js';

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
   * Who is calling, from the peer certificate (see ./auth.ts); the hello's node name must
   * match it. Resolves undefined when the transport carries no identity (plaintext dev
   * mode); rejects with a gRPC refusal ({code, details}) for a certificate that may not
   * open a session.
   */
  authenticate: (call: grpc.ServerDuplexStream<AgentMessage, CoordinatorMessage>) => Promise<PeerCert | undefined>;
  /** Builds the message carrying a desired state (with its secret values). Default: the state alone. */
  deliver?: (state: ModuleState) => Promise<CoordinatorMessage>;
  /** How long periodic node-record refreshes wait to be written together (default NODE_REFRESH_BATCH_MS). */
  nodeRefreshBatchMs?: number;
}

/** Minimum spacing of node-record writes caused by health reports (facts, last seen). */
const NODE_PERSIST_INTERVAL_MS = 30_000;
/** Periodic node-record refreshes wait at most this long, then go to the store together. */
export const NODE_REFRESH_BATCH_MS = 1000;

/**
 * Periodic node-record refreshes (last seen, facts), written together. Each session refreshes
 * its node's record every 30 s at its own phase: at 5,000 agents that was ~170 writes a
 * second, each its own SQLite commit and fsync. Queued refreshes are written once every
 * `batchMs`, all in one event-loop turn, so the SQLite store commits them in one transaction
 * (its group commit); the etcd store sends them as they are.
 *
 * A refresh is not waited for by the session (module records, which health gates read, never
 * queue behind it). A write that must not wait (a hello, containers that changed) first
 * cancels the node's waiting refresh and waits for one being written, so an older record
 * never lands after a newer one.
 */
export class NodeRefreshes {
  private readonly waiting = new Map<string, { record: NodeRecord; failed: (err: unknown) => void }>();
  private readonly writing = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly store: Store, private readonly batchMs = NODE_REFRESH_BATCH_MS) {}

  /** Queues `record` (replacing the node's waiting one); `failed` is called if its write fails. */
  queue(record: NodeRecord, failed: (err: unknown) => void): void {
    this.waiting.set(record.name, { record, failed });
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), this.batchMs);
      // A waiting refresh never keeps the process alive (last seen is refreshed again at the next report).
      this.timer.unref();
    }
  }

  /** Drops the node's waiting refresh; resolves once a refresh of it being written has settled. */
  cancel(node: string): Promise<void> {
    this.waiting.delete(node);
    return this.writing.get(node) ?? Promise.resolve();
  }

  /** Number of refreshes waiting (tests). */
  get size(): number {
    return this.waiting.size;
  }

  /** Writes every waiting refresh now, in this turn. */
  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const batch = [...this.waiting.values()];
    this.waiting.clear();
    for (const { record, failed } of batch) {
      const p = this.store.upsertNode(record).catch(failed).finally(() => {
        if (this.writing.get(record.name) === p) this.writing.delete(record.name);
      });
      this.writing.set(record.name, p);
    }
  }
}

/**
 * The agent session handler. Protocol:
 *  1. the agent sends Hello (node name, version, what it holds on disk);
 *  2. the coordinator checks the node against the inventory (and the peer identity),
 *     answers with SessionSettings, then re-sends every assignment the agent lacks;
 *  3. then heartbeats, health reports, acks, progress and apply results flow up, and
 *     desired states flow down, until either side ends the stream.
 */
export function agentSessionHandler(deps: AgentServiceDeps) {
  // Thousands of agents reconnecting at once after a restart may all lack the same revision.
  const revisions = new RevisionReader(deps.store);
  const refreshes = new NodeRefreshes(deps.store, deps.nodeRefreshBatchMs);
  return (call: grpc.ServerDuplexStream<AgentMessage, CoordinatorMessage>): void => {
    let session: AgentSession | undefined;
    let lastPersist = 0;
    /** The node's first-seen time, read once at hello. */
    let firstSeenMs = 0;
    let containersSig = '';
    const persisted = new Map<string, string>();
    /** The newest health report not yet persisted; reports are persisted one at a time, in order. */
    let pendingHealth: HealthReport | undefined;
    let persisting = false;
    const lastResend = new Map<string, number>();
    const fail = (code: grpc.status, details: string) => {
      deps.log.warn({ peer: call.getPeer(), details }, 'agent session refused');
      call.emit('error', { code, details });
    };
    call.on('data', (msg: AgentMessage) => {
      if (!session) {
        if (!msg.hello) return fail(grpc.status.FAILED_PRECONDITION, 'the first message of a session must be hello');
        void onHello(msg.hello).catch((err: unknown) => {
          if (isRefusal(err)) return fail(err.code, err.details);
          deps.log.error({ err: errorMessage(err) }, 'agent hello failed');
          fail(grpc.status.INTERNAL, 'coordinator failed to open the session');
        });
        return;
      }
      deps.sessions.handle(session, msg);
      if (msg.secretsRequest) {
        const s = session;
        void resendSecrets(s, msg.secretsRequest).catch((err: unknown) => deps.log.error({ err, node: s.node }, 'resend of credentials failed'));
      }
      if (msg.health) {
        pendingHealth = msg.health;
        if (!persisting) void drainHealth(session);
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
      const peer = await deps.authenticate(call);
      if (peer !== undefined && peer.commonName !== node) {
        return fail(grpc.status.PERMISSION_DENIED, `certificate is for node "${peer.commonName}", not "${node}": a node may only report for itself`);
      }
      const inv = deps.inventory();
      if (!hostnames(inv).has(node)) return fail(grpc.status.PERMISSION_DENIED, `node "${node}" is not in the inventory ${inv.file}`);
      const now = Date.now();
      const existing = await deps.store.getNode(node);
      firstSeenMs = existing?.firstSeenMs ?? now;
      // A refresh still waiting from an earlier session of this node must not land after this.
      await refreshes.cancel(node);
      await deps.store.upsertNode({ name: node, agentVersion: hello.agentVersion, firstSeenMs, lastSeenMs: now, facts: existing?.facts ?? null, containers: existing?.containers ?? [] });
      session = deps.sessions.open(call, node, hello.agentVersion);
      if (peer) session.certNotAfterMs = peer.notAfterMs;
      deps.log.info({ node, agentVersion: hello.agentVersion, peer: call.getPeer(), serial: peer?.serial }, 'agent connected');
      session.send({ settings: { heartbeatIntervalMs: deps.heartbeatIntervalMs, healthIntervalMs: deps.healthIntervalMs } });
      const held = new Map(hello.desired.map((d) => [d.module, d]));
      for (const a of await deps.store.listAssignments({ node })) {
        const h = held.get(a.module);
        if (h && h.revision === a.revision && h.specHash === a.specHash) continue;
        const rev = await revisions.get(a.module, a.revision);
        const state = rev?.states[node];
        if (state) session.send(await deliver(state));
      }
    }

    function deliver(state: ModuleState): Promise<CoordinatorMessage> {
      return deps.deliver ? deps.deliver(state) : Promise.resolve({ desired: state });
    }

    /**
     * The agent lacks the values for a credentials file of a state it holds: resend the
     * node's own assignment with its values, only if the request names exactly that
     * assignment (a node never receives another node's or another revision's credentials).
     */
    async function resendSecrets(s: AgentSession, req: SecretsRequest): Promise<void> {
      // At most one resend per module every 2 s, whatever the agent asks.
      const now = Date.now();
      if (now - (lastResend.get(req.module) ?? 0) < 2000) return;
      lastResend.set(req.module, now);
      const a = (await deps.store.listAssignments({ node: s.node, module: req.module }))[0];
      if (!a || a.revision !== req.revision || a.specHash !== req.specHash) {
        deps.log.warn({ node: s.node, module: req.module, revision: req.revision }, 'credentials resend refused: not the node\'s current assignment');
        return;
      }
      const state = (await revisions.get(a.module, a.revision))?.states[s.node];
      if (!state) return;
      deps.log.info({ node: s.node, module: req.module, revision: req.revision, reason: req.reason }, 'resending credentials');
      s.send(await deliver(state));
    }

    /**
     * Persists health reports one at a time, newest first-come: while a write is in flight,
     * later reports replace each other and only the newest is written next. So an older
     * report can never land after a newer one (which would leave the store, and the
     * leader's health gates, on the older state while the agent keeps reporting the newer).
     */
    async function drainHealth(s: AgentSession): Promise<void> {
      persisting = true;
      try {
        while (pendingHealth) {
          const report = pendingHealth;
          pendingHealth = undefined;
          await persistHealth(s, report).catch((err: unknown) => deps.log.warn({ err: errorMessage(err), node: s.node }, 'persist health failed; the next report is written in full'));
        }
      } finally {
        persisting = false;
      }
    }

    async function persistHealth(s: AgentSession, report: HealthReport): Promise<void> {
      const now = Date.now();
      for (const m of report.modules) {
        // Only changes are written: a fleet reporting every few seconds must not turn into a write storm.
        const sig = `${m.revision}|${m.specHash}|${m.healthy}|${m.converged}|${m.checks.map((c) => `${c.name}=${c.ok}`).join(',')}`;
        if (persisted.get(m.module) === sig) continue;
        // Forget what was written before: if this write fails (etcd unavailable for a moment),
        // the next report, even an identical one, is written again.
        persisted.delete(m.module);
        await deps.store.putNodeModule({
          node: s.node, module: m.module, revision: m.revision, specHash: m.specHash, healthy: m.healthy, converged: m.converged, checks: m.checks, updatedMs: now,
        });
        persisted.set(m.module, sig);
      }
      // Containers are written at once when they change (a replaced or restarted container), so
      // every replica sees them; otherwise the record (last seen, facts) is refreshed every 30 s,
      // together with other nodes' refreshes (NodeRefreshes).
      const sig = report.containers.map((c) => `${c.module}/${c.name}=${c.id}|${c.state}|${c.startedAt}`).join(',');
      const record: NodeRecord = { name: s.node, agentVersion: s.agentVersion, firstSeenMs, lastSeenMs: now, facts: s.facts, containers: report.containers };
      if (sig !== containersSig) {
        containersSig = '';
        await refreshes.cancel(s.node);
        await deps.store.upsertNode(record);
        lastPersist = now;
        containersSig = sig;
      } else if (now - lastPersist >= NODE_PERSIST_INTERVAL_MS) {
        lastPersist = now;
        refreshes.queue(record, (err) => {
          lastPersist = 0; // refreshed again at the next report
          deps.log.warn({ err: errorMessage(err), node: s.node }, 'node record refresh failed; retried at the next report');
        });
      }
    }
  };
}

/** Hostnames of an inventory, computed once per loaded inventory (thousands of hellos each check theirs). */
const HOSTNAMES = new WeakMap<Inventory, Set<string>>();
function hostnames(inv: Inventory): Set<string> {
  let set = HOSTNAMES.get(inv);
  if (!set) HOSTNAMES.set(inv, (set = new Set(inv.servers.map((s) => s.hostname))));
  return set;
}

function isRefusal(err: unknown): err is { code: grpc.status; details: string } {
  return Boolean(err) && typeof err === 'object' && typeof (err as { code?: unknown }).code === 'number' && typeof (err as { details?: unknown }).details === 'string';
}

export interface RenewDeps {
  authenticate: (call: grpc.ServerUnaryCall<RenewRequest, RenewResponse>) => Promise<PeerCert | undefined>;
  enroller: () => Enroller | undefined;
  sessions: SessionRegistry;
  log: Logger;
}

const ENROLL_TO_GRPC: Record<EnrollError['status'], grpc.status> = {
  400: grpc.status.INVALID_ARGUMENT, 401: grpc.status.UNAUTHENTICATED, 403: grpc.status.PERMISSION_DENIED, 429: grpc.status.RESOURCE_EXHAUSTED,
};

/**
 * AgentService.Renew: a node renews its own certificate over mTLS before it expires. The
 * live session of that node keeps running; it is now bounded by the new certificate's expiry.
 */
export function renewHandler(deps: RenewDeps) {
  return (call: grpc.ServerUnaryCall<RenewRequest, RenewResponse>, cb: grpc.sendUnaryData<RenewResponse>): void => {
    const run = async (): Promise<RenewResponse> => {
      const enroller = deps.enroller();
      if (!enroller) throw { code: grpc.status.FAILED_PRECONDITION, details: 'this coordinator runs without TLS (--plaintext): nothing to renew' };
      const peer = await deps.authenticate(call);
      if (!peer) throw { code: grpc.status.UNAUTHENTICATED, details: 'no client certificate' };
      const issued = await enroller.renew(peer.commonName, peer, call.request.csrPem);
      const live = deps.sessions.get(peer.commonName);
      if (live) live.certNotAfterMs = issued.notAfterMs;
      return { certificatePem: issued.certificatePem, caPem: issued.caPem, notAfterMs: issued.notAfterMs, serial: issued.serial };
    };
    run().then((res) => cb(null, res), (err: unknown) => {
      const e = isRefusal(err) ? err : err instanceof EnrollError ? { code: ENROLL_TO_GRPC[err.status], details: err.message } : { code: grpc.status.INTERNAL, details: errorMessage(err) };
      deps.log.warn({ peer: call.getPeer(), details: e.details }, 'certificate renewal refused');
      cb(e);
    });
  };
}
