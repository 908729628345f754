import type { RevisionRecord, Store } from './types.js';

/**
 * Reads revisions for many callers at once: concurrent and recent reads of the same revision
 * share one store read. A revision names every node's state, so at thousands of nodes it is
 * megabytes to fetch and decode, and one rollout makes thousands of callers ask for the same
 * one within seconds (each node's new assignment reaching the replica holding its session;
 * agents reconnecting after a restart). A revision read is kept `keepMs` after its last use,
 * then dropped (it is large); a failed read is not kept. Callers must not modify what they get.
 */
export class RevisionReader {
  private readonly entries = new Map<string, { read: Promise<RevisionRecord | undefined>; timer: NodeJS.Timeout }>();

  constructor(private readonly store: Pick<Store, 'getRevision'>, private readonly keepMs = 10_000) {}

  get(module: string, revision: number): Promise<RevisionRecord | undefined> {
    const key = `${module}\u0000${revision}`;
    const hit = this.entries.get(key);
    if (hit) {
      hit.timer.refresh();
      return hit.read;
    }
    const read = this.store.getRevision(module, revision);
    const timer = setTimeout(() => this.entries.delete(key), this.keepMs);
    timer.unref();
    this.entries.set(key, { read, timer });
    read.catch(() => {
      if (this.entries.get(key)?.read !== read) return;
      clearTimeout(timer);
      this.entries.delete(key);
    });
    return read;
  }

  /** Revisions held now (for tests). */
  get size(): number {
    return this.entries.size;
  }
}
