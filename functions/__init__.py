"""Thin Cloud Function entry points: decode the event, call `shared`, map errors to ack or retry."""
