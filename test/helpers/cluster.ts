import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
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

export function inventoryText(nodes: TestNode[]): string {
  const header = 'ENV\tIP_PUBLIQUE\tHOSTNAME\tIP_PRIVEE\tFQDN\tUSER_SSH\tPOOL\tROLE\tSUBROLE\tDOCKER_STACK\tCORE\tNOTES';
  return [header, ...nodes.map((n) => `prod\t-\t${n.name}\t${n.ip}\t${n.name}.kb.test\troot\ttest\t${n.role}\t${n.subrole}\ttest\tyes\ttest node (loopback)`)].join('\n') + '\n';
}

/**
 * Redis settings for tests: replicas sync at once instead of waiting the default 5 s
 * diskless-sync delay, which keeps each gated step short. Everything else is production.
 */
export const FAST_REDIS_SETTINGS = 'redis:\n  extra_args: ["--repl-diskless-sync-delay", "0"]\n';

export interface ClusterOptions {
  nodes?: TestNode[];
  settings?: string;
  heartbeatMs?: number;
  healthIntervalMs?: number;
}

/**
 * A local kb test bed: one coordinator process and one agent process per node (the real
 * single-executable dist/kb-agent), all on loopback, sharing the test bed's Docker engine.
 * Each node has its own state dir and host root under a temp dir.
 */
export class Cluster {
  readonly dir: string;
  readonly tb: Testbed;
  readonly docker: Docker;
  readonly inventoryFile: string;
  versionsFile: string;
  readonly settingsFile: string;
  port = 0;
  coordinator: Proc | undefined;
  readonly agents = new Map<string, Proc>();
  readonly nodes: TestNode[];
  private readonly heartbeatMs: number;
  private readonly healthIntervalMs: number;

  constructor(opts: ClusterOptions = {}) {
    this.tb = loadTestbed();
    this.docker = new Docker({ socketPath: this.tb.dockerHost.replace(/^unix:\/\//, '') });
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'kb-e2e-'));
    this.nodes = opts.nodes ?? REDIS_NODES;
    this.inventoryFile = path.join(this.dir, 'servers.tsv');
    writeFileSync(this.inventoryFile, inventoryText(this.nodes));
    this.versionsFile = this.tb.versionsFile;
    this.settingsFile = path.join(this.dir, 'modules.yaml');
    writeFileSync(this.settingsFile, opts.settings ?? FAST_REDIS_SETTINGS);
    this.heartbeatMs = opts.heartbeatMs ?? 500;
    this.healthIntervalMs = opts.healthIntervalMs ?? 500;
  }

  async startCoordinator(): Promise<Proc> {
    if (!this.port) this.port = await freePort();
    const p = new Proc('coordinator', process.execPath, [
      dist('kb-coordinator.cjs'), 'run',
      '--inventory', this.inventoryFile, '--versions', this.versionsFile, '--settings', this.settingsFile,
      '--data-dir', path.join(this.dir, 'coordinator'), '--listen', `127.0.0.1:${this.port}`, '--plaintext',
      '--heartbeat-ms', String(this.heartbeatMs), '--health-interval-ms', String(this.healthIntervalMs),
    ], path.join(this.dir, 'coordinator.log'));
    this.coordinator = p;
    await waitFor('coordinator listening', () => p.log().includes('kb-coordinator listening') || (!p.running && Promise.reject(new Error(p.log()))), 20_000);
    return p;
  }

  async startAgent(node: string, env: NodeJS.ProcessEnv = {}, coordinators = this.coordinatorAddresses()): Promise<Proc> {
    const dir = path.join(this.dir, 'nodes', node);
    mkdirSync(dir, { recursive: true });
    const p = new Proc(`agent-${node}`, dist('kb-agent'), [
      'run', '--node', node, '--coordinator', coordinators, '--state-dir', path.join(dir, 'state'),
      '--host-root', path.join(dir, 'root'), '--shared-engine', '--plaintext', '--reconcile-interval-ms', '2000',
    ], path.join(this.dir, `agent-${node}.log`), { DOCKER_HOST: this.tb.dockerHost, ...env });
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
    return `127.0.0.1:${this.port}`;
  }

  kbctl(args: string[], env: NodeJS.ProcessEnv = {}): Promise<KbctlResult> {
    const t0 = Date.now();
    return new Promise((resolve) => {
      execFile(process.execPath, [dist('kbctl.cjs'), ...args], {
        env: { ...process.env, KB_COORDINATOR: this.coordinatorAddresses(), KB_PLAINTEXT: '1', ...env },
        timeout: 170_000,
      }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 99) : 0;
        resolve({ code, stdout, stderr, ms: Date.now() - t0 });
      });
    });
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

  async cleanContainers(): Promise<void> {
    const names = this.nodes.map((n) => n.name);
    const list = await this.docker.listContainers({ all: true, filters: { label: ['kb.managed=true'] } });
    await Promise.all(list.filter((c) => names.includes(c.Labels['kb.node'] ?? '')).map((c) => this.docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
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
