/**
 * `kbctl validate`'s secret scan of servers.tsv, versions.yaml and module settings: a
 * Problem (file:line, field) per secret-looking value, never quoting the value.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, isMap, isPair, isScalar, isSeq, parseDocument, type Node } from 'yaml';
import type { Problem } from '../errors/index.js';
import type { Inventory, Server } from '../inventory/index.js';
import type { Versions } from '../versions/index.js';
import { registerSecretValues } from '../log/scrub.js';
import { findSecretLooking, findSecretsInValue, isSecretKey, type SecretMatch } from './scan.js';

/** Scans `text`; a match is registered with the scrubber so no output of this process prints it. */
function check(text: string): string | undefined {
  const m: SecretMatch | undefined = findSecretLooking(text);
  if (!m) return undefined;
  registerSecretValues([m.match, text]);
  return m.what;
}

const HINT = 'credentials belong in kb\'s secret store (kbctl secrets), never in this file';

const SERVER_FIELDS: readonly (keyof Server & string)[] = ['env', 'publicIp', 'hostname', 'privateIp', 'fqdn', 'userSsh', 'pool', 'role', 'subrole', 'dockerStack', 'notes'];
const COLUMN: Record<string, string> = {
  env: 'ENV', publicIp: 'IP_PUBLIQUE', hostname: 'HOSTNAME', privateIp: 'IP_PRIVEE', fqdn: 'FQDN', userSsh: 'USER_SSH',
  pool: 'POOL', role: 'ROLE', subrole: 'SUBROLE', dockerStack: 'DOCKER_STACK', notes: 'NOTES',
};

/** Secret-looking values in any column of servers.tsv. */
export function scanInventory(inv: Inventory): Problem[] {
  const problems: Problem[] = [];
  for (const s of inv.servers) {
    for (const f of SERVER_FIELDS) {
      const what = check(String(s[f]));
      if (what) problems.push({ file: inv.file, line: s.line, field: COLUMN[f], message: `looks like a secret (${what}); ${HINT}` });
    }
  }
  return problems;
}

/** Secret-looking values (or trailing comments) in versions.yaml. */
export function scanVersions(v: Versions): Problem[] {
  const problems: Problem[] = [];
  for (const e of v.entries.values()) {
    const what = check(e.value) ?? (e.comment ? check(e.comment) : undefined);
    if (what) problems.push({ file: v.file, line: e.line, field: e.key, message: `looks like a secret (${what}); ${HINT}` });
  }
  return problems;
}

/**
 * Secret-looking entries of a module settings file (YAML): keys that name a secret, values
 * that look like one, and `["--requirepass", "..."]` in argument lists. Lines come from the
 * YAML nodes. A file that cannot be read or parsed gives no findings here (the settings
 * loader reports those).
 */
export function scanSettingsText(text: string, file: string): Problem[] {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false });
  if (doc.errors.length) return [];
  const problems: Problem[] = [];
  const lineOf = (n: Node | null | undefined): number => (n?.range ? lc.linePos(n.range[0]).line : 1);
  const walk = (node: unknown, path: string): void => {
    if (isMap(node)) {
      for (const item of node.items) {
        if (!isPair(item)) continue;
        const key = isScalar(item.key) ? String(item.key.value) : '';
        const p = path ? `${path}.${key}` : key;
        const v = item.value as Node | null;
        const plain = v && isScalar(v) ? v.value : undefined;
        if (isSecretKey(key) && v != null && plain !== '' && plain !== null && typeof plain !== 'boolean') {
          registerSecretValues([String(plain ?? '')]);
          problems.push({ file, line: lineOf(item.key as Node), field: p, message: `looks like a secret (a credential setting); ${HINT}` });
          continue;
        }
        walk(v, p);
      }
    } else if (isSeq(node)) {
      const plain = node.toJSON() as unknown[];
      const findings = findSecretsInValue(plain, path);
      for (const f of findings) {
        registerSecretValues([f.match]);
        const idx = /\[(\d+)\][^[]*$/.exec(f.path);
        const item = idx ? node.items[Number(idx[1])] : undefined;
        problems.push({ file, line: lineOf((item ?? node) as Node), field: f.path, message: `looks like a secret (${f.what}); ${HINT}` });
      }
    } else if (isScalar(node) && typeof node.value === 'string') {
      const what = check(node.value);
      if (what) problems.push({ file, line: lineOf(node), field: path, message: `looks like a secret (${what}); ${HINT}` });
    }
  };
  walk(doc.contents, '');
  return problems;
}

export function scanSettingsFile(file: string): Problem[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return scanSettingsText(text, file);
}
