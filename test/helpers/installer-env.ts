import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/**
 * The runtime environment install.sh writes into kb-agent.env for the agent process (the
 * lines of coordinator/bootstrap/install.sh marked `# runtime`: echo "VAR=VALUE"  # runtime).
 * The test harness starts its agents with it, so the tests run the agent as installed.
 */
export function installerRuntimeEnv(script = readFileSync(path.join(repoRoot, 'coordinator/bootstrap/install.sh'), 'utf8')): Record<string, string> {
  const env: Record<string, string> = {};
  for (const m of script.matchAll(/^\s*echo "([A-Z_][A-Z0-9_]*)=([^"$]*)"\s*#\s*runtime\s*$/gm)) env[m[1]!] = m[2]!;
  return env;
}
