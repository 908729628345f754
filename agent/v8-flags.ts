/**
 * V8 settings of the agent, applied before anything else is loaded (agent/main.ts imports
 * this module first). The agent is an idle daemon: memory matters more than peak speed.
 *
 * --optimize-for-size keeps V8's young generation at its minimum (1 MB semi-spaces instead
 * of growing to 16 MB under the start-up allocation burst, which an idle agent never gives
 * back) and prefers smaller code and a slower-growing heap. Node refuses it in NODE_OPTIONS
 * and a single executable has no command line of its own for it, so the binary sets it here;
 * V8 reads it when sizing the heap, so setting it after start-up takes effect (measured in
 * docs/benchmarks.md, agent footprint; ADR 0017).
 *
 * KB_AGENT_V8_FLAGS replaces the default (empty: none), for measurements and diagnosis.
 */
import v8 from 'node:v8';

export const DEFAULT_AGENT_V8_FLAGS = '--optimize-for-size';

export const agentV8Flags = process.env.KB_AGENT_V8_FLAGS ?? DEFAULT_AGENT_V8_FLAGS;
if (agentV8Flags.trim()) v8.setFlagsFromString(agentV8Flags);
