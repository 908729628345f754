import Database from 'better-sqlite3';
import { chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { RevisionExistsError } from './errors.js';
import { decodeRecord, decodeRevision, encodePlain, encodeRevision, withHealthyMark } from './codec.js';
import type {
  AssignmentRecord, EventRecord, NodeIdentityRecord, NodeModuleRecord, NodeRecord, RevisionRecord, RolloutRecord, RolloutState, SecretStateRecord,
  SecretVersionRecord, Store, TokenRecord,
} from './types.js';

/**
 * Embedded store on SQLite (better-sqlite3 12, see docs/adr/0003-embedded-store.md).
 * WAL journal with synchronous=FULL: a resolved write survives kill -9 and power loss.
 * Calls are synchronous underneath, so they are naturally serialized.
 *
 * Group commit: the first write of an event-loop turn opens a transaction, every write of
 * that turn runs in it at once (each in its own savepoint, so a failing write fails alone,
 * synchronously), and the transaction commits (one fsync) when the turn ends; each write's
 * promise resolves only after that commit. A fleet's worth of writes (thousands of agents
 * saying hello, a rollout moving thousands of nodes) then costs one fsync per turn instead
 * of one per write. Reads in the same process see the turn's writes before they commit
 * (same connection); nothing the coordinator sends waits on a read alone for durability:
 * every send follows an awaited write.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;
  /** Writes of the open transaction, resolved at its commit. */
  private pending: { resolve: () => void; reject: (err: unknown) => void }[] = [];
  private readonly statements = new Map<string, Database.Statement>();

  constructor(private readonly file: string) {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    this.db = new Database(file);
    // The store holds token hashes and node identities: readable by the coordinator's user only.
    chmodSync(file, 0o600);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS nodes (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS node_modules (node TEXT, module TEXT, doc TEXT NOT NULL, PRIMARY KEY (node, module));
      CREATE TABLE IF NOT EXISTS assignments (node TEXT, module TEXT, doc TEXT NOT NULL, PRIMARY KEY (node, module));
      CREATE TABLE IF NOT EXISTS revisions (module TEXT, revision INTEGER, doc TEXT NOT NULL, PRIMARY KEY (module, revision));
      CREATE TABLE IF NOT EXISTS rollouts (id TEXT PRIMARY KEY, module TEXT NOT NULL, state TEXT NOT NULL, created_ms INTEGER NOT NULL, doc TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS rollouts_module ON rollouts (module, created_ms, id);
      CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT NOT NULL, doc TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS events_rollout ON events (rollout_id, id);
      CREATE TABLE IF NOT EXISTS secret_versions (name TEXT, version INTEGER, doc TEXT NOT NULL, PRIMARY KEY (name, version));
      CREATE TABLE IF NOT EXISTS secret_states (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS node_identities (node TEXT PRIMARY KEY, doc TEXT NOT NULL);
    `);
  }

  /** A prepared statement, prepared once. */
  private stmt(sql: string): Database.Statement {
    let st = this.statements.get(sql);
    if (!st) {
      st = this.db.prepare(sql);
      this.statements.set(sql, st);
    }
    return st;
  }

  /**
   * Runs `fn` now inside this turn's transaction; resolves with its value once the
   * transaction committed. A write of several statements runs in its own savepoint, so it
   * fails alone; a single statement (`single`) needs none: SQLite undoes a failed statement
   * by itself, and a savepoint per write cost a tenth of a 5,000-node fan-out. When a failure
   * rolled the whole transaction back (SQLite does so on I/O errors, a full disk, no memory),
   * the writes of the turn done before it are lost too, and fail with it.
   */
  private write<T>(fn: () => T, single = false): Promise<T> {
    if (!this.db.inTransaction) {
      this.db.exec('BEGIN IMMEDIATE');
      setImmediate(() => this.commit());
    }
    let value: T;
    try {
      value = single ? fn() : this.db.transaction(fn)();
    } catch (err) {
      if (!this.db.inTransaction) {
        const lost = this.pending;
        this.pending = [];
        for (const w of lost) w.reject(err);
      }
      return Promise.reject(err);
    }
    return new Promise<T>((resolve, reject) => this.pending.push({ resolve: () => resolve(value), reject }));
  }

  /** One statement as a write of this turn's transaction (see write). */
  private run(sql: string, ...params: unknown[]): Promise<Database.RunResult> {
    return this.write(() => this.stmt(sql).run(...params), true);
  }

  private commit(): void {
    const batch = this.pending;
    this.pending = [];
    if (!this.db.open || !this.db.inTransaction) {
      for (const w of batch) w.resolve();
      return;
    }
    try {
      this.db.exec('COMMIT');
    } catch (err) {
      try {
        if (this.db.inTransaction) this.db.exec('ROLLBACK');
      } catch { /* the rollback error adds nothing */ }
      for (const w of batch) w.reject(err);
      return;
    }
    for (const w of batch) w.resolve();
  }

  async upsertNode(n: NodeRecord): Promise<void> {
    const doc = encodePlain(n);
    await this.run('INSERT INTO nodes (name, doc) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc', n.name, doc);
  }
  async getNode(name: string): Promise<NodeRecord | undefined> {
    return parse(this.stmt('SELECT doc FROM nodes WHERE name = ?').get(name));
  }
  async listNodes(): Promise<NodeRecord[]> {
    return parseAll(this.stmt('SELECT doc FROM nodes ORDER BY name').all());
  }

  async putNodeModule(r: NodeModuleRecord): Promise<void> {
    const doc = encodePlain(r);
    await this.run('INSERT INTO node_modules (node, module, doc) VALUES (?, ?, ?) ON CONFLICT(node, module) DO UPDATE SET doc = excluded.doc', r.node, r.module, doc);
  }
  async listNodeModules(filter: { node?: string; module?: string } = {}): Promise<NodeModuleRecord[]> {
    return parseAll(this.stmt('SELECT doc FROM node_modules WHERE (@node IS NULL OR node = @node) AND (@module IS NULL OR module = @module) ORDER BY node, module')
      .all({ node: filter.node ?? null, module: filter.module ?? null }));
  }

  async putAssignment(a: AssignmentRecord): Promise<void> {
    const doc = encodePlain(a);
    await this.run('INSERT INTO assignments (node, module, doc) VALUES (?, ?, ?) ON CONFLICT(node, module) DO UPDATE SET doc = excluded.doc', a.node, a.module, doc);
  }
  async listAssignments(filter: { node?: string; module?: string } = {}): Promise<AssignmentRecord[]> {
    return parseAll(this.stmt('SELECT doc FROM assignments WHERE (@node IS NULL OR node = @node) AND (@module IS NULL OR module = @module) ORDER BY node, module')
      .all({ node: filter.node ?? null, module: filter.module ?? null }));
  }
  async deleteAssignment(node: string, module: string): Promise<void> {
    await this.run('DELETE FROM assignments WHERE node = ? AND module = ?', node, module);
  }

  async putRevision(r: RevisionRecord): Promise<void> {
    // Text, or a gzip BLOB for a large revision (codec.ts): the column's TEXT affinity keeps BLOBs as they are.
    const doc = encodeRevision(r);
    try {
      await this.run('INSERT INTO revisions (module, revision, doc) VALUES (?, ?, ?)', r.module, r.revision, doc);
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT')) {
        throw new RevisionExistsError(`${r.module} revision ${r.revision} already exists (revisions are immutable)`, { cause: err });
      }
      throw err;
    }
  }
  async getRevision(module: string, revision: number): Promise<RevisionRecord | undefined> {
    return this.parseRevision(this.stmt('SELECT module, revision, doc FROM revisions WHERE module = ? AND revision = ?').get(module, revision));
  }
  async latestRevision(module: string): Promise<RevisionRecord | undefined> {
    return this.parseRevision(this.stmt('SELECT module, revision, doc FROM revisions WHERE module = ? ORDER BY revision DESC LIMIT 1').get(module));
  }
  async latestRevisionNumber(module: string): Promise<number | undefined> {
    const row = this.stmt('SELECT MAX(revision) AS revision FROM revisions WHERE module = ?').get(module) as { revision: number | null };
    return row.revision ?? undefined;
  }
  async listRevisions(module: string): Promise<RevisionRecord[]> {
    return this.stmt('SELECT module, revision, doc FROM revisions WHERE module = ? ORDER BY revision').all(module).map((row) => this.parseRevision(row)!);
  }
  private parseRevision(row: unknown): RevisionRecord | undefined {
    if (!row) return undefined;
    const r = row as { module: string; revision: number; doc: string | Buffer };
    return decodeRevision(r.doc, `${this.file}: ${r.module} revision ${r.revision}`);
  }
  async markRevisionHealthy(module: string, revision: number, atMs: number): Promise<void> {
    await this.write(() => {
      const row = this.stmt('SELECT doc FROM revisions WHERE module = ? AND revision = ?').get(module, revision) as { doc: string | Buffer } | undefined;
      if (!row) return;
      const doc = withHealthyMark(row.doc, atMs, `${this.file}: ${module} revision ${revision}`);
      this.stmt('UPDATE revisions SET doc = ? WHERE module = ? AND revision = ?').run(doc, module, revision);
    });
  }

  async putRollout(r: RolloutRecord): Promise<void> {
    const doc = encodePlain(r);
    await this.run('INSERT INTO rollouts (id, module, state, created_ms, doc) VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET state = excluded.state, doc = excluded.doc', r.id, r.module, r.state, r.createdMs, doc);
  }
  async getRollout(id: string): Promise<RolloutRecord | undefined> {
    return parse(this.stmt('SELECT doc FROM rollouts WHERE id = ?').get(id));
  }
  async listRollouts(filter: { module?: string; state?: RolloutState } = {}): Promise<RolloutRecord[]> {
    return parseAll(this.stmt('SELECT doc FROM rollouts WHERE (@module IS NULL OR module = @module) AND (@state IS NULL OR state = @state) ORDER BY created_ms, id')
      .all({ module: filter.module ?? null, state: filter.state ?? null }));
  }

  async latestRollout(module: string): Promise<RolloutRecord | undefined> {
    return parse(this.stmt('SELECT doc FROM rollouts WHERE module = ? ORDER BY created_ms DESC, id DESC LIMIT 1').get(module));
  }

  async appendEvent(e: Omit<EventRecord, 'id'>): Promise<EventRecord> {
    const doc = encodePlain(e);
    const info = await this.run('INSERT INTO events (rollout_id, doc) VALUES (?, ?)', e.rolloutId, doc);
    return { ...e, id: Number(info.lastInsertRowid) };
  }
  async listEvents(rolloutId: string): Promise<EventRecord[]> {
    return (this.stmt('SELECT id, doc FROM events WHERE rollout_id = ? ORDER BY id').all(rolloutId) as { id: number; doc: string }[])
      .map((row) => ({ ...decodeRecord<Omit<EventRecord, 'id'>>(row.doc), id: row.id }));
  }

  async putSecretVersion(r: SecretVersionRecord): Promise<void> {
    const doc = encodePlain(r);
    await this.run('INSERT INTO secret_versions (name, version, doc) VALUES (?, ?, ?)', r.name, r.version, doc);
  }
  async listSecretVersions(name?: string): Promise<SecretVersionRecord[]> {
    return parseAll(this.stmt('SELECT doc FROM secret_versions WHERE (@name IS NULL OR name = @name) ORDER BY name, version').all({ name: name ?? null }));
  }
  async putSecretState(r: SecretStateRecord): Promise<void> {
    const doc = encodePlain(r);
    await this.run('INSERT INTO secret_states (name, doc) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc', r.name, doc);
  }
  async getSecretState(name: string): Promise<SecretStateRecord | undefined> {
    return parse(this.stmt('SELECT doc FROM secret_states WHERE name = ?').get(name));
  }
  async listSecretStates(): Promise<SecretStateRecord[]> {
    return parseAll(this.stmt('SELECT doc FROM secret_states ORDER BY name').all());
  }

  async putToken(t: TokenRecord): Promise<void> {
    const doc = encodePlain(t);
    await this.run('INSERT INTO tokens (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc', t.id, doc);
  }
  async getToken(id: string): Promise<TokenRecord | undefined> {
    return parse(this.stmt('SELECT doc FROM tokens WHERE id = ?').get(id));
  }
  async listTokens(): Promise<TokenRecord[]> {
    return parseAll<TokenRecord>(this.stmt('SELECT doc FROM tokens').all()).sort((a, b) => a.createdMs - b.createdMs || a.id.localeCompare(b.id));
  }

  async putNodeIdentity(r: NodeIdentityRecord): Promise<void> {
    const doc = encodePlain(r);
    await this.run('INSERT INTO node_identities (node, doc) VALUES (?, ?) ON CONFLICT(node) DO UPDATE SET doc = excluded.doc', r.node, doc);
  }
  async getNodeIdentity(node: string): Promise<NodeIdentityRecord | undefined> {
    return parse(this.stmt('SELECT doc FROM node_identities WHERE node = ?').get(node));
  }
  async listNodeIdentities(): Promise<NodeIdentityRecord[]> {
    return parseAll(this.stmt('SELECT doc FROM node_identities ORDER BY node').all());
  }

  async close(): Promise<void> {
    this.commit();
    this.db.close();
  }
}

function parse<T>(row: unknown): T | undefined {
  return row ? decodeRecord<T>((row as { doc: string }).doc) : undefined;
}
function parseAll<T>(rows: unknown[]): T[] {
  return rows.map((row) => decodeRecord<T>((row as { doc: string }).doc));
}

