import { performance } from 'node:perf_hooks';
import { EventEmitter } from 'node:events';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { KbError, errorMessage } from '../../shared/errors/index.js';
import type { ApplyResult, CoordinatorMessage, ModuleHealth, ModuleState, ProgressEvent } from '../../proto/types.js';
import type { ImageResolver } from '../images/resolve.js';
import { getModule } from '../modules/index.js';
import type { PlanInputs, SecretVersions } from '../modules/types.js';
import { collectNow, heapGrowth } from '../memory.js';
import { keepSpecText } from '../../shared/plan/hash.js';
import { computeDesired } from '../planner.js';
import type { SessionDirectory } from '../sessions.js';
import { FencedWriteError, StoreUnavailableError } from '../store/errors.js';
import type { EventKind, EventRecord, NodeModuleRecord, RevisionRecord, RolloutNodeRecord, RolloutRecord, Store } from '../store/types.js';

/** Options of one rollout. Defaults follow Nomad's update stanza. */
export interface RolloutOptions {
  /** Nodes changed at once (one batch). Default 1. */
  maxParallel?: number;
  /** A node must be healthy within this time after its state is sent. Default 120 000 ms. */
  healthyDeadlineMs?: number;
  /** ...and stay healthy this long. Default 10 000 ms. */
  minHealthyTimeMs?: number;
  /** Roll back to the newest earlier revision that was healthy on every node. */
  undo?: boolean;
}

/**
 * Sending a batch's states yields to I/O once a turn has run this long (checked every
 * START_CHECK nodes). Every state goes out before the agents' answers to the first ones are
 * handled: the answers (acknowledgements, results, health) of the nodes already sent delayed
 * the sends still to come when the batch yielded every 200 nodes; at 5,000 nodes that stretched
 * the sending over 2 s (docs/benchmarks.md). Half a second keeps the coordinator answering
 * keepalive pings (10 s timeout) and kbctl calls.
 */
export const SEND_TURN_MS = 500;
/** Nodes started between two looks at the clock (SEND_TURN_MS). */
const START_CHECK = 100;

/**
 * Batches wider than this log the sending of the state once for the batch (`batch-apply`),
 * not once per node (`node-apply`): 5,000 events saying the same thing cost a tenth of a
 * 5,000-node fan-out and bury the ones that matter (failures, per node, stay per node).
 */
export const WIDE_BATCH = 100;

export const ROLLOUT_DEFAULTS = { maxParallel: 1, healthyDeadlineMs: 120_000, minHealthyTimeMs: 10_000 } as const;

/**
 * The nodes a rollout-level event names: every one up to WIDE_BATCH, else the count with the
 * first and last ("5000 nodes (lb-00001 ... lb-05000)"). The rollout record lists every node
 * with its phase (`kbctl rollout status`); an event naming 5,000 of them was a 60 KB log line.
 */
export function nodeList(names: readonly string[]): string {
  return names.length <= WIDE_BATCH ? names.join(', ') : `${names.length} nodes (${names[0]} ... ${names.at(-1)})`;
}

/** Each node's phase ("db-01=healthy db-02=pending") up to WIDE_BATCH nodes, else the count of nodes per phase. */
export function nodePhases(nodes: readonly RolloutNodeRecord[]): string {
  if (nodes.length <= WIDE_BATCH) return nodes.map((n) => `${n.node}=${n.phase}`).join(' ');
  const per = new Map<string, number>();
  for (const n of nodes) per.set(n.phase, (per.get(n.phase) ?? 0) + 1);
  return `${nodeList(nodes.map((n) => n.node))}: ${[...per].map(([phase, k]) => `${k} ${phase}`).join(', ')}`;
}

/** Thrown when a rollout cannot start (another one running, nothing to undo to, ...). */
export class RolloutError extends KbError {
  override name = 'RolloutError';
}

/** Thrown inside the engine once stop() was called: the engine writes nothing more. */
export class EngineStoppedError extends KbError {
  override name = 'EngineStoppedError';
}

export interface EngineDeps {
  /**
   * Where rollouts, revisions, assignments and events are kept. With several coordinator
   * replicas this store is fenced by the leadership term the engine was created for, so
   * a deposed leader's engine cannot write (FencedWriteError).
   */
  store: Store;
  /** The nodes' sessions (this process's, or every replica's). */
  sessions: SessionDirectory;
  resolver: ImageResolver;
  log: Logger;
  /** Reads the inventory, versions and settings fresh (operators edit files between rollouts). */
  inputs: () => PlanInputs;
  /**
   * The secret store (coordinator/secrets): which versions plans use, and the session
   * message carrying a state with its secret values. Absent: plans carry no credentials.
   */
  secrets?: {
    versions(): Promise<Record<string, SecretVersions>>;
    desiredMessage(state: ModuleState): Promise<CoordinatorMessage>;
  };
  /**
   * Hands a node its desired state (the message, with its secret values), after the
   * assignment is stored. One coordinator sends it on the node's session; with replicas on
   * etcd the stored assignment is itself the message (the replica holding the session
   * sends it, with the secret values), so this does nothing.
   */
  deliver: (node: string, message: CoordinatorMessage) => void;
  /** Says why `resumeAll` resumes, in the rollout-resume event. Default "after coordinator restart". */
  resumeReason?: string;
  /** Delay before a rollout interrupted by a store outage is picked up again. Default 1000 ms. */
  retryAfterMs?: number;
}

interface GateOutcome { ok: boolean; check: string; observed: string; error: string }

/** What one node's health gate listens to; the engine routes session events to the gates of their node only. */
interface Gate {
  health(report: { modules: ModuleHealth[] }): void;
  result(res: ApplyResult): void;
  progress(p: ProgressEvent): void;
  connected(): void;
}

/**
 * Health-gated rollouts.
 *
 * A rollout moves the nodes of one module to one revision in batches of `maxParallel`,
 * in the module's host order. A node passes when a health report for the revision's spec
 * says converged and healthy, and it stays so for `minHealthyTimeMs`, all within
 * `healthyDeadlineMs`. The first node that fails pauses the rollout: the rest of its batch
 * finishes, later nodes are untouched, and the record names the node, the check and what
 * it saw.
 *
 * Every step is persisted before it is acted on, so `resumeAll()` after a restart continues
 * where the last process stopped. Re-sending a revision a node already holds is harmless:
 * the agent acknowledges it without applying it again.
 *
 * At most one rollout per module runs at a time (start() refuses a second).
 */
export class RolloutEngine {
  private readonly live = new EventEmitter();
  private readonly running = new Map<string, Promise<void>>();
  /**
   * Called once when the engine stops: every waiting gate and retry timer. A Set, not an
   * AbortSignal: EventTarget scans its whole listener list on every add and remove, which is
   * quadratic with a gate per node (5,000 nodes: tens of milliseconds of one fan-out).
   */
  private readonly onStop = new Set<() => void>();
  private stopped = false;
  /**
   * Rollouts driving a batch wider than WIDE_BATCH now. Their node events are stored and
   * streamed one by one as always, but logged as a digest: one line per rollout and kind
   * per second, with the count and the first nodes, instead of 5,000 alike lines.
   */
  private readonly wide = new Set<string>();
  private readonly digests = new Map<string, { rollout: string; kind: EventKind; count: number; nodes: string[]; message: string; check: string }>();
  private digestTimer: NodeJS.Timeout | undefined;
  /** Per module: the number and spec hashes of the latest revision this engine wrote or read (latestHead). */
  private readonly heads = new Map<string, RevisionHead>();
  /**
   * Gates waiting per node. One listener per session event for the whole engine, routed by
   * node: with thousands of nodes in one batch, a listener per gate would run every gate
   * for every health report (N x N calls per health round).
   */
  private readonly gates = new Map<string, Set<Gate>>();
  private readonly routes = {
    health: (node: string, report: { modules: ModuleHealth[] }) => this.route(node, (g) => g.health(report)),
    result: (node: string, res: ApplyResult) => this.route(node, (g) => g.result(res)),
    progress: (node: string, p: ProgressEvent) => this.route(node, (g) => g.progress(p)),
    connected: (s: { node: string }) => this.route(s.node, (g) => g.connected()),
  };
  /** Per rollout: the save being written, and the one waiting to start (that every later caller joins). */
  private readonly saves = new Map<string, { inflight?: Promise<void>; next?: Promise<void>; startedMs?: number }>();

  constructor(private readonly deps: EngineDeps) {
    this.live.setMaxListeners(0);
  }

  private route(node: string, fn: (g: Gate) => void): void {
    const set = this.gates.get(node);
    if (set) for (const g of [...set]) fn(g);
  }

  private addGate(node: string, g: Gate): void {
    if (this.gates.size === 0) this.listen('on');
    let set = this.gates.get(node);
    if (!set) this.gates.set(node, (set = new Set()));
    set.add(g);
  }

  private removeGate(node: string, g: Gate): void {
    const set = this.gates.get(node);
    if (!set?.delete(g)) return;
    if (set.size === 0) this.gates.delete(node);
    if (this.gates.size === 0) this.listen('off');
  }

  /** Starts (first gate) or stops (last gate gone) listening to the session events. */
  private listen(how: 'on' | 'off'): void {
    const { sessions } = this.deps;
    sessions[how]('health', this.routes.health);
    sessions[how]('result', this.routes.result);
    sessions[how]('progress', this.routes.progress);
    sessions[how]('connected', this.routes.connected);
  }

  /** Subscribes to the events of one rollout as they are appended. */
  subscribe(rolloutId: string, fn: (e: EventRecord, r: RolloutRecord) => void): () => void {
    this.live.on(rolloutId, fn);
    return () => this.live.off(rolloutId, fn);
  }

  /** True once stop() was called: this engine drives nothing more. */
  get isStopped(): boolean {
    return this.stopped;
  }

  /** Resolves when the rollout stops being driven by this process. */
  async wait(rolloutId: string): Promise<void> {
    await this.running.get(rolloutId);
  }

  /**
   * Validates inputs, creates the revision if the desired state changed, persists the
   * rollout and starts driving it. Throws (and applies nothing) on bad input.
   */
  async start(module: string, opts: RolloutOptions = {}): Promise<RolloutRecord> {
    const def = getModule(module);
    const active = (await this.deps.store.listRollouts({ module, state: 'running' }))[0];
    if (active) throw new RolloutError(`a rollout of ${module} is already running (${active.id}); wait for it or check \`kbctl rollout status ${module}\``);
    const inputs = this.deps.inputs();
    // Planning a module of thousands of hosts allocates its states, hashes and revision document
    // at once: heap growth stays relaxed until the rollout is stored (its driver then holds it
    // for a wide batch).
    const release = def.hosts(inputs.inventory).length > WIDE_BATCH ? heapGrowth.relax() : undefined;
    try {
      return await this.startWith(def, inputs, opts);
    } finally {
      release?.();
    }
  }

  private async startWith(def: ReturnType<typeof getModule>, inputs: PlanInputs, opts: RolloutOptions): Promise<RolloutRecord> {
    const { store } = this.deps;
    const module = def.name;
    let target: RevisionRecord;
    let fromRevision = 0;
    if (opts.undo) {
      const latest = await store.latestRevision(module);
      fromRevision = latest?.revision ?? 0;
      target = await this.undoRevision(module, latest);
    } else {
      const latest = await this.latestHead(module);
      fromRevision = latest?.revision ?? 0;
      const next = (latest?.revision ?? 0) + 1;
      // Planned as the next revision: if nothing changed, these states are dropped for the stored ones.
      const desired = await computeDesired(def, inputs, this.deps.resolver, await this.deps.secrets?.versions(), next);
      const same = latest && sameHashes(latest.specHashes, desired.states);
      const again = same ? await store.getRevision(module, latest.revision) : undefined;
      if (same && !again) throw new RolloutError(`revision ${latest.revision} of ${module} is missing from the store`);
      target = again ?? {
        module,
        revision: next,
        createdMs: Date.now(),
        images: desired.images,
        states: desired.states,
        healthyMs: null,
        sourceRevision: null,
      };
      if (!same) await store.putRevision(target);
    }
    if (opts.undo) await store.putRevision(target);
    this.heads.set(module, head(target));

    const order = def.hosts(inputs.inventory).map((s) => s.hostname).filter((n) => target.states[n]);
    const reported = await this.storedReports(module, order);
    const nodes: RolloutNodeRecord[] = order
      .filter((n) => {
        const r = reported.get(n);
        const live = this.deps.sessions.get(n)?.health.get(module);
        const hash = target.states[n]!.specHash;
        const upToDate = (live ?? r) && (live ?? r)!.specHash === hash && (live ?? r)!.healthy && (live ?? r)!.converged;
        return !upToDate;
      })
      .map((node) => ({ node, phase: 'pending', error: '' }));

    const now = Date.now();
    const r: RolloutRecord = {
      id: `${module}-${target.revision}-${randomUUID().slice(0, 8)}`,
      module,
      revision: target.revision,
      fromRevision,
      state: nodes.length ? 'running' : 'succeeded',
      maxParallel: Math.max(1, opts.maxParallel || ROLLOUT_DEFAULTS.maxParallel),
      healthyDeadlineMs: opts.healthyDeadlineMs || ROLLOUT_DEFAULTS.healthyDeadlineMs,
      minHealthyTimeMs: opts.minHealthyTimeMs ?? ROLLOUT_DEFAULTS.minHealthyTimeMs,
      nodes,
      error: '', failedNode: '', failedCheck: '', observed: '',
      createdMs: now,
      updatedMs: now,
    };
    await store.putRollout(r);
    if (!nodes.length) {
      await this.event(r, 'rollout-noop', '', `every node already runs revision ${target.revision}'s spec and is healthy`);
      if (!target.healthyMs) await store.markRevisionHealthy(module, target.revision, now);
      return r;
    }
    await this.event(r, 'rollout-start', '', `revision ${target.revision} (from ${r.fromRevision}) on ${nodeList(nodes.map((n) => n.node))}; max_parallel ${r.maxParallel}; images ${Object.values(target.images).join(', ')}`);
    // The revision just stored is driven from memory (at thousands of nodes, reading its
    // states back from the store costs a parse of megabytes of JSON before the first send).
    this.launch(r, target);
    return r;
  }

  /** Continues every rollout left running by a previous process (or leader). Safe to call once at start-up. */
  async resumeAll(): Promise<void> {
    for (const r of await this.deps.store.listRollouts({ state: 'running' })) {
      if (this.running.has(r.id)) continue;
      await this.event(r, 'rollout-resume', '', `resuming ${this.deps.resumeReason ?? 'after coordinator restart'}: ${nodePhases(r.nodes)}`);
      this.launch(r);
    }
  }

  /**
   * Stops driving every rollout and makes every later write of this engine throw
   * EngineStoppedError; resolves when the drivers have returned. Rollouts stay `running`
   * in the store, for the next engine (the next leader, or this process restarted) to
   * resume. Safe to call twice.
   */
  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      for (const f of [...this.onStop]) f();
      this.onStop.clear();
    }
    await Promise.all([...this.running.values()]);
    this.flushDigests();
  }

  private launch(r: RolloutRecord, rev?: RevisionRecord): void {
    const p = this.drive(r, rev)
      .catch(async (err: unknown) => {
        if (this.stopped || err instanceof EngineStoppedError || err instanceof FencedWriteError) {
          // Leadership ended (or the process is stopping): the next leader resumes from the store.
          this.deps.log.warn({ rollout: r.id, err: errorMessage(err) }, 'rollout driver stopped; the rollout stays running for the next leader');
          return;
        }
        if (err instanceof StoreUnavailableError) {
          // A store outage is not the rollout's fault: pick it up again from stored state.
          this.deps.log.warn({ rollout: r.id, err: errorMessage(err) }, 'store unavailable; rollout paused until it answers');
          this.retryLater(r.id);
          return;
        }
        this.deps.log.error({ err, rollout: r.id }, 'rollout driver crashed');
        r.state = 'failed';
        r.error = `internal error: ${errorMessage(err)}`;
        await this.save(r).catch(() => undefined);
        await this.event(r, 'rollout-failed', '', r.error).catch(() => undefined);
      })
      .finally(() => this.running.delete(r.id));
    this.running.set(r.id, p);
  }

  /** Re-reads a rollout interrupted by a store outage and drives it again, until the store answers. */
  private retryLater(id: string): void {
    const timer = setTimeout(() => {
      this.onStop.delete(cancel);
      if (this.stopped) return;
      this.deps.store.getRollout(id).then(async (r) => {
        if (!r || r.state !== 'running' || this.stopped || this.running.has(id)) return;
        await this.event(r, 'rollout-resume', '', `resuming after a store outage: ${nodePhases(r.nodes)}`);
        this.launch(r);
      }).catch((err: unknown) => {
        if (this.stopped || err instanceof FencedWriteError || err instanceof EngineStoppedError) return;
        this.retryLater(id);
      });
    }, this.deps.retryAfterMs ?? 1000);
    const cancel = () => clearTimeout(timer);
    this.onStop.add(cancel);
  }

  private async drive(r: RolloutRecord, known?: RevisionRecord): Promise<void> {
    const rev = known ?? await this.deps.store.getRevision(r.module, r.revision);
    if (!rev) throw new RolloutError(`revision ${r.revision} of ${r.module} is missing from the store`);
    while (r.state === 'running') {
      const batch = r.nodes.filter((n) => n.phase !== 'healthy').slice(0, r.maxParallel);
      if (batch.length === 0) break;
      const started: Promise<{ n: RolloutNodeRecord; out: GateOutcome }>[] = [];
      const wide = batch.length > WIDE_BATCH;
      let onSent: (() => void) | undefined;
      let release: (() => void) | undefined;
      // Relaxed from here (start() relaxed it for planning): the batch's writes and sends allocate at once.
      if (wide) release = heapGrowth.relax();
      // Every assignment of the batch is written before any state is sent, in one event-loop
      // turn: with the embedded store that is one transaction (one fsync) for the batch, not one
      // per chunk of nodes; and a store that refuses a write stops the batch before any node got
      // its state.
      const assignedMs = Date.now();
      await Promise.all(batch.map((n) => {
        const st = rev.states[n.node]!;
        return this.deps.store.putAssignment({ node: n.node, module: r.module, revision: st.revision, specHash: st.specHash, assignedMs });
      })).catch((err: unknown) => {
        release?.();
        throw err;
      });
      if (wide) {
        this.wide.add(r.id);
        this.background(this.event(r, 'batch-apply', '', `sending revision ${rev.revision} to ${batch.length} nodes (${batch[0]!.node} ... ${batch.at(-1)!.node}); wider than ${WIDE_BATCH} nodes, so no node-apply event per node`));
        const since = Date.now();
        let sent = 0;
        onSent = () => {
          if (++sent === batch.length) this.deps.log.info({ rollout: r.id, nodes: sent, ms: Date.now() - since, heapGrowingPercent: heapGrowth.current }, 'state sent to every node of the batch');
        };
      }
      // Each node's message (its state and the values of the credentials it references), all
      // made before the first send, so each send below happens as its node starts.
      const messages = await Promise.all(batch.map((n) => this.messageFor(rev.states[n.node]!)));
      // Nodes start (and are sent their state) in as few event-loop turns as SEND_TURN_MS allows.
      let turnStart = performance.now();
      for (const [i, n] of batch.entries()) {
        if (i > 0 && i % START_CHECK === 0 && performance.now() - turnStart >= SEND_TURN_MS) {
          await new Promise<void>((resolve) => setImmediate(resolve));
          turnStart = performance.now();
        }
        const p = this.driveNode(r, n, rev.states[n.node]!, messages[i]!, !wide, onSent).then((out) => ({ n, out }));
        p.catch(() => undefined); // handled by Promise.all below; not "unhandled" while later nodes start
        started.push(p);
      }
      const outcomes = await Promise.all(started).finally(() => {
        if (!wide) return;
        this.wide.delete(r.id);
        this.flushDigests(r.id);
        // The batch's peak is garbage now: back to the heap growth at rest, and release the
        // heap pages the batch took (coordinator/memory.ts).
        setImmediate(() => {
          release?.();
          const c = collectNow();
          if (c) this.deps.log.info({ rollout: r.id, ...c, heapGrowingPercent: heapGrowth.current }, `memory collected after a batch of ${batch.length} nodes: heap ${c.heapTotalMb[0]} -> ${c.heapTotalMb[1]} MB, RSS ${c.rssMb[0]} -> ${c.rssMb[1]} MB, ${c.ms} ms`);
        });
      });
      const failed = outcomes.find((o) => !o.out.ok);
      if (failed) {
        r.state = 'failed';
        r.failedNode = failed.n.node;
        r.failedCheck = failed.out.check;
        r.observed = failed.out.observed;
        r.error = failed.out.error;
        await this.save(r);
        await this.event(r, 'rollout-failed', failed.n.node, `rollout paused: ${failed.out.error}`, failed.out.check, failed.out.observed);
        return;
      }
    }
    r.state = 'succeeded';
    await this.save(r);
    await this.markHealthyIfEverywhere(r.module, rev);
    await this.event(r, 'rollout-succeeded', '', `every node runs revision ${r.revision} and is healthy`);
  }

  /** The message that carries `state` to its node, or why it cannot be made (a credentials value missing). */
  private async messageFor(state: ModuleState): Promise<{ message: CoordinatorMessage } | { error: string }> {
    try {
      return { message: this.deps.secrets ? await this.deps.secrets.desiredMessage(state) : { desired: state } };
    } catch (err) {
      return { error: errorMessage(err) };
    }
  }

  /**
   * Sends the node its state (now, before the first await: drive() counts on it) and waits for
   * the health gate. Never throws for node failures.
   */
  private async driveNode(
    r: RolloutRecord, n: RolloutNodeRecord, state: ModuleState, prepared: { message: CoordinatorMessage } | { error: string }, applyEvent: boolean, onSent?: () => void,
  ): Promise<GateOutcome> {
    const { sessions } = this.deps;
    const startMs = Date.now();
    n.phase = 'applying';
    // The node's assignment is durable before its state is sent (drive() writes the batch's
    // first): a restarted coordinator resends a node its stored assignment when the agent
    // reconnects, so an assignment that lagged the send would take the node back to the older
    // revision. The phase is not waited for: a resumed rollout drives every node that is not
    // `healthy` again, `pending` and `applying` alike (and a resend of a state the agent holds
    // is acknowledged without applying it).
    this.background(this.save(r));
    if (applyEvent) this.background(this.event(r, 'node-apply', n.node, `sending revision ${state.revision} (spec ${state.specHash.slice(0, 12)})`));
    if ('error' in prepared) {
      const out = { ok: false, check: 'credentials', observed: prepared.error, error: `${n.node}: cannot deliver the credentials of revision ${state.revision}: ${prepared.error}` };
      n.phase = 'failed';
      n.error = out.error;
      await this.save(r);
      await this.event(r, 'node-failed', n.node, out.error, out.check, out.observed);
      return out;
    }
    this.deps.deliver(n.node, prepared.message);
    onSent?.();

    const out = await new Promise<GateOutcome>((resolve) => {
      let healthySince: number | undefined;
      let lastBad: { check: string; observed: string } | undefined;
      let verifying = false;
      let minTimer: NodeJS.Timeout | undefined;
      const finish = (o: GateOutcome) => {
        clearTimeout(deadline);
        clearTimeout(minTimer);
        this.removeGate(n.node, gate);
        this.onStop.delete(onAbort);
        resolve(o);
      };
      const onAbort = () => finish({ ok: false, check: 'stopped', observed: '', error: 'engine stopped' });
      const markVerifying = () => {
        if (verifying) return;
        verifying = true;
        n.phase = 'verifying';
        this.background(this.save(r).then(() => this.event(r, 'node-verifying', n.node, `waiting for ${state.healthChecks.map((c) => c.name).join(', ')} to pass for ${r.minHealthyTimeMs} ms`)));
      };
      const consider = (m: ModuleHealth | undefined) => {
        if (!m || m.specHash !== state.specHash || m.revision !== state.revision) return;
        markVerifying();
        const now = Date.now();
        if (m.healthy && m.converged) {
          healthySince ??= now;
          if (now - healthySince >= r.minHealthyTimeMs) {
            finish({ ok: true, check: '', observed: '', error: '' });
          } else if (!minTimer) {
            minTimer = setTimeout(() => { minTimer = undefined; consider(sessions.get(n.node)?.health.get(r.module)); }, r.minHealthyTimeMs - (now - healthySince) + 5);
          }
        } else {
          healthySince = undefined;
          const bad = m.checks.find((c) => !c.ok) ?? { name: 'converge', observed: 'containers do not match the desired spec yet' };
          if (!lastBad || lastBad.check !== bad.name || lastBad.observed !== bad.observed) {
            lastBad = { check: bad.name, observed: bad.observed };
            this.background(this.event(r, 'node-unhealthy', n.node, `check ${bad.name} failing`, bad.name, bad.observed));
          }
        }
      };
      const onHealth = (report: { modules: ModuleHealth[] }) => consider(report.modules.find((m) => m.module === r.module));
      const onResult = (res: ApplyResult) => {
        if (res.module !== r.module || res.revision !== state.revision) return;
        if (!res.ok) {
          finish({ ok: false, check: 'apply', observed: res.error, error: `${n.node}: apply of revision ${state.revision} failed: ${res.error}` });
          return;
        }
        this.background(this.event(r, 'node-applied', n.node, res.changed ? `applied: ${res.actions.join('; ')}` : 'already at this revision: nothing to do'));
        markVerifying();
      };
      const onProgress = (p: ProgressEvent) => {
        if (p.module === r.module && p.revision === state.revision) this.background(this.event(r, 'node-progress', n.node, `${p.step}: ${p.message}`));
      };
      const onConnected = () => this.background(this.event(r, 'node-progress', n.node, 'agent connected'));
      const gate: Gate = { health: onHealth, result: onResult, progress: onProgress, connected: onConnected };
      const deadline = setTimeout(() => {
        const connected = Boolean(sessions.get(n.node));
        if (lastBad) {
          finish({ ok: false, check: lastBad.check, observed: lastBad.observed, error: `${n.node}: check ${lastBad.check} not healthy within ${r.healthyDeadlineMs} ms: ${lastBad.observed}` });
        } else if (healthySince !== undefined) {
          finish({ ok: false, check: 'min_healthy_time', observed: 'healthy but not for long enough', error: `${n.node}: not healthy for ${r.minHealthyTimeMs} ms within ${r.healthyDeadlineMs} ms` });
        } else {
          const observed = connected ? `no health report for revision ${state.revision} yet` : 'agent not connected';
          finish({ ok: false, check: 'report', observed, error: `${n.node}: ${observed} within ${r.healthyDeadlineMs} ms` });
        }
      }, r.healthyDeadlineMs);
      this.addGate(n.node, gate);
      if (this.stopped) {
        onAbort();
      } else {
        this.onStop.add(onAbort);
        consider(sessions.get(n.node)?.health.get(r.module));
      }
    });
    if (this.stopped) throw new EngineStoppedError(`engine stopped while ${n.node} was at ${n.phase}`);

    n.phase = out.ok ? 'healthy' : 'failed';
    n.error = out.error;
    await this.save(r);
    if (out.ok) await this.event(r, 'node-healthy', n.node, `healthy for ${r.minHealthyTimeMs} ms (${Date.now() - startMs} ms after apply)`);
    else await this.event(r, 'node-failed', n.node, out.error, out.check, out.observed);
    return out;
  }

  /**
   * The latest revision's number and spec hashes: from memory when the store's latest number
   * is the one this engine last wrote or read (revisions are immutable), else read whole once.
   * At 5,000 nodes a whole read is 16 MB of JSON to gunzip and parse before every rollout.
   */
  private async latestHead(module: string): Promise<RevisionHead | undefined> {
    const n = await this.deps.store.latestRevisionNumber(module);
    if (n === undefined) return undefined;
    const known = this.heads.get(module);
    if (known?.revision === n) return known;
    const latest = await this.deps.store.latestRevision(module);
    if (!latest) return undefined;
    const h = head(latest);
    this.heads.set(module, h);
    return h;
  }

  private async undoRevision(module: string, latest: RevisionRecord | undefined): Promise<RevisionRecord> {
    if (!latest) throw new RolloutError(`${module} has no revision to undo`);
    const revisions = await this.deps.store.listRevisions(module);
    const candidates = revisions.filter((x) => x.revision < latest.revision && x.healthyMs !== null && !sameStates(x.states, latest.states));
    // Never undo across a credentials change: an older revision would bring back a retired password.
    const versions = await this.deps.secrets?.versions();
    const current = (x: RevisionRecord) => !versions || Object.values(x.states).every((st) => (st.secrets ?? []).every((ref) => {
      const v = versions[ref.name];
      return v !== undefined && (ref.file ? ref.version === v.active : v.accepted.includes(ref.version) || ref.version === v.active);
    }));
    const prev = candidates.filter(current).pop();
    if (!prev && candidates.length) throw new RolloutError(`${module}: every earlier healthy revision uses credentials that are no longer current (rotated or imported since); undo cannot go back across a credentials change: roll forward instead`);
    if (!prev) throw new RolloutError(`${module}: no earlier revision was healthy on every node; nothing to undo to`);
    const revision = latest.revision + 1;
    return { module, revision, createdMs: Date.now(), images: prev.images, states: stamp(prev.states, revision), healthyMs: null, sourceRevision: prev.revision };
  }

  /**
   * The stored module records of `module` by node, read only when one of `nodes` has no live
   * report on its session (a live report is what counts; at 5,000 nodes the read is ~25 ms of
   * the main thread, before the first send of a rollout).
   */
  private async storedReports(module: string, nodes: string[]): Promise<Map<string, NodeModuleRecord>> {
    if (nodes.every((n) => this.deps.sessions.get(n)?.health.get(module))) return new Map();
    return new Map((await this.deps.store.listNodeModules({ module })).map((x) => [x.node, x]));
  }

  private async markHealthyIfEverywhere(module: string, rev: RevisionRecord): Promise<void> {
    const reported = await this.storedReports(module, Object.keys(rev.states));
    const all = Object.entries(rev.states).every(([node, st]) => {
      const live = this.deps.sessions.get(node)?.health.get(module);
      const r = live ?? reported.get(node);
      return r && r.specHash === st.specHash && r.healthy;
    });
    if (all) await this.deps.store.markRevisionHealthy(module, rev.revision, Date.now());
  }

  /**
   * Persists the rollout record. Saves are coalesced: while one write of this rollout is in
   * flight, every later save joins the single next write, which stores the record as it is
   * when it starts (so it includes every change made before the caller's save). A batch of
   * thousands of nodes changing phase then writes the record a few times, not once per node
   * (each write encodes the whole record). Writes of a wide rollout are also paced (see
   * `paced`): at thousands of nodes each write encodes hundreds of kilobytes, and one per
   * event-loop turn took a tenth of the coordinator's time during a fan-out. Resolves once a
   * write holding the caller's changes is durable.
   */
  private save(r: RolloutRecord): Promise<void> {
    if (this.stopped) return Promise.reject(new EngineStoppedError(`engine stopped: rollout ${r.id} not saved`));
    let st = this.saves.get(r.id);
    if (!st) this.saves.set(r.id, (st = {}));
    if (st.next) return st.next;
    const state = st;
    const next = (state.inflight ?? Promise.resolve()).catch(() => undefined).then(() => paced(state.startedMs, r.nodes.length)).then(() => {
      state.next = undefined;
      if (this.stopped) throw new EngineStoppedError(`engine stopped: rollout ${r.id} not saved`);
      r.updatedMs = Date.now();
      state.startedMs = r.updatedMs;
      const p = this.deps.store.putRollout(r);
      state.inflight = p;
      return p.finally(() => {
        if (state.inflight !== p) return;
        state.inflight = undefined;
        // Kept while the rollout runs: the next write is paced from this one's start.
        if (!state.next && r.state !== 'running') this.saves.delete(r.id);
      });
    });
    state.next = next;
    return next;
  }

  /** Runs a write the driver does not wait for; a failure is logged (the gate's own writes decide the outcome). */
  private background(p: Promise<unknown>): void {
    p.catch((err: unknown) => {
      if (!this.stopped) this.deps.log.warn({ err: errorMessage(err) }, 'rollout event not written');
    });
  }

  private async event(r: RolloutRecord, kind: EventKind, node: string, message: string, check = '', observed = ''): Promise<void> {
    if (this.stopped) throw new EngineStoppedError(`engine stopped: event ${kind} of ${r.id} not written`);
    const e = await this.deps.store.appendEvent({ rolloutId: r.id, atMs: Date.now(), node, kind, message, check, observed, revision: r.revision });
    if (node && kind.startsWith('node-') && this.wide.has(r.id)) {
      this.digest(r.id, kind, node, message, check);
    } else {
      this.flushDigests(r.id); // the nodes' lines come before the rollout's next one
      this.deps.log.info({ rollout: r.id, node, kind, check }, message);
    }
    this.live.emit(r.id, e, r);
  }

  private digest(rollout: string, kind: EventKind, node: string, message: string, check: string): void {
    const key = `${rollout}\0${kind}`;
    let d = this.digests.get(key);
    if (!d) this.digests.set(key, (d = { rollout, kind, count: 0, nodes: [], message, check }));
    d.count++;
    if (d.nodes.length < DIGEST_NODES) d.nodes.push(node);
    this.digestTimer ??= setTimeout(() => {
      this.digestTimer = undefined;
      this.flushDigests();
    }, 1000);
  }

  /** Logs the digested node events (of one rollout, or all). */
  private flushDigests(rollout?: string): void {
    for (const [key, d] of this.digests) {
      if (rollout !== undefined && d.rollout !== rollout) continue;
      this.digests.delete(key);
      const more = d.count > d.nodes.length ? `, and ${d.count - d.nodes.length} more` : '';
      this.deps.log.info({ rollout: d.rollout, kind: d.kind, nodes: d.count, first: d.nodes, check: d.check },
        `${d.kind} on ${d.count} node${d.count === 1 ? '' : 's'} (${d.nodes.join(', ')}${more}); the first said: ${d.message}`);
    }
    if (!this.digests.size && this.digestTimer) {
      clearTimeout(this.digestTimer);
      this.digestTimer = undefined;
    }
  }
}

/** Nodes named in a digest line of wide-batch node events. */
const DIGEST_NODES = 10;

/**
 * Minimum spacing of two writes of one rollout record, by its width: none below 100 nodes,
 * then 1 ms per 5 nodes, at most 1 s (5,000 nodes and more; that record is ~0.5 MB of JSON,
 * 10-25 ms to encode and write). A write waits out the rest of the spacing since the
 * previous write started; every save made meanwhile joins it. Nothing depends on the stored
 * phases being fresher: a resumed rollout drives every node not `healthy` again.
 */
export function saveSpacingMs(nodes: number): number {
  return nodes < 100 ? 0 : Math.min(1000, Math.floor(nodes / 5));
}

function paced(lastStartMs: number | undefined, nodes: number): Promise<void> | undefined {
  const wait = lastStartMs === undefined ? 0 : lastStartMs + saveSpacingMs(nodes) - Date.now();
  return wait > 0 ? new Promise((resolve) => setTimeout(resolve, wait)) : undefined;
}

/** What deciding "same states as the latest revision" needs of it. */
interface RevisionHead { revision: number; specHashes: Record<string, string> }

function head(r: RevisionRecord): RevisionHead {
  return { revision: r.revision, specHashes: hashesOf(r.states) };
}

function hashesOf(states: Record<string, ModuleState>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of Object.keys(states)) out[n] = states[n]!.specHash;
  return out;
}

function sameHashes(a: Record<string, string>, b: Record<string, ModuleState>): boolean {
  // The same node names (as many, and each of b's in a) with the same hashes; no sorting.
  const kb = Object.keys(b);
  if (Object.keys(a).length !== kb.length) return false;
  for (const k of kb) if (!Object.hasOwn(a, k) || a[k] !== b[k]!.specHash) return false;
  return true;
}

function sameStates(a: Record<string, ModuleState>, b: Record<string, ModuleState>): boolean {
  return sameHashes(hashesOf(a), b);
}

function stamp(states: Record<string, ModuleState>, revision: number): Record<string, ModuleState> {
  const out: Record<string, ModuleState> = {};
  for (const n of Object.keys(states)) {
    const s = states[n]!;
    const copy = { ...s, revision };
    keepSpecText(s, copy); // the revision number is not part of the spec
    out[n] = copy;
  }
  return out;
}
