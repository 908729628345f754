import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';
import { errorMessage } from '../../shared/errors/index.js';
import type { EtcdConnection } from '../store/etcd.js';

/**
 * When a lease holder may still trust its lease, computed from its own monotonic clock.
 *
 * etcd expires a lease TTL after the last keep-alive it *received*; that is never earlier
 * than TTL after the holder *sent* it. So the holder trusts its lease until
 * `sentAt(last acknowledged keep-alive) + trustFraction * TTL`: with the default 0.7 and a
 * 5 s TTL, a holder that hears nothing stops acting 1.5 s before etcd can expire the lease
 * and let another replica in. The margin covers clock-rate differences and the time
 * between a check and the action it guards; fenced writes (store/etcd.ts) cover the rest.
 *
 * Pure logic (times are passed in), so it is unit-tested without etcd.
 */
export class LeaseClock {
  private trustedUntil: number;
  private readonly pending: number[] = [];

  constructor(readonly ttlMs: number, readonly trustFraction = 0.7, grantSentAt: number) {
    this.trustedUntil = grantSentAt + ttlMs * trustFraction;
  }

  /** A keep-alive request was sent at `at`. */
  sent(at: number): void {
    this.pending.push(at);
  }

  /** The answer to the oldest unanswered keep-alive arrived (answers come in order on one stream). */
  acked(): void {
    const at = this.pending.shift();
    if (at !== undefined) this.trustedUntil = Math.max(this.trustedUntil, at + this.ttlMs * this.trustFraction);
  }

  /** Keep-alives sent on a stream that broke are never answered. */
  dropPending(): void {
    this.pending.length = 0;
  }

  /** Age of the oldest unanswered keep-alive at `now` (0 if none). */
  oldestPendingMs(now: number): number {
    return this.pending.length ? now - this.pending[0]! : 0;
  }

  valid(now: number): boolean {
    return now < this.trustedUntil;
  }

  /** How long the lease stays trusted from `now` (negative once lost). */
  remainingMs(now: number): number {
    return this.trustedUntil - now;
  }
}

export interface LeaseEvents {
  /** The lease is no longer trusted; the holder must stop acting on it at once. Emitted once. */
  lost: [reason: string];
}

/**
 * One etcd lease kept alive by this process.
 *
 *   grant() ──> alive ──(no acknowledged keep-alive for trustFraction*TTL,
 *                        etcd says TTL 0, or stop())──> lost   (final: grant a new one)
 *
 * Keep-alives go every TTL/10 on one stream to one etcd member (so the last acknowledged
 * one is at most TTL/10 old when etcd has trouble). A stream that breaks, or whose answer
 * is outstanding for 1.5 s (the member may be partitioned, or dead without a reset), is
 * replaced at once by a stream to the next member, so losing the
 * member (or the raft leader) costs one election, not several periods of retries on a
 * dead address. `valid()` is what every fenced write checks first.
 */
/** A keep-alive unanswered for this long means its stream (or member) is stuck: use the next member. */
const STALLED_AFTER_MS = 1500;

export class LeaseKeeper extends EventEmitter<LeaseEvents> {
  private readonly clock: LeaseClock;
  private stream: IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse> | undefined;
  private opening = false;
  private timer: NodeJS.Timeout | undefined;
  private nextRenewAt = 0;
  private lostReason: string | undefined;
  /** The member the keep-alive stream goes to (EtcdConnection.member); moves on when it fails. */
  private memberIdx: number;
  private lastOpenAt = -Infinity;
  readonly renewEveryMs: number;

  private constructor(private readonly conn: EtcdConnection, readonly id: string, readonly ttlMs: number, grantSentAt: number, private readonly log: Logger) {
    super();
    this.clock = new LeaseClock(ttlMs, 0.7, grantSentAt);
    this.renewEveryMs = Math.max(100, Math.floor(ttlMs / 10));
    this.memberIdx = Math.floor(Math.random() * Math.max(1, conn.target.hosts.length));
  }

  /**
   * Grants a lease of `ttlMs` (whole seconds, at least 2: etcd's minimum), in one attempt
   * (its trust window starts when the request is sent, so a slow grant is a short-lived
   * one). Call start() once the `lost` listener is attached.
   */
  static async grant(conn: EtcdConnection, ttlMs: number, log: Logger): Promise<LeaseKeeper> {
    const sentAt = performance.now();
    const res = await conn.call('lease', () => conn.client.leaseClient.leaseGrant({ TTL: Math.max(2, Math.round(ttlMs / 1000)) }), 0);
    return new LeaseKeeper(conn, res.ID, Number(res.TTL) * 1000, sentAt, log);
  }

  /** Starts the keep-alives. If the lease is no longer trusted already, `lost` is emitted now. */
  start(): void {
    this.tick();
  }

  /** The lease id as etcd prints it (hex). */
  get hexId(): string {
    return BigInt(this.id).toString(16);
  }

  valid(): boolean {
    return this.lostReason === undefined && this.clock.valid(performance.now());
  }

  get lost(): string | undefined {
    return this.lostReason;
  }

  /** Stops keeping the lease alive; with `revoke`, also deletes it in etcd (its keys vanish at once). */
  async stop(revoke: boolean): Promise<void> {
    this.markLost('stopped');
    if (revoke) {
      await this.conn.call('lease', () => this.conn.client.leaseClient.leaseRevoke({ ID: this.id }), 0).catch(() => undefined);
    }
  }

  private markLost(reason: string): void {
    if (this.lostReason !== undefined) return;
    this.lostReason = reason;
    clearTimeout(this.timer);
    this.closeStream();
    if (reason !== 'stopped') this.log.warn({ lease: this.hexId, reason }, 'lease lost');
    this.emit('lost', reason);
  }

  private tick(): void {
    if (this.lostReason !== undefined) return;
    const now = performance.now();
    if (!this.clock.valid(now)) {
      this.markLost(`no keep-alive acknowledged for ${Math.round(this.ttlMs * 0.7)} ms (lease TTL ${this.ttlMs} ms): etcd unreachable`);
      return;
    }
    if (now >= this.nextRenewAt && this.conn.cutOff()) {
      // Cut off (drill): nothing reaches etcd, so nothing is acknowledged either.
      this.nextRenewAt = now + this.renewEveryMs;
      this.closeStream();
    } else if (now >= this.nextRenewAt) {
      this.nextRenewAt = now + this.renewEveryMs;
      if (this.stream && this.clock.oldestPendingMs(now) > STALLED_AFTER_MS) {
        this.log.debug({ lease: this.hexId, member: this.conn.member(this.memberIdx).host }, 'keep-alive stream stalled; opening one to the next member');
        this.closeStream();
        this.memberIdx++;
      }
      if (this.stream) {
        this.clock.sent(now);
        try {
          this.stream.write({ ID: this.id });
        } catch {
          this.closeStream();
        }
      } else {
        this.openStream();
      }
    }
    // Wake up for the next renewal, or sooner to notice the trust deadline promptly.
    const wait = Math.min(this.nextRenewAt - now, Math.max(20, this.clock.remainingMs(now) + 1));
    this.timer = setTimeout(() => this.tick(), Math.max(1, wait));
  }

  /** After a broken stream: the next member, now (at most every 100 ms), not at the next period. */
  private moveOn(): void {
    this.memberIdx++;
    if (this.lostReason !== undefined) return;
    clearTimeout(this.timer);
    const wait = Math.max(0, this.lastOpenAt + 100 - performance.now());
    this.nextRenewAt = 0;
    this.timer = setTimeout(() => this.tick(), wait);
  }

  private openStream(): void {
    if (this.opening) return;
    this.opening = true;
    this.lastOpenAt = performance.now();
    const { client, host } = this.conn.member(this.memberIdx);
    client.leaseClient.leaseKeepAlive().then((stream) => {
      this.opening = false;
      if (this.lostReason !== undefined) {
        stream.end();
        return;
      }
      this.stream = stream;
      stream.on('data', (res: ILeaseKeepAliveResponse) => {
        if (this.stream !== stream) return;
        if (Number(res.TTL) <= 0) {
          this.markLost('etcd says the lease expired');
          return;
        }
        this.clock.acked();
      });
      const broken = (why: string) => {
        if (this.stream !== stream) return;
        this.log.debug({ lease: this.hexId, member: host, why }, 'keep-alive stream ended');
        this.closeStream();
        this.moveOn();
      };
      stream.on('error', (err: unknown) => broken(errorMessage(err)));
      stream.on('end', () => broken('end'));
      // First keep-alive on the new stream right away.
      this.clock.sent(performance.now());
      stream.write({ ID: this.id });
    }, (err: unknown) => {
      this.opening = false;
      this.log.debug({ lease: this.hexId, member: host, err: errorMessage(err) }, 'keep-alive stream not opened');
      this.moveOn();
    });
  }

  private closeStream(): void {
    const s = this.stream;
    this.stream = undefined;
    this.clock.dropPending();
    if (!s) return;
    try {
      s.end();
      (s as unknown as { cancel?: () => void }).cancel?.();
    } catch { /* already closed */ }
  }
}
