import { readFileSync } from 'node:fs';
import path from 'node:path';

/** `node@revision` -> how many node-applied events say the agent applied it (changed something). */
export function appliedCounts(events: { node: string; kind: string; message: string; revision: number }[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const e of events) {
    if (e.kind !== 'node-applied' || !e.message.startsWith('applied:')) continue;
    const k = `${e.node}@${e.revision}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return counts;
}

/** Revisions an agent applied, from its own log (one "applied" line per revision it applied). */
export function agentAppliedRevisions(clusterDir: string, node: string): number[] {
  const log = readFileSync(path.join(clusterDir, `agent-${node}.log`), 'utf8');
  return log.split('\n').filter((l) => l.includes('"msg":"applied"')).map((l) => (JSON.parse(l) as { revision: number }).revision);
}
