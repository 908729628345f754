import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AckWriter, measureFailover } from '../../shared/redis/writer.js';
import { Cluster, HA_NODES, HA_SETTINGS, REDIS_NODES } from '../helpers/cluster.js';
import { sleep, waitFor } from '../helpers/proc.js';
import {
  MASTER_NAME, allHealthy, check, failing, haproxyServer, majorityMaster, redis, replication, runtimeSocket, sentinelSays, setThroughProxy,
} from '../helpers/redis-ha.js';

// Redis HA on the real engine: three Redis nodes (redis + redis-sentinel containers) and one
// internal HAProxy node whose agent runs the master follower, all on loopback, driven
// through kbctl. The tests run in order and share one cluster: each starts from the state
// the previous one left (the master moves).

const GATE = ['--min-healthy-time', '1s', '--healthy-deadline', '90s'];
const LB = HA_NODES.find((n) => n.role === 'lb')!;
const ip = (name: string) => REDIS_NODES.find((n) => n.name === name)!.ip;
const nodeOf = (addr: string) => REDIS_NODES.find((n) => `${n.ip}:6379` === addr)!.name;
let cluster: Cluster;
let socket: string;

async function expectHealthy(what: string, timeoutMs = 60_000): Promise<void> {
  try {
    await waitFor(what, () => allHealthy(cluster), timeoutMs, 250);
  } catch (err) {
    console.log((await failing(cluster)).join('\n'), cluster.dumpLogs(20));
    throw err;
  }
}

/** Watches HAProxy's server and the writer for `ms`; returns every address HAProxy routed to. */
async function watchRouting(ms: number): Promise<Set<string>> {
  const seen = new Set<string>();
  const end = Date.now() + ms;
  while (Date.now() < end) {
    seen.add(await haproxyServer(socket));
    await sleep(20);
  }
  return seen;
}

beforeAll(async () => {
  cluster = new Cluster({ nodes: HA_NODES, settings: HA_SETTINGS });
  socket = runtimeSocket(cluster, LB.name);
  await cluster.start();
});

afterAll(async () => {
  await cluster?.stop();
});

describe('Redis HA: Sentinel, HAProxy and the master follower', () => {
  it('after `kbctl rollout redis` and `kbctl rollout haproxy`, SET/GET through HAProxy reaches the master', async () => {
    for (const module of ['redis', 'haproxy']) {
      const r = await cluster.kbctl(['rollout', module, ...GATE]);
      if (r.code !== 0) console.log(r.stdout, r.stderr, cluster.dumpLogs());
      expect(r.code, `rollout ${module}`).toBe(0);
    }
    const master = `${ip('redis-01')}:6379`;
    expect(await majorityMaster(REDIS_NODES)).toBe(master);
    const value = `v-${Date.now()}`;
    expect(await setThroughProxy(LB.ip, 'kb:e2e:ha', value)).toBe(master);
    expect(await redis(ip('redis-01'), 6379, (r) => r.get('kb:e2e:ha'))).toBe(value);
    for (const n of ['redis-02', 'redis-03']) {
      await waitFor(`${n} replicates`, async () => (await redis(ip(n), 6379, (r) => r.get('kb:e2e:ha'))) === value, 10_000);
    }
    // HAProxy: bound to the lb node's address, one server in be_redis_master, the Runtime API on a unix socket.
    const cfg = readFileSync(path.join(cluster.hostRoot(LB.name), 'opt/keybuzz/haproxy/conf/haproxy.cfg'), 'utf8');
    expect(cfg).toContain(`bind ${LB.ip}:6379`);
    expect(cfg).toContain('stats socket /run/kb-haproxy/admin.sock mode 600 level admin');
    expect(cfg.split('\n').filter((l) => /^\s+server\s/.test(l))).toHaveLength(1);
    expect(statSync(socket).isSocket()).toBe(true);
    expect(await haproxyServer(socket)).toBe(master);
    // The follower wrote the server-state file HAProxy loads at start.
    const stateFile = path.join(cluster.hostRoot(LB.name), 'opt/keybuzz/haproxy/run/server-state');
    expect(existsSync(stateFile) && readFileSync(stateFile, 'utf8')).toContain(` ${ip('redis-01')} `);
    await expectHealthy('every node healthy');
    const follower = await check(cluster, LB.name, 'haproxy', 'follower');
    expect(follower?.observed).toContain(`be_redis_master/redis-master -> ${master} agreed by 3/3 sentinels`);
    const agree = await check(cluster, 'redis-02', 'redis', 'sentinels-agree');
    expect(agree?.observed).toContain(`3/3 sentinels name ${master}; local knows 3 sentinels`);
    const setget = await check(cluster, LB.name, 'haproxy', 'redis-set-get');
    expect(setget?.observed).toContain(`(master ${master})`);
    const table = await cluster.kbctl(['health', 'haproxy']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/haproxy-01\s+haproxy@1\s+follower\s+ok\s+following: be_redis_master\/redis-master -> /);
  });

  it('a single Sentinel lying (monitoring a wrong address) or stale (frozen) does not move HAProxy', async () => {
    const master = (await majorityMaster(REDIS_NODES))!;
    const liar = REDIS_NODES.find((n) => `${n.ip}:6379` !== master)!;
    const liarSays = `${liar.ip}:6379`;
    // The liar now monitors itself: it names a replica as the master.
    await redis(liar.ip, 26379, async (r) => {
      await r.call('SENTINEL', 'REMOVE', MASTER_NAME);
      await r.call('SENTINEL', 'MONITOR', MASTER_NAME, liar.ip, '6379', '2');
    });
    try {
      expect(await sentinelSays(liar.ip)).toBe(liarSays);
      const seen = await watchRouting(3500); // more than three follower intervals
      expect([...seen]).toEqual([master]);
      expect(await setThroughProxy(LB.ip, 'kb:e2e:liar', 'x')).toBe(master);
      const follower = await check(cluster, LB.name, 'haproxy', 'follower');
      expect(follower?.observed).toContain(`${master} agreed by 2/3 sentinels (${liar.ip}:26379 says ${liarSays})`);
      expect((await check(cluster, liar.name, 'redis', 'sentinels-agree'))?.ok).toBe(false);
    } finally {
      // Put the liar back as the template has it.
      const [mip, mport] = master.split(':');
      await redis(liar.ip, 26379, async (r) => {
        await r.call('SENTINEL', 'REMOVE', MASTER_NAME);
        await r.call('SENTINEL', 'MONITOR', MASTER_NAME, mip!, mport!, '2');
        await r.call('SENTINEL', 'SET', MASTER_NAME, 'down-after-milliseconds', '5000', 'failover-timeout', '60000', 'parallel-syncs', '1');
      });
    }
    await expectHealthy('the liar agrees again');

    // Stale: a frozen Sentinel answers nothing at all.
    const stale = REDIS_NODES.find((n) => `${n.ip}:6379` !== master)!;
    const sentinel = await cluster.container(stale.name, 'redis-sentinel');
    await cluster.docker.getContainer(sentinel!.Id).pause();
    try {
      const seen = await watchRouting(3500);
      expect([...seen]).toEqual([master]);
      expect(await setThroughProxy(LB.ip, 'kb:e2e:stale', 'x')).toBe(master);
      const follower = await check(cluster, LB.name, 'haproxy', 'follower');
      expect(follower?.observed).toContain(`${master} agreed by 2/3 sentinels (${stale.ip}:26379 silent)`);
    } finally {
      await cluster.docker.getContainer(sentinel!.Id).unpause();
    }
    await expectHealthy('the stale Sentinel is back');
  });
});
