"""Members: sign-up and profile actions, points and tiers, referrals, life stage."""
