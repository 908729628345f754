import { parsePinnedRef } from '../../driver/ref.js';
import { inStep } from '../errors.js';
import { byOrder } from '../names.js';
import { record } from '../record.js';
import type { ReconcileStep, StepRun } from '../types.js';

/**
 * Step 2: images. Makes every desired container's image present (pulled by digest when
 * missing), in container order, before any container is stopped: a pull failure (registry
 * down, unknown digest, unpinned ref) fails the apply while the old containers still run.
 */
export const imagesStep: ReconcileStep = {
  name: 'images',
  async run(r: StepRun): Promise<void> {
    const { ctx, state } = r;
    const seen = new Set<string>();
    for (const spec of byOrder(state.containers)) {
      if (seen.has(spec.image)) continue;
      seen.add(spec.image);
      await inStep('images', `container ${spec.name}`, state.module, ctx.node, async () => {
        const { byDigest } = parsePinnedRef(spec.image);
        const res = await ctx.driver.ensureImage(spec.image, (msg) => ctx.onProgress?.('images', `${byDigest}: ${msg}`));
        if (res.pulled) record(r, 'images', `pull ${byDigest}`);
      });
    }
  },
};
