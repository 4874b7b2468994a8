import { PermanentError } from '../../runtime/index.js';
import type { StepWork } from '../shared/orderStep.js';

/** Checks the order is sane; a bad order is rejected (dead-lettered) instead of retried forever. */
export const validateOrder: StepWork = async (client, order) => {
  if (!Array.isArray(order.items) || order.items.length === 0) throw new PermanentError(`order ${order.id} has no items`);
  if (!(Number(order.total) > 0)) throw new PermanentError(`order ${order.id} has no positive total`);
  await client.query('UPDATE orders SET is_validated = true WHERE id = $1 AND NOT is_validated', [order.id]);
};
