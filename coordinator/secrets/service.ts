import type { Logger } from 'pino';
import type {
  CoordinatorMessage, ImportSecretResult, ImportedSecret, ModuleState, SecretValue, SecretVersionInfo,
} from '../../proto/types.js';
import { CREDENTIALS, checkSecretValue, findCredential, VAR_NAME, type CredentialSpec } from '../../shared/credentials/index.js';
import { InputError, KbError, type Problem } from '../../shared/errors/index.js';
import { registerSecretValues } from '../../shared/log/index.js';
import type { SecretVersions } from '../modules/types.js';
import type { RevisionRecord, SecretSource, SecretStateRecord, SecretVersionRecord, Store } from '../store/types.js';
import { keyId, open, seal, secretAad } from './crypto.js';
import { generateVars } from './generate.js';

/** Thrown when a secret operation is refused (unknown name, version in use, ...). */
export class SecretError extends KbError {
  override name = 'SecretError';
}

/**
 * The coordinator's secret store: one record per version of each credentials file of the
 * catalog, values sealed with AES-256-GCM (coordinator/secrets/crypto.ts) under the key file
 * of the data directory. Values exist in plain form only in this process's memory (opened on
 * demand, kept in a cache, registered with the log scrubber) and inside the session message
 * that carries a desired state to the one node that applies it.
 *
 * Mutations (ensure, create, import, state changes) are serialized by an internal queue.
 */
export class SecretService {
  private readonly cache = new Map<string, Record<string, string>>();
  /** Versions being opened (read from the store and unsealed), by `name@version`. */
  private readonly opening = new Map<string, Promise<Record<string, string>>>();
  private tail: Promise<unknown> = Promise.resolve();
  private readonly kid: string;

  constructor(private readonly store: Store, private readonly key: Buffer, private readonly log: Logger) {
    this.kid = keyId(key);
  }

  /** Runs `fn` after every mutation queued before it. */
  serialized<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn, fn);
    this.tail = p.catch(() => undefined);
    return p;
  }

  /**
   * Generates version 1 of every catalog secret that has none (install-01 holds all of them).
   * Idempotent. Logs "credentials for X generated", never values.
   */
  ensureAll(): Promise<void> {
    return this.serialized(async () => {
      for (const spec of CREDENTIALS) {
        if (await this.store.getSecretState(spec.name)) continue;
        const version = await this.createVersionLocked(spec, generateVars(spec), 'generated');
        await this.store.putSecretState({ name: spec.name, active: version, accepted: [version], rotation: null, updatedMs: Date.now() });
        this.log.info({ secret: spec.name, version }, `credentials for ${spec.name} generated (${spec.file} version ${version})`);
      }
    });
  }

  /** Active and accepted versions of every secret, for the planner. */
  async versions(): Promise<Record<string, SecretVersions>> {
    const out: Record<string, SecretVersions> = {};
    for (const s of await this.store.listSecretStates()) out[s.name] = { active: s.active, accepted: [...s.accepted] };
    return out;
  }

  getState(name: string): Promise<SecretStateRecord | undefined> {
    return this.store.getSecretState(name);
  }

  putState(s: SecretStateRecord): Promise<void> {
    return this.store.putSecretState({ ...s, updatedMs: Date.now() });
  }

  /** Redis and Sentinel credentials of the active redis.env version (the coordinator's own Redis clients: drills). */
  async redisAuth(): Promise<{ redis?: { password: string }; sentinel?: { password: string } }> {
    const st = await this.store.getSecretState('redis');
    if (!st) return {};
    const v = await this.values('redis', st.active);
    return {
      redis: v.REDIS_PASSWORD ? { password: v.REDIS_PASSWORD } : undefined,
      sentinel: v.REDIS_SENTINEL_PASSWORD ? { password: v.REDIS_SENTINEL_PASSWORD } : undefined,
    };
  }

  /** The variables of one version (opened from the store; cached). Throws SecretError when absent. */
  values(name: string, version: number): Promise<Record<string, string>> {
    const k = `${name}@${version}`;
    const hit = this.cache.get(k);
    if (hit) return Promise.resolve(hit);
    // Asked for by every node of a batch at once (a cold coordinator's first rollout): the
    // store is read and the version opened once, not once per node.
    let opening = this.opening.get(k);
    if (!opening) {
      opening = this.openVersion(name, version, k).finally(() => this.opening.delete(k));
      this.opening.set(k, opening);
    }
    return opening;
  }

  private async openVersion(name: string, version: number, k: string): Promise<Record<string, string>> {
    const rec = (await this.store.listSecretVersions(name)).find((r) => r.version === version);
    if (!rec) throw new SecretError(`secret ${name} has no version ${version}`);
    if (rec.keyId !== this.kid) throw new SecretError(`secret ${name} version ${version} was sealed with key ${rec.keyId}, but ${this.kid} is loaded: wrong secrets.key for this store`);
    const vars = JSON.parse(open(this.key, secretAad(name, version), rec.sealed).toString('utf8')) as Record<string, string>;
    this.register(name, vars);
    this.cache.set(k, vars);
    return vars;
  }

  /**
   * The session message that carries `state` to its node: the state itself (references only)
   * and the values of every secret version it references.
   */
  async desiredMessage(state: ModuleState): Promise<CoordinatorMessage> {
    const refs = state.secrets ?? [];
    if (refs.length === 0) return { desired: state };
    const seen = new Set<string>();
    const secretValues: SecretValue[] = [];
    for (const r of refs) {
      const k = `${r.name}@${r.version}`;
      if (seen.has(k)) continue;
      seen.add(k);
      secretValues.push({ name: r.name, version: r.version, vars: await this.values(r.name, r.version) });
    }
    return { desired: state, secretValues };
  }

  /** Creates the next version of `name` with `vars` (checked first). Returns its number. */
  createVersion(name: string, vars: Record<string, string>, source: SecretSource): Promise<number> {
    return this.serialized(() => this.createVersionLocked(specOf(name), vars, source));
  }

  private async createVersionLocked(spec: CredentialSpec, vars: Record<string, string>, source: SecretSource): Promise<number> {
    const problems = checkVars(spec, vars, `${spec.file}`);
    if (problems.length) throw new InputError(problems);
    const existing = await this.store.listSecretVersions(spec.name);
    const version = Math.max(0, ...existing.map((r) => r.version)) + 1;
    const order = [...spec.vars.map((v) => v.name).filter((n) => n in vars), ...Object.keys(vars).filter((n) => !spec.vars.some((v) => v.name === n)).sort()];
    const ordered = Object.fromEntries(order.map((n) => [n, vars[n]!]));
    const rec: SecretVersionRecord = {
      name: spec.name, version, createdMs: Date.now(), source, varNames: order,
      sealed: seal(this.key, secretAad(spec.name, version), Buffer.from(JSON.stringify(ordered))), keyId: this.kid,
    };
    await this.store.putSecretVersion(rec);
    this.register(spec.name, ordered);
    this.cache.set(`${spec.name}@${version}`, ordered);
    return version;
  }

  /**
   * Adopts credentials files of an existing installation (`kbctl secrets import DIR`).
   * Everything is checked before anything is written (nothing half-applied). A file equal to
   * the active version is `unchanged`. Otherwise a new version becomes active, unless the
   * active version is already delivered to a node: then the import is refused (a running
   * service would lose its password) unless `force` (the operator then rolls the modules out).
   */
  importSecrets(items: ImportedSecret[], opts: { force: boolean; dryRun: boolean }): Promise<ImportSecretResult[]> {
    return this.serialized(async () => {
      const problems: Problem[] = [];
      const names = new Set<string>();
      for (const it of items) {
        const spec = findCredential(it.name);
        const where = it.sourceFile || `${it.name}.env`;
        if (!spec) {
          problems.push({ file: where, line: 0, message: `unknown credentials file (known: ${CREDENTIALS.map((c) => c.file).join(', ')})` });
          continue;
        }
        if (names.has(it.name)) problems.push({ file: where, line: 0, message: `${spec.file} given twice` });
        names.add(it.name);
        problems.push(...checkVars(spec, it.vars, where));
      }
      if (problems.length) throw new InputError(problems);
      const holders = await this.holders();
      const plan: { it: ImportedSecret; spec: CredentialSpec; state: SecretStateRecord | undefined; same: boolean }[] = [];
      for (const it of items) {
        const spec = findCredential(it.name)!;
        const state = await this.store.getSecretState(spec.name);
        const current = state ? await this.values(spec.name, state.active) : undefined;
        const same = current !== undefined && sameVars(current, it.vars);
        if (!same && state && !opts.force) {
          if (state.rotation?.state === 'running' || state.rotation?.state === 'failed') {
            throw new SecretError(`${spec.file}: a rotation (${state.rotation.from} -> ${state.rotation.to}) is in progress; finish it first (kbctl secrets rotate ${spec.name})`);
          }
          const held = holders.get(`${spec.name}@${state.active}`);
          if (held?.nodes.size || held?.pending.size) {
            throw new SecretError(`${spec.file}: version ${state.active} is in use on ${[...(held.nodes.size ? held.nodes : held.pending)].join(', ')}; importing would switch running services to other credentials without a rotation. Use \`kbctl secrets rotate ${spec.name}\`, or --force to adopt the file anyway and roll the modules out`);
          }
        }
        plan.push({ it, spec, state, same });
      }
      const results: ImportSecretResult[] = [];
      for (const { it, spec, state, same } of plan) {
        if (same) {
          results.push({ name: spec.name, action: 'unchanged', version: state!.active, message: `${spec.file} equals version ${state!.active}` });
          continue;
        }
        if (opts.dryRun) {
          results.push({ name: spec.name, action: 'would-create', version: 0, message: `${spec.file} would become the active version` });
          continue;
        }
        const version = await this.createVersionLocked(spec, it.vars, 'imported');
        await this.store.putSecretState({ name: spec.name, active: version, accepted: [version], rotation: state?.rotation ?? null, updatedMs: Date.now() });
        this.log.info({ secret: spec.name, version, file: it.sourceFile }, `credentials for ${spec.name} imported (${spec.file} version ${version})`);
        results.push({ name: spec.name, action: 'created', version, message: `${spec.file} imported as version ${version}${state ? ` (was ${state.active}); roll out the modules that use it` : ''}` });
      }
      return results;
    });
  }

  /** Every version with its state and the nodes that hold it. Never a value. */
  async list(): Promise<SecretVersionInfo[]> {
    const holders = await this.holders();
    const states = new Map((await this.store.listSecretStates()).map((s) => [s.name, s]));
    return (await this.store.listSecretVersions()).map((r) => {
      const st = states.get(r.name);
      const state = !st ? 'retired'
        : st.active === r.version ? 'active'
          : st.rotation?.state !== 'succeeded' && st.rotation?.to === r.version ? 'next'
            : st.accepted.includes(r.version) ? 'accepted' : 'retired';
      const h = holders.get(`${r.name}@${r.version}`);
      return {
        name: r.name, file: findCredential(r.name)?.file ?? `${r.name}.env`, version: r.version, state, source: r.source, createdMs: r.createdMs,
        nodes: [...(h?.nodes ?? [])].sort(), varNames: r.varNames, pendingNodes: [...(h?.pending ?? [])].sort(),
      };
    });
  }

  /**
   * Which nodes hold which version as a file: a node holds name@version when the state it
   * last reported converged for a module has that env file; `pending` when it is assigned
   * such a state but has not reported it converged yet.
   */
  async holders(): Promise<Map<string, { nodes: Set<string>; pending: Set<string> }>> {
    const out = new Map<string, { nodes: Set<string>; pending: Set<string> }>();
    const entry = (k: string) => {
      let e = out.get(k);
      if (!e) out.set(k, (e = { nodes: new Set(), pending: new Set() }));
      return e;
    };
    const revs = new Map<string, RevisionRecord | undefined>();
    const rev = async (module: string, revision: number) => {
      const k = `${module}@${revision}`;
      if (!revs.has(k)) revs.set(k, await this.store.getRevision(module, revision));
      return revs.get(k);
    };
    const reported = await this.store.listNodeModules();
    for (const r of reported) {
      if (!r.converged) continue;
      const st = (await rev(r.module, r.revision))?.states[r.node];
      if (!st || st.specHash !== r.specHash) continue;
      for (const ref of st.secrets ?? []) if (ref.file) entry(`${ref.name}@${ref.version}`).nodes.add(r.node);
    }
    for (const a of await this.store.listAssignments()) {
      const rep = reported.find((x) => x.node === a.node && x.module === a.module);
      if (rep && rep.revision === a.revision && rep.converged) continue;
      const st = (await rev(a.module, a.revision))?.states[a.node];
      for (const ref of st?.secrets ?? []) if (ref.file) entry(`${ref.name}@${ref.version}`).pending.add(a.node);
    }
    return out;
  }

  private register(name: string, vars: Record<string, string>): void {
    const spec = findCredential(name);
    // Every value of a secret variable, and any imported variable the catalog does not know.
    registerSecretValues(Object.entries(vars).filter(([k]) => spec?.vars.find((v) => v.name === k)?.secret ?? true).map(([, v]) => v));
  }
}

function specOf(name: string): CredentialSpec {
  const spec = findCredential(name);
  if (!spec) throw new SecretError(`unknown secret "${name}" (known: ${CREDENTIALS.map((c) => c.name).join(', ')})`);
  return spec;
}

/** Problems with a set of variables for `spec` (names, values, required secret variables). Never quotes a value. */
export function checkVars(spec: CredentialSpec, vars: Readonly<Record<string, string>>, file: string): Problem[] {
  const problems: Problem[] = [];
  for (const [k, v] of Object.entries(vars)) {
    if (!VAR_NAME.test(k)) problems.push({ file, line: 0, field: k, message: 'invalid variable name' });
    const bad = checkSecretValue(v);
    if (bad) problems.push({ file, line: 0, field: k, message: `value ${bad}: credentials values must be single-line` });
  }
  for (const v of spec.vars) {
    if (!(v.name in vars)) problems.push({ file, line: 0, field: v.name, message: `missing (${spec.file} needs ${spec.vars.map((x) => x.name).join(', ')})` });
    else if (v.secret && vars[v.name] === '') problems.push({ file, line: 0, field: v.name, message: 'empty: a secret must have a value' });
  }
  return problems;
}

function sameVars(a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}
