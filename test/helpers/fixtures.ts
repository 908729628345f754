// Locates the shared fixtures (the real 48-row servers.tsv) next to the checkout: `../shared`
// for a checkout at /work/main, `../../shared` for a worktree at /work/wt/<issue>.
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** Path of `name` in the shared fixtures directory (the first candidate that exists). */
export function sharedFixture(name: string): string {
  const candidates = [path.resolve(repoRoot, '../shared/fixtures', name), path.resolve(repoRoot, '../../shared/fixtures', name)];
  return candidates.find((c) => existsSync(c)) ?? candidates[0]!;
}
