import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { ApplyResult, CoordinatorMessage, ModuleHealth, ModuleState, SecretValue } from '../proto/types.js';
import { errorMessage } from '../shared/errors/index.js';
import { registerSecretValues, unregisterSecretValues } from '../shared/log/index.js';
import { Credentials, CredentialsDir } from './credentials/index.js';
import { KB_VERSION } from '../shared/version.js';
import type { ContainerDriver } from './driver/types.js';
import { ContainerActions } from './actions.js';
import { FactsCollector } from './facts.js';
import { FollowerManager } from './follower/manager.js';
import { runChecks, type HealthContext } from './health/index.js';
import { containerStatuses, hostPathFor, isConverged, reconcileModule, removeModule, type ReconcileContext } from './reconcile/index.js';
import { AgentSession, type Backoff } from './session.js';
import { DesiredStore, type DesiredFile } from './state.js';
import { pausePoint } from './testing/pause.js';

/**
 * After an apply the coordinator's rollout waits on this node's health reports: instead of
 * the regular interval (5 s by default) the agent re-checks every SETTLE_HEALTH_MS until
 * every module has been healthy and converged for SETTLE_HEALTHY_FOR_MS, or SETTLE_MAX_MS
 * passed. Same checks, same gate; only reported sooner.
 *
 * For the first SETTLE_FAST_FOR_MS after an apply, while not yet healthy, the checks re-run
 * every SETTLE_CHECK_MS; a report that would only say "still not healthy" is held until
 * SETTLE_HEALTH_MS after the last one sent, a report that says "healthy" goes at once. So
 * the rollout learns a node is healthy within ~SETTLE_CHECK_MS, for no more reports.
 */
export const SETTLE_HEALTH_MS = 500;
export const SETTLE_CHECK_MS = 200;
export const SETTLE_FAST_FOR_MS = 10_000;
export const SETTLE_HEALTHY_FOR_MS = 10_000;
export const SETTLE_MAX_MS = 120_000;

/** Public options of `kb-agent run`, with their defaults. */
export interface AgentOptions {
  /** This node's name; must be a HOSTNAME of the inventory. Default: os.hostname(). */
  node: string;
  /** Coordinator addresses HOST:PORT, tried in turn. */
  coordinators: string[];
  /** Where the desired state is kept. Default /var/lib/kb-agent. */
  stateDir: string;
  /** Prefix of every host path (tests). Default '/'. */
  hostRoot?: string;
  /** Several agents share one Docker engine (tests, demos). Default false. */
  sharedEngine?: boolean;
  /** Plaintext gRPC (development, loopback only). Default false. */
  plaintext?: boolean;
  /** Full reconcile of every module this often, coordinator or not. Default 10 000 ms. */
  reconcileIntervalMs?: number;
  /** Until the coordinator says otherwise. Default 5000 ms each. */
  heartbeatIntervalMs?: number;
  healthIntervalMs?: number;
  backoff?: Backoff;
}

/**
 * The agent: keeps this node's containers at the desired state it holds on disk, and
 * keeps a session with a coordinator to receive new states and report health.
 *
 * Guarantees:
 *  - Applies are serialized (one module state at a time, in arrival order).
 *  - A desired state is on disk before it is acknowledged or applied; after a crash the
 *    agent resumes from it without the coordinator.
 *  - A module state whose revision and spec hash equal the held one is acknowledged and
 *    reported `changed: false`, never applied as a new revision.
 *  - Without a coordinator, the agent keeps reconciling (periodically and when a managed
 *    container dies), so containers keep running.
 */
export class Agent {
  private readonly desiredStore: DesiredStore;
  private desired: DesiredFile;
  private readonly ctx: ReconcileContext;
  private readonly facts: FactsCollector;
  private readonly actions: ContainerActions;
  private readonly followers: FollowerManager;
  private readonly healthCtx: HealthContext;
  private session: AgentSession | undefined;
  private queue: Promise<void> = Promise.resolve();
  private timers: NodeJS.Timeout[] = [];
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  /** Settling after an apply (see SETTLE_HEALTH_MS): until when, healthy since when, the next quick report. */
  private settleUntil = 0;
  private settleStartedAt = 0;
  private settleHealthySince: number | undefined;
  /** When the last health report was sent, and whether it said every module was healthy and converged. */
  private lastReport: { atMs: number; healthy: boolean } | undefined;
  private settleTimer: NodeJS.Timeout | undefined;
  private heartbeatMs: number;
  private healthMs: number;
  private stopEvents: (() => void) | undefined;
  private reconcilePending = false;
  private stopped = false;

  constructor(private readonly opts: AgentOptions, private readonly driver: ContainerDriver, private readonly log: Logger) {
    this.desiredStore = new DesiredStore(opts.stateDir);
    this.desired = this.desiredStore.load();
    this.ctx = {
      node: opts.node,
      driver,
      hostRoot: opts.hostRoot ?? '/',
      sharedEngine: Boolean(opts.sharedEngine),
      log,
      pause: (point) => pausePoint(point, log),
      isHeld: (module, container) => this.actions.isHeld(module, container),
      credentials: new Credentials(new CredentialsDir(opts.hostRoot ?? '/'), opts.stateDir),
      onSecretsMissing: (state, reason) => this.requestSecrets(state, reason),
    };
    this.actions = new ContainerActions({ ctx: this.ctx, log, onRestored: () => this.scheduleReconcileAll('container restored') });
    this.followers = new FollowerManager({
      hostPath: (p) => hostPathFor(this.ctx, p), log,
      readAuth: (file) => {
        const vars = this.ctx.credentials!.variablesSync(file);
        if (!vars) return undefined;
        const auth = (v: string | undefined) => (v ? { password: v } : undefined);
        return { redis: auth(vars.get('REDIS_PASSWORD')), sentinel: auth(vars.get('REDIS_SENTINEL_PASSWORD')) };
      },
    });
    this.healthCtx = { ...this.ctx, follower: (module) => this.followers.outcome(module) };
    this.facts = new FactsCollector(opts.hostRoot ?? '/');
    this.heartbeatMs = opts.heartbeatIntervalMs ?? 5000;
    this.healthMs = opts.healthIntervalMs ?? 5000;
  }

  /** Starts reconciling from disk at once, then connects. Resolves once the first local reconcile is queued. */
  async start(credentials: grpc.ChannelCredentials | (() => grpc.ChannelCredentials)): Promise<void> {
    try {
      const v = await this.driver.ping();
      this.facts.setDockerVersion(v.version);
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'docker engine not reachable; will keep retrying in the reconcile loop');
    }
    void this.facts.describeOs();
    const stale = await this.ctx.credentials!.dir.cleanupTemps();
    if (stale) this.log.warn({ count: stale }, 'removed temporary credentials files left by an interrupted write');
    this.scheduleReconcileAll('start');
    this.followers.sync(Object.values(this.desired.modules));
    this.timers.push(setInterval(() => this.scheduleReconcileAll('interval'), this.opts.reconcileIntervalMs ?? 10_000));
    this.stopEvents = this.driver.events((e) => {
      if (e.action === 'die' || e.action === 'destroy' || e.action === 'stop') this.scheduleReconcileAll(`container ${e.action}`);
    }, this.opts.node);
    this.session = new AgentSession({
      coordinators: this.opts.coordinators,
      credentials,
      backoff: this.opts.backoff,
      log: this.log,
      hello: () => ({
        nodeName: this.opts.node,
        agentVersion: KB_VERSION,
        desired: Object.values(this.desired.modules).map((m) => ({ module: m.module, revision: m.revision, specHash: m.specHash })),
      }),
      onConnected: () => this.resetTimers(),
      onDisconnected: (reason) => this.log.warn({ reason }, 'coordinator session lost; containers keep running from the on-disk state'),
      onMessage: (msg) => this.onMessage(msg),
    });
    this.session.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.session?.stop();
    this.stopEvents?.();
    for (const t of this.timers) clearInterval(t);
    clearInterval(this.heartbeatTimer);
    clearInterval(this.healthTimer);
    clearTimeout(this.settleTimer);
    this.actions.clear();
    await this.followers.stopAll();
    await this.queue;
  }

  private onMessage(msg: CoordinatorMessage): void {
    if (msg.settings) {
      if (msg.settings.heartbeatIntervalMs > 0) this.heartbeatMs = msg.settings.heartbeatIntervalMs;
      if (msg.settings.healthIntervalMs > 0) this.healthMs = msg.settings.healthIntervalMs;
      this.resetTimers();
    } else if (msg.desired) {
      this.onDesired(msg.desired, msg.secretValues ?? []);
    } else if (msg.remove) {
      const module = msg.remove.module;
      this.enqueue(async () => {
        const { [module]: _gone, ...rest } = this.desired.modules;
        this.desired = { version: 1, modules: rest };
        this.desiredStore.save(this.desired);
        this.followers.sync(Object.values(this.desired.modules));
        await removeModule(this.ctx, module);
      });
    } else if (msg.containerAction) {
      // Not queued behind applies: a drill measures from the moment the action is done.
      // ContainerActions serializes with reconciles of the same module itself.
      void this.actions.handle(msg.containerAction).then((r) => this.session?.send({ containerActionResult: r }));
    } else if (msg.ping) {
      this.session?.send({ heartbeat: { sentAtMs: Date.now() } });
    }
  }

  private onDesired(state: ModuleState, secretValues: SecretValue[]): void {
    // Values are held only for this apply: they end up in the credentials files and nowhere else.
    const values = new Map(secretValues.map((v) => [`${v.name}@${v.version}`, v.vars]));
    const plain = secretValues.flatMap((v) => Object.values(v.vars));
    registerSecretValues(plain);
    this.enqueue(async () => {
      const held = this.desired.modules[state.module];
      const same = held && held.revision === state.revision && held.specHash === state.specHash;
      if (!same) {
        this.desired = { version: 1, modules: { ...this.desired.modules, [state.module]: state } };
        this.desiredStore.save(this.desired);
        await pausePoint('desired-saved', this.log);
        this.followers.sync(Object.values(this.desired.modules));
      }
      this.session?.send({ ack: { module: state.module, revision: state.revision, specHash: state.specHash } });
      const result: ApplyResult = { module: state.module, revision: state.revision, specHash: state.specHash, ok: true, error: '', changed: false, actions: [] };
      try {
        const r = await reconcileModule({
          ...this.ctx,
          secretValues: values,
          onProgress: (step, message) => this.session?.send({ progress: { module: state.module, revision: state.revision, step, message } }),
        }, state);
        result.changed = !same && r.changed;
        result.actions = r.actions;
        this.log.info({ module: state.module, revision: state.revision, changed: result.changed, actions: r.actions }, same ? 'revision already held' : 'applied');
      } catch (err) {
        result.ok = false;
        result.error = errorMessage(err);
        this.log.error({ module: state.module, revision: state.revision, err: result.error }, 'apply failed');
      }
      values.clear();
      unregisterSecretValues(plain);
      // Credentials files may have changed (a rotation): followers pick up new passwords.
      this.followers.sync(Object.values(this.desired.modules));
      this.session?.send({ result });
      this.settleStartedAt = Date.now();
      this.settleUntil = this.settleStartedAt + SETTLE_MAX_MS;
      this.settleHealthySince = undefined;
      this.lastReport = undefined;
      await this.reportHealth();
    });
  }

  private readonly secretsAsked = new Map<string, number>();

  /** Asks the coordinator to resend a state's credentials (at most every 5 s per module). */
  private requestSecrets(state: ModuleState, reason: string): void {
    const now = Date.now();
    if (now - (this.secretsAsked.get(state.module) ?? 0) < 5000) return;
    if (!this.session?.send({ secretsRequest: { module: state.module, revision: state.revision, specHash: state.specHash, reason } })) return;
    this.secretsAsked.set(state.module, now);
    this.log.info({ module: state.module, revision: state.revision, reason }, 'asked the coordinator to resend credentials');
  }

  /** Runs `fn` after everything queued before it. Errors are logged, never dropped silently. */
  private enqueue(fn: () => Promise<void>): void {
    this.queue = this.queue.then(fn).catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'agent task failed'));
  }

  private scheduleReconcileAll(reason: string): void {
    if (this.reconcilePending || this.stopped) return;
    this.reconcilePending = true;
    this.enqueue(async () => {
      this.reconcilePending = false;
      for (const state of Object.values(this.desired.modules)) {
        try {
          const r = await reconcileModule(this.ctx, state);
          if (r.changed) this.log.info({ module: state.module, revision: state.revision, reason, actions: r.actions }, 'repaired drift');
        } catch (err) {
          this.log.error({ module: state.module, reason, err: errorMessage(err) }, 'reconcile failed');
        }
      }
      this.followers.sync(Object.values(this.desired.modules));
    });
  }

  private resetTimers(): void {
    clearInterval(this.heartbeatTimer);
    clearInterval(this.healthTimer);
    this.heartbeatTimer = setInterval(() => this.session?.send({ heartbeat: { sentAtMs: Date.now() } }), this.heartbeatMs);
    this.healthTimer = setInterval(() => void this.reportHealth(), this.healthMs);
    void this.reportHealth();
  }

  private healthRunning = false;

  /** Runs every module's checks and sends one report. Concurrent calls are coalesced. */
  async reportHealth(): Promise<void> {
    if (this.healthRunning || !this.session?.connected) return;
    this.healthRunning = true;
    try {
      const states = Object.values(this.desired.modules);
      // One container listing per report, shared by the checks, convergence and the statuses
      // (if it fails, each of them asks the engine itself and reports its own error).
      const listed = await this.ctx.driver.list(this.ctx.node).catch(() => undefined);
      const modules: ModuleHealth[] = await Promise.all(states.map(async (s) => {
        const [own, creds, converged] = await Promise.all([
          runChecks(this.healthCtx, s, listed).catch((err: unknown) => [{ name: 'checks', ok: false, observed: errorMessage(err) }]),
          this.ctx.credentials!.checks(s),
          isConverged(this.ctx, s, listed).catch(() => false),
        ]);
        const checks = [...creds, ...own];
        return { module: s.module, revision: s.revision, specHash: s.specHash, healthy: checks.every((c) => c.ok), checks, converged };
      }));
      const healthy = modules.every((m) => m.healthy && m.converged);
      const now = Date.now();
      if (!healthy && now < this.settleUntil && this.lastReport && !this.lastReport.healthy && now - this.lastReport.atMs < SETTLE_HEALTH_MS) {
        this.settle(false); // still not healthy, nothing new to say yet: check again soon
        return;
      }
      const containers = await containerStatuses(this.ctx, states, listed).catch(() => []);
      this.session.send({ health: { facts: this.facts.collect(), modules, containers, observedAtMs: Date.now() } });
      this.lastReport = { atMs: now, healthy };
      this.settle(healthy);
    } finally {
      this.healthRunning = false;
    }
  }

  /** Schedules the next quick report while settling after an apply. */
  private settle(healthy: boolean): void {
    clearTimeout(this.settleTimer);
    const now = Date.now();
    if (this.stopped || now >= this.settleUntil) return;
    this.settleHealthySince = healthy ? this.settleHealthySince ?? now : undefined;
    if (this.settleHealthySince !== undefined && now - this.settleHealthySince >= SETTLE_HEALTHY_FOR_MS) {
      this.settleUntil = 0;
      return;
    }
    const fast = !healthy && now - this.settleStartedAt < SETTLE_FAST_FOR_MS;
    this.settleTimer = setTimeout(() => void this.reportHealth(), Math.min(fast ? SETTLE_CHECK_MS : SETTLE_HEALTH_MS, this.healthMs));
  }
}
