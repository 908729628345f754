import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { sharedFixture } from '../helpers/fixtures.js';
import { InputError, formatProblem } from '../../shared/errors/index.js';
import {
  INVENTORY_COLUMNS, checkInventory, findServer, loadInventory, parseInventory, serversByRole,
} from '../../shared/inventory/index.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const realFile = sharedFixture('servers.tsv');
const fixtures = path.resolve(repoRoot, 'test/fixtures');

const HEADER = INVENTORY_COLUMNS.join('\t');
/** One valid prod row; `over` replaces columns by name. */
function row(over: Partial<Record<(typeof INVENTORY_COLUMNS)[number], string>> = {}): string {
  const base: Record<string, string> = {
    ENV: 'prod', IP_PUBLIQUE: '-', HOSTNAME: 'redis-01', IP_PRIVEE: '10.0.0.123', FQDN: 'redis1.keybuzz.io',
    USER_SSH: 'root', POOL: 'redis-pool', ROLE: 'redis', SUBROLE: 'master', DOCKER_STACK: 'redis-ha-docker',
    CORE: 'yes', NOTES: 'Redis HA master', ...over,
  };
  return INVENTORY_COLUMNS.map((c) => base[c]).join('\t');
}
function lines(text: string, file = 'servers.tsv', env?: string): string[] {
  return checkInventory(text, file, env === undefined ? {} : { env }).problems.map(formatProblem);
}

describe('the real 48-row inventory', () => {
  const inv = loadInventory(realFile);

  it('parses every row with zero problems', () => {
    expect(checkInventory(readFileSync(realFile, 'utf8'), realFile).problems).toEqual([]);
    expect(inv.servers).toHaveLength(48);
    expect(inv.file).toBe(realFile);
  });

  it('finds redis-01 as the one Redis master at 10.0.0.123', () => {
    const masters = serversByRole(inv, 'redis', 'master');
    expect(masters.map((s) => s.hostname)).toEqual(['redis-01']);
    expect(masters[0]).toMatchObject({ privateIp: '10.0.0.123', publicIp: '203.0.113.12', fqdn: 'redis1.keybuzz.io', core: true, line: 13 });
    expect(serversByRole(inv, 'redis').map((s) => s.hostname)).toEqual(['redis-01', 'redis-02', 'redis-03']);
  });

  it('keeps NOTES with accents, quotes and parentheses intact', () => {
    expect(findServer(inv, 'k8s-master-01')?.notes).toBe('Master K3s #1 (api-server, etcd intégré)');
    expect(findServer(inv, 'db-master-01')?.notes).toBe('PostgreSQL 16 + Patroni (conteneur docker "patroni")');
    expect(findServer(inv, 'install-01')?.notes).toBe("Serveur d'orchestration (keybuzzio/Infra, scripts d'install)");
    expect(findServer(inv, 'k8s-worker-05')?.core).toBe(false);
  });

  it('groups hosts by role and subrole in file order', () => {
    expect(serversByRole(inv, 'lb', 'internal-haproxy').map((s) => [s.hostname, s.privateIp]))
      .toEqual([['haproxy-01', '10.0.0.11'], ['haproxy-02', '10.0.0.12']]);
    expect(serversByRole(inv, 'storage').map((s) => s.hostname)).toEqual(['minio-01', 'minio-02', 'minio-03']);
    expect(serversByRole(inv, 'k3s', 'worker')).toHaveLength(5);
    expect(findServer(inv, 'nope')).toBeUndefined();
  });
});

describe('the local test inventory', () => {
  it('has zero problems and uses "-" for no public IP', () => {
    const inv = loadInventory(path.join(fixtures, 'servers-local.tsv'));
    expect(inv.servers.map((s) => `${s.hostname}=${s.privateIp}`)).toEqual([
      'redis-01=127.0.1.1', 'redis-02=127.0.1.2', 'redis-03=127.0.1.3', 'haproxy-01=127.0.1.11', 'install-01=127.0.1.250',
    ]);
    expect(inv.servers.every((s) => s.publicIp === '')).toBe(true);
    expect(serversByRole(inv, 'redis', 'master').map((s) => s.hostname)).toEqual(['redis-01']);
  });
});

describe('file format tolerance', () => {
  it('handles CRLF, a UTF-8 BOM and trailing blank lines', () => {
    const text = `\uFEFF${HEADER}\r\n${row()}\r\n\r\n\r\n`;
    const { inventory, problems } = checkInventory(text, 'servers.tsv');
    expect(problems).toEqual([]);
    expect(inventory.servers).toHaveLength(1);
    expect(inventory.servers[0]).toMatchObject({ env: 'prod', notes: 'Redis HA master', line: 2 });
  });

  it('finds columns by header name in any order and ignores unknown columns', () => {
    const cols = ['HOSTNAME', 'EXTRA', ...INVENTORY_COLUMNS.filter((c) => c !== 'HOSTNAME')];
    const values: Record<string, string> = { HOSTNAME: 'redis-09', EXTRA: 'ignored', IP_PUBLIQUE: '', IP_PRIVEE: '10.0.0.9', CORE: 'no' };
    const line = cols.map((c) => values[c] ?? (c === 'ENV' ? 'prod' : 'x')).join('\t');
    const inv = parseInventory(`${cols.join('\t')}\n${line}\n`, 'servers.tsv');
    expect(inv.servers[0]).toMatchObject({ hostname: 'redis-09', privateIp: '10.0.0.9', core: false, publicIp: '' });
  });

  it('joins tab-separated NOTES back together when NOTES is the last column', () => {
    const inv = parseInventory(`${HEADER}\n${row({ NOTES: 'première\tpartie "x" (y)' })}\n`, 'servers.tsv');
    expect(inv.servers[0]?.notes).toBe('première\tpartie "x" (y)');
  });

  it('filters by ENV (default prod, "*" keeps all)', () => {
    const text = `${HEADER}\n${row()}\n${row({ ENV: 'staging', HOSTNAME: 'redis-02', IP_PRIVEE: '10.0.0.124', SUBROLE: 'replica' })}\n`;
    expect(parseInventory(text, 's').servers.map((s) => s.hostname)).toEqual(['redis-01']);
    expect(parseInventory(text, 's', { env: 'staging' }).servers.map((s) => s.hostname)).toEqual(['redis-02']);
    expect(parseInventory(text, 's', { env: '*' }).servers).toHaveLength(2);
  });

  it('applies duplicate checks only to the rows kept by the env filter', () => {
    const text = `${HEADER}\n${row()}\n${row({ ENV: 'staging' })}\n`;
    expect(lines(text)).toEqual([]);
    expect(lines(text, 'servers.tsv', '*')).toEqual([
      'servers.tsv:3:3: HOSTNAME: duplicate hostname "redis-01" (first on line 2)',
      'servers.tsv:3:4: IP_PRIVEE: duplicate private IP 10.0.0.123 (first on line 2, redis-01)',
      'servers.tsv:3:9: SUBROLE: more than one Redis master: redis-01 (line 2), redis-01 (line 3)',
    ]);
  });
});

describe('problems', () => {
  it('reports every fault of servers-bad.tsv with file:line:column', () => {
    const file = path.join(fixtures, 'servers-bad.tsv');
    const { problems } = checkInventory(readFileSync(file, 'utf8'), 'servers-bad.tsv');
    expect(problems.map(formatProblem)).toEqual([
      'servers-bad.tsv:3:4: IP_PRIVEE: invalid IPv4 address "10.0.0.300"',
      'servers-bad.tsv:4:2: IP_PUBLIQUE: invalid IPv4 address "203.0.113" (leave it empty or \'-\' when there is none)',
      'servers-bad.tsv:5:3: HOSTNAME: "Redis_04" is not a valid DNS label (lowercase letters, digits and \'-\', at most 63 characters)',
      'servers-bad.tsv:6:3: HOSTNAME: duplicate hostname "redis-01" (first on line 2)',
      'servers-bad.tsv:7:4: IP_PRIVEE: duplicate private IP 10.0.0.123 (first on line 2, redis-01)',
      'servers-bad.tsv:7:11: CORE: must be "yes" or "no", found "oui"',
      'servers-bad.tsv:8:9: SUBROLE: more than one Redis master: redis-01 (line 2), redis-x (line 8)',
      'servers-bad.tsv:9:8: ROLE: k8s-worker-05 must never host MinIO (ROLE=storage)',
      'servers-bad.tsv:10: expected 12 columns, found 8',
      'servers-bad.tsv:11:1: ENV: must not be empty',
      'servers-bad.tsv:12:3: HOSTNAME: must not be empty',
    ]);
  });

  it('reports MinIO by SUBROLE on k3s-worker-05 too', () => {
    const text = `${HEADER}\n${row({ HOSTNAME: 'k3s-worker-05', ROLE: 'app', SUBROLE: 'minio' })}\n`;
    expect(lines(text)).toEqual(['servers.tsv:2:9: SUBROLE: k3s-worker-05 must never host MinIO (SUBROLE=minio)']);
  });

  it('reports each missing required column on line 1 and reads no rows', () => {
    const header = INVENTORY_COLUMNS.filter((c) => c !== 'CORE' && c !== 'IP_PRIVEE').join('\t');
    const { inventory, problems } = checkInventory(`${header}\nprod\n`, 'servers.tsv');
    expect(problems.map(formatProblem)).toEqual([
      'servers.tsv:1: missing required column "IP_PRIVEE"',
      'servers.tsv:1: missing required column "CORE"',
    ]);
    expect(inventory.servers).toEqual([]);
  });

  it('reports too many columns when NOTES is not last', () => {
    const cols = [...INVENTORY_COLUMNS.filter((c) => c !== 'NOTES'), 'NOTES', 'EXTRA'];
    const text = `${cols.join('\t')}\n${row()}\tx\ty\n`;
    expect(lines(text)).toEqual(['servers.tsv:2: expected 13 columns, found 14']);
  });

  it('reports an empty file', () => {
    expect(lines('')).toEqual([
      'servers.tsv:1: empty header: expected the columns ENV, IP_PUBLIQUE, HOSTNAME, IP_PRIVEE, FQDN, USER_SSH, POOL, ROLE, SUBROLE, DOCKER_STACK, CORE, NOTES',
    ]);
  });

  it('parseInventory throws one InputError carrying every problem', () => {
    const text = `${HEADER}\n${row({ IP_PRIVEE: '10.0.0' })}\n${row({ HOSTNAME: 'redis-02', IP_PRIVEE: '10.0.0.124', SUBROLE: 'replica', CORE: 'Y' })}\n`;
    const err = (() => {
      try {
        parseInventory(text, 'servers.tsv');
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(InputError);
    expect((err as InputError).problems).toHaveLength(2);
    expect((err as InputError).message).toBe([
      'servers.tsv:2:4: IP_PRIVEE: invalid IPv4 address "10.0.0"',
      'servers.tsv:3:11: CORE: must be "yes" or "no", found "Y"',
    ].join('\n'));
  });

  it('loadInventory names a missing file', () => {
    const missing = path.join(fixtures, 'no-such-servers.tsv');
    expect(() => loadInventory(missing)).toThrow(InputError);
    expect(() => loadInventory(missing)).toThrow(`${missing}:0: file not found`);
  });
});
