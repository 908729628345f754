import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Path of a file of the project's shared fixtures (`<workspace>/shared/fixtures/<name>`):
 * next to the checkout (`../shared`, the main checkout) or one level up (`../../shared`,
 * a worktree under `<workspace>/wt/<name>`). $KB_SHARED_DIR wins when set.
 */
export function sharedFixture(name: string): string {
  const candidates = [
    ...(process.env.KB_SHARED_DIR ? [path.join(process.env.KB_SHARED_DIR, 'fixtures', name)] : []),
    path.resolve(repoRoot, '../shared/fixtures', name),
    path.resolve(repoRoot, '../../shared/fixtures', name),
  ];
  return candidates.find((p) => existsSync(p)) ?? candidates[0]!;
}
