import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { redisSentinelCheck } from '../../agent/health/redis-ha.js';
import { REDIS_DEFAULTS, SENTINEL_START_SCRIPT, SENTINEL_TEMPLATE, sentinelId, sentinelTemplate, type RedisSettings } from '../../coordinator/modules/redis.js';
import type { Server } from '../../shared/inventory/index.js';
import { healthCheck } from '../../shared/plan/builders.js';
import { SUBNET } from '../helpers/cluster.js';
import { Proc, freePort, sleep, waitFor } from '../helpers/proc.js';
import { redis } from '../helpers/redis-ha.js';

// Sentinel ids (docs/adr/0024-sentinel-ids.md) on the real redis-server and redis-sentinel of
// the test bed, started by the redis-sentinel container's real start script (run by sh on the
// host, its /sentinel directory replaced by a temporary one): three Sentinels on three
// loopback addresses, one master Redis. The Sentinels require a password, which the script
// reads from a redis.env (KB_REDIS_ENV) as in the container.

const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-sentinel-ids-'));
const procs: Proc[] = [];
const NODES: Server[] = [1, 2, 3].map((i) => ({
  env: 'test', publicIp: '', hostname: `redis-0${i}`, privateIp: `${SUBNET}.${60 + i}`, fqdn: '', userSsh: '', pool: '', role: 'redis',
  subrole: i === 1 ? 'master' : 'replica', dockerStack: '', core: false, notes: '', line: i + 1,
}) as Server);
const MASTER = 'kb-redis-master';
const PASSWORD = `sentinel-${process.pid}`;
/** What the template's credentials part gives every Sentinel: its own password, and the others'. */
const AUTH_LINES = `requirepass ${PASSWORD}\nsentinel sentinel-pass ${PASSWORD}\n`;
const REDIS_ENV = path.join(dir, 'redis.env');

afterAll(async () => {
  await Promise.all(procs.map((p) => p.kill('SIGKILL')));
  rmSync(dir, { recursive: true, force: true });
});

/** A one-shot connection to node's Sentinel, with the Sentinels' password. */
const sentinel = <T>(node: Server, s: RedisSettings, fn: (r: Redis) => Promise<T>): Promise<T> => redis(node.privateIp, s.sentinel_port, fn, 1000, PASSWORD);

const sdir = (node: Server) => path.join(dir, node.hostname);
const myid = (node: Server, s: RedisSettings) => sentinel(node, s, (r) => r.call('SENTINEL', 'MYID') as Promise<string>);
const others = (node: Server, s: RedisSettings) => sentinel(node, s, async (r) => Number(Object.fromEntries(chunk(await r.call('SENTINEL', 'MASTER', MASTER) as string[]))['num-other-sentinels']));
const chunk = (a: string[]) => a.flatMap((x, i) => (i % 2 ? [] : [[x, a[i + 1]!] as [string, string]]));

/** Starts node's Sentinel the way its container does: the start script, then redis-server. */
function startSentinel(node: Server, s: RedisSettings): Proc {
  mkdirSync(sdir(node), { recursive: true });
  writeFileSync(path.join(sdir(node), SENTINEL_TEMPLATE), sentinelTemplate(node, NODES[0]!, s, NODES) + AUTH_LINES);
  const script = SENTINEL_START_SCRIPT.replace('cd /sentinel\n', `cd ${sdir(node)}\n`).replace('redis-server /sentinel/sentinel.conf', `redis-server ${sdir(node)}/sentinel.conf`);
  expect(script).not.toContain('/sentinel/');
  const p = new Proc(`sentinel-${node.hostname}`, '/bin/sh', ['-c', script], path.join(dir, `${node.hostname}.log`), { KB_REDIS_ENV: REDIS_ENV });
  procs.push(p);
  return p;
}

async function check(node: Server, s: RedisSettings) {
  return redisSentinelCheck({
    ctx: { node: node.hostname } as never, containers: [], timeoutMs: 1000,
    state: { module: 'redis', containers: [{ name: 'redis-sentinel', args: [], env: { REDIS_SENTINEL_PASSWORD: PASSWORD } }] } as never,
    check: healthCheck({ name: 'sentinels-agree', kind: 'redis-sentinel', host: node.privateIp, port: s.sentinel_port, sentinels: NODES.map((n) => `${n.privateIp}:${s.sentinel_port}`), masterName: MASTER, minSentinels: 3 }),
  });
}

describe('Sentinel ids', () => {
  it('Sentinels know each other from the start; one made before kb keeps its id; a rebuilt one takes its id back; a Sentinel outside the inventory fails the check', async () => {
    const s: RedisSettings = { ...REDIS_DEFAULTS, port: await freePort(), sentinel_port: await freePort(), sentinel_quorum: 2 };
    writeFileSync(REDIS_ENV, `REDIS_SENTINEL_PASSWORD=${PASSWORD}\n`, { mode: 0o600 });
    const [n1, n2, n3] = NODES as [Server, Server, Server];
    procs.push(new Proc('master', '/usr/bin/redis-server', ['--port', String(s.port), '--bind', n1.privateIp, '--save', '', '--appendonly', 'no', '--dir', dir], path.join(dir, 'master.log')));

    // redis-03's Sentinel predates kb's ids: its sentinel.conf has another id. It starts first,
    // alone, and keeps that id.
    const old = 'e'.repeat(40);
    mkdirSync(sdir(n3), { recursive: true });
    writeFileSync(path.join(sdir(n3), 'sentinel.conf'), `port ${s.sentinel_port}\nsentinel myid ${old}\n`);
    let p3 = startSentinel(n3, s);
    expect(await waitFor('redis-03 answering', () => myid(n3, s).catch(() => undefined), 10_000)).toBe(old);
    expect(p3.log()).toContain(`kb: Sentinel id ${old} (kept); 0 of 2 other Sentinels known from the start, 0 answered`);

    // redis-01 and redis-02 are new: their derived ids, each other by its derived id, redis-03 by the id it answered.
    const p1 = startSentinel(n1, s);
    const p2 = startSentinel(n2, s);
    for (const [node, p] of [[n1, p1], [n2, p2]] as const) {
      expect(await waitFor(`${node.hostname} answering`, () => myid(node, s).catch(() => undefined), 10_000)).toBe(sentinelId(node.hostname));
      // redis-03 was up, so it answered (with the password from redis.env); the other new one may have been.
      expect(p.log()).toMatch(new RegExp(`kb: Sentinel id ${sentinelId(node.hostname)} \\(derived from the hostname\\); 2 of 2 other Sentinels known from the start, [12] answered`));
      const conf = readFileSync(path.join(sdir(node), 'sentinel.conf'), 'utf8');
      const peer = node === n1 ? n2 : n1;
      expect(conf).toContain(`sentinel known-sentinel ${MASTER} ${peer.privateIp} ${s.sentinel_port} ${sentinelId(peer.hostname)}`);
      expect(conf).toContain(`sentinel known-sentinel ${MASTER} ${n3.privateIp} ${s.sentinel_port} ${old}`);
      expect(await others(node, s)).toBe(2);
    }
    // redis-03 learns the two from their hellos; then every check passes, each knowing exactly 3.
    await waitFor('redis-03 knows the others', async () => (await others(n3, s).catch(() => 0)) === 2, 15_000);
    for (const node of NODES) {
      const c = await waitFor(`${node.hostname} healthy`, async () => { const o = await check(node, s); return o.ok ? o : undefined; }, 10_000, 250);
      expect(c.observed).toBe(`3/3 sentinels name ${n1.privateIp}:${s.port}; local knows 3 sentinels`);
    }

    // redis-03 rebuilt (its directory lost): it asks the others and takes back the id they know it by.
    await p3.kill('SIGKILL');
    rmSync(sdir(n3), { recursive: true, force: true });
    p3 = startSentinel(n3, s);
    expect(await waitFor('rebuilt redis-03 answering', () => myid(n3, s).catch(() => undefined), 10_000)).toBe(old);
    expect(p3.log()).toContain(`kb: Sentinel id ${old} (known to the others by it); 2 of 2 other Sentinels known from the start, 2 answered`);
    await sleep(4500); // two hello periods: a stale entry would show by now
    for (const node of NODES) expect((await check(node, s)).observed).toBe(`3/3 sentinels name ${n1.privateIp}:${s.port}; local knows 3 sentinels`);

    // A Sentinel that comes back with another id at a known address (what a rebuilt node did
    // before kb named Sentinels): Redis replaces the entry, so a derived id written for a
    // Sentinel that turns out to have another one is not counted twice.
    await p3.kill('SIGKILL');
    const other = 'f'.repeat(40);
    writeFileSync(path.join(sdir(n3), 'sentinel.conf'), `port ${s.sentinel_port}\nsentinel myid ${other}\n`);
    rmSync(path.join(sdir(n3), '.kb-template.sha256'));
    p3 = startSentinel(n3, s);
    await waitFor('redis-01 knows redis-03 by its new id', () => sentinel(n1, s, async (r) => JSON.stringify(await r.call('SENTINEL', 'SENTINELS', MASTER)).includes(other)), 15_000, 250);
    for (const node of NODES) {
      const c = await waitFor(`${node.hostname} healthy`, async () => { const o = await check(node, s); return o.ok ? o : undefined; }, 10_000, 250);
      expect(c.observed).toBe(`3/3 sentinels name ${n1.privateIp}:${s.port}; local knows 3 sentinels`);
    }

    // A Sentinel outside the inventory (a removed node's, still running) monitoring the same
    // master counts in failover majorities: the check says so.
    const stray: Server = { ...n1, hostname: 'redis-04', privateIp: `${SUBNET}.64` };
    mkdirSync(sdir(stray), { recursive: true });
    writeFileSync(path.join(sdir(stray), 'sentinel.conf'), `port ${s.sentinel_port}\nbind ${stray.privateIp}\nsentinel announce-ip ${stray.privateIp}\nsentinel monitor ${MASTER} ${n1.privateIp} ${s.port} 2\n${AUTH_LINES}`);
    procs.push(new Proc('stray', '/usr/bin/redis-server', [path.join(sdir(stray), 'sentinel.conf'), '--sentinel'], path.join(dir, 'stray.log')));
    const extra = await waitFor('redis-01 sees the stray Sentinel', async () => { const o = await check(n1, s); return o.ok ? undefined : o; }, 15_000, 250);
    expect(extra.observed).toBe(`3/3 sentinels name ${n1.privateIp}:${s.port}; local knows 4 sentinels, more than the 3 of the inventory: the others count in failover majorities (SENTINEL SENTINELS ${MASTER} lists them; SENTINEL RESET ${MASTER} here, once they are stopped, forgets them)`);
  });
});
