-- The food-ordering app of the 3factor talks: an order moves validated → paid → approved → agent
-- assigned, each step done by an async function triggered by the previous step's change.
CREATE TABLE IF NOT EXISTS orders (
  id bigserial PRIMARY KEY,
  customer text NOT NULL,
  items jsonb NOT NULL,
  total numeric(10, 2) NOT NULL,
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  is_validated boolean NOT NULL DEFAULT false,
  is_paid boolean NOT NULL DEFAULT false,
  is_approved boolean NOT NULL DEFAULT false,
  is_agent_assigned boolean NOT NULL DEFAULT false,
  payment_ref text,
  agent text,
  assigned_at timestamptz,
  rejected_reason text
);
-- Triggers on `columns` compare old and new values: Postgres sends whole old rows only with FULL.
ALTER TABLE orders REPLICA IDENTITY FULL;

-- Each function records the event ids it handled in the same transaction as its effect, so a
-- redelivered event (at-least-once) changes nothing the second time.
CREATE TABLE IF NOT EXISTS processed_events (
  function_name text NOT NULL,
  event_id text NOT NULL,
  order_id bigint NOT NULL,
  processed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (function_name, event_id)
);

CREATE TABLE IF NOT EXISTS payments (
  order_id bigint PRIMARY KEY REFERENCES orders (id),
  amount numeric(10, 2) NOT NULL,
  reference text NOT NULL,
  paid_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
