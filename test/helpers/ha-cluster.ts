import { copyFileSync, cpSync, existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { SECRET_KEY_FILE, ensureSecretKey } from '../../coordinator/secrets/keyfile.js';
import { ControlClient } from '../../coordinator/kbctl/client.js';
import { readKbConfig, writeKbConfig } from '../../coordinator/kbctl/config.js';
import type { CoordinatorStatusResponse } from '../../proto/types.js';
import { Cluster, SUBNET, dist, run, type ClusterOptions } from './cluster.js';
import { EtcdCluster } from './etcd.js';
import { Proc, waitFor } from './proc.js';
import { TcpProxy } from './tcp-proxy.js';

export interface Replica {
  name: string;
  ip: string;
  port: number;
  address: string;
  proc: Proc | undefined;
  /** etcd endpoints this replica uses (the members directly, or proxies in front of them). */
  endpoints: string;
}

export interface HaClusterOptions extends ClusterOptions {
  /** Coordinator replicas. Default 3. */
  replicas?: number;
  /** --lease-ttl of every replica. Default '5s' (the production default). */
  leaseTtl?: string;
  /**
   * Replicas (by index) that reach etcd only through TCP proxies the test can cut
   * (`proxies`), to isolate that replica alone. Default none.
   */
  proxied?: number[];
}

/**
 * A kb test bed with high availability: a real three-member etcd cluster on loopback
 * (`<subnet>.21-23`), several coordinator processes (`c1`, `c2`, ... at `<subnet>.11`,
 * `.12`, ... port 7443, all with --store etcd://...) and one agent per node that knows
 * every replica's address. Agents try the replicas in order, so they start on c1.
 *
 * Secure by default, as an operator sets it up (README "Running the parts by hand"):
 * `kb-coordinator init` once on c1 with a --san for every replica, c1's `pki/` and
 * `secrets.key` copied to every replica's data dir, every replica listed in the admin
 * credential's `coordinators:`; agents enroll through c1's bootstrap listener and then
 * talk mTLS to whichever replica they reach. `plaintext: true` gives the development mode.
 */
export class HaCluster extends Cluster {
  readonly etcd: EtcdCluster;
  readonly replicas: Replica[];
  readonly proxies: TcpProxy[] = [];
  private readonly leaseTtl: string;
  private readonly proxied: number[];
  private client: ControlClient | undefined;
  /** Every replica process ever started, so stop() kills them all. */
  private readonly started: Proc[] = [];

  constructor(opts: HaClusterOptions = {}) {
    super({ ...opts, listenHost: `${SUBNET}.11` });
    this.port = 7443;
    this.bootstrapPort = 7444;
    this.etcd = new EtcdCluster(SUBNET);
    this.leaseTtl = opts.leaseTtl ?? '5s';
    this.proxied = opts.proxied ?? [];
    this.replicas = Array.from({ length: opts.replicas ?? 3 }, (_, i) => {
      const ip = `${SUBNET}.${11 + i}`;
      return { name: `c${i + 1}`, ip, port: 7443, address: `${ip}:7443`, proc: undefined, endpoints: this.etcd.endpoints };
    });
  }

  override coordinatorAddresses(): string {
    return this.replicas.map((r) => r.address).join(',');
  }

  /** Starts etcd (and the proxies), every replica (c1 first, so it leads), every agent; waits until all nodes are Ready. */
  override async start(): Promise<void> {
    await this.cleanContainers();
    await this.etcd.start();
    if (this.proxied.length) {
      for (const [i, m] of this.etcd.members.entries()) {
        const p = new TcpProxy(`${SUBNET}.${31 + i}`, 2379, m.ip, 2379);
        await p.start();
        this.proxies.push(p);
      }
      for (const i of this.proxied) this.replicas[i]!.endpoints = this.proxies.map((p) => p.address).join(',');
    }
    await this.startReplica(0);
    await waitFor('c1 leads', async () => (await this.status(0))?.role === 'leader', 30_000, 100);
    for (let i = 1; i < this.replicas.length; i++) await this.startReplica(i);
    for (const n of this.nodes) await this.startAgent(n.name);
    await this.waitReady(this.nodes.map((n) => n.name));
  }

  /** Starts (or restarts) replica i and waits until it has joined (follower or leader). Refuses if it runs. */
  async startReplica(i: number): Promise<Proc> {
    const r = this.replicas[i]!;
    if (r.proc?.running) throw new Error(`replica ${r.name} is already running (pid ${r.proc.child.pid})`);
    // Replicas share one secret store in etcd, so one secrets.key: made once, copied to each
    // replica's data dir as an operator would (README "High availability").
    const shared = path.join(this.dir, 'shared-secrets');
    mkdirSync(shared, { recursive: true });
    ensureSecretKey(shared);
    const dataDir = path.join(this.dir, r.name);
    mkdirSync(dataDir, { recursive: true });
    if (!existsSync(path.join(dataDir, SECRET_KEY_FILE))) copyFileSync(path.join(shared, SECRET_KEY_FILE), path.join(dataDir, SECRET_KEY_FILE));
    const tls = this.plaintext ? ['--plaintext'] : await this.sharedPki(dataDir, r);
    const p = new Proc(r.name, process.execPath, [
      dist('kb-coordinator.cjs'), 'run',
      '--inventory', this.inventoryFile, '--versions', this.versionsFile, '--settings', this.settingsFile,
      '--data-dir', dataDir, '--listen', r.address, ...tls,
      '--store', `etcd://${r.endpoints}`, '--name', r.name, '--lease-ttl', this.leaseTtl,
      '--heartbeat-ms', '500', '--health-interval-ms', '500',
    ], path.join(this.dir, `${r.name}.log`));
    r.proc = p;
    this.started.push(p);
    await waitFor(`${r.name} listening`, () => p.log().includes('kb-coordinator listening') || (!p.running && Promise.reject(new Error(p.log()))), 20_000);
    await waitFor(`${r.name} joined`, async () => ['follower', 'leader'].includes((await this.status(i))?.role ?? ''), 30_000, 100);
    return p;
  }

  /**
   * mTLS: the one PKI every replica shares. The first call runs `kb-coordinator init` in
   * c1's data dir with a --san for every replica and lists every replica in the admin
   * credential; each replica gets a copy of that pki/ directory. Returns the replica's TLS
   * arguments (bootstrap listener on <ip>:7444, the agent binary it serves).
   */
  private async sharedPki(dataDir: string, r: Replica): Promise<string[]> {
    const first = path.join(this.dir, this.replicas[0]!.name);
    if (!existsSync(this.configFile)) {
      const init = await run(process.execPath, [dist('kb-coordinator.cjs'), 'init', '--data-dir', first, '--listen', this.replicas[0]!.address,
        ...this.replicas.slice(1).flatMap((x) => ['--san', x.ip]), '--admin-config', this.configFile]);
      if (init.code !== 0) throw new Error(`kb-coordinator init failed: ${init.stderr}`);
      writeKbConfig(this.configFile, { ...readKbConfig(this.configFile), coordinators: this.replicas.map((x) => x.address) });
    }
    if (dataDir !== first && !existsSync(path.join(dataDir, 'pki'))) cpSync(path.join(first, 'pki'), path.join(dataDir, 'pki'), { recursive: true });
    return ['--bootstrap-listen', `${r.ip}:${this.bootstrapPort}`, '--agent-binary', dist('kb-agent')];
  }

  /** kill -9 of replica i. */
  async killReplica(i: number): Promise<void> {
    await this.replicas[i]!.proc?.kill('SIGKILL');
  }

  /** CoordinatorStatus of replica i, or undefined if it does not answer. */
  async status(i: number): Promise<CoordinatorStatusResponse | undefined> {
    if (!this.client) {
      const tls = this.plaintext ? undefined : readKbConfig(this.configFile);
      this.client = new ControlClient({ address: this.coordinatorAddresses(), plaintext: this.plaintext, tls, timeoutMs: 3000 });
    }
    return this.client.coordinatorStatus(this.replicas[i]!.address).catch(() => undefined);
  }

  async statuses(): Promise<(CoordinatorStatusResponse | undefined)[]> {
    return Promise.all(this.replicas.map((_, i) => this.status(i)));
  }

  /** Index of the replica that says it leads (waits for one). */
  async leader(timeoutMs = 30_000, not?: number): Promise<number> {
    return waitFor('a leader', async () => {
      const all = await this.statuses();
      const i = all.findIndex((s, j) => s?.role === 'leader' && j !== not);
      return i >= 0 ? i + 1 : undefined;
    }, timeoutMs, 100).then((x) => x - 1);
  }

  /** kbctl against one replica only. */
  kbctlAt(i: number, args: string[]): ReturnType<Cluster['kbctl']> {
    return this.kbctl(args, { KB_COORDINATOR: this.replicas[i]!.address });
  }

  protected override extraProcs(): Proc[] {
    return this.replicas.map((r) => r.proc).filter((p): p is Proc => Boolean(p));
  }

  override dumpLogs(lines = 40): string {
    return `${super.dumpLogs(lines)}\n${this.etcd.logs(10)}`;
  }

  override async stop(): Promise<void> {
    this.client?.close();
    await Promise.all([...this.agents.values()].map((a) => a.kill('SIGKILL')));
    await Promise.all(this.started.map((p) => p.kill('SIGKILL')));
    for (const p of this.proxies) {
      p.heal();
      await p.stop();
    }
    await this.etcd.stop();
    await this.cleanContainers();
  }
}
