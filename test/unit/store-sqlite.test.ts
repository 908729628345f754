import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SqliteStore } from '../../coordinator/store/sqlite.js';
import { storeConformance } from '../helpers/store-conformance.js';

// The Store contract against the embedded SQLite backend (a file in a temp dir per test).
// The same suite runs against a real etcd cluster in test/e2e/store-etcd.test.ts.
storeConformance('SqliteStore', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'kb-store-'));
  return {
    open: () => new SqliteStore(path.join(dir, 'kb.db')),
    destroy: async () => rmSync(dir, { recursive: true, force: true }),
  };
});
