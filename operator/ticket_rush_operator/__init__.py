"""The Ticket-Rush operator: reconciles ConcertSale custom resources (ticketrush.io/v1)."""
