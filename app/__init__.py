"""Ticket-Rush: first-come-first-served concert ticket sales."""
