/**
 * Making certificates and CSRs for kb's private PKI with @peculiar/x509 on Node's WebCrypto
 * (no hand-rolled ASN.1). Apart from ./x509.ts so that only the processes that make them
 * load the library: the coordinator, and the agent while it enrolls or renews (it imports
 * this module dynamically).
 */
// tsyringe (used inside @peculiar/x509) needs the Reflect metadata polyfill loaded first.
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import { isIP } from 'node:net';
import { KEY_ALGORITHM, ORG, PkiError, ROLE_OU, SIGNING_ALGORITHM, SKEW_MS, checkNodeName, exportPrivateKeyPem, generateKeyPair, newSerial, normalizeSerial, type CertRole, type KeyPair } from './x509.js';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

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
