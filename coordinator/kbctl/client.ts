import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, kbV1 } from '../../proto/index.js';
import type {
  ImportSecretsRequest, ImportSecretsResponse, ListNodesResponse, ListSecretsResponse, PlanRequest, PlanResponse, RolloutRequest,
  RolloutStatusRequest, RolloutStatusResponse, RolloutUpdate, RotateSecretRequest, RotateSecretUpdate,
} from '../../proto/types.js';
import { KbError } from '../../shared/errors/index.js';

export interface ClientOptions {
  /** HOST:PORT of a coordinator. */
  address: string;
  plaintext: boolean;
  /** Deadline of unary calls. Default 30 s. */
  timeoutMs?: number;
}

/** Thrown when the coordinator refuses or fails a call; message is the coordinator's. */
export class ControlError extends KbError {
  override name = 'ControlError';
  constructor(readonly code: grpc.status, message: string) {
    super(message);
  }
}

/** Typed, promise-based wrapper over the ControlService client. */
export class ControlClient {
  private readonly client: grpc.Client & Record<string, any>;
  private readonly timeoutMs: number;

  constructor(opts: ClientOptions) {
    if (!opts.plaintext) throw new KbError('mTLS credentials are not configured yet: pass --plaintext (development, loopback only)');
    this.client = new (kbV1().ControlService)(opts.address, grpc.credentials.createInsecure(), CHANNEL_OPTIONS) as grpc.Client & Record<string, any>;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  listNodes(): Promise<ListNodesResponse> {
    return this.unary('ListNodes', {});
  }

  plan(req: PlanRequest): Promise<PlanResponse> {
    return this.unary('Plan', req);
  }

  rolloutStatus(req: RolloutStatusRequest): Promise<RolloutStatusResponse> {
    return this.unary('RolloutStatus', req);
  }

  listSecrets(): Promise<ListSecretsResponse> {
    return this.unary('ListSecrets', {});
  }

  importSecrets(req: ImportSecretsRequest): Promise<ImportSecretsResponse> {
    return this.unary('ImportSecrets', req);
  }

  /** Streams a rotation's updates to `onUpdate`; resolves when the coordinator ends the stream. */
  rotateSecret(req: RotateSecretRequest, onUpdate: (u: RotateSecretUpdate) => void): Promise<void> {
    return this.stream('RotateSecret', req, onUpdate);
  }

  /** Streams a rollout's updates to `onUpdate`; resolves when the coordinator ends the stream. */
  rollout(req: RolloutRequest, onUpdate: (u: RolloutUpdate) => void): Promise<void> {
    return this.stream('Rollout', req, onUpdate);
  }

  private stream<U>(method: string, req: unknown, onUpdate: (u: U) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const call = this.client[method](req) as grpc.ClientReadableStream<U>;
      call.on('data', onUpdate);
      call.on('error', (err: grpc.ServiceError) => reject(new ControlError(err.code, describe(err))));
      call.on('end', () => resolve());
    });
  }

  close(): void {
    this.client.close();
  }

  private unary<T>(method: string, req: unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      this.client[method](req, { deadline: Date.now() + this.timeoutMs }, (err: grpc.ServiceError | null, res: T) => {
        if (err) reject(new ControlError(err.code, describe(err)));
        else resolve(res);
      });
    });
  }
}

function describe(err: grpc.ServiceError): string {
  if (err.code === grpc.status.UNAVAILABLE) return `coordinator unavailable: ${err.details}`;
  if (err.code === grpc.status.DEADLINE_EXCEEDED) return 'coordinator did not answer in time';
  return err.details || err.message;
}
