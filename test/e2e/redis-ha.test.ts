import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AckWriter, measureFailover } from '../../shared/redis/writer.js';
import { Cluster, HA_NODES, HA_SETTINGS, REDIS_NODES } from '../helpers/cluster.js';
import { sleep, waitFor } from '../helpers/proc.js';
import { sentinelId } from '../../coordinator/modules/redis.js';
import {
  MASTER_NAME, allHealthy, check, currentAuth, failing, haproxyServer, majorityMaster, redis, replication, runtimeSocket, sentinelSays, setThroughProxy,
  useCredentials,
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
  useCredentials(cluster);
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
    // Each Sentinel runs with the id derived from its hostname and knew the two others from its
    // first start (written by the start script, which asked them with the Sentinel password).
    for (const n of REDIS_NODES) {
      expect(await redis(n.ip, 26379, (r) => r.call('SENTINEL', 'MYID'))).toBe(sentinelId(n.name));
      const c = (await cluster.container(n.name, 'redis-sentinel'))!;
      const logs = (await cluster.docker.getContainer(c.Id).logs({ stdout: true, stderr: true })).toString();
      expect(logs).toMatch(new RegExp(`kb: Sentinel id ${sentinelId(n.name)} \\(derived from the hostname\\); 2 of 2 other Sentinels known from the start`));
    }
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
        // ...including its password for Redis (redis.env), which SENTINEL REMOVE dropped.
        const pw = currentAuth().redis?.password;
        if (pw) await r.call('SENTINEL', 'SET', MASTER_NAME, 'auth-pass', pw);
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

  it('killing the master container: within down-after + a few seconds, writes through HAProxy land on the new master, HAProxy\'s server is the new master', async () => {
    const old = (await majorityMaster(REDIS_NODES))!;
    const oldNode = nodeOf(old);
    const writer = new AckWriter({ proxy: { host: LB.ip, port: 6379 }, auth: currentAuth().redis, keyPrefix: 'kb:e2e:kill:', intervalMs: 5, timeoutMs: 1000 });
    writer.start();
    try {
      expect((await writer.waitForAck(() => true, 5000))?.server).toBe(old);
      // A crash of the node: its agent dies first (nothing restarts anything), then redis is SIGKILLed.
      await cluster.agents.get(oldNode)!.kill('SIGKILL');
      const c = (await cluster.container(oldNode, 'redis'))!;
      const killedAt = Date.now();
      await cluster.docker.getContainer(c.Id).kill({ signal: 'SIGKILL' });
      const first = await writer.waitForAck((a) => a.server !== old && a.sentMs >= killedAt, 30_000);
      expect(first, 'a write acknowledged by another master').toBeDefined();
      const newMaster = first!.server;
      const after = first!.ackMs - killedAt;
      console.log(`kill -> first write acknowledged by the new master ${newMaster}: ${after} ms (down-after 5000 ms)`);
      expect(after).toBeLessThan(5000 + 7000);
      expect(await majorityMaster(REDIS_NODES)).toBe(newMaster);
      expect(await haproxyServer(socket)).toBe(newMaster);
      expect(await setThroughProxy(LB.ip, 'kb:e2e:after-kill', 'x')).toBe(newMaster);
      expect((await replication(newMaster.split(':')[0]!)).role).toBe('master');
    } finally {
      await writer.stop();
    }
    const m = measureFailover(writer.acks, { oldServer: old, newServer: writer.acks.at(-1)!.server, failedAtMs: 0 });
    expect(m.ackedByOldAfterSwitch).toBe(0);
  });

  it('the returning old master rejoins as a replica and HAProxy does not switch back to it', async () => {
    const master = (await majorityMaster(REDIS_NODES))!;
    const down = REDIS_NODES.find((n) => !cluster.agents.get(n.name)!.running)!;
    const oldAddr = `${down.ip}:6379`;
    const writer = new AckWriter({ proxy: { host: LB.ip, port: 6379 }, auth: currentAuth().redis, keyPrefix: 'kb:e2e:rejoin:', intervalMs: 5, timeoutMs: 1000 });
    writer.start();
    const seen = new Set<string>();
    const roles = new Set<string>();
    try {
      // Its agent comes back and starts the killed container, which asks the Sentinels first.
      await cluster.startAgent(down.name);
      await waitFor(`${down.name} a replica of ${master} with the link up`, async () => {
        seen.add(await haproxyServer(socket));
        const r = await replication(down.ip).catch(() => undefined);
        if (r) roles.add(r.role!);
        return r?.role === 'slave' && `${r.master_host}:${r.master_port}` === master && r.master_link_status === 'up';
      }, 60_000, 20);
      await expectHealthy('every node healthy after the rejoin', 90_000);
      console.log(`old master ${down.name} came back with roles: ${[...roles].join(', ')}`);

      // The split-brain guard: the old master claims role:master again on its own (as one
      // restarted from old arguments would). The Sentinels do not name it: HAProxy stays.
      await redis(down.ip, 6379, (r) => r.call('REPLICAOF', 'NO', 'ONE'));
      expect((await replication(down.ip)).role).toBe('master');
      for (const a of await watchRouting(4000)) seen.add(a);
      expect((await replication(down.ip)).role, 'Sentinel has not demoted it yet').toBe('master');
      expect(await setThroughProxy(LB.ip, 'kb:e2e:stale-master', 'x')).toBe(master);
    } finally {
      await writer.stop();
    }
    console.log(`HAProxy routed to: ${[...seen].join(', ')} while ${down.name} came back and claimed master`);
    expect([...seen]).toEqual([master]);
    expect(writer.acks.length).toBeGreaterThan(100);
    expect(writer.acks.filter((a) => a.server === oldAddr)).toEqual([]);
    expect(await majorityMaster(REDIS_NODES)).toBe(master);
    // Sentinel converts it back into a replica (about 8 s after it saw role:master).
    await expectHealthy('the stale master demoted by Sentinel', 90_000);
    expect((await replication(down.ip)).role).toBe('slave');
  });

  it('the follower restarted during a failover converges to the right master on start', async () => {
    const old = (await majorityMaster(REDIS_NODES))!;
    await cluster.agents.get(LB.name)!.kill('SIGKILL');
    // A failover while the follower is down: HAProxy keeps pointing at the old master.
    await redis(REDIS_NODES[0]!.ip, 26379, (r) => r.call('SENTINEL', 'FAILOVER', MASTER_NAME));
    await cluster.startAgent(LB.name);
    const t0 = Date.now();
    const now = await waitFor('a new master agreed by the Sentinels', async () => {
      const m = await majorityMaster(REDIS_NODES);
      return m && m !== old && m;
    }, 30_000, 50);
    await waitFor(`HAProxy on ${now}`, async () => (await haproxyServer(socket)) === now, 15_000, 50);
    console.log(`follower restarted during a failover: HAProxy on the new master ${now} ${Date.now() - t0} ms after the agent restart`);
    expect(await setThroughProxy(LB.ip, 'kb:e2e:restarted', 'x')).toBe(now);
    await expectHealthy('every node healthy after the forced failover', 90_000);
    expect((await check(cluster, LB.name, 'haproxy', 'follower'))?.observed).toContain(`-> ${now} agreed by 3/3 sentinels`);
  });

  it('an HAProxy restart keeps the address from the server-state file, with no follower running', async () => {
    const master = (await majorityMaster(REDIS_NODES))!;
    await cluster.agents.get(LB.name)!.kill('SIGKILL');
    try {
      const c = (await cluster.container(LB.name, 'haproxy'))!;
      await cluster.docker.getContainer(c.Id).restart({ t: 1 });
      const server = await waitFor('HAProxy answers on its Runtime API', () => haproxyServer(socket).catch(() => undefined), 10_000, 50);
      expect(server).toBe(master);
      expect(await setThroughProxy(LB.ip, 'kb:e2e:restart', 'x')).toBe(master);
    } finally {
      await cluster.startAgent(LB.name);
    }
    await cluster.waitReady([LB.name]);
    await expectHealthy('healthy after the HAProxy restart');
  });

  it('`kbctl drill redis-failover` refuses to run when the module is not healthy, and changes nothing', async () => {
    const master = (await majorityMaster(REDIS_NODES))!;
    const replica = REDIS_NODES.find((n) => `${n.ip}:6379` !== master)!;
    const sentinel = (await cluster.container(replica.name, 'redis-sentinel'))!;
    await cluster.docker.getContainer(sentinel.Id).pause();
    try {
      await waitFor(`${replica.name} unhealthy`, async () => (await check(cluster, replica.name, 'redis', 'sentinels-agree'))?.ok === false, 15_000, 100);
      const r = await cluster.kbctl(['drill', 'redis-failover']);
      expect(r.code).toBe(1);
      // The refusal names the first unhealthy node and check: the node whose Sentinel is
      // paused (its container check, or its redis-replication check, which asks that local
      // Sentinel and gets no answer), or another node whose sentinels-agree check is waiting
      // on that Sentinel (whichever reports first).
      const nodes = REDIS_NODES.map((n) => n.name).join('|');
      expect(r.stderr).toMatch(new RegExp(`the redis module is not healthy, refusing to break it further: (${nodes}): check (container redis-sentinel running: paused|sentinels-agree|redis-replication)`));
      const redisContainer = (await cluster.container(nodeOf(master), 'redis'))!;
      expect(redisContainer.State.Running).toBe(true);
      expect(await majorityMaster(REDIS_NODES)).toBe(master);
    } finally {
      await cluster.docker.getContainer(sentinel.Id).unpause();
    }
    await expectHealthy('healthy again');
  });

  it('`kbctl drill redis-failover -o json` reports all four measures with plausible values and ends healthy', async () => {
    // Starts from a healthy module even when the test before it failed half-way.
    await expectHealthy('healthy before the drill');
    const before = (await majorityMaster(REDIS_NODES))!;
    const r = await cluster.kbctl(['-o', 'json', 'drill', 'redis-failover']);
    if (r.code !== 0) console.log(r.stdout, r.stderr, cluster.dumpLogs(30));
    expect(r.code).toBe(0);
    const rep = JSON.parse(r.stdout) as Record<string, any>;
    console.log(`drill (stop): promotion ${rep.promotionMs} ms, switch ${rep.switchMs} ms, write outage ${rep.writeOutageMs} ms, lost ${rep.writesLost}/${rep.writesAcked}, rejoin ${rep.rejoinMs} ms`);
    expect(rep).toMatchObject({ drill: 'redis-failover', mode: 'stop', ok: true, error: '', oldMaster: before, oldMasterNode: nodeOf(before), healthyAfter: true, returnedToOld: false, writesLost: 0 });
    expect(rep.newMaster).not.toBe(before);
    expect(rep.newMasterNode).toBe(nodeOf(rep.newMaster));
    // Sentinel cannot promote before down-after-milliseconds (5000) has passed.
    expect(rep.promotionMs).toBeGreaterThanOrEqual(5000);
    expect(rep.promotionMs).toBeLessThan(20_000);
    expect(rep.switchMs).toBeGreaterThanOrEqual(0);
    expect(rep.switchMs).toBeLessThan(5000);
    // Writes stop when the master stops (within ~100 ms of the request: Redis pauses writes at
    // its next cron tick) and resume on the new master after promotion + switch.
    expect(rep.writeOutageMs).toBeGreaterThan(4000);
    expect(rep.writeOutageMs).toBeLessThan(rep.promotionMs + rep.switchMs + 2000);
    expect(rep.writesAcked).toBeGreaterThan(500);
    expect(rep.rejoinMs).toBeGreaterThan(0);
    expect(rep.timeline.some((e: { what: string }) => e.what.startsWith('+switch-master'))).toBe(true);
    expect(await majorityMaster(REDIS_NODES)).toBe(rep.newMaster);
    expect(await haproxyServer(socket)).toBe(rep.newMaster);
    expect(await allHealthy(cluster)).toBe(true);
  });

  for (const mode of ['pause', 'kill'] as const) {
    it(`\`kbctl drill redis-failover --mode ${mode}\` prints the human report and ends healthy`, async () => {
      const before = (await majorityMaster(REDIS_NODES))!;
      const r = await cluster.kbctl(['drill', 'redis-failover', '--mode', mode]);
      console.log(r.stdout);
      if (r.code !== 0) console.log(r.stderr, cluster.dumpLogs(30));
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`drill redis-failover (${mode}): OK`);
      expect(r.stdout).toMatch(/time to Sentinel promotion\s+\d+\.\d{3} s/);
      expect(r.stdout).toMatch(/switch to the new master\s+\d+\.\d{3} s/);
      expect(r.stdout).toMatch(/client-visible write outage\s+\d+\.\d{3} s/);
      expect(r.stdout).toMatch(/acknowledged writes lost \(RPO\)\s+\d+ of \d+/);
      expect(r.stdout).toContain('HAProxy routed to the old master after the switch: never');
      expect(r.stdout).toContain(`${mode} redis on ${nodeOf(before)}`);
      expect(await majorityMaster(REDIS_NODES)).not.toBe(before);
      expect(await allHealthy(cluster)).toBe(true);
    });
  }
});
