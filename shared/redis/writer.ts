/**
 * A client that writes continuously through a proxy and records, for every write, whether
 * it was acknowledged and BY WHICH SERVER: after each (re)connection it asks `CLIENT INFO`,
 * whose `laddr` is the Redis server's own address for that connection, so a write is
 * attributed to the master that acknowledged it, whatever the proxy did.
 *
 * Used by `kbctl drill redis-failover` (in the coordinator) and by bench/redis-failover.
 */
import { Redis } from 'ioredis';
import { errorMessage } from '../errors/index.js';
import { authOptions, type Endpoint, type RedisAuth } from './endpoint.js';
import { withRedis } from './oneshot.js';

export interface AckWriterOptions {
  /** Where to write (an HAProxy frontend). */
  proxy: Endpoint;
  auth?: RedisAuth;
  /** Every key is `${keyPrefix}${seq}`. */
  keyPrefix: string;
  /** One write every this many ms (writes are sequential: at most one outstanding). Default 5. */
  intervalMs?: number;
  /** Connect and command timeout; a write not acknowledged by then counts as failed. Default 1000. */
  timeoutMs?: number;
  /** Pause after a failure before reconnecting. Default 10. */
  reconnectDelayMs?: number;
  /** Keys expire after this many seconds, so an interrupted run leaves nothing behind for long. Default 3600. */
  ttlS?: number;
  /**
   * Open a new connection after this long (0: keep one connection as long as it works).
   * Short-lived clients are what a proxy balancing between two "masters" splits. Default 0.
   */
  reconnectEveryMs?: number;
  /** Called on each new connection with the server it reached. */
  onConnect?: (server: string, atMs: number) => void;
}

/** An acknowledged write. */
export interface Ack { seq: number; sentMs: number; ackMs: number; server: string }
/** A write that was not acknowledged (error or timeout): it may or may not have been applied. */
export interface WriteFailure { seq: number; atMs: number; error: string }

/**
 * Writes `SET <prefix><seq> <seq> EX ttl` one after the other until stopped.
 *
 *   idle ──start()──> writing ──stop()──> stopped
 *
 * `acks` and `failures` only grow, in time order. Never throws; failures are recorded.
 */
export class AckWriter {
  readonly acks: Ack[] = [];
  readonly failures: WriteFailure[] = [];
  private running = false;
  private loop: Promise<void> | undefined;
  private client: Redis | undefined;
  private server = '';
  private connectedAt = 0;
  private seq = 0;
  private readonly waiters = new Set<() => void>();

  constructor(private readonly opts: AckWriterOptions) {}

  key(seq: number): string {
    return `${this.opts.keyPrefix}${seq}`;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loop = this.run();
  }

  /** Stops after the write in flight (at most timeoutMs). */
  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
    this.client?.disconnect();
    this.client = undefined;
  }

  /** Resolves with the first ack (already recorded or future) matching `pred`, or undefined after `timeoutMs`. */
  async waitForAck(pred: (a: Ack) => boolean, timeoutMs: number): Promise<Ack | undefined> {
    const found = this.acks.find(pred);
    if (found) return found;
    return new Promise((resolve) => {
      let from = this.acks.length;
      const check = () => {
        for (; from < this.acks.length; from++) {
          const a = this.acks[from]!;
          if (pred(a)) {
            done(a);
            return;
          }
        }
      };
      const done = (a: Ack | undefined) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        resolve(a);
      };
      const timer = setTimeout(() => done(undefined), timeoutMs);
      this.waiters.add(check);
    });
  }

  private async run(): Promise<void> {
    const interval = this.opts.intervalMs ?? 5;
    const timeout = this.opts.timeoutMs ?? 1000;
    const ttl = this.opts.ttlS ?? 3600;
    while (this.running) {
      const started = Date.now();
      const every = this.opts.reconnectEveryMs ?? 0;
      if (this.client && every > 0 && started - this.connectedAt >= every) {
        this.client.disconnect();
        this.client = undefined;
      }
      if (!this.client) {
        try {
          await this.connect(timeout);
        } catch (err) {
          this.failures.push({ seq: 0, atMs: Date.now(), error: `connect: ${errorMessage(err)}` });
          await sleep(this.opts.reconnectDelayMs ?? 10);
          continue;
        }
      }
      const seq = ++this.seq;
      const sentMs = Date.now();
      try {
        await this.client!.set(this.key(seq), String(seq), 'EX', ttl);
        this.acks.push({ seq, sentMs, ackMs: Date.now(), server: this.server });
        for (const w of [...this.waiters]) w();
      } catch (err) {
        this.failures.push({ seq, atMs: Date.now(), error: errorMessage(err) });
        this.client?.disconnect();
        this.client = undefined;
        await sleep(this.opts.reconnectDelayMs ?? 10);
        continue;
      }
      const wait = interval - (Date.now() - started);
      if (wait > 0) await sleep(wait);
    }
  }

  private async connect(timeout: number): Promise<void> {
    const c = new Redis({
      host: this.opts.proxy.host, port: this.opts.proxy.port, lazyConnect: true, connectTimeout: timeout, commandTimeout: timeout,
      maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false, enableReadyCheck: false,
      ...authOptions(this.opts.auth),
    });
    c.on('error', () => undefined);
    try {
      await c.connect();
      const info = String(await c.call('CLIENT', 'INFO'));
      const laddr = /(?:^|\s)laddr=(\S+)/.exec(info)?.[1];
      if (!laddr) throw new Error(`CLIENT INFO has no laddr: ${info.slice(0, 80)}`);
      this.server = laddr;
      this.client = c;
      this.connectedAt = Date.now();
      this.opts.onConnect?.(laddr, Date.now());
    } catch (err) {
      c.disconnect();
      throw err;
    }
  }
}

/** How many of `keys` do not exist on `target` (EXISTS in batches on one connection). */
export async function countMissing(target: Endpoint, keys: readonly string[], opts: { timeoutMs: number; auth?: RedisAuth }): Promise<number> {
  return withRedis(target, opts, async (r) => {
    let missing = 0;
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const present = Number(await r.exists(...batch));
      missing += batch.length - present;
    }
    return missing;
  });
}

/** Deletes `keys` on `target` (UNLINK in batches). */
export async function deleteKeys(target: Endpoint, keys: readonly string[], opts: { timeoutMs: number; auth?: RedisAuth }): Promise<void> {
  await withRedis(target, opts, async (r) => {
    for (let i = 0; i < keys.length; i += 1000) await r.unlink(...keys.slice(i, i + 1000));
  });
}

/** What a failover looked like to a writer (pure; see measureFailover). */
export interface FailoverMeasures {
  /** Last write acknowledged by the old master before the first one acknowledged by the new master. */
  lastAckOld?: Ack;
  /** First write acknowledged by the new master after the failure. */
  firstAckNew?: Ack;
  /** firstAckNew - lastAckOld (ms): what a client saw as "writes do not work". */
  outageMs?: number;
  /** firstAckNew - switchAtMs (ms): from Sentinel's +switch-master to the proxy routing to the new master. */
  switchMs?: number;
  /** Writes acknowledged by the old master after the new master had acknowledged one (split brain seen by the client). */
  ackedByOldAfterSwitch: number;
}

/**
 * Measures a failover from a writer's acknowledgements: `oldServer`/`newServer` are the
 * masters' "ip:port"; `failedAtMs` when the old master was made to fail; `switchAtMs` when
 * the first `+switch-master` arrived (undefined if none).
 */
export function measureFailover(acks: readonly Ack[], p: { oldServer: string; newServer: string; failedAtMs: number; switchAtMs?: number }): FailoverMeasures {
  const firstAckNew = acks.find((a) => a.server === p.newServer && a.sentMs >= p.failedAtMs);
  let lastAckOld: Ack | undefined;
  for (const a of acks) {
    if (firstAckNew && a.seq >= firstAckNew.seq) break;
    if (a.server === p.oldServer) lastAckOld = a;
  }
  const ackedByOldAfterSwitch = firstAckNew ? acks.filter((a) => a.seq > firstAckNew.seq && a.server === p.oldServer).length : 0;
  return {
    lastAckOld,
    firstAckNew,
    outageMs: firstAckNew && lastAckOld ? firstAckNew.ackMs - lastAckOld.ackMs : undefined,
    switchMs: firstAckNew && p.switchAtMs !== undefined ? firstAckNew.ackMs - p.switchAtMs : undefined,
    ackedByOldAfterSwitch,
  };
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
