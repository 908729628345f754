import type { Logger } from 'pino';
import { KbError } from '../../shared/errors/index.js';
import type { Inventory } from '../../shared/inventory/index.js';
import { issueCertificate, parseCsr, PkiError } from '../../shared/tls/index.js';
import type { Store } from '../store/types.js';
import type { Pki } from './pki.js';
import type { RateLimiter } from './rate-limit.js';
import { TokenError, type Tokens } from './tokens.js';

export const DEFAULT_NODE_CERT_TTL_MS = 30 * 86_400_000;

/**
 * Thrown when an enrollment or renewal is refused. `status` is the HTTP status the
 * bootstrap server answers with (400 bad request, 401 bad token, 403 not allowed, 429 too
 * many attempts); the message says why, never echoing a secret.
 */
export class EnrollError extends KbError {
  override name = 'EnrollError';
  constructor(readonly status: 400 | 401 | 403 | 429, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface IssuedNodeCert { node: string; certificatePem: string; caPem: string; serial: string; notAfterMs: number }

export interface EnrollerDeps {
  store: Store;
  tokens: Tokens;
  pki: Pki;
  inventory: () => Inventory;
  nodeCertTtlMs: number;
  limiter: RateLimiter;
  log: Logger;
  /** Called after a node enrolled again: its previous certificate is revoked, close its session. */
  onReenrolled: (node: string) => void;
  /** Whether the node has a live session now (a connected node is only taken over with a token bound to it). */
  isConnected: (node: string) => boolean;
}

/**
 * Issues node certificates: at enrollment (join token + CSR, unauthenticated listener) and
 * at renewal (current certificate, mTLS). Calls are serialized, so a token with one use left
 * is never used twice by concurrent requests.
 */
export class Enroller {
  private chain: Promise<unknown> = Promise.resolve();

  constructor(private readonly deps: EnrollerDeps) {}

  private serialize<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Enrollment from `source` (the peer address). Rate-limited per source before anything else. */
  enroll(req: { token: string; csrPem: string }, source: string): Promise<IssuedNodeCert> {
    const rl = this.deps.limiter.take(source);
    if (!rl.ok) {
      this.deps.log.warn({ source }, 'enrollment rate limit hit');
      return Promise.reject(new EnrollError(429, `too many enrollment attempts from ${source}: retry in ${Math.ceil(rl.retryAfterMs / 1000)} s`));
    }
    return this.serialize(async () => {
      const csr = await this.parse(req.csrPem);
      const node = csr.commonName;
      let token;
      try {
        token = await this.deps.tokens.check(req.token, node);
      } catch (err) {
        if (err instanceof TokenError) {
          this.deps.log.warn({ source, node, reason: err.reason }, 'enrollment refused: token');
          throw new EnrollError(['malformed', 'invalid', 'wrong-ca'].includes(err.reason) ? 401 : 403, err.message, { cause: err });
        }
        throw err;
      }
      this.checkInventory(node, source);
      const previous = await this.deps.store.getNodeIdentity(node);
      if (previous && !token.node && this.deps.isConnected(node)) {
        // A duplicate hostname, or a leaked token used to take over a live node: re-provisioning
        // a node that is still connected needs a token made for it.
        this.deps.log.warn({ source, node, tokenId: token.id }, 'enrollment refused: node connected');
        throw new EnrollError(403, `node "${node}" is enrolled and connected: to re-provision it, use a token bound to it (kbctl token create --node ${node})`);
      }
      const issued = await this.issue(node, csr.publicKey);
      await this.deps.tokens.consume(token, node);
      const now = Date.now();
      await this.deps.store.putNodeIdentity({
        node, serial: issued.serial, notAfterMs: issued.notAfterMs, issuedMs: now, renewedFrom: null, enrolledMs: now, tokenId: token.id, source,
      });
      this.deps.log.info({ node, source, tokenId: token.id, serial: issued.serial, notAfter: new Date(issued.notAfterMs).toISOString(), revokedSerial: previous?.serial }, previous ? 'node enrolled again: previous certificate revoked' : 'node enrolled');
      if (previous) this.deps.onReenrolled(node);
      return issued;
    });
  }

  /** Renewal by a node authenticated with certificate `peer` (already checked current). */
  renew(node: string, peer: { serial: string; notAfterMs: number }, csrPem: string): Promise<IssuedNodeCert> {
    return this.serialize(async () => {
      const csr = await this.parse(csrPem);
      if (csr.commonName !== node) throw new EnrollError(403, `renewal for "${csr.commonName}" refused: this certificate is for node "${node}"`);
      this.checkInventory(node, 'mTLS');
      const identity = await this.deps.store.getNodeIdentity(node);
      if (!identity) throw new EnrollError(403, `node "${node}" has no enrolled certificate`);
      const issued = await this.issue(node, csr.publicKey);
      await this.deps.store.putNodeIdentity({ ...identity, serial: issued.serial, notAfterMs: issued.notAfterMs, issuedMs: Date.now(), renewedFrom: { serial: peer.serial, notAfterMs: peer.notAfterMs } });
      this.deps.log.info({ node, serial: issued.serial, previousSerial: peer.serial, notAfter: new Date(issued.notAfterMs).toISOString() }, 'node certificate renewed');
      return issued;
    });
  }

  private async parse(csrPem: string) {
    try {
      return await parseCsr(csrPem);
    } catch (err) {
      throw new EnrollError(400, err instanceof PkiError ? err.message : `bad certificate signing request: ${(err as Error).message}`, { cause: err });
    }
  }

  private checkInventory(node: string, source: string): void {
    const inv = this.deps.inventory();
    if (!inv.servers.some((s) => s.hostname === node)) {
      this.deps.log.warn({ source, node }, 'enrollment refused: node not in the inventory');
      throw new EnrollError(403, `node "${node}" is not in the inventory ${inv.file}`);
    }
  }

  private async issue(node: string, publicKey: Parameters<typeof issueCertificate>[0]['publicKey']): Promise<IssuedNodeCert> {
    const { pki } = this.deps;
    const c = await issueCertificate({ role: 'node', commonName: node, publicKey, sans: [node], ttlMs: this.deps.nodeCertTtlMs, ca: { certPem: pki.caPem, key: pki.caKey } });
    return { node, certificatePem: c.certPem, caPem: pki.caPem, serial: c.serial, notAfterMs: c.notAfterMs };
  }
}
