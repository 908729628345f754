import type { Inventory, Server } from '../../shared/inventory/index.js';
import type { Versions } from '../../shared/versions/index.js';
import type { ModuleState } from '../../proto/types.js';
import type { Problem } from '../../shared/errors/index.js';

/** A module's desired state for one node, before the revision and hash are stamped. */
export type NodeDesired = Omit<ModuleState, 'revision' | 'specHash'>;

/** Settings of one module as read from the settings file (already YAML-parsed). */
export interface RawSettings {
  file: string;
  /** Module-wide keys, e.g. { master_name: 'kb-redis-master' }. */
  values: Record<string, unknown>;
  /** Per-node overrides: node name -> keys. */
  nodes: Record<string, Record<string, unknown>>;
}

export interface RenderInput<S> {
  inventory: Inventory;
  node: Server;
  /** Logical image name -> pinned reference (repo:tag@sha256:...), resolved once per revision. */
  images: Record<string, string>;
  settings: S;
  /** Per-node overrides for this node (already validated). */
  nodeSettings: Partial<S>;
  /** Validated module-wide settings of the modules named in `ModuleDefinition.uses`. */
  peers: Record<string, unknown>;
  /**
   * Versions of the secrets named in the module's `credentials` (absent when the planner
   * runs without a secret store: unit tests, `kbctl plan` of a module without credentials).
   */
  secrets?: Record<string, SecretVersions>;
}

/** Which versions of one secret a plan uses (see coordinator/secrets and docs/security.md). */
export interface SecretVersions {
  /** The version consumers use: written to `<name>.env` on every node of the module. */
  active: number;
  /** Versions servers must accept: one, or two while a rotation is in its accept/switch phases. */
  accepted: number[];
}

/**
 * A module maps inventory + versions + settings to per-node desired state.
 * Implementations are pure: the same inputs always give the same output (the content
 * hash of the output is how kb decides that nothing changed).
 */
export interface ModuleDefinition<S = unknown> {
  name: string;
  description: string;
  /** The nodes that run this module, in rollout order. */
  hosts(inv: Inventory): Server[];
  /** Logical image name -> the versions.yaml key that pins it. */
  imageKeys: Record<string, string>;
  /**
   * Credentials files (catalog names, shared/credentials/catalog.ts) every node of this
   * module receives, at the active version, e.g. ['redis'] -> redis.env. The planner adds the
   * SecretRefs; the catalog's role policy must allow every host (else the plan is refused).
   */
  credentials?: readonly string[];
  /**
   * Secrets this module's servers verify (a password clients present). During a rotation
   * they accept the old and the new version (see RotationRecord); consumers only need
   * `credentials`.
   */
  verifies?: readonly string[];
  /**
   * Modules whose settings this one renders from (e.g. haproxy needs redis' master name
   * and Sentinel port). Their settings are validated with this module's plan.
   */
  uses?: readonly string[];
  /** Validates and fills defaults. Problems name the settings file and key. */
  settings(raw: RawSettings, inv: Inventory): { settings: S; nodes: Record<string, Partial<S>>; problems: Problem[] };
  /** Problems with the inventory for this module (e.g. not exactly one master). */
  checkInventory(inv: Inventory): Problem[];
  render(input: RenderInput<S>): NodeDesired;
}

export interface PlanInputs {
  inventory: Inventory;
  versions: Versions;
  settings: Record<string, RawSettings>;
}
