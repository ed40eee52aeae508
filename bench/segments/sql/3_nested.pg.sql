SELECT count(*) FROM contacts c WHERE c.city IN ('Pune', 'Mumbai', 'Delhi') AND c.signup_at >= '2025-06-01'
  AND (c.plan = 'pro' OR c.ltv >= 10000)
  AND ((SELECT count(*) FROM events e WHERE e.contact_id = c.id AND e.name = 'order_created'
         AND e.occurred_at BETWEEN :'now'::timestamptz - interval '90 days' AND :'now'::timestamptz) >= 2
    OR EXISTS (SELECT 1 FROM events e WHERE e.contact_id = c.id AND e.name = 'call_logged'
         AND e.occurred_at BETWEEN :'now'::timestamptz - interval '30 days' AND :'now'::timestamptz))
  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.contact_id = c.id AND e.name = 'whatsapp_sent'
         AND e.occurred_at BETWEEN :'now'::timestamptz - interval '7 days' AND :'now'::timestamptz);
