import { copyFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readKbConfig } from '../../coordinator/kbctl/config.js';
import type { FailoverReport } from '../../coordinator/kbctl/drill.js';
import { REDIS_NODES, SUBNET } from '../helpers/cluster.js';
import { ContainerEvents } from '../helpers/docker-events.js';
import { HaCluster } from '../helpers/ha-cluster.js';
import { sleep, waitFor } from '../helpers/proc.js';
import { registryDigest } from '../helpers/registry.js';
import { agentAppliedRevisions, appliedCounts } from '../helpers/rollout-checks.js';
import { TcpProxy } from '../helpers/tcp-proxy.js';

// Coordinator high availability on the real thing: a three-member etcd cluster on
// loopback, three coordinator processes (c1, c2, c3) with --store etcd://..., three
// single-executable agents that know all three, the real Docker engine and kbctl.
// c1 reaches etcd through TCP proxies the test can cut (a partition of c1 alone).
// Lease TTL: the production default, 5 s.

const GATE = ['--min-healthy-time', '1s', '--healthy-deadline', '60s'];
const TTL_MS = 5000;
const NAMES = REDIS_NODES.map((n) => n.name);
let cluster: HaCluster;
let versions: string;
let bumped = false;
let bystander: { id: string; startedAt: string };

type Events = Awaited<ReturnType<HaCluster['events']>>;

/** Flips versions.yaml between the two redis images; returns the image the next rollout pins. */
function flipVersions(): string {
  bumped = !bumped;
  copyFileSync(bumped ? cluster.tb.versionsBumpFile : cluster.tb.versionsFile, versions);
  return bumped ? cluster.tb.images.redis2 : cluster.tb.images.redis1;
}

/** Starts a rollout (detached) and waits until `node`'s state is being sent; returns the rollout id. */
async function rolloutInFlight(node: string): Promise<string> {
  const before = (await cluster.events()).rollout.id;
  const d = await cluster.kbctl(['rollout', 'redis', '--detach', ...GATE]);
  expect(d.code, d.stderr).toBe(0);
  return waitFor(`${node} in flight`, async () => {
    const s = await cluster.events();
    return s.rollout.id !== before && s.events.some((e) => e.node === node && e.kind === 'node-apply') && s.rollout.id;
  }, 60_000, 50);
}

async function finished(id: string): Promise<Events> {
  const final = await waitFor('rollout finished', async () => {
    const s = await cluster.events().catch(() => undefined);
    // Ended, and its last event written (the record changes state just before it).
    return s && s.rollout.id === id && s.rollout.state !== 'running' && s.events.some((e) => e.kind === 'rollout-succeeded' || e.kind === 'rollout-failed') && s;
  }, 120_000, 250);
  if (final.rollout.state !== 'succeeded') console.log(JSON.stringify(final, null, 1), cluster.dumpLogs(), await cluster.dumpContainers());
  return final;
}

/** No node applied a revision twice: neither in the event log nor in its own log. */
function expectAppliedOnce(final: Events): void {
  for (const [k, n] of appliedCounts(final.events)) expect(n, k).toBe(1);
  for (const n of NAMES) {
    const revs = agentAppliedRevisions(cluster.dir, n);
    expect(new Set(revs).size, `${n} applied revisions ${revs.join(',')}`).toBe(revs.length);
  }
}

async function expectAllRun(image: string): Promise<void> {
  const digest = await registryDigest(image);
  for (const n of NAMES) {
    const c = (await cluster.container(n, 'redis'))!;
    expect(c.State.Running, n).toBe(true);
    expect(await cluster.runningDigest(c)).toContain(digest);
  }
}

async function expectBystanderUntouched(): Promise<void> {
  const by = await cluster.docker.getContainer('kb-e2e-bystander').inspect();
  expect(by.Id).toBe(bystander.id);
  expect(by.State.Running).toBe(true);
  expect(by.State.StartedAt).toBe(bystander.startedAt);
}

async function nodesJson(replica?: number): Promise<{ name: string; status: string; coordinator: string; connectedMs: number; connected: boolean }[]> {
  const r = replica === undefined ? await cluster.kbctl(['-o', 'json', 'nodes']) : await cluster.kbctlAt(replica, ['-o', 'json', 'nodes']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout);
}

/** GET https://<ip>:7444/install.sh, trusting the cluster's CA. */
function fetchInstallScript(ip: string): Promise<string> {
  const ca = readKbConfig(cluster.configFile).ca;
  return new Promise((resolve, reject) => {
    https.get({ host: ip, port: cluster.bootstrapPort, path: '/install.sh', ca }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`install.sh: HTTP ${res.statusCode}: ${body}`))));
    }).on('error', reject);
  });
}

beforeAll(async () => {
  cluster = new HaCluster({ proxied: [0] });
  versions = path.join(cluster.dir, 'versions.yaml');
  copyFileSync(cluster.tb.versionsFile, versions);
  await cluster.start();
  const old = await cluster.docker.listContainers({ all: true, filters: { name: ['kb-e2e-bystander'] } });
  for (const c of old) await cluster.docker.getContainer(c.Id).remove({ force: true });
  await cluster.ensureImage(cluster.tb.images.busybox);
  const by = await cluster.docker.createContainer({ name: 'kb-e2e-bystander', Image: cluster.tb.images.busybox, Cmd: ['sleep', '3600'], HostConfig: { NetworkMode: 'host' } });
  await by.start();
  const info = await by.inspect();
  bystander = { id: info.Id, startedAt: info.State.StartedAt };
  const r = await cluster.kbctl(['rollout', 'redis', ...GATE]);
  if (r.code !== 0) throw new Error(`initial rollout failed: ${r.stdout}\n${r.stderr}\n${cluster.dumpLogs()}`);
});

afterAll(async () => {
  await cluster?.docker.getContainer('kb-e2e-bystander').remove({ force: true }).catch(() => undefined);
  await cluster?.stop();
});

describe('coordinator high availability on etcd', () => {
  it('kbctl nodes and rollout status work against any replica; a rollout asked of a follower is run by the leader', async () => {
    const statuses = await Promise.all(cluster.replicas.map(async (_, i) => {
      const st = await cluster.kbctlAt(i, ['-o', 'json', 'rollout', 'status', 'redis']);
      expect(st.code, st.stderr).toBe(0);
      return JSON.parse(st.stdout) as { rollout: { id: string; state: string } };
    }));
    for (const [i] of cluster.replicas.entries()) {
      const nodes = await nodesJson(i);
      expect(nodes.map((n) => `${n.name}=${n.status}`).sort(), `replica c${i + 1}`).toEqual(NAMES.map((n) => `${n}=Ready`));
      // The agents connect to the first address they know, c1, and every replica says so.
      for (const n of nodes) expect(n.coordinator).toMatch(/^c1 /);
      expect(statuses[i]!.rollout.id).toBe(statuses[0]!.rollout.id);
      expect(statuses[i]!.rollout.state).toBe('succeeded');
      const table = await cluster.kbctlAt(i, ['nodes']);
      expect(table.stdout.split('\n').filter((l) => / Ready /.test(l))).toHaveLength(3);
    }
    // The installer any replica serves gives new agents every replica's address, its own first.
    const script = await fetchInstallScript(cluster.replicas[1]!.ip);
    expect(script).toContain(`COORDINATOR='${[1, 0, 2].map((i) => cluster.replicas[i]!.address).join(',')}'`);
    const coords = await cluster.kbctlAt(2, ['coordinators']);
    expect(coords.code, coords.stderr).toBe(0);
    expect(coords.stdout).toMatch(/^c1 +\S+ +leader /m);
    expect(coords.stdout).toMatch(/^c2 +\S+ +follower /m);
    expect(coords.stdout).toMatch(/^c3 +\S+ +follower /m);

    // c2 alone: it is a follower, answers with the leader's address, and kbctl follows it.
    const r = await cluster.kbctlAt(1, ['rollout', 'redis', ...GATE]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('rollout-noop');
    expect(r.stdout).toContain('succeeded');

    // redis-01 now lists c3 first: from here on the leader drives it through another
    // replica (assignment -> c3 -> agent; results and health -> etcd -> leader).
    await cluster.agents.get('redis-01')!.kill('SIGKILL');
    const t0 = Date.now();
    await cluster.startAgent('redis-01', {}, [2, 0, 1].map((i) => cluster.replicas[i]!.address).join(','));
    for (const [i] of cluster.replicas.entries()) {
      await waitFor(`c${i + 1} sees redis-01 on c3`, async () => (await nodesJson(i)).find((n) => n.name === 'redis-01' && n.status === 'Ready' && n.connectedMs > t0 && /^c3 /.test(n.coordinator)), 20_000, 200);
    }
  });

  it('the leader cut off from etcd stops acting as leader within its lease TTL, another replica takes over and finishes the rollout, no write of the old leader lands afterwards', async () => {
    const image = flipVersions();
    const id = await rolloutInFlight('redis-02');
    const c1 = (await cluster.status(0))!;
    expect(c1.role).toBe('leader');
    const cutAt = Date.now();
    for (const p of cluster.proxies) p.blackhole();

    const down = await waitFor('c1 stops leading', async () => {
      const s = await cluster.status(0);
      return s && s.role !== 'leader' && s.steppedDownMs > 0 && s;
    }, 3 * TTL_MS, 50);
    expect(down.role).toBe('isolated');
    expect(down.storeError).toMatch(/no keep-alive acknowledged/);
    expect(down.steppedDownMs - cutAt).toBeLessThanOrEqual(TTL_MS);

    const next = await cluster.leader(30_000, 0);
    const ns = (await cluster.status(next))!;
    expect(Number(ns.term)).toBeGreaterThan(Number(c1.term));
    // The new leader started only after the old one had stopped.
    expect(ns.leaderSinceMs).toBeGreaterThan(down.steppedDownMs);

    // c1 dropped its agents; they are back on the other replicas.
    await cluster.waitReady(NAMES, 30_000);
    for (const n of await nodesJson()) expect(n.coordinator).not.toMatch(/^c1 /);

    const final = await finished(id);
    expect(final.rollout.state).toBe('succeeded');
    expect(final.events.some((e) => e.kind === 'rollout-resume' && e.message.includes(`under leader c${next + 1}`))).toBe(true);
    expectAppliedOnce(final);
    await expectAllRun(image);

    // The partition heals: whatever c1 still had in flight reaches etcd now, and is refused.
    for (const p of cluster.proxies) p.heal();
    const back = await waitFor('c1 rejoins as a follower', async () => {
      const s = await cluster.status(0);
      return s?.role === 'follower' && s;
    }, 30_000, 100);
    expect(back.lastLeaderWriteRevision).toBeGreaterThan(0);
    expect(back.lastLeaderWriteRevision).toBeLessThan(Number(ns.term));
    expect(back.leaderName).toBe(`c${next + 1}`);
    await sleep(2000);
    const later = await cluster.events();
    expect(later.rollout).toEqual(final.rollout);
    expect(later.events).toEqual(final.events);
    await expectBystanderUntouched();
  });

  it('kill -9 of the leader mid-rollout: a new leader finishes it, no node applies a revision twice, no container restarts that the rollout did not ask for', async () => {
    const leader = await cluster.leader();
    const image = flipVersions();
    const running = new Set<string>();
    for (const n of NAMES) running.add((await cluster.container(n, 'redis'))!.Id);
    const ce = await ContainerEvents.start(cluster.docker);
    try {
      // An operator follows this rollout with kbctl, on the leader, when the leader dies.
      const before = (await cluster.events()).rollout.id;
      const operator = cluster.kbctl(['rollout', 'redis', ...GATE], { KB_COORDINATOR: [leader, ...[0, 1, 2].filter((i) => i !== leader)].map((i) => cluster.replicas[i]!.address).join(',') });
      const id = await waitFor('redis-02 in flight', async () => {
        const s = await cluster.events();
        return s.rollout.id !== before && s.events.some((e) => e.node === 'redis-02' && e.kind === 'node-apply') && s.rollout.id;
      }, 60_000, 50);
      await cluster.killReplica(leader);
      const next = await cluster.leader(30_000, leader);
      const final = await finished(id);
      expect(final.rollout.state).toBe('succeeded');
      // kbctl lost the leader's stream, followed the rollout on the other replicas, and says how it ended.
      const seen = await operator;
      expect(seen.code, `${seen.stdout}\n${seen.stderr}`).toBe(0);
      expect(seen.stderr).toContain(`following rollout ${id} on the other coordinators`);
      expect(seen.stdout).toContain(`rollout ${id} succeeded: revision ${final.rollout.revision} on every node`);
      expect(seen.stdout).toContain('rollout-resume');
      expect(final.events.some((e) => e.kind === 'rollout-resume' && e.message.includes(`under leader c${next + 1}`))).toBe(true);
      expectAppliedOnce(final);
      await expectAllRun(image);
      await cluster.waitReady(NAMES, 30_000);
      await sleep(1000);
      // Straight from the engine: no container was restarted, and each node got exactly
      // the new containers its rollout step asked for: redis and redis-sentinel (both run
      // the bumped redis image since the Redis HA module), one each.
      expect(ce.restarted(running)).toEqual([]);
      expect(Object.fromEntries(ce.startsPerNode())).toEqual(Object.fromEntries(NAMES.map((n) => [n, 2])));
      await expectBystanderUntouched();
    } finally {
      ce.stop();
      if (!cluster.replicas[leader]!.proc?.running) await cluster.startReplica(leader);
    }
  });

  it('one etcd member lost (the raft leader): no visible effect on leadership, agents or a rollout in flight', async () => {
    const leader = await cluster.leader();
    const term = (await cluster.status(leader))!.term;
    const sessions = new Map((await nodesJson()).map((n) => [n.name, n.connectedMs]));
    const image = flipVersions();
    const id = await rolloutInFlight('redis-01');
    const etcdLeader = await cluster.etcd.leader();
    const i = cluster.etcd.members.findIndex((m) => m.name === etcdLeader);
    expect(i).toBeGreaterThanOrEqual(0);
    await cluster.etcd.kill(i);
    try {
      const final = await finished(id);
      expect(final.rollout.state).toBe('succeeded');
      expect(final.events.filter((e) => e.kind === 'rollout-resume')).toEqual([]);
      expectAppliedOnce(final);
      await expectAllRun(image);
      const s = (await cluster.status(leader))!;
      expect(s.role).toBe('leader');
      expect(s.term).toBe(term);
      for (const [r] of cluster.replicas.entries()) {
        const nodes = await nodesJson(r);
        for (const n of nodes) {
          expect(n.status, `${n.name} on c${r + 1}`).toBe('Ready');
          expect(n.connectedMs, `${n.name} kept its session`).toBe(sessions.get(n.name));
        }
        const st = await cluster.kbctlAt(r, ['rollout', 'status', 'redis']);
        expect(st.code, st.stderr).toBe(0);
        expect(st.stdout).toContain(`${id}: redis`);
      }
    } finally {
      await cluster.etcd.restart(i);
    }
  });

  it('kbctl drill coordinator-failover kills the leader mid-rollout and reports the failover: new leader, agents back, no container stopped, rollout completed', async () => {
    const image = flipVersions();
    const r = await cluster.kbctl(['-o', 'json', 'drill', 'coordinator-failover', '--rollout', 'redis', ...GATE, '--timeout', '90s']);
    const report = JSON.parse(r.stdout || '{}') as FailoverReport;
    if (r.code !== 0) console.log(r.stdout, r.stderr, cluster.dumpLogs());
    expect(r.code).toBe(0);
    expect(report.pass).toBe(true);
    expect(report.problems).toEqual([]);
    const killed = cluster.replicas.findIndex((x) => x.name === report.killed.name);
    expect(cluster.replicas[killed]!.proc!.running).toBe(false);
    expect(report.newLeader?.name).not.toBe(report.killed.name);
    expect(report.newLeaderMs).toBeGreaterThan(0);
    expect(report.newLeaderMs).toBeLessThan(3 * TTL_MS);
    expect(report.agents.total).toBe(3);
    expect(report.agents.notReconnected).toEqual([]);
    expect(report.agents.reconnectedMs).not.toBeNull();
    // Every managed container of every node: redis and redis-sentinel on each.
    expect(report.containers.checked).toBe(2 * NAMES.length);
    expect(report.containers.stopped).toEqual([]);
    expect(report.rollout?.completed).toBe(true);
    expect(report.rollout?.appliedTwice).toEqual([]);
    await expectAllRun(image);
    await cluster.startReplica(killed);

    // The table form says the same.
    const single = await cluster.kbctl(['drill', 'coordinator-failover', '--timeout', '60s']);
    expect(single.code, `${single.stdout}\n${single.stderr}`).toBe(0);
    expect(single.stdout).toMatch(/^new leader: +c\d at /m);
    expect(single.stdout).toMatch(new RegExp(`^containers stopped: +0 of ${2 * NAMES.length} managed containers$`, 'm'));
    expect(single.stdout).toMatch(/^result: +PASS$/m);
    const again = cluster.replicas.findIndex((x) => x.proc && !x.proc.running);
    await cluster.startReplica(again);
    await cluster.waitReady(NAMES, 30_000);
  });

  it('kbctl drill coordinator-failover --isolate cuts the leader off from etcd mid-rollout: it steps down within its lease TTL, another replica finishes the rollout, the old leader rejoins as a follower', async () => {
    // A duration that is not one, or not longer than the lease TTL, is refused before anything is cut off.
    const bad = await cluster.kbctl(['drill', 'coordinator-failover', '--isolate', 'soon']);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toContain('invalid duration "soon"');
    const short = await cluster.kbctl(['drill', 'coordinator-failover', '--isolate', '2s']);
    expect(short.code, short.stdout).not.toBe(0);
    expect(short.stderr).toMatch(new RegExp(`isolate for 2000 ms: must be longer than the lease TTL \\(${TTL_MS} ms\\)`));
    const image = flipVersions();
    const r = await cluster.kbctl(['-o', 'json', 'drill', 'coordinator-failover', '--isolate', '8s', '--rollout', 'redis', ...GATE, '--timeout', '90s']);
    const report = JSON.parse(r.stdout || '{}') as FailoverReport;
    if (r.code !== 0) console.log(r.stdout, r.stderr, cluster.dumpLogs());
    expect(r.code).toBe(0);
    expect(report.mode).toBe('isolate');
    expect(report.pass).toBe(true);
    expect(report.problems).toEqual([]);
    const isolated = cluster.replicas.findIndex((x) => x.name === report.killed.name);
    // Not killed: the same process, back as a follower.
    expect(cluster.replicas[isolated]!.proc!.running).toBe(true);
    expect(report.newLeader?.name).not.toBe(report.killed.name);
    expect(report.isolated!.steppedDownMs).toBeGreaterThan(0);
    expect(report.isolated!.steppedDownMs).toBeLessThanOrEqual(TTL_MS);
    expect(report.isolated!.rejoinedMs).toBeGreaterThanOrEqual(8000);
    expect(report.isolated!.role).toBe('follower');
    expect(report.isolated!.lastWriteRevision).toBeLessThan(report.newLeader!.term);
    expect(report.agents.notReconnected).toEqual([]);
    expect(report.containers.stopped).toEqual([]);
    expect(report.rollout?.completed).toBe(true);
    expect(report.rollout?.appliedTwice).toEqual([]);
    await expectAllRun(image);
    const st = (await cluster.status(isolated))!;
    expect(st.role).toBe('follower');
    expect(st.storeOk).toBe(true);
    expect(cluster.replicas[isolated]!.proc!.log()).toContain('isolated from etcd by kbctl drill coordinator-failover --isolate');
    await cluster.waitReady(NAMES, 30_000);
  });

  it('all of etcd down: every coordinator says so and refuses rollouts; agents and containers are unaffected; all recovers when etcd is back', async () => {
    const before = new Map<string, { id: string; startedAt: string }>();
    for (const n of NAMES) {
      const c = (await cluster.container(n, 'redis'))!;
      before.set(n, { id: c.Id, startedAt: c.State.StartedAt });
    }
    await cluster.etcd.killAll();
    try {
      const isolated = await waitFor('every replica isolated', async () => {
        const all = await cluster.statuses();
        return all.every((s) => s?.role === 'isolated') && all;
      }, 3 * TTL_MS, 200);
      for (const [i, s] of isolated.entries()) {
        expect(s!.storeOk).toBe(false);
        expect(s!.storeError).toContain(`cannot reach etcd (${cluster.replicas[i]!.endpoints})`);
      }
      const coords = await cluster.kbctl(['coordinators']);
      expect(coords.code, coords.stderr).toBe(0);
      expect(coords.stdout.match(/ isolated /g)).toHaveLength(3);
      expect(coords.stdout).toContain('cannot reach etcd');

      const r = await cluster.kbctl(['rollout', 'redis', ...GATE]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain('cannot reach etcd');
      expect(r.stderr).toContain('rollouts are refused until etcd answers');
      const n = await cluster.kbctl(['nodes']);
      expect(n.code).not.toBe(0);
      expect(n.stderr).toContain('cannot reach etcd');

      // Agents keep running and keep their containers running, untouched...
      await sleep(3000);
      for (const name of NAMES) {
        expect(cluster.agents.get(name)!.running, `agent ${name}`).toBe(true);
        const c = (await cluster.container(name, 'redis'))!;
        expect(c.State.Running).toBe(true);
        expect({ id: c.Id, startedAt: c.State.StartedAt }).toEqual(before.get(name));
      }
      // ...and keep reconciling: a container stopped by hand comes back without any coordinator.
      await cluster.docker.getContainer(before.get('redis-03')!.id).stop({ t: 1 });
      await waitFor('redis-03 running again', async () => (await cluster.container('redis-03', 'redis'))?.State.Running, 30_000, 200);
      await expectBystanderUntouched();
    } finally {
      await cluster.etcd.restartAll();
    }
    await cluster.leader(60_000);
    await cluster.waitReady(NAMES, 60_000);
    const nodes = await nodesJson();
    expect(nodes.every((x) => x.status === 'Ready')).toBe(true);
  });

  it('an agent whose first coordinator accepts connections but never answers moves on to the next replica', async () => {
    // A coordinator host that vanished without a reset: connections open, nothing answers.
    const silent = new TcpProxy(`${SUBNET}.40`, 7443, cluster.replicas[0]!.ip, 7443);
    await silent.start();
    silent.blackhole();
    try {
      await cluster.agents.get('redis-03')!.kill('SIGKILL');
      const t0 = Date.now();
      const agent = await cluster.startAgent('redis-03', {}, [silent.address, ...cluster.replicas.map((r) => r.address)].join(','));
      await waitFor('redis-03 connected to a replica', async () => (await nodesJson()).find((n) => n.name === 'redis-03' && n.connected && n.connectedMs > t0 && n.status === 'Ready'), 30_000, 200);
      expect(agent.log()).toContain(`"coordinator":"${silent.address}","reason":"no answer within 5000 ms"`);
    } finally {
      await silent.stop();
    }
  });
});
