/**
 * Fleet scale: the kb coordinator holding thousands of agent sessions, against the floor of
 * a bare grpc-js server holding the same number of mTLS streams (docs/benchmarks.md).
 *
 *   npm run bench -- fleet [--nodes 1000,5000] [--stretch 10000] [--workers 4]
 *                          [--ingest-s 30] [--health-interval-ms 10000] [--transport mtls]
 *                          [--no-docs] [--json FILE] [--kb-only] [--rounds 3]
 *
 * One process file, three roles (this bundle re-runs itself):
 *  - main: writes an inventory of N lb/internal-haproxy nodes on loopback addresses
 *    (127.4.x.y) plus the 3 redis rows the haproxy module needs, runs `kb-coordinator init`
 *    and `run`, enrolls every node through the coordinator's real enrollment endpoint
 *    (join token + CSR; each node's key is made in the worker), then for kb and for the floor:
 *    connects every session, fans one plan out to every node, samples CPU while every node
 *    sends a health report every 10 s, and reads RSS;
 *  - worker (--role worker): holds N/W simulated agent sessions, each on its own TCP
 *    connection (grpc-js channel option grpc.use_local_subchannel_pool), speaking kb.v1 like
 *    agent/session.ts: hello, then heartbeats and health reports at the intervals the
 *    SessionSettings say; a desired state is acknowledged (PlanAck) as soon as it arrives, and
 *    answered honestly: an ApplyResult ok=false ("no container engine: nothing applied") and
 *    health reports saying the module is neither converged nor healthy, with no containers;
 *  - floor (--role floor): a bare grpc-js server with the same mTLS credentials and kb.v1
 *    service that answers hello with settings, sends the desired state to every stream when
 *    told, and drops everything else.
 *
 * Fan-out is measured from the moment the rollout is asked for (kb: the ControlService
 * Rollout call with max_parallel = N, on a channel already open; floor: the order to the floor
 * process) to the moment each simulated agent sends its PlanAck (one host, one clock).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { writeBenchSection } from '../lib/docs.js';
import { hostLine } from '../lib/machine.js';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, kbV1, SERVER_OPTIONS } from '../../proto/index.js';
import type { AgentMessage, CoordinatorMessage, ModuleState, NodeFacts } from '../../proto/types.js';
import { backoffDelay, DEFAULT_BACKOFF } from '../../agent/session.js';
import { createCsr, exportPrivateKeyPem, generateKeyPair } from '../../shared/tls/index.js';
import { ControlClient } from '../../coordinator/kbctl/client.js';
import { readKbConfig } from '../../coordinator/kbctl/config.js';
import { loadTestbed } from '../../test/helpers/testbed.js';
import { computeDesired } from '../../coordinator/planner.js';
import { getModule } from '../../coordinator/modules/index.js';
import { Inputs } from '../../coordinator/inputs.js';
import { RegistryResolver } from '../../coordinator/images/resolve.js';
import { findCredential } from '../../shared/credentials/index.js';

const here = fileURLToPath(import.meta.url);
const repoRoot = path.resolve(path.dirname(here), '../..');
const dist = (f: string) => path.join(repoRoot, 'dist', f);
const log = (msg: string) => process.stdout.write(`[fleet ${new Date().toISOString().slice(11, 23)}] ${msg}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const SIM_VERSION = 'bench-fleet-sim';
const NO_ENGINE = 'simulated agent (bench/fleet): no container engine behind this session, nothing applied';

// ---------------------------------------------------------------- messages between roles

interface Identity { node: string; keyPem: string; certPem: string }
type ToWorker =
  | { cmd: 'enroll'; nodes: { node: string; token: string }[]; bootstrapUrl: string; caPem: string; concurrency: number }
  | { cmd: 'connect'; target: string; caPem: string; concurrency: number; warm: CoordinatorMessage }
  | { cmd: 'disconnect' }
  | { cmd: 'reset-acks' }
  | { cmd: 'stats' };
type FromWorker =
  | { ev: 'enrolled'; count: number; failed: string[] }
  | { ev: 'connected'; count: number; failed: string[]; lastMs: number }
  | { ev: 'disconnected' }
  | { ev: 'acks-reset' }
  | { ev: 'stats'; acks: number[]; received: number; results: number; health: number; heartbeats: number; sample?: CoordinatorMessage; sampleBytes: number; open: number; drops: number; lastError: string };

// ---------------------------------------------------------------- worker role

async function workerRole(): Promise<void> {
  const ids: Identity[] = [];
  let sessions: SimSession[] = [];
  const send = (m: FromWorker) => process.send!(m);
  // Stopped with SIGTERM at the end of a size: exit normally, so --cpu-prof (KB_FLEET_WORKER_PROF) writes its profile.
  process.once('SIGTERM', () => process.exit(0));
  process.on('message', (m: ToWorker) => {
    void (async () => {
      if (m.cmd === 'enroll') {
        const failed: string[] = [];
        await pool(m.nodes, m.concurrency, async ({ node, token }) => {
          try {
            ids.push(await enrollOne(node, m.bootstrapUrl, token, m.caPem));
          } catch (err) {
            failed.push(`${node}: ${(err as Error).message}`);
          }
        });
        send({ ev: 'enrolled', count: ids.length, failed });
      } else if (m.cmd === 'connect') {
        warmCodecs(m.warm);
        sessions = ids.map((id) => new SimSession(id, m.target, m.caPem));
        const failed: string[] = [];
        let lastMs = 0;
        await pool(sessions, m.concurrency, async (s) => {
          try {
            lastMs = Math.max(lastMs, await s.open());
          } catch (err) {
            failed.push(`${s.id.node}: ${(err as Error).message}`);
          }
        });
        send({ ev: 'connected', count: sessions.length - failed.length, failed, lastMs });
      } else if (m.cmd === 'disconnect') {
        for (const s of sessions) s.close();
        sessions = [];
        send({ ev: 'disconnected' });
      } else if (m.cmd === 'reset-acks') {
        // The next fan-out round: each session records the first state it receives from now on.
        for (const s of sessions) s.ackAtMs = 0;
        send({ ev: 'acks-reset' });
      } else if (m.cmd === 'stats') {
        const sample = sessions.find((s) => s.heldMessage)?.heldMessage;
        const sum = (f: (s: SimSession) => number) => sessions.reduce((a, s) => a + f(s), 0);
        send({
          ev: 'stats',
          acks: sessions.map((s) => s.ackAtMs).filter((x) => x > 0),
          received: sum((s) => s.desiredCount), results: sum((s) => s.resultCount), health: sum((s) => s.healthCount), heartbeats: sum((s) => s.heartbeatCount),
          sample, sampleBytes: sample ? messageBytes(sample) : 0, open: sessions.filter((s) => s.isOpen).length,
          drops: sum((s) => s.drops), lastError: sessions.find((s) => s.lastError)?.lastError ?? '',
        });
      }
    })().catch((err: unknown) => {
      process.stderr.write(`fleet worker: ${(err as Error).stack}\n`);
      process.exit(1);
    });
  });
}

/**
 * Runs the simulated agents' message code (decode the message kb sends, encode an ack, a
 * result and a health report naming the state) a few thousand times before any session opens.
 * The 4 worker processes stand in for thousands of agent processes, each with its own CPU;
 * their JIT warming up on the first fan-out is an artifact of the simulation, and it would
 * land on whichever side (kb or floor) is measured first.
 *
 * `message` is kb's own plan for one node with its credentials beside it (placeholders for
 * the values), not a look-alike: code V8 optimized for a message without a field the real one
 * has is thrown away ("wrong map", "insufficient type feedback") the first time the field
 * arrives. A hand-made HAProxy-like state without the credentials reference and the checks'
 * credentials file left 4-5 such deoptimizations per worker in decoding alone, and the
 * simulated agents used 1.5-2x the CPU in the first round that they used in the next.
 */
let warmed = false;
function warmCodecs(message: CoordinatorMessage): void {
  if (warmed) return;
  warmed = true;
  const session = kbV1().AgentService.service.Session!;
  const bytes = session.responseSerialize(message);
  for (let i = 0; i < 3000; i++) {
    const got = (session.responseDeserialize(bytes) as CoordinatorMessage).desired!;
    session.requestSerialize({ ack: { module: got.module, revision: got.revision, specHash: got.specHash } } satisfies AgentMessage);
    session.requestSerialize({ result: { module: got.module, revision: got.revision, specHash: got.specHash, ok: false, error: NO_ENGINE, changed: false, actions: [] } } satisfies AgentMessage);
    session.requestSerialize({ health: healthReport(got) } satisfies AgentMessage);
  }
}

/** The simulated agent's health report: its held state's module neither converged nor healthy (no engine), no containers. */
function healthReport(held: ModuleState | undefined): NonNullable<AgentMessage['health']> {
  return {
    facts: FACTS,
    modules: held ? [{ module: held.module, revision: held.revision, specHash: held.specHash, healthy: false, converged: false, checks: [{ name: 'engine', ok: false, observed: NO_ENGINE }] }] : [],
    containers: [],
    observedAtMs: Date.now(),
  };
}

/** Size of a message as the coordinator sends it. */
function messageBytes(message: CoordinatorMessage): number {
  return kbV1().AgentService.service.Session!.responseSerialize(message).length;
}

async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let i = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (i < items.length) await fn(items[i++]!);
  }));
}

/** The real enrollment path: key pair here, CSR (CN = node), POST /v1/enroll with the join token, trusting only the CA. */
async function enrollOne(node: string, bootstrapUrl: string, token: string, caPem: string): Promise<Identity> {
  const keys = await generateKeyPair();
  const csr = await createCsr(node, keys);
  const body = JSON.stringify({ token, csr });
  const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = https.request(new URL('/v1/enroll', bootstrapUrl), {
      method: 'POST', ca: caPem, rejectUnauthorized: true, agent: false,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, timeout: 120_000,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer within 120 s')));
    req.on('error', reject);
    req.end(body);
  });
  const res = JSON.parse(reply.body) as { certificate?: string; error?: string };
  if (reply.status !== 200 || !res.certificate) throw new Error(`enroll HTTP ${reply.status}: ${res.error ?? reply.body.slice(0, 200)}`);
  return { node, keyPem: await exportPrivateKeyPem(keys.privateKey), certPem: res.certificate };
}

const FACTS: NodeFacts = {
  cpuPercent: 0, memTotalBytes: os.totalmem(), memUsedBytes: os.totalmem() - os.freemem(), diskTotalBytes: 0, diskUsedBytes: 0,
  dockerVersion: '', uptimeS: Math.round(os.uptime()), os: `${os.type()} ${os.release()} (bench/fleet simulated agent)`,
};

/** One simulated agent session (what agent/session.ts + agent/agent.ts send, without Docker). */
class SimSession {
  private client: grpc.Client | undefined;
  private call: grpc.ClientDuplexStream<AgentMessage, CoordinatorMessage> | undefined;
  private timers: NodeJS.Timeout[] = [];
  held: ModuleState | undefined;
  /** The whole message that brought `held` (the state and the credentials beside it): what the floor sends. */
  heldMessage: CoordinatorMessage | undefined;
  ackAtMs = 0;
  desiredCount = 0;
  resultCount = 0;
  healthCount = 0;
  heartbeatCount = 0;
  isOpen = false;
  /** Sessions lost (or attempts failed) and re-opened after a backoff, as a real agent does. */
  drops = 0;
  lastError = '';
  private attempt = 0;
  private closed = false;

  constructor(readonly id: Identity, private readonly target: string, private readonly caPem: string) {}

  /** Opens the session; resolves with the time the first settings arrived. Reconnects like agent/session.ts afterwards. */
  open(): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no settings within 180 s (${this.drops} failed attempts; last: ${this.lastError})`)), 180_000);
      this.connect((at) => {
        clearTimeout(t);
        resolve(at);
      });
    });
  }

  private connect(onOpen?: (atMs: number) => void): void {
    if (this.closed) return;
    this.client?.close();
    const creds = grpc.credentials.createSsl(Buffer.from(this.caPem), Buffer.from(this.id.keyPem), Buffer.from(this.id.certPem));
    // One TCP connection per session: grpc-js otherwise shares one subchannel per target and options.
    this.client = new (kbV1().AgentService)(this.target, creds, { ...CHANNEL_OPTIONS, 'grpc.use_local_subchannel_pool': 1 });
    const call = (this.client as grpc.Client & { Session: () => grpc.ClientDuplexStream<AgentMessage, CoordinatorMessage> }).Session();
    this.call = call;
    let ended = false;
    const lost = (reason: string) => {
      if (ended || this.closed) return;
      ended = true;
      this.isOpen = false;
      this.drops++;
      this.lastError = reason;
      setTimeout(() => this.connect(onOpen), backoffDelay(DEFAULT_BACKOFF, this.attempt++));
    };
    call.on('data', (msg: CoordinatorMessage) => {
      if (msg.settings) {
        this.isOpen = true;
        this.attempt = 0;
        if (!this.timers.length) this.startTimers(msg.settings.heartbeatIntervalMs, msg.settings.healthIntervalMs);
        onOpen?.(Date.now());
        onOpen = undefined;
      } else if (msg.desired) {
        this.heldMessage = msg;
        this.onDesired(msg.desired);
      }
    });
    call.on('error', (err: grpc.ServiceError) => lost(err.details || err.message));
    call.on('end', () => lost('server ended the stream'));
    const h = this.held;
    call.write({ hello: { nodeName: this.id.node, agentVersion: SIM_VERSION, desired: h ? [{ module: h.module, revision: h.revision, specHash: h.specHash }] : [] } });
  }

  private onDesired(state: ModuleState): void {
    this.desiredCount++;
    this.held = state;
    this.write({ ack: { module: state.module, revision: state.revision, specHash: state.specHash } });
    if (!this.ackAtMs) this.ackAtMs = Date.now();
    this.write({ result: { module: state.module, revision: state.revision, specHash: state.specHash, ok: false, error: NO_ENGINE, changed: false, actions: [] } });
    this.resultCount++;
  }

  private startTimers(heartbeatMs: number, healthMs: number): void {
    // Random phase, as real agents started at different times.
    const every = (ms: number, fn: () => void) => {
      const first = setTimeout(() => {
        fn();
        this.timers.push(setInterval(fn, ms));
      }, Math.random() * ms);
      this.timers.push(first);
    };
    every(heartbeatMs, () => {
      this.write({ heartbeat: { sentAtMs: Date.now() } });
      this.heartbeatCount++;
    });
    every(healthMs, () => {
      this.write({ health: healthReport(this.held) });
      this.healthCount++;
    });
  }

  /** Like agent/session.ts: nothing but the hello is sent before the coordinator's settings arrived. */
  private write(msg: AgentMessage): void {
    if (!this.isOpen) return;
    try {
      this.call?.write(msg);
    } catch { /* stream gone */ }
  }

  close(): void {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    this.isOpen = false;
    try {
      this.call?.end();
      this.call?.cancel();
    } catch { /* already closed */ }
    this.client?.close();
  }
}

// ---------------------------------------------------------------- floor role

type ToFloor = { cmd: 'fanout'; message: CoordinatorMessage } | { cmd: 'size'; message: CoordinatorMessage } | { cmd: 'count' };

function floorRole(): void {
  const [certFile, keyFile, caFile, host] = process.argv.slice(4);
  const healthMs = Number(process.env.FLEET_HEALTH_MS ?? 10_000);
  const heartbeatMs = Number(process.env.FLEET_HEARTBEAT_MS ?? 5000);
  const streams = new Set<grpc.ServerDuplexStream<AgentMessage, CoordinatorMessage>>();
  // The coordinator's transport options (message limits and the keepalive policy the agents'
  // 20 s pings need: with grpc-js defaults the server answers them with GOAWAY too_many_pings).
  const server = new grpc.Server({ ...SERVER_OPTIONS });
  server.addService(kbV1().AgentService.service, {
    Session: (call: grpc.ServerDuplexStream<AgentMessage, CoordinatorMessage>) => {
      call.on('data', (msg: AgentMessage) => {
        if (msg.hello) {
          streams.add(call);
          call.write({ settings: { heartbeatIntervalMs: heartbeatMs, healthIntervalMs: healthMs } });
        }
      });
      const drop = () => streams.delete(call);
      call.on('end', () => { drop(); call.end(); });
      call.on('error', drop);
      call.on('cancelled', drop);
    },
    Renew: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb({ code: grpc.status.UNIMPLEMENTED, details: 'floor' }),
  });
  const creds = grpc.ServerCredentials.createSsl(readFileSync(caFile!), [{ cert_chain: readFileSync(certFile!), private_key: readFileSync(keyFile!) }], true);
  server.bindAsync(`${host}:0`, creds, (err, port) => {
    if (err) throw err;
    process.send!({ ev: 'listening', port });
  });
  process.on('message', (m: ToFloor) => {
    if (m.cmd === 'fanout') for (const s of streams) s.write(m.message);
    else if (m.cmd === 'size') process.send!({ ev: 'size', bytes: messageBytes(m.message) });
    else process.send!({ ev: 'count', streams: streams.size });
  });
}

// ---------------------------------------------------------------- main role

interface Args { nodes: number[]; stretch: number[]; workers: number; ingestS: number; healthMs: number; docs: boolean; json?: string; transport: string; floor: boolean; rounds: number }

function parseArgs(argv: string[]): Args {
  const a: Args = { nodes: [1000, 5000], stretch: [], workers: 4, ingestS: 30, healthMs: 10_000, docs: true, transport: 'mtls', floor: true, rounds: 3 };
  const list = (v: string | undefined, flag: string) => {
    const xs = (v ?? '').split(',').map(Number);
    if (!xs.length || xs.some((x) => !Number.isInteger(x) || x < 1)) throw new Error(`${flag} ${v}: expected a comma-separated list of node counts`);
    return xs;
  };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    if (f === '--nodes') a.nodes = list(argv[++i], f);
    else if (f === '--stretch') a.stretch = list(argv[++i], f);
    else if (f === '--workers') a.workers = Number(argv[++i]);
    else if (f === '--ingest-s') a.ingestS = Number(argv[++i]);
    else if (f === '--health-interval-ms') a.healthMs = Number(argv[++i]);
    else if (f === '--no-docs') a.docs = false;
    else if (f === '--kb-only') { a.floor = false; a.docs = false; } // for iterating on the coordinator: no floor, no docs
    else if (f === '--json') a.json = argv[++i];
    else if (f === '--rounds') a.rounds = Number(argv[++i]);
    else if (f === '--transport') a.transport = argv[++i] ?? '';
    else throw new Error(`unknown argument ${f} (see bench/fleet/main.ts)`);
  }
  if (a.transport !== 'mtls') throw new Error(`--transport ${a.transport}: only mtls is supported (kb agents always use mTLS)`);
  if (!Number.isInteger(a.workers) || a.workers < 1) throw new Error('--workers: expected a positive integer');
  if (!(a.ingestS >= 1)) throw new Error('--ingest-s: expected at least 1');
  if (!Number.isInteger(a.rounds) || a.rounds < 1) throw new Error('--rounds: expected a positive integer');
  if (!(a.healthMs >= 500)) throw new Error('--health-interval-ms: expected at least 500');
  return a;
}

const SUBNET = process.env.KB_E2E_SUBNET ?? '127.0.4';
const HOST = `${SUBNET}.250`;

function nodeName(i: number): string {
  return `lb-${String(i + 1).padStart(5, '0')}`;
}
/** 127.4.x.y for the i-th node (0-based): up to 64 516 distinct loopback addresses. */
function nodeIp(i: number): string {
  return `127.4.${Math.floor(i / 254)}.${(i % 254) + 1}`;
}

function inventory(n: number): string {
  const header = 'ENV\tIP_PUBLIQUE\tHOSTNAME\tIP_PRIVEE\tFQDN\tUSER_SSH\tPOOL\tROLE\tSUBROLE\tDOCKER_STACK\tCORE\tNOTES';
  const row = (name: string, ip: string, role: string, subrole: string, note: string) => `prod\t-\t${name}\t${ip}\t${name}.kb.test\troot\tbench\t${role}\t${subrole}\tbench\tyes\t${note}`;
  const rows = [
    row('redis-01', `${SUBNET}.1`, 'redis', 'master', 'bench/fleet: redis the haproxy config points at (no session)'),
    row('redis-02', `${SUBNET}.2`, 'redis', 'replica', 'bench/fleet: no session'),
    row('redis-03', `${SUBNET}.3`, 'redis', 'replica', 'bench/fleet: no session'),
  ];
  for (let i = 0; i < n; i++) rows.push(row(nodeName(i), nodeIp(i), 'lb', 'internal-haproxy', 'bench/fleet simulated agent'));
  return `${[header, ...rows].join('\n')}\n`;
}

/** A process's CPU time (user + system, ms) and RSS (bytes) from /proc. */
function procUsage(pid: number): { cpuMs: number; rssBytes: number; hwmBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`${k}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) * 1024;
  return { cpuMs: (ticks * 1000) / CLK_TCK, rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM') };
}
/** CPU (ms) of a process's main thread, and of its other threads by name (V8's GC and compiler helpers, libuv's pool). */
function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const name = tid === String(pid) ? 'main thread' : `other ${comm} threads`;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK);
    } catch { /* the thread ended */ }
  }
  return out;
}
const CLK_TCK = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** ESTABLISHED TCP connections to `host:port` (the server side's view), from `ss`. */
function establishedTo(host: string, port: number): number {
  const out = execFileSync('ss', ['-Htn', 'state', 'established', `( sport = :${port} )`], { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return out.split('\n').filter((l) => l.includes(`${host}:${port}`)).length;
}

class Worker {
  readonly child: ChildProcess;
  private waiting: ((m: FromWorker) => void)[] = [];
  constructor(index: number) {
    // KB_FLEET_WORKER_PROF=DIR: V8 CPU profiles of the simulated-agent processes in DIR.
    const prof = process.env.KB_FLEET_WORKER_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.KB_FLEET_WORKER_PROF}`] : [];
    // Structured-clone IPC ('advanced'): a state's Buffers (file contents) must reach the
    // floor as Buffers. Node's default JSON IPC turns them into {type, data}, which protobufjs
    // encodes as empty bytes: the floor would send a smaller message than kb.
    // KB_FLEET_WORKER_NODE_ARGS: more options for the simulated agents' node (space-separated).
    const extra = (process.env.KB_FLEET_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean);
    this.child = spawn(process.execPath, ['--max-old-space-size=4096', ...prof, ...extra, here, '--role', 'worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced' });
    this.child.on('message', (m: FromWorker) => this.waiting.shift()?.(m));
    this.child.on('exit', (code) => { if (code) log(`worker ${index} exited with ${code}`); });
  }
  ask<T extends FromWorker>(m: ToWorker): Promise<T> {
    return new Promise((resolve) => {
      this.waiting.push(resolve as (m: FromWorker) => void);
      this.child.send(m);
    });
  }
}

interface Side {
  connected: number; connectMs: number; failed: string[]; tcp: number;
  fanout: { acked: number; p50Ms: number | undefined; p99Ms: number | undefined; maxMs: number | undefined };
  ingest: { cpuPercent: number; seconds: number; reports: number };
  rssMb: number; hwmMb: number;
  /** Sessions lost and re-opened by the simulated agents during the phase; sessions open at its end. */
  drops: number; openAtEnd: number; lastError: string;
  /** 1-minute load average of the machine at the end of the side's ingest window. */
  load1?: number;
  rollout?: { state: string; endMs: number; nodes: number };
  /** Each fan-out round; `fanout` is over the acknowledgements of every round together. */
  rounds: Round[];
}

/** One fan-out: a new revision (kb) or the same state again (floor) to every session. */
interface Round {
  acks: number[]; p50Ms: number | undefined; p99Ms: number | undefined; cpu: string;
  /** kb: when the rollout record was created (plan computed, revision and rollout stored), from the Rollout call; no node is sent anything before. */
  plannedMs?: number;
}

function toRound(acks: number[], cpu: string): Round {
  return { acks, p50Ms: percentile(acks, 50), p99Ms: percentile(acks, 99), cpu };
}

/** Fan-out over every round's acknowledgements together: the slowest round's tail weighs fully. */
function pooled(rounds: Round[]): Side['fanout'] {
  const all = rounds.flatMap((r) => r.acks);
  return { acked: Math.min(...rounds.map((r) => r.acks.length)), p50Ms: percentile(all, 50), p99Ms: percentile(all, 99), maxMs: percentile(all, 100) };
}

interface SizeResult { nodes: number; kb: Side; floor: Side; loadavg: number[]; enrollMs: number; stretch: boolean }

function percentile(xs: number[], p: number): number | undefined {
  if (!xs.length) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

async function allStats(workers: Worker[]) {
  const st = await Promise.all(workers.map((w) => w.ask<Extract<FromWorker, { ev: 'stats' }>>({ cmd: 'stats' })));
  const withSample = st.find((s) => s.sample);
  return {
    acks: st.flatMap((s) => s.acks), received: st.reduce((a, s) => a + s.received, 0), health: st.reduce((a, s) => a + s.health, 0),
    open: st.reduce((a, s) => a + s.open, 0), sample: withSample?.sample, sampleBytes: withSample?.sampleBytes ?? 0,
    drops: st.reduce((a, s) => a + s.drops, 0), lastError: st.find((s) => s.lastError)?.lastError ?? '',
  };
}

async function connectAll(workers: Worker[], target: string, caPem: string, pid: number, host: string, port: number, warm: CoordinatorMessage): Promise<Pick<Side, 'connected' | 'connectMs' | 'failed' | 'tcp'>> {
  const t0 = Date.now();
  const res = await Promise.all(workers.map((w) => w.ask<Extract<FromWorker, { ev: 'connected' }>>({ cmd: 'connect', target, caPem, concurrency: 64, warm })));
  const connectMs = Math.max(...res.map((r) => r.lastMs)) - t0;
  const failed = res.flatMap((r) => r.failed);
  await sleep(500);
  const tcp = establishedTo(host, port);
  void pid;
  return { connected: res.reduce((a, r) => a + r.count, 0), connectMs, failed, tcp };
}

async function measureIngest(workers: Worker[], pid: number, seconds: number): Promise<Side['ingest']> {
  const before = procUsage(pid);
  const h0 = (await allStats(workers)).health;
  const t0 = Date.now();
  await sleep(seconds * 1000);
  const after = procUsage(pid);
  const wall = Date.now() - t0;
  const h1 = (await allStats(workers)).health;
  return { cpuPercent: ((after.cpuMs - before.cpuMs) / wall) * 100, seconds: wall / 1000, reports: h1 - h0 };
}

/** CPU used by the server and by the simulated agents from now until `since()` (where a fan-out's time goes: 2 cores are shared). */
function fanoutCpu(pid: number, workers: Worker[]): { since(): string } {
  const cpu = () => ({ server: procUsage(pid).cpuMs, threads: threadCpu(pid), agents: workers.reduce((a, w) => a + procUsage(w.child.pid!).cpuMs, 0), at: Date.now() });
  const a = cpu();
  return {
    since() {
      const b = cpu();
      const threads = [...b.threads].map(([name, ms]) => [name, ms - (a.threads.get(name) ?? 0)] as const).filter(([, ms]) => ms > 0)
        .sort((x, y) => y[1] - x[1]).map(([name, ms]) => `${name} ${ms}`).join(', ');
      return `CPU until the last ack was seen (polled every 250 ms): server ${b.server - a.server} ms (${threads}), simulated agents ${b.agents - a.agents} ms, over ${b.at - a.at} ms`;
    },
  };
}

async function waitAcks(workers: Worker[], n: number, timeoutMs: number): Promise<number[]> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const s = await allStats(workers);
    if (s.acks.length >= n || Date.now() > until) return s.acks;
    await sleep(250);
  }
}

function startCoordinator(args: string[], logFile: string): ChildProcess {
  const out = openSync(logFile, 'a');
  // KB_FLEET_PROF=DIR: V8 CPU profiles of the coordinator (one per process) in DIR.
  const prof = process.env.KB_FLEET_PROF ? [`--cpu-prof`, `--cpu-prof-dir=${process.env.KB_FLEET_PROF}`] : [];
  // KB_FLEET_HEAP=DIR: a V8 heap snapshot of the serving coordinator in DIR, taken after its RSS is read.
  const heap = process.env.KB_FLEET_HEAP ? ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${process.env.KB_FLEET_HEAP}`] : [];
  // KB_FLEET_NODE_ARGS: more options for the coordinator's node (space-separated), to try V8 settings.
  const extra = (process.env.KB_FLEET_NODE_ARGS ?? '').split(' ').filter(Boolean);
  return spawn(process.execPath, [...prof, ...heap, ...extra, dist('kb-coordinator.cjs'), 'run', ...args], { stdio: ['ignore', out, out] });
}

/** Asks the coordinator (started with KB_FLEET_HEAP) for a heap snapshot and waits until it is written. */
async function heapSnapshot(pid: number, dir: string): Promise<void> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  for (const until = Date.now() + 300_000; Date.now() < until; await sleep(1000)) {
    const made = readdirSync(dir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
    if (made) {
      // Written when its size stops growing.
      let size = -1;
      while (statSync(path.join(dir, made)).size !== size) { size = statSync(path.join(dir, made)).size; await sleep(2000); }
      log(`heap snapshot of the coordinator: ${path.join(dir, made)}`);
      return;
    }
  }
  log('no heap snapshot written within 300 s');
}

async function waitListening(p: ChildProcess, logFile: string): Promise<void> {
  const until = Date.now() + 60_000;
  while (Date.now() < until) {
    if (p.exitCode !== null) throw new Error(`kb-coordinator exited ${p.exitCode}: ${readFileSync(logFile, 'utf8').slice(-2000)}`);
    if (readFileSync(logFile, 'utf8').includes('kb-coordinator listening')) return;
    await sleep(100);
  }
  throw new Error('kb-coordinator not listening within 60 s');
}

async function stopProc(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null) return;
  const done = new Promise<void>((r) => p.once('exit', () => r()));
  p.kill('SIGTERM');
  await Promise.race([done, sleep(15_000).then(() => p.kill('SIGKILL'))]);
}

async function oneSize(n: number, args: Args, stretch: boolean): Promise<SizeResult> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-bench-fleet-'));
  const dataDir = path.join(dir, 'coordinator');
  const adminConfig = path.join(dir, 'admin.kbconfig');
  const inv = path.join(dir, 'servers.tsv');
  writeFileSync(inv, inventory(n));
  const versions = path.join(dir, 'versions.yaml');
  writeFileSync(versions, readFileSync(loadTestbed().versionsFile, 'utf8'));
  const settings = path.join(dir, 'modules.yaml');
  writeFileSync(settings, 'haproxy:\n  bind: private\n');
  const grpcPort = 17000 + Math.floor(Math.random() * 1000);
  const bootPort = grpcPort + 1000;
  execFileSync(process.execPath, [dist('kb-coordinator.cjs'), 'init', '--data-dir', dataDir, '--listen', `${HOST}:${grpcPort}`, '--admin-config', adminConfig], { stdio: 'ignore' });
  const runArgs = [
    '--inventory', inv, '--versions', versions, '--settings', settings, '--data-dir', dataDir, '--listen', `${HOST}:${grpcPort}`,
    '--bootstrap-listen', `${HOST}:${bootPort}`, '--agent-binary', dist('kb-agent'),
    // Every simulated node enrolls from the same source address: raise the per-source limit (documented flags).
    '--enroll-burst', String(n + 10), '--enroll-per-minute', String(Math.max(600, n * 10)),
    '--health-interval-ms', String(args.healthMs), '--heartbeat-ms', '5000',
  ];
  const logFile = path.join(dir, 'coordinator.log');
  let coord = startCoordinator(runArgs, logFile);
  const workers = Array.from({ length: args.workers }, (_, i) => new Worker(i));
  let floor: ChildProcess | undefined;
  try {
    await waitListening(coord, logFile);
    const cfg = readKbConfig(adminConfig);
    const control = new ControlClient({ address: `${HOST}:${grpcPort}`, plaintext: false, tls: { ca: cfg.ca, certificate: cfg.certificate, key: cfg.key }, timeoutMs: 600_000 });
    // A join token has at most 1000 uses: one token per 1000 nodes.
    const tokens: string[] = [];
    for (let k = 0; k * 1000 < n; k++) {
      tokens.push((await control.createToken({ ttlMs: 3_600_000, uses: Math.min(1000, n - k * 1000), node: '', description: `bench/fleet simulated nodes ${k * 1000 + 1}-${Math.min(n, (k + 1) * 1000)}` })).token);
    }
    const names = Array.from({ length: n }, (_, i) => ({ node: nodeName(i), token: tokens[Math.floor(i / 1000)]! }));
    log(`N=${n}: enrolling ${n} nodes through https://${HOST}:${bootPort}/v1/enroll (${args.workers} workers)`);
    const te = Date.now();
    const enrolled = await Promise.all(workers.map((w, k) => w.ask<Extract<FromWorker, { ev: 'enrolled' }>>({
      cmd: 'enroll', nodes: names.filter((_, i) => i % args.workers === k), bootstrapUrl: `https://${HOST}:${bootPort}`, caPem: cfg.ca, concurrency: 8,
    })));
    const enrollMs = Date.now() - te;
    const enrollFailed = enrolled.flatMap((e) => e.failed);
    if (enrollFailed.length) throw new Error(`${enrollFailed.length} enrollments failed, e.g. ${enrollFailed.slice(0, 3).join('; ')}`);
    log(`N=${n}: ${n} nodes enrolled in ${(enrollMs / 1000).toFixed(1)} s; restarting the coordinator so its RSS is that of serving, not of enrolling`);
    control.close();
    await stopProc(coord);
    writeFileSync(logFile, '');
    coord = startCoordinator(runArgs, logFile);
    await waitListening(coord, logFile);
    const pid = coord.pid!;
    const coordV8 = (/kb-coordinator listening .*, V8 ([^)]*)\)/.exec(readFileSync(logFile, 'utf8'))?.[1] ?? '').split(' ').filter(Boolean);
    log(`N=${n}: coordinator V8 flags: ${coordV8.join(' ') || 'none'} (the floor gets the same)`);

    // The state the workers warm their message code with before the first session opens: kb's
    // own plan for one of the nodes (the planner's code and inputs, as bench/rollout-vs-ansible
    // does), so every field and message the fan-out carries is one the warm-up decoded.
    const haproxy = getModule('haproxy');
    const versionsOf = Object.fromEntries((haproxy.credentials ?? []).map((c) => [c, { active: 1, accepted: [] }]));
    const planned = await computeDesired(haproxy, new Inputs({ inventoryFile: inv, versionsFile: versions, settingsFile: settings, env: 'prod' }).current(), new RegistryResolver(), versionsOf);
    // The credentials travel beside the state (SecretValue): placeholders under the same names
    // stand in for the values.
    const warm: CoordinatorMessage = {
      desired: { ...planned.states[nodeName(0)]!, revision: 1 },
      secretValues: (haproxy.credentials ?? []).map((c) => ({ name: c, version: 1, vars: Object.fromEntries(findCredential(c)!.vars.map((v) => [v.name, 'p'.repeat(32)])) })),
    };

    // ---- kb
    log(`N=${n}: kb: connecting ${n} sessions`);
    const kbConn = await connectAll(workers, `${HOST}:${grpcPort}`, cfg.ca, pid, HOST, grpcPort, warm);
    log(`N=${n}: kb: ${kbConn.connected}/${n} connected in ${kbConn.connectMs} ms; ${kbConn.tcp} established TCP connections to ${HOST}:${grpcPort}; RSS ${(procUsage(pid).rssBytes / 2 ** 20).toFixed(0)} MB`);
    const control2 = new ControlClient({ address: `${HOST}:${grpcPort}`, plaintext: false, tls: { ca: cfg.ca, certificate: cfg.certificate, key: cfg.key }, timeoutMs: 600_000 });
    // The operator's connection is opened (TLS handshake done) before the clock starts, as the
    // floor's order travels on an open channel: fan-out is measured from the Rollout call.
    await control2.rolloutStatus({ module: 'haproxy', events: false });
    // Fan-out rounds: round 1 rolls out revision 1; each later round changes the module's
    // settings (HAProxy maxconn) so a new revision goes to every node, on the same sessions.
    const kbRounds: Round[] = [];
    let rollout: Side['rollout'];
    for (let round = 1; round <= args.rounds; round++) {
      if (round > 1) {
        writeFileSync(settings, `haproxy:\n  bind: private\n  maxconn: ${4096 + round}\n`);
        await Promise.all(workers.map((w) => w.ask({ cmd: 'reset-acks' })));
        await sleep(2000); // the previous round's results and events written
      }
      const cpu0 = fanoutCpu(pid, workers);
      const t0 = Date.now();
      log(`N=${n}: kb: round ${round}: rollout of haproxy to ${n} nodes asked for at ${new Date(t0).toISOString()}`);
      const ask = () => control2.rollout({ module: 'haproxy', maxParallel: n, healthyDeadlineMs: 600_000, minHealthyTimeMs: 0, undo: false, wait: false }, () => undefined);
      await ask().catch(async (err: unknown) => {
        // The call's stream can drop while the rollout already started: then it runs; otherwise ask once more.
        log(`N=${n}: kb: the Rollout call failed (${(err as Error).message}); checking whether the rollout started`);
        const st = await control2.rolloutStatus({ module: 'haproxy', events: false });
        if (!st.rollout || st.rollout.revision !== round) await ask();
      });
      const acks = (await waitAcks(workers, kbConn.connected, 300_000)).map((t) => t - t0);
      const cpu = cpu0.since();
      kbRounds.push(toRound(acks, cpu));
      log(`N=${n}: kb: round ${round}: ${acks.length} acks, p50 ${percentile(acks, 50)} ms, p99 ${percentile(acks, 99)} ms; ${cpu}`);
      rollout = undefined;
      for (const until = Date.now() + 300_000; Date.now() < until;) {
        const st = await control2.rolloutStatus({ module: 'haproxy', events: false }).catch((err: unknown) => {
          log(`N=${n}: kb: rollout status: ${(err as Error).message}`);
          return { rollout: null };
        });
        if (st.rollout && st.rollout.revision === round && st.rollout.state !== 'running') {
          rollout = { state: st.rollout.state, endMs: st.rollout.updatedMs - t0, nodes: st.rollout.nodes.length };
          kbRounds.at(-1)!.plannedMs = st.rollout.createdMs - t0;
          break;
        }
        await sleep(500);
      }
      log(`N=${n}: kb: round ${round}: rollout ${rollout ? `planned and stored after ${kbRounds.at(-1)!.plannedMs} ms, ${rollout.state} after ${rollout.endMs} ms (every simulated node answers "no container engine")` : 'still running after 300 s'}`);
    }
    const { sample, sampleBytes } = await allStats(workers);
    await sleep(args.healthMs + 1000); // a full health round after the rollout's writes
    const kbIngest = await measureIngest(workers, pid, args.ingestS);
    const kbUse = procUsage(pid);
    const kbEnd = await allStats(workers);
    log(`N=${n}: kb: ingest ${kbIngest.cpuPercent.toFixed(1)}% of one core over ${kbIngest.seconds.toFixed(0)} s (${kbIngest.reports} reports); RSS ${(kbUse.rssBytes / 2 ** 20).toFixed(0)} MB; ${kbEnd.open} sessions open, ${kbEnd.drops} lost and re-opened${kbEnd.lastError ? ` (last: ${kbEnd.lastError})` : ''}`);
    const kb: Side = {
      ...kbConn, fanout: pooled(kbRounds), rounds: kbRounds,
      ingest: kbIngest, rssMb: kbUse.rssBytes / 2 ** 20, hwmMb: kbUse.hwmBytes / 2 ** 20, rollout,
      drops: kbEnd.drops, openAtEnd: kbEnd.open, lastError: kbEnd.lastError, load1: os.loadavg()[0],
    };
    control2.close();
    if (process.env.KB_FLEET_HEAP) await heapSnapshot(pid, process.env.KB_FLEET_HEAP);
    await Promise.all(workers.map((w) => w.ask({ cmd: 'disconnect' })));
    await stopProc(coord);
    if (!args.floor) return { nodes: n, kb, floor: kb, loadavg: os.loadavg(), enrollMs, stretch };

    // ---- floor
    const pki = path.join(dataDir, 'pki');
    // The floor runs with the V8 settings the coordinator ran with (its listening line names
    // them; coordinator/v8-flags.ts), so the two differ by what kb does, not by runtime tuning.
    floor = spawn(process.execPath, [...coordV8, here, '--role', 'floor', path.join(pki, 'server.crt'), path.join(pki, 'server.key'), path.join(pki, 'ca.crt'), HOST],
      { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], serialization: 'advanced', env: { ...process.env, FLEET_HEALTH_MS: String(args.healthMs), FLEET_HEARTBEAT_MS: '5000' } });
    const floorPort = await new Promise<number>((resolve) => floor!.once('message', (m: { port: number }) => resolve(m.port)));
    log(`N=${n}: floor: connecting ${n} sessions`);
    const flConn = await connectAll(workers, `${HOST}:${floorPort}`, cfg.ca, floor.pid!, HOST, floorPort, warm);
    log(`N=${n}: floor: ${flConn.connected}/${n} connected in ${flConn.connectMs} ms; ${flConn.tcp} established TCP connections; RSS ${(procUsage(floor.pid!).rssBytes / 2 ** 20).toFixed(0)} MB`);
    if (!sample) throw new Error('no desired state reached any simulated agent from kb: nothing to send from the floor');
    // The floor must send the very message kb sent (the state and the credentials beside it), byte for byte in size.
    floor.send({ cmd: 'size', message: sample });
    const floorBytes = await new Promise<number>((resolve) => floor!.once('message', (m: { bytes: number }) => resolve(m.bytes)));
    if (floorBytes !== sampleBytes) throw new Error(`the floor would send ${floorBytes} bytes per message, kb sent ${sampleBytes}: the sample message did not reach the floor intact`);
    log(`N=${n}: floor: sends kb's ${sampleBytes}-byte message (the state and ${sample.secretValues?.length ?? 0} credentials beside it)`);
    const flRounds: Round[] = [];
    for (let k = 1; k <= args.rounds; k++) {
      if (k > 1) {
        await Promise.all(workers.map((w) => w.ask({ cmd: 'reset-acks' })));
        await sleep(2000);
      }
      const fcpu0 = fanoutCpu(floor.pid!, workers);
      const f0 = Date.now();
      floor.send({ cmd: 'fanout', message: sample });
      const flAcks = (await waitAcks(workers, flConn.connected, 300_000)).map((t) => t - f0);
      const flCpu = fcpu0.since();
      flRounds.push(toRound(flAcks, flCpu));
      log(`N=${n}: floor: round ${k}: ${flAcks.length} acks, p50 ${percentile(flAcks, 50)} ms, p99 ${percentile(flAcks, 99)} ms; ${flCpu}`);
    }
    await sleep(args.healthMs + 1000);
    const flIngest = await measureIngest(workers, floor.pid!, args.ingestS);
    const flUse = procUsage(floor.pid!);
    const flEnd = await allStats(workers);
    log(`N=${n}: floor: ingest ${flIngest.cpuPercent.toFixed(1)}% over ${flIngest.seconds.toFixed(0)} s; RSS ${(flUse.rssBytes / 2 ** 20).toFixed(0)} MB; ${flEnd.open} sessions open, ${flEnd.drops} lost and re-opened`);
    const fl: Side = {
      ...flConn, fanout: pooled(flRounds), rounds: flRounds,
      ingest: flIngest, rssMb: flUse.rssBytes / 2 ** 20, hwmMb: flUse.hwmBytes / 2 ** 20,
      drops: flEnd.drops, openAtEnd: flEnd.open, lastError: flEnd.lastError, load1: os.loadavg()[0],
    };
    await Promise.all(workers.map((w) => w.ask({ cmd: 'disconnect' })));
    return { nodes: n, kb, floor: fl, loadavg: os.loadavg(), enrollMs, stretch };
  } catch (err) {
    const tail = readFileSync(logFile, 'utf8').split('\n').filter((l) => !l.includes('"agent connected"')).slice(-15).join('\n');
    log(`N=${n} failed; coordinator ${coord.exitCode === null ? 'running' : `exited ${coord.exitCode}`}; its log ends with:\n${tail}`);
    throw err;
  } finally {
    if (floor) await stopProc(floor);
    await stopProc(coord);
    for (const w of workers) w.child.kill();
    if (!process.env.KB_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
    else log(`kept ${dir}`);
  }
}

const fmtMs = (x: number | undefined) => (x === undefined ? '-' : x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`);
const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b <= 0 ? '-' : `${(a / b).toFixed(2)}x`);

function summarize(results: SizeResult[]): string {
  const lines = [
    '| nodes | side | connected (TCP conns) | time to connect all | fan-out p50 | fan-out p99 | ingest CPU (% of one core) | RSS | sessions lost / open at end | load avg (1/5/15 min) |',
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const r of results) {
    const la = r.loadavg.map((x) => x.toFixed(1)).join(' / ');
    for (const [name, s] of [['kb', r.kb], ['floor', r.floor]] as const) {
      lines.push(`| ${r.nodes}${r.stretch ? ' (stretch)' : ''} | ${name} | ${s.connected}/${r.nodes} (${s.tcp}) | ${fmtMs(s.connectMs)} | ${fmtMs(s.fanout.p50Ms)} | ${fmtMs(s.fanout.p99Ms)} | ${s.ingest.cpuPercent.toFixed(1)} % | ${Math.round(s.rssMb)} MB | ${s.drops} / ${s.openAtEnd} | ${s.load1 !== undefined ? `${s.load1.toFixed(1)} after this side; ` : ''}${name === 'kb' ? `${la} at the end` : ''} |`);
    }
    lines.push(`| ${r.nodes} | kb/floor | | ${ratio(r.kb.connectMs, r.floor.connectMs)} | ${ratio(r.kb.fanout.p50Ms, r.floor.fanout.p50Ms)} | ${ratio(r.kb.fanout.p99Ms, r.floor.fanout.p99Ms)} | ${ratio(r.kb.ingest.cpuPercent, r.floor.ingest.cpuPercent)} | ${ratio(r.kb.rssMb, r.floor.rssMb)} | | |`);
  }
  const at = results.find((r) => r.nodes === 5000 && !r.stretch) ?? results.filter((r) => !r.stretch).at(-1);
  lines.push('');
  if (at) {
    const t = (ok: boolean) => (ok ? 'met' : '**missed**');
    lines.push(`Targets (at ${at.nodes} nodes${at.nodes !== 5000 ? '; the targets are set for 5000' : ''}):`, '');
    lines.push(`- all connected: ${at.kb.connected}/${at.nodes}, ${at.kb.tcp} TCP connections: ${t(at.kb.connected === at.nodes && at.kb.tcp >= at.nodes)}`);
    lines.push(`- fan-out p99 <= 2 s: ${fmtMs(at.kb.fanout.p99Ms)} (${at.kb.fanout.acked}/${at.nodes} acknowledged): ${t(at.kb.fanout.acked === at.nodes && (at.kb.fanout.p99Ms ?? Infinity) <= 2000)}`);
    lines.push(`- ingest <= 25 % of one core: ${at.kb.ingest.cpuPercent.toFixed(1)} %: ${t(at.kb.ingest.cpuPercent <= 25)}`);
    lines.push(`- coordinator RSS <= 1.25x the floor's: ${Math.round(at.kb.rssMb)} MB / ${Math.round(at.floor.rssMb)} MB = ${ratio(at.kb.rssMb, at.floor.rssMb)}: ${t(at.kb.rssMb <= 1.25 * at.floor.rssMb)}`);
    for (const r of results) {
      const each = (s: Side) => s.rounds.map((x, i) => `round ${i + 1}: ${x.plannedMs !== undefined ? `planned and stored after ${fmtMs(x.plannedMs)}, ` : ''}p50 ${fmtMs(x.p50Ms)}, p99 ${fmtMs(x.p99Ms)}`).join('; ');
      lines.push(`- (N=${r.nodes}) fan-out rounds (the table pools their acknowledgements), kb: ${each(r.kb)}${r.floor !== r.kb ? `; floor: ${each(r.floor)}` : ''}`);
      r.kb.rounds.forEach((x, i) => lines.push(`- (N=${r.nodes}) fan-out round ${i + 1}, kb: ${x.cpu}${r.floor !== r.kb && r.floor.rounds[i] ? `; floor: ${r.floor.rounds[i]!.cpu}` : ''}`));
      if (r.kb.rollout) lines.push(`- (N=${r.nodes}) the kb rollout itself ended \`${r.kb.rollout.state}\` ${fmtMs(r.kb.rollout.endMs)} after it was asked for: every simulated node answers that it has no container engine; enrollment of ${r.nodes} nodes took ${fmtMs(r.enrollMs)}`);
    }
  }
  return lines.join('\n');
}

function machine(): string {
  return [
    `- CPU: ${hostLine()}; Node ${process.version}; @grpc/grpc-js ${grpcVersion()}`,
    '- Shared with other work: the 1-minute load average after each side, and the load averages at the end of each size, are in the table.',
    '- Everything on loopback: the coordinator (and the floor) on one address, the simulated nodes in the inventory on 127.4.x.y.',
  ].join('\n');
}
function grpcVersion(): string {
  try {
    return (JSON.parse(readFileSync(path.join(repoRoot, 'node_modules/@grpc/grpc-js/package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

async function mainRole(): Promise<void> {
  const argv = process.argv.slice(2);
  // Thousands of sockets: raise the descriptor limit to the hard limit for this process tree.
  if (!process.env.KB_FLEET_ULIMIT) {
    const child = spawn('bash', ['-c', 'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"', process.execPath, here, ...argv], { stdio: 'inherit', env: { ...process.env, KB_FLEET_ULIMIT: '1' } });
    child.on('exit', (code) => process.exit(code ?? 1));
    return;
  }
  const args = parseArgs(argv);
  log(`descriptor limit ${execFileSync('bash', ['-c', 'ulimit -n'], { encoding: 'utf8' }).trim()}; sizes ${args.nodes.join(', ')}${args.stretch.length ? `; stretch ${args.stretch.join(', ')}` : ''}`);
  const results: SizeResult[] = [];
  for (const n of args.nodes) results.push(await oneSize(n, args, false));
  for (const n of args.stretch) {
    try {
      results.push(await oneSize(n, args, true));
    } catch (err) {
      log(`stretch N=${n} failed: ${(err as Error).message}`);
    }
  }
  const summary = summarize(results);
  process.stdout.write(`\n${summary}\n`);
  const command = `npm run bench -- fleet --nodes ${args.nodes.join(',')}${args.stretch.length ? ` --stretch ${args.stretch.join(',')}` : ''}${args.workers !== 4 ? ` --workers ${args.workers}` : ''}${args.ingestS !== 30 ? ` --ingest-s ${args.ingestS}` : ''}${args.healthMs !== 10_000 ? ` --health-interval-ms ${args.healthMs}` : ''}${args.rounds !== 3 ? ` --rounds ${args.rounds}` : ''}`;
  if (args.json) writeFileSync(args.json, JSON.stringify({ args, results }, null, 2));
  if (args.docs) {
    const file = writeBenchSection(repoRoot, 'fleet', command, machine(), summary);
    log(`results written to ${file}`);
  }
}

const role = process.argv[2] === '--role' ? process.argv[3] : 'main';
if (role === 'worker') {
  void workerRole();
} else if (role === 'floor') {
  floorRole();
} else {
  mainRole().catch((err: unknown) => {
    process.stderr.write(`bench fleet: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  });
}
