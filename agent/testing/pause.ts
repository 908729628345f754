import type { Logger } from 'pino';

/**
 * Test-only pause points. When the environment variable KB_TEST_PAUSE is `<point>:<ms>`,
 * the agent logs "test pause point <point> reached" and sleeps that long when it gets
 * there, so a crash test can kill -9 it at a precise moment. Unset (always, in
 * production), this is a no-op that costs one string comparison.
 *
 * Points: `desired-saved` (new desired state on disk, nothing applied yet),
 * `container-removed` (old container of a replace removed, new one not created yet),
 * `credentials-before-rename/<file>` (the new credentials file is complete and fsynced in its
 * temporary file, the target not yet replaced).
 */
export async function pausePoint(point: string, log: Logger): Promise<void> {
  const spec = process.env.KB_TEST_PAUSE;
  if (!spec) return;
  const [name, ms] = spec.split(':');
  if (name !== point) return;
  log.warn({ point, ms: Number(ms) }, `test pause point ${point} reached`);
  await new Promise((resolve) => setTimeout(resolve, Number(ms) || 0));
}
