import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, kbV1 } from '../../proto/index.js';
import type {
  CoordinatorStatusResponse, DrillRequest, DrillResponse, ListNodesResponse, PlanRequest, PlanResponse, RolloutRequest,
  RolloutStatusRequest, RolloutStatusResponse, RolloutUpdate,
} from '../../proto/types.js';
import { KbError } from '../../shared/errors/index.js';

/** Trailers the coordinator sets on its errors (coordinator/server/control-service.ts). */
const LEADER_TRAILER = 'kb-leader';
const SOURCE_TRAILER = 'kb-source';

export interface ClientOptions {
  /** HOST:PORT of a coordinator, or several replicas' comma-separated: `a:7443,b:7443`. */
  address: string;
  plaintext: boolean;
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

  constructor(opts: ClientOptions) {
    if (!opts.plaintext) throw new KbError('mTLS credentials are not configured yet: pass --plaintext (development, loopback only)');
    this.addresses = opts.address.split(',').map((a) => a.trim()).filter(Boolean);
    if (!this.addresses.length) throw new KbError('no coordinator address given (--coordinator HOST:PORT[,HOST:PORT...])');
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  listNodes(): Promise<ListNodesResponse> {
    return this.failover((a) => this.unary(a, 'ListNodes', {}));
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

  /** A drill on the coordinator at `address` (no failover: the caller chose the target). */
  drill(address: string, req: DrillRequest): Promise<DrillResponse> {
    return this.unary(address, 'Drill', req);
  }

  /** Streams a rollout's updates to `onUpdate`; resolves when the coordinator ends the stream. */
  rollout(req: RolloutRequest, onUpdate: (u: RolloutUpdate) => void): Promise<void> {
    return this.failover((address) => new Promise<void>((resolve, reject) => {
      const call = this.client(address).Rollout(req) as grpc.ClientReadableStream<RolloutUpdate>;
      let received = false;
      call.on('data', (u: RolloutUpdate) => {
        received = true;
        onUpdate(u);
      });
      call.on('error', (err: grpc.ServiceError) => {
        const e = toControlError(address, err);
        // Once updates flowed, the rollout exists: retrying elsewhere would start another.
        reject(received ? new StreamStarted(e.code, e.message, undefined, e.fromCoordinator) : e);
      });
      call.on('end', () => resolve());
    }), (err) => !(err instanceof StreamStarted));
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }

  private client(address: string): grpc.Client & Record<string, any> {
    let c = this.clients.get(address);
    if (!c) {
      c = new (kbV1().ControlService)(address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as grpc.Client & Record<string, any>;
      this.clients.set(address, c);
    }
    return c;
  }

  private unary<T>(address: string, method: string, req: unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      this.client(address)[method](req, { deadline: Date.now() + this.timeoutMs }, (err: grpc.ServiceError | null, res: T) => {
        if (err) reject(toControlError(address, err));
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

function toControlError(address: string, err: grpc.ServiceError): ControlError {
  const leader = err.metadata?.get(LEADER_TRAILER)[0]?.toString();
  const fromCoordinator = err.metadata?.get(SOURCE_TRAILER)[0]?.toString() === 'coordinator';
  let message = err.details || err.message;
  if (!fromCoordinator && err.code === grpc.status.UNAVAILABLE) message = `coordinator ${address} unavailable: ${err.details.replace(/\.? Resolution note:.*$/s, '').trim()}`;
  if (!fromCoordinator && err.code === grpc.status.DEADLINE_EXCEEDED) message = `coordinator ${address} did not answer in time`;
  return new ControlError(err.code, message, leader, fromCoordinator);
}
