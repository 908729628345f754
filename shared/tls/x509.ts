/**
 * X.509 for kb's private PKI: ECDSA P-256 keys on Node's WebCrypto, certificates parsed with
 * Node's own X509Certificate. Making certificates and CSRs (@peculiar/x509) is in
 * ./x509-make.ts, kept apart so that a process that only reads certificates (the agent,
 * between enrollments and renewals) never loads that library.
 *
 * Roles are carried in the subject's OU (see `ROLE_OU`): the coordinator's serving
 * certificate, node certificates (CN = node name, also a DNS SAN) and admin certificates.
 * Every function here is pure or async-pure (no files, no network): callers decide where
 * keys live (always mode 0600, see ./files.ts).
 */
import { createHash, createPrivateKey, createPublicKey, randomBytes, webcrypto, X509Certificate as NodeCert } from 'node:crypto';
import { KbError } from '../errors/index.js';

const subtle = webcrypto.subtle;
export const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
export const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** What a certificate is for. The OU of the subject says it; authorization reads it. */
export type CertRole = 'coordinator' | 'node' | 'admin';
export const ROLE_OU: Record<CertRole, string> = { coordinator: 'kb-coordinator', node: 'kb-node', admin: 'kb-admin' };
export const ORG = 'kb';

/** Thrown when a certificate, key or CSR is malformed or does not meet kb's rules. */
export class PkiError extends KbError {
  override name = 'PkiError';
}

/** Node names go into distinguished names: inventory HOSTNAMEs only (letters, digits, dots, dashes). */
export const NODE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9.-]{0,62}$/;

export function checkNodeName(name: string): void {
  if (!NODE_NAME_RE.test(name)) throw new PkiError(`invalid node name "${name}": expected a hostname (letters, digits, dots, dashes)`);
}

export interface KeyPair { privateKey: webcrypto.CryptoKey; publicKey: webcrypto.CryptoKey }

/** A new ECDSA P-256 key pair. The private key never leaves the process that made it unless exported. */
export async function generateKeyPair(): Promise<KeyPair> {
  return (await subtle.generateKey(KEY_ALGORITHM, true, ['sign', 'verify'])) as KeyPair;
}

/** PKCS#8 PEM of a private key. */
export async function exportPrivateKeyPem(key: webcrypto.CryptoKey): Promise<string> {
  const der = Buffer.from(await subtle.exportKey('pkcs8', key));
  return pem('PRIVATE KEY', der);
}

/** Imports a PKCS#8 (or SEC1 "EC PRIVATE KEY") PEM key and derives its public half. */
export async function importKeyPairPem(keyPem: string): Promise<KeyPair> {
  let ko;
  try {
    ko = createPrivateKey(keyPem);
  } catch (err) {
    throw new PkiError(`not a private key: ${(err as Error).message}`, { cause: err });
  }
  if (ko.asymmetricKeyType !== 'ec' || ko.asymmetricKeyDetails?.namedCurve !== 'prime256v1') throw new PkiError('private key is not ECDSA P-256');
  const pkcs8 = ko.export({ type: 'pkcs8', format: 'der' });
  const spki = createPublicKey(ko).export({ type: 'spki', format: 'der' });
  const privateKey = await subtle.importKey('pkcs8', pkcs8, KEY_ALGORITHM, true, ['sign']);
  const publicKey = await subtle.importKey('spki', spki, KEY_ALGORITHM, true, ['verify']);
  return { privateKey, publicKey };
}

function pem(label: string, der: Buffer): string {
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}

/** A positive 128-bit serial in lowercase hex, first byte 0x10-0x7f (no leading-zero ambiguity). */
export function newSerial(): string {
  const b = randomBytes(16);
  b[0] = 0x10 + (b[0]! % 0x70);
  return b.toString('hex');
}

/** Serials compare as lowercase hex without leading zeros (Node prints them uppercase). */
export function normalizeSerial(s: string): string {
  return s.toLowerCase().replace(/^0+(?=.)/, '');
}

/** Certificates are back-dated this much for clock skew. */
export const SKEW_MS = 5 * 60_000;

/** What kb reads from a certificate. */
export interface CertInfo {
  commonName: string;
  /** The role from the OU, or undefined when the OU is none of kb's. */
  role: CertRole | undefined;
  serial: string;
  notBeforeMs: number;
  notAfterMs: number;
  sans: string[];
}

function field(subject: string, key: string): string[] {
  return subject.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
}

/** Reads CN, role (OU), serial, validity and SANs of a PEM or DER certificate. */
export function certInfo(cert: string | Buffer): CertInfo {
  let c: NodeCert;
  try {
    c = new NodeCert(cert);
  } catch (err) {
    throw new PkiError(`not a certificate: ${(err as Error).message}`, { cause: err });
  }
  const ou = field(c.subject, 'OU')[0];
  const role = (Object.keys(ROLE_OU) as CertRole[]).find((r) => ROLE_OU[r] === ou);
  return {
    commonName: field(c.subject, 'CN')[0] ?? '',
    role,
    serial: normalizeSerial(c.serialNumber),
    notBeforeMs: Date.parse(c.validFrom),
    notAfterMs: Date.parse(c.validTo),
    sans: (c.subjectAltName ?? '').split(', ').filter(Boolean).map((s) => s.replace(/^(DNS|IP Address):/, '')),
  };
}

/** True when `cert` was signed by `caPem`'s key (signature and issuer name). */
export function isIssuedBy(cert: string | Buffer, caPem: string): boolean {
  try {
    const c = new NodeCert(cert);
    const ca = new NodeCert(caPem);
    return c.checkIssued(ca) && c.verify(ca.publicKey);
  } catch {
    return false;
  }
}

function spkiDer(certPem: string | Buffer): Buffer {
  return new NodeCert(certPem).publicKey.export({ type: 'spki', format: 'der' });
}

/** The CA pin carried in join tokens: sha256 of the CA's SubjectPublicKeyInfo, lowercase hex. */
export function caPin(caPem: string | Buffer): string {
  return createHash('sha256').update(spkiDer(caPem)).digest('hex');
}

/** curl's `--pinnedpubkey sha256//<base64>` value for a serving certificate's public key. */
export function curlPin(certPem: string | Buffer): string {
  return `sha256//${createHash('sha256').update(spkiDer(certPem)).digest('base64')}`;
}
