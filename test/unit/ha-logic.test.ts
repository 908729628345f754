import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClusterView } from '../../coordinator/ha/cluster-view.js';
import { LeaseClock } from '../../coordinator/ha/lease.js';
import type { LiveSessionRecord } from '../../coordinator/ha/records.js';
import { SessionRegistry } from '../../coordinator/sessions.js';
import { parseEtcdUrl } from '../../coordinator/store/etcd.js';
import { ConfigError, compileOptions } from '../../coordinator/coordinator.js';


describe('LeaseClock: when a lease holder stops trusting its lease', () => {
  it('trusts a fresh grant for 0.7 x TTL from the moment the request was sent', () => {
    const c = new LeaseClock(5000, 0.7, 1000);
    expect(c.valid(1000 + 3499)).toBe(true);
    expect(c.valid(1000 + 3500)).toBe(false);
    expect(c.remainingMs(2000)).toBe(2500);
  });

  it('extends trust from the send time of each acknowledged keep-alive, never from the ack time', () => {
    const c = new LeaseClock(5000, 0.7, 0);
    c.sent(1000);
    // The answer arrives late (at 3000): trust runs to 1000 + 3500, not 3000 + 3500.
    c.acked();
    expect(c.valid(4499)).toBe(true);
    expect(c.valid(4500)).toBe(false);
  });

  it('matches answers to requests in order, and forgets requests sent on a broken stream', () => {
    const c = new LeaseClock(5000, 0.7, 0);
    c.sent(1000);
    c.sent(2000);
    expect(c.oldestPendingMs(2500)).toBe(1500);
    c.acked();
    expect(c.remainingMs(1000)).toBe(3500);
    c.dropPending();
    expect(c.oldestPendingMs(9000)).toBe(0);
    c.acked();
    expect(c.remainingMs(1000)).toBe(3500);
  });

  it('never shortens trust when an older answer comes after a newer one', () => {
    const c = new LeaseClock(5000, 0.7, 3000);
    c.sent(1000);
    c.acked();
    expect(c.remainingMs(0)).toBe(6500);
  });
});

describe('ClusterView: every replica\'s sessions as one replica sees them', () => {
  const rec = (node: string, replicaId: string, connectedMs: number, ready = true): LiveSessionRecord => ({
    node, replicaId, replicaName: `c-${replicaId}`, replicaAddress: `127.0.0.1:${replicaId}`, agentVersion: '1', connectedMs, lastSeenMs: connectedMs, ready,
  });

  it('shows a node held by another replica with that replica\'s verdict; the newest session wins when a node moved', () => {
    const view = new ClusterView(new SessionRegistry(), () => 'self');
    const connected: string[] = [];
    view.on('connected', (s) => connected.push(`${s.node}@${s.coordinator}`));
    view.putSession(rec('redis-01', 'a', 100));
    view.putSession(rec('redis-01', 'b', 200, false));
    expect(view.get('redis-01')).toMatchObject({ node: 'redis-01', connectedMs: 200, coordinator: 'c-b 127.0.0.1:b', ready: false });
    expect(connected).toEqual(['redis-01@c-a 127.0.0.1:a', 'redis-01@c-b 127.0.0.1:b']);
    // The old holder's record expiring changes nothing; the new one going leaves nothing.
    view.deleteSession('redis-01', 'a');
    expect(view.get('redis-01')?.connectedMs).toBe(200);
    view.deleteSession('redis-01', 'b');
    expect(view.get('redis-01')).toBeUndefined();
    expect(view.all()).toEqual([]);
  });

  it('ignores its own records (its sessions come from its registry) and emits remote health, results and progress', () => {
    const view = new ClusterView(new SessionRegistry(), () => 'self');
    const seen: string[] = [];
    view.on('health', (node, r) => seen.push(`health ${node} ${r.modules.map((m) => `${m.module}@${m.revision}`).join(',')}`));
    view.on('result', (node, r) => seen.push(`result ${node} ${r.revision} ${r.ok}`));
    view.on('progress', (node, p) => seen.push(`progress ${node} ${p.step}`));
    view.putSession(rec('redis-02', 'self', 100));
    expect(view.get('redis-02')).toBeUndefined();
    view.putSession(rec('redis-03', 'b', 100));
    view.putNodeModule({ node: 'redis-03', module: 'redis', revision: 4, specHash: 'h', healthy: true, converged: true, checks: [], updatedMs: 1 });
    view.agentEvent({ replicaId: 'b', node: 'redis-03', atMs: 1, result: { module: 'redis', revision: 4, specHash: 'h', ok: true, error: '', changed: true, actions: [] } });
    view.agentEvent({ replicaId: 'b', node: 'redis-03', atMs: 2, progress: { module: 'redis', revision: 4, step: 'pull', message: 'x' } });
    view.agentEvent({ replicaId: 'self', node: 'redis-03', atMs: 3, progress: { module: 'redis', revision: 4, step: 'own', message: 'x' } });
    expect(seen).toEqual(['health redis-03 redis@4', 'result redis-03 4 true', 'progress redis-03 pull']);
    expect(view.get('redis-03')?.health.get('redis')).toMatchObject({ revision: 4, healthy: true, converged: true });
  });
});

describe('--store and the options that go with it', () => {
  const base = { inventoryFile: 'i', versionsFile: 'v', plaintext: true, listen: '127.0.0.1:7443' };

  it('parses etcd://host:port,...[/prefix]', () => {
    expect(parseEtcdUrl('etcd://10.0.0.1:2379,10.0.0.2:2379')).toEqual({ hosts: ['10.0.0.1:2379', '10.0.0.2:2379'], prefix: '/kb/' });
    expect(parseEtcdUrl('etcd://a:2379/kb-staging')).toEqual({ hosts: ['a:2379'], prefix: '/kb-staging/' });
    expect(() => parseEtcdUrl('etcd://a')).toThrow(/"a" is not HOST:PORT/);
    expect(() => parseEtcdUrl('http://a:2379')).toThrow(/expected etcd:\/\/HOST:PORT/);
    expect(parseEtcdUrl('etcds://10.0.0.1:2379/kb')).toEqual({ hosts: ['10.0.0.1:2379'], prefix: '/kb/', secure: true });
  });

  it('etcd off loopback needs TLS (etcds:// with the --etcd-* files) or an explicit --etcd-insecure', () => {
    const secure = { inventoryFile: 'i', versionsFile: 'v', listen: '10.0.0.250:7443' };
    expect(() => compileOptions({ ...secure, store: 'etcd://10.0.0.5:2379' })).toThrow(/etcd endpoints 10.0.0.5:2379 are off loopback and etcd:\/\/ is unencrypted.*use etcds:\/\/.*--etcd-insecure/);
    expect(compileOptions({ ...secure, store: 'etcd://10.0.0.5:2379', etcdInsecure: true }).store).toEqual({ kind: 'etcd', target: { hosts: ['10.0.0.5:2379'], prefix: '/kb/' } });
    expect(() => compileOptions({ ...secure, store: 'etcds://10.0.0.5:2379' })).toThrow(/needs --etcd-ca FILE/);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-etcd-tls-'));
    const pem = '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n';
    for (const f of ['ca.crt', 'c.crt', 'c.key']) writeFileSync(path.join(dir, f), pem);
    writeFileSync(path.join(dir, 'junk'), 'hello');
    const c = compileOptions({ ...secure, store: 'etcds://10.0.0.5:2379', etcdCa: path.join(dir, 'ca.crt'), etcdCert: path.join(dir, 'c.crt'), etcdKey: path.join(dir, 'c.key') });
    expect(c.store.kind === 'etcd' && c.store.target.tls).toEqual({ ca: Buffer.from(pem), cert: Buffer.from(pem), key: Buffer.from(pem) });
    expect(() => compileOptions({ ...secure, store: 'etcds://10.0.0.5:2379', etcdCa: path.join(dir, 'missing.crt') })).toThrow(/--etcd-ca .*missing.crt: cannot read/);
    expect(() => compileOptions({ ...secure, store: 'etcds://10.0.0.5:2379', etcdCa: path.join(dir, 'junk') })).toThrow(/--etcd-ca .*junk: not a PEM file/);
    expect(() => compileOptions({ ...secure, store: 'etcds://10.0.0.5:2379', etcdCa: path.join(dir, 'ca.crt'), etcdCert: path.join(dir, 'c.crt') })).toThrow(/--etcd-cert and --etcd-key go together/);
    expect(() => compileOptions({ ...secure, store: 'etcd://10.0.0.5:2379', etcdInsecure: true, etcdCa: path.join(dir, 'ca.crt') })).toThrow(/need an etcds:\/\/ store/);
  });

  it('defaults to SQLite in the data dir; etcd needs an address others can reach and a sane lease', () => {
    expect(compileOptions({ ...base, dataDir: '/d' }).store).toEqual({ kind: 'sqlite', file: '/d/kb.db' });
    const c = compileOptions({ ...base, store: 'etcd://127.0.0.1:2379', name: 'c1' });
    expect(c.store).toEqual({ kind: 'etcd', target: { hosts: ['127.0.0.1:2379'], prefix: '/kb/' } });
    expect(c.advertiseAddress).toBe('127.0.0.1:7443');
    expect(c.leaseTtlMs).toBe(5000);
    expect(() => compileOptions({ ...base, store: 'etcd://127.0.0.1:2379', listen: '127.0.0.1:0' })).toThrow(/--advertise HOST:PORT is required/);
    expect(() => compileOptions({ ...base, store: 'etcd://10.0.0.5:2379' })).toThrow(/--plaintext refuses non-loopback etcd endpoints 10.0.0.5:2379/);
    expect(() => compileOptions({ ...base, store: 'etcd://127.0.0.1:2379', leaseTtlMs: 1000 })).toThrow(ConfigError);
    expect(() => compileOptions({ ...base, store: 'mysql://x' })).toThrow(/expected "sqlite", etcd:\/\//);
  });
});
