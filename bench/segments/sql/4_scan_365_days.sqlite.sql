SELECT count(*) FROM contacts c WHERE c.deleted = 0 AND c.merged_into = 0 AND c.external_id IS NOT NULL
  AND (SELECT count(*) FROM events e WHERE e.contact_id = c.id AND e.deleted = 0
    AND e.name_id = (SELECT id FROM event_names WHERE name = 'email_opened')
    AND e.occurred_at BETWEEN :NOW - 365 * 86400000 AND :NOW) >= 5;
