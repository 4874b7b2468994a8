/**
 * A function for the SIGTERM test: each event takes `delayMs` (from its data.new) to handle.
 * Run as `node --import tsx slowFunction.ts`; PORT=0 picks a port, printed in the "function listening" log line.
 */
import { serve } from '../index.js';

await serve(
  async (event, { logger }) => {
    const delayMs = Number(event.data.new?.delayMs ?? 0);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    logger.info('slow work done');
  },
  { host: '127.0.0.1' },
);
