// Helpers for Redis HA end-to-end tests and the redis-failover benchmark: talk to the real
// Sentinels, Redis servers and HAProxy Runtime API of a Cluster started with HA_NODES.
import { existsSync, readFileSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import { CREDENTIALS_DIR, parseEnvFile } from '../../shared/credentials/index.js';
import type { RedisAuth } from '../../shared/redis/endpoint.js';
import { sentinelsNotReady } from '../../shared/redis/sentinel.js';
import type { Cluster, TestNode } from './cluster.js';

export const MASTER_NAME = 'kb-redis-master';

let credentialsFile: string | undefined;

/**
 * Makes every client of these helpers authenticate as an application on `node` would: with
 * the passwords of that node's redis.env, read at each connection (so a rotation is followed).
 */
export function useCredentials(cluster: Cluster, node = 'redis-01'): void {
  credentialsFile = path.join(cluster.hostRoot(node), CREDENTIALS_DIR, 'redis.env');
}

/** The current Redis and Sentinel credentials (none before useCredentials or before the first rollout). */
export function currentAuth(): { redis?: RedisAuth; sentinel?: RedisAuth } {
  if (!credentialsFile || !existsSync(credentialsFile)) return {};
  const vars = parseEnvFile(readFileSync(credentialsFile, 'utf8'), credentialsFile).vars;
  const a = (v: string | undefined) => (v ? { password: v } : undefined);
  return { redis: a(vars.get('REDIS_PASSWORD')), sentinel: a(vars.get('REDIS_SENTINEL_PASSWORD')) };
}

/**
 * A one-shot connection to host:port (no retries), closed after `fn`. Without `password`, ports
 * from 26000 up are Sentinels (their password from useCredentials' redis.env), others Redis.
 */
export async function redis<T>(host: string, port: number, fn: (r: Redis) => Promise<T>, timeoutMs = 2000, password?: string): Promise<T> {
  const auth = password !== undefined ? { password } : port >= 26000 ? currentAuth().sentinel : currentAuth().redis;
  const r = new Redis({
    host, port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: timeoutMs, commandTimeout: timeoutMs, enableOfflineQueue: false,
    ...(auth?.password ? { password: auth.password } : {}),
  });
  r.on('error', () => undefined);
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}

/** What one Sentinel says the master is ("ip:port"), or undefined. */
export async function sentinelSays(ip: string): Promise<string | undefined> {
  try {
    const a = await redis(ip, 26379, (r) => r.call('SENTINEL', 'get-master-addr-by-name', MASTER_NAME)) as string[] | null;
    return a ? `${a[0]}:${a[1]}` : undefined;
  } catch {
    return undefined;
  }
}

/** The master named by at least 2 of the 3 Sentinels. */
export async function majorityMaster(nodes: TestNode[]): Promise<string | undefined> {
  const votes = await Promise.all(nodes.filter((n) => n.role === 'redis').map((n) => sentinelSays(n.ip)));
  const count = new Map<string, number>();
  for (const v of votes) if (v) count.set(v, (count.get(v) ?? 0) + 1);
  return [...count].find(([, c]) => c >= 2)?.[0];
}

/** True when every Sentinel of `nodes` can fail the master over now (shared/redis/sentinel.ts failoverReadiness). */
export async function sentinelsReady(nodes: TestNode[]): Promise<boolean> {
  const redisNodes = nodes.filter((n) => n.role === 'redis');
  const want = { replicas: redisNodes.length - 1, sentinels: redisNodes.length - 1 };
  return !(await sentinelsNotReady(redisNodes.map((n) => ({ host: n.ip, port: 26379 })), MASTER_NAME, want, { timeoutMs: 2000, auth: currentAuth().sentinel }));
}

/** `INFO replication` of one Redis as a record. */
export async function replication(ip: string): Promise<Record<string, string>> {
  const text = await redis(ip, 6379, (r) => r.info('replication'));
  return Object.fromEntries(text.split(/\r?\n/).filter((l) => l.includes(':')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]));
}

/** SET through the proxy; returns the server that acknowledged it (CLIENT INFO laddr). */
export async function setThroughProxy(proxyIp: string, key: string, value: string, port = 6379): Promise<string> {
  return redis(proxyIp, port, async (r) => {
    const laddr = /laddr=(\S+)/.exec(String(await r.call('CLIENT', 'INFO')))?.[1] ?? '?';
    await r.set(key, value, 'EX', 600);
    return laddr;
  });
}

/** Path of an lb node's HAProxy Runtime API socket (under its host root). */
export function runtimeSocket(cluster: Cluster, node = 'haproxy-01'): string {
  return path.join(cluster.hostRoot(node), 'opt/keybuzz/haproxy/run/admin.sock');
}

/** Sends one Runtime API command. */
export function runtime(socket: string, cmd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ path: socket });
    let out = '';
    s.setEncoding('utf8');
    s.on('connect', () => s.write(`${cmd}\n`));
    s.on('data', (d: string) => { out += d; });
    s.on('end', () => resolve(out));
    s.on('error', reject);
    setTimeout(() => { s.destroy(); reject(new Error(`runtime API: no answer to ${cmd}`)); }, 2000).unref();
  });
}

/** be_redis_master/redis-master as HAProxy has it: "ip:port" when it takes traffic, "MAINT ip:port" otherwise. */
export async function haproxyServer(socket: string): Promise<string> {
  const text = await runtime(socket, 'show servers state be_redis_master');
  const lines = text.split('\n').filter((l) => l.trim() && !l.startsWith('#') && l.includes('be_redis_master'));
  const header = text.split('\n').find((l) => l.startsWith('#'))!.replace(/^#\s*/, '').split(/\s+/);
  const f = lines[0]!.trim().split(/\s+/);
  const addr = `${f[header.indexOf('srv_addr')]}:${f[header.indexOf('srv_port')]}`;
  const admin = Number(f[header.indexOf('srv_admin_state')]);
  return (admin & 0x3b) === 0 ? addr : `MAINT ${addr}`;
}

export interface Check { name: string; ok: boolean; observed: string }
export interface ModuleHealthView { module: string; revision: number; healthy: boolean; converged: boolean; checks: Check[] }

/** `kbctl -o json health`: node -> its modules' live health. */
export async function health(cluster: Cluster): Promise<Record<string, ModuleHealthView[]>> {
  const r = await cluster.kbctl(['-o', 'json', 'health']);
  const nodes = JSON.parse(r.stdout || '[]') as { node: string; connected: boolean; modules: ModuleHealthView[] }[];
  return Object.fromEntries(nodes.filter((n) => n.connected).map((n) => [n.node, n.modules]));
}

/** One check of one node's module, or undefined. */
export async function check(cluster: Cluster, node: string, module: string, name: string): Promise<Check | undefined> {
  return (await health(cluster))[node]?.find((m) => m.module === module)?.checks.find((c) => c.name === name);
}

/** True when every node reports healthy, converged modules (at least one each). */
export async function allHealthy(cluster: Cluster): Promise<boolean> {
  const h = await health(cluster);
  return cluster.nodes.every((n) => (h[n.name]?.length ?? 0) > 0 && h[n.name]!.every((m) => m.healthy && m.converged));
}

/** Failing checks, "node module/check: observed", for failure messages. */
export async function failing(cluster: Cluster): Promise<string[]> {
  const h = await health(cluster);
  return Object.entries(h).flatMap(([node, mods]) => mods.flatMap((m) => m.checks.filter((c) => !c.ok).map((c) => `${node} ${m.module}/${c.name}: ${c.observed}`)));
}
