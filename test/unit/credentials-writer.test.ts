import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { Credentials, CredentialsDir, CredentialsRefusedError } from '../../agent/credentials/index.js';
import { credentialsStep } from '../../agent/reconcile/steps/credentials.js';
import type { ReconcileContext } from '../../agent/reconcile/types.js';
import type { ContainerDriver } from '../../agent/driver/types.js';
import type { ModuleState } from '../../proto/types.js';
import { CREDENTIALS_DIR } from '../../shared/credentials/index.js';

const ROOT = { mode: 0o600, uid: 0, gid: 0 };
const tmp = () => mkdtempSync(path.join(tmpdir(), 'kb-cred-'));

describe('credentials writer (real filesystem)', () => {
  it('creates the directory 0700 and files 0600 root:root, atomically, leaving no temporary file', async () => {
    const root = tmp();
    const dir = new CredentialsDir(root);
    expect(dir.path).toBe(path.join(root, CREDENTIALS_DIR));
    await dir.write('redis.env', Buffer.from('export A="1"\n'), ROOT);
    expect((statSync(dir.path).mode & 0o777).toString(8)).toBe('700');
    const st = statSync(path.join(dir.path, 'redis.env'));
    expect([(st.mode & 0o777).toString(8), st.uid, st.gid]).toEqual(['600', 0, 0]);
    expect(readFileSync(path.join(dir.path, 'redis.env'), 'utf8')).toBe('export A="1"\n');
    await dir.write('redis.env', Buffer.from('export A="2"\n'), ROOT);
    expect(readFileSync(path.join(dir.path, 'redis.env'), 'utf8')).toBe('export A="2"\n');
    expect(readdirSync(dir.path)).toEqual(['redis.env']);
  });

  it('repairs a credentials directory that is wider than 0700', async () => {
    const root = tmp();
    const dir = new CredentialsDir(root);
    mkdirSync(dir.path, { recursive: true, mode: 0o755 });
    chmodSync(dir.path, 0o755);
    expect(await dir.ensure()).toEqual([`chmod 0700 ${dir.path}`]);
    expect((statSync(dir.path).mode & 0o777).toString(8)).toBe('700');
  });

  it('refuses any name that is not a plain file name in the directory', async () => {
    const dir = new CredentialsDir(tmp());
    for (const bad of ['..', '../x.env', '/etc/passwd', 'a/b.env', '.hidden', '', 'x\0y', `${'a'.repeat(300)}`]) {
      await expect(dir.write(bad, Buffer.from('x'), ROOT), JSON.stringify(bad)).rejects.toThrow(CredentialsRefusedError);
    }
    expect(() => new CredentialsDir('/tmp', '/opt/../etc')).toThrow(CredentialsRefusedError);
  });

  it('refuses a symlink at the target: nothing written, the symlink and its target untouched', async () => {
    const root = tmp();
    const dir = new CredentialsDir(root);
    await dir.ensure();
    const victim = path.join(root, 'victim');
    writeFileSync(victim, 'do not touch\n', { mode: 0o644 });
    symlinkSync(victim, path.join(dir.path, 'redis.env'));
    await expect(dir.write('redis.env', Buffer.from('secret'), ROOT)).rejects.toThrow(/refused: .*redis\.env is a symlink; nothing was written and its target is left untouched/);
    expect(readFileSync(victim, 'utf8')).toBe('do not touch\n');
    expect((statSync(victim).mode & 0o777).toString(8)).toBe('644');
    expect(lstatSync(path.join(dir.path, 'redis.env')).isSymbolicLink()).toBe(true);
    await expect(dir.read('redis.env')).rejects.toThrow('it is a symlink');
    await expect(dir.fixOwner('redis.env', ROOT)).rejects.toThrow(CredentialsRefusedError);
    expect(readdirSync(dir.path)).toEqual(['redis.env']);
  });

  it('refuses a symlink anywhere in the directory path', async () => {
    const root = tmp();
    const elsewhere = tmp();
    mkdirSync(path.join(root, 'opt'), { recursive: true });
    symlinkSync(elsewhere, path.join(root, 'opt', 'keybuzz-installer'));
    const dir = new CredentialsDir(root);
    await expect(dir.write('redis.env', Buffer.from('secret'), ROOT)).rejects.toThrow(/opt\/keybuzz-installer is a symlink/);
    expect(readdirSync(elsewhere)).toEqual([]);
  });

  it('between the temporary file and the rename the target is the complete old file; stale temporary files are cleaned', async () => {
    const root = tmp();
    const dir = new CredentialsDir(root);
    await dir.write('k3s.env', Buffer.from('old\n'), ROOT);
    let seen: { target: string; temps: string[] } | undefined;
    await dir.write('k3s.env', Buffer.from('new\n'), ROOT, async (point) => {
      expect(point).toBe('credentials-before-rename/k3s.env');
      const temps = readdirSync(dir.path).filter((f) => f !== 'k3s.env');
      seen = { target: readFileSync(path.join(dir.path, 'k3s.env'), 'utf8'), temps };
      expect(readFileSync(path.join(dir.path, temps[0]!), 'utf8')).toBe('new\n');
    });
    expect(seen?.target).toBe('old\n');
    expect(seen?.temps).toHaveLength(1);
    expect(seen?.temps[0]).toMatch(/^\.k3s\.env\.kb-tmp-/);
    writeFileSync(path.join(dir.path, '.k3s.env.kb-tmp-1-abcd'), 'leftover');
    expect(await dir.cleanupTemps()).toBe(1);
    expect(readdirSync(dir.path)).toEqual(['k3s.env']);
  });
});

describe('credentials step', () => {
  const values = new Map([['redis@1', { REDIS_PASSWORD: 'p1"$', REDIS_SENTINEL_PASSWORD: 's1', REDIS_MASTER_NAME: 'kb-redis-master', REDIS_SENTINEL_QUORUM: '2' }]]);
  const state: ModuleState = {
    module: 'redis', revision: 1, specHash: 'h', containers: [], files: [], healthChecks: [],
    secrets: [{ name: 'redis', version: 1, file: 'redis.env' }],
    secretFiles: [{ file: 'redis-server.conf', mode: 0o600, uid: 999, gid: 999, template: 'masterauth {{redis redis@1 REDIS_PASSWORD}}\n' }],
  };
  const ctxFor = (creds: Credentials, extra: Partial<ReconcileContext> = {}): ReconcileContext => ({
    node: 'redis-01', driver: {} as ContainerDriver, hostRoot: '/', sharedEngine: true, log: pino({ level: 'silent' }), credentials: creds, ...extra,
  });

  it('writes env files and templates with their owners, does nothing the second time, and asks for values it lacks', async () => {
    const root = tmp();
    const creds = new Credentials(new CredentialsDir(root), tmp());
    const run = { ctx: ctxFor(creds, { secretValues: values }), state, actions: [] as string[] };
    await credentialsStep.run(run);
    expect(run.actions.filter((a) => !a.startsWith('mkdir'))).toEqual(['write redis.env (redis@1)', 'write redis-server.conf (template)']);
    const conf = path.join(creds.dir.path, 'redis-server.conf');
    expect(readFileSync(conf, 'utf8')).toBe('masterauth "p1\\"$"\n');
    expect([statSync(conf).uid, statSync(conf).gid, (statSync(conf).mode & 0o777).toString(8)]).toEqual([999, 999, '600']);
    expect(await creds.variable('redis.env', 'REDIS_PASSWORD')).toBe('p1"$');
    expect((await creds.checks(state)).map((c) => [c.name, c.ok, c.observed])).toEqual([
      ['credentials redis.env', true, 'redis@1, 0600 0:0'], ['credentials redis-server.conf', true, 'rendered, 0600 999:999'],
    ]);
    const again = { ctx: ctxFor(creds), state, actions: [] as string[] };
    await credentialsStep.run(again);
    expect(again.actions).toEqual([]);

    // Edited by hand: the agent cannot rewrite without the values, so it asks for them.
    writeFileSync(path.join(creds.dir.path, 'redis.env'), 'export REDIS_PASSWORD="tampered"\n');
    const asked: string[] = [];
    const missing = { ctx: ctxFor(creds, { onSecretsMissing: (_s, reason) => asked.push(reason) }), state, actions: [] as string[] };
    await expect(credentialsStep.run(missing)).rejects.toThrow('redis.env needs redis@1, whose values this agent does not hold; asked the coordinator to resend them');
    expect(asked).toEqual(['redis.env needs redis@1, whose values this agent does not hold']);
    expect((await creds.checks(state))[0]).toMatchObject({ ok: false, observed: 'changed on disk or not yet written for this version' });

    // chmod by hand is repaired without values.
    await credentialsStep.run({ ctx: ctxFor(creds, { secretValues: values }), state, actions: [] });
    chmodSync(path.join(creds.dir.path, 'redis.env'), 0o644);
    const fix = { ctx: ctxFor(creds), state, actions: [] as string[] };
    await credentialsStep.run(fix);
    expect(fix.actions).toEqual(['chmod 0600 0:0 redis.env']);
    expect(existsSync(path.join(creds.dir.path, 'redis.env'))).toBe(true);
  });

  it('reports a refusal for a bad file name in a state, writing nothing', async () => {
    const creds = new Credentials(new CredentialsDir(tmp()), tmp());
    const bad: ModuleState = { ...state, secrets: [{ name: 'redis', version: 1, file: '../../etc/redis.env' }], secretFiles: [] };
    await expect(credentialsStep.run({ ctx: ctxFor(creds, { secretValues: values }), state: bad, actions: [] })).rejects.toThrow(/refused credentials file "\.\.\/\.\.\/etc\/redis\.env"/);
  });
});
