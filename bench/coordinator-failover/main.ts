/**
 * Benchmark: `kbctl drill coordinator-failover`, 10 runs (KB_BENCH_RUNS), against a peer
 * measured in the same run.
 *
 *   HA:   3-member etcd + 2 coordinator replicas + 3 real agents (redis containers). Each run
 *         flips versions.yaml, starts a rollout, kills -9 the leader while the rollout is in
 *         flight (the drill), then restarts the killed replica. With two replicas every agent
 *         sits on the leader at each kill (they start on c1; after a kill they move to the
 *         survivor, which becomes the leader): the worst case for reconnection.
 *   Peer: the same agents on ONE coordinator (SQLite) that is killed -9 and restarted at
 *         once, as systemd's Restart=always would: the best case without HA.
 *
 * Metric: kill -> every agent connected again (target <= 5 s), and kill -> new leader.
 * Each kill happens at a random phase of the 1 s lease keep-alive period.
 * Needs `node scripts/build.mjs` and `bash scripts/testbed.sh up`; run with
 * `KB_E2E_SUBNET=127.0.x node bench/run.mjs coordinator-failover`.
 */
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import type { FailoverReport } from '../../coordinator/kbctl/drill.js';
import { Cluster, REDIS_NODES, SUBNET } from '../../test/helpers/cluster.js';
import { HaCluster } from '../../test/helpers/ha-cluster.js';
import { sleep, waitFor } from '../../test/helpers/proc.js';

const RUNS = Number(process.env.KB_BENCH_RUNS ?? 10);
const GATE = ['--min-healthy-time', '1s', '--healthy-deadline', '60s'];
const NAMES = REDIS_NODES.map((n) => n.name);

interface NodeJson { name: string; connected: boolean; status: string; connectedMs: number }

function stats(xs: number[]): { p50: number; max: number; min: number; mean: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { p50: at(0.5), max: s[s.length - 1]!, min: s[0]!, mean: Math.round(s.reduce((a, b) => a + b, 0) / s.length) };
}

async function prepare<T extends Cluster>(c: T): Promise<{ c: T; flip: () => void }> {
  const versions = path.join(c.dir, 'versions.yaml');
  copyFileSync(c.tb.versionsFile, versions);
  let bumped = false;
  return {
    c,
    flip: () => {
      bumped = !bumped;
      copyFileSync(bumped ? c.tb.versionsBumpFile : c.tb.versionsFile, versions);
    },
  };
}

async function haRuns(): Promise<{ reports: FailoverReport[] }> {
  const { c, flip } = await prepare(new HaCluster({ replicas: 2 }));
  const reports: FailoverReport[] = [];
  try {
    await c.start();
    const first = await c.kbctl(['rollout', 'redis', ...GATE]);
    if (first.code !== 0) throw new Error(`initial rollout failed: ${first.stderr}`);
    for (let i = 0; i < RUNS; i++) {
      flip();
      await sleep(Math.random() * 1000);
      const r = await c.kbctl(['-o', 'json', 'drill', 'coordinator-failover', '--rollout', 'redis', ...GATE, '--timeout', '90s']);
      const report = JSON.parse(r.stdout) as FailoverReport;
      reports.push(report);
      process.stderr.write(`HA run ${i + 1}/${RUNS}: new leader ${report.newLeaderMs} ms, agents ${report.agents.reconnectedMs} ms (${report.agents.onKilledLeader} moved), stopped ${report.containers.stopped.length}, rollout ${report.rollout?.state}, ${report.pass ? 'PASS' : `FAIL ${report.problems.join('; ')}`}\n`);
      const killed = c.replicas.findIndex((x) => x.name === report.killed.name);
      await c.startReplica(killed);
      await c.waitReady(NAMES, 60_000);
    }
  } finally {
    await c.stop();
  }
  return { reports };
}

async function singleRuns(): Promise<number[]> {
  const { c } = await prepare(new Cluster());
  const out: number[] = [];
  try {
    await c.start();
    const first = await c.kbctl(['rollout', 'redis', ...GATE]);
    if (first.code !== 0) throw new Error(`initial rollout failed: ${first.stderr}`);
    for (let i = 0; i < RUNS; i++) {
      await sleep(Math.random() * 1000);
      const killAt = Date.now();
      await c.coordinator!.kill('SIGKILL');
      await c.startCoordinator();
      const back = await waitFor('agents back', async () => {
        const r = await c.kbctl(['-o', 'json', 'nodes']);
        if (r.code !== 0) return undefined;
        const nodes = JSON.parse(r.stdout) as NodeJson[];
        return NAMES.every((n) => nodes.some((x) => x.name === n && x.connected && x.connectedMs > killAt)) && nodes;
      }, 60_000, 50);
      const ms = Math.max(...back.filter((n) => NAMES.includes(n.name)).map((n) => n.connectedMs - killAt));
      out.push(ms);
      process.stderr.write(`single run ${i + 1}/${RUNS}: agents ${ms} ms\n`);
    }
  } finally {
    await c.stop();
  }
  return out;
}

const started = new Date().toISOString();
const ha = await haRuns();
const single = await singleRuns();
const reconnect = ha.reports.map((r) => r.agents.reconnectedMs ?? Number.NaN);
const leader = ha.reports.map((r) => r.newLeaderMs ?? Number.NaN);
const rs = stats(reconnect);
const ls = stats(leader);
const ss = stats(single);
const passed = ha.reports.filter((r) => r.pass).length;
const lines = [
  `Runs: ${RUNS} (started ${started}, subnet ${SUBNET}, lease TTL 5 s, 2 replicas, 3 agents).`,
  '',
  '| run | new leader (ms) | every agent reconnected (ms) | agents moved | containers stopped | in-flight rollout | drill |',
  '| --- | --- | --- | --- | --- | --- | --- |',
  ...ha.reports.map((r, i) => `| ${i + 1} | ${r.newLeaderMs} | ${r.agents.reconnectedMs} | ${r.agents.onKilledLeader}/${r.agents.total} | ${r.containers.stopped.length} of ${r.containers.checked} | ${r.rollout?.completed ? 'completed' : r.rollout?.state} | ${r.pass ? 'PASS' : 'FAIL'} |`),
  '',
  '| metric | p50 | max | min | mean |',
  '| --- | --- | --- | --- | --- |',
  `| HA: kill -9 -> every agent reconnected | ${rs.p50} | ${rs.max} | ${rs.min} | ${rs.mean} |`,
  `| HA: kill -9 -> new leader | ${ls.p50} | ${ls.max} | ${ls.min} | ${ls.mean} |`,
  `| peer (one coordinator, restarted at once): kill -9 -> every agent reconnected | ${ss.p50} | ${ss.max} | ${ss.min} | ${ss.mean} |`,
  '',
  `Ratio HA / peer, agents reconnected: p50 ${(rs.p50 / ss.p50).toFixed(2)}, max ${(rs.max / ss.max).toFixed(2)}. ` +
    `Target (every agent reconnected <= 5000 ms): ${rs.max <= 5000 ? 'met' : 'NOT met'} in ${reconnect.filter((x) => x <= 5000).length}/${RUNS} runs; drills passed ${passed}/${RUNS}.`,
];
process.stdout.write(`${lines.join('\n')}\n`);
if (passed !== RUNS) process.exitCode = 1;
