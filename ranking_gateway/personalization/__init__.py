"""Real-time personalisation: user feedback events, their durable log, per-user profiles and the
personalised re-scoring applied after the (user-independent) search cache."""
