import type { StepWork } from '../shared/orderStep.js';

/** Payment fails on purpose at this rate (env PAYMENT_FAILURE_RATE), so retries and dead letters show. */
export function paymentFailureRate(env: NodeJS.ProcessEnv = process.env): number {
  const rate = Number(env.PAYMENT_FAILURE_RATE ?? '0');
  if (!(rate >= 0 && rate <= 1)) throw new Error(`PAYMENT_FAILURE_RATE must be between 0 and 1, got "${env.PAYMENT_FAILURE_RATE}"`);
  return rate;
}

/** A payment-provider outage the function cannot handle itself: the dispatcher retries it. */
export class PaymentDeclinedError extends Error {
  readonly code = 'EVENTIDE_DEMO_PAYMENT_UNAVAILABLE';
  override readonly name = 'PaymentDeclinedError';
}

/** Charges the order once: the payments row's primary key makes a second charge impossible. */
export function processPayment(failureRate: number, random: () => number = Math.random): StepWork {
  return async (client, order, { eventId }) => {
    if (random() < failureRate) throw new PaymentDeclinedError(`payment provider unavailable for order ${order.id}`);
    await client.query('INSERT INTO payments (order_id, amount, reference) VALUES ($1, $2, $3) ON CONFLICT (order_id) DO NOTHING', [order.id, order.total, `pay-${eventId.slice(-12)}`]);
    await client.query("UPDATE orders SET is_paid = true, payment_ref = 'pay-' || $2 WHERE id = $1 AND NOT is_paid", [order.id, eventId.slice(-12)]);
  };
}
