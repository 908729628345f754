/**
 * bench/agent-footprint: what the real single-executable kb-agent costs on an idle node
 * (docs/benchmarks.md), next to what Node itself costs, measured in the same run.
 *
 * kb: dist/kb-agent (the Node SEA built by scripts/build.mjs) enrolled with a real
 * coordinator over mTLS (by `kb-agent enroll` in its own process, as install.sh does),
 * managing the redis module's two containers (redis and redis-sentinel) of one node on the
 * test bed's Docker engine, with production intervals (heartbeat and health report 5 s, full
 * reconcile 10 s). --settle seconds (default 15) after its module is healthy, once the agent
 * is done reporting every 500 ms after the apply, it idles for --idle seconds (default 60)
 * while its RSS (VmRSS), PSS and USS (/proc/PID/smaps_rollup) and CPU (utime+stime,
 * /proc/PID/stat) are sampled every second. The agent runs with the environment install.sh
 * writes into kb-agent.env (its `# runtime` lines), as installed: first the service process
 * that ran the first rollout, then restarted on the node's state, then
 * restarted without parts of its tuning (the installer's environment; its own V8 flags) to
 * show what each part is worth, and with a just-written binary (page cache, see below).
 *
 * Peers, idle in the same window as the first agent run, built from the same node binary:
 *  node floor      plain `node floor.cjs` (a script that only waits);
 *  SEA floor       the same script as a single executable: Node's own floor for kb-agent;
 *  SEA + libraries a single executable that loads every library the agent depends on and
 *                  waits: what the libraries cost before the agent does anything.
 * At the end of the window every process is asked for its V8 heap (SIGUSR2: the agent logs
 * it, the peers print it) and its /proc/PID/smaps is split into the executable's mapped
 * pages, shared libraries and anonymous memory: where the MB go.
 *
 *   npm run bench -- agent-footprint [--idle 60] [--settle 15] [--no-docs] [--json FILE] [--smoke]
 *                                    [--variant 'NAME:VAR=VALUE;VAR=VALUE' ...] [--compare-binary PATH ...]
 *
 * --variant adds an agent run with that environment (e.g. 'jitless:NODE_OPTIONS=--jitless');
 * --compare-binary runs another build of the agent (e.g. one of an older commit) the same way;
 * --smoke keeps only the first two agent windows and the floor peers (for
 * test/e2e/bench-footprint-smoke.test.ts).
 * Needs the test bed and dist/ (bench/run.mjs does both); uses $KB_E2E_SUBNET (default
 * 127.0.1) like the e2e tests: the node is .1.
 */
import { build, type Plugin } from 'esbuild';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { writeBenchSection } from '../lib/docs.js';
import { dockerVersion, hostLine } from '../lib/machine.js';
import type { MemoryReport } from '../../agent/memory.js';
import { Cluster, FAST_REDIS_SETTINGS, REDIS_NODES, dist, repoRoot } from '../../test/helpers/cluster.js';
import { installerRuntimeEnv } from '../../test/helpers/installer-env.js';
import { sleep, waitFor } from '../../test/helpers/proc.js';
import { allHealthy, failing, useCredentials } from '../../test/helpers/redis-ha.js';

interface Variant { name: string; env: Record<string, string>; binary?: string; keepPageCache?: boolean; other?: boolean }
interface Args { idleS: number; settleS: number; docs: boolean; json?: string; variants: Variant[]; compare: string[]; smoke: boolean }

const TARGET_RSS_MB = 60;
/**
 * The window starts this long after the module is healthy: after an apply the agent reports
 * every 500 ms until it has been healthy for 10 s (agent/agent.ts SETTLE_HEALTHY_FOR_MS), and
 * only then is it idle; 5 s more for the garbage of that phase to be collected.
 */
const DEFAULT_SETTLE_S = 15;
const TARGET_CPU_PERCENT = 0.5;
const log = (msg: string) => process.stdout.write(`${new Date().toISOString().slice(11, 23)} ${msg}\n`);

function parseEnvList(text: string, what: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const part of text.split(';').map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq < 1) throw new Error(`${what}: "${part}" is not VAR=VALUE`);
    env[part.slice(0, eq)] = part.slice(eq + 1);
  }
  return env;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { idleS: 60, settleS: DEFAULT_SETTLE_S, docs: true, variants: [], compare: [], smoke: false };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => { const x = argv[++i]; if (x === undefined) throw new Error(`${k} needs a value`); return x; };
    if (k === '--idle') a.idleS = Number(v());
    else if (k === '--settle') a.settleS = Number(v());
    else if (k === '--no-docs') a.docs = false;
    else if (k === '--smoke') a.smoke = true;
    else if (k === '--json') a.json = v();
    else if (k === '--compare-binary') a.compare.push(path.resolve(v()));
    else if (k === '--variant') {
      const x = v();
      const colon = x.indexOf(':');
      if (colon < 1) throw new Error(`--variant ${x}: expected NAME:VAR=VALUE;...`);
      a.variants.push({ name: x.slice(0, colon), env: parseEnvList(x.slice(colon + 1), `--variant ${x}`) });
    } else throw new Error(`unknown argument ${k} (--idle S, --settle S, --no-docs, --smoke, --json FILE, --variant NAME:VAR=VALUE;..., --compare-binary PATH)`);
  }
  if (!(a.idleS >= 1)) throw new Error('--idle must be at least 1 (seconds)');
  if (!(a.settleS >= 0)) throw new Error('--settle must be 0 or more (seconds)');
  return a;
}

// ---------------------------------------------------------------------------------------------
// Sampling /proc.

const CLK_TCK = (() => { try { return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100; } catch { return 100; } })();

interface Sample { atMs: number; rssKb: number; pssKb: number; ussKb: number; anonKb: number; ticks: number; threads: number }

function field(text: string, key: string): number {
  return Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
}

function sample(pid: number): Sample {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const roll = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return {
    atMs: performance.now(),
    rssKb: field(status, 'VmRSS'),
    pssKb: field(roll, 'Pss'),
    ussKb: field(roll, 'Private_Clean') + field(roll, 'Private_Dirty'),
    anonKb: field(roll, 'Pss_Anon'),
    ticks: Number(rest[11]) + Number(rest[12]),
    threads: field(status, 'Threads'),
  };
}

/** Resident KiB by kind of mapping: the executable's own pages, shared libraries, anonymous memory. */
interface Breakdown { executableKb: number; librariesKb: number; anonKb: number; otherKb: number }

function breakdown(pid: number): Breakdown {
  const exe = readlinkSync(`/proc/${pid}/exe`);
  const b: Breakdown = { executableKb: 0, librariesKb: 0, anonKb: 0, otherKb: 0 };
  let name = '';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) { name = head[1]!.trim(); continue; }
    const rss = /^Rss:\s+(\d+)/.exec(line);
    if (!rss) continue;
    const kb = Number(rss[1]);
    if (name === exe) b.executableKb += kb;
    else if (/\.so(\.[\d.]+)?$/.test(name)) b.librariesKb += kb;
    else if (name === '' || name.startsWith('[')) b.anonKb += kb;
    else b.otherKb += kb;
  }
  return b;
}

interface Measured {
  name: string;
  what: string;
  env: Record<string, string>;
  pid: number;
  windowS: number;
  rssMb: { avg: number; max: number };
  /** RSS and CPU ticks (1/CLK_TCK s) of every sample, for --json: where in the window the peak and the CPU are. */
  series: { s: number; rssMb: number; ticks: number }[];
  pssMb: number;
  ussMb: number;
  anonMb: number;
  cpuPercent: number;
  threads: number;
  breakdown: Breakdown;
  memory?: MemoryReport;
}

interface Target { name: string; what: string; env: Record<string, string>; pid: number; memory: () => Promise<MemoryReport | undefined> }

/** Samples every target once a second for `seconds`, then takes their breakdown and V8 report. */
async function measure(targets: Target[], seconds: number): Promise<Measured[]> {
  const samples = targets.map(() => [] as Sample[]);
  const end = performance.now() + seconds * 1000;
  for (;;) {
    targets.forEach((t, i) => samples[i]!.push(sample(t.pid)));
    const left = end - performance.now();
    if (left <= 0) break;
    await sleep(Math.min(1000, left));
  }
  const out: Measured[] = [];
  for (const [i, t] of targets.entries()) {
    const s = samples[i]!;
    const first = s[0]!;
    const last = s.at(-1)!;
    const avg = (f: (x: Sample) => number) => s.reduce((a, x) => a + f(x), 0) / s.length / 1024;
    const windowS = (last.atMs - first.atMs) / 1000;
    out.push({
      name: t.name, what: t.what, env: t.env, pid: t.pid, windowS,
      rssMb: { avg: avg((x) => x.rssKb), max: Math.max(...s.map((x) => x.rssKb)) / 1024 },
      series: s.map((x) => ({ s: Math.round((x.atMs - first.atMs) / 100) / 10, rssMb: Math.round(x.rssKb / 102.4) / 10, ticks: x.ticks - first.ticks })),
      pssMb: avg((x) => x.pssKb),
      ussMb: avg((x) => x.ussKb),
      anonMb: avg((x) => x.anonKb),
      cpuPercent: (100 * (last.ticks - first.ticks)) / CLK_TCK / windowS,
      threads: last.threads,
      breakdown: breakdown(t.pid),
      memory: await t.memory(),
    });
  }
  return out;
}

/**
 * Drops `file`'s pages from the page cache (written back first): the state after a reboot,
 * the steady state of a node. How the executable's pages sit in the page cache (folio sizes
 * left by the write, or by readahead after a drop) changes how many of them a process gets
 * mapped, by more than 15 MB for the very same binary on recent kernels; every executable
 * measured here starts from this same state unless a variant says otherwise.
 */
function dropPageCache(file: string): void {
  execFileSync('sync', [file]);
  execFileSync('dd', [`if=${file}`, 'iflag=nocache', 'count=0', 'status=none']);
}

// ---------------------------------------------------------------------------------------------
// Peers: single executables built from the same node binary as dist/kb-agent.

/** dockerode's SSH transport is stubbed as in scripts/build.mjs, so the libraries peer loads what the agent bundles. */
const stubSsh: Plugin = {
  name: 'stub-ssh2',
  setup(b) {
    b.onResolve({ filter: /^(ssh2|cpu-features)$/ }, (args) => ({ path: args.path, namespace: 'stub' }));
    b.onLoad({ filter: /.*/, namespace: 'stub' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
  },
};

const PEER_REPORT = `
import { memoryReport } from ${JSON.stringify(path.join(repoRoot, 'agent/memory.ts'))};
process.on('SIGUSR2', () => process.stdout.write(JSON.stringify({ memory: memoryReport() }) + '\\n'));
setInterval(() => undefined, 1 << 30);
`;

/**
 * Every library the agent's bundle contains (package.json dependencies it imports, lazily or
 * not), all loaded at start: what they cost when nothing is lazy.
 */
const LIBRARIES = ['@grpc/grpc-js', '@grpc/proto-loader', 'commander', 'dockerode', 'ioredis', 'pino', 'reflect-metadata', '@peculiar/x509'];

async function bundle(dir: string, name: string, source: string): Promise<string> {
  const entry = path.join(dir, `${name}.ts`);
  writeFileSync(entry, source);
  const out = path.join(dir, `${name}.cjs`);
  await build({ entryPoints: [entry], outfile: out, bundle: true, platform: 'node', target: 'node20', format: 'cjs', logLevel: 'warning', legalComments: 'none', plugins: [stubSsh], nodePaths: [path.join(repoRoot, 'node_modules')] });
  return out;
}

/** Builds a single executable from `script` exactly as scripts/build.mjs builds dist/kb-agent. */
function sea(dir: string, name: string, script: string): string {
  const config = path.join(dir, `${name}.sea.json`);
  const blob = path.join(dir, `${name}.blob`);
  writeFileSync(config, JSON.stringify({ main: script, output: blob, disableExperimentalSEAWarning: true, useCodeCache: false }));
  execFileSync(process.execPath, ['--experimental-sea-config', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  const bin = path.join(dir, name);
  rmSync(bin, { force: true });
  copyFileSync(process.execPath, bin);
  chmodSync(bin, 0o755);
  execFileSync(process.execPath, [path.join(repoRoot, 'node_modules/postject/dist/cli.js'), bin, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2'], { stdio: 'ignore' });
  return bin;
}

class Peer {
  readonly child: ChildProcess;
  private out = '';
  constructor(readonly name: string, readonly what: string, cmd: string, args: string[], readonly env: Record<string, string>) {
    if (cmd !== process.execPath) dropPageCache(cmd);
    const base = { ...process.env };
    delete base.NODE_OPTIONS;
    this.child = spawn(cmd, args, { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => { this.out += d; });
  }

  target(): Target {
    return { name: this.name, what: this.what, env: this.env, pid: this.child.pid!, memory: () => this.memory() };
  }

  async memory(): Promise<MemoryReport | undefined> {
    const before = this.out.length;
    this.child.kill('SIGUSR2');
    return waitFor(`${this.name} memory report`, () => {
      const line = this.out.slice(before).split('\n').find((l) => l.startsWith('{'));
      return line ? (JSON.parse(line) as { memory: MemoryReport }).memory : undefined;
    }, 5000, 50).catch(() => undefined);
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------
// Report.

const mb = (n: number) => n.toFixed(1);
const kbMb = (kb: number) => (kb / 1024).toFixed(1);

/** What an agent row ran with: the installer's runtime environment, overridden by the variant's (empty = unset). */
function effectiveEnv(installer: Record<string, string>, env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries({ ...installer, ...env }).filter(([k, v]) => v !== '' || !(k in installer)));
}

function envText(env: Record<string, string>): string {
  const e = Object.entries(env);
  return e.length ? e.map(([k, v]) => `\`${k}=${v}\``).join(' ') : 'none';
}

function targetLine(agent: Measured): string {
  return `- \`${agent.name}\`: RSS <= ${TARGET_RSS_MB} MB ${agent.rssMb.max <= TARGET_RSS_MB ? 'met' : 'missed'} (max ${mb(agent.rssMb.max)} MB, avg ${mb(agent.rssMb.avg)} MB); ` +
    `CPU <= ${TARGET_CPU_PERCENT}% of one core ${agent.cpuPercent <= TARGET_CPU_PERCENT ? 'met' : 'missed'} (${agent.cpuPercent.toFixed(3)}%).`;
}

function summarize(results: Measured[], args: Args): string {
  const judged = results.filter((r) => r.name === 'kb-agent' || r.name === 'kb-agent, first process');
  const agent = results.find((r) => r.name === 'kb-agent') ?? results[0]!;
  const floor = results.find((r) => r.name === 'SEA floor');
  const lines = [
    `Idle window ${args.idleS} s per agent run (sampled every second, once the module was healthy plus ${args.settleS} s). ` +
      '`kb-agent, first process` is the agent\'s first process after enrollment (`kb-agent enroll` in a process of its own, as install.sh does), which ran the rollout; every other agent row is the agent restarted on the node\'s state (as after a reboot or upgrade) with that environment. ' +
      'The peers idled during the first window. Every executable\'s page cache was dropped before it started (the state after a reboot), except in `binary just written` (a fresh copy, as right after an install).',
    '',
    '| process | environment | RSS avg | RSS max | PSS | USS | anonymous | CPU (% of one core) | threads |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...results.map((r) => `| ${r.name} | ${envText(r.env)} | ${mb(r.rssMb.avg)} MB | ${mb(r.rssMb.max)} MB | ${mb(r.pssMb)} MB | ${mb(r.ussMb)} MB | ${mb(r.anonMb)} MB | ${r.cpuPercent.toFixed(3)}% | ${r.threads} |`),
    '',
    'Targets:',
    '',
    ...judged.map(targetLine),
    '',
  ];
  if (floor) {
    lines.push(`Node's own floor for a single executable (\`SEA floor\`, the same node binary) is ${mb(floor.rssMb.avg)} MB RSS: kb-agent adds ${mb(agent.rssMb.avg - floor.rssMb.avg)} MB on top of it (\`${agent.name}\`).`);
  }
  lines.push(
    '',
    'Where the resident memory goes at the end of the window (MB; the executable\'s pages are file-backed and clean: the kernel can drop and re-read them, and they are the same for every Node single executable):',
    '',
    '| process | executable (file) | shared libraries | anonymous | other files | V8 heap committed | V8 heap used | code space | new space | old space | external (Buffers) |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...results.map((r) => {
      const m = r.memory;
      const sp = (n: string) => (m?.spaces[n] ? kbMb(m.spaces[n].sizeKb) : 'n/a');
      return `| ${r.name} | ${kbMb(r.breakdown.executableKb)} | ${kbMb(r.breakdown.librariesKb)} | ${kbMb(r.breakdown.anonKb)} | ${kbMb(r.breakdown.otherKb)} | ${m ? kbMb(m.heapTotalKb) : 'n/a'} | ${m ? kbMb(m.heapUsedKb) : 'n/a'} | ${sp('code_space')} | ${sp('new_space')} | ${sp('old_space')} | ${m ? kbMb(m.externalKb) : 'n/a'} |`;
    }),
  );
  return lines.join('\n');
}

function machine(cluster: Cluster): string {
  return [
    `- CPU: ${hostLine()}`,
    `- Node ${process.version} (the single executables are copies of it); Docker ${dockerVersion(cluster.tb.dockerHost)}`,
    `- kb-agent: dist/kb-agent, ${Math.round(Number(execFileSync('stat', ['-c', '%s', dist('kb-agent')], { encoding: 'utf8' })) / 1e6)} MB, bundle dist/kb-agent.cjs ${Math.round(Number(execFileSync('stat', ['-c', '%s', dist('kb-agent.cjs')], { encoding: 'utf8' })) / 1024)} KiB`,
    '- One node on a loopback address; the coordinator on the same host (other helpers\' work shares the 2 cores: CPU figures carry that noise).',
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------

async function agentMemory(cluster: Cluster, node: string): Promise<MemoryReport | undefined> {
  const p = cluster.agents.get(node)!;
  const before = p.log().length;
  p.child.kill('SIGUSR2');
  return waitFor('agent memory report', () => {
    for (const line of p.log().slice(before).split('\n')) {
      if (!line.startsWith('{')) continue;
      try {
        const j = JSON.parse(line) as { msg?: string; memory?: MemoryReport };
        if (j.msg === 'memory' && j.memory) return j.memory;
      } catch { /* partial line */ }
    }
    return undefined;
  }, 5000, 50).catch(() => undefined);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const node = REDIS_NODES[0]!;
  const installer = installerRuntimeEnv();
  const dir = path.join(os.tmpdir(), `kb-bench-footprint-${process.pid}`);
  mkdirSync(dir, { recursive: true });
  // The first window measures the process that enrolled and rolled out; every later one an
  // agent restarted on the node's state (as after a reboot or an upgrade). The harness starts
  // agents with the installer's runtime environment (test/helpers/installer-env.ts); the
  // rows after `kb-agent` take parts of the tuning away to show what each part is worth.
  const unset = Object.fromEntries(Object.keys(installer).map((k) => [k, '']));
  const variants: Variant[] = [
    { name: 'kb-agent, first process', env: {} },
    { name: 'kb-agent', env: {} },
  ];
  if (!args.smoke) {
    if (Object.keys(installer).length) variants.push({ name: 'kb-agent without the installer env', env: unset });
    variants.push({ name: 'kb-agent, V8 defaults', env: { ...unset, KB_AGENT_V8_FLAGS: '' } });
  }
  variants.push(...args.variants.map((v) => ({ name: `kb-agent (${v.name})`, env: v.env })));
  // The same binary just copied, its page cache left as the write left it (see dropPageCache).
  if (!args.smoke) variants.push({ name: 'kb-agent (binary just written)', env: {}, binary: path.join(dir, 'kb-agent'), keepPageCache: true });
  variants.push(...args.compare.map((b) => ({ name: `other build (${path.basename(path.dirname(path.dirname(b)))})`, env: unset, binary: b, other: true })));

  log('building the peers (single executables from the same node binary)');
  const floorScript = await bundle(dir, 'floor', PEER_REPORT);
  const libsScript = args.smoke ? undefined : await bundle(dir, 'libraries', `${LIBRARIES.map((l, i) => `import * as lib${i} from ${JSON.stringify(l)};`).join('\n')}\n(globalThis as Record<string, unknown>).kbLibraries = [${LIBRARIES.map((_, i) => `lib${i}`).join(', ')}];\n${PEER_REPORT}`);
  const floorSea = sea(dir, 'floor-sea', floorScript);
  const libsSea = libsScript && sea(dir, 'libraries-sea', libsScript);

  // Production intervals: heartbeat and health every 5 s, full reconcile every 10 s.
  const cluster = new Cluster({
    nodes: [node], settings: `${FAST_REDIS_SETTINGS.replace('redis:\n', 'redis:\n  sentinel_quorum: 1\n')}`,
    heartbeatMs: 5000, healthIntervalMs: 5000, agentArgs: ['--reconcile-interval-ms', '10000'],
  });
  const peers: Peer[] = [];
  const results: Measured[] = [];
  try {
    log(`starting kb (coordinator + agent ${node.name}) in ${cluster.dir}`);
    useCredentials(cluster, node.name);
    await cluster.cleanContainers();
    await cluster.startCoordinator(); // reads dist/kb-agent whole (its sha256 for install.sh)
    // As install.sh does: `kb-agent enroll` in its own process, then the service process
    // (`kb-agent run`), which never enrolls: the first window measures that process.
    await cluster.enrollAgent(node.name);
    dropPageCache(dist('kb-agent'));
    await cluster.startAgent(node.name);
    await cluster.waitReady([node.name]);
    const r = await cluster.kbctl(['rollout', 'redis', '--min-healthy-time', '1s', '--healthy-deadline', '90s']);
    if (r.code !== 0) throw new Error(`rollout redis failed: ${r.stdout}\n${r.stderr}`);
    const containers = await cluster.containers(node.name);
    log(`${node.name} runs ${containers.length} kb containers: ${containers.map((c) => c.Config.Labels['kb.container']).join(', ')}`);

    const peerEnv = installer;
    peers.push(
      new Peer('node floor', 'plain node running a script that only waits', process.execPath, [floorScript], {}),
      new Peer('SEA floor', 'single executable of a script that only waits', floorSea, [], {}),
    );
    if (libsSea) peers.push(new Peer('SEA + libraries', 'single executable that loads every library the agent depends on, then waits', libsSea, [], {}));
    if (Object.keys(peerEnv).length && libsSea) {
      peers.push(
        new Peer('SEA floor', 'single executable of a script that only waits', floorSea, [], peerEnv),
        new Peer('SEA + libraries', 'single executable that loads every library the agent depends on, then waits', libsSea, [], peerEnv),
      );
    }

    for (const [i, v] of variants.entries()) {
      if (i > 0) {
        log(`restarting the agent with ${envText(v.env)}`);
        await cluster.agents.get(node.name)!.kill('SIGTERM');
        // Once no process maps it, so that all of it leaves the page cache.
        if (v.keepPageCache && v.binary) {
          rmSync(v.binary, { force: true });
          copyFileSync(dist('kb-agent'), v.binary);
          chmodSync(v.binary, 0o755);
        } else dropPageCache(v.binary ?? dist('kb-agent'));
        await cluster.startAgent(node.name, v.env, undefined, v.binary);
      }
      const agent = cluster.agents.get(node.name)!;
      const exited = agent.exited.then(() => { throw new Error(`${v.name} exited: ${agent.log().split('\n').slice(-5).join('\n')}`); });
      await Promise.race([exited, waitFor(`${node.name} healthy`, () => allHealthy(cluster), 120_000, 500).catch(async (err: unknown) => {
        throw new Error(`${String(err)}: ${(await failing(cluster)).join('; ')}`);
      })]);
      await sleep(args.settleS * 1000);
      const pid = cluster.agents.get(node.name)!.child.pid!;
      log(`${v.name}: healthy; idle for ${args.idleS} s${i === 0 ? ` with ${peers.length} peers` : ''}`);
      const targets: Target[] = [{ name: v.name, what: 'the real agent, enrolled over mTLS, managing redis + redis-sentinel', env: effectiveEnv(installer, v.env), pid, memory: () => (v.other ? Promise.resolve(undefined) : agentMemory(cluster, node.name)) }];
      if (i === 0) targets.push(...peers.map((p) => p.target()));
      const m = await measure(targets, args.idleS);
      for (const x of m) log(`  ${x.name}: RSS avg ${mb(x.rssMb.avg)} MB max ${mb(x.rssMb.max)} MB, PSS ${mb(x.pssMb)} MB, USS ${mb(x.ussMb)} MB, CPU ${x.cpuPercent.toFixed(3)}%, V8 heap ${x.memory ? `${kbMb(x.memory.heapUsedKb)}/${kbMb(x.memory.heapTotalKb)} MB` : 'n/a'}`);
      await waitFor(`${node.name} still healthy after the window`, () => allHealthy(cluster), 30_000, 500).catch(async (err: unknown) => {
        throw new Error(`${String(err)}: ${(await failing(cluster)).join('; ')}`);
      });
      results.splice(i, 0, m[0]!);
      results.push(...m.slice(1));
      if (i === 0) for (const p of peers) p.stop();
    }

    const summary = summarize(results, args);
    const extra = args.compare.map((b) => ` --compare-binary ${path.relative(repoRoot, b)}`).join('') + args.variants.map((v) => ` --variant '${v.name}:${Object.entries(v.env).map(([k, x]) => `${k}=${x}`).join(';')}'`).join('');
    const command = `KB_E2E_SUBNET=${process.env.KB_E2E_SUBNET ?? '127.0.1'} npm run bench -- agent-footprint${args.idleS !== 60 ? ` --idle ${args.idleS}` : ''}${args.settleS !== DEFAULT_SETTLE_S ? ` --settle ${args.settleS}` : ''}${extra}`;
    process.stdout.write(`\n${summary}\n`);
    if (args.json) writeFileSync(args.json, JSON.stringify({ args, installerEnv: installer, results }, null, 2));
    if (args.docs) {
      const file = writeBenchSection(repoRoot, 'agent-footprint', command, machine(cluster), summary);
      log(`results written to ${file}`);
    }
  } catch (err) {
    process.stderr.write(`${cluster.dumpLogs(30)}\n`);
    if (results.length) process.stderr.write(`\nmeasured before the failure:\n${summarize(results, args)}\n`);
    throw err;
  } finally {
    for (const p of peers) p.stop();
    await cluster.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`bench agent-footprint: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
