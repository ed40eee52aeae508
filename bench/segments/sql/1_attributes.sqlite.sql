SELECT count(*) FROM contacts c WHERE c.deleted = 0 AND c.merged_into = 0 AND c.external_id IS NOT NULL
  AND json_extract(c.attrs, '$.city') = 'Pune' AND json_extract(c.attrs, '$.plan') IN ('pro', 'enterprise')
  AND json_extract(c.attrs, '$.ltv') >= 5000;
