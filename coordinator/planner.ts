import { InputError, type Problem } from '../shared/errors/index.js';
import type { Inventory } from '../shared/inventory/index.js';
import { imageFor } from '../shared/versions/index.js';
import { withSpecHash } from '../shared/plan/hash.js';
import type { ContainerChange, ModuleState, NodePlan } from '../proto/types.js';
import type { ImageResolver } from './images/resolve.js';
import { emptySettings } from './modules/settings-file.js';
import { getModule } from './modules/index.js';
import type { ModuleDefinition, PlanInputs } from './modules/types.js';

/** Desired state of one module on every one of its nodes, images pinned by digest. */
export interface DesiredModule {
  module: string;
  /** Logical image -> pinned reference; the same for every node. */
  images: Record<string, string>;
  /** Node name -> desired state with revision 0 (stamped when a revision is created). */
  states: Record<string, ModuleState>;
  /** Rollout order. */
  order: string[];
}

/**
 * Computes a module's desired state from the inputs. Pure apart from image resolution
 * (one registry lookup per image, shared by every node). Throws InputError with every
 * problem found (inventory rules for the module, settings, missing versions key) before
 * anything is produced: a plan is all or nothing.
 */
export async function computeDesired(def: ModuleDefinition<unknown>, inputs: PlanInputs, resolver: ImageResolver): Promise<DesiredModule> {
  const problems: Problem[] = [...def.checkInventory(inputs.inventory)];
  const raw = inputs.settings[def.name] ?? emptySettings('(no settings file)');
  const s = def.settings(raw, inputs.inventory);
  problems.push(...s.problems);
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
  if (problems.length) throw new InputError(problems);

  const images: Record<string, string> = {};
  await Promise.all(Object.entries(tagged).map(async ([logical, ref]) => { images[logical] = await resolver.resolve(ref); }));

  const states: Record<string, ModuleState> = {};
  for (const node of hosts) {
    const desired = def.render({ inventory: inputs.inventory, node, images, settings: s.settings, nodeSettings: s.nodes[node.hostname] ?? {}, peers });
    states[node.hostname] = withSpecHash({ ...desired, revision: 0 });
  }
  return { module: def.name, images, states, order: hosts.map((h) => h.hostname) };
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
  };
}
