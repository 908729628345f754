/**
 * kbctl's credential file (kubeconfig-like), written by `kb-coordinator init`, mode 0600:
 *
 *   apiVersion: kb/v1
 *   kind: Config
 *   coordinators: [HOST:PORT, ...]   # tried in order
 *   ca: PEM          # the private CA: the only root kbctl trusts
 *   certificate: PEM # admin client certificate (OU=kb-admin)
 *   key: PEM         # its private key
 *
 * Looked up in --config, then $KB_CONFIG, then ~/.kb/config.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { KbError } from '../../shared/errors/index.js';
import { writeFileAtomic } from '../../shared/tls/index.js';

export interface KbConfig {
  coordinators: string[];
  ca: string;
  certificate: string;
  key: string;
}

/** Thrown when the credential file is missing, unreadable or incomplete; names the file. */
export class ConfigFileError extends KbError {
  override name = 'ConfigFileError';
}

export function defaultConfigPath(): string {
  return path.join(os.homedir(), '.kb', 'config');
}

/** The file kbctl uses: explicit path, else KB_CONFIG, else ~/.kb/config. */
export function resolveConfigPath(explicit?: string, env: NodeJS.ProcessEnv = process.env): string {
  return explicit || env.KB_CONFIG || defaultConfigPath();
}

export function writeKbConfig(file: string, c: KbConfig): void {
  const header = '# kb admin credential for kbctl, written by `kb-coordinator init`.\n# It holds a private key: keep it mode 0600, never commit or copy it around.\n';
  writeFileAtomic(file, header + stringify({ apiVersion: 'kb/v1', kind: 'Config', ...c }, { lineWidth: 0 }), 0o600);
}

export function readKbConfig(file: string): KbConfig {
  if (!existsSync(file)) {
    throw new ConfigFileError(`no admin credential: ${file} does not exist. kbctl needs the file written by \`kb-coordinator init\` (--config FILE, KB_CONFIG, or ~/.kb/config)`);
  }
  const mode = statSync(file).mode & 0o777;
  if (mode & 0o077) throw new ConfigFileError(`${file}: mode ${mode.toString(8).padStart(4, '0')} lets other users read the admin key: chmod 600 ${file}`);
  let doc: unknown;
  try {
    doc = parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigFileError(`${file}: not valid YAML: ${(err as Error).message}`, { cause: err });
  }
  const d = (doc ?? {}) as Record<string, unknown>;
  const missing = ['ca', 'certificate', 'key'].filter((k) => typeof d[k] !== 'string' || !(d[k] as string).includes('-----BEGIN'));
  if (missing.length) throw new ConfigFileError(`${file}: field ${missing.join(', ')} missing or not PEM: the admin credential needs ca, certificate and key`);
  const coordinators = Array.isArray(d.coordinators) ? d.coordinators.filter((x): x is string => typeof x === 'string') : [];
  if (!coordinators.length) throw new ConfigFileError(`${file}: field coordinators: expected a list of HOST:PORT`);
  return { coordinators, ca: d.ca as string, certificate: d.certificate as string, key: d.key as string };
}
