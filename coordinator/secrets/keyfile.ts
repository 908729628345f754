import { randomBytes } from 'node:crypto';
import { closeSync, constants, fsyncSync, fstatSync, lstatSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { KbError } from '../../shared/errors/index.js';

/** File name of the secret store key in the coordinator's data directory. */
export const SECRET_KEY_FILE = 'secrets.key';
const KEY_BYTES = 32;

/** Thrown when the key file is missing, unsafe (symlink, readable by others) or malformed. */
export class SecretKeyError extends KbError {
  override name = 'SecretKeyError';
}

/**
 * Creates the AES-256 key of the secret store if it does not exist: 32 random bytes in
 * `<dataDir>/secrets.key`, mode 0600, created with O_EXCL (never overwrites, so two
 * concurrent callers cannot end with different keys) and fsynced with its directory.
 * `kb-coordinator init` calls it; `run` calls it too until init exists. Returns the key.
 * Safe to call many times; an existing key is loaded and checked (see loadSecretKey).
 */
export function ensureSecretKey(dataDir: string): Buffer {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = path.join(dataDir, SECRET_KEY_FILE);
  let fd: number;
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadSecretKey(dataDir);
    throw new SecretKeyError(`create ${file}: ${(err as Error).message}`, { cause: err });
  }
  const key = randomBytes(KEY_BYTES);
  try {
    writeSync(fd, key);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const dfd = openSync(dataDir, 'r');
  try {
    fsyncSync(dfd);
  } finally {
    closeSync(dfd);
  }
  return key;
}

/**
 * Loads the key. Refuses a symlink, a file group/other can access, or a file that is not
 * exactly 32 bytes, with a message that says what to do.
 */
export function loadSecretKey(dataDir: string): Buffer {
  const file = path.join(dataDir, SECRET_KEY_FILE);
  let st;
  try {
    st = lstatSync(file);
  } catch (err) {
    throw new SecretKeyError(`secret store key ${file} is missing: run \`kb-coordinator init\` (or restore it from backup: the store cannot be read without it)`, { cause: err });
  }
  if (st.isSymbolicLink() || !st.isFile()) throw new SecretKeyError(`secret store key ${file} must be a regular file, not a symlink`);
  if ((st.mode & 0o077) !== 0) throw new SecretKeyError(`secret store key ${file} has mode ${(st.mode & 0o777).toString(8)}: it must be 0600 (chmod 600 ${file})`);
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    if (fstatSync(fd).size !== KEY_BYTES) throw new SecretKeyError(`secret store key ${file} is not ${KEY_BYTES} bytes long`);
    const key = Buffer.alloc(KEY_BYTES);
    readSync(fd, key, 0, KEY_BYTES, 0);
    return key;
  } finally {
    closeSync(fd);
  }
}
