import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/**
 * A file of the project's shared fixtures (`<dir>/shared/fixtures/<name>`), found in the
 * nearest ancestor of the checkout that has it: `../shared` from the main checkout,
 * `../../shared` from a worktree under `wt/`. Falls back to `../shared/fixtures/<name>`
 * (which then fails loudly as "file not found").
 */
export function sharedFixture(name: string): string {
  let dir = path.dirname(repoRoot);
  for (let i = 0; i < 4; i++) {
    const candidate = path.join(dir, 'shared', 'fixtures', name);
    if (existsSync(candidate)) return candidate;
    dir = path.dirname(dir);
  }
  return path.resolve(repoRoot, '../shared/fixtures', name);
}
