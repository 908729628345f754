import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { SecretRotationInfo } from '../../proto/types.js';
import { findCredential } from '../../shared/credentials/index.js';
import { errorMessage } from '../../shared/errors/index.js';
import { MODULES, type ModuleDefinition } from '../modules/index.js';
import type { PlanInputs } from '../modules/types.js';
import { RolloutError, type RolloutEngine, type RolloutOptions } from '../rollout/engine.js';
import type { EventRecord, RotationPhase, RotationRecord, SecretStateRecord, Store } from '../store/types.js';
import { generateVars } from './generate.js';
import { SecretError, type SecretService } from './service.js';

export interface RotationDeps {
  store: Store;
  secrets: SecretService;
  /** The engine, or how to get the current one (a replica on etcd has one only while it leads). */
  engine: RolloutEngine | (() => RolloutEngine);
  log: Logger;
  inputs: () => PlanInputs;
  /** Modules to consider (default: every module kb knows). */
  modules?: readonly ModuleDefinition<any>[];
}

/** What a rotation subscriber receives: phase/state changes and the events of its rollouts. */
export type RotationUpdate = { info: SecretRotationInfo } | { event: EventRecord };

const PHASES: readonly RotationPhase[] = ['accept', 'switch', 'retire'];

/**
 * `kbctl secrets rotate <name>`: moves every consumer of a secret to a new version through
 * the rollout engine, so that the old version stays valid until every consumer is healthy on
 * the new one:
 *
 *   accept  servers (modules that `verify` the secret) accept old and new; consumers use old
 *   switch  every module that uses the secret gets the new <name>.env (servers still accept both)
 *   retire  servers accept only the new version
 *
 * Each phase is one health-gated rollout per module, in module order, and starts only when
 * the previous phase succeeded on every node. A failed rollout pauses the rotation in its
 * phase (state `failed`, nothing later is touched); running `rotate` again resumes it from
 * that phase. Modules never rolled out are skipped (their first rollout uses the active
 * version). Every step is persisted before it is acted on; `resumeAll` continues a rotation
 * left running by a previous coordinator process. At most one rotation per secret runs.
 */
export class RotationDriver {
  private readonly live = new EventEmitter();
  private readonly running = new Map<string, Promise<void>>();

  constructor(private readonly deps: RotationDeps) {
    this.live.setMaxListeners(0);
  }

  private get modules(): readonly ModuleDefinition<any>[] {
    return this.deps.modules ?? MODULES;
  }

  /** Modules that use `name` (credentials or verifies), and those that verify it. */
  usersOf(name: string): { users: ModuleDefinition<any>[]; verifiers: ModuleDefinition<any>[] } {
    const users = this.modules.filter((m) => (m.credentials ?? []).includes(name) || (m.verifies ?? []).includes(name));
    return { users, verifiers: users.filter((m) => (m.verifies ?? []).includes(name)) };
  }

  subscribe(name: string, fn: (u: RotationUpdate) => void): () => void {
    this.live.on(name, fn);
    return () => this.live.off(name, fn);
  }

  async wait(name: string): Promise<void> {
    await this.running.get(name);
  }

  /**
   * Starts a rotation of `name` (a new version is created), or resumes the one that failed
   * or was left running. Throws SecretError when no module uses the secret or a rotation of it
   * is already being driven.
   */
  async start(name: string, opts: RolloutOptions = {}): Promise<RotationRecord> {
    const spec = findCredential(name);
    if (!spec) throw new SecretError(`unknown secret "${name}"`);
    if (this.running.has(name)) throw new SecretError(`a rotation of ${name} is already running; follow it with \`kbctl secrets list\``);
    const { users } = this.usersOf(name);
    if (users.length === 0) {
      throw new SecretError(`no module kb runs uses ${spec.file} yet, so there is nothing to rotate it on (modules: ${this.modules.map((m) => m.name).join(', ')})`);
    }
    const state = await this.deps.secrets.getState(name);
    if (!state) throw new SecretError(`${spec.file} has no version yet`);
    let rotation: RotationRecord;
    const options = { maxParallel: opts.maxParallel, healthyDeadlineMs: opts.healthyDeadlineMs, minHealthyTimeMs: opts.minHealthyTimeMs };
    if (state.rotation && state.rotation.state !== 'succeeded') {
      rotation = { ...state.rotation, state: 'running', error: '', options, updatedMs: Date.now() };
      this.deps.log.info({ secret: name, from: rotation.from, to: rotation.to, phase: rotation.phase }, `resuming rotation of ${name}`);
    } else {
      const previous = await this.deps.secrets.values(name, state.active);
      const to = await this.deps.secrets.createVersion(name, generateVars(spec, previous), 'rotated');
      const now = Date.now();
      rotation = { from: state.active, to, phase: 'accept', state: 'running', error: '', rollouts: [], options, startedMs: now, updatedMs: now };
      this.deps.log.info({ secret: name, from: state.active, to }, `rotation of ${name} started: version ${state.active} -> ${to}`);
    }
    await this.save(state, rotation);
    this.launch(name, opts);
    return rotation;
  }

  /** Continues every rotation left running by a previous process. Call once at start-up, after the engine resumed. */
  async resumeAll(): Promise<void> {
    for (const s of await this.deps.store.listSecretStates()) {
      if (s.rotation?.state === 'running' && !this.running.has(s.name)) this.launch(s.name, s.rotation.options ?? {});
    }
  }

  private launch(name: string, opts: RolloutOptions): void {
    const p = this.drive(name, opts)
      .catch(async (err: unknown) => {
        this.deps.log.error({ err: errorMessage(err), secret: name }, 'rotation driver failed');
        const s = await this.deps.secrets.getState(name);
        if (s?.rotation) await this.save(s, { ...s.rotation, state: 'failed', error: `internal error: ${errorMessage(err)}` }).catch(() => undefined);
      })
      .finally(() => this.running.delete(name));
    this.running.set(name, p);
  }

  private async drive(name: string, opts: RolloutOptions): Promise<void> {
    const { users, verifiers } = this.usersOf(name);
    for (;;) {
      const s = (await this.deps.secrets.getState(name))!;
      const r = s.rotation!;
      // The state every plan of this phase is computed from.
      const next: SecretStateRecord = r.phase === 'accept' ? { ...s, active: r.from, accepted: [r.from, r.to] }
        : r.phase === 'switch' ? { ...s, active: r.to, accepted: [r.from, r.to] }
          : { ...s, active: r.to, accepted: [r.to] };
      await this.save(next, r);
      const modules = r.phase === 'switch' ? users : verifiers;
      for (const m of modules) {
        const outcome = await this.rollout(name, m, opts);
        if (!outcome.ok) {
          const cur = (await this.deps.secrets.getState(name))!;
          await this.save(cur, { ...cur.rotation!, state: 'failed', error: `phase ${r.phase}: ${outcome.error}` });
          this.deps.log.warn({ secret: name, phase: r.phase, module: m.name }, `rotation of ${name} paused: ${outcome.error}`);
          return;
        }
      }
      const cur = (await this.deps.secrets.getState(name))!;
      const i = PHASES.indexOf(r.phase);
      if (i === PHASES.length - 1) {
        await this.save(cur, { ...cur.rotation!, state: 'succeeded' });
        this.deps.log.info({ secret: name, from: r.from, to: r.to }, `rotation of ${name} done: version ${r.from} is no longer accepted anywhere`);
        return;
      }
      await this.save(cur, { ...cur.rotation!, phase: PHASES[i + 1]! });
    }
  }

  /** One module's rollout for the current phase; waits for it. Skips modules never rolled out or without hosts. */
  private async rollout(name: string, m: ModuleDefinition<any>, opts: RolloutOptions): Promise<{ ok: boolean; error: string }> {
    const { store } = this.deps;
    if (!(await store.latestRevision(m.name))) return { ok: true, error: '' };
    if (m.hosts(this.deps.inputs().inventory).length === 0) return { ok: true, error: '' };
    // A rollout of the module already running (started by hand, or resumed after a restart) is waited for first.
    const active = (await store.listRollouts({ module: m.name, state: 'running' }))[0];
    let rec;
    let engine: RolloutEngine;
    try {
      engine = typeof this.deps.engine === 'function' ? this.deps.engine() : this.deps.engine;
      if (active) await engine.wait(active.id);
      rec = await engine.start(m.name, opts);
    } catch (err) {
      if (err instanceof RolloutError) return { ok: false, error: `${m.name}: ${err.message}` };
      return { ok: false, error: `${m.name}: ${errorMessage(err)}` };
    }
    const unsubscribe = engine.subscribe(rec.id, (e) => this.live.emit(name, { event: e }));
    try {
      const s = (await this.deps.secrets.getState(name))!;
      await this.save(s, { ...s.rotation!, rollouts: [...s.rotation!.rollouts, rec.id] });
      await engine.wait(rec.id);
    } finally {
      unsubscribe();
    }
    const final = await store.getRollout(rec.id);
    if (final?.state === 'succeeded') return { ok: true, error: '' };
    return { ok: false, error: `rollout ${rec.id} of ${m.name} ${final?.state ?? 'vanished'}${final?.error ? `: ${final.error}` : ''}` };
  }

  private async save(state: SecretStateRecord, rotation: RotationRecord): Promise<void> {
    const rec = { ...state, rotation: { ...rotation, updatedMs: Date.now() } };
    await this.deps.secrets.putState(rec);
    this.live.emit(state.name, { info: toRotationInfo(state.name, rec.rotation) });
  }
}

export function toRotationInfo(name: string, r: RotationRecord): SecretRotationInfo {
  return {
    name, fromVersion: r.from, toVersion: r.to, phase: r.phase, state: r.state, error: r.error, rollouts: r.rollouts,
    startedMs: r.startedMs, updatedMs: r.updatedMs,
  };
}
