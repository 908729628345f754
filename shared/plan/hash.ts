import { createHash } from 'node:crypto';
import type { ContainerSpec, FileSpec, HealthCheck, ModuleState, RedisMasterFollower, SecretFile, SecretRef } from '../../proto/types.js';

/**
 * Canonical JSON: object keys sorted, Buffers as base64, undefined dropped. Two values
 * that are equal field by field always give the same string, whatever the key order.
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(normalize(value));
}

function normalize(value: unknown): unknown {
  if (Buffer.isBuffer(value)) return { $b64: value.toString('base64') };
  if (value instanceof Uint8Array) return { $b64: Buffer.from(value).toString('base64') };
  if (Array.isArray(value)) return value.map(normalize);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = normalize(v);
    }
    return out;
  }
  return value;
}

export function sha256Hex(text: string | Buffer): string {
  return createHash('sha256').update(text).digest('hex');
}

/** Hash of one container's spec: decides whether the agent must replace the container. */
export function containerSpecHash(c: ContainerSpec): string {
  return sha256Hex(canonicalJson(c)).slice(0, 32);
}

/**
 * Stable content hash of a module's desired state on one node. It covers containers,
 * files, health checks, the Redis master follower (only when set, so states without one keep
 * the hash they had before the field existed), and credentials references (secret name,
 * version, target file) and templates, and deliberately not the revision: re-planning the
 * same inputs gives the same hash, which is how a no-op rollout is detected. A new secret
 * version therefore changes the hash (and makes a new revision) although no value is part of
 * the state. Empty credentials lists are left out, so states without credentials hash as
 * they always did.
 */
export function moduleSpecHash(s: {
  module: string; containers: ContainerSpec[]; files: FileSpec[]; healthChecks: HealthCheck[]; redisFollower?: RedisMasterFollower | null;
  secrets?: SecretRef[]; secretFiles?: SecretFile[];
}): string {
  return sha256Hex(canonicalJson({
    module: s.module, containers: s.containers, files: s.files, healthChecks: s.healthChecks,
    ...(s.redisFollower ? { redisFollower: s.redisFollower } : {}),
    ...(s.secrets?.length ? { secrets: s.secrets } : {}),
    ...(s.secretFiles?.length ? { secretFiles: s.secretFiles } : {}),
  }));
}

/** Returns a copy of `state` with `specHash` set from its content. */
export function withSpecHash(state: Omit<ModuleState, 'specHash'> & { specHash?: string }): ModuleState {
  return { ...state, specHash: moduleSpecHash(state) };
}
