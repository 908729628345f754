/**
 * Credential templates: configuration files that need a secret (a redis.conf fragment with
 * `masterauth`, an ACL line with password hashes) are described by a template that holds
 * only references, never values. The coordinator puts templates in plans (they are part of
 * the spec hash); the agent renders them with the values it receives for that apply.
 *
 * Syntax: `{{FN NAME@VERSION VAR}}`, e.g. `{{redis redis@2 REDIS_PASSWORD}}`, where FN is
 *  - `raw`: the value as is;
 *  - `shell`: double-quoted for a POSIX shell (see envfile.ts);
 *  - `redis`: double-quoted for redis.conf / sentinel.conf (`\\`, `"` and control
 *    characters escaped, as redis's own config parser reads them);
 *  - `sha256`: lowercase hex SHA-256 of the value (Redis ACL `#<hash>` passwords).
 * `{{` not followed by a valid reference is an error, so a typo never ships a literal.
 */
import { createHash } from 'node:crypto';
import { shellDoubleQuote } from './envfile.js';

export const TEMPLATE_FUNCTIONS = ['raw', 'shell', 'redis', 'sha256'] as const;
export type TemplateFunction = (typeof TEMPLATE_FUNCTIONS)[number];

export interface TemplateRef { fn: TemplateFunction; name: string; version: number; variable: string }

const TOKEN = /\{\{\s*([a-z0-9]+)\s+([a-z][a-z0-9-]*)@(\d+)\s+([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/g;

/** Thrown when a template is malformed or refers to a value that was not supplied. */
export class TemplateError extends Error {
  override name = 'TemplateError';
}

/** Every reference in `template`, in order. Throws TemplateError on a malformed one. */
export function templateRefs(template: string): TemplateRef[] {
  const refs: TemplateRef[] = [];
  const rest = template.replace(TOKEN, (_m, fn: string, name: string, version: string, variable: string) => {
    if (!(TEMPLATE_FUNCTIONS as readonly string[]).includes(fn)) throw new TemplateError(`unknown template function "${fn}" (known: ${TEMPLATE_FUNCTIONS.join(', ')})`);
    refs.push({ fn: fn as TemplateFunction, name, version: Number(version), variable });
    return '';
  });
  const stray = rest.indexOf('{{');
  if (stray >= 0) throw new TemplateError(`malformed reference at "${rest.slice(stray, stray + 40).split('\n')[0]}" (expected {{fn name@version VAR}})`);
  return refs;
}

/**
 * Renders `template`; `lookup(name, version, variable)` returns the value or undefined.
 * Throws TemplateError naming the missing reference (never a value).
 */
export function renderTemplate(template: string, lookup: (name: string, version: number, variable: string) => string | undefined): string {
  templateRefs(template);
  return template.replace(TOKEN, (_m, fn: string, name: string, version: string, variable: string) => {
    const v = lookup(name, Number(version), variable);
    if (v === undefined) throw new TemplateError(`no value for ${name}@${version} ${variable}`);
    return applyFn(fn as TemplateFunction, v);
  });
}

function applyFn(fn: TemplateFunction, v: string): string {
  switch (fn) {
    case 'raw': return v;
    case 'shell': return shellDoubleQuote(v);
    case 'redis': return redisQuote(v);
    case 'sha256': return createHash('sha256').update(v, 'utf8').digest('hex');
  }
}

/** A redis.conf double-quoted string: `\` and `"` escaped, control characters as \xHH. */
export function redisQuote(v: string): string {
  let out = '"';
  for (const ch of v) {
    const code = ch.codePointAt(0)!;
    if (ch === '\\' || ch === '"') out += `\\${ch}`;
    else if (code < 0x20 || code === 0x7f) out += `\\x${code.toString(16).padStart(2, '0')}`;
    else out += ch;
  }
  return `${out}"`;
}
