import Database from 'better-sqlite3';
import { chmodSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { RevisionExistsError } from './errors.js';
import { decodeRecord, decodeRevision, encodeRecord } from './codec.js';
import type {
  AssignmentRecord, EventRecord, NodeIdentityRecord, NodeModuleRecord, NodeRecord, RevisionRecord, RolloutRecord, RolloutState, SecretStateRecord,
  SecretVersionRecord, Store, TokenRecord,
} from './types.js';

/**
 * Embedded store on SQLite (better-sqlite3 12, see docs/adr/0003-embedded-store.md).
 * WAL journal with synchronous=FULL: a resolved write survives kill -9 and power loss.
 * Calls are synchronous underneath, so they are naturally serialized.
 */
export class SqliteStore implements Store {
  private readonly db: Database.Database;

  constructor(file: string) {
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
      CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, rollout_id TEXT NOT NULL, doc TEXT NOT NULL);
      CREATE INDEX IF NOT EXISTS events_rollout ON events (rollout_id, id);
      CREATE TABLE IF NOT EXISTS secret_versions (name TEXT, version INTEGER, doc TEXT NOT NULL, PRIMARY KEY (name, version));
      CREATE TABLE IF NOT EXISTS secret_states (name TEXT PRIMARY KEY, doc TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS tokens (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
      CREATE TABLE IF NOT EXISTS node_identities (node TEXT PRIMARY KEY, doc TEXT NOT NULL);
    `);
  }

  async upsertNode(n: NodeRecord): Promise<void> {
    this.db.prepare('INSERT INTO nodes (name, doc) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc').run(n.name, encodeRecord(n));
  }
  async getNode(name: string): Promise<NodeRecord | undefined> {
    return parse(this.db.prepare('SELECT doc FROM nodes WHERE name = ?').get(name));
  }
  async listNodes(): Promise<NodeRecord[]> {
    return parseAll(this.db.prepare('SELECT doc FROM nodes ORDER BY name').all());
  }

  async putNodeModule(r: NodeModuleRecord): Promise<void> {
    this.db.prepare('INSERT INTO node_modules (node, module, doc) VALUES (?, ?, ?) ON CONFLICT(node, module) DO UPDATE SET doc = excluded.doc')
      .run(r.node, r.module, encodeRecord(r));
  }
  async listNodeModules(filter: { node?: string; module?: string } = {}): Promise<NodeModuleRecord[]> {
    return parseAll(this.db.prepare('SELECT doc FROM node_modules WHERE (@node IS NULL OR node = @node) AND (@module IS NULL OR module = @module) ORDER BY node, module')
      .all({ node: filter.node ?? null, module: filter.module ?? null }));
  }

  async putAssignment(a: AssignmentRecord): Promise<void> {
    this.db.prepare('INSERT INTO assignments (node, module, doc) VALUES (?, ?, ?) ON CONFLICT(node, module) DO UPDATE SET doc = excluded.doc')
      .run(a.node, a.module, encodeRecord(a));
  }
  async listAssignments(filter: { node?: string; module?: string } = {}): Promise<AssignmentRecord[]> {
    return parseAll(this.db.prepare('SELECT doc FROM assignments WHERE (@node IS NULL OR node = @node) AND (@module IS NULL OR module = @module) ORDER BY node, module')
      .all({ node: filter.node ?? null, module: filter.module ?? null }));
  }
  async deleteAssignment(node: string, module: string): Promise<void> {
    this.db.prepare('DELETE FROM assignments WHERE node = ? AND module = ?').run(node, module);
  }

  async putRevision(r: RevisionRecord): Promise<void> {
    try {
      this.db.prepare('INSERT INTO revisions (module, revision, doc) VALUES (?, ?, ?)').run(r.module, r.revision, encodeRecord(r));
    } catch (err) {
      if ((err as { code?: string }).code?.startsWith('SQLITE_CONSTRAINT')) {
        throw new RevisionExistsError(`${r.module} revision ${r.revision} already exists (revisions are immutable)`, { cause: err });
      }
      throw err;
    }
  }
  async getRevision(module: string, revision: number): Promise<RevisionRecord | undefined> {
    return parseRevision(this.db.prepare('SELECT doc FROM revisions WHERE module = ? AND revision = ?').get(module, revision));
  }
  async latestRevision(module: string): Promise<RevisionRecord | undefined> {
    return parseRevision(this.db.prepare('SELECT doc FROM revisions WHERE module = ? ORDER BY revision DESC LIMIT 1').get(module));
  }
  async listRevisions(module: string): Promise<RevisionRecord[]> {
    return this.db.prepare('SELECT doc FROM revisions WHERE module = ? ORDER BY revision').all(module).map((row) => parseRevision(row)!);
  }
  async markRevisionHealthy(module: string, revision: number, atMs: number): Promise<void> {
    const r = await this.getRevision(module, revision);
    if (!r) return;
    r.healthyMs = atMs;
    this.db.prepare('UPDATE revisions SET doc = ? WHERE module = ? AND revision = ?').run(encodeRecord(r), module, revision);
  }

  async putRollout(r: RolloutRecord): Promise<void> {
    this.db.prepare('INSERT INTO rollouts (id, module, state, created_ms, doc) VALUES (?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET state = excluded.state, doc = excluded.doc')
      .run(r.id, r.module, r.state, r.createdMs, encodeRecord(r));
  }
  async getRollout(id: string): Promise<RolloutRecord | undefined> {
    return parse(this.db.prepare('SELECT doc FROM rollouts WHERE id = ?').get(id));
  }
  async listRollouts(filter: { module?: string; state?: RolloutState } = {}): Promise<RolloutRecord[]> {
    return parseAll(this.db.prepare('SELECT doc FROM rollouts WHERE (@module IS NULL OR module = @module) AND (@state IS NULL OR state = @state) ORDER BY created_ms, id')
      .all({ module: filter.module ?? null, state: filter.state ?? null }));
  }

  async appendEvent(e: Omit<EventRecord, 'id'>): Promise<EventRecord> {
    const info = this.db.prepare('INSERT INTO events (rollout_id, doc) VALUES (?, ?)').run(e.rolloutId, encodeRecord(e));
    return { ...e, id: Number(info.lastInsertRowid) };
  }
  async listEvents(rolloutId: string): Promise<EventRecord[]> {
    return (this.db.prepare('SELECT id, doc FROM events WHERE rollout_id = ? ORDER BY id').all(rolloutId) as { id: number; doc: string }[])
      .map((row) => ({ ...decodeRecord<Omit<EventRecord, 'id'>>(row.doc), id: row.id }));
  }

  async putSecretVersion(r: SecretVersionRecord): Promise<void> {
    this.db.prepare('INSERT INTO secret_versions (name, version, doc) VALUES (?, ?, ?)').run(r.name, r.version, JSON.stringify(r));
  }
  async listSecretVersions(name?: string): Promise<SecretVersionRecord[]> {
    return parseAll(this.db.prepare('SELECT doc FROM secret_versions WHERE (@name IS NULL OR name = @name) ORDER BY name, version').all({ name: name ?? null }));
  }
  async putSecretState(r: SecretStateRecord): Promise<void> {
    this.db.prepare('INSERT INTO secret_states (name, doc) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET doc = excluded.doc').run(r.name, JSON.stringify(r));
  }
  async getSecretState(name: string): Promise<SecretStateRecord | undefined> {
    return parse(this.db.prepare('SELECT doc FROM secret_states WHERE name = ?').get(name));
  }
  async listSecretStates(): Promise<SecretStateRecord[]> {
    return parseAll(this.db.prepare('SELECT doc FROM secret_states ORDER BY name').all());
  }

  async putToken(t: TokenRecord): Promise<void> {
    this.db.prepare('INSERT INTO tokens (id, doc) VALUES (?, ?) ON CONFLICT(id) DO UPDATE SET doc = excluded.doc').run(t.id, JSON.stringify(t));
  }
  async getToken(id: string): Promise<TokenRecord | undefined> {
    return parse(this.db.prepare('SELECT doc FROM tokens WHERE id = ?').get(id));
  }
  async listTokens(): Promise<TokenRecord[]> {
    return parseAll<TokenRecord>(this.db.prepare('SELECT doc FROM tokens').all()).sort((a, b) => a.createdMs - b.createdMs || a.id.localeCompare(b.id));
  }

  async putNodeIdentity(r: NodeIdentityRecord): Promise<void> {
    this.db.prepare('INSERT INTO node_identities (node, doc) VALUES (?, ?) ON CONFLICT(node) DO UPDATE SET doc = excluded.doc').run(r.node, JSON.stringify(r));
  }
  async getNodeIdentity(node: string): Promise<NodeIdentityRecord | undefined> {
    return parse(this.db.prepare('SELECT doc FROM node_identities WHERE node = ?').get(node));
  }
  async listNodeIdentities(): Promise<NodeIdentityRecord[]> {
    return parseAll(this.db.prepare('SELECT doc FROM node_identities ORDER BY node').all());
  }

  async close(): Promise<void> {
    this.db.close();
  }
}

function parse<T>(row: unknown): T | undefined {
  return row ? decodeRecord<T>((row as { doc: string }).doc) : undefined;
}
function parseAll<T>(rows: unknown[]): T[] {
  return rows.map((row) => decodeRecord<T>((row as { doc: string }).doc));
}
function parseRevision(row: unknown): RevisionRecord | undefined {
  return row ? decodeRevision((row as { doc: string }).doc) : undefined;
}
