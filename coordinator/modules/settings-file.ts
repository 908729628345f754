import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, isMap, isPair, isScalar, type Node } from 'yaml';
import { InputError, type Problem } from '../../shared/errors/index.js';
import type { RawSettings } from './types.js';

/**
 * Reads the module settings file (YAML):
 *
 *   redis:
 *     maxmemory_policy: allkeys-lru
 *     nodes:
 *       redis-02: { extra_args: ["--save", ""] }
 *
 * Returns one RawSettings per module key. Problems (YAML syntax, a top-level key that is
 * not a known module, a module value that is not a map) throw InputError with file:line.
 */
export function loadSettingsFile(file: string, knownModules: readonly string[]): Record<string, RawSettings> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new InputError([{ file, line: 0, message: `cannot read settings file: ${(err as Error).message}` }]);
  }
  return parseSettings(text, file, knownModules);
}

export function parseSettings(text: string, file: string, knownModules: readonly string[]): Record<string, RawSettings> {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  const problems: Problem[] = [];
  const lineOf = (n: Node | null | undefined): number => (n?.range ? lc.linePos(n.range[0]).line : 1);
  for (const e of doc.errors) problems.push({ file, line: e.linePos?.[0]?.line ?? 1, message: e.message.split('\n')[0] ?? e.message });
  if (problems.length) throw new InputError(problems);
  const out: Record<string, RawSettings> = {};
  const root = doc.contents;
  if (root == null || (isScalar(root) && root.value == null)) return out;
  if (!isMap(root)) throw new InputError([{ file, line: lineOf(root), message: 'expected a map of module name -> settings' }]);
  for (const item of root.items) {
    if (!isPair(item)) continue;
    const key = isScalar(item.key) ? String(item.key.value) : '';
    const line = lineOf(item.key as Node);
    if (!knownModules.includes(key)) {
      problems.push({ file, line, field: key, message: `unknown module (known modules: ${knownModules.join(', ')})` });
      continue;
    }
    const value = item.value == null ? {} : (item.value as Node).toJSON();
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      problems.push({ file, line, field: key, message: 'expected a map of settings' });
      continue;
    }
    const { nodes = {}, ...values } = value as Record<string, unknown>;
    if (typeof nodes !== 'object' || nodes === null || Array.isArray(nodes)) {
      problems.push({ file, line, field: `${key}.nodes`, message: 'expected a map of node name -> settings' });
      continue;
    }
    out[key] = { file, values, nodes: nodes as Record<string, Record<string, unknown>> };
  }
  if (problems.length) throw new InputError(problems);
  return out;
}

/** Settings for a module that has no entry in the file. */
export function emptySettings(file: string): RawSettings {
  return { file, values: {}, nodes: {} };
}
