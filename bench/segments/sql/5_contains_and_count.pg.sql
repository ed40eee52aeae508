SELECT count(*) FROM contacts c WHERE c.email ILIKE '%user12%'
  AND (SELECT count(*) FROM events e WHERE e.contact_id = c.id AND e.name = 'order_created'
    AND e.occurred_at BETWEEN :'now'::timestamptz - interval '60 days' AND :'now'::timestamptz) >= 2;
