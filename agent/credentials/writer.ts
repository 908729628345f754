import { randomBytes } from 'node:crypto';
import { closeSync, constants, openSync, readFileSync } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, rename, unlink, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { CREDENTIALS_DIR } from '../../shared/credentials/index.js';
import { ApplyError, errorMessage } from '../../shared/errors/index.js';

/**
 * Thrown when a credentials write or read is refused because the path is unsafe: a name that
 * is not a plain file name (`..`, `/`, an absolute path), a symlink at the target or in the
 * directory path, a target that is not a regular file, a directory not owned by the agent.
 * Nothing is written and the symlink's target is never opened.
 */
export class CredentialsRefusedError extends ApplyError {
  override name = 'CredentialsRefusedError';
}

/** Thrown when a credentials file cannot be written (disk full, I/O error); the previous file is intact. */
export class CredentialsWriteError extends ApplyError {
  override name = 'CredentialsWriteError';
}

/** What is at a credentials file's path, read without following symlinks. */
export type FileStatus =
  | { kind: 'missing' }
  | { kind: 'symlink' }
  | { kind: 'other' }
  | { kind: 'file'; mode: number; uid: number; gid: number; ino: number; size: number; mtimeMs: number };

export interface Owner { mode: number; uid: number; gid: number }

/** Plain file names only: letters, digits, `.`, `_`, `-`; not starting with a dot. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;
const TMP_MARK = '.kb-tmp-';

/**
 * The credentials directory of this node (KEYBUZZ.md: /opt/keybuzz-installer/credentials,
 * under the agent's host root) and the only code that writes in it.
 *
 * Guarantees:
 *  - the directory is a real directory (no component below the host root is a symlink),
 *    owned by the agent's user, mode 0700 (repaired when wider);
 *  - files are written atomically and durably: a temporary file in the same directory
 *    (O_CREAT|O_EXCL|O_NOFOLLOW, 0600), fchown + fchmod, fsync, rename over the target, fsync
 *    of the directory. A crash (kill -9) at any point leaves the complete old or the complete
 *    new file; a failed write (disk full) leaves the old file and removes the temporary one;
 *  - a name that is not a plain file name, or a symlink at the target, is refused with
 *    CredentialsRefusedError and nothing is written; reads open with O_NOFOLLOW.
 * Calls are not serialized here: the agent applies one module state at a time.
 */
export class CredentialsDir {
  /** Real path of the directory (host root joined with CREDENTIALS_DIR). */
  readonly path: string;

  constructor(private readonly hostRoot: string, dir: string = CREDENTIALS_DIR, private readonly uid = process.getuid?.() ?? 0) {
    if (!path.isAbsolute(dir) || dir.split('/').includes('..')) throw new CredentialsRefusedError(`credentials directory "${dir}" must be absolute without ".."`);
    this.path = path.join(hostRoot, path.posix.normalize(dir));
  }

  /** Refuses anything but a plain file name. */
  static checkName(name: string): void {
    if (!NAME.test(name) || name.includes(TMP_MARK)) {
      throw new CredentialsRefusedError(`refused credentials file "${name}": only a plain file name inside the credentials directory is allowed (no "/", "..", absolute path or leading dot)`);
    }
  }

  /** Real path of file `name` (checked). */
  fileFor(name: string): string {
    CredentialsDir.checkName(name);
    return path.join(this.path, name);
  }

  /**
   * Creates the directory if needed (missing ancestors 0755, the directory 0700) and checks
   * it. Returns what it changed ('mkdir ...', 'chmod 0700 ...'). Idempotent.
   */
  async ensure(): Promise<string[]> {
    const actions: string[] = [];
    await mkdir(this.hostRoot, { recursive: true, mode: 0o755 }); // '/' in production; a test's temp root otherwise
    const rel = path.relative(this.hostRoot, this.path).split(path.sep).filter(Boolean);
    let cur = this.hostRoot;
    for (const [i, part] of rel.entries()) {
      cur = path.join(cur, part);
      const last = i === rel.length - 1;
      let st;
      try {
        st = await lstat(cur);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        await mkdir(cur, { mode: last ? 0o700 : 0o755 }).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'EEXIST') throw e; });
        actions.push(`mkdir ${cur}`);
        st = await lstat(cur);
      }
      if (st.isSymbolicLink()) throw new CredentialsRefusedError(`refused: ${cur} is a symlink; the credentials directory path must consist of real directories`);
      if (!st.isDirectory()) throw new CredentialsRefusedError(`refused: ${cur} is not a directory`);
      if (last) {
        if (st.uid !== this.uid) throw new CredentialsRefusedError(`refused: credentials directory ${cur} is owned by uid ${st.uid}, not by the agent (uid ${this.uid})`);
        if ((st.mode & 0o777) !== 0o700) {
          await chmod(cur, 0o700);
          actions.push(`chmod 0700 ${cur}`);
        }
      }
    }
    return actions;
  }

  /** What is at `name` now, without following a symlink. */
  async status(name: string): Promise<FileStatus> {
    const file = this.fileFor(name);
    try {
      const st = await lstat(file);
      if (st.isSymbolicLink()) return { kind: 'symlink' };
      if (!st.isFile()) return { kind: 'other' };
      return { kind: 'file', mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
      throw err;
    }
  }

  /** Content of `name`, or undefined when missing. Refuses a symlink (O_NOFOLLOW). */
  async read(name: string): Promise<string | undefined> {
    const file = this.fileFor(name);
    let fh: FileHandle;
    try {
      fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      return notOpened(file, err);
    }
    try {
      return await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  }

  /** Same as `read`, synchronously. */
  readSync(name: string): string | undefined {
    const file = this.fileFor(name);
    let fd: number;
    try {
      fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      return notOpened(file, err);
    }
    try {
      return readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Writes `content` to `name` atomically with `owner` (mode, uid, gid). `pause` is the
   * test-only pause hook, called between the fsync of the temporary file and the rename.
   * Returns the new file's status.
   */
  async write(name: string, content: Buffer, owner: Owner, pause?: (point: string) => Promise<void>): Promise<FileStatus & { kind: 'file' }> {
    const target = this.fileFor(name);
    await this.ensure();
    await this.refuseUnsafeTarget(target);
    const tmp = path.join(this.path, `.${name}${TMP_MARK}${process.pid}-${randomBytes(4).toString('hex')}`);
    let fh: FileHandle | undefined;
    try {
      fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      await fh.writeFile(content);
      await fh.chown(owner.uid, owner.gid);
      await fh.chmod(owner.mode & 0o7777);
      await fh.sync();
      await fh.close();
      fh = undefined;
      await pause?.(`credentials-before-rename/${name}`);
      await this.refuseUnsafeTarget(target);
      await rename(tmp, target);
    } catch (err) {
      await fh?.close().catch(() => undefined);
      await unlink(tmp).catch(() => undefined);
      if (err instanceof CredentialsRefusedError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOSPC' || code === 'EDQUOT') {
        throw new CredentialsWriteError(`write ${target}: disk full (${code}) in ${this.path}; the previous file is intact`, { cause: err });
      }
      throw new CredentialsWriteError(`write ${target}: ${errorMessage(err)}; the previous file is intact`, { cause: err });
    }
    await this.syncDir();
    const st = await this.status(name);
    if (st.kind !== 'file') throw new CredentialsWriteError(`write ${target}: the file is not there after the rename`);
    return st;
  }

  /** Sets mode and owner of an existing regular file without following a symlink. */
  async fixOwner(name: string, owner: Owner): Promise<void> {
    const file = this.fileFor(name);
    let fh: FileHandle;
    try {
      fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ELOOP') throw new CredentialsRefusedError(`refused: ${file} is a symlink; its target is left untouched`);
      throw err;
    }
    try {
      if (!(await fh.stat()).isFile()) throw new CredentialsRefusedError(`refused: ${file} is not a regular file`);
      await fh.chown(owner.uid, owner.gid);
      await fh.chmod(owner.mode & 0o7777);
    } finally {
      await fh.close();
    }
  }

  /** Removes temporary files a crash left behind (they may hold secrets). Returns how many. */
  async cleanupTemps(): Promise<number> {
    let names: string[];
    try {
      names = await readdir(this.path);
    } catch {
      return 0;
    }
    let n = 0;
    for (const f of names) {
      if (f.startsWith('.') && f.includes(TMP_MARK)) {
        await unlink(path.join(this.path, f)).then(() => n++, () => undefined);
      }
    }
    if (n) await this.syncDir();
    return n;
  }

  private async refuseUnsafeTarget(target: string): Promise<void> {
    try {
      const st = await lstat(target);
      if (st.isSymbolicLink()) throw new CredentialsRefusedError(`refused: ${target} is a symlink; nothing was written and its target is left untouched`);
      if (!st.isFile()) throw new CredentialsRefusedError(`refused: ${target} exists and is not a regular file`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
  }

  private async syncDir(): Promise<void> {
    const dh = await open(this.path, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW);
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }
}

/** Why a credentials file could not be opened for reading: missing (undefined), a symlink (refused), or the error itself. */
function notOpened(file: string, err: unknown): undefined {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return undefined;
  if (code === 'ELOOP') throw new CredentialsRefusedError(`refused to read ${file}: it is a symlink`);
  throw err;
}
