"""A sample file for `onbox complete examples/billing.py:14:end` (the body of `total_with_tax`)."""

from dataclasses import dataclass


@dataclass
class Invoice:
    amount_cents: int
    tax_rate: float


def total_with_tax(invoice: Invoice) -> int:
    """Return the invoice total in cents, tax included, rounded to the nearest cent."""
    
