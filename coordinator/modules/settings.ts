import type { Inventory } from '../../shared/inventory/index.js';
import type { Problem } from '../../shared/errors/index.js';
import type { RawSettings } from './types.js';

export type SettingKind = 'string' | 'port' | 'int' | 'abspath' | 'string[]' | 'bool';

/**
 * Validates a module's raw settings against a small schema and fills defaults.
 * Unknown keys, wrong types and per-node overrides for nodes outside the inventory are
 * problems naming the settings file and key; nothing is half-applied (callers refuse
 * to plan when any problem is returned).
 */
export function checkSettings<S extends object>(
  raw: RawSettings,
  inv: Inventory,
  defaults: S,
  schema: { [K in keyof S]: SettingKind },
): { settings: S; nodes: Record<string, Partial<S>>; problems: Problem[] } {
  const problems: Problem[] = [];
  const settings = { ...defaults };
  const read = (values: Record<string, unknown>, where: string, into: Partial<S>) => {
    for (const [key, value] of Object.entries(values)) {
      if (!(key in schema)) {
        problems.push({ file: raw.file, line: 1, field: where + key, message: `unknown setting (known: ${Object.keys(schema).join(', ')})` });
        continue;
      }
      const kind = schema[key as keyof S];
      const err = checkValue(kind, value);
      if (err) problems.push({ file: raw.file, line: 1, field: where + key, message: err });
      else (into as Record<string, unknown>)[key] = value;
    }
  };
  read(raw.values, '', settings);
  const nodes: Record<string, Partial<S>> = {};
  for (const [node, values] of Object.entries(raw.nodes)) {
    if (!inv.servers.some((s) => s.hostname === node)) {
      problems.push({ file: raw.file, line: 1, field: `nodes.${node}`, message: `node "${node}" is not in ${inv.file}` });
      continue;
    }
    nodes[node] = {};
    read(values, `nodes.${node}.`, nodes[node]);
  }
  return { settings, nodes, problems };
}

function checkValue(kind: SettingKind, v: unknown): string | undefined {
  switch (kind) {
    case 'string': return typeof v === 'string' && v.length > 0 ? undefined : 'must be a non-empty string';
    case 'bool': return typeof v === 'boolean' ? undefined : 'must be true or false';
    case 'int': return Number.isInteger(v) ? undefined : 'must be an integer';
    case 'port': return Number.isInteger(v) && (v as number) > 0 && (v as number) < 65536 ? undefined : 'must be a port number (1-65535)';
    case 'abspath': return typeof v === 'string' && v.startsWith('/') && !v.split('/').includes('..') ? undefined : 'must be an absolute path without ".."';
    case 'string[]': return Array.isArray(v) && v.every((x) => typeof x === 'string') ? undefined : 'must be a list of strings';
  }
}
