import { chmodSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { open, seal, secretAad, SealError } from '../../coordinator/secrets/crypto.js';
import { generateVars } from '../../coordinator/secrets/generate.js';
import { ensureSecretKey, loadSecretKey, SecretKeyError } from '../../coordinator/secrets/keyfile.js';
import { SecretService } from '../../coordinator/secrets/service.js';
import { SqliteStore } from '../../coordinator/store/sqlite.js';
import { CREDENTIALS, findCredential } from '../../shared/credentials/index.js';
import { InputError } from '../../shared/errors/index.js';
import type { ModuleState } from '../../proto/types.js';

const log = pino({ level: 'silent' });
const tmp = () => mkdtempSync(path.join(tmpdir(), 'kb-secrets-'));

async function service(dir = tmp()) {
  const store = new SqliteStore(path.join(dir, 'kb.db'));
  const s = new SecretService(store, ensureSecretKey(dir), log);
  await s.ensureAll();
  return { dir, store, s };
}

function state(node: string, secrets: ModuleState['secrets']): ModuleState {
  return { module: 'm', revision: 1, specHash: node, containers: [], files: [], healthChecks: [], secrets };
}

describe('secret store key file', () => {
  it('is created once, 0600, 32 bytes, and never replaced', () => {
    const dir = tmp();
    const k1 = ensureSecretKey(dir);
    const st = statSync(path.join(dir, 'secrets.key'));
    expect((st.mode & 0o777).toString(8)).toBe('600');
    expect(st.size).toBe(32);
    expect(ensureSecretKey(dir).equals(k1)).toBe(true);
  });

  it('refuses a key readable by others, a symlink, or a wrong size, saying what to do', () => {
    const dir = tmp();
    ensureSecretKey(dir);
    chmodSync(path.join(dir, 'secrets.key'), 0o644);
    expect(() => loadSecretKey(dir)).toThrow(/mode 644: it must be 0600 \(chmod 600/);
    const d2 = tmp();
    writeFileSync(path.join(d2, 'real'), Buffer.alloc(32), { mode: 0o600 });
    symlinkSync(path.join(d2, 'real'), path.join(d2, 'secrets.key'));
    expect(() => loadSecretKey(d2)).toThrow(SecretKeyError);
    const d3 = tmp();
    writeFileSync(path.join(d3, 'secrets.key'), Buffer.alloc(16), { mode: 0o600 });
    expect(() => loadSecretKey(d3)).toThrow('is not 32 bytes long');
    expect(() => loadSecretKey(tmp())).toThrow('is missing');
  });
});

describe('sealing', () => {
  it('round-trips, uses a fresh nonce, and binds the name and version', () => {
    const key = ensureSecretKey(tmp());
    const a = seal(key, secretAad('redis', 1), Buffer.from('v'));
    expect(a).not.toBe(seal(key, secretAad('redis', 1), Buffer.from('v')));
    expect(open(key, secretAad('redis', 1), a).toString()).toBe('v');
    expect(() => open(key, secretAad('redis', 2), a)).toThrow(SealError);
    expect(() => open(ensureSecretKey(tmp()), secretAad('redis', 1), a)).toThrow(SealError);
  });
});

describe('generation', () => {
  it('generates every catalog file with the exact KEYBUZZ.md variable names', async () => {
    const { s } = await service();
    const names: Record<string, string[]> = {
      redis: ['REDIS_PASSWORD', 'REDIS_SENTINEL_PASSWORD', 'REDIS_MASTER_NAME', 'REDIS_SENTINEL_QUORUM'],
      postgres: ['POSTGRES_SUPERUSER', 'POSTGRES_SUPERPASS', 'POSTGRES_REPL_USER', 'POSTGRES_REPL_PASS', 'POSTGRES_APP_USER', 'POSTGRES_APP_PASS', 'POSTGRES_DB', 'PATRONI_CLUSTER_NAME', 'PATRONI_API_PASSWORD'],
      rabbitmq: ['RABBITMQ_USER', 'RABBITMQ_PASSWORD', 'RABBITMQ_ERLANG_COOKIE'],
      minio: ['MINIO_ROOT_USER', 'MINIO_ROOT_PASSWORD', 'MINIO_BUCKET'],
      mariadb: ['MARIADB_ROOT_PASSWORD', 'MARIADB_APP_USER', 'MARIADB_APP_PASSWORD', 'MARIADB_DB', 'GALERA_CLUSTER_NAME'],
      proxysql: ['PROXYSQL_ADMIN_USER', 'PROXYSQL_ADMIN_PASSWORD'],
      k3s: ['K3S_TOKEN'],
    };
    expect(CREDENTIALS.map((c) => c.name).sort()).toEqual(Object.keys(names).sort());
    for (const [name, vars] of Object.entries(names)) expect(Object.keys(await s.values(name, 1)), name).toEqual(vars);
    const pg = await s.values('postgres', 1);
    expect([pg.POSTGRES_SUPERUSER, pg.POSTGRES_REPL_USER, pg.POSTGRES_APP_USER, pg.POSTGRES_DB, pg.PATRONI_CLUSTER_NAME]).toEqual(['kb_admin', 'kb_repl', 'kb_app', 'keybuzz', 'keybuzz-pg']);
    expect(pg.POSTGRES_SUPERPASS).toMatch(/^[A-Za-z0-9]{32}$/);
    const px = await s.values('proxysql', 1);
    expect(px.PROXYSQL_ADMIN_USER).toMatch(/^kb-proxysql-[a-z0-9]{8}$/);
    expect(px.PROXYSQL_ADMIN_PASSWORD).not.toBe('admin');
    expect((await s.values('k3s', 1)).K3S_TOKEN).toMatch(/^[A-Za-z0-9]{48}$/);
    expect((await s.values('mariadb', 1)).GALERA_CLUSTER_NAME).toBe('keybuzz-galera');
  });

  it('rotation keeps names and regenerates every secret variable', () => {
    const spec = findCredential('minio')!;
    const v1 = generateVars(spec);
    const v2 = generateVars(spec, v1);
    expect(v2.MINIO_BUCKET).toBe('keybuzz-backups');
    expect(v2.MINIO_ROOT_PASSWORD).not.toBe(v1.MINIO_ROOT_PASSWORD);
  });

  it('is idempotent across restarts and keeps values sealed in the store files', async () => {
    const { dir, store, s } = await service();
    const v = await s.values('redis', 1);
    await store.close();
    const again = new SecretService(new SqliteStore(path.join(dir, 'kb.db')), ensureSecretKey(dir), log);
    await again.ensureAll();
    expect(await again.values('redis', 1)).toEqual(v);
    for (const f of readdirSync(dir)) {
      const bytes = readFileSync(path.join(dir, f));
      for (const val of [v.REDIS_PASSWORD!, v.REDIS_SENTINEL_PASSWORD!]) expect(bytes.includes(Buffer.from(val)), f).toBe(false);
    }
  });

  it('refuses to open a store with another key', async () => {
    const { dir, store } = await service();
    const other = new SecretService(store, ensureSecretKey(tmp()), log);
    await expect(other.values('redis', 1)).rejects.toThrow(/sealed with key \w+, but \w+ is loaded/);
    void dir;
  });
});

describe('delivery message', () => {
  it('carries the values of exactly the versions a state references; every MinIO node gets the same root user and password', async () => {
    const { s } = await service();
    const msgs = await Promise.all(['minio-01', 'minio-02', 'minio-03'].map((n) => s.desiredMessage(state(n, [{ name: 'minio', version: 1, file: 'minio.env' }]))));
    const vals = msgs.map((m) => m.secretValues!);
    expect(vals[0]).toHaveLength(1);
    expect(vals[1]).toEqual(vals[0]);
    expect(vals[2]).toEqual(vals[0]);
    expect(vals[0]![0]!.vars.MINIO_ROOT_USER).toMatch(/^kb-minio-[a-z0-9]{8}$/);
    expect((await s.desiredMessage(state('x', []))).secretValues).toBeUndefined();
    await expect(s.desiredMessage(state('x', [{ name: 'redis', version: 9, file: 'redis.env' }]))).rejects.toThrow('secret redis has no version 9');
  });

  it('opens a version once when every node of a batch asks at once (a cold cache), and does not keep a failure', async () => {
    const { dir, store } = await service();
    // A coordinator just started: same store and key, nothing opened yet.
    const cold = new SecretService(store, loadSecretKey(dir), log);
    let reads = 0;
    const list = store.listSecretVersions.bind(store);
    store.listSecretVersions = (name?: string) => {
      reads++;
      return list(name);
    };
    const msgs = await Promise.all(Array.from({ length: 500 }, (_, i) => cold.desiredMessage(state(`lb-${i}`, [{ name: 'redis', version: 1, file: 'redis.env' }]))));
    expect(reads).toBe(1);
    expect(new Set(msgs.map((m) => m.secretValues![0]!.vars.REDIS_PASSWORD)).size).toBe(1);
    expect(msgs[499]!.secretValues![0]!.vars.REDIS_PASSWORD).toMatch(/^\S{16,}$/);
    // A version that is not there: every caller of the moment gets the error, from one read;
    // the next ask reads again (the version may have been created meanwhile).
    const missing = await Promise.allSettled(Array.from({ length: 50 }, () => cold.values('redis', 9)));
    expect(missing.every((x) => x.status === 'rejected' && String(x.reason).includes('secret redis has no version 9'))).toBe(true);
    expect(reads).toBe(2);
    await expect(cold.values('redis', 9)).rejects.toThrow('secret redis has no version 9');
    expect(reads).toBe(3);
  });
});

describe('import', () => {
  it('checks everything first (nothing half-applied), then creates versions; equal files are unchanged', async () => {
    const { s } = await service();
    const good = { name: 'k3s', vars: { K3S_TOKEN: 'imported-token-1' }, sourceFile: 'old/k3s.env' };
    const bad = { name: 'redis', vars: { REDIS_PASSWORD: 'a\nb' }, sourceFile: 'old/redis.env' };
    await expect(s.importSecrets([good, bad], { force: false, dryRun: false })).rejects.toThrow(InputError);
    expect(await s.getState('k3s')).toMatchObject({ active: 1 });
    try {
      await s.importSecrets([good, bad], { force: false, dryRun: false });
    } catch (err) {
      const msgs = (err as InputError).problems.map((p) => `${p.file}: ${p.field}: ${p.message}`);
      expect(msgs).toContain('old/redis.env: REDIS_PASSWORD: value contains a newline: credentials values must be single-line');
      expect(msgs).toContain('old/redis.env: REDIS_SENTINEL_PASSWORD: missing (redis.env needs REDIS_PASSWORD, REDIS_SENTINEL_PASSWORD, REDIS_MASTER_NAME, REDIS_SENTINEL_QUORUM)');
    }
    const dry = await s.importSecrets([good], { force: false, dryRun: true });
    expect(dry).toEqual([{ name: 'k3s', action: 'would-create', version: 0, message: 'k3s.env would become the active version' }]);
    expect((await s.importSecrets([good], { force: false, dryRun: false }))[0]).toMatchObject({ action: 'created', version: 2 });
    expect(await s.getState('k3s')).toMatchObject({ active: 2, accepted: [2] });
    expect((await s.importSecrets([good], { force: false, dryRun: false }))[0]).toMatchObject({ action: 'unchanged', version: 2 });
    await expect(s.importSecrets([{ name: 'grafana', vars: {}, sourceFile: 'old/grafana.env' }], { force: false, dryRun: false })).rejects.toThrow('unknown credentials file');
  });
});
