import { randomInt } from 'node:crypto';
import type { CredentialSpec, CredentialVar } from '../../shared/credentials/index.js';

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const LOWER_ALNUM = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** `n` characters drawn uniformly (crypto.randomInt, no modulo bias) from `alphabet`. */
export function randomString(n: number, alphabet = ALNUM): string {
  let out = '';
  for (let i = 0; i < n; i++) out += alphabet[randomInt(alphabet.length)];
  return out;
}

/** A fresh value for one variable (see ValueKind in the catalog). */
export function generateValue(v: CredentialVar): string {
  switch (v.kind) {
    case 'password': return randomString(32);
    case 'token': return randomString(48);
    case 'user': return `${v.value ?? ''}${randomString(8, LOWER_ALNUM)}`;
    case 'fixed': return v.value ?? '';
  }
}

/**
 * Values for every variable of `spec`. With `previous` (a rotation), secret variables get
 * fresh values and the others keep their previous value (user names, database names and the
 * like do not change when passwords rotate); variables only `previous` has are kept.
 */
export function generateVars(spec: CredentialSpec, previous?: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of spec.vars) {
    const prev = previous?.[v.name];
    out[v.name] = !v.secret && prev !== undefined ? prev : generateValue(v);
  }
  for (const [k, val] of Object.entries(previous ?? {})) if (!(k in out)) out[k] = val;
  return out;
}
