import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findSecretsInValue, secretLooking } from '../../shared/credentials/index.js';
import { scanSettingsText } from '../../shared/credentials/inputs-scan.js';
import { validateFiles } from '../../shared/validate/index.js';
import { sharedFixture } from '../helpers/shared-fixtures.js';

const dir = mkdtempSync(path.join(tmpdir(), 'kb-scan-'));
const fixtures = path.resolve(import.meta.dirname, '../fixtures');

describe('secret-looking values', () => {
  it('recognises passwords, tokens, keys and URL credentials', () => {
    expect(secretLooking('redis master, password=hunter2hunter2')).toBe('a credential assignment (password=...)');
    expect(secretLooking('mdp: Azerty123')).toBe('a credential assignment (mdp=...)');
    expect(secretLooking('REDIS_PASSWORD=abc')).toBe('a credential assignment (REDIS_PASSWORD=...)');
    expect(secretLooking('https://deploy:tok3n@registry.example/x')).toBe('credentials in a URL (user:password@host)');
    expect(secretLooking('-----BEGIN OPENSSH PRIVATE KEY-----')).toBe('a private key');
    expect(secretLooking(`K10${'a'.repeat(64)}::server:abc`)).toBe('a k3s join token');
    expect(secretLooking('AKIAIOSFODNN7EXAMPLE')).toBe('an AWS access key');
    expect(secretLooking('started with --requirepass hunter2')).toBe('a password given as a command-line option');
    expect(secretLooking('note Zq8xPw3LmN7vB2kR9tY4hJ6s here')).toBe('a long random-looking string (a password, token or key)');
  });

  it('stays quiet on ordinary inventory text, image references and digests', () => {
    for (const ok of [
      'Gestion des secrets (Vault)', 'Redis HA master (cluster/sentinel, exposé via 10.0.0.10:6379)', 'redis:7.2.5-alpine',
      `127.0.0.1:5000/kb/redis:7.0-kb1@sha256:${'0123456789abcdef'.repeat(4)}`, 'minio/minio:RELEASE.2024-10-02T10-00Z', 'k8s-worker-05.keybuzz.io',
      'bypass: true', 'v1.33.5+k3s1',
    ]) expect(secretLooking(ok), ok).toBeUndefined();
  });

  it('finds credential keys and values in settings, and flags that take a password in argument lists', () => {
    const found = findSecretsInValue({ port: 6379, password: 'x', extra_args: ['--save', '', '--requirepass', 'y'], nested: { api_key: 'k', on: true } }, 'redis');
    expect(found.map((f) => [f.path, f.what])).toEqual([
      ['redis.password', 'a credential setting (password)'],
      ['redis.extra_args[3]', 'a credential passed as --requirepass'],
      ['redis.nested.api_key', 'a credential setting (api_key)'],
    ]);
  });

  it('reports settings findings with the YAML line', () => {
    const text = 'redis:\n  port: 6379\n  masterauth: hunter2\n  nodes:\n    redis-02:\n      extra_args: ["--requirepass", "x"]\n';
    expect(scanSettingsText(text, 'modules.yaml').map((p) => [p.line, p.field])).toEqual([[3, 'redis.masterauth'], [6, 'redis.nodes.redis-02.extra_args[1]']]);
  });

  it('kbctl validate: the real inventory and the design versions are clean; a password anywhere fails with file:line', () => {
    expect(validateFiles({ inventoryFile: sharedFixture('servers.tsv'), versionsFile: path.join(fixtures, 'versions.yaml') })).toEqual([]);
    const inv = path.join(dir, 'servers.tsv');
    writeFileSync(inv, 'ENV\tIP_PUBLIQUE\tHOSTNAME\tIP_PRIVEE\tFQDN\tUSER_SSH\tPOOL\tROLE\tSUBROLE\tDOCKER_STACK\tCORE\tNOTES\n'
      + 'prod\t-\tredis-01\t10.0.0.1\tredis-01.t\troot\tp\tredis\tmaster\tx\tyes\tok\n'
      + 'staging\t-\tredis-09\t10.0.0.9\tredis-09.t\troot\tp\tredis\tmaster\tx\tyes\troot pass: Secr3tPass\n');
    const settings = path.join(dir, 'modules.yaml');
    writeFileSync(settings, 'redis:\n  token: abc\n');
    const problems = validateFiles({ inventoryFile: inv, settingsFile: settings });
    expect(problems.map((p) => [path.basename(p.file), p.line, p.field])).toEqual([['servers.tsv', 3, 'NOTES'], ['modules.yaml', 2, 'redis.token']]);
    expect(JSON.stringify(problems)).not.toContain('Secr3tPass');
  });
});
