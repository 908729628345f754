/**
 * Join tokens: `K10<sha256 hex of the CA public key>::<id>.<secret>`.
 *
 * The pin lets a new node check it talks to the right coordinator (the CA whose key hashes
 * to it) BEFORE it sends the secret anywhere. The id names the token in `kbctl token list`;
 * the secret is only ever stored hashed (sha256: the secret is 120 random bits, so a slow
 * hash adds nothing).
 */
import { createHash, randomInt, timingSafeEqual } from 'node:crypto';
import { KbError } from '../errors/index.js';

export class TokenFormatError extends KbError {
  override name = 'TokenFormatError';
}

export interface ParsedToken { pin: string; id: string; secret: string }

const TOKEN_RE = /^K10([0-9a-f]{64})::([a-z0-9]{6})\.([a-z0-9]{24})$/;
const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

function randomText(n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += ALPHABET[randomInt(ALPHABET.length)];
  return s;
}

/** A new token id (6 chars) and secret (24 chars, ~124 bits). */
export function newTokenParts(): { id: string; secret: string } {
  return { id: randomText(6), secret: randomText(24) };
}

export function formatToken(pin: string, id: string, secret: string): string {
  return `K10${pin}::${id}.${secret}`;
}

/** Parses a token; the message never echoes the secret. */
export function parseToken(text: string): ParsedToken {
  const m = TOKEN_RE.exec(text.trim());
  if (!m) throw new TokenFormatError('malformed join token: expected K10<64 hex>::<id>.<secret> (as printed by `kbctl token create`)');
  return { pin: m[1]!, id: m[2]!, secret: m[3]! };
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Constant-time comparison of a presented secret with a stored hash. */
export function secretMatches(secret: string, storedHash: string): boolean {
  const a = Buffer.from(hashSecret(secret), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
