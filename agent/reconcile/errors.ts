import { ApplyError, errorMessage } from '../../shared/errors/index.js';

/**
 * Thrown by a reconcile step when it fails: says which step, what it was working on
 * (`container redis`, `file /opt/…`), which module and node, then the underlying message.
 * `name` stays 'ApplyError' (it is one), so callers switching on the name need not know it.
 */
export class StepError extends ApplyError {
  override name = 'ApplyError';
  constructor(
    readonly step: string,
    readonly subject: string,
    readonly module: string,
    readonly node: string,
    cause: unknown,
  ) {
    super(`apply ${module} on ${node}: step ${step}${subject ? `, ${subject}` : ''}: ${errorMessage(cause)}`, { cause });
  }
}

/** Runs `fn`, wrapping anything it throws as a {@link StepError}. */
export async function inStep<T>(
  step: string, subject: string, module: string, node: string, fn: () => Promise<T>,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof StepError) throw err;
    throw new StepError(step, subject, module, node, err);
  }
}
