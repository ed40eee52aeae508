SELECT count(*) FROM contacts c WHERE c.deleted = 0 AND c.merged_into = 0 AND c.external_id IS NOT NULL
  AND json_extract(c.attrs, '$.city') IN ('Pune', 'Mumbai', 'Delhi')
  AND json_extract(c.attrs, '$.signup_at') >= '2025-06-01'
  AND (json_extract(c.attrs, '$.plan') = 'pro' OR json_extract(c.attrs, '$.ltv') >= 10000)
  AND ((SELECT count(*) FROM events e WHERE e.contact_id = c.id AND e.deleted = 0
         AND e.name_id = (SELECT id FROM event_names WHERE name = 'order_created')
         AND e.occurred_at BETWEEN :NOW - 90 * 86400000 AND :NOW) >= 2
    OR EXISTS (SELECT 1 FROM events e WHERE e.contact_id = c.id AND e.deleted = 0
         AND e.name_id = (SELECT id FROM event_names WHERE name = 'call_logged')
         AND e.occurred_at BETWEEN :NOW - 30 * 86400000 AND :NOW))
  AND NOT EXISTS (SELECT 1 FROM events e WHERE e.contact_id = c.id AND e.deleted = 0
         AND e.name_id = (SELECT id FROM event_names WHERE name = 'whatsapp_sent')
         AND e.occurred_at BETWEEN :NOW - 7 * 86400000 AND :NOW);
