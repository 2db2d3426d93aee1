"""What may hold a delivery back (base.py), one module per rule."""

from webhook_operator.engine.gates.base import Gate, Gates, Refusal

__all__ = ["Gate", "Gates", "Refusal"]
