import { mkdirSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../shared/tls/files.js';
import path from 'node:path';
import type { ModuleState } from '../proto/types.js';

/** What the agent keeps on disk: the last desired state of each module. */
export interface DesiredFile {
  version: 1;
  modules: Record<string, ModuleState>;
}

/**
 * The agent's on-disk desired state (`<stateDir>/desired.json`).
 *
 * Writes are atomic and durable: temp file in the same directory, fsync, rename over the
 * target, fsync the directory. A crash at any point leaves either the complete old file
 * or the complete new one. The file holds only what the coordinator sent (module specs),
 * mode 0600 in a 0700 directory.
 */
export class DesiredStore {
  readonly file: string;

  constructor(readonly stateDir: string) {
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    this.file = path.join(stateDir, 'desired.json');
  }

  load(): DesiredFile {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, modules: {} };
      throw err;
    }
    const parsed = JSON.parse(text, (_k, v: unknown) =>
      v && typeof v === 'object' && typeof (v as { $b64?: unknown }).$b64 === 'string' ? Buffer.from((v as { $b64: string }).$b64, 'base64') : v) as DesiredFile;
    if (parsed.version !== 1 || typeof parsed.modules !== 'object') throw new Error(`${this.file}: unknown format`);
    return parsed;
  }

  save(d: DesiredFile): void {
    const text = JSON.stringify(d, (_k, v: unknown) => {
      if (v && typeof v === 'object' && (v as { type?: string }).type === 'Buffer' && Array.isArray((v as { data?: unknown }).data)) {
        return { $b64: Buffer.from((v as { data: number[] }).data).toString('base64') };
      }
      return v;
    });
    atomicWrite(this.file, text, 0o600);
  }
}

/** Writes `content` to `file` atomically and durably (see shared/tls/files.ts). */
export const atomicWrite = (file: string, content: string | Buffer, mode: number): void => writeFileAtomic(file, content, mode);
