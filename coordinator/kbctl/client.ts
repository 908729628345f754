import * as grpc from '@grpc/grpc-js';
import { CHANNEL_OPTIONS, kbV1 } from '../../proto/index.js';
import type {
  CreateTokenRequest, CreateTokenResponse, DrillRequest, DrillUpdate, HealthRequest, HealthResponse, ImportSecretsRequest, ImportSecretsResponse,
  ListNodesResponse, ListSecretsResponse, ListTokensResponse, PlanRequest, PlanResponse, RemoveTokenResponse, RolloutRequest, RolloutStatusRequest,
  RolloutStatusResponse, RolloutUpdate, RotateSecretRequest, RotateSecretUpdate,
} from '../../proto/types.js';
import { KbError } from '../../shared/errors/index.js';

export interface ClientOptions {
  /** HOST:PORT of a coordinator. */
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
  constructor(readonly code: grpc.status, message: string) {
    super(message);
  }
}

/** Typed, promise-based wrapper over the ControlService client. */
export class ControlClient {
  private readonly client: grpc.Client & Record<string, any>;
  private readonly timeoutMs: number;

  private readonly plaintext: boolean;

  constructor(opts: ClientOptions) {
    let creds: grpc.ChannelCredentials;
    if (opts.plaintext) {
      const host = opts.address.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      if (!isLoopbackHost(host)) throw new KbError(`--plaintext refuses non-loopback coordinator address ${opts.address} (development on 127.0.0.0/8 only)`);
      creds = grpc.credentials.createInsecure();
    } else {
      if (!opts.tls) throw new KbError('no admin credential: kbctl needs the file written by `kb-coordinator init` (--config FILE, KB_CONFIG, or ~/.kb/config)');
      creds = grpc.credentials.createSsl(Buffer.from(opts.tls.ca), Buffer.from(opts.tls.key), Buffer.from(opts.tls.certificate));
    }
    this.plaintext = opts.plaintext;
    this.client = new (kbV1().ControlService)(opts.address, creds, CHANNEL_OPTIONS) as grpc.Client & Record<string, any>;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  createToken(req: CreateTokenRequest): Promise<CreateTokenResponse> {
    return this.unary('CreateToken', req);
  }

  listTokens(): Promise<ListTokensResponse> {
    return this.unary('ListTokens', {});
  }

  removeToken(id: string): Promise<RemoveTokenResponse> {
    return this.unary('RemoveToken', { id });
  }

  listNodes(): Promise<ListNodesResponse> {
    return this.unary('ListNodes', {});
  }

  health(req: HealthRequest): Promise<HealthResponse> {
    return this.unary('Health', req);
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

  /** Streams a drill's events and final report to `onUpdate`; resolves when the coordinator ends the stream. */
  drill(req: DrillRequest, onUpdate: (u: DrillUpdate) => void): Promise<void> {
    return this.stream('Drill', req, onUpdate);
  }

  close(): void {
    this.client.close();
  }

  private stream<T>(method: string, req: unknown, onUpdate: (u: T) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const call = this.client[method](req) as grpc.ClientReadableStream<T>;
      call.on('data', onUpdate);
      call.on('error', (err: grpc.ServiceError) => reject(new ControlError(err.code, describe(err, this.plaintext))));
      call.on('end', () => resolve());
    });
  }

  private unary<T>(method: string, req: unknown): Promise<T> {
    return new Promise((resolve, reject) => {
      this.client[method](req, { deadline: Date.now() + this.timeoutMs }, (err: grpc.ServiceError | null, res: T) => {
        if (err) reject(new ControlError(err.code, describe(err, this.plaintext)));
        else resolve(res);
      });
    });
  }
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function describe(err: grpc.ServiceError, plaintext: boolean): string {
  if (err.code === grpc.status.UNAVAILABLE) {
    const refused = /ECONNREFUSED/.test(err.details);
    const hint = refused ? '' : plaintext
      ? ' (a plaintext client cannot talk to a coordinator serving mTLS: drop --plaintext and use the admin credential)'
      : /certificate|handshake|SSL|TLS|alert/i.test(err.details) ? ' (TLS handshake failed: is this credential from this coordinator\'s `kb-coordinator init`?)' : '';
    return `coordinator unavailable: ${err.details}${hint}`;
  }
  if (err.code === grpc.status.PERMISSION_DENIED || err.code === grpc.status.UNAUTHENTICATED) return `refused by the coordinator: ${err.details}`;
  if (err.code === grpc.status.DEADLINE_EXCEEDED) return 'coordinator did not answer in time';
  return err.details || err.message;
}
