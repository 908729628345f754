/**
 * bench/rollout-vs-ansible: the same work done by `kbctl rollout` and by Ansible, on N
 * simulated nodes (loopback addresses of one host), side by side in one run
 * (docs/benchmarks.md).
 *
 * The work is kb's redis module on every node: the redis and redis-sentinel containers
 * (image pinned by digest from the local registry, host networking, bound to the node's
 * address, data and Sentinel directories mounted), the credentials files (redis.env and the
 * two rendered configurations, 0600), and a wait until Redis answers PING.
 *
 *  kb       a coordinator and N agents (test/helpers/cluster.ts: mTLS, the real
 *           single-executable agent, the test bed's Docker engine), production heartbeat and
 *           health intervals; `kbctl rollout redis --max-parallel N`, which returns once every
 *           node passed its health gate (ports, replication role, every Sentinel agreeing)
 *           for --min-healthy-time.
 *  Ansible  Debian's ansible with community.docker.docker_container, over SSH to a private
 *           sshd listening on the N node addresses, forks = N. Its per-host variables come
 *           from kb's own planner (same inputs, same code as the coordinator): the same
 *           files with the same content and modes, the same containers (image@digest,
 *           entrypoint, arguments, environment, mounts, restart policy), its own passwords.
 *
 * Scenarios per N, each timed from process start to exit: first rollout (nothing deployed),
 * no-op re-run (everything deployed), version bump (kb/redis:7.0-kb1 -> 7.0-kb2). kb runs its
 * three scenarios, its containers are removed, then Ansible runs its three.
 *
 *   node bench/run.mjs rollout-vs-ansible [--nodes 3,20] [--min-healthy-time 1s] [--no-docs] [--json FILE]
 *
 * Needs the test bed (scripts/testbed.sh up: ansible, openssh-server, python3-docker are in
 * its package list) and dist/ (scripts/build.mjs). Nodes are $KB_E2E_SUBNET.1..N
 * (default 127.0.1).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeBenchSection } from '../lib/docs.js';
import { dockerVersion, firstLine, hostLine } from '../lib/machine.js';
import { Redis } from 'ioredis';
import { Cluster, FAST_REDIS_SETTINGS, SUBNET, repoRoot, type TestNode } from '../../test/helpers/cluster.js';
import { redisPasswordOn } from '../../test/helpers/credentials.js';
import { freePort, sleep } from '../../test/helpers/proc.js';
import { registryDigest } from '../../test/helpers/registry.js';
import { ANSIBLE_PREFIX, AnsiblePeer, Sshd, type PlaybookRun } from './ansible.js';

const SCENARIOS = ['first', 'noop', 'bump'] as const;
type Scenario = (typeof SCENARIOS)[number];
const SCENARIO_TITLE: Record<Scenario, string> = {
  first: 'first rollout (nothing deployed)',
  noop: 'no-op re-run (everything deployed)',
  bump: 'version bump (7.0-kb1 -> 7.0-kb2)',
};
const DEFAULT_NODES = [3, 20];
/**
 * Quiet time before every scenario, for both tools: kb's agents re-check health every 500 ms
 * for 10 s after an apply (and N agents starting up take a while); a re-run is measured from a
 * steady state, not while the previous run's aftermath still competes for the 2 cores.
 */
const DEFAULT_PAUSE_MS = 12_000;

interface Args { nodes: number[]; minHealthyTime: string; pauseMs: number; docs: boolean; json?: string }

function parseArgs(argv: string[]): Args {
  const a: Args = { nodes: DEFAULT_NODES, minHealthyTime: '1s', pauseMs: DEFAULT_PAUSE_MS, docs: true };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => { const x = argv[++i]; if (x === undefined) throw new Error(`${k} needs a value`); return x; };
    if (k === '--nodes') a.nodes = v().split(',').map((x) => Number(x.trim()));
    else if (k === '--min-healthy-time') a.minHealthyTime = v();
    else if (k === '--pause') a.pauseMs = Number(v()) * 1000;
    else if (k === '--no-docs') a.docs = false;
    else if (k === '--json') a.json = v();
    else throw new Error(`unknown argument ${k} (--nodes 3,20, --min-healthy-time 1s, --pause SECONDS, --no-docs, --json FILE)`);
  }
  if (!(a.pauseMs >= 0)) throw new Error('--pause: seconds, 0 or more');
  if (!a.nodes.length || a.nodes.some((n) => !Number.isInteger(n) || n < 1 || n > 99)) throw new Error('--nodes: comma-separated node counts between 1 and 99');
  return a;
}

const log = (msg: string) => process.stdout.write(`${new Date().toISOString().slice(11, 23)} ${msg}\n`);

function nodesOf(n: number): TestNode[] {
  return Array.from({ length: n }, (_, i) => ({
    name: `redis-${String(i + 1).padStart(2, '0')}`, ip: `${SUBNET}.${i + 1}`, role: 'redis', subrole: i === 0 ? 'master' : 'replica',
  }));
}

interface ToolResult {
  ms: number;
  /** What the tool itself said: kb's rollout state, Ansible's recap. */
  detail: string;
  /** Checked after the run, outside the timing: every node's redis answers PING and runs the expected digest. */
  verified: boolean;
  /** 1-minute load average when the command started (the machine is shared). */
  load1: number;
  /** kb only: per node, apply -> healthy (ms), from the rollout's events. */
  nodeMs?: number[];
}

interface SizeResult { nodes: number; kb: Partial<Record<Scenario, ToolResult>>; ansible: Partial<Record<Scenario, ToolResult>> }

/** PING with the password on every node; every node's redis container runs `digest`. */
async function verify(ips: string[], password: (i: number) => Promise<string>, digestOf: (i: number) => Promise<string[]>, digest: string): Promise<string[]> {
  const problems: string[] = [];
  await Promise.all(ips.map(async (ip, i) => {
    const r = new Redis({ host: ip, port: 6379, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, password: await password(i), connectTimeout: 3000 });
    r.on('error', () => undefined); // a failed PING is reported below
    try {
      await r.connect();
      const pong = await r.ping();
      if (pong !== 'PONG') problems.push(`${ip}: PING answered ${pong}`);
    } catch (err) {
      problems.push(`${ip}: PING failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      r.disconnect();
    }
    const d: string[] = await digestOf(i).catch(() => []);
    if (!d.includes(digest)) problems.push(`${ip}: redis runs ${d.join(',') || 'nothing'}, expected ${digest}`);
  }));
  return problems;
}

async function runKb(n: number, args: Args, digests: Record<'kb1' | 'kb2', string>): Promise<SizeResult['kb']> {
  const nodes = nodesOf(n);
  // Production heartbeat and health-report intervals (kb-coordinator run defaults), not the tests' 500 ms.
  // Every simulated node enrolls from 127.0.0.1: the per-source enrollment limit (10) would refuse N=20. Not timed.
  const cluster = new Cluster({
    nodes, settings: FAST_REDIS_SETTINGS, heartbeatMs: 5000, healthIntervalMs: 5000,
    coordinatorArgs: ['--enroll-burst', String(n + 5), '--enroll-per-minute', '600'],
  });
  const out: SizeResult['kb'] = {};
  try {
    log(`kb, N=${n}: starting the coordinator and ${n} agents (${cluster.dir})`);
    await cluster.cleanContainers();
    await cluster.startCoordinator();
    for (const node of nodes) await cluster.startAgent(node.name);
    await cluster.waitReady(nodes.map((x) => x.name), 120_000);
    for (const s of SCENARIOS) {
      await sleep(args.pauseMs);
      cluster.useVersions(s === 'bump' ? 'bump' : 'original');
      const load1 = os.loadavg()[0]!;
      const r = await cluster.kbctl(['-o', 'json', 'rollout', 'redis', '--max-parallel', String(n), '--min-healthy-time', args.minHealthyTime, '--healthy-deadline', '300s']);
      let state = `exit ${r.code}`;
      let nodeMs: number[] | undefined;
      try {
        const j = JSON.parse(r.stdout) as { rollout: { state: string; nodes: unknown[] }; events: { kind: string; message: string }[] };
        state = `${j.rollout.state}${j.events.some((e) => e.kind === 'rollout-noop') ? ' (no-op)' : ''}, ${j.rollout.nodes.length} nodes changed`;
        nodeMs = j.events.filter((e) => e.kind === 'node-healthy').map((e) => Number(/\((\d+) ms after apply\)/.exec(e.message)?.[1])).filter(Number.isFinite);
      } catch { /* not JSON: the exit code says it */ }
      if (r.code !== 0) throw new Error(`kbctl rollout (${s}, N=${n}) failed (${r.code}): ${r.stdout.slice(-2000)}\n${r.stderr}\n${cluster.dumpLogs(20)}`);
      const problems = await verify(nodes.map((x) => x.ip), (i) => redisPasswordOn(cluster, nodes[i]!.name),
        async (i) => { const c = await cluster.container(nodes[i]!.name, 'redis'); return c ? cluster.runningDigest(c) : []; }, s === 'bump' ? digests.kb2 : digests.kb1);
      out[s] = { ms: r.ms, load1, detail: state, verified: problems.length === 0, ...(nodeMs?.length ? { nodeMs } : {}) };
      log(`kb, N=${n}, ${s}: ${r.ms} ms (${state})${problems.length ? `; NOT verified: ${problems.join('; ')}` : '; verified'}`);
    }
  } finally {
    await cluster.stop();
    // The cluster directory holds kb's CA, store key and the nodes' credentials files.
    execFileSync('rm', ['-rf', cluster.dir]);
  }
  return out;
}

async function removePeerContainers(cluster: Cluster): Promise<void> {
  const list = await cluster.docker.listContainers({ all: true, filters: { name: [ANSIBLE_PREFIX] } });
  await Promise.all(list.filter((c) => c.Names.some((x) => x.startsWith(`/${ANSIBLE_PREFIX}`))).map((c) => cluster.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
}

async function runAnsible(n: number, args: Args, sshd: Sshd, digests: Record<'kb1' | 'kb2', string>): Promise<SizeResult['ansible']> {
  const nodes = nodesOf(n);
  // A cluster object only for its input files and engine handle: no coordinator, no agent.
  const files = new Cluster({ nodes, settings: FAST_REDIS_SETTINGS });
  const peer = new AnsiblePeer(nodes, sshd, files.tb.dockerHost);
  const out: SizeResult['ansible'] = {};
  try {
    await removePeerContainers(files);
    log(`Ansible, N=${n}: forks ${n}, sshd on ${nodes[0]!.ip}..${nodes[n - 1]!.ip}:${sshd.port} (${peer.dir})`);
    for (const s of SCENARIOS) {
      await sleep(args.pauseMs);
      files.useVersions(s === 'bump' ? 'bump' : 'original');
      await peer.plan({ inventoryFile: files.inventoryFile, versionsFile: files.versionsFile, settingsFile: files.settingsFile });
      const load1 = os.loadavg()[0]!;
      const r: PlaybookRun = await peer.run();
      const detail = `ok=${r.ok} changed=${r.changed} failed=${r.failed} unreachable=${r.unreachable}`;
      if (r.code !== 0 || r.failed || r.unreachable) throw new Error(`ansible-playbook (${s}, N=${n}) failed (exit ${r.code}, ${detail}):\n${r.output.slice(-3000)}`);
      const problems = await verify(nodes.map((x) => x.ip), async () => peer.password, async (i) => {
        const list = await files.docker.listContainers({ all: true, filters: { name: [`${ANSIBLE_PREFIX}${nodes[i]!.name}_redis`] } });
        const c = list.find((x) => x.Names.includes(`/${ANSIBLE_PREFIX}${nodes[i]!.name}_redis`));
        return c ? files.runningDigest(await files.docker.getContainer(c.Id).inspect()) : [];
      }, s === 'bump' ? digests.kb2 : digests.kb1);
      if (s === 'noop' && r.changed !== 0) problems.push(`the re-run changed ${r.changed} things`);
      out[s] = { ms: Math.round(r.ms), load1, detail, verified: problems.length === 0 };
      log(`Ansible, N=${n}, ${s}: ${Math.round(r.ms)} ms (${detail})${problems.length ? `; NOT verified: ${problems.join('; ')}` : '; verified'}`);
    }
  } finally {
    await removePeerContainers(files).catch(() => undefined);
    peer.remove();
    execFileSync('rm', ['-rf', files.dir]);
  }
  return out;
}

const sec = (ms: number | undefined) => (ms === undefined ? 'n/a' : `${(ms / 1000).toFixed(2)} s`);

function summarize(results: SizeResult[], args: Args): string {
  const lines = [
    `kb: \`kbctl rollout redis --max-parallel N --min-healthy-time ${args.minHealthyTime}\`; Ansible: \`ansible-playbook\` with forks = N; ${args.pauseMs / 1000} s quiet before every scenario. Wall time of the command, process start to exit; "kb / Ansible" is kb's time divided by Ansible's, "speed-up" Ansible's divided by kb's.`,
    '',
    '| N | scenario | kb | Ansible | kb / Ansible | speed-up | kb said | Ansible said | load at start (kb / Ansible) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const r of results) {
    for (const s of SCENARIOS) {
      const k = r.kb[s];
      const a = r.ansible[s];
      const both = k && a;
      lines.push(`| ${r.nodes} | ${SCENARIO_TITLE[s]} | ${sec(k?.ms)}${k && !k.verified ? ' (NOT verified)' : ''} | ${sec(a?.ms)}${a && !a.verified ? ' (NOT verified)' : ''} | ${both ? (k.ms / a.ms).toFixed(3) : 'n/a'} | ${both ? `${(a.ms / k.ms).toFixed(1)}x` : 'n/a'} | ${k?.detail ?? 'n/a'} | ${a?.detail ?? 'n/a'} | ${k ? k.load1.toFixed(1) : 'n/a'} / ${a ? a.load1.toFixed(1) : 'n/a'} |`);
    }
  }
  lines.push('');
  const target = (n: number, s: Scenario, factor: number, what: string) => {
    const r = results.find((x) => x.nodes === n);
    const k = r?.kb[s];
    const a = r?.ansible[s];
    if (!k || !a) return `- ${what}: not measured in this run (N=${n} not run).`;
    const f = a.ms / k.ms;
    return `- ${what}: ${f >= factor ? 'met' : 'NOT met'} (${f.toFixed(1)}x: kb ${sec(k.ms)}, Ansible ${sec(a.ms)}).`;
  };
  lines.push('Targets:', '', target(3, 'first', 3, 'first rollout at least 3x faster at N=3'), target(20, 'noop', 20, 'no-op re-run at least 20x faster at N=20'));
  const per = results.filter((r) => SCENARIOS.some((s) => r.kb[s]?.nodeMs?.length));
  if (per.length) {
    lines.push('', 'kb, per node, apply -> healthy for the min-healthy-time (from the rollout events): ' + per.map((r) => SCENARIOS.filter((s) => r.kb[s]?.nodeMs?.length).map((s) => {
      const v = [...r.kb[s]!.nodeMs!].sort((x, y) => x - y);
      return `N=${r.nodes} ${s} ${sec(v[0])} - ${sec(v[v.length - 1])}`;
    }).join(', ')).join('; ') + '.');
  }
  return lines.join('\n');
}

function machine(dockerHost: string): string {
  const v = firstLine;
  const pkg = (p: string) => v('dpkg-query', ['-W', '-f=${Version}', p]);
  return [
    `- CPU: ${hostLine(` (shared with other work; load average at the end ${os.loadavg().map((x) => x.toFixed(1)).join(' ')})`)}`,
    `- Node ${process.version}; Docker ${dockerVersion(dockerHost)}; image kb/redis built from Debian's ${v('redis-server', ['--version'])}`,
    `- Ansible: Debian's ansible ${pkg('ansible')} (${v('ansible', ['--version'])}), community.docker ${v('sh', ['-c', "ansible-galaxy collection list community.docker 2>/dev/null | awk '/community.docker/ {print $2}'"])}, python3-docker ${pkg('python3-docker')} (the Docker SDK /usr/bin/python3 imports on the target: ${v('/usr/bin/python3', ['-c', 'import docker; print(docker.__version__)'])}); OpenSSH ${pkg('openssh-server')}`,
    '- Everything on one host: nodes are loopback addresses sharing one Docker engine; sshd, coordinator and agents on loopback.',
  ].join('\n');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const probe = new Cluster({ nodes: nodesOf(1) });
  execFileSync('rm', ['-rf', probe.dir]);
  const digests = { kb1: await registryDigest(probe.tb.images.redis1), kb2: await registryDigest(probe.tb.images.redis2) };
  const maxN = Math.max(...args.nodes);
  const sshd = new Sshd(path.join(os.tmpdir(), `kb-bench-sshd-${process.pid}`), await freePort(), nodesOf(maxN).map((x) => x.ip));
  const results: SizeResult[] = [];
  try {
    await sshd.start();
    for (const n of args.nodes) {
      const r: SizeResult = { nodes: n, kb: {}, ansible: {} };
      results.push(r);
      r.kb = await runKb(n, args, digests);
      r.ansible = await runAnsible(n, args, sshd, digests);
    }
  } finally {
    await sshd.stop();
    execFileSync('rm', ['-rf', sshd.dir]);
  }
  const summary = summarize(results, args);
  process.stdout.write(`\n${summary}\n`);
  if (args.json) writeFileSync(args.json, JSON.stringify({ args, results }, null, 2));
  if (args.docs) {
    const extra = [
      args.nodes.join(',') !== DEFAULT_NODES.join(',') ? ` --nodes ${args.nodes.join(',')}` : '',
      args.minHealthyTime !== '1s' ? ` --min-healthy-time ${args.minHealthyTime}` : '',
      args.pauseMs !== DEFAULT_PAUSE_MS ? ` --pause ${args.pauseMs / 1000}` : '',
    ].join('');
    const command = `KB_E2E_SUBNET=${SUBNET} npm run bench -- rollout-vs-ansible${extra}`;
    const file = writeBenchSection(repoRoot, 'rollout-vs-ansible', command, machine(probe.tb.dockerHost), summary);
    log(`results written to ${file}`);
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`bench rollout-vs-ansible: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
