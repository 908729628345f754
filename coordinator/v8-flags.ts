/**
 * V8 settings of the coordinator, applied before anything else is loaded (coordinator/main.ts
 * imports this module first). ADR 0018.
 *
 * --heap-growing-percent=20: the old generation is collected once it is 1.2x what was live
 * after the last full collection, instead of V8's default of up to 4x. A coordinator holding
 * thousands of sessions turns over a steady stream of promoted short-lived objects (session
 * reports, timers, stream buffers); with the default, that garbage piled up to 1.6-2x the live
 * heap between collections (at 5,000 agents: ~190 MB of old generation for ~95 MB live).
 * The young generation keeps its default size: a smaller one (--optimize-for-size) held the
 * heap lower still but made a 5,000-node plan fan-out 1.7x slower (docs/benchmarks.md).
 *
 * KB_COORDINATOR_V8_FLAGS replaces the default (empty: none), for measurements and diagnosis.
 * V8 ignores a flag it does not know without a word, so flags given that way are first tried
 * on a throwaway `node` (whose command line refuses unknown options); when it refuses them,
 * nothing is applied and `coordinatorV8FlagsError` says why (`run` stops on it).
 */
import { spawnSync } from 'node:child_process';
import v8 from 'node:v8';

export const DEFAULT_COORDINATOR_V8_FLAGS = '--heap-growing-percent=20';

const given = process.env.KB_COORDINATOR_V8_FLAGS;

/** Why KB_COORDINATOR_V8_FLAGS was not applied, or undefined. */
export const coordinatorV8FlagsError = given?.trim() ? refusal(given) : undefined;

/** The V8 flags in effect. */
export const coordinatorV8Flags = coordinatorV8FlagsError ? '' : given ?? DEFAULT_COORDINATOR_V8_FLAGS;
if (coordinatorV8Flags.trim()) v8.setFlagsFromString(coordinatorV8Flags);

function refusal(flags: string): string | undefined {
  const r = spawnSync(process.execPath, [...flags.trim().split(/\s+/), '-e', ''], { encoding: 'utf8', timeout: 30_000 });
  if (r.status === 0) return undefined;
  const why = (r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n')[0];
  return `KB_COORDINATOR_V8_FLAGS="${flags}": not accepted by this Node's V8 (${why}); nothing applied`;
}
