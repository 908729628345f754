import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { CheckResult, ModuleState } from '../../proto/types.js';
import { parseEnvFile } from '../../shared/credentials/index.js';
import { errorMessage } from '../../shared/errors/index.js';
import { atomicWrite } from '../state.js';
import { desiredCredentialFiles, type DesiredCredentialFile, type SecretValues } from './files.js';
import { CredentialsDir, CredentialsRefusedError, type FileStatus } from './writer.js';

export { CredentialsDir, CredentialsRefusedError, CredentialsWriteError } from './writer.js';
export { desiredCredentialFiles, type SecretValues } from './files.js';

/** What the agent remembers about a file it wrote: what it was made from, and its inode/size/mtime then. Never content. */
interface WrittenRecord { ident: string; ino: number; size: number; mtimeMs: number }

/** How a credentials file compares with what the state wants. */
export type CredentialDrift = 'none' | 'owner' | 'content' | 'symlink' | 'other';

/**
 * The credentials directory plus the agent's memory of what it wrote there
 * (`<stateDir>/credentials.json`: file name -> source identity, inode, size, mtime; no
 * content, no digest of content). A file whose identity, inode, size or mtime differs from
 * the record (edited by hand, replaced, written for another version) must be rewritten, which
 * needs the values: the agent holds them only during the apply they came with, and otherwise
 * asks the coordinator to resend them.
 */
export class Credentials {
  private readonly recordFile: string;
  private written: Record<string, WrittenRecord>;

  constructor(readonly dir: CredentialsDir, stateDir: string) {
    this.recordFile = path.join(stateDir, 'credentials.json');
    this.written = existsSync(this.recordFile) ? (JSON.parse(readFileSync(this.recordFile, 'utf8')) as { files: Record<string, WrittenRecord> }).files : {};
  }

  /** Compares one wanted file with the disk. */
  async drift(f: DesiredCredentialFile): Promise<{ drift: CredentialDrift; status: FileStatus }> {
    const status = await this.dir.status(f.file);
    if (status.kind === 'symlink' || status.kind === 'other') return { drift: status.kind, status };
    if (status.kind === 'missing') return { drift: 'content', status };
    const w = this.written[f.file];
    if (!w || w.ident !== f.ident || w.ino !== status.ino || w.size !== status.size || w.mtimeMs !== status.mtimeMs) return { drift: 'content', status };
    if (status.mode !== (f.owner.mode & 0o7777) || status.uid !== f.owner.uid || status.gid !== f.owner.gid) return { drift: 'owner', status };
    return { drift: 'none', status };
  }

  /** Writes one file (see CredentialsDir.write) and remembers it. */
  async write(f: DesiredCredentialFile, values: SecretValues, pause?: (point: string) => Promise<void>): Promise<void> {
    const st = await this.dir.write(f.file, f.render(values), f.owner, pause);
    this.written = { ...this.written, [f.file]: { ident: f.ident, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs } };
    atomicWrite(this.recordFile, JSON.stringify({ version: 1, files: this.written }), 0o600);
  }

  /** One check result per credentials file of `state`: `credentials <file>`. Reads metadata only. */
  async checks(state: ModuleState): Promise<CheckResult[]> {
    let files: DesiredCredentialFile[];
    try {
      files = desiredCredentialFiles(state);
    } catch (err) {
      return [{ name: 'credentials', ok: false, observed: errorMessage(err) }];
    }
    return Promise.all(files.map(async (f): Promise<CheckResult> => {
      const name = `credentials ${f.file}`;
      try {
        const { drift, status } = await this.drift(f);
        switch (drift) {
          case 'none': return { name, ok: true, observed: `${f.ident.startsWith('env:') ? f.ident.slice(4) : 'rendered'}, ${mode(status)}` };
          case 'owner': return { name, ok: false, observed: `${mode(status)}, want ${(f.owner.mode & 0o7777).toString(8).padStart(4, '0')} ${f.owner.uid}:${f.owner.gid}` };
          case 'content': return { name, ok: false, observed: status.kind === 'missing' ? 'missing' : 'changed on disk or not yet written for this version' };
          case 'symlink': return { name, ok: false, observed: 'refused: a symlink is at the target path (left untouched)' };
          case 'other': return { name, ok: false, observed: 'refused: the target path is not a regular file' };
        }
      } catch (err) {
        return { name, ok: false, observed: err instanceof CredentialsRefusedError ? err.message : errorMessage(err) };
      }
    }));
  }

  /**
   * Reads variable `variable` of credentials file `file` (e.g. the Redis password for a
   * health check). Undefined when the file or variable is missing. Refuses a symlink.
   */
  async variable(file: string, variable: string): Promise<string | undefined> {
    return (await this.variables(file))?.get(variable);
  }

  /** Every variable of credentials file `file`, or undefined when it is missing. Refuses a symlink. */
  async variables(file: string): Promise<Map<string, string> | undefined> {
    const text = await this.dir.read(file);
    return text === undefined ? undefined : parseEnvFile(text, file).vars;
  }

  /** Same as `variables`, synchronously (for callers that cannot wait: the follower manager). */
  variablesSync(file: string): Map<string, string> | undefined {
    const text = this.dir.readSync(file);
    return text === undefined ? undefined : parseEnvFile(text, file).vars;
  }
}

function mode(s: FileStatus): string {
  return s.kind === 'file' ? `${s.mode.toString(8).padStart(4, '0')} ${s.uid}:${s.gid}` : s.kind;
}
