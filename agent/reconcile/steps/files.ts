import { randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { FileSpec } from '../../../proto/types.js';
import { inStep } from '../errors.js';
import { hostPathFor } from '../names.js';
import { record } from '../record.js';
import type { ReconcileContext, ReconcileStep, StepRun } from '../types.js';

/** Permission bits kb compares and sets (no file type bits). */
const PERM = 0o7777;

/** What a file on disk needs to match its FileSpec. */
export type FileDrift = 'none' | 'content' | 'mode';

/** Compares the file on disk with `spec`: content first, then permission bits. */
export async function fileDrift(ctx: Pick<ReconcileContext, 'hostRoot'>, spec: FileSpec): Promise<FileDrift> {
  const real = hostPathFor(ctx, spec.path);
  let current: Buffer;
  let mode: number;
  try {
    [current, mode] = await Promise.all([readFile(real), stat(real).then((s) => s.mode & PERM)]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'content';
    throw err;
  }
  if (!current.equals(Buffer.from(spec.content))) return 'content';
  return mode === (spec.mode & PERM) ? 'none' : 'mode';
}

/**
 * Writes `content` to `path` atomically: a temp file in the same directory is written with
 * `mode`, fsynced, renamed over `path`, and the directory is fsynced. A reader sees the old
 * or the new content, never a mix; a crash leaves at most a `.name.kb-tmp-*` file behind.
 * A missing parent directory is created 0700 when `mode` gives group/other nothing (a
 * credentials file: KEYBUZZ.md wants its directory 0700), else 0755; missing ancestors
 * above it are created 0755. Existing directories are left as they are.
 */
export async function writeFileAtomic(path: string, content: Buffer, mode: number): Promise<void> {
  const dir = dirname(path);
  if (!(await exists(dir))) {
    await mkdir(dirname(dir), { recursive: true, mode: 0o755 });
    await mkdir(dir, { mode: (mode & 0o077) === 0 ? 0o700 : 0o755 }).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err; // created concurrently: fine
    });
  }
  const tmp = join(dir, `.${basename(path)}.kb-tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
  const fh = await open(tmp, 'wx', mode & PERM);
  try {
    await fh.writeFile(content);
    await fh.chmod(mode & PERM); // open's mode is filtered by the umask
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, path);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  const dh = await open(dir, 'r');
  try {
    await dh.sync();
  } finally {
    await dh.close();
  }
}

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Step 1: files. Brings every FileSpec of the module to its content and mode, before any
 * container starts (containers read their configuration at start). Files already right are
 * not touched (no write, no mtime change). Files no longer desired are left in place.
 */
export const filesStep: ReconcileStep = {
  name: 'files',
  async run(r: StepRun): Promise<void> {
    const { ctx, state } = r;
    for (const f of state.files) {
      await inStep('files', `file ${f.path}`, state.module, ctx.node, async () => {
        const drift = await fileDrift(ctx, f);
        if (drift === 'none') return;
        const real = hostPathFor(ctx, f.path);
        if (drift === 'mode') {
          await chmod(real, f.mode & PERM);
          record(r, 'files', `chmod ${(f.mode & PERM).toString(8).padStart(4, '0')} ${f.path}`);
        } else {
          await writeFileAtomic(real, Buffer.from(f.content), f.mode);
          record(r, 'files', `write ${f.path}`);
        }
      });
    }
  },
};
