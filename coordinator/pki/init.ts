import { existsSync } from 'node:fs';
import path from 'node:path';
import { generateKeyPair, exportPrivateKeyPem, isIssuedBy, certInfo, issueCertificate, PkiError } from '../../shared/tls/index.js';
import { readKbConfig, writeKbConfig } from '../kbctl/config.js';
import { ensureSecretKey, SECRET_KEY_FILE } from '../secrets/keyfile.js';
import { ADMIN_CERT_TTL_MS, ensurePki } from './pki.js';

export interface InitOptions {
  dataDir: string;
  /** Names and addresses agents and kbctl dial: all go into the serving certificate. */
  sans: string[];
  /** Coordinator addresses written into the admin credential (HOST:PORT). */
  coordinators: string[];
  /** Where the admin credential for kbctl is written (mode 0600). */
  adminConfig: string;
}

/**
 * `kb-coordinator init`: the CA, the serving certificate, the admin credential and the
 * secret store key (`<dataDir>/secrets.key`, AES-256, 0600; see coordinator/secrets).
 * Idempotent: what exists and is valid is kept (never an existing CA); returns one line
 * per item saying what was created or kept.
 */
export async function initCoordinator(o: InitOptions): Promise<string[]> {
  const { pki, created, kept } = await ensurePki(o.dataDir, o.sans);
  const lines = [...created.map((c) => `created ${c}`), ...kept.map((k) => `kept ${k}`)];
  const keyFile = path.join(o.dataDir, SECRET_KEY_FILE);
  const hadKey = existsSync(keyFile);
  ensureSecretKey(o.dataDir);
  lines.push(hadKey ? `kept secret store key ${keyFile}` : `created secret store key ${keyFile} (mode 0600)`);
  if (existsSync(o.adminConfig)) {
    const cfg = readKbConfig(o.adminConfig);
    if (!isIssuedBy(cfg.certificate, pki.caPem)) {
      throw new PkiError(`${o.adminConfig} holds a credential of another CA: refusing to overwrite it (choose another --admin-config)`);
    }
    if (certInfo(cfg.certificate).notAfterMs - Date.now() > 30 * 86_400_000) {
      lines.push(`kept admin credential ${o.adminConfig}`);
      return lines;
    }
  }
  const keys = await generateKeyPair();
  const cert = await issueCertificate({ role: 'admin', commonName: 'kb-admin', publicKey: keys.publicKey, ttlMs: ADMIN_CERT_TTL_MS, ca: { certPem: pki.caPem, key: pki.caKey } });
  writeKbConfig(o.adminConfig, { coordinators: o.coordinators, ca: pki.caPem, certificate: cert.certPem, key: await exportPrivateKeyPem(keys.privateKey) });
  lines.push(`created admin credential ${o.adminConfig} (mode 0600; kbctl reads it with --config, KB_CONFIG or ~/.kb/config)`);
  return lines;
}
