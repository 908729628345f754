/**
 * V8 settings of the coordinator that V8 reads only when it starts, so they must be on node's
 * command line: `dist/kb-coordinator`, the launcher `npm run build` writes, puts them there
 * (scripts/build.mjs writes this same list). ADR 0022. This module has no side effects: the
 * benchmarks and tests import it to start a coordinator as the launcher does.
 *
 * --min-semi-space-size=16: the young generation keeps 16 MB semi-spaces. V8 shrinks it to
 * 1 MB whenever allocation slows down (an idle coordinator, a quiet health round), so the
 * first rollout after a lull ran in a 1 MB nursery: many more scavenges, short-lived
 * objects promoted to the old generation, and full collections in the middle of the fan-out.
 * A runtime `v8.setFlagsFromString` of it has no effect (checked), unlike the flags of
 * ./v8-flags.ts.
 */
export const COORDINATOR_NODE_FLAGS: readonly string[] = ['--min-semi-space-size=16'];

const nameOf = (flag: string) => flag.split('=')[0]!;

/** The start-up flags (any value) this process was started with, as given. */
export function nodeFlagsGiven(execArgv: readonly string[] = process.execArgv): string[] {
  const names = new Set(COORDINATOR_NODE_FLAGS.map(nameOf));
  return execArgv.filter((a) => names.has(nameOf(a)));
}

/** The start-up flags missing from this process's command line (none given under that name). */
export function nodeFlagsMissing(execArgv: readonly string[] = process.execArgv): string[] {
  const given = new Set(nodeFlagsGiven(execArgv).map(nameOf));
  return COORDINATOR_NODE_FLAGS.filter((f) => !given.has(nameOf(f)));
}
