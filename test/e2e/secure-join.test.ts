import * as grpc from '@grpc/grpc-js';
import { createHash } from 'node:crypto';
import { appendFileSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { CHANNEL_OPTIONS, kbV1 } from '../../proto/index.js';
import { certInfo } from '../../shared/tls/index.js';
import { Cluster, dist, REDIS_NODES, run, SUBNET, type KbctlResult } from '../helpers/cluster.js';
import { Proc, sleep, waitFor } from '../helpers/proc.js';

// Adding a server with the one pasted line, and everything that must be refused: the real
// coordinator, the real install.sh under `sh`, the real single-binary agent, mTLS throughout.
// redis-01 and redis-02 run as harness agents; redis-03 is installed by the printed command
// into a temp install root (KB_INSTALL_ROOT, KB_NO_SYSTEMD=1), never touching /usr or /etc.

const GATE = ['--min-healthy-time', '1s', '--healthy-deadline', '60s'];
const APP = { name: 'app-01', ip: `${SUBNET}.20`, role: 'k3s', subrole: 'worker' };
let cluster: Cluster;
let served: string;
let root3: string;
let installToken3: string;

/** Every regular file under `dir` (relative paths), [] when it does not exist. */
function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out.push(path.relative(dir, p));
    }
  };
  walk(dir);
  return out.sort();
}

const mode = (f: string) => (statSync(f).mode & 0o777).toString(8);

function install(command: string, env: NodeJS.ProcessEnv): Promise<KbctlResult> {
  return run('sh', ['-c', command], {
    PATH: process.env.PATH, HOME: process.env.HOME, TMPDIR: path.join(cluster.dir, 'tmp'),
    KB_NO_SYSTEMD: '1', KB_SHARED_ENGINE: '1', DOCKER_HOST: cluster.tb.dockerHost, ...env,
  });
}

/** Installs the printed command of a fresh token into a fresh root; expects refusal. */
async function refused(command: string, node: string, expected: string | RegExp): Promise<void> {
  const root = mkdtempSync(path.join(cluster.dir, 'refused-'));
  const r = await install(command, { KB_INSTALL_ROOT: root, KB_NODE: node });
  expect(r.code, r.stdout + r.stderr).not.toBe(0);
  expect(r.stderr).toMatch(expected);
  expect(r.stderr).toContain('nothing was installed');
  expect(files(root)).toEqual([]);
  expect(readdirSync(root)).toEqual([]);
  expect(readdirSync(path.join(cluster.dir, 'tmp'))).toEqual([]); // its download area is cleaned up too
}

function enrollRequests(): number {
  return cluster.coordinator!.log().split('\n').filter((l) => l.includes('"msg":"enrollment request"')).length;
}

function connectedCount(node: string): number {
  return cluster.coordinator!.log().split('\n').filter((l) => l.includes('"msg":"agent connected"') && l.includes(`"node":"${node}"`)).length;
}

async function tokens(): Promise<{ id: string; state: string; used: number; usedBy: string[] }[]> {
  return JSON.parse((await cluster.kbctl(['-o', 'json', 'token', 'list'])).stdout);
}

async function nodeStatus(name: string): Promise<string | undefined> {
  const nodes = JSON.parse((await cluster.kbctl(['-o', 'json', 'nodes'])).stdout) as { name: string; status: string }[];
  return nodes.find((n) => n.name === name)?.status;
}

beforeAll(async () => {
  cluster = new Cluster({ nodes: [...REDIS_NODES, APP], coordinatorArgs: ['--enroll-burst', '40', '--enroll-per-minute', '600'] });
  mkdirSync(path.join(cluster.dir, 'tmp'));
  // The coordinator serves a copy of the agent binary, so one test can tamper with it.
  served = path.join(cluster.dir, 'served-kb-agent');
  copyFileSync(dist('kb-agent'), served);
  cluster.coordinatorArgs.push('--agent-binary', served);
  await cluster.cleanContainers();
  await cluster.startCoordinator();
  for (const n of ['redis-01', 'redis-02']) await cluster.startAgent(n);
  await cluster.waitReady(['redis-01', 'redis-02']);
  root3 = mkdtempSync(path.join(cluster.dir, 'host-redis-03-'));
});

afterAll(async () => {
  const pidFile = path.join(root3 ?? '/nonexistent', 'run/kb-agent.pid');
  if (existsSync(pidFile)) {
    try { process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL'); } catch { /* gone */ }
  }
  await cluster?.stop();
});

describe('adding a server with one line, over mTLS', () => {
  it('kb-coordinator init made the CA, serving certificate and admin credential with private keys 0600, and re-running it keeps them', async () => {
    const pki = path.join(cluster.dataDir, 'pki');
    for (const f of ['ca.key', 'server.key']) expect(mode(path.join(pki, f)), f).toBe('600');
    expect(mode(cluster.configFile)).toBe('600');
    const before = ['ca.crt', 'ca.key', 'server.crt', 'server.key'].map((f) => readFileSync(path.join(pki, f), 'utf8'));
    const admin = readFileSync(cluster.configFile, 'utf8');
    const again = await cluster.init();
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain('kept CA');
    expect(again.stdout).toContain('kept admin credential');
    expect(['ca.crt', 'ca.key', 'server.crt', 'server.key'].map((f) => readFileSync(path.join(pki, f), 'utf8'))).toEqual(before);
    expect(readFileSync(cluster.configFile, 'utf8')).toBe(admin);
    expect(certInfo(readFileSync(path.join(pki, 'server.crt'))).sans).toContain('127.0.0.1');
    // The bootstrap listener publishes the agent's checksum and the CA (neither is secret).
    const get = (p: string) => new Promise<string>((resolve, reject) => {
      https.get(`${cluster.bootstrapUrl}${p}`, { rejectUnauthorized: false }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => { body += c.toString(); });
        res.on('end', () => resolve(body));
      }).on('error', reject);
    });
    expect(await get('/kb-agent.sha256')).toBe(`${createHash('sha256').update(readFileSync(served)).digest('hex')}  kb-agent\n`);
    expect(await get('/ca.crt')).toBe(before[0]);
  });

  it('the printed command turns a bare host into a Ready node: key made there (0600), unit, env file, certificate for its name', async () => {
    const tok = await cluster.createToken(['--node', 'redis-03']);
    installToken3 = tok.installCommand;
    expect(tok.installCommand).toMatch(/^curl -fsSL -k --pinnedpubkey sha256\/\/[A-Za-z0-9+/=]+ https:\/\/127\.0\.0\.1:\d+\/install\.sh \| KB_TOKEN=K10[0-9a-f]{64}::[a-z0-9]{6}\.[a-z0-9]{24} sh -$/);
    const t0 = Date.now();
    const r = await install(tok.installCommand, { KB_INSTALL_ROOT: root3, KB_NODE: 'redis-03' });
    if (r.code !== 0) console.log(r.stdout, r.stderr, cluster.dumpLogs());
    expect(r.code).toBe(0);
    await cluster.waitReady(['redis-03']);
    console.log(`install.sh to Ready (loopback): ${Date.now() - t0} ms`);
    expect(r.stdout).toContain('enrolled redis-03');

    const etc = path.join(root3, 'etc/kb-agent');
    expect(mode(etc)).toBe('700');
    expect(mode(path.join(etc, 'node.key'))).toBe('600');
    expect(mode(path.join(etc, 'kb-agent.env'))).toBe('600');
    const env = readFileSync(path.join(etc, 'kb-agent.env'), 'utf8');
    expect(env).toContain('KB_NODE=redis-03');
    expect(env).not.toContain('K10'); // the token is never stored
    expect(env).toMatch(/^NODE_OPTIONS=--jitless$/m); // the agent's runtime flags (ADR 0017)
    const unit = readFileSync(path.join(root3, 'etc/systemd/system/kb-agent.service'), 'utf8');
    expect(unit).toMatch(/^Restart=always$/m);
    expect(unit).toMatch(/^KillMode=process$/m);
    expect(unit).toContain(`ExecStart=${root3}/usr/local/bin/kb-agent run`);
    expect(unit).toContain(`EnvironmentFile=${etc}/kb-agent.env`);
    const cert = certInfo(readFileSync(path.join(etc, 'node.crt')));
    expect(cert).toMatchObject({ commonName: 'redis-03', role: 'node', sans: ['redis-03'] });
    expect(cert.notAfterMs - Date.now()).toBeGreaterThan(29 * 86_400_000);
    expect((await cluster.certSerials())['redis-03']).toBe(cert.serial);
    expect((await tokens()).find((t) => t.id === tok.id)).toMatchObject({ state: 'used-up', used: 1, usedBy: ['redis-03'] });
    // The installed binary is the one the coordinator serves, byte for byte.
    const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');
    expect(sha(path.join(root3, 'usr/local/bin/kb-agent'))).toBe(sha(served));
  });

  it('a rollout reaches the installed agent; re-running the install command changes nothing and does not restart it', async () => {
    const ro = await cluster.kbctl(['rollout', 'redis', ...GATE]);
    if (ro.code !== 0) console.log(ro.stdout, ro.stderr, cluster.dumpLogs(), readFileSync(path.join(root3, 'var/log/kb-agent.log'), 'utf8').slice(-3000));
    expect(ro.code).toBe(0);
    const c3 = (await cluster.container('redis-03', 'redis'))!;
    expect(c3.State.Running).toBe(true);

    const pid = readFileSync(path.join(root3, 'run/kb-agent.pid'), 'utf8').trim();
    const watched = ['usr/local/bin/kb-agent', 'etc/kb-agent/kb-agent.env', 'etc/systemd/system/kb-agent.service', 'etc/kb-agent/node.key', 'etc/kb-agent/node.crt'];
    const mtimes = watched.map((f) => statSync(path.join(root3, f)).mtimeMs);
    const started = readFileSync(path.join(root3, 'var/log/kb-agent.log'), 'utf8').split('"msg":"agent started"').length;
    const r = await install(installToken3, { KB_INSTALL_ROOT: root3, KB_NODE: 'redis-03' });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('redis-03 is already enrolled');
    expect(r.stdout).toContain(`kb-agent already running (pid ${pid}); nothing changed`);
    expect(r.stdout).not.toContain('downloading');
    expect(readFileSync(path.join(root3, 'run/kb-agent.pid'), 'utf8').trim()).toBe(pid);
    expect(() => process.kill(Number(pid), 0)).not.toThrow();
    expect(watched.map((f) => statSync(path.join(root3, f)).mtimeMs)).toEqual(mtimes);
    expect(readFileSync(path.join(root3, 'var/log/kb-agent.log'), 'utf8').split('"msg":"agent started"').length).toBe(started);
    expect((await cluster.container('redis-03', 'redis'))!.Id).toBe(c3.Id);
    expect(await nodeStatus('redis-03')).toBe('Ready');
  });

  it('a wrong CA pin aborts before the token is sent anywhere; nothing installed', async () => {
    const tok = await cluster.createToken(['--node', 'app-01']);
    const wrongPin = createHash('sha256').update('another CA').digest('hex');
    const cmd = tok.installCommand.replace(/KB_TOKEN=K10[0-9a-f]{64}::/, `KB_TOKEN=K10${wrongPin}::`);
    const before = enrollRequests();
    await refused(cmd, 'app-01', /CA pin mismatch: .* The token was NOT sent/);
    expect(enrollRequests()).toBe(before);
    expect((await tokens()).find((t) => t.id === tok.id)).toMatchObject({ state: 'valid', used: 0 });
  });

  it('a tampered agent binary fails its sha256 check before it is moved anywhere; nothing installed', async () => {
    const tok = await cluster.createToken(['--node', 'app-01']);
    appendFileSync(served, Buffer.from('tampered'));
    try {
      const before = enrollRequests();
      await refused(tok.installCommand, 'app-01', /sha256 mismatch for kb-agent: expected [0-9a-f]{64}, got [0-9a-f]{64}/);
      expect(enrollRequests()).toBe(before);
    } finally {
      copyFileSync(dist('kb-agent'), served);
    }
    expect((await tokens()).find((t) => t.id === tok.id)).toMatchObject({ state: 'valid', used: 0 });
  });

  it('expired, used-up, revoked and other-node tokens, and a hostname not in the inventory, are refused by name; nothing installed', async () => {
    const expired = await cluster.createToken(['--ttl', '1s', '--node', 'app-01']);
    await sleep(1200);
    await refused(expired.installCommand, 'app-01', new RegExp(`join token ${expired.id} expired at`));

    await refused(installToken3, 'app-01', /join token \w+ is used up \(1 of 1 uses, by redis-03\)/);

    const revoked = await cluster.createToken(['--node', 'app-01']);
    const rm = await cluster.kbctl(['token', 'rm', revoked.id]);
    expect(rm.code).toBe(0);
    await refused(revoked.installCommand, 'app-01', new RegExp(`join token ${revoked.id} was revoked`));

    const other = await cluster.createToken(['--node', 'redis-02']);
    await refused(other.installCommand, 'app-01', new RegExp(`join token ${other.id} is bound to node "redis-02", not "app-01"`));

    const any = await cluster.createToken([]);
    await refused(any.installCommand, 'ghost-01', /node "ghost-01" is not in the inventory .*servers\.tsv/);
    const list = await tokens();
    expect(list.find((t) => t.id === any.id)).toMatchObject({ state: 'valid', used: 0 });
    expect(list.find((t) => t.id === revoked.id)!.state).toBe('revoked');
    expect(list.find((t) => t.id === expired.id)!.state).toBe('expired');
    const table = await cluster.kbctl(['token', 'list']);
    expect(table.stdout.split('\n')[0]).toMatch(/^ID\s+NODE\s+USED\s+EXPIRES\s+STATE\s+USED-BY\s+DESCRIPTION$/);
    expect(table.stdout).not.toMatch(/K10[0-9a-f]{64}/); // secrets are shown once, at creation

    const nodes = JSON.parse((await cluster.kbctl(['-o', 'json', 'nodes'])).stdout) as { name: string }[];
    expect(nodes.map((n) => n.name)).not.toContain('app-01');
    expect(nodes.map((n) => n.name)).not.toContain('ghost-01');
  });

  it("redis-01's certificate can neither report as redis-02 nor fetch redis-02's plan", async () => {
    const before = connectedCount('redis-02');
    const dir = mkdtempSync(path.join(cluster.dir, 'impostor-'));
    const impostor = new Proc('impostor', dist('kb-agent'), [
      'run', '--node', 'redis-02', '--tls-dir', cluster.tlsDir('redis-01'), '--coordinator', cluster.address,
      '--state-dir', path.join(dir, 'state'), '--host-root', path.join(dir, 'root'), '--shared-engine',
    ], path.join(cluster.dir, 'impostor.log'), { DOCKER_HOST: cluster.tb.dockerHost });
    try {
      // The agent refuses on its own first (its certificate is not for redis-02) ...
      await waitFor('impostor exits', async () => !impostor.running, 15_000);
      expect(impostor.log()).toContain('is for node "redis-01", not node "redis-02"');
    } finally {
      await impostor.kill('SIGKILL');
    }
    // ... so speak the protocol directly with redis-01's key and certificate.
    const tls = cluster.tlsDir('redis-01');
    const creds = grpc.credentials.createSsl(readFileSync(path.join(tls, 'ca.crt')), readFileSync(path.join(tls, 'node.key')), readFileSync(path.join(tls, 'node.crt')));
    const client = new (kbV1().AgentService)(cluster.address, creds, CHANNEL_OPTIONS) as unknown as grpc.Client & { Session: () => grpc.ClientDuplexStream<unknown, unknown> };
    const received: unknown[] = [];
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client.Session();
      call.on('data', (m) => received.push(m));
      call.on('status', resolve);
      call.on('error', () => undefined);
      call.write({ hello: { nodeName: 'redis-02', agentVersion: 'impostor', desired: [] } });
    });
    client.close();
    expect(status.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(status.details).toBe('certificate is for node "redis-01", not "redis-02": a node may only report for itself');
    expect(received).toEqual([]); // no settings, no plan
    expect(connectedCount('redis-02')).toBe(before);
    expect(await nodeStatus('redis-02')).toBe('Ready');

    // A node certificate as kbctl's credential: every ControlService call is refused.
    const cfg = path.join(cluster.dir, 'redis-01-as-admin.kbconfig');
    writeFileSync(cfg, stringify({ coordinators: [cluster.address], ca: readFileSync(path.join(tls, 'ca.crt'), 'utf8'), certificate: readFileSync(path.join(tls, 'node.crt'), 'utf8'), key: readFileSync(path.join(tls, 'node.key'), 'utf8') }), { mode: 0o600 });
    for (const args of [['plan', 'redis', '--node', 'redis-02'], ['nodes'], ['token', 'create']]) {
      const r = await cluster.kbctl(args, { KB_CONFIG: cfg });
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toContain('refused by the coordinator: the ControlService requires the admin credential; the caller presented a node certificate "redis-01"');
      expect(r.stdout).toBe('');
    }
  });

  it('kbctl without the admin credential, with another CA\'s credential, and plaintext clients are refused', async () => {
    const none = await cluster.kbctl(['nodes'], { KB_CONFIG: path.join(cluster.dir, 'no-such-config') });
    expect(none.code).toBe(2);
    expect(none.stderr).toContain('no admin credential');

    const otherDir = mkdtempSync(path.join(cluster.dir, 'other-ca-'));
    const init = await run(process.execPath, [dist('kb-coordinator.cjs'), 'init', '--data-dir', otherDir, '--listen', cluster.address, '--admin-config', path.join(otherDir, 'admin')]);
    expect(init.code, init.stderr).toBe(0);
    const foreign = await cluster.kbctl(['nodes'], { KB_CONFIG: path.join(otherDir, 'admin') });
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toContain('coordinator unavailable');
    expect(foreign.stdout).toBe('');

    const plain = await cluster.kbctl(['--plaintext', '--coordinator', cluster.address, 'nodes'], { KB_CONFIG: undefined });
    expect(plain.code).toBe(2);
    expect(plain.stderr).toContain('a plaintext client cannot talk to a coordinator serving mTLS');
    expect(plain.stdout).toBe('');

    // A TLS client that trusts the CA but has no client certificate is refused at the handshake.
    const ca = readFileSync(path.join(cluster.dataDir, 'pki/ca.crt'));
    const anon = new (kbV1().ControlService)(cluster.address, grpc.credentials.createSsl(ca), CHANNEL_OPTIONS) as unknown as grpc.Client & { ListNodes: (r: unknown, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null) => void) => void };
    const err = await new Promise<grpc.ServiceError | null>((resolve) => anon.ListNodes({}, { deadline: Date.now() + 5000 }, resolve));
    anon.close();
    expect(err?.code).toBe(grpc.status.UNAVAILABLE);

    // A plaintext agent never gets a session.
    const dir = mkdtempSync(path.join(cluster.dir, 'plain-agent-'));
    const agent = new Proc('plain-agent', dist('kb-agent'), [
      'run', '--plaintext', '--node', 'app-01', '--coordinator', cluster.address, '--state-dir', path.join(dir, 'state'), '--host-root', path.join(dir, 'root'), '--shared-engine',
    ], path.join(cluster.dir, 'plain-agent.log'), { DOCKER_HOST: cluster.tb.dockerHost });
    try {
      await waitFor('plain agent rejected', () => agent.log().includes('"msg":"session ended"'), 15_000);
      expect(agent.log()).not.toContain('"msg":"session open"');
      expect(await nodeStatus('app-01')).toBeUndefined();
    } finally {
      await agent.kill('SIGKILL');
    }
  });

  it('enrollment attempts are rate-limited per source address', async () => {
    const post = () => new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = https.request(`${cluster.bootstrapUrl}/v1/enroll`, { method: 'POST', rejectUnauthorized: false, headers: { 'content-type': 'application/json' } }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => { body += c.toString(); });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end(JSON.stringify({ token: 'K10' + '0'.repeat(64) + '::abcdef.' + 'a'.repeat(24), csr: 'not a csr' }));
    });
    let limited: { status: number; body: string } | undefined;
    for (let i = 0; i < 60 && !limited; i++) {
      const r = await post();
      if (r.status === 429) limited = r;
      else expect(r.status).toBe(400);
    }
    expect(limited?.body).toMatch(/too many enrollment attempts from \S+: retry in \d+ s/);
    await sleep(1500); // 600/min refill: later enrollments in this file are not limited
  });

  it('uninstall keeps containers and data; re-provisioning with a new token revokes the old certificate; --purge removes containers and data', async () => {
    const c3 = (await cluster.container('redis-03', 'redis'))!;
    const oldTls = path.join(cluster.dir, 'redis-03-old-tls');
    cpSync(path.join(root3, 'etc/kb-agent'), oldTls, { recursive: true });
    const oldSerial = certInfo(readFileSync(path.join(oldTls, 'node.crt'))).serial;
    const pid = Number(readFileSync(path.join(root3, 'run/kb-agent.pid'), 'utf8'));

    const u = await run(path.join(root3, 'usr/local/bin/kb-agent-uninstall.sh'), [], { PATH: process.env.PATH });
    expect(u.code, u.stderr).toBe(0);
    expect(u.stdout).toContain('containers and data kept');
    expect(() => process.kill(pid, 0)).toThrow();
    const left = files(root3);
    for (const gone of ['usr/local/bin/kb-agent', 'usr/local/bin/kb-agent-uninstall.sh', 'etc/kb-agent/node.key', 'etc/kb-agent/kb-agent.env', 'etc/systemd/system/kb-agent.service', 'run/kb-agent.pid', 'var/log/kb-agent.log']) {
      expect(left).not.toContain(gone);
    }
    // Containers keep running, so what they use stays: data, and the credentials they mount.
    expect(left.every((f) => f.startsWith('var/lib/kb-agent/') || f.startsWith('opt/keybuzz/') || f.startsWith('opt/keybuzz-installer/credentials/')), left.join(',')).toBe(true);
    expect(left).toContain('var/lib/kb-agent/desired.json');
    expect(existsSync(path.join(root3, 'opt/keybuzz/redis/data'))).toBe(true);
    const after = (await cluster.container('redis-03', 'redis'))!;
    expect(after.Id).toBe(c3.Id);
    expect(after.State.Running).toBe(true);
    await waitFor('redis-03 NotReady', async () => (await nodeStatus('redis-03')) === 'NotReady', 15_000, 200);

    // Re-provisioning the same hostname with a new token: new certificate, old one revoked.
    const tok = await cluster.createToken(['--node', 'redis-03']);
    const r = await install(tok.installCommand, { KB_INSTALL_ROOT: root3, KB_NODE: 'redis-03' });
    expect(r.code, r.stderr).toBe(0);
    await cluster.waitReady(['redis-03']);
    const newSerial = certInfo(readFileSync(path.join(root3, 'etc/kb-agent/node.crt'))).serial;
    expect(newSerial).not.toBe(oldSerial);
    expect((await cluster.certSerials())['redis-03']).toBe(newSerial);
    expect((await cluster.container('redis-03', 'redis'))!.Id).toBe(c3.Id); // the kept desired state: nothing to redo
    const creds = grpc.credentials.createSsl(readFileSync(path.join(oldTls, 'ca.crt')), readFileSync(path.join(oldTls, 'node.key')), readFileSync(path.join(oldTls, 'node.crt')));
    const client = new (kbV1().AgentService)(cluster.address, creds, CHANNEL_OPTIONS) as unknown as grpc.Client & { Session: () => grpc.ClientDuplexStream<unknown, unknown> };
    const status = await new Promise<grpc.StatusObject>((resolve) => {
      const call = client.Session();
      call.on('status', resolve);
      call.on('data', () => undefined);
      call.on('error', () => undefined);
      call.write({ hello: { nodeName: 'redis-03', agentVersion: 'old', desired: [] } });
    });
    client.close();
    expect(status.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(status.details).toContain(`certificate ${oldSerial} of node "redis-03" is revoked`);
    expect(await nodeStatus('redis-03')).toBe('Ready');

    // --purge: containers and data go too; the other nodes are untouched.
    const others = await Promise.all(['redis-01', 'redis-02'].map(async (n) => (await cluster.container(n, 'redis'))!.Id));
    const p = await run(path.join(root3, 'usr/local/bin/kb-agent-uninstall.sh'), ['--purge'], { PATH: process.env.PATH });
    expect(p.code, p.stderr).toBe(0);
    expect(p.stdout).toContain('its containers and data');
    expect(await cluster.container('redis-03', 'redis')).toBeUndefined();
    expect(files(root3)).toEqual([]);
    for (const [i, n] of ['redis-01', 'redis-02'].entries()) {
      const c = (await cluster.container(n, 'redis'))!;
      expect(c.Id).toBe(others[i]);
      expect(c.State.Running).toBe(true);
    }
  });
});
