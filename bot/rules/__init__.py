"""Who may do what: grants, sender codes and their sending rules, quiet hours, the policy file, the cache."""
