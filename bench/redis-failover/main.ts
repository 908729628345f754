/**
 * bench/redis-failover: the same Redis master failure, repeated, seen through three HAProxy
 * mechanisms side by side in one run (docs/benchmarks.md):
 *
 *  kb        kb's haproxy module: be_redis_master moved by the agent's master follower
 *            (+switch-master on every Sentinel, majority, ROLE, Runtime API);
 *  legacy    the old way: a script asks one Sentinel `SENTINEL get-master-addr-by-name` every
 *            15 s, rewrites haproxy.cfg, checks it with `haproxy -c` and reloads; its phase is
 *            drawn at random for every failover (uniform over the period);
 *  tcp-check HAProxy's own health checks: the three Redis servers, `expect string role:master`,
 *            inter 1s rise 2 fall 2.
 *
 * Every failover: the master node's agent is frozen (SIGSTOP) and its redis container is
 * SIGKILLed; Sentinel promotes a replica; each mechanism is timed by its own writer (one
 * acknowledged SET every 5 ms through its HAProxy, attributed to the master that answered).
 * Then the agent is thawed and restarts the old master, which then claims role:master on its
 * own (REPLICAOF NO ONE, as a container restarted without --replicaof did in the old scripts)
 * until Sentinel demotes it: writes acknowledged by it are lost, and counted per mechanism.
 *
 * Measures per mechanism: switch = first `+switch-master` -> first write acknowledged by the
 * new master; outage = last write acknowledged by the old master -> first by the new; lost =
 * acknowledged writes missing on the master at the end of the run.
 *
 *   node bench/run.mjs redis-failover [--runs 10] [--poll-period 15000] [--no-docs] [--json FILE]
 *
 * Needs the test bed (scripts/testbed.sh up) and dist/ (scripts/build.mjs); uses the loopback
 * subnet $KB_E2E_SUBNET (default 127.0.1) like the e2e tests: .1-.3 Redis, .11 HAProxy.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { writeBenchSection } from '../lib/docs.js';
import { dockerVersion, firstLine, hostLine } from '../lib/machine.js';
import type Docker from 'dockerode';
import { parseEndpoint } from '../../shared/redis/endpoint.js';
import { loadIoredis } from '../../shared/redis/client.js';
import { SentinelLinks, parseSwitchMaster } from '../../shared/redis/sentinel.js';
import { AckWriter, countMissing, deleteKeys, measureFailover } from '../../shared/redis/writer.js';
import { Cluster, FAST_REDIS_SETTINGS, HA_NODES, REDIS_NODES, repoRoot } from '../../test/helpers/cluster.js';
import { sleep, waitFor } from '../../test/helpers/proc.js';
import { MASTER_NAME, allHealthy, currentAuth, failing, majorityMaster, redis, replication, sentinelsReady, useCredentials } from '../../test/helpers/redis-ha.js';

type Mechanism = 'kb' | 'legacy' | 'tcp-check';
const MECHANISMS: Mechanism[] = ['kb', 'legacy', 'tcp-check'];

interface Args { runs: number; pollPeriodMs: number; docs: boolean; json?: string }

function parseArgs(argv: string[]): Args {
  const a: Args = { runs: 10, pollPeriodMs: 15_000, docs: true };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const v = () => { const x = argv[++i]; if (x === undefined) throw new Error(`${k} needs a value`); return x; };
    if (k === '--runs') a.runs = Number(v());
    else if (k === '--poll-period') a.pollPeriodMs = Number(v());
    else if (k === '--no-docs') a.docs = false;
    else if (k === '--json') a.json = v();
    else throw new Error(`unknown argument ${k} (--runs N, --poll-period MS, --no-docs, --json FILE)`);
  }
  if (!(a.runs >= 1)) throw new Error('--runs must be at least 1');
  return a;
}

const LB = HA_NODES.find((n) => n.role === 'lb')!;
const PORTS: Record<Mechanism, number> = { kb: 6379, legacy: 6380, 'tcp-check': 6381 };
const REDIS_IPS = REDIS_NODES.map((n) => n.ip);
const log = (msg: string) => process.stdout.write(`${new Date().toISOString().slice(11, 23)} ${msg}\n`);

// ---------------------------------------------------------------------------------------------
// The two peers: plain HAProxy containers configured the old ways.

function legacyConfig(master: string): string {
  return [
    'global', '    stats socket /cfg/admin.sock mode 600 level admin', '',
    'defaults', '    mode tcp', '    timeout connect 5s', '    timeout client 30m', '    timeout server 30m', '',
    `frontend fe_redis`, `    bind ${LB.ip}:${PORTS.legacy}`, '    default_backend be_redis_master', '',
    'backend be_redis_master', `    server redis-master ${master}`, '',
  ].join('\n');
}

/**
 * HAProxy checking `role:master` itself, as a team without a follower would. Redis requires a
 * password (kb's credentials), so the check sends AUTH first: this peer's configuration holds
 * the password, which is what the old way did (kb's own HAProxy needs none: the follower
 * reads redis.env).
 */
function tcpCheckConfig(password: string | undefined): string {
  return [
    'global', '    stats socket /cfg/admin.sock mode 600 level admin', '',
    'defaults', '    mode tcp', '    timeout connect 5s', '    timeout client 30m', '    timeout server 30m', '',
    'frontend fe_redis', `    bind ${LB.ip}:${PORTS['tcp-check']}`, '    default_backend be_redis_master', '',
    'backend be_redis_master',
    '    option tcp-check',
    '    tcp-check connect',
    ...(password ? [`    tcp-check send AUTH\\ ${password}\\r\\n`, '    tcp-check expect string +OK'] : []),
    '    tcp-check send PING\\r\\n',
    '    tcp-check expect string +PONG',
    '    tcp-check send info\\ replication\\r\\n',
    '    tcp-check expect string role:master',
    '    tcp-check send QUIT\\r\\n',
    '    tcp-check expect string +OK',
    ...REDIS_NODES.map((n) => `    server ${n.name} ${n.ip}:6379 check inter 1s rise 2 fall 2`),
    '',
  ].join('\n');
}

async function runPeer(cluster: Cluster, name: string, dir: string, config: string): Promise<Docker.Container> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'haproxy.cfg'), config);
  const old = await cluster.docker.listContainers({ all: true, filters: { name: [name] } });
  for (const c of old) await cluster.docker.getContainer(c.Id).remove({ force: true });
  const c = await cluster.docker.createContainer({
    name, Image: cluster.tb.images.haproxy, Cmd: ['-W', '-f', '/cfg/haproxy.cfg'],
    HostConfig: { NetworkMode: 'host', Binds: [`${dir}:/cfg`] },
  });
  await c.start();
  return c;
}

async function exec(c: Docker.Container, cmd: string[]): Promise<number> {
  const e = await c.exec({ Cmd: cmd, AttachStdout: true, AttachStderr: true });
  const stream = await e.start({});
  await new Promise<void>((resolve) => { stream.on('end', () => resolve()); stream.on('close', () => resolve()); stream.resume(); });
  for (let i = 0; i < 50; i++) {
    const info = await e.inspect();
    if (!info.Running) return info.ExitCode ?? -1;
    await sleep(10);
  }
  return -1;
}

/**
 * The old cron job: every `periodMs`, ask ONE Sentinel, rewrite, validate, reload. `rephase`
 * restarts it so that its next poll comes `firstInMs` from now.
 */
class LegacyPoller {
  private timer: NodeJS.Timeout | undefined;
  private current: string;
  private busy = false;
  reloads: { atMs: number; to: string }[] = [];

  constructor(private readonly c: Docker.Container, private readonly dir: string, private readonly periodMs: number, initial: string) {
    this.current = initial;
  }

  rephase(firstInMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.tick(), firstInMs);
  }

  stop(): void {
    clearTimeout(this.timer);
  }

  private tick(): void {
    this.timer = setTimeout(() => this.tick(), this.periodMs);
    if (this.busy) return;
    this.busy = true;
    void this.poll().finally(() => { this.busy = false; });
  }

  private async poll(): Promise<void> {
    const a = await redis(REDIS_IPS[0]!, 26379, (r) => r.call('SENTINEL', 'get-master-addr-by-name', MASTER_NAME)).catch(() => null) as string[] | null;
    if (!a) return;
    const master = `${a[0]}:${a[1]}`;
    if (master === this.current) return;
    writeFileSync(path.join(this.dir, 'haproxy.cfg.new'), legacyConfig(master));
    if (await exec(this.c, ['haproxy', '-c', '-q', '-f', '/cfg/haproxy.cfg.new']) !== 0) return;
    execFileSync('mv', [path.join(this.dir, 'haproxy.cfg.new'), path.join(this.dir, 'haproxy.cfg')]);
    await this.c.kill({ signal: 'SIGUSR2' }); // master-worker reload
    this.current = master;
    this.reloads.push({ atMs: Date.now(), to: master });
  }
}

// ---------------------------------------------------------------------------------------------

interface RunResult {
  run: number;
  oldMaster: string;
  newMaster: string;
  promotionMs: number;
  legacyPhaseMs: number;
  byMechanism: Record<Mechanism, { switchMs?: number; outageMs?: number; lost: number; acked: number; ackedByOldAfterSwitch: number }>;
  followerAfterEventMs?: number;
}

function percentile(values: number[], p: number): number | undefined {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return undefined;
  return v[Math.max(0, Math.ceil((p / 100) * v.length) - 1)];
}

/** The follower's own "ms after the event" of every switch it logged since `fromLine`. */
function followerSwitches(cluster: Cluster, fromLine: number): { lines: number; afterEventMs: number[] } {
  const text = readFileSync(path.join(cluster.dir, `agent-${LB.name}.log`), 'utf8').split('\n');
  const out: number[] = [];
  for (const l of text.slice(fromLine)) {
    if (!l.includes('follower switched')) continue;
    try {
      const j = JSON.parse(l) as { afterEventMs?: number };
      if (typeof j.afterEventMs === 'number') out.push(j.afterEventMs);
    } catch { /* not JSON */ }
  }
  return { lines: text.length, afterEventMs: out };
}

async function oneRun(run: number, cluster: Cluster, poller: LegacyPoller, args: Args, logLine: number): Promise<{ r: RunResult; logLine: number }> {
  const old = (await majorityMaster(REDIS_NODES))!;
  const oldNode = REDIS_NODES.find((n) => `${n.ip}:6379` === old)!;
  const writers = Object.fromEntries(MECHANISMS.map((m) => [m, new AckWriter({
    proxy: { host: LB.ip, port: PORTS[m] }, auth: currentAuth().redis, keyPrefix: `kb:bench:${run}:${m}:`, intervalMs: 5, timeoutMs: 1000, reconnectEveryMs: 100,
  })])) as Record<Mechanism, AckWriter>;
  for (const w of Object.values(writers)) w.start();
  let switchAt: { atMs: number; to: string } | undefined;
  await loadIoredis();
  const links = new SentinelLinks(REDIS_NODES.map((n) => ({ host: n.ip, port: 26379 })), { timeoutMs: 1000, auth: currentAuth().sentinel }, ['+switch-master'], (_s, _c, message, atMs) => {
    const sw = parseSwitchMaster(message);
    if (sw && sw.from === old && !switchAt) switchAt = { atMs, to: sw.to };
  });
  try {
    for (const m of MECHANISMS) {
      const a = await writers[m].waitForAck((x) => x.server === old, 30_000);
      if (!a) throw new Error(`${m}: no write acknowledged by the master ${old} before the failover`);
    }
    // The switch is timed from the Sentinels' own +switch-master: every subscription must be in
    // place before the kill (in a first run on a loaded machine, one was not: the event was
    // missed and the run timed out).
    await waitFor('subscribed to +switch-master on every Sentinel', () => links.subscribedCount() === REDIS_NODES.length, 30_000, 10);
    // ...and every Sentinel must know both replicas and the other Sentinels, or it cannot fail
    // over (right after the rollout it may not yet: a run timed out waiting for the switch).
    const readyFrom = Date.now();
    await waitFor('every Sentinel knows every replica and Sentinel', () => sentinelsReady(REDIS_NODES), 60_000, 250);
    log(`run ${run}: every Sentinel knows both replicas and the other Sentinels (waited ${Date.now() - readyFrom} ms for it)`);
    await sleep(500);
    const agent = cluster.agents.get(oldNode.name)!;
    const legacyPhaseMs = Math.random() * args.pollPeriodMs;
    // A crash: the agent is frozen (it restarts nothing), redis is SIGKILLed.
    agent.child.kill('SIGSTOP');
    const c = (await cluster.container(oldNode.name, 'redis'))!;
    poller.rephase(legacyPhaseMs);
    await cluster.docker.getContainer(c.Id).kill({ signal: 'SIGKILL' });
    const failedAtMs = Date.now();
    await waitFor('+switch-master', () => switchAt, 30_000, 10);
    const sw = switchAt!;
    const firsts = await Promise.all(MECHANISMS.map((m) => writers[m].waitForAck((x) => x.server === sw.to && x.sentMs >= failedAtMs, args.pollPeriodMs + 25_000)));
    log(`run ${run}: ${oldNode.name} killed, +switch-master to ${sw.to} after ${sw.atMs - failedAtMs} ms; first acks: ${MECHANISMS.map((m, i) => `${m} ${firsts[i] ? `+${firsts[i]!.ackMs - sw.atMs} ms` : 'never'}`).join(', ')} (legacy phase ${Math.round(legacyPhaseMs)} ms)`);

    // The old master returns: the thawed agent restarts it (as a replica), then it claims
    // role:master by itself for a while, as the old scripts' containers did.
    agent.child.kill('SIGCONT');
    await waitFor(`${oldNode.name} back as a replica`, async () => (await replication(oldNode.ip).catch(() => undefined))?.master_link_status === 'up', 60_000, 50);
    await redis(oldNode.ip, 6379, (r) => r.call('REPLICAOF', 'NO', 'ONE'));
    const claimedAt = Date.now();
    await waitFor(`${oldNode.name} demoted by Sentinel`, async () => {
      const r = await replication(oldNode.ip).catch(() => undefined);
      return r?.role === 'slave' && r.master_link_status === 'up';
    }, 60_000, 50);
    log(`run ${run}: ${oldNode.name} claimed role:master for ${Date.now() - claimedAt} ms until Sentinel demoted it`);
    await sleep(1000);
    for (const w of Object.values(writers)) await w.stop();

    const target = parseEndpoint(sw.to);
    const byMechanism = {} as RunResult['byMechanism'];
    for (const m of MECHANISMS) {
      const w = writers[m];
      const keys = w.acks.map((a) => w.key(a.seq));
      const lost = await countMissing(target, keys, { timeoutMs: 5000, auth: currentAuth().redis });
      await deleteKeys(target, keys, { timeoutMs: 5000, auth: currentAuth().redis });
      const meas = measureFailover(w.acks, { oldServer: old, newServer: sw.to, failedAtMs, switchAtMs: sw.atMs });
      byMechanism[m] = { switchMs: meas.switchMs, outageMs: meas.outageMs, lost, acked: w.acks.length, ackedByOldAfterSwitch: meas.ackedByOldAfterSwitch };
    }
    const fs = followerSwitches(cluster, logLine);
    return {
      r: { run, oldMaster: old, newMaster: sw.to, promotionMs: sw.atMs - failedAtMs, legacyPhaseMs: Math.round(legacyPhaseMs), byMechanism, followerAfterEventMs: fs.afterEventMs[0] },
      logLine: fs.lines,
    };
  } finally {
    for (const w of Object.values(writers)) await w.stop();
    links.close();
    const agent = cluster.agents.get(oldNode.name);
    agent?.child.kill('SIGCONT');
  }
}

function fmt(ms: number | undefined): string {
  return ms === undefined ? 'n/a' : ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${Math.round(ms)} ms`;
}

function ratio(a: number | undefined, b: number | undefined): string {
  return a === undefined || b === undefined || b <= 0 ? 'n/a' : `${(a / b).toFixed(1)}x`;
}

function summarize(results: RunResult[], args: Args): string {
  const rows = MECHANISMS.map((m) => {
    const sw = results.map((r) => r.byMechanism[m].switchMs).filter((x): x is number => x !== undefined);
    const out = results.map((r) => r.byMechanism[m].outageMs).filter((x): x is number => x !== undefined);
    const lost = results.reduce((n, r) => n + r.byMechanism[m].lost, 0);
    const acked = results.reduce((n, r) => n + r.byMechanism[m].acked, 0);
    const missed = results.length - sw.length;
    return { m, sw50: percentile(sw, 50), sw99: percentile(sw, 99), out50: percentile(out, 50), out99: percentile(out, 99), lost, acked, missed };
  });
  const kb = rows.find((r) => r.m === 'kb')!;
  const promo = results.map((r) => r.promotionMs);
  const follower = results.map((r) => r.followerAfterEventMs).filter((x): x is number => x !== undefined);
  const lines = [
    `${results.length} failovers (master container SIGKILLed, its agent frozen); Sentinel down-after-milliseconds 5000; legacy poll period ${args.pollPeriodMs / 1000} s at a random phase per failover.`,
    `Sentinel promotion (kill -> first +switch-master): p50 ${fmt(percentile(promo, 50))}, p99 ${fmt(percentile(promo, 99))}.`,
    '',
    '| mechanism | switch p50 | switch p99 | write outage p50 | write outage p99 | acked writes lost (all runs) | runs never switched |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.m} | ${fmt(r.sw50)} | ${fmt(r.sw99)} | ${fmt(r.out50)} | ${fmt(r.out99)} | ${r.lost} of ${r.acked} | ${r.missed} |`),
    '',
    '| ratio to kb | switch p50 | switch p99 | write outage p50 | write outage p99 |',
    '| --- | --- | --- | --- | --- |',
    ...rows.filter((r) => r.m !== 'kb').map((r) => `| ${r.m} / kb | ${ratio(r.sw50, kb.sw50)} | ${ratio(r.sw99, kb.sw99)} | ${ratio(r.out50, kb.out50)} | ${ratio(r.out99, kb.out99)} |`),
    '',
    `kb target: p99 switch <= 200 ms after +switch-master: ${kb.sw99 !== undefined && kb.sw99 <= 200 ? 'met' : 'NOT met'} (${fmt(kb.sw99)}).`,
    `kb's follower itself (event received -> Runtime API answered, from its log): p50 ${fmt(percentile(follower, 50))}, p99 ${fmt(percentile(follower, 99))}.`,
    '',
    'Per run (switch / outage / lost, ms):',
    '',
    '| run | old -> new master | promotion | legacy phase | kb | legacy | tcp-check |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...results.map((r) => `| ${r.run} | ${r.oldMaster} -> ${r.newMaster} | ${r.promotionMs} | ${r.legacyPhaseMs} | ${MECHANISMS.map((m) => {
      const x = r.byMechanism[m];
      return `${x.switchMs ?? 'n/a'} / ${x.outageMs ?? 'n/a'} / ${x.lost}`;
    }).join(' | ')} |`),
  ];
  return lines.join('\n');
}

function machine(cluster: Cluster): string {
  return [
    `- CPU: ${hostLine()}`,
    `- Node ${process.version}; Docker ${dockerVersion(cluster.tb.dockerHost)}`,
    `- Images built from Debian packages: ${firstLine('redis-server', ['--version'])}; ${firstLine('haproxy', ['-v'])}`,
    '- Everything on loopback addresses of one host (3 Redis + Sentinel nodes, 1 HAProxy node, kb coordinator and agents).',
  ].join('\n');
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const settings = `${FAST_REDIS_SETTINGS}haproxy:\n  bind: private\n`;
  const cluster = new Cluster({ nodes: HA_NODES, settings });
  const peers: Docker.Container[] = [];
  let poller: LegacyPoller | undefined;
  try {
    log(`starting kb (coordinator + ${HA_NODES.length} agents) in ${cluster.dir}`);
    useCredentials(cluster);
    await cluster.start();
    for (const module of ['redis', 'haproxy']) {
      const r = await cluster.kbctl(['rollout', module, '--min-healthy-time', '1s', '--healthy-deadline', '90s']);
      if (r.code !== 0) throw new Error(`rollout ${module} failed: ${r.stdout}\n${r.stderr}`);
    }
    const master = (await majorityMaster(REDIS_NODES))!;
    const peerDir = path.join(cluster.dir, 'peers');
    const legacy = await runPeer(cluster, 'kb-bench-legacy-haproxy', path.join(peerDir, 'legacy'), legacyConfig(master));
    const tcp = await runPeer(cluster, 'kb-bench-tcpcheck-haproxy', path.join(peerDir, 'tcp-check'), tcpCheckConfig(currentAuth().redis?.password));
    peers.push(legacy, tcp);
    poller = new LegacyPoller(legacy, path.join(peerDir, 'legacy'), args.pollPeriodMs, master);
    poller.rephase(Math.random() * args.pollPeriodMs);
    const results: RunResult[] = [];
    let logLine = 0;
    for (let run = 1; run <= args.runs; run++) {
      await waitFor('every node healthy', () => allHealthy(cluster), 120_000, 250).catch(async (err: unknown) => {
        throw new Error(`${String(err)}: ${(await failing(cluster)).join('; ')}`);
      });
      const { r, logLine: next } = await oneRun(run, cluster, poller, args, logLine);
      logLine = next;
      results.push(r);
    }
    const summary = summarize(results, args);
    const command = `KB_E2E_SUBNET=${process.env.KB_E2E_SUBNET ?? '127.0.1'} npm run bench -- redis-failover${args.runs !== 10 ? ` --runs ${args.runs}` : ''}${args.pollPeriodMs !== 15000 ? ` --poll-period ${args.pollPeriodMs}` : ''}`;
    process.stdout.write(`\n${summary}\n`);
    if (args.json) writeFileSync(args.json, JSON.stringify({ args, results }, null, 2));
    if (args.docs) {
      const file = writeBenchSection(repoRoot, 'redis-failover', command, machine(cluster), summary);
      log(`results written to ${file}`);
    }
  } finally {
    poller?.stop();
    for (const p of peers) await p.remove({ force: true }).catch(() => undefined);
    for (const a of cluster.agents.values()) a.child.kill('SIGCONT');
    await cluster.stop();
  }
}

main().then(() => process.exit(0), (err: unknown) => {
  process.stderr.write(`bench redis-failover: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
