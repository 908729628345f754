import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Enroller, EnrollError } from '../../coordinator/pki/enroll.js';
import { ensurePki, type Pki } from '../../coordinator/pki/pki.js';
import { RateLimiter } from '../../coordinator/pki/rate-limit.js';
import { Tokens, tokenState } from '../../coordinator/pki/tokens.js';
import { Authenticator } from '../../coordinator/server/auth.js';
import { SqliteStore } from '../../coordinator/store/sqlite.js';
import type { Inventory } from '../../shared/inventory/index.js';
import { certInfo, createCsr, formatToken, generateKeyPair, parseToken } from '../../shared/tls/index.js';

const log = pino({ level: 'silent' });
const inventory = { file: '/etc/kb/servers.tsv', servers: [{ hostname: 'redis-01' }, { hostname: 'redis-02' }] } as unknown as Inventory;

let dir: string;
let store: SqliteStore;
let pki: Pki;
let tokens: Tokens;
let enroller: Enroller;
let reenrolled: string[];
let connected: Set<string>;

async function csr(node: string): Promise<string> {
  return createCsr(node, await generateKeyPair());
}

function authCall(certPem: string) {
  const raw = Buffer.from(certPem.replace(/-----[A-Z ]+-----|\s/g, ''), 'base64');
  return { getAuthContext: () => ({ sslPeerCertificate: { raw } }) };
}

beforeEach(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kb-enroll-'));
  store = new SqliteStore(path.join(dir, 'kb.db'));
  pki = (await ensurePki(dir, ['127.0.0.1'])).pki;
  tokens = new Tokens(store, () => pki.caPin);
  reenrolled = [];
  connected = new Set();
  enroller = new Enroller({
    store, tokens, pki, inventory: () => inventory, nodeCertTtlMs: 60_000, limiter: new RateLimiter(100, 100), log,
    onReenrolled: (n) => reenrolled.push(n), isConnected: (n) => connected.has(n),
  });
});

afterEach(async () => {
  await store.close();
});

describe('PKI on disk', () => {
  it('ensurePki is idempotent and never replaces the CA; the serving key survives a SAN change', async () => {
    const again = await ensurePki(dir, ['127.0.0.1']);
    expect(again.pki.caPem).toBe(pki.caPem);
    expect(again.created).toEqual([]);
    const more = await ensurePki(dir, ['127.0.0.1', 'install-01']);
    expect(more.pki.caPem).toBe(pki.caPem);
    expect(certInfo(more.pki.serverCertPem).sans).toContain('install-01');
    expect(more.pki.serverPin).toBe(pki.serverPin); // printed install commands keep working
  });
});

describe('enrollment', () => {
  it('issues a certificate for the CSR\'s node, uses the token once, and records the serial', async () => {
    const { token, record } = await tokens.create({ ttlMs: 3_600_000, uses: 1, node: '', description: '' });
    const issued = await enroller.enroll({ token, csrPem: await csr('redis-01') }, '10.9.9.9');
    expect(certInfo(issued.certificatePem)).toMatchObject({ commonName: 'redis-01', role: 'node' });
    expect((await store.getNodeIdentity('redis-01'))?.serial).toBe(issued.serial);
    const t = (await store.getToken(record.id))!;
    expect(t.used).toBe(1);
    expect(tokenState(t)).toBe('used-up');
    expect(JSON.stringify(t)).not.toContain(parseToken(token).secret); // stored hashed
  });

  it('refuses with a status and a message naming the reason; a refusal uses nothing', async () => {
    const reason = async (token: string, node: string) => {
      try {
        await enroller.enroll({ token, csrPem: await csr(node) }, 'src');
        return 'enrolled';
      } catch (err) {
        expect(err).toBeInstanceOf(EnrollError);
        return `${(err as EnrollError).status} ${(err as Error).message}`;
      }
    };
    const ok = await tokens.create({ ttlMs: 3_600_000, uses: 1, node: '', description: '' });
    const p = parseToken(ok.token);
    expect(await reason(formatToken('b'.repeat(64), p.id, p.secret), 'redis-01')).toMatch(/^401 .*another CA/);
    expect(await reason(formatToken(p.pin, p.id, 'x'.repeat(24)), 'redis-01')).toMatch(/^401 join token is not valid/);
    expect(await reason(ok.token, 'ghost-01')).toBe('403 node "ghost-01" is not in the inventory /etc/kb/servers.tsv');
    const expired = await tokens.create({ ttlMs: 1, uses: 1, node: '', description: '' });
    await new Promise((r) => setTimeout(r, 5));
    expect(await reason(expired.token, 'redis-01')).toMatch(/^403 join token \w+ expired at/);
    const bound = await tokens.create({ ttlMs: 3_600_000, uses: 1, node: 'redis-02', description: '' });
    expect(await reason(bound.token, 'redis-01')).toMatch(/^403 join token \w+ is bound to node "redis-02", not "redis-01"/);
    const revoked = await tokens.create({ ttlMs: 3_600_000, uses: 1, node: '', description: '' });
    await tokens.revoke(revoked.record.id);
    expect(await reason(revoked.token, 'redis-01')).toMatch(/^403 join token \w+ was revoked/);
    expect((await store.getToken(ok.record.id))!.used).toBe(0);
    expect(await reason(ok.token, 'redis-01')).toBe('enrolled');
    expect(await reason(ok.token, 'redis-02')).toMatch(/^403 join token \w+ is used up \(1 of 1 uses, by redis-01\)/);
  });

  it('a token with one use left is used once under concurrent enrollments', async () => {
    const { token } = await tokens.create({ ttlMs: 3_600_000, uses: 1, node: '', description: '' });
    const results = await Promise.allSettled([enroller.enroll({ token, csrPem: await csr('redis-01') }, 'a'), enroller.enroll({ token, csrPem: await csr('redis-02') }, 'b')]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
  });

  it('enrolling again revokes the previous certificate; a renewal keeps the one it renewed from valid until it expires', async () => {
    const auth = new Authenticator(store, true);
    const t1 = await tokens.create({ ttlMs: 3_600_000, uses: 2, node: 'redis-01', description: '' });
    const first = await enroller.enroll({ token: t1.token, csrPem: await csr('redis-01') }, 'a');
    expect((await auth.node(authCall(first.certificatePem)))?.commonName).toBe('redis-01');
    const renewed = await enroller.renew('redis-01', { serial: first.serial, notAfterMs: first.notAfterMs }, await csr('redis-01'));
    expect((await auth.node(authCall(renewed.certificatePem)))?.serial).toBe(renewed.serial);
    expect((await auth.node(authCall(first.certificatePem)))?.serial).toBe(first.serial); // grace: the answer may have been lost
    expect(reenrolled).toEqual([]);
    const second = await enroller.enroll({ token: t1.token, csrPem: await csr('redis-01') }, 'b');
    expect(reenrolled).toEqual(['redis-01']);
    await expect(auth.node(authCall(first.certificatePem))).rejects.toMatchObject({ code: 7, details: expect.stringContaining(`certificate ${first.serial} of node "redis-01" is revoked`) });
    await expect(auth.node(authCall(renewed.certificatePem))).rejects.toMatchObject({ code: 7 });
    expect((await auth.node(authCall(second.certificatePem)))?.serial).toBe(second.serial);
  });

  it('a connected node is taken over only with a token bound to it (duplicate hostname, leaked token)', async () => {
    const any = await tokens.create({ ttlMs: 3_600_000, uses: 3, node: '', description: '' });
    await enroller.enroll({ token: any.token, csrPem: await csr('redis-01') }, 'a');
    connected.add('redis-01');
    await expect(enroller.enroll({ token: any.token, csrPem: await csr('redis-01') }, 'b'))
      .rejects.toThrow('node "redis-01" is enrolled and connected: to re-provision it, use a token bound to it (kbctl token create --node redis-01)');
    const bound = await tokens.create({ ttlMs: 3_600_000, uses: 1, node: 'redis-01', description: '' });
    await expect(enroller.enroll({ token: bound.token, csrPem: await csr('redis-01') }, 'b')).resolves.toMatchObject({ node: 'redis-01' });
    connected.clear();
    await expect(enroller.enroll({ token: any.token, csrPem: await csr('redis-01') }, 'c')).resolves.toMatchObject({ node: 'redis-01' });
  });

  it('renewal refuses a CSR for another node', async () => {
    const t = await tokens.create({ ttlMs: 3_600_000, uses: 1, node: '', description: '' });
    const first = await enroller.enroll({ token: t.token, csrPem: await csr('redis-01') }, 'a');
    await expect(enroller.renew('redis-01', first, await csr('redis-02'))).rejects.toThrow('renewal for "redis-02" refused: this certificate is for node "redis-01"');
  });

  it('the admin check refuses node certificates; the node check refuses admin certificates', async () => {
    const auth = new Authenticator(store, true);
    const t = await tokens.create({ ttlMs: 3_600_000, uses: 1, node: '', description: '' });
    const node = await enroller.enroll({ token: t.token, csrPem: await csr('redis-01') }, 'a');
    expect(() => auth.admin(authCall(node.certificatePem))).toThrow();
    try { auth.admin(authCall(node.certificatePem)); } catch (err) { expect(err).toMatchObject({ code: 7, details: 'the ControlService requires the admin credential; the caller presented a node certificate "redis-01"' }); }
    const plaintext = new Authenticator(store, false);
    expect(() => plaintext.admin({ getAuthContext: () => null })).not.toThrow();
    expect(() => auth.admin({ getAuthContext: () => ({}) })).toThrow();
  });
});

describe('rate limit', () => {
  it('allows a burst per source, then refills at the configured rate', () => {
    const rl = new RateLimiter(3, 60); // one per second
    const t = 1_000_000;
    expect([rl.take('a', t), rl.take('a', t), rl.take('a', t)].every((r) => r.ok)).toBe(true);
    const no = rl.take('a', t);
    expect(no.ok).toBe(false);
    expect(no.ok ? 0 : no.retryAfterMs).toBeGreaterThan(0);
    expect(rl.take('b', t).ok).toBe(true); // per source
    expect(rl.take('a', t + 1000).ok).toBe(true);
    expect(rl.take('a', t + 1000).ok).toBe(false);
  });
});
