import { approveRestaurant } from './approve-restaurant/step.js';
import { assignAgent } from './assign-agent/step.js';
import { paymentFailureRate, processPayment } from './process-payment/step.js';
import type { StepWork } from './shared/orderStep.js';
import { validateOrder } from './validate-order/step.js';

/** The four functions by their Function names (as in manifests/functions.yaml). */
export function foodOrderingSteps(env: NodeJS.ProcessEnv = process.env): Record<string, StepWork> {
  return {
    'validate-order': validateOrder,
    'process-payment': processPayment(paymentFailureRate(env)),
    'approve-restaurant': approveRestaurant,
    'assign-agent': assignAgent,
  };
}
