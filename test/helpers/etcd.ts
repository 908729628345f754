import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { Proc, sleep, waitFor } from './proc.js';

/** PEM files of a TLS etcd: its CA, and a client certificate for kb (etcd --client-cert-auth). */
export interface EtcdTlsFiles {
  ca: string;
  cert: string;
  key: string;
}

/**
 * A real etcd cluster (Debian's etcd-server 3.4) on loopback for tests: three members at
 * `<subnet>.21`, `.22`, `.23` (client port 2379, peer port 2380), data dirs in a temp dir.
 * Members can be killed (kill -9) and restarted on their data dir, one at a time or all
 * together. Call stop() in afterAll: it kills every member and removes the data.
 * With `tls`, clients must use TLS and present a certificate of the test CA (made with
 * openssl: a CA, a serving certificate per member with its IP, one client certificate).
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
  /** With `tls`: the CA and the client certificate kb uses. */
  readonly tls: EtcdTlsFiles | undefined;

  constructor(subnet: string, hostIds = [21, 22, 23], readonly clientPort = 2379, readonly peerPort = 2380, opts: { tls?: boolean } = {}) {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'kb-etcd-'));
    const scheme = opts.tls ? 'https' : 'http';
    this.members = hostIds.map((id, i) => {
      const ip = `${subnet}.${id}`;
      return {
        name: `etcd-${i + 1}`,
        ip,
        clientUrl: `${scheme}://${ip}:${clientPort}`,
        peerUrl: `http://${ip}:${peerPort}`,
        dataDir: path.join(this.dir, `etcd-${i + 1}`),
        proc: undefined,
        started: false,
      };
    });
    if (opts.tls) this.tls = this.makeCertificates();
  }

  /** openssl: CA, one serving certificate per member (SAN = its IP), one client certificate. */
  private makeCertificates(): EtcdTlsFiles {
    const d = path.join(this.dir, 'tls');
    mkdirSync(d, { mode: 0o700 });
    const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: d, stdio: 'pipe' });
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
    ossl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=kb-test etcd CA');
    const sign = (name: string, subj: string, ext: string) => {
      writeFileSync(path.join(d, `${name}.ext`), ext);
      ossl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subj);
      ossl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
    };
    for (const m of this.members) sign(m.name, `/CN=${m.name}`, `subjectAltName=IP:${m.ip}\nextendedKeyUsage=serverAuth,clientAuth\n`);
    sign('client', '/CN=kb-coordinator', 'extendedKeyUsage=clientAuth\n');
    return { ca: path.join(d, 'ca.crt'), cert: path.join(d, 'client.crt'), key: path.join(d, 'client.key') };
  }

  /** `host:port,host:port,...` of every member's client URL. */
  get endpoints(): string {
    return this.members.map((m) => `${m.ip}:${this.clientPort}`).join(',');
  }

  /** The coordinator's --store value (and, with TLS, its --etcd-* arguments in storeArgs). */
  get storeUrl(): string {
    return `${this.tls ? 'etcds' : 'etcd'}://${this.endpoints}`;
  }

  /** `--store URL` plus, with TLS, `--etcd-ca/--etcd-cert/--etcd-key`. */
  storeArgs(endpoints = this.endpoints): string[] {
    const t = this.tls;
    return ['--store', `${t ? 'etcds' : 'etcd'}://${endpoints}`, ...(t ? ['--etcd-ca', t.ca, '--etcd-cert', t.cert, '--etcd-key', t.key] : [])];
  }

  /** The TLS material as EtcdTarget.tls wants it (undefined without TLS). */
  targetTls(): { ca: Buffer; cert: Buffer; key: Buffer } | undefined {
    const t = this.tls;
    return t && { ca: readFileSync(t.ca), cert: readFileSync(t.cert), key: readFileSync(t.key) };
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
      ...(this.tls ? [
        '--cert-file', path.join(this.dir, 'tls', `${m.name}.crt`), '--key-file', path.join(this.dir, 'tls', `${m.name}.key`),
        '--trusted-ca-file', this.tls.ca, '--client-cert-auth',
      ] : []),
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
      const body = (await this.request(m, 'GET', '/health')) as { health?: string };
      return body.health === 'true';
    } catch {
      return false;
    }
  }

  /** A JSON request to a member's HTTP API (with the client certificate when TLS is on). */
  request(m: EtcdMember, method: 'GET' | 'POST', urlPath: string, body?: string): Promise<unknown> {
    const t = this.tls;
    const mod = t ? https : http;
    const opts = { method, timeout: 2000, ...(t ? { ca: readFileSync(t.ca), cert: readFileSync(t.cert), key: readFileSync(t.key) } : {}) };
    return new Promise((resolve, reject) => {
      const req = mod.request(`${m.clientUrl}${urlPath}`, opts, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => { text += d; });
        res.on('end', () => {
          try {
            resolve(JSON.parse(text));
          } catch (err) {
            reject(err);
          }
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end(body);
    });
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
        const body = (await this.request(m, 'POST', '/v3/maintenance/status', '{}')) as { header?: { member_id?: string }; leader?: string };
        const members = (await this.request(m, 'POST', '/v3/cluster/member/list', '{}')) as { members?: { ID: string; name: string }[] };
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
