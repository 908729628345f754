import { defineConfig } from 'vitest/config';

// Two tiers (see docs/ARCHITECTURE.md "Tests"):
//  - unit: pure logic, no daemons, runs anywhere in seconds;
//  - e2e: the real thing (Docker engine, registry, Redis, processes over gRPC). Needs
//    `bash scripts/testbed.sh up` first (npm run test:e2e does it). Files run one at a
//    time because they share one Docker engine and loopback ports.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          environment: 'node',
          testTimeout: 20_000,
        },
      },
      {
        test: {
          name: 'e2e',
          include: ['test/e2e/**/*.test.ts'],
          environment: 'node',
          testTimeout: 180_000,
          hookTimeout: 180_000,
          fileParallelism: false,
          pool: 'forks',
        },
      },
    ],
  },
});
