/**
 * Token-bucket rate limit per key (the source address of enrollment attempts): up to `burst`
 * attempts at once, refilled at `perMinute`. Every attempt counts, good or bad, so a stolen
 * or guessed token cannot be tried fast. Buckets that are full again are forgotten, so memory
 * stays bounded by the number of recently active sources.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();

  constructor(private readonly burst: number, private readonly perMinute: number) {}

  /** Takes one attempt for `key`: ok, or how long until the next one is allowed. */
  take(key: string, now = Date.now()): { ok: true } | { ok: false; retryAfterMs: number } {
    this.sweep(now);
    const b = this.buckets.get(key) ?? { tokens: this.burst, atMs: now };
    const refilled = Math.min(this.burst, b.tokens + ((now - b.atMs) / 60_000) * this.perMinute);
    if (refilled < 1) {
      this.buckets.set(key, { tokens: refilled, atMs: now });
      return { ok: false, retryAfterMs: Math.ceil(((1 - refilled) / this.perMinute) * 60_000) };
    }
    this.buckets.set(key, { tokens: refilled - 1, atMs: now });
    return { ok: true };
  }

  private sweep(now: number): void {
    if (this.buckets.size < 1024) return;
    for (const [k, b] of this.buckets) {
      if (b.tokens + ((now - b.atMs) / 60_000) * this.perMinute >= this.burst) this.buckets.delete(k);
    }
  }
}
