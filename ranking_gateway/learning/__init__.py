"""Scheduled learning from the click log: `ranking-gateway learn` retrains the personaliser's
weights on the events logged since its last run, gates the candidate against the serving weights
on held-out requests, and deploys it through the gateway's live swap only when it is not worse."""
