import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type {
  ImportSecretsRequest, ImportSecretsResponse, ListSecretsResponse, RotateSecretRequest, RotateSecretUpdate,
} from '../../proto/types.js';
import { errorMessage } from '../../shared/errors/index.js';
import { scrub } from '../../shared/log/index.js';
import { toRotationInfo, type RotationDriver } from '../secrets/rotation.js';
import { SecretError, type SecretService } from '../secrets/service.js';
import type { Store } from '../store/types.js';
import { toEvent, toGrpcError } from './control-service.js';

export interface SecretsControlDeps {
  secrets: SecretService;
  rotation: RotationDriver;
  store: Store;
  log: Logger;
  /** Same as ControlDeps.authorize. */
  authorize: (call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>) => void;
}

/** gRPC error for a refused secret operation; messages never carry values (and are scrubbed anyway). */
function secretError(err: unknown): Partial<grpc.ServiceError> {
  if (err instanceof SecretError) return { code: grpc.status.FAILED_PRECONDITION, details: scrub(err.message) };
  const e = toGrpcError(err);
  return { ...e, details: scrub(e.details ?? '') };
}

/**
 * ControlService methods of the secret store: ListSecrets (names, versions, holders; never
 * values), ImportSecrets (values come in, nothing but results goes out) and RotateSecret
 * (streams the rotation's phases and its rollouts' events).
 */
export function secretsHandlers(deps: SecretsControlDeps): grpc.UntypedServiceImplementation {
  const unary = <Req, Res>(what: string, fn: (req: Req) => Promise<Res>) => (call: grpc.ServerUnaryCall<Req, Res>, cb: grpc.sendUnaryData<Res>) => {
    Promise.resolve()
      .then(() => deps.authorize(call as grpc.ServerUnaryCall<unknown, unknown>))
      .then(() => fn(call.request))
      .then((res) => cb(null, res), (err: unknown) => {
        deps.log.warn({ err: errorMessage(err) }, `${what} failed`);
        cb(secretError(err));
      });
  };

  return {
    ListSecrets: unary('list secrets', async (): Promise<ListSecretsResponse> => {
      const versions = await deps.secrets.list();
      const rotations = (await deps.store.listSecretStates()).filter((s) => s.rotation).map((s) => toRotationInfo(s.name, s.rotation!));
      return { versions, rotations };
    }),

    ImportSecrets: unary('import secrets', async (req: ImportSecretsRequest): Promise<ImportSecretsResponse> => {
      const results = await deps.secrets.importSecrets(req.secrets, { force: req.force, dryRun: req.dryRun });
      return { results };
    }),

    RotateSecret: (call: grpc.ServerWritableStream<RotateSecretRequest, RotateSecretUpdate>) => {
      const req = call.request;
      let unsubscribe = () => {};
      const run = async () => {
        deps.authorize(call as grpc.ServerWritableStream<unknown, unknown>);
        if (req.wait) {
          unsubscribe = deps.rotation.subscribe(req.name, (u) => {
            call.write('info' in u ? { info: u.info } : { event: toEvent(u.event) });
          });
        }
        const r = await deps.rotation.start(req.name, {
          maxParallel: req.maxParallel, healthyDeadlineMs: req.healthyDeadlineMs, minHealthyTimeMs: req.minHealthyTimeMs || undefined,
        });
        if (!req.wait) call.write({ info: toRotationInfo(req.name, r) });
        if (req.wait) await deps.rotation.wait(req.name);
        unsubscribe();
        const s = await deps.store.getSecretState(req.name);
        if (s?.rotation) call.write({ info: toRotationInfo(req.name, s.rotation) });
        call.end();
      };
      call.on('cancelled', () => unsubscribe());
      run().catch((err: unknown) => {
        unsubscribe();
        deps.log.warn({ err: errorMessage(err), secret: req.name }, 'rotation refused');
        call.emit('error', secretError(err));
      });
    },
  };
}
