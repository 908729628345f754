import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { CHANNEL_OPTIONS, kbV1 } from '../proto/index.js';
import type { AgentMessage, CoordinatorMessage, Hello } from '../proto/types.js';

/** Reconnect backoff: exponential from `baseMs` to `maxMs`, full jitter. */
export interface Backoff {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { baseMs: 250, maxMs: 10_000 };

/** Delay before attempt `n` (0-based): a uniformly random value in [base/2, min(max, base*2^n)]. */
export function backoffDelay(b: Backoff, attempt: number, random = Math.random): number {
  const cap = Math.min(b.maxMs, b.baseMs * 2 ** Math.min(attempt, 20));
  return Math.round(b.baseMs / 2 + random() * Math.max(0, cap - b.baseMs / 2));
}

export interface SessionOptions {
  /**
   * Coordinator addresses (HOST:PORT), tried in turn: the first one first, and after a
   * failed attempt or a lost session, the next one (replicas of one coordinator cluster).
   */
  coordinators: string[];
  /** Channel credentials, or a function called at each (re)connect (mTLS: reads the newest certificate). */
  credentials: grpc.ChannelCredentials | (() => grpc.ChannelCredentials);
  /** Builds the hello at each (re)connection: it carries what the agent holds now. */
  hello: () => Hello;
  onMessage: (msg: CoordinatorMessage) => void;
  onConnected: () => void;
  onDisconnected: (reason: string) => void;
  backoff?: Backoff;
  /** An attempt that gets no answer to its hello within this time moves on to the next address. Default 5000 ms. */
  openTimeoutMs?: number;
  log: Logger;
}

/**
 * The agent's side of the session, with reconnect.
 *
 *   idle ──start()──> connecting ──stream open──> connected ──stream ends──> backoff ──> connecting
 *                          │  (refused, unreachable or no answer in openTimeoutMs) ──> backoff ──┘
 *                                                                   stop() from any state ──> stopped
 *
 * Each new attempt after a failure or a lost session goes to the next address, so losing
 * one coordinator replica moves the agent to another after one backoff delay.
 * `send` drops messages while not connected (health and heartbeats are periodic, and
 * apply results are re-derivable from the next health report), and never throws.
 */
export class AgentSession {
  private call: grpc.ClientDuplexStream<AgentMessage, CoordinatorMessage> | undefined;
  private client: grpc.Client | undefined;
  private stopped = false;
  private attempt = 0;
  private index = 0;
  private timer: NodeJS.Timeout | undefined;
  connected = false;

  constructor(private readonly opts: SessionOptions) {}

  start(): void {
    this.connect();
  }

  send(msg: AgentMessage): boolean {
    if (!this.connected || !this.call) return false;
    try {
      this.call.write(msg);
      return true;
    } catch {
      return false;
    }
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.connected = false;
    try {
      this.call?.end();
      this.call?.cancel();
    } catch { /* already closed */ }
    this.client?.close();
  }

  private connect(): void {
    if (this.stopped) return;
    const address = this.opts.coordinators[this.index % this.opts.coordinators.length]!;
    const Ctor = kbV1().AgentService;
    this.client?.close();
    const creds = typeof this.opts.credentials === 'function' ? this.opts.credentials() : this.opts.credentials;
    this.client = new Ctor(address, creds, { ...CHANNEL_OPTIONS, 'grpc.initial_reconnect_backoff_ms': 200 });
    const call = (this.client as grpc.Client & { Session: () => grpc.ClientDuplexStream<AgentMessage, CoordinatorMessage> }).Session();
    this.call = call;
    let opened = false;
    let ended = false;
    const openTimer = setTimeout(() => {
      end(`no answer within ${this.opts.openTimeoutMs ?? 5000} ms`);
      try {
        call.cancel();
      } catch { /* already closed */ }
    }, this.opts.openTimeoutMs ?? 5000);
    const end = (reason: string) => {
      if (ended) return;
      ended = true;
      clearTimeout(openTimer);
      if (this.call === call) this.call = undefined;
      const was = this.connected;
      this.connected = false;
      if (was) this.opts.onDisconnected(reason);
      if (this.stopped) return;
      this.index++;
      const delay = backoffDelay(this.opts.backoff ?? DEFAULT_BACKOFF, this.attempt++);
      this.opts.log.warn({ coordinator: address, reason, retryInMs: delay }, 'session ended');
      this.timer = setTimeout(() => this.connect(), delay);
    };
    call.on('data', (msg: CoordinatorMessage) => {
      if (!opened) {
        opened = true;
        clearTimeout(openTimer);
        this.attempt = 0;
        this.connected = true;
        this.opts.log.info({ coordinator: address }, 'session open');
        this.opts.onConnected();
      }
      this.opts.onMessage(msg);
    });
    call.on('error', (err: grpc.ServiceError) => end(err.details || err.message));
    call.on('end', () => end('coordinator ended the stream'));
    call.on('status', (s: grpc.StatusObject) => { if (s.code !== grpc.status.OK) end(s.details); });
    // Hello goes first; the coordinator answers with settings, which marks the session open.
    call.write({ hello: this.opts.hello() });
  }
}
