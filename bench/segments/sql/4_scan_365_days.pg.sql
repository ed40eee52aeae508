SELECT count(*) FROM (SELECT e.contact_id FROM events e WHERE e.name = 'email_opened'
  AND e.occurred_at BETWEEN :'now'::timestamptz - interval '365 days' AND :'now'::timestamptz
  GROUP BY e.contact_id HAVING count(*) >= 5) x;
