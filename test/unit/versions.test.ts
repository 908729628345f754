import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { InputError, formatProblem } from '../../shared/errors/index.js';
import {
  checkVersions, imageFor, loadVersions, parseVersions, shellExports, splitImageRef,
} from '../../shared/versions/index.js';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
const fixtures = path.resolve(repoRoot, 'test/fixtures');

function problems(text: string): string[] {
  return checkVersions(text, 'versions.yaml').problems.map(formatProblem);
}

describe('the design versions.yaml', () => {
  const file = path.join(fixtures, 'versions.yaml');
  const v = loadVersions(file);

  it('parses the pinned values with zero problems', () => {
    expect(checkVersions(readFileSync(file, 'utf8'), file).problems).toEqual([]);
    expect(imageFor(v, 'redis')).toBe('redis:7.2.5-alpine');
    expect(imageFor(v, 'postgres')).toBe('postgres:16.4-alpine');
    expect(imageFor(v, 'patroni')).toBe('zalando/patroni:3.3.0');
    expect(imageFor(v, 'minio')).toBe('minio/minio:RELEASE.2024-10-02T10-00Z');
    expect(imageFor(v, 'mariadb-galera')).toBe('bitnami/mariadb-galera:10.11.6');
    expect(v.entries.get('k3s_version')).toEqual({ key: 'k3s_version', value: 'v1.33.5+k3s1', line: 11 });
    expect([...v.entries.keys()]).toEqual([
      'postgres_image', 'patroni_image', 'redis_image', 'rabbitmq_image', 'minio_image', 'haproxy_image',
      'mariadb_galera_image', 'proxysql_image', 'k3s_version',
    ]);
  });

  it('prints the old shell helper export lines in file order', () => {
    const out = shellExports(v);
    expect(out.split('\n').slice(0, 3)).toEqual([
      'export POSTGRES_IMAGE="postgres:16.4-alpine"',
      'export PATRONI_IMAGE="zalando/patroni:3.3.0"',
      'export REDIS_IMAGE="redis:7.2.5-alpine"',
    ]);
    expect(out.endsWith('export K3S_VERSION="v1.33.5+k3s1"\n')).toBe(true);
  });

  it('imageFor names the file and the missing key', () => {
    expect(() => imageFor(v, 'grafana')).toThrow(InputError);
    expect(() => imageFor(v, 'grafana')).toThrow(`${file}:1: grafana_image is missing`);
  });
});

describe('values and comments', () => {
  it('strips a trailing comment from quoted and plain values, keeps # inside quotes', () => {
    const v = parseVersions([
      'redis_image: "redis:7.2.5-alpine"   # pinned',
      'haproxy_image: haproxy:2.8.5 # x',
      "rabbitmq_image: 'rabbitmq:3.13.2-management'#tight",
      'minio_image: "minio/minio:RELEASE.2024-10-02T10-00Z"',
      '  # an indented comment line',
      '',
      'k3s_version: v1.33.5+k3s1',
    ].join('\r\n'), 'versions.yaml');
    expect(v.entries.get('redis_image')).toEqual({ key: 'redis_image', value: 'redis:7.2.5-alpine', line: 1, comment: 'pinned' });
    expect(v.entries.get('haproxy_image')).toEqual({ key: 'haproxy_image', value: 'haproxy:2.8.5', line: 2, comment: 'x' });
    expect(v.entries.get('rabbitmq_image')?.value).toBe('rabbitmq:3.13.2-management');
    expect(v.entries.get('k3s_version')?.value).toBe('v1.33.5+k3s1');
    expect(checkVersions('a_image: "x#y"', 'v').versions.entries.get('a_image')?.value).toBe('x#y');
  });

  it('accepts digest-pinned references and a registry with a port', () => {
    expect(problems([
      `redis_image: redis@sha256:${'a'.repeat(64)}`,
      `haproxy_image: "haproxy:2.8.5@sha256:${'0123456789abcdef'.repeat(4)}"`,
      'minio_image: "127.0.0.1:5000/kb/minio:RELEASE.2024-10-02T10-00Z"',
      'grafana_image: localhost:5000/grafana/grafana:10.4.2',
    ].join('\n'))).toEqual([]);
  });

  it('shell-quotes values safely', () => {
    const v = parseVersions('a_image: "x:1"', 'v');
    v.entries.set('b_image', { key: 'b_image', value: 'a"$(rm -rf /)`x`\\', line: 2 });
    expect(shellExports(v)).toBe('export A_IMAGE="x:1"\nexport B_IMAGE="a\\"\\$(rm -rf /)\\`x\\`\\\\"\n');
    expect(shellExports(parseVersions('# empty\n', 'v'))).toBe('');
  });
});

describe('splitImageRef', () => {
  it.each([
    ['redis:7.2.5-alpine', { repository: 'redis', tag: '7.2.5-alpine' }],
    ['127.0.0.1:5000/kb/redis:7.0-kb1', { repository: '127.0.0.1:5000/kb/redis', tag: '7.0-kb1' }],
    ['127.0.0.1:5000/kb/redis', { repository: '127.0.0.1:5000/kb/redis' }],
    [`repo@sha256:${'b'.repeat(64)}`, { repository: 'repo', digest: `sha256:${'b'.repeat(64)}` }],
    [`reg.io:443/a/repo:1.2@sha256:${'c'.repeat(64)}`, { repository: 'reg.io:443/a/repo', tag: '1.2', digest: `sha256:${'c'.repeat(64)}` }],
  ])('%s', (ref, expected) => {
    expect(splitImageRef(ref)).toStrictEqual(expected);
  });
});

describe('problems', () => {
  it('reports every fault of versions-bad.yaml with file:line', () => {
    const file = path.join(fixtures, 'versions-bad.yaml');
    expect(checkVersions(readFileSync(file, 'utf8'), 'versions-bad.yaml').problems.map(formatProblem)).toEqual([
      'versions-bad.yaml:2: redis_image: no tag: "redis" is not pinned (add :<version> or @sha256:<digest>)',
      "versions-bad.yaml:3: haproxy_image: 'latest' is not a pinned version",
      'versions-bad.yaml:4: redis_image: duplicate key (first on line 2)',
      'versions-bad.yaml:5: grafana: unknown key (keys are <component>_image or k3s_version)',
      'versions-bad.yaml:6: minio_image: empty value',
      "versions-bad.yaml:7: k3s_version: 'latest' is not a pinned version",
      'versions-bad.yaml:8: expected `key: value` (versions.yaml is a flat map, one key per line)',
      'versions-bad.yaml:9: rabbitmq_image: unterminated double-quoted value',
    ]);
  });

  it('rejects malformed references, digests and k3s versions', () => {
    expect(problems([
      'redis_image: "Redis:7"',
      'haproxy_image: haproxy@sha256:abc',
      'k3s_version: "1.33.5"',
      'minio_image:',
      '  nested_image: "x:1"',
      'postgres_image: "postgres:16" trailing',
      'patroni_image:"zalando/patroni:3.3.0"',
    ].join('\n'))).toEqual([
      'versions.yaml:1: redis_image: invalid image reference "Redis:7"',
      'versions.yaml:2: haproxy_image: invalid digest "sha256:abc" (expected sha256:<64 hex digits>)',
      'versions.yaml:3: k3s_version: "1.33.5" must look like v1.33.5+k3s1',
      'versions.yaml:4: minio_image: empty value',
      'versions.yaml:5: expected `key: value` (versions.yaml is a flat map, one key per line)',
      'versions.yaml:6: postgres_image: unexpected text after the value: "trailing"',
      'versions.yaml:7: expected `key: value` (versions.yaml is a flat map, one key per line)',
    ]);
  });

  it('parseVersions throws one InputError with all problems; loadVersions names a missing file', () => {
    expect(() => parseVersions('redis_image: redis\nk3s_version: latest\n', 'versions.yaml')).toThrow(
      "versions.yaml:1: redis_image: no tag: \"redis\" is not pinned (add :<version> or @sha256:<digest>)\nversions.yaml:2: k3s_version: 'latest' is not a pinned version",
    );
    const missing = path.join(fixtures, 'no-such-versions.yaml');
    expect(() => loadVersions(missing)).toThrow(`${missing}:0: file not found`);
  });
});
