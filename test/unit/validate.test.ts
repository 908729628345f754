import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { sharedFixture } from '../helpers/fixtures.js';
import { formatProblem } from '../../shared/errors/index.js';
import { validateFiles } from '../../shared/validate/index.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const realInventory = sharedFixture('servers.tsv');
const fixtures = path.resolve(repoRoot, 'test/fixtures');
const designVersions = path.join(fixtures, 'versions.yaml');

const tmp = mkdtempSync(path.join(tmpdir(), 'kb-validate-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function write(name: string, text: string): string {
  const file = path.join(tmp, name);
  writeFileSync(file, text);
  return file;
}

describe('validateFiles', () => {
  it('finds nothing wrong with the real inventory and the design versions', () => {
    expect(validateFiles({ inventoryFile: realInventory, versionsFile: designVersions })).toEqual([]);
  });

  it('finds nothing wrong with the local inventory and the design versions', () => {
    expect(validateFiles({ inventoryFile: path.join(fixtures, 'servers-local.tsv'), versionsFile: designVersions })).toEqual([]);
  });

  it('reports each key a hosted module needs but versions.yaml lacks, on line 1', () => {
    const versions = write('versions-partial.yaml', [
      '# only some modules',
      'postgres_image: "postgres:16.4-alpine"',
      'haproxy_image: "haproxy:2.8.5"',
      'rabbitmq_image: "rabbitmq:3.13.2-management"',
      'minio_image: "minio/minio:RELEASE.2024-10-02T10-00Z"',
      'mariadb_galera_image: "bitnami/mariadb-galera:10.11.6"',
      'proxysql_image: "proxysql/proxysql:2.6.4"',
      '',
    ].join('\n'));
    expect(validateFiles({ inventoryFile: realInventory, versionsFile: versions }).map(formatProblem)).toEqual([
      `${versions}:1: patroni_image is missing (needed by db-master-01, db-slave-01, db-slave-02, temporal-db-01, analytics-db-01)`,
      `${versions}:1: redis_image is missing (needed by redis-01, redis-02, redis-03)`,
      `${versions}:1: k3s_version is missing (needed by k8s-master-01, k8s-master-02, k8s-master-03, k8s-worker-01, k8s-worker-02, k8s-worker-03, k8s-worker-04, k8s-worker-05)`,
    ]);
  });

  it('only needs the keys of modules the inventory hosts', () => {
    const versions = write('versions-redis.yaml', 'redis_image: "redis:7.2.5-alpine"\n');
    expect(validateFiles({ inventoryFile: path.join(fixtures, 'servers-local.tsv'), versionsFile: versions }).map(formatProblem))
      .toEqual([`${versions}:1: haproxy_image is missing (needed by haproxy-01)`]);
  });

  it('honours the env filter for the cross-check', () => {
    const inventory = write('servers-staging.tsv', [
      'ENV\tIP_PUBLIQUE\tHOSTNAME\tIP_PRIVEE\tFQDN\tUSER_SSH\tPOOL\tROLE\tSUBROLE\tDOCKER_STACK\tCORE\tNOTES',
      'staging\t-\tqueue-01\t10.1.0.1\tq1.kb.test\troot\tqueue-pool\tqueue\trabbitmq\trabbitmq-ha-docker\tyes\tstaging queue',
      '',
    ].join('\n'));
    const versions = write('versions-empty.yaml', '# nothing pinned yet\n');
    expect(validateFiles({ inventoryFile: inventory, versionsFile: versions })).toEqual([]);
    expect(validateFiles({ inventoryFile: inventory, versionsFile: versions, env: 'staging' }).map(formatProblem))
      .toEqual([`${versions}:1: rabbitmq_image is missing (needed by queue-01)`]);
  });

  it('reports missing files on line 0 and both files\' problems sorted by file then line', () => {
    const missing = path.join(tmp, 'nope.tsv');
    const badVersions = path.join(fixtures, 'versions-bad.yaml');
    const out = validateFiles({ inventoryFile: missing, versionsFile: badVersions }).map(formatProblem);
    expect(out[0]).toBe(`${missing}:0: file not found`);
    expect(out.slice(1).map((l) => l.slice(badVersions.length + 1, badVersions.length + 3)))
      .toEqual(['2:', '3:', '4:', '5:', '6:', '7:', '8:', '9:']);

    const badInventory = path.join(fixtures, 'servers-bad.tsv');
    const both = validateFiles({ inventoryFile: badInventory, versionsFile: designVersions }).map(formatProblem);
    expect(both).toHaveLength(11);
    expect(both[0]).toBe(`${badInventory}:3:4: IP_PRIVEE: invalid IPv4 address "10.0.0.300"`);
  });
});
