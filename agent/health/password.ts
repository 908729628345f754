import type { HealthCheck, ModuleState } from '../../proto/types.js';
import { errorMessage } from '../../shared/errors/index.js';
import { redisPassword } from './redis-role.js';
import type { HealthContext } from './types.js';

/**
 * The password a check authenticates with: variable `passwordVar` (default REDIS_PASSWORD)
 * of credentials file `credentialsFile` on this node when the check names one (how kb's
 * modules do it: the value is never in the state), else what redisPassword finds in the
 * module's containers (states from before credentials). Returns `{ error }` when the check
 * names a file that cannot be read; the error never contains a value.
 */
export async function checkPassword(
  ctx: Pick<HealthContext, 'credentials'>, state: ModuleState, check: Pick<HealthCheck, 'credentialsFile' | 'passwordVar' | 'container'>,
): Promise<{ password?: string; error?: string }> {
  if (!check.credentialsFile) return { password: redisPassword(state, check) };
  const variable = check.passwordVar || 'REDIS_PASSWORD';
  try {
    const password = await ctx.credentials?.variable(check.credentialsFile, variable);
    if (password === undefined) return { error: `password from ${check.credentialsFile}: file or ${variable} missing` };
    return { password };
  } catch (err) {
    return { error: `password from ${check.credentialsFile}: ${errorMessage(err)}` };
  }
}
