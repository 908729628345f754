import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { KbError } from '../../shared/errors/index.js';

/** Thrown when a sealed value cannot be opened (wrong key, tampered or swapped record). */
export class SealError extends KbError {
  override name = 'SealError';
}

/** Short identifier of a key: first 8 hex digits of SHA-256 over a label and the key. */
export function keyId(key: Buffer): string {
  return createHash('sha256').update('kb-secret-key-id\0').update(key).digest('hex').slice(0, 8);
}

/** Additional authenticated data binding a sealed value to its secret name and version. */
export function secretAad(name: string, version: number): string {
  return `kb.secret.v1\0${name}\0${version}`;
}

/**
 * AES-256-GCM with a fresh random 96-bit nonce per call. Output: `v1.<nonce>.<ciphertext>.<tag>`
 * (base64url). `aad` is authenticated, not stored: opening with another aad fails, so a
 * sealed record copied under another name or version cannot be opened.
 */
export function seal(key: Buffer, aad: string, plaintext: Buffer): string {
  const nonce = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(Buffer.from(aad));
  const ct = Buffer.concat([c.update(plaintext), c.final()]);
  return ['v1', nonce.toString('base64url'), ct.toString('base64url'), c.getAuthTag().toString('base64url')].join('.');
}

/** Opens what `seal` produced with the same key and aad; throws SealError otherwise. */
export function open(key: Buffer, aad: string, sealed: string): Buffer {
  const parts = sealed.split('.');
  if (parts.length !== 4 || parts[0] !== 'v1') throw new SealError('sealed value has an unknown format');
  try {
    const d = createDecipheriv('aes-256-gcm', key, Buffer.from(parts[1]!, 'base64url'));
    d.setAAD(Buffer.from(aad));
    d.setAuthTag(Buffer.from(parts[3]!, 'base64url'));
    return Buffer.concat([d.update(Buffer.from(parts[2]!, 'base64url')), d.final()]);
  } catch (err) {
    throw new SealError('sealed value cannot be opened: wrong key, or the record was altered', { cause: err });
  }
}
