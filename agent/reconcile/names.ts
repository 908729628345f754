import { isAbsolute, join, posix } from 'node:path';
import type { ContainerSpec } from '../../proto/types.js';
import { ApplyError } from '../../shared/errors/index.js';
import type { ManagedContainer } from '../driver/types.js';
import type { ReconcileContext } from './types.js';

/** Engine name of a container: `${node}_${logicalName}` on a shared engine, else `logicalName`. */
export function dockerNameFor(ctx: Pick<ReconcileContext, 'node' | 'sharedEngine'>, logicalName: string): string {
  return ctx.sharedEngine ? `${ctx.node}_${logicalName}` : logicalName;
}

/**
 * Real path of host path `p` under `ctx.hostRoot`. Throws `ApplyError` when `p` is not
 * absolute or contains '..' (it could otherwise escape the root).
 */
export function hostPathFor(ctx: Pick<ReconcileContext, 'hostRoot'>, p: string): string {
  if (!isAbsolute(p) || !p.startsWith('/') || p.split('/').includes('..')) {
    throw new ApplyError(`host path "${p}" must be absolute and must not contain ".."`);
  }
  return join(ctx.hostRoot, posix.normalize(p));
}

/** Containers in ascending `order`; equal orders keep their list order. */
export function byOrder(specs: readonly ContainerSpec[]): ContainerSpec[] {
  return specs.map((s, i) => ({ s, i })).sort((a, b) => a.s.order - b.s.order || a.i - b.i).map((x) => x.s);
}

/**
 * The one existing container that stands for desired container `logicalName`: the one with
 * the expected engine name if any, else the first with that logical name. Others with the
 * same logical name are duplicates (left by a crash or a sharedEngine change) that prune removes.
 */
export function selectCurrent(
  observed: readonly ManagedContainer[], logicalName: string, dockerName: string,
): ManagedContainer | undefined {
  const same = observed.filter((c) => c.logicalName === logicalName);
  return same.find((c) => c.dockerName === dockerName) ?? same[0];
}

/** Containers of `module` among those listed for this node. */
export function ofModule(observed: readonly ManagedContainer[], module: string): ManagedContainer[] {
  return observed.filter((c) => c.module === module);
}
