/**
 * Talking to Redis Sentinels: who is the master, by what majority, and their events.
 *
 * The majority is always of the CONFIGURED Sentinels (3 in KeyBuzz, so 2 votes), never of
 * those that happen to answer: one Sentinel alone, stale or lying, can never decide.
 */
import type { Redis } from 'ioredis';
import { errorMessage } from '../errors/index.js';
import { redisClass } from './client.js';
import { authOptions, formatEndpoint, type Endpoint, type RedisAuth } from './endpoint.js';
import { withRedis } from './oneshot.js';

/** One Sentinel's answer to `SENTINEL get-master-addr-by-name`. */
export interface SentinelAnswer {
  /** "host:port" of the Sentinel. */
  sentinel: string;
  /** "ip:port" of the master it names; absent when it did not answer or knows no such master. */
  master?: string;
  /** Why there is no master (timeout, refused, "no such master"). */
  error?: string;
}

/** Votes of a set of Sentinel answers. */
export interface Tally {
  /** Configured Sentinels. */
  total: number;
  /** Votes needed: floor(total / 2) + 1. */
  needed: number;
  /** The master named by at least `needed` Sentinels, if any. */
  agreed?: string;
  /** Sentinels that named `agreed`. */
  agreedBy: string[];
  /** master -> Sentinels naming it. */
  votes: Map<string, string[]>;
  /** Sentinels that gave no master. */
  silent: string[];
}

/** Majority of `total` configured Sentinels over `answers` (pure). */
export function tally(answers: readonly SentinelAnswer[], total: number): Tally {
  const needed = Math.floor(total / 2) + 1;
  const votes = new Map<string, string[]>();
  const silent: string[] = [];
  for (const a of answers) {
    if (!a.master) {
      silent.push(a.sentinel);
      continue;
    }
    votes.set(a.master, [...(votes.get(a.master) ?? []), a.sentinel]);
  }
  let agreed: string | undefined;
  for (const [m, by] of votes) if (by.length >= needed) agreed = m;
  return { total, needed, agreed, agreedBy: agreed ? votes.get(agreed)! : [], votes, silent };
}

/** One line saying how the Sentinels voted, e.g. "127.0.2.2:6379 by 2/3 (127.0.2.3:26379: 127.0.2.3:6379)". */
export function describeTally(t: Tally): string {
  if (!t.agreed) {
    const parts = [...t.votes].map(([m, by]) => `${m} by ${by.join(',')}`);
    return `no master named by ${t.needed}/${t.total} sentinels (${[...parts, ...t.silent.map((s) => `${s}: no answer`)].join('; ') || 'no answers'})`;
  }
  const others = [...t.votes].filter(([m]) => m !== t.agreed).flatMap(([m, by]) => by.map((s) => `${s} says ${m}`));
  const dissent = [...others, ...t.silent.map((s) => `${s} silent`)];
  return `${t.agreed} agreed by ${t.agreedBy.length}/${t.total} sentinels${dissent.length ? ` (${dissent.join('; ')})` : ''}`;
}

function addrOf(reply: unknown): string | undefined {
  if (!Array.isArray(reply) || reply.length < 2) return undefined;
  return `${String(reply[0])}:${String(reply[1])}`;
}

/** Asks one Sentinel on a fresh connection. Never throws: failures come back as `error`. */
export async function askSentinel(s: Endpoint, masterName: string, opts: { timeoutMs: number; auth?: RedisAuth }): Promise<SentinelAnswer> {
  const sentinel = formatEndpoint(s);
  try {
    const reply = await withRedis(s, opts, (r) => r.call('SENTINEL', 'get-master-addr-by-name', masterName));
    const master = addrOf(reply);
    return master ? { sentinel, master } : { sentinel, error: `knows no master named ${masterName}` };
  } catch (err) {
    return { sentinel, error: errorMessage(err) };
  }
}

/** Asks every Sentinel in parallel on fresh connections (health checks, drills). */
export function askSentinels(sentinels: readonly Endpoint[], masterName: string, opts: { timeoutMs: number; auth?: RedisAuth }): Promise<SentinelAnswer[]> {
  return Promise.all(sentinels.map((s) => askSentinel(s, masterName, opts)));
}

/** `SENTINEL MASTER <name>` as a record (flags, num-other-sentinels, num-slaves, ip, port...). */
export async function sentinelMaster(s: Endpoint, masterName: string, opts: { timeoutMs: number; auth?: RedisAuth }): Promise<Record<string, string>> {
  return withRedis(s, opts, async (r) => flatToRecord(await r.call('SENTINEL', 'master', masterName)));
}

/**
 * What keeps a Sentinel from failing `masterName` over now, from its `SENTINEL REPLICAS` and
 * `SENTINEL SENTINELS` replies: fewer replicas than `want.replicas` flagged plain `slave`
 * with `master-link-status` ok, or fewer other Sentinels than `want.sentinels`. Sentinels
 * learn replicas from the master's INFO (every 10 s) and each other from hello messages
 * (every 2 s): right after a rollout a Sentinel may know neither, and a master that fails
 * then is not failed over ("no good replica") until twice the failover timeout. Undefined
 * when ready.
 */
export function failoverReadiness(replicasReply: unknown, sentinelsReply: unknown, want: { replicas: number; sentinels: number }): string | undefined {
  const replicas = Array.isArray(replicasReply) ? replicasReply.map(flatToRecord) : [];
  const good = replicas.filter((r) => r.flags === 'slave' && r['master-link-status'] === 'ok');
  const sentinels = Array.isArray(sentinelsReply) ? sentinelsReply.length : 0;
  const problems: string[] = [];
  if (good.length < want.replicas) {
    const others = replicas.filter((r) => !good.includes(r)).map((r) => `${r.ip}:${r.port} ${r.flags}, link ${r['master-link-status']}`);
    problems.push(`knows ${good.length} of ${want.replicas} replicas in sync${others.length ? ` (${others.join('; ')})` : ''}`);
  }
  if (sentinels < want.sentinels) problems.push(`knows ${sentinels} of ${want.sentinels} other Sentinels`);
  return problems.length ? problems.join(', ') : undefined;
}

/** failoverReadiness of every Sentinel (fresh connections): the problems by Sentinel, or undefined when all are ready. */
export async function sentinelsNotReady(sentinels: readonly Endpoint[], masterName: string, want: { replicas: number; sentinels: number }, opts: { timeoutMs: number; auth?: RedisAuth }): Promise<string | undefined> {
  const problems = await Promise.all(sentinels.map(async (s) => {
    try {
      const p = await withRedis(s, opts, async (r) => failoverReadiness(await r.call('SENTINEL', 'REPLICAS', masterName), await r.call('SENTINEL', 'SENTINELS', masterName), want));
      return p && `${formatEndpoint(s)} ${p}`;
    } catch (err) {
      return `${formatEndpoint(s)}: ${errorMessage(err)}`;
    }
  }));
  const found = problems.filter(Boolean);
  return found.length ? found.join('; ') : undefined;
}

/**
 * Asks every Sentinel (sentinelsNotReady) every `everyMs` until all are ready or `maxWaitMs`
 * has passed. Returns how long it waited and, when the wait ran out, what each Sentinel that
 * was not ready lacked at the last ask.
 */
export async function waitForFailoverReadiness(
  sentinels: readonly Endpoint[], masterName: string, want: { replicas: number; sentinels: number }, opts: { timeoutMs: number; auth?: RedisAuth; maxWaitMs: number; everyMs?: number },
): Promise<{ waitedMs: number; notReady?: string }> {
  const from = Date.now();
  for (;;) {
    const notReady = await sentinelsNotReady(sentinels, masterName, want, opts);
    const waitedMs = Date.now() - from;
    if (!notReady) return { waitedMs };
    if (waitedMs >= opts.maxWaitMs) return { waitedMs, notReady };
    await new Promise((r) => setTimeout(r, opts.everyMs ?? 500));
  }
}

/** [k1, v1, k2, v2, ...] -> { k1: v1, ... } */
export function flatToRecord(reply: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!Array.isArray(reply)) return out;
  for (let i = 0; i + 1 < reply.length; i += 2) out[String(reply[i])] = String(reply[i + 1]);
  return out;
}

/** A `+switch-master` message: "<name> <old-ip> <old-port> <new-ip> <new-port>". */
export interface SwitchMaster { name: string; from: string; to: string }

export function parseSwitchMaster(message: string): SwitchMaster | undefined {
  const p = message.trim().split(/\s+/);
  if (p.length !== 5) return undefined;
  return { name: p[0]!, from: `${p[1]}:${p[2]}`, to: `${p[3]}:${p[4]}` };
}

export interface SentinelLinkOptions {
  timeoutMs: number;
  auth?: RedisAuth;
  /** Reconnect delay grows from 50 ms to this. Default 1000 ms. */
  maxReconnectDelayMs?: number;
}

/**
 * Long-lived connections to a fixed set of Sentinels: one command connection and one
 * subscriber connection each. Connections reconnect by themselves (subscriptions are
 * restored); a command to a Sentinel that is not connected fails at once instead of
 * queueing, so a dead Sentinel never slows a decision down.
 *
 *   open ──close()──> closed
 *
 * ioredis is loaded lazily (./client.ts): await loadIoredis() before constructing.
 */
export class SentinelLinks {
  readonly endpoints: readonly Endpoint[];
  private readonly cmd: Redis[];
  private readonly sub: Redis[];
  private readonly subscribed: boolean[];
  private closed = false;

  /**
   * `channels`: Sentinel event channels to subscribe to on every Sentinel (e.g. "+switch-master");
   * `onEvent` receives each message with the Sentinel's "host:port" and the local receive time.
   */
  constructor(
    sentinels: readonly Endpoint[],
    private readonly opts: SentinelLinkOptions,
    channels: readonly string[] = [],
    onEvent?: (sentinel: string, channel: string, message: string, atMs: number) => void,
  ) {
    this.endpoints = sentinels;
    const Redis = redisClass();
    const retry = (n: number) => Math.min(50 * 2 ** Math.min(n, 10), opts.maxReconnectDelayMs ?? 1000);
    const base = (e: Endpoint) => ({
      host: e.host, port: e.port, connectTimeout: opts.timeoutMs, maxRetriesPerRequest: 0, retryStrategy: retry,
      enableReadyCheck: false, ...authOptions(opts.auth),
    });
    this.cmd = sentinels.map((e) => {
      const r = new Redis({ ...base(e), enableOfflineQueue: false, commandTimeout: opts.timeoutMs });
      r.on('error', () => undefined); // reconnects by itself; state is read from `status`
      return r;
    });
    this.subscribed = sentinels.map(() => false);
    this.sub = sentinels.map((e, i) => {
      const r = new Redis({ ...base(e), enableOfflineQueue: true, autoResubscribe: false }); // re-subscribed on 'ready' below
      r.on('error', () => undefined);
      r.on('close', () => { this.subscribed[i] = false; });
      if (channels.length) {
        r.on('ready', () => {
          r.subscribe(...channels).then(() => { this.subscribed[i] = true; }, () => { this.subscribed[i] = false; });
        });
        r.on('message', (channel: string, message: string) => onEvent?.(formatEndpoint(e), channel, message, Date.now()));
      }
      return r;
    });
  }

  /** How many Sentinels the subscriber connections currently listen to. */
  subscribedCount(): number {
    return this.subscribed.filter(Boolean).length;
  }

  /**
   * Asks every Sentinel for the master of `masterName` over the command connections.
   * With `early`, resolves as soon as a majority names the same master (the answers not in
   * yet are left out); otherwise waits for every answer or its timeout. Never throws.
   */
  ask(masterName: string, early = false): Promise<SentinelAnswer[]> {
    const total = this.endpoints.length;
    return new Promise((resolve) => {
      const answers: SentinelAnswer[] = [];
      let done = false;
      const finish = () => {
        if (done) return;
        done = true;
        resolve(answers);
      };
      this.cmd.forEach((r, i) => {
        const sentinel = formatEndpoint(this.endpoints[i]!);
        const q = r.status === 'ready'
          ? (r.call('SENTINEL', 'get-master-addr-by-name', masterName) as Promise<unknown>).then((reply): SentinelAnswer => {
            const master = addrOf(reply);
            return master ? { sentinel, master } : { sentinel, error: `knows no master named ${masterName}` };
          }, (err: unknown): SentinelAnswer => ({ sentinel, error: errorMessage(err) }))
          : Promise.resolve<SentinelAnswer>({ sentinel, error: `not connected (${r.status})` });
        void q.then((a) => {
          answers.push(a);
          if (answers.length === total || (early && tally(answers, total).agreed)) finish();
        });
      });
      if (total === 0) finish();
    });
  }

  /** Closes every connection. Safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const r of [...this.cmd, ...this.sub]) r.disconnect();
  }
}
