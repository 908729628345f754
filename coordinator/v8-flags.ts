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
 */
import v8 from 'node:v8';

export const DEFAULT_COORDINATOR_V8_FLAGS = '--heap-growing-percent=20';

export const coordinatorV8Flags = process.env.KB_COORDINATOR_V8_FLAGS ?? DEFAULT_COORDINATOR_V8_FLAGS;
if (coordinatorV8Flags.trim()) v8.setFlagsFromString(coordinatorV8Flags);
