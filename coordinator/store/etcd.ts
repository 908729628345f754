import { randomBytes } from 'node:crypto';
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, retry } from 'cockatiel';
import {
  Etcd3, GRPCFailedPreconditionError, GRPCInvalidArgumentError, GRPCResourceExhastedError, isRecoverableError,
  type ICompare, type IKeyValue, type IOptions, type IRangeRequest, type IRequestOp, type IResponseOp,
} from 'etcd3';
import { KbError, errorMessage } from '../../shared/errors/index.js';
import { decodeRecord, decodeRevision, encodePlain, encodeRevision, withHealthyMark } from './codec.js';
import { FencedWriteError, RevisionExistsError, StoreUnavailableError } from './errors.js';
import type {
  AssignmentRecord, EventRecord, NodeIdentityRecord, NodeModuleRecord, NodeRecord, RevisionRecord, RolloutRecord, RolloutState, SecretStateRecord,
  SecretVersionRecord, Store, TokenRecord,
} from './types.js';

/** Where the store lives: etcd endpoints and the key prefix every kb key starts with. */
export interface EtcdTarget {
  /** `host:port` of each etcd member (client URL). */
  hosts: string[];
  /** Key prefix, ending with '/'. Default '/kb/'. */
  prefix: string;
  /** `etcds://`: TLS to every member, checked against `ca`; with a client certificate when etcd asks for one (--client-cert-auth). */
  tls?: EtcdTls;
}

export interface EtcdTls {
  /** PEM of the CA(s) etcd's serving certificates chain to. */
  ca: Buffer;
  /** PEM client certificate and key (both or neither). */
  cert?: Buffer;
  key?: Buffer;
}

/**
 * Parses `etcd://host:port,host:port[/prefix]` (plain) or `etcds://...` (TLS; `secure` is
 * true and the caller adds `tls`). Throws KbError naming what is wrong.
 */
export function parseEtcdUrl(url: string): Omit<EtcdTarget, 'tls'> & { secure?: true } {
  const m = /^etcd(s?):\/\/([^/]+)(\/.*)?$/.exec(url.trim());
  if (!m) throw new KbError(`--store ${url}: expected etcd://HOST:PORT[,HOST:PORT...][/PREFIX] (or etcds:// for TLS)`);
  const [, s, hostList, path] = m;
  const secure = s === 's';
  const hosts = hostList!.split(',').map((h) => h.trim()).filter(Boolean);
  for (const h of hosts) {
    if (!/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(h)) throw new KbError(`--store ${url}: "${h}" is not HOST:PORT`);
  }
  if (!hosts.length) throw new KbError(`--store ${url}: no etcd endpoint`);
  let prefix = path && path !== '/' ? path : '/kb';
  if (!prefix.endsWith('/')) prefix += '/';
  return secure ? { hosts, prefix, secure } : { hosts, prefix };
}

/**
 * Decides whether a writer may still write, and fences its writes in etcd: every guarded
 * write is a transaction that succeeds only if `fence().key` still has create revision
 * `fence().createRevision` (the key is bound to the writer's lease, so it disappears when
 * the lease expires, and a new holder creates it again at a new revision).
 */
export interface WriteGuard {
  /** The fencing key and revision. Throws FencedWriteError when the writer already knows it lost its right. */
  fence(): { key: Buffer; createRevision: string };
  /** The writer, for messages: "leader term 1234 (install-01)". */
  describe(): string;
  /** Called with the etcd revision of every guarded write that landed. */
  onLanded?(revision: number): void;
  /** Called when etcd refused a guarded write (the fence compare failed). */
  onRefused?(): void;
}

export interface TxnResult {
  succeeded: boolean;
  /** Responses of the caller's own ops (the guard's check is removed). */
  responses: IResponseOp[];
  revision: string;
}

/** Deadline of each unary etcd call attempt. */
export const ETCD_CALL_TIMEOUT_MS = 2000;

/**
 * How long a call keeps being retried while etcd is unavailable. An etcd leader election
 * (one member lost) makes every member refuse or stall requests for one to three
 * seconds; riding through it here keeps it invisible to rollouts and agents.
 */
export const ETCD_RETRY_FOR_MS = 6000;

/**
 * One etcd client (three-member cluster, failover between members) plus the few raw
 * operations kb needs: ranges, guarded transactions, watches. Errors are mapped to
 * StoreUnavailableError (cannot reach a quorum) or KbError (a request etcd rejects).
 * close() is final: reconnecting after an outage means a new connection.
 */
export class EtcdConnection {
  readonly client: Etcd3;
  private closed = false;

  /**
   * `callTimeoutMs`: deadline of each unary call (default ETCD_CALL_TIMEOUT_MS).
   * `keepaliveMs`: HTTP/2 ping period that finds a silently dead member (default 5000 ms,
   * answer within 2000 ms), so a watch or keep-alive stream moves to another member.
   */
  private readonly retryForMs: number;

  /**
   * `cutOff`: when it returns a reason, this connection behaves as if etcd were unreachable
   * (every call fails with StoreUnavailableError, keep-alives are not sent, watch events are
   * dropped by the caller): `kbctl drill coordinator-failover --isolate`.
   */
  readonly cutOff: () => string | undefined;

  private readonly options: IOptions;
  /** One client per member, made on demand (lease keep-alives choose their member). */
  private readonly memberClients = new Map<number, Etcd3>();

  constructor(readonly target: EtcdTarget, opts: { callTimeoutMs?: number; keepaliveMs?: number; retryForMs?: number; cutOff?: () => string | undefined } = {}) {
    this.cutOff = opts.cutOff ?? (() => undefined);
    const timeout = opts.callTimeoutMs ?? ETCD_CALL_TIMEOUT_MS;
    this.retryForMs = opts.retryForMs ?? ETCD_RETRY_FOR_MS;
    this.options = {
      hosts: target.hosts.map((h) => `${target.tls ? 'https' : 'http'}://${h}`),
      ...(target.tls ? { credentials: { rootCertificate: target.tls.ca, ...(target.tls.cert && target.tls.key ? { certChain: target.tls.cert, privateKey: target.tls.key } : {}) } } : {}),
      dialTimeout: timeout,
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + timeout }),
      // A failing member is skipped for 1 s (the library default, 5 s, blacks out every
      // member at once during an etcd election); each call tries a second member; watch
      // streams reconnect within a second (the default backoff grows to 30 s).
      faultHandling: {
        host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
        global: retry(handleWhen(isRecoverableError), { maxAttempts: 2 }),
        watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 1000 }).next(),
      },
      grpcOptions: {
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
        'grpc.keepalive_time_ms': opts.keepaliveMs ?? 5000,
        'grpc.keepalive_timeout_ms': 2000,
        'grpc.keepalive_permit_without_calls': 1,
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 1000,
      },
    };
    this.client = new Etcd3(this.options);
  }

  /** A client that talks to member `i` (mod the number of members) only. Closed with the connection. */
  member(i: number): { client: Etcd3; host: string } {
    const n = ((i % this.target.hosts.length) + this.target.hosts.length) % this.target.hosts.length;
    let c = this.memberClients.get(n);
    if (!c) {
      c = new Etcd3({ ...this.options, hosts: [(this.options.hosts as string[])[n]!] });
      this.memberClients.set(n, c);
    }
    return { client: c, host: this.target.hosts[n]! };
  }

  get description(): string {
    return `etcd ${this.target.hosts.join(',')}`;
  }

  /** The full key of `parts` under the prefix. Parts are URI-encoded, so '/' in a name cannot escape. */
  key(...parts: (string | number)[]): Buffer {
    return Buffer.from(this.target.prefix + parts.map((p) => encodeURIComponent(String(p))).join('/'));
  }

  /** The range end that selects every key starting with `prefix`. */
  static prefixEnd(prefix: Buffer): Buffer {
    const end = Buffer.from(prefix);
    for (let i = end.length - 1; i >= 0; i--) {
      if (end[i]! < 0xff) {
        end[i]!++;
        return end.subarray(0, i + 1);
      }
    }
    return Buffer.from([0]);
  }

  async get(key: Buffer): Promise<IKeyValue | undefined> {
    const res = await this.call('read', () => this.client.kv.range({ key }));
    return res.kvs[0];
  }

  /** Every key under `prefix` (at `revision` when given, for a consistent snapshot). `retryForMs: 0` fails at once. */
  async list(prefix: Buffer, opts: Omit<IRangeRequest, 'key' | 'range_end'> = {}, retryForMs?: number): Promise<{ kvs: IKeyValue[]; revision: string }> {
    const res = await this.call('read', () => this.client.kv.range({ key: prefix, range_end: EtcdConnection.prefixEnd(prefix), ...opts }), retryForMs);
    return { kvs: res.kvs, revision: res.header.revision };
  }

  /**
   * A transaction. With a guard, its fence is added to the compares, and a failed compare
   * on the fence throws FencedWriteError (the caller's failure ops still ran, harmlessly:
   * only reads are used there).
   */
  async txn(t: { compare?: ICompare[]; success: IRequestOp[]; failure?: IRequestOp[] }, guard?: WriteGuard): Promise<TxnResult> {
    let fence: { key: Buffer; createRevision: string } | undefined;
    // The guard is asked again before every attempt: a writer that lost its right while
    // etcd was unavailable stops retrying.
    const res = await this.call('write', () => {
      fence = guard?.fence();
      const compare = [...(fence ? [{ key: fence.key, target: 'Create' as const, result: 'Equal' as const, create_revision: fence.createRevision }] : []), ...(t.compare ?? [])];
      const failure = [...(fence ? [{ request_range: { key: fence.key } }] : []), ...(t.failure ?? [])];
      return this.client.kv.txn({ compare, success: t.success, failure });
    });
    if (res.succeeded) {
      guard?.onLanded?.(Number(res.header.revision));
      return { succeeded: true, responses: res.responses, revision: res.header.revision };
    }
    if (fence) {
      const holder = res.responses[0]?.response_range?.kvs[0];
      if (!holder || holder.create_revision !== fence.createRevision) {
        guard!.onRefused?.();
        throw new FencedWriteError(`write refused by etcd: ${guard!.describe()} no longer holds ${fence.key.toString()} (${holder ? `now created at revision ${holder.create_revision}` : 'key gone: lease expired or released'})`);
      }
    }
    return { succeeded: false, responses: res.responses.slice(fence ? 1 : 0), revision: res.header.revision };
  }

  /**
   * Runs an etcd call, mapping client errors to kb errors that name the endpoints.
   * Unavailability is retried (100 ms doubling to 500 ms) for `retryForMs`; anything
   * else (a refused or invalid request, a fenced writer) is thrown at once.
   */
  async call<T>(what: 'read' | 'write' | 'lease', fn: () => Promise<T>, retryForMs = this.retryForMs): Promise<T> {
    const giveUpAt = Date.now() + retryForMs;
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw new StoreUnavailableError(`${this.description}: connection closed`);
      const cut = this.cutOff();
      if (cut) throw new StoreUnavailableError(`${this.description}: unreachable (${cut})`);
      try {
        return await fn();
      } catch (err) {
        const mapped = this.mapError(what, err);
        const delay = Math.min(500, 100 * 2 ** attempt);
        if (!(mapped instanceof StoreUnavailableError) || Date.now() + delay > giveUpAt || this.closed) throw mapped;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  mapError(what: string, err: unknown): Error {
    if (err instanceof KbError) return err;
    const msg = errorMessage(err);
    if (err instanceof GRPCInvalidArgumentError || err instanceof GRPCResourceExhastedError || err instanceof GRPCFailedPreconditionError) {
      return new KbError(`${this.description}: ${what} rejected: ${msg}`, { cause: err });
    }
    return new StoreUnavailableError(`${this.description} unreachable (${what}): ${msg}`, { cause: err });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
    for (const c of this.memberClients.values()) c.close();
    this.memberClients.clear();
  }
}

const put = (key: Buffer, value: string | Buffer, lease?: string): IRequestOp => ({ request_put: { key, value: Buffer.isBuffer(value) ? value : Buffer.from(value), ...(lease ? { lease } : {}) } });
const range = (key: Buffer): IRequestOp => ({ request_range: { key } });
const absent = (key: Buffer): ICompare => ({ key, target: 'Create', result: 'Equal', create_revision: 0 });
const text = (kv: IKeyValue): string => kv.value.toString('utf8');
const pad = (n: number) => String(n).padStart(12, '0');

/**
 * The Store on etcd (ADR 0010). Records are JSON documents (codec.ts) under the prefix:
 *
 *   nodes/<node>  node-modules/<node>/<module>  assignments/<node>/<module>
 *   revisions/<module>/<revision, zero-padded>  rollouts/<id>  events/<rollout>/<unique>
 *
 * Event ids are the etcd revision that created the event key: strictly increasing
 * across the whole store, assigned by etcd's log, with no counter to contend on.
 *
 * Writes go through the instance's WriteGuard when it has one (see withGuard): the
 * coordinator gives the rollout engine a store guarded by its leadership term, and agent
 * sessions a store guarded by the replica's own lease, so a deposed leader or a cut-off
 * replica cannot write. Reads are linearizable (etcd's default).
 */
export class EtcdStore implements Store {
  constructor(readonly conn: EtcdConnection, private readonly guard?: WriteGuard, private readonly ownsConnection = false) {}

  /** Opens a connection to `target` owned by the store (closed by close()). */
  static open(target: EtcdTarget): EtcdStore {
    return new EtcdStore(new EtcdConnection(target), undefined, true);
  }

  /** The same store, with every write fenced by `guard`. Shares the connection (close() of the view does not close it). */
  withGuard(guard: WriteGuard): EtcdStore {
    return new EtcdStore(this.conn, guard, false);
  }

  private k(...parts: (string | number)[]): Buffer {
    return this.conn.key(...parts);
  }

  /** A key's place, for errors: "etcd <endpoints> key <key>". */
  private where(kv: IKeyValue): string {
    return `${this.conn.description} key ${kv.key.toString('utf8')}`;
  }

  /**
   * Writes an immutable document: true when it was created, or when the key already holds
   * exactly this document (a retried call whose first attempt landed); false when it holds another.
   */
  private async createOnce(key: Buffer, doc: string | Buffer): Promise<boolean> {
    const value = Buffer.isBuffer(doc) ? doc : Buffer.from(doc);
    const res = await this.conn.txn({ compare: [absent(key)], success: [put(key, value)], failure: [range(key)] }, this.guard);
    if (res.succeeded) return true;
    const existing = res.responses[0]?.response_range?.kvs[0];
    return Boolean(existing && Buffer.from(existing.value).equals(value));
  }

  private async putDoc(key: Buffer, value: string): Promise<void> {
    await this.conn.txn({ success: [put(key, value)] }, this.guard);
  }

  private async getDoc<T>(key: Buffer): Promise<T | undefined> {
    const kv = await this.conn.get(key);
    return kv ? decodeRecord<T>(text(kv)) : undefined;
  }

  private async listDocs<T>(...prefix: string[]): Promise<T[]> {
    const { kvs } = await this.conn.list(Buffer.concat([this.k(...prefix), Buffer.from(prefix.length ? '/' : '')]));
    return kvs.map((kv) => decodeRecord<T>(text(kv)));
  }

  async upsertNode(n: NodeRecord): Promise<void> {
    await this.putDoc(this.k('nodes', n.name), encodePlain(n));
  }
  async getNode(name: string): Promise<NodeRecord | undefined> {
    return this.getDoc(this.k('nodes', name));
  }
  async listNodes(): Promise<NodeRecord[]> {
    return (await this.listDocs<NodeRecord>('nodes')).sort((a, b) => cmp(a.name, b.name));
  }

  async putNodeModule(r: NodeModuleRecord): Promise<void> {
    await this.putDoc(this.k('node-modules', r.node, r.module), encodePlain(r));
  }
  async listNodeModules(filter: { node?: string; module?: string } = {}): Promise<NodeModuleRecord[]> {
    const all = filter.node ? await this.listDocs<NodeModuleRecord>('node-modules', filter.node) : await this.listDocs<NodeModuleRecord>('node-modules');
    return all.filter((r) => !filter.module || r.module === filter.module).sort((a, b) => cmp(a.node, b.node) || cmp(a.module, b.module));
  }

  async putAssignment(a: AssignmentRecord): Promise<void> {
    await this.putDoc(this.k('assignments', a.node, a.module), encodePlain(a));
  }
  async listAssignments(filter: { node?: string; module?: string } = {}): Promise<AssignmentRecord[]> {
    const all = filter.node ? await this.listDocs<AssignmentRecord>('assignments', filter.node) : await this.listDocs<AssignmentRecord>('assignments');
    return all.filter((r) => !filter.module || r.module === filter.module).sort((a, b) => cmp(a.node, b.node) || cmp(a.module, b.module));
  }
  async deleteAssignment(node: string, module: string): Promise<void> {
    await this.conn.txn({ success: [{ request_delete_range: { key: this.k('assignments', node, module) } }] }, this.guard);
  }

  async putRevision(r: RevisionRecord): Promise<void> {
    const key = this.k('revisions', r.module, pad(r.revision));
    if (await this.createOnce(key, encodeRevision(r))) return;
    throw new RevisionExistsError(`${r.module} revision ${r.revision} already exists (revisions are immutable)`);
  }
  async getRevision(module: string, revision: number): Promise<RevisionRecord | undefined> {
    const kv = await this.conn.get(this.k('revisions', module, pad(revision)));
    return kv ? decodeRevision(kv.value, this.where(kv)) : undefined;
  }
  async latestRevision(module: string): Promise<RevisionRecord | undefined> {
    const { kvs } = await this.conn.list(Buffer.concat([this.k('revisions', module), Buffer.from('/')]), { sort_order: 'Descend', sort_target: 'Key', limit: 1 });
    return kvs[0] ? decodeRevision(kvs[0].value, this.where(kvs[0])) : undefined;
  }
  async latestRevisionNumber(module: string): Promise<number | undefined> {
    const { kvs } = await this.conn.list(Buffer.concat([this.k('revisions', module), Buffer.from('/')]), { sort_order: 'Descend', sort_target: 'Key', limit: 1, keys_only: true });
    return kvs[0] ? Number(Buffer.from(kvs[0].key).toString('utf8').split('/').at(-1)) : undefined;
  }
  async listRevisions(module: string): Promise<RevisionRecord[]> {
    const { kvs } = await this.conn.list(Buffer.concat([this.k('revisions', module), Buffer.from('/')]));
    return kvs.map((kv) => decodeRevision(kv.value, this.where(kv))).sort((a, b) => a.revision - b.revision);
  }
  async markRevisionHealthy(module: string, revision: number, atMs: number): Promise<void> {
    const key = this.k('revisions', module, pad(revision));
    // Optimistic read-modify-write: retried when another write changed the document in between.
    for (let attempt = 0; attempt < 5; attempt++) {
      const kv = await this.conn.get(key);
      if (!kv) return;
      const doc = withHealthyMark(kv.value, atMs, this.where(kv));
      const res = await this.conn.txn({ compare: [{ key, target: 'Mod', result: 'Equal', mod_revision: kv.mod_revision }], success: [put(key, doc)] }, this.guard);
      if (res.succeeded) return;
    }
    throw new StoreUnavailableError(`${this.conn.description}: revision ${module}/${revision} kept changing; healthy mark not written`);
  }

  async putRollout(r: RolloutRecord): Promise<void> {
    await this.putDoc(this.k('rollouts', r.id), encodePlain(r));
  }
  async getRollout(id: string): Promise<RolloutRecord | undefined> {
    return this.getDoc(this.k('rollouts', id));
  }
  async listRollouts(filter: { module?: string; state?: RolloutState } = {}): Promise<RolloutRecord[]> {
    return (await this.listDocs<RolloutRecord>('rollouts'))
      .filter((r) => (!filter.module || r.module === filter.module) && (!filter.state || r.state === filter.state))
      .sort((a, b) => a.createdMs - b.createdMs || cmp(a.id, b.id));
  }
  async latestRollout(module: string): Promise<RolloutRecord | undefined> {
    // Keys only, then the documents of the module's highest revision: the engine names a
    // rollout `<module>-<revision>-<8 hex>` and numbers revisions in the order it plans them
    // (an undo too), so only a re-run of the same revision shares the number. An id of another
    // form is read and judged by its document.
    const dir = Buffer.concat([this.k('rollouts'), Buffer.from('/')]);
    const { kvs } = await this.conn.list(dir, { keys_only: true });
    let top = -1;
    let ids: string[] = [];
    const other: string[] = [];
    for (const kv of kvs) {
      const id = Buffer.from(kv.key).subarray(dir.length).toString('utf8');
      const m = /^(.+)-(\d+)-[0-9a-f]{8}$/.exec(id);
      if (!m) other.push(id);
      else if (m[1] === module && Number(m[2]) > top) [top, ids] = [Number(m[2]), [id]];
      else if (m[1] === module && Number(m[2]) === top) ids.push(id);
    }
    const docs = await Promise.all([...ids, ...other].map((id) => this.getRollout(id)));
    return docs
      .filter((r): r is RolloutRecord => r?.module === module)
      .sort((a, b) => a.createdMs - b.createdMs || cmp(a.id, b.id))
      .at(-1);
  }

  async appendEvent(e: Omit<EventRecord, 'id'>): Promise<EventRecord> {
    const key = this.k('events', e.rolloutId, `${pad(e.atMs)}-${randomBytes(6).toString('hex')}`);
    const res = await this.conn.txn({ compare: [absent(key)], success: [put(key, encodePlain(e))], failure: [range(key)] }, this.guard);
    if (res.succeeded) return { ...e, id: Number(res.revision) };
    // Only a retried call whose first attempt landed can find the (random) key taken.
    const existing = res.responses[0]?.response_range?.kvs[0];
    if (!existing) throw new StoreUnavailableError(`${this.conn.description}: event append failed without a reason`);
    return { ...e, id: Number(existing.create_revision) };
  }
  async listEvents(rolloutId: string): Promise<EventRecord[]> {
    const { kvs } = await this.conn.list(Buffer.concat([this.k('events', rolloutId), Buffer.from('/')]));
    return kvs.map((kv) => ({ ...decodeRecord<Omit<EventRecord, 'id'>>(text(kv)), id: Number(kv.create_revision) })).sort((a, b) => a.id - b.id);
  }

  async putToken(t: TokenRecord): Promise<void> {
    await this.putDoc(this.k('tokens', t.id), encodePlain(t));
  }
  async getToken(id: string): Promise<TokenRecord | undefined> {
    return this.getDoc(this.k('tokens', id));
  }
  async listTokens(): Promise<TokenRecord[]> {
    return (await this.listDocs<TokenRecord>('tokens')).sort((a, b) => a.createdMs - b.createdMs || cmp(a.id, b.id));
  }

  async putNodeIdentity(r: NodeIdentityRecord): Promise<void> {
    await this.putDoc(this.k('node-identities', r.node), encodePlain(r));
  }
  async getNodeIdentity(node: string): Promise<NodeIdentityRecord | undefined> {
    return this.getDoc(this.k('node-identities', node));
  }
  async listNodeIdentities(): Promise<NodeIdentityRecord[]> {
    return (await this.listDocs<NodeIdentityRecord>('node-identities')).sort((a, b) => cmp(a.node, b.node));
  }

  async putSecretVersion(r: SecretVersionRecord): Promise<void> {
    const key = this.k('secret-versions', r.name, pad(r.version));
    if (await this.createOnce(key, encodePlain(r))) return;
    throw new KbError(`secret ${r.name} version ${r.version} already exists (secret versions are immutable)`);
  }
  async listSecretVersions(name?: string): Promise<SecretVersionRecord[]> {
    const all = name ? await this.listDocs<SecretVersionRecord>('secret-versions', name) : await this.listDocs<SecretVersionRecord>('secret-versions');
    return all.sort((a, b) => cmp(a.name, b.name) || a.version - b.version);
  }
  async putSecretState(r: SecretStateRecord): Promise<void> {
    await this.putDoc(this.k('secret-states', r.name), encodePlain(r));
  }
  async getSecretState(name: string): Promise<SecretStateRecord | undefined> {
    return this.getDoc(this.k('secret-states', name));
  }
  async listSecretStates(): Promise<SecretStateRecord[]> {
    return (await this.listDocs<SecretStateRecord>('secret-states')).sort((a, b) => cmp(a.name, b.name));
  }

  async close(): Promise<void> {
    if (this.ownsConnection) this.conn.close();
  }
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
