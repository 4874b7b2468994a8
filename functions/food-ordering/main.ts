/**
 * Entry point of every food-ordering function: `node --import tsx functions/food-ordering/main.ts <name>`
 * (or env FUNCTION_NAME). One entry, four images, so the wiring is written once.
 */
import { serveStep } from './shared/orderStep.js';
import { foodOrderingSteps } from './steps.js';

const name = process.argv[2] ?? process.env.FUNCTION_NAME;
const steps = foodOrderingSteps();
const work = name ? steps[name] : undefined;
if (!name || !work) {
  process.stderr.write(`usage: main.ts <${Object.keys(steps).join('|')}>\n`);
  process.exit(2);
}
await serveStep(name, work);
