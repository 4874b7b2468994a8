import type { StepWork } from '../shared/orderStep.js';

const AGENTS = ['ana', 'bo', 'chen', 'dee', 'eli', 'fay'];

/** Assigns a delivery agent, chosen from the order id so a redelivery would pick the same one. */
export const assignAgent: StepWork = async (client, order) => {
  const agent = AGENTS[order.id % AGENTS.length]!;
  await client.query('UPDATE orders SET is_agent_assigned = true, agent = $2, assigned_at = clock_timestamp() WHERE id = $1 AND NOT is_agent_assigned', [order.id, agent]);
};
