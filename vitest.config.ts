import { defineConfig } from 'vitest/config';

/** What every test file gets: each starts its own Postgres or control plane; two cores cannot run many at once. */
const shared = {
  testTimeout: 60_000,
  hookTimeout: 120_000,
  maxWorkers: 2,
};

/** Real containers on a real node (one per machine), and the images they run: heavy, and timing-insensitive. */
const REAL_NODE = ['test/realnode/**/*.test.ts', 'test/images/**/*.test.ts'];

export default defineConfig({
  test: {
    globalSetup: ['test/harness/globalSetup.tempRoot.ts', 'test/harness/globalSetup.controlPlane.ts'],
    projects: [
      {
        test: {
          ...shared,
          name: 'main',
          include: ['**/*.test.ts'],
          exclude: ['node_modules/**', '.cache/**', ...REAL_NODE],
          fileParallelism: true,
        },
      },
      // After everything else, one file at a time: a node's pods, image builds and kube-proxy beside the
      // timing-sensitive tests (WAL retention, periodic looks) made those fail on two cores.
      {
        test: {
          ...shared,
          name: 'realnode',
          include: REAL_NODE,
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
