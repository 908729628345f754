/**
 * X.509 for kb's private PKI: ECDSA P-256 keys and certificates made with @peculiar/x509 on
 * Node's WebCrypto (no hand-rolled ASN.1), parsed with Node's own X509Certificate.
 *
 * Roles are carried in the subject's OU (see `ROLE_OU`): the coordinator's serving
 * certificate, node certificates (CN = node name, also a DNS SAN) and admin certificates.
 * Every function here is pure or async-pure (no files, no network): callers decide where
 * keys live (always mode 0600, see ./files.ts).
 */
// tsyringe (used inside @peculiar/x509) needs the Reflect metadata polyfill loaded first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { createHash, createPrivateKey, createPublicKey, randomBytes, webcrypto, X509Certificate as NodeCert } from 'node:crypto';
import { isIP } from 'node:net';
import { KbError } from '../errors/index.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

const subtle = webcrypto.subtle;
export const KEY_ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256' } as const;
const SIGNING_ALGORITHM = { name: 'ECDSA', hash: 'SHA-256' } as const;

/** What a certificate is for. The OU of the subject says it; authorization reads it. */
export type CertRole = 'coordinator' | 'node' | 'admin';
export const ROLE_OU: Record<CertRole, string> = { coordinator: 'kb-coordinator', node: 'kb-node', admin: 'kb-admin' };
const ORG = 'kb';

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

const SKEW_MS = 5 * 60_000;

export interface CaMaterial { certPem: string; keyPem: string }

/** A new self-signed CA certificate (10 years by default) and its key. */
export async function createCa(commonName = 'kb private CA', ttlMs = 10 * 365 * 24 * 3600_000): Promise<CaMaterial> {
  const keys = await generateKeyPair();
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: newSerial(),
    name: `CN=${commonName}, O=${ORG}`,
    notBefore: new Date(now - SKEW_MS),
    notAfter: new Date(now + ttlMs),
    keys: keys as unknown as CryptoKeyPair,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey as unknown as CryptoKey),
    ],
  });
  return { certPem: cert.toString('pem') + '\n', keyPem: await exportPrivateKeyPem(keys.privateKey) };
}

export interface IssueParams {
  role: CertRole;
  /** Subject CN: the node name, "kb-admin" or the coordinator's name. */
  commonName: string;
  publicKey: webcrypto.CryptoKey;
  /** DNS names and IP addresses for the subjectAltName. */
  sans?: string[];
  ttlMs: number;
  ca: { certPem: string; key: webcrypto.CryptoKey };
  serial?: string;
}

/** Issues a leaf certificate signed by the CA. Coordinator: serverAuth; node and admin: clientAuth. */
export async function issueCertificate(p: IssueParams): Promise<{ certPem: string; serial: string; notAfterMs: number }> {
  const caCert = new x509.X509Certificate(p.ca.certPem);
  const serial = p.serial ?? newSerial();
  const now = Date.now();
  const notAfterMs = Math.min(now + p.ttlMs, caCert.notAfter.getTime());
  // Back-dated for clock skew, by at most a tenth of the lifetime so short test lifetimes stay meaningful.
  const skew = Math.min(SKEW_MS, Math.floor(p.ttlMs / 10));
  const sans = (p.sans ?? []).map((s) => (isIP(s) ? { type: 'ip' as const, value: s } : { type: 'dns' as const, value: s }));
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
    new x509.ExtendedKeyUsageExtension([p.role === 'coordinator' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth], false),
    await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
    await x509.SubjectKeyIdentifierExtension.create(p.publicKey as unknown as CryptoKey),
  ];
  if (sans.length) extensions.push(new x509.SubjectAlternativeNameExtension(sans, false));
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject: `CN=${p.commonName}, OU=${ROLE_OU[p.role]}, O=${ORG}`,
    issuer: caCert.subject,
    notBefore: new Date(now - skew),
    notAfter: new Date(notAfterMs),
    publicKey: p.publicKey as unknown as CryptoKey,
    signingKey: p.ca.key as unknown as CryptoKey,
    signingAlgorithm: SIGNING_ALGORITHM,
    extensions,
  });
  return { certPem: cert.toString('pem') + '\n', serial: normalizeSerial(serial), notAfterMs };
}

/** A PKCS#10 request for a node certificate: CN = node name, signed by the node's own key. */
export async function createCsr(nodeName: string, keys: KeyPair): Promise<string> {
  checkNodeName(nodeName);
  const csr = await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${nodeName}`,
    keys: keys as unknown as CryptoKeyPair,
    signingAlgorithm: SIGNING_ALGORITHM,
  });
  return csr.toString('pem') + '\n';
}

export interface ParsedCsr { commonName: string; publicKey: webcrypto.CryptoKey }

/**
 * Parses and verifies a CSR: well-formed PEM, self-signature valid, ECDSA P-256 key,
 * CN a valid node name. Throws PkiError naming what is wrong.
 */
export async function parseCsr(csrPem: string): Promise<ParsedCsr> {
  let csr: x509.Pkcs10CertificateRequest;
  try {
    csr = new x509.Pkcs10CertificateRequest(csrPem);
  } catch (err) {
    throw new PkiError(`malformed certificate signing request: ${(err as Error).message}`, { cause: err });
  }
  const alg = csr.publicKey.algorithm as { name?: string; namedCurve?: string };
  if (alg.name !== 'ECDSA' || alg.namedCurve !== 'P-256') throw new PkiError('certificate signing request: key must be ECDSA P-256');
  if (!(await csr.verify())) throw new PkiError('certificate signing request: signature does not verify');
  const cns = csr.subjectName.getField('CN');
  if (cns.length !== 1) throw new PkiError('certificate signing request: subject must have exactly one CN (the node name)');
  const commonName = cns[0]!;
  checkNodeName(commonName);
  const publicKey = await csr.publicKey.export(KEY_ALGORITHM, ['verify']);
  return { commonName, publicKey: publicKey as unknown as webcrypto.CryptoKey };
}

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
