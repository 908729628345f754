import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { InputError, KbError, UnknownModuleError, errorMessage } from '../../shared/errors/index.js';
import type {
  CoordinatorDrillRequest, CoordinatorDrillResponse, CoordinatorStatusResponse,
  CreateTokenRequest, CreateTokenResponse, DrillRequest, DrillUpdate, HealthRequest, HealthResponse, ListTokensResponse, RemoveTokenRequest, RemoveTokenResponse,
  ListNodesResponse, ModuleState, NodeHealth, NodeInfo, PlanRequest, PlanResponse, RolloutEvent, RolloutInfo, RolloutRequest, RolloutStatusRequest,
  RolloutStatusResponse, RolloutUpdate,
} from '../../proto/types.js';
import { DrillRefusedError, type Drills } from '../drill/index.js';
import type { ImageResolver } from '../images/resolve.js';
import { getModule, MODULES } from '../modules/index.js';
import type { PlanInputs, SecretVersions } from '../modules/types.js';
import { checkNodeFilter, computeDesired, diffNode } from '../planner.js';
import { RolloutError, type RolloutEngine } from '../rollout/engine.js';
import { DEFAULT_TOKEN_TTL_MS, TokenError, toTokenInfo, type Tokens } from '../pki/tokens.js';
import { NotLeaderError } from '../runtime.js';
import type { SessionDirectory } from '../sessions.js';
import type { EventRecord, NodeModuleRecord, RevisionRecord, RolloutRecord, Store } from '../store/types.js';

/** Trailer naming the leader's address when a follower refuses a leader-only call (kbctl follows it). */
export const LEADER_TRAILER = 'kb-leader';
/** Trailer set on every error the coordinator itself produced (kbctl prints its message as is). */
export const SOURCE_TRAILER = 'kb-source';

export interface ControlDeps {
  store: Store;
  /** The nodes' sessions, on this replica and (with etcd) on the others. */
  sessions: SessionDirectory;
  /** The engine, when this coordinator may drive rollouts; throws NotLeaderError otherwise. */
  engine: () => RolloutEngine;
  drills: Drills;
  /** This coordinator, as shown in `kbctl nodes` for the sessions it holds ("name address"). */
  self: string;
  status: () => Promise<CoordinatorStatusResponse>;
  coordinatorDrill: (req: CoordinatorDrillRequest) => Promise<CoordinatorDrillResponse>;
  resolver: ImageResolver;
  log: Logger;
  inputs: () => PlanInputs;
  /** A node is NotReady when nothing was heard from it for this long. */
  notReadyAfterMs: number;
  /** Which secret versions plans use (absent: plans without credentials). */
  secrets?: { versions(): Promise<Record<string, SecretVersions>> };
  /** Authorizes a control call; throws a grpc error object to refuse. */
  authorize: (call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>) => void;
  /** Join tokens; undefined in plaintext mode (no CA). */
  tokens: () => Tokens | undefined;
  /** The one-line install command for a token. */
  installCommand: (token: string) => string;
}

/**
 * The state each of `nodes` runs now for `module`: the revision it reports (live, else as
 * stored), else the one it was last assigned. Each revision is read once, however many nodes
 * run it (at thousands of nodes a revision is megabytes to decode).
 */
export async function currentStates(
  store: Pick<Store, 'listAssignments' | 'listNodeModules' | 'getRevision'>, sessions: Pick<SessionDirectory, 'get'>, module: string, nodes: string[],
): Promise<Map<string, ModuleState | undefined>> {
  const assigned = new Map((await store.listAssignments({ module })).map((a) => [a.node, a.revision]));
  const reported = new Map((await store.listNodeModules({ module })).map((r) => [r.node, r.revision]));
  const revisions = new Map<number, Promise<RevisionRecord | undefined>>();
  const out = new Map<string, ModuleState | undefined>();
  for (const node of nodes) {
    const revNo = (sessions.get(node)?.health.get(module)?.revision ?? reported.get(node)) || assigned.get(node);
    if (!revNo) {
      out.set(node, undefined);
      continue;
    }
    let rev = revisions.get(revNo);
    if (!rev) revisions.set(revNo, (rev = store.getRevision(module, revNo)));
    out.set(node, (await rev)?.states[node]);
  }
  return out;
}

/** Maps kb errors to gRPC statuses with the error's own message (which names file/node/module). */
export function toGrpcError(err: unknown): Partial<grpc.ServiceError> {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'number' && 'details' in err) {
    return err as Partial<grpc.ServiceError>;
  }
  const metadata = new grpc.Metadata();
  metadata.set(SOURCE_TRAILER, 'coordinator');
  if (err instanceof NotLeaderError && err.leaderAddress) metadata.set(LEADER_TRAILER, err.leaderAddress);
  if (err instanceof InputError || err instanceof UnknownModuleError || err instanceof TokenError) return { code: grpc.status.INVALID_ARGUMENT, details: err.message, metadata };
  if (err instanceof DrillRefusedError) return { code: grpc.status.FAILED_PRECONDITION, details: err.message, metadata };
  if (err instanceof RolloutError) return { code: grpc.status.FAILED_PRECONDITION, details: err.message, metadata };
  if (err instanceof KbError) return { code: grpc.status.UNAVAILABLE, details: err.message, metadata };
  return { code: grpc.status.INTERNAL, details: errorMessage(err), metadata };
}

export function controlHandlers(deps: ControlDeps): grpc.UntypedServiceImplementation {
  const unary = <Req, Res>(fn: (req: Req) => Promise<Res>) => (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => {
    Promise.resolve()
      .then(() => deps.authorize(call as grpc.ServerUnaryCall<unknown, unknown>))
      .then(() => fn(call.request))
      .then((res) => cb(null, res), (err: unknown) => {
        deps.log.warn({ err: errorMessage(err) }, 'control call failed');
        cb(toGrpcError(err));
      });
  };

  return {
    ListNodes: unary(async (): Promise<ListNodesResponse> => {
      const inv = deps.inputs().inventory;
      const records = await deps.store.listNodes();
      const mods = await deps.store.listNodeModules();
      const identities = new Map((await deps.store.listNodeIdentities()).map((i) => [i.node, i]));
      const now = Date.now();
      const nodes: NodeInfo[] = records.map((rec) => {
        const s = deps.sessions.get(rec.name);
        const server = inv.servers.find((x) => x.hostname === rec.name);
        const lastSeen = s?.lastSeenMs ?? rec.lastSeenMs;
        // A session held by another replica carries that replica's verdict.
        const status = s && (s.ready ?? now - s.lastSeenMs <= deps.notReadyAfterMs) ? 'Ready' : 'NotReady';
        const modules = s
          ? [...s.health.values()].map((m) => ({ module: m.module, revision: m.revision, healthy: m.healthy && m.converged, summary: summary(m.checks) }))
          : mods.filter((m) => m.node === rec.name).map((m) => ({ module: m.module, revision: m.revision, healthy: false, summary: 'stale: agent not connected' }));
        return {
          name: rec.name,
          role: server?.role ?? '?',
          subrole: server?.subrole ?? '',
          ip: server?.privateIp ?? '',
          status,
          agentVersion: s?.agentVersion ?? rec.agentVersion,
          modules,
          facts: s?.facts ?? rec.facts,
          lastSeenMs: lastSeen,
          connected: Boolean(s),
          certSerial: identities.get(rec.name)?.serial ?? '',
          certNotAfterMs: identities.get(rec.name)?.notAfterMs ?? 0,
          containers: s?.containers ?? rec.containers ?? [],
          coordinator: s ? (s.coordinator ?? deps.self) : '',
          connectedMs: s?.connectedMs ?? 0,
        };
      });
      return { nodes };
    }),

    Health: unary(async (req: HealthRequest): Promise<HealthResponse> => {
      if (req.module) getModule(req.module);
      // Stored reports by node: looked up per disconnected node, not scanned (thousands of nodes).
      const stored = new Map<string, NodeModuleRecord[]>();
      for (const r of await deps.store.listNodeModules(req.module ? { module: req.module } : {})) {
        const list = stored.get(r.node);
        if (list) list.push(r);
        else stored.set(r.node, [r]);
      }
      const names = [...new Set([...deps.sessions.all().map((s) => s.node), ...stored.keys()])].sort();
      const nodes: NodeHealth[] = [];
      for (const node of names) {
        const s = deps.sessions.get(node);
        const mine = stored.get(node) ?? [];
        const live = s ? [...s.health.values()].filter((m) => !req.module || m.module === req.module) : [];
        const modules = s
          ? live
          : mine.map((r) => ({ module: r.module, revision: r.revision, specHash: r.specHash, healthy: false, converged: r.converged, checks: r.checks }));
        if (!modules.length) continue;
        nodes.push({ node, connected: Boolean(s), modules, observedAtMs: s?.lastSeenMs ?? Math.max(...mine.map((r) => r.updatedMs)) });
      }
      return { nodes };
    }),

    Plan: unary(async (req: PlanRequest): Promise<PlanResponse> => {
      const def = getModule(req.module);
      const inputs = deps.inputs();
      if (req.nodes.length) checkNodeFilter(def, inputs.inventory, req.nodes);
      const desired = await computeDesired(def, inputs, deps.resolver, await deps.secrets?.versions());
      const wanted = req.nodes.length ? desired.order.filter((n) => req.nodes.includes(n)) : desired.order;
      const current = await currentStates(deps.store, deps.sessions, def.name, wanted);
      const nodes = wanted.map((node) => diffNode(node, current.get(node), desired.states[node]!, Boolean(deps.sessions.get(node))));
      return { module: def.name, nodes, images: desired.images };
    }),

    Rollout: (call: grpc.ServerWritableStream<RolloutRequest, RolloutUpdate>) => {
      const req = call.request;
      let unsubscribe = () => {};
      const run = async () => {
        deps.authorize(call as grpc.ServerWritableStream<unknown, unknown>);
        const engine = deps.engine();
        const r = await engine.start(req.module, {
          maxParallel: req.maxParallel, healthyDeadlineMs: req.healthyDeadlineMs, minHealthyTimeMs: req.minHealthyTimeMs, undo: req.undo,
        });
        const seen = new Set<number>();
        const send = (e: EventRecord) => {
          if (seen.has(e.id)) return;
          seen.add(e.id);
          call.write({ event: toEvent(e) });
        };
        if (req.wait) {
          unsubscribe = engine.subscribe(r.id, (e) => send(e));
        }
        call.write({ info: toInfo(r) });
        for (const e of await deps.store.listEvents(r.id)) send(e);
        if (req.wait) await engine.wait(r.id);
        unsubscribe();
        if (engine.isStopped) {
          throw new NotLeaderError(`coordinator stopped acting as leader during rollout ${r.id}; it stays running and the next leader resumes it: follow it with \`kbctl rollout status ${r.module}\``, undefined);
        }
        for (const e of await deps.store.listEvents(r.id)) send(e);
        const final = (await deps.store.getRollout(r.id)) ?? r;
        call.write({ info: toInfo(final) });
        call.end();
      };
      call.on('cancelled', () => unsubscribe());
      run().catch((err: unknown) => {
        unsubscribe();
        deps.log.warn({ err: errorMessage(err), module: req.module }, 'rollout refused');
        call.emit('error', toGrpcError(err));
      });
    },

    CreateToken: unary(async (req: CreateTokenRequest): Promise<CreateTokenResponse> => {
      const tokens = needTokens(deps);
      if (req.node) {
        const inv = deps.inputs().inventory;
        if (!inv.servers.some((x) => x.hostname === req.node)) throw new TokenError('wrong-node', `node "${req.node}" is not in the inventory ${inv.file}`);
      }
      const { token, record } = await tokens.create({ ttlMs: req.ttlMs || DEFAULT_TOKEN_TTL_MS, uses: req.uses || 1, node: req.node, description: req.description });
      deps.log.info({ tokenId: record.id, node: record.node, uses: record.uses, expires: new Date(record.expiresMs).toISOString() }, 'join token created');
      return { token, info: toTokenInfo(record), installCommand: deps.installCommand(token) };
    }),

    ListTokens: unary(async (): Promise<ListTokensResponse> => {
      const now = Date.now();
      return { tokens: (await needTokens(deps).list()).map((t) => toTokenInfo(t, now)) };
    }),

    RemoveToken: unary(async (req: RemoveTokenRequest): Promise<RemoveTokenResponse> => {
      const t = await needTokens(deps).revoke(req.id);
      deps.log.info({ tokenId: t.id }, 'join token revoked');
      return { info: toTokenInfo(t) };
    }),
    Drill: (call: grpc.ServerWritableStream<DrillRequest, DrillUpdate>) => {
      const req = call.request;
      let open = true;
      call.on('cancelled', () => { open = false; });
      const run = async () => {
        deps.authorize(call as grpc.ServerWritableStream<unknown, unknown>);
        const report = await deps.drills.run(req, (event) => { if (open) call.write({ event }); });
        if (open) {
          call.write({ report });
          call.end();
        }
      };
      run().catch((err: unknown) => {
        deps.log.warn({ err: errorMessage(err), drill: req.drill }, 'drill refused');
        if (open) call.emit('error', toGrpcError(err));
      });
    },

    RolloutStatus: unary(async (req: RolloutStatusRequest): Promise<RolloutStatusResponse> => {
      getModule(req.module);
      const last = await deps.store.latestRollout(req.module);
      if (!last) return { rollout: null, events: [] };
      return { rollout: toInfo(last), events: req.events ? (await deps.store.listEvents(last.id)).map(toEvent) : [] };
    }),

    CoordinatorStatus: unary(async (): Promise<CoordinatorStatusResponse> => deps.status()),

    CoordinatorDrill: unary(async (req: CoordinatorDrillRequest): Promise<CoordinatorDrillResponse> => deps.coordinatorDrill(req)),
  };
}

function needTokens(deps: ControlDeps): Tokens {
  const tokens = deps.tokens();
  if (!tokens) throw { code: grpc.status.FAILED_PRECONDITION, details: 'this coordinator runs with --plaintext (development): there is no CA, so no join tokens' };
  return tokens;
}

function summary(checks: { name: string; ok: boolean; observed: string }[]): string {
  const bad = checks.filter((c) => !c.ok);
  return bad.length ? bad.map((c) => `${c.name}: ${c.observed}`).join('; ') : `${checks.length} checks ok`;
}

export function toEvent(e: EventRecord): RolloutEvent {
  return { id: e.id, rolloutId: e.rolloutId, atMs: e.atMs, node: e.node, kind: e.kind, message: e.message, check: e.check, observed: e.observed, revision: e.revision };
}

export function toInfo(r: RolloutRecord): RolloutInfo {
  return {
    id: r.id, module: r.module, revision: r.revision, fromRevision: r.fromRevision, state: r.state, error: r.error,
    failedNode: r.failedNode, failedCheck: r.failedCheck, observed: r.observed,
    nodes: r.nodes.map((n) => ({ node: n.node, state: n.phase, revision: r.revision, error: n.error })),
    createdMs: r.createdMs, updatedMs: r.updatedMs, maxParallel: r.maxParallel,
  };
}

export const KNOWN_MODULES = MODULES.map((m) => m.name);
