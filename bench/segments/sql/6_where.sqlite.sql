SELECT count(*) FROM contacts c WHERE c.deleted = 0 AND c.merged_into = 0 AND c.external_id IS NOT NULL
  AND EXISTS (SELECT 1 FROM events e WHERE e.contact_id = c.id AND e.deleted = 0
    AND e.name_id = (SELECT id FROM event_names WHERE name = 'order_created')
    AND e.occurred_at BETWEEN :NOW - 180 * 86400000 AND :NOW
    AND json_extract(e.props, '$.amount') >= 500 AND json_extract(e.props, '$.currency') = 'INR');
