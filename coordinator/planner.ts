import { InputError, type Problem } from '../shared/errors/index.js';
import type { Inventory } from '../shared/inventory/index.js';
import { imageFor } from '../shared/versions/index.js';
import { withSpecHash } from '../shared/plan/hash.js';
import type { ContainerChange, ModuleState, NodePlan, SecretRef } from '../proto/types.js';
import { findCredential, findSecretsInValue, mayReceive, templateRefs } from '../shared/credentials/index.js';
import { registerSecretValues } from '../shared/log/index.js';
import type { ImageResolver } from './images/resolve.js';
import { emptySettings } from './modules/settings-file.js';
import { getModule } from './modules/index.js';
import type { ModuleDefinition, NodeDesired, PlanInputs, SecretVersions } from './modules/types.js';

/** Desired state of one module on every one of its nodes, images pinned by digest. */
export interface DesiredModule {
  module: string;
  /** Logical image -> pinned reference; the same for every node. */
  images: Record<string, string>;
  /** Node name -> desired state, with the revision number computeDesired was given (default 0). */
  states: Record<string, ModuleState>;
  /** Rollout order. */
  order: string[];
}

/**
 * Computes a module's desired state from the inputs, its states numbered `revision`. Pure apart from image resolution
 * (one registry lookup per image, shared by every node). Throws InputError with every
 * problem found (inventory rules for the module, settings, missing versions key) before
 * anything is produced: a plan is all or nothing.
 */
export async function computeDesired(
  def: ModuleDefinition<unknown>, inputs: PlanInputs, resolver: ImageResolver, secrets?: Readonly<Record<string, SecretVersions>>, revision = 0,
): Promise<DesiredModule> {
  const problems: Problem[] = [...def.checkInventory(inputs.inventory)];
  const raw = inputs.settings[def.name] ?? emptySettings('(no settings file)');
  const s = def.settings(raw, inputs.inventory);
  problems.push(...s.problems);
  problems.push(...settingsSecrets(def.name, raw));
  const peers: Record<string, unknown> = {};
  for (const name of def.uses ?? []) {
    const peer = getModule(name);
    const ps = peer.settings(inputs.settings[name] ?? emptySettings('(no settings file)'), inputs.inventory);
    problems.push(...ps.problems);
    peers[name] = ps.settings;
  }
  const tagged: Record<string, string> = {};
  for (const [logical, key] of Object.entries(def.imageKeys)) {
    try {
      tagged[logical] = imageFor(inputs.versions, key.replace(/_image$/, ''));
    } catch (err) {
      if (err instanceof InputError) problems.push(...err.problems);
      else throw err;
    }
  }
  const hosts = def.hosts(inputs.inventory);
  if (hosts.length === 0) problems.push({ file: inputs.inventory.file, line: 1, message: `module ${def.name}: no host in the inventory has its role` });
  // Delivery by role: a module may only bring a credentials file to a host whose role needs it.
  for (const name of def.credentials ?? []) {
    const spec = findCredential(name);
    if (!spec) {
      problems.push({ file: inputs.inventory.file, line: 1, message: `module ${def.name}: unknown credentials "${name}"` });
      continue;
    }
    for (const h of hosts.filter((x) => !mayReceive(spec, x))) {
      problems.push({ file: inputs.inventory.file, line: h.line, field: 'ROLE', message: `module ${def.name} would deliver ${spec.file} to ${h.hostname} (ROLE=${h.role}${h.subrole ? `/${h.subrole}` : ''}), which the credentials policy does not allow` });
    }
    if (secrets && !secrets[name]) problems.push({ file: inputs.inventory.file, line: 1, message: `module ${def.name}: the secret store has no ${spec.file}` });
  }
  if (problems.length) throw new InputError(problems);
  const mine = secrets && def.credentials?.length ? Object.fromEntries(def.credentials.map((n) => [n, secrets[n]!])) : undefined;

  const images: Record<string, string> = {};
  await Promise.all(Object.entries(tagged).map(async ([logical, ref]) => { images[logical] = await resolver.resolve(ref); }));

  const states: Record<string, ModuleState> = {};
  for (const node of hosts) {
    const desired = def.render({
      inventory: inputs.inventory, node, images, settings: s.settings, nodeSettings: s.nodes[node.hostname] ?? {}, peers, ...(mine ? { secrets: mine } : {}),
    });
    // The revision number is not part of the spec hash: a rollout plans its next revision's
    // states directly (no copy of each state to set the number).
    states[node.hostname] = withSpecHash({ ...withCredentials(def, desired, mine), revision });
  }
  return { module: def.name, images, states, order: hosts.map((h) => h.hostname) };
}

/**
 * Adds the SecretRefs of a rendered state: `<name>.env` at the active version for every
 * credentials name of the module, plus a values-only ref for every other version a
 * secret_files template uses. Refs are sorted (stable hashes). Throws when a template uses a
 * secret the module does not declare or a version that is neither active nor accepted.
 */
export function withCredentials(def: ModuleDefinition<unknown>, desired: NodeDesired, secrets: Readonly<Record<string, SecretVersions>> | undefined): NodeDesired {
  const secretFiles = desired.secretFiles ?? [];
  if (!secrets) {
    if (secretFiles.length) throw new Error(`module ${def.name}: rendered credential templates without a secret store`);
    return desired;
  }
  const refs: SecretRef[] = [];
  const have = (name: string, version: number) => refs.some((r) => r.name === name && r.version === version);
  for (const name of def.credentials ?? []) {
    refs.push({ name, version: secrets[name]!.active, file: findCredential(name)!.file });
  }
  for (const f of secretFiles) {
    for (const t of templateRefs(f.template)) {
      const v = secrets[t.name];
      if (!v) throw new Error(`module ${def.name}: template ${f.file} uses ${t.name}, which is not in the module's credentials`);
      if (t.version !== v.active && !v.accepted.includes(t.version)) throw new Error(`module ${def.name}: template ${f.file} uses ${t.name}@${t.version}, which is neither active nor accepted`);
      if (!have(t.name, t.version)) refs.push({ name: t.name, version: t.version, file: '' });
    }
  }
  refs.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.version - b.version || (a.file < b.file ? -1 : a.file > b.file ? 1 : 0)));
  return { ...desired, secrets: refs, secretFiles: [...secretFiles].sort((a, b) => (a.file < b.file ? -1 : 1)) };
}

/** Secret-looking module settings: they would be stored in plan records, so plans refuse them. */
function settingsSecrets(module: string, raw: { file: string; values: Record<string, unknown>; nodes: Record<string, Record<string, unknown>> }): Problem[] {
  const found = [
    ...findSecretsInValue(raw.values, module),
    ...Object.entries(raw.nodes).flatMap(([n, v]) => findSecretsInValue(v, `${module}.nodes.${n}`)),
  ];
  registerSecretValues(found.map((f) => f.match));
  return found.map((f) => ({
    file: raw.file, line: 1, field: f.path,
    message: `looks like a secret (${f.what}): settings end up in plan records; kb generates and delivers credentials (kbctl secrets)`,
  }));
}

/** Checks that every requested node runs the module; throws InputError otherwise. */
export function checkNodeFilter(def: ModuleDefinition<unknown>, inv: Inventory, nodes: string[]): void {
  const hosts = new Set(def.hosts(inv).map((h) => h.hostname));
  const problems: Problem[] = [];
  for (const n of nodes) {
    if (!inv.servers.some((s) => s.hostname === n)) problems.push({ file: inv.file, line: 1, field: 'HOSTNAME', message: `node "${n}" is not in the inventory` });
    else if (!hosts.has(n)) problems.push({ file: inv.file, line: inv.servers.find((s) => s.hostname === n)!.line, field: 'ROLE', message: `node "${n}" does not run module ${def.name}` });
  }
  if (problems.length) throw new InputError(problems);
}

/** What changes on one node when `current` (may be absent) becomes `desired`. */
export function diffNode(node: string, current: ModuleState | undefined, desired: ModuleState, connected: boolean): NodePlan {
  const containers: ContainerChange[] = [];
  const before = new Map((current?.containers ?? []).map((c) => [c.name, c]));
  for (const c of desired.containers) {
    const old = before.get(c.name);
    before.delete(c.name);
    if (!old) {
      containers.push({ name: c.name, action: 'create', fromImage: '', toImage: c.image, reasons: [] });
      continue;
    }
    const reasons: string[] = [];
    if (old.image !== c.image) reasons.push(`image ${old.image} -> ${c.image}`);
    if (JSON.stringify(old.args) !== JSON.stringify(c.args)) reasons.push(`args ${old.args.join(' ')} -> ${c.args.join(' ')}`);
    if (JSON.stringify(old.env) !== JSON.stringify(c.env)) reasons.push('env changed');
    if (JSON.stringify(old.volumes) !== JSON.stringify(c.volumes)) reasons.push('volumes changed');
    if (old.restartPolicy !== c.restartPolicy) reasons.push(`restart ${old.restartPolicy} -> ${c.restartPolicy}`);
    if (old.networkMode !== c.networkMode) reasons.push(`network ${old.networkMode} -> ${c.networkMode}`);
    if (old.entrypoint !== c.entrypoint) reasons.push('entrypoint changed');
    containers.push({ name: c.name, action: reasons.length ? 'replace' : 'unchanged', fromImage: old.image, toImage: c.image, reasons });
  }
  for (const old of before.values()) containers.push({ name: old.name, action: 'remove', fromImage: old.image, toImage: '', reasons: [] });
  const action = !current ? 'create' : current.specHash === desired.specHash ? 'unchanged' : 'update';
  return {
    node, action, currentRevision: current?.revision ?? 0, currentHash: current?.specHash ?? '', desiredHash: desired.specHash, containers, connected,
    credentials: credentialChanges(current, desired),
  };
}

/** "redis.env version 1 -> 2", "redis-server.conf changed" (names and versions only, never values). */
function credentialChanges(current: ModuleState | undefined, desired: ModuleState): string[] {
  const out: string[] = [];
  const envOf = (s: ModuleState | undefined) => new Map((s?.secrets ?? []).filter((r) => r.file).map((r) => [r.file, r.version]));
  const before = envOf(current);
  for (const [file, v] of envOf(desired)) {
    const old = before.get(file);
    if (old === undefined) out.push(`${file} version ${v} (new)`);
    else if (old !== v) out.push(`${file} version ${old} -> ${v}`);
  }
  const tpl = new Map((current?.secretFiles ?? []).map((f) => [f.file, JSON.stringify(f)]));
  for (const f of desired.secretFiles ?? []) {
    const old = tpl.get(f.file);
    if (old === undefined) out.push(`${f.file} (new)`);
    else if (old !== JSON.stringify(f)) out.push(`${f.file} changed`);
  }
  return out;
}
