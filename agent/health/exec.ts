import { errorMessage } from '../../shared/errors/index.js';
import { findContainer } from './container.js';
import type { CheckInput, Outcome } from './types.js';

/**
 * `exec`: runs `command` inside the module's container `container` (logical name); ok on
 * exit code 0. observed: `exit <code>: <last output line>`.
 */
export async function execCheck({ ctx, check, containers, timeoutMs }: CheckInput): Promise<Outcome> {
  const c = findContainer(ctx, containers, check.container);
  if (!c) return { ok: false, observed: `container ${check.container} missing` };
  if (c.state !== 'running') return { ok: false, observed: `container ${check.container} is ${c.state}` };
  if (check.command.length === 0) return { ok: false, observed: 'no command to run' };
  try {
    const res = await ctx.driver.exec(c.id, check.command, timeoutMs);
    const last = res.output.trimEnd().split('\n').pop()?.trim() ?? '';
    return { ok: res.exitCode === 0, observed: `exit ${res.exitCode}${last ? `: ${last}` : ''}` };
  } catch (err) {
    return { ok: false, observed: errorMessage(err) };
  }
}
