/**
 * Enrollment: a node without a certificate joins with a token.
 *
 *   1. fetch the coordinator's CA (/ca.crt) and check its public key against the token's
 *      pin: on mismatch, stop — the token is NOT sent;
 *   2. make a key pair here (the private key never leaves this node) and a CSR (CN = node);
 *   3. POST {token, csr} to /v1/enroll over TLS that trusts only that CA;
 *   4. check the certificate (issued by the CA, for this node, for this key) and save it.
 */
import https from 'node:https';
import { KbError } from '../shared/errors/index.js';
import { parseToken } from '../shared/tls/token.js';
import { caPin, certInfo, exportPrivateKeyPem, generateKeyPair, isIssuedBy } from '../shared/tls/x509.js';
import { keyMatchesCert, saveIdentity } from './identity.js';

/** Thrown when enrollment fails; the message says at which step and never contains the token. */
export class EnrollmentError extends KbError {
  override name = 'EnrollmentError';
}

export interface EnrollOptions {
  /** https://HOST:PORT of the coordinator's bootstrap listener. */
  bootstrapUrl: string;
  token: string;
  node: string;
  tlsDir: string;
  timeoutMs?: number;
}

export interface Enrolled { serial: string; notAfterMs: number; coordinators: string[] }

interface Reply { status: number; body: string }

function request(url: URL, o: { method: string; ca?: string; body?: string; timeoutMs: number }): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, {
      method: o.method,
      // Before the pin check the server is unauthenticated (its CA is what is being checked);
      // after it, only that CA is trusted and the name is verified.
      ...(o.ca ? { ca: o.ca, rejectUnauthorized: true } : { rejectUnauthorized: false }),
      headers: o.body ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(o.body) } : {},
      timeout: o.timeoutMs,
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${o.timeoutMs} ms`)));
    req.on('error', reject);
    req.end(o.body);
  });
}

export async function enroll(o: EnrollOptions): Promise<Enrolled> {
  const timeoutMs = o.timeoutMs ?? 30_000;
  let token;
  try {
    token = parseToken(o.token);
  } catch (err) {
    throw new EnrollmentError((err as Error).message);
  }
  let base: URL;
  try {
    base = new URL(o.bootstrapUrl);
  } catch {
    throw new EnrollmentError(`--bootstrap ${o.bootstrapUrl}: expected https://HOST:PORT`);
  }
  if (base.protocol !== 'https:') throw new EnrollmentError(`--bootstrap ${o.bootstrapUrl}: must be https://`);

  const caReply = await request(new URL('/ca.crt', base), { method: 'GET', timeoutMs }).catch((err: unknown) => {
    throw new EnrollmentError(`cannot reach ${base.origin}: ${(err as Error).message}`, { cause: err });
  });
  if (caReply.status !== 200) throw new EnrollmentError(`${base.origin}/ca.crt answered HTTP ${caReply.status}`);
  let pin: string;
  try {
    pin = caPin(caReply.body);
  } catch (err) {
    throw new EnrollmentError(`${base.origin}/ca.crt is not a certificate: ${(err as Error).message}`, { cause: err });
  }
  if (pin !== token.pin) {
    throw new EnrollmentError(`CA pin mismatch: ${base.origin} presents a CA whose public key hashes to ${pin}, but the token expects ${token.pin}. The token was NOT sent; check the coordinator address and the token`);
  }
  const caPem = caReply.body;

  const keys = await generateKeyPair();
  // Loaded only to enroll: the agent never keeps the X.509 library in memory otherwise.
  const { createCsr } = await import('../shared/tls/x509-make.js');
  const csr = await createCsr(o.node, keys);
  const reply = await request(new URL('/v1/enroll', base), { method: 'POST', ca: caPem, body: JSON.stringify({ token: o.token, csr }), timeoutMs }).catch((err: unknown) => {
    throw new EnrollmentError(`enrollment request to ${base.origin} failed: ${(err as Error).message}`, { cause: err });
  });
  let body: { error?: string; certificate?: string; coordinators?: string[] } = {};
  try {
    body = JSON.parse(reply.body) as typeof body;
  } catch { /* reported below */ }
  if (reply.status !== 200 || !body.certificate) {
    throw new EnrollmentError(`enrollment of ${o.node} refused by ${base.origin} (HTTP ${reply.status}): ${body.error ?? reply.body.slice(0, 200)}`);
  }
  const certPem = body.certificate;
  const info = certInfo(certPem);
  const keyPem = await exportPrivateKeyPem(keys.privateKey);
  if (!isIssuedBy(certPem, caPem) || info.commonName !== o.node || info.role !== 'node' || !keyMatchesCert(keyPem, certPem)) {
    throw new EnrollmentError(`${base.origin} returned a certificate that is not a node certificate for ${o.node} from the pinned CA`);
  }
  saveIdentity(o.tlsDir, { keyPem, certPem, caPem });
  return { serial: info.serial, notAfterMs: info.notAfterMs, coordinators: body.coordinators ?? [] };
}
