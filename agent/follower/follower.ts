/**
 * The Redis master follower (docs/adr/0013-redis-master-follower.md).
 *
 * Keeps one HAProxy server (be_redis_master/redis-master) pointed at the Redis master that
 * a MAJORITY of the configured Sentinels names, and at nothing else:
 *
 *  - it listens to `+switch-master` on every Sentinel (the first one often comes from a
 *    Sentinel that is not the failover leader), and on each one for its master name
 *    re-evaluates at once, deciding as soon as a majority agrees;
 *  - every `reconcileIntervalMs` (and at start) it re-evaluates against every Sentinel,
 *    which heals a missed event, an HAProxy restart, or a follower that was down;
 *  - before switching it checks `ROLE` on the candidate (must be master), then sets the
 *    address, makes the server ready and shuts down the sessions still on the old address
 *    through the Runtime API, in one request; then it writes the server-state file HAProxy
 *    loads at every start, so a reload or restart keeps the new address;
 *  - split-brain guard: without a majority, or when the candidate does not say master, it
 *    changes nothing. A node that claims role:master on its own (an old master back from
 *    the dead) is never followed, because the Sentinels do not name it.
 *
 * Lifecycle:
 *
 *   starting ──first evaluation──> following <──> degraded
 *        \______________________________________________\──stop()──> stopped
 *
 * `following`: HAProxy routes to the agreed master. `degraded`: it could not confirm that
 * (no majority, candidate not master, HAProxy unreachable); HAProxy is left as it was.
 * Evaluations never overlap; triggers that arrive during one are coalesced into one more.
 */
import { readFile } from 'node:fs/promises';
import type { RedisMasterFollower } from '../../proto/types.js';
import { errorMessage } from '../../shared/errors/index.js';
import type { Logger } from '../../shared/log/index.js';
import { parseEndpoint, type RedisAuth } from '../../shared/redis/endpoint.js';
import { redisRole } from '../../shared/redis/oneshot.js';
import { SentinelLinks, describeTally, parseSwitchMaster, tally } from '../../shared/redis/sentinel.js';
import { writeFileAtomic } from '../reconcile/steps/files.js';
import { RuntimeApi, isReady, parseServersState, routedTo, type ServerState } from './runtime-api.js';

export type FollowerPhase = 'starting' | 'following' | 'degraded' | 'stopped';

/** The last switch the follower made. */
export interface FollowerSwitch {
  atMs: number;
  from: string;
  to: string;
  reason: string;
  /** From receiving the event that triggered it to the Runtime API answer (event-driven switches only). */
  afterEventMs?: number;
}

export interface FollowerStatus {
  phase: FollowerPhase;
  ok: boolean;
  /** One line for the module health, e.g. "be_redis_master/redis-master -> 127.0.2.2:6379 agreed by 3/3 sentinels". */
  observed: string;
  lastSwitch?: FollowerSwitch;
}

export interface FollowerDeps {
  /** Maps a host path of the spec (socket, state file) to the real path (hostRoot). */
  hostPath: (p: string) => string;
  log: Logger;
  /** Credentials of the Redis servers (ROLE) and of the Sentinels; none today (issue Credentials). */
  redisAuth?: RedisAuth;
  sentinelAuth?: RedisAuth;
}

/** Retries after an event that did not lead to a confirmed master yet: 10, 20, 40 ... 500 ms, for this long. */
const EVENT_RETRY_WINDOW_MS = 15_000;

export class MasterFollower {
  private phase: FollowerPhase = 'starting';
  private observed = 'starting';
  private lastSwitch: FollowerSwitch | undefined;
  private readonly links: SentinelLinks;
  private readonly api: RuntimeApi;
  private readonly stateFile: string;
  private readonly total: number;
  private timer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private pending: { reason: string; eventAtMs?: number; early: boolean } | undefined;
  private retry = { until: 0, delayMs: 10 };
  private lastLogged = '';

  constructor(readonly spec: RedisMasterFollower, private readonly deps: FollowerDeps) {
    const timeoutMs = spec.timeoutMs > 0 ? spec.timeoutMs : 500;
    this.total = spec.sentinels.length;
    this.api = new RuntimeApi(deps.hostPath(spec.runtimeSocket), timeoutMs);
    this.stateFile = deps.hostPath(spec.serverStateFile);
    this.links = new SentinelLinks(spec.sentinels.map(parseEndpoint), { timeoutMs, auth: deps.sentinelAuth }, ['+switch-master'], (sentinel, _channel, message, atMs) => {
      const sw = parseSwitchMaster(message);
      if (!sw || sw.name !== spec.masterName) return;
      deps.log.info({ sentinel, from: sw.from, to: sw.to }, `+switch-master ${spec.masterName} from sentinel ${sentinel}: ${sw.from} -> ${sw.to}`);
      this.retry = { until: atMs + EVENT_RETRY_WINDOW_MS, delayMs: 10 };
      this.trigger(`+switch-master from ${sentinel}`, atMs, true);
    });
  }

  start(): void {
    // HAProxy may be starting with us (same apply): retry quickly for a while, not only every interval.
    this.retry = { until: Date.now() + EVENT_RETRY_WINDOW_MS, delayMs: 50 };
    this.trigger('start', undefined, false);
    const every = this.spec.reconcileIntervalMs > 0 ? this.spec.reconcileIntervalMs : 2000;
    this.timer = setInterval(() => this.trigger('periodic', undefined, false), every);
  }

  async stop(): Promise<void> {
    this.phase = 'stopped';
    clearInterval(this.timer);
    clearTimeout(this.retryTimer);
    this.pending = undefined;
    this.links.close();
    await this.running;
  }

  status(): FollowerStatus {
    return { phase: this.phase, ok: this.phase === 'following', observed: this.observed, lastSwitch: this.lastSwitch };
  }

  /** Asks for an evaluation now (coalesced with one in progress). */
  trigger(reason: string, eventAtMs: number | undefined, early: boolean): void {
    if (this.phase === 'stopped') return;
    // An event-driven request wins over a periodic one waiting behind the running evaluation.
    if (!this.pending || eventAtMs !== undefined) this.pending = { reason, eventAtMs, early };
    if (this.running) return;
    this.running = this.drain().finally(() => { this.running = undefined; });
  }

  private async drain(): Promise<void> {
    while (this.pending && this.phase !== 'stopped') {
      const p = this.pending;
      this.pending = undefined;
      let settled = false;
      try {
        settled = await this.evaluate(p.reason, p.eventAtMs, p.early);
      } catch (err) {
        this.set('degraded', `evaluation failed: ${errorMessage(err)}`);
      }
      if (!settled && Date.now() < this.retry.until && !this.pending) {
        clearTimeout(this.retryTimer);
        const delay = this.retry.delayMs;
        this.retry.delayMs = Math.min(delay * 2, 500);
        this.retryTimer = setTimeout(() => this.trigger(`${p.reason} (retry)`, p.eventAtMs, p.early), delay);
      }
    }
  }

  /** One decision. Returns true when HAProxy routes to the agreed master. */
  private async evaluate(reason: string, eventAtMs: number | undefined, early: boolean): Promise<boolean> {
    const { spec } = this;
    const who = `${spec.backend}/${spec.server}`;
    const [answers, current] = await Promise.all([
      this.links.ask(spec.masterName, early),
      this.api.serverState(spec.backend, spec.server).then((s) => s, (err: unknown) => new Error(errorMessage(err))),
    ]);
    if (current instanceof Error) {
      this.set('degraded', `HAProxy not reachable: ${current.message}`);
      return false;
    }
    const now = describeServer(current);
    const t = tally(answers, this.total);
    if (!t.agreed) {
      this.set('degraded', `${who} stays ${now}: ${describeTally(t)}`);
      return false;
    }
    const want = t.agreed;
    if (!(isReady(current) && routedTo(current) === want)) {
      const target = parseEndpoint(want);
      const role = await redisRole(target, { timeoutMs: this.spec.timeoutMs > 0 ? this.spec.timeoutMs : 500, auth: this.deps.redisAuth })
        .catch((err: unknown) => `unreachable (${errorMessage(err)})`);
      if (role !== 'master') {
        this.set('degraded', `${who} stays ${now}: sentinels name ${want} but it answers ROLE ${role}`);
        return false;
      }
      await this.api.setServer(spec.backend, spec.server, target.host, target.port);
      const after = await this.api.serverState(spec.backend, spec.server);
      if (!(isReady(after) && routedTo(after) === want)) {
        this.set('degraded', `${who} did not take ${want}: now ${describeServer(after)}`);
        return false;
      }
      const sw: FollowerSwitch = { atMs: Date.now(), from: now, to: want, reason };
      if (eventAtMs !== undefined) sw.afterEventMs = sw.atMs - eventAtMs;
      this.lastSwitch = sw;
      this.deps.log.info({ backend: spec.backend, server: spec.server, from: now, to: want, reason, afterEventMs: sw.afterEventMs, votes: t.agreedBy.length, sentinels: this.total },
        `follower switched ${who} to ${want} (${reason}; ${t.agreedBy.length}/${this.total} sentinels${sw.afterEventMs !== undefined ? `; ${sw.afterEventMs} ms after the event` : ''})`);
    }
    await this.saveState();
    const subscribed = this.links.subscribedCount();
    const base = `${who} -> ${describeTally(t)}; listening to ${subscribed}/${this.total}`;
    if (subscribed < t.needed) {
      this.set('degraded', `${base}: fewer than ${t.needed} sentinels can deliver +switch-master`);
      return true;
    }
    this.set('following', base);
    return true;
  }

  /** Writes `show servers state <backend>` to the server-state file when the file says something else. */
  private async saveState(): Promise<void> {
    const { backend, server } = this.spec;
    const text = await this.api.showServersState(backend);
    const live = parseServersState(text, backend, server);
    if (!live) return;
    const onDisk = await readFile(this.stateFile, 'utf8').then((t) => parseServersState(t, backend, server), () => undefined);
    if (onDisk && routedTo(onDisk) === routedTo(live) && isReady(onDisk) === isReady(live)) return;
    await writeFileAtomic(this.stateFile, Buffer.from(text), 0o644);
  }

  private set(phase: FollowerPhase, observed: string): void {
    if (this.phase === 'stopped') return;
    this.phase = phase;
    this.observed = observed;
    const sig = `${phase}|${observed.replace(/\d+\/\d+ sentinels.*$/, '')}`;
    if (sig !== this.lastLogged) {
      this.lastLogged = sig;
      if (phase === 'degraded') this.deps.log.warn({ phase }, `follower: ${observed}`);
      else this.deps.log.info({ phase }, `follower: ${observed}`);
    }
  }
}

function describeServer(s: ServerState): string {
  return isReady(s) ? `on ${routedTo(s)}` : `disabled (address ${routedTo(s)})`;
}
