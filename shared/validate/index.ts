/**
 * `kbctl validate`: checks servers.tsv and versions.yaml, each on its own and against each
 * other, and (with module settings) that none of the three files holds a secret-looking
 * value. Never throws on bad input: every finding is a `Problem` (print with `formatProblem`).
 */
import { existsSync } from 'node:fs';
import { scanInventory, scanSettingsFile, scanVersions } from '../credentials/inputs-scan.js';
import type { Problem } from '../errors/index.js';
import { checkInventoryFile, serversByRole, type Inventory } from '../inventory/index.js';
import { checkVersionsFile, type Versions } from '../versions/index.js';

export interface ValidateInput {
  /** servers.tsv to check; not checked when absent. */
  inventoryFile?: string;
  /** versions.yaml to check; not checked when absent. */
  versionsFile?: string;
  /** Module settings (YAML) to scan for secrets; not checked when absent. */
  settingsFile?: string;
  /** ENV kept from the inventory (default 'prod'; '*' keeps all). */
  env?: string;
}

/**
 * Which versions.yaml keys a module needs, and which inventory rows host it. A module with
 * at least one host needs all of its keys.
 */
export const MODULE_VERSION_KEYS: readonly { module: string; role: string; subrole?: string; keys: readonly string[] }[] = [
  { module: 'postgres', role: 'db', subrole: 'postgres', keys: ['postgres_image', 'patroni_image'] },
  { module: 'redis', role: 'redis', keys: ['redis_image'] },
  { module: 'rabbitmq', role: 'queue', keys: ['rabbitmq_image'] },
  { module: 'minio', role: 'storage', keys: ['minio_image'] },
  { module: 'haproxy', role: 'lb', subrole: 'internal-haproxy', keys: ['haproxy_image'] },
  { module: 'mariadb', role: 'db', subrole: 'mariadb', keys: ['mariadb_galera_image'] },
  { module: 'proxysql', role: 'db_proxy', keys: ['proxysql_image'] },
  { module: 'k3s', role: 'k3s', keys: ['k3s_version'] },
];

/**
 * Reads and checks both files (a file that cannot be read is a problem on line 0), then, when
 * both were read, reports each key a hosted module needs but versions.yaml lacks, on line 1
 * of the versions file: "redis_image is missing (needed by redis-01, redis-02, redis-03)".
 * Problems are grouped by file in argument order (inventory, versions, settings), then
 * sorted by line and column; order is otherwise stable.
 */
export function validateFiles(input: ValidateInput): Problem[] {
  const problems: Problem[] = [];
  let inventory: Inventory | undefined;
  let versions: Versions | undefined;
  if (input.inventoryFile !== undefined) {
    const r = checkInventoryFile(input.inventoryFile, input.env === undefined ? {} : { env: input.env });
    problems.push(...r.problems);
    if (!r.problems.some((p) => p.line === 0)) {
      inventory = r.inventory;
      // Every row, whatever its ENV: a password in a staging row is just as leaked.
      problems.push(...scanInventory(checkInventoryFile(input.inventoryFile, { env: '*' }).inventory));
    }
  }
  if (input.versionsFile !== undefined) {
    const r = checkVersionsFile(input.versionsFile);
    problems.push(...r.problems);
    if (!r.problems.some((p) => p.line === 0)) {
      versions = r.versions;
      problems.push(...scanVersions(r.versions));
    }
  }
  if (input.settingsFile !== undefined) {
    if (!existsSync(input.settingsFile)) problems.push({ file: input.settingsFile, line: 0, message: 'file not found' });
    else problems.push(...scanSettingsFile(input.settingsFile));
  }
  if (inventory && versions) problems.push(...crossCheck(inventory, versions));
  const fileOrder = [input.inventoryFile, input.versionsFile, input.settingsFile];
  const rank = (f: string) => {
    const i = fileOrder.indexOf(f);
    return i < 0 ? fileOrder.length : i;
  };
  return problems.sort(
    (a, b) => rank(a.file) - rank(b.file) || compare(a.file, b.file) || a.line - b.line || (a.column ?? 0) - (b.column ?? 0),
  );
}

/** Keys needed by the modules the inventory hosts but missing from versions.yaml. */
export function crossCheck(inventory: Inventory, versions: Versions): Problem[] {
  const needed = new Map<string, string[]>();
  for (const rule of MODULE_VERSION_KEYS) {
    const hosts = serversByRole(inventory, rule.role, rule.subrole).map((s) => s.hostname);
    if (hosts.length === 0) continue;
    for (const key of rule.keys) needed.set(key, [...(needed.get(key) ?? []), ...hosts]);
  }
  const problems: Problem[] = [];
  for (const [key, hosts] of needed) {
    if (versions.entries.has(key)) continue;
    problems.push({ file: versions.file, line: 1, message: `${key} is missing (needed by ${hosts.join(', ')})` });
  }
  return problems;
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
