"""Pulumi ComponentResources of the Ticket-Rush platform; `__main__.py` composes them."""
