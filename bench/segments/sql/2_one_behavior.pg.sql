SELECT count(*) FROM contacts c WHERE EXISTS (SELECT 1 FROM events e WHERE e.contact_id = c.id
  AND e.name = 'order_created' AND e.occurred_at BETWEEN :'now'::timestamptz - interval '30 days' AND :'now'::timestamptz);
