import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', '.cache/**'],
    globalSetup: ['test/harness/globalSetup.tempRoot.ts', 'test/harness/globalSetup.controlPlane.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Each file starts its own Postgres or control plane; two cores cannot run many at once.
    maxWorkers: 2,
    fileParallelism: true,
  },
});
