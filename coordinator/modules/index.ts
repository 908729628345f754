import { UnknownModuleError } from '../../shared/errors/index.js';
import { haproxyModule } from './haproxy.js';
import { redisModule } from './redis.js';
import type { ModuleDefinition } from './types.js';

/** Every module kb knows, in the KeyBuzz install order. */
export const MODULES: readonly ModuleDefinition<any>[] = [redisModule, haproxyModule];

export function getModule(name: string): ModuleDefinition<unknown> {
  const m = MODULES.find((x) => x.name === name);
  if (!m) throw new UnknownModuleError(name, MODULES.map((x) => x.name));
  return m;
}

export type { ModuleDefinition } from './types.js';
