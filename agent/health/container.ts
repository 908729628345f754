import type { ManagedContainer } from '../driver/types.js';
import { dockerNameFor, selectCurrent } from '../reconcile/names.js';
import type { HealthContext } from './types.js';

/** The container standing for logical name `name` of the module (same choice as reconcile makes). */
export function findContainer(
  ctx: Pick<HealthContext, 'node' | 'sharedEngine'>, containers: readonly ManagedContainer[], name: string,
): ManagedContainer | undefined {
  return selectCurrent(containers, name, dockerNameFor(ctx, name));
}
