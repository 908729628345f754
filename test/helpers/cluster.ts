import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { installerRuntimeEnv } from './installer-env.js';
import { freePort, Proc, waitFor } from './proc.js';
import { loadTestbed, type Testbed } from './testbed.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const dist = (f: string) => path.join(repoRoot, 'dist', f);

export interface KbctlResult { code: number; stdout: string; stderr: string; ms: number }

/** One inventory row for a test inventory (ROLE/SUBROLE as in KEYBUZZ.md). */
export interface TestNode { name: string; ip: string; role: string; subrole: string }

/**
 * Loopback /24 the e2e nodes live in (default 127.0.1). Set KB_E2E_SUBNET to run two
 * checkouts' suites side by side (each with its own test bed engine) without port clashes.
 */
export const SUBNET = process.env.KB_E2E_SUBNET ?? '127.0.1';

export const REDIS_NODES: TestNode[] = [
  { name: 'redis-01', ip: `${SUBNET}.1`, role: 'redis', subrole: 'master' },
  { name: 'redis-02', ip: `${SUBNET}.2`, role: 'redis', subrole: 'replica' },
  { name: 'redis-03', ip: `${SUBNET}.3`, role: 'redis', subrole: 'replica' },
];

/** Redis HA test bed: the three Redis nodes plus one internal HAProxy node (ROLE=lb). */
export const HA_NODES: TestNode[] = [
  ...REDIS_NODES,
  { name: 'haproxy-01', ip: `${SUBNET}.11`, role: 'lb', subrole: 'internal-haproxy' },
];

export function inventoryText(nodes: TestNode[]): string {
  const header = 'ENV\tIP_PUBLIQUE\tHOSTNAME\tIP_PRIVEE\tFQDN\tUSER_SSH\tPOOL\tROLE\tSUBROLE\tDOCKER_STACK\tCORE\tNOTES';
  return [header, ...nodes.map((n) => `prod\t-\t${n.name}\t${n.ip}\t${n.name}.kb.test\troot\ttest\t${n.role}\t${n.subrole}\ttest\tyes\ttest node (loopback)`)].join('\n') + '\n';
}

/**
 * Redis settings for tests: replicas sync at once instead of waiting the default 5 s
 * diskless-sync delay, which keeps each gated step short. Everything else is production.
 */
export const FAST_REDIS_SETTINGS = 'redis:\n  extra_args: ["--repl-diskless-sync-delay", "0"]\n';

/**
 * FAST_REDIS_SETTINGS plus HAProxy bound to the lb node's own loopback address (production
 * binds 0.0.0.0, which would collide with the Redis nodes on the same host) and a follower
 * that re-checks the Sentinels every second.
 */
export const HA_SETTINGS = `${FAST_REDIS_SETTINGS}haproxy:\n  bind: private\n  follower_interval_ms: 1000\n`;

export interface ClusterOptions {
  nodes?: TestNode[];
  settings?: string;
  heartbeatMs?: number;
  healthIntervalMs?: number;
  /**
   * Development mode: plaintext gRPC, no certificates (the coordinator's --plaintext).
   * Default false: `kb-coordinator init`, join tokens, enrollment and mTLS, as in production.
   */
  plaintext?: boolean;
  /** Address the coordinator's gRPC and bootstrap listeners bind to. Default 127.0.0.1. */
  listenHost?: string;
  /** Extra `kb-coordinator run` arguments, e.g. ['--node-cert-ttl', '20s']. */
  coordinatorArgs?: string[];
  /** Extra `kb-agent run` arguments (later ones win), e.g. ['--reconcile-interval-ms', '10000']. */
  agentArgs?: string[];
}

/**
 * A local kb test bed: one coordinator process and one agent process per node (the real
 * single-executable dist/kb-agent), all on loopback, sharing the test bed's Docker engine.
 * Each node has its own state dir, TLS dir and host root under a temp dir.
 *
 * Secure by default, like production: the first coordinator start runs `kb-coordinator init`
 * (CA, serving certificate, admin credential at `configFile`); each agent's first start
 * enrolls with a join token from `kbctl token create` and then talks mTLS; kbctl uses the
 * admin credential. `plaintext: true` gives the development mode instead.
 */
export class Cluster {
  readonly dir: string;
  readonly tb: Testbed;
  readonly docker: Docker;
  readonly inventoryFile: string;
  /** The cluster's own copy of the test bed versions file: tests edit it to bump versions. */
  readonly versionsFile: string;
  readonly settingsFile: string;
  port = 0;
  /** HTTPS bootstrap listener (installer, enrollment); 0 in plaintext mode. */
  bootstrapPort = 0;
  coordinator: Proc | undefined;
  readonly agents = new Map<string, Proc>();
  readonly nodes: TestNode[];
  readonly plaintext: boolean;
  readonly listenHost: string;
  /** The admin credential written by `kb-coordinator init` (what kbctl uses). */
  readonly configFile: string;
  /** The coordinator's data directory (store and pki/). */
  readonly dataDir: string;
  /** stdout and stderr of every kbctl run of this cluster (leak searches read them). */
  readonly kbctlOutput: string[] = [];
  private readonly heartbeatMs: number;
  private readonly healthIntervalMs: number;
  /** Extra `kb-coordinator run` arguments (later ones win). */
  readonly coordinatorArgs: string[];
  /** Extra `kb-agent run` arguments (later ones win). */
  readonly agentArgs: string[];
  private joinToken: { token: string; left: number } | undefined;

  constructor(opts: ClusterOptions = {}) {
    this.tb = loadTestbed();
    this.docker = new Docker({ socketPath: this.tb.dockerHost.replace(/^unix:\/\//, '') });
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'kb-e2e-'));
    this.nodes = opts.nodes ?? REDIS_NODES;
    this.inventoryFile = path.join(this.dir, 'servers.tsv');
    writeFileSync(this.inventoryFile, inventoryText(this.nodes));
    this.versionsFile = path.join(this.dir, 'versions.yaml');
    copyFileSync(this.tb.versionsFile, this.versionsFile);
    this.settingsFile = path.join(this.dir, 'modules.yaml');
    writeFileSync(this.settingsFile, opts.settings ?? FAST_REDIS_SETTINGS);
    this.heartbeatMs = opts.heartbeatMs ?? 500;
    this.healthIntervalMs = opts.healthIntervalMs ?? 500;
    this.plaintext = Boolean(opts.plaintext);
    this.listenHost = opts.listenHost ?? '127.0.0.1';
    this.coordinatorArgs = opts.coordinatorArgs ?? [];
    this.agentArgs = opts.agentArgs ?? [];
    this.configFile = path.join(this.dir, 'admin.kbconfig');
    this.dataDir = path.join(this.dir, 'coordinator');
  }

  /** HOST:PORT of the coordinator's gRPC listener. */
  get address(): string {
    return `${this.listenHost}:${this.port}`;
  }

  /** https://HOST:PORT of the bootstrap listener. */
  get bootstrapUrl(): string {
    return `https://${this.listenHost}:${this.bootstrapPort}`;
  }

  /** `kb-coordinator init` (idempotent): CA, serving certificate, admin credential. */
  async init(): Promise<KbctlResult> {
    if (!this.port) this.port = await freePort();
    if (!this.bootstrapPort) this.bootstrapPort = await freePort();
    return run(process.execPath, [dist('kb-coordinator.cjs'), 'init', '--data-dir', this.dataDir, '--listen', this.address, '--admin-config', this.configFile]);
  }

  async startCoordinator(): Promise<Proc> {
    if (!this.port) this.port = await freePort();
    const tls: string[] = [];
    if (this.plaintext) {
      tls.push('--plaintext');
    } else {
      if (!existsSync(this.configFile)) {
        const r = await this.init();
        if (r.code !== 0) throw new Error(`kb-coordinator init failed: ${r.stderr}`);
      }
      tls.push('--bootstrap-listen', `${this.listenHost}:${this.bootstrapPort}`, '--agent-binary', dist('kb-agent'));
    }
    const p = new Proc('coordinator', process.execPath, [
      dist('kb-coordinator.cjs'), 'run',
      '--inventory', this.inventoryFile, '--versions', this.versionsFile, '--settings', this.settingsFile,
      '--data-dir', this.dataDir, '--listen', this.address, ...tls,
      '--heartbeat-ms', String(this.heartbeatMs), '--health-interval-ms', String(this.healthIntervalMs), ...this.coordinatorArgs,
    ], path.join(this.dir, 'coordinator.log'));
    this.coordinator = p;
    await waitFor('coordinator listening', () => p.log().includes('kb-coordinator listening') || (!p.running && Promise.reject(new Error(p.log()))), 20_000);
    return p;
  }

  /** The directory an agent's host paths live under (its --host-root). */
  hostRoot(node: string): string {
    return path.join(this.dir, 'nodes', node, 'root');
  }

  /** A node's TLS directory (node.key, node.crt, ca.crt). */
  tlsDir(node: string): string {
    return path.join(this.dir, 'nodes', node, 'tls');
  }

  /** `kbctl token create` with these arguments; returns the token and the install command. */
  async createToken(args: string[] = []): Promise<{ token: string; installCommand: string; id: string }> {
    const r = await this.kbctl(['-o', 'json', 'token', 'create', ...args]);
    if (r.code !== 0) throw new Error(`kbctl token create failed (${r.code}): ${r.stderr}`);
    const res = JSON.parse(r.stdout) as { token: string; installCommand: string; info: { id: string } };
    return { token: res.token, installCommand: res.installCommand, id: res.info.id };
  }

  /**
   * Enrolls `node` the way install.sh does: a separate `kb-agent enroll` process (the token in
   * KB_TOKEN), before the agent's service process starts, which then never enrolls.
   */
  async enrollAgent(node: string, binary = dist('kb-agent')): Promise<void> {
    if (this.plaintext) throw new Error('enrollAgent: the cluster is in plaintext mode (no certificates)');
    const { token } = await this.createToken(['--uses', '1', '--ttl', '10m', '--description', `enroll ${node}`]);
    const r = spawnSync(binary, ['enroll', '--node', node, '--bootstrap', this.bootstrapUrl, '--tls-dir', this.tlsDir(node)], {
      env: { ...process.env, ...installerRuntimeEnv(), KB_TOKEN: token }, encoding: 'utf8', timeout: 60_000,
    });
    if (r.status !== 0) throw new Error(`kb-agent enroll ${node} failed (${r.status ?? r.signal}): ${r.stderr}`);
  }

  /**
   * Starts the agent of `node`. In mTLS mode its first start enrolls with a join token
   * (one token with a use per cluster node is shared; a refused enrollment uses none).
   * `coordinators`: its --coordinator (default: every coordinator's address, comma-separated).
   * `binary`: the agent executable (default the single executable dist/kb-agent).
   */
  async startAgent(node: string, env: NodeJS.ProcessEnv = {}, coordinators = this.coordinatorAddresses(), binary = dist('kb-agent')): Promise<Proc> {
    const dir = path.join(this.dir, 'nodes', node);
    mkdirSync(dir, { recursive: true });
    const args = [
      'run', '--node', node, '--coordinator', coordinators, '--state-dir', path.join(dir, 'state'),
      '--host-root', path.join(dir, 'root'), '--shared-engine', '--reconcile-interval-ms', '2000', ...this.agentArgs,
    ];
    const extraEnv: NodeJS.ProcessEnv = {};
    if (this.plaintext) {
      args.push('--plaintext');
    } else {
      args.push('--tls-dir', this.tlsDir(node));
      if (!existsSync(path.join(this.tlsDir(node), 'node.crt'))) {
        if (!this.joinToken || this.joinToken.left < 1) {
          const uses = Math.max(1, this.nodes.length);
          this.joinToken = { token: (await this.createToken(['--uses', String(uses), '--ttl', '1h', '--description', 'e2e cluster'])).token, left: uses };
        }
        extraEnv.KB_TOKEN = this.joinToken.token;
        extraEnv.KB_BOOTSTRAP = this.bootstrapUrl;
        if (this.nodes.some((n) => n.name === node)) this.joinToken.left -= 1;
      }
    }
    // As installed: with the runtime environment install.sh gives the agent (NODE_OPTIONS...).
    const p = new Proc(`agent-${node}`, binary, args, path.join(this.dir, `agent-${node}.log`), { ...installerRuntimeEnv(), DOCKER_HOST: this.tb.dockerHost, ...extraEnv, ...env });
    this.agents.set(node, p);
    return p;
  }

  /** Starts the coordinator and every agent, and waits until all nodes are Ready. */
  async start(): Promise<void> {
    await this.cleanContainers();
    await this.startCoordinator();
    for (const n of this.nodes) await this.startAgent(n.name);
    await this.waitReady(this.nodes.map((n) => n.name));
  }

  async waitReady(names: string[], timeoutMs = 30_000): Promise<void> {
    await waitFor(`nodes ${names.join(',')} Ready`, async () => {
      const r = await this.kbctl(['-o', 'json', 'nodes']);
      if (r.code !== 0) return false;
      const nodes = JSON.parse(r.stdout) as { name: string; status: string }[];
      return names.every((n) => nodes.some((x) => x.name === n && x.status === 'Ready'));
    }, timeoutMs, 200);
  }

  /** What agents and kbctl get as --coordinator (every replica's address, comma-separated, in subclasses). */
  coordinatorAddresses(): string {
    return this.address;
  }

  /**
   * Runs kbctl against this cluster: with the admin credential (KB_CONFIG), or plaintext in
   * development mode. `env` entries override; an entry set to undefined removes the variable.
   */

  kbctl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<KbctlResult> {
    const base: NodeJS.ProcessEnv = { ...process.env };
    for (const k of ['KB_CONFIG', 'KB_COORDINATOR', 'KB_PLAINTEXT']) delete base[k];
    if (this.plaintext) Object.assign(base, { KB_COORDINATOR: this.coordinatorAddresses(), KB_PLAINTEXT: '1' });
    else base.KB_CONFIG = this.configFile;
    const merged = { ...base, ...env };
    for (const [k, v] of Object.entries(env)) if (v === undefined) delete merged[k];
    return run(process.execPath, [dist('kbctl.cjs'), ...args], merged).then((r) => {
      this.kbctlOutput.push(r.stdout, r.stderr);
      return r;
    });
  }

  /** Serials of the certificates nodes hold now, from `kbctl nodes -o json`. */
  async certSerials(): Promise<Record<string, string>> {
    const r = await this.kbctl(['-o', 'json', 'nodes']);
    return Object.fromEntries((JSON.parse(r.stdout) as { name: string; certSerial: string }[]).map((n) => [n.name, n.certSerial]));
  }

  /** The directory a node's agent maps every host path under (its --host-root). */
  nodeRoot(node: string): string {
    return path.join(this.dir, 'nodes', node, 'root');
  }

  /** Pulls `ref` into the test bed engine unless it is there already. */
  async ensureImage(ref: string): Promise<void> {
    if (await this.docker.getImage(ref).inspect().then(() => true, () => false)) return;
    const stream = await this.docker.pull(ref);
    await new Promise<void>((resolve, reject) => this.docker.modem.followProgress(stream, (err) => (err ? reject(err) : resolve())));
  }

  /** kb-managed containers of one node (label kb.node), with their inspect data. */
  async containers(node: string): Promise<Docker.ContainerInspectInfo[]> {
    const list = await this.docker.listContainers({ all: true, filters: { label: ['kb.managed=true', `kb.node=${node}`] } });
    return Promise.all(list.map((c) => this.docker.getContainer(c.Id).inspect()));
  }

  async container(node: string, name: string): Promise<Docker.ContainerInspectInfo | undefined> {
    return (await this.containers(node)).find((c) => c.Config.Labels['kb.container'] === name);
  }

  /** The image digest (sha256:...) a container runs, from its image's RepoDigests. */
  async runningDigest(c: Docker.ContainerInspectInfo): Promise<string[]> {
    const img = await this.docker.getImage(c.Image).inspect();
    return img.RepoDigests.map((d) => d.split('@')[1]!);
  }

  async events(module = 'redis'): Promise<{ rollout: { id: string; state: string; revision: number; nodes: { node: string; state: string }[] }; events: { node: string; kind: string; message: string; atMs: number; revision: number; check: string; observed: string }[] }> {
    const r = await this.kbctl(['-o', 'json', 'rollout', 'status', module, '--events']);
    if (r.code !== 0 && r.code !== 1) throw new Error(`rollout status failed: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  /** Points the cluster's versions file at the test bed's bumped (kb2) or original (kb1) images. */
  useVersions(which: 'bump' | 'original'): void {
    copyFileSync(which === 'bump' ? this.tb.versionsBumpFile : this.tb.versionsFile, this.versionsFile);
  }

  async cleanContainers(): Promise<void> {
    const names = this.nodes.map((n) => n.name);
    const list = await this.docker.listContainers({ all: true, filters: { label: ['kb.managed=true'] } });
    await Promise.all(list.filter((c) => names.includes(c.Labels['kb.node'] ?? '')).map((c) => this.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  }

  /**
   * What the engine says of every managed container of the cluster's nodes (state, exit code,
   * restarts, and the last lines of its own output). Call on failure, next to dumpLogs().
   */
  async dumpContainers(lines = 15): Promise<string> {
    const out: string[] = [];
    for (const n of this.nodes) {
      for (const c of await this.containers(n.name).catch(() => [])) {
        const s = c.State;
        out.push(`--- container ${c.Name} (${c.Id.slice(0, 12)}) ${s.Status} exit=${s.ExitCode} restarts=${c.RestartCount} started=${s.StartedAt} finished=${s.FinishedAt} ${s.Error ?? ''}`);
        const raw = await this.docker.getContainer(c.Id).logs({ stdout: true, stderr: true, tail: lines }).catch((e: Error) => Buffer.from(`(logs: ${e.message})`));
        // Docker multiplexes stdout/stderr with 8-byte frame headers; strip them for reading.
        out.push(Buffer.from(raw).toString('latin1').replace(/[\x00-\x08]/g, ''));
      }
    }
    return out.join('\n');
  }

  /** Prints the last lines of every process log (call on failure). */
  dumpLogs(lines = 40): string {
    const procs = [this.coordinator, ...this.extraProcs(), ...this.agents.values()].filter(Boolean) as Proc[];
    return procs.map((p) => `--- ${p.name} ---\n${p.log().split('\n').slice(-lines).join('\n')}`).join('\n');
  }

  /** Other processes whose logs dumpLogs shows (coordinator replicas in subclasses). */
  protected extraProcs(): Proc[] {
    return [];
  }

  async stop(): Promise<void> {
    await Promise.all([...this.agents.values()].map((a) => a.kill('SIGKILL')));
    await this.coordinator?.kill('SIGKILL');
    await this.cleanContainers();
  }
}

/** Runs a command to completion; never rejects (exit code 99 when it could not run or timed out). */
export function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 170_000): Promise<KbctlResult> {
  const t0 = Date.now();
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 99) : 0;
      resolve({ code, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}
