import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import { CHANNEL_OPTIONS, kbV1 } from '../proto/index.js';
import type { RenewRequest, RenewResponse } from '../proto/types.js';
import { errorMessage } from '../shared/errors/index.js';
import { certInfo, exportPrivateKeyPem, generateKeyPair, isIssuedBy } from '../shared/tls/x509.js';
import { channelCredentials, keyMatchesCert, loadIdentity, saveIdentity } from './identity.js';

/** setTimeout's limit: longer waits are done in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1;

export interface RenewerOptions {
  node: string;
  tlsDir: string;
  coordinators: string[];
  log: Logger;
  /** Called after a renewal was saved. */
  onRenewed?: (serial: string, notAfterMs: number) => void;
}

/** When to renew: after two thirds of the certificate's lifetime. */
export function renewAtMs(notBeforeMs: number, notAfterMs: number): number {
  return notBeforeMs + ((notAfterMs - notBeforeMs) * 2) / 3;
}

/**
 * Renews the node certificate over the mTLS channel before it expires, with a NEW key made
 * here. The live session is untouched (it was authenticated at its handshake); reconnects
 * pick up the new files. Failures are retried every tenth of the remaining lifetime
 * (1 s to 60 s), until the certificate expires; then a new token is needed.
 *
 *   idle ──start()──> waiting ──timer──> renewing ──ok──> waiting
 *                        ▲                   └──fail──> waiting (retry)
 *                        stop() from any state ──> stopped
 */
export class CertRenewer {
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly o: RenewerOptions) {}

  start(): void {
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(retry = false): void {
    if (this.stopped) return;
    const id = loadIdentity(this.o.tlsDir);
    if (!id) return;
    const now = Date.now();
    let at = renewAtMs(id.info.notBeforeMs, id.info.notAfterMs);
    if (retry || at <= now) {
      const remaining = id.info.notAfterMs - now;
      at = now + (retry ? Math.min(60_000, Math.max(1000, remaining / 10)) : 0);
    }
    this.timer = setTimeout(() => {
      if (Date.now() < at) return this.schedule();
      void this.renewOnce().then((ok) => this.schedule(!ok));
    }, Math.min(MAX_TIMER_MS, Math.max(0, at - now)));
  }

  /** One renewal attempt against each coordinator in turn. Resolves true when a new certificate was saved. */
  async renewOnce(): Promise<boolean> {
    const current = loadIdentity(this.o.tlsDir);
    if (!current) return false;
    const keys = await generateKeyPair();
    const { createCsr } = await import('../shared/tls/x509-make.js'); // only when renewing
    const csrPem = await createCsr(this.o.node, keys);
    const keyPem = await exportPrivateKeyPem(keys.privateKey);
    for (const address of this.o.coordinators) {
      try {
        const res = await this.call(address, { csrPem });
        const info = certInfo(res.certificatePem);
        if (!isIssuedBy(res.certificatePem, current.caPem) || info.commonName !== this.o.node || info.role !== 'node' || !keyMatchesCert(keyPem, res.certificatePem)) {
          throw new Error('the coordinator returned a certificate that is not for this node and key from the pinned CA');
        }
        saveIdentity(this.o.tlsDir, { keyPem, certPem: res.certificatePem, caPem: current.caPem });
        this.o.log.info({ serial: info.serial, previousSerial: current.info.serial, notAfter: new Date(info.notAfterMs).toISOString() }, 'certificate renewed');
        this.o.onRenewed?.(info.serial, info.notAfterMs);
        return true;
      } catch (err) {
        this.o.log.warn({ coordinator: address, err: errorMessage(err), expires: new Date(current.info.notAfterMs).toISOString() }, 'certificate renewal failed; will retry');
      }
    }
    return false;
  }

  private call(address: string, req: RenewRequest): Promise<RenewResponse> {
    const client = new (kbV1().AgentService)(address, channelCredentials(this.o.tlsDir), CHANNEL_OPTIONS) as unknown as grpc.Client & {
      Renew: (r: RenewRequest, m: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: RenewResponse) => void) => void;
    };
    return new Promise<RenewResponse>((resolve, reject) => {
      client.Renew(req, { deadline: Date.now() + 15_000 }, (err, res) => (err ? reject(new Error(err.details || err.message)) : resolve(res)));
    }).finally(() => client.close());
  }
}
