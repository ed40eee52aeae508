SELECT count(*) FROM contacts c WHERE c.city = 'Pune' AND c.plan IN ('pro', 'enterprise') AND c.ltv >= 5000;
