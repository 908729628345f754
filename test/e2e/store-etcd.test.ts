import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LeaseKeeper } from '../../coordinator/ha/lease.js';
import { EtcdConnection, EtcdStore, type EtcdTarget, type WriteGuard } from '../../coordinator/store/etcd.js';
import { FencedWriteError, StoreUnavailableError } from '../../coordinator/store/errors.js';
import type { RolloutRecord } from '../../coordinator/store/types.js';
import path from 'node:path';
import { ControlClient } from '../../coordinator/kbctl/client.js';
import { Cluster, SUBNET, dist } from '../helpers/cluster.js';
import { EtcdCluster } from '../helpers/etcd.js';
import { Proc, sleep, waitFor } from '../helpers/proc.js';
import { storeConformance } from '../helpers/store-conformance.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

// EtcdStore on a real three-member etcd cluster (Debian's etcd 3.4) on loopback:
// the Store contract (the same suite as SQLite), then what only etcd has to prove:
// fencing of a deposed leader's writes, the lease keeper stopping before etcd expires
// the lease, and clear errors when etcd is gone.

const etcd = new EtcdCluster(SUBNET);
const log = pino({ level: 'silent' });
const prefix = () => `/kb-test-${randomBytes(4).toString('hex')}/`;
const target = (p = prefix()): EtcdTarget => ({ hosts: etcd.endpoints.split(','), prefix: p });

beforeAll(async () => {
  await etcd.start();
});

afterAll(async () => {
  await etcd.stop();
});

storeConformance('EtcdStore (3-member etcd)', async () => {
  const t = target();
  const conns: EtcdConnection[] = [];
  return {
    open: () => {
      const c = new EtcdConnection(t);
      conns.push(c);
      return new EtcdStore(c, undefined, true);
    },
    destroy: async () => {
      const c = new EtcdConnection(t);
      await c.client.delete().prefix(t.prefix);
      c.close();
    },
  };
});

function rollout(id: string, state: RolloutRecord['state'], error = ''): RolloutRecord {
  return {
    id, module: 'redis', revision: 1, fromRevision: 0, state, maxParallel: 1, healthyDeadlineMs: 1000, minHealthyTimeMs: 10,
    nodes: [], error, failedNode: '', failedCheck: '', observed: '', createdMs: 1, updatedMs: 1,
  };
}

/** Elects `conn` as leader of `leaderKey` on a fresh lease (no keep-alive): returns its fenced store. */
async function elect(conn: EtcdConnection, leaderKey: Buffer, ttlS: number): Promise<{ store: EtcdStore; term: string; lease: string; refused: () => number }> {
  const lease = await conn.client.leaseClient.leaseGrant({ TTL: ttlS });
  const res = await conn.txn({
    compare: [{ key: leaderKey, target: 'Create', result: 'Equal', create_revision: 0 }],
    success: [{ request_put: { key: leaderKey, value: Buffer.from('x'), lease: lease.ID } }],
  });
  if (!res.succeeded) throw new Error('leader key taken');
  let refused = 0;
  const guard: WriteGuard = {
    fence: () => ({ key: leaderKey, createRevision: res.revision }),
    describe: () => `test leader (term ${res.revision})`,
    onRefused: () => { refused++; },
  };
  return { store: new EtcdStore(conn, guard), term: res.revision, lease: lease.ID, refused: () => refused };
}

describe('EtcdStore fencing and availability', () => {
  it('a deposed leader cannot write: after its lease ends and another leader is elected, its writes are refused and change nothing', async () => {
    const t = target();
    const a = new EtcdConnection(t);
    const b = new EtcdConnection(t);
    try {
      const leaderKey = a.key('leader');
      const old = await elect(a, leaderKey, 2);
      await old.store.putRollout(rollout('r1', 'running'));
      await a.client.leaseClient.leaseRevoke({ ID: old.lease });
      const next = await elect(b, leaderKey, 10);
      expect(Number(next.term)).toBeGreaterThan(Number(old.term));
      await next.store.putRollout(rollout('r1', 'succeeded'));

      await expect(old.store.putRollout(rollout('r1', 'failed', 'old leader'))).rejects.toBeInstanceOf(FencedWriteError);
      await expect(old.store.appendEvent({ rolloutId: 'r1', atMs: 1, node: '', kind: 'rollout-failed', message: 'old', check: '', observed: '', revision: 1 })).rejects.toBeInstanceOf(FencedWriteError);
      await expect(old.store.putAssignment({ node: 'redis-01', module: 'redis', revision: 9, specHash: 'h', assignedMs: 1 })).rejects.toBeInstanceOf(FencedWriteError);
      expect(old.refused()).toBe(3);
      expect((await next.store.getRollout('r1'))!.state).toBe('succeeded');
      expect(await next.store.listEvents('r1')).toEqual([]);
      expect(await next.store.listAssignments()).toEqual([]);
    } finally {
      a.close();
      b.close();
    }
  });

  it('a write sent before a partition and delivered after the new leader took over is refused by etcd', async () => {
    const t = target();
    const proxies = etcd.members.map((m, i) => new TcpProxy(`${SUBNET}.${31 + i}`, 2379, m.ip, 2379));
    await Promise.all(proxies.map((p) => p.start()));
    // The old leader reaches etcd only through the proxies, with a long call deadline so
    // that its write is still in flight when the partition heals.
    const a = new EtcdConnection({ hosts: proxies.map((p) => p.address), prefix: t.prefix }, { callTimeoutMs: 30_000, keepaliveMs: 60_000 });
    const b = new EtcdConnection(t);
    try {
      const leaderKey = a.key('leader');
      const old = await elect(a, leaderKey, 2);
      await old.store.putRollout(rollout('r2', 'running'));
      for (const p of proxies) p.blackhole();
      const late = old.store.putRollout(rollout('r2', 'failed', 'written by the old leader after it lost the lease'));
      const outcome = late.then(() => 'landed', (err: unknown) => err);
      // The lease (2 s, never renewed) expires in etcd; the other replica takes over.
      const next = await waitFor('new leader elected', () => elect(b, leaderKey, 10).catch(() => undefined), 10_000, 100);
      await next.store.putRollout(rollout('r2', 'succeeded'));
      for (const p of proxies) p.heal();
      const err = await outcome;
      expect(err).toBeInstanceOf(FencedWriteError);
      expect((err as Error).message).toContain(`no longer holds ${leaderKey.toString()}`);
      expect(old.refused()).toBe(1);
      await sleep(300);
      const r = (await next.store.getRollout('r2'))!;
      expect(r.state).toBe('succeeded');
      expect(r.error).toBe('');
    } finally {
      a.close();
      b.close();
      await Promise.all(proxies.map((p) => p.stop()));
    }
  });

  it('a lease keeper cut off from etcd gives its lease up before etcd expires it', async () => {
    const t = target();
    const proxies = etcd.members.map((m, i) => new TcpProxy(`${SUBNET}.${31 + i}`, 2379, m.ip, 2379));
    await Promise.all(proxies.map((p) => p.start()));
    const a = new EtcdConnection({ hosts: proxies.map((p) => p.address), prefix: t.prefix });
    const b = new EtcdConnection(t);
    try {
      const keeper = await LeaseKeeper.grant(a, 3000, log);
      keeper.start();
      const key = a.key('held');
      await a.txn({ success: [{ request_put: { key, value: Buffer.from('x'), lease: keeper.id } }] });
      // Kept alive well past its TTL while connected.
      await sleep(4000);
      expect(keeper.valid()).toBe(true);
      expect(await b.get(key)).toBeDefined();

      let lostAt = 0;
      keeper.on('lost', () => { lostAt = performance.now(); });
      const gone = new Promise<number>((resolve) => {
        void b.client.watch().key(key).create().then((w) => w.on('delete', () => resolve(performance.now())));
      });
      await sleep(200);
      const cutAt = performance.now();
      for (const p of proxies) p.blackhole();
      const expiredAt = await gone;
      expect(lostAt).toBeGreaterThan(0);
      expect(keeper.valid()).toBe(false);
      // Stopped acting within the TTL of the cut, and before etcd expired the lease.
      expect(lostAt - cutAt).toBeLessThan(3000);
      expect(lostAt).toBeLessThan(expiredAt);
    } finally {
      for (const p of proxies) p.heal();
      a.close();
      b.close();
      await Promise.all(proxies.map((p) => p.stop()));
    }
  });

  it('with one member down the store keeps working; with every member down it fails fast with StoreUnavailableError naming the endpoints', async () => {
    const t = target();
    const conn = new EtcdConnection(t);
    const store = new EtcdStore(conn);
    try {
      await store.putRollout(rollout('r3', 'running'));
      const leaderName = await etcd.leader();
      const i = Math.max(0, etcd.members.findIndex((m) => m.name === leaderName));
      await etcd.kill(i);
      await store.putRollout(rollout('r3', 'succeeded'));
      expect((await store.getRollout('r3'))!.state).toBe('succeeded');
      await etcd.restart(i);

      await etcd.killAll();
      const t0 = Date.now();
      const err = await store.getRollout('r3').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as Error).message).toContain(etcd.endpoints);
      expect(Date.now() - t0).toBeLessThan(10_000);
    } finally {
      await etcd.restartAll();
      conn.close();
    }
    const again = new EtcdStore(new EtcdConnection(t), undefined, true);
    await waitFor('etcd back', async () => (await again.getRollout('r3'))?.state === 'succeeded', 20_000, 200);
    await again.close();
  });
});

// etcd over TLS with client certificates (etcds://): the same Store contract, and a
// coordinator that reaches its store this way. One member at <subnet>.24, certificates from
// a test CA made with openssl.
const tlsEtcd = new EtcdCluster(SUBNET, [24], 2379, 2380, { tls: true });
const tlsTarget = (p = prefix()): EtcdTarget => ({ hosts: tlsEtcd.endpoints.split(','), prefix: p, tls: tlsEtcd.targetTls() });

describe('etcd over TLS (etcds://)', () => {
  beforeAll(async () => {
    await tlsEtcd.start();
  });
  afterAll(async () => {
    await tlsEtcd.stop();
  });

  storeConformance('EtcdStore (etcd over TLS, client certificate)', async () => {
    const t = tlsTarget();
    return {
      open: () => new EtcdStore(new EtcdConnection(t), undefined, true),
      destroy: async () => {
        const c = new EtcdConnection(t);
        await c.client.delete().prefix(t.prefix);
        c.close();
      },
    };
  });

  it('refuses a client without a certificate from its CA', async () => {
    const t = tlsTarget();
    const conn = new EtcdConnection({ ...t, tls: { ca: t.tls!.ca } }, { retryForMs: 0 });
    try {
      const err = await new EtcdStore(conn).getRollout('x').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(StoreUnavailableError);
      expect((err as Error).message).toContain(tlsEtcd.endpoints);
    } finally {
      conn.close();
    }
  });

  it('a coordinator with --store etcds://... --etcd-ca/--etcd-cert/--etcd-key joins, leads and keeps its state there', async () => {
    const c = new Cluster({ plaintext: true });
    const address = `${SUBNET}.15:7443`;
    const p = new Proc('c-tls', process.execPath, [
      dist('kb-coordinator.cjs'), 'run', '--inventory', c.inventoryFile, '--versions', c.versionsFile, '--settings', c.settingsFile,
      '--data-dir', path.join(c.dir, 'c-tls'), '--listen', address, '--plaintext', '--name', 'c-tls',
      ...tlsEtcd.storeArgs(), '--lease-ttl', '5s',
    ], path.join(c.dir, 'c-tls.log'));
    const client = new ControlClient({ address, plaintext: true, timeoutMs: 3000 });
    try {
      const s = await waitFor('c-tls leads', async () => {
        const st = await client.coordinatorStatus(address).catch(() => undefined);
        return st?.role === 'leader' && st;
      }, 30_000, 200);
      expect(s.store).toBe('etcd');
      expect(s.storeOk).toBe(true);
      expect(s.name).toBe('c-tls');
      // Its records are in the TLS etcd (read back with the client certificate).
      const conn = new EtcdConnection(tlsTarget('/kb/'));
      const { kvs } = await conn.list(conn.key('replicas', ''));
      conn.close();
      expect(kvs.map((kv) => kv.value.toString('utf8')).join('\n')).toContain('"name":"c-tls"');
    } finally {
      client.close();
      await p.kill('SIGKILL');
    }
  });
});
