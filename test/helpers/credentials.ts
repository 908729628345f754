// Credentials helpers for e2e tests: where a node's credentials live, what a real shell gets
// from `source`, what the coordinator's store holds (opened with its key, as the coordinator
// does), and a byte search for secret values in files.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { CREDENTIALS, CREDENTIALS_DIR } from '../../shared/credentials/index.js';
import { open, secretAad } from '../../coordinator/secrets/crypto.js';
import { loadSecretKey } from '../../coordinator/secrets/keyfile.js';
import type { SecretVersionRecord } from '../../coordinator/store/types.js';
import type { Cluster } from './cluster.js';

export function credentialsDirOf(cluster: Cluster, node: string): string {
  return path.join(cluster.hostRoot(node), CREDENTIALS_DIR);
}

/** Runs a real bash: `source FILE`, then prints each variable NUL-terminated. */
export function sourceWithShell(file: string, names: string[], shell = 'bash'): Promise<Record<string, string>> {
  const script = 'set -eu; . "$1"; shift; for v in "$@"; do eval "val=\\${$v}"; printf \'%s\\0\' "$val"; done';
  return new Promise((resolve, reject) => {
    const [cmd, ...pre] = shell === 'busybox' ? ['busybox', 'sh'] : [shell];
    execFile(cmd!, [...pre, '-c', script, 'sh', file, ...names], { encoding: 'buffer' }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${shell} could not source ${file}: ${stderr.toString()}`));
      const parts = stdout.toString('utf8').split('\0');
      resolve(Object.fromEntries(names.map((n, i) => [n, parts[i]!])));
    });
  });
}

/** Every version in the coordinator's store, opened with its key file: `name@version` -> vars. */
export function storeValues(cluster: Cluster): Map<string, Record<string, string>> {
  const dataDir = path.join(cluster.dir, 'coordinator');
  const key = loadSecretKey(dataDir);
  const db = new Database(path.join(dataDir, 'kb.db'), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare('SELECT doc FROM secret_versions').all() as { doc: string }[];
    const out = new Map<string, Record<string, string>>();
    for (const { doc } of rows) {
      const r = JSON.parse(doc) as SecretVersionRecord;
      out.set(`${r.name}@${r.version}`, JSON.parse(open(key, secretAad(r.name, r.version), r.sealed).toString('utf8')) as Record<string, string>);
    }
    return out;
  } finally {
    db.close();
  }
}

/** The values of variables the catalog marks secret (and of unknown imported variables), with where they come from. */
export function secretValuesOf(values: Map<string, Record<string, string>>): { value: string; where: string }[] {
  const out: { value: string; where: string }[] = [];
  for (const [k, vars] of values) {
    const spec = CREDENTIALS.find((c) => c.name === k.split('@')[0]);
    for (const [name, v] of Object.entries(vars)) {
      const secret = spec?.vars.find((x) => x.name === name)?.secret ?? true;
      if (secret && v.length >= 8) out.push({ value: v, where: `${k} ${name}` });
    }
  }
  return out;
}

/** Every regular file under `dir` (recursively), except paths for which `skip` is true. */
export function filesUnder(dir: string, skip: (p: string) => boolean = () => false): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (skip(p)) continue;
    if (e.isDirectory()) out.push(...filesUnder(p, skip));
    else if (e.isFile() && statSync(p).size < 256 * 1024 * 1024) out.push(p);
  }
  return out;
}

/** Where each needle occurs: `file: where` lines (empty when none). Texts are searched as UTF-8 bytes. */
export function findIn(needles: { value: string; where: string }[], sources: { name: string; data: Buffer }[]): string[] {
  const hits: string[] = [];
  for (const s of sources) {
    for (const n of needles) {
      if (s.data.includes(Buffer.from(n.value, 'utf8'))) hits.push(`${s.name}: ${n.where}`);
    }
  }
  return hits;
}

export function readSources(files: string[]): { name: string; data: Buffer }[] {
  return files.map((f) => ({ name: f, data: readFileSync(f) }));
}

/** REDIS_PASSWORD as a client on `node` gets it: `source` of the node's redis.env. */
export async function redisPasswordOn(cluster: Cluster, node: string): Promise<string> {
  return (await sourceWithShell(path.join(credentialsDirOf(cluster, node), 'redis.env'), ['REDIS_PASSWORD'])).REDIS_PASSWORD!;
}
