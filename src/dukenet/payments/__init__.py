"""Payments: operators' payouts of their agents' earnings, deposits, and the payment providers
(ledger-only, Lightning) they go through."""
