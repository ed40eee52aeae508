SELECT count(DISTINCT e.contact_id) FROM events e WHERE e.name = 'order_created'
  AND e.occurred_at BETWEEN :'now'::timestamptz - interval '180 days' AND :'now'::timestamptz
  AND e.amount >= 500 AND e.currency = 'INR';
