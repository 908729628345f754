import type { TokenInfo } from '../../proto/types.js';
import { KbError } from '../../shared/errors/index.js';
import { formatToken, hashSecret, newTokenParts, parseToken, secretMatches, TokenFormatError } from '../../shared/tls/index.js';
import type { Store, TokenRecord } from '../store/types.js';

export const DEFAULT_TOKEN_TTL_MS = 3_600_000;
export const MAX_TOKEN_TTL_MS = 30 * 86_400_000;

/** Thrown when a join token is refused. `reason` is stable for tests and metrics; the message is for people. */
export class TokenError extends KbError {
  override name = 'TokenError';
  constructor(readonly reason: 'malformed' | 'invalid' | 'wrong-ca' | 'expired' | 'used-up' | 'revoked' | 'wrong-node', message: string) {
    super(message);
  }
}

export type TokenState = 'valid' | 'expired' | 'used-up' | 'revoked';

export function tokenState(t: TokenRecord, now = Date.now()): TokenState {
  if (t.revokedMs !== null) return 'revoked';
  if (t.used >= t.uses) return 'used-up';
  if (now >= t.expiresMs) return 'expired';
  return 'valid';
}

export function toTokenInfo(t: TokenRecord, now = Date.now()): TokenInfo {
  return {
    id: t.id, createdMs: t.createdMs, expiresMs: t.expiresMs, uses: t.uses, used: t.used, node: t.node,
    state: tokenState(t, now), description: t.description, usedBy: t.usedBy,
  };
}

/**
 * Join tokens over the store. Creating and revoking are admin operations (ControlService);
 * `check` and `consume` are used by enrollment, which serializes them (see Enroller).
 */
export class Tokens {
  constructor(private readonly store: Store, private readonly caPin: () => string) {}

  /** Creates a token; the returned text is the only time the secret exists outside the caller. */
  async create(o: { ttlMs: number; uses: number; node: string; description: string }, now = Date.now()): Promise<{ token: string; record: TokenRecord }> {
    if (!(o.ttlMs > 0) || o.ttlMs > MAX_TOKEN_TTL_MS) throw new TokenError('invalid', `--ttl must be between 1s and 30d`);
    if (!Number.isInteger(o.uses) || o.uses < 1 || o.uses > 1000) throw new TokenError('invalid', `--uses must be a whole number between 1 and 1000`);
    let parts = newTokenParts();
    while (await this.store.getToken(parts.id)) parts = newTokenParts();
    const record: TokenRecord = {
      id: parts.id, secretHash: hashSecret(parts.secret), createdMs: now, expiresMs: now + o.ttlMs, uses: o.uses, used: 0,
      node: o.node, description: o.description, revokedMs: null, usedBy: [],
    };
    await this.store.putToken(record);
    return { token: formatToken(this.caPin(), parts.id, parts.secret), record };
  }

  async list(): Promise<TokenRecord[]> {
    return this.store.listTokens();
  }

  /** Revokes a token (kept, marked revoked, so a later use is refused by name). Safe to call twice. */
  async revoke(id: string, now = Date.now()): Promise<TokenRecord> {
    const t = await this.store.getToken(id);
    if (!t) throw new TokenError('invalid', `no token with id "${id}" (see \`kbctl token list\`)`);
    if (t.revokedMs === null) {
      t.revokedMs = now;
      await this.store.putToken(t);
    }
    return t;
  }

  /**
   * Checks a presented token for `node`, without using it. The secret is checked first:
   * without it, nothing is said about the token beyond "not valid".
   */
  async check(text: string, node: string, now = Date.now()): Promise<TokenRecord> {
    let p;
    try {
      p = parseToken(text);
    } catch (err) {
      throw new TokenError('malformed', (err as TokenFormatError).message);
    }
    if (p.pin !== this.caPin()) throw new TokenError('wrong-ca', 'join token is for another CA (its pin does not match this coordinator\'s CA)');
    const t = await this.store.getToken(p.id);
    if (!t || !secretMatches(p.secret, t.secretHash)) throw new TokenError('invalid', 'join token is not valid (unknown id or wrong secret)');
    const state = tokenState(t, now);
    if (state === 'revoked') throw new TokenError('revoked', `join token ${t.id} was revoked (kbctl token rm) at ${new Date(t.revokedMs!).toISOString()}`);
    if (state === 'used-up') throw new TokenError('used-up', `join token ${t.id} is used up (${t.used} of ${t.uses} uses, by ${t.usedBy.join(', ')}): create a new one with \`kbctl token create\``);
    if (state === 'expired') throw new TokenError('expired', `join token ${t.id} expired at ${new Date(t.expiresMs).toISOString()}: create a new one with \`kbctl token create\``);
    if (t.node && t.node !== node) throw new TokenError('wrong-node', `join token ${t.id} is bound to node "${t.node}", not "${node}"`);
    return t;
  }

  /** Records one use of a checked token. */
  async consume(t: TokenRecord, node: string): Promise<void> {
    t.used += 1;
    t.usedBy = [...t.usedBy, node];
    await this.store.putToken(t);
  }
}
