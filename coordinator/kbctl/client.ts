import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, kbV1 } from '../../proto/index.js';
import type {
  CoordinatorDrillRequest, CoordinatorDrillResponse, CoordinatorStatusResponse,
  CreateTokenRequest, CreateTokenResponse, DrillRequest, DrillUpdate, HealthRequest, HealthResponse, ImportSecretsRequest, ImportSecretsResponse,
  ListNodesResponse, ListSecretsResponse, ListTokensResponse, PlanRequest, PlanResponse, RemoveTokenResponse, RolloutRequest, RolloutStatusRequest,
  RolloutStatusResponse, RolloutUpdate, RotateSecretRequest, RotateSecretUpdate,
} from '../../proto/types.js';
import { KbError } from '../../shared/errors/index.js';

/** Trailers the coordinator sets on its errors (coordinator/server/control-service.ts). */
const LEADER_TRAILER = 'kb-leader';
const SOURCE_TRAILER = 'kb-source';

export interface ClientOptions {
  /** HOST:PORT of a coordinator, or several replicas' comma-separated: `a:7443,b:7443`. */
  address: string;
  /** Plaintext gRPC (development, loopback only). Otherwise `tls` is required. */
  plaintext: boolean;
  /** mTLS material: the private CA (the only trusted root) and the admin certificate and key. */
  tls?: { ca: string; certificate: string; key: string };
  /** Deadline of unary calls. Default 30 s. */
  timeoutMs?: number;
}

/** Thrown when the coordinator refuses or fails a call; message is the coordinator's. */
export class ControlError extends KbError {
  override name = 'ControlError';
  constructor(
    readonly code: grpc.status,
    message: string,
    /** The leader's address, when a follower refused a leader-only call. */
    readonly leader?: string,
    /** The coordinator produced this error itself (as opposed to a connection failure). */
    readonly fromCoordinator = false,
  ) {
    super(message);
  }
}

/**
 * Typed, promise-based client of the ControlService of one coordinator or of several
 * replicas. Calls go to the first address that answers: an unreachable replica, or one
 * that cannot reach its store, is skipped for the next; a follower's "not the leader"
 * answer is followed to the leader it names. A server stream is only retried before it
 * delivered anything.
 */
export class ControlClient {
  readonly addresses: string[];
  private readonly clients = new Map<string, grpc.Client & Record<string, any>>();
  private readonly timeoutMs: number;
  private readonly plaintext: boolean;
  private readonly creds: grpc.ChannelCredentials;

  constructor(opts: ClientOptions) {
    this.addresses = opts.address.split(',').map((a) => a.trim()).filter(Boolean);
    if (!this.addresses.length) throw new KbError('no coordinator address given (--coordinator HOST:PORT[,HOST:PORT...])');
    if (opts.plaintext) {
      for (const address of this.addresses) {
        const host = address.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
        if (!isLoopbackHost(host)) throw new KbError(`--plaintext refuses non-loopback coordinator address ${address} (development on 127.0.0.0/8 only)`);
      }
      this.creds = grpc.credentials.createInsecure();
    } else {
      if (!opts.tls) throw new KbError('no admin credential: kbctl needs the file written by `kb-coordinator init` (--config FILE, KB_CONFIG, or ~/.kb/config)');
      this.creds = grpc.credentials.createSsl(Buffer.from(opts.tls.ca), Buffer.from(opts.tls.key), Buffer.from(opts.tls.certificate));
    }
    this.plaintext = opts.plaintext;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  createToken(req: CreateTokenRequest): Promise<CreateTokenResponse> {
    return this.failover((a) => this.unary(a, 'CreateToken', req));
  }

  listTokens(): Promise<ListTokensResponse> {
    return this.failover((a) => this.unary(a, 'ListTokens', {}));
  }

  removeToken(id: string): Promise<RemoveTokenResponse> {
    return this.failover((a) => this.unary(a, 'RemoveToken', { id }));
  }

  listNodes(): Promise<ListNodesResponse> {
    return this.failover((a) => this.unary(a, 'ListNodes', {}));
  }

  health(req: HealthRequest): Promise<HealthResponse> {
    return this.failover((a) => this.unary(a, 'Health', req));
  }

  plan(req: PlanRequest): Promise<PlanResponse> {
    return this.failover((a) => this.unary(a, 'Plan', req));
  }

  rolloutStatus(req: RolloutStatusRequest): Promise<RolloutStatusResponse> {
    return this.failover((a) => this.unary(a, 'RolloutStatus', req));
  }

  /** Status of the coordinator at `address`, or of the first replica that answers. */
  coordinatorStatus(address?: string): Promise<CoordinatorStatusResponse> {
    return address ? this.unary(address, 'CoordinatorStatus', {}) : this.failover((a) => this.unary(a, 'CoordinatorStatus', {}));
  }

  /** A coordinator drill on the coordinator at `address` (no failover: the caller chose the target). */
  coordinatorDrill(address: string, req: CoordinatorDrillRequest): Promise<CoordinatorDrillResponse> {
    return this.unary(address, 'CoordinatorDrill', req);
  }

  listSecrets(): Promise<ListSecretsResponse> {
    return this.failover((a) => this.unary(a, 'ListSecrets', {}));
  }

  importSecrets(req: ImportSecretsRequest): Promise<ImportSecretsResponse> {
    return this.failover((a) => this.unary(a, 'ImportSecrets', req));
  }

  /** Streams a rotation's updates to `onUpdate`; resolves when the coordinator ends the stream. */
  rotateSecret(req: RotateSecretRequest, onUpdate: (u: RotateSecretUpdate) => void): Promise<void> {
    return this.stream('RotateSecret', req, onUpdate);
  }

  /** Streams a rollout's updates to `onUpdate`; resolves when the coordinator ends the stream. */
  rollout(req: RolloutRequest, onUpdate: (u: RolloutUpdate) => void): Promise<void> {
    return this.stream('Rollout', req, onUpdate);
  }

  /** Streams a drill's events and final report to `onUpdate`; resolves when the coordinator ends the stream. */
  drill(req: DrillRequest, onUpdate: (u: DrillUpdate) => void): Promise<void> {
    return this.stream('Drill', req, onUpdate);
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private client(address: string): grpc.Client & Record<string, any> {
    let c = this.clients.get(address);
    if (!c) {
      c = new (kbV1().ControlService)(address, this.creds, CHANNEL_OPTIONS) as grpc.Client & Record<string, any>;
      this.clients.set(address, c);
    }
    return c;
  }

  /** A server stream, on the first replica that accepts it; never retried once updates flowed. */
  private stream<T>(method: string, req: unknown, onUpdate: (u: T) => void): Promise<void> {
    return this.failover((address) => new Promise<void>((resolve, reject) => {
      const call = this.client(address)[method](req) as grpc.ClientReadableStream<T>;
      let received = false;
      call.on('data', (u: T) => {
        received = true;
        onUpdate(u);
      });
      call.on('error', (err: grpc.ServiceError) => {
        const e = toControlError(address, err, this.plaintext);
        // Once updates flowed, the call took effect (a rollout exists): retrying elsewhere would start another.
        reject(received ? new StreamStarted(e.code, e.message, undefined, e.fromCoordinator) : e);
      });
      call.on('end', () => resolve());
    }), (err) => !(err instanceof StreamStarted));
  }

  private unary<T>(address: string, method: string, req: unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      this.client(address)[method](req, { deadline: Date.now() + this.timeoutMs }, (err: grpc.ServiceError | null, res: T) => {
        if (err) reject(toControlError(address, err, this.plaintext));
        else resolve(res);
      });
    });
  }

  /**
   * Runs `fn` against each address in turn until one answers. Moves on after UNAVAILABLE
   * or DEADLINE_EXCEEDED (replica down, or cut off from its store); goes to the leader a
   * follower names. When none answers, the error lists what each said.
   */
  private async failover<T>(fn: (address: string) => Promise<T>, retryable: (err: unknown) => boolean = () => true): Promise<T> {
    const queue = [...this.addresses];
    const tried = new Set<string>();
    const failures: { address: string; err: ControlError }[] = [];
    while (queue.length) {
      const address = queue.shift()!;
      if (tried.has(address)) continue;
      tried.add(address);
      try {
        return await fn(address);
      } catch (err) {
        if (!(err instanceof ControlError) || !retryable(err)) throw err;
        if (err.leader && !tried.has(err.leader)) {
          queue.unshift(err.leader);
          failures.push({ address, err });
          continue;
        }
        if (err.code !== grpc.status.UNAVAILABLE && err.code !== grpc.status.DEADLINE_EXCEEDED) throw err;
        failures.push({ address, err });
      }
    }
    if (failures.length === 1) throw failures[0]!.err;
    const last = failures[failures.length - 1]!.err;
    throw new ControlError(last.code, `no coordinator could serve the call:\n${failures.map((f) => `  ${f.address}: ${f.err.message}`).join('\n')}`, undefined, last.fromCoordinator);
  }
}

/** Marker for errors of a stream that already delivered updates (never retried elsewhere). */
class StreamStarted extends ControlError {}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function toControlError(address: string, err: grpc.ServiceError, plaintext: boolean): ControlError {
  const leader = err.metadata?.get(LEADER_TRAILER)[0]?.toString();
  const fromCoordinator = err.metadata?.get(SOURCE_TRAILER)[0]?.toString() === 'coordinator';
  return new ControlError(err.code, fromCoordinator ? (err.details || err.message) : describe(address, err, plaintext), leader, fromCoordinator);
}

function describe(address: string, err: grpc.ServiceError, plaintext: boolean): string {
  if (err.code === grpc.status.UNAVAILABLE) {
    const details = err.details.replace(/\.? Resolution note:.*$/s, '').trim();
    const refused = /ECONNREFUSED/.test(details);
    const hint = refused ? '' : plaintext
      ? ' (a plaintext client cannot talk to a coordinator serving mTLS: drop --plaintext and use the admin credential)'
      : /certificate|handshake|SSL|TLS|alert/i.test(details) ? ' (TLS handshake failed: is this credential from this coordinator\'s `kb-coordinator init`?)' : '';
    return `coordinator unavailable (${address}): ${details}${hint}`;
  }
  if (err.code === grpc.status.PERMISSION_DENIED || err.code === grpc.status.UNAUTHENTICATED) return `refused by the coordinator: ${err.details}`;
  if (err.code === grpc.status.DEADLINE_EXCEEDED) return `coordinator ${address} did not answer in time`;
  return err.details || err.message;
}
