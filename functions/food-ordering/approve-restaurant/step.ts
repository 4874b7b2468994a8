import type { StepWork } from '../shared/orderStep.js';

/** The restaurant accepts the order. */
export const approveRestaurant: StepWork = async (client, order) => {
  await client.query('UPDATE orders SET is_approved = true WHERE id = $1 AND NOT is_approved', [order.id]);
};
