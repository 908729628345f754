/**
 * The node's identity on disk (`--tls-dir`, default /etc/kb-agent, mode 0700):
 *
 *   node.key  the node's private key, made on this node, never sent anywhere   0600
 *   node.crt  its certificate (CN = node name), issued at enrollment/renewal   0644
 *   ca.crt    the private CA, checked against the join token's pin           0644
 *
 * Writes are atomic per file; the key is written before the certificate, and a pair that
 * does not match is reported by `checkIdentity` (never used silently).
 */
import * as grpc from '@grpc/grpc-js';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../shared/tls/files.js';
import { certInfo, isIssuedBy, type CertInfo } from '../shared/tls/x509.js';

export interface IdentityPaths { dir: string; key: string; cert: string; ca: string }

export function identityPaths(dir: string): IdentityPaths {
  return { dir, key: path.join(dir, 'node.key'), cert: path.join(dir, 'node.crt'), ca: path.join(dir, 'ca.crt') };
}

export interface Identity { keyPem: string; certPem: string; caPem: string; info: CertInfo }

/** Reads the identity files, or undefined when any is missing. */
export function loadIdentity(dir: string): Identity | undefined {
  const p = identityPaths(dir);
  if (![p.key, p.cert, p.ca].every((f) => existsSync(f))) return undefined;
  const certPem = readFileSync(p.cert, 'utf8');
  return { keyPem: readFileSync(p.key, 'utf8'), certPem, caPem: readFileSync(p.ca, 'utf8'), info: certInfo(certPem) };
}

/** Saves an identity: key (0600) first, then certificate and CA (0644), directory 0700. */
export function saveIdentity(dir: string, id: { keyPem: string; certPem: string; caPem: string }): void {
  const p = identityPaths(dir);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  writeFileAtomic(p.ca, id.caPem, 0o644);
  writeFileAtomic(p.key, id.keyPem, 0o600);
  writeFileAtomic(p.cert, id.certPem, 0o644);
}

/** True when the certificate carries the public half of the key. */
export function keyMatchesCert(keyPem: string, certPem: string): boolean {
  try {
    const fromKey = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
    const fromCert = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
    return fromKey.equals(fromCert);
  } catch {
    return false;
  }
}

/**
 * Whether the identity in `dir` can be used by `node` now: present, a node certificate for
 * that node, issued by the stored CA, matching the key, and not expired (a certificate
 * close to its end is still usable: the renewer renews it at once).
 */
export function checkIdentity(dir: string, node: string, now = Date.now(), marginMs = 0): { ok: true; identity: Identity } | { ok: false; reason: string } {
  let id: Identity | undefined;
  try {
    id = loadIdentity(dir);
  } catch (err) {
    return { ok: false, reason: `${identityPaths(dir).cert}: ${(err as Error).message}` };
  }
  if (!id) return { ok: false, reason: `no certificate in ${dir}` };
  if (id.info.role !== 'node' || id.info.commonName !== node) return { ok: false, reason: `${identityPaths(dir).cert} is for ${id.info.role ?? 'unknown'} "${id.info.commonName}", not node "${node}"` };
  if (!isIssuedBy(id.certPem, id.caPem)) return { ok: false, reason: `${identityPaths(dir).cert} is not issued by ${identityPaths(dir).ca}` };
  if (!keyMatchesCert(id.keyPem, id.certPem)) return { ok: false, reason: `${identityPaths(dir).key} does not match ${identityPaths(dir).cert}` };
  if (id.info.notAfterMs - marginMs <= now) return { ok: false, reason: `${identityPaths(dir).cert} expired at ${new Date(id.info.notAfterMs).toISOString()}` };
  return { ok: true, identity: id };
}

/**
 * gRPC channel credentials from the identity on disk, read at each call so a reconnect
 * uses the newest (renewed) certificate. The private CA is the only trusted root.
 */
export function channelCredentials(dir: string): grpc.ChannelCredentials {
  const id = loadIdentity(dir);
  if (!id) throw new Error(`no node certificate in ${dir}`);
  return grpc.credentials.createSsl(Buffer.from(id.caPem), Buffer.from(id.keyPem), Buffer.from(id.certPem));
}
