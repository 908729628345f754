import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Proc, sleep, waitFor } from './proc.js';

/**
 * A real etcd cluster (Debian's etcd-server 3.4) on loopback for tests: three members at
 * `<subnet>.21`, `.22`, `.23` (client port 2379, peer port 2380), data dirs in a temp dir.
 * Members can be killed (kill -9) and restarted on their data dir, one at a time or all
 * together. Call stop() in afterAll: it kills every member and removes the data.
 */
export interface EtcdMember {
  name: string;
  ip: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  proc: Proc | undefined;
  /** Whether this member has started once (later starts join the existing cluster). */
  started: boolean;
}

export class EtcdCluster {
  readonly dir: string;
  readonly members: EtcdMember[];
  private readonly token = `kb-test-${process.pid}-${Date.now()}`;

  constructor(subnet: string, hostIds = [21, 22, 23], readonly clientPort = 2379, readonly peerPort = 2380) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'kb-etcd-'));
    this.members = hostIds.map((id, i) => {
      const ip = `${subnet}.${id}`;
      return {
        name: `etcd-${i + 1}`,
        ip,
        clientUrl: `http://${ip}:${clientPort}`,
        peerUrl: `http://${ip}:${peerPort}`,
        dataDir: path.join(this.dir, `etcd-${i + 1}`),
        proc: undefined,
        started: false,
      };
    });
  }

  /** `host:port,host:port,...` of every member's client URL. */
  get endpoints(): string {
    return this.members.map((m) => `${m.ip}:${this.clientPort}`).join(',');
  }

  /** The coordinator's --store value. */
  get storeUrl(): string {
    return `etcd://${this.endpoints}`;
  }

  /** Starts every member and waits until the cluster is healthy (a leader is elected). */
  async start(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) this.spawn(i);
    await this.waitHealthy();
  }

  private spawn(i: number): Proc {
    const m = this.members[i]!;
    const initialCluster = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',');
    const p = new Proc(m.name, 'etcd', [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', m.clientUrl,
      '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', m.peerUrl,
      '--initial-advertise-peer-urls', m.peerUrl,
      '--initial-cluster', initialCluster,
      '--initial-cluster-state', m.started ? 'existing' : 'new',
      '--initial-cluster-token', this.token,
      '--logger', 'zap',
      '--log-level', 'warn',
    ], path.join(this.dir, `${m.name}.log`));
    m.proc = p;
    m.started = true;
    return p;
  }

  /** Waits until every running member answers /health with true. */
  async waitHealthy(timeoutMs = 30_000): Promise<void> {
    const running = this.members.filter((m) => m.proc?.running);
    await waitFor(`etcd members ${running.map((m) => m.name).join(',')} healthy`, async () => {
      for (const m of running) {
        if (!m.proc?.running) throw new Error(`${m.name} exited:\n${m.proc?.log().slice(-2000)}`);
        if (!(await this.healthy(m))) return false;
      }
      return true;
    }, timeoutMs, 200);
  }

  async healthy(m: EtcdMember): Promise<boolean> {
    try {
      const res = await fetch(`${m.clientUrl}/health`, { signal: AbortSignal.timeout(2000) });
      const body = (await res.json()) as { health?: string };
      return body.health === 'true';
    } catch {
      return false;
    }
  }

  /** kill -9 of one member. */
  async kill(i: number): Promise<void> {
    await this.members[i]!.proc?.kill('SIGKILL');
  }

  /** Restarts a killed member on its data dir and waits until the cluster is healthy. */
  async restart(i: number): Promise<void> {
    this.spawn(i);
    await this.waitHealthy();
  }

  /** kill -9 of every member. */
  async killAll(): Promise<void> {
    await Promise.all(this.members.map((m) => m.proc?.kill('SIGKILL')));
  }

  /** Starts every member again on its data dir. */
  async restartAll(): Promise<void> {
    for (let i = 0; i < this.members.length; i++) if (!this.members[i]!.proc?.running) this.spawn(i);
    await this.waitHealthy();
  }

  /** The name of the current raft leader, asked of any running member (etcd's /v3 HTTP gateway). */
  async leader(): Promise<string | undefined> {
    for (const m of this.members.filter((x) => x.proc?.running)) {
      try {
        const res = await fetch(`${m.clientUrl}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(2000) });
        const body = (await res.json()) as { header?: { member_id?: string }; leader?: string };
        const members = await (await fetch(`${m.clientUrl}/v3/cluster/member/list`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(2000) })).json() as { members?: { ID: string; name: string }[] };
        return members.members?.find((x) => x.ID === body.leader)?.name;
      } catch { /* try the next member */ }
    }
    return undefined;
  }

  /** Kills every member and removes the data dirs. Safe to call twice. */
  async stop(): Promise<void> {
    await this.killAll();
    await sleep(50);
    rmSync(this.dir, { recursive: true, force: true });
  }

  logs(lines = 20): string {
    return this.members.map((m) => `--- ${m.name} ---\n${(m.proc?.log() ?? '').split('\n').slice(-lines).join('\n')}`).join('\n');
  }
}
