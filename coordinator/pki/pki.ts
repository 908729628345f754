/**
 * The coordinator's private PKI on disk (`<data-dir>/pki/`):
 *
 *   ca.crt      the private CA (ECDSA P-256, 10 years)           0644
 *   ca.key      its key                                          0600
 *   server.crt  the coordinator's serving certificate (1 year)   0644
 *   server.key  its key (kept across re-issues: curl pins it)    0600
 *
 * `initPki` creates what is missing and never replaces an existing CA. `loadPki` reads it
 * for `kb-coordinator run` and re-issues the serving certificate when its SANs changed or
 * it expires within 30 days (same key, so printed install commands keep working).
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { createHash, createPrivateKey, createPublicKey, type webcrypto } from 'node:crypto';
import {
  caPin, certInfo, createCa, curlPin, exportPrivateKeyPem, generateKeyPair, importKeyPairPem, isIssuedBy, issueCertificate,
  PkiError, writeFileAtomic,
} from '../../shared/tls/index.js';

export const SERVER_CERT_TTL_MS = 365 * 86_400_000;
export const ADMIN_CERT_TTL_MS = 365 * 86_400_000;
const RENEW_SERVER_WITHIN_MS = 30 * 86_400_000;

export interface PkiPaths { dir: string; caCert: string; caKey: string; serverCert: string; serverKey: string }

export function pkiPaths(dataDir: string): PkiPaths {
  const dir = path.join(dataDir, 'pki');
  return { dir, caCert: path.join(dir, 'ca.crt'), caKey: path.join(dir, 'ca.key'), serverCert: path.join(dir, 'server.crt'), serverKey: path.join(dir, 'server.key') };
}

/** The loaded PKI: what the coordinator signs with and serves. */
export interface Pki {
  paths: PkiPaths;
  caPem: string;
  caKey: webcrypto.CryptoKey;
  serverCertPem: string;
  serverKeyPem: string;
  /** sha256 hex of the CA public key: the pin in join tokens. */
  caPin: string;
  /** curl --pinnedpubkey value of the serving key. */
  serverPin: string;
}

export interface EnsureResult { created: string[]; kept: string[] }

/**
 * Creates the CA if missing (refusing a half-present one) and a serving certificate that
 * covers `sans`. Safe to call twice: an existing CA is never replaced.
 */
export async function ensurePki(dataDir: string, sans: string[]): Promise<EnsureResult & { pki: Pki }> {
  const p = pkiPaths(dataDir);
  const res: EnsureResult = { created: [], kept: [] };
  const hasCert = existsSync(p.caCert);
  const hasKey = existsSync(p.caKey);
  if (hasCert !== hasKey) {
    throw new PkiError(`${hasCert ? p.caKey : p.caCert} is missing but ${hasCert ? p.caCert : p.caKey} exists: refusing to create a new CA over a half-present one (restore the file or move both away)`);
  }
  if (!hasCert) {
    const ca = await createCa();
    writeFileAtomic(p.caKey, ca.keyPem, 0o600);
    writeFileAtomic(p.caCert, ca.certPem, 0o644);
    res.created.push(`CA ${p.caCert}`);
  } else {
    res.kept.push(`CA ${p.caCert}`);
  }
  const caPem = readFileSync(p.caCert, 'utf8');
  const caKeys = await importKeyPairPem(readFileSync(p.caKey, 'utf8'));

  let serverKeyPem = existsSync(p.serverKey) ? readFileSync(p.serverKey, 'utf8') : undefined;
  if (!serverKeyPem) {
    serverKeyPem = await exportPrivateKeyPem((await generateKeyPair()).privateKey);
    writeFileAtomic(p.serverKey, serverKeyPem, 0o600);
  }
  const wanted = [...new Set(sans.filter(Boolean))];
  const current = existsSync(p.serverCert) ? readFileSync(p.serverCert, 'utf8') : undefined;
  const info = current ? certInfo(current) : undefined;
  const fresh = current && info
    && isIssuedBy(current, caPem)
    && info.notAfterMs - Date.now() > RENEW_SERVER_WITHIN_MS
    && wanted.every((s) => info.sans.includes(s))
    && sameKey(current, serverKeyPem);
  if (!fresh) {
    const keys = await importKeyPairPem(serverKeyPem);
    const merged = [...new Set([...(info?.sans ?? []), ...wanted])];
    const issued = await issueCertificate({ role: 'coordinator', commonName: 'kb-coordinator', publicKey: keys.publicKey, sans: merged, ttlMs: SERVER_CERT_TTL_MS, ca: { certPem: caPem, key: caKeys.privateKey } });
    writeFileAtomic(p.serverCert, issued.certPem, 0o644);
    res.created.push(`serving certificate ${p.serverCert} (SANs ${merged.join(', ')})`);
  } else {
    res.kept.push(`serving certificate ${p.serverCert}`);
  }
  const serverCertPem = readFileSync(p.serverCert, 'utf8');
  return {
    ...res,
    pki: { paths: p, caPem, caKey: caKeys.privateKey, serverCertPem, serverKeyPem, caPin: caPin(caPem), serverPin: curlPin(serverCertPem) },
  };
}

function sameKey(certPem: string, keyPem: string): boolean {
  // A certificate matches a key when their public keys hash the same.
  try {
    return curlPin(certPem) === pinOfKey(keyPem);
  } catch {
    return false;
  }
}

function pinOfKey(keyPem: string): string {
  const spki = createPublicKey(createPrivateKey(keyPem)).export({ type: 'spki', format: 'der' });
  return `sha256//${createHash('sha256').update(spki).digest('base64')}`;
}

/** Loads an initialized PKI; throws naming the missing file and the command that creates it. */
export async function loadPki(dataDir: string, sans: string[]): Promise<Pki> {
  const p = pkiPaths(dataDir);
  for (const f of [p.caCert, p.caKey]) {
    if (!existsSync(f)) throw new PkiError(`${f} does not exist: run \`kb-coordinator init --data-dir ${dataDir}\` first (or --plaintext for development on loopback)`);
  }
  return (await ensurePki(dataDir, sans)).pki;
}
