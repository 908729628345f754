import type { IKeyValue, Watcher } from 'etcd3';
import { performance } from 'node:perf_hooks';
import type { CoordinatorDrillRequest, CoordinatorDrillResponse, CoordinatorStatusResponse, ReplicaInfo } from '../../proto/types.js';
import { errorMessage } from '../../shared/errors/index.js';
import { KB_VERSION } from '../../shared/version.js';
import { RolloutEngine, RolloutError } from '../rollout/engine.js';
import { NotLeaderError, type CoordinatorRuntime, type RuntimeDeps } from '../runtime.js';
import { decodeRecord, encodeRecord } from '../store/codec.js';
import { DelegatingStore } from '../store/delegating.js';
import { EtcdConnection, EtcdStore, type EtcdTarget, type WriteGuard } from '../store/etcd.js';
import { FencedWriteError, StoreUnavailableError } from '../store/errors.js';
import type { NodeModuleRecord, NodeRecord, Store } from '../store/types.js';
import { ClusterView } from './cluster-view.js';
import { LeaseKeeper } from './lease.js';
import { KEYS, type AgentEventRecord, type LeaderRecord, type LiveSessionRecord, type ReplicaRecord } from './records.js';
import { Relay } from './relay.js';

export interface HaConfig {
  target: EtcdTarget;
  /** Lease TTL of the replica (and of its leadership). Default 5000 ms; etcd's minimum is 2 s. */
  leaseTtlMs: number;
  notReadyAfterMs: number;
}

/** How long to wait before joining again after an outage: 500 ms doubling up to 5 s. */
const REJOIN_MS = { base: 500, max: 5000 };

type Role = 'starting' | 'follower' | 'leader' | 'isolated' | 'stopped';

/** Everything that belongs to one membership (one lease); replaced as a whole after an outage. */
interface Membership {
  gen: number;
  conn: EtcdConnection;
  lease: LeaseKeeper;
  self: ReplicaRecord;
  /** This replica's writes (sessions, node health), fenced by its presence key. */
  store: EtcdStore;
  guard: WriteGuard;
  relay: Relay | undefined;
  watcher: Watcher | undefined;
}

/**
 * One coordinator replica of several, sharing their state in etcd (ADRs 0010-0012).
 *
 *   starting ──joined──> follower ──won the election──> leader
 *       ▲                  │  ▲                           │
 *       │                  │  └──── leader key changed ───┤
 *       │   (retry, 0.5-5 s)│                              │
 *       └──── isolated <───┴──── lease lost: etcd unreachable for 0.7 x TTL
 *   stop() from any state ──> stopped
 *
 *  - Joining grants a lease, registers `replicas/<id>` on it, loads a snapshot of the
 *    shared keys and watches them from that revision; agents may then connect here.
 *  - The election is one key, `leader`, created on the lease if absent; its create
 *    revision is the term. Only the leader has a rollout engine, and that engine's store
 *    is fenced by the term: a write lands only while the key still has that revision.
 *  - A replica whose lease is no longer trusted (LeaseKeeper: no keep-alive answer for
 *    0.7 x TTL) stops at once: engine stopped, agent sessions closed (agents go to
 *    another replica), every write refused; then it joins again with a new lease.
 *  - Any replica serves agents and kbctl reads; rollouts started on a follower are
 *    refused with the leader's address (NotLeaderError), which kbctl follows.
 */
export class HaRuntime implements CoordinatorRuntime {
  readonly store: Store;
  readonly directory: ClusterView;
  private role: Role = 'starting';
  private gen = 0;
  private member: Membership | undefined;
  private term: { revision: string; sinceMs: number; engine: RolloutEngine } | undefined;
  private leader: { record: LeaderRecord; createRevision: string } | undefined;
  /** Why the current outage began (kept until the replica has joined again), and the latest failed attempt. */
  private storeError = '';
  private storeErrorSinceMs = 0;
  private lastJoinError = '';
  private steppedDownMs = 0;
  private lastLeaderWriteRevision = 0;
  private refusedWrites = 0;
  private rejoinAttempt = 0;
  private rejoinTimer: NodeJS.Timeout | undefined;
  private wakeCampaign: (() => void) | undefined;
  private readonly startedMs = Date.now();
  /** `kbctl drill coordinator-failover --isolate`: until then, etcd is unreachable to this replica. */
  private cutOffUntilMs = 0;
  private cutOffReason = '';
  private readonly cutOff = (): string | undefined => (Date.now() < this.cutOffUntilMs ? this.cutOffReason : undefined);

  constructor(private readonly cfg: HaConfig, private readonly deps: RuntimeDeps) {
    this.directory = new ClusterView(deps.sessions, () => this.member?.self.id ?? '');
    this.store = new DelegatingStore(() => this.replicaStore());
  }

  private get log() {
    return this.deps.log;
  }

  private get name(): string {
    return this.deps.identity.name;
  }

  // ---- CoordinatorRuntime ----------------------------------------------------------------

  async start(): Promise<void> {
    await this.join();
  }

  async stop(): Promise<void> {
    this.role = 'stopped';
    this.gen++;
    clearTimeout(this.rejoinTimer);
    this.wakeCampaign?.();
    await this.stepDown('coordinator stopping');
    const m = this.member;
    this.member = undefined;
    if (m) await this.leave(m, true);
    this.directory.close();
  }

  engine(): RolloutEngine {
    if (this.role === 'leader' && this.term) return this.term.engine;
    if (this.role === 'isolated' || this.role === 'starting' || !this.member) {
      throw new StoreUnavailableError(`coordinator ${this.name} ${this.unavailableReason()}: rollouts are refused until etcd answers`);
    }
    if (this.leader && this.leader.record.id !== this.member.self.id) {
      throw new NotLeaderError(`coordinator ${this.name} is a follower; the leader is ${this.leader.record.name} at ${this.leader.record.address}`, this.leader.record.address);
    }
    throw new NotLeaderError(`coordinator ${this.name} is a follower and no leader is elected right now (election in progress); retry in a few seconds`, undefined);
  }

  refuseAgents(): string | undefined {
    if (this.role === 'follower' || this.role === 'leader') return undefined;
    return `coordinator ${this.name} ${this.unavailableReason()}; another coordinator replica will take this agent`;
  }

  async status(): Promise<CoordinatorStatusResponse> {
    const m = this.member;
    let replicas: ReplicaInfo[] = [];
    let listError = '';
    if (m) {
      try {
        const { kvs } = await m.conn.list(Buffer.concat([m.conn.key(...KEYS.replicas), Buffer.from('/')]), {}, 0);
        const leaderId = this.leader?.record.id;
        replicas = kvs.map((kv) => decodeRecord<ReplicaRecord>(kv.value.toString('utf8')))
          .map((r) => ({ id: r.id, name: r.name, address: r.address, leader: r.id === leaderId, startedMs: r.startedMs, pid: r.pid }))
          .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.startedMs - b.startedMs));
      } catch (err) {
        listError = errorMessage(err);
      }
    }
    // Read the role after the await: the replica may have been isolated meanwhile.
    const joined = this.role === 'leader' || this.role === 'follower';
    const storeOk = joined && !listError;
    const storeError = joined ? listError : this.unavailableReason();
    const l = this.leader?.record;
    return {
      id: m?.self.id ?? '', name: this.name, address: this.deps.identity.address, role: this.role, store: 'etcd',
      storeOk, storeError, leaderId: l?.id ?? '', leaderName: l?.name ?? '', leaderAddress: l?.address ?? '',
      term: Number(this.leader?.createRevision ?? 0), leaderSinceMs: this.term?.sinceMs ?? 0, steppedDownMs: this.steppedDownMs,
      lastLeaderWriteRevision: this.lastLeaderWriteRevision, refusedWrites: this.refusedWrites, leaseTtlMs: m?.lease.ttlMs ?? this.cfg.leaseTtlMs,
      pid: process.pid, replicas, version: KB_VERSION, sessions: this.deps.sessions.all().length,
    };
  }

  /**
   * `kill`: the leader kills its own process with SIGKILL 200 ms after answering (the
   * answer says when). Nothing runs in between: no lease revoke, no stream close; to the
   * rest of the cluster it is a crash.
   * `isolate`: from 200 ms after answering and for `isolateMs`, the leader can no longer
   * reach etcd, as in a network partition between it and etcd: no keep-alive is sent, every
   * etcd call fails, watch events are dropped. It keeps its agent sessions until its own
   * lease guard gives up (0.7 x TTL), then steps down, drops them and retries joining,
   * which succeeds once the isolation ends. Its gRPC port stays open throughout.
   * Both are refused unless this replica leads (and is the one the caller expects) and
   * another replica is alive to take over.
   */
  async drill(req: CoordinatorDrillRequest): Promise<CoordinatorDrillResponse> {
    if (req.action !== 'kill' && req.action !== 'isolate') throw new RolloutError(`unknown drill action "${req.action}" (known: kill, isolate)`);
    const isolateMs = Number(req.isolateMs ?? 0);
    if (req.action === 'isolate') {
      const ttl = this.member?.lease.ttlMs ?? this.cfg.leaseTtlMs;
      if (!(isolateMs > ttl && isolateMs <= 600_000)) throw new RolloutError(`isolate for ${isolateMs} ms: must be longer than the lease TTL (${ttl} ms), so that another replica takes over, and at most 10 min`);
    }
    const m = this.member;
    // Only the leader: engine() throws the follower's or the isolated replica's error.
    if (this.role !== 'leader' || !this.term || !m) this.engine();
    if (req.expectReplica && req.expectReplica !== m!.self.id) {
      throw new RolloutError(`coordinator ${this.name} is replica ${m!.self.id}, not ${req.expectReplica}: leadership changed, drill not started`);
    }
    const { kvs } = await m!.conn.list(Buffer.concat([m!.conn.key(...KEYS.replicas), Buffer.from('/')]));
    const others = kvs.map((kv) => decodeRecord<ReplicaRecord>(kv.value.toString('utf8'))).filter((r) => r.id !== m!.self.id);
    if (!others.length) throw new RolloutError(`no other coordinator replica is alive: killing the leader ${this.name} would leave no coordinator`);
    const killAtMs = Date.now() + 200;
    if (req.action === 'isolate') {
      this.cutOffReason = `isolated from etcd by kbctl drill coordinator-failover --isolate until ${new Date(killAtMs + isolateMs).toISOString()}`;
      this.log.warn({ term: this.term!.revision, atMs: killAtMs, isolateMs }, 'drill coordinator-failover: this leader cuts itself off from etcd in 200 ms');
      setTimeout(() => {
        this.cutOffUntilMs = killAtMs + isolateMs;
      }, killAtMs - Date.now());
      setTimeout(() => this.log.warn({}, 'drill coordinator-failover: isolation over, etcd reachable again'), killAtMs + isolateMs - Date.now());
    } else {
      this.log.warn({ term: this.term!.revision, killAtMs }, 'drill coordinator-failover: this leader kills itself with SIGKILL in 200 ms');
      setTimeout(() => process.kill(process.pid, 'SIGKILL'), killAtMs - Date.now());
    }
    return { id: m!.self.id, name: this.name, address: this.deps.identity.address, pid: process.pid, killAtMs, term: Number(this.term!.revision) };
  }

  // ---- membership --------------------------------------------------------------------------

  private unavailableReason(): string {
    if (this.role === 'starting' && !this.storeError) return 'is joining the cluster';
    const since = this.storeErrorSinceMs ? ` since ${new Date(this.storeErrorSinceMs).toISOString()}` : '';
    const last = this.lastJoinError && this.lastJoinError !== this.storeError ? ` (last attempt: ${this.lastJoinError})` : '';
    return `cannot reach etcd (${this.cfg.target.hosts.join(',')})${since}: ${this.storeError || 'not connected yet'}${last}`;
  }

  private replicaStore(): Store {
    const m = this.member;
    if (!m || (this.role !== 'leader' && this.role !== 'follower')) throw new StoreUnavailableError(`coordinator ${this.name} ${this.unavailableReason()}`);
    return m.store;
  }

  private noteStoreError(reason: string): void {
    if (!this.storeError) {
      this.storeErrorSinceMs = Date.now();
      this.storeError = reason;
    }
    this.lastJoinError = reason;
  }

  /** Grants a lease, registers, loads the shared state, watches it, then campaigns. On failure: isolated, retried later. */
  private async join(): Promise<void> {
    const gen = ++this.gen;
    const conn = new EtcdConnection(this.cfg.target, { cutOff: this.cutOff });
    let lease: LeaseKeeper | undefined;
    let m: Membership | undefined;
    try {
      lease = await LeaseKeeper.grant(conn, this.cfg.leaseTtlMs, this.log);
      const theLease = lease;
      lease.on('lost', (reason) => this.isolate(gen, reason));
      lease.start();
      if (!lease.valid()) throw new StoreUnavailableError(`lease granted too late to be trusted: ${lease.lost ?? 'expired'}`);
      const self: ReplicaRecord = { id: lease.hexId, name: this.name, address: this.deps.identity.address, pid: process.pid, startedMs: this.startedMs, version: KB_VERSION };
      const presenceKey = conn.key(...KEYS.replicas, self.id);
      const reg = await conn.txn({
        compare: [{ key: presenceKey, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key: presenceKey, value: Buffer.from(encodeRecord(self)), lease: lease.id } }],
      });
      if (!reg.succeeded) throw new StoreUnavailableError(`replica key ${presenceKey.toString()} already exists`);
      const presenceRevision = reg.revision;
      const guard: WriteGuard = {
        fence: () => {
          if (!theLease.valid() || this.member?.gen !== gen) throw new FencedWriteError(`coordinator ${this.name} lost its etcd lease: write not attempted`);
          return { key: presenceKey, createRevision: presenceRevision };
        },
        describe: () => `replica ${this.name} (${self.id})`,
        onRefused: () => { this.refusedWrites++; },
      };
      m = { gen, conn, lease, self, store: new EtcdStore(conn, guard), guard, relay: undefined, watcher: undefined };
      const revision = await this.loadSnapshot(m);
      if (gen !== this.gen) {
        await this.leave(m, true);
        return;
      }
      m.watcher = await conn.client.watch().prefix(this.cfg.target.prefix).withPreviousKV().startRevision(String(Number(revision) + 1)).create();
      m.watcher.on('put', (kv, prev) => this.onWatch('put', gen, kv, prev));
      m.watcher.on('delete', (kv, prev) => this.onWatch('delete', gen, kv, prev));
      m.watcher.on('error', (err) => this.isolate(gen, `watch failed: ${errorMessage(err)}`));
      if (gen !== this.gen) {
        await this.leave(m, true);
        return;
      }
      if (!lease.valid()) throw new StoreUnavailableError(`lease lost while joining: ${lease.lost ?? 'expired'}`);
      this.member = m;
      m.relay = new Relay({
        conn, local: this.deps.sessions, store: m.store, guard, leaseId: lease.id, self, log: this.log, notReadyAfterMs: this.cfg.notReadyAfterMs,
        message: this.deps.secrets ? (state) => this.deps.secrets!.desiredMessage(state) : undefined,
      });
      m.relay.start();
      this.role = 'follower';
      this.storeError = '';
      this.storeErrorSinceMs = 0;
      this.lastJoinError = '';
      this.rejoinAttempt = 0;
      this.log.info({ replica: self.id, lease: lease.hexId, ttlMs: lease.ttlMs, etcd: this.cfg.target.hosts }, 'joined the coordinator cluster as a follower');
      void this.campaign(gen);
    } catch (err) {
      if (m) await this.leave(m, true);
      else {
        lease?.removeAllListeners('lost');
        await lease?.stop(true);
        conn.close();
      }
      if (gen !== this.gen) return;
      this.noteStoreError(errorMessage(err));
      this.role = 'isolated';
      this.log.warn({ err: errorMessage(err) }, 'cannot join the coordinator cluster: etcd unreachable');
      this.scheduleJoin();
    }
  }

  /** Loads the shared keys the directory and the election need, at one revision; returns it. */
  private async loadSnapshot(m: Membership): Promise<string> {
    const { conn } = m;
    const under = (...parts: string[]) => Buffer.concat([conn.key(...parts), Buffer.from('/')]);
    const first = await conn.list(under(...KEYS.liveSessions));
    const at = { revision: first.revision };
    const [agentEvents, nodeModules, nodes, leader] = await Promise.all([
      conn.list(under(...KEYS.agentEvents), at),
      conn.list(under('node-modules'), at),
      conn.list(under('nodes'), at),
      conn.list(conn.key(...KEYS.leader), at).then((r) => r.kvs.filter((kv) => kv.key.equals(conn.key(...KEYS.leader)))),
    ]);
    void agentEvents;
    this.directory.clear();
    for (const kv of nodes.kvs) this.directory.putNode(decodeRecord<NodeRecord>(kv.value.toString('utf8')));
    for (const kv of nodeModules.kvs) this.directory.putNodeModule(decodeRecord<NodeModuleRecord>(kv.value.toString('utf8')));
    for (const kv of first.kvs) this.directory.putSession(decodeRecord<LiveSessionRecord>(kv.value.toString('utf8')));
    this.leader = leader[0] ? { record: decodeRecord<LeaderRecord>(leader[0].value.toString('utf8')), createRevision: leader[0].create_revision } : undefined;
    return first.revision;
  }

  /** Ends a membership: stops publishing and watching, closes the connection (revoking the lease if asked). */
  private async leave(m: Membership, revoke: boolean): Promise<void> {
    m.relay?.stop();
    m.lease.removeAllListeners('lost');
    // A watch on a dead stream never confirms its cancel: wait a second at most.
    await Promise.race([m.watcher?.cancel().catch(() => undefined), new Promise((r) => setTimeout(r, 1000))]);
    await m.lease.stop(revoke);
    m.conn.close();
  }

  /**
   * The lease is no longer trusted (or the watch broke): stop acting now, drop the agents
   * (they reconnect to another replica), then join again with a new lease.
   */
  private isolate(gen: number, reason: string): void {
    if (gen !== this.gen || this.role === 'stopped') return;
    this.gen++;
    const m = this.member;
    this.member = undefined;
    m?.relay?.stop();
    this.noteStoreError(reason);
    const wasLeader = Boolean(this.term);
    void this.stepDown(`lost the etcd lease: ${reason}`);
    this.role = 'isolated';
    this.wakeCampaign?.();
    const sessions = this.deps.sessions.all();
    for (const s of sessions) s.close(`coordinator ${this.name} lost etcd: ${reason}`);
    this.directory.clear();
    this.log.error({ reason, wasLeader, agentsDropped: sessions.length }, 'isolated from etcd: not acting as leader, agent sessions closed; joining again when etcd answers');
    if (m) void this.leave(m, false);
    this.scheduleJoin();
  }

  private scheduleJoin(): void {
    if (this.role === 'stopped') return;
    clearTimeout(this.rejoinTimer);
    const delay = Math.min(REJOIN_MS.max, REJOIN_MS.base * 2 ** this.rejoinAttempt++);
    this.rejoinTimer = setTimeout(() => void this.join(), delay);
  }

  // ---- election ---------------------------------------------------------------------------

  private async campaign(gen: number): Promise<void> {
    while (gen === this.gen && this.role === 'follower' && this.member) {
      const m = this.member;
      const key = m.conn.key(...KEYS.leader);
      try {
        const rec: LeaderRecord = { ...m.self, sinceMs: Date.now() };
        const res = await m.conn.txn({
          compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
          success: [{ request_put: { key, value: Buffer.from(encodeRecord(rec)), lease: m.lease.id } }],
          failure: [{ request_range: { key } }],
        }, m.guard);
        if (gen !== this.gen || this.role !== 'follower') return;
        if (res.succeeded) return this.becomeLeader(m, res.revision, rec);
        const holder = res.responses[0]?.response_range?.kvs[0];
        if (holder && holder.lease === m.lease.id) {
          // Our own create, landed by an earlier attempt whose answer was lost.
          return this.becomeLeader(m, holder.create_revision, decodeRecord<LeaderRecord>(holder.value.toString('utf8')));
        }
        if (holder) this.leader = { record: decodeRecord<LeaderRecord>(holder.value.toString('utf8')), createRevision: holder.create_revision };
      } catch (err) {
        if (gen !== this.gen) return;
        this.log.warn({ err: errorMessage(err) }, 'campaign attempt failed');
      }
      // Wait for the leader key to go (watch), re-checking now and then.
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 2000);
        this.wakeCampaign = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wakeCampaign = undefined;
    }
  }

  private becomeLeader(m: Membership, revision: string, rec: LeaderRecord): void {
    const leaderKey = m.conn.key(...KEYS.leader);
    this.leader = { record: rec, createRevision: revision };
    const guard: WriteGuard = {
      fence: () => {
        if (this.term?.revision !== revision || !m.lease.valid()) throw new FencedWriteError(`coordinator ${this.name} stopped acting as leader of term ${revision}: write not attempted`);
        return { key: leaderKey, createRevision: revision };
      },
      describe: () => `leader ${this.name} (term ${revision})`,
      onLanded: (r) => { this.lastLeaderWriteRevision = Math.max(this.lastLeaderWriteRevision, r); },
      onRefused: () => { this.refusedWrites++; },
    };
    const engine = new RolloutEngine({
      store: new EtcdStore(m.conn, guard), sessions: this.directory, resolver: this.deps.resolver, log: this.log, inputs: this.deps.inputs, secrets: this.deps.secrets,
      deliver: () => undefined,
      resumeReason: `under leader ${this.name} (term ${revision})`,
    });
    this.term = { revision, sinceMs: Date.now(), engine };
    this.role = 'leader';
    const t0 = performance.now();
    this.log.info({ term: revision, replica: m.self.id }, 'became leader');
    const resume = (attempt: number): void => {
      if (this.term?.engine !== engine) return;
      engine.resumeAll().then(
        () => {
          this.log.info({ term: revision, ms: Math.round(performance.now() - t0) }, 'leader resumed running rollouts');
          this.deps.afterResume?.().catch((err: unknown) => this.log.warn({ err: errorMessage(err) }, 'resuming rotations failed'));
        },
        (err: unknown) => {
          if (this.term?.engine !== engine || err instanceof FencedWriteError) return;
          this.log.warn({ err: errorMessage(err), attempt }, 'resuming rollouts failed; retrying');
          setTimeout(() => resume(attempt + 1), 1000);
        },
      );
    };
    resume(0);
  }

  /** Stops acting as leader (if this replica is): no engine, no leader writes. */
  private async stepDown(reason: string): Promise<void> {
    const t = this.term;
    if (!t) return;
    this.term = undefined;
    this.steppedDownMs = Date.now();
    if (this.role === 'leader') this.role = 'follower';
    this.log.warn({ term: t.revision, reason, ledMs: this.steppedDownMs - t.sinceMs }, 'stepped down: stopped acting as leader');
    await t.engine.stop();
  }

  // ---- watch --------------------------------------------------------------------------------

  private onWatch(type: 'put' | 'delete', gen: number, kv: IKeyValue, prev: IKeyValue | undefined): void {
    const m = this.member;
    if (gen !== this.gen || !m || this.cutOff()) return;
    const parts = kv.key.toString('utf8').slice(this.cfg.target.prefix.length).split('/').map(decodeURIComponent);
    const value = <T>() => decodeRecord<T>(kv.value.toString('utf8'));
    try {
      switch (parts[0]) {
        case 'leader':
          return this.onLeaderKey(type, gen, kv);
        case 'live':
          if (parts[1] === 'sessions' && parts.length === 4) {
            if (type === 'put') this.directory.putSession(value<LiveSessionRecord>());
            else this.directory.deleteSession(parts[2]!, parts[3]!);
          } else if (parts[1] === 'agent-events' && type === 'put') {
            this.directory.agentEvent(value<AgentEventRecord>());
          }
          return;
        case 'node-modules':
          if (type === 'put') this.directory.putNodeModule(value<NodeModuleRecord>());
          else if (parts.length === 3) this.directory.deleteNodeModule(parts[1]!, parts[2]!);
          return;
        case 'nodes':
          if (type === 'put') this.directory.putNode(value<NodeRecord>());
          return;
        case 'assignments':
          if (type === 'put') m.relay?.onAssignment(kv, prev);
          return;
        default:
      }
    } catch (err) {
      this.log.error({ key: kv.key.toString('utf8'), err: errorMessage(err) }, 'unreadable record in etcd');
    }
  }

  private onLeaderKey(type: 'put' | 'delete', gen: number, kv: IKeyValue): void {
    if (type === 'put') {
      this.leader = { record: decodeRecord<LeaderRecord>(kv.value.toString('utf8')), createRevision: kv.create_revision };
      if (this.term && this.term.revision !== kv.create_revision) void this.stepDown(`another replica leads now (term ${kv.create_revision})`);
      return;
    }
    this.leader = undefined;
    if (this.term) {
      void this.stepDown('the leader key was deleted (lease expired or revoked)').then(() => {
        if (gen === this.gen && this.role === 'follower') void this.campaign(gen);
      });
      return;
    }
    this.wakeCampaign?.();
  }
}

